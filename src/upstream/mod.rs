//! Upstream side: endpoint live state shared by all workers, the selection step that
//! turns a cluster and a request into an endpoint, load balancing, active health
//! checks, and each worker's own pool of keep-alive connections.
//!
//! This module answers "which endpoint" and "give me a connection to it"; it knows
//! nothing of routes. Of the request pipeline (`crate::proxy`), which calls it, it
//! reads only the request's head, to decide whether a request may be retried
//! ([`retry::repeatable`]).

pub mod balance;
pub mod breaker;
pub mod endpoint;
pub mod figures;
pub mod health;
pub mod pg;
pub mod retry;
pub mod ring;
pub mod select;

pub use endpoint::*;

use std::sync::OnceLock;
use tokio::time::Instant;

/// Milliseconds since the process's first call, on tokio's clock (so tests that pause
/// time drive it): the time base of ejections, health transitions and drains. Starts
/// at 1, so 0 can mean "never".
pub fn now_ms() -> u64 {
    now_ms_at(Instant::now())
}

/// [`now_ms`] for a clock reading already taken (`at`), such as a request's start: the
/// request path's first decisions reuse that reading rather than make another.
pub fn now_ms_at(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(|| at);
    at.saturating_duration_since(base).as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reading_taken_before_counts_as_the_clock_then() {
        let at = Instant::now();
        let then = now_ms_at(at);
        assert!(then >= 1);
        assert_eq!(now_ms_at(at + Duration::from_millis(250)), then + 250);
        assert!(now_ms() >= then, "the clock read later is not behind");
        // A reading from before the time base is its start, never below it.
        if let Some(early) = at.checked_sub(Duration::from_secs(3600)) {
            assert_eq!(now_ms_at(early), 1);
        }
    }
}
