//! `ninefold demo`: the gateway plus built-in backends, with nothing else installed.
//!
//! Three small HTTP backends run in-process on loopback, two in zone `zone-a` and one
//! in `zone-b`; each answers JSON naming itself. The gateway serves them from a config
//! written here as YAML text (so the demo goes through the same parser and validator as
//! any file), and the URLs and a few curl lines to try are printed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;

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

/// Starts the three demo backends on a thread of their own.
pub fn start_backends() -> anyhow::Result<Vec<Backend>> {
    let specs = [
        ("api-a1", "zone-a"),
        ("api-a2", "zone-a"),
        ("api-b1", "zone-b"),
    ];
    let mut listeners = Vec::new();
    let mut out = Vec::new();
    for (name, zone) in specs {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        out.push(Backend {
            name,
            zone,
            addr: l.local_addr()?,
        });
        listeners.push((name, zone, l));
    }
    std::thread::Builder::new()
        .name("ninefold-demo-backends".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                for (name, zone, l) in listeners {
                    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                        continue;
                    };
                    tokio::spawn(serve_backend(name, zone, l));
                }
                std::future::pending::<()>().await;
            });
        })?;
    Ok(out)
}

async fn serve_backend(name: &'static str, zone: &'static str, l: tokio::net::TcpListener) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let body = format!(
                    "{{\"backend\":\"{name}\",\"zone\":\"{zone}\",\"method\":\"{}\",\"path\":\"{}\"}}\n",
                    req.method(),
                    req.uri().path()
                );
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .header("x-backend", name)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_default(),
                )
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

/// The demo's configuration text.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, backends: &[Backend]) -> String {
    let eps: String = backends
        .iter()
        .map(|b| format!("      - {{address: {}, zone: {}}}\n", b.addr, b.zone))
        .collect();
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
      - name: api
        match: {{path_prefix: /}}
        cluster: api
        timeout: 5s
        slo: api-availability
slos:
  - name: api-availability
    objective: 99.9%
    window: 30d
    indicator: {{type: availability, good_status: [2xx, 3xx, 4xx]}}
clusters:
  - name: api
    lb: round_robin
    endpoints:
{eps}  - name: sticky
    lb: consistent_hash
    hash_on: {{header: x-user-id}}
    endpoints:
{eps}"
    )
}
