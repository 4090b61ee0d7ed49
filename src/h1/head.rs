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

use crate::config::Limits;
use crate::proxy::error::Failure;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use std::mem::MaybeUninit;

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

/// `name: value` lines, each ended by CRLF, read as (name, value) pairs.
#[derive(Clone)]
pub struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let end = memchr::memchr(b'\n', self.0)?;
        let line = &self.0[..end.saturating_sub(1)];
        self.0 = &self.0[end + 1..];
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        Some((&line[..colon], line.get(colon + 2..).unwrap_or_default()))
    }
}

/// Appends a `name: value` line.
pub fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies field lines out of a head's read buffer, a run of lines at a time: a line
/// that is in the buffer as it is written (`name: value` CRLF: one space, no trailing
/// whitespace, a CRLF ending) joins the run before it when they touch, and any other is
/// written with [`line`]. A client's head, nearly always written that way, is one copy.
struct Runs<'b> {
    buf: &'b [u8],
    /// The run not yet copied: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<'b> Runs<'b> {
    fn new(buf: &'b [u8]) -> Self {
        Runs {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// Where `part` (a slice of the buffer, as httparse gives them) starts in it.
    #[inline]
    fn offset(&self, part: &[u8]) -> Option<usize> {
        // One comparison: a part before the buffer wraps to a huge offset.
        let at = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        (at <= self.buf.len() && part.len() <= self.buf.len() - at).then_some(at)
    }

    /// Bytes of the run not yet copied.
    fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Adds the line `name: value`.
    fn push(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        if let (Some(n), Some(v)) = (self.offset(name), self.offset(value)) {
            let end = v + value.len();
            if v == n + name.len() + 2
                && self.buf.get(v - 2..v) == Some(b": ")
                && self.buf.get(end..end + 2) == Some(b"\r\n")
            {
                if n != self.end {
                    self.flush(out);
                    self.start = n;
                }
                self.end = end + 2;
                return;
            }
        }
        self.flush(out);
        line(out, name, value);
    }

    /// Copies the run.
    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.start..self.end]);
        self.start = self.end;
    }
}

/// An answer's end-to-end fields, ready for an HTTP/1.x client: `name: value` lines
/// in the upstream's order and spelling, each ended by CRLF, with the hop-by-hop
/// fields cut (RFC 9110 §7.6.1: `Connection`, what it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Upgrade` but on a `101`, `TE` but
/// `trailers`) and `Content-Length` kept aside, since the writer frames the body.
///
/// The lines are copied once, from the upstream's read buffer into a pooled one, and
/// written out from there. What needs a map (an h2 client, the stale cache,
/// `Retry-After`) makes one with [`RawFields::into_map`].
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
    pub fn iter(&self) -> Lines<'_> {
        Lines(&self.lines)
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

/// A request's fields as the client sent them: `name: value` lines (each ended by
/// CRLF, in the client's order and spelling) in a pooled buffer. The pipeline reads
/// them through `proxy::head::Head`; [`write_request`] writes the upstream's head from
/// them, cutting the hop-by-hop fields and adding the forwarding ones on the way (what
/// `proxy::forward` does to a map for h2).
pub struct RawRequest {
    lines: Vec<u8>,
    /// The known names ([`Name`]) among the lines, one bit each: a name not there is
    /// not looked for, and a head with none of [`REWRITTEN`] goes upstream as it came.
    seen: u16,
    /// Where the first `Host` value is in `lines`, and how many `Host` lines there are.
    host_at: (u32, u32),
    hosts: u32,
    /// The `Content-Length` (at most one, `1*DIGIT`, checked by the parse).
    pub length: Option<u64>,
    /// A `Host` the pipeline set (the target's authority wins over the client's).
    host: Option<HeaderValue>,
    /// The body goes upstream chunked (set by `proxy::forward::prepare`).
    pub chunked: bool,
}

impl RawRequest {
    /// Each line's name and value, as received (a `Host` set since is not among them).
    pub fn iter(&self) -> Lines<'_> {
        Lines(&self.lines)
    }

    /// Whether a line of `name` may be there: false only for a known [`Name`] the
    /// parse did not see.
    fn may_have(&self, name: &[u8]) -> bool {
        match Name::of(name) {
            Name::Other => true,
            n => self.seen & n.bit() != 0,
        }
    }

    /// The values of field `name` (lower case), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> Values<'a, 'n> {
        let host = name == "host";
        let set = host && self.host.is_some();
        Values {
            lines: if set || !self.may_have(name.as_bytes()) {
                Lines(&[])
            } else {
                self.iter()
            },
            name: name.as_bytes(),
            only: self
                .host
                .as_ref()
                .filter(|_| host)
                .map(HeaderValue::as_bytes),
            set,
        }
    }

    /// The first value of field `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        if name == "host" {
            return self.host();
        }
        if !self.may_have(name.as_bytes()) {
            return None;
        }
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The `Host` the upstream gets: the pipeline's, else the client's first.
    pub fn host(&self) -> Option<&[u8]> {
        match &self.host {
            Some(h) => Some(h.as_bytes()),
            None if self.hosts > 0 => {
                let (at, len) = self.host_at;
                self.lines.get(at as usize..(at + len) as usize)
            }
            None => None,
        }
    }

    /// How many `Host` lines the client sent, and the first one's value.
    pub fn client_hosts(&self) -> (u32, Option<&[u8]>) {
        let (at, len) = self.host_at;
        let first = (self.hosts > 0)
            .then(|| self.lines.get(at as usize..(at + len) as usize))
            .flatten();
        (self.hosts, first)
    }

    /// Replaces the client's `Host` (see `proxy::conform`).
    pub fn set_host(&mut self, v: HeaderValue) {
        self.host = Some(v);
    }

    /// The fields as a header map (for hyper's h2 side and the fallback ladder).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.iter().count() + 3);
        for (n, v) in self.iter() {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        }
        if let Some(h) = &self.host {
            map.insert(http::header::HOST, h.clone());
        }
        map
    }
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        super::buf::give(std::mem::take(&mut self.lines));
    }
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest")
            .field("lines", &String::from_utf8_lossy(&self.lines))
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The values of one field of a [`RawRequest`]; see [`RawRequest::values`].
pub struct Values<'a, 'n> {
    lines: Lines<'a>,
    name: &'n [u8],
    /// A `Host` set by the pipeline: the only value.
    only: Option<&'a [u8]>,
    set: bool,
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.set {
            return self.only.take();
        }
        let name = self.name;
        self.lines
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// What the upstream's head says about the client (`x-forwarded-*`).
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The client's address, as text.
    pub client_ip: &'a [u8],
    /// Whether the client came over TLS.
    pub tls: bool,
}

/// Headers on the stack per parse; a configured `max_request_headers` above it parses
/// into the heap.
const STACK_HEADERS: usize = 100;

/// Parses a request head at the start of `buf`; `Ok(None)` if it is not complete yet.
/// A head that can no longer fit `limits.max_request_head` is an error (431).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, Failure> {
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
    let uri = if path == "/" {
        Ok(Uri::from_static("/"))
    } else if path.as_bytes().first() == Some(&b'/') || path.contains("://") {
        Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
    } else {
        path.parse()
    }
    .map_err(|_| Failure::BadRequest)?;

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
            return Err(Failure::FieldTooLarge);
        }
        let name = Name::of(h.name.as_bytes());
        fields.seen |= name.bit();
        f.read(name, h.value)
            .map_err(|_: &'static str| Failure::BadRequest)?;
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
        return Err(Failure::BadRequest);
    }
    let framing = if f.te {
        if f.length.is_some() || !http11 {
            return Err(Failure::BadRequest);
        }
        crate::proxy::conform::transfer_codings(
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
        crate::proxy::conform::transfer_codings(
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

/// The field names the engine acts on, told apart by length first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection`.
    ProxyConnection,
    /// `Upgrade`.
    Upgrade,
    /// `TE`.
    Te,
    /// `Date`.
    Date,
    /// `Host`.
    Host,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
    /// `X-Forwarded-Host`.
    ForwardedHost,
    /// Any other.
    Other,
}

impl Name {
    /// The name `n` is, in any case.
    pub fn of(n: &[u8]) -> Name {
        match n.len() {
            2 if lower_eq(n, b"te") => Name::Te,
            4 if lower_eq(n, b"host") => Name::Host,
            4 if lower_eq(n, b"date") => Name::Date,
            6 if lower_eq(n, b"expect") => Name::Expect,
            7 if lower_eq(n, b"upgrade") => Name::Upgrade,
            10 if lower_eq(n, b"connection") => Name::Connection,
            10 if lower_eq(n, b"keep-alive") => Name::KeepAlive,
            14 if lower_eq(n, b"content-length") => Name::ContentLength,
            15 if lower_eq(n, b"x-forwarded-for") => Name::ForwardedFor,
            16 if lower_eq(n, b"proxy-connection") => Name::ProxyConnection,
            16 if lower_eq(n, b"x-forwarded-host") => Name::ForwardedHost,
            17 if lower_eq(n, b"transfer-encoding") => Name::TransferEncoding,
            17 if lower_eq(n, b"x-forwarded-proto") => Name::ForwardedProto,
            _ => Name::Other,
        }
    }

    /// This name's bit in a set of names (see [`RawRequest`]'s).
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The names whose lines a rewrite for the next hop cuts or changes: a head without
/// any of them goes on as it came.
const REWRITTEN: u16 = Name::ContentLength.bit()
    | Name::TransferEncoding.bit()
    | Name::Connection.bit()
    | Name::KeepAlive.bit()
    | Name::ProxyConnection.bit()
    | Name::Upgrade.bit()
    | Name::Te.bit()
    | Name::ForwardedFor.bit()
    | Name::ForwardedProto.bit()
    | Name::ForwardedHost.bit();

/// Whether `n` is `lower` in any case; `lower` is of the same length, lower-case letters
/// and `-` (a known field name). Eight bytes at a time: a letter of `n` OR 0x20 is its
/// lower case, and other bytes are compared as they are.
#[inline(always)]
fn lower_eq(n: &[u8], lower: &[u8]) -> bool {
    let len = lower.len();
    if n.len() != len {
        return false;
    }
    let word = |b: &[u8], at: usize| {
        let mut w = [0u8; 8];
        let end = (at + 8).min(b.len());
        w[..end - at].copy_from_slice(&b[at..end]);
        u64::from_le_bytes(w)
    };
    let mask = |at: usize| {
        let mut w = [0u8; 8];
        for (m, &c) in w.iter_mut().zip(&lower[at..]) {
            *m = if c.is_ascii_lowercase() { 0x20 } else { 0 };
        }
        u64::from_le_bytes(w)
    };
    let mut at = 0;
    loop {
        // The last word of a name of 8 or more bytes overlaps the one before.
        let from = if len >= 8 && at + 8 > len {
            len - 8
        } else {
            at
        };
        if word(n, from) | mask(from) != word(lower, from) {
            return false;
        }
        at += 8;
        if at >= len {
            return true;
        }
    }
}

/// Calls `emit` with each end-to-end field of `fields` (each with its [`Name`]), in
/// order: the hop-by-hop ones are cut (see [`RawFields`]; the same rules as
/// `proxy::forward::strip_hop_headers` for a map), and the first `TE` that lists
/// `trailers` is emitted as `trailers`. `seen`: the names among the fields, one bit
/// each. `upgrade`: the message is a `101` or an Upgrade request, whose `Connection`
/// and `Upgrade` go on.
pub fn end_to_end<'a, I>(
    fields: I,
    seen: u16,
    upgrade: bool,
    mut emit: impl FnMut(Name, &'a [u8], &'a [u8]),
) where
    I: Iterator<Item = (Name, &'a [u8], &'a [u8])> + Clone,
{
    // The names the Connection fields list, but for what routing and framing rest on
    // and those cut anyway (a few on the stack; a message listing more is scanned
    // whole for each name).
    let mut listed: [&[u8]; 8] = [&[]; 8];
    let mut n_listed = 0;
    if seen & Name::Connection.bit() != 0 {
        for (_, _, v) in fields.clone().filter(|(k, _, _)| *k == Name::Connection) {
            for t in tokens(v) {
                // `keep-alive` names a field cut anyway.
                let kept = match Name::of(t) {
                    Name::Host | Name::ContentLength | Name::KeepAlive => true,
                    Name::Upgrade => upgrade,
                    _ => t.is_empty() || t.eq_ignore_ascii_case(b"close"),
                };
                if !kept {
                    if let Some(slot) = listed.get_mut(n_listed) {
                        *slot = t;
                    }
                    n_listed += 1;
                }
            }
        }
    }
    // Whether a Connection field names field `name` of kind `kind`.
    let named = |kind: Name, name: &[u8]| {
        if n_listed <= listed.len() {
            listed[..n_listed]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name))
        } else {
            let kept = match kind {
                Name::Host | Name::ContentLength => true,
                Name::Upgrade => upgrade,
                _ => name.eq_ignore_ascii_case(b"close"),
            };
            !kept
                && fields
                    .clone()
                    .filter(|(k, _, _)| *k == Name::Connection)
                    .any(|(_, _, v)| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
        }
    };
    let mut te = false;
    for (name, n, v) in fields.clone() {
        let v = match name {
            Name::TransferEncoding | Name::KeepAlive | Name::ProxyConnection => continue,
            Name::Connection | Name::Upgrade if !upgrade => continue,
            Name::Te => {
                // Only `trailers` goes on (gRPC needs it), once.
                if te || !tokens(v).any(|t| t.eq_ignore_ascii_case(b"trailers")) {
                    continue;
                }
                te = true;
                &b"trailers"[..]
            }
            _ => v,
        };
        if n_listed > 0 && named(name, n) {
            continue;
        }
        emit(name, n, v);
    }
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

/// The comma-separated elements of a field value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Writes a request head for an upstream: request line with the origin-form target,
/// then the fields: from `raw` when the own engine read the request, rewritten here
/// (hop-by-hop fields cut, `Host` as the pipeline set it, `Content-Length` as the
/// number read, `x-forwarded-*` from `fwd`, `Transfer-Encoding: chunked` when the body
/// goes chunked); else `parts`' map, which `proxy::forward` rewrote already.
pub fn write_request(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    raw: Option<&RawRequest>,
    fwd: Forwarding<'_>,
) {
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
    match raw {
        Some(r) => write_raw_fields(out, r, fwd),
        None => write_fields(out, &parts.headers),
    }
    out.extend_from_slice(b"\r\n");
}

/// The fields of a request the own engine read, rewritten for the upstream (see
/// [`write_request`]).
fn write_raw_fields(out: &mut Vec<u8>, r: &RawRequest, fwd: Forwarding<'_>) {
    let host = r.host();
    let mut forwarded = false;
    if r.seen & REWRITTEN == 0 && r.host.is_none() {
        // Nothing to cut or change: the lines go as they came.
        out.extend_from_slice(&r.lines);
    } else {
        // The lines are as they are written: kept ones go in runs.
        let mut runs = Runs::new(&r.lines);
        let fields = r.iter().map(|(n, v)| (Name::of(n), n, v));
        end_to_end(fields, r.seen, false, |name, n, v| match name {
            Name::ContentLength | Name::ForwardedProto => {}
            Name::ForwardedFor => forwarded = true,
            Name::Host if r.host.is_some() => {}
            Name::ForwardedHost if host.is_some() => {}
            _ => runs.push(out, n, v),
        });
        runs.flush(out);
    }
    if let Some(h) = &r.host {
        line(out, b"host", h.as_bytes());
    }
    if let Some(n) = r.length {
        let mut b = [0; 20];
        line(out, b"content-length", fmt_u64(&mut b, n));
    }
    // The client joins the chain; several lines become one.
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded {
        for v in r.values("x-forwarded-for") {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(fwd.client_ip);
    out.extend_from_slice(b"\r\n");
    line(
        out,
        b"x-forwarded-proto",
        if fwd.tls { b"https" } else { b"http" },
    );
    if let Some(h) = host {
        line(out, b"x-forwarded-host", h);
    }
    if r.chunked {
        line(out, b"transfer-encoding", b"chunked");
    }
}

/// `n` in decimal, in `b`.
pub fn fmt_u64(b: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &b[i..]
}

/// Writes `name: value` lines.
pub fn write_fields(out: &mut Vec<u8>, h: &HeaderMap) {
    for (name, value) in h {
        line(out, name.as_str().as_bytes(), value.as_bytes());
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
    fn known_names_in_any_case_and_nothing_else() {
        let known = [
            ("te", Name::Te),
            ("host", Name::Host),
            ("date", Name::Date),
            ("expect", Name::Expect),
            ("upgrade", Name::Upgrade),
            ("connection", Name::Connection),
            ("keep-alive", Name::KeepAlive),
            ("content-length", Name::ContentLength),
            ("x-forwarded-for", Name::ForwardedFor),
            ("proxy-connection", Name::ProxyConnection),
            ("x-forwarded-host", Name::ForwardedHost),
            ("transfer-encoding", Name::TransferEncoding),
            ("x-forwarded-proto", Name::ForwardedProto),
        ];
        for (n, name) in known {
            assert_eq!(Name::of(n.as_bytes()), name, "{n}");
            assert_eq!(Name::of(n.to_ascii_uppercase().as_bytes()), name, "{n}");
            for i in 0..n.len() {
                // One letter in the other case: the same name.
                let mut b = n.as_bytes().to_vec();
                b[i] = b[i].to_ascii_uppercase();
                assert_eq!(Name::of(&b), name, "{n} {i}");
                // One byte changed to any other token byte (or CR): another name.
                for c in (0u8..128).filter(|c| c.is_ascii_graphic() || *c == b'\r') {
                    if c.eq_ignore_ascii_case(&n.as_bytes()[i]) {
                        continue;
                    }
                    b[i] = c;
                    assert_eq!(
                        Name::of(&b),
                        Name::Other,
                        "{:?}",
                        String::from_utf8_lossy(&b)
                    );
                }
            }
            // Longer or shorter: another name.
            assert_eq!(Name::of(format!("{n}s").as_bytes()), Name::Other);
            assert_eq!(Name::of(&n.as_bytes()[1..]), Name::Other);
        }
        assert_eq!(Name::of(b""), Name::Other);
    }

    #[test]
    fn lines_are_copied_as_written_whatever_the_spacing() {
        // Lines written otherwise than `name: value` CRLF are written that way; the
        // rest are copied in runs, and the first Host is found where it lands.
        let r = req(
            "GET / HTTP/1.1\r\nX-A:1\r\nX-B:  2 \t\r\nHost:   h.example  \r\n\
                     X-C: 3\r\nX-D: 4\nhost: second\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.fields.lines),
            "X-A: 1\r\nX-B: 2\r\nHost: h.example\r\nX-C: 3\r\nX-D: 4\r\nhost: second\r\n"
        );
        assert_eq!(r.fields.host(), Some(&b"h.example"[..]));
        assert_eq!(r.fields.client_hosts(), (2, Some(&b"h.example"[..])));
        let r = req("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.fields.lines),
            "Host: a\r\nAccept: */*\r\n"
        );
        // A known name that is not there is not looked for; an unknown one is.
        assert_eq!(r.fields.get("connection"), None);
        assert_eq!(r.fields.values("upgrade").count(), 0);
        assert_eq!(r.fields.get("accept"), Some(&b"*/*"[..]));
        let r = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (r.fields.host(), r.fields.client_hosts()),
            (None, (0, None))
        );
    }

    #[test]
    fn a_connection_field_naming_many_fields_cuts_them_all() {
        // More names than the list on the stack holds: each field is looked up in the
        // Connection fields themselves.
        let names: Vec<String> = (0..12).map(|i| format!("x-h{i}")).collect();
        let lines: String = names.iter().map(|n| format!("{n}: 1\r\n")).collect();
        let s = format!(
            "HTTP/1.1 200 OK\r\nConnection: {}, close, content-length\r\n{lines}\
             X-Kept: 1\r\nContent-Length: 0\r\nClose: 1\r\n\r\n",
            names.join(", ")
        );
        let r = parse_response(s.as_bytes(), false, 16384).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(r.fields.lines()),
            "X-Kept: 1\r\nClose: 1\r\n"
        );
        assert_eq!(r.fields.length, Some(0));
    }

    #[test]
    fn formats_numbers() {
        let mut b = [0; 20];
        assert_eq!(fmt_u64(&mut b, 0), b"0");
        let mut b = [0; 20];
        assert_eq!(fmt_u64(&mut b, u64::MAX), b"18446744073709551615");
    }

    #[test]
    fn writes_heads() {
        let fwd = Forwarding {
            client_ip: b"10.0.0.9",
            tls: false,
        };
        let r = req("POST /a?b HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /a?b HTTP/1.1\r\nHost: a\r\nX-Y: z\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: a\r\n\r\n"
        );
        let r = req("GET http://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert!(out.starts_with(b"GET /?x=1 HTTP/1.1\r\n"), "{out:?}");
        let mut out = Vec::new();
        write_status(&mut out, StatusCode::NOT_FOUND);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    }

    #[test]
    fn the_upstream_head_is_rewritten_as_it_is_written() {
        let mut r = req(
            "PUT /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\n\
                         X-Hop: 1\r\nX-Forwarded-For: 1.1.1.1\r\nKeep-Alive: 5\r\n\
                         x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: gopher\r\n\
                         X-Forwarded-Host: evil\r\nContent-Length: 007\r\nTE: trailers\r\n\
                         Proxy-Connection: x\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.fields.get("x-forwarded-for"), Some(&b"1.1.1.1"[..]));
        assert_eq!(r.fields.values("x-forwarded-for").count(), 2);
        r.fields.set_host(HeaderValue::from_static("b.example"));
        assert_eq!(r.fields.get("host"), Some(&b"b.example"[..]));
        assert_eq!(r.fields.values("host").collect::<Vec<_>>(), [b"b.example"]);
        let mut out = Vec::new();
        let fwd = Forwarding {
            client_ip: b"10.0.0.9",
            tls: true,
        };
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "PUT /x HTTP/1.1\r\nTE: trailers\r\nAccept: */*\r\nhost: b.example\r\n\
             content-length: 7\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: b.example\r\n\r\n"
        );
        // A body of unknown length goes chunked; the client's coding line does not.
        let mut r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        r.fields.chunked = true;
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: a\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        // The map made for h2 and the ladder holds every field as received.
        let map = r.fields.to_map();
        assert_eq!(map["transfer-encoding"], "chunked");
        assert_eq!(map["host"], "a");
    }
}
