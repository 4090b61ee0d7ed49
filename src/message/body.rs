//! Body types of the data path: what is sent upstream ([`ReqBody`]) and what is
//! answered downstream ([`RespBody`]). Both stream frame by frame; nothing is buffered
//! whole.
//!
//! [`RespBody::Upstream`] carries the upstream connection while the body streams (an
//! HTTP/1.1 one goes back to the worker's pool once the body has ended cleanly, see
//! `h1::client::Reader`); it also holds the endpoint's in-flight guard, so
//! least-request sees a request as busy until its last byte has been relayed. An
//! upstream that stops sending midway is cut after the route's `idle_timeout` of
//! silence (the idle timer is armed only while a read is actually waiting), so a
//! stalled body never hangs the client. What must happen when a body ends (the
//! request's record, the stale cache's copy) is not the body's business: the
//! connection driver that writes the body holds it (`proxy::Finish`), and tells it
//! how the body ended.

use super::failure::{Failure, REASON};
use crate::h1::client::Reader;
use crate::h1::fields::RawFields;
use crate::h1::inbound::Inbound;
use crate::h1::io;
use crate::h1::pooled::Pooled;
use crate::h1::splice::{self, Pipe};
use crate::h1::BoxError;
use crate::upstream::InFlight;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

/// A request body sent upstream: the client's, streamed, or one kept in memory for
/// replay (see `upstream::retry`).
#[derive(Debug)]
pub enum ReqBody<'a> {
    /// The body of a request hyper read (h2, TLS), streamed.
    Stream(Incoming),
    /// The body of a request the own HTTP/1.1 engine read, streamed from the client
    /// connection.
    Client(Inbound<'a>),
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
    pub fn into_owned(self) -> Result<ReqBody<'static>, Inbound<'a>> {
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
            ReqBody::Client(b) => b.poll_data(cx).map(data_frame),
            ReqBody::Bridge(rx) => rx.poll_recv(cx).map(|f| f.map(|r| r.map(Frame::data))),
            ReqBody::Full(b) => whole::poll(b),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Client(b) => b.is_done(),
            ReqBody::Bridge(_) => false,
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Client(b) => b.size_hint(),
            ReqBody::Bridge(_) => SizeHint::default(),
            ReqBody::Full(b) => whole::size_hint(b),
        }
    }
}

/// A response body sent downstream.
#[derive(Debug)]
pub enum RespBody {
    /// The upstream's body, streamed.
    Upstream(Pooled<UpstreamBody>),
    /// A body made by the gateway (errors, 404s).
    Full(Option<Bytes>),
    /// A `101` from an HTTP/1.1 upstream to a client of the own engine: the connection
    /// driver relays the tunnel once it has written the head.
    Tunnel(Box<Tunnel>),
}

/// The upstream side of a tunnel after a `101`.
pub struct Tunnel {
    /// The upstream connection.
    pub upstream: TcpStream,
    /// Bytes the upstream sent after its `101`, for the client first.
    pub early: Vec<u8>,
    /// The endpoint counts the tunnel as a request in flight while it lasts.
    pub in_flight: InFlight,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").finish_non_exhaustive()
    }
}

/// Where an upstream body comes from.
enum Inner {
    /// hyper's h2 client.
    H2(Incoming),
    /// The own HTTP/1.1 engine (see `h1::client`).
    H1(Reader),
}

impl Inner {
    fn is_end_stream(&self) -> bool {
        match self {
            Inner::H2(b) => b.is_end_stream(),
            Inner::H1(r) => r.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::H2(b) => b.size_hint(),
            Inner::H1(r) => r.size_hint(),
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Inner::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inner::H1(r) => r.poll_data(cx).map(data_frame),
        }
    }

    /// The connection is not reused (the body broke or stalled).
    fn discard(&mut self) {
        if let Inner::H1(r) = self {
            r.discard();
        }
    }
}

/// An upstream response body plus what must happen when it ends.
pub struct UpstreamBody {
    inner: Inner,
    _in_flight: InFlight,
    /// Longest silence allowed between two frames.
    idle: Duration,
    /// Created the first time a read has to wait (most small bodies never do), then
    /// re-armed each time a read starts waiting.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The answer's field lines while they are raw (HTTP/1.1 upstreams).
    fields: Option<RawFields>,
}

// === impl RespBody ===

impl RespBody {
    /// No body.
    pub fn empty() -> Self {
        RespBody::Full(None)
    }

    /// Wraps an h2 upstream's body; `idle` bounds the silence between two frames.
    pub fn upstream(inner: Incoming, in_flight: InFlight, idle: Duration) -> Self {
        Self::wrap(Inner::H2(inner), in_flight, idle)
    }

    /// Wraps an HTTP/1.1 upstream's body (see `h1::client::Reader`) and its answer's
    /// field lines, which stay raw until written or [`materialize`]d.
    pub fn upstream_h1(
        reader: Reader,
        fields: RawFields,
        in_flight: InFlight,
        idle: Duration,
    ) -> Self {
        let mut b = Self::wrap(Inner::H1(reader), in_flight, idle);
        if let RespBody::Upstream(u) = &mut b {
            u.fields = Some(fields);
        }
        b
    }

    fn wrap(inner: Inner, in_flight: InFlight, idle: Duration) -> Self {
        let b = Pooled::new(UpstreamBody {
            inner,
            _in_flight: in_flight,
            idle,
            timer: None,
            armed: false,
            fields: None,
        });
        RespBody::Upstream(b)
    }

    /// Takes the answer's raw field lines, if they have not been made a map (see
    /// [`materialize`]).
    pub fn take_fields(&mut self) -> Option<RawFields> {
        match self {
            RespBody::Upstream(b) => b.fields.take(),
            _ => None,
        }
    }
}

/// Moves an answer's raw field lines (an HTTP/1.1 upstream's, see `h1::fields::RawFields`)
/// into its header map, for whatever reads the answer's fields as a map: an h2 client's
/// connection, the stale cache, `Retry-After`. Fields the pipeline set already win.
pub fn materialize(resp: &mut Response<RespBody>) {
    if let Some(f) = resp.body_mut().take_fields() {
        f.into_map(resp.headers_mut());
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RespBody::Upstream(b) => b.poll_upstream(cx),
            RespBody::Full(b) => whole::poll(b),
            RespBody::Tunnel(_) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Upstream(b) => b.inner.is_end_stream(),
            RespBody::Full(b) => b.is_none(),
            RespBody::Tunnel(_) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Upstream(b) => b.inner.size_hint(),
            RespBody::Full(b) => whole::size_hint(b),
            RespBody::Tunnel(_) => SizeHint::with_exact(0),
        }
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// Whether the body has already ended (nothing left to relay).
    pub fn ended(&self) -> bool {
        self.inner.is_end_stream()
    }

    /// Whether the body can be relayed piece by piece from its read buffer
    /// ([`UpstreamBody::poll_piece`]): an HTTP/1.1 upstream's.
    pub fn lends(&self) -> bool {
        matches!(self.inner, Inner::H1(_))
    }

    /// Waits for the next piece of an HTTP/1.1 upstream's body, lent by
    /// [`UpstreamBody::piece`] until [`UpstreamBody::advance`] (see
    /// `h1::client::Reader::poll_piece`), within the idle timeout like a frame.
    /// `None` at the body's end.
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(), BoxError>>> {
        let Inner::H1(reader) = &mut self.inner else {
            return Poll::Ready(Some(Err("not an HTTP/1.1 body".into())));
        };
        match reader.poll_piece(cx) {
            Poll::Pending => match self.idle_fired(cx) {
                Some(e) => Poll::Ready(Some(Err(e))),
                None => Poll::Pending,
            },
            Poll::Ready(None) => {
                self.armed = false;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(()))) => {
                self.armed = false;
                Poll::Ready(Some(Ok(())))
            }
            Poll::Ready(Some(Err(e))) => {
                self.inner.discard();
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    /// The piece [`UpstreamBody::poll_piece`] made ready.
    pub fn piece(&self) -> &[u8] {
        match &self.inner {
            Inner::H1(r) => r.piece(),
            Inner::H2(_) => &[],
        }
    }

    /// Whether all the upstream has sent so far has been relayed.
    pub fn drained(&self) -> bool {
        match &self.inner {
            Inner::H1(r) => r.is_drained(),
            Inner::H2(_) => false,
        }
    }

    /// The ready piece has been relayed.
    pub fn advance(&mut self) {
        if let Inner::H1(r) = &mut self.inner {
            r.advance();
        }
    }

    /// The bytes still to come if the rest of the body may go by splice (see
    /// `h1::splice`): an HTTP/1.1 upstream's `Content-Length` body with at least
    /// `splice::MIN` bytes to come and none waiting in the read buffer. (A body whose
    /// bytes the caller must see, for a copy, is not spliced: the caller asks first.)
    pub fn splice_left(&mut self) -> Option<u64> {
        match &mut self.inner {
            Inner::H1(r) => r.splice_left().filter(|&n| n >= splice::MIN),
            Inner::H2(_) => None,
        }
    }

    /// Relays the rest of the body to `client` by splice through `pipe` (see
    /// `h1::splice`), after [`UpstreamBody::splice_left`] said it may. `out` holds what
    /// is gathered for the client (the head, the first bytes): it goes with the first
    /// spliced bytes, or at once when the upstream has none yet; `sent` says whether
    /// any of the answer has gone out. Silence from the upstream is bounded by the idle
    /// timeout, as for a copied body.
    pub async fn splice(
        &mut self,
        client: &TcpStream,
        pipe: &mut Pipe,
        out: &mut Vec<u8>,
        sent: &mut bool,
    ) -> Result<(), Cut> {
        loop {
            let Inner::H1(r) = &mut self.inner else {
                return Err(Cut::Upstream);
            };
            let Some(left) = r.splice_left() else { break };
            let Some(stream) = r.stream() else {
                return Err(Cut::Upstream);
            };
            let n = match pipe.try_fill(stream, left) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Nothing yet: what is gathered goes now, not after the wait.
                    if !out.is_empty() {
                        io::write_all(client, out).await.map_err(Cut::Client)?;
                        out.clear();
                        *sent = true;
                    }
                    poll_fn(|cx| self.poll_fill(cx, pipe, left)).await
                }
                r => r,
            };
            let n = match n {
                Ok(n) if n > 0 => n,
                _ => return Err(self.cut_upstream()),
            };
            if !out.is_empty() {
                io::write_more(client, out)
                    .await
                    .map_err(|e| self.cut_client(e))?;
                out.clear();
                *sent = true;
            }
            while pipe.held() > 0 {
                if let Err(e) = poll_fn(|cx| pipe.poll_drain(cx, client)).await {
                    return Err(self.cut_client(e));
                }
            }
            // After the bytes left: at the body's end the connection is checked in.
            if let Inner::H1(r) = &mut self.inner {
                r.spliced(n as u64);
            }
        }
        self.armed = false;
        Ok(())
    }

    /// Polls a fill of the pipe from the upstream, within the idle timeout.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        pipe: &mut Pipe,
        max: u64,
    ) -> Poll<std::io::Result<usize>> {
        let Inner::H1(r) = &mut self.inner else {
            return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()));
        };
        let Some(stream) = r.stream() else {
            return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()));
        };
        match pipe.poll_fill(cx, stream, max) {
            Poll::Pending => match self.idle_fired(cx) {
                Some(_) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                None => Poll::Pending,
            },
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
        }
    }

    /// The upstream broke, ended early or went silent: the body is cut.
    fn cut_upstream(&mut self) -> Cut {
        self.inner.discard();
        Cut::Upstream
    }

    /// The client's connection failed mid-body: the upstream's is not reused.
    fn cut_client(&mut self, e: std::io::Error) -> Cut {
        self.inner.discard();
        Cut::Client(e)
    }

    /// Arms the idle timer when a read starts waiting; the error if it has fired.
    fn idle_fired(&mut self, cx: &mut Context<'_>) -> Option<BoxError> {
        if !self.armed {
            let deadline = Instant::now() + self.idle;
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if !fired {
            return None;
        }
        // Silent too long: fail the body so the client sees a broken response, not a
        // short one; the connection is dropped, not pooled.
        self.inner.discard();
        Some(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "upstream body idle timeout",
        )))
    }

    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = self.inner.poll_frame(cx);
        match &r {
            Poll::Pending => {
                if let Some(e) = self.idle_fired(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Ok(_))) => self.armed = false,
            Poll::Ready(Some(Err(_))) => self.inner.discard(),
        }
        r
    }
}

/// A piece of body read by one of the engine's readers, as a `Body` frame.
fn data_frame<E: Into<BoxError>>(
    piece: Option<Result<Bytes, E>>,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    piece.map(|r| r.map(Frame::data).map_err(Into::into))
}

/// A body held whole in memory (or none): what both directions' `Full` is.
mod whole {
    use super::BoxError;
    use bytes::Bytes;
    use http_body::{Frame, SizeHint};
    use std::task::Poll;

    /// Its one frame, then the end.
    pub fn poll(b: &mut Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(b.take().map(|d| Ok(Frame::data(d))))
    }

    /// Its exact length.
    pub fn size_hint(b: &Option<Bytes>) -> SizeHint {
        SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64))
    }
}

// === impl Failure ===

impl Failure {
    /// The gateway's answer for this failure.
    pub fn response(self) -> Response<RespBody> {
        let mut r = Response::new(RespBody::Full(Some(Bytes::from_static(
            self.body().as_bytes(),
        ))));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(REASON.clone(), HeaderValue::from_static(self.reason()));
        if self == Failure::BulkheadFull {
            // Shedding is brief by design (the limit frees as requests finish): one
            // second tells well-behaved clients to back off without giving up.
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Why a body did not reach its end.
#[derive(Debug)]
pub enum Cut {
    /// The upstream failed, closed early or stayed silent past the idle timeout.
    Upstream,
    /// The client's connection failed.
    Client(std::io::Error),
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}
