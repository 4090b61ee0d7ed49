//! The HTTP/2 leg of forwarding: hyper's h2 client over one multiplexed connection per
//! endpoint per worker, kept in a worker-local table by the endpoint's slot (as the
//! own engine keeps its idle HTTP/1.1 connections, `h1::pool`), with keep-alive pings
//! every 30 s and replaced when it closes. A body the own engine reads from its client
//! is pumped into the h2 stream by the request's task while the answer is awaited.

use super::rewrite::strip_hop_headers;
use super::{connect_failed, unsent, upstream_fault, SendError};
use crate::h1::pool::{connect_tcp, ConnectError};
use crate::message::{Failure, ReqBody, RespBody};
use crate::snapshot::ClusterSnap;
use crate::upstream::retry::Cause;
use crate::upstream::{EndpointState, InFlight};
use http::request::Parts;
use http::{Request, Response, Version};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A worker's h2 connection to an endpoint: where it goes, and its sender.
type Sender = (SocketAddr, http2::SendRequest<ReqBody<'static>>);

thread_local! {
    /// The worker's h2 connection to each endpoint, by slot, with its address (a slot a
    /// reload gave to another endpoint never hands out the old one's connection).
    static SENDERS: RefCell<Vec<Option<Sender>>> = const { RefCell::new(Vec::new()) };
}

/// Why the worker's connection to an endpoint could not be had.
enum NoSender {
    /// The TCP connection failed.
    Connect(ConnectError),
    /// The h2 handshake failed.
    Handshake,
}

/// Sends a prepared request to endpoint `ep` of an HTTP/2 `cluster`; see the module
/// doc.
pub async fn send<'a>(
    cluster: &ClusterSnap,
    ep: &Arc<EndpointState>,
    parts: &Parts,
    body: ReqBody<'a>,
    idle: std::time::Duration,
    in_flight: InFlight,
) -> Result<Response<RespBody>, SendError<'a>> {
    let mut tx = match sender(
        ep.slot,
        ep.address,
        cluster.connect_timeout,
        cluster.max_response_head,
    )
    .await
    {
        Ok(tx) => tx,
        Err(NoSender::Connect(e)) => return Err(connect_failed(cluster, e, body)),
        Err(NoSender::Handshake) => return Err(unsent(cluster, Failure::UpstreamError, body)),
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
                while let Some(f) = std::future::poll_fn(|cx| inbound.poll_data(cx)).await {
                    let item = f.map_err(Into::into);
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

/// The worker's HTTP/2 sender to `slot`, connecting when there is none or it closed;
/// `max_head` bounds an answer's header list.
async fn sender(
    slot: usize,
    addr: SocketAddr,
    timeout: Duration,
    max_head: usize,
) -> Result<http2::SendRequest<ReqBody<'static>>, NoSender> {
    let cached = SENDERS.with(|p| p.borrow().get(slot).cloned().flatten());
    if let Some((a, tx)) = cached {
        if a == addr && !tx.is_closed() {
            return Ok(tx);
        }
    }
    let stream = connect_tcp(addr, timeout)
        .await
        .map_err(NoSender::Connect)?;
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| NoSender::Handshake)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    SENDERS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() <= slot {
            p.resize_with(slot + 1, || None);
        }
        p[slot] = Some((addr, tx.clone()));
    });
    Ok(tx)
}

/// Drops this worker's h2 connections that have closed; returns how many (the worker
/// calls it every second, with `h1::pool::sweep`).
pub fn sweep() -> usize {
    SENDERS.with(|p| {
        let mut dropped = 0;
        for s in p.borrow_mut().iter_mut() {
            if s.as_ref().is_some_and(|(_, tx)| tx.is_closed()) {
                *s = None;
                dropped += 1;
            }
        }
        dropped
    })
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
