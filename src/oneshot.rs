//! One-shot HTTP exchanges of the control plane: a health probe of an endpoint, an
//! alert posted to Alertmanager, `ninefold slo status` reading the admin API.
//!
//! Each is one request on a fresh TCP connection, with hyper's connection-level client
//! (HTTP/1.1, or HTTP/2 with prior knowledge for an h2c-only endpoint): a fresh
//! connection is what a probe wants (it catches what a pooled one would hide: a
//! listener that stopped accepting, a full accept queue), and all a few calls a
//! minute need. The data path never comes here: its upstream exchanges are the own
//! engine's (`h1`) and the pipeline's h2 leg. [`exchange`] bounds the whole exchange,
//! connect included, by one deadline, so a peer that accepts and then stalls cannot
//! hang the caller; [`send`] leaves the deadline and the body to its caller.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// TCP connect failed (refused, unreachable, unknown host, ...).
    #[error("{0}")]
    Connect(std::io::Error),
    /// The deadline passed before the TCP connection was up.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The peer broke HTTP (closed early, malformed answer, ...).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The deadline passed before the whole answer arrived.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// The parts of an answer the callers look at.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: http::StatusCode,
    /// Protocol version of the status line.
    pub version: http::Version,
    /// The whole body, de-chunked.
    pub body: Bytes,
}

// === impl ExchangeError ===

impl ExchangeError {
    /// Whether the peer was never reached, as opposed to failing mid-exchange.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectTimeout(_))
    }
}

/// Connects to `addr` (`host:port`), sends `req` and reads the whole answer, all
/// within `timeout`. Must run inside a tokio runtime: the connection is driven by a
/// task of its own, which ends when the exchange does.
pub async fn exchange(
    addr: &str,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Answer, ExchangeError> {
    let deadline = Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ExchangeError::ConnectTimeout(timeout))?
        .map_err(ExchangeError::Connect)?;
    let rest = async {
        let resp = send(stream, req, false).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            body,
        })
    };
    tokio::time::timeout_at(deadline, rest)
        .await
        .map_err(|_| ExchangeError::Timeout(timeout))?
}

/// Sends `req` on `stream`, a fresh connection, over HTTP/2 with prior knowledge when
/// `h2` is set, HTTP/1.1 otherwise, and returns the answer with its body still to
/// read. Must run inside a tokio runtime: the connection is driven by a task of its
/// own, which ends when the answer's body is done or dropped (the connection closes
/// with it).
pub async fn send<B>(
    stream: TcpStream,
    req: http::Request<B>,
    h2: bool,
) -> Result<http::Response<Incoming>, hyper::Error>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    if h2 {
        let (mut tx, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        tx.send_request(req).await
    } else {
        let (mut tx, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        tx.send_request(req).await
    }
}
