//! Retries: when an attempt may be repeated, on which grounds, after how long, and
//! within which budget.
//!
//! Safety first. A request is retried only if a repeat cannot do harm:
//! - it provably never reached an upstream (the connection could not be made, a pooled
//!   connection was closed before a byte was written, or an h2 upstream refused the
//!   stream), whatever its method; or
//! - its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or the route
//!   opted in (`retry.idempotency_key: true`) and it carries an `Idempotency-Key`;
//! - and its body can be sent again: no body, or one kept whole in memory (up to
//!   `retry.buffer`). A bigger body streams, and once a byte of it has left, the
//!   request is not retried.
//!
//! The budget (Finagle's, as Envoy and Linkerd use it): retries are at most `budget`
//! percent of the route's requests over the last [`WINDOW_SECS`] seconds, plus
//! `min_retries_per_second` so a quiet route can still retry. It bounds what a failing
//! upstream receives: with every endpoint answering 503, about (1 + budget) × the
//! client's requests. The headroom is exported.
//!
//! Backoff: exponential with full jitter between `backoff.base` and `backoff.max`; a
//! 503's `Retry-After` (in seconds) replaces it when it fits in the time left.
//! Every function takes `now` (ms) and a random draw, so it is tested without sleeps.

use super::ring::SecondRing;
use crate::config::RetryConfig;
use http::{HeaderMap, Method};
use std::time::Duration;

/// Seconds of history the budget looks at.
pub const WINDOW_SECS: u64 = 10;

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The connection could not be made: nothing was sent.
    ConnectFailure,
    /// An h2 upstream refused the stream: it did not process it.
    RefusedStream,
    /// The connection broke before the answer's head.
    Reset,
    /// The attempt passed `per_try_timeout`.
    Timeout,
    /// The upstream answered with this (5xx) status.
    Status(u16),
}

/// A route's retry budget: per-second (requests, retries), lock-free.
#[derive(Debug)]
pub struct Budget {
    percent: f64,
    floor_per_sec: u32,
    /// Made at the route's first request: an idle route holds one pointer, not the
    /// window's 160 bytes.
    history: std::sync::OnceLock<Box<SecondRing<{ WINDOW_SECS as usize }>>>,
}

// === impl Cause ===

impl Cause {
    /// Whether the route's `retry.on` lists this cause.
    pub fn allowed(self, cfg: &RetryConfig) -> bool {
        match self {
            Cause::ConnectFailure => cfg.on.connect_failure,
            Cause::RefusedStream => cfg.on.refused_stream,
            Cause::Reset => cfg.on.reset,
            Cause::Timeout => cfg.on.timeout,
            Cause::Status(s) => cfg.on.status(s),
        }
    }

    /// Whether the request provably never reached the upstream.
    pub fn unsent(self) -> bool {
        matches!(self, Cause::ConnectFailure | Cause::RefusedStream)
    }

    /// The `reason` a retry on this cause is counted under.
    pub fn reason(self) -> Reason {
        match self {
            Cause::ConnectFailure => Reason::ConnectFailure,
            Cause::RefusedStream => Reason::RefusedStream,
            Cause::Reset => Reason::Reset,
            Cause::Timeout => Reason::Timeout,
            Cause::Status(_) => Reason::Status,
        }
    }
}

/// The `reason` label of `ninefold_retries_total`: what failed, without the status.
/// A route resolves one counter per reason, in [`Reason::ALL`]'s order, and a retry
/// bumps `retries[reason as usize]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// See [`Cause::ConnectFailure`].
    ConnectFailure = 0,
    /// See [`Cause::RefusedStream`].
    RefusedStream = 1,
    /// See [`Cause::Reset`].
    Reset = 2,
    /// See [`Cause::Timeout`].
    Timeout = 3,
    /// A 5xx answer, whatever its status.
    Status = 4,
}

// === impl Reason ===

impl Reason {
    /// Every reason, each at its own index.
    pub const ALL: [Reason; 5] = [
        Reason::ConnectFailure,
        Reason::RefusedStream,
        Reason::Reset,
        Reason::Timeout,
        Reason::Status,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::ConnectFailure => "connect-failure",
            Reason::RefusedStream => "refused-stream",
            Reason::Reset => "reset",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
        }
    }
}

/// Whether a request that may have reached the upstream may be sent again: its
/// `method` is idempotent, or the route opted in and the request carries an
/// `Idempotency-Key` (`keyed`, asked only then: it looks through the head).
pub fn repeatable(method: &Method, keyed: impl FnOnce() -> bool, cfg: &RetryConfig) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || (cfg.idempotency_key && keyed())
}

/// The wait before retry number `retry` (1 for the first retry): a full-jitter draw
/// (`roll` in `[0, 1)`) up to `base × 2^(retry-1)`, capped at `max`.
pub fn backoff(cfg: &RetryConfig, retry: u32, roll: f64) -> Duration {
    let exp = cfg
        .backoff_base
        .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
        .min(cfg.backoff_max);
    exp.mul_f64(roll.clamp(0.0, 1.0))
}

/// A 503's `Retry-After` in whole seconds (the HTTP-date form is not honoured: a
/// gateway's clock and an upstream's may disagree).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

// === impl Budget ===

impl Budget {
    /// A budget of `cfg.budget` percent plus `cfg.min_retries_per_second`.
    pub fn new(cfg: &RetryConfig) -> Self {
        Budget {
            percent: cfg.budget,
            floor_per_sec: cfg.min_retries_per_second,
            history: std::sync::OnceLock::new(),
        }
    }

    /// Counts a client request (not its retries).
    #[inline]
    pub fn request(&self, now_ms: u64) {
        self.history.get_or_init(Box::default).add(now_ms, 1, 0);
    }

    /// Whether the budget has counted a request or a retry (its window exists).
    pub fn used(&self) -> bool {
        self.history.get().is_some()
    }

    /// Retries still allowed now: `budget% × requests + floor × window − retries`.
    pub fn headroom(&self, now_ms: u64) -> f64 {
        let (requests, retries) = match self.history.get() {
            Some(h) => h.sum(now_ms, WINDOW_SECS),
            None => (0, 0),
        };
        let allowed = requests as f64 * self.percent / 100.0
            + f64::from(self.floor_per_sec) * WINDOW_SECS as f64;
        allowed - retries as f64
    }

    /// Takes one retry from the budget, if there is room.
    pub fn withdraw(&self, now_ms: u64) -> bool {
        if self.headroom(now_ms) < 1.0 {
            return false;
        }
        self.history.get_or_init(Box::default).add(now_ms, 0, 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            budget: 20.0,
            min_retries_per_second: 0,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn budget_allows_its_share_of_recent_requests() {
        let b = Budget::new(&cfg());
        for _ in 0..100 {
            b.request(1_000);
        }
        let granted = (0..100).filter(|_| b.withdraw(1_500)).count();
        assert_eq!(granted, 20);
        // Ten seconds on, the old requests no longer pay for retries.
        assert!(!b.withdraw(12_000));
        assert!(b.headroom(12_000) < 1.0);
    }

    #[test]
    fn the_floor_lets_a_quiet_route_retry() {
        let b = Budget::new(&RetryConfig {
            min_retries_per_second: 3,
            ..cfg()
        });
        let granted = (0..100).filter(|_| b.withdraw(5_000)).count();
        assert_eq!(granted, 30, "3 per second over 10 s");
    }

    #[test]
    fn amplification_is_bounded_when_everything_fails() {
        // Every attempt fails and asks for a retry; attempts: 3.
        let b = Budget::new(&cfg());
        let mut upstream = 0;
        for i in 0..1000u64 {
            let now = i * 10; // 100 requests per second for 10 s
            b.request(now);
            upstream += 1;
            for _ in 1..3 {
                if b.withdraw(now) {
                    upstream += 1;
                } else {
                    break;
                }
            }
        }
        let ratio = f64::from(upstream) / 1000.0;
        assert!(ratio <= 1.21, "amplification {ratio}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = cfg();
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_millis(25));
        assert_eq!(backoff(&c, 2, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(&c, 5, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(&c, 40, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(&c, 3, 0.5), Duration::from_millis(50));
        assert_eq!(backoff(&c, 3, 0.0), Duration::ZERO);
    }

    #[test]
    fn every_reason_sits_at_its_own_index() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        assert_eq!(Cause::Status(503).reason().label(), "status");
    }

    #[test]
    fn safety_rules() {
        let c = cfg();
        assert!(repeatable(&Method::GET, || false, &c));
        assert!(repeatable(&Method::PUT, || false, &c));
        assert!(!repeatable(&Method::POST, || false, &c));
        // A POST with an Idempotency-Key, on a route that did not opt in, and on one
        // that did.
        assert!(!repeatable(&Method::POST, || true, &c));
        let opt_in = RetryConfig {
            idempotency_key: true,
            ..c
        };
        assert!(repeatable(&Method::POST, || true, &opt_in));
        assert!(!repeatable(&Method::POST, || false, &opt_in));
        assert!(Cause::ConnectFailure.unsent());
        assert!(!Cause::Reset.unsent());
        let mut r = HeaderMap::new();
        r.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&r), Some(Duration::from_secs(2)));
    }
}
