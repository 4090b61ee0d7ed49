//! Fault injection for drills: abort or delay a share of a route's requests, to prove
//! that clients, retries, bulkheads and alerts behave before a real outage does it.
//!
//! Faults come from three places, checked in this order for each kind (abort, delay):
//!
//! 1. the `x-ninefold-fault` request header (`abort=503`, `delay=200ms`, or both
//!    separated by a comma), only on a route whose `faults.allow_header` is true, so
//!    that no client can hurt a route that did not opt in; a header fault always applies;
//! 2. run-time faults set through the admin API ([`RuntimeFaults`]), each with a `ttl`:
//!    kept in `Shared`, not in the snapshot, so they survive a reload, but each ends at
//!    its expiry time whatever happens (expiry is a comparison on read; a sweep on the
//!    admin thread only frees memory). They live in memory only: a restart ends them;
//! 3. the route's `faults:` in the file.
//!
//! A fault applies to a request with its `percent` probability, drawn from the route's
//! RNG: fastrand's wyrand, per thread, or, with `faults.seed`, one sequence shared by
//! every worker (an atomic wyrand state, no lock) so that a drill can be replayed. A
//! delay holds the request, then it goes on (`x-ninefold-fault: delay=…` on its answer);
//! an abort answers `status` at once with `x-ninefold-fault: abort`, and the upstream
//! never sees the request. The data path pays one check of an empty list when a route
//! has no faults.

use crate::config::raw::{RawAbort, RawDelay, Scalar};
use crate::config::{parse_duration, AbortFault, DelayFault, FaultsConfig, MAX_FAULT_TTL};
use crate::message::RespBody;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The request header that triggers faults, and the answer header that marks them.
pub static FAULT_HEADER: HeaderName = HeaderName::from_static("x-ninefold-fault");

/// Longest delay a header may ask for: a drill, not a way to park connections.
pub const MAX_HEADER_DELAY: Duration = Duration::from_secs(60);

/// wyrand's increment: stepping an atomic state by it replays fastrand's sequence.
const WY_INCREMENT: u64 = 0xa076_1d64_78bd_642f;

/// Index of the abort counter in [`RouteFaults::injected`].
pub const ABORT: usize = 0;
/// Index of the delay counter in [`RouteFaults::injected`].
pub const DELAY: usize = 1;

/// The faults of one route, compiled with its snapshot.
#[derive(Debug)]
pub struct RouteFaults {
    /// The file's settings (all `None`/false without `faults:`).
    pub config: FaultsConfig,
    rng: FaultRng,
    /// `ninefold_faults_injected_total{route,kind}`, by [`ABORT`] and [`DELAY`], each
    /// series made at its first fault (most routes never have one).
    injected: [std::sync::OnceLock<prometheus::IntCounter>; 2],
    family: prometheus::IntCounterVec,
    name: std::sync::Arc<str>,
}

/// Where a route's draws come from.
#[derive(Debug)]
enum FaultRng {
    /// fastrand's thread-local generator.
    Thread,
    /// A seeded wyrand sequence shared by all workers.
    Seeded(AtomicU64),
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Hold it this long first.
    pub delay: Option<Duration>,
    /// Then answer this status instead of forwarding.
    pub abort: Option<u16>,
}

/// A fault set through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveFault {
    /// Id, unique in the process.
    pub id: u64,
    /// Name of the route(s) it applies to.
    pub route: String,
    /// Abort part.
    pub abort: Option<AbortFault>,
    /// Delay part.
    pub delay: Option<DelayFault>,
    /// Set at (`upstream::now_ms` time).
    pub created_at: u64,
    /// Over at (`upstream::now_ms` time); not applied from this time on.
    pub expires_at: u64,
}

/// The run-time faults: read by every request, written by the admin thread only.
#[derive(Debug, Default)]
pub struct RuntimeFaults {
    active: ArcSwap<Vec<ActiveFault>>,
    next_id: AtomicU64,
}

/// The body of `POST /api/v1/faults`: a route's `faults:` plus the route and a `ttl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Route name.
    pub route: Option<String>,
    /// As `faults.abort`.
    pub abort: Option<RawAbort>,
    /// As `faults.delay`.
    pub delay: Option<RawDelay>,
    /// How long the fault lasts (required).
    pub ttl: Option<Scalar>,
}

/// A validated [`FaultRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewFault {
    /// Route name.
    pub route: String,
    /// Abort part.
    pub abort: Option<AbortFault>,
    /// Delay part.
    pub delay: Option<DelayFault>,
    /// Lifetime.
    pub ttl: Duration,
}

// === impl RouteFaults ===

impl RouteFaults {
    /// The faults of route `name`, counted under that name.
    pub fn new(
        config: Option<FaultsConfig>,
        name: &std::sync::Arc<str>,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let config = config.unwrap_or_default();
        RouteFaults {
            rng: match config.seed {
                Some(s) => FaultRng::Seeded(AtomicU64::new(s)),
                None => FaultRng::Thread,
            },
            config,
            injected: Default::default(),
            family: metrics.faults_injected.clone(),
            name: name.clone(),
        }
    }

    /// Counts one injected fault of kind [`ABORT`] or [`DELAY`].
    pub fn count(&self, kind: usize) {
        const KINDS: [&str; 2] = ["abort", "delay"];
        if let Some(slot) = self.injected.get(kind) {
            slot.get_or_init(|| self.family.with_label_values(&[&self.name, KINDS[kind]]))
                .inc();
        }
    }

    /// Decides the faults of one request to route `route` at the time `now` gives
    /// (`now_ms` time, read only when a fault could apply): `header` is its
    /// `x-ninefold-fault`, `active` the run-time faults.
    pub fn decide(
        &self,
        route: &str,
        header: Option<&[u8]>,
        active: &[ActiveFault],
        now: impl FnOnce() -> u64,
    ) -> Injected {
        let c = &self.config;
        if c.abort.is_none() && c.delay.is_none() && !c.allow_header && active.is_empty() {
            return Injected::default();
        }
        let now = now();
        let asked = match header {
            Some(h) if c.allow_header => parse_header(h),
            _ => Injected::default(),
        };
        let live = || {
            active
                .iter()
                .filter(move |f| f.route == route && f.expires_at > now)
        };
        let abort = match asked.abort {
            Some(s) => Some(s),
            None => live()
                .find_map(|f| f.abort)
                .or(c.abort)
                .filter(|a| self.hit(a.percent))
                .map(|a| a.status),
        };
        let delay = match asked.delay {
            Some(d) => Some(d),
            None => live()
                .find_map(|f| f.delay)
                .or(c.delay)
                .filter(|d| self.hit(d.percent))
                .map(|d| d.duration),
        };
        Injected { delay, abort }
    }

    /// One draw: true with probability `percent` / 100.
    fn hit(&self, percent: f64) -> bool {
        if percent >= 100.0 {
            return true;
        }
        if percent <= 0.0 {
            return false;
        }
        self.rng.draw() * 100.0 < percent
    }
}

// === impl FaultRng ===

impl FaultRng {
    /// A uniform draw in `[0, 1)`.
    fn draw(&self) -> f64 {
        match self {
            FaultRng::Thread => fastrand::f64(),
            FaultRng::Seeded(state) => {
                // Claim one step of the shared sequence; a fresh generator at the
                // claimed state yields exactly that step's output.
                let s = state.fetch_add(WY_INCREMENT, Ordering::Relaxed);
                fastrand::Rng::with_seed(s).f64()
            }
        }
    }
}

// === impl RuntimeFaults ===

impl RuntimeFaults {
    /// The faults as they stand (expired ones may still be listed until the next
    /// sweep; `decide` skips them).
    pub fn load(&self) -> arc_swap::Guard<Arc<Vec<ActiveFault>>> {
        self.active.load()
    }

    /// The faults not expired at `now`.
    pub fn live(&self, now: u64) -> Vec<ActiveFault> {
        self.active
            .load()
            .iter()
            .filter(|f| f.expires_at > now)
            .cloned()
            .collect()
    }

    /// Adds a fault set at `now`; returns it with its id.
    pub fn add(&self, f: NewFault, now: u64) -> ActiveFault {
        let fault = ActiveFault {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            route: f.route,
            abort: f.abort,
            delay: f.delay,
            created_at: now,
            expires_at: now.saturating_add(f.ttl.as_millis() as u64),
        };
        self.active.rcu(|list| {
            let mut l: Vec<ActiveFault> = list
                .iter()
                .filter(|f| f.expires_at > now)
                .cloned()
                .collect();
            l.push(fault.clone());
            l
        });
        fault
    }

    /// Removes fault `id`; false if there is none (or it has expired).
    pub fn remove(&self, id: u64, now: u64) -> bool {
        let found = self
            .active
            .load()
            .iter()
            .any(|f| f.id == id && f.expires_at > now);
        self.active.rcu(|list| {
            list.iter()
                .filter(|f| f.id != id && f.expires_at > now)
                .cloned()
                .collect::<Vec<_>>()
        });
        found
    }

    /// Drops expired faults (frees memory; they stopped applying at expiry already).
    pub fn sweep(&self, now: u64) {
        if self.active.load().iter().all(|f| f.expires_at > now) {
            return;
        }
        self.active.rcu(|list| {
            list.iter()
                .filter(|f| f.expires_at > now)
                .cloned()
                .collect::<Vec<_>>()
        });
    }
}

// === impl FaultRequest ===

impl FaultRequest {
    /// Validates the request as the file's `faults:` is validated; `route_exists` says
    /// whether the running configuration has a route of that name.
    pub fn validate(self, route_exists: impl Fn(&str) -> bool) -> Result<NewFault, String> {
        let route = self.route.ok_or("route: required")?;
        if !route_exists(&route) {
            return Err(format!("route: unknown route {route:?}"));
        }
        let ttl = match &self.ttl {
            None => return Err("ttl: required, e.g. 30s (at most 24h)".into()),
            Some(s) => parse_duration(&s.0).map_err(|m| format!("ttl: {m}"))?,
        };
        if ttl.is_zero() || ttl > MAX_FAULT_TTL {
            return Err(format!(
                "ttl: must be greater than zero and at most 24h, got {}",
                self.ttl.map(|s| s.0).unwrap_or_default()
            ));
        }
        let abort = self
            .abort
            .as_ref()
            .map(crate::config::isolation::abort)
            .transpose()
            .map_err(|(k, m)| format!("abort.{k}: {m}"))?;
        let delay = self
            .delay
            .as_ref()
            .map(crate::config::isolation::delay)
            .transpose()
            .map_err(|(k, m)| format!("delay.{k}: {m}"))?;
        if abort.is_none() && delay.is_none() {
            return Err("set abort, delay or both".into());
        }
        Ok(NewFault {
            route,
            abort,
            delay,
            ttl,
        })
    }
}

/// Reads `x-ninefold-fault`: `abort=STATUS`, `delay=DURATION`, or both separated by a
/// comma. Anything it cannot read is ignored (no fault), never an error to the client.
pub fn parse_header(h: &[u8]) -> Injected {
    let mut out = Injected::default();
    let Ok(s) = std::str::from_utf8(h) else {
        return out;
    };
    for part in s.split([',', ';']) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim() {
            "abort" => {
                out.abort = v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (200..=599).contains(s));
            }
            "delay" => {
                out.delay = parse_duration(v.trim())
                    .ok()
                    .filter(|d| !d.is_zero() && *d <= MAX_HEADER_DELAY);
            }
            _ => {}
        }
    }
    out
}

/// The answer to an injected abort: `status`, `x-ninefold-fault: abort`, a short JSON
/// body. Formatting here is fine: only injected requests get here.
pub fn abort_response(status: u16) -> Response<RespBody> {
    let body = format!(
        r#"{{"status":{status},"reason":"fault-injected","message":"fault injected by ninefold"}}"#
    );
    let mut r = Response::new(RespBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(FAULT_HEADER.clone(), HeaderValue::from_static("abort"));
    r
}

/// Marks a delayed answer with `x-ninefold-fault: delay=<ms>ms`.
pub fn mark_delay(h: &mut http::HeaderMap, d: Duration) {
    if let Ok(v) = HeaderValue::from_str(&format!("delay={}ms", d.as_millis())) {
        h.insert(FAULT_HEADER.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(abort: Option<f64>, delay: Option<f64>, seed: u64) -> RouteFaults {
        let metrics = crate::metrics::Metrics::new().unwrap();
        RouteFaults::new(
            Some(FaultsConfig {
                abort: abort.map(|percent| AbortFault {
                    percent,
                    status: 503,
                }),
                delay: delay.map(|percent| DelayFault {
                    percent,
                    duration: Duration::from_millis(200),
                }),
                allow_header: false,
                seed: Some(seed),
            }),
            &"app".into(),
            &metrics,
        )
    }

    #[test]
    fn percentages_hold_with_a_seeded_rng() {
        for (seed, pa, pd) in [(1, 30.0, 5.0), (42, 1.0, 50.0), (7, 99.0, 0.5)] {
            let f = faults(Some(pa), Some(pd), seed);
            let n = 10_000;
            let (mut aborts, mut delays) = (0, 0);
            for _ in 0..n {
                let d = f.decide("app", None, &[], || 1);
                aborts += usize::from(d.abort.is_some());
                delays += usize::from(d.delay.is_some());
            }
            // Within 4 standard deviations of the binomial mean, and at least 0.3%.
            for (got, p) in [(aborts, pa), (delays, pd)] {
                let mean = n as f64 * p / 100.0;
                let sd = (n as f64 * p / 100.0 * (1.0 - p / 100.0)).sqrt();
                let tol = (4.0 * sd).max(30.0);
                assert!(
                    (got as f64 - mean).abs() <= tol,
                    "seed {seed}: {got} of {n} for {p}%"
                );
            }
        }
    }

    #[test]
    fn a_seed_replays_the_same_decisions() {
        let run = |seed| {
            let f = faults(Some(50.0), None, seed);
            (0..64)
                .map(|_| f.decide("app", None, &[], || 1).abort.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn zero_and_hundred_percent_are_exact() {
        let f = faults(Some(100.0), Some(0.0), 3);
        for _ in 0..1000 {
            let d = f.decide("app", None, &[], || 1);
            assert_eq!(d.abort, Some(503));
            assert_eq!(d.delay, None);
        }
    }

    #[test]
    fn header_faults_only_with_allow_header() {
        let h = &b"abort=502, delay=150ms"[..];
        let mut f = faults(None, None, 1);
        assert_eq!(f.decide("app", Some(h), &[], || 1), Injected::default());
        f.config.allow_header = true;
        assert_eq!(
            f.decide("app", Some(h), &[], || 1),
            Injected {
                delay: Some(Duration::from_millis(150)),
                abort: Some(502)
            }
        );
    }

    #[test]
    fn header_parsing() {
        let p = |s: &'static str| parse_header(s.as_bytes());
        assert_eq!(p("abort=503").abort, Some(503));
        assert_eq!(p("delay=200ms").delay, Some(Duration::from_millis(200)));
        assert_eq!(p(" delay = 1s ; abort=500").abort, Some(500));
        assert_eq!(p("abort=99").abort, None);
        assert_eq!(p("abort=600").abort, None);
        assert_eq!(p("abort").abort, None);
        assert_eq!(p("delay=forever").delay, None);
        assert_eq!(p("delay=2h").delay, None);
        assert_eq!(p("nonsense"), Injected::default());
    }

    fn new_fault(ttl: Duration) -> NewFault {
        NewFault {
            route: "app".into(),
            abort: Some(AbortFault {
                percent: 100.0,
                status: 503,
            }),
            delay: None,
            ttl,
        }
    }

    #[test]
    fn runtime_faults_expire_at_their_ttl_on_a_driven_clock() {
        let rt = RuntimeFaults::default();
        let f = faults(None, None, 1);
        let a = rt.add(new_fault(Duration::from_secs(1)), 1_000);
        assert_eq!(a.expires_at, 2_000);
        let at = |now| f.decide("app", None, &rt.load(), || now).abort;
        assert_eq!(at(1_000), Some(503));
        assert_eq!(at(1_999), Some(503));
        assert_eq!(at(2_000), None);
        assert_eq!(f.decide("other", None, &rt.load(), || 1_500).abort, None);
        assert_eq!(rt.live(1_500).len(), 1);
        assert_eq!(rt.live(2_000).len(), 0);
        // Listed until swept, but never applied after expiry.
        assert_eq!(rt.load().len(), 1);
        rt.sweep(2_000);
        assert_eq!(rt.load().len(), 0);
    }

    #[test]
    fn runtime_faults_are_removed_by_id() {
        let rt = RuntimeFaults::default();
        let a = rt.add(new_fault(Duration::from_secs(10)), 0);
        let b = rt.add(new_fault(Duration::from_secs(10)), 0);
        assert_ne!(a.id, b.id);
        assert!(rt.remove(a.id, 5));
        assert!(!rt.remove(a.id, 5));
        assert_eq!(rt.live(5), vec![b.clone()]);
        assert!(!rt.remove(b.id, 10_000));
    }

    #[test]
    fn runtime_faults_override_the_file() {
        let rt = RuntimeFaults::default();
        let f = faults(Some(0.0), None, 1);
        assert_eq!(f.decide("app", None, &rt.load(), || 0).abort, None);
        rt.add(new_fault(Duration::from_secs(1)), 0);
        assert_eq!(f.decide("app", None, &rt.load(), || 0).abort, Some(503));
    }

    #[test]
    fn requests_are_validated_like_the_file() {
        let parse = |s: &str| {
            serde_json::from_str::<FaultRequest>(s)
                .map_err(|e| e.to_string())
                .and_then(|r| r.validate(|n| n == "app"))
        };
        let ok =
            parse(r#"{"route":"app","abort":{"percent":100,"status":503},"ttl":"30s"}"#).unwrap();
        assert_eq!(ok.ttl, Duration::from_secs(30));
        assert!(
            parse(r#"{"route":"app","abort":{"percent":100,"status":503}}"#)
                .unwrap_err()
                .contains("ttl")
        );
        assert!(
            parse(r#"{"route":"app","abort":{"percent":100,"status":503},"ttl":"25h"}"#).is_err()
        );
        assert!(
            parse(r#"{"route":"nope","abort":{"percent":1,"status":503},"ttl":"1s"}"#)
                .unwrap_err()
                .contains("unknown route")
        );
        assert!(
            parse(r#"{"route":"app","abort":{"percent":101,"status":503},"ttl":"1s"}"#)
                .unwrap_err()
                .contains("abort.percent")
        );
        assert!(parse(r#"{"route":"app","ttl":"1s"}"#).is_err());
        assert!(parse(r#"{"route":"app","ttl":"1s","bogus":1}"#).is_err());
        let d = parse(r#"{"route":"app","delay":{"percent":"50%","duration":"200ms"},"ttl":"1m"}"#)
            .unwrap();
        assert_eq!(d.ttl, Duration::from_secs(60));
    }
}
