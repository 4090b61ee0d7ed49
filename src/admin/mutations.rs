//! The admin API's mutations, each behind the bearer token ([`Authorized`]):
//! `POST /api/v1/reload`; the manual failover
//! `POST /api/v1/clusters/{cluster}/endpoints/{address}/drain` and `.../enable`; and
//! the breaker calls `.../endpoints/{address}/breaker/{open|close|reset}` and
//! `/api/v1/clusters/{cluster}/breaker/{open|close|reset}`. An endpoint's state and its
//! breaker live in state every later snapshot carries by (cluster, address), so what
//! is set here survives reloads.

use super::views::{breaker_json, endpoint_json};
use super::{not_found, AdminState, Authorized, NotFound};
use crate::server::ControlRequest;
use crate::snapshot::{ClusterSnap, Snapshot};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

pub(super) async fn reload(who: Authorized, State(s): State<AdminState>) -> Response {
    let r = reload_now(&s).await;
    super::audited(&who, r, "reload")
}

async fn reload_now(s: &AdminState) -> Response {
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
            Json(json!({"status": "refused", "error": e.to_string(), "errors": e})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the gateway is shutting down"})),
        )
            .into_response(),
    }
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/drain`: the endpoint gets no
/// new requests; those in flight finish.
pub(super) async fn drain(
    who: Authorized,
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    super::audited(&who, set_drained(&s, &cluster, &address, true), "drain")
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/enable`: the endpoint takes
/// traffic again (if its health allows), and any ejection ends: the operator vouches
/// for it.
pub(super) async fn enable(
    who: Authorized,
    State(s): State<AdminState>,
    Path((cluster, address)): Path<(String, String)>,
) -> Response {
    super::audited(&who, set_drained(&s, &cluster, &address, false), "enable")
}

/// Drains or enables one endpoint of the running snapshot. Its state object is the one
/// every later snapshot carries by (cluster, address), so the drain survives reloads.
fn set_drained(s: &AdminState, cluster: &str, address: &str, drained: bool) -> Response {
    let snap = s.shared.snapshot.load();
    let c = match find_cluster(&snap, cluster) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let i = match find_endpoint(c, address) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let now = crate::upstream::now_ms();
    let e = &c.endpoints()[i];
    let changed = e.set_drained(drained, now);
    if !drained {
        e.clear_ejection(&c.select.live);
    }
    // A drained endpoint of a cluster that shuts sessions down on mark-down loses its
    // TCP sessions now (a drained primary must not keep taking writes).
    let mut sessions_closed = 0;
    if changed && drained && c.on_marked_down == crate::config::OnMarkedDown::ShutdownSessions {
        sessions_closed = e.fence();
        s.shared
            .metrics
            .fenced
            .with_label_values(&[&c.name, &c.endpoint_names[i]])
            .inc_by(u64::from(sessions_closed));
    }
    if changed {
        let action = if drained { "drained" } else { "enabled" };
        tracing::info!(
            cluster = %c.name,
            endpoint = %e.address,
            in_flight = e.in_flight.load(Ordering::Relaxed),
            sessions_closed,
            "endpoint {action} by the admin API"
        );
        let message = format!("{action} by the admin API ({sessions_closed} sessions closed)");
        crate::events::emit(action, Some(&c.name), Some(&c.endpoint_names[i]), message);
    }
    (
        StatusCode::OK,
        Json(json!({
            "cluster": &*c.name,
            "changed": changed,
            "sessions_closed": sessions_closed,
            "endpoint": endpoint_json(c, i, now),
        })),
    )
        .into_response()
}

/// `POST /api/v1/clusters/{cluster}/endpoints/{address}/breaker/{open|close|reset}`.
pub(super) async fn endpoint_breaker(
    who: Authorized,
    State(s): State<AdminState>,
    Path((cluster, address, action)): Path<(String, String, String)>,
) -> Response {
    let r = set_breaker(&s, &cluster, Some(&address), &action);
    super::audited(&who, r, &format!("breaker {action:?}"))
}

/// `POST /api/v1/clusters/{cluster}/breaker/{open|close|reset}`.
pub(super) async fn cluster_breaker(
    who: Authorized,
    State(s): State<AdminState>,
    Path((cluster, action)): Path<(String, String)>,
) -> Response {
    let r = set_breaker(&s, &cluster, None, &action);
    super::audited(&who, r, &format!("breaker {action:?}"))
}

/// Forces a breaker open or closed (until reset), or resets it. The breaker lives in
/// state carried over reloads, so a forced state survives them. Refused (409) for a
/// cluster whose `circuit_breaker` does not cover that scope: such a breaker would
/// never be consulted, and the call would look like it did something.
fn set_breaker(s: &AdminState, cluster: &str, address: Option<&str>, action: &str) -> Response {
    if !matches!(action, "open" | "close" | "reset") {
        return not_found(format!(
            "no breaker action {action:?} (use open, close or reset)"
        ));
    }
    let snap = s.shared.snapshot.load();
    let c = match find_cluster(&snap, cluster) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
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
    let index = match address.map(|a| find_endpoint(c, a)).transpose() {
        Ok(i) => i,
        Err(e) => return e.into_response(),
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

/// The running snapshot's cluster named `name`, or the 404 that says there is none.
fn find_cluster<'s>(snap: &'s Snapshot, name: &str) -> Result<&'s ClusterSnap, NotFound> {
    snap.clusters
        .iter()
        .find(|c| &*c.name == name)
        .map(|c| &**c)
        .ok_or_else(|| NotFound(format!("no cluster named {name:?}")))
}

/// The index of `c`'s endpoint at `address`, or the 404 that says there is none. The
/// path segment is already percent-decoded: `[::1]:80` arrives the same whether the
/// client encoded the brackets and colons or not.
fn find_endpoint(c: &ClusterSnap, address: &str) -> Result<usize, NotFound> {
    address
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| c.endpoints().iter().position(|e| e.address == a))
        .ok_or_else(|| {
            NotFound(format!(
                "cluster {:?} has no endpoint {address:?} (give it as ip:port, [ipv6]:port)",
                c.name
            ))
        })
}
