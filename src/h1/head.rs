//! Message heads: parsing a request or response head with `httparse` and deciding its
//! body's framing by RFC 9112's rules, and writing heads back out.
//!
//! Framing is where request smuggling lives, so the rules are the strict ones (nginx's
//! where RFC 9112 lets an implementation choose):
//! - a request: at most one `Content-Length`, `1*DIGIT` (CVE-2021-32715, an empty one:
//!   CVE-2023-40225), never beside `Transfer-Encoding` (400, where hyper merged or
//!   dropped); `Transfer-Encoding` only on HTTP/1.1 and exactly one `chunked`
//!   (CVE-2021-21299: another coding 501, a repeated or empty one 400); neither header:
//!   no body, whatever the method or version (CVE-2020-35863, CVE-2026-2835);
//! - a response: no body for HEAD, 1xx, 204 and 304; two `Content-Length`s or a coding
//!   other than `chunked` → refused (502); `Content-Length` beside `chunked` is dropped
//!   and the connection not reused; neither: the body runs to the connection's close.
//!
//! The head is copied once into a shared buffer and every field value is a slice of it.

use crate::config::Limits;
use crate::proxy::error::Failure;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and fields, as the pipeline takes them.
    pub parts: http::request::Parts,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status.
    pub status: StatusCode,
    /// The upstream's version (`HTTP/1.1` or `HTTP/1.0`).
    pub version: Version,
    /// The end-to-end fields, as they go to the client (see [`RawFields`]).
    pub fields: RawFields,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the upstream connection may carry another request.
    pub keep_alive: bool,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// An answer's end-to-end fields, ready for an HTTP/1.x client: `name: value` lines
/// in the upstream's order and spelling, each ended by CRLF, with the hop-by-hop
/// fields cut (RFC 9110 §7.6.1: `Connection`, what it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Upgrade` but on a `101`, `TE` but
/// `trailers`) and `Content-Length` kept aside, since the writer frames the body.
///
/// No header map is built for an answer on the HTTP/1.1 path: the lines are copied
/// once, from the upstream's read buffer into a pooled one, and written out from
/// there. What needs a map (an h2 client, the stale cache, `Retry-After`) makes one
/// with [`RawFields::into_map`].
pub struct RawFields {
    lines: Vec<u8>,
    /// The upstream's `Content-Length`, if it sent one that stands.
    pub length: Option<u64>,
    /// Whether a `Date` line is among the lines.
    pub date: bool,
}

impl RawFields {
    /// The field lines.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Each line's name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                let colon = l.iter().position(|&b| b == b':').unwrap_or(l.len());
                let value = l.get(colon + 2..).unwrap_or_default();
                (&l[..colon], value)
            })
    }

    /// The first value of field `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The fields as a header map, `Content-Length` included, each appended after what
    /// `into` holds already unless `into` has that name (the pipeline's own fields win).
    pub fn into_map(self, into: &mut HeaderMap) {
        let had: Vec<HeaderName> = into.keys().cloned().collect();
        for (n, v) in self.iter() {
            let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) else {
                continue;
            };
            if !had.contains(&n) {
                into.append(n, v);
            }
        }
        if let Some(n) = self.length {
            if !had.contains(&http::header::CONTENT_LENGTH) {
                into.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
    }
}

impl Drop for RawFields {
    fn drop(&mut self) {
        super::buf::give(std::mem::take(&mut self.lines));
    }
}

impl std::fmt::Debug for RawFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFields")
            .field("lines", &String::from_utf8_lossy(&self.lines))
            .field("length", &self.length)
            .finish()
    }
}

/// Headers on the stack per parse; a configured `max_request_headers` above it parses
/// into the heap.
const STACK_HEADERS: usize = 100;

/// Parses a request head at the start of `buf`; `Ok(None)` if it is not complete yet.
/// A head that can no longer fit `limits.max_request_head` is an error (431).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, Failure> {
    let max = limits.max_request_headers;
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if max <= STACK_HEADERS {
        &mut stack[..max]
    } else {
        heap = vec![httparse::EMPTY_HEADER; max];
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_request_head {
                return Err(too_large(req.path, limits));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Failure::FieldTooLarge),
        Err(_) => return Err(Failure::BadRequest),
    };
    if len > limits.max_request_head {
        return Err(too_large(req.path, limits));
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Failure::BadRequest);
    };
    if path.len() > limits.max_uri {
        return Err(Failure::UriTooLong);
    }
    let http11 = version == 1;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Failure::BadRequest)?;
    let shared = Bytes::copy_from_slice(&buf[..len]);
    let uri = if path.as_bytes().first() == Some(&b'/') || path.contains("://") {
        Uri::from_maybe_shared(sub(&shared, buf, path.as_bytes()))
    } else {
        path.parse()
    }
    .map_err(|_| Failure::BadRequest)?;

    let (headers, f) =
        fields(req.headers, buf, &shared, limits.max_request_field, 3).map_err(|e| match e {
            FieldError::TooLarge => Failure::FieldTooLarge,
            FieldError::Invalid => Failure::BadRequest,
        })?;
    let Fields {
        lengths,
        length,
        te,
        close,
        keep,
        expect_continue,
    } = f;
    if lengths > 1 {
        return Err(Failure::BadRequest);
    }
    let framing = if te {
        if length.is_some() || !http11 {
            return Err(Failure::BadRequest);
        }
        crate::proxy::conform::transfer_coding(&headers)?;
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive: if http11 { !close } else { keep && !close },
        expect_continue: expect_continue && http11,
        len,
    }))
}

/// A head over its limit: 414 when the request line alone is too long (nginx's
/// answer), else 431.
fn too_large(path: Option<&str>, limits: &Limits) -> Failure {
    match path {
        Some(p) if p.len() > limits.max_uri => Failure::UriTooLong,
        _ => Failure::FieldTooLarge,
    }
}

/// Parses an upstream's response head at the start of `buf`; `Ok(None)` if it is not
/// complete yet. `head` is whether the request was HEAD. The error is a cause for the
/// log; the client gets 502.
pub fn parse_response(
    buf: &[u8],
    head: bool,
    max_head: usize,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return Err("response head too large");
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(_) => return Err("malformed response head"),
    };
    if len > max_head {
        return Err("response head too large");
    }
    let (Some(code), Some(version)) = (resp.code, resp.version) else {
        return Err("malformed response head");
    };
    let status = StatusCode::from_u16(code).map_err(|_| "invalid status code")?;
    let http11 = version == 1;
    let raw = resp.headers;
    let mut f = Fields {
        lengths: 0,
        length: None,
        te: false,
        close: false,
        keep: false,
        expect_continue: false,
    };
    for h in raw.iter() {
        match Name::of(h.name.as_bytes()) {
            Name::ContentLength => {
                f.lengths += 1;
                f.length = Some(content_length(h.value).ok_or("invalid Content-Length")?);
            }
            Name::TransferEncoding => f.te = true,
            Name::Connection => {
                for t in tokens(h.value) {
                    f.close |= t.eq_ignore_ascii_case(b"close");
                    f.keep |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
    }
    if f.lengths > 1 {
        return Err("two Content-Length fields");
    }
    let mut keep_alive = if http11 { !f.close } else { f.keep && !f.close };
    let no_body = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length = f.length;
    let framing = if f.te {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing (hyper
        // refuses it too).
        if !http11 {
            return Err("Transfer-Encoding in an HTTP/1.0 answer");
        }
        crate::proxy::conform::transfer_codings(
            raw.iter()
                .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
                .map(|h| h.value),
        )
        .map_err(|_| "a transfer coding other than chunked")?;
        if length.is_some() {
            // RFC 9112 §6.3: chunked wins, the length goes, and whatever the upstream
            // meant by both may still be on the connection.
            length = None;
            keep_alive = false;
        }
        if no_body {
            keep_alive &= head;
            Framing::Empty
        } else {
            Framing::Chunked
        }
    } else if no_body {
        // A 204 or 304 announcing a body: the bytes may sit on the connection.
        if !head && length.is_some_and(|n| n != 0) {
            keep_alive = false;
        }
        Framing::Empty
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::Close
            }
        }
    };
    let mut fields = end_to_end(raw, code == 101);
    fields.length = length;
    Ok(Some(ResponseHead {
        status,
        version: if http11 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        },
        fields,
        framing,
        keep_alive,
        len,
    }))
}

/// The field names the engine acts on, told apart by length first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Upgrade,
    Te,
    Date,
    Other,
}

impl Name {
    fn of(n: &[u8]) -> Name {
        let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
        match n.len() {
            2 if is("te") => Name::Te,
            4 if is("date") => Name::Date,
            7 if is("upgrade") => Name::Upgrade,
            10 if is("connection") => Name::Connection,
            10 if is("keep-alive") => Name::KeepAlive,
            14 if is("content-length") => Name::ContentLength,
            16 if is("proxy-connection") => Name::ProxyConnection,
            17 if is("transfer-encoding") => Name::TransferEncoding,
            _ => Name::Other,
        }
    }
}

/// An answer's end-to-end fields (see [`RawFields`]); `upgrade`: a `101`, whose
/// `Connection` and `Upgrade` the client needs to complete its handshake.
fn end_to_end(raw: &[httparse::Header<'_>], upgrade: bool) -> RawFields {
    // The Connection fields' values (a few on the stack; the rare answer with more
    // is scanned whole for each name).
    let mut conn: [&[u8]; 4] = [&[]; 4];
    let mut n_conn = 0;
    for h in raw {
        if Name::of(h.name.as_bytes()) == Name::Connection {
            if let Some(slot) = conn.get_mut(n_conn) {
                *slot = h.value;
            }
            n_conn += 1;
        }
    }
    // Whether a Connection field names `name`, but for what routing and framing rest
    // on (the same exceptions as `proxy::forward::strip_hop_headers`).
    let named = |name: &[u8]| {
        if name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"close")
            || (upgrade && name.eq_ignore_ascii_case(b"upgrade"))
        {
            return false;
        }
        let listed = |v: &[u8]| tokens(v).any(|t| t.eq_ignore_ascii_case(name));
        if n_conn <= conn.len() {
            conn[..n_conn].iter().any(|v| listed(v))
        } else {
            raw.iter()
                .filter(|h| Name::of(h.name.as_bytes()) == Name::Connection)
                .any(|h| listed(h.value))
        }
    };
    let has_connection = n_conn > 0;
    let mut out = RawFields {
        lines: super::buf::take(),
        length: None,
        date: false,
    };
    for h in raw {
        let name = h.name.as_bytes();
        let value = match Name::of(name) {
            Name::ContentLength
            | Name::TransferEncoding
            | Name::KeepAlive
            | Name::ProxyConnection => continue,
            Name::Connection | Name::Upgrade if !upgrade => continue,
            Name::Te => {
                if !tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"trailers")) {
                    continue;
                }
                &b"trailers"[..]
            }
            Name::Date => {
                out.date = true;
                h.value
            }
            _ => h.value,
        };
        if has_connection && named(name) {
            continue;
        }
        let l = &mut out.lines;
        l.extend_from_slice(name);
        l.extend_from_slice(b": ");
        l.extend_from_slice(value);
        l.extend_from_slice(b"\r\n");
    }
    out
}

/// What a head's fields say about its framing and its connection.
struct Fields {
    /// `Content-Length` fields seen.
    lengths: usize,
    /// The (last) `Content-Length` value.
    length: Option<u64>,
    /// A `Transfer-Encoding` field is there.
    te: bool,
    /// `Connection` names `close`.
    close: bool,
    /// `Connection` names `keep-alive`.
    keep: bool,
    /// `Expect: 100-continue`.
    expect_continue: bool,
}

/// Why a field line is refused.
enum FieldError {
    /// Longer than the field limit.
    TooLarge,
    /// Not a valid field, or an invalid `Content-Length`.
    Invalid,
}

/// Builds a request head's header map (each value a slice of `shared`, the copy of
/// `buf`, with room for `extra` more fields) and reads its framing fields on the way.
fn fields(
    raw: &[httparse::Header<'_>],
    buf: &[u8],
    shared: &Bytes,
    field_max: usize,
    extra: usize,
) -> Result<(HeaderMap, Fields), FieldError> {
    let mut headers = HeaderMap::with_capacity(raw.len() + extra);
    let mut f = Fields {
        lengths: 0,
        length: None,
        te: false,
        close: false,
        keep: false,
        expect_continue: false,
    };
    for h in raw {
        if h.name.len() + 2 + h.value.len() > field_max {
            return Err(FieldError::TooLarge);
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| FieldError::Invalid)?;
        let value = HeaderValue::from_maybe_shared(sub(shared, buf, h.value))
            .map_err(|_| FieldError::Invalid)?;
        if name == http::header::CONTENT_LENGTH {
            f.lengths += 1;
            f.length = Some(content_length(h.value).ok_or(FieldError::Invalid)?);
        } else if name == http::header::TRANSFER_ENCODING {
            f.te = true;
        } else if name == http::header::CONNECTION {
            for t in tokens(h.value) {
                f.close |= t.eq_ignore_ascii_case(b"close");
                f.keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == http::header::EXPECT {
            f.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    Ok((headers, f))
}

/// The part of `shared` (a copy of `base`) that `part` (a slice of `base`) covers.
fn sub(shared: &Bytes, base: &[u8], part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= shared.len() => shared.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// The largest `Content-Length` taken: 18 digits (just under 10^18 bytes). Every next
/// hop reads that number the same way (nginx stops at 2^63-1, hyper at 2^64-3); a
/// larger one could be read otherwise by a hop with a bounded number type, and no
/// body is that large.
pub const MAX_CONTENT_LENGTH: u64 = 999_999_999_999_999_999;

/// `1*DIGIT` as a number up to [`MAX_CONTENT_LENGTH`]; `None` for anything else.
pub fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (n <= MAX_CONTENT_LENGTH).then_some(n)
}

/// The comma-separated elements of a field value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Writes a request head for an upstream: request line with the origin-form target,
/// then the fields as they are in `parts` (already rewritten by `proxy::forward`).
pub fn write_request(out: &mut Vec<u8>, parts: &http::request::Parts) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) if parts.method != Method::CONNECT => {
            // An empty path goes as `/`, before a query too (RFC 9112 §3.2.1).
            if !pq.as_str().starts_with('/') && pq.as_str() != "*" {
                out.push(b'/');
            }
            out.extend_from_slice(pq.as_str().as_bytes());
        }
        _ => match parts.uri.authority() {
            Some(a) if parts.method == Method::CONNECT => {
                out.extend_from_slice(a.as_str().as_bytes())
            }
            _ => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &parts.headers);
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: value` lines.
pub fn write_fields(out: &mut Vec<u8>, h: &HeaderMap) {
    for (name, value) in h {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a status line (always `HTTP/1.1`, RFC 9110 §6.2: a server sends its own
/// version) with the status's canonical reason phrase.
pub fn write_status(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, Failure> {
        parse_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn framing_of_requests() {
        let r = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.framing, Framing::Empty);
        assert!(r.keep_alive);
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Length(5));
        assert_eq!(r.len, 47);
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        let r = req("POST / HTTP/1.0\r\nHost: a\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Empty);
        assert!(!r.keep_alive);
        let r = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        for (head, f) in [
            (
                "Content-Length: 5\r\nContent-Length: 5",
                Failure::BadRequest,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                Failure::BadRequest,
            ),
            ("Content-Length: +5", Failure::BadRequest),
            ("Content-Length: -5", Failure::BadRequest),
            ("Content-Length: 5,5", Failure::BadRequest),
            ("Content-Length:", Failure::BadRequest),
            ("Content-Length: 99999999999999999999", Failure::BadRequest),
            ("Content-Length: 07766279631452241918", Failure::BadRequest),
            (
                "Transfer-Encoding: gzip, chunked",
                Failure::UnsupportedCoding,
            ),
            ("Transfer-Encoding: chunked, chunked", Failure::BadRequest),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Failure::BadRequest,
            ),
            ("Transfer-Encoding: ,chunked", Failure::BadRequest),
            (": x", Failure::BadRequest),
            ("Host : a", Failure::BadRequest),
            ("X: a\r\n b", Failure::BadRequest),
        ] {
            let r = req(&format!("POST / HTTP/1.1\r\nHost: a\r\n{head}\r\n\r\n"));
            assert_eq!(r.err(), Some(f), "{head:?}");
        }
        let r = req("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.err(), Some(Failure::BadRequest));
    }

    #[test]
    fn limits_answer_414_and_431() {
        let limits = Limits {
            max_request_head: 1024,
            max_uri: 100,
            ..Limits::default()
        };
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_request(long.as_bytes(), &limits).err(),
            Some(Failure::UriTooLong)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(
            parse_request(big.as_bytes(), &limits).err(),
            Some(Failure::FieldTooLarge)
        );
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        let r = req(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"));
        assert_eq!(r.err(), Some(Failure::FieldTooLarge));
    }

    #[test]
    fn framing_of_responses() {
        let p = |s: &str, head| parse_response(s.as_bytes(), head, 16384).unwrap().unwrap();
        let r = p("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::Length(2), true));
        let r = p("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true);
        assert_eq!((r.framing, r.keep_alive), (Framing::Empty, true));
        let r = p("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::Close, false));
        let r = p(
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Empty, false));
        let r = p(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, false));
        assert_eq!(r.fields.length, None);
        assert!(r.fields.get("content-length").is_none());
        let r = p("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false);
        assert!(!r.keep_alive);
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n",
        ] {
            assert!(
                parse_response(bad.as_bytes(), false, 16384).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn answers_keep_their_end_to_end_fields_raw() {
        let p = |s: &str| parse_response(s.as_bytes(), false, 16384).unwrap().unwrap();
        let r = p("HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive, X-Secret\r\n\
                   x-secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\
                   Proxy-Connection: close\r\nUpgrade: h2c\r\nTE: trailers, deflate\r\n\
                   Set-Cookie: a=1\r\nDATE:Sat, 11 May 2024 10:21:09 GMT\r\nset-cookie: b=2\r\n\r\nok");
        assert_eq!(
            String::from_utf8_lossy(r.fields.lines()),
            "Server: x\r\nTE: trailers\r\nSet-Cookie: a=1\r\n\
             DATE: Sat, 11 May 2024 10:21:09 GMT\r\nset-cookie: b=2\r\n"
        );
        assert_eq!((r.fields.length, r.fields.date), (Some(2), true));
        assert_eq!(r.fields.get("set-cookie"), Some(&b"a=1"[..]));
        assert_eq!(
            r.fields.get("date"),
            Some(&b"Sat, 11 May 2024 10:21:09 GMT"[..])
        );
        let mut map = HeaderMap::new();
        map.insert("server", HeaderValue::from_static("ours"));
        r.fields.into_map(&mut map);
        assert_eq!(map["server"], "ours");
        assert_eq!(map.get_all("set-cookie").iter().count(), 2);
        assert_eq!(map["content-length"], "2");
        assert!(map.get("x-secret").is_none());

        // A 101 keeps what the client needs to finish its handshake; Connection may not
        // take away Host or Content-Length.
        let r = p(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, host\r\n\
                   Upgrade: websocket\r\nHost: a\r\n\r\n",
        );
        assert_eq!(
            String::from_utf8_lossy(r.fields.lines()),
            "Connection: Upgrade, host\r\nUpgrade: websocket\r\nHost: a\r\n"
        );
        assert!(!r.fields.date);
    }

    #[test]
    fn writes_heads() {
        let r = req("POST /a?b HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts);
        assert_eq!(out, b"POST /a?b HTTP/1.1\r\nhost: a\r\nx-y: z\r\n\r\n");
        let r = req("GET http://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts);
        assert!(out.starts_with(b"GET /?x=1 HTTP/1.1\r\n"), "{out:?}");
        let mut out = Vec::new();
        write_status(&mut out, StatusCode::NOT_FOUND);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    }
}
