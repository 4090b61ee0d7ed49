//! ninefold: a high-availability gateway.
//!
//! One binary that sits in front of a service's replicas: HTTP/1.1, h2c and TLS
//! listeners, routes, clusters of endpoints with load balancing, hot reload, graceful
//! shutdown, an admin API with Prometheus metrics. The request path:
//!
//! ```text
//! worker (thread per core, own runtime, SO_REUSEPORT socket)
//!   └─ plain HTTP/1.x: h1::server (own engine) │ h2c, TLS: hyper (server::serve_conn)
//!        └─ proxy::handle: snapshot → route → balancer → forward → record
//!             └─ HTTP/1.1 upstream: h1::client │ h2: hyper's client
//!                  └─ upstream::pool (per-worker keep-alive connections)
//! ```
//!
//! Module map:
//! - [`config`]: YAML → validated `Config`, errors with file:line:col and key path.
//! - [`snapshot`]: `Config` → immutable compiled `Snapshot` behind an `ArcSwap`.
//! - [`h1`]: the own HTTP/1.1 engine (heads on httparse, strict framing, pooled
//!   buffers) for plain client connections and every HTTP/1.1 upstream.
//! - [`proxy`]: the request pipeline (route, forward, bodies, error responses).
//! - [`upstream`]: endpoint state (atomics), load balancers, connection pools.
//! - [`server`]: workers, listeners, reload, graceful shutdown.
//! - [`admin`]: `/metrics`, `/health`, `/api/v1/*` (axum, off the data path).
//! - [`availability`], [`topology`], [`calc`]: availability arithmetic, a config's
//!   estimate, and `ninefold calc`.
//! - [`lint`]: the HA anti-pattern warnings of `ninefold check`.
//! - [`slo`]: SLOs, error budgets, burn-rate alerts, state on disk, Prometheus rules.
//! - [`metrics`], [`tls`], [`logging`], [`demo`], [`origin`] (a tiny backend for drills).
//! - [`rlimit`]: the open-files limit raised to the hard limit at start.
#![deny(missing_docs)]

pub mod admin;
pub mod availability;
pub mod bulkhead;
pub mod calc;
pub mod cells;
pub mod config;
pub mod demo;
pub mod fallback;
pub mod fault;
pub mod gate;
pub mod h1;
pub mod lint;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod oneshot;
pub mod origin;
pub mod proxy;
pub mod rlimit;
pub mod runtime;
pub mod server;
pub mod slo;
pub mod snapshot;
pub mod timer;
pub mod tls;
pub mod topology;
pub mod upstream;
