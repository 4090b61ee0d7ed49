//! The request pipeline: the whole life of a request, top to bottom, in [`handle`].
//!
//! ```text
//! snapshot → route match → endpoint pick (balancer) → forward (timeouts) → record
//!                 │ no match: 404            │ failure: 502/503/504 + x-ninefold-reason
//! ```
//!
//! Later stages of the design (faults, bulkheads, breakers, retries, fallbacks, SLOs)
//! slot in between these steps; each is its own module.

pub mod body;
pub mod error;
pub mod forward;
pub mod route;

use crate::config::AccessLog;
use crate::server::Shared;
use body::RespBody;
use error::Failure;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
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
        return Failure::ListenerGone.response();
    };
    let (parts, body) = req.into_parts();
    let log = snap.config.access_log;
    let method_path = (log != AccessLog::Off).then(|| (parts.method.clone(), parts.uri.clone()));

    // 2. Route.
    let Some(route) = route::resolve(listener, &parts) else {
        let resp = Failure::NoRoute.response();
        listener
            .unmatched
            .record(404, true, start.elapsed().as_secs_f64());
        if let Some((m, u)) = method_path {
            access_log(log, ctx, "", "", "", &m, &u, 404, start, "no-route");
        }
        return resp;
    };
    let cluster = &route.cluster;
    // A client that goes away before its answer still made a request: when this
    // future is dropped unanswered, the guard counts it (status 499, bad for the SLO).
    let mut abandoned = Abandoned {
        route,
        start,
        armed: true,
    };

    // 3. Endpoint pick.
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
        // 4. Forward, within the route's timeout.
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

    // 5. The answer.
    let (resp, ep, reason) = match result {
        Ok((resp, i)) => (resp, Some(i), ""),
        Err((f, i)) => (f.response(), i, f.reason()),
    };
    // 6. Record: SLI, metrics, access log.
    abandoned.armed = false;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let good = match &route.slo {
        Some(s) => {
            // The gateway's own answers to upstream failures are never good; its 400
            // to a malformed request is the client's doing and counts by status.
            let gateway_failure = !reason.is_empty() && status >= 500;
            let good = s.indicator.is_good(status, elapsed, gateway_failure);
            s.counters.record(good);
            good
        }
        None => true,
    };
    route.metrics.record(status, good, elapsed.as_secs_f64());
    if let Some((m, u)) = method_path {
        let ep_name = ep.map_or("", |i| &*cluster.endpoint_names[i]);
        access_log(
            log,
            ctx,
            &route.name,
            &cluster.name,
            ep_name,
            &m,
            &u,
            status,
            start,
            reason,
        );
    }
    resp
}

/// Counts a request whose client left before the answer (see [`handle`]).
struct Abandoned<'a> {
    route: &'a crate::snapshot::RouteSnap,
    start: Instant,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let good = match &self.route.slo {
            Some(s) => {
                s.counters.record(false);
                false
            }
            None => true,
        };
        self.route.metrics.record(499, good, elapsed);
    }
}

#[allow(clippy::too_many_arguments)]
fn access_log(
    mode: AccessLog,
    ctx: &ConnCtx,
    route: &str,
    cluster: &str,
    endpoint: &str,
    method: &http::Method,
    uri: &http::Uri,
    status: u16,
    start: Instant,
    reason: &str,
) {
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    let path = uri.path();
    match mode {
        AccessLog::Off => {}
        AccessLog::Text => tracing::info!(
            target: "ninefold::access::text",
            "{} {} {method} {path} {status} {duration_ms:.3}ms route={route} cluster={cluster} endpoint={endpoint} reason={reason}",
            ctx.client,
            ctx.listener,
        ),
        AccessLog::Json => tracing::info!(
            target: "ninefold::access::json",
            client = %ctx.client,
            listener = &*ctx.listener,
            method = %method,
            path,
            status,
            duration_ms,
            route,
            cluster,
            endpoint,
            reason,
        ),
    }
}
