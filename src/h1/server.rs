//! The client side of the engine: one task per connection reads request heads, runs
//! each request through the pipeline (`proxy::handle`) in that same task, and writes
//! the answer, in order (pipelined requests wait in the buffer).
//!
//! Between requests the connection holds no buffer (see [`super::buf`]). The request
//! body is read lazily, from the connection's own buffer and socket, as the pipeline
//! asks for it ([`Inbound`]): `Expect: 100-continue` is answered when the body is
//! first wanted, and a body nobody read is drained (up to [`DRAIN_LIMIT`]) or the
//! connection closed before the next request is read: its sending side first, then
//! what the client still sends is read and dropped for a while, so the answer is not
//! lost to a reset (a lingering close, see `shut`). An upgrade becomes a tunnel only
//! once the upstream's `101` has arrived (CVE-2026-2833); the bytes after an upgrade
//! request's head are read as HTTP until then.

use super::buf::{self, Buf};
use super::chunked::{self, Decoder};
use super::head::{self, Framing};
use super::io::{self, Client, Stream};
use super::pooled::Pooled;
use super::splice::Pipe;
use crate::proxy::body::{BoxError, Cut, RespBody, UpstreamBody};
use crate::proxy::error::Failure;
use crate::proxy::{self, ConnCtx};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// A request body left unread after its answer is read and dropped up to this size;
/// more, and the connection is closed instead.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// Answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves one HTTP/1.x connection (plain, or TLS that chose HTTP/1.1) until it closes, the client idles past
/// `client_idle_timeout`, or the worker shuts down ([`close_idle`]).
pub async fn serve<G>(ctx: Arc<ConnCtx>, guard: G) {
    // What an idle connection's task holds is kept to a few words (issue 11's memory per
    // idle connection): the context, the guard, the configuration, the (empty) buffer,
    // the idle deadline and the parked waker's place. The socket is reached through the
    // context each time rather than held as a second reference.
    let _guard = guard;
    let cfg = ctx.shared.snapshot.load().config.clone();
    let mut rbuf = Buf::new();
    let mut deadline = tokio::time::Instant::now() + cfg.client_idle_timeout;
    loop {
        // 1. Idle: no buffer held; wait for the next request's first bytes. The wait
        //    is a plain poll of the socket's readiness, with the waker and the idle
        //    deadline left with the worker, which wakes the connection when the
        //    deadline passes or the worker shuts down ([`sweep_idle`], [`close_idle`]):
        //    no future and no timer is kept while idle.
        if rbuf.is_empty() {
            rbuf.release_if_empty();
            let mut slot = ParkSlot(usize::MAX);
            let woke = poll_fn(|cx| {
                if closing() {
                    return Poll::Ready(false);
                }
                let Some(io) = &ctx.stream else {
                    return Poll::Ready(false);
                };
                if let Poll::Ready(ok) = io.poll_request(cx, &mut rbuf) {
                    return Poll::Ready(ok);
                }
                // Woken with nothing to read: by the worker, if the deadline passed.
                // (The first poll, just after the deadline was set, reads no clock.)
                if slot.0 != usize::MAX && tokio::time::Instant::now() >= deadline {
                    return Poll::Ready(false);
                }
                park(&mut slot.0, cx.waker(), deadline);
                Poll::Pending
            })
            .await;
            drop(slot);
            if !woke {
                return;
            }
        }
        let Some(io) = &ctx.stream else { return };
        let idle = cfg.client_idle_timeout;
        // Out of line: an idle connection's task holds only its idle state, not a
        // request's deepest one; the exchange's state lives in a block of the worker's
        // pool while the request lasts, built in place (see `super::pooled`).
        let again = Pooled::with(|| exchange(&ctx, io, &mut rbuf, &cfg.limits, idle)).await;
        if !again {
            return;
        }
        deadline = tokio::time::Instant::now() + idle;
    }
}

/// The worker's idle connections, woken when their idle deadline passes or the worker
/// shuts down.
#[derive(Default)]
struct Parked {
    wakers: Vec<Option<(std::task::Waker, tokio::time::Instant)>>,
    free: Vec<usize>,
    closing: bool,
}

thread_local! {
    static PARKED: std::cell::RefCell<Parked> = std::cell::RefCell::new(Parked::default());
}

/// Whether this worker is shutting down.
fn closing() -> bool {
    PARKED.with(|p| p.borrow().closing)
}

/// Leaves `waker` and the connection's idle `deadline` with the worker (in `slot`,
/// taken on first use; `usize::MAX` is none yet).
fn park(slot: &mut usize, waker: &std::task::Waker, deadline: tokio::time::Instant) {
    PARKED.with(|p| {
        let mut p = p.borrow_mut();
        match *slot {
            i if i != usize::MAX => {
                if !p.wakers[i]
                    .as_ref()
                    .is_some_and(|(w, _)| w.will_wake(waker))
                {
                    p.wakers[i] = Some((waker.clone(), deadline));
                }
            }
            _ => {
                let w = Some((waker.clone(), deadline));
                let i = match p.free.pop() {
                    Some(i) => {
                        p.wakers[i] = w;
                        i
                    }
                    None => {
                        p.wakers.push(w);
                        p.wakers.len() - 1
                    }
                };
                *slot = i;
            }
        }
    });
}

/// A parked waker's place (`usize::MAX`: none), given back when the wait ends (or the
/// task is dropped).
struct ParkSlot(usize);

impl Drop for ParkSlot {
    fn drop(&mut self) {
        let i = self.0;
        if i != usize::MAX {
            // `try_with`: a task dropped while the thread ends finds no registry.
            let _ = PARKED.try_with(|p| {
                let mut p = p.borrow_mut();
                p.wakers[i] = None;
                p.free.push(i);
            });
        }
    }
}

/// Shuts this worker's idle client connections down (a graceful shutdown): each
/// closes now; one in the middle of a request closes after its answer. Runs on the
/// worker's thread.
pub fn close_idle() {
    let wakers: Vec<_> = PARKED.with(|p| {
        let mut p = p.borrow_mut();
        p.closing = true;
        p.wakers.iter_mut().filter_map(Option::take).collect()
    });
    for (w, _) in wakers {
        w.wake();
    }
}

/// Wakes this worker's idle connections whose idle deadline has passed, so they
/// close; the worker calls it once a second (idle timeouts are as precise as that).
pub fn sweep_idle(now: tokio::time::Instant) {
    let due: Vec<_> = PARKED.with(|p| {
        let mut p = p.borrow_mut();
        p.wakers
            .iter_mut()
            .filter(|e| e.as_ref().is_some_and(|(_, d)| *d <= now))
            .filter_map(Option::take)
            .collect()
    });
    for (w, _) in due {
        w.wake();
    }
}

/// One request on the connection: its head, the pipeline, the answer, what is left of
/// its body. False: the connection is done.
async fn exchange(
    ctx: &ConnCtx,
    io: &Client,
    rbuf: &mut Buf,
    limits: &crate::config::Limits,
    idle: Duration,
) -> bool {
    // 2. The head, within one idle period (from the first time it has to wait).
    let mut deadline = None;
    let parsed = loop {
        if !rbuf.is_empty() {
            match head::parse_request(rbuf.data(), limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(f) => {
                    // A head that starts as a HEAD request gets no body, even refused.
                    let head_req = head::starts_as_head(rbuf.data());
                    refuse(ctx, io, f, head_req).await;
                    return false;
                }
            }
        }
        let max = limits.max_request_head.max(buf::SIZE);
        match io::read_within(io, rbuf, max, &mut deadline, idle).await {
            Some(Ok(0)) | Some(Err(_)) | None => return false,
            Some(Ok(_)) => {}
        }
    };
    rbuf.consume(parsed.len);
    if parsed.parts.method == Method::CONNECT {
        refuse(ctx, io, Failure::ConnectRefused, false).await;
        return false;
    }

    // 3. The request, through the pipeline, in this task.
    let head_req = parsed.parts.method == Method::HEAD;
    let v10 = parsed.parts.version == http::Version::HTTP_10;
    let mut keep_alive = parsed.keep_alive;
    // A client that already sent more than this head (body, or pipelined
    // requests) is not watched for leaving: it waits for its answers.
    let watch_eof = rbuf.is_empty();
    let mut st = InState::new(
        parsed.framing,
        parsed.expect_continue,
        std::mem::take(rbuf),
        limits,
    );
    ctx.interim.store(!v10, Ordering::Relaxed);
    // The head stays here; the pipeline borrows it (moving it down through the
    // pipeline's futures cost a copy of its few hundred bytes at each level).
    let mut head = proxy::head::Head::from_raw(parsed.parts, parsed.fields);
    let body = crate::upstream::ReqBody::Client(Inbound { io, st: &mut st });
    // Pinned where it is made: moving the pipeline's state (several KiB) into the
    // watcher and then into this future's own state cost two copies per request.
    let resp = {
        let handling = std::pin::pin!(proxy::handle(ctx, &mut head, body));
        watch(io, watch_eof, handling).await
    };
    let Some(resp) = resp else {
        // The client left: the request was dropped (and recorded as such).
        return false;
    };
    let (rp, mut body) = resp.into_parts();
    if closing() {
        keep_alive = false;
    }

    // 4. A tunnel, once the upstream switched protocols.
    if let RespBody::Tunnel(t) = body {
        let mut out = buf::take();
        head::write_status(&mut out, rp.status);
        head::write_fields(&mut out, &rp.headers);
        out.extend_from_slice(b"\r\n");
        let ok = io::write_all2(io, &out, &t.early).await.is_ok();
        buf::give(out);
        if ok {
            let client_early = std::mem::take(&mut st.buf);
            tunnel(io, &t.upstream, client_early).await;
        }
        return false;
    }
    // A body the pipeline never read, on a request whose 100-continue was not
    // sent: the client may or may not send it; and a body that broke its framing:
    // where the next request starts is unknown. The connection cannot be reused.
    if (!st.done && (st.cont == Continue::Waiting || !st.drainable())) || st.failed {
        keep_alive = false;
    }

    // 5. The answer.
    let written = write_response(io, &rp, &mut body, head_req, v10, &mut keep_alive).await;
    drop(body);
    // The client may still be sending: a body nobody read, or bytes after this request.
    let unread = (!st.done && !st.failed) || !st.buf.is_empty();
    if written.is_err() || !keep_alive {
        shut(io, unread && written.is_ok()).await;
        return false;
    }
    // 6. What is left of the request body, before the next request.
    if !st.done && !drain(io, &mut st, idle).await {
        shut(io, true).await;
        return false;
    }
    *rbuf = std::mem::take(&mut st.buf);
    true
}

/// Runs a request's handling while watching its client: a client that closes the
/// connection (or only its sending side: no half-close, like hyper's default) before
/// its answer is ready drops the request, so the upstream exchange stops, its record
/// says 499 and bulkhead permits go back. Only a client that sent nothing past the
/// head is watched (`watching`); the watch ends at the first byte it sends meanwhile
/// (body or a pipelined request), which it leaves for the reader.
fn watch<F: std::future::Future>(io: &Client, watching: bool, handling: F) -> Watch<'_, F> {
    Watch {
        io,
        watching,
        handling,
    }
}

/// See [`watch`]. A struct rather than an `async fn`, which would keep the handling
/// future twice in its state (as argument and as pinned local: several KiB each).
struct Watch<'a, F> {
    io: &'a Client,
    watching: bool,
    handling: F,
}

impl<F: std::future::Future> std::future::Future for Watch<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `handling` is the one field pinned with the struct (projected just
        // below); `io` and `watching` are used through `&mut` and are not pinned.
        // Nothing moves `handling` out of a pinned `Watch`: it has no `Drop`, no method
        // takes `handling` by value or `mem::replace`s it, it is not `repr(packed)`,
        // and it is `Unpin` only when `F` is (the auto trait).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `handling` is pinned with the struct (see above), which is pinned.
        let handling = unsafe { Pin::new_unchecked(&mut this.handling) };
        if let Poll::Ready(r) = handling.poll(cx) {
            return Poll::Ready(Some(r));
        }
        if this.watching {
            match this.io.poll_gone(cx) {
                Poll::Ready(true) => return Poll::Ready(None),
                Poll::Ready(false) => this.watching = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// Relays bytes both ways until either side is done.
async fn tunnel(client: &Client, upstream: &TcpStream, mut early: Buf) {
    if !early.is_empty() && io::write_all(upstream, early.data()).await.is_err() {
        return;
    }
    early.consume(early.len());
    drop(early);
    let _ = tokio::io::copy_bidirectional(&mut io::Shared(client), &mut io::Shared(upstream)).await;
}

/// How long a lingering close waits for the client's next bytes, and at most in all.
const LINGER_IDLE: Duration = Duration::from_secs(2);
const LINGER_TOTAL: Duration = Duration::from_secs(10);

/// Closes the write side, so the client reads the end of the answer, then the close.
/// With `linger` (the client may still be sending: a body nobody read, a request
/// after this one), what it sends is read and dropped until it closes too, for at most
/// [`LINGER_IDLE`] between reads and [`LINGER_TOTAL`] in all (1 s while the worker
/// shuts down): closing a socket with unread bytes resets the connection, and the reset
/// throws away whatever of the answer the client has not read yet (nginx's lingering
/// close).
async fn shut(io: &Client, linger: bool) {
    io::shutdown(io).await;
    if linger {
        let total = if closing() {
            Duration::from_secs(1)
        } else {
            LINGER_TOTAL
        };
        io::linger(io, LINGER_IDLE, total).await;
    }
}

/// Answers a request refused before the pipeline (bad head, over a limit, CONNECT),
/// counted like an unrouted request, and closes.
async fn refuse(ctx: &ConnCtx, io: &Client, f: Failure, head_req: bool) {
    let resp = proxy::refused(ctx, f);
    let (rp, mut body) = resp.into_parts();
    let mut keep_alive = false;
    let _ = write_response(io, &rp, &mut body, head_req, false, &mut keep_alive).await;
    shut(io, false).await;
}

/// Reads and drops the rest of a request body the pipeline left unread: up to
/// [`DRAIN_LIMIT`] bytes within `idle`. False: close the connection instead.
async fn drain(io: &Client, st: &mut InState, idle: Duration) -> bool {
    if st.failed || !st.drainable() {
        return false;
    }
    let mut budget = DRAIN_LIMIT;
    let mut body = Inbound { io, st };
    let run = async {
        while let Some(f) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            match f {
                Ok(f) => {
                    let n = f.data_ref().map_or(0, |d| d.len() as u64);
                    if n > budget {
                        return false;
                    }
                    budget -= n;
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(idle, run).await.unwrap_or(false)
}

/// How a response body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length,
    Chunked,
    Close,
}

/// Writes an answer: head and body, the body framed by its length when known, else
/// chunked (HTTP/1.1) or by closing (HTTP/1.0). The head and a small first piece of
/// body go in one write.
async fn write_response(
    io: &Client,
    rp: &http::response::Parts,
    body: &mut RespBody,
    head_req: bool,
    v10: bool,
    keep_alive: &mut bool,
) -> std::io::Result<()> {
    let status = rp.status;
    let no_body = head_req
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = buf::take();
    head::write_status(&mut out, status);
    let map = &rp.headers;
    // An HTTP/1.1 upstream's fields go as they came (see `h1::head::RawFields`); those
    // the pipeline set (a fault's mark, the ladder's) replace any of the same name.
    let raw = body.take_fields();
    let mut length = None;
    // Most answers come with no field set by the pipeline: no lookup then.
    let has = |name| !map.is_empty() && map.contains_key(name);
    let mut dated = has(DATE);
    if let Some(r) = &raw {
        if map.is_empty() {
            out.extend_from_slice(r.lines());
        } else {
            for (n, v) in r.iter() {
                if !std::str::from_utf8(n).is_ok_and(|n| map.contains_key(n)) {
                    head::line(&mut out, n, v);
                }
            }
        }
        if !has(CONTENT_LENGTH) {
            length = r.length;
        }
        dated |= r.date;
    }
    drop(raw);
    let mut b = [0; 20];
    let exact = body.size_hint().exact();
    let mode = if no_body {
        head::write_fields(&mut out, map);
        if let Some(n) = length {
            head::line(&mut out, b"content-length", head::fmt_u64(&mut b, n));
        }
        Out::None
    } else if let Some(n) = exact {
        for (name, value) in map {
            if name != CONTENT_LENGTH {
                head::line(&mut out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        head::line(&mut out, b"content-length", head::fmt_u64(&mut b, n));
        Out::Length
    } else if length.is_some() || has(CONTENT_LENGTH) {
        head::write_fields(&mut out, map);
        if let Some(n) = length {
            head::line(&mut out, b"content-length", head::fmt_u64(&mut b, n));
        }
        Out::Length
    } else if !v10 {
        head::write_fields(&mut out, map);
        head::line(&mut out, b"transfer-encoding", b"chunked");
        Out::Chunked
    } else {
        head::write_fields(&mut out, map);
        *keep_alive = false;
        Out::Close
    };
    if !*keep_alive {
        head::line(&mut out, b"connection", b"close");
    } else if v10 {
        head::line(&mut out, b"connection", b"keep-alive");
    }
    if !dated {
        date(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    let r = write_body(io, &mut out, body, mode).await;
    buf::give(out);
    r
}

async fn write_body(
    io: &Client,
    out: &mut Vec<u8>,
    body: &mut RespBody,
    mode: Out,
) -> std::io::Result<()> {
    if mode == Out::None || body.is_end_stream() {
        if mode == Out::Chunked {
            out.extend_from_slice(chunked::LAST_CHUNK);
        }
        return io::write_all(io, out).await;
    }
    if let RespBody::Upstream(b) = body {
        if b.lends() {
            return relay(io, out, b, mode).await;
        }
    }
    // Whether any of the answer has gone out (until then the head is in `out`).
    let mut sent = false;
    loop {
        // Poll once; if the body has to wait, send what is gathered first.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                flush(io, out, &mut sent).await?;
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => return broken(io, out, sent).await,
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                put(io, out, &data, mode, &mut sent).await?;
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    end(io, out, mode).await
}

/// Relays an HTTP/1.1 upstream's body straight from the upstream's read buffer to the
/// client (`UpstreamBody::poll_piece`): no copy into a frame of its own, no allocation.
async fn relay(
    io: &Client,
    out: &mut Vec<u8>,
    b: &mut UpstreamBody,
    mode: Out,
) -> std::io::Result<()> {
    let mut sent = false;
    loop {
        // The rest of a long body to a plain client goes by splice (`h1::splice`).
        if let Some(c) = splice_to(io, mode, b) {
            if let Some(mut pipe) = Pipe::take() {
                let r = b.splice(c, &mut pipe, out, &mut sent).await;
                pipe.give();
                return match r {
                    Ok(()) => end(io, out, mode).await,
                    Err(Cut::Upstream) => broken(io, out, sent).await,
                    Err(Cut::Client(e)) => Err(e),
                };
            }
        }
        // Poll once; if the body has to wait, send what is gathered first.
        let ready = match poll_fn(|cx| Poll::Ready(b.poll_piece(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => {
                flush(io, out, &mut sent).await?;
                poll_fn(|cx| b.poll_piece(cx)).await
            }
        };
        match ready {
            None => break,
            Some(Err(_)) => return broken(io, out, sent).await,
            Some(Ok(())) => {
                put(io, out, b.piece(), mode, &mut sent).await?;
                b.advance();
                // All the upstream sent so far is gathered: it goes now, one write per
                // upstream read, so the client sees what the upstream sent whatever
                // comes next (a pause, or the connection cut).
                // (Unless the rest goes by splice: then with the first spliced bytes.)
                if !b.ended() && b.drained() && splice_to(io, mode, b).is_none() {
                    flush(io, out, &mut sent).await?;
                }
            }
        }
        if b.ended() {
            break;
        }
    }
    end(io, out, mode).await
}

/// The client's socket, if the rest of `b` may go to it by splice: a plain client, a
/// body relayed as it came (not re-chunked), and what `UpstreamBody::splice_left`
/// asks.
fn splice_to<'a>(io: &'a Client, mode: Out, b: &mut UpstreamBody) -> Option<&'a TcpStream> {
    match io {
        Client::Tcp(c) if mode == Out::Length && b.splice_left().is_some() => Some(c),
        _ => None,
    }
}

/// Writes what `out` has gathered, if anything (`sent`: some of the answer has gone out).
async fn flush(io: &Client, out: &mut Vec<u8>, sent: &mut bool) -> std::io::Result<()> {
    if !out.is_empty() {
        io::write_all(io, out).await?;
        out.clear();
        *sent = true;
    }
    Ok(())
}

/// Adds a piece of body to the answer: gathered in `out` when small, else written
/// with what `out` holds in one write (`sent`: some of the answer has gone out).
async fn put(
    io: &Client,
    out: &mut Vec<u8>,
    data: &[u8],
    mode: Out,
    sent: &mut bool,
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if mode == Out::Chunked {
        chunked::encode_size(out, data.len());
    }
    if data.len() > 4096 {
        io::write_all2(io, out, data).await?;
        out.clear();
        *sent = true;
    } else {
        out.extend_from_slice(data);
    }
    if mode == Out::Chunked {
        out.extend_from_slice(b"\r\n");
    }
    if out.len() >= buf::SIZE {
        flush(io, out, sent).await?;
    }
    Ok(())
}

/// The body has ended: the last chunk, and what `out` still holds.
async fn end(io: &Client, out: &mut Vec<u8>, mode: Out) -> std::io::Result<()> {
    if mode == Out::Chunked {
        out.extend_from_slice(chunked::LAST_CHUNK);
    }
    if !out.is_empty() {
        io::write_all(io, out).await?;
        out.clear();
    }
    Ok(())
}

/// The upstream broke the body. Before any of the answer left (`sent` false), the
/// client gets the 502 its record says (`upstream-body-cut`); after, it must see a
/// broken answer, not a short one that looks complete. The connection closes.
async fn broken(io: &Client, out: &mut Vec<u8>, sent: bool) -> std::io::Result<()> {
    if !sent {
        out.clear();
        let (rp, _) = Failure::UpstreamError.response().into_parts();
        head::write_status(out, rp.status);
        head::write_fields(out, &rp.headers);
        let body = Failure::UpstreamError.body();
        let mut b = [0; 20];
        head::line(
            out,
            b"content-length",
            head::fmt_u64(&mut b, body.len() as u64),
        );
        head::line(out, b"connection", b"close");
        date(out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    }
    if !out.is_empty() {
        let _ = io::write_all(io, out).await;
    }
    Err(std::io::ErrorKind::BrokenPipe.into())
}

/// Appends a `date` field, formatted once per second per worker.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == 29 {
                c.1.copy_from_slice(s.as_bytes());
                c.0 = secs;
            }
        }
        if c.0 == secs {
            head::line(out, b"date", &c.1);
        }
    });
}

/// Where `Expect: 100-continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// Not asked for, or already answered.
    No,
    /// Asked for; sent when the body is first read.
    Waiting,
    /// Being written; this many bytes went (all of them: being flushed).
    Sending(usize),
}

/// A request body's progress, owned by the connection loop and lent to [`Inbound`].
pub struct InState {
    /// The connection's read buffer (it may hold the next pipelined request too).
    buf: Buf,
    framing: Framing,
    decoder: Decoder,
    done: bool,
    failed: bool,
    cont: Continue,
}

impl InState {
    /// Whether what is left of the body may be read and dropped (see [`drain`]).
    fn drainable(&self) -> bool {
        !matches!(self.framing, Framing::Length(n) if n > DRAIN_LIMIT)
    }

    fn new(framing: Framing, expect: bool, buf: Buf, limits: &crate::config::Limits) -> Self {
        let done = framing == Framing::Empty;
        InState {
            buf,
            framing,
            decoder: Decoder::new(limits.max_chunk_extension, limits.max_request_head),
            done,
            failed: false,
            cont: if expect && !done {
                Continue::Waiting
            } else {
                Continue::No
            },
        }
    }
}

/// The request body as the pipeline reads it: straight from the client connection's
/// buffer and socket, decoded from its framing (see the module doc).
pub struct Inbound<'a> {
    io: &'a Client,
    st: &'a mut InState,
}

/// Why a request body could not be read.
#[derive(Debug)]
pub struct BodyError(&'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyError {}

impl Inbound<'_> {
    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.st.failed = true;
        self.st.done = true;
        Poll::Ready(Some(Err(Box::new(BodyError(why)))))
    }
}

impl Body for Inbound<'_> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.st.done {
                return Poll::Ready(None);
            }
            // The client waits for our go-ahead before it sends the body.
            // (Sent even when some of the body came early, as nginx does: the client
            // may be waiting for it to send the rest.)
            while let Continue::Waiting | Continue::Sending(_) = this.st.cont {
                let sent = match this.st.cont {
                    Continue::Sending(n) => n,
                    _ => 0,
                };
                if sent == CONTINUE.len() {
                    match ready!(this.io.poll_flush(cx)) {
                        Ok(()) => this.st.cont = Continue::No,
                        Err(_) => return this.fail("client connection closed"),
                    }
                    continue;
                }
                match ready!(this.io.poll_write(cx, &CONTINUE[sent..])) {
                    Ok(n) if n > 0 => this.st.cont = Continue::Sending(sent + n),
                    _ => return this.fail("client connection closed"),
                }
            }
            if !this.st.buf.is_empty() {
                let data = this.st.buf.data();
                match &mut this.st.framing {
                    Framing::Length(left) => {
                        let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        let chunk = Bytes::copy_from_slice(&data[..n]);
                        this.st.buf.consume(n);
                        *left -= n as u64;
                        this.st.done = *left == 0;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Framing::Chunked => match this.st.decoder.decode(data) {
                        Ok(d) => {
                            let chunk = d.data.map(|r| Bytes::copy_from_slice(&data[r]));
                            this.st.buf.consume(d.consumed);
                            this.st.done = d.done;
                            if let Some(c) = chunk {
                                return Poll::Ready(Some(Ok(Frame::data(c))));
                            }
                            if d.done {
                                return Poll::Ready(None);
                            }
                        }
                        Err(_) => return this.fail("malformed chunked body"),
                    },
                    Framing::Empty | Framing::Close => {
                        this.st.done = true;
                        return Poll::Ready(None);
                    }
                }
            }
            match ready!(this.io.poll_read_into(cx, &mut this.st.buf, buf::SIZE)) {
                Ok(0) => return this.fail("client closed the connection inside the body"),
                Ok(_) => {}
                Err(_) => return this.fail("client connection failed"),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.st.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.st.framing {
            _ if self.st.done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for Inbound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}
