//! Each worker's keep-alive connections to upstream endpoints.
//!
//! A worker thread runs one current_thread runtime, and every connection it accepts
//! stays on it, so the pool is thread-local: checking a connection out or in touches no
//! shared state and takes no lock. HTTP/1.1 connections are kept in a small stack per
//! endpoint (most recently used first, so idle ones age out); an HTTP/2 connection is
//! one multiplexed sender per endpoint per worker.
//!
//! A connection returns to the pool only after its response body ended cleanly (see
//! `proxy::body`); a connection whose body was dropped midway is closed by hyper.
//!
//! Slots are reused: a reload frees the slots of endpoints it removed (see
//! `snapshot`), and a later endpoint may get one. Each pooled connection remembers the
//! address it goes to, and a checkout for another address drops it, so a reused slot
//! never hands out a connection to the wrong endpoint. Each worker sweeps its pool
//! every second ([`sweep`]): idle connections older than [`IDLE_TIMEOUT`] and closed
//! ones are dropped, so the connections of removed endpoints are closed within
//! seconds, whatever the upstream does.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A request body sent upstream: the client's, streamed, or one kept in memory for
/// replay (see `proxy::retry`).
#[derive(Debug)]
pub enum ReqBody {
    /// The client's body, streamed.
    Stream(Incoming),
    /// A body held whole in memory (kept for replay), or none.
    Full(Option<Bytes>),
}

// === impl ReqBody ===

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Stream(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ReqBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}

// === pool ===

/// Idle HTTP/1.1 connections kept per endpoint per worker.
pub const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// An idle connection older than this is closed rather than reused: below the
/// keep-alive timeouts of common servers (nginx 75 s, Node 5 s is the exception), so we
/// rarely write into a connection the server is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why getting a connection failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, ...).
    Io(io::Error),
    /// TCP connect did not finish within the cluster's connect timeout.
    Timeout,
    /// The HTTP handshake failed.
    Handshake(hyper::Error),
}

struct Idle {
    tx: http1::SendRequest<ReqBody>,
    addr: SocketAddr,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    h1: Vec<Vec<Idle>>,
    h2: Vec<Option<(SocketAddr, http2::SendRequest<ReqBody>)>>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An HTTP/1.1 connection checked out of (or freshly added to) the pool.
pub struct H1Conn {
    /// The sender.
    pub tx: http1::SendRequest<ReqBody>,
    /// Whether it came from the pool (a reused connection can be stale).
    pub reused: bool,
}

/// Takes an idle HTTP/1.1 connection to `addr` at `slot`, if a usable one is pooled.
pub async fn checkout_h1(slot: usize, addr: SocketAddr) -> Option<H1Conn> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().h1.get_mut(slot).and_then(Vec::pop))?;
        if idle.addr != addr || idle.tx.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
            continue;
        }
        let mut tx = idle.tx;
        if !tx.is_ready() && tx.ready().await.is_err() {
            continue;
        }
        return Some(H1Conn { tx, reused: true });
    }
}

/// Returns an HTTP/1.1 connection to `addr` whose exchange finished cleanly.
pub fn checkin_h1(slot: usize, addr: SocketAddr, tx: http1::SendRequest<ReqBody>) {
    if tx.is_closed() {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.h1.len() <= slot {
            p.h1.resize_with(slot + 1, Vec::new);
        }
        let v = &mut p.h1[slot];
        if v.len() < MAX_IDLE_PER_ENDPOINT {
            v.push(Idle {
                tx,
                addr,
                since: Instant::now(),
            });
        }
    });
}

/// Drops this worker's idle connections that are closed or idle longer than
/// [`IDLE_TIMEOUT`]; returns how many it dropped.
pub fn sweep() -> usize {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let mut dropped = 0;
        for v in &mut p.h1 {
            let before = v.len();
            v.retain(|i| !i.tx.is_closed() && i.since.elapsed() <= IDLE_TIMEOUT);
            dropped += before - v.len();
        }
        for s in &mut p.h2 {
            if s.as_ref().is_some_and(|(_, tx)| tx.is_closed()) {
                *s = None;
                dropped += 1;
            }
        }
        dropped
    })
}

/// Drops this worker's connections in `slots` (endpoints a reload removed).
pub fn forget(slots: &[usize]) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        for &s in slots {
            if let Some(v) = p.h1.get_mut(s) {
                v.clear();
            }
            if let Some(h) = p.h2.get_mut(s) {
                *h = None;
            }
        }
    });
}

/// Opens a TCP connection with a timeout and no Nagle delay.
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a new HTTP/1.1 connection; its driver runs as a task on this worker. An
/// answer whose head is larger than `max_head` bytes fails the exchange.
pub async fn connect_h1(
    addr: SocketAddr,
    timeout: Duration,
    max_head: usize,
) -> Result<H1Conn, ConnectError> {
    let stream = connect_tcp(addr, timeout).await?;
    let (tx, conn) = http1::Builder::new()
        .max_header_size(max_head)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(H1Conn { tx, reused: false })
}

/// The worker's HTTP/2 sender to `slot`, connecting when there is none or it closed;
/// `max_head` bounds an answer's header list.
pub async fn h2_sender(
    slot: usize,
    addr: SocketAddr,
    timeout: Duration,
    max_head: usize,
) -> Result<http2::SendRequest<ReqBody>, ConnectError> {
    let cached = POOL.with(|p| p.borrow().h2.get(slot).cloned().flatten());
    if let Some((a, tx)) = cached {
        if a == addr && !tx.is_closed() {
            return Ok(tx);
        }
    }
    let stream = connect_tcp(addr, timeout).await?;
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.h2.len() <= slot {
            p.h2.resize_with(slot + 1, || None);
        }
        p.h2[slot] = Some((addr, tx.clone()));
    });
    Ok(tx)
}
