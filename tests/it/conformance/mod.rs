//! The differential HTTP/1.1 conformance suite: every vector's exact bytes go through
//! ninefold, nginx and HAProxy on raw sockets, each proxy in front of its own recording
//! backend, and the suite compares what each client received and each backend saw.
//!
//! Why differential: "correct" HTTP framing is partly a matter of choice (RFC 9112 often
//! allows either rejecting or repairing), but a gateway that forwards bytes its own
//! parser read one way and the next hop can read another way is a request-smuggling
//! hole whatever the RFC allows. So the suite fails when ninefold
//!
//! - (a) forwards a request whose bytes at the backend are not unambiguously framed, or
//!   whose decoded body differs from the well-formed body the client sent; or delivers
//!   a client answer that is not unambiguously framed, or whose body differs from the
//!   well-formed answer it relayed;
//! - (b) is laxer than both anchors: it forwards (or relays) what nginx and HAProxy both
//!   refused, unless the vector states the forwarding is intended;
//! - (c) misses the vector's own expectation (`vectors::Expect`, `vectors::Check`).
//!
//! The anchors' outcomes are not judged by the rules. Every vector has its own listener
//! on each proxy and its own backend, so all run at once and the suite takes seconds.
//! The table docs/conformance.md shows is checked against the one each run measures
//! (`doc`: ninefold's column always, the anchors' when they are the versions the doc
//! names); `NINEFOLD_CONFORMANCE_BLESS=1` rewrites it. `NINEFOLD_CONFORMANCE_TABLE=PATH`
//! also writes the table to PATH; `NINEFOLD_REQUIRE_ANCHORS=1` (set by scripts/test)
//! turns a missing nginx or HAProxy into a failure instead of a ninefold-only run.

pub(crate) mod anchors;
pub(crate) mod backend;
mod doc;
pub(crate) mod framing;
mod tls;
pub(crate) mod vectors;

use crate::support::Gateway;
use anchors::{Anchor, Site};
use backend::Recorder;
use doc::HEADER;
use framing::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use vectors::{Check, Expect, Vector};

/// How long a client waits for the next byte before deciding nothing more is coming:
/// longer than the backend's own quiet period plus a proxy's turnaround.
const CLIENT_QUIET: Duration = Duration::from_millis(1500);

/// Upper bound for one exchange (nginx and HAProxy time out idle clients after 3 s).
const CLIENT_TOTAL: Duration = Duration::from_secs(6);

/// Exchanges in flight at once: enough to finish in seconds, few enough that two cores
/// running three proxies do not stretch a turnaround past `CLIENT_QUIET`.
const CONCURRENCY: usize = 48;

/// What a client received.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Every status in order, interim ones included.
    pub(crate) statuses: Vec<u16>,
    /// The last final answer (or the 101), when it parsed.
    pub(crate) last: Option<Message>,
    /// The answers parsed completely.
    pub(crate) complete: bool,
    /// The bytes stopped mid-answer.
    pub(crate) cut: bool,
    /// The bytes could not be framed (not merely cut short).
    pub(crate) garbled: Option<String>,
    /// How the exchange ended: eof, reset, quiet, rst, goaway.
    pub(crate) end: &'static str,
    /// Bytes received (h1) or frames (h2), for the verbose dump.
    pub(crate) raw: Vec<u8>,
    /// The h2 stream reset's error code.
    pub(crate) rst: Option<u32>,
}

/// What the backend saw, per the strict checker.
#[derive(Debug)]
enum Fwd {
    Nothing,
    /// Bytes that stop mid-request: the proxy gave up on a message it had started.
    Partial(Vec<Message>),
    Complete(Vec<Message>),
    /// Bytes no strict parser can frame one way only.
    Garbled(String),
}

/// How far a proxy let a vector through, strictest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grade {
    Rejected,
    Aborted,
    Accepted,
}

/// One proxy's outcome for one vector.
struct Outcome {
    seen: Seen,
    fwd: Fwd,
    label: String,
    grade: Grade,
}

/// Held while the anchors run: they are given ports picked by binding and releasing
/// them, so another test of this suite that binds hundreds of ports meanwhile (the TLS
/// twin, `tls`) could take one of them, or be given one of its own.
pub(crate) static ANCHOR_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A proxy under test: its per-vector listeners and backends.
struct Proxy {
    name: &'static str,
    addrs: Vec<SocketAddr>,
    backends: Vec<Arc<Recorder>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let started = Instant::now();
    let vectors = Arc::new(vectors::all());
    let require = std::env::var("NINEFOLD_REQUIRE_ANCHORS").is_ok_and(|v| v == "1");
    let ports = ANCHOR_PORTS.lock().await;

    let nf_backends = recorders(&vectors).await;
    let gw = Gateway::start(&ninefold_config(&nf_backends));
    let mut proxies = vec![Proxy {
        name: "ninefold",
        addrs: (0..vectors.len())
            .map(|i| gw.addr(&format!("v{i}")))
            .collect(),
        backends: nf_backends,
    }];
    let mut anchors = Vec::new();
    for (name, start) in [
        (
            "nginx",
            Anchor::nginx as fn(&[Site]) -> Result<Option<Anchor>, String>,
        ),
        ("haproxy", Anchor::haproxy),
    ] {
        let backends = recorders(&vectors).await;
        let sites: Vec<Site> = vectors
            .iter()
            .zip(&backends)
            .map(|(v, b)| Site {
                h2: v.h2,
                backend: b.addr,
            })
            .collect();
        match start(&sites) {
            Ok(Some(a)) => {
                proxies.push(Proxy {
                    name,
                    addrs: a.addrs.clone(),
                    backends,
                });
                anchors.push(a);
            }
            Ok(None) if require => panic!(
                "{name}: not installed, and NINEFOLD_REQUIRE_ANCHORS=1 \
                 (scripts/test installs nginx and haproxy with apt-get)"
            ),
            Ok(None) => crate::support::skipped(&format!(
                "the conformance suite's {name} column: it is not installed (scripts/test installs it; NINEFOLD_REQUIRE_ANCHORS=1 fails instead)"
            )),
            Err(e) => panic!("{e}"),
        }
    }

    // Every (proxy, vector) exchange at once, bounded.
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for (p, proxy) in proxies.iter().enumerate() {
        for i in 0..vectors.len() {
            let (vectors, sem) = (vectors.clone(), sem.clone());
            let (addr, backend) = (proxy.addrs[i], proxy.backends[i].clone());
            tasks.push((
                p,
                i,
                tokio::spawn(async move {
                    let _permit = sem.acquire().await.unwrap();
                    run_one(addr, &vectors[i], &backend).await
                }),
            ));
        }
    }
    let mut outcomes: Vec<Vec<Option<Outcome>>> = proxies
        .iter()
        .map(|_| (0..vectors.len()).map(|_| None).collect())
        .collect();
    for (p, i, t) in tasks {
        outcomes[p][i] = Some(t.await.unwrap());
    }
    let outcomes: Vec<Vec<Outcome>> = outcomes
        .into_iter()
        .map(|v| v.into_iter().map(Option::unwrap).collect())
        .collect();

    // Judge, print, fail.
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut tally = [0usize; 5];
    for (i, v) in vectors.iter().enumerate() {
        let nf = &outcomes[0][i];
        let anchor_grades: Vec<Grade> = (1..proxies.len()).map(|p| outcomes[p][i].grade).collect();
        let (fails, notes) = judge(v, nf, &anchor_grades);
        if anchor_grades.len() == 2 {
            let (lo, hi) = (
                anchor_grades[0].min(anchor_grades[1]),
                anchor_grades[0].max(anchor_grades[1]),
            );
            let k = if nf.grade < lo {
                0
            } else if nf.grade == lo && lo == hi {
                1
            } else if nf.grade == lo {
                2
            } else if nf.grade <= hi {
                3
            } else {
                4
            };
            tally[k] += 1;
        }
        let mut verdict = if fails.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAIL: {}", fails.join("; "))
        };
        if !notes.is_empty() {
            verdict.push_str(&format!(" ({})", notes.join("; ")));
        }
        let mut row = vec![v.name.to_owned(), v.category.to_owned(), nf.label.clone()];
        for name in ["nginx", "haproxy"] {
            match proxies.iter().position(|p| p.name == name) {
                Some(p) => row.push(outcomes[p][i].label.clone()),
                None => row.push("not installed".to_owned()),
            }
        }
        row.push(verdict);
        rows.push(row);
        if !fails.is_empty() {
            failures.push(format!("{}: {}", v.name, fails.join("; ")));
        }
    }
    // NINEFOLD_CONFORMANCE_DUMP=NAME prints the raw exchange of the vectors whose name
    // contains NAME, on every proxy: the quickest way to see why a row reads as it does.
    if let Ok(filter) = std::env::var("NINEFOLD_CONFORMANCE_DUMP") {
        for (i, v) in vectors
            .iter()
            .enumerate()
            .filter(|(_, v)| v.name.contains(&filter))
        {
            for (p, proxy) in proxies.iter().enumerate() {
                println!(
                    "--- {} via {}\nclient got: {:?}\nbackend got: {:?}",
                    v.name,
                    proxy.name,
                    String::from_utf8_lossy(&outcomes[p][i].seen.raw),
                    proxy.backends[i]
                        .received()
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    print_table(&rows);
    // The summary goes into the doc's table, so it holds counts only; the run's
    // duration is printed beside it.
    let summary = if proxies.len() == 3 {
        format!(
            "{} vectors: ninefold stricter than both anchors {}, like both {}, like the stricter anchor {}, \
             like the laxer anchor {}, laxer than both {}; {} failing",
            vectors.len(),
            tally[0],
            tally[1],
            tally[2],
            tally[3],
            tally[4],
            failures.len(),
        )
    } else {
        let present: Vec<&str> = proxies[1..].iter().map(|p| p.name).collect();
        format!(
            "{} vectors, anchors present: {:?} (no comparison without both); {} failing",
            vectors.len(),
            present,
            failures.len(),
        )
    };
    println!("{summary}; {:.1}s", started.elapsed().as_secs_f64());
    let versions = (proxies.len() == 3).then(|| doc::Versions {
        nginx: Anchor::nginx_version().expect("nginx ran, but `nginx -v` names no version"),
        haproxy: Anchor::haproxy_version().expect("haproxy ran, but `haproxy -v` names no version"),
    });
    let table = doc::Table {
        versions,
        rows,
        summary,
    };
    if let Ok(path) = std::env::var("NINEFOLD_CONFORMANCE_TABLE") {
        std::fs::write(&path, table.render()).unwrap();
    }
    drop(anchors);
    drop(ports);
    assert!(
        failures.is_empty(),
        "{} conformance vectors fail:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    // After the rules: a failing run is neither compared with the doc nor written to it.
    if let Err(e) = doc::check_or_bless(&table, require) {
        panic!("{e}");
    }
}

/// One recording backend per vector, each answering with the vector's upstream bytes.
async fn recorders(vectors: &[Vector]) -> Vec<Arc<Recorder>> {
    let mut out = Vec::new();
    for v in vectors {
        let answer = v
            .upstream
            .clone()
            .unwrap_or_else(|| vectors::default_answer().to_vec());
        out.push(Arc::new(Recorder::start(answer).await));
    }
    out
}

/// One listener per vector (`v0`, `v1`, ...), each routing everything to its own
/// cluster; defaults everywhere else, so the suite judges what ships.
pub(crate) fn ninefold_config(backends: &[Arc<Recorder>]) -> String {
    let mut s = String::from("admin: {bind: \"127.0.0.1:0\"}\nlisteners:\n");
    for i in 0..backends.len() {
        s.push_str(&format!(
            "  - name: v{i}\n    bind: \"127.0.0.1:0\"\n    routes: [{{match: {{path_prefix: /}}, cluster: c{i}}}]\n"
        ));
    }
    s.push_str("clusters:\n");
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!(
            "  - {{name: c{i}, endpoints: [{{address: \"{}\"}}]}}\n",
            b.addr
        ));
    }
    s
}

/// Sends one vector through one proxy and collects both sides.
async fn run_one(addr: SocketAddr, v: &Vector, backend: &Recorder) -> Outcome {
    run_one_via(addr, v, backend, None).await
}

/// [`run_one`], over TLS when a connector is given (HTTP/1 vectors only).
async fn run_one_via(
    addr: SocketAddr,
    v: &Vector,
    backend: &Recorder,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Outcome {
    let client_reqs = client_requests(v);
    let seen = if v.h2 {
        exchange_h2(addr, &v.request).await
    } else {
        let methods: Vec<String> = match &client_reqs {
            Some(r) => r.iter().map(|m| m.method().to_owned()).collect(),
            None => vec![first_word(&v.request)],
        };
        match tls {
            None => exchange_h1(addr, &v.request, &methods).await,
            Some(c) => tls::exchange_h1(c, addr, &v.request, &methods).await,
        }
    };
    backend
        .settle(Duration::from_millis(250), Duration::from_secs(3))
        .await;
    let fwd = forwarded(&backend.received());
    let label = label(&seen, &fwd);
    let grade = grade(v, &seen, &fwd);
    Outcome {
        seen,
        fwd,
        label,
        grade,
    }
}

/// The client's own requests, when they are well-formed by the strict checker (h2: the
/// DATA of stream 1 as the one body).
fn client_requests(v: &Vector) -> Option<Vec<Message>> {
    if v.h2 {
        let mut body = Vec::new();
        let mut at = vectors::H2_PREFACE.len();
        while at + 9 <= v.request.len() {
            let f = &v.request[at..];
            let len = (usize::from(f[0]) << 16) | (usize::from(f[1]) << 8) | usize::from(f[2]);
            if f[3] == vectors::H2_DATA {
                body.extend_from_slice(&f[9..9 + len]);
            }
            at += 9 + len;
        }
        return Some(vec![Message {
            start_line: String::new(),
            status: None,
            headers: Vec::new(),
            framing: framing::Framing::None,
            body,
            wire_len: 0,
            trailers: Vec::new(),
        }]);
    }
    framing::parse_requests(&v.request).ok()
}

fn first_word(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.split([' ', '\t', '\r', '\n'])
        .find(|w| !w.is_empty())
        .unwrap_or("GET")
        .to_owned()
}

/// Writes the bytes, then reads until every answer is complete, the peer closes, or
/// nothing arrives for `CLIENT_QUIET`.
async fn exchange_h1(addr: SocketAddr, request: &[u8], methods: &[String]) -> Seen {
    exchange_h1_with(addr, request, methods, false).await
}

/// [`exchange_h1`], and with `half_close` the client shuts its write side down after the
/// bytes (it sends nothing more, and a peer reading to the end sees the end).
pub(crate) async fn exchange_h1_with(
    addr: SocketAddr,
    request: &[u8],
    methods: &[String],
    half_close: bool,
) -> Seen {
    let seen = Seen {
        end: "reset",
        ..Seen::default()
    };
    let Ok(sock) = TcpStream::connect(addr).await else {
        return seen;
    };
    exchange_h1_on(sock, seen, request, methods, half_close).await
}

/// [`exchange_h1_with`] on a connected stream (plain or TLS).
async fn exchange_h1_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut sock: S,
    mut seen: Seen,
    request: &[u8],
    methods: &[String],
    half_close: bool,
) -> Seen {
    let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
    // A proxy may refuse before reading everything; the answer still matters.
    let _ = tokio::time::timeout(CLIENT_TOTAL, sock.write_all(request)).await;
    if half_close {
        let _ = sock.shutdown().await;
    }
    let deadline = Instant::now() + CLIENT_TOTAL;
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    seen.end = "quiet";
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(CLIENT_QUIET.min(left), sock.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                eof = true;
                seen.end = "eof";
                break;
            }
            Ok(Err(_)) => {
                eof = true;
                seen.end = "reset";
                break;
            }
            Ok(Ok(n)) => {
                seen.raw.extend_from_slice(&buf[..n]);
                if let Ok(msgs) = framing::parse_responses(&seen.raw, &methods, false) {
                    let finals = msgs.iter().filter(|m| m.status >= Some(200)).count();
                    if finals >= methods.len() || msgs.iter().any(|m| m.status == Some(101)) {
                        break;
                    }
                }
            }
        }
    }
    match framing::parse_responses(&seen.raw, &methods, eof) {
        Ok(msgs) => {
            seen.statuses = msgs.iter().filter_map(|m| m.status).collect();
            seen.complete = !msgs.is_empty();
            seen.last = msgs
                .into_iter()
                .rev()
                .find(|m| m.status >= Some(200) || m.status == Some(101));
        }
        Err(e) => {
            seen.statuses = head_statuses(&seen.raw);
            if framing::is_truncation(&e) {
                seen.cut = !seen.raw.is_empty();
            } else {
                seen.garbled = Some(e);
            }
        }
    }
    seen
}

/// The status codes of the heads at the start of `bytes`, leniently, for labels.
fn head_statuses(bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut h = [httparse::EMPTY_HEADER; 256];
        let mut r = httparse::Response::new(&mut h);
        match r.parse(&bytes[at..]) {
            Ok(httparse::Status::Complete(n)) => {
                let code = r.code.unwrap_or(0);
                out.push(code);
                if code >= 200 {
                    break;
                }
                at += n;
            }
            _ => {
                // Still say what the status line claims.
                let line =
                    String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 16)]).into_owned();
                if let Some(code) = line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.get(..3)?.parse().ok())
                {
                    out.push(code);
                }
                break;
            }
        }
    }
    out
}

/// Writes an h2c stream and reads frames until stream 1 ends, is reset, the connection
/// is refused (GOAWAY before stream 1, or a close), or it goes quiet.
async fn exchange_h2(addr: SocketAddr, request: &[u8]) -> Seen {
    let mut seen = Seen {
        end: "reset",
        ..Seen::default()
    };
    let Ok(mut sock) = TcpStream::connect(addr).await else {
        return seen;
    };
    let _ = tokio::time::timeout(CLIENT_TOTAL, sock.write_all(request)).await;
    let deadline = Instant::now() + CLIENT_TOTAL;
    let mut buf = vec![0u8; 64 * 1024];
    let mut body = Vec::new();
    let mut headers = None;
    let mut at = 0;
    seen.end = "quiet";
    'read: loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(CLIENT_QUIET.min(left), sock.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                seen.end = "eof";
                break;
            }
            Ok(Err(_)) => {
                seen.end = "reset";
                break;
            }
            Ok(Ok(n)) => seen.raw.extend_from_slice(&buf[..n]),
        }
        while seen.raw.len() >= at + 9 {
            let f = &seen.raw[at..];
            let len = (usize::from(f[0]) << 16) | (usize::from(f[1]) << 8) | usize::from(f[2]);
            if f.len() < 9 + len {
                break;
            }
            let (kind, flags) = (f[3], f[4]);
            let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
            let payload = f[9..9 + len].to_vec();
            at += 9 + len;
            match (kind, stream) {
                (vectors::H2_HEADERS, 1) => {
                    let block = h2_unpad(&payload, flags, true);
                    if let Some(code) = h2_status(block) {
                        seen.statuses.push(code);
                        if code >= 200 {
                            headers = Some(code);
                        }
                    }
                    if flags & vectors::H2_END_STREAM != 0 {
                        seen.end = "stream end";
                        break 'read;
                    }
                }
                (vectors::H2_DATA, 1) => {
                    body.extend_from_slice(h2_unpad(&payload, flags, false));
                    if flags & vectors::H2_END_STREAM != 0 {
                        seen.end = "stream end";
                        break 'read;
                    }
                }
                (vectors::H2_RST_STREAM, 1) => {
                    seen.rst = payload
                        .get(..4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    seen.end = "rst";
                    break 'read;
                }
                (vectors::H2_GOAWAY, 0) => {
                    let last = payload.get(..4).map_or(0, |c| {
                        u32::from_be_bytes([c[0], c[1], c[2], c[3]]) & 0x7fff_ffff
                    });
                    if last < 1 {
                        seen.end = "goaway";
                        break 'read;
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(code) = headers {
        seen.complete = seen.end == "stream end";
        seen.cut = !seen.complete;
        seen.last = Some(Message {
            start_line: format!("h2 {code}"),
            status: Some(code),
            headers: Vec::new(),
            framing: framing::Framing::None,
            body,
            wire_len: 0,
            trailers: Vec::new(),
        });
    }
    seen
}

/// A frame's payload without padding (and, for HEADERS, the priority fields).
fn h2_unpad(payload: &[u8], flags: u8, headers: bool) -> &[u8] {
    let mut p = payload;
    let mut pad = 0;
    if flags & 0x8 != 0 && !p.is_empty() {
        pad = usize::from(p[0]);
        p = &p[1..];
    }
    if headers && flags & 0x20 != 0 && p.len() >= 5 {
        p = &p[5..];
    }
    &p[..p.len().saturating_sub(pad)]
}

/// `:status` from the start of a response's HPACK block: an indexed static entry, or a
/// literal with a static `:status` name and a plain or Huffman-coded value. Servers
/// send `:status` first and the suite opens a fresh connection per vector, so the
/// dynamic table never matters here.
fn h2_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Dynamic table size updates (001xxxxx) may come first.
    while block.get(i)? & 0xe0 == 0x20 {
        if block[i] & 0x1f == 0x1f {
            i += 1;
            while block.get(i)? & 0x80 != 0 {
                i += 1;
            }
        }
        i += 1;
    }
    let b = *block.get(i)?;
    let from_index = |idx: u8| match idx {
        8 => Some(200),
        9 => Some(204),
        10 => Some(206),
        11 => Some(304),
        12 => Some(400),
        13 => Some(404),
        14 => Some(500),
        _ => None,
    };
    if b & 0x80 != 0 {
        return from_index(b & 0x7f);
    }
    let idx = if b & 0x40 != 0 { b & 0x3f } else { b & 0x0f };
    from_index(idx)?;
    let len_byte = *block.get(i + 1)?;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(i + 2..i + 2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman string of digits only (RFC 7541 Appendix B: `0`-`2` are 5 bits,
/// `3`-`9` are 6 bits), which is all a status needs.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let value = |from: usize, n: usize| bits[from..from + n].iter().fold(0u8, |a, b| a << 1 | b);
    let mut out = String::new();
    let mut at = 0;
    while at < bits.len() {
        let rest = bits.len() - at;
        if rest < 8 && bits[at..].iter().all(|&b| b == 1) {
            break;
        }
        if rest >= 5 && value(at, 5) <= 2 {
            out.push(char::from(b'0' + value(at, 5)));
            at += 5;
        } else if rest >= 6 && (25..=31).contains(&value(at, 6)) {
            out.push(char::from(b'0' + value(at, 6) - 22));
            at += 6;
        } else {
            return None;
        }
    }
    Some(out)
}

/// What the backend saw, per connection, by the strict checker.
fn forwarded(conns: &[Vec<u8>]) -> Fwd {
    let mut msgs = Vec::new();
    let mut partial = false;
    for c in conns.iter().filter(|c| !c.is_empty()) {
        let (m, end) = framing::parse_requests_partial(c);
        msgs.extend(m);
        match end {
            Ok(()) => {}
            Err(e) if framing::is_truncation(&e) => partial = true,
            Err(e) => return Fwd::Garbled(e),
        }
    }
    match (msgs.is_empty(), partial) {
        (true, false) => Fwd::Nothing,
        (_, true) => Fwd::Partial(msgs),
        (false, false) => Fwd::Complete(msgs),
    }
}

/// A compact outcome: `fwd` when the backend got a complete request (`fwd~` only part
/// of one, `fwd!` an ambiguous one), then the client's statuses (`100+200`, `cut` when
/// the answer stopped short, `bad` when it could not be framed) or how it ended.
fn label(seen: &Seen, fwd: &Fwd) -> String {
    let prefix = match fwd {
        Fwd::Nothing => "",
        Fwd::Partial(_) => "fwd~ ",
        Fwd::Complete(_) => "fwd ",
        Fwd::Garbled(_) => "fwd! ",
    };
    let mut s = if seen.statuses.is_empty()
        && !seen.raw.is_empty()
        && seen.last.is_none()
        && seen.garbled.is_some()
    {
        "no status line".to_owned()
    } else if seen.statuses.is_empty() {
        match (seen.end, seen.rst) {
            ("rst", Some(code)) => format!("rst {code}"),
            (end, _) => match end {
                "eof" => "close".to_owned(),
                "quiet" => "hang".to_owned(),
                e => e.to_owned(),
            },
        }
    } else {
        seen.statuses
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("+")
    };
    if !seen.statuses.is_empty() {
        if seen.garbled.is_some() {
            s.push_str(" bad");
        } else if seen.cut {
            s.push_str(" cut");
        }
    }
    format!("{prefix}{s}")
}

/// The final status the upstream's bytes declare (the first non-1xx, or a 101),
/// leniently; `None` for a status line nobody should believe.
fn upstream_status(up: &[u8]) -> Option<u16> {
    let mut at = 0;
    loop {
        let rest = up.get(at..)?;
        let line_end = rest.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let code: u16 = line
            .split(' ')
            .nth(1)
            .filter(|c| c.len() == 3)?
            .parse()
            .ok()?;
        if code >= 200 || code == 101 {
            return Some(code);
        }
        at += rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    }
}

fn grade(v: &Vector, seen: &Seen, fwd: &Fwd) -> Grade {
    let by_backend = match fwd {
        Fwd::Nothing => Grade::Rejected,
        Fwd::Partial(_) => Grade::Aborted,
        Fwd::Complete(_) | Fwd::Garbled(_) => Grade::Accepted,
    };
    let Some(up) = &v.upstream else {
        return by_backend;
    };
    if by_backend == Grade::Rejected {
        return Grade::Rejected;
    }
    let got = seen
        .last
        .as_ref()
        .and_then(|m| m.status)
        .or(seen.statuses.last().copied());
    let relayed = match upstream_status(up) {
        Some(code) => got == Some(code),
        None => got.is_some_and(|c| c < 500),
    };
    match (relayed, seen.complete) {
        (true, true) => Grade::Accepted,
        (true, false) => Grade::Aborted,
        (false, _) => Grade::Rejected,
    }
}

/// Rules (a), (b) and (c) for ninefold's outcome; returns (failures, notes).
fn judge(v: &Vector, nf: &Outcome, anchors: &[Grade]) -> (Vec<String>, Vec<String>) {
    let mut fails = Vec::new();
    let mut notes = Vec::new();
    let client = client_requests(v);
    let seen = &nf.seen;
    let final_status = seen.last.as_ref().and_then(|m| m.status);
    let up_clean = match &v.upstream {
        None => true,
        Some(up) => framing::parse_responses(up, &[first_word(&v.request).as_str()], true).is_ok(),
    };

    // (a) framing towards the backend.
    match (&nf.fwd, &client) {
        (Fwd::Garbled(e), _) => fails.push(format!("forwarded ambiguous framing ({e})")),
        (Fwd::Partial(_), Some(_)) if v.upstream.is_none() => {
            fails.push("forwarded a well-formed request cut short".into())
        }
        (Fwd::Complete(got) | Fwd::Partial(got), Some(sent)) => {
            // A retry (the same request again, after an answer that broke before any of
            // it reached the client) is no smuggled request: only a request the client
            // did not send counts.
            let smuggled = got[sent.len().min(got.len())..].iter().any(|g| {
                !sent
                    .iter()
                    .any(|s| s.start_line == g.start_line && s.body == g.body)
            });
            if got.len() > sent.len() && smuggled {
                fails.push(format!(
                    "forwarded {} requests for {}",
                    got.len(),
                    sent.len()
                ));
            }
            for (k, (g, s)) in got.iter().zip(sent).enumerate() {
                if g.body != s.body {
                    fails.push(format!(
                        "request {k}: forwarded body {:?}, client sent {:?}",
                        String::from_utf8_lossy(&g.body),
                        String::from_utf8_lossy(&s.body)
                    ));
                }
            }
        }
        _ => {}
    }
    // (a) framing towards the client.
    if let Some(e) = &seen.garbled {
        fails.push(format!("answered with ambiguous framing ({e})"));
    }
    if seen.cut && up_clean && matches!(nf.fwd, Fwd::Complete(_)) {
        fails.push("cut a well-formed answer short".into());
    }
    if let (Some(up), Some(last), true) = (&v.upstream, &seen.last, up_clean) {
        let method = first_word(&v.request);
        let ups = framing::parse_responses(up, &[method.as_str()], true).unwrap_or_default();
        if let Some(u) = ups
            .iter()
            .rev()
            .find(|m| m.status >= Some(200) || m.status == Some(101))
        {
            if u.status == last.status && u.body != last.body {
                fails.push(format!(
                    "relayed body {:?}, upstream sent {:?}",
                    String::from_utf8_lossy(&last.body),
                    String::from_utf8_lossy(&u.body)
                ));
            }
        }
    }

    // (b) laxer than both anchors, unless forwarding is what the vector asks for.
    let intended_pass = matches!(v.expect, Expect::Forward | Expect::Relay(..));
    // ForwardOr4xx leaves the choice open, so rule (b) still applies to it.
    if anchors.len() == 2
        && anchors.iter().all(|&g| g < Grade::Accepted)
        && nf.grade == Grade::Accepted
    {
        if intended_pass {
            notes.push("forwarded as intended; both anchors refuse".into());
        } else {
            fails.push("laxer than both anchors".into());
        }
    }

    // (c) the vector's own expectation.
    let backend_empty = matches!(nf.fwd, Fwd::Nothing);
    let refusal = final_status.or(seen.statuses.last().copied());
    match v.expect {
        Expect::Observe => {}
        Expect::Reject(codes) => {
            let refused = if codes.is_empty() {
                refusal.is_none_or(|c| c >= 400)
            } else {
                refusal.is_some_and(|c| codes.contains(&c))
            };
            if !refused {
                fails.push(format!("expected a refusal {codes:?}, got {}", nf.label));
            }
            if !backend_empty {
                fails.push("the backend received bytes".into());
            }
        }
        Expect::ClientError => {
            if !refusal.is_some_and(|c| (400..500).contains(&c)) {
                fails.push(format!("expected a 4xx, got {}", nf.label));
            }
        }
        Expect::ForwardOr4xx if refusal.is_some_and(|c| (400..500).contains(&c)) => {}
        Expect::Forward | Expect::ForwardOr4xx => {
            let want = client.as_ref().map_or(1, Vec::len);
            let got = match &nf.fwd {
                Fwd::Complete(m) => m.len(),
                _ => 0,
            };
            let ok_answers = if v.h2 {
                final_status == Some(200)
            } else {
                let methods: Vec<String> = client
                    .as_ref()
                    .map(|r| r.iter().map(|m| m.method().to_owned()).collect())
                    .unwrap_or_default();
                let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
                framing::parse_responses(&seen.raw, &methods, true).is_ok_and(|m| {
                    let finals: Vec<_> = m.iter().filter(|m| m.status >= Some(200)).collect();
                    finals.len() == want && finals.iter().all(|m| m.status == Some(200))
                })
            };
            if got != want || !ok_answers {
                let or = if v.expect == Expect::ForwardOr4xx {
                    " (or a 4xx)"
                } else {
                    ""
                };
                fails.push(format!(
                    "expected {want} forwarded and answered 200{or}, got {}",
                    nf.label
                ));
            }
        }
        Expect::BadGateway => {
            let reason = seen
                .last
                .as_ref()
                .and_then(|m| m.header("x-ninefold-reason"));
            if final_status != Some(502) || reason.as_deref() != Some("upstream-error") {
                fails.push(format!(
                    "expected 502 x-ninefold-reason: upstream-error, got {} ({reason:?})",
                    nf.label
                ));
            }
        }
        Expect::Relay(code, body) => {
            let got_body = seen.last.as_ref().map(|m| m.body.as_slice());
            if final_status != Some(code) || got_body != Some(body) || !seen.complete {
                fails.push(format!(
                    "expected {code} with body {:?}, got {} with {:?}",
                    String::from_utf8_lossy(body),
                    nf.label,
                    got_body.map(String::from_utf8_lossy)
                ));
            }
        }
    }
    let first_fwd = match &nf.fwd {
        Fwd::Complete(m) | Fwd::Partial(m) => m.first(),
        _ => None,
    };
    for c in &v.checks {
        match *c {
            Check::UpstreamHeader(name, want) => {
                let got = first_fwd.map(|m| m.header_all(name));
                let ok = match (&got, want) {
                    (Some(vals), Some(w)) => vals.len() == 1 && vals[0] == w.as_bytes(),
                    (Some(vals), None) => vals.is_empty(),
                    (None, _) => false,
                };
                if !ok {
                    let shown = got.map(|v| {
                        v.iter()
                            .map(|x| String::from_utf8_lossy(x).into_owned())
                            .collect::<Vec<_>>()
                    });
                    fails.push(format!("upstream {name}: expected {want:?}, got {shown:?}"));
                }
            }
            Check::UpstreamTarget(t) => {
                let got = first_fwd.map(|m| m.target().to_owned());
                if got.as_deref() != Some(t) {
                    fails.push(format!("upstream target: expected {t:?}, got {got:?}"));
                }
            }
            Check::UpstreamChunked => {
                if first_fwd.map(|m| m.framing) != Some(framing::Framing::Chunked) {
                    fails.push(format!(
                        "upstream framing: expected chunked, got {:?}",
                        first_fwd.map(|m| m.framing)
                    ));
                }
            }
            Check::ClientLacks(name) => {
                if let Some(vals) = seen.last.as_ref().map(|m| m.header_all(name)) {
                    if !vals.is_empty() {
                        fails.push(format!(
                            "client got {name}: {:?}",
                            String::from_utf8_lossy(vals[0])
                        ));
                    }
                }
            }
            Check::Continues(n) => {
                let got = seen.statuses.iter().filter(|&&s| s == 100).count();
                if got != n {
                    fails.push(format!("expected {n} 100 Continue, got {got}"));
                }
            }
            Check::Interim(code) => {
                if !seen.statuses.contains(&code) {
                    fails.push(format!("expected an interim {code}, got {}", nf.label));
                }
            }
            Check::KnownGap(why) => {
                notes.push(format!("known gap: {why}; client saw {}", nf.label));
            }
        }
    }
    (fails, notes)
}

fn print_table(rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r).take(5) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 5 {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(c);
            }
        }
        println!("{}", s.trim_end());
    };
    line(HEADER.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[test]
fn vectors_are_many_and_named_once() {
    let all = vectors::all();
    assert!(all.len() >= 80, "only {} vectors", all.len());
    let mut names: Vec<&str> = all.iter().map(|v| v.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "vector names must be unique");
}

#[test]
fn h2_status_reads_indexed_and_huffman_literals() {
    // 0x88: indexed :status 200. 0x48 0x82 0x64 0x02: literal with incremental indexing,
    // name index 8, Huffman "302" (RFC 7541 C.6.1).
    assert_eq!(h2_status(&[0x88]), Some(200));
    assert_eq!(h2_status(&[0x48, 0x82, 0x64, 0x02]), Some(302));
    // A dynamic table size update first, then a plain literal "431".
    assert_eq!(h2_status(&[0x20, 0x08, 0x03, b'4', b'3', b'1']), Some(431));
}
