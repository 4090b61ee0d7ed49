//! The request pipeline: the whole life of a request, top to bottom, in [`handle`].
//!
//! ```text
//! snapshot → conformance → route match → endpoint pick (balancer) → forward (timeouts) → record
//!               │ 400/414/501      │ no match: 404            │ failure: 502/503/504 + x-ninefold-reason
//! ```
//!
//! The record (SLI, metrics, access log) is written when the answer has really ended,
//! which for a streamed body is after `handle` returns (see [`record`]). Later stages
//! of the design (faults, bulkheads, breakers, retries, fallbacks) slot in between
//! these steps; each is its own module.

pub mod body;
pub mod conform;
pub mod error;
pub mod forward;
pub mod record;
pub mod route;

use crate::server::Shared;
use body::RespBody;
use error::Failure;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use record::{LogLine, Record};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// What a downstream connection knows about itself; one per connection, shared by its
/// requests.
pub struct ConnCtx {
    /// Gateway state.
    pub shared: Arc<Shared>,
    /// Name of the listener that accepted the connection.
    pub listener: Arc<str>,
    /// Client address.
    pub client: SocketAddr,
    /// Client IP as a header value, built once per connection for `x-forwarded-for`.
    pub client_ip: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The worker's count of open connections and tunnels, which shutdown waits on.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests started on this connection (the idle check reads it).
    pub started: std::sync::atomic::AtomicU64,
    /// Requests whose answer is not finished yet (handler running or body streaming).
    pub responding: std::sync::atomic::AtomicU32,
}

/// Handles one request; never fails: every failure is a response.
pub async fn handle(ctx: &ConnCtx, req: Request<Incoming>) -> Response<RespBody> {
    let start = Instant::now();
    // 1. One config version for the whole request.
    let snap = ctx.shared.snapshot.load_full();
    let Some(listener) = snap.listener(&ctx.listener) else {
        tracing::warn!(listener = %ctx.listener, "request on a listener a reload removed; answering 503");
        return Failure::ListenerGone.response();
    };
    let (mut parts, body) = req.into_parts();
    let log = LogLine::new(snap.config.access_log, ctx, &parts.method, &parts.uri);

    // 2. Conformance: refuse what an upstream could read otherwise than we do, and put
    //    the host where routing and the upstream both read it.
    if let Err(f) = conform::check_request(&mut parts, &snap.config.limits) {
        return unrouted(listener, f, start, log.as_deref());
    }

    // 3. Route.
    let Some(route) = route::resolve(listener, &parts) else {
        return unrouted(listener, Failure::NoRoute, start, log.as_deref());
    };
    // From here the request is recorded exactly once, even if this future is dropped
    // (the client left: 499) or the body breaks after the head.
    let mut record = Record::new(route.clone(), start, log);
    let cluster = &route.cluster;

    // 4. Endpoint pick.
    let result = if cluster.endpoints.is_empty() {
        Err((Failure::NoEndpoint, None))
    } else {
        let key = cluster
            .hash_on
            .as_ref()
            .and_then(|k| route::hash_key(k, &parts));
        let i = cluster.balancer.pick(key, |i| {
            cluster.endpoints[i]
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        let ep = &cluster.endpoints[i];
        // 5. Forward, within the route's timeout.
        match tokio::time::timeout(
            route.timeout,
            forward::send(ctx, cluster, ep, parts, body, route.idle_timeout),
        )
        .await
        {
            Ok(Ok(resp)) => Ok((resp, i)),
            Ok(Err(f)) => Err((f, Some(i))),
            Err(_) => Err((Failure::Timeout, Some(i))),
        }
    };

    // 6. The answer, and its record: now for an answer the gateway made or a body
    //    that has already ended, else when the body ends.
    match result {
        Ok((mut resp, i)) => {
            record.head(resp.status().as_u16(), Some(&cluster.endpoint_names[i]));
            match resp.body_mut() {
                RespBody::Upstream(b) if !b.ended() => b.record = Some(record),
                _ => record.finish_body(true),
            }
            resp
        }
        Err((f, i)) => {
            record.head(f.status().as_u16(), i.map(|i| &cluster.endpoint_names[i]));
            // The gateway's answers to upstream failures are never good; its 4xx to a
            // malformed request is the client's doing and counts by status.
            record.finish(f.status().as_u16(), f.reason(), !f.is_client_fault());
            f.response()
        }
    }
}

/// Answers and records a request refused before any route matched.
fn unrouted(
    listener: &crate::snapshot::ListenerSnap,
    f: Failure,
    start: Instant,
    log: Option<&LogLine>,
) -> Response<RespBody> {
    let status = f.status().as_u16();
    listener
        .unmatched
        .record(status, true, start.elapsed().as_secs_f64());
    if let Some(log) = log {
        log.unrouted(status, start, f.reason());
    }
    f.response()
}
