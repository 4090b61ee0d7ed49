//! Forwarding one request to one endpoint: header rewriting ([`rewrite`]), a pooled or
//! new upstream connection, the exchange (here for HTTP/1.1, in [`h2`] for an HTTP/2
//! upstream), and HTTP Upgrade (WebSocket) tunnels.
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
//! client's fault: 400, not 502. The upstream's answer is framed by `h1::parse`'s rules;
//! one it had to repair never shares its connection with another request, and an
//! unsolicited `101` is refused (502).
//!
//! Cancel safety: if this future is dropped (a timeout, the client left), the upstream
//! connection is dropped with it (never pooled mid-exchange) and the in-flight guard
//! ends the request.

pub mod h2;
pub mod rewrite;

use super::ConnCtx;
use crate::config::UpstreamProtocol;
use crate::h1::buf::Buf;
use crate::h1::client;
use crate::h1::io::Client;
use crate::h1::pool::{self, ConnectError};
use crate::h1::splice;
use crate::h1::write::Forwarding;
use crate::message::{Failure, Head, ReqBody, RespBody, Tunnel};
use crate::snapshot::ClusterSnap;
use crate::upstream::retry::Cause;
use crate::upstream::EndpointState;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::Body as _;
use rewrite::{origin_form, rewrite_request};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

/// Prepares a client's request for the upstream, once for all attempts: hop-by-hop
/// headers out, `x-forwarded-*` in, the URI in the upstream protocol's form, and a
/// body of unknown length marked chunked for an HTTP/1.1 upstream (see the module
/// doc). Returns whether the request is an Upgrade its client's connection can follow:
/// one of the own engine's (hyper serves only h2 connections, which have no Upgrade).
///
/// A head the own engine read (raw lines) to an HTTP/1.1 upstream is only marked here:
/// `h1::write::write_request` does the rewrite while it writes the lines. An Upgrade,
/// or an h2 upstream, takes the map's way.
pub fn prepare(
    ctx: &ConnCtx,
    cluster: &ClusterSnap,
    head: &mut Head,
    body: &ReqBody<'_>,
) -> Result<bool, Failure> {
    let upgrade = is_upgrade(head);
    let h2 = cluster.protocol == UpstreamProtocol::Http2;
    let chunked = !h2 && !body.is_end_stream() && body.size_hint().exact().is_none();
    if h2 || upgrade {
        head.materialize();
    }
    if let Some(raw) = &mut head.raw {
        raw.chunked = chunked;
        return origin_form(&mut head.parts).map(|()| false);
    }
    let parts = &mut head.parts;
    rewrite_request(ctx, parts, upgrade, h2)?;
    if chunked {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    Ok(upgrade && ctx.stream.is_some())
}

/// Sends a prepared request to endpoint `ep` of `cluster` and returns the upstream's
/// response, with its body streaming; `idle` bounds the silence between two body
/// frames; `upgrade`: the request is an Upgrade its client can follow (see
/// [`prepare`]); `hold`: the request may go again if its answer breaks, so an answer's
/// body of up to this many bytes is read whole before its head is returned (see
/// `hold_body`).
#[allow(clippy::too_many_arguments)]
pub async fn send<'a>(
    ctx: &ConnCtx,
    cluster: &ClusterSnap,
    ep: &Arc<EndpointState>,
    req: &Head,
    body: ReqBody<'a>,
    idle: std::time::Duration,
    upgrade: bool,
    hold: Option<usize>,
) -> Result<Response<RespBody>, SendError<'a>> {
    let in_flight = ep.start();
    if cluster.protocol == UpstreamProtocol::Http2 {
        return h2::send(cluster, ep, &req.parts, body, idle, in_flight).await;
    }
    let head_req = req.parts.method == http::Method::HEAD;
    let fwd = Forwarding {
        client_ip: ctx.client_ip.as_bytes(),
        tls: ctx.tls,
    };

    // HTTP/1.1: reuse a pooled connection when there is one. Upgrades take a fresh one,
    // since the connection becomes the tunnel.
    let pooled = if upgrade {
        None
    } else {
        pool::checkout(ep.slot, ep.address)
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
    let (parts, raw) = (&req.parts, req.raw());
    if let Err(e) = client::write_head(&stream, parts, raw, fwd, first.as_ref()).await {
        if !reused {
            return Err(write_failed(e));
        }
        // The pooled connection was closing; nothing of the request was taken. Once
        // more on a fresh connection.
        stream = match pool::connect_tcp(ep.address, cluster.connect_timeout).await {
            Ok(s) => s,
            Err(e) => return Err(connect_failed(cluster, e, body)),
        };
        let (parts, raw) = (&req.parts, req.raw());
        if let Err(e) = client::write_head(&stream, parts, raw, fwd, first.as_ref()).await {
            return Err(write_failed(e));
        }
    }
    // The rest of the body goes while the answer is awaited: an upstream may answer
    // before it has read the whole body (a 413, a 401), and then it is not waited for.
    let chunked = client::is_chunked(parts, raw);
    // Interim answers go to a client of the own engine that takes them (HTTP/1.1).
    let interim = ctx
        .stream
        .as_ref()
        .filter(|_| ctx.interim.load(Ordering::Relaxed));
    let mut rbuf = Buf::answer();
    // A plain HTTP/1.1 client may get a long body by splice: the first read then takes
    // the head and only the start of the body (see `h1::splice`).
    let first = (cfg!(target_os = "linux") && matches!(ctx.stream, Some(Client::Tcp(_))))
        .then_some(splice::FIRST_READ);
    let (head, body_sent) = {
        let write = client::write_body(&stream, &mut body, chunked);
        let read = client::read_head(
            interim,
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
        Err(client::ReadError::Closed | client::ReadError::Idle) => return Err(reset()),
        Err(client::ReadError::Invalid(why)) => {
            tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answer refused: {why}; answering 502");
            return Err(upstream_fault());
        }
    };
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade {
            // The client asked for no upgrade: relaying this would switch a
            // connection that still carries HTTP for the client.
            tracing::warn!(cluster = %cluster.name, endpoint = %ep.address, "upstream answered 101 to a request without Upgrade; answering 502");
            return Err(upstream_fault());
        }
        // The fields keep Connection/Upgrade: the client needs them to complete its
        // handshake (see `h1::fields::RawFields`).
        let t = Tunnel {
            upstream: stream,
            early: rbuf.data().to_vec(),
            in_flight,
        };
        let mut resp = Response::new(RespBody::Tunnel(Box::new(t)));
        *resp.status_mut() = head.status;
        head.fields.into_map(resp.headers_mut());
        return Ok(resp);
    }
    if first.is_some() {
        client::read_rest_if_copied(&stream, &mut rbuf, &head).await;
    }
    if let Some(limit) = hold {
        hold_body(&stream, &mut rbuf, &head, limit, first.is_some(), idle).await?;
    }
    // An answer that came before the whole request left shares its connection with
    // no later request: the rest of that request is not on it.
    let keep = (head.keep_alive && body_sent).then_some((ep.slot, ep.address));
    let reader = client::Reader::new(
        stream,
        rbuf,
        head.framing,
        (cluster.max_chunk_extension, cluster.max_response_head),
        keep,
    );
    // The answer's fields stay raw (no header map) until something needs them as a
    // map: the HTTP/1.1 writer copies the lines as they are.
    let mut resp = Response::new(RespBody::upstream_h1(reader, head.fields, in_flight, idle));
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    Ok(resp)
}

/// Reads the rest of an answer's body into `rbuf` before its head goes anywhere, when
/// the request may be sent again (`limit`: `retry.buffer`): an answer framed by a
/// `Content-Length` of at most `limit` bytes that has not arrived whole with its head.
/// An upstream that dies between its head and the end of its body then costs the
/// client nothing: the attempt failed like a reset, before any byte of it reached the
/// client, and goes to another endpoint (Envoy and HAProxy cannot retry once a head
/// has left). A body that will go by splice (a plain client, `splice::MIN` or more to
/// come) is not held: it never enters the gateway. Costs nothing when the body came
/// with the head (most answers), and saves the client a write when it did not. A body
/// silent for the route's `idle_timeout` fails the attempt as a timeout (504).
async fn hold_body<'a>(
    stream: &tokio::net::TcpStream,
    rbuf: &mut Buf,
    head: &crate::h1::parse::ResponseHead,
    limit: usize,
    plain: bool,
    idle: std::time::Duration,
) -> Result<(), SendError<'a>> {
    let crate::h1::parse::Framing::Length(n) = head.framing else {
        return Ok(());
    };
    let have = rbuf.len() as u64;
    let spliced = plain && n.saturating_sub(have) >= splice::MIN;
    if have >= n || n > limit as u64 || spliced {
        return Ok(());
    }
    match client::read_body_whole(stream, rbuf, n as usize, idle).await {
        Ok(()) => Ok(()),
        Err(client::ReadError::Idle) => Err(SendError {
            failure: Failure::Timeout,
            cause: Some(Cause::Timeout),
            unsent: None,
        }),
        Err(_) => Err(reset()),
    }
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

/// The connection could not be made (`failure` says how): the request never left,
/// and goes back unsent.
fn unsent<'a>(cluster: &ClusterSnap, failure: Failure, body: ReqBody<'a>) -> SendError<'a> {
    cluster.connect_errors.inc();
    SendError {
        failure,
        cause: Some(Cause::ConnectFailure),
        unsent: Some(body),
    }
}

fn connect_failed<'a>(cluster: &ClusterSnap, e: ConnectError, body: ReqBody<'a>) -> SendError<'a> {
    let failure = match e {
        ConnectError::Timeout => Failure::ConnectTimeout,
        ConnectError::Io(_) => Failure::ConnectFailed,
    };
    unsent(cluster, failure, body)
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
