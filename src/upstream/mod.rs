//! Upstream side: endpoint state shared by all workers, load balancing, and each
//! worker's own pool of keep-alive connections.
//!
//! This module knows nothing of routes or of the request pipeline (`crate::proxy`);
//! it answers "which endpoint" and "give me a connection to it".

pub mod balance;
pub mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Live state of one endpoint, shared by every worker through atomics and carried
/// over a reload when the endpoint (cluster name + address) survives it.
#[derive(Debug)]
pub struct EndpointState {
    /// Index of this endpoint in each worker's connection pool; stable for its life.
    pub slot: usize,
    /// Address.
    pub address: SocketAddr,
    /// Zone label.
    pub zone: Option<String>,
    /// Weight.
    pub weight: u32,
    /// Requests in flight (least_request reads it).
    pub in_flight: AtomicU32,
    /// Connect failures in a row; 0 after any successful connect.
    pub connect_failures: AtomicU32,
    /// Requests sent, for the state API.
    pub requests: AtomicU64,
}

/// Decrements an endpoint's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

// === impl EndpointState ===

impl EndpointState {
    /// New endpoint state.
    pub fn new(slot: usize, address: SocketAddr, zone: Option<String>, weight: u32) -> Self {
        EndpointState {
            slot,
            address,
            zone,
            weight,
            in_flight: AtomicU32::new(0),
            connect_failures: AtomicU32::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Marks a request as started; the returned guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether the last connect attempt failed (passive signal until active health
    /// checks land).
    pub fn is_failing(&self) -> bool {
        self.connect_failures.load(Ordering::Relaxed) > 0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
