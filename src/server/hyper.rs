//! hyper's side of the client connections: h2 and h2c, each request handed to the
//! pipeline (`proxy::handle`) as the own engine hands its own. One idle timer per
//! connection instead of hyper's per-request header timer; the answer's body is
//! wrapped so the connection counts as answering until its last frame, and so the
//! request's [`Finish`] learns how the body ended.

use crate::message::{BoxError, Head, ReqBody, RespBody};
use crate::proxy::{self, ConnCtx, Finish};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// hyper's connection settings for a worker's client connections. Head size: hyper
/// answers 431 when a request head does not fit its read buffer, so the buffer's limit
/// is the head limit (hyper's floor is 8 KiB; the config refuses less). Header count:
/// hyper's parser takes 100 on the stack, a different count costs a heap allocation
/// per request, so it is set only when configured otherwise.
pub(super) fn conn_builder(limits: &crate::config::Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header timer: `serve_conn`'s idle check covers slow and idle clients at
    // one timer per connection instead of one per request.
    let mut h1 = builder.http1();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_request_head.max(crate::config::MIN_HEAD_LIMIT));
    if limits.max_request_headers != crate::config::DEFAULT_MAX_REQUEST_HEADERS {
        h1.max_headers(limits.max_request_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(u32::try_from(limits.max_request_head).unwrap_or(u32::MAX));
    builder
}

pub(super) async fn serve_conn<I>(
    io: TokioIo<I>,
    ctx: Arc<ConnCtx>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // `client_idle_timeout`, read when the connection opens: a connection with no
    // request answering and none started for a whole period (so after one to two
    // periods) is asked to close gracefully; if it is still there a period later, it is
    // a client that never finished its headers, and it is dropped. One timer per
    // connection, re-armed once per period, instead of hyper's per-request header
    // timer, which cost a timer and an allocation on every request.
    let idle_period = ctx.shared.snapshot.load().config.client_idle_timeout;
    let watched = Arc::new(Activity::default());
    let activity = watched.clone();
    let svc = service_fn(move |req| {
        activity.started.fetch_add(1, Ordering::Relaxed);
        // Counts the request as answering until its body is done (or the request is
        // dropped): the idle check must never cut a slow answer.
        let guard = Responding::new(ctx.clone(), activity.clone());
        async move {
            let (parts, body) = req.into_parts();
            let mut head = Head::new(parts);
            let answer = proxy::handle(&guard.ctx, &mut head, ReqBody::Stream(body)).await;
            let mut resp = answer.response;
            // hyper writes the answer from its header map.
            crate::message::body::materialize(&mut resp);
            let finish = answer.finish;
            Ok::<_, Infallible>(resp.map(|inner| ConnBody {
                inner,
                finish,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // Built once: re-creating the wait on every wake-up of the connection would cost a
    // lock of the watch channel per wake-up.
    let shutdown = shutdown.wait_for(|s| *s);
    tokio::pin!(shutdown);
    let mut idle_check =
        tokio::time::interval_at(tokio::time::Instant::now() + idle_period, idle_period);
    let mut seen = 0;
    let mut draining = false;
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => break,
            r = shutdown.as_mut(), if !draining => {
                draining = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = idle_check.tick() => {
                let started = watched.started.load(Ordering::Relaxed);
                let idle = started == seen && watched.responding.load(Ordering::Relaxed) == 0;
                seen = started;
                if idle && asked_to_close {
                    // Still open a period after a graceful close of an idle connection:
                    // hyper is waiting for headers that do not come.
                    break;
                }
                if idle && !draining {
                    draining = true;
                    asked_to_close = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What the idle check of a connection hyper serves reads.
#[derive(Default)]
struct Activity {
    /// Requests started on this connection.
    started: AtomicU32,
    /// Requests whose answer is not finished yet (handler running or body streaming).
    responding: AtomicU32,
}

/// Marks a request as answering while alive (see `Activity::responding`).
struct Responding {
    ctx: Arc<ConnCtx>,
    activity: Arc<Activity>,
}

impl Responding {
    fn new(ctx: Arc<ConnCtx>, activity: Arc<Activity>) -> Self {
        activity.responding.fetch_add(1, Ordering::Relaxed);
        Responding { ctx, activity }
    }
}

impl Drop for Responding {
    fn drop(&mut self) {
        self.activity.responding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body as sent: the pipeline's body, what ends with it (its record, a
/// stale copy: told each frame, then how the body ended; dropped unfinished, the client
/// left), and the mark that the request is still answering.
struct ConnBody {
    inner: RespBody,
    finish: Option<Finish>,
    _guard: Responding,
}

impl http_body::Body for ConnBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match (&r, &mut this.finish) {
            (_, None) | (Poll::Pending, _) => None,
            (Poll::Ready(Some(Ok(frame))), Some(f)) => {
                if let Some(d) = frame.data_ref() {
                    f.data(d);
                }
                this.inner.is_end_stream().then_some(true)
            }
            (Poll::Ready(None), _) => Some(true),
            (Poll::Ready(Some(Err(_))), _) => Some(false),
        };
        if let (Some(ok), Some(f)) = (ended, ended.and_then(|_| this.finish.take())) {
            f.end(ok);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
