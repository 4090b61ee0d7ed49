//! A raw-socket recording backend: it keeps every byte a proxy sends it, per connection,
//! and answers each connection once with fixed bytes, however hostile.
//!
//! A hyper backend would hide exactly what the suite looks for (it normalises framing
//! and refuses what it cannot parse), so this one reads bytes. It answers after one
//! request is complete by the strict checker, or after a short quiet period when the
//! request cannot be framed (so a proxy that forwarded garbage still gets an answer and
//! the client a verdict). After answering it closes its side and keeps recording until
//! the proxy closes or goes quiet: bytes arriving then (a smuggled second request) are
//! part of the record.

use super::framing;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long a forwarded request may pause before the backend stops waiting for the rest:
/// longer than any proxy needs to relay bytes already received, short enough that a
/// suite of a hundred vectors stays within seconds.
const QUIET_AFTER_HEAD: Duration = Duration::from_millis(400);

/// How long the backend waits for a first head on an accepted connection.
const QUIET_BEFORE_HEAD: Duration = Duration::from_secs(3);

/// How long it keeps recording after answering.
const QUIET_AFTER_ANSWER: Duration = Duration::from_millis(300);

/// A recording backend for one vector behind one proxy.
pub struct Recorder {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Bytes received, one entry per accepted connection, in accept order.
    conns: Vec<Vec<u8>>,
    /// Connections still being read.
    active: usize,
}

// === impl Recorder ===

impl Recorder {
    /// Listens on 127.0.0.1:0 and answers every connection with `answer`.
    pub async fn start(answer: Vec<u8>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let answer: Arc<[u8]> = answer.into();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let idx = {
                    let mut s = st.lock().unwrap();
                    s.conns.push(Vec::new());
                    s.active += 1;
                    s.conns.len() - 1
                };
                let st = st.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    serve(sock, idx, &answer, &st).await;
                    st.lock().unwrap().active -= 1;
                });
            }
        });
        Recorder { addr, state, task }
    }

    /// Every byte received so far, per connection.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().conns.clone()
    }

    /// Waits until every connection is done, then gives a connection that has not yet
    /// arrived `quiet` to show up (the point is that nothing more arrives), within
    /// `deadline`.
    pub async fn settle(&self, quiet: Duration, deadline: Duration) {
        let start = Instant::now();
        let end = start + deadline;
        while Instant::now() < end {
            let (n, active) = {
                let s = self.state.lock().unwrap();
                (s.conns.len(), s.active)
            };
            if active == 0 && (n > 0 || start.elapsed() >= quiet) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (or gives up on framing it), answers, records the rest.
async fn serve(mut sock: TcpStream, idx: usize, answer: &[u8], state: &Mutex<State>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut open = true;
    loop {
        let has_head = find(&buf, b"\r\n\r\n").is_some() || find(&buf, b"\n\n").is_some();
        let quiet = if has_head {
            QUIET_AFTER_HEAD
        } else {
            QUIET_BEFORE_HEAD
        };
        match tokio::time::timeout(quiet, sock.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                open = false;
                break;
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                state.lock().unwrap().conns[idx].extend_from_slice(&chunk[..n]);
            }
            Err(_) => break,
        }
        match framing::parse_requests(&buf) {
            Ok(reqs) if !reqs.is_empty() => break,
            // Unframeable: whatever the proxy meant, nothing will make it complete.
            Err(e) if !framing::is_truncation(&e) && find(&buf, b"\r\n\r\n").is_some() => break,
            _ => {}
        }
    }
    let has_head = find(&buf, b"\r\n\r\n").is_some() || find(&buf, b"\n\n").is_some();
    if !has_head {
        return;
    }
    let _ = sock.write_all(answer).await;
    let _ = sock.shutdown().await;
    while open {
        match tokio::time::timeout(QUIET_AFTER_ANSWER, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                state.lock().unwrap().conns[idx].extend_from_slice(&chunk[..n]);
            }
            _ => open = false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
