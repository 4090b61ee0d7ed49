//! The admin listener: the dashboard at `/` (`page`), `/metrics`, `/health`, the
//! JSON API under `/api/v1/`, and the transitions as server-sent events
//! (`/api/v1/events`, `events`).
//!
//! It runs on its own thread and runtime, never on a data-path worker, and binds to
//! loopback unless told otherwise (a non-loopback bind needs `admin.token`, which
//! validation enforces). Reads are open (`views`, [`live`]); mutations
//! (`mutations`, and setting or ending a run-time fault, `faults`) need
//! `Authorization: Bearer <admin.token>` when a token is configured, checked once, by
//! the [`Authorized`] extractor every mutation takes. Without a token the listener is
//! loopback-only, so whoever can reach it is local and mutations are allowed, as for
//! any local admin socket. Every mutation is logged as an audit line (target
//! `ninefold::audit`: the peer, what it asked, and the outcome; the log line's time is
//! the when), refused ones included.
//!
//! It sits above the server: it reads the gateway's [`Shared`] state and asks the
//! control plane to reload over a channel ([`ControlRequest`]). The face (`main`)
//! starts the gateway, then this, and stops this after the gateway has drained.
//! A 1 s tick on this thread sweeps expired run-time faults out of memory (they stop
//! applying at expiry anyway).

mod events;
mod faults;
pub mod live;
mod mutations;
mod page;
mod views;

use crate::config::AdminConfig;
use crate::server::{ControlRequest, Shared};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

#[derive(Clone)]
struct AdminState {
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    token: Option<Arc<str>>,
    /// Turns true when the listener stops: open event streams end then, or the
    /// graceful shutdown would wait for them forever.
    stopping: watch::Receiver<bool>,
}

/// The running admin listener.
pub struct Admin {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A request allowed to mutate: it carries `Authorization: Bearer <admin.token>`, or
/// no token is configured. Rejected, the client gets 401 with
/// `WWW-Authenticate: Bearer` (and the refusal is audited). It knows who asked, for
/// the audit line the mutation writes ([`Authorized::audit`]).
pub struct Authorized {
    peer: Option<SocketAddr>,
    what: String,
}

/// A 404 that says what was not found.
struct NotFound(String);

impl IntoResponse for NotFound {
    fn into_response(self) -> Response {
        not_found(self.0)
    }
}

/// Binds the admin listener on `cfg.bind` and serves it on a thread of its own,
/// reading `shared` and sending reloads to `control`.
pub fn start(
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    cfg: &AdminConfig,
) -> anyhow::Result<Admin> {
    let std_listener = std::net::TcpListener::bind(cfg.bind)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    // Alerts link back to the live SLO page.
    shared.slo.set_admin(addr);
    let sweeper = shared.clone();
    let (stop, mut stopped) = watch::channel(false);
    let app = router(shared, control, cfg.token.as_deref(), stopped.clone());
    let thread = crate::runtime::thread("ninefold-admin", move |rt| {
        rt.block_on(async move {
            // Expired run-time faults stopped applying at their expiry; this only frees
            // them, off the data path.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    sweeper.faults.sweep(crate::upstream::now_ms());
                }
            });
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => {
                    let stop = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    let app = app.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(e) = axum::serve(l, app).with_graceful_shutdown(stop).await {
                        tracing::error!("admin listener: {e}");
                    }
                }
                Err(e) => tracing::error!("admin listener: {e}"),
            }
        });
    })?;
    Ok(Admin {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// The admin API's routes.
fn router(
    shared: Arc<Shared>,
    control: mpsc::Sender<ControlRequest>,
    token: Option<&str>,
    stopping: watch::Receiver<bool>,
) -> Router {
    let endpoint = "/api/v1/clusters/{cluster}/endpoints/{address}";
    Router::new()
        .route("/", get(page::index))
        .route("/dashboard/app.js", get(page::script))
        .route("/dashboard/style.css", get(page::style))
        .route("/api/v1/events", get(events::stream))
        .route("/metrics", get(views::metrics))
        .route("/health", get(views::health))
        .route("/api/v1/state", get(views::state))
        .route("/api/v1/slos", get(views::slos))
        .route("/api/v1/reload", post(mutations::reload))
        .route("/api/v1/faults", post(faults::add).get(faults::list))
        .route("/api/v1/faults/{id}", delete(faults::remove))
        .route(&format!("{endpoint}/drain"), post(mutations::drain))
        .route(&format!("{endpoint}/enable"), post(mutations::enable))
        .route(
            &format!("{endpoint}/breaker/{{action}}"),
            post(mutations::endpoint_breaker),
        )
        .route(
            "/api/v1/clusters/{cluster}/breaker/{action}",
            post(mutations::cluster_breaker),
        )
        .with_state(AdminState {
            shared,
            control,
            token: token.map(Into::into),
            stopping,
        })
}

// === impl Admin ===

impl Admin {
    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listener (calls in progress finish) and joins its thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// === impl Authorized ===

impl FromRequestParts<AdminState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let who = Authorized {
            peer,
            what: format!("{} {}", parts.method, parts.uri.path()),
        };
        if let Some(why) = cross_site(parts, s.token.is_none()) {
            who.audit(StatusCode::FORBIDDEN, &format!("refused: {why}"));
            let body = json!({ "error": format!("refused: {why}") });
            return Err((StatusCode::FORBIDDEN, Json(body)).into_response());
        }
        let Some(token) = &s.token else {
            return Ok(who);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Ok(who);
        }
        who.audit(StatusCode::UNAUTHORIZED, "refused: no valid bearer token");
        let body = json!({"error": "a valid bearer token is required"});
        let denied = (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(body),
        );
        Err(denied.into_response())
    }
}

impl Authorized {
    /// Writes the mutation's audit line: who (the peer), what (method and path), the
    /// answer's status and what it did.
    pub(crate) fn audit(&self, status: StatusCode, outcome: &str) {
        let peer = self
            .peer
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let status = status.as_u16();
        if status < 400 {
            tracing::info!(target: "ninefold::audit", %peer, request = %self.what, status, "audit: {outcome}");
        } else {
            tracing::warn!(target: "ninefold::audit", %peer, request = %self.what, status, "audit: {outcome}");
        }
    }
}

/// Why a mutation looks like a browser's cross-site request, if it does: an `Origin`
/// that is not the admin listener's own (a page elsewhere posting to it), or, when no
/// token guards mutations, a `Host` that is a name other than `localhost` (DNS
/// rebinding: a page whose name was made to point at 127.0.0.1). Tools (curl, the
/// drill, Chaos Toolkit) send no `Origin` and address the listener by its IP.
fn cross_site(parts: &Parts, open: bool) -> Option<String> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host);
        if !own {
            return Some(format!("cross-origin request from {origin:?}"));
        }
    }
    if open {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let literal = name.parse::<std::net::IpAddr>().is_ok();
        if !literal && !name.eq_ignore_ascii_case("localhost") && !name.is_empty() {
            return Some(format!(
                "host {name:?} on an admin listener without a token (use its IP address, or set admin.token)"
            ));
        }
    }
    None
}

/// Audits a mutation's answer (`what` it did, or failed to) and passes it on.
fn audited(who: &Authorized, r: Response, what: &str) -> Response {
    let status = r.status();
    let outcome = if status.is_success() {
        what.to_owned()
    } else {
        format!("{what} failed")
    };
    who.audit(status, &outcome);
    r
}

fn bad_request(error: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
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

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = axum::http::Request::post("/api/v1/reload");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cross_site_requests_are_told_from_tools_and_the_page_itself() {
        // curl, the drill, the page on its own origin.
        assert_eq!(
            cross_site(&parts(&[("host", "127.0.0.1:9901")]), true),
            None
        );
        let page = [
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:9901"),
        ];
        assert_eq!(cross_site(&parts(&page), true), None);
        assert_eq!(cross_site(&parts(&[("host", "[::1]:9901")]), true), None);
        assert_eq!(
            cross_site(&parts(&[("host", "localhost:9901")]), true),
            None
        );
        // A page elsewhere.
        let evil = [
            ("host", "127.0.0.1:9901"),
            ("origin", "https://evil.example"),
        ];
        assert!(cross_site(&parts(&evil), false)
            .unwrap()
            .contains("cross-origin"));
        // DNS rebinding, where no token guards the listener; with a token, the name is
        // the operator's business.
        let rebound = [
            ("host", "evil.example:9901"),
            ("origin", "http://evil.example:9901"),
        ];
        assert!(cross_site(&parts(&rebound), true)
            .unwrap()
            .contains("without a token"));
        assert_eq!(cross_site(&parts(&rebound), false), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
