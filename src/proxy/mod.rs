//! The request pipeline: the whole life of a request, top to bottom, in [`handle`].
//!
//! ```text
//! snapshot → conformance → route match → cell → faults → bulkheads → attempts → fallback ladder → record
//!               │ 400/414/501      │ 404     │ 400/503 │ abort    │ 503 full   │ 502/503/504  │ cluster, stale, static
//! ```
//!
//! The record (SLI, metrics, access log) is written when the answer has really ended,
//! which for a streamed body is after `handle` returns (see [`record`]); it also holds
//! the bulkhead permits until then. Faults ([`fault`]) come before the bulkheads so
//! that an injected abort never takes capacity and an injected delay is not counted
//! as work in progress; the route's bulkhead ([`bulkhead`]) comes before its
//! cluster's, so a route over its own limit never takes a slot its cluster's other
//! routes could use. The attempt loop, over the breakers (`gate`) and the retry
//! budget (`upstream::retry`), is `attempts`; the fallback ladder's run is
//! `ladder`, its rungs `fallback`'s.

mod attempts;
pub mod conform;
pub mod forward;
mod ladder;
pub mod record;
pub mod route;

use crate::message::body::materialize;
use crate::message::{Failure, Head, ReqBody, RespBody};
use crate::metrics::SloResult;
use crate::snapshot::{ClusterSnap, RouteSnap, Shared};
use crate::upstream::now_ms;
use crate::{bulkhead, cells, fallback, fault};
use attempts::{Answered, Attempts, Failed};
use http::{HeaderValue, Method, Response};
pub use record::Finish;
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
    /// The client connection, when the own HTTP/1.1 engine serves it (see `h1`); `None`
    /// for connections hyper serves (h2 and h2c).
    pub stream: Option<crate::h1::io::Client>,
    /// Whether the current request's client takes interim (1xx) answers: HTTP/1.1 on
    /// the own engine.
    pub interim: std::sync::atomic::AtomicBool,
}

/// What [`handle`] gives the connection driver: the answer, and what must happen when
/// its body ends (`None` when the answer is whole already: a body the gateway made, or
/// one that has ended).
pub struct Answer {
    /// The response, its body streaming.
    pub response: Response<RespBody>,
    /// The record and the stale copy that end with the body; see [`Finish`].
    pub finish: Option<Finish>,
}

impl Answer {
    /// An answer with nothing left to finish.
    fn whole(response: Response<RespBody>) -> Self {
        Answer {
            response,
            finish: None,
        }
    }
}

/// Handles one request; never fails: every failure is a response.
pub async fn handle(ctx: &ConnCtx, head: &mut Head, body: ReqBody<'_>) -> Answer {
    let start = Instant::now();
    // 1. One config version for the whole request.
    let snap = ctx.shared.snapshot.load_full();
    let log = LogLine::new(
        snap.config.access_log,
        ctx,
        &head.parts.method,
        &head.parts.uri,
    );
    let Some(listener) = snap.listener(&ctx.listener) else {
        return Answer::whole(listener_gone(ctx, start, log.as_deref()));
    };

    // 2. Conformance: refuse what an upstream could read otherwise than we do, and put
    //    the host where routing and the upstream both read it.
    if let Err(f) = conform::check_request(head, &snap.config.limits) {
        return Answer::whole(unrouted(&listener.unmatched, f, start, log.as_deref()));
    }

    // 3. Route.
    let Some(route) = route::resolve(listener, head) else {
        let f = Failure::NoRoute;
        return Answer::whole(unrouted(&listener.unmatched, f, start, log.as_deref()));
    };
    // From here the request is recorded exactly once, even if this future is dropped
    // (the client left: 499) or the body breaks after the head.
    let mut record = Record::new(route.clone(), start, log);

    // 4. Cell: a route to a cell set runs on the cluster of the request's cell.
    let target = match &route.cells {
        None => Ok(&route.cluster),
        Some(set) => pick_cell(set, head),
    };

    // 5. Faults (drills): a delay holds the request, an abort answers it here; the
    //    upstream never sees an aborted request.
    let injected = {
        let active = ctx.shared.faults.load();
        let header = route
            .faults
            .config
            .allow_header
            .then(|| head.get(fault::FAULT_HEADER.as_str()))
            .flatten();
        route.faults.decide(&route.name, header, &active, now_ms)
    };
    // A delay as long as the route's timeout is a slow upstream the timeout cuts: the
    // request times out there (504, or the fallback ladder's answer), as it would if
    // the upstream itself were that slow.
    let mut delay_timed_out = false;
    if let Some(d) = injected.delay {
        route.faults.count(fault::DELAY);
        record.fault_injected();
        delay_timed_out = d >= route.timeout;
        tokio::time::sleep(d.min(route.timeout)).await;
    }
    if let Some(status) = injected.abort {
        route.faults.count(fault::ABORT);
        record.fault_injected();
        record.head(status, None);
        record.finish(status, "fault-abort", true);
        return Answer::whole(fault::abort_response(status));
    }

    // 6. What the fallback ladder needs is kept first, and only on routes that have
    //    one: the head (to ask another cluster, and to key the stale cache).
    let ladder = route
        .fallback
        .as_ref()
        .filter(|f| f.serves(&head.parts.method));
    // Only the cluster and stale rungs read the head: a static-only ladder copies nothing.
    let kept = ladder
        .filter(|f| f.cluster.is_some() || f.stale.is_some())
        .map(|_| ladder::kept_of(head));
    let bodiless = http_body::Body::is_end_stream(&body);

    // 7. Bulkheads (the route's, then its cluster's; the permits ride in the record
    //    until the answer has ended; a full one sheds with 503 bulkhead-full), then the
    //    attempt loop, within the route's timeout.
    let result = match target {
        _ if delay_timed_out => Err(Failed::at(Failure::Timeout, None)),
        Ok(cell_cluster) => {
            if route.cells.is_some() {
                record.cluster(&cell_cluster.name);
            }
            let (cluster, zone) = split(route, cell_cluster, &head.parts.method);
            let mut shed = false;
            // The route's timeout runs from here: from the request's start, unless a
            // bulkhead or an injected delay may have held it (a clock read saved).
            let mut from = (injected.delay.is_none()).then_some(start);
            for b in [route.bulkhead.as_ref(), cluster.bulkhead.as_ref()]
                .into_iter()
                .flatten()
            {
                from = None;
                match b.acquire(Instant::now()).await {
                    Ok(permit) => record.hold(permit),
                    Err(bulkhead::Shed) => {
                        shed = true;
                        break;
                    }
                }
            }
            if shed {
                Err(Failed::at(Failure::BulkheadFull, None))
            } else {
                // Pinned where it is made (see `server::h1`'s `exchange`).
                let at = from.unwrap_or_else(Instant::now) + route.timeout;
                let attempts = Attempts::new(ctx, route, cluster, zone, at);
                let run = std::pin::pin!(attempts.run(head, body, from));
                crate::timer::timeout_at(at, run)
                    .await
                    .unwrap_or(Err(Failed::at(Failure::Timeout, None)))
            }
        }
        Err(f) => Err(Failed::at(f, None)),
    };

    // 8. Fallback ladder, when the cluster failed, shed or broke and the route has one.
    let (result, degraded) = match ladder {
        Some(f) if ladder::needs_fallback(&result) => {
            ladder::run(ctx, route, f, kept.as_ref(), bodiless, result).await
        }
        _ => (result, None),
    };
    if let (Some(fallback::Kind::Cluster), Some(c)) =
        (degraded, ladder.and_then(|f| f.cluster.as_ref()))
    {
        record.cluster(&c.name);
    }

    // 9. The answer, and its record: now for an answer the gateway made or a body
    //    that has already ended, else when the body ends (the connection driver
    //    finishes it then).
    let mut finish = None;
    let resp = match result {
        Ok(Answered {
            response: mut resp,
            endpoint,
        }) => {
            let status = resp.status();
            record.head(status.as_u16(), endpoint.as_ref());
            // A good answer from an upstream may be kept for the stale rung.
            let store = match (ladder, &kept, degraded) {
                (Some(f), Some(h), None | Some(fallback::Kind::Cluster)) if f.stale.is_some() => {
                    materialize(&mut resp);
                    f.pending(&h.method, &h.uri, &h.headers, status, resp.headers())
                }
                _ => None,
            };
            match resp.body_mut() {
                RespBody::Upstream(b) if !b.ended() => finish = Some(Finish::new(record, store)),
                RespBody::Upstream(_) => {
                    if let Some(p) = store {
                        p.commit(Instant::now());
                    }
                    record.finish_body(true);
                }
                // A tunnel's record ends with its 101.
                RespBody::Tunnel(_) => record.finish_body(true),
                // A gateway-made answer of the ladder: good for an SLO only if the
                // SLO counts its status as good (see docs/failover.md).
                RespBody::Full(_) => match degraded {
                    Some(k) => record.finish(status.as_u16(), k.reason(), false),
                    None => record.finish_body(true),
                },
            }
            resp
        }
        Err(Failed {
            failure: f,
            endpoint,
        }) => {
            record.head(f.status().as_u16(), endpoint.as_ref());
            // The gateway's answers to upstream failures are never good; its 4xx to a
            // malformed request is the client's doing and counts by status.
            record.finish(f.status().as_u16(), f.reason(), !f.is_client_fault());
            f.response()
        }
    };
    Answer {
        response: delayed(resp, injected),
        finish,
    }
}

/// Marks the answer of a request an injected delay held.
fn delayed(mut resp: Response<RespBody>, injected: fault::Injected) -> Response<RespBody> {
    if let Some(d) = injected.delay {
        fault::mark_delay(resp.headers_mut(), d);
    }
    resp
}

/// The read/write split: the cluster a request goes to (writes may go to another
/// cluster, or to one zone of `base`, the route's or its cell's cluster), and the zone
/// it is kept to, if any.
fn split<'r>(
    route: &'r RouteSnap,
    base: &'r Arc<ClusterSnap>,
    method: &Method,
) -> (&'r Arc<ClusterSnap>, Option<&'r str>) {
    let write = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    match (&route.write_cluster, write) {
        (Some(c), true) => (c, None),
        _ => (base, route.write_zone.as_deref().filter(|_| write)),
    }
}

/// The cluster of the request's cell, counting the request against its home cell.
fn pick_cell<'a>(
    set: &'a cells::CellSet<ClusterSnap>,
    head: &Head,
) -> Result<&'a Arc<ClusterSnap>, Failure> {
    let key = route::hash_key(&set.key, head);
    let now = now_ms();
    match set.pick(key, |i| set.live(i, now)) {
        Ok((serve, home, outcome)) => {
            set.members[home].requests[outcome as usize].inc();
            Ok(&set.members[serve].cluster)
        }
        Err((home, why)) => {
            if let Some(h) = home {
                set.members[h].requests[cells::Outcome::CellDown as usize].inc();
            }
            Err(match why {
                cells::NoCell::NoKey => Failure::NoCellKey,
                cells::NoCell::Down => Failure::CellDown,
            })
        }
    }
}

/// Answers and records a request the engine refused before the pipeline (a malformed
/// or oversized head, CONNECT).
pub fn refused(ctx: &ConnCtx, f: Failure) -> Response<RespBody> {
    let snap = ctx.shared.snapshot.load();
    if let Some(l) = snap.listener(&ctx.listener) {
        l.unmatched
            .record(f.status().as_u16(), SloResult::Good, 0.0);
    }
    f.response()
}

/// A request on a connection whose listener a reload removed (it was accepted before
/// the reload): 503, counted under the listener's name with no route, logged.
#[cold]
fn listener_gone(ctx: &ConnCtx, start: Instant, log: Option<&LogLine>) -> Response<RespBody> {
    tracing::warn!(listener = %ctx.listener, "request on a listener a reload removed; answering 503");
    let unmatched = ctx
        .shared
        .metrics
        .route(&ctx.listener, &"".into(), &"".into(), None);
    unrouted(&unmatched, Failure::ListenerGone, start, log)
}

/// Answers and records a request refused before any route matched, in `unmatched`
/// (its listener's series with no route).
fn unrouted(
    unmatched: &crate::metrics::RouteMetrics,
    f: Failure,
    start: Instant,
    log: Option<&LogLine>,
) -> Response<RespBody> {
    let status = f.status().as_u16();
    unmatched.record(status, SloResult::Good, start.elapsed().as_secs_f64());
    if let Some(log) = log {
        log.unrouted(status, start, f.reason());
    }
    f.response()
}
