//! Each worker's idle HTTP/1.1 connections to upstream endpoints.
//!
//! A worker thread runs one current_thread runtime, and every connection it accepts
//! stays on it, so the pool is thread-local: checking a connection out or in touches no
//! shared state and takes no lock. Connections are kept in a small stack per endpoint
//! (most recently used first, so idle ones age out). (An HTTP/2 upstream has one
//! multiplexed connection per endpoint per worker, kept by the pipeline's h2 leg,
//! `proxy::forward::h2`.)
//!
//! A connection returns to the pool only after its response body ended cleanly (see
//! [`super::client::Reader`]); a connection whose body was dropped midway is closed. A pooled
//! HTTP/1.1 connection is a bare socket: no buffer, no task (the request's own task
//! checks it out, writes, reads and checks it in), and it is checked for a close or
//! stray bytes, without waiting, before it is reused.
//!
//! Connections are kept by the endpoint's *slot*, a small number the snapshot gives
//! each endpoint. Slots are reused: a reload frees the slots of endpoints it removed
//! (see `snapshot`), and a later endpoint may get one. Each pooled connection remembers the
//! address it goes to, and a checkout for another address drops it, so a reused slot
//! never hands out a connection to the wrong endpoint. Each worker sweeps its pool
//! every second ([`sweep`]): idle connections older than [`IDLE_TIMEOUT`] and closed
//! ones are dropped, so the connections of removed endpoints are closed within
//! seconds, whatever the upstream does.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

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
}

struct Idle {
    stream: TcpStream,
    addr: SocketAddr,
    since: Instant,
}

thread_local! {
    /// Idle connections by slot.
    static POOL: RefCell<Vec<Vec<Idle>>> = const { RefCell::new(Vec::new()) };
}

/// Takes an idle HTTP/1.1 connection to `addr` at `slot`, if a usable one is pooled:
/// younger than [`IDLE_TIMEOUT`] and, checked without waiting, neither closed nor
/// holding unexpected bytes.
pub fn checkout(slot: usize, addr: SocketAddr) -> Option<TcpStream> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().get_mut(slot).and_then(Vec::pop))?;
        if idle.addr == addr
            && crate::timer::coarse_now().saturating_duration_since(idle.since)
                + crate::timer::COARSE_STEP
                <= IDLE_TIMEOUT
            && super::io::is_quiet(&idle.stream)
        {
            return Some(idle.stream);
        }
    }
}

/// Returns an HTTP/1.1 connection to `addr` whose exchange finished cleanly.
pub fn checkin(slot: usize, addr: SocketAddr, stream: TcpStream) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() <= slot {
            p.resize_with(slot + 1, Vec::new);
        }
        let v = &mut p[slot];
        if v.len() < MAX_IDLE_PER_ENDPOINT {
            v.push(Idle {
                stream,
                addr,
                // Both ends of an age are read on the coarse clock: an age is at
                // most a step longer than it reads (see `checkout`).
                since: crate::timer::coarse_now(),
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
        for v in p.iter_mut() {
            let before = v.len();
            v.retain(|i| i.since.elapsed() <= IDLE_TIMEOUT && super::io::is_quiet(&i.stream));
            dropped += before - v.len();
        }
        dropped
    })
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
