//! Validated settings of isolation and drills: bulkheads (a concurrency limit with a
//! bounded queue, on a route or a cluster) and fault injection (aborts and delays of a
//! share of a route's requests).
//!
//! The checks of a fault are plain functions ([`abort`], [`delay`]) so that the admin
//! API's `POST /api/v1/faults` validates its body exactly as the file's `faults:` is
//! validated; `V` wraps them to point errors at the file's key.

use super::collect::V;
use super::raw::*;
use super::units::{parse_duration, parse_percent};
use std::time::Duration;

/// Default `max_queue`: no queue. A bulkhead exists to fail fast when a dependency is
/// slow; waiting requests hold client connections and memory while adding latency, so
/// queueing is opt-in.
pub const DEFAULT_MAX_QUEUE: u32 = 0;
/// Default `queue_timeout`: 50 ms, short enough that a queued request is still useful to
/// its client (well under typical client timeouts and a fraction of a p99 budget) and long
/// enough to absorb a burst that finishes within a couple of fast upstream round trips.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest `ttl` of a run-time fault: a forgotten drill must end on its own within a day.
pub const MAX_FAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// `bulkhead` of a route or cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Requests in progress at once.
    pub max_concurrent: u32,
    /// Requests waiting beyond that.
    pub max_queue: u32,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
}

/// `faults.abort`: answer a share of requests with `status`, never calling the upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbortFault {
    /// Share of requests, percent.
    pub percent: f64,
    /// Status answered.
    pub status: u16,
}

/// `faults.delay`: hold a share of requests for `duration` before forwarding them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayFault {
    /// Share of requests, percent.
    pub percent: f64,
    /// Added latency.
    pub duration: Duration,
}

/// `routes[].faults`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultsConfig {
    /// Aborts.
    pub abort: Option<AbortFault>,
    /// Delays.
    pub delay: Option<DelayFault>,
    /// Whether the `x-ninefold-fault` request header may trigger faults on this route.
    pub allow_header: bool,
    /// Seed of the route's fault RNG, for reproducible drills; `None`: a random seed.
    pub seed: Option<u64>,
}

/// Checks `faults.abort`; the error names the key at fault (`percent`, `status`).
pub fn abort(a: &RawAbort) -> Result<AbortFault, (&'static str, String)> {
    let percent = match &a.percent {
        Some(p) => parse_percent(&p.0).map_err(|m| ("percent", m))?,
        None => return Err(("percent", "required, e.g. 5%".into())),
    };
    let status = match a.status {
        Some(s) if (200..=599).contains(&s) => s,
        Some(s) => return Err(("status", format!("must be between 200 and 599, got {s}"))),
        None => return Err(("status", "required, e.g. 503".into())),
    };
    Ok(AbortFault { percent, status })
}

/// Checks `faults.delay`; the error names the key at fault (`percent`, `duration`).
pub fn delay(d: &RawDelay) -> Result<DelayFault, (&'static str, String)> {
    let percent = match &d.percent {
        Some(p) => parse_percent(&p.0).map_err(|m| ("percent", m))?,
        None => return Err(("percent", "required, e.g. 5%".into())),
    };
    let duration = match &d.duration {
        Some(s) => match parse_duration(&s.0) {
            Ok(t) if t.is_zero() => {
                return Err(("duration", format!("must be greater than zero, got {s}")))
            }
            Ok(t) => t,
            Err(m) => return Err(("duration", m)),
        },
        None => return Err(("duration", "required, e.g. 200ms".into())),
    };
    Ok(DelayFault { percent, duration })
}

// === impl V ===

impl V<'_> {
    /// `bulkhead` of a route or cluster at `p`.
    pub(super) fn bulkhead(&mut self, p: &str, b: &RawBulkhead) -> Option<BulkheadConfig> {
        let max_concurrent = match b.max_concurrent {
            Some(0) => {
                self.err(&format!("{p}.max_concurrent"), "must be at least 1".into());
                return None;
            }
            Some(n) => n,
            None => {
                self.err(&format!("{p}.max_concurrent"), "required, e.g. 100".into());
                return None;
            }
        };
        let queue_timeout = self
            .opt_duration(&format!("{p}.queue_timeout"), b.queue_timeout.as_ref())
            .unwrap_or(DEFAULT_QUEUE_TIMEOUT);
        Some(BulkheadConfig {
            max_concurrent,
            max_queue: b.max_queue.unwrap_or(DEFAULT_MAX_QUEUE),
            queue_timeout,
        })
    }

    /// `routes[].faults` at `p`.
    pub(super) fn faults(&mut self, p: &str, f: &RawFaults) -> Option<FaultsConfig> {
        let mut ok = true;
        let abort = f.abort.as_ref().and_then(|a| match abort(a) {
            Ok(a) => Some(a),
            Err((key, m)) => {
                self.err(&format!("{p}.abort.{key}"), m);
                ok = false;
                None
            }
        });
        let delay = f.delay.as_ref().and_then(|d| match delay(d) {
            Ok(d) => Some(d),
            Err((key, m)) => {
                self.err(&format!("{p}.delay.{key}"), m);
                ok = false;
                None
            }
        });
        ok.then_some(FaultsConfig {
            abort,
            delay,
            allow_header: f.allow_header.unwrap_or(false),
            seed: f.seed,
        })
    }
}
