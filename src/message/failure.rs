//! Every failure of the data path becomes a response: one table maps what went wrong to
//! a status, an `x-ninefold-reason` header and a short JSON body (the response itself
//! is made by [`Failure::response`], beside the bodies). Nothing here allocates per
//! request; the bodies are static.

use crate::h1::parse::Refusal;
use http::header::HeaderName;
use http::StatusCode;

/// The header that says why the gateway answered instead of an upstream.
pub static REASON: HeaderName = HeaderName::from_static("x-ninefold-reason");

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No route matched (404).
    NoRoute,
    /// The connection's listener was removed by a reload (503).
    ListenerGone,
    /// The cluster has no endpoint to send to (503).
    NoEndpoint,
    /// Every endpoint is unhealthy, ejected or drained (503).
    NoHealthyEndpoint,
    /// The circuit breaker rejects: the cluster's, or every endpoint's (503), answered
    /// without touching an upstream.
    CircuitOpen,
    /// TCP connect failed: refused, unreachable (502).
    ConnectFailed,
    /// TCP connect did not finish within `connect_timeout` (504).
    ConnectTimeout,
    /// The upstream broke the exchange: reset, closed early, bad HTTP (502).
    UpstreamError,
    /// No response headers within the route's `timeout` (504).
    Timeout,
    /// The request cannot be forwarded as sent: ambiguous framing, bad Host (400).
    BadRequest,
    /// The client's request body broke its own framing (a malformed chunk) (400).
    BadBody,
    /// The request target is longer than `limits.max_uri` (414).
    UriTooLong,
    /// A header field is longer than `limits.max_request_field` (431).
    FieldTooLarge,
    /// A transfer coding other than `chunked` (501).
    UnsupportedCoding,
    /// CONNECT: the gateway is no forward proxy (405).
    ConnectRefused,
    /// The route's or the cluster's bulkhead is full and its queue too, or the wait in
    /// the queue passed `queue_timeout` (503, with `Retry-After: 1`).
    BulkheadFull,
    /// The route targets a cell set, the request lacks its key, and the set has no
    /// default cell (400).
    NoCellKey,
    /// The request's cell is down and its set fails closed (`on_cell_down: fail`), or
    /// no cell of the set is live (503).
    CellDown,
}

// === impl Failure ===

impl Failure {
    /// Status answered.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::ListenerGone
            | Failure::NoEndpoint
            | Failure::NoHealthyEndpoint
            | Failure::CircuitOpen
            | Failure::BulkheadFull
            | Failure::CellDown => StatusCode::SERVICE_UNAVAILABLE,
            Failure::ConnectFailed | Failure::UpstreamError => StatusCode::BAD_GATEWAY,
            Failure::ConnectTimeout | Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BadRequest | Failure::BadBody | Failure::NoCellKey => StatusCode::BAD_REQUEST,
            Failure::UriTooLong => StatusCode::URI_TOO_LONG,
            Failure::FieldTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failure::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            Failure::ConnectRefused => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Short machine-readable reason, the `x-ninefold-reason` value.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::NoRoute => "no-route",
            Failure::ListenerGone => "listener-removed",
            Failure::NoEndpoint => "no-endpoint",
            Failure::NoHealthyEndpoint => "no-healthy-endpoint",
            Failure::CircuitOpen => "circuit-open",
            Failure::ConnectFailed => "connect-failed",
            Failure::ConnectTimeout => "connect-timeout",
            Failure::UpstreamError => "upstream-error",
            Failure::Timeout => "upstream-timeout",
            Failure::BadRequest => "bad-request",
            Failure::BadBody => "bad-request-body",
            Failure::UriTooLong => "uri-too-long",
            Failure::FieldTooLarge => "header-too-large",
            Failure::UnsupportedCoding => "unsupported-transfer-coding",
            Failure::ConnectRefused => "connect-refused",
            Failure::BulkheadFull => "bulkhead-full",
            Failure::NoCellKey => "no-cell-key",
            Failure::CellDown => "cell-down",
        }
    }

    /// The JSON body of the gateway's answer.
    pub fn body(self) -> &'static str {
        match self {
            Failure::NoRoute => {
                r#"{"status":404,"reason":"no-route","message":"no route matches this request"}"#
            }
            Failure::ListenerGone => {
                r#"{"status":503,"reason":"listener-removed","message":"this listener was removed by a reload"}"#
            }
            Failure::NoEndpoint => {
                r#"{"status":503,"reason":"no-endpoint","message":"no usable endpoint in the cluster"}"#
            }
            Failure::NoHealthyEndpoint => {
                r#"{"status":503,"reason":"no-healthy-endpoint","message":"every endpoint of the cluster is unhealthy, ejected or drained"}"#
            }
            Failure::CircuitOpen => {
                r#"{"status":503,"reason":"circuit-open","message":"the circuit breaker is open: the upstream was not called"}"#
            }
            Failure::ConnectFailed => {
                r#"{"status":502,"reason":"connect-failed","message":"could not connect to the upstream"}"#
            }
            Failure::ConnectTimeout => {
                r#"{"status":504,"reason":"connect-timeout","message":"connecting to the upstream timed out"}"#
            }
            Failure::UpstreamError => {
                r#"{"status":502,"reason":"upstream-error","message":"the upstream closed or broke the exchange"}"#
            }
            Failure::Timeout => {
                r#"{"status":504,"reason":"upstream-timeout","message":"the upstream did not answer in time"}"#
            }
            Failure::BadRequest => {
                r#"{"status":400,"reason":"bad-request","message":"the request cannot be forwarded"}"#
            }
            Failure::BadBody => {
                r#"{"status":400,"reason":"bad-request-body","message":"the request body is malformed"}"#
            }
            Failure::UriTooLong => {
                r#"{"status":414,"reason":"uri-too-long","message":"the request target is too long"}"#
            }
            Failure::FieldTooLarge => {
                r#"{"status":431,"reason":"header-too-large","message":"a request header field is too large"}"#
            }
            Failure::UnsupportedCoding => {
                r#"{"status":501,"reason":"unsupported-transfer-coding","message":"only the chunked transfer coding is supported"}"#
            }
            Failure::ConnectRefused => {
                r#"{"status":405,"reason":"connect-refused","message":"CONNECT is not supported: the gateway is not a forward proxy"}"#
            }
            Failure::BulkheadFull => {
                r#"{"status":503,"reason":"bulkhead-full","message":"too many requests in progress on this route or cluster; retry later"}"#
            }
            Failure::NoCellKey => {
                r#"{"status":400,"reason":"no-cell-key","message":"the request lacks the key that picks its cell"}"#
            }
            Failure::CellDown => {
                r#"{"status":503,"reason":"cell-down","message":"the cell serving this request is down"}"#
            }
        }
    }

    /// Whether the request itself caused it (malformed, unsupported, unroutable):
    /// such answers count for an SLO by their status class, never as the gateway's or
    /// the upstream's failure.
    pub fn is_client_fault(self) -> bool {
        matches!(
            self,
            Failure::NoRoute
                | Failure::BadRequest
                | Failure::BadBody
                | Failure::UriTooLong
                | Failure::FieldTooLarge
                | Failure::UnsupportedCoding
                | Failure::ConnectRefused
                | Failure::NoCellKey
        )
    }
}

impl From<Refusal> for Failure {
    /// The engine's refusal of a request head, as the gateway answers it.
    fn from(r: Refusal) -> Failure {
        match r {
            Refusal::BadRequest => Failure::BadRequest,
            Refusal::UriTooLong => Failure::UriTooLong,
            Refusal::FieldTooLarge => Failure::FieldTooLarge,
            Refusal::UnsupportedCoding => Failure::UnsupportedCoding,
        }
    }
}
