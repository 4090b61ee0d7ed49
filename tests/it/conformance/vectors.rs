//! The conformance vectors: exact request bytes (HTTP/1.1 or an h2c prior-knowledge
//! stream), optionally the exact bytes a hostile upstream answers with, and what ninefold
//! is meant to do with them.
//!
//! Data only, so that the fuzz target can `#[path]`-include this file to seed its corpus:
//! nothing but `std`. Each vector is written out byte for byte rather than produced by a
//! client library, because the point is the bytes no well-behaved client would send.
//! h2c frames and HPACK blocks are built by hand (literal fields without indexing, no
//! Huffman) for the same reason: it lets a value carry CR/LF or a bad content-length.

#![allow(dead_code)]

/// One request (or request stream) and, optionally, the upstream's raw answer.
pub struct Vector {
    pub name: &'static str,
    pub category: &'static str,
    pub request: Vec<u8>,
    /// Raw answer the backend sends; `None` is a plain `200 OK` with Content-Length.
    pub upstream: Option<Vec<u8>>,
    /// `request` is an h2c prior-knowledge stream (stream 1 carries the request).
    pub h2: bool,
    /// What ninefold is meant to do.
    pub expect: Expect,
    /// Further assertions on what ninefold forwards or answers.
    pub checks: Vec<Check>,
}

/// The intended outcome of a vector for ninefold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Only the suite's general rules apply (no forwarded ambiguity, not laxer than both
    /// anchors).
    Observe,
    /// Refused with one of these statuses, and the backend receives nothing. An empty list
    /// accepts any refusal: an error status, a stream reset, a GOAWAY or a close.
    Reject(&'static [u16]),
    /// Refused with a 4xx, never a 502; the backend may have seen the head (request bodies
    /// stream, so a bad chunk can only be found after forwarding started).
    ClientError,
    /// Forwarded: the backend receives every request and the client gets every answer.
    Forward,
    /// Either forwarded intact (as `Forward`) or refused with a 4xx; never a 5xx. For
    /// bytes a lenient parser may repair but the gateway must never blame on the upstream.
    ForwardOr4xx,
    /// The upstream's answer is refused: 502 with `x-ninefold-reason: upstream-error`.
    BadGateway,
    /// The upstream's final answer reaches the client with this status and decoded body.
    Relay(u16, &'static [u8]),
}

/// An extra assertion about one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The forwarded request carries this field with this value; `None`: it is absent.
    UpstreamHeader(&'static str, Option<&'static str>),
    /// The forwarded request line's target.
    UpstreamTarget(&'static str),
    /// The forwarded request body is framed chunked.
    UpstreamChunked,
    /// The client's final answer has no field of this name.
    ClientLacks(&'static str),
    /// The client gets exactly this many `100 Continue` answers before the final one.
    Continues(usize),
    /// The client gets this interim (1xx) answer before the final one.
    Interim(u16),
    /// A known gap: print what happened, assert nothing more than `expect`.
    KnownGap(&'static str),
}

/// A plain request head with `Host: a.example`, the given extra lines, and a body.
fn h1(method: &str, path: &str, lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut v = format!("{method} {path} HTTP/1.1\r\nHost: a.example\r\n").into_bytes();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(body);
    v
}

/// Raw bytes, for heads that `h1` cannot express.
fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A POST with a chunked body whose chunk lines are `chunks` verbatim.
fn chunked(chunks: &[u8]) -> Vec<u8> {
    h1("POST", "/c", &["Transfer-Encoding: chunked"], chunks)
}

fn v(name: &'static str, category: &'static str, request: Vec<u8>, expect: Expect) -> Vector {
    Vector {
        name,
        category,
        request,
        upstream: None,
        h2: false,
        expect,
        checks: Vec::new(),
    }
}

fn up(name: &'static str, answer: Vec<u8>, expect: Expect) -> Vector {
    Vector {
        name,
        category: "upstream",
        request: h1("GET", "/u", &[], b""),
        upstream: Some(answer),
        h2: false,
        expect,
        checks: Vec::new(),
    }
}

fn h2v(
    name: &'static str,
    fields: &[(&str, &[u8])],
    body: Option<&[u8]>,
    expect: Expect,
) -> Vector {
    Vector {
        name,
        category: "h2c",
        request: h2_request(fields, body),
        upstream: None,
        h2: true,
        expect,
        checks: Vec::new(),
    }
}

impl Vector {
    fn with(mut self, c: Check) -> Vector {
        self.checks.push(c);
        self
    }

    fn upstream(mut self, answer: &[u8]) -> Vector {
        self.upstream = Some(answer.to_vec());
        self
    }
}

// === h2c by hand ===

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const H2_DATA: u8 = 0;
pub const H2_HEADERS: u8 = 1;
pub const H2_RST_STREAM: u8 = 3;
pub const H2_SETTINGS: u8 = 4;
pub const H2_GOAWAY: u8 = 7;
pub const H2_END_STREAM: u8 = 0x1;
pub const H2_END_HEADERS: u8 = 0x4;

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK block of literal fields without indexing, new names, no Huffman.
pub fn hpack_literals(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// Preface, empty SETTINGS, HEADERS on stream 1, and a DATA frame when there is a body.
pub fn h2_request(fields: &[(&str, &[u8])], body: Option<&[u8]>) -> Vec<u8> {
    let mut s = H2_PREFACE.to_vec();
    s.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    let block = hpack_literals(fields);
    let flags = H2_END_HEADERS | if body.is_none() { H2_END_STREAM } else { 0 };
    s.extend(h2_frame(H2_HEADERS, flags, 1, &block));
    if let Some(b) = body {
        s.extend(h2_frame(H2_DATA, H2_END_STREAM, 1, b));
    }
    s
}

/// The usual pseudo-header fields for a GET of `/h` at `a.example`.
const H2_GET: [(&str, &[u8]); 4] = [
    (":method", b"GET"),
    (":scheme", b"http"),
    (":path", b"/h"),
    (":authority", b"a.example"),
];

fn h2_get_with(extra: &[(&'static str, &'static [u8])]) -> Vec<(&'static str, &'static [u8])> {
    let mut f = H2_GET.to_vec();
    f.extend_from_slice(extra);
    f
}

fn h2_post_with(extra: &[(&'static str, &'static [u8])]) -> Vec<(&'static str, &'static [u8])> {
    let mut f = vec![
        (":method", &b"POST"[..]),
        (":scheme", b"http"),
        (":path", b"/h"),
        (":authority", b"a.example"),
    ];
    f.extend_from_slice(extra);
    f
}

/// `n` header lines `x-fill-I: <len bytes>`.
fn filler(n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("X-Fill-{i}: {}", "a".repeat(len)))
        .collect()
}

fn lines(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const R400: Expect = Expect::Reject(&[400]);
const R4XX_TE: Expect = Expect::Reject(&[400, 501]);
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Every vector, in table order.
pub fn all() -> Vec<Vector> {
    let mut out = Vec::new();
    out.extend(cl_te());
    out.extend(chunks());
    out.extend(fields());
    out.extend(host());
    out.extend(connection());
    out.extend(expect_upgrade_pipeline());
    out.extend(request_line());
    out.extend(h2c());
    out.extend(upstream());
    out
}

fn cl_te() -> Vec<Vector> {
    let c = "cl-te";
    let body5 = b"5\r\nhello\r\n0\r\n\r\n";
    vec![
        v("cl+te", c, h1("POST", "/c", &["Content-Length: 5", "Transfer-Encoding: chunked"], body5), R400),
        v("te+cl", c, h1("POST", "/c", &["Transfer-Encoding: chunked", "Content-Length: 5"], body5), R400),
        v("cl twice same", c, h1("POST", "/c", &["Content-Length: 5", "Content-Length: 5"], b"hello"), R400),
        v("cl twice differ", c, h1("POST", "/c", &["Content-Length: 5", "Content-Length: 6"], b"hello!"), R400),
        v("cl list same", c, h1("POST", "/c", &["Content-Length: 5, 5"], b"hello"), R400),
        v("cl plus sign", c, h1("POST", "/c", &["Content-Length: +5"], b"hello"), R400),
        v("cl negative", c, h1("POST", "/c", &["Content-Length: -1"], b""), R400),
        v("cl hex", c, h1("POST", "/c", &["Content-Length: 0x5"], b"hello"), R400),
        v("cl space inside", c, h1("POST", "/c", &["Content-Length: 1 2"], b"hello world!"), R400),
        v("cl empty", c, h1("POST", "/c", &["Content-Length:"], b""), R400),
        v("cl overflow", c, h1("POST", "/c", &["Content-Length: 99999999999999999999"], b"x"), Expect::Reject(&[400, 413])),
        v("cl leading zeros", c, h1("POST", "/c", &["Content-Length: 005"], b"hello"), Expect::Forward),
        v("te CHUNKED upper", c, h1("POST", "/c", &["Transfer-Encoding: CHUNKED"], body5), Expect::Forward),
        v("te tab before value", c, h1("POST", "/c", &["Transfer-Encoding:\tchunked"], body5), Expect::Forward),
        v("te trailing space", c, h1("POST", "/c", &["Transfer-Encoding: chunked "], body5), Expect::Forward),
        v("te gzip, chunked", c, h1("POST", "/c", &["Transfer-Encoding: gzip, chunked"], body5), R4XX_TE),
        v("te identity, chunked", c, h1("POST", "/c", &["Transfer-Encoding: identity, chunked"], body5), R4XX_TE),
        v("te identity + chunked lines", c, h1("POST", "/c", &["Transfer-Encoding: identity", "Transfer-Encoding: chunked"], body5), R4XX_TE),
        v("te chunked twice", c, h1("POST", "/c", &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], body5), R4XX_TE),
        v("te chunked, identity", c, h1("POST", "/c", &["Transfer-Encoding: chunked, identity"], body5), R4XX_TE),
        v("te identity alone", c, h1("POST", "/c", &["Transfer-Encoding: identity"], b""), R4XX_TE),
        v("te xchunked", c, h1("POST", "/c", &["Transfer-Encoding: xchunked"], body5), R4XX_TE),
        v("te space before colon", c, h1("POST", "/c", &["Transfer-Encoding : chunked"], body5), R400),
        v("te obs-fold", c, h1("POST", "/c", &["Transfer-Encoding:", " chunked"], body5), Expect::Observe),
        v("te vertical tab", c, h1("POST", "/c", &["Transfer-Encoding:\x0bchunked"], body5), Expect::Observe),
        v("te on HTTP/1.0", c, raw("POST /c HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Expect::Observe),
        v("te on HTTP/1.0 with cl", c, raw("POST /c HTTP/1.0\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), R400),
    ]
}

fn chunks() -> Vec<Vector> {
    let c = "chunked";
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(8192));
    vec![
        v(
            "chunk size ZZZ",
            c,
            chunked(b"ZZZ\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size overflow",
            c,
            chunked(b"FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size empty",
            c,
            chunked(b"\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size 0x5",
            c,
            chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size -5",
            c,
            chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size leading zeros",
            c,
            chunked(b"0005\r\nhello\r\n0\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "chunk size leading space",
            c,
            chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk size trailing space",
            c,
            chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
            Expect::ForwardOr4xx,
        ),
        v(
            "chunk size bare LF",
            c,
            chunked(b"5\nhello\r\n0\r\n\r\n"),
            Expect::ForwardOr4xx,
        ),
        v(
            "chunk size bare CR",
            c,
            chunked(b"5\rhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk data missing CRLF",
            c,
            chunked(b"5\r\nhelloXX0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk data bare LF",
            c,
            chunked(b"5\r\nhello\n0\r\n\r\n"),
            Expect::ForwardOr4xx,
        ),
        v(
            "chunk ext",
            c,
            chunked(b"5;foo=bar\r\nhello\r\n0\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "chunk ext quoted",
            c,
            chunked(b"5;foo=\"b r\"\r\nhello\r\n0\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "chunk ext 8 KiB",
            c,
            chunked(long_ext.as_bytes()),
            Expect::ForwardOr4xx,
        ),
        v(
            "chunk ext NUL",
            c,
            chunked(b"5;a=\x00\r\nhello\r\n0\r\n\r\n"),
            Expect::ForwardOr4xx,
        ),
        v(
            "chunk ext bare LF",
            c,
            chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
            Expect::ClientError,
        ),
        v(
            "chunk trailer",
            c,
            chunked(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "chunk trailer obs-fold",
            c,
            chunked(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n 2\r\n\r\n"),
            Expect::ForwardOr4xx,
        ),
        v(
            "GET with chunked body",
            c,
            h1(
                "GET",
                "/g",
                &["Transfer-Encoding: chunked"],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::Forward,
        )
        .with(Check::UpstreamChunked)
        .with(Check::UpstreamHeader("transfer-encoding", Some("chunked"))),
    ]
}

fn fields() -> Vec<Vector> {
    let c = "fields";
    let big = filler(60, 1000);
    let many = filler(101, 4);
    let long_name = format!("X-{}: 1", "n".repeat(9000));
    vec![
        v(
            "space before colon",
            c,
            h1("GET", "/f", &["X-Foo : bar"], b""),
            R400,
        ),
        v("empty name", c, h1("GET", "/f", &[": bar"], b""), R400),
        v(
            "space inside name",
            c,
            h1("GET", "/f", &["X Foo: bar"], b""),
            R400,
        ),
        v(
            "non-token name",
            c,
            h1("GET", "/f", &["X(Foo): bar"], b""),
            R400,
        ),
        v(
            "NUL in value",
            c,
            h1("GET", "/f", &["X-Foo: a\0b"], b""),
            R400,
        ),
        v(
            "bare CR in value",
            c,
            h1("GET", "/f", &["X-Foo: a\rb"], b""),
            R400,
        ),
        v(
            "CTL in value",
            c,
            h1("GET", "/f", &["X-Foo: a\x01b"], b""),
            Expect::Observe,
        ),
        v(
            "obs-fold value",
            c,
            h1("GET", "/f", &["X-Foo: a", " b"], b""),
            Expect::Observe,
        ),
        v(
            "fold before first field",
            c,
            raw("GET /f HTTP/1.1\r\n X-Foo: a\r\nHost: a.example\r\n\r\n"),
            R400,
        ),
        v(
            "obs-text value",
            c,
            h1("GET", "/f", &["X-Foo: caf\u{e9}"], b""),
            Expect::Forward,
        ),
        v(
            "LF-only head",
            c,
            raw("GET /f HTTP/1.1\nHost: a.example\n\n"),
            Expect::Observe,
        ),
        v(
            "60 KB of fields",
            c,
            h1("GET", "/f", &lines(&big), b""),
            Expect::Reject(&[431]),
        ),
        v(
            "101 fields",
            c,
            h1("GET", "/f", &lines(&many), b""),
            Expect::Reject(&[431]),
        ),
        v(
            "9000-byte name",
            c,
            h1("GET", "/f", &[long_name.as_str()], b""),
            Expect::Observe,
        ),
    ]
}

fn host() -> Vec<Vector> {
    let c = "host";
    vec![
        v("host missing", c, raw("GET /h HTTP/1.1\r\n\r\n"), R400),
        v(
            "host twice",
            c,
            h1("GET", "/h", &["Host: b.example"], b""),
            R400,
        ),
        v(
            "host twice same",
            c,
            h1("GET", "/h", &["Host: a.example"], b""),
            R400,
        ),
        v(
            "host list",
            c,
            raw("GET /h HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n"),
            R400,
        ),
        v(
            "host with space",
            c,
            raw("GET /h HTTP/1.1\r\nHost: a b\r\n\r\n"),
            R400,
        ),
        v(
            "host with slash",
            c,
            raw("GET /h HTTP/1.1\r\nHost: a.example/evil\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "host with userinfo",
            c,
            raw("GET /h HTTP/1.1\r\nHost: u@a.example\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "host empty",
            c,
            raw("GET /h HTTP/1.1\r\nHost:\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "host bad port",
            c,
            raw("GET /h HTTP/1.1\r\nHost: a.example:80x\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "host with port",
            c,
            raw("GET /h HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "host missing on 1.0",
            c,
            raw("GET /h HTTP/1.0\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "absolute-form",
            c,
            h1("GET", "http://other.example/x", &[], b""),
            Expect::Forward,
        )
        .with(Check::UpstreamTarget("/x"))
        .with(Check::UpstreamHeader("host", Some("other.example"))),
        v(
            "absolute-form no host",
            c,
            raw("GET http://other.example/x HTTP/1.1\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "absolute-form https",
            c,
            h1("GET", "https://other.example/x", &[], b""),
            Expect::Observe,
        ),
    ]
}

fn connection() -> Vec<Vector> {
    let c = "connection";
    vec![
        v(
            "connection: host",
            c,
            h1("GET", "/k", &["Connection: Host"], b""),
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("host", Some("a.example"))),
        v(
            "connection: host, x-foo",
            c,
            h1("GET", "/k", &["Connection: host, x-foo", "X-Foo: 1"], b""),
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("host", Some("a.example")))
        .with(Check::UpstreamHeader("x-foo", None)),
        v(
            "connection: x-foo",
            c,
            h1("GET", "/k", &["Connection: x-foo", "X-Foo: 1"], b""),
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("x-foo", None)),
        v(
            "connection: content-length",
            c,
            h1(
                "POST",
                "/k",
                &["Connection: content-length", "Content-Length: 5"],
                b"hello",
            ),
            Expect::Observe,
        ),
        v(
            "connection: transfer-encoding",
            c,
            h1(
                "POST",
                "/k",
                &[
                    "Connection: transfer-encoding",
                    "Transfer-Encoding: chunked",
                ],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::Observe,
        ),
        v(
            "keep-alive header",
            c,
            h1(
                "GET",
                "/k",
                &["Keep-Alive: timeout=5", "Connection: keep-alive"],
                b"",
            ),
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("keep-alive", None)),
        v(
            "te: trailers",
            c,
            h1("GET", "/k", &["TE: trailers"], b""),
            Expect::Forward,
        ),
    ]
}

fn expect_upgrade_pipeline() -> Vec<Vector> {
    let e = "expect";
    let u = "upgrade";
    let p = "pipelining";
    let ws = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let two = [h1("GET", "/p1", &[], b""), h1("GET", "/p2", &[], b"")].concat();
    let post_get = [
        h1("POST", "/p1", &["Content-Length: 5"], b"hello"),
        h1("GET", "/p2", &[], b""),
    ]
    .concat();
    let smuggle = [
        h1(
            "POST",
            "/p1",
            &["Content-Length: 4", "Transfer-Encoding: chunked"],
            b"0\r\n\r\n",
        ),
        h1("GET", "/smuggled", &[], b""),
    ]
    .concat();
    vec![
        v("expect 100-continue", e, h1("POST", "/e", &["Expect: 100-continue", "Content-Length: 5"], b"hello"), Expect::Forward),
        v("expect 100, upstream 100", e, h1("POST", "/e", &["Expect: 100-continue", "Content-Length: 5"], b"hello"), Expect::Relay(200, b"ok"))
            .upstream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .with(Check::Continues(1)),
        v("expect unknown", e, h1("POST", "/e", &["Expect: 200-ok", "Content-Length: 5"], b"hello"), Expect::Observe),
        v("expect on HTTP/1.0", e, raw("POST /e HTTP/1.0\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"), Expect::Observe),
        v("upgrade websocket, 101", u, h1("GET", "/ws", &ws, b""), Expect::Relay(101, b""))
            .upstream(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
        v("upgrade websocket, 200", u, h1("GET", "/ws", &ws, b""), Expect::Relay(200, b"ok")),
        v("upgrade h2c over h1", u, h1("GET", "/up", &["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"], b""), Expect::Relay(200, b"ok")),
        v("two GETs", p, two, Expect::Forward),
        v("POST then GET", p, post_get, Expect::Forward),
        v("cl+te then GET", p, smuggle, R400),
    ]
}

fn request_line() -> Vec<Vector> {
    let c = "request-line";
    let long_uri = format!("/{}", "u".repeat(8 * 1024 + 1));
    vec![
        v(
            "URI over 8 KiB",
            c,
            h1("GET", &long_uri, &[], b""),
            Expect::Reject(&[414]),
        ),
        v(
            "space in URI",
            c,
            raw("GET /a b HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            R400,
        ),
        v(
            "NUL in URI",
            c,
            raw("GET /a\0b HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            R400,
        ),
        v(
            "fragment in URI",
            c,
            h1("GET", "/a#frag", &[], b""),
            Expect::Observe,
        ),
        v(
            "lowercase method",
            c,
            h1("get", "/l", &[], b""),
            Expect::Observe,
        ),
        v(
            "tabs as separators",
            c,
            raw("GET\t/l\tHTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "leading CRLF",
            c,
            raw("\r\nGET /l HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Expect::Forward,
        ),
        v(
            "HTTP/1.2",
            c,
            raw("GET /l HTTP/1.2\r\nHost: a.example\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "HTTP/2.0 line",
            c,
            raw("GET /l HTTP/2.0\r\nHost: a.example\r\n\r\n"),
            Expect::Observe,
        ),
        v(
            "bad version",
            c,
            raw("GET /l HTTP/1.x\r\nHost: a.example\r\n\r\n"),
            R400,
        ),
        v("HTTP/0.9", c, raw("GET /l\r\n"), Expect::Observe),
        v(
            "OPTIONS *",
            c,
            h1("OPTIONS", "*", &[], b""),
            Expect::Observe,
        ),
        v(
            "CONNECT",
            c,
            raw("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
            Expect::Observe,
        ),
    ]
}

fn h2c() -> Vec<Vector> {
    vec![
        h2v("h2 GET", &H2_GET, None, Expect::Forward)
            .with(Check::UpstreamHeader("host", Some("a.example"))),
        h2v(
            "h2 host = authority",
            &h2_get_with(&[("host", b"a.example")]),
            None,
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("host", Some("a.example"))),
        h2v(
            "h2 host != authority",
            &h2_get_with(&[("host", b"b.example")]),
            None,
            R400,
        ),
        h2v(
            "h2 host only",
            &[
                (":method", b"GET"),
                (":scheme", b"http"),
                (":path", b"/h"),
                ("host", b"a.example"),
            ],
            None,
            Expect::Forward,
        )
        .with(Check::UpstreamHeader("host", Some("a.example"))),
        h2v(
            "h2 POST body",
            &h2_post_with(&[("content-length", b"5")]),
            Some(b"hello"),
            Expect::Forward,
        ),
        h2v(
            "h2 content-length short",
            &h2_post_with(&[("content-length", b"10")]),
            Some(b"hello"),
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 content-length bad",
            &h2_post_with(&[("content-length", b"abc")]),
            Some(b"hello"),
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 transfer-encoding",
            &h2_post_with(&[("transfer-encoding", b"chunked")]),
            Some(b"5\r\nhello\r\n0\r\n\r\n"),
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 CRLF in value",
            &h2_get_with(&[("x-foo", b"a\r\nX-Bar: b")]),
            None,
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 CRLF in path",
            &[
                (":method", b"GET"),
                (":scheme", b"http"),
                (":path", b"/h HTTP/1.1\r\nX-Bar: b\r\n\r\nGET /x"),
                (":authority", b"a.example"),
            ],
            None,
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 connection header",
            &h2_get_with(&[("connection", b"keep-alive")]),
            None,
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 uppercase name",
            &h2_get_with(&[("X-Foo", b"1")]),
            None,
            Expect::Reject(&[]),
        ),
        h2v(
            "h2 te: trailers",
            &h2_get_with(&[("te", b"trailers")]),
            None,
            Expect::Forward,
        ),
        h2v(
            "h2 te: gzip",
            &h2_get_with(&[("te", b"gzip")]),
            None,
            Expect::Reject(&[]),
        ),
    ]
}

fn upstream() -> Vec<Vector> {
    let huge: String = (0..70)
        .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    let huge = format!("HTTP/1.1 200 OK\r\n{huge}Content-Length: 2\r\n\r\nok");
    let head = vec![
        up("up cl+te", raw("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Expect::Relay(200, b"hello"))
            .with(Check::ClientLacks("content-length")),
        up("up te+cl", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Expect::Relay(200, b"hello"))
            .with(Check::ClientLacks("content-length")),
        up("up two cl differ", raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello"), Expect::BadGateway),
        up("up two cl same", raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), Expect::Observe),
        up("up cl not a number", raw("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello"), Expect::Observe),
        up("up chunk size ZZ", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n"), Expect::Observe),
        up("up chunk overflow", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), Expect::Observe),
        up("up chunk bare LF", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), Expect::Observe),
        up("up obs-fold", raw("HTTP/1.1 200 OK\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\nok"), Expect::Observe),
        up("up NUL in value", raw("HTTP/1.1 200 OK\r\nX-Foo: a\0b\r\nContent-Length: 2\r\n\r\nok"), Expect::Observe),
        up("up space before colon", raw("HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"), Expect::Observe),
        up("up 204 with body", raw("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"), Expect::Relay(204, b"")),
        up("up 304 with body", raw("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"), Expect::Relay(304, b"")),
        up("up no length", raw("HTTP/1.1 200 OK\r\n\r\nuntil close"), Expect::Relay(200, b"until close")),
        up("up cl longer than body", raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"), Expect::Observe),
        up("up 1xx chain", raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Expect::Relay(200, b"ok"))
            .with(Check::Interim(102))
            .with(Check::Interim(103)),
        up("up 103 early hints", raw("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Expect::Relay(200, b"ok"))
            .with(Check::Interim(103)),
        up("up unsolicited 101", raw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), Expect::BadGateway),
        up("up 70 KB head", raw(&huge), Expect::BadGateway),
        up("up HTTP/1.0", raw("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), Expect::Relay(200, b"ok")),
        up("up bad status", raw("HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"), Expect::Observe),
        up("up LF-only head", raw("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), Expect::Observe),
        up("up chunked trailers", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"), Expect::Relay(200, b"hello")),
        up("up connection: content-length", raw("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok"), Expect::Observe),
    ];
    let mut out = head;
    out.push(Vector {
        name: "up HEAD with body",
        category: "upstream",
        request: h1("HEAD", "/u", &[], b""),
        upstream: Some(raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")),
        h2: false,
        expect: Expect::Relay(200, b""),
        checks: Vec::new(),
    });
    out
}

/// The default upstream answer.
pub fn default_answer() -> &'static [u8] {
    OK
}
