//! ninefold: a high-availability gateway.
//!
//! One binary that sits in front of a service's replicas: HTTP/1.1, h2c and TLS
//! listeners, routes, clusters of endpoints with load balancing, hot reload, graceful
//! shutdown, an admin API with Prometheus metrics. The request path:
//!
//! ```text
//! worker (thread per core, own runtime, SO_REUSEPORT socket)
//!   └─ HTTP/1.x, plain or TLS: server::h1 (the own engine's loop) │ h2, h2c: hyper (server::hyper)
//!        └─ proxy::handle: snapshot → route → faults → bulkheads → attempts → forward → ladder → record
//!             └─ HTTP/1.1 upstream: h1::client (h1::pool's keep-alive connections) │ h2: proxy::forward::h2
//!   └─ tcp listeners: tcp::serve: admission (limit, two primaries, fencing) → pick → connect → splice relay
//! ```
//!
//! The modules stand on floors, each importing only from the floors below
//! (docs/architecture.md, "Layers"; `tests/it/layers.rs` enforces it), ground first:
//! - ground: [`alloc`] (pages freed by a configuration load given back),
//!   [`availability`] (nines, k-of-n), [`events`] (the stream of transitions
//!   the dashboard shows), [`logging`], [`oneshot`] (the control
//!   plane's one-shot HTTP exchanges), [`rlimit`], [`runtime`] (named threads with their
//!   runtime), [`timer`] (the workers' deadlines), [`tls`];
//! - model: [`config`] (YAML → validated `Config`, errors with file:line:col and key
//!   path), [`metrics`] (the Prometheus families);
//! - engine: [`h1`] (the own HTTP/1.1 engine: codec, exchange, keep-alive pool,
//!   splice), [`upstream`] (endpoint state, selection, balancers, breakers, retry
//!   policy, health checks);
//! - message: [`message`] (the request head, the bodies, `Failure`);
//! - policy: [`bulkhead`], [`cells`], [`fallback`], [`fault`], [`gate`] (the breaker
//!   gate), [`slo`];
//! - [`snapshot`]: `Config` → immutable compiled `Snapshot` behind an `ArcSwap`;
//! - pipeline: [`proxy`] (the HTTP request pipeline), [`tcp`] (the TCP tier: byte
//!   relay sessions, fenced on a primary switch), [`dns`] (the authoritative DNS
//!   server answering with eligible endpoints);
//! - [`server`]: the control plane, listeners, workers, connection drivers;
//! - [`admin`]: `/metrics`, `/health`, `/api/v1/*` (axum, off the data path);
//! - [`topology`]: a config's availability estimate;
//! - the face: [`calc`], [`lint`] (`ninefold check`'s warnings), [`demo`], [`grafana`]
//!   (a Grafana dashboard for a configuration), [`origin`]
//!   (a tiny backend for drills), [`drill`] (`ninefold drill run`: DR drills that
//!   measure RTO and RPO); `main.rs` starts the gateway and then its admin API.
#![deny(missing_docs)]

pub mod admin;
pub mod alloc;
pub mod autoscale;
pub mod availability;
pub mod bulkhead;
pub mod calc;
pub mod cells;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod dns;
pub mod drill;
pub mod events;
pub mod fallback;
pub mod fault;
pub mod gate;
pub mod grafana;
pub mod h1;
pub mod lint;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod oneshot;
pub mod origin;
pub mod proxy;
pub mod rlimit;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod slo;
pub mod snapshot;
pub mod tcp;
pub mod timer;
pub mod tls;
pub mod topology;
pub mod upstream;
