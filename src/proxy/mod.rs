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
//! routes could use. The attempt loop is here, over the breakers
//! ([`crate::upstream::breaker`]) and the retry budget ([`crate::upstream::retry`]);
//! the fallback ladder is [`fallback`].

pub mod bulkhead;
pub mod cells;
pub mod conform;
pub mod fallback;
pub mod fault;
pub mod forward;
pub mod record;
pub mod route;

use crate::config::{BreakerConfig, RetryOn, UpstreamProtocol};
use crate::message::body::materialize;
use crate::message::{Failure, Head, ReqBody, RespBody};
use crate::snapshot::Shared;
use crate::snapshot::{ClusterSnap, RouteSnap};
use crate::upstream::breaker::{self, Admit, Breaker, State, Transition};
use crate::upstream::retry::{self, Cause};
use crate::upstream::select::{NoPick, Tried};
use crate::upstream::{now_ms, now_ms_at, Ejection};
use http::{HeaderValue, Method, Request, Response, StatusCode};
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
    if let Some(d) = injected.delay {
        route.faults.injected[fault::DELAY].inc();
        record.fault_injected();
        tokio::time::sleep(d).await;
    }
    if let Some(status) = injected.abort {
        route.faults.injected[fault::ABORT].inc();
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
        .map(|_| kept_of(head));
    let bodiless = http_body::Body::is_end_stream(&body);

    // 7. Bulkheads (the route's, then its cluster's; the permits ride in the record
    //    until the answer has ended; a full one sheds with 503 bulkhead-full), then the
    //    attempt loop, within the route's timeout.
    let result = match target {
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
                Err((Failure::BulkheadFull, None))
            } else {
                // Pinned where it is made (see `h1::server`'s `exchange`).
                let run = std::pin::pin!(attempts(ctx, route, cluster, zone, head, body, from));
                let at = from.unwrap_or_else(Instant::now) + route.timeout;
                crate::timer::timeout_at(at, run)
                    .await
                    .unwrap_or(Err((Failure::Timeout, None)))
                    .map(|(r, n)| (r, Some(n)))
            }
        }
        Err(f) => Err((f, None)),
    };

    // 8. Fallback ladder, when the cluster failed, shed or broke and the route has one.
    let (result, degraded) = match ladder {
        Some(f) if needs_fallback(&result) => {
            fallback_ladder(ctx, route, f, kept.as_ref(), bodiless, result).await
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
        Ok((mut resp, name)) => {
            let status = resp.status();
            record.head(status.as_u16(), name.as_ref());
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
        Err((f, name)) => {
            record.head(f.status().as_u16(), name.as_ref());
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

/// An answer: the response and the endpoint that gave it (none for one the gateway
/// made), or the failure and the endpoint that failed.
type Outcome = Result<(Response<RespBody>, Option<Arc<str>>), (Failure, Option<Arc<str>>)>;

/// The cluster of the request's cell, counting the request against its home cell.
fn pick_cell<'a>(set: &'a cells::CellSet, head: &Head) -> Result<&'a Arc<ClusterSnap>, Failure> {
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

/// Whether an outcome calls for the fallback ladder: a gateway failure (not the
/// client's fault) or an upstream 5xx.
fn needs_fallback(r: &Outcome) -> bool {
    match r {
        Ok((resp, _)) => resp.status().is_server_error(),
        Err((f, _)) => !f.is_client_fault() && *f != Failure::ListenerGone,
    }
}

/// Tries the rungs in order (another cluster, stale, static); the first that answers
/// wins. Without an answer from any rung, the cluster's own outcome stands.
async fn fallback_ladder(
    ctx: &ConnCtx,
    route: &RouteSnap,
    f: &fallback::RouteFallback,
    head: Option<&Kept>,
    bodiless: bool,
    primary: Outcome,
) -> (Outcome, Option<fallback::Kind>) {
    use fallback::Kind;
    // Another cluster: the request again, which needs its body again; a request with
    // a body skips this rung (the body went to the first cluster).
    if let (Some(cluster), Some(head), true) = (&f.cluster, head, bodiless) {
        let mut again = rebuild(head);
        let run = attempts(
            ctx,
            route,
            cluster,
            None,
            &mut again,
            ReqBody::Full(None),
            None,
        );
        if let Ok(Ok((resp, name))) = crate::timer::timeout(route.timeout, run).await {
            if !resp.status().is_server_error() {
                f.count(Kind::Cluster);
                return (
                    Ok((fallback::degraded(resp, Kind::Cluster), Some(name))),
                    Some(Kind::Cluster),
                );
            }
        }
    }
    if let Some(resp) = head.and_then(|h| f.stale(&h.method, &h.uri, &h.headers, Instant::now())) {
        f.count(Kind::Stale);
        return (Ok((resp, None)), Some(Kind::Stale));
    }
    if let Some(resp) = f.static_answer() {
        f.count(Kind::Static);
        return (Ok((resp, None)), Some(Kind::Static));
    }
    (primary, None)
}

/// The attempt loop on `cluster` (the route's, its cell's, its write cluster or a
/// fallback cluster; `zone` restricts it to one zone's endpoints): pick an endpoint →
/// forward within `per_try_timeout` → classify → retry elsewhere when that is safe,
/// allowed and within budget (see `upstream::retry`). `read` is a clock reading the
/// caller took just before (the request's start, when nothing held the request since),
/// which the breaker, the budget and the first pick use rather than read the clock
/// again. Returns the answer and the endpoint that gave it.
async fn attempts(
    ctx: &ConnCtx,
    route: &RouteSnap,
    cluster: &ClusterSnap,
    zone: Option<&str>,
    head: &mut Head,
    body: ReqBody<'_>,
    read: Option<Instant>,
) -> Result<(Response<RespBody>, Arc<str>), (Failure, Option<Arc<str>>)> {
    let cfg = &route.retry;
    // The clock as the caller just read it, if it did (the request's start).
    let now = read.map_or_else(now_ms, now_ms_at);
    // The cluster's breaker, before anything else: open, it answers at once.
    let bcfg = cluster.breaker.as_ref();
    let mut cluster_probe = None;
    if let Some(b) = bcfg.filter(|b| b.scope.cluster()) {
        let (admit, t) = cluster.select.live.breaker.admit(now);
        if let Some(t) = t {
            breaker::log(&cluster.name, "", &t);
        }
        match admit {
            Admit::Reject => return Err((Failure::CircuitOpen, None)),
            Admit::Probe => cluster_probe = Some(Probe::new(cluster, None, b)),
            Admit::Pass => {}
        }
    }
    route.budget.request(now);
    let key = cluster
        .hash_on
        .as_ref()
        .and_then(|k| route::hash_key(k, head));
    let upgrade = forward::prepare(ctx, cluster, head, &body).map_err(|f| (f, None))?;

    // What a retry needs: the head again (only if a sent request may be repeated), and
    // the body again (kept whole when small enough; see `upstream::retry`).
    let may_retry = cfg.attempts > 1 && !upgrade;
    let repeatable =
        may_retry && retry::repeatable(&head.parts.method, head.contains("idempotency-key"), cfg);
    // The clock read above serves the first pick too, unless reading the body may have
    // waited (a body already whole, or none, is kept without a wait).
    let mut first_now = Some(now);
    let body = match body {
        ReqBody::Full(b) => ReqBody::Full(b),
        b if repeatable || (may_retry && cluster.protocol == UpstreamProtocol::Http2) => {
            if !http_body::Body::is_end_stream(&b) {
                first_now = None;
            }
            keep_for_replay(b, cfg.buffer)
                .await
                .map_err(|f| (f, None))?
        }
        b => b,
    };
    let replay = match &body {
        ReqBody::Full(b) => Some(b.clone()),
        _ => None,
    };

    let mut tried = Tried::default();
    // Endpoints whose breaker refused this request a trial permit after a pick.
    let mut skip = Tried::default();
    let mut refused = 0;
    // The head stays here for every attempt (`forward::send` borrows it); the body is
    // handed to each attempt and comes back unsent, or again from the replay copy.
    let mut next = Some(body);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let now = first_now.take().unwrap_or_else(now_ms);
        let pick = cluster
            .select
            .pick_with(key, zone, &tried, &skip, now, fastrand::f64())
            .map_err(|e| {
                let f = match e {
                    NoPick::Empty => Failure::NoEndpoint,
                    NoPick::NoneHealthy => Failure::NoHealthyEndpoint,
                    NoPick::CircuitOpen => Failure::CircuitOpen,
                };
                (f, None)
            })?;
        let i = pick.index;
        let ep = &cluster.select.endpoints[i];
        // The endpoint's breaker: a half-open one was eligible while it had trials
        // left, but another request may have taken the last one since; then pick again.
        let mut ep_probe = None;
        if let Some(b) = bcfg.filter(|b| b.scope.endpoint()) {
            let (admit, t) = ep.breaker.admit(now);
            if let Some(t) = t {
                breaker::log(&cluster.name, &cluster.endpoint_names[i], &t);
            }
            match admit {
                Admit::Reject => {
                    skip.add(i);
                    refused += 1;
                    // `skip` forgets indices past 256; the bound keeps this finite.
                    if refused > cluster.select.endpoints.len() {
                        return Err((Failure::CircuitOpen, None));
                    }
                    attempt -= 1;
                    continue;
                }
                Admit::Probe => ep_probe = Some(Probe::new(cluster, Some(i), b)),
                Admit::Pass => {}
            }
        }
        tried.add(i);
        let name = &cluster.endpoint_names[i];
        let Some(body) = next.take() else {
            return Err((Failure::UpstreamError, Some(name.clone())));
        };
        for p in [&mut ep_probe, &mut cluster_probe].into_iter().flatten() {
            p.sent = true;
        }
        let send = std::pin::pin!(forward::send(
            ctx,
            cluster,
            ep,
            head,
            body,
            route.idle_timeout,
            upgrade,
        ));
        let outcome = match cfg.per_try_timeout {
            Some(t) => crate::timer::timeout(t, send)
                .await
                .unwrap_or(Err(forward::SendError {
                    failure: Failure::Timeout,
                    cause: Some(Cause::Timeout),
                    unsent: None,
                })),
            None => send.await,
        };

        // Classify: what the breakers count, what the endpoint did (outlier
        // detection), and whether to retry.
        if let Some(b) = bcfg {
            let failed = breaker_failure(&b.on, &outcome);
            if b.scope.endpoint() {
                match ep_probe.take() {
                    Some(p) => p.finish(failed, now),
                    None => {
                        if let Some(t) = failed.and_then(|f| ep.breaker.record(b, f, false, now)) {
                            breaker::log(&cluster.name, name, &t);
                        }
                    }
                }
            }
            if b.scope.cluster() {
                // Only the first attempt of a probing request is the probe.
                match cluster_probe.take() {
                    Some(p) => p.finish(failed, now),
                    None => {
                        let live = &cluster.select.live.breaker;
                        if let Some(t) = failed.and_then(|f| live.record(b, f, false, now)) {
                            breaker::log(&cluster.name, "", &t);
                        }
                    }
                }
            }
        }
        let (cause, unsent, answer) = match outcome {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if status >= 500 && cluster.outlier.count_5xx {
                    outlier_failure(cluster, i, now);
                } else {
                    ep.success(&cluster.outlier, &cluster.select.live, now);
                }
                if !(status >= 500 && cfg.on.status(status)) {
                    return Ok((resp, name.clone()));
                }
                (Cause::Status(status), None, Ok(resp))
            }
            Err(e) => {
                let Some(cause) = e.cause else {
                    if e.failure == Failure::UpstreamError {
                        outlier_failure(cluster, i, now);
                    }
                    return Err((e.failure, Some(name.clone())));
                };
                outlier_failure(cluster, i, now);
                (cause, e.unsent, Err(e.failure))
            }
        };
        let give_up = |answer: Result<Response<RespBody>, Failure>| match answer {
            Ok(resp) => Ok((resp, name.clone())),
            Err(f) => Err((f, Some(name.clone()))),
        };
        // An upgrade is never retried: its client side was handed to the first attempt.
        // Nor once the cluster's breaker is not closed: a retry would be traffic the
        // breaker exists to hold back.
        let cluster_held = bcfg.is_some_and(|b| {
            b.scope.cluster() && cluster.select.live.breaker.state(now_ms()) != State::Closed
        });
        if !may_retry || attempt >= cfg.attempts || !cause.allowed(cfg) || cluster_held {
            return give_up(answer);
        }
        // The body again: the unsent one, or the kept copy.
        let again = match unsent {
            Some(b) => Some(b),
            None if cause.unsent() || repeatable => {
                replay.as_ref().map(|b| ReqBody::Full(b.clone()))
            }
            None => None,
        };
        let Some(b) = again else {
            return give_up(answer);
        };
        // Wait: the upstream's Retry-After on a 503, else a jittered backoff.
        let mut answer = answer;
        let wait = match &mut answer {
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                materialize(resp);
                retry::retry_after(resp.headers())
            }
            _ => None,
        }
        .unwrap_or_else(|| retry::backoff(cfg, attempt, fastrand::f64()));
        if !route.budget.withdraw(now_ms()) {
            return give_up(answer);
        }
        route.retries[cause.index()].inc();
        drop(answer);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        next = Some(b);
    }
}

/// Records a failed exchange against endpoint `i`, ejecting it when that is due.
fn outlier_failure(cluster: &ClusterSnap, i: usize, now: u64) {
    let ep = &cluster.select.endpoints[i];
    let n = cluster.select.endpoints.len();
    if let Some(Ejection::Ejected { until, times }) =
        ep.failure(&cluster.outlier, &cluster.select.live, n, now)
    {
        tracing::warn!(
            cluster = %cluster.name,
            endpoint = %cluster.endpoint_names[i],
            times,
            for_ms = until.saturating_sub(now),
            "endpoint ejected after {} failures in a row",
            cluster.outlier.consecutive_failures
        );
        cluster.ejections[i].inc();
    }
}

/// Whether an attempt's outcome is a failure for the breaker, per its `on`: `None`
/// when it counts neither way (the client's own fault, a condition `on` does not
/// list, an h2 stream refused unprocessed). Any answer is a success unless its status
/// is listed.
fn breaker_failure(
    on: &RetryOn,
    outcome: &Result<Response<RespBody>, forward::SendError<'_>>,
) -> Option<bool> {
    let counts = |listed: bool| listed.then_some(true);
    match outcome {
        Ok(resp) => Some(on.status(resp.status().as_u16())),
        Err(e) => match e.cause {
            Some(Cause::ConnectFailure) => counts(on.connect_failure),
            Some(Cause::Reset) => counts(on.reset),
            Some(Cause::Timeout) => counts(on.timeout),
            Some(Cause::Status(s)) => Some(on.status(s)),
            Some(Cause::RefusedStream) => None,
            // An answer the upstream got wrong broke the exchange like a reset.
            None if e.failure == Failure::UpstreamError => counts(on.reset),
            None => None,
        },
    }
}

/// A breaker's trial permit held by this request. Its outcome is recorded by
/// [`Probe::finish`]; dropped unrecorded (the route's timeout fired, the client left,
/// the request failed before it was sent), the permit is given back if the upstream
/// never saw the request, and otherwise the trial counts as abandoned, so a half-open
/// breaker never waits forever for an answer that will not come.
struct Probe<'a> {
    cluster: &'a ClusterSnap,
    /// The endpoint's breaker, or `None` for the cluster's.
    endpoint: Option<usize>,
    cfg: &'a BreakerConfig,
    /// Whether the request was handed to the upstream.
    sent: bool,
    done: bool,
}

impl<'a> Probe<'a> {
    fn new(cluster: &'a ClusterSnap, endpoint: Option<usize>, cfg: &'a BreakerConfig) -> Self {
        Probe {
            cluster,
            endpoint,
            cfg,
            sent: false,
            done: false,
        }
    }

    fn breaker(&self) -> &'a Breaker {
        match self.endpoint {
            Some(i) => &self.cluster.select.endpoints[i].breaker,
            None => &self.cluster.select.live.breaker,
        }
    }

    fn log(&self, t: Option<Transition>) {
        if let Some(t) = t {
            let ep = self
                .endpoint
                .map_or("", |i| &*self.cluster.endpoint_names[i]);
            breaker::log(&self.cluster.name, ep, &t);
        }
    }

    /// Records the trial's outcome (`None`: it counts neither way, so its permit goes
    /// back for another request).
    fn finish(mut self, failed: Option<bool>, now: u64) {
        self.done = true;
        match failed {
            Some(f) => self.log(self.breaker().record(self.cfg, f, true, now)),
            None => self.breaker().release_probe(),
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.sent {
            self.log(self.breaker().abandon_probe(self.cfg, now_ms()));
        } else {
            self.breaker().release_probe();
        }
    }
}

/// What the fallback ladder keeps of a request head: to ask another cluster, and to
/// key the stale cache (extensions are not kept: an upgrade is never retried). Its
/// fields are a map: ladders are not the hot path.
struct Kept {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

fn kept_of(h: &Head) -> Kept {
    Kept {
        method: h.parts.method.clone(),
        uri: h.parts.uri.clone(),
        version: h.parts.version,
        headers: h.to_map(),
    }
}

fn rebuild(h: &Kept) -> Head {
    let (mut p, ()) = Request::new(()).into_parts();
    p.method = h.method.clone();
    p.uri = h.uri.clone();
    p.version = h.version;
    p.headers = h.headers.clone();
    Head::new(p)
}

/// Reads a body of known size up to `limit` into memory so it can be sent again; a
/// larger or unsized body streams (and its request is retried only while unsent).
async fn keep_for_replay(body: ReqBody<'_>, limit: usize) -> Result<ReqBody<'_>, Failure> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    if body.is_end_stream() {
        return Ok(ReqBody::Full(None));
    }
    match body.size_hint().exact() {
        Some(n) if n as usize <= limit => match body.collect().await {
            Ok(c) => Ok(ReqBody::Full(Some(c.to_bytes()))),
            // The client's body broke its own framing (or the client left).
            Err(_) => Err(Failure::BadBody),
        },
        _ => Ok(body),
    }
}

/// Answers and records a request the engine refused before the pipeline (a malformed
/// or oversized head, CONNECT).
pub fn refused(ctx: &ConnCtx, f: Failure) -> Response<RespBody> {
    let snap = ctx.shared.snapshot.load();
    if let Some(l) = snap.listener(&ctx.listener) {
        l.unmatched.record(f.status().as_u16(), true, 0.0);
    }
    f.response()
}

/// A request on a connection whose listener a reload removed (it was accepted before
/// the reload): 503, counted under the listener's name with no route, logged.
#[cold]
fn listener_gone(ctx: &ConnCtx, start: Instant, log: Option<&LogLine>) -> Response<RespBody> {
    tracing::warn!(listener = %ctx.listener, "request on a listener a reload removed; answering 503");
    let unmatched = ctx.shared.metrics.route(&ctx.listener, "", "", None);
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
    unmatched.record(status, true, start.elapsed().as_secs_f64());
    if let Some(log) = log {
        log.unrouted(status, start, f.reason());
    }
    f.response()
}
