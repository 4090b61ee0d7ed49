//! Parsing a request or response head with `httparse` and deciding its body's framing
//! by RFC 9112's rules.
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
//! No header map is built on this path (issue 11: building one, hashing its names and
//! counting references to its values was a fifth of the engine's user time). A head's
//! fields are copied once, as `name: value` lines, into a pooled buffer
//! ([`RawRequest`], [`RawFields`]); the pipeline reads them there, and the head for the
//! next hop is written from them with the hop-by-hop fields cut on the way. What needs
//! a map (hyper's h2 side, the fallback ladder's cache) makes one from the lines.
//!
//! Each field's name is classified once per head ([`Name`], eight bytes at a time), and
//! lines the client or upstream already wrote as `name: value` CRLF are copied as runs
//! of the read buffer, not line by line.

use super::fields::{end_to_end, tokens, Name, RawFields, RawRequest, Runs};
use crate::config::Limits;
use bytes::Bytes;
use http::{Method, StatusCode, Uri, Version};
use std::mem::MaybeUninit;

/// Why a request head is refused before anything reads it. The engine says only
/// what is wrong; the connection driver answers it (`message::Failure` holds the
/// status, reason and body of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, or framed ambiguously (400).
    BadRequest,
    /// The request target is longer than `limits.max_uri` (414).
    UriTooLong,
    /// A field, or the whole head, is over its limit (431).
    FieldTooLarge,
    /// A transfer coding other than `chunked` (501).
    UnsupportedCoding,
}

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
    /// Method, target and version, as the pipeline takes them; the header map is empty
    /// (the fields are in `fields`).
    pub parts: http::request::Parts,
    /// The fields, as the client sent them.
    pub fields: RawRequest,
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

/// Headers on the stack per parse; a configured `max_request_headers` above it parses
/// into the heap.
const STACK_HEADERS: usize = 100;

/// Parses a request head at the start of `buf`; `Ok(None)` if it is not complete yet.
/// A head that can no longer fit `limits.max_request_head` is an error (431).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, Refusal> {
    let max = limits.max_request_headers;
    // Slots left uninitialised: httparse writes the ones it fills (zeroing a hundred
    // slots for every head cost more than parsing a short one).
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if max <= STACK_HEADERS {
        &mut stack[..max]
    } else {
        heap = vec![MaybeUninit::uninit(); max];
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_request_head {
                return Err(too_large(req.path, limits));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::FieldTooLarge),
        Err(_) => return Err(Refusal::BadRequest),
    };
    if len > limits.max_request_head {
        return Err(too_large(req.path, limits));
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::BadRequest);
    };
    if path.len() > limits.max_uri {
        return Err(Refusal::UriTooLong);
    }
    let http11 = version == 1;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::BadRequest)?;
    let uri = if path == "/" {
        Ok(Uri::from_static("/"))
    } else if path.as_bytes().first() == Some(&b'/') || path.contains("://") {
        Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
    } else {
        path.parse()
    }
    .map_err(|_| Refusal::BadRequest)?;

    let raw = &*req.headers;
    let mut fields = RawRequest {
        lines: super::buf::take_head(len),
        seen: 0,
        host_at: (0, 0),
        hosts: 0,
        length: None,
        host: None,
        chunked: false,
    };
    let mut f = Fields::default();
    let mut runs = Runs::new(buf);
    for h in raw {
        if h.name.len() + 2 + h.value.len() > limits.max_request_field {
            return Err(Refusal::FieldTooLarge);
        }
        let name = Name::of(h.name.as_bytes());
        fields.seen |= name.bit();
        f.read(name, h.value)
            .map_err(|_: &'static str| Refusal::BadRequest)?;
        if name == Name::Host {
            if fields.hosts == 0 {
                // Where the value will be once the line is in.
                let at = fields.lines.len() + runs.pending() + h.name.len() + 2;
                fields.host_at = (at as u32, h.value.len() as u32);
            }
            fields.hosts += 1;
        }
        runs.push(&mut fields.lines, h.name.as_bytes(), h.value);
    }
    runs.flush(&mut fields.lines);
    if f.lengths > 1 {
        return Err(Refusal::BadRequest);
    }
    let framing = if f.te {
        if f.length.is_some() || !http11 {
            return Err(Refusal::BadRequest);
        }
        transfer_codings(
            fields
                .iter()
                .filter(|(n, _)| Name::of(n) == Name::TransferEncoding)
                .map(|(_, v)| v),
        )?;
        Framing::Chunked
    } else {
        match f.length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    fields.length = f.length;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    Ok(Some(RequestHead {
        parts,
        fields,
        framing,
        keep_alive: if http11 { !f.close } else { f.keep && !f.close },
        expect_continue: f.expect_continue && http11,
        len,
    }))
}

/// Whether the bytes of a head that was refused start as a HEAD request, so that the
/// refusal is written without a body. Empty lines before the request line are skipped,
/// as the parser skips them (RFC 9112 §2.2).
pub fn starts_as_head(mut buf: &[u8]) -> bool {
    loop {
        match buf {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => buf = rest,
            _ => return buf.starts_with(b"HEAD "),
        }
    }
}

/// A head over its limit: 414 when the request line alone is too long (nginx's
/// answer), else 431.
fn too_large(path: Option<&str>, limits: &Limits) -> Refusal {
    match path {
        Some(p) if p.len() > limits.max_uri => Refusal::UriTooLong,
        _ => Refusal::FieldTooLarge,
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
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
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
    let raw = &*resp.headers;
    let mut f = Fields::default();
    let mut names = [Name::Other; STACK_HEADERS];
    let mut seen = 0;
    for (h, name) in raw.iter().zip(&mut names) {
        *name = Name::of(h.name.as_bytes());
        seen |= name.bit();
        f.read(*name, h.value)?;
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
        transfer_codings(
            raw.iter()
                .zip(&names)
                .filter(|(_, &n)| n == Name::TransferEncoding)
                .map(|(h, _)| h.value),
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
    // A 101 keeps Connection and Upgrade: the client needs them to finish its handshake.
    let mut fields = RawFields {
        lines: super::buf::take_head(len),
        length,
        date: false,
    };
    let mut runs = Runs::new(buf);
    let fields_in = names
        .iter()
        .zip(raw)
        .map(|(&k, h)| (k, h.name.as_bytes(), h.value));
    end_to_end(fields_in, seen, code == 101, |name, n, v| {
        if name != Name::ContentLength {
            fields.date |= name == Name::Date;
            runs.push(&mut fields.lines, n, v);
        }
    });
    runs.flush(&mut fields.lines);
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

/// What a head's fields say about its framing and its connection.
#[derive(Default)]
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

impl Fields {
    /// Takes in one field, `name` with `value`; an invalid `Content-Length` is an error.
    fn read(&mut self, name: Name, value: &[u8]) -> Result<(), &'static str> {
        match name {
            Name::ContentLength => {
                self.lengths += 1;
                self.length = Some(content_length(value).ok_or("invalid Content-Length")?);
            }
            Name::TransferEncoding => self.te = true,
            Name::Connection => {
                for t in tokens(value) {
                    self.close |= t.eq_ignore_ascii_case(b"close");
                    self.keep |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Name::Expect => self.expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
        Ok(())
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

/// `Transfer-Encoding` must be exactly one `chunked`, in any case: another coding is
/// 501 (`UnsupportedCoding`), a repeated or empty one 400. `values` are the field's
/// values; the pipeline applies the same rule to a head hyper read
/// (`proxy::conform`).
pub fn transfer_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), Refusal> {
    let mut chunked = 0;
    for v in values {
        for t in v.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else if t.is_empty() {
                return Err(Refusal::BadRequest);
            } else {
                return Err(Refusal::UnsupportedCoding);
            }
        }
    }
    if chunked == 1 {
        Ok(())
    } else {
        Err(Refusal::BadRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HeaderValue};

    fn req(s: &str) -> Result<Option<RequestHead>, Refusal> {
        parse_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn a_refused_head_request_is_known_after_empty_lines() {
        assert!(starts_as_head(b"HEAD / HTTP/1.1\r\nBad Header\r\n\r\n"));
        // The fuzz target `request_path` found the refusal of this one with a body.
        assert!(starts_as_head(b"\r\n\nHEAD GET /p2 HTTP/;a\n"));
        assert!(!starts_as_head(b"\r\rHEAD / HTTP/1.1\r\n"));
        assert!(!starts_as_head(b"GET / HTTP/1.1\r\n"));
        assert!(!starts_as_head(b"\r\n"));
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
                Refusal::BadRequest,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                Refusal::BadRequest,
            ),
            ("Content-Length: +5", Refusal::BadRequest),
            ("Content-Length: -5", Refusal::BadRequest),
            ("Content-Length: 5,5", Refusal::BadRequest),
            ("Content-Length:", Refusal::BadRequest),
            ("Content-Length: 99999999999999999999", Refusal::BadRequest),
            ("Content-Length: 07766279631452241918", Refusal::BadRequest),
            (
                "Transfer-Encoding: gzip, chunked",
                Refusal::UnsupportedCoding,
            ),
            ("Transfer-Encoding: chunked, chunked", Refusal::BadRequest),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Refusal::BadRequest,
            ),
            ("Transfer-Encoding: ,chunked", Refusal::BadRequest),
            (": x", Refusal::BadRequest),
            ("Host : a", Refusal::BadRequest),
            ("X: a\r\n b", Refusal::BadRequest),
        ] {
            let r = req(&format!("POST / HTTP/1.1\r\nHost: a\r\n{head}\r\n\r\n"));
            assert_eq!(r.err(), Some(f), "{head:?}");
        }
        let r = req("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.err(), Some(Refusal::BadRequest));
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
            Some(Refusal::UriTooLong)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(
            parse_request(big.as_bytes(), &limits).err(),
            Some(Refusal::FieldTooLarge)
        );
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        let r = req(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"));
        assert_eq!(r.err(), Some(Refusal::FieldTooLarge));
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
}
