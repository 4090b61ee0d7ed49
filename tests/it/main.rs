//! Integration tests: the real `ninefold` binary against real backends on loopback.
//!
//! - `support`: gateway process, backends, clients.
//! - `proxy`: forwarding, headers, h2c, WebSocket, gRPC over h2, failures.
//! - `balance`: load-balancing algorithms end to end.
//! - `calc`: `ninefold calc` and the HA lint of `check`, decision-table examples.
//! - `config`: `ninefold check` errors and `serve` refusals.
//! - `slo`: live SLIs, burn-rate alerts to a real receiver, persistence, promtool.
//! - `lifecycle`: hot reload and graceful shutdown.
//! - `admin`: metrics, health, state, token.
//! - `tls`: https listeners, ALPN, certificate reload.
//! - `streaming`: 1 GiB each way with flat memory.
//! - `ops`: uncoloured logs on a pipe, the access log's queue, the open-files limit.

mod admin;
mod balance;
mod calc;
mod config;
mod lifecycle;
mod ops;
mod proxy;
mod slo;
mod streaming;
mod support;
mod tls;
