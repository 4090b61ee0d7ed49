//! Forwarding one request to one endpoint: header rewriting, a pooled or new upstream
//! connection, the exchange, and HTTP Upgrade (WebSocket) tunnels.
//!
//! Retry safety: a request is re-sent only when hyper hands it back unsent (a pooled
//! connection that the upstream had closed); it then goes once more on a fresh
//! connection. Nothing that may have reached the upstream is sent twice.
//!
//! Framing: the client's body keeps its framing upstream. A body of unknown length
//! (chunked, or h2 without `content-length`) goes as `Transfer-Encoding: chunked`
//! whatever the method: hyper would otherwise send a GET's body as nothing. A body
//! that breaks its own framing (a malformed chunk) is the client's fault: 400, not
//! 502. The upstream's answer is checked by `conform::check_response`; one it had to
//! repair, or an unsolicited `101`, never shares its connection with another request.
//!
//! Cancel safety: if the client goes away, hyper drops this future; the upstream
//! connection is then dropped too (never pooled mid-exchange) and the in-flight guard
//! ends the request.

use super::body::{ReqBody, RespBody};
use super::conform;
use super::error::Failure;
use super::ConnCtx;
use crate::config::UpstreamProtocol;
use crate::snapshot::ClusterSnap;
use crate::upstream::pool::{self, ConnectError};
use crate::upstream::EndpointState;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Sends `req` to endpoint `ep` of `cluster` and returns the upstream's response, with
/// its body streaming; `idle` bounds the silence between two body frames.
pub async fn send(
    ctx: &ConnCtx,
    cluster: &ClusterSnap,
    ep: &Arc<EndpointState>,
    mut parts: Parts,
    body: Incoming,
    idle: std::time::Duration,
) -> Result<Response<RespBody>, Failure> {
    let upgrade = is_upgrade(&parts);
    let h2 = cluster.protocol == UpstreamProtocol::Http2;
    let head = parts.method == http::Method::HEAD;
    rewrite_request(ctx, &mut parts, upgrade, h2)?;
    if !h2 && !body.is_end_stream() && body.size_hint().exact().is_none() {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    // Take the client's upgrade handle before the request moves upstream.
    let client_upgrade = if upgrade {
        let mut probe = Request::from_parts(parts, ());
        let on = hyper::upgrade::on(&mut probe);
        parts = probe.into_parts().0;
        Some(on)
    } else {
        None
    };
    let req = Request::from_parts(parts, ReqBody::Stream(body));
    let in_flight = ep.start();

    if h2 {
        let mut tx = pool::h2_sender(
            ep.slot,
            ep.address,
            cluster.connect_timeout,
            cluster.max_response_head,
        )
        .await
        .map_err(|e| connect_failed(cluster, ep, e))?;
        ep.connect_failures.store(0, Ordering::Relaxed);
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| exchange_failed(cluster, ep, &e))?;
        let (mut rp, incoming) = resp.into_parts();
        strip_hop_headers(&mut rp.headers, false);
        rp.version = Version::HTTP_11;
        return Ok(Response::from_parts(
            rp,
            RespBody::upstream(incoming, None, in_flight, idle),
        ));
    }

    // HTTP/1.1: reuse a pooled connection when there is one. Upgrades take a fresh one,
    // since the connection becomes the tunnel.
    let mut conn = if upgrade {
        None
    } else {
        pool::checkout_h1(ep.slot).await
    };
    let mut req = req;
    let resp = loop {
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                let c = pool::connect_h1(
                    ep.address,
                    cluster.connect_timeout,
                    cluster.max_response_head,
                )
                .await
                .map_err(|e| connect_failed(cluster, ep, e))?;
                ep.connect_failures.store(0, Ordering::Relaxed);
                c
            }
        };
        match c.tx.try_send_request(req).await {
            Ok(resp) => break (resp, c.tx),
            Err(mut e) => match e.take_message() {
                // The pooled connection was closing; the request never left. Once more
                // on a fresh connection.
                Some(r) if c.reused => req = r,
                _ => return Err(exchange_failed(cluster, ep, e.error())),
            },
        }
    };
    let (resp, tx) = resp;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return match client_upgrade {
            Some(client_upgrade) => Ok(tunnel(ctx, resp, client_upgrade, in_flight)),
            None => {
                // The client asked for no upgrade: relaying this would switch a
                // connection that still carries HTTP for the client.
                tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answered 101 to a request without Upgrade; answering 502");
                Err(Failure::UpstreamError)
            }
        };
    }
    let (mut rp, incoming) = resp.into_parts();
    let framing = conform::check_response(rp.status, &mut rp.headers, head).inspect_err(|_| {
        tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, status = rp.status.as_u16(), "upstream answer with ambiguous framing (two Content-Length, or a transfer coding other than chunked); answering 502");
    })?;
    strip_hop_headers(&mut rp.headers, false);
    // A repaired answer's connection is not reused: whatever the upstream meant by the
    // conflicting headers may still be on it.
    let keep = (!framing.poisoned).then_some((ep.slot, tx));
    Ok(Response::from_parts(
        rp,
        RespBody::upstream(incoming, keep, in_flight, idle),
    ))
}

/// Maps a failed exchange: the client's body breaking its own framing is the client's
/// fault (400); anything else is the upstream's (502), and an answer refused by the
/// parser (too large a head, bad syntax) is logged with its cause.
fn exchange_failed(cluster: &ClusterSnap, ep: &EndpointState, e: &hyper::Error) -> Failure {
    if e.is_user() {
        return Failure::BadBody;
    }
    if e.is_parse() || e.is_parse_too_large() {
        tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answer refused: {e}; answering 502");
    }
    Failure::UpstreamError
}

fn connect_failed(cluster: &ClusterSnap, ep: &EndpointState, e: ConnectError) -> Failure {
    ep.connect_failures.fetch_add(1, Ordering::Relaxed);
    cluster.connect_errors.inc();
    match e {
        ConnectError::Timeout => Failure::ConnectTimeout,
        ConnectError::Io(_) => Failure::ConnectFailed,
        ConnectError::Handshake(_) => Failure::UpstreamError,
    }
}

/// Answers 101 to the client and relays bytes both ways once both sides upgraded.
fn tunnel(
    ctx: &ConnCtx,
    resp: Response<Incoming>,
    client: hyper::upgrade::OnUpgrade,
    in_flight: crate::upstream::InFlight,
) -> Response<RespBody> {
    let (mut rp, _) = resp.into_parts();
    let upstream = rp.extensions.remove::<hyper::upgrade::OnUpgrade>();
    // Keep Connection/Upgrade: the client needs them to complete its handshake.
    strip_hop_headers(&mut rp.headers, true);
    if let Some(upstream) = upstream {
        // A tunnel counts as an open connection, so a graceful shutdown waits for it
        // (within the grace period) like for any request.
        let open = ctx.open.clone();
        open.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let _open = OpenGuard(open);
            let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
        });
    }
    Response::from_parts(rp, RespBody::empty())
}

struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// HTTP/1.1 Upgrade request (WebSocket and friends).
fn is_upgrade(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Rewrites the client's request for the upstream: hop-by-hop headers out,
/// `x-forwarded-*` in, Host kept, URI in the form the upstream protocol wants.
fn rewrite_request(
    ctx: &ConnCtx,
    parts: &mut Parts,
    upgrade: bool,
    h2: bool,
) -> Result<(), Failure> {
    let h = &mut parts.headers;
    strip_hop_headers(h, upgrade);
    // Room for the x-forwarded-* headers, so adding them does not grow the map twice.
    h.reserve(3);

    // Host is in place already: `conform::check_request` put the target's authority
    // (absolute-form, h2's :authority) there.
    // Append the client to the chain; several x-forwarded-for lines become one.
    let mut prev = h.get_all(&X_FORWARDED_FOR).iter();
    match (prev.next(), prev.next()) {
        (None, _) => {
            h.insert(X_FORWARDED_FOR.clone(), ctx.client_ip.clone());
        }
        (Some(first), second) => {
            let mut v = Vec::with_capacity(first.len() + 2 + ctx.client_ip.len());
            v.extend_from_slice(first.as_bytes());
            for more in second.into_iter().chain(prev) {
                v.extend_from_slice(b", ");
                v.extend_from_slice(more.as_bytes());
            }
            v.extend_from_slice(b", ");
            v.extend_from_slice(ctx.client_ip.as_bytes());
            let v = HeaderValue::from_bytes(&v).map_err(|_| Failure::BadRequest)?;
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
    );
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }

    if h2 {
        // hyper's h2 client wants an absolute URI; :authority comes from Host.
        let authority = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok());
        let mut up = parts.uri.clone().into_parts();
        up.scheme = Some(Scheme::HTTP);
        up.authority = authority.or(up.authority);
        if up.authority.is_none() {
            return Err(Failure::BadRequest);
        }
        if up.path_and_query.is_none() {
            up.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(up).map_err(|_| Failure::BadRequest)?;
        parts.version = Version::HTTP_2;
    } else {
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            let pq = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            parts.uri = Uri::from(pq);
        }
        parts.version = Version::HTTP_11;
    }
    Ok(())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the Connection header
/// names, except `Host` and `Content-Length`, which routing and framing rest on
/// (`Trailer` is end-to-end since RFC 9110 and stays). `te: trailers` stays (gRPC needs it); with `keep_upgrade`, `connection` and
/// `upgrade` stay too.
pub fn strip_hop_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names to see which hop-by-hop headers are there at all: most
    // messages carry none but Connection, and a hashed remove per absent name would
    // cost more than the whole scan.
    const CONN: u8 = 1;
    const UPGRADE: u8 = 2;
    const KEEP: u8 = 4;
    const PROXY_CONN: u8 = 8;
    const TRANSFER: u8 = 16;
    const TE: u8 = 32;
    let mut present = 0u8;
    for name in h.keys() {
        present |= if *name == header::CONNECTION {
            CONN
        } else if *name == header::UPGRADE {
            UPGRADE
        } else if *name == header::TRANSFER_ENCODING {
            TRANSFER
        } else if *name == header::TE {
            TE
        } else if *name == KEEP_ALIVE {
            KEEP
        } else if *name == PROXY_CONNECTION {
            PROXY_CONN
        } else {
            0
        };
    }
    if present == 0 {
        return;
    }
    if present & CONN != 0 {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                // Connection may not take away what routing and framing rest on.
                let ignored = t.is_empty()
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("host")
                    || t.eq_ignore_ascii_case("content-length")
                    || (keep_upgrade && t.eq_ignore_ascii_case("upgrade"));
                !ignored
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
        if !keep_upgrade {
            h.remove(header::CONNECTION);
        }
    }
    if present & UPGRADE != 0 && !keep_upgrade {
        h.remove(header::UPGRADE);
    }
    if present & KEEP != 0 {
        h.remove(&KEEP_ALIVE);
    }
    if present & PROXY_CONN != 0 {
        h.remove(&PROXY_CONNECTION);
    }
    if present & TRANSFER != 0 {
        h.remove(header::TRANSFER_ENCODING);
    }
    if present & TE != 0 {
        if let Some(te) = h.get(header::TE) {
            if !has_token(te, "trailers") {
                h.remove(header::TE);
            } else if te != "trailers" {
                h.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_headers(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn connection_cannot_name_host_or_length() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Host, content-length, x-a"),
        );
        h.insert("host", HeaderValue::from_static("a.example"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_headers(&mut h, false);
        assert_eq!(h.get("host").unwrap(), "a.example");
        assert_eq!(h.get("content-length").unwrap(), "3");
        assert!(h.get("x-a").is_none());
    }

    #[test]
    fn upgrade_keeps_its_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_headers(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
    }
}
