//! Test support: the real `ninefold` binary as a child process, real hyper backends on
//! loopback (ephemeral ports), and small clients. No fixed ports, no sleeps as
//! synchronisation: readiness is read from the gateway's stdout, and conditions are
//! polled with a deadline.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ninefold")
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

// ---------------------------------------------------------------------------------
// The gateway process

/// A running `ninefold serve`.
pub struct Gateway {
    pub child: Child,
    pub listeners: HashMap<String, SocketAddr>,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Writes `yaml` to a temp file and serves it; waits for "ninefold: ready". A file
    /// that does not say `workers:` gets two (see [`two_workers`]).
    pub fn start(yaml: &str) -> Gateway {
        Self::try_start(&two_workers(yaml)).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Like `start`, returning the stderr text when the gateway exits instead.
    pub fn try_start(yaml: &str) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ninefold.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_file(config, dir)
    }

    pub fn start_file(config: PathBuf, dir: tempfile::TempDir) -> Result<Gateway, String> {
        Self::start_file_with(config, dir, |_| {})
    }

    /// Like `start`, letting `tweak` change the command first (environment, limits).
    pub fn start_with(yaml: &str, tweak: impl FnOnce(&mut Command)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ninefold.yaml");
        std::fs::write(&config, two_workers(yaml)).unwrap();
        Self::start_file_with(config, dir, tweak)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    pub fn start_file_with(
        config: PathBuf,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Command),
    ) -> Result<Gateway, String> {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "-c"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tweak(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let out = child.stdout.take().unwrap();
            let buf = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if line == "ninefold: ready" {
                        let _ = ready_tx.send(());
                    }
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        {
            let err = child.stderr.take().unwrap();
            let buf = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            // Let the reader threads drain.
            std::thread::sleep(Duration::from_millis(50));
            return Err(stderr.lock().unwrap().clone());
        }
        let out = stdout.lock().unwrap().clone();
        let mut listeners = HashMap::new();
        let mut admin = None;
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("ninefold: listener ") {
                let (name, addr) = rest.split_once(" on ").unwrap();
                listeners.insert(name.to_owned(), addr.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("ninefold: admin on ") {
                admin = Some(a.parse().unwrap());
            }
        }
        Ok(Gateway {
            child,
            listeners,
            admin: admin.unwrap(),
            config,
            stdout,
            stderr,
            dir,
        })
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.addr(listener), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Where listener `name` is bound now, as the state API says (for listeners a
    /// reload added, bound to port 0 like every test listener: no port is picked ahead
    /// of the gateway, where another process could take it).
    pub async fn bound(&self, name: &str) -> SocketAddr {
        let state = get(&self.admin_url("/api/v1/state")).await.json();
        let l = state["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name}: {state}"));
        l["address"].as_str().unwrap().parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        // The shell's builtin kill: no dependency on procps being installed.
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", self.pid())])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Rewrites the config file (for reloads).
    pub fn rewrite(&self, yaml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ninefold check -c` on `yaml`; returns (exit code, stdout, stderr).
pub fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ninefold.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args(["check", "-c", "ninefold.yaml"])
        .env_remove("NINEFOLD_ZONE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------
// Backends

/// A test backend: counts hits, answers by path.
///
/// - `/slow/MS`: waits MS milliseconds first.
/// - `/big/N`: streams N bytes.
/// - `/status/CODE`: answers CODE.
/// - `/stall`: sends 10 bytes of a 100-byte body, then nothing.
/// - `/health`: the answer set by [`Backend::set_health`] (200 and
///   `{"status":"ok","checks":{"db":"ok"}}` at first); not counted in `hits`.
/// - POST anything: answers with the byte count of the body (streamed, never held).
/// - anything else: JSON with the backend's name and the request's headers.
/// - a query parameter `h=NAME:VALUE` adds that response header (e.g.
///   `h=cache-control:private`), on any path.
///
/// [`Backend::fail_with`] and [`Backend::delay`] turn a healthy backend into a failing
/// or slow one for the same URLs (the fallback tests need the same URL to go bad).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    /// Connections accepted.
    conns: Arc<AtomicU64>,
    health: Arc<Mutex<(u16, String)>>,
    ctl: Arc<Ctl>,
    task: tokio::task::JoinHandle<()>,
}

/// Misbehaviour switched on at run time.
#[derive(Default)]
struct Ctl {
    /// Status answered to every request but `/health`; 0: behave.
    fail: std::sync::atomic::AtomicU16,
    /// Milliseconds to wait before answering; 0: none.
    delay_ms: AtomicU64,
    /// Set when a request handler panicked; dropping the backend then fails the test.
    panicked: std::sync::atomic::AtomicBool,
}

/// Marks the backend as panicked when a connection's task unwinds through it.
struct PanicFlag(Arc<Ctl>);

impl Drop for PanicFlag {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, Ordering::Relaxed);
        }
    }
}

/// The body of a passing `/health`, in the seed's shape.
pub const HEALTH_OK: &str = r#"{"status":"ok","checks":{"db":"ok"}}"#;

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Mutex::new((200, HEALTH_OK.to_owned())));
        let ctl = Arc::new(Ctl::default());
        let name_s: Arc<str> = name.into();
        let h = hits.clone();
        let accepted = conns.clone();
        let hl = health.clone();
        let cl = ctl.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let name = name_s.clone();
                let hits = h.clone();
                let health = hl.clone();
                let ctl = cl.clone();
                let flag = PanicFlag(ctl.clone());
                tokio::spawn(async move {
                    let _flag = flag;
                    let svc = service_fn(move |req| {
                        let name = name.clone();
                        let hits = hits.clone();
                        let health = health.clone();
                        let ctl = ctl.clone();
                        async move {
                            if req.uri().path() == "/health" {
                                let (code, body) = health.lock().unwrap().clone();
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(code)
                                        .header("content-type", "application/json")
                                        .body(full(body))
                                        .unwrap(),
                                );
                            }
                            let delay = ctl.delay_ms.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            let fail = ctl.fail.load(Ordering::Relaxed);
                            if fail > 0 {
                                hits.fetch_add(1, Ordering::Relaxed);
                                return Ok(Response::builder()
                                    .status(fail)
                                    .header("x-backend", &*name)
                                    .body(full("failing"))
                                    .unwrap());
                            }
                            let extra: Vec<(String, String)> = req
                                .uri()
                                .query()
                                .unwrap_or("")
                                .split('&')
                                .filter_map(|kv| kv.strip_prefix("h="))
                                .filter_map(|h| h.split_once(':'))
                                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                .collect();
                            let mut resp = backend_answer(&name, &hits, req).await;
                            for (k, v) in extra {
                                resp.headers_mut().append(
                                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            conns,
            health,
            ctl,
            task,
        }
    }

    /// Answers `status` to every request but `/health` from now on (0: behave again).
    pub fn fail_with(&self, status: u16) {
        self.ctl.fail.store(status, Ordering::Relaxed);
    }

    /// Waits `d` before every answer from now on (zero: no wait).
    pub fn delay(&self, d: Duration) {
        self.ctl
            .delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets what `/health` answers from now on.
    pub fn set_health(&self, status: u16, body: &str) {
        *self.health.lock().unwrap() = (status, body.to_owned());
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn conns(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    /// Stops the backend; a handler that panicked fails the test here (tokio would
    /// only have closed that connection).
    fn drop(&mut self) {
        self.task.abort();
        if self.ctl.panicked.load(Ordering::Relaxed) && !std::thread::panicking() {
            panic!("backend {} panicked while serving a request", self.name);
        }
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

async fn backend_answer(name: &str, hits: &AtomicU64, req: Request<Incoming>) -> Response<BoxBody> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        return Response::builder()
            .status(code)
            .header("x-backend", name)
            .body(full(""))
            .unwrap();
    }
    if path == "/stall" {
        // Ten bytes of a hundred, then silence.
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(
            Bytes::from_static(b"0123456789"),
        ))]);
        let stream = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        return Response::builder()
            .header("x-backend", name)
            .header("content-length", "100")
            .body(StreamBody::new(stream).boxed())
            .unwrap();
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let n: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(n, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let take = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take as usize))),
                    left - take,
                ))
            }
        });
        return Response::builder()
            .header("x-backend", name)
            .header("content-length", n.to_string())
            .body(StreamBody::new(stream).boxed())
            .unwrap();
    }
    if req.method() == hyper::Method::POST {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        return Response::builder()
            .header("x-backend", name)
            .body(full(format!("{{\"received\":{n}}}")))
            .unwrap();
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").into()))
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": path,
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    Response::builder()
        .header("x-backend", name)
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-not-pass")
        .body(full(body.to_string()))
        .unwrap()
}

/// A WebSocket echo backend (raw TCP + tungstenite).
pub async fn ws_echo_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------
// Clients

/// A simple answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody>;

/// An HTTP/1.1 client with keep-alive.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn send(c: &HttpClient, req: Request<BoxBody>) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (p, b) = resp.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    Answer {
        status: p.status,
        headers: p.headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(&client(), Request::get(url).body(empty()).unwrap()).await
}

/// Sends `n` GETs over one keep-alive client and asserts each answers 200.
pub async fn get_ok_n(url: &str, n: usize) {
    let c = client();
    for i in 0..n {
        let r = send(&c, Request::get(url).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200, "request {i} of {n}");
    }
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(empty()).unwrap()).await
}

pub async fn post(url: &str, token: Option<&str>) -> Answer {
    let mut b = Request::post(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(&client(), b.body(empty()).unwrap()).await
}

pub fn empty() -> BoxBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn body(s: impl Into<Bytes>) -> BoxBody {
    full(s)
}

/// An address that refuses connections for as long as the returned socket lives: bound
/// but never listening, so no other process can take the port meanwhile (unlike a port
/// that was bound and released).
pub fn refusing_endpoint() -> (socket2::Socket, std::net::SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// `yaml` with `workers: 2` at its end unless it sets `workers` itself: the suite runs
/// many gateways at once, and the default (one worker per core) would start dozens of
/// threads each on a large machine, and more scheduling noise than the tests measure.
/// Appended, so the lines and columns of the file's own keys stay where they are.
pub fn two_workers(yaml: &str) -> String {
    if yaml.lines().any(|l| l.starts_with("workers:")) {
        return yaml.to_owned();
    }
    let sep = if yaml.ends_with('\n') { "" } else { "\n" };
    format!("{yaml}{sep}workers: 2\n")
}

/// Says on the terminal, even under `cargo test`'s output capture (which takes
/// `print!` and `eprint!` only), that a part of a test was skipped and why: a plain
/// `cargo test` never skips silently (`scripts/test` sets the `NINEFOLD_REQUIRE_*`
/// variables, under which a missing tool fails the test instead).
pub fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "note: skipped {what}");
}

/// Config YAML: listener `web` on an ephemeral port, one catch-all route to cluster
/// `app` with the single endpoint `addr`; `opts` adds cluster keys (ending in ", ").
pub fn one_endpoint_config(addr: impl std::fmt::Display, opts: &str) -> String {
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes: [{{match: {{path_prefix: /}}, cluster: app}}]
clusters:
  - {{name: app, {opts}endpoints: [{{address: \"{addr}\"}}]}}
"
    )
}

/// Config YAML for one listener `web` on an ephemeral port with one route to cluster
/// `app` over `backends`.
pub fn simple_config(backends: &[&Backend], extra_cluster: &str, extra_route: &str) -> String {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    config_for(&addrs, extra_cluster, extra_route)
}

/// [`simple_config`] over endpoint addresses (origin processes, dead endpoints, ...).
pub fn config_for(addrs: &[SocketAddr], extra_cluster: &str, extra_route: &str) -> String {
    let eps: String = addrs
        .iter()
        .map(|a| format!("      - {{address: \"{a}\"}}\n"))
        .collect();
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 2
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: main
        match: {{path_prefix: /}}
        cluster: app
{extra_route}
clusters:
  - name: app
{extra_cluster}
    endpoints:
{eps}"
    )
}

// ---------------------------------------------------------------------------------
// Origin processes (`ninefold origin`): backends that can be killed for real

/// A `ninefold origin` child process; its stdout (one line per request) is collected.
pub struct Origin {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    /// Starts an origin on `listen` (port 0: any) and waits until it listens.
    pub fn start_on(name: &str, listen: &str) -> Origin {
        let mut child = Command::new(bin())
            .args(["origin", "--name", name, "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some((_, a)) = line.split_once(" listening on ") {
                    let _ = tx.send(a.parse::<SocketAddr>().unwrap());
                } else {
                    l.lock().unwrap().push(line);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("origin did not start");
        Origin {
            name: name.to_owned(),
            addr,
            child,
            log,
        }
    }

    pub fn start(name: &str) -> Origin {
        Self::start_on(name, "127.0.0.1:0")
    }

    /// Sends a signal (`KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// A handle that can signal the process from another task.
    pub fn signal_handle(&self) -> Signaller {
        Signaller(self.child.id())
    }

    /// Request lines it logged (`origin NAME METHOD PATH BODY`).
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signals a process by pid (see [`Origin::signal_handle`]).
pub struct Signaller(u32);

impl Signaller {
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.0.to_string()])
            .status();
    }

    pub fn kill(&self) {
        self.signal("KILL");
    }
}

/// A TLS client that trusts `trust` and offers `alpn`.
pub fn tls_connector(
    trust: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(ninefold::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The environment of examples/fleet-dns.yaml for one gateway of three (`check` reads
/// it with these set).
pub const FLEET_ENV: [(&str, &str); 7] = [
    ("NINEFOLD_SELF_IP", "10.0.1.10"),
    ("NINEFOLD_FLEET_A", "10.0.1.10"),
    ("NINEFOLD_FLEET_B", "10.0.2.10"),
    ("NINEFOLD_FLEET_C", "10.0.3.10"),
    ("NINEFOLD_ADMIN_TOKEN", "t"),
    ("NINEFOLD_APP_1", "10.0.1.21:8000"),
    ("NINEFOLD_APP_2", "10.0.2.21:8000"),
];

/// Requests through the gateway until stopped: how many answered, how many failed.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` keep-alive clients GETting `url`, each waiting `pause` between
    /// requests; bounded to two minutes.
    pub fn start(url: String, clients: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, url) =
                    (stop.clone(), ok.clone(), failed.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    // Bounded: at most two minutes of requests.
                    let end = Instant::now() + Duration::from_secs(120);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let req = hyper::Request::get(&url).body(empty()).unwrap();
                        match tokio::time::timeout(Duration::from_secs(15), c.request(req)).await {
                            Ok(Ok(r)) if r.status() == 200 => {
                                let _ = r.into_body().collect().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Stops the clients; (answered 200, failed).
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Polls `fetch` until `f` holds of what it returns (not null), or panics naming
/// `what` with the gateway's log.
pub async fn until_json<Fut: std::future::Future<Output = serde_json::Value>>(
    g: &Gateway,
    what: &str,
    secs: u64,
    mut fetch: impl FnMut() -> Fut,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = fetch().await;
        if !v.is_null() && f(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {secs}s; {v:#}\nlog:\n{}", g.stderr());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
