//! The admin listener: `/metrics`, `/health`, and the JSON API under `/api/v1/`.
//!
//! It runs on its own thread and runtime, never on a data-path worker, and binds to
//! loopback unless told otherwise (a non-loopback bind needs `admin.token`, which
//! validation enforces). Reads are open; mutations (`POST /api/v1/reload`) need
//! `Authorization: Bearer <admin.token>` when a token is configured.

use crate::config::AdminConfig;
use crate::server::{ControlRequest, Shared};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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
        .with_state(AdminState {
            shared,
            control,
            token: token.map(Into::into),
        })
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.shared.metrics.render(),
    )
        .into_response()
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
                "protocol": format!("{:?}", l.protocol).to_lowercase(),
                "routes": l.routes.iter().map(|r| json!({
                    "name": &*r.name,
                    "match": {
                        "path_prefix": r.matcher.path_prefix,
                        "path": r.matcher.path,
                        "host": r.matcher.host,
                        "methods": r.matcher.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>()),
                        "headers": r.matcher.headers.iter().map(|(k, v)| (k.as_str().to_owned(), Value::from(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
                    },
                    "cluster": &*r.cluster.name,
                    "timeout_ms": r.timeout.as_millis() as u64,
                    "idle_timeout_ms": r.idle_timeout.as_millis() as u64,
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
                "protocol": format!("{:?}", c.protocol).to_lowercase(),
                "connect_timeout_ms": c.connect_timeout.as_millis() as u64,
                "health": c.health(),
                "panic": c.select.live.panic.load(Ordering::Relaxed),
                "panic_since_ms": since(c.select.live.panic_since.load(Ordering::Relaxed), now),
                "health_check": c.health_check.as_ref().map(|h| json!({
                    "kind": match &h.kind { crate::config::CheckKind::Http { .. } => "http", crate::config::CheckKind::Tcp => "tcp" },
                    "interval_ms": h.interval.as_millis() as u64,
                    "healthy_threshold": h.healthy_threshold,
                    "unhealthy_threshold": h.unhealthy_threshold,
                })),
                "endpoints": c.endpoints().iter().zip(&c.select.meta).map(|(e, m)| {
                    let check = e.check.lock().map(|c| c.clone()).unwrap_or_default();
                    json!({
                        "address": e.address.to_string(),
                        "zone": m.zone.as_deref(),
                        "weight": m.weight,
                        "priority": m.priority,
                        "in_flight": e.in_flight.load(Ordering::Relaxed),
                        "requests": e.requests.load(Ordering::Relaxed),
                        "available": e.available(now),
                        "out": e.out(now),
                        "health": e.health(),
                        "health_since_ms_ago": since(e.health_since(), now),
                        "last_check": (check.at_ms > 0).then(|| json!({
                            "result": check.last,
                            "ms_ago": now.saturating_sub(check.at_ms),
                            "passes_in_a_row": check.passes,
                            "failures_in_a_row": check.failures,
                        })),
                        "ejected": e.out(now) == Some(crate::upstream::Out::Ejected),
                        "ejected_for_ms": e.ejected_until().saturating_sub(now),
                        "ejected_since_ms_ago": (e.ejected_until() > now).then(|| now.saturating_sub(e.ejected_since())),
                        "ejections_in_a_row": e.ejections(),
                        "failures_in_a_row": e.failures(),
                        "drained": e.drained(),
                        "drained_since_ms_ago": e.drained().then(|| now.saturating_sub(e.drained_since())),
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
    }))
}

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(token) = &s.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a valid bearer token is required"})),
            )
                .into_response();
        }
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

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
