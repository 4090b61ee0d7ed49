//! Each worker's keep-alive connections to upstream endpoints.
//!
//! A worker thread runs one current_thread runtime, and every connection it accepts
//! stays on it, so the pool is thread-local: checking a connection out or in touches no
//! shared state and takes no lock. HTTP/1.1 connections are kept in a small stack per
//! endpoint (most recently used first, so idle ones age out); an HTTP/2 connection is
//! one multiplexed sender per endpoint per worker.
//!
//! A connection returns to the pool only after its response body ended cleanly (see
//! `h1::client`); a connection whose body was dropped midway is closed. A pooled
//! HTTP/1.1 connection is a bare socket: no buffer, no task (the request's own task
//! checks it out, writes, reads and checks it in), and it is checked for a close or
//! stray bytes, without waiting, before it is reused.
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
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Error type of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body sent upstream: the client's, streamed, or one kept in memory for
/// replay (see `proxy::retry`).
#[derive(Debug)]
pub enum ReqBody<'a> {
    /// The body of a request hyper read (h2, TLS), streamed.
    Stream(Incoming),
    /// The body of a request the own HTTP/1.1 engine read, streamed from the client
    /// connection.
    Client(crate::h1::server::Inbound<'a>),
    /// Frames pumped from a `Client` body by the request's task, for an h2 upstream
    /// (whose sender needs a body that owns its data).
    Bridge(mpsc::Receiver<Result<Bytes, BoxError>>),
    /// A body held whole in memory (kept for replay), or none.
    Full(Option<Bytes>),
}

// === impl ReqBody ===

impl<'a> ReqBody<'a> {
    /// The body as one that owns its data, or the client body that borrows its
    /// connection.
    pub fn into_owned(self) -> Result<ReqBody<'static>, crate::h1::server::Inbound<'a>> {
        match self {
            ReqBody::Stream(b) => Ok(ReqBody::Stream(b)),
            ReqBody::Bridge(b) => Ok(ReqBody::Bridge(b)),
            ReqBody::Full(b) => Ok(ReqBody::Full(b)),
            ReqBody::Client(b) => Err(b),
        }
    }
}

impl Body for ReqBody<'_> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Stream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ReqBody::Client(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Bridge(rx) => rx.poll_recv(cx).map(|f| f.map(|r| r.map(Frame::data))),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Client(b) => b.is_end_stream(),
            ReqBody::Bridge(_) => false,
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Client(b) => b.size_hint(),
            ReqBody::Bridge(_) => SizeHint::default(),
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
    stream: TcpStream,
    addr: SocketAddr,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    h1: Vec<Vec<Idle>>,
    h2: Vec<Option<(SocketAddr, http2::SendRequest<ReqBody<'static>>)>>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Takes an idle HTTP/1.1 connection to `addr` at `slot`, if a usable one is pooled:
/// younger than [`IDLE_TIMEOUT`] and, checked without waiting, neither closed nor
/// holding unexpected bytes.
pub fn checkout_h1(slot: usize, addr: SocketAddr) -> Option<TcpStream> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().h1.get_mut(slot).and_then(Vec::pop))?;
        if idle.addr == addr
            && crate::timer::coarse_now().saturating_duration_since(idle.since)
                + crate::timer::COARSE_STEP
                <= IDLE_TIMEOUT
            && crate::h1::io::is_quiet(&idle.stream)
        {
            return Some(idle.stream);
        }
    }
}

/// Returns an HTTP/1.1 connection to `addr` whose exchange finished cleanly.
pub fn checkin_h1(slot: usize, addr: SocketAddr, stream: TcpStream) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.h1.len() <= slot {
            p.h1.resize_with(slot + 1, Vec::new);
        }
        let v = &mut p.h1[slot];
        if v.len() < MAX_IDLE_PER_ENDPOINT {
            v.push(Idle {
                stream,
                addr,
                // Both ends of an age are read on the coarse clock: an age is at
                // most a step longer than it reads (see `checkout_h1`).
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
        for v in &mut p.h1 {
            let before = v.len();
            v.retain(|i| i.since.elapsed() <= IDLE_TIMEOUT && crate::h1::io::is_quiet(&i.stream));
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

/// Opens a TCP connection with a timeout and no Nagle delay.
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The worker's HTTP/2 sender to `slot`, connecting when there is none or it closed;
/// `max_head` bounds an answer's header list.
pub async fn h2_sender(
    slot: usize,
    addr: SocketAddr,
    timeout: Duration,
    max_head: usize,
) -> Result<http2::SendRequest<ReqBody<'static>>, ConnectError> {
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
