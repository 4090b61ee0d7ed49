//! Regression tests named after published HTTP/1 request-smuggling CVEs, one test per
//! CVE, so that a list of CVEs can be checked off against the gateway whatever engine
//! reads HTTP/1.1 underneath.
//!
//! Every case writes exact bytes on a raw TCP socket to a real gateway whose route goes
//! to a recording backend (`conformance::backend::Recorder`, one per case and listener),
//! and asserts both sides: what the client got, and the raw bytes the backend received,
//! per upstream connection. The recorder answers each connection once with a
//! `Connection: close` answer and keeps recording until the gateway closes, so a
//! request that reaches it as anything but one complete, unambiguous request per
//! connection (a body mis-sized, a second request inside the first one's exchange,
//! tunnel data) is visible in its record.
//!
//! Some cases overlap `conformance::vectors`; those vectors judge the gateway against
//! nginx and HAProxy, these name the attack.

use crate::conformance::backend::Recorder;
use crate::conformance::framing::{self, Framing, Message};
use crate::conformance::{exchange_h1_with, ninefold_config, vectors, Seen};
use crate::support::{one_endpoint_config, simple_config, ws_echo_backend, Backend, Gateway};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request that, read any other way than the one right way, is a second request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// One attack: its bytes and how the client behaves.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The methods of the requests whose answers the client waits for, in order.
    methods: &'static [&'static str],
    /// The client shuts its write side down after the bytes.
    half_close: bool,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, methods: &'static [&'static str]) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        methods,
        half_close: false,
    }
}

/// What one case produced.
struct Outcome {
    name: &'static str,
    sent: Vec<u8>,
    seen: Seen,
    /// The backend's raw bytes, one entry per upstream connection, in accept order.
    conns: Vec<Vec<u8>>,
}

/// Runs every case at once through one gateway, each on its own listener in front of
/// its own recording backend, and waits for each backend to settle.
async fn run(cases: Vec<Case>) -> Vec<Outcome> {
    let mut recorders = Vec::new();
    for _ in &cases {
        recorders.push(Arc::new(
            Recorder::start(vectors::default_answer().to_vec()).await,
        ));
    }
    let gw = Gateway::start(&ninefold_config(&recorders));
    let mut tasks = Vec::new();
    for (i, (c, rec)) in cases.into_iter().zip(&recorders).enumerate() {
        let addr = gw.addr(&format!("v{i}"));
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            let methods: Vec<String> = c.methods.iter().map(|m| m.to_string()).collect();
            let seen = exchange_h1_with(addr, &c.bytes, &methods, c.half_close).await;
            rec.settle(Duration::from_millis(250), Duration::from_secs(3))
                .await;
            Outcome {
                name: c.name,
                sent: c.bytes,
                seen,
                conns: rec.received(),
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    drop(gw);
    out
}

impl Outcome {
    /// The status of the last final answer, or the last status line seen at all.
    fn status(&self) -> Option<u16> {
        self.seen
            .last
            .as_ref()
            .and_then(|m| m.status)
            .or(self.seen.statuses.last().copied())
    }

    /// Final statuses in order (1xx left out).
    fn finals(&self) -> Vec<u16> {
        self.seen
            .statuses
            .iter()
            .copied()
            .filter(|&s| s >= 200)
            .collect()
    }

    /// The connections that carried bytes.
    fn used_conns(&self) -> Vec<&[u8]> {
        self.conns
            .iter()
            .filter(|c| !c.is_empty())
            .map(Vec::as_slice)
            .collect()
    }

    /// The requests on every upstream connection. Each connection must hold exactly one
    /// complete, unambiguously framed request and nothing after it: the recorder closed
    /// after its one answer, so anything more was sent inside that request's exchange.
    fn one_request_per_conn(&self) -> Vec<Message> {
        let mut out = Vec::new();
        for (k, c) in self.used_conns().into_iter().enumerate() {
            match framing::parse_requests(c) {
                Ok(mut reqs) if reqs.len() == 1 => out.push(reqs.remove(0)),
                Ok(reqs) => panic!(
                    "{}: upstream connection {k} carried {} requests, not one\n{}",
                    self.name,
                    reqs.len(),
                    self.dump()
                ),
                Err(e) => panic!(
                    "{}: upstream connection {k} is not one well-framed request ({e})\n{}",
                    self.name,
                    self.dump()
                ),
            }
        }
        out
    }

    /// The backend never saw `needle`, anywhere.
    fn assert_backend_lacks(&self, needle: &str) {
        for c in &self.conns {
            assert!(
                find(c, needle.as_bytes()).is_none(),
                "{}: the backend received {needle:?}\n{}",
                self.name,
                self.dump()
            );
        }
    }

    /// Refused with one of `codes`, and the backend received not one byte.
    fn assert_refused(&self, codes: &[u16]) {
        let status = self.status();
        assert!(
            status.is_some_and(|s| codes.contains(&s)),
            "{}: expected one of {codes:?}, got {status:?}\n{}",
            self.name,
            self.dump()
        );
        assert!(
            self.used_conns().is_empty(),
            "{}: refused, yet the backend received bytes\n{}",
            self.name,
            self.dump()
        );
    }

    /// Both sides, for a failure message.
    fn dump(&self) -> String {
        let conns: Vec<String> = self
            .conns
            .iter()
            .map(|c| format!("{:?}", String::from_utf8_lossy(c)))
            .collect();
        format!(
            "  client sent: {:?}\n  client got ({}): {:?}\n  backend got, per connection: [{}]",
            String::from_utf8_lossy(&self.sent),
            self.seen.end,
            String::from_utf8_lossy(&self.seen.raw),
            conns.join(", ")
        )
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A POST to `/c` with the given header lines (after `Host: a`) and raw body bytes.
fn post(version: &str, lines: &[&str], body: &str) -> String {
    let mut s = format!("POST /c HTTP/{version}\r\nHost: a\r\n");
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s
}

/// hyper CVE-2021-32714 (RUSTSEC-2021-0079): a chunk size with more hex digits than a
/// u64 holds wrapped around, so `f0000000000000003` was read as 3 and the rest of the
/// "chunk" became a request of its own. The gateway must refuse the body (400, or close
/// the connection) without forwarding anything beyond the head: never a mis-sized body
/// upstream, never the smuggled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2021_32714_chunk_size_overflowing_u64() {
    let te = ["Transfer-Encoding: chunked"];
    let cases = vec![
        case(
            "17 hex digits wrapping to 3",
            post(
                "1.1",
                &te,
                &format!("f0000000000000003\r\nabc\r\n0\r\n\r\n{SMUGGLED}"),
            ),
            &["POST", "GET"],
        ),
        case(
            "17 hex digits wrapping to 5",
            post(
                "1.1",
                &te,
                &format!("10000000000000005\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
            ),
            &["POST", "GET"],
        ),
        case(
            "18 hex digits",
            post(
                "1.1",
                &te,
                &format!("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
            ),
            &["POST", "GET"],
        ),
    ];
    for o in run(cases).await {
        let status = o.status();
        assert!(
            status == Some(400) || (o.seen.statuses.is_empty() && o.seen.end != "quiet"),
            "{}: expected 400 or a close, got {status:?}\n{}",
            o.name,
            o.dump()
        );
        assert!(
            !o.finals().iter().any(|s| (200..300).contains(s)),
            "{}: a 2xx for a body that cannot be framed\n{}",
            o.name,
            o.dump()
        );
        for c in o.used_conns() {
            let head_end = find(c, b"\r\n\r\n").map(|i| i + 4);
            assert!(
                head_end.is_some_and(|e| e == c.len()),
                "{}: the backend got more than the request head\n{}",
                o.name,
                o.dump()
            );
        }
        o.assert_backend_lacks("/smuggled");
    }
}

/// hyper CVE-2021-21299 (RUSTSEC-2021-0020): with several `Transfer-Encoding` fields,
/// hyper took the body as chunked when any field ended in `chunked`, where a next hop
/// reads the last coding, which was not `chunked`, and frames the body otherwise.
/// Anything but exactly one `chunked` is refused (400, or 501 for an unknown coding) and
/// nothing of the request is forwarded. When `chunked` is not the final coding the
/// length cannot be known at all, so the connection must also close (RFC 9112 §6.3) and
/// the GET pipelined after the body never reaches the backend. When `chunked` is final
/// (`gzip, chunked`; `chunked, chunked`) the body's end is known, so that GET may be
/// answered as the next request, alone on its own upstream connection, after the
/// refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2021_21299_multiple_transfer_encodings() {
    let body = format!("5\r\nhello\r\n0\r\n\r\n{SMUGGLED}");
    let te = |lines: &[&str]| post("1.1", lines, &body);
    let methods: &[&str] = &["POST", "GET"];
    // (case, whether chunked is the final coding)
    let cases = [
        (
            case(
                "gzip, chunked",
                te(&["Transfer-Encoding: gzip, chunked"]),
                methods,
            ),
            true,
        ),
        (
            case(
                "chunked, chunked",
                te(&["Transfer-Encoding: chunked, chunked"]),
                methods,
            ),
            true,
        ),
        (
            case(
                "chunked + identity fields",
                te(&["Transfer-Encoding: chunked", "Transfer-Encoding: identity"]),
                methods,
            ),
            false,
        ),
        (
            case(
                "chunked + cow fields",
                te(&["Transfer-Encoding: chunked", "Transfer-Encoding: cow"]),
                methods,
            ),
            false,
        ),
    ];
    let (cases, chunked_final): (Vec<Case>, Vec<bool>) = cases.into_iter().unzip();
    for (o, chunked_final) in run(cases).await.iter().zip(chunked_final) {
        let finals = o.finals();
        assert!(
            finals.first().is_some_and(|s| [400, 501].contains(s)),
            "{}: expected 400 or 501 first, got {finals:?}\n{}",
            o.name,
            o.dump()
        );
        o.assert_backend_lacks("POST");
        o.assert_backend_lacks("hello");
        if !chunked_final {
            o.assert_refused(&[400, 501]);
            assert!(
                finals.len() == 1 && matches!(o.seen.end, "eof" | "reset"),
                "{}: the connection stayed open after a body of unknown length\n{}",
                o.name,
                o.dump()
            );
            continue;
        }
        let targets: Vec<String> = o
            .one_request_per_conn()
            .iter()
            .map(|r| format!("{} {}", r.method(), r.target()))
            .collect();
        if targets.is_empty() {
            assert!(
                finals.len() == 1 && matches!(o.seen.end, "eof" | "reset"),
                "{}: the pipelined GET was neither answered nor the connection closed\n{}",
                o.name,
                o.dump()
            );
        } else {
            assert_eq!(
                (targets, &finals[1..]),
                (vec!["GET /smuggled".to_owned()], &[200][..]),
                "{}: after the refusal, the pipelined GET alone\n{}",
                o.name,
                o.dump()
            );
        }
    }
}

/// hyper CVE-2021-32715 (RUSTSEC-2021-0078): `Content-Length` was parsed with Rust's
/// `u64::from_str`, which takes a leading `+`, so `+5` was a length of 5 where a strict
/// next hop refuses it or reads another length. A length that is not one run of digits
/// (`+5`, `-5`, a list with stray spaces) must be refused with 400, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2021_32715_content_length_with_sign_or_list() {
    let cases = vec![
        case(
            "+5",
            post("1.1", &["Content-Length: +5"], "hello"),
            &["POST"],
        ),
        case(
            "-5",
            post("1.1", &["Content-Length: -5"], "hello"),
            &["POST"],
        ),
        case(
            "' 5 ,5'",
            post("1.1", &["Content-Length:  5 ,5"], "hello"),
            &["POST"],
        ),
    ];
    for o in run(cases).await {
        o.assert_refused(&[400]);
    }
}

/// hyper CVE-2020-35863 (RUSTSEC-2020-0008): a request without `Content-Length` or
/// `Transfer-Encoding` has no body (RFC 9112 §6.3), so bytes after a GET's head are the
/// next request. Here the client pipelines two GETs; both must be answered, in order,
/// and the backend must see two separate, well-formed, bodiless requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2020_35863_get_without_length_has_no_body() {
    let bytes = format!("GET / HTTP/1.1\r\nHost: a\r\n\r\n{SMUGGLED}");
    let o = run(vec![case("GET then GET", bytes.clone(), &["GET", "GET"])])
        .await
        .remove(0);
    assert_eq!(
        o.finals(),
        [200, 200],
        "{}: expected two answers\n{}",
        o.name,
        o.dump()
    );
    let reqs = o.one_request_per_conn();
    let targets: Vec<&str> = reqs.iter().map(Message::target).collect();
    assert_eq!(
        targets,
        ["/", "/smuggled"],
        "{}: expected two requests in order\n{}",
        o.name,
        o.dump()
    );
    assert!(
        reqs.iter()
            .all(|r| r.body.is_empty() && r.framing == Framing::None),
        "{}: a GET went upstream with a body\n{}",
        o.name,
        o.dump()
    );

    // In order: a backend that names the path it answers.
    let b = Backend::start("echo").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let methods = ["GET".to_owned(), "GET".to_owned()];
    let seen = exchange_h1_with(gw.addr("web"), bytes.as_bytes(), &methods, false).await;
    let answers = framing::parse_responses(&seen.raw, &["GET", "GET"], seen.end == "eof")
        .unwrap_or_else(|e| panic!("answers do not parse ({e}): {:?}", seen.raw));
    let paths: Vec<String> = answers
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
            v["path"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(paths, ["/", "/smuggled"], "answers out of order");
}

/// The `Connection: Upgrade` request of the Pingora cases, with the RFC 6455 example key.
const WS_HEAD: &str =
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Pingora CVE-2026-2833: Pingora switched a connection to tunnelling as soon as it saw
/// an Upgrade request, before the upstream agreed with a 101, so bytes the client sent
/// after the head reached the upstream raw on the same connection, where a backend that
/// answered 200 read them as a request of its own. Here those bytes are a second full
/// request on the same write, and the backend answers 200. The gateway must not tunnel:
/// the second request is either answered as the next request (the backend sees it alone
/// on its own connection, after the first answer) or never read (the connection closes);
/// it never reaches the backend inside the first request's exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_2833_no_tunnel_before_101() {
    let bytes = format!("{WS_HEAD}{SMUGGLED}");
    let o = run(vec![case("upgrade answered 200", bytes, &["GET", "GET"])])
        .await
        .remove(0);
    assert!(
        !o.seen.statuses.contains(&101),
        "{}: a 101 the backend never sent\n{}",
        o.name,
        o.dump()
    );
    let finals = o.finals();
    assert!(
        finals == [200, 200] || (finals == [200] && o.seen.end != "quiet"),
        "{}: expected 200 then the second answer or a close, got {finals:?}\n{}",
        o.name,
        o.dump()
    );
    let reqs = o.one_request_per_conn();
    let targets: Vec<&str> = reqs.iter().map(Message::target).collect();
    let want: &[&str] = if finals.len() == 2 {
        &["/ws", "/smuggled"]
    } else {
        &["/ws"]
    };
    assert_eq!(
        targets,
        want,
        "{}: the backend's requests\n{}",
        o.name,
        o.dump()
    );
    assert!(
        reqs.iter().all(|r| r.body.is_empty()),
        "{}: a request carried tunnel bytes as a body\n{}",
        o.name,
        o.dump()
    );
}

/// Pingora CVE-2026-2833, the other side: once the backend does answer 101, bytes flow
/// both ways through the tunnel (a WebSocket echo backend, frames written by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_2833_tunnel_after_101() {
    let (ws, _task) = ws_echo_backend().await;
    let gw = Gateway::start(&one_endpoint_config(ws, ""));
    let mut sock = TcpStream::connect(gw.addr("web")).await.unwrap();
    sock.write_all(WS_HEAD.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&got, b"\r\n\r\n").is_none() {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("no answer to the upgrade")
            .unwrap();
        assert!(
            n > 0,
            "closed before the 101: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head_end = find(&got, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "not a 101: {head:?}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "the backend's accept key did not come through: {head:?}"
    );
    let mut rest = got[head_end..].to_vec();
    for i in 0..3u8 {
        let text = format!("ping {i}");
        // A masked text frame (client to server), then the unmasked echo.
        let mask = [0x37, 0xfa, 0x21, 0x3d + i];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(k, b)| b ^ mask[k % 4]));
        sock.write_all(&frame).await.unwrap();
        let want = [&[0x81, text.len() as u8][..], text.as_bytes()].concat();
        while rest.len() < want.len() {
            let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
                .await
                .expect("no echo through the tunnel")
                .unwrap();
            assert!(n > 0, "the tunnel closed");
            rest.extend_from_slice(&buf[..n]);
        }
        assert_eq!(rest[..want.len()], want[..], "echo of frame {i}");
        rest.drain(..want.len());
    }
}

/// Pingora CVE-2026-2835: Pingora read an HTTP/1.0 request without a length to the end
/// of the connection, so its "body" (here `hello`, then the client's half-close) went
/// upstream, and took `Transfer-Encoding` on HTTP/1.0 and lists of codings at face
/// value. A request without length has a body of 0 bytes (RFC 9112 §6.3): the backend
/// gets the request without `hello`, or the client a 400. `Transfer-Encoding` on
/// HTTP/1.0 is refused (400), as are several codings (400 or 501), nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_2835_http10_body_without_length() {
    let chunked = "5\r\nhello\r\n0\r\n\r\n";
    let lengthless = vec![
        Case {
            half_close: true,
            ..case(
                "1.0, no length, half-close",
                post("1.0", &[], "hello"),
                &["POST"],
            )
        },
        Case {
            half_close: true,
            ..case(
                "1.0 keep-alive, no length, half-close",
                post("1.0", &["Connection: keep-alive"], "hello"),
                &["POST", "GET"],
            )
        },
    ];
    let refused: Vec<(Case, &[u16])> = vec![
        (
            case(
                "1.0 chunked",
                post("1.0", &["Transfer-Encoding: chunked"], chunked),
                &["POST"],
            ),
            &[400],
        ),
        (
            case(
                "1.0 gzip, chunked",
                post("1.0", &["Transfer-Encoding: gzip, chunked"], chunked),
                &["POST"],
            ),
            &[400, 501],
        ),
        (
            case(
                "1.1 identity, chunked",
                post("1.1", &["Transfer-Encoding: identity, chunked"], chunked),
                &["POST"],
            ),
            &[400, 501],
        ),
        (
            case(
                "1.1 gzip + chunked fields",
                post(
                    "1.1",
                    &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
                    chunked,
                ),
                &["POST"],
            ),
            &[400, 501],
        ),
    ];
    let n = lengthless.len();
    let (refused, codes): (Vec<Case>, Vec<&[u16]>) = refused.into_iter().unzip();
    let outcomes = run(lengthless.into_iter().chain(refused).collect()).await;
    for o in &outcomes[..n] {
        o.assert_backend_lacks("hello");
        let status = o.status();
        let first = o.finals().first().copied();
        if first == Some(400) {
            assert!(
                o.used_conns().is_empty(),
                "{}: 400, yet forwarded\n{}",
                o.name,
                o.dump()
            );
            continue;
        }
        assert_eq!(
            first,
            Some(200),
            "{}: expected 200 (forwarded without a body) or 400, got {status:?}\n{}",
            o.name,
            o.dump()
        );
        assert!(
            o.finals()[1..].iter().all(|&s| s >= 400),
            "{}: `hello` answered as a request\n{}",
            o.name,
            o.dump()
        );
        let reqs = o.one_request_per_conn();
        assert_eq!(
            reqs.len(),
            1,
            "{}: one request upstream\n{}",
            o.name,
            o.dump()
        );
        assert!(
            reqs[0].body.is_empty() && reqs[0].method() == "POST",
            "{}: the request went upstream with a body\n{}",
            o.name,
            o.dump()
        );
    }
    for (o, codes) in outcomes[n..].iter().zip(codes) {
        o.assert_refused(codes);
    }
}

/// HAProxy CVE-2023-25725: a header field with an empty name made HAProxy drop the
/// fields after it when forwarding, so the backend read another head (and another
/// length) than the proxy. An empty name is not a token: 400, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2023_25725_empty_header_name() {
    let cases = vec![
        case(
            "': x'",
            "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
            &["GET"],
        ),
        case(
            "':' before a length",
            post("1.1", &[":", "Content-Length: 35"], SMUGGLED),
            &["POST"],
        ),
    ];
    for o in run(cases).await {
        o.assert_refused(&[400]);
    }
}

/// HAProxy CVE-2023-40225: an empty `Content-Length:` was forwarded as is, and a backend
/// that reads it as "no length" or "0" frames the rest (here a request) its own way.
/// An empty length is no length at all: 400, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2023_40225_empty_content_length() {
    let cases = vec![
        case(
            "'Content-Length:'",
            post("1.1", &["Content-Length:"], SMUGGLED),
            &["POST"],
        ),
        case(
            "'Content-Length: '",
            post("1.1", &["Content-Length: "], SMUGGLED),
            &["POST"],
        ),
    ];
    for o in run(cases).await {
        o.assert_refused(&[400]);
    }
}

/// HAProxy CVE-2021-40346: the length of a header name over 255 bytes overflowed into
/// the value's length in HAProxy's internal header block, so a field named
/// `Content-Length0aaa…` (270 bytes) came out of it as a `Content-Length` with another
/// value than the one HAProxy had framed the body with, and the backend took the body
/// (here a request) for the next request. The long field must be refused (400) or
/// treated as an unknown field (forwarded whole, or dropped), never as a length or cut
/// short; the body goes as the one real `Content-Length` says, and nothing becomes a
/// second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2021_40346_long_header_name_is_not_a_length() {
    let names = [
        format!("Content-Length0{}", "a".repeat(255)),
        format!("{}content-length", "x".repeat(256)),
    ];
    let cl = format!("Content-Length: {}", SMUGGLED.len());
    let cases = vec![
        case(
            "Content-Length0aaa… (270 bytes), empty value",
            post("1.1", &[&format!("{}:", names[0]), &cl], SMUGGLED),
            &["POST"],
        ),
        case(
            "xxx…content-length (270 bytes): 0",
            post("1.1", &[&format!("{}: 0", names[1]), &cl], SMUGGLED),
            &["POST"],
        ),
    ];
    for (o, name) in run(cases).await.iter().zip(&names) {
        assert_eq!(name.len(), 270);
        if o.status() == Some(400) {
            o.assert_refused(&[400]);
            continue;
        }
        assert_eq!(
            o.finals(),
            [200],
            "{}: expected 400 or one answer\n{}",
            o.name,
            o.dump()
        );
        let reqs = o.one_request_per_conn();
        assert_eq!(
            reqs.len(),
            1,
            "{}: one request upstream\n{}",
            o.name,
            o.dump()
        );
        let r = &reqs[0];
        assert_eq!(
            r.body,
            SMUGGLED.as_bytes(),
            "{}: the body went upstream mis-sized\n{}",
            o.name,
            o.dump()
        );
        assert_eq!(
            r.header_all("content-length"),
            [SMUGGLED.len().to_string().as_bytes()],
            "{}: the upstream length\n{}",
            o.name,
            o.dump()
        );
        for (n, _) in &r.headers {
            let lower = n.to_ascii_lowercase();
            assert!(
                !lower.contains("content-length")
                    || lower == "content-length"
                    || n.eq_ignore_ascii_case(name),
                "{}: a long field went upstream cut to {n:?}\n{}",
                o.name,
                o.dump()
            );
        }
    }
}

/// Envoy CVE-2019-18802: Envoy did not trim whitespace after a header value, so
/// `Transfer-Encoding: chunked ` (trailing space) was not `chunked` to Envoy but was to
/// the backend, and the two framed the body differently. The gateway may read it as
/// chunked (RFC 9110 §5.5: the whitespace is not part of the value) or refuse it, but
/// never disagree with the backend: when forwarded, the backend sees one chunked
/// request with body `hello` and the pipelined GET as a request of its own; with a
/// `Content-Length` as well it sees one framing only, or nothing (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2019_18802_whitespace_after_transfer_encoding() {
    let body = "5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    let cases = vec![
        case(
            "'chunked ' then GET",
            post("1.1", &["Transfer-Encoding: chunked "], body),
            &["POST", "GET"],
        ),
        case(
            "'chunked\\t' then GET",
            post("1.1", &["Transfer-Encoding: chunked\t"], body),
            &["POST", "GET"],
        ),
        case(
            "Content-Length: 3 and 'chunked '",
            post(
                "1.1",
                &["Content-Length: 3", "Transfer-Encoding: chunked "],
                body,
            ),
            &["POST", "GET"],
        ),
    ];
    let outcomes = run(cases).await;
    for o in &outcomes {
        if o.finals().first().is_some_and(|&s| s == 400 || s == 501) {
            o.assert_refused(&[400, 501]);
            continue;
        }
        let reqs = o.one_request_per_conn();
        let post = reqs
            .first()
            .unwrap_or_else(|| panic!("{}: neither refused nor forwarded\n{}", o.name, o.dump()));
        assert_eq!(
            (post.method(), post.framing, post.body.as_slice()),
            ("POST", Framing::Chunked, &b"hello"[..]),
            "{}: the POST went upstream framed otherwise\n{}",
            o.name,
            o.dump()
        );
        assert!(
            post.header_all("content-length").is_empty(),
            "{}: two framings upstream\n{}",
            o.name,
            o.dump()
        );
        // Pipelined after the chunked body: a request of its own, or (after a repaired
        // CL+TE, which closes the connection) never read.
        let targets: Vec<&str> = reqs[1..].iter().map(Message::target).collect();
        assert!(
            targets.is_empty() || targets == ["/second"],
            "{}: after the POST the backend got {targets:?}\n{}",
            o.name,
            o.dump()
        );
        let finals = o.finals();
        assert!(
            finals.len() > targets.len() && finals[..=targets.len()].iter().all(|&s| s == 200),
            "{}: answers {finals:?} for {} forwarded requests\n{}",
            o.name,
            reqs.len(),
            o.dump()
        );
    }
}
