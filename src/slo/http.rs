//! A one-shot HTTP/1.1 exchange for the SLO tools: `slo status` reading the admin API
//! and the engine posting alerts to Alertmanager.
//!
//! Both used to speak HTTP by hand and could not read a chunked answer; this uses
//! hyper's connection-level client (as the upstream pool does) on a fresh TCP
//! connection per exchange, which is all two calls a minute or one CLI run need. One
//! deadline covers the whole exchange, connect included, so a peer that accepts and
//! then stalls cannot hang the caller.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
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
    let _ = stream.set_nodelay(true);
    let rest = async {
        let (mut tx, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = tx.send_request(req).await?;
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
