//! `ninefold demo`: the gateway plus built-in backends, with nothing else installed.
//!
//! Three small HTTP backends run in-process on loopback, two in zone `zone-a` and one
//! in `zone-b`; each answers JSON naming itself. The gateway serves them from a config
//! written here as YAML text (so the demo goes through the same parser and validator as
//! any file), and the URLs and a few curl lines to try are printed.
//!
//! To show failover without an admin token or a second terminal's `kill`, every
//! backend also answers `POST /demo/kill/{name}` and `POST /demo/revive/{name}` for any
//! demo backend, so the calls can go through the gateway itself. A killed backend
//! closes its listening socket and drops its open connections, as a SIGKILLed process
//! would: the gateway sees refused connects and resets, retries them on another
//! endpoint and ejects the dead one. A revived backend binds its old address again.
//! Killing the last live backend is refused, since nothing would be left to revive it.
//!
//! The same kill shows isolation and degradation: `/users` routes by `x-user-id` to one
//! of three cells (one per backend), so killing a backend takes exactly its cell down
//! while the other cells' users keep getting answers; `/catalog` depends on the last
//! backend alone, behind a circuit breaker, and falls back to the last good answer
//! (stale) or a static one, marked `x-ninefold-degraded`; the `api` route accepts
//! header-triggered faults, and run-time faults with a ttl through the admin API.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A demo backend: its name, zone and bound address.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Name shown in answers.
    pub name: &'static str,
    /// Zone label.
    pub zone: &'static str,
    /// Bound address.
    pub addr: SocketAddr,
}

/// The demo backends and their kill switches, shared by all of them.
struct Fleet {
    backends: Vec<Backend>,
    /// `true` while the backend of the same index is alive.
    alive: Vec<watch::Sender<bool>>,
}

/// How long a kill waits before it takes effect, so that its own answer leaves first
/// when a backend is asked to kill itself.
const KILL_DELAY: Duration = Duration::from_millis(50);

/// Starts the three demo backends on a thread of their own.
pub fn start_backends() -> anyhow::Result<Vec<Backend>> {
    let specs = [
        ("api-a1", "zone-a"),
        ("api-a2", "zone-a"),
        ("api-b1", "zone-b"),
    ];
    let mut listeners = Vec::new();
    let mut backends = Vec::new();
    for (name, zone) in specs {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        backends.push(Backend {
            name,
            zone,
            addr: l.local_addr()?,
        });
        listeners.push(l);
    }
    let fleet = Arc::new(Fleet {
        alive: backends.iter().map(|_| watch::channel(true).0).collect(),
        backends: backends.clone(),
    });
    crate::runtime::thread("ninefold-demo-backends", move |rt| {
        rt.block_on(async move {
            for (i, l) in listeners.into_iter().enumerate() {
                let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                    continue;
                };
                tokio::spawn(run_backend(fleet.clone(), i, l));
            }
            std::future::pending::<()>().await;
        });
    })?;
    Ok(backends)
}

/// One backend's life: serve until killed, then wait to be revived and bind again.
async fn run_backend(fleet: Arc<Fleet>, i: usize, listener: tokio::net::TcpListener) {
    let mut alive = fleet.alive[i].subscribe();
    let mut listener = Some(listener);
    loop {
        if let Some(l) = listener.take() {
            let mut conns = JoinSet::new();
            loop {
                let killed = tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((s, _)) = accepted {
                            conns.spawn(serve_connection(fleet.clone(), i, s));
                        }
                        false
                    }
                    killed = alive.wait_for(|a| !*a) => killed.is_ok(),
                };
                if killed {
                    tokio::time::sleep(KILL_DELAY).await;
                    break;
                }
                while conns.try_join_next().is_some() {}
            }
            // Dropping the listener and the connections is the "SIGKILL".
            conns.abort_all();
            drop(l);
        }
        if alive.wait_for(|a| *a).await.is_err() {
            return;
        }
        let addr = fleet.backends[i].addr;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => listener = Some(l),
            Err(e) => {
                eprintln!(
                    "demo: cannot revive {} on {addr}: {e}",
                    fleet.backends[i].name
                );
                fleet.alive[i].send_replace(false);
            }
        }
    }
}

async fn serve_connection(fleet: Arc<Fleet>, i: usize, s: tokio::net::TcpStream) {
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let fleet = fleet.clone();
        async move { Ok::<_, Infallible>(answer(&fleet, i, &req)) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(s), svc)
        .await;
}

/// What backend `i` answers: a kill or revive order, or JSON naming itself.
fn answer(
    fleet: &Arc<Fleet>,
    i: usize,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let me = &fleet.backends[i];
    let path = req.uri().path();
    let order = (req.method() == Method::POST)
        .then(|| {
            path.strip_prefix("/demo/kill/")
                .map(|n| (true, n))
                .or_else(|| path.strip_prefix("/demo/revive/").map(|n| (false, n)))
        })
        .flatten();
    let (status, body) = match order {
        Some((kill, target)) => fleet.order(kill, target),
        None => (
            StatusCode::OK,
            format!(
                "{{\"backend\":\"{}\",\"zone\":\"{}\",\"method\":\"{}\",\"path\":\"{}\"}}\n",
                me.name,
                me.zone,
                req.method(),
                path
            ),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-backend", me.name)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

// === impl Fleet ===

impl Fleet {
    /// Kills or revives the backend named `target`.
    fn order(&self, kill: bool, target: &str) -> (StatusCode, String) {
        let Some(t) = self.backends.iter().position(|b| b.name == target) else {
            let names: Vec<&str> = self.backends.iter().map(|b| b.name).collect();
            return (
                StatusCode::NOT_FOUND,
                format!("{{\"error\":\"no demo backend {target:?}; there are {names:?}\"}}\n"),
            );
        };
        let alive = self.alive.iter().filter(|a| *a.borrow()).count();
        let was = *self.alive[t].borrow();
        if kill && was && alive == 1 {
            return (
                StatusCode::CONFLICT,
                format!("{{\"error\":\"{target} is the last live backend: nothing could revive it\"}}\n"),
            );
        }
        self.alive[t].send_replace(!kill);
        let (word, now) = if kill {
            ("killed", false)
        } else {
            ("revived", true)
        };
        eprintln!("demo: {target} {word}");
        (
            StatusCode::OK,
            format!("{{\"backend\":\"{target}\",\"{word}\":true,\"alive\":{now}}}\n"),
        )
    }
}

/// The demo's configuration text.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, backends: &[Backend]) -> String {
    let eps: String = backends
        .iter()
        .map(|b| format!("      - {{address: {}, zone: {}}}\n", b.addr, b.zone))
        .collect();
    // One cell per backend, each its own cluster with a quick TCP check, so a killed
    // backend takes exactly its cell down.
    let cell_clusters: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "  - name: cell{n}\n    health_check: {{tcp: {{}}, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}}\n    endpoints: [{{address: {addr}}}]\n",
                n = i + 1,
                addr = b.addr
            )
        })
        .collect();
    let cell_members: String = (1..=backends.len())
        .map(|n| format!("{{name: cell-{n}, cluster: cell{n}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The catalog depends on the last backend alone, behind a breaker, with a stale
    // and a static rung to fall back on.
    let catalog = backends
        .last()
        .map_or_else(String::new, |b| b.addr.to_string());
    format!(
        "# ninefold demo configuration (generated)
admin:
  bind: {admin}
workers: 1
access_log: text
listeners:
  - name: web
    bind: {listen}
    routes:
      - name: sticky
        match: {{path_prefix: /sticky}}
        cluster: sticky
        timeout: 5s
      - name: catalog
        match: {{path_prefix: /catalog}}
        cluster: catalog
        timeout: 2s
        retry: {{attempts: 1}}
        fallback:
          stale: {{max_age: 10m}}
          static: {{status: 200, content_type: application/json, body: '{{\"items\":[],\"degraded\":true}}'}}
      - name: users
        match: {{path_prefix: /users}}
        cells: users
        timeout: 2s
      - name: api
        match: {{path_prefix: /}}
        cluster: api
        timeout: 5s
        retry: {{attempts: 3, on: [connect-failure, refused-stream, reset, 503], budget: 20%}}
        faults: {{allow_header: true}}
        slo: api-availability
slos:
  - name: api-availability
    objective: 99.9%
    window: 30d
    indicator: {{type: availability, good_status: [2xx, 3xx, 4xx]}}
cells:
  - name: users
    key: {{header: x-user-id}}
    on_cell_down: fail
    members: [{cell_members}]
clusters:
  - name: api
    lb: round_robin
    health_check: {{http: {{path: /health}}, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}}
    outlier_detection: {{consecutive_failures: 2, base_ejection: 10s}}
    endpoints:
{eps}  - name: sticky
    lb: consistent_hash
    hash_on: {{header: x-user-id}}
    endpoints:
{eps}  - name: catalog
    circuit_breaker: {{consecutive_failures: 3, open_for: 10s, half_open_probes: 1}}
    endpoints: [{{address: {catalog}}}]
{cell_clusters}"
    )
}
