//! The own engine's connection loop (the HTTP/1.x client side): one task per
//! connection reads request heads, runs each request through the pipeline
//! (`proxy::handle`) in that same task, and writes the answer (`server::answer`), in
//! order (pipelined requests wait in the buffer).
//!
//! Between requests the connection holds no buffer (see `h1::buf`). The request body
//! is read lazily, as the pipeline asks for it (`h1::inbound`); a body nobody read is
//! drained or the connection closed before the next request is read: its sending side
//! first, then what the client still sends is read and dropped for a while, so the
//! answer is not lost to a reset (a lingering close, see `shut`). An upgrade becomes a
//! tunnel only once the upstream's `101` has arrived (CVE-2026-2833); the bytes after
//! an upgrade request's head are read as HTTP until then.

use super::answer::write_response;
use crate::h1::buf::{self, Buf};
use crate::h1::inbound::{self, InState};
use crate::h1::io::{self, Client};
use crate::h1::parse;
use crate::h1::pooled::Pooled;
use crate::h1::write;
use crate::message::{Failure, Head, ReqBody, RespBody};
use crate::proxy::{self, ConnCtx, Finish};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
/// Serves one HTTP/1.x connection (plain, or TLS that chose HTTP/1.1) until it closes,
/// the client idles past `client_idle_timeout`, or the worker shuts down
/// ([`close_idle`]).
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
            match parse::parse_request(rbuf.data(), limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(refusal) => {
                    // A head that starts as a HEAD request gets no body, even refused.
                    let head_req = parse::starts_as_head(rbuf.data());
                    refuse(ctx, io, refusal.into(), head_req).await;
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
    if parsed.parts.method == http::Method::CONNECT {
        refuse(ctx, io, Failure::ConnectRefused, false).await;
        return false;
    }

    // 3. The request, through the pipeline, in this task.
    let head_req = parsed.parts.method == http::Method::HEAD;
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
    let mut head = Head::from_raw(parsed.parts, parsed.fields);
    let body = ReqBody::Client(st.reader(io));
    // Pinned where it is made: moving the pipeline's state (several KiB) into the
    // watcher and then into this future's own state cost two copies per request.
    let answer = {
        let handling = std::pin::pin!(proxy::handle(ctx, &mut head, body));
        watch(io, watch_eof, handling).await
    };
    let Some(answer) = answer else {
        // The client left: the request was dropped (and recorded as such).
        return false;
    };
    let (rp, mut body) = answer.response.into_parts();
    let mut finish: Option<Finish> = answer.finish;
    if closing() {
        keep_alive = false;
    }

    // 4. A tunnel, once the upstream switched protocols.
    if let RespBody::Tunnel(t) = body {
        let mut out = buf::take();
        write::write_status(&mut out, rp.status);
        write::write_fields(&mut out, &rp.headers);
        out.extend_from_slice(b"\r\n");
        let ok = io::write_all2(io, &out, &t.early).await.is_ok();
        buf::give(out);
        if ok {
            tunnel(io, &t.upstream, st.take_buf()).await;
        }
        return false;
    }
    // A body the pipeline never read, on a request whose 100-continue was not
    // sent: the client may or may not send it; and a body that broke its framing:
    // where the next request starts is unknown. The connection cannot be reused.
    if st.blocks_reuse() {
        keep_alive = false;
    }

    // 5. The answer, and what ends with its body.
    let written = write_response(
        io,
        &rp,
        &mut body,
        &mut finish,
        head_req,
        v10,
        &mut keep_alive,
    )
    .await;
    drop(body);
    drop(finish);
    // The client may still be sending: a body nobody read, or bytes after this request.
    let unread = st.unread();
    if written.is_err() || !keep_alive {
        shut(io, unread && written.is_ok()).await;
        return false;
    }
    // 6. What is left of the request body, before the next request.
    if !st.done() && !inbound::drain(io, &mut st, idle).await {
        shut(io, true).await;
        return false;
    }
    *rbuf = st.take_buf();
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
    let mut finish = None;
    let _ = write_response(
        io,
        &rp,
        &mut body,
        &mut finish,
        head_req,
        false,
        &mut keep_alive,
    )
    .await;
    shut(io, false).await;
}
