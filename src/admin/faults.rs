//! Run-time faults through the admin API: `POST /api/v1/faults` (token-checked like
//! every mutation; the body is validated as the file's `faults:` is, with a `ttl`
//! required), `GET /api/v1/faults`, `DELETE /api/v1/faults/{id}`. Faults live outside
//! the snapshot (`fault::RuntimeFaults`), so a reload keeps them, and each ends at its
//! own expiry.

use super::{bad_request, not_found, AdminState, Authorized};
use crate::fault::{ActiveFault, FaultRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

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
pub(super) async fn add(who: Authorized, State(s): State<AdminState>, body: Bytes) -> Response {
    let r = add_now(&s, body);
    super::audited(&who, r, "fault added")
}

fn add_now(s: &AdminState, body: Bytes) -> Response {
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
            let what = match (f.abort, f.delay) {
                (Some(a), _) => format!("abort {}% with {}", a.percent, a.status),
                (None, Some(d)) => format!("delay {}% by {} ms", d.percent, d.duration.as_millis()),
                (None, None) => "nothing".to_owned(),
            };
            let ttl = (f.expires_at - f.created_at) / 1000;
            let message = format!("fault {} on route {}: {what}, for {ttl} s", f.id, f.route);
            crate::events::emit("fault_added", None, None, message);
            (StatusCode::CREATED, Json(fault_json(&f, now))).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `GET /api/v1/faults`: the run-time faults in force.
pub(super) async fn list(State(s): State<AdminState>) -> Json<Value> {
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
pub(super) async fn remove(
    who: Authorized,
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Response {
    let r = remove_now(&s, &id);
    super::audited(&who, r, "fault removed")
}

fn remove_now(s: &AdminState, id: &str) -> Response {
    let now = crate::upstream::now_ms();
    match id.parse::<u64>() {
        Ok(n) if s.shared.faults.remove(n, now) => {
            tracing::info!(id = n, "fault injection removed by the admin API");
            crate::events::emit(
                "fault_removed",
                None,
                None,
                format!("fault {n} removed by the admin API"),
            );
            (StatusCode::OK, Json(json!({"removed": n}))).into_response()
        }
        _ => not_found(format!("no active fault with id {id:?}")),
    }
}
