//! `ninefold origin`: a tiny origin server, for drills, demos and tests that need a
//! backend they can kill for real (SIGKILL, SIGSTOP) without installing anything.
//!
//! It answers every request with a JSON line naming itself, and understands a few
//! paths: `/health` (the seed's `{"status": "ok", "checks": {...}}`), `/status/N`
//! (answer N), `/slow/MS` (answer after MS milliseconds). Each request is logged on
//! stdout as one line, `origin NAME METHOD PATH BODY`, written before the answer, so a
//! drill can tell exactly which requests reached which origin, even one killed
//! mid-answer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Serves until killed. Prints `origin NAME listening on ADDR` once bound.
pub fn run(name: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name: Arc<str> = name.into();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(listen).await?;
        let addr = l.local_addr()?;
        println!("origin {name} listening on {addr}");
        std::io::stdout().flush()?;
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let name = name.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(name.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    })
}

async fn answer(
    name: Arc<str>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path();
    {
        // One line per request, flushed before answering.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "origin {name} {} {path} {}",
            parts.method,
            String::from_utf8_lossy(&body).replace('\n', " ")
        );
        let _ = out.flush();
    }
    let mut status = StatusCode::OK;
    let text = if path == "/health" {
        r#"{"status":"ok","checks":{"self":"ok"}}"#.to_owned()
    } else {
        if let Some(code) = path.strip_prefix("/status/") {
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
        }
        if let Some(ms) = path.strip_prefix("/slow/") {
            let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        format!(
            "{{\"origin\":\"{name}\",\"method\":\"{}\",\"path\":\"{path}\"}}",
            parts.method
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&name) {
        h.insert("x-backend", v);
    }
    Ok(resp)
}
