//! Forwarding one request to one endpoint: header rewriting, a pooled or new upstream
//! connection, the exchange, and HTTP Upgrade (WebSocket) tunnels.
//!
//! Retry safety: the request's own task writes it (see `h1::client`), so it knows what
//! left. A pooled connection that fails the head's write had been closed by the
//! upstream: the request goes once more on a fresh connection. A request whose
//! connection could not be opened is handed back unsent, for another endpoint. Nothing
//! that may have reached the upstream is sent twice by this module.
//!
//! Framing: the client's body keeps its framing upstream. A body of unknown length
//! (chunked, or h2 without `content-length`) goes as `Transfer-Encoding: chunked`
//! whatever the method. A body that breaks its own framing (a malformed chunk) is the
//! client's fault: 400, not 502. The upstream's answer is framed by `h1::head`'s rules;
//! one it had to repair never shares its connection with another request, and an
//! unsolicited `101` is refused (502).
//!
//! Cancel safety: if this future is dropped (a timeout, the client left), the upstream
//! connection is dropped with it (never pooled mid-exchange) and the in-flight guard
//! ends the request.

use super::body::{ReqBody, RespBody};
use super::error::Failure;
use super::head::Head;
use super::ConnCtx;
use crate::config::UpstreamProtocol;
use crate::h1::buf::Buf;
use crate::h1::client;
use crate::h1::head::Forwarding;
use crate::h1::io::Client;
use crate::h1::splice;
use crate::snapshot::ClusterSnap;
use crate::upstream::pool::{self, ConnectError};
use crate::upstream::retry::Cause;
use crate::upstream::EndpointState;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Why an attempt failed: the answer the gateway would give, the cause as retrying
/// sees it (none: not retryable at all), and the request itself when it provably never
/// left (so it can go to another endpoint, body and all).
pub struct SendError<'a> {
    /// What the client gets if this is the last attempt.
    pub failure: Failure,
    /// The cause, for `retry.on` and outlier detection; `None` for the client's fault.
    pub cause: Option<Cause>,
    /// The request's body, when the request was not sent.
    pub unsent: Option<ReqBody<'a>>,
}

/// The client's side of an Upgrade request.
pub enum Upgrade {
    /// A connection hyper serves (TLS): its upgrade handle.
    Hyper(hyper::upgrade::OnUpgrade),
    /// A connection of the own engine, which relays the tunnel itself.
    Own,
}

/// Prepares a client's request for the upstream, once for all attempts: hop-by-hop
/// headers out, `x-forwarded-*` in, the URI in the upstream protocol's form, and a
/// body of unknown length marked chunked for an HTTP/1.1 upstream (see the module
/// doc). Returns the client's side of an Upgrade request.
///
/// A head the own engine read (raw lines) to an HTTP/1.1 upstream is only marked here:
/// `h1::head::write_request` does the rewrite while it writes the lines. An Upgrade,
/// or an h2 upstream, takes the map's way.
pub fn prepare(
    ctx: &ConnCtx,
    cluster: &ClusterSnap,
    head: &mut Head,
    body: &ReqBody<'_>,
) -> Result<Option<Upgrade>, Failure> {
    let upgrade = is_upgrade(head);
    let h2 = cluster.protocol == UpstreamProtocol::Http2;
    let chunked = !h2 && !body.is_end_stream() && body.size_hint().exact().is_none();
    if h2 || upgrade {
        head.materialize();
    }
    if let Some(raw) = &mut head.raw {
        raw.chunked = chunked;
        return origin_form(&mut head.parts).map(|()| None);
    }
    let parts = &mut head.parts;
    rewrite_request(ctx, parts, upgrade, h2)?;
    if chunked {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if !upgrade {
        return Ok(None);
    }
    Ok(
        match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            Some(u) => Some(Upgrade::Hyper(u)),
            None if ctx.stream.is_some() => Some(Upgrade::Own),
            None => None,
        },
    )
}

/// Sends a prepared request to endpoint `ep` of `cluster` and returns the upstream's
/// response, with its body streaming; `idle` bounds the silence between two body
/// frames; `upgrade` is the client's side of an Upgrade request.
pub async fn send<'a>(
    ctx: &ConnCtx,
    cluster: &ClusterSnap,
    ep: &Arc<EndpointState>,
    req: &Head,
    body: ReqBody<'a>,
    idle: std::time::Duration,
    upgrade: Option<Upgrade>,
) -> Result<Response<RespBody>, SendError<'a>> {
    let in_flight = ep.start();
    if cluster.protocol == UpstreamProtocol::Http2 {
        return send_h2(cluster, ep, &req.parts, body, idle, in_flight).await;
    }
    let head_req = req.parts.method == http::Method::HEAD;
    let fwd = Forwarding {
        client_ip: ctx.client_ip.as_bytes(),
        tls: ctx.tls,
    };

    // HTTP/1.1: reuse a pooled connection when there is one. Upgrades take a fresh one,
    // since the connection becomes the tunnel.
    let pooled = if upgrade.is_some() {
        None
    } else {
        pool::checkout_h1(ep.slot, ep.address)
    };
    let mut body = body;
    let (stream, reused) = match pooled {
        Some(s) => (s, true),
        None => match pool::connect_tcp(ep.address, cluster.connect_timeout).await {
            Ok(s) => (s, false),
            Err(e) => return Err(connect_failed(cluster, e, body)),
        },
    };
    let mut stream = stream;
    let first = match client::first_piece(&mut body).await {
        Ok(f) => f,
        Err(e) => return Err(write_failed(e)),
    };
    if let Err(e) = client::write_head(&stream, req, fwd, first.as_ref()).await {
        if !reused {
            return Err(write_failed(e));
        }
        // The pooled connection was closing; nothing of the request was taken. Once
        // more on a fresh connection.
        stream = match pool::connect_tcp(ep.address, cluster.connect_timeout).await {
            Ok(s) => s,
            Err(e) => return Err(connect_failed(cluster, e, body)),
        };
        if let Err(e) = client::write_head(&stream, req, fwd, first.as_ref()).await {
            return Err(write_failed(e));
        }
    }
    // The rest of the body goes while the answer is awaited: an upstream may answer
    // before it has read the whole body (a 413, a 401), and then it is not waited for.
    let chunked = client::is_chunked(req);
    let mut rbuf = Buf::answer();
    // A plain HTTP/1.1 client may get a long body by splice: the first read then takes
    // the head and only the start of the body (see `h1::splice`).
    let first = (cfg!(target_os = "linux") && matches!(ctx.stream, Some(Client::Tcp(_))))
        .then_some(splice::FIRST_READ);
    let (head, body_sent) = {
        let write = client::write_body(&stream, &mut body, chunked);
        let read = client::read_head(
            ctx,
            &stream,
            &mut rbuf,
            head_req,
            cluster.max_response_head,
            first,
        );
        tokio::pin!(write, read);
        let (mut writing, mut complete) = (true, false);
        loop {
            tokio::select! {
                biased;
                w = &mut write, if writing => {
                    writing = false;
                    match w {
                        Ok(()) => complete = true,
                        // The upstream stopped reading: it may have answered; read on.
                        Err(client::WriteError::Body(_)) => {}
                        Err(e) => return Err(write_failed(e)),
                    }
                }
                h = &mut read => break (h, complete),
            }
        }
    };
    drop(body);
    let head = match head {
        Ok(h) => h,
        Err(client::ReadError::Closed) => return Err(reset()),
        Err(client::ReadError::Invalid(why)) => {
            tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answer refused: {why}; answering 502");
            return Err(upstream_fault());
        }
    };
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = upgrade else {
            // The client asked for no upgrade: relaying this would switch a
            // connection that still carries HTTP for the client.
            tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answered 101 to a request without Upgrade; answering 502");
            return Err(upstream_fault());
        };
        // The fields keep Connection/Upgrade: the client needs them to complete its
        // handshake (see `h1::head::RawFields`).
        let mut resp = Response::new(RespBody::empty());
        *resp.status_mut() = head.status;
        head.fields.into_map(resp.headers_mut());
        let early = rbuf.data().to_vec();
        let t = client::Tunnel {
            upstream: stream,
            early,
            in_flight,
        };
        match client_side {
            Upgrade::Own => *resp.body_mut() = RespBody::Tunnel(Box::new(t)),
            Upgrade::Hyper(u) => tunnel(t, u),
        }
        return Ok(resp);
    }
    if first.is_some() {
        client::read_rest_if_copied(&stream, &mut rbuf, &head).await;
    }
    // An answer that came before the whole request left shares its connection with
    // no later request: the rest of that request is not on it.
    let keep = (head.keep_alive && body_sent).then_some((ep.slot, ep.address));
    let reader = client::Reader::new(
        stream,
        rbuf,
        head.framing,
        cluster.max_chunk_extension,
        keep,
    );
    // The answer's fields stay raw (no header map) until something needs them as a
    // map: the HTTP/1.1 writer copies the lines as they are.
    let mut resp = Response::new(RespBody::upstream_h1(reader, head.fields, in_flight, idle));
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    Ok(resp)
}

/// The h2 leg: hyper's h2 client over the worker's connection to the endpoint. A
/// body the own engine reads from its client is pumped into the h2 stream by this
/// task while the answer is awaited.
async fn send_h2<'a>(
    cluster: &ClusterSnap,
    ep: &Arc<EndpointState>,
    parts: &Parts,
    body: ReqBody<'a>,
    idle: std::time::Duration,
    in_flight: crate::upstream::InFlight,
) -> Result<Response<RespBody>, SendError<'a>> {
    let mut tx = match pool::h2_sender(
        ep.slot,
        ep.address,
        cluster.connect_timeout,
        cluster.max_response_head,
    )
    .await
    {
        Ok(tx) => tx,
        Err(e) => return Err(connect_failed(cluster, e, body)),
    };
    // hyper's sender takes the head by value: a copy (h2 is not the HTTP/1.1 fast path).
    let parts = {
        let (mut p, ()) = Request::new(()).into_parts();
        p.method = parts.method.clone();
        p.uri = parts.uri.clone();
        p.version = parts.version;
        p.headers = parts.headers.clone();
        p
    };
    let resp = match body.into_owned() {
        Ok(b) => tx.send_request(Request::from_parts(parts, b)).await,
        Err(mut inbound) => {
            let (btx, brx) = tokio::sync::mpsc::channel(4);
            let send = tx.send_request(Request::from_parts(parts, ReqBody::Bridge(brx)));
            let pump = async move {
                use http_body_util::BodyExt as _;
                while let Some(f) = inbound.frame().await {
                    let item = match f {
                        Ok(f) => match f.into_data() {
                            Ok(d) => Ok(d),
                            Err(_) => continue,
                        },
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if btx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            };
            let (resp, ()) = tokio::join!(send, pump);
            resp
        }
    };
    let resp = resp.map_err(|e| exchange_failed(cluster, ep, &e))?;
    let (mut rp, incoming) = resp.into_parts();
    strip_hop_headers(&mut rp.headers, false);
    rp.version = Version::HTTP_11;
    Ok(Response::from_parts(
        rp,
        RespBody::upstream(incoming, in_flight, idle),
    ))
}

/// An answer the upstream got wrong: 502, counted against the endpoint, not retried
/// (a retry would likely get the same answer).
fn upstream_fault<'a>() -> SendError<'a> {
    SendError {
        failure: Failure::UpstreamError,
        cause: None,
        unsent: None,
    }
}

/// The upstream closed or broke the exchange after the request (or part of it) left.
fn reset<'a>() -> SendError<'a> {
    SendError {
        failure: Failure::UpstreamError,
        cause: Some(Cause::Reset),
        unsent: None,
    }
}

fn write_failed<'a>(e: client::WriteError) -> SendError<'a> {
    match e {
        // The client's body broke its own framing: the client's fault (400).
        client::WriteError::ClientBody => SendError {
            failure: Failure::BadBody,
            cause: None,
            unsent: None,
        },
        _ => reset(),
    }
}

/// Maps a failed h2 exchange: the client's body breaking its own framing is the
/// client's fault (400); a stream the upstream refused was never processed; anything
/// else broke the exchange (502), and an answer refused by the parser is logged.
fn exchange_failed<'a>(
    cluster: &ClusterSnap,
    ep: &EndpointState,
    e: &hyper::Error,
) -> SendError<'a> {
    if e.is_user() {
        return SendError {
            failure: Failure::BadBody,
            cause: None,
            unsent: None,
        };
    }
    if e.is_parse() || e.is_parse_too_large() {
        tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answer refused: {e}; answering 502");
        return upstream_fault();
    }
    let refused = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason)
        == Some(h2::Reason::REFUSED_STREAM);
    SendError {
        failure: Failure::UpstreamError,
        cause: Some(if refused {
            Cause::RefusedStream
        } else {
            Cause::Reset
        }),
        unsent: None,
    }
}

fn connect_failed<'a>(cluster: &ClusterSnap, e: ConnectError, body: ReqBody<'a>) -> SendError<'a> {
    cluster.connect_errors.inc();
    let failure = match e {
        ConnectError::Timeout => Failure::ConnectTimeout,
        ConnectError::Io(_) => Failure::ConnectFailed,
        ConnectError::Handshake(_) => Failure::UpstreamError,
    };
    SendError {
        failure,
        cause: Some(Cause::ConnectFailure),
        unsent: Some(body),
    }
}

/// Relays a tunnel between a client connection hyper upgraded and the upstream, on
/// its own task (hyper's connection is done with the client once it has sent the 101).
fn tunnel(t: client::Tunnel, client: hyper::upgrade::OnUpgrade) {
    // A tunnel counts as an open connection, so a graceful shutdown waits for it
    // (within the grace period) like for any request.
    let open = crate::server::open_tunnel();
    tokio::spawn(async move {
        let client::Tunnel {
            mut upstream,
            early,
            in_flight,
        } = t;
        let _in_flight = in_flight;
        let _open = open;
        let Ok(c) = client.await else {
            return;
        };
        let mut c = TokioIo::new(c);
        if !early.is_empty()
            && tokio::io::AsyncWriteExt::write_all(&mut c, &early)
                .await
                .is_err()
        {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut c, &mut upstream).await;
    });
}

/// HTTP/1.1 Upgrade request (WebSocket and friends).
pub fn is_upgrade(head: &Head) -> bool {
    head.parts.version == Version::HTTP_11
        && head.contains("upgrade")
        && head.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Rewrites the client's request for the upstream: hop-by-hop headers out,
/// `x-forwarded-*` in, URI in the form the upstream protocol wants, Host kept (to an
/// h2 upstream, as `:authority`).
fn rewrite_request(
    ctx: &ConnCtx,
    parts: &mut Parts,
    upgrade: bool,
    h2: bool,
) -> Result<(), Failure> {
    rewrite_fields(&mut parts.headers, &ctx.client_ip, ctx.tls, upgrade)?;
    if h2 {
        // hyper's h2 client wants an absolute URI; :authority comes from Host, which
        // then leaves the fields (RFC 9113 §8.3.1): nginx refuses a request with both
        // ("client sent duplicate host header").
        let authority = parts
            .headers
            .remove(header::HOST)
            .and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok()));
        let mut up = parts.uri.clone().into_parts();
        up.scheme = Some(Scheme::HTTP);
        up.authority = authority.or(up.authority);
        if up.authority.is_none() {
            return Err(Failure::BadRequest);
        }
        up.path_and_query = match up.path_and_query.take() {
            Some(pq) if pq.as_str().starts_with('?') => {
                Some(PathAndQuery::try_from(format!("/{pq}")).map_err(|_| Failure::BadRequest)?)
            }
            None => Some(PathAndQuery::from_static("/")),
            pq => pq,
        };
        parts.uri = Uri::from_parts(up).map_err(|_| Failure::BadRequest)?;
        parts.version = Version::HTTP_2;
    } else {
        origin_form(parts)?;
    }
    Ok(())
}

/// The map's side of the fields' rewrite for the upstream: hop-by-hop fields out,
/// the client (`client_ip`, over TLS or not) into `x-forwarded-*`. A head the own
/// engine read gets the same rewrite from `h1::head::write_request`; the `h1_framing`
/// fuzz target holds the two to the same result.
pub fn rewrite_fields(
    h: &mut HeaderMap,
    client_ip: &HeaderValue,
    tls: bool,
    upgrade: bool,
) -> Result<(), Failure> {
    strip_hop_headers(h, upgrade);
    // Room for the x-forwarded-* headers, so adding them does not grow the map twice.
    h.reserve(3);

    // Host is in place already: `conform::check_request` put the target's authority
    // (absolute-form, h2's :authority) there.
    // Append the client to the chain; several x-forwarded-for lines become one.
    let mut prev = h.get_all(&X_FORWARDED_FOR).iter();
    match (prev.next(), prev.next()) {
        (None, _) => {
            h.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        }
        (Some(first), second) => {
            let mut v = Vec::with_capacity(first.len() + 2 + client_ip.len());
            v.extend_from_slice(first.as_bytes());
            for more in second.into_iter().chain(prev) {
                v.extend_from_slice(b", ");
                v.extend_from_slice(more.as_bytes());
            }
            v.extend_from_slice(b", ");
            v.extend_from_slice(client_ip.as_bytes());
            let v = HeaderValue::from_bytes(&v).map_err(|_| Failure::BadRequest)?;
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
    Ok(())
}

/// The target in origin form (an absolute-form one loses its scheme and authority,
/// which are in `Host` already), for an HTTP/1.1 upstream.
fn origin_form(parts: &mut Parts) -> Result<(), Failure> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = match parts.uri.path_and_query() {
            // An empty path is `/`, before a query too (RFC 9112 §3.2.1).
            Some(pq) if pq.as_str().starts_with('?') => {
                PathAndQuery::try_from(format!("/{pq}")).map_err(|_| Failure::BadRequest)?
            }
            Some(pq) => pq.clone(),
            None => PathAndQuery::from_static("/"),
        };
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
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
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| {
                // Connection may not take away what routing and framing rest on.
                let ignored = t.is_empty()
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"host")
                    || t.eq_ignore_ascii_case(b"content-length")
                    || (keep_upgrade && t.eq_ignore_ascii_case(b"upgrade"));
                !ignored
            })
            .filter_map(|t| HeaderName::from_bytes(t).ok())
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
        // Only `trailers` goes on (gRPC needs it), once, if any TE line has it.
        let trailers = h
            .get_all(header::TE)
            .iter()
            .any(|v| has_token(v, "trailers"));
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            h.remove(header::TE);
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
