//! Live state of one endpoint: health (written by the active checker), passive outlier
//! ejection (written from request outcomes), manual drain (written by the admin API),
//! in-flight and request counts. All atomics, shared by every worker, read on every
//! pick without a lock.
//!
//! State lives apart from configuration: a snapshot carries an endpoint's state over a
//! reload by (cluster, address), whatever else changed (weight, zone, priority), so a
//! reload never resets an ejection, a failed check or a drain. Time is milliseconds of
//! [`super::now_ms`], passed in by the caller so the policy is testable with a driven
//! clock.
//!
//! An endpoint is *available* when its active health is not `unhealthy`, it is not
//! ejected, not drained, and its circuit breaker does not reject. Health starts `unknown`, which is available: see
//! `docs/failover.md` for why.

use super::breaker::Breaker;
use crate::config::{OutlierConfig, Role};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Active health of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No probe has decided yet (or the cluster has no health check): available.
    Unknown,
    /// The probes pass.
    Healthy,
    /// The probes fail: no traffic.
    Unhealthy,
}

impl Health {
    /// The name the admin API, the metrics and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Why an endpoint takes no traffic, most fundamental first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Out {
    /// Drained by an operator.
    Drained,
    /// Its active health checks fail.
    Unhealthy,
    /// Ejected by passive outlier detection.
    Ejected,
    /// Its circuit breaker rejects: open, or half-open with no trial left.
    CircuitOpen,
}

/// The last probe of an endpoint, for "why is this endpoint out?". Written by the
/// checker, read by the admin API; never touched on the data path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// `ok`, or what failed (`status 503`, `connect: refused`, `timeout`, ...).
    pub last: String,
    /// When the last probe ended (ms of `now_ms`), 0 before the first.
    pub at_ms: u64,
    /// Passes in a row.
    pub passes: u32,
    /// Failures in a row.
    pub failures: u32,
    /// The role a PostgreSQL-aware probe saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A replica's lag in seconds, as the last probe measured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// A replica's WAL received and not replayed, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<f64>,
}

/// Live state of one endpoint.
#[derive(Debug)]
pub struct EndpointState {
    /// Index of this endpoint in each worker's connection pool.
    pub slot: usize,
    /// Address.
    pub address: SocketAddr,
    /// Requests in flight (least_request reads it).
    pub in_flight: AtomicU32,
    /// Requests sent, for the state API.
    pub requests: AtomicU64,
    /// Requests, errors and latency over the last minute, per worker.
    pub figures: super::figures::Figures,
    health: AtomicU8,
    health_since: AtomicU64,
    /// The last probe, for the state API.
    pub check: Mutex<CheckReport>,
    failures: AtomicU32,
    successes: AtomicU32,
    ejected_until: AtomicU64,
    ejected_since: AtomicU64,
    ejections: AtomicU32,
    /// Ejections in total, for the metric.
    pub ejections_total: AtomicU64,
    drained: AtomicBool,
    drained_since: AtomicU64,
    /// Discovery removed it: it takes no new requests while the ones in flight finish,
    /// and goes after the drain timeout (apart from an operator's drain).
    retiring: AtomicBool,
    /// The endpoint's circuit breaker (closed, and never consulted, unless the
    /// cluster's `circuit_breaker.scope` includes endpoints).
    pub breaker: Breaker,
    /// The role the last PostgreSQL-aware probe saw (0 unknown, 1 primary, 2 replica).
    role: AtomicU8,
    /// Open TCP sessions to the endpoint, over all workers.
    pub sessions: AtomicU32,
    /// Bumped to close the endpoint's open TCP sessions at once (each session watches
    /// it); the value is the number of fences so far.
    pub fence: tokio::sync::watch::Sender<u64>,
}

/// Decrements an endpoint's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

/// What an outcome did to an endpoint's ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Ejected until this time (ms).
    Ejected {
        /// End of the ejection.
        until: u64,
        /// How many times it has been ejected in a row.
        times: u32,
    },
    /// It would have been ejected, but the cluster is at `max_ejection_percent`.
    Capped,
}

/// State shared by a cluster's endpoints across reloads: the ejection count that
/// `max_ejection_percent` caps, and whether panic mode is on.
#[derive(Debug, Default)]
pub struct ClusterLive {
    /// Endpoints ejected right now.
    pub ejected: AtomicU32,
    /// Whether the last pick found the cluster in panic mode.
    pub panic: AtomicBool,
    /// When panic mode began (ms), for the state API.
    pub panic_since: AtomicU64,
    /// The cluster's own circuit breaker (`circuit_breaker.scope: cluster | both`).
    pub breaker: Breaker,
    /// The primary, for a cluster whose check wants one.
    pub primary: Primary,
}

/// The primary of a cluster whose health check wants one: which endpoint it is, its
/// generation (one more each time another endpoint becomes the primary), and whether
/// two endpoints claim it right now. Written by the health checker, read by the TCP
/// relay on each new connection and by the state API.
#[derive(Debug, Default)]
pub struct Primary {
    /// One more per switch; 0 before the first primary.
    pub generation: AtomicU64,
    /// Two or more endpoints claim to be primary.
    pub split: AtomicBool,
    current: Mutex<Option<SocketAddr>>,
}

/// What a look at the claims changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryEvent {
    /// Another endpoint is the primary now.
    Switched {
        /// The previous primary.
        from: Option<SocketAddr>,
        /// The new one.
        to: SocketAddr,
        /// Its generation.
        generation: u64,
    },
    /// Two or more endpoints began to claim primary.
    SplitBegan(Vec<SocketAddr>),
    /// Only one (or none) claims it again.
    SplitEnded,
}

impl Primary {
    /// The primary of the current generation.
    pub fn current(&self) -> Option<SocketAddr> {
        self.current.lock().map(|c| *c).unwrap_or(None)
    }

    /// Looks at what each endpoint claims (`claims`: address, claims primary, healthy)
    /// and moves the generation: the single healthy claimant is the primary; while two
    /// or more claim it, nothing moves. Returns what changed, in order.
    pub fn update(&self, claims: &[(SocketAddr, bool, bool)]) -> Vec<PrimaryEvent> {
        let mut events = Vec::new();
        let claimants: Vec<SocketAddr> = claims
            .iter()
            .filter(|(_, c, _)| *c)
            .map(|(a, _, _)| *a)
            .collect();
        let split = claimants.len() >= 2;
        if self.split.swap(split, Ordering::AcqRel) != split {
            events.push(if split {
                PrimaryEvent::SplitBegan(claimants.clone())
            } else {
                PrimaryEvent::SplitEnded
            });
        }
        if split {
            return events;
        }
        let healthy = claims.iter().find(|(_, c, h)| *c && *h).map(|(a, _, _)| *a);
        if let (Some(to), Ok(mut current)) = (healthy, self.current.lock()) {
            if *current != Some(to) {
                let from = current.replace(to);
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                events.push(PrimaryEvent::Switched {
                    from,
                    to,
                    generation,
                });
            }
        }
        events
    }
}

// === impl Health ===

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }
}

// === impl EndpointState ===

impl EndpointState {
    /// New endpoint state: health unknown, not ejected, not drained.
    pub fn new(slot: usize, address: SocketAddr) -> Self {
        EndpointState {
            slot,
            address,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            figures: super::figures::Figures::new(),
            health: AtomicU8::new(0),
            health_since: AtomicU64::new(0),
            check: Mutex::new(CheckReport::default()),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejected_since: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            drained: AtomicBool::new(false),
            drained_since: AtomicU64::new(0),
            retiring: AtomicBool::new(false),
            breaker: Breaker::new(),
            role: AtomicU8::new(0),
            sessions: AtomicU32::new(0),
            fence: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The role the last PostgreSQL-aware probe saw, if it got that far.
    pub fn role(&self) -> Option<Role> {
        match self.role.load(Ordering::Acquire) {
            1 => Some(Role::Primary),
            2 => Some(Role::Replica),
            _ => None,
        }
    }

    /// Records the role a probe saw (`None`: the probe did not get that far).
    pub fn set_role(&self, role: Option<Role>) {
        let v = match role {
            None => 0,
            Some(Role::Primary) => 1,
            Some(Role::Replica) => 2,
        };
        self.role.store(v, Ordering::Release);
    }

    /// Closes the endpoint's open TCP sessions now; returns how many were open.
    pub fn fence(&self) -> u32 {
        let open = self.sessions.load(Ordering::Acquire);
        self.fence.send_modify(|n| *n += 1);
        open
    }

    /// Marks a request as started; the returned guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Active health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Since when the health is what it is (ms; 0: since start).
    pub fn health_since(&self) -> u64 {
        self.health_since.load(Ordering::Relaxed)
    }

    /// Sets the active health; returns whether it changed.
    pub fn set_health(&self, h: Health, now: u64) -> bool {
        let v = match h {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        };
        let changed = self.health.swap(v, Ordering::AcqRel) != v;
        if changed {
            self.health_since.store(now, Ordering::Relaxed);
        }
        changed
    }

    /// Why the endpoint takes no traffic now, if it takes none.
    #[inline]
    pub fn out(&self, now: u64) -> Option<Out> {
        if self.drained.load(Ordering::Relaxed) || self.retiring.load(Ordering::Relaxed) {
            Some(Out::Drained)
        } else if self.health.load(Ordering::Relaxed) == 2 {
            Some(Out::Unhealthy)
        } else if self.ejected_until.load(Ordering::Relaxed) > now {
            Some(Out::Ejected)
        } else if !self.breaker.may_pass(now) {
            Some(Out::CircuitOpen)
        } else {
            None
        }
    }

    /// Whether the endpoint may take traffic now.
    #[inline]
    pub fn available(&self, now: u64) -> bool {
        self.out(now).is_none()
    }

    /// Failures in a row (least_request adds them to the load, so a fast-failing
    /// endpoint does not look idle).
    #[inline]
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The end of the current ejection (ms), 0 when not ejected.
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// When the current ejection began (ms).
    pub fn ejected_since(&self) -> u64 {
        self.ejected_since.load(Ordering::Relaxed)
    }

    /// Ejections in a row (the multiplier of the next ejection's length).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Records a successful exchange.
    #[inline]
    pub fn success(&self, cfg: &OutlierConfig, live: &ClusterLive, now: u64) {
        self.release_ejection(live, now);
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        // A clean streak as long as the ejection threshold earns back one step of
        // the ejection multiplier and, at zero, ends the probation.
        if self.ejections.load(Ordering::Relaxed) > 0 {
            let streak = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= cfg.consecutive_failures {
                self.successes.store(0, Ordering::Relaxed);
                let _ = self
                    .ejections
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }

    /// Records a failed exchange (connect error, reset, timeout, 5xx); ejects the
    /// endpoint when that makes `consecutive_failures` in a row, within the cluster's
    /// `max_ejection_percent` of `cluster_size`. An endpoint back from an ejection is
    /// on probation: its first failure ejects it again, for longer.
    pub fn failure(
        &self,
        cfg: &OutlierConfig,
        live: &ClusterLive,
        cluster_size: usize,
        now: u64,
    ) -> Option<Ejection> {
        self.release_ejection(live, now);
        self.successes.store(0, Ordering::Relaxed);
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let on_probation = self.ejections.load(Ordering::Relaxed) > 0;
        if failures < cfg.consecutive_failures && !on_probation {
            return None;
        }
        if self.ejected_until.load(Ordering::Relaxed) > now {
            return None; // already out; a late answer of an earlier request
        }
        // The cap, never exceeded: with one endpoint, or 2 at 25%, nothing is ejected
        // (as nginx ignores max_fails for a single server).
        let max = (cluster_size as f64 * cfg.max_ejection_percent / 100.0).floor() as u32;
        if live
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Some(Ejection::Capped);
        }
        let times = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let len = cfg
            .base_ejection
            .saturating_mul(times)
            .min(cfg.max_ejection)
            .as_millis() as u64;
        let until = now + len.max(1);
        self.ejected_since.store(now, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Release);
        self.failures.store(0, Ordering::Relaxed);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        Some(Ejection::Ejected { until, times })
    }

    /// Ends an ejection whose time is over: exactly one caller wins the swap and gives
    /// the cluster's ejection slot back. Returns whether this call ended it.
    pub fn release_ejection(&self, live: &ClusterLive, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 || until > now {
            return false;
        }
        if self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let _ = live
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            return true;
        }
        false
    }

    /// Ends any ejection now (the endpoint left the cluster, or an operator enabled it).
    pub fn clear_ejection(&self, live: &ClusterLive) {
        if self.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            let _ = live
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Whether an operator drained it.
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Whether it takes no new requests on purpose: an operator drained it, or
    /// discovery removed it. Panic mode and primary claims leave it out too.
    pub fn draining(&self) -> bool {
        self.drained() || self.retiring()
    }

    /// Whether discovery removed it and it is draining out.
    pub fn retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed)
    }

    /// Marks it removed by discovery (draining out) or back in the set; returns whether
    /// that changed.
    pub fn set_retiring(&self, retiring: bool) -> bool {
        self.retiring.swap(retiring, Ordering::AcqRel) != retiring
    }

    /// Since when it is drained (ms).
    pub fn drained_since(&self) -> u64 {
        self.drained_since.load(Ordering::Relaxed)
    }

    /// Drains (`true`: no new requests; in-flight ones finish) or enables it; returns
    /// whether that changed anything.
    pub fn set_drained(&self, drained: bool, now: u64) -> bool {
        let changed = self.drained.swap(drained, Ordering::AcqRel) != drained;
        if changed && drained {
            self.drained_since.store(now, Ordering::Relaxed);
        }
        changed
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_moves_only_with_one_healthy_claimant() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5432".parse().unwrap(),
            "10.0.0.2:5432".parse().unwrap(),
        );
        let p = Primary::default();
        // Nobody claims yet: nothing moves.
        assert!(p.update(&[(a, false, false), (b, false, false)]).is_empty());
        assert_eq!(p.current(), None);
        // A claims and is healthy: generation 1.
        assert_eq!(
            p.update(&[(a, true, true), (b, false, false)]),
            [PrimaryEvent::Switched {
                from: None,
                to: a,
                generation: 1
            }]
        );
        // A claims but is not healthy yet (a threshold): still A, no event.
        assert!(p.update(&[(a, true, false), (b, false, false)]).is_empty());
        // A is gone, B is promoted: generation 2.
        assert_eq!(
            p.update(&[(a, false, false), (b, true, true)]),
            [PrimaryEvent::Switched {
                from: Some(a),
                to: b,
                generation: 2
            }]
        );
        // A comes back as a primary: split; the generation stays with B.
        assert_eq!(
            p.update(&[(a, true, true), (b, true, true)]),
            [PrimaryEvent::SplitBegan(vec![a, b])]
        );
        assert!(p.split.load(Ordering::Acquire));
        assert!(
            p.update(&[(a, true, true), (b, true, true)]).is_empty(),
            "said once"
        );
        assert_eq!(p.current(), Some(b));
        // A stops claiming: the split ends, B stays, no new generation.
        assert_eq!(
            p.update(&[(a, false, false), (b, true, true)]),
            [PrimaryEvent::SplitEnded]
        );
        assert_eq!(p.generation.load(Ordering::Acquire), 2);
    }

    #[test]
    fn a_fence_counts_the_open_sessions_and_wakes_them() {
        let e = EndpointState::new(0, "10.0.0.1:5432".parse().unwrap());
        let rx = e.fence.subscribe();
        e.sessions.fetch_add(2, Ordering::AcqRel);
        assert_eq!(e.fence(), 2);
        assert!(rx.has_changed().unwrap());
    }
    use std::time::Duration;

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejection_percent: 50.0,
            count_5xx: true,
        }
    }

    fn ep() -> EndpointState {
        EndpointState::new(0, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn ejects_after_consecutive_failures_then_returns_and_is_ejected_faster() {
        let (c, live, e) = (cfg(), ClusterLive::default(), ep());
        assert_eq!(e.failure(&c, &live, 4, 0), None);
        assert_eq!(e.failure(&c, &live, 4, 1), None);
        assert_eq!(
            e.failure(&c, &live, 4, 2),
            Some(Ejection::Ejected {
                until: 10_002,
                times: 1
            })
        );
        assert_eq!(e.out(5_000), Some(Out::Ejected));
        assert_eq!(live.ejected.load(Ordering::Relaxed), 1);
        // Back after its time; the slot is given back exactly once.
        assert!(e.available(10_002));
        assert!(e.release_ejection(&live, 10_002));
        assert!(!e.release_ejection(&live, 10_003));
        assert_eq!(live.ejected.load(Ordering::Relaxed), 0);
        // On probation: one failure ejects again, for twice as long.
        assert_eq!(
            e.failure(&c, &live, 4, 11_000),
            Some(Ejection::Ejected {
                until: 31_000,
                times: 2
            })
        );
        // Third time: capped at max_ejection.
        e.release_ejection(&live, 31_000);
        assert_eq!(
            e.failure(&c, &live, 4, 40_000),
            Some(Ejection::Ejected {
                until: 65_000,
                times: 3
            })
        );
    }

    #[test]
    fn a_clean_streak_ends_the_probation() {
        let (c, live, e) = (cfg(), ClusterLive::default(), ep());
        for t in 0..3 {
            e.failure(&c, &live, 4, t);
        }
        assert_eq!(e.ejections(), 1);
        for _ in 0..3 {
            e.success(&c, &live, 20_000);
        }
        assert_eq!(e.ejections(), 0);
        // Off probation: one failure is one failure again.
        assert_eq!(e.failure(&c, &live, 4, 20_001), None);
    }

    #[test]
    fn a_success_resets_the_streak() {
        let (c, live, e) = (cfg(), ClusterLive::default(), ep());
        e.failure(&c, &live, 4, 0);
        e.failure(&c, &live, 4, 0);
        e.success(&c, &live, 0);
        assert_eq!(e.failure(&c, &live, 4, 0), None);
        assert_eq!(e.failures(), 1);
    }

    #[test]
    fn max_ejection_percent_is_never_exceeded() {
        let (c, live) = (cfg(), ClusterLive::default());
        let eps: Vec<EndpointState> = (0..4).map(|_| ep()).collect();
        let mut ejected = 0;
        for e in &eps {
            for _ in 0..3 {
                if let Some(Ejection::Ejected { .. }) = e.failure(&c, &live, 4, 0) {
                    ejected += 1;
                }
            }
        }
        assert_eq!(ejected, 2, "50% of 4");
        assert_eq!(eps[3].failure(&c, &live, 4, 0), Some(Ejection::Capped));
        // The only endpoint is never ejected.
        let live1 = ClusterLive::default();
        let e = ep();
        for _ in 0..2 {
            e.failure(&c, &live1, 1, 0);
        }
        assert_eq!(e.failure(&c, &live1, 1, 0), Some(Ejection::Capped));
    }

    #[test]
    fn drain_and_health_make_it_unavailable() {
        let e = ep();
        assert_eq!(e.health(), Health::Unknown);
        assert!(e.available(0));
        assert!(e.set_health(Health::Unhealthy, 7));
        assert!(!e.set_health(Health::Unhealthy, 8));
        assert_eq!(e.health_since(), 7);
        assert_eq!(e.out(9), Some(Out::Unhealthy));
        e.set_health(Health::Healthy, 10);
        assert!(e.set_drained(true, 11));
        assert_eq!(e.out(12), Some(Out::Drained));
        e.set_drained(false, 13);
        assert!(e.available(14));
    }
}
