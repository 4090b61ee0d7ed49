//! Fuzz target: the pure parts of ninefold's own HTTP/1.1 engine (`src/h1/parse.rs`, `src/h1/fields.rs`, `src/h1/write.rs`,
//! `src/h1/chunked.rs`) on arbitrary bytes, checked against themselves and against
//! hyper's HTTP/1 parsers. No sockets, no gateway: thousands of inputs a second.
//!
//! For each input:
//! 1. `parse_request` never panics; a head it accepts, written back with
//!    `write_request` (which rewrites the raw lines for the upstream as it writes
//!    them: hop-by-hop fields cut, `x-forwarded-*` added), parses (httparse) to the
//!    same method and target, and to the fields the map's rewrite
//!    (`proxy::forward::rewrite_fields`, hyper's h2 path) makes of the same head: a
//!    differential check of the request's head rewrite; and `parse_request` frames
//!    the written head as it framed the input;
//! 2. the same bytes go to hyper's HTTP/1 server (`http1::Builder` over a
//!    `tokio::io::duplex` whose client side is shut after the input): where both accept
//!    the head they agree on method, target, version, the field list and the body
//!    (Content-Length bytes, or the chunked data ninefold's `Decoder` finds after the
//!    head); where one side refuses what the other takes, the difference must be one of
//!    ninefold's intended strictnesses, listed at [`request_refusal`] and
//!    [`chunk_refusal`];
//! 3. the `Decoder`, fed the input (and, for a chunked request, the body after its
//!    head) in pieces whose sizes come from the first input bytes, finds the same data
//!    and the same end or error as fed in one piece;
//! 4. `parse_response` never panics; the same bytes as the answer to `GET /` on hyper's
//!    HTTP/1 client: where both accept, status, version and body agree, with the
//!    intended differences listed at [`response_refusal`]; and the field lines ninefold
//!    keeps raw for its client (`h1::fields::RawFields`: hop-by-hop ones cut while copying,
//!    no header map) are hyper's fields after the gateway's map-based rewrite
//!    (`proxy::forward::rewrite::strip_hop_headers`): a differential check of the answer's head
//!    rewrite.
//!
//! A broken rule panics, which libFuzzer reports as a crash with the input. The
//! message says which rule and what each side did.
#![no_main]

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use ninefold::config::Limits;
use ninefold::h1::chunked::{ChunkError, Decoder};
use ninefold::h1::fields::{RawFields, RawRequest};
use ninefold::h1::parse::{self, Framing, Refusal, RequestHead, ResponseHead};
use ninefold::h1::write;
use ninefold::proxy::forward::rewrite::{rewrite_fields, strip_hop_headers};
use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the engine's server side gives a request's chunked decoder: extensions up to
/// `max_chunk_extension`, a trailer section up to `max_request_head`
/// (`src/h1/inbound.rs`).
fn request_decoder(limits: &Limits) -> Decoder {
    Decoder::new(limits.max_chunk_extension, limits.max_request_head)
}

/// What the engine's upstream side gives an answer's chunked decoder
/// (`src/h1/client.rs`, `Reader::new`).
fn response_decoder(limits: &Limits) -> Decoder {
    Decoder::new(limits.max_chunk_extension, 64 * 1024)
}

/// The client address the rewritten heads name.
const CLIENT_IP: &str = "192.0.2.1";

/// Field lines the rewrite may add: `x-forwarded-for`, `-proto`, `-host`,
/// `content-length` or `transfer-encoding`.
const ADDED: usize = 4;

/// How long one exchange with hyper may take before the harness calls it a hang. Both
/// sides see the end of the input (the duplex is shut), so an exchange ends in well
/// under a millisecond; this only turns a hang into a report instead of a stuck run.
const HYPER_DEADLINE: Duration = Duration::from_secs(10);

thread_local! {
    /// One current-thread runtime for the process: building one per input would cost
    /// more than the exchange.
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    requests(data, &limits);
    pieces(data, data, request_decoder(&limits));
    responses(data, &limits);
});

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// Rules 1–3 for `data` read as a request.
fn requests(data: &[u8], limits: &Limits) {
    let mut ours = parse::parse_request(data, limits);
    if let Ok(Some(h)) = &mut ours {
        round_trip(h, limits);
        if h.framing == Framing::Chunked {
            pieces(data, &data[h.len..], request_decoder(limits));
        }
    }
    let theirs = with_deadline("hyper's server", hyper_server(data));
    match (&ours, theirs) {
        (Ok(Some(h)), Some(t)) => same_request(data, h, &t, limits),
        (Ok(Some(h)), None) => panic!(
            "ninefold accepts a request head hyper refuses: {:?} {} {:?}, framing {:?}",
            h.parts.method, h.parts.uri, h.parts.version, h.framing
        ),
        (Ok(None), Some(t)) => panic!(
            "ninefold waits for more of a head hyper took whole: {} {}",
            t.method, t.uri
        ),
        (Err(f), Some(t)) => {
            if request_refusal(data, *f, limits).is_none() {
                panic!(
                    "ninefold refuses ({f:?}) a head hyper accepts: {} {} {:?} {}",
                    t.method,
                    t.uri,
                    t.version,
                    show(&fields(&t.headers))
                );
            }
        }
        (Ok(None) | Err(_), None) => {}
    }
}

/// The head ninefold writes upstream from what it parsed must say the same thing.
fn round_trip(h: &mut RequestHead, limits: &Limits) {
    // What `proxy::forward::prepare` decides for an HTTP/1.1 upstream: a chunked body
    // goes chunked.
    let chunked = h.framing == Framing::Chunked;
    h.fields.chunked = chunked;
    let h = &*h;
    let parts = &h.parts;
    let mut out = Vec::new();
    let fwd = write::Forwarding {
        client_ip: CLIENT_IP.as_bytes(),
        tls: false,
    };
    write::write_request(&mut out, parts, Some(&h.fields), fwd);
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_request_headers + ADDED];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&out) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, out.len(), "bytes after the written head")
        }
        other => panic!(
            "write_request wrote a head httparse does not take ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(req.method, Some(parts.method.as_str()), "method written");
    assert_eq!(req.version, Some(1), "version written");
    let target = req.path.unwrap_or_default();
    if parts.method == Method::CONNECT {
        // A CONNECT is refused (405) before anything is forwarded, so only the
        // authority-form one, the only kind `write_request` means to write, is checked.
        if let Some(a) = parts.uri.authority() {
            assert_eq!(target, a.as_str(), "CONNECT target written");
        }
    } else {
        // An empty path is written as `/` (RFC 9112 §3.2.1), before a query too.
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let want = if pq.starts_with('?') {
            format!("/{pq}")
        } else {
            pq.to_owned()
        };
        assert_eq!(target, want, "target written");
        let origin_form = target.starts_with('/') || target == "*";
        if !origin_form {
            panic!(
                "written target {target:?} is neither origin-form nor `*` (parsed from {})",
                parts.uri
            );
        }
    }
    let written: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
        .collect();
    // The map's way, on the same head.
    let mut map = h.fields.to_map();
    rewrite_fields(&mut map, &HeaderValue::from_static(CLIENT_IP), false, false)
        .expect("joined x-forwarded-for values are valid");
    if let Some(n) = h.fields.length {
        // `conform::check_request` writes a length with leading zeros as the number.
        map.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    if chunked {
        map.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    same_fields("fields written", &by_name(written.clone()), &by_name(fields(&map)));

    // ninefold reads its own output with the framing it gave the input.
    // The written head carries the forwarding fields on top of the client's, and
    // `x-forwarded-host` repeats the Host value, which can be most of the head: the
    // head can nearly double, and that field be longer than the Host line by its name.
    let room = Limits {
        max_request_headers: limits.max_request_headers + ADDED,
        max_request_head: 2 * limits.max_request_head + 1024,
        max_request_field: limits.max_request_head + 1024,
        ..*limits
    };
    match parse::parse_request(&out, &room) {
        Ok(Some(again)) => {
            assert_eq!(again.framing, h.framing, "framing of the written head");
            same_fields("fields re-read", &raw_request(&again.fields), &written);
        }
        other => panic!(
            "ninefold refuses the head it wrote ({:?}): {:?}",
            other.map(|o| o.map(|h| h.framing)),
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Both sides took the head: it and the body must agree.
fn same_request(data: &[u8], h: &RequestHead, t: &HyperRequest, limits: &Limits) {
    let p = &h.parts;
    assert_eq!(p.method, t.method, "method");
    assert_eq!(p.uri, t.uri, "target");
    assert_eq!(p.version, t.version, "version");
    // hyper drops a repeated equal Content-Length and a length beside
    // Transfer-Encoding; ninefold refuses both heads, so here the lists are whole.
    same_fields(
        "request field lines",
        &by_name(raw_request(&h.fields)),
        &by_name(fields(&t.headers)),
    );

    let rest = &data[h.len..];
    let ours = body(rest, h.framing, request_decoder(limits));
    match (&ours, &t.body) {
        (Body::Complete(a), Theirs::Complete(b)) => same_bytes("body data", h.framing, a, b),
        (Body::Short | Body::Refused(_), Theirs::Failed) => {}
        (Body::Refused(e), Theirs::Complete(b)) => {
            if chunk_refusal(rest, request_decoder(limits)).is_none() {
                panic!(
                    "ninefold's decoder refuses ({e:?}) a chunked body hyper reads whole ({} bytes)",
                    b.len()
                );
            }
        }
        (Body::Complete(a), Theirs::Failed) => {
            if h.framing != Framing::Chunked
                || hyper_trailer_limit(rest, request_decoder(limits)).is_none()
            {
                panic!(
                    "ninefold reads a body hyper refuses (framing {:?}, {} bytes)",
                    h.framing,
                    a.len()
                );
            }
        }
        (Body::Short, Theirs::Complete(b)) => panic!(
            "ninefold waits for more of a body hyper read whole (framing {:?}, {} bytes)",
            h.framing,
            b.len()
        ),
    }
}

/// ninefold refused a request head hyper takes: which intended strictness of
/// `src/h1/parse.rs` explains it, if any.
///
/// - a repeated `Content-Length`, even with equal values (hyper keeps the first);
/// - `Content-Length` beside `Transfer-Encoding` (hyper drops the length);
/// - `Transfer-Encoding` other than exactly one `chunked` (hyper takes any list whose
///   last coding is `chunked`, such as `gzip, chunked` or `chunked, chunked`);
/// - ninefold's size limits (`Limits::default()`: 16 KiB head, 8 KiB target, 8 KiB
///   field line), below hyper's (about 400 KiB of head, a 64 KiB target);
/// - a `Content-Length` above `parse::MAX_CONTENT_LENGTH` (18 digits; hyper takes up to
///   2^64-3).
///
/// `Transfer-Encoding` on HTTP/1.0 is refused by both, so it needs no entry here.
fn request_refusal(data: &[u8], f: Refusal, limits: &Limits) -> Option<&'static str> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_request_headers + 1];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let raw = Raw::new(req.headers);
    match f {
        Refusal::UriTooLong => (req.path.unwrap_or_default().len() > limits.max_uri)
            .then_some("request target over ninefold's limit"),
        Refusal::FieldTooLarge => (len > limits.max_request_head
            || req
                .headers
                .iter()
                .any(|h| h.name.len() + 2 + h.value.len() > limits.max_request_field))
        .then_some("head or field line over ninefold's limit"),
        Refusal::BadRequest | Refusal::UnsupportedCoding => {
            if raw.lengths >= 2 {
                Some("repeated Content-Length")
            } else if raw.lengths >= 1 && raw.te_lines >= 1 {
                Some("Content-Length beside Transfer-Encoding")
            } else if raw.te_lines >= 1 && !raw.te_exactly_chunked {
                Some("Transfer-Encoding other than exactly one chunked")
            } else if raw.length_big {
                Some("Content-Length above ninefold's bound (18 digits)")
            } else {
                None
            }
        }
    }
}

/// The framing fields of a head as httparse read them, before any repair.
struct Raw {
    lengths: usize,
    /// A `Content-Length` value that is not `1*DIGIT` (a list such as `5, 5`).
    length_list: bool,
    /// A `1*DIGIT` `Content-Length` above ninefold's `parse::MAX_CONTENT_LENGTH`.
    length_big: bool,
    te_lines: usize,
    /// The `Transfer-Encoding` lines hold exactly one element, `chunked`.
    te_exactly_chunked: bool,
}

impl Raw {
    fn new(headers: &[httparse::Header<'_>]) -> Raw {
        let mut raw = Raw {
            lengths: 0,
            length_list: false,
            length_big: false,
            te_lines: 0,
            te_exactly_chunked: false,
        };
        let mut codings = Vec::new();
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                raw.lengths += 1;
                let digits = h.value.iter().all(u8::is_ascii_digit);
                raw.length_list |= !digits;
                raw.length_big |= digits
                    && !h.value.is_empty()
                    && std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.parse::<u128>().ok())
                        .is_none_or(|n| n > u128::from(parse::MAX_CONTENT_LENGTH));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                raw.te_lines += 1;
                codings.extend(h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
            }
        }
        raw.te_exactly_chunked = codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked");
        raw
    }
}

/// A request as hyper's HTTP/1 server handed it to its service.
struct HyperRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Theirs,
}

/// hyper's server on `data`: the first request it hands to the service, with its
/// body; `None` when it refused the head (no request reached the service).
async fn hyper_server(data: &[u8]) -> Option<HyperRequest> {
    let (mut client, server) = tokio::io::duplex(data.len() + 64 * 1024);
    client.write_all(data).await.expect("duplex write");
    // The request ends with the input; half_close lets hyper answer it anyway.
    client.shutdown().await.expect("duplex shutdown");
    let seen: Rc<RefCell<Option<HyperRequest>>> = Rc::default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done_tx = Rc::new(RefCell::new(Some(done_tx)));
    let service = {
        let seen = seen.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let seen = seen.clone();
            let done_tx = done_tx.clone();
            async move {
                let first = seen.borrow().is_none();
                if first {
                    let (parts, body) = req.into_parts();
                    *seen.borrow_mut() = Some(HyperRequest {
                        method: parts.method,
                        uri: parts.uri,
                        version: parts.version,
                        headers: parts.headers,
                        // Until the body is read whole: the connection may end first.
                        body: Theirs::Failed,
                    });
                    let b = read_all(body).await;
                    if let Some(s) = seen.borrow_mut().as_mut() {
                        s.body = b;
                    }
                    if let Some(tx) = done_tx.borrow_mut().take() {
                        let _ = tx.send(());
                    }
                }
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(server), service);
    tokio::select! {
        _ = conn => {}
        _ = done_rx => {}
    }
    drop(client);
    seen.take()
}

// ---------------------------------------------------------------------------------------
// Bodies and the chunked decoder
// ---------------------------------------------------------------------------------------

/// What ninefold makes of the bytes after a head.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    /// The whole body.
    Complete(Vec<u8>),
    /// The input ended first.
    Short,
    /// The chunked coding is malformed.
    Refused(ChunkError),
}

/// What hyper made of a body.
#[derive(Debug)]
enum Theirs {
    Complete(Vec<u8>),
    /// An error, or the end of the input before the end of the body.
    Failed,
}

/// Reads a hyper body to its end.
async fn read_all(mut body: Incoming) -> Theirs {
    let mut data = Vec::new();
    loop {
        match body.frame().await {
            None => return Theirs::Complete(data),
            Some(Ok(frame)) => {
                if let Ok(d) = frame.into_data() {
                    data.extend_from_slice(&d);
                }
            }
            Some(Err(_)) => return Theirs::Failed,
        }
    }
}

/// The body ninefold reads from `rest` (the bytes after a head) under `framing`.
fn body(rest: &[u8], framing: Framing, decoder: Decoder) -> Body {
    match framing {
        Framing::Empty => Body::Complete(Vec::new()),
        Framing::Length(n) => match usize::try_from(n) {
            Ok(n) if n <= rest.len() => Body::Complete(rest[..n].to_vec()),
            _ => Body::Short,
        },
        Framing::Close => Body::Complete(rest.to_vec()),
        Framing::Chunked => match decode(rest, decoder, &mut std::iter::repeat(usize::MAX)) {
            Decoded::Done { data, .. } => Body::Complete(data),
            Decoded::Short { .. } => Body::Short,
            Decoded::Refused { err, .. } => Body::Refused(err),
        },
    }
}

/// A whole run of the decoder over some input.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The body ended after `used` bytes.
    Done { data: Vec<u8>, used: usize },
    /// The input ended inside the body.
    Short { data: Vec<u8> },
    /// The coding is malformed; `data` is what came before the error.
    Refused { data: Vec<u8>, err: ChunkError },
}

/// Runs `decoder` over `input` handed over in pieces of the sizes `steps` yields (a
/// size past the end takes the rest), as the engine does with whatever a read brought.
fn decode(input: &[u8], mut decoder: Decoder, steps: &mut dyn Iterator<Item = usize>) -> Decoded {
    let mut data = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let step = steps.next().unwrap_or(usize::MAX).max(1);
        let end = input.len().min(pos.saturating_add(step));
        let mut piece = &input[pos..end];
        while !piece.is_empty() {
            let r = match decoder.decode(piece) {
                Ok(r) => r,
                Err(err) => return Decoded::Refused { data, err },
            };
            assert!(
                r.consumed <= piece.len(),
                "consumed {} of {}",
                r.consumed,
                piece.len()
            );
            if let Some(range) = r.data {
                assert!(
                    range.end <= r.consumed,
                    "data {range:?} past consumed {}",
                    r.consumed
                );
                data.extend_from_slice(&piece[range]);
            }
            pos += r.consumed;
            if r.done {
                assert!(decoder.is_done());
                return Decoded::Done { data, used: pos };
            }
            assert!(
                r.consumed > 0,
                "decoder made no progress at {pos} and is not done"
            );
            piece = &piece[r.consumed..];
        }
    }
    Decoded::Short { data }
}

/// Rule 3: `input` in pieces (sizes 1..=16 taken in turn from the first bytes of
/// `data`, and one byte at a time) decodes as it does whole.
fn pieces(data: &[u8], input: &[u8], decoder: Decoder) {
    let whole = decode(input, decoder.clone(), &mut std::iter::repeat(usize::MAX));
    let sizes: Vec<usize> = data
        .iter()
        .take(8)
        .map(|&b| usize::from(b % 16) + 1)
        .collect();
    if !sizes.is_empty() {
        let cut = decode(input, decoder.clone(), &mut sizes.iter().copied().cycle());
        same_decoded(&format!("in pieces of {sizes:?}"), &whole, &cut);
    }
    let bytes = decode(input, decoder, &mut std::iter::repeat(1));
    same_decoded("one byte at a time", &whole, &bytes);
}

/// Panics, readably, unless the decoder's run `how` matches its run in one piece.
fn same_decoded(how: &str, whole: &Decoded, cut: &Decoded) {
    if whole != cut {
        let brief = |d: &Decoded| match d {
            Decoded::Done { data, used } => {
                format!("done after {used} bytes, {} of data", data.len())
            }
            Decoded::Short { data } => format!("short, {} of data", data.len()),
            Decoded::Refused { data, err } => {
                format!("refused ({err:?}) after {} of data", data.len())
            }
        };
        panic!(
            "the decoder fed {how} disagrees with itself fed whole:\n  whole: {}\n  cut:   {}",
            brief(whole),
            brief(cut)
        );
    }
}

/// Where in a chunked body ninefold's decoder stops, and in which state it was: the
/// input is fed one byte at a time, and the state read from the decoder's `Debug`
/// form (its states are private; a renamed state makes this return `None`, which
/// shows up as an unexplained refusal, never as a silent pass).
fn failure_point(body: &[u8], mut decoder: Decoder) -> Option<(usize, String, ChunkError)> {
    for (i, &b) in body.iter().enumerate() {
        let before = decoder.clone();
        if let Err(e) = decoder.decode(&[b]) {
            let state = format!("{before:?}");
            let state = state
                .split("state: ")
                .nth(1)?
                .split([',', ' '])
                .next()?
                .to_owned();
            return Some((i, state, e));
        }
        if decoder.is_done() {
            return None;
        }
    }
    None
}

/// ninefold's decoder refused a chunked body hyper reads whole: which intended
/// strictness of `src/h1/chunked.rs` explains it, if any.
///
/// - a control character in a chunk extension (hyper skips everything up to CR; ninefold
///   allows only HTAB and visible bytes, and reads quoted strings, so a CR inside one
///   is a control character too);
/// - a bare LF anywhere (hyper takes one in the trailer section, where httparse reads
///   it as a line end);
/// - any malformed trailer section (hyper collects the trailer bytes up to the first
///   CRLF CRLF and has httparse read them, which takes more than a field line, e.g.
///   an empty line made of a bare LF);
/// - more than 64 hex digits in a chunk size (leading zeros; hyper takes any number
///   that does not overflow);
/// - extensions or trailers over ninefold's byte limits (counted a little differently
///   from hyper's 16 KiB ones: ninefold counts the `;`, whitespace and line ends too).
fn chunk_refusal(body: &[u8], decoder: Decoder) -> Option<&'static str> {
    let (i, state, err) = failure_point(body, decoder)?;
    let b = body[i];
    let bare_lf = b == b'\n' && (i == 0 || body[i - 1] != b'\r');
    let control = (b < 0x20 && b != b'\t') || b == 0x7f;
    match (err, state.as_str()) {
        (ChunkError::TooLarge, _) => Some("extensions or trailers over ninefold's limit"),
        (_, "Ext") if control => Some("control character in a chunk extension"),
        (_, "TrailerStart" | "Trailer" | "TrailerLf" | "EndLf") => Some("trailer section syntax"),
        (ChunkError::Size, "Size") => Some("more than 64 digits in a chunk size"),
        _ if bare_lf => Some("bare LF"),
        _ => None,
    }
}

/// ninefold read a chunked body hyper refused: hyper's trailer limits are the only
/// intended cause (at most 100 trailer fields and 16 KiB of trailer section, counting
/// its line ends; ninefold bounds the bytes only, and drops the trailers).
fn hyper_trailer_limit(body: &[u8], mut decoder: Decoder) -> Option<&'static str> {
    // Find where the trailer section starts: the decoder's state says so.
    let mut start = None;
    let mut end = body.len();
    for (i, &b) in body.iter().enumerate() {
        decoder.decode(&[b]).ok()?;
        if start.is_none() && format!("{decoder:?}").contains("state: TrailerStart") {
            start = Some(i + 1);
        }
        if decoder.is_done() {
            end = i + 1;
            break;
        }
    }
    let trailers = &body[start?..end];
    let lines = trailers
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1);
    (lines >= 100 || trailers.len() >= 16 * 1024 - 4).then_some("hyper's trailer limits")
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// Rule 4: `data` as the answer to `GET /`.
fn responses(data: &[u8], limits: &Limits) {
    let max = limits.max_response_head;
    // The engine skips interim answers (1xx but 101) and reads the next head, as hyper
    // does; follow it to the final one.
    let mut at = 0;
    let ours = loop {
        match parse::parse_response(&data[at..], false, max) {
            Ok(Some(h))
                if h.status.is_informational() && h.status != StatusCode::SWITCHING_PROTOCOLS =>
            {
                assert!(h.len > 0);
                at += h.len;
            }
            other => break other,
        }
    };
    let theirs = with_deadline("hyper's client", hyper_client(data));
    match (&ours, theirs) {
        (Ok(Some(h)), Some(t)) => same_response(&data[at..], h, &t, limits),
        (Ok(Some(h)), None) => panic!(
            "ninefold accepts an answer hyper refuses: {} {:?} {}, framing {:?}",
            h.status,
            h.version,
            show(&raw_fields(&h.fields)),
            h.framing
        ),
        (Ok(None), Some(t)) => panic!(
            "ninefold waits for more of an answer hyper took: {}",
            t.status
        ),
        (Err(why), Some(t)) => {
            if response_refusal(&data[at..], why, t.status, max).is_none() {
                panic!(
                    "ninefold refuses ({why}) an answer hyper accepts: {} {:?} {}",
                    t.status,
                    t.version,
                    show(&fields(&t.headers))
                );
            }
        }
        (Ok(None) | Err(_), None) => {}
    }
}

/// Both sides took the answer's head: it and the body must agree.
fn same_response(data: &[u8], h: &ResponseHead, t: &HyperResponse, limits: &Limits) {
    assert_eq!(h.status, t.status, "status");
    assert_eq!(h.version, t.version, "version");
    let mut ours = raw_fields(&h.fields);
    if let Some(n) = h.fields.length {
        ours.push(("content-length".to_owned(), n.to_string().into_bytes()));
    }
    let mut map = t.headers.clone();
    // Intended: beside `Transfer-Encoding: chunked`, ninefold removes `Content-Length`
    // (RFC 9112 §6.3, what an intermediary must do); hyper keeps it.
    if map.contains_key(TRANSFER_ENCODING) && h.fields.length.is_none() {
        map.remove(CONTENT_LENGTH);
    }
    strip_hop_headers(&mut map, h.status == StatusCode::SWITCHING_PROTOCOLS);
    let mut theirs = fields(&map);
    // Intended: the length goes out as a number (`00128` as `128`).
    for (n, v) in &mut theirs {
        if n == "content-length" {
            if let Some(l) = parse::content_length(v) {
                *v = l.to_string().into_bytes();
            }
        }
    }
    let (ours, theirs) = (by_name(ours), by_name(theirs));
    same_fields("answer field lines", &ours, &theirs);

    let rest = &data[h.len..];
    let ours = body(rest, h.framing, response_decoder(limits));
    match (&ours, &t.body) {
        (Body::Complete(a), Theirs::Complete(b)) => same_bytes("body data", h.framing, a, b),
        (Body::Short | Body::Refused(_), Theirs::Failed) => {}
        (Body::Refused(e), Theirs::Complete(b)) => {
            if chunk_refusal(rest, response_decoder(limits)).is_none() {
                panic!(
                    "ninefold's decoder refuses ({e:?}) a chunked answer hyper reads whole ({} bytes)",
                    b.len()
                );
            }
        }
        (Body::Complete(a), Theirs::Failed) => {
            if h.framing != Framing::Chunked
                || hyper_trailer_limit(rest, response_decoder(limits)).is_none()
            {
                panic!(
                    "ninefold reads an answer's body hyper refuses (framing {:?}, {} bytes)",
                    h.framing,
                    a.len()
                );
            }
        }
        (Body::Short, Theirs::Complete(b)) => panic!(
            "ninefold waits for more of an answer's body hyper read whole (framing {:?}, {} bytes)",
            h.framing,
            b.len()
        ),
    }
}

/// ninefold refused an answer hyper takes (`why` is `parse_response`'s cause): which
/// intended strictness of `src/h1/parse.rs` explains it, if any.
///
/// - two `Content-Length` fields, even equal (hyper takes equal ones);
/// - a `Content-Length` that is not `1*DIGIT`: a list such as `5, 5` (hyper takes equal
///   elements), or any value beside `Transfer-Encoding` or on an answer that has no
///   body (1xx, 204, 304), where hyper never reads it;
/// - `Transfer-Encoding` other than exactly one `chunked` (hyper reads the body to the
///   close when the last coding is not `chunked`, and ignores the field on an answer
///   without a body);
/// - a head over ninefold's 16 KiB limit (hyper's is about 400 KiB);
/// - `Transfer-Encoding` on an HTTP/1.0 answer without a body (RFC 9112 §6.1: faulty
///   framing; hyper reads no framing field there).
fn response_refusal(
    data: &[u8],
    why: &str,
    status: StatusCode,
    max: usize,
) -> Option<&'static str> {
    let mut slots = [httparse::EMPTY_HEADER; 101];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let raw = Raw::new(resp.headers);
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    match why {
        "two Content-Length fields" => (raw.lengths >= 2).then_some("repeated Content-Length"),
        "invalid Content-Length" => (raw.length_list || raw.length_big || raw.te_lines > 0 || no_body)
            .then_some("Content-Length not 1*DIGIT where hyper does not read it as one"),
        "a transfer coding other than chunked" => {
            (!raw.te_exactly_chunked).then_some("Transfer-Encoding other than exactly one chunked")
        }
        "response head too large" => (len > max).then_some("head over ninefold's limit"),
        // hyper reads no framing field of an answer without a body (a 101 too).
        "Transfer-Encoding in an HTTP/1.0 answer" => {
            no_body.then_some("Transfer-Encoding on an HTTP/1.0 answer hyper reads no body of")
        }
        _ => None,
    }
}

/// An answer as hyper's HTTP/1 client handed it over.
struct HyperResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Theirs,
}

/// hyper's client sends `GET /` and reads `data` as the answer; `None` when it
/// refused the head.
async fn hyper_client(data: &[u8]) -> Option<HyperResponse> {
    let (client, mut server) = tokio::io::duplex(data.len() + 64 * 1024);
    // The answer goes out once the request is in: hyper's client takes bytes that
    // arrive before it has sent a request for an unsolicited message and fails.
    let upstream = async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"\r\n\r\n") {
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => return server,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        server.write_all(data).await.expect("duplex write");
        server.shutdown().await.expect("duplex shutdown");
        // Returned, not dropped: hyper may still be writing, and reads to the end.
        server
    };
    let downstream = async move {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client))
                .await
                .ok()?;
        let exchange = async move {
            let req = Request::get("/").body(Empty::new()).expect("request");
            let resp = send.send_request(req).await.ok()?;
            let (parts, body) = resp.into_parts();
            Some(HyperResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: read_all(body).await,
            })
        };
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            out = &mut exchange => out,
            _ = &mut conn => exchange.await,
        }
        // `conn`, and with it the client half, is dropped here, so a peer still
        // waiting for a request sees the end.
    };
    let (_server, out) = tokio::join!(upstream, downstream);
    out
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The field lines of a header map, in its order: names (lower case) and values.
fn fields(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// The raw field lines ninefold keeps for its client: names in lower case, values.
fn raw_fields(f: &RawFields) -> Vec<(String, Vec<u8>)> {
    lower(f.iter())
}

/// A request's raw field lines as ninefold read them: names in lower case, values.
fn raw_request(f: &RawRequest) -> Vec<(String, Vec<u8>)> {
    lower(f.iter())
}

fn lower<'a>(lines: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<(String, Vec<u8>)> {
    lines
        .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
        .collect()
}

/// Field lines sorted by name, each name's lines in their order. Raw lines keep the
/// wire's order; a map groups each name's lines at its first place. The order of lines
/// with different names carries no meaning (RFC 9110 §5.3), that of one name's lines
/// does, and a stable sort keeps it.
fn by_name(mut f: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    f.sort_by(|a, b| a.0.cmp(&b.0));
    f
}

/// Field lines for a panic message: values cut to 40 bytes, non-ASCII escaped, so a
/// report on a 64 KiB head stays readable.
fn show(f: &[(String, Vec<u8>)]) -> String {
    let mut out = format!("{} fields [", f.len());
    for (n, v) in f {
        let cut = &v[..v.len().min(40)];
        let more = if v.len() > 40 {
            format!("…({} bytes)", v.len())
        } else {
            String::new()
        };
        out.push_str(&format!("{n}: {}{more}; ", cut.escape_ascii()));
    }
    out.push(']');
    out
}

/// Panics, readably, unless the two field lists are equal.
fn same_fields(what: &str, ours: &[(String, Vec<u8>)], theirs: &[(String, Vec<u8>)]) {
    if ours != theirs {
        let at = ours.iter().zip(theirs).position(|(a, b)| a != b);
        panic!(
            "{what} differ (first at {at:?}):\n  ninefold {}\n  other    {}",
            show(ours),
            show(theirs)
        );
    }
}

/// Panics, readably, unless the two bodies are equal.
fn same_bytes(what: &str, framing: Framing, ours: &[u8], theirs: &[u8]) {
    if ours != theirs {
        let at = ours.iter().zip(theirs).position(|(a, b)| a != b);
        panic!(
            "{what} differ (framing {framing:?}): ninefold {} bytes, hyper {} bytes, first difference at {at:?}",
            ours.len(),
            theirs.len()
        );
    }
}

/// Runs `fut` on the harness's runtime, panicking if it takes longer than
/// [`HYPER_DEADLINE`].
fn with_deadline<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    RT.with(|rt| {
        rt.block_on(async { tokio::time::timeout(HYPER_DEADLINE, fut).await })
            .unwrap_or_else(|_| panic!("{what} did not finish within {HYPER_DEADLINE:?}"))
    })
}
