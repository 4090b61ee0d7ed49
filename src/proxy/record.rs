//! The record of one request: SLI, metrics and access log, written exactly once, when
//! the answer has really ended.
//!
//! A status line is not an outcome: an upstream can send `200 OK` and die halfway
//! through the body, and a client can leave before its answer. So a routed request
//! carries a [`Record`] from route match to the end of its response body (past
//! `proxy::handle`, in the [`Finish`] the connection driver holds while it writes the
//! body), and the record is written when the body ends cleanly (the status as sent),
//! when the upstream breaks the body (502, `upstream-body-cut`: bad for the SLO), or
//! when the request is dropped unanswered or half-answered (499, `client-gone`).
//!
//! The record also holds the request's bulkhead permits, so a request counts as in
//! progress until its last body byte, and it knows whether a fault was injected: an
//! SLO with `count_faults: false` leaves such requests out entirely (an injected
//! abort is otherwise bad, like any answer the gateway makes instead of the upstream).

use super::ConnCtx;
use crate::bulkhead::Permit;
use crate::config::AccessLog;
use crate::fallback::Pending;
use crate::metrics::SloResult;
use crate::snapshot::RouteSnap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Reason logged when the upstream broke a body already under way.
pub const BODY_CUT: &str = "upstream-body-cut";
/// Reason logged when the client left before the end of its answer.
pub const CLIENT_GONE: &str = "client-gone";

/// One request's pending record; written by [`Record::finish`] or, if never finished,
/// on drop as a request the client abandoned.
pub struct Record {
    route: Arc<RouteSnap>,
    start: Instant,
    /// Time to the response head: the latency SLI and the duration histogram measure
    /// this, whatever the body does after.
    head_time: Option<Duration>,
    status: u16,
    log: Option<Box<LogLine>>,
    done: bool,
    /// A fault was injected into this request.
    fault: bool,
    /// Bulkhead permits (route, cluster), given back when the record is written or
    /// dropped, which is when the answer has ended.
    permits: [Option<Permit>; 2],
}

/// What must happen when an answer's body ends, held by the connection driver that
/// writes the body: the request's [`Record`], written then, and the stale cache's copy
/// of the body, stored then if the body ended cleanly (see `fallback`). Dropped
/// before its end (the client left, or its connection failed), the record says 499
/// and the copy is not stored.
pub struct Finish {
    record: Record,
    store: Option<Box<Pending>>,
}

/// What the access log needs beyond the route; built only when the log is on.
pub struct LogLine {
    mode: AccessLog,
    client: SocketAddr,
    listener: Arc<str>,
    method: http::Method,
    uri: http::Uri,
    endpoint: Option<Arc<str>>,
    /// The cluster that answered when it is not the route's own (a cell's, a fallback
    /// cluster's).
    cluster: Option<Arc<str>>,
}

// === impl Record ===

impl Record {
    /// Starts the record of a routed request.
    pub fn new(route: Arc<RouteSnap>, start: Instant, log: Option<Box<LogLine>>) -> Self {
        Record {
            route,
            start,
            head_time: None,
            status: 0,
            log,
            done: false,
            fault: false,
            permits: [None, None],
        }
    }

    /// Notes that a fault was injected (see `count_faults`).
    pub fn fault_injected(&mut self) {
        self.fault = true;
    }

    /// Keeps a bulkhead permit until the answer has ended.
    pub fn hold(&mut self, permit: Permit) {
        if let Some(slot) = self.permits.iter_mut().find(|p| p.is_none()) {
            *slot = Some(permit);
        }
    }

    /// Notes the answer's head: its status, the endpoint that answered, and the time.
    pub fn head(&mut self, status: u16, endpoint: Option<&Arc<str>>) {
        self.status = status;
        self.head_time = Some(self.start.elapsed());
        if let (Some(log), Some(ep)) = (&mut self.log, endpoint) {
            log.endpoint = Some(ep.clone());
        }
    }

    /// Notes the cluster the request runs on, when it is not the route's own (a cell's
    /// or a fallback cluster's), for the access log.
    pub fn cluster(&mut self, name: &Arc<str>) {
        if let Some(log) = &mut self.log {
            log.cluster = Some(name.clone());
        }
    }

    /// Writes the record: the answer ended with `status`; `reason` is empty for an
    /// upstream's own answer, else the gateway's reason. `gateway_failure` marks an
    /// answer the gateway made because the upstream failed: never good for an SLO.
    pub fn finish(mut self, status: u16, reason: &str, gateway_failure: bool) {
        self.write(status, reason, gateway_failure);
    }

    /// Writes the record of a body that ended cleanly (`ok`) or was cut upstream.
    pub fn finish_body(mut self, ok: bool) {
        if ok {
            self.write(self.status, "", false);
        } else {
            self.write(502, BODY_CUT, true);
        }
    }

    fn write(&mut self, status: u16, reason: &str, gateway_failure: bool) {
        self.done = true;
        let route = &*self.route;
        let head_time = self.head_time.unwrap_or_else(|| self.start.elapsed());
        let result = match &route.slo {
            // Left out of the SLO: the drill is not the service's failure.
            Some(s) if self.fault && !s.count_faults => SloResult::Excluded,
            Some(s) => {
                let good = s.indicator.is_good(status, head_time, gateway_failure);
                s.counters.record(good);
                if good {
                    SloResult::Good
                } else {
                    SloResult::Bad
                }
            }
            None => SloResult::Good,
        };
        route
            .metrics
            .record(status, result, head_time.as_secs_f64());
        // The gateway's own answers; a client that left got none.
        if !reason.is_empty() && reason != CLIENT_GONE {
            route.metrics.errors.inc(reason);
        }
        if let Some(log) = &self.log {
            access_log(
                log,
                &route.name,
                log.cluster.as_deref().unwrap_or(&route.cluster.name),
                status,
                self.start,
                reason,
            );
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            // Dropped unanswered, or mid-body: the client went away. Bad for the SLO
            // (an upstream hang with impatient clients must not look like no traffic).
            self.write(499, CLIENT_GONE, true);
        }
    }
}

// === impl Finish ===

impl Finish {
    /// What ends with a body: its record and the stale cache's copy, if any.
    pub fn new(record: Record, store: Option<Box<Pending>>) -> Self {
        Finish { record, store }
    }

    /// Whether the body's bytes must be seen ([`Finish::data`]): the stale cache keeps
    /// a copy. Such a body is relayed through the gateway, never spliced.
    #[inline]
    pub fn copies(&self) -> bool {
        self.store.is_some()
    }

    /// A piece of the body, as it goes to the client.
    #[inline]
    pub fn data(&mut self, d: &[u8]) {
        if let Some(p) = &mut self.store {
            p.data(d);
        }
    }

    /// The body ended: as the upstream framed it (`ok`), or cut by the upstream.
    pub fn end(self, ok: bool) {
        if let (Some(p), true) = (self.store, ok) {
            p.commit(Instant::now());
        }
        self.record.finish_body(ok);
    }
}

// === impl LogLine ===

impl LogLine {
    /// The access-log context of a request, when `mode` is not off.
    pub fn new(
        mode: AccessLog,
        ctx: &ConnCtx,
        method: &http::Method,
        uri: &http::Uri,
    ) -> Option<Box<Self>> {
        (mode != AccessLog::Off).then(|| {
            Box::new(LogLine {
                mode,
                client: ctx.client,
                listener: ctx.listener.clone(),
                method: method.clone(),
                uri: uri.clone(),
                endpoint: None,
                cluster: None,
            })
        })
    }

    /// Writes the line of a request that was answered before any route (no route, or
    /// refused as malformed).
    pub fn unrouted(&self, status: u16, start: Instant, reason: &str) {
        access_log(self, "", "", status, start, reason);
    }
}

fn access_log(
    line: &LogLine,
    route: &str,
    cluster: &str,
    status: u16,
    start: Instant,
    reason: &str,
) {
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    let path = line.uri.path();
    let method = &line.method;
    let endpoint = line.endpoint.as_deref().unwrap_or("");
    match line.mode {
        AccessLog::Off => {}
        AccessLog::Text => tracing::info!(
            target: "ninefold::access::text",
            "{} {} {method} {path} {status} {duration_ms:.3}ms route={route} cluster={cluster} endpoint={endpoint} reason={reason}",
            line.client,
            line.listener,
        ),
        AccessLog::Json => tracing::info!(
            target: "ninefold::access::json",
            client = %line.client,
            listener = &*line.listener,
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
