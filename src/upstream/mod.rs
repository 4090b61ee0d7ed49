//! Upstream side: endpoint live state shared by all workers, the selection step that
//! turns a cluster and a request into an endpoint, load balancing, active health
//! checks, and each worker's own pool of keep-alive connections.
//!
//! This module answers "which endpoint" and "give me a connection to it"; it knows
//! nothing of routes or of the request pipeline (`crate::proxy`), which calls it.

pub mod balance;
pub mod breaker;
pub mod endpoint;
pub mod health;
pub mod pool;
pub mod retry;
pub mod ring;
pub mod select;

pub use endpoint::*;
pub use pool::ReqBody;

use std::sync::OnceLock;
use tokio::time::Instant;

/// Milliseconds since the process's first call, on tokio's clock (so tests that pause
/// time drive it): the time base of ejections, health transitions and drains. Starts
/// at 1, so 0 can mean "never".
pub fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_millis() as u64 + 1
}
