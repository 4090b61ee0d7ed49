//! Fuzz target: the whole HTTP/1.1 request path, bytes in → the gateway's answer and
//! what the upstream receives.
//!
//! The real gateway runs in this process (started once), in front of a recording
//! backend that speaks raw TCP. Each input is written on a fresh client connection;
//! then the target checks, with the strict framing checker of the conformance tests
//! (`tests/it/conformance/framing.rs`, included as is so there is one checker):
//!
//! - nothing panicked, in any thread (a panic aborts the process, which libFuzzer
//!   reports as a crash);
//! - every upstream connection carried well-framed HTTP/1.1 requests: no CL+TE, no
//!   duplicate Content-Length, well-formed chunked bodies. A request cut short is only
//!   a finding when the client's own bytes were complete requests: when the client's
//!   body stops early, a streaming proxy has nothing more to send;
//! - what the client read parses as well-framed HTTP/1.1 responses, matched to its
//!   request methods. An answer cut short is only a finding when the client's bytes
//!   were complete requests and the gateway closed the connection. Refusing an input
//!   (a 4xx) is a fine answer. Inputs starting with the HTTP/2 preface are answered in
//!   h2 frames, so only the upstream side is checked for them.
#![no_main]

#[path = "../../tests/it/conformance/framing.rs"]
mod framing;

use libfuzzer_sys::fuzz_target;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// What the backend answers to every request; `connection: close` keeps each upstream
/// connection to one request, so connections map to inputs without guessing.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// How long the client waits for the gateway's answer, and the backend for the rest
/// of a request, before giving up. Short: most mutated inputs are refused at once, and
/// these bound the cost of the rest.
const CLIENT_READ: Duration = Duration::from_millis(200);
const CLIENT_TOTAL: Duration = Duration::from_millis(600);
const BACKEND_IDLE: Duration = Duration::from_millis(300);

/// One connection the backend accepted.
#[derive(Default)]
struct Conn {
    bytes: Vec<u8>,
    /// The gateway closed it, or it went idle; nothing more will be recorded.
    done: bool,
}

/// The recording backend: every accepted connection, in order.
struct Backend {
    addr: SocketAddr,
    conns: Mutex<Vec<Arc<Mutex<Conn>>>>,
    /// Non-blocking; accepted from only with `conns` locked.
    listener: TcpListener,
}

struct Harness {
    backend: Arc<Backend>,
    listener: SocketAddr,
    /// `NINEFOLD_FUZZ_DEBUG=1`: print each exchange (for reading a reproducer).
    debug: bool,
    /// Kept for the life of the process: dropping it would stop the workers.
    gateway: ninefold::server::Gateway,
}

/// How long an input waits for the last one's connections to end in the gateway.
const GATEWAY_QUIET: Duration = Duration::from_secs(2);

impl Harness {
    /// Waits (bounded) until the gateway holds no client connection, so that no
    /// request of the last input can still open an upstream connection, which the
    /// backend would count as this input's (on a busy machine one did: an earlier
    /// input's cut-short body showed up under a later, complete one).
    fn wait_quiet(&self) {
        let open = self
            .gateway
            .shared()
            .metrics
            .open_connections
            .with_label_values(&["web"]);
        let deadline = Instant::now() + GATEWAY_QUIET;
        while open.get() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(start)
}

fn start() -> Harness {
    // With `#![no_main]` Rust's runtime setup never runs, so SIGPIPE keeps its default
    // action: a write to a socket the peer has closed (the gateway answering a client
    // that gave up, or writing a body to a backend that closed) would kill the process
    // without a word, which libFuzzer's fork mode counts as a crash with no input.
    // The ninefold binary ignores it as every Rust program does; do the same.
    // SAFETY: signal(2) with SIG_IGN is process-wide and touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // A panic in a gateway worker thread would otherwise only end that task or thread;
    // aborting turns it into a crash libFuzzer reports with the input.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));

    let backend = Backend::start();
    let yaml = format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
access_log: off
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    protocol: http
    routes:
      - name: all
        match: {{path_prefix: /}}
        cluster: backend
clusters:
  - name: backend
    endpoints:
      - {{address: \"{}\"}}
",
        backend.addr
    );
    let source = ninefold::server::ConfigSource::Text {
        name: "fuzz.yaml".into(),
        text: yaml,
    };
    let cfg = ninefold::server::load(&source).unwrap_or_else(|e| panic!("fuzz config: {e}"));
    let gateway = ninefold::server::Gateway::start(cfg, source).expect("gateway starts");
    let listener = gateway
        .bound()
        .into_iter()
        .find(|(name, _)| name == "web")
        .map(|(_, addr)| addr)
        .expect("listener web is bound");
    Harness {
        backend,
        listener,
        debug: std::env::var_os("NINEFOLD_FUZZ_DEBUG").is_some(),
        gateway,
    }
}

// === impl Backend ===

impl Backend {
    fn start() -> Arc<Backend> {
        let socket = TcpListener::bind("127.0.0.1:0").expect("backend binds");
        socket
            .set_nonblocking(true)
            .expect("backend listener non-blocking");
        let backend = Arc::new(Backend {
            addr: socket.local_addr().unwrap(),
            conns: Mutex::new(Vec::new()),
            listener: socket,
        });
        let b = backend.clone();
        thread::Builder::new()
            .name("fuzz-backend".into())
            .spawn(move || loop {
                // Accepting and recording happen under one lock, so `reset` sees every
                // connection the kernel handed out either recorded or still queued.
                let accepted = {
                    let mut conns = b.conns.lock().unwrap();
                    match b.listener.accept() {
                        Ok((stream, _)) => {
                            let conn = Arc::new(Mutex::new(Conn::default()));
                            conns.push(conn.clone());
                            Some((stream, conn))
                        }
                        Err(_) => None,
                    }
                };
                match accepted {
                    Some((stream, conn)) => {
                        thread::spawn(move || serve(stream, &conn));
                    }
                    None => thread::sleep(Duration::from_micros(200)),
                }
            })
            .unwrap();
        backend
    }

    /// Forgets the last input's connections, those still in the listener's queue too
    /// (they are served, not recorded); called before each input, once the gateway is
    /// quiet ([`Harness::wait_quiet`]), so none of the last input's can come later.
    fn reset(&self) {
        let mut conns = self.conns.lock().unwrap();
        while let Ok((stream, _)) = self.listener.accept() {
            thread::spawn(move || serve(stream, &Mutex::new(Conn::default())));
        }
        conns.clear();
    }

    /// Waits (bounded) until every connection is done, then returns their bytes and
    /// whether each one finished (false: still open at the deadline).
    fn collect(&self, deadline: Instant) -> Vec<(Vec<u8>, bool)> {
        loop {
            let all_done = self
                .conns
                .lock()
                .unwrap()
                .iter()
                .all(|c| c.lock().unwrap().done);
            if all_done || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        conns
            .into_iter()
            .map(|c| {
                let c = c.lock().unwrap();
                (c.bytes.clone(), c.done)
            })
            .collect()
    }
}

/// Records one upstream connection: answers once a request looks complete (or the
/// gateway goes quiet), then keeps recording until the gateway closes, so bytes sent
/// after the first request (a smuggled second one) are caught too.
fn serve(mut stream: TcpStream, conn: &Mutex<Conn>) {
    let _ = stream.set_read_timeout(Some(BACKEND_IDLE));
    let mut answered = false;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut c = conn.lock().unwrap();
                c.bytes.extend_from_slice(&buf[..n]);
                if !answered && request_end(&c.bytes) {
                    drop(c);
                    answered = true;
                    let _ = stream.write_all(ANSWER);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Quiet for BACKEND_IDLE: answer what came (the gateway may wait for it),
            // or give up when already answered.
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if answered {
                    break;
                }
                answered = true;
                let _ = stream.write_all(ANSWER);
            }
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    conn.lock().unwrap().done = true;
}

/// Whether `buf` holds at least one whole request, or something malformed enough that
/// waiting for more is pointless. Only decides when the backend answers; whether the
/// bytes are well framed is the checker's call.
fn request_end(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return false,
        Err(_) => return true,
    };
    let mut chunked = false;
    let mut length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        }
    }
    let body = &buf[head..];
    if chunked {
        chunked_end(body)
    } else {
        body.len() >= length.unwrap_or(0)
    }
}

/// Whether a chunked body (with trailers) is complete or hopeless.
fn chunked_end(mut body: &[u8]) -> bool {
    loop {
        let Some(line) = body.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size = std::str::from_utf8(&body[..line])
            .ok()
            .map(|l| l.split(';').next().unwrap_or("").trim())
            .and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size else { return true };
        body = &body[line + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            return body.starts_with(b"\r\n") || body.windows(4).any(|w| w == b"\r\n\r\n");
        }
        if body.len() < size + 2 {
            return false;
        }
        body = &body[size + 2..];
    }
}

// === the target ===

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.wait_quiet();
    h.backend.reset();
    let client = framing::parse_requests(data);
    let methods = methods(data, client.as_deref().ok());
    let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
    let ending = match &client {
        Ok(msgs) if !msgs.is_empty() => Ending::Answers(msgs.len()),
        Err(e) if !framing::is_truncation(e) => Ending::QuietThenShutdown,
        _ => Ending::Shutdown,
    };
    let (answer, eof) = exchange(h.listener, data, ending, &methods);
    let upstream = h.backend.collect(Instant::now() + BACKEND_IDLE * 2);
    if h.debug {
        eprintln!("client sent: {:?}", String::from_utf8_lossy(data));
        eprintln!(
            "answer (eof: {eof}): {:?}",
            String::from_utf8_lossy(&answer)
        );
        for (bytes, done) in &upstream {
            eprintln!(
                "upstream (done: {done}): {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    check(data, client.is_ok(), &methods, &answer, eof, &upstream);
});

/// How the client ends its side of an exchange, from what the checker made of its bytes.
#[derive(Clone, Copy)]
enum Ending {
    /// This many complete requests: keep the write half open until as many final
    /// answers came. hyper (without half-close support) drops a request whose client
    /// shut its write side before the answer, which would make the answer a race.
    Answers(usize),
    /// Cut short (or empty): shut the write side at once, so the gateway sees the end
    /// instead of waiting for a timeout.
    Shutdown,
    /// Refused by the strict checker, but a more lenient parser may take it whole
    /// (these are the inputs smuggling hides in): keep the write half open until the
    /// gateway goes quiet for `CLIENT_QUIET`, then shut it and read to the end, so
    /// what the gateway does with the whole input is seen.
    QuietThenShutdown,
}

/// How long a `QuietThenShutdown` client waits for more of the answer.
const CLIENT_QUIET: Duration = Duration::from_millis(100);

/// Sends `data` on a fresh connection and reads the answer until the gateway closes
/// (`eof`), `ending` says it is all there, or the time is up.
fn exchange(addr: SocketAddr, data: &[u8], ending: Ending, methods: &[&str]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("gateway accepts");
    let _ = s.set_nodelay(true);
    // The gateway may answer and close before reading everything: not an error.
    let _ = s.write_all(data);
    let mut open = match ending {
        Ending::Shutdown => {
            let _ = s.shutdown(Shutdown::Write);
            false
        }
        _ => true,
    };
    let quiet = matches!(ending, Ending::QuietThenShutdown);
    let _ = s.set_read_timeout(Some(if quiet { CLIENT_QUIET } else { CLIENT_READ }));
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (answer, true),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after the answer is also the gateway closing.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (answer, true),
            Err(_) if quiet && open => {
                let _ = s.shutdown(Shutdown::Write);
                let _ = s.set_read_timeout(Some(CLIENT_READ));
                open = false;
            }
            Err(_) => return (answer, false),
        }
        if let Ending::Answers(n) = ending {
            let finals = framing::parse_responses(&answer, methods, false)
                .map(|r| r.iter().filter(|m| m.status >= Some(200)).count())
                .unwrap_or(0);
            if finals >= n {
                return (answer, false);
            }
        }
        if start.elapsed() > CLIENT_TOTAL {
            return (answer, false);
        }
    }
}

/// The assertions; see the file's header.
fn check(
    data: &[u8],
    client_complete: bool,
    methods: &[&str],
    answer: &[u8],
    eof: bool,
    upstream: &[(Vec<u8>, bool)],
) {
    for (i, (bytes, done)) in upstream.iter().enumerate() {
        if let Err(e) = framing::parse_requests(bytes) {
            // A request cut short upstream is expected when the client's was, or
            // when the gateway had not finished sending by the deadline.
            if framing::is_truncation(&e) && (!client_complete || !done) {
                continue;
            }
            panic!(
                "upstream connection {i} is not well framed: {e}\nclient sent: {:?}\nupstream got: {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(bytes)
            );
        }
    }
    // An HTTP/2 preface switches the connection to h2: the answer is frames.
    if is_h2(data) {
        return;
    }
    if let Err(e) = framing::parse_responses(answer, methods, eof) {
        // An answer cut short is not ambiguous framing: the gateway may drop a
        // request whose client shut its write side, and a read can time out.
        if framing::is_truncation(&e) && (!client_complete || !eof) {
            return;
        }
        panic!(
            "the answer is not well framed: {e}\nclient sent: {:?}\nanswer: {:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(answer)
        );
    }
}

/// Methods of the client's requests, in order, for reading the answers (a HEAD
/// response has no body). Best effort when the input is not well framed: the requests
/// complete before the error, then the method of the next request line, if any.
fn methods(data: &[u8], parsed: Option<&[framing::Message]>) -> Vec<String> {
    if let Some(msgs) = parsed {
        return msgs.iter().map(|m| m.method().to_owned()).collect();
    }
    let (msgs, _) = framing::parse_requests_partial(data);
    let rest = &data[msgs.iter().map(|m| m.wire_len).sum::<usize>()..];
    let mut out: Vec<String> = msgs.iter().map(|m| m.method().to_owned()).collect();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(rest);
    out.extend(req.method.map(str::to_owned));
    out
}

fn is_h2(data: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = data.len().min(PREFACE.len());
    n > 0 && data[..n] == PREFACE[..n]
}
