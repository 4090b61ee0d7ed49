//! The admin listener: `/metrics`, `/health`, and the JSON API under `/api/v1/`.
//!
//! It runs on its own thread and runtime, never on a data-path worker, and binds to
//! loopback unless told otherwise (a non-loopback bind needs `admin.token`, which
//! validation enforces). Reads are open; mutations (`POST /api/v1/reload`, the manual
//! failover `POST /api/v1/clusters/{cluster}/endpoints/{address}/drain` and
//! `.../enable`, and the breaker calls
//! `.../endpoints/{address}/breaker/{open|close|reset}` and
//! `/api/v1/clusters/{cluster}/breaker/{open|close|reset}`) need
//! `Authorization: Bearer <admin.token>` when a token is configured. Without a token
//! the listener is loopback-only, so whoever can reach it is local and mutations are
//! allowed, as for any local admin socket.
//!
//! `/api/v1/state` answers "why is this endpoint out?" for each endpoint in one `why`
//! sentence (drain, failed checks, ejection, open circuit, panic mode, each with
//! since-when or until-when), next to the structured fields it is made of, and shows
//! each bulkhead's in-flight, queued and shed counts per route and cluster.
//!
//! Run-time faults (`POST /api/v1/faults`, `GET /api/v1/faults`,
//! `DELETE /api/v1/faults/{id}`) are set here, token-checked like every mutation; the
//! body is validated as the file's `faults:` is, with a `ttl` required. A 1 s tick on
//! this thread sweeps expired ones out of memory (they stop applying at expiry anyway).

use crate::bulkhead::Bulkhead;
use crate::config::{AdminConfig, BreakerConfig};
use crate::fault::{ActiveFault, FaultRequest};
use crate::server::{ControlRequest, Shared};
use crate::snapshot::ClusterSnap;
use crate::upstream::breaker::Breaker;
use crate::upstream::{EndpointState, Health, Out};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
struct AdminState {
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    token: Option<Arc<str>>,
}

/// Binds the admin listener and serves it on a thread of its own; returns the bound
/// address.
pub fn start(
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    cfg: &AdminConfig,
) -> anyhow::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(cfg.bind)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let sweeper = shared.clone();
    let app = router(shared, control, cfg.token.as_deref());
    std::thread::Builder::new()
        .name("ninefold-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("admin runtime: {e}"),
            };
            rt.block_on(async move {
                // Expired run-time faults stopped applying at their expiry; this only
                // frees them, off the data path.
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                        sweeper.faults.sweep(crate::upstream::now_ms());
                    }
                });
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("admin listener: {e}");
                        }
                    }
                    Err(e) => tracing::error!("admin listener: {e}"),
                }
            });
        })?;
    Ok(addr)
}

/// The admin API's routes.
fn router(
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    token: Option<&str>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/api/v1/state", get(state))
        .route("/api/v1/slos", get(slos))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/faults", post(add_fault).get(list_faults))
        .route("/api/v1/faults/{id}", delete(remove_fault))
        .route(
            "/api/v1/clusters/{cluster}/endpoints/{address}/drain",
            post(drain),
        )
        .route(
            "/api/v1/clusters/{cluster}/endpoints/{address}/enable",
            post(enable),
        )
        .route(
            "/api/v1/clusters/{cluster}/endpoints/{address}/breaker/{action}",
            post(endpoint_breaker),
        )
        .route(
            "/api/v1/clusters/{cluster}/breaker/{action}",
            post(cluster_breaker),
        )
        .with_state(AdminState {
            shared,
            control,
            token: token.map(Into::into),
        })
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let mut text = s.shared.metrics.render();
    // Live-state families are read from the running snapshot at scrape time, so the
    // data path pays nothing for them.
    crate::metrics::render_live(
        &s.shared.snapshot.load(),
        crate::upstream::now_ms(),
        &mut text,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `/health` in the seed's shape: overall status plus one check per cluster.
async fn health(State(s): State<AdminState>) -> Response {
    let snap = s.shared.snapshot.load();
    let mut checks = serde_json::Map::new();
    let (mut ok, mut down) = (0, 0);
    for c in &snap.clusters {
        let h = c.health();
        match h {
            "ok" => ok += 1,
            "down" => down += 1,
            _ => {}
        }
        checks.insert(c.name.to_string(), Value::from(h));
    }
    let n = snap.clusters.len();
    let status = if ok == n {
        "ok"
    } else if down == n {
        "down"
    } else {
        "degraded"
    };
    let code = if status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(json!({"status": status, "checks": checks}))).into_response()
}

/// Live SLOs: SLI, budget, burn rates, alerts.
async fn slos(State(s): State<AdminState>) -> Json<Value> {
    Json(s.shared.slo.status())
}

/// Milliseconds since `at` (a `now_ms` time), or null for "never".
fn since(at: u64, now: u64) -> Option<u64> {
    (at > 0).then(|| now.saturating_sub(at))
}

async fn state(State(s): State<AdminState>) -> Json<Value> {
    let snap = s.shared.snapshot.load();
    let now = crate::upstream::now_ms();
    let bound = s.shared.bound.load();
    let listeners: Vec<Value> = snap
        .listeners
        .iter()
        .map(|l| {
            let addr = bound.iter().find(|(n, _)| **n == *l.name).map(|(_, a)| a.to_string());
            json!({
                "name": &*l.name,
                "bind": l.bind.to_string(),
                "address": addr,
                "protocol": listener_protocol(l.protocol),
                "routes": l.routes.iter().map(|r| json!({
                    "name": &*r.name,
                    "match": {
                        "path_prefix": r.matcher.path_prefix,
                        "path": r.matcher.path,
                        "host": r.matcher.host,
                        "methods": r.matcher.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>()),
                        "headers": r.matcher.headers.iter().map(|(k, v)| (k.as_str().to_owned(), Value::from(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
                    },
                    "cluster": if r.cells.is_some() { Value::Null } else { Value::from(&*r.cluster.name) },
                    "cells": r.cells.as_ref().map(|c| &*c.name),
                    "fallback": r.fallback.as_ref().map(|f| json!({
                        "cluster": f.cluster.as_ref().map(|c| &*c.name),
                        "stale": f.stale.map(|s| json!({"max_age_ms": s.max_age.as_millis() as u64, "max_entries": s.max_entries, "max_bytes": s.max_bytes, "private": s.private})),
                        "static": f.static_answer.as_ref().map(|s| s.status),
                        "methods": f.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    })),
                    "timeout_ms": r.timeout.as_millis() as u64,
                    "idle_timeout_ms": r.idle_timeout.as_millis() as u64,
                    "bulkhead": r.bulkhead.as_deref().map(bulkhead_json),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let clusters: Vec<Value> = snap
        .clusters
        .iter()
        .map(|c| {
            json!({
                "name": &*c.name,
                "lb": c.lb.as_str(),
                "protocol": upstream_protocol(c.protocol),
                "connect_timeout_ms": c.connect_timeout.as_millis() as u64,
                "health": c.health(),
                "panic": c.select.in_panic(now),
                "panic_since_ms": since(c.select.live.panic_since.load(Ordering::Relaxed), now),
                "health_check": c.health_check.as_ref().map(|h| json!({
                    "kind": match &h.kind { crate::config::CheckKind::Http { .. } => "http", crate::config::CheckKind::Tcp => "tcp" },
                    "interval_ms": h.interval.as_millis() as u64,
                    "healthy_threshold": h.healthy_threshold,
                    "unhealthy_threshold": h.unhealthy_threshold,
                })),
                "breaker": c.breaker.filter(|b| b.scope.cluster()).map(|b| breaker_json(&c.select.live.breaker, &b, now)),
                "endpoints": (0..c.endpoints().len()).map(|i| endpoint_json(c, i, now)).collect::<Vec<_>>(),
                "bulkhead": c.bulkhead.as_deref().map(bulkhead_json),
            })
        })
        .collect();
    let cells: Vec<Value> = snap
        .cells
        .iter()
        .map(|set| {
            let evacuate = set.on_down == crate::config::OnCellDown::Evacuate;
            json!({
                "name": &*set.name,
                "on_cell_down": set.on_down.as_str(),
                "default": set.default.map(|i| &*set.members[i].name),
                "members": set.members.iter().enumerate().map(|(i, m)| {
                    let up = set.live(i, now);
                    json!({
                        "name": &*m.name,
                        "cluster": &*m.cluster.name,
                        "state": if up { "up" } else { "down" },
                        // Its keys are served by the other cells until it recovers.
                        "evacuated": evacuate && !up,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "generation": snap.generation,
        "source": snap.config.source,
        "workers": snap.config.workers,
        "listeners": listeners,
        "clusters": clusters,
        "cells": cells,
    }))
}

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(denied) = unauthorized(&s, &headers) {
        return denied;
    }
    let (tx, rx) = oneshot::channel();
    if s.control.send(ControlRequest::Reload(tx)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the gateway is shutting down"})),
        )
            .into_response();
    }
    match rx.await {
        Ok(Ok(outcome)) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "reload": outcome})),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": "refused", "error": e})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the gateway is shutting down"})),
        )
            .into_response(),
    }
}

/// The 401 (with `WWW-Authenticate: Bearer`) a mutation gets without the right token,
/// or `None` to let it through. Without a configured token every mutation is allowed:
/// validation keeps such an admin listener on loopback.
fn unauthorized(s: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.token else {
        return None;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "a valid bearer token is required"})),
        )
            .into_response(),
    )
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/drain`: the endpoint gets no
/// new requests; those in flight finish.
async fn drain(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    set_drained(&s, &headers, &cluster, &address, true)
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/enable`: the endpoint takes
/// traffic again (if its health allows), and any ejection ends: the operator vouches
/// for it.
async fn enable(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    set_drained(&s, &headers, &cluster, &address, false)
}

/// Drains or enables one endpoint of the running snapshot. Its state object is the one
/// every later snapshot carries by (cluster, address), so the drain survives reloads.
fn set_drained(
    s: &AdminState,
    headers: &HeaderMap,
    cluster: &str,
    address: &str,
    drained: bool,
) -> Response {
    if let Some(denied) = unauthorized(s, headers) {
        return denied;
    }
    let snap = s.shared.snapshot.load();
    let Some(c) = snap.clusters.iter().find(|c| &*c.name == cluster) else {
        return not_found(format!("no cluster named {cluster:?}"));
    };
    // The path segment is already percent-decoded: `[::1]:80` arrives the same whether
    // the client encoded the brackets and colons or not.
    let index = address
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| c.endpoints().iter().position(|e| e.address == a));
    let Some(i) = index else {
        return not_found(format!(
            "cluster {cluster:?} has no endpoint {address:?} (give it as ip:port, [ipv6]:port)"
        ));
    };
    let now = crate::upstream::now_ms();
    let e = &c.endpoints()[i];
    let changed = e.set_drained(drained, now);
    if !drained {
        e.clear_ejection(&c.select.live);
    }
    if changed {
        let action = if drained { "drained" } else { "enabled" };
        tracing::info!(
            cluster = %c.name,
            endpoint = %e.address,
            in_flight = e.in_flight.load(Ordering::Relaxed),
            "endpoint {action} by the admin API"
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "cluster": &*c.name,
            "changed": changed,
            "endpoint": endpoint_json(c, i, now),
        })),
    )
        .into_response()
}

/// A bulkhead's limits and live counts, for the state API.
fn bulkhead_json(b: &Bulkhead) -> Value {
    json!({
        "max_concurrent": b.config.max_concurrent,
        "max_queue": b.config.max_queue,
        "queue_timeout_ms": b.config.queue_timeout.as_millis() as u64,
        "in_flight": b.in_flight(),
        "queued": b.queued(),
        "shed": b.shed(),
    })
}

/// A run-time fault as the API shows it.
fn fault_json(f: &ActiveFault, now: u64) -> Value {
    json!({
        "id": f.id,
        "route": f.route,
        "abort": f.abort.map(|a| json!({"percent": a.percent, "status": a.status})),
        "delay": f.delay.map(|d| json!({
            "percent": d.percent,
            "duration": format!("{}ms", d.duration.as_millis()),
        })),
        "ttl": format!("{}ms", f.expires_at.saturating_sub(f.created_at)),
        "expires_in_ms": f.expires_at.saturating_sub(now),
    })
}

/// `POST /api/v1/faults`: sets a run-time fault; 201 with it and its id.
async fn add_fault(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(denied) = unauthorized(&s, &headers) {
        return denied;
    }
    let now = crate::upstream::now_ms();
    s.shared.faults.sweep(now);
    let req = match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    let snap = s.shared.snapshot.load();
    let exists = |name: &str| {
        snap.listeners
            .iter()
            .any(|l| l.routes.iter().any(|r| &*r.name == name))
    };
    match req.validate(exists) {
        Ok(f) => {
            let f = s.shared.faults.add(f, now);
            tracing::warn!(
                id = f.id,
                route = %f.route,
                ttl_ms = f.expires_at - f.created_at,
                "fault injection set by the admin API"
            );
            (StatusCode::CREATED, Json(fault_json(&f, now))).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `GET /api/v1/faults`: the run-time faults in force.
async fn list_faults(State(s): State<AdminState>) -> Json<Value> {
    let now = crate::upstream::now_ms();
    s.shared.faults.sweep(now);
    let list: Vec<Value> = s
        .shared
        .faults
        .live(now)
        .iter()
        .map(|f| fault_json(f, now))
        .collect();
    Json(json!({ "faults": list }))
}

/// `DELETE /api/v1/faults/{id}`: ends a run-time fault now; 404 if unknown or over.
async fn remove_fault(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(denied) = unauthorized(&s, &headers) {
        return denied;
    }
    let now = crate::upstream::now_ms();
    match id.parse::<u64>() {
        Ok(n) if s.shared.faults.remove(n, now) => {
            tracing::info!(id = n, "fault injection removed by the admin API");
            (StatusCode::OK, Json(json!({"removed": n}))).into_response()
        }
        _ => not_found(format!("no active fault with id {id:?}")),
    }
}

fn bad_request(error: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
}

/// One endpoint of the state API: where it sits, its live state, and `why` it is out.
fn endpoint_json(c: &ClusterSnap, i: usize, now: u64) -> Value {
    let e = &c.endpoints()[i];
    let m = &c.select.meta[i];
    let check = e.check.lock().map(|c| c.clone()).unwrap_or_default();
    let out = e.out(now);
    json!({
        "address": e.address.to_string(),
        "zone": m.zone.as_deref(),
        "weight": m.weight,
        "priority": m.priority,
        "in_flight": e.in_flight.load(Ordering::Relaxed),
        "requests": e.requests.load(Ordering::Relaxed),
        "available": out.is_none(),
        "out": out.map(out_name),
        "why": why(c, e, &check, now),
        "health": health_name(e.health()),
        "health_since_ms_ago": since(e.health_since(), now),
        "last_check": (check.at_ms > 0).then(|| json!({
            "result": check.last,
            "ms_ago": now.saturating_sub(check.at_ms),
            "passes_in_a_row": check.passes,
            "failures_in_a_row": check.failures,
        })),
        // Ejected whatever else holds (a drained endpoint can be ejected too), as the
        // `ninefold_endpoint_ejected` gauge says.
        "ejected": e.ejected_until() > now,
        "ejected_for_ms": e.ejected_until().saturating_sub(now),
        "ejected_since_ms_ago": (e.ejected_until() > now).then(|| now.saturating_sub(e.ejected_since())),
        "ejections_in_a_row": e.ejections(),
        "failures_in_a_row": e.failures(),
        "drained": e.drained(),
        "drained_since_ms_ago": e.drained().then(|| now.saturating_sub(e.drained_since())),
        "breaker": c.breaker.filter(|b| b.scope.endpoint()).map(|b| breaker_json(&e.breaker, &b, now)),
    })
}

/// A breaker in the state API: its state as traffic sees it, since when, the open time
/// left, what it has counted, and whether an operator forced it.
fn breaker_json(b: &Breaker, cfg: &BreakerConfig, now: u64) -> Value {
    let (requests, failures) = b.window(cfg.window_secs, now);
    json!({
        "state": b.state(now).as_str(),
        "since_ms_ago": since(b.since(), now),
        "open_for_ms_left": b.open_until().saturating_sub(now),
        "consecutive_failures": b.consecutive_failures(),
        "window": {"requests": requests, "failures": failures, "seconds": cfg.window_secs},
        "forced": b.forced().map(|s| s.as_str()),
    })
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/breaker/{open|close|reset}`.
async fn endpoint_breaker(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((cluster, address, action)): Path<(String, String, String)>,
) -> Response {
    set_breaker(&s, &headers, &cluster, Some(&address), &action)
}

/// `POST /api/v1/clusters/{cluster}/breaker/{open|close|reset}`.
async fn cluster_breaker(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((cluster, action)): Path<(String, String)>,
) -> Response {
    set_breaker(&s, &headers, &cluster, None, &action)
}

/// Forces a breaker open or closed (until reset), or resets it. The breaker lives in
/// state carried over reloads, so a forced state survives them. Refused (409) for a
/// cluster whose `circuit_breaker` does not cover that scope: such a breaker would
/// never be consulted, and the call would look like it did something.
fn set_breaker(
    s: &AdminState,
    headers: &HeaderMap,
    cluster: &str,
    address: Option<&str>,
    action: &str,
) -> Response {
    if let Some(denied) = unauthorized(s, headers) {
        return denied;
    }
    if !matches!(action, "open" | "close" | "reset") {
        return not_found(format!(
            "no breaker action {action:?} (use open, close or reset)"
        ));
    }
    let snap = s.shared.snapshot.load();
    let Some(c) = snap.clusters.iter().find(|c| &*c.name == cluster) else {
        return not_found(format!("no cluster named {cluster:?}"));
    };
    let scope_ok = c.breaker.is_some_and(|b| {
        if address.is_some() {
            b.scope.endpoint()
        } else {
            b.scope.cluster()
        }
    });
    if !scope_ok {
        let scope = if address.is_some() {
            "endpoint"
        } else {
            "cluster"
        };
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": format!("cluster {cluster:?} has no {scope} circuit breaker (set circuit_breaker.scope)")})),
        )
            .into_response();
    }
    let index = match address {
        None => None,
        Some(address) => {
            let i = address
                .parse::<SocketAddr>()
                .ok()
                .and_then(|a| c.endpoints().iter().position(|e| e.address == a));
            let Some(i) = i else {
                return not_found(format!(
                    "cluster {cluster:?} has no endpoint {address:?} (give it as ip:port, [ipv6]:port)"
                ));
            };
            Some(i)
        }
    };
    let b = match index {
        Some(i) => &c.endpoints()[i].breaker,
        None => &c.select.live.breaker,
    };
    let now = crate::upstream::now_ms();
    let t = match action {
        "open" => b.force_open(now),
        "close" => b.force_closed(now),
        _ => b.reset(now),
    };
    if let Some(t) = &t {
        let ep = index.map_or("", |i| &*c.endpoint_names[i]);
        crate::upstream::breaker::log(&c.name, ep, t);
    }
    let cfg = c.breaker.unwrap_or_default();
    (
        StatusCode::OK,
        Json(json!({
            "cluster": &*c.name,
            "endpoint": index.map(|i| &*c.endpoint_names[i]),
            "changed": t.is_some(),
            "breaker": breaker_json(b, &cfg, now),
        })),
    )
        .into_response()
}

/// "Why is this endpoint out?" in one sentence, or null when it takes traffic. Every
/// reason that holds is named, most fundamental first, so that enabling a drained
/// endpoint does not surprise anyone with a failing check behind it.
fn why(
    c: &ClusterSnap,
    e: &EndpointState,
    check: &crate::upstream::CheckReport,
    now: u64,
) -> Option<String> {
    let mut reasons = Vec::new();
    if e.drained() {
        reasons.push(format!(
            "drained {} ago",
            human_ms(now.saturating_sub(e.drained_since()))
        ));
    }
    if e.health() == Health::Unhealthy {
        let mut r = match since(e.health_since(), now) {
            Some(ms) => format!("failing health checks for {}", human_ms(ms)),
            None => "failing health checks".to_owned(),
        };
        if check.at_ms > 0 {
            r.push_str(&format!(": {} ({} in a row)", check.last, check.failures));
        }
        reasons.push(r);
    }
    if e.ejected_until() > now {
        let times = e.ejections();
        reasons.push(format!(
            "ejected {} ago until +{} ({} ejection in a row)",
            human_ms(now.saturating_sub(e.ejected_since())),
            human_ms(e.ejected_until() - now),
            ordinal(times)
        ));
    }
    if !e.breaker.may_pass(now) {
        let until = e.breaker.open_until();
        reasons.push(match (e.breaker.forced(), until > now) {
            (Some(_), _) => "circuit forced open by admin".to_owned(),
            (None, true) => format!("circuit open until +{}", human_ms(until - now)),
            (None, false) => "circuit half-open, every probe taken".to_owned(),
        });
    }
    if reasons.is_empty() {
        return None;
    }
    let mut s = reasons.join("; ");
    // Panic mode sends traffic to unhealthy and ejected endpoints (never to drained
    // ones), so "out" is not the whole truth then.
    if c.select.live.panic.load(Ordering::Relaxed) && !e.drained() {
        let since_ms = since(c.select.live.panic_since.load(Ordering::Relaxed), now);
        s.push_str(&format!(
            "; serving anyway: panic mode for {}",
            human_ms(since_ms.unwrap_or(0))
        ));
    }
    Some(s)
}

/// `1234` → `1.2s`, `65000` → `1m5s`: durations a person reads at a glance.
fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=59_999 => format!("{}s", ms / 1000),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// `1` → `1st`, `2` → `2nd`, `11` → `11th`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The config's names, spelled out rather than derived from `Debug`, which is free to
/// change.
fn listener_protocol(p: crate::config::ListenerProtocol) -> &'static str {
    use crate::config::ListenerProtocol::*;
    match p {
        Http => "http",
        Https => "https",
        Tcp => "tcp",
    }
}

fn upstream_protocol(p: crate::config::UpstreamProtocol) -> &'static str {
    use crate::config::UpstreamProtocol::*;
    match p {
        Http1 => "http1",
        Http2 => "http2",
    }
}

fn out_name(o: Out) -> &'static str {
    match o {
        Out::Drained => "drained",
        Out::Unhealthy => "unhealthy",
        Out::Ejected => "ejected",
        Out::CircuitOpen => "circuit-open",
    }
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(4_200), "4.2s");
        assert_eq!(human_ms(12_000), "12s");
        assert_eq!(human_ms(65_000), "1m5s");
        assert_eq!(human_ms(3_660_000), "1h1m");
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101]
            .map(ordinal)
            .into();
        assert_eq!(
            got,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st"]
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
