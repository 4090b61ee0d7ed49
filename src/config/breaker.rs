//! Validated settings of the circuit breaker (`clusters[].circuit_breaker`).
//!
//! A breaker is a three-state machine per endpoint, per cluster, or both (see
//! `upstream::breaker` for how it runs). This file only turns the keys into values and
//! refuses what cannot work: a window longer than the breaker's per-second history, a
//! `max_open_for` shorter than `open_for`, an unknown failure condition. Defaults are
//! those of `docs/failover.md`, with the reasons there.

use super::collect::V;
use super::failover::{RetryOn, ALL_5XX};
use super::raw::*;
use std::time::Duration;

/// Default failures in a row that open the breaker (the seed's and Hystrix-like figure).
pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 5;
/// Default window of the failure rate: long enough to hold a meaningful sample at
/// modest traffic, short enough to react within seconds.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// Default requests the window needs before its rate may open the breaker, so that
/// two failures out of three on a quiet endpoint do not trip it.
pub const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;
/// Default time spent open before probing.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(30);
/// Default cap of the open time, which doubles with each open in a row: a dependency
/// that stays down is probed every 5 minutes, not every 30 seconds forever.
pub const DEFAULT_BREAKER_MAX_OPEN_FOR: Duration = Duration::from_secs(300);
/// Default trial requests while half-open: more than one, so a single lucky answer
/// does not close it; few, so a still-failing upstream sees almost nothing.
pub const DEFAULT_BREAKER_HALF_OPEN_PROBES: u32 = 3;
/// Longest window: the breaker keeps one slot per second of history.
pub const MAX_BREAKER_WINDOW_SECS: u64 = 60;

/// Where the breaker sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerScope {
    /// One breaker per endpoint: a failing endpoint gets no traffic, the others do.
    Endpoint,
    /// One breaker for the whole cluster: a failing dependency gets no traffic at all.
    Cluster,
    /// Both.
    Both,
}

/// `clusters[].circuit_breaker`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// Failure share (percent) over `window` that opens it; `None`: only the streak.
    pub failure_rate: Option<f64>,
    /// Window of the rate, whole seconds (1..=60).
    pub window_secs: u64,
    /// Requests the window needs before the rate counts.
    pub min_requests: u32,
    /// First open time.
    pub open_for: Duration,
    /// Longest open time.
    pub max_open_for: Duration,
    /// Trial requests while half-open.
    pub half_open_probes: u32,
    /// What counts as a failure. `refused_stream` is never set: an h2 upstream that
    /// refuses a stream did not process it and is shedding load, not failing.
    pub on: RetryOn,
    /// Where it sits.
    pub scope: BreakerScope,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: DEFAULT_BREAKER_CONSECUTIVE_FAILURES,
            failure_rate: None,
            window_secs: DEFAULT_BREAKER_WINDOW.as_secs(),
            min_requests: DEFAULT_BREAKER_MIN_REQUESTS,
            open_for: DEFAULT_BREAKER_OPEN_FOR,
            max_open_for: DEFAULT_BREAKER_MAX_OPEN_FOR,
            half_open_probes: DEFAULT_BREAKER_HALF_OPEN_PROBES,
            on: RetryOn {
                connect_failure: true,
                refused_stream: false,
                reset: true,
                timeout: true,
                statuses: ALL_5XX,
            },
            scope: BreakerScope::Endpoint,
        }
    }
}

// === impl BreakerScope ===

impl BreakerScope {
    /// Whether each endpoint has a breaker.
    pub fn endpoint(self) -> bool {
        matches!(self, BreakerScope::Endpoint | BreakerScope::Both)
    }

    /// Whether the cluster has a breaker.
    pub fn cluster(self) -> bool {
        matches!(self, BreakerScope::Cluster | BreakerScope::Both)
    }
}

// === impl V ===

impl V<'_> {
    pub(super) fn breaker(&mut self, p: &str, b: &RawBreaker) -> BreakerConfig {
        let d = BreakerConfig::default();
        let window_secs = match self.opt_duration(&format!("{p}.window"), b.window.as_ref()) {
            None => d.window_secs,
            Some(w) if w.subsec_millis() != 0 || w.as_secs() > MAX_BREAKER_WINDOW_SECS => {
                self.err_hint(
                    &format!("{p}.window"),
                    format!("must be whole seconds from 1s to 60s, got {w:?}"),
                    "the breaker keeps one slot per second of history",
                );
                d.window_secs
            }
            Some(w) => w.as_secs(),
        };
        let open_for = self
            .opt_duration(&format!("{p}.open_for"), b.open_for.as_ref())
            .unwrap_or(d.open_for);
        let max_open_for = self
            .opt_duration(&format!("{p}.max_open_for"), b.max_open_for.as_ref())
            .unwrap_or(d.max_open_for.max(open_for));
        if max_open_for < open_for {
            self.err(
                &format!("{p}.max_open_for"),
                format!("is shorter than open_for ({max_open_for:?} < {open_for:?})"),
            );
        }
        let on = match &b.on {
            None => d.on,
            Some(list) => self.conditions(&format!("{p}.on"), list, false),
        };
        let scope = match b.scope.as_deref() {
            None | Some("endpoint") => BreakerScope::Endpoint,
            Some("cluster") => BreakerScope::Cluster,
            Some("both") => BreakerScope::Both,
            Some(other) => {
                self.err_hint(
                    &format!("{p}.scope"),
                    format!("unknown scope {other:?}"),
                    "use endpoint, cluster or both",
                );
                d.scope
            }
        };
        BreakerConfig {
            consecutive_failures: self.at_least_one(
                &format!("{p}.consecutive_failures"),
                b.consecutive_failures,
                d.consecutive_failures,
            ),
            failure_rate: self.percent_upto(
                &format!("{p}.failure_rate"),
                b.failure_rate.as_ref(),
                100.0,
            ),
            window_secs,
            min_requests: self.at_least_one(
                &format!("{p}.min_requests"),
                b.min_requests,
                d.min_requests,
            ),
            open_for,
            max_open_for: max_open_for.max(open_for),
            half_open_probes: self.at_least_one(
                &format!("{p}.half_open_probes"),
                b.half_open_probes,
                d.half_open_probes,
            ),
            on,
            scope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cluster(breaker: &str) -> String {
        format!(
            "listeners: [{{name: web, bind: \"127.0.0.1:0\", routes: [{{match: {{path_prefix: /}}, cluster: app}}]}}]
clusters:
  - {{name: app, circuit_breaker: {breaker}, endpoints: [{{address: \"127.0.0.1:1\"}}]}}
"
        )
    }

    #[test]
    fn defaults_and_keys() {
        let c = crate::config::parse("f.yaml", &cluster("{}"), Path::new(".")).unwrap();
        assert!(c.unsupported.is_empty(), "{:?}", c.unsupported);
        assert_eq!(c.clusters[0].breaker, Some(BreakerConfig::default()));
        let d = BreakerConfig::default();
        assert!(d.on.connect_failure && d.on.reset && d.on.timeout && d.on.status(500));

        let yaml = cluster(
            "{consecutive_failures: 3, failure_rate: 50%, window: 20s, min_requests: 8, open_for: 1s, max_open_for: 8s, half_open_probes: 2, on: [connect-failure, 503], scope: both}",
        );
        let b = crate::config::parse("f.yaml", &yaml, Path::new("."))
            .unwrap()
            .clusters[0]
            .breaker
            .unwrap();
        assert_eq!(b.consecutive_failures, 3);
        assert_eq!(b.failure_rate, Some(50.0));
        assert_eq!(
            (b.window_secs, b.min_requests, b.half_open_probes),
            (20, 8, 2)
        );
        assert_eq!(b.open_for, Duration::from_secs(1));
        assert_eq!(b.max_open_for, Duration::from_secs(8));
        assert!(b.on.connect_failure && !b.on.reset && !b.on.timeout);
        assert!(b.on.status(503) && !b.on.status(500));
        assert_eq!(b.scope, BreakerScope::Both);
    }

    #[test]
    fn bad_values_are_reported_together() {
        let yaml = cluster(
            "{consecutive_failures: 0, failure_rate: 150%, window: 90s, open_for: 10s, max_open_for: 5s, on: [teapot], scope: galaxy}",
        );
        let e = crate::config::parse("f.yaml", &yaml, Path::new("."))
            .unwrap_err()
            .to_string();
        for want in [
            "circuit_breaker.consecutive_failures",
            "circuit_breaker.failure_rate",
            "circuit_breaker.window",
            "circuit_breaker.max_open_for",
            "circuit_breaker.on[0]",
            "circuit_breaker.scope",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
    }
}
