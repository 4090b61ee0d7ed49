//! The attempt loop on one cluster (the route's, its cell's, its write cluster or a
//! fallback cluster), in small named steps:
//!
//! ```text
//! cluster's breaker → keep what a retry needs → [ pick an endpoint its breaker admits
//!   → send within per_try_timeout → classify → retry? (cause listed, budget, body) ]
//! ```
//!
//! The breakers are met through `gate`; [`classify`] counts an attempt's outcome (for
//! the breakers and outlier detection) and gives its [`Verdict`]: it stands, or a
//! retry may mend it;
//! [`Attempts::again`] decides whether and when the request goes again, under
//! `upstream::retry`'s rules: a request that may have reached an upstream is repeated
//! only when it is repeatable and its body can be sent again (see `upstream::retry`).

use super::forward::{self, SendError};
use super::ConnCtx;
use crate::config::{BreakerConfig, RetryConfig, UpstreamProtocol};
use crate::gate::{self, Gate, Probe};
use crate::message::body::materialize;
use crate::message::{Failure, Head, ReqBody, RespBody};
use crate::snapshot::{ClusterSnap, RouteSnap};
use crate::upstream::breaker::State;
use crate::upstream::retry::{self, Cause};
use crate::upstream::select::{NoPick, Tried};
use crate::upstream::{now_ms, now_ms_at, Ejection};
use bytes::Bytes;
use http::{Response, StatusCode};
use std::sync::Arc;
use tokio::time::Instant;

/// An answer, and the endpoint that gave it (none for one the gateway made).
pub(super) struct Answered {
    /// The upstream's (or the ladder's) response, its body streaming.
    pub response: Response<RespBody>,
    /// The endpoint that answered.
    pub endpoint: Option<Arc<str>>,
}

/// A failure, and the endpoint that failed (none when no endpoint was reached).
pub(super) struct Failed {
    /// What the client gets.
    pub failure: Failure,
    /// The endpoint that failed.
    pub endpoint: Option<Arc<str>>,
}

/// One request's attempts on one cluster.
pub(super) struct Attempts<'a> {
    ctx: &'a ConnCtx,
    route: &'a RouteSnap,
    cluster: &'a ClusterSnap,
    /// Only this zone's endpoints (a write kept to one zone of `cluster`).
    zone: Option<&'a str>,
    /// When the route's timeout ends the attempts (a `Retry-After` must fit before).
    deadline: Instant,
}

/// What an attempt's outcome is, once classified.
enum Verdict {
    /// The answer (or the failure) stands: nothing to retry.
    Stands,
    /// A failure a retry may mend, and its cause (the outcome stays the caller's: it
    /// is the answer to give when there is no retry).
    Retry(Cause),
}

/// What the loop keeps for a retry: the body again, when it is held whole.
struct Replay {
    body: Option<Option<Bytes>>,
    /// A request that may have reached the upstream may be sent again.
    repeatable: bool,
    /// Retries are allowed at all (more than one attempt, not an Upgrade).
    allowed: bool,
}

/// The endpoints an attempt may not pick again: those tried, and those whose breaker
/// refused this request a trial permit after a pick.
#[derive(Default)]
struct Picked {
    tried: Tried,
    skip: Tried,
    refused: usize,
}

// === impl Failed ===

impl Failed {
    /// `failure`, at `endpoint` if one was reached.
    pub(super) fn at(failure: Failure, endpoint: Option<&Arc<str>>) -> Self {
        Failed {
            failure,
            endpoint: endpoint.cloned(),
        }
    }
}

// === impl Attempts ===

impl<'a> Attempts<'a> {
    /// The attempts of a request of `route` on `cluster` (kept to `zone`, if any),
    /// which the route's timeout ends at `deadline`.
    pub(super) fn new(
        ctx: &'a ConnCtx,
        route: &'a RouteSnap,
        cluster: &'a ClusterSnap,
        zone: Option<&'a str>,
        deadline: Instant,
    ) -> Self {
        Attempts {
            ctx,
            route,
            cluster,
            zone,
            deadline,
        }
    }

    /// Runs the loop: see the module doc. `read` is a clock reading the caller took
    /// just before (the request's start, when nothing held the request since), which
    /// the breaker, the budget and the first pick use rather than read the clock again.
    pub(super) async fn run(
        &self,
        head: &mut Head,
        body: ReqBody<'_>,
        read: Option<Instant>,
    ) -> Result<Answered, Failed> {
        let (route, cluster) = (self.route, self.cluster);
        let cfg = &route.retry;
        let now = read.map_or_else(now_ms, now_ms_at);
        // 1. The cluster's breaker, before anything else: open, it answers at once.
        let mut cluster_probe = match self.cluster_gate() {
            Some(g) => g
                .admit(now)
                .map_err(|_| Failed::at(Failure::CircuitOpen, None))?,
            None => None,
        };
        route.budget.request(now);
        let key = cluster
            .hash_on
            .as_ref()
            .and_then(|k| super::route::hash_key(k, head));
        let upgrade =
            forward::prepare(self.ctx, cluster, head, &body).map_err(|f| Failed::at(f, None))?;

        // 2. What a retry needs: the body again (kept whole when small enough).
        let allowed = cfg.attempts > 1 && !upgrade;
        let keyed = || head.contains("idempotency-key");
        let repeatable = allowed && retry::repeatable(&head.parts.method, keyed, cfg);
        // The clock read above serves the first pick too, unless reading the body may
        // have waited (a body already whole, or none, is kept without a wait).
        let mut first_now = Some(now);
        let keep = repeatable || (allowed && cluster.protocol == UpstreamProtocol::Http2);
        let body = match body {
            ReqBody::Full(b) => ReqBody::Full(b),
            b if keep && http_body::Body::is_end_stream(&b) => ReqBody::Full(None),
            b if keep => {
                first_now = None;
                keep_for_replay(b, cfg.buffer)
                    .await
                    .map_err(|f| Failed::at(f, None))?
            }
            b => b,
        };
        // A repeatable request's answer is held until its body is whole (up to
        // `retry.buffer`), so an upstream cut between head and body is retried like a
        // reset (see `forward::send`).
        let hold = (repeatable && cfg.on.reset).then_some(cfg.buffer);
        let replay = Replay {
            body: match &body {
                ReqBody::Full(b) => Some(b.clone()),
                _ => None,
            },
            repeatable,
            allowed,
        };

        // The head stays here for every attempt (`forward::send` borrows it); the body
        // is handed to each attempt and comes back unsent, or again from the replay
        // copy.
        let mut picked = Picked::default();
        let mut next = Some(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = first_now.take().unwrap_or_else(now_ms);
            // 3. An endpoint, and its breaker's admission.
            let (i, mut ep_probe) = self.pick(key, &mut picked, now)?;
            picked.tried.add(i);
            let name = &cluster.endpoint_names[i];
            let Some(body) = next.take() else {
                return Err(Failed::at(Failure::UpstreamError, Some(name)));
            };
            // 4. The exchange, within the per-try timeout.
            for p in [&mut ep_probe, &mut cluster_probe].into_iter().flatten() {
                p.sent();
            }
            let ep = &cluster.select.endpoints[i];
            let idle = route.idle_timeout;
            let timing = ep.figures.start();
            let send = std::pin::pin!(forward::send(
                self.ctx, cluster, ep, head, body, idle, upgrade, hold
            ));
            let outcome = match route.retry.per_try_timeout {
                Some(t) => crate::timer::timeout(t, send)
                    .await
                    .unwrap_or(Err(SendError {
                        failure: Failure::Timeout,
                        cause: Some(Cause::Timeout),
                        unsent: None,
                    })),
                None => send.await,
            };
            // 5. What it counts as; only the first attempt of a probing request is the
            //    cluster's probe.
            let probes = [ep_probe, cluster_probe.take()];
            // The endpoint's figures: no answer or a 5xx is its error; a request the
            // client broke is not.
            timing.finish(match &outcome {
                Ok(r) => r.status().is_server_error(),
                Err(e) => !e.failure.is_client_fault(),
            });
            let Verdict::Retry(cause) = classify(cluster, i, &outcome, probes, cfg, now) else {
                return match outcome {
                    Ok(response) => Ok(Answered {
                        response,
                        endpoint: Some(name.clone()),
                    }),
                    Err(e) => Err(Failed::at(e.failure, Some(name))),
                };
            };
            let (unsent, last) = match outcome {
                Ok(response) => (None, Ok(response)),
                Err(e) => (e.unsent, Err(e.failure)),
            };
            // 6. Again, if that is allowed, safe and within budget.
            match self.again(attempt, cause, unsent, last, &replay).await {
                Ok(b) => next = Some(b),
                Err(last) => {
                    return match last {
                        Ok(response) => Ok(Answered {
                            response,
                            endpoint: Some(name.clone()),
                        }),
                        Err(f) => Err(Failed::at(f, Some(name))),
                    }
                }
            }
        }
    }

    /// The cluster's breaker, when the cluster has one of that scope.
    fn cluster_gate(&self) -> Option<Gate<'a>> {
        let c = self.cluster;
        let b = c.breaker.as_ref().filter(|b| b.scope.cluster())?;
        Some(Gate::new(&c.select.live.breaker, b, &c.name, ""))
    }

    /// Endpoint `i`'s breaker, when the cluster has breakers of that scope.
    fn endpoint_gate(&self, i: usize) -> Option<Gate<'a>> {
        let c = self.cluster;
        let b: &BreakerConfig = c.breaker.as_ref().filter(|b| b.scope.endpoint())?;
        let e = &c.select.endpoints[i];
        Some(Gate::new(&e.breaker, b, &c.name, &c.endpoint_names[i]))
    }

    /// Picks an endpoint not picked yet whose breaker admits the request. A half-open
    /// breaker was eligible while it had trials left, but another request may have
    /// taken the last one since: then the endpoint is skipped and another picked.
    fn pick(
        &self,
        key: Option<u64>,
        picked: &mut Picked,
        now: u64,
    ) -> Result<(usize, Option<Probe<'a>>), Failed> {
        let select = &self.cluster.select;
        loop {
            let pick = select
                .pick_with(
                    key,
                    self.zone,
                    &picked.tried,
                    &picked.skip,
                    now,
                    fastrand::f64(),
                )
                .map_err(|e| {
                    let f = match e {
                        NoPick::Empty => Failure::NoEndpoint,
                        NoPick::NoneHealthy => Failure::NoHealthyEndpoint,
                        NoPick::CircuitOpen => Failure::CircuitOpen,
                    };
                    Failed::at(f, None)
                })?;
            let i = pick.index;
            let Some(gate) = self.endpoint_gate(i) else {
                return Ok((i, None));
            };
            match gate.admit(now) {
                Ok(probe) => return Ok((i, probe)),
                Err(gate::Rejected) => {
                    picked.skip.add(i);
                    picked.refused += 1;
                    // `skip` forgets indices past 256; the bound keeps this finite.
                    if picked.refused > select.endpoints.len() {
                        return Err(Failed::at(Failure::CircuitOpen, None));
                    }
                }
            }
        }
    }

    /// The body for attempt number `attempt + 1`, after it waited its backoff (a 503's
    /// `Retry-After`, or a jittered draw), or `last` back: no retry, because retries
    /// are not allowed, `retry.on` does not list `cause`, the attempts or the budget
    /// are spent, the cluster's breaker is not closed (a retry would be traffic the
    /// breaker exists to hold back), or the body cannot be sent again.
    async fn again<'b>(
        &self,
        attempt: u32,
        cause: Cause,
        unsent: Option<ReqBody<'b>>,
        mut last: Result<Response<RespBody>, Failure>,
        replay: &Replay,
    ) -> Result<ReqBody<'b>, Result<Response<RespBody>, Failure>> {
        let (route, cluster) = (self.route, self.cluster);
        let cfg: &RetryConfig = &route.retry;
        let cluster_held = cluster.breaker.is_some_and(|b| {
            b.scope.cluster() && cluster.select.live.breaker.state(now_ms()) != State::Closed
        });
        if !replay.allowed || attempt >= cfg.attempts || !cause.allowed(cfg) || cluster_held {
            return Err(last);
        }
        // The body again: the unsent one, or the kept copy.
        let body = match unsent {
            Some(b) => b,
            None if cause.unsent() || replay.repeatable => match &replay.body {
                Some(b) => ReqBody::Full(b.clone()),
                None => return Err(last),
            },
            None => return Err(last),
        };
        // A 503's `Retry-After` when it fits in the time the route's timeout leaves, else
        // the jittered backoff.
        let wait = match &mut last {
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                materialize(resp);
                retry::retry_after(resp.headers())
            }
            _ => None,
        }
        .filter(|w| Instant::now() + *w < self.deadline)
        .unwrap_or_else(|| retry::backoff(cfg, attempt, fastrand::f64()));
        if !route.budget.withdraw(now_ms()) {
            return Err(last);
        }
        route
            .retries
            .inc(cause.reason() as usize, cause.reason().label());
        drop(last);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(body)
    }
}

/// Classifies attempt `i`'s outcome: the breakers count it (through the request's
/// trial permits, if it holds any), outlier detection learns what the endpoint did,
/// and the verdict says whether the outcome stands or a retry may mend it.
fn classify(
    cluster: &ClusterSnap,
    i: usize,
    outcome: &Result<Response<RespBody>, SendError<'_>>,
    [ep_probe, cluster_probe]: [Option<Probe<'_>>; 2],
    cfg: &RetryConfig,
    now: u64,
) -> Verdict {
    let ep = &cluster.select.endpoints[i];
    if let Some(b) = &cluster.breaker {
        let failed = gate::counts(
            &b.on,
            match outcome {
                Ok(resp) => Ok(resp.status().as_u16()),
                Err(e) => Err((e.cause, e.failure)),
            },
        );
        let gates = [
            (
                b.scope.endpoint(),
                ep_probe,
                &ep.breaker,
                &*cluster.endpoint_names[i],
            ),
            (
                b.scope.cluster(),
                cluster_probe,
                &cluster.select.live.breaker,
                "",
            ),
        ];
        for (on, probe, breaker, endpoint) in gates {
            match probe {
                Some(p) => p.finish(failed, now),
                None if on => Gate::new(breaker, b, &cluster.name, endpoint).record(failed, now),
                None => {}
            }
        }
    }
    match outcome {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if status >= 500 && cluster.outlier.count_5xx {
                outlier_failure(cluster, i, now);
            } else {
                ep.success(&cluster.outlier, &cluster.select.live, now);
            }
            if status >= 500 && cfg.on.status(status) {
                Verdict::Retry(Cause::Status(status))
            } else {
                Verdict::Stands
            }
        }
        Err(e) => {
            if e.cause.is_some() || e.failure == Failure::UpstreamError {
                outlier_failure(cluster, i, now);
            }
            e.cause.map_or(Verdict::Stands, Verdict::Retry)
        }
    }
}

/// Records a failed exchange against endpoint `i`, ejecting it when that is due.
fn outlier_failure(cluster: &ClusterSnap, i: usize, now: u64) {
    let ep = &cluster.select.endpoints[i];
    // Endpoints discovery removed are not part of the cluster's size.
    let n = cluster
        .select
        .endpoints
        .iter()
        .filter(|e| !e.retiring())
        .count();
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
        crate::events::emit(
            "ejected",
            Some(&cluster.name),
            Some(&cluster.endpoint_names[i]),
            format!(
                "ejected for {} ms after {} failures in a row ({times} in a row)",
                until.saturating_sub(now),
                cluster.outlier.consecutive_failures
            ),
        );
    }
}

/// Reads a body (not yet at its end) of known size up to `limit` into memory so it
/// can be sent again; a larger or unsized body streams (and its request is retried
/// only while unsent).
async fn keep_for_replay(body: ReqBody<'_>, limit: usize) -> Result<ReqBody<'_>, Failure> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    match body.size_hint().exact() {
        Some(n) if n as usize <= limit => match body.collect().await {
            Ok(c) => Ok(ReqBody::Full(Some(c.to_bytes()))),
            // The client's body broke its own framing (or the client left).
            Err(_) => Err(Failure::BadBody),
        },
        _ => Ok(body),
    }
}
