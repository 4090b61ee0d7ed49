//! Integration tests: the real `ninefold` binary against real backends on loopback.
//!
//! - `support`: gateway process, backends, clients.
//! - `proxy`: forwarding, headers, h2c, WebSocket, gRPC over h2, failures.
//! - `balance`: load-balancing algorithms end to end.
//! - `calc`: `ninefold calc` and the HA lint of `check`, decision-table examples.
//! - `config`: `ninefold check` errors and `serve` refusals.
//! - `grafana`: the generated dashboard's every query, and the SLO rules, in a real Prometheus.
//! - `slo`: live SLIs, burn-rate alerts to a real receiver, persistence, promtool.
//! - `failover`: real origin processes SIGKILLed and SIGSTOPped under load, zones, retry budget.
//! - `lifecycle`: hot reload and graceful shutdown.
//! - `admin`: metrics, health, state, token.
//! - `discovery`: endpoints found by DNS (Debian's dnsmasq as the authority: changes,
//!   removals that drain, a dead resolver, the churn guard, SRV) and by a watched file.
//! - `autoscale`: the recommender's closed loop (a hook starting and stopping real
//!   origins), the cpu target from endpoints' pages with a webhook, zone headroom.
//! - `dns`: the authoritative DNS server: eligible endpoints, priority failover, NXDOMAIN, REFUSED.
//! - `dashboard`: the page, per-endpoint figures and state words, `/api/v1/events`, audit lines.
//! - `health`: active health checks, their state and metric, failover to a backup level.
//! - `failover_admin`: manual drain/enable, its reload survival, live-state metrics.
//! - `tls`: https listeners, ALPN, certificate reload.
//! - `streaming`: 1 GiB each way with flat memory.
//! - `conformance`: hostile HTTP/1.1 and h2c bytes through ninefold, nginx and HAProxy side by side.
//! - `cves`: one test per published HTTP/1 smuggling CVE (hyper, Pingora, HAProxy, Envoy).
//! - `browser`: the dashboard in headless chromium: a killed backend's row, a drain from the
//!   page with the token, a screenshot, 500 endpoints.
//! - `breaker`: the circuit breaker tripping, probing, closing, forced by the admin API.
//! - `packaging`: the systemd unit (systemd-analyze verify), the Dockerfile, `ninefold health`,
//!   `--help` for every subcommand, `--json` output.
//! - `ops`: uncoloured logs on a pipe, the access log's queue, the open-files limit.
//! - `isolation`: bulkheads (a hanging route beside a healthy one) and fault injection.
//! - `cells`: cell routing by key, isolation and evacuation of a dead cell.
//! - `fallback`: the fallback ladder (another cluster, stale, static) and its privacy rules.
//! - `engine`: the own HTTP/1.1 engine on raw sockets (limits, pooling, early answers,
//!   pipelining with bodies, HTTP/1.0 keep-alive).
//! - `splice`: long bodies relayed by `splice(2)`: whole, cut, stalled, abandoned.
//! - `layers`: the floors of `src/` (docs/architecture.md), read from the code's imports.
//! - `chaostoolkit`: `chaos run` with contrib/chaostoolkit-ninefold against a gateway.
//! - `drill`: `ninefold drill run` against a real PostgreSQL pair (sync and async
//!   standby: RTO, lost writes counted exactly), rollbacks after a failure and Ctrl-C.
//! - `pgfix`: a real PostgreSQL primary and streaming standby in temporary directories.
//! - `postgres`: the TCP tier against them: roles, logins, failover, two primaries, lag.
//! - `tcp`: `protocol: tcp` listeners: relay, limit, next endpoint, reload drain,
//!   Patroni checks, fencing and a flapping check.

mod admin;
// Autoscaling: the closed loop with real origin processes, cpu, zone headroom.
mod autoscale;
mod balance;
// The circuit breaker: trip, probes per open time, recovery, admin calls, state export.
mod breaker;
// The dashboard in Debian's headless chromium, over the DevTools protocol.
mod browser;
mod calc;
// Chaos Toolkit with the contrib extension, from PyPI into a virtualenv.
mod chaostoolkit;
// Cells: four cells on four clusters, one goes down (fail isolates, evacuate re-homes).
mod cells;
mod config;
// The dashboard's server side: page, figures, state words, events, audit lines.
mod dashboard;
// ninefold answering DNS, queried with Debian's dig over UDP and TCP.
mod discovery;
mod dns;
// The own HTTP/1.1 engine on raw sockets: limits, pooling, bodies, pipelining.
mod engine;
mod failover;
// `ninefold grafana` and `slo rules` against a real Prometheus scraping a gateway.
mod grafana;
// The fallback ladder: cluster, stale (connect failure, 5xx, timeout), static; privacy.
mod fallback;
// Differential framing suite: ninefold against nginx and HAProxy on raw sockets.
mod conformance;
// Known HTTP/1 CVEs, one test each, on the conformance suite's raw sockets and recorder.
mod cves;
// Active health checks against real backends and refusing ports.
mod health;
// Issue parts 2 and 5: bulkheads keep a hanging route from hurting another; faults
// from the file, the header and the admin API, their ttl, and count_faults.
mod isolation;
// Issue 9: drain/enable through the admin API, and the failover metric families.
mod failover_admin;
// The floors of src/: each module imports only from below (no binary is run).
mod drill;
mod layers;
mod lifecycle;
mod ops;
// The operator's packaging: systemd unit, Dockerfile, `health`, --help, --json.
mod packaging;
mod pgfix;
mod postgres;
mod proxy;
mod slo;
mod tcp;
// Long bodies by splice(2): whole beside copied ones, cut, stalled, abandoned.
mod splice;
mod streaming;
mod support;
mod tls;
