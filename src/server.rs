//! The process: worker threads that serve the data path, and the control plane that
//! starts them, reloads the configuration and shuts down gracefully.
//!
//! Thread per core, like nginx: each worker runs its own current_thread tokio runtime
//! and its own listening socket per listener (SO_REUSEPORT, so the kernel spreads
//! connections), and a connection lives and dies on the worker that accepted it,
//! together with its upstream connections (see `upstream::pool`). What workers share is
//! the [`Shared`] state: one `ArcSwap<Snapshot>` and atomics.
//!
//! The control plane (the main thread) owns the listener sockets' lifecycle. A reload
//! validates the new file, builds a new snapshot, binds sockets for new listeners,
//! and only when all of that worked swaps the snapshot and hands the sockets to the
//! workers; removed listeners stop accepting. A failed reload changes nothing.
//! Connections already open, including WebSocket tunnels and h2 connections, carry on:
//! each request reads whatever snapshot is current when it starts.

use crate::config::{self, Config, ListenerProtocol};
use crate::metrics::Metrics;
use crate::proxy::{self, ConnCtx};
use crate::snapshot::Snapshot;
use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::snapshot::Shared;

/// Where the configuration comes from, so a reload can read it again.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A file, re-read at each reload.
    File(PathBuf),
    /// Text held in memory (the demo).
    Text {
        /// Name used in messages.
        name: String,
        /// The YAML.
        text: String,
    },
}

/// Requests the admin API sends to the control plane.
pub enum ControlRequest {
    /// Reload the configuration; the answer says what happened.
    Reload(oneshot::Sender<Result<ReloadOutcome, String>>),
}

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    /// New snapshot generation.
    pub generation: u64,
    /// Listeners started.
    pub listeners_added: Vec<String>,
    /// Listeners stopped.
    pub listeners_removed: Vec<String>,
    /// Settings that changed but only take effect at restart.
    pub needs_restart: Vec<String>,
}

/// The running gateway (control plane side).
pub struct Gateway {
    shared: Arc<Shared>,
    source: ConfigSource,
    workers: Vec<Worker>,
    listeners: HashMap<String, Active>,
    control_rx: mpsc::Receiver<ControlRequest>,
    /// Admin listener address actually bound.
    pub admin_addr: SocketAddr,
    slo_stop: watch::Sender<bool>,
    slo_thread: Option<std::thread::JoinHandle<()>>,
    health_stop: watch::Sender<bool>,
    health_thread: Option<std::thread::JoinHandle<()>>,
}

struct Worker {
    tx: mpsc::UnboundedSender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Active {
    bind: SocketAddr,
    protocol: ListenerProtocol,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

enum Cmd {
    Listen {
        name: Arc<str>,
        socket: std::net::TcpListener,
        tls: bool,
        stop: watch::Receiver<bool>,
    },
    Shutdown {
        grace: Duration,
    },
}

/// Reads a config source.
pub fn load_source(source: &ConfigSource) -> Result<Config, String> {
    match source {
        ConfigSource::File(p) => config::load(p).map_err(|e| e.to_string()),
        ConfigSource::Text { name, text } => {
            config::parse(name, text, std::path::Path::new(".")).map_err(|e| e.to_string())
        }
    }
}

/// Refuses settings whose behaviour is not built yet (see `Config::unsupported`).
pub fn refuse_unsupported(cfg: &Config) -> Result<(), String> {
    if cfg.unsupported.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = cfg.unsupported.iter().map(ToString::to_string).collect();
    Err(lines.join("\n"))
}

// === impl Gateway ===

impl Gateway {
    /// Validates `cfg`, binds every listener and the admin API, and starts the workers.
    pub fn start(cfg: Config, source: ConfigSource) -> anyhow::Result<Gateway> {
        refuse_unsupported(&cfg).map_err(|e| anyhow!("{e}"))?;
        let metrics = Metrics::new()?;
        let cfg = Arc::new(cfg);
        let slo = crate::slo::Engine::new(
            cfg.state_dir.as_deref(),
            cfg.state_flush,
            Arc::new(crate::slo::engine::SystemClock),
            metrics.slo_alert_firing.clone(),
        );
        slo.update(&cfg.slos);
        let snap =
            Snapshot::build(cfg.clone(), None, &metrics, &slo).map_err(|e| anyhow!("{e}"))?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap),
            metrics,
            bound: ArcSwap::from_pointee(Vec::new()),
            slo: slo.clone(),
            faults: Default::default(),
        });
        let (control_tx, control_rx) = mpsc::channel(16);
        let admin_addr = crate::admin::start(shared.clone(), control_tx, &cfg.admin)
            .context("cannot start the admin listener")?;
        slo.set_admin(admin_addr);
        let (slo_stop, slo_stop_rx) = watch::channel(false);
        let slo_thread = std::thread::Builder::new()
            .name("ninefold-slo".into())
            .spawn(move || slo.run(slo_stop_rx))
            .context("cannot start the SLO thread")?;
        // Active health checks, off the data path on their own thread and runtime.
        let (health_stop, health_stop_rx) = watch::channel(false);
        let health_thread = crate::upstream::health::spawn(shared.clone(), health_stop_rx)
            .context("cannot start the health check thread")?;

        let mut workers = Vec::new();
        for id in 0..cfg.workers {
            let (tx, rx) = mpsc::unbounded_channel();
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ninefold-w{id}"))
                .spawn(move || worker_main(shared, rx))
                .context("cannot start a worker thread")?;
            workers.push(Worker {
                tx,
                thread: Some(thread),
            });
        }
        let mut gw = Gateway {
            shared,
            source,
            workers,
            listeners: HashMap::new(),
            control_rx,
            admin_addr,
            slo_stop,
            slo_thread: Some(slo_thread),
            health_stop,
            health_thread: Some(health_thread),
        };
        gw.sync_listeners(&cfg).map_err(|e| anyhow!("{e}"))?;
        Ok(gw)
    }

    /// The shared state (for tests and the demo).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Addresses bound per listener.
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.shared.bound.load().as_ref().clone()
    }

    /// Re-reads the configuration source and applies it, or changes nothing.
    pub fn reload(&mut self) -> Result<ReloadOutcome, String> {
        let result = load_source(&self.source).and_then(|cfg| self.apply(cfg));
        let label = if result.is_ok() { "ok" } else { "failed" };
        self.shared
            .metrics
            .reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(o) => {
                tracing::info!(generation = o.generation, added = ?o.listeners_added, removed = ?o.listeners_removed, "configuration reloaded")
            }
            Err(e) => tracing::error!("reload refused, the running configuration stays:\n{e}"),
        }
        for s in result.iter().flat_map(|o| &o.needs_restart) {
            tracing::warn!("{s}");
        }
        result
    }

    /// Applies a validated configuration.
    pub fn apply(&mut self, cfg: Config) -> Result<ReloadOutcome, String> {
        refuse_unsupported(&cfg)?;
        let old = self.shared.snapshot.load_full();
        let mut needs_restart = Vec::new();
        if cfg.admin.bind != old.config.admin.bind || cfg.admin.token != old.config.admin.token {
            needs_restart.push("admin settings changed; they take effect at restart".to_owned());
        }
        if cfg.workers != old.config.workers {
            needs_restart.push(format!(
                "workers changed from {} to {}; this takes effect at restart",
                old.config.workers, cfg.workers
            ));
        }
        let cfg = Arc::new(cfg);
        let snap = Snapshot::build(
            cfg.clone(),
            Some(&old),
            &self.shared.metrics,
            &self.shared.slo,
        )?;
        let generation = snap.generation;
        // Bind before swapping: a listener that cannot bind fails the whole reload.
        let (added, removed) = self.plan_listeners(&cfg)?;
        self.shared.snapshot.store(Arc::new(snap));
        // Only a reload that is committed changes the SLO engine.
        self.shared.slo.update(&cfg.slos);
        let outcome = ReloadOutcome {
            generation,
            listeners_added: added.iter().map(|(n, ..)| n.clone()).collect(),
            listeners_removed: removed.clone(),
            needs_restart,
        };
        self.commit_listeners(added, removed);
        Ok(outcome)
    }

    fn sync_listeners(&mut self, cfg: &Config) -> Result<(), String> {
        let (added, removed) = self.plan_listeners(cfg)?;
        self.commit_listeners(added, removed);
        Ok(())
    }

    /// Binds sockets for listeners that are new or changed; returns them with the names
    /// of listeners to stop.
    #[allow(clippy::type_complexity)]
    fn plan_listeners(
        &self,
        cfg: &Config,
    ) -> Result<
        (
            Vec<(String, Active, Vec<std::net::TcpListener>, bool)>,
            Vec<String>,
        ),
        String,
    > {
        let mut added = Vec::new();
        for l in &cfg.listeners {
            let same = self
                .listeners
                .get(&l.name)
                .is_some_and(|a| a.bind == l.bind && a.protocol == l.protocol);
            if same {
                continue;
            }
            let held = self
                .listeners
                .values()
                .any(|a| a.bind == l.bind || a.local == l.bind);
            let sockets = bind_sockets(l.bind, self.workers.len(), held)
                .map_err(|e| format!("listener {:?}: cannot bind {}: {e}", l.name, l.bind))?;
            let local = sockets[0]
                .local_addr()
                .map_err(|e| format!("listener {:?}: {e}", l.name))?;
            let (stop, _) = watch::channel(false);
            added.push((
                l.name.clone(),
                Active {
                    bind: l.bind,
                    protocol: l.protocol,
                    local,
                    stop,
                },
                sockets,
                l.protocol == ListenerProtocol::Https,
            ));
        }
        let removed = self
            .listeners
            .iter()
            .filter(|(name, a)| {
                !cfg.listeners
                    .iter()
                    .any(|l| &l.name == *name && l.bind == a.bind && l.protocol == a.protocol)
            })
            .map(|(n, _)| n.clone())
            .collect();
        Ok((added, removed))
    }

    #[allow(clippy::type_complexity)]
    fn commit_listeners(
        &mut self,
        added: Vec<(String, Active, Vec<std::net::TcpListener>, bool)>,
        removed: Vec<String>,
    ) {
        for name in removed {
            if let Some(a) = self.listeners.remove(&name) {
                let _ = a.stop.send(true);
                tracing::info!(listener = %name, "listener stopped");
            }
        }
        for (name, active, sockets, tls) in added {
            let arc_name: Arc<str> = name.as_str().into();
            for (w, socket) in self.workers.iter().zip(sockets) {
                let _ = w.tx.send(Cmd::Listen {
                    name: arc_name.clone(),
                    socket,
                    tls,
                    stop: active.stop.subscribe(),
                });
            }
            tracing::info!(listener = %name, address = %active.local, "listening");
            self.listeners.insert(name, active);
        }
        let mut bound: Vec<(String, SocketAddr)> = self
            .listeners
            .iter()
            .map(|(n, a)| (n.clone(), a.local))
            .collect();
        bound.sort();
        self.shared.bound.store(Arc::new(bound));
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP and on admin requests, then
    /// drains and returns.
    pub fn run(mut self) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup())?;
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = self.reload(); }
                    Some(req) = self.control_rx.recv() => match req {
                        ControlRequest::Reload(reply) => { let _ = reply.send(self.reload()); }
                    },
                    _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                }
            }
            anyhow::Ok(())
        })?;
        self.shutdown();
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and
    /// stops the workers.
    pub fn shutdown(mut self) {
        let grace = self.shared.snapshot.load().config.shutdown_grace;
        for a in self.listeners.values() {
            let _ = a.stop.send(true);
        }
        for w in &self.workers {
            let _ = w.tx.send(Cmd::Shutdown { grace });
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // Probes ran until the last request ended, so draining requests kept avoiding
        // endpoints that failed meanwhile.
        let _ = self.health_stop.send(true);
        if let Some(t) = self.health_thread.take() {
            let _ = t.join();
        }
        // Last: every request is counted; the engine saves its state and stops.
        let _ = self.slo_stop.send(true);
        if let Some(t) = self.slo_thread.take() {
            let _ = t.join();
        }
        tracing::info!("stopped");
    }
}

/// Binds `n` SO_REUSEPORT sockets to `addr` (port 0: the first one picks the port, the
/// rest share it). Unless we already hold the address, first make sure nobody else
/// does: SO_REUSEPORT would otherwise let two gateways share a port silently.
fn bind_sockets(
    addr: SocketAddr,
    n: usize,
    held: bool,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if !held && addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut out = Vec::with_capacity(n);
    let mut target = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_tcp_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&target.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        target = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

fn worker_main(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let active = Arc::new(AtomicUsize::new(0));
        WORKER_OPEN.with(|w| *w.borrow_mut() = Some(active.clone()));
        // The worker's upstream pool closes idle and dead connections on its own, so
        // those of endpoints a reload removed go within seconds, whatever the upstream
        // does with its side; idle client connections past their idle timeout are
        // woken to close (one timer for all of them).
        // Requests' route and per-try deadlines run on the worker's own timer.
        tokio::spawn(crate::timer::drive());
        tokio::spawn(async {
            let mut tick = tokio::time::interval(crate::timer::COARSE_STEP);
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                crate::timer::set_coarse(now);
                crate::upstream::pool::sweep();
                crate::h1::server::sweep_idle(now);
            }
        });
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Listen {
                    name,
                    socket,
                    tls,
                    stop,
                } => match tokio::net::TcpListener::from_std(socket) {
                    Ok(l) => {
                        tokio::spawn(accept_loop(
                            shared.clone(),
                            name,
                            l,
                            tls,
                            stop,
                            shutdown_rx.clone(),
                            active.clone(),
                        ));
                    }
                    Err(e) => tracing::error!(listener = %name, "cannot register socket: {e}"),
                },
                Cmd::Shutdown { grace } => {
                    let _ = shutdown_tx.send(true);
                    crate::h1::server::close_idle();
                    let deadline = tokio::time::Instant::now() + grace;
                    // Poll the count: connections end on their own schedule, and this
                    // runs once per process life.
                    while active.load(Ordering::Acquire) > 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let left = active.load(Ordering::Acquire);
                    if left > 0 {
                        tracing::warn!(
                            connections = left,
                            "grace period over; closing connections still open"
                        );
                    }
                    break;
                }
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    shared: Arc<Shared>,
    name: Arc<str>,
    listener: tokio::net::TcpListener,
    tls: bool,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
) {
    let counts = Arc::new(OpenCounts {
        active: active.clone(),
        gauge: shared.metrics.open_connections.with_label_values(&[&name]),
    });
    // The connection settings follow the running snapshot's limits: rebuilt when a
    // reload changed them, for connections accepted after it.
    let mut limits = shared.snapshot.load().config.limits;
    // Shared by the worker's connections: a connection's task holds a pointer, not a
    // copy of hyper's settings for its whole life.
    let mut builder = Arc::new(conn_builder(&limits));
    let mut shutdown_accept = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
            _ = shutdown_accept.wait_for(|s| *s) => break,
        };
        let (stream, client) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let now = shared.snapshot.load().config.limits;
        if now != limits {
            limits = now;
            builder = Arc::new(conn_builder(&limits));
        }
        let conn = Conn {
            shared: shared.clone(),
            name: name.clone(),
            client,
            tls,
        };
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let open = Open::new(&counts);
        tokio::spawn(async move {
            if tls {
                // Boxed, like every state a connection has only for a while: the
                // task's size is that of its largest state.
                Box::pin(async move {
                    let acceptor = conn
                        .shared
                        .snapshot
                        .load()
                        .listener(&conn.name)
                        .and_then(|l| l.tls.clone());
                    let Some(acceptor) = acceptor else { return };
                    let accept = acceptor.accept(stream);
                    let Ok(Ok(s)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await
                    else {
                        return;
                    };
                    // The engine choice after ALPN: h2 goes to hyper, HTTP/1.1 (or no
                    // ALPN) to the own engine, as on plain listeners.
                    if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let _open = open;
                        let ctx = conn.ctx(None);
                        serve_conn(TokioIo::new(s), ctx, builder, shutdown).await;
                    } else {
                        let io = crate::h1::io::Client::Tls(Box::new(std::sync::Mutex::new(s)));
                        crate::h1::server::serve(conn.ctx(Some(io)), open).await;
                    }
                })
                .await;
                return;
            }
            let idle = conn.shared.snapshot.load().config.client_idle_timeout;
            match Box::pin(h2c_preface(&stream, idle)).await {
                Some(true) => {
                    let _open = open;
                    let ctx = conn.ctx(None);
                    Box::pin(serve_conn(TokioIo::new(stream), ctx, builder, shutdown)).await;
                }
                Some(false) => {
                    // The own engine, on a task of its own that holds only what an
                    // HTTP/1.1 connection needs (this one, and what it captured, ends).
                    let ctx = conn.ctx(Some(crate::h1::io::Client::Tcp(stream)));
                    tokio::spawn(crate::h1::server::serve(ctx, open));
                }
                None => {}
            }
        });
    }
}

/// What counts a listener's connections on a worker: the worker's count that
/// shutdown waits on, and the listener's gauge.
struct OpenCounts {
    active: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

/// Counts a connection as open while alive (one pointer per connection).
struct Open(Arc<OpenCounts>);

impl Open {
    fn new(counts: &Arc<OpenCounts>) -> Self {
        counts.active.fetch_add(1, Ordering::AcqRel);
        counts.gauge.inc();
        Open(counts.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.gauge.dec();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    /// The worker's count of open connections and tunnels, which its shutdown waits on.
    static WORKER_OPEN: std::cell::RefCell<Option<Arc<AtomicUsize>>> =
        const { std::cell::RefCell::new(None) };
}

/// Counts a tunnel on this worker's open connections while the returned guard lives
/// (a graceful shutdown waits for it, within the grace period).
pub fn open_tunnel() -> Option<OpenTunnel> {
    WORKER_OPEN.with(|w| {
        w.borrow().clone().map(|open| {
            open.fetch_add(1, Ordering::AcqRel);
            OpenTunnel(open)
        })
    })
}

/// See [`open_tunnel`].
pub struct OpenTunnel(Arc<AtomicUsize>);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a new connection's context is made of.
struct Conn {
    shared: Arc<Shared>,
    name: Arc<str>,
    client: SocketAddr,
    tls: bool,
}

impl Conn {
    fn ctx(self, stream: Option<crate::h1::io::Client>) -> Arc<ConnCtx> {
        Arc::new(ConnCtx {
            shared: self.shared,
            listener: self.name,
            client: self.client,
            client_ip: client_ip(self.client.ip()),
            tls: self.tls,
            stream,
            interim: AtomicBool::new(false),
        })
    }
}

/// The client's address as an `x-forwarded-for` value. Connections from one address
/// (a load balancer, a NAT) share one value per worker: no formatting and no
/// allocation per connection for them.
fn client_ip(ip: std::net::IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static SEEN: RefCell<HashMap<std::net::IpAddr, HeaderValue>> = RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(v) = seen.get(&ip) {
            return v.clone();
        }
        let v = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        // Bounded: many distinct clients simply stop being remembered.
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(ip, v.clone());
        v
    })
}

/// The HTTP/2 connection preface a prior-knowledge h2c client opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection speaks h2c (prior knowledge): its first bytes, looked
/// at without reading them, are the HTTP/2 preface. `None`: it closed, or sent nothing
/// within `idle`.
async fn h2c_preface(stream: &tokio::net::TcpStream, idle: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + idle;
    let mut b = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut b))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if !H2_PREFACE.starts_with(&b[..n]) {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A preface cut in two writes: look again shortly.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// hyper's connection settings for a worker's client connections. Head size: hyper
/// answers 431 when a request head does not fit its read buffer, so the buffer's limit
/// is the head limit (hyper's floor is 8 KiB; the config refuses less). Header count:
/// hyper's parser takes 100 on the stack, a different count costs a heap allocation
/// per request, so it is set only when configured otherwise.
fn conn_builder(limits: &crate::config::Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header timer: `serve_conn`'s idle check covers slow and idle clients at
    // one timer per connection instead of one per request.
    let mut h1 = builder.http1();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_request_head.max(crate::config::MIN_HEAD_LIMIT));
    if limits.max_request_headers != crate::config::DEFAULT_MAX_REQUEST_HEADERS {
        h1.max_headers(limits.max_request_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(u32::try_from(limits.max_request_head).unwrap_or(u32::MAX));
    builder
}

async fn serve_conn<I>(
    io: TokioIo<I>,
    ctx: Arc<ConnCtx>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // `client_idle_timeout`, read when the connection opens: a connection with no
    // request answering and none started for a whole period (so after one to two
    // periods) is asked to close gracefully; if it is still there a period later, it is
    // a client that never finished its headers, and it is dropped. One timer per
    // connection, re-armed once per period, instead of hyper's per-request header
    // timer, which cost a timer and an allocation on every request.
    let idle_period = ctx.shared.snapshot.load().config.client_idle_timeout;
    let watched = Arc::new(Activity::default());
    let activity = watched.clone();
    let svc = service_fn(move |req| {
        activity.started.fetch_add(1, Ordering::Relaxed);
        // Counts the request as answering until its body is done (or the request is
        // dropped): the idle check must never cut a slow answer.
        let guard = Responding::new(ctx.clone(), activity.clone());
        async move {
            let (parts, body) = req.into_parts();
            let mut head = proxy::head::Head::new(parts);
            let body = crate::upstream::ReqBody::Stream(body);
            let mut resp = proxy::handle(&guard.ctx, &mut head, body).await;
            // hyper writes the answer from its header map.
            proxy::body::materialize(&mut resp);
            Ok::<_, Infallible>(resp.map(|inner| ConnBody {
                inner,
                _guard: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // Built once: re-creating the wait on every wake-up of the connection would cost a
    // lock of the watch channel per wake-up.
    let shutdown = shutdown.wait_for(|s| *s);
    tokio::pin!(shutdown);
    let mut idle_check =
        tokio::time::interval_at(tokio::time::Instant::now() + idle_period, idle_period);
    let mut seen = 0;
    let mut draining = false;
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => break,
            r = shutdown.as_mut(), if !draining => {
                draining = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = idle_check.tick() => {
                let started = watched.started.load(Ordering::Relaxed);
                let idle = started == seen && watched.responding.load(Ordering::Relaxed) == 0;
                seen = started;
                if idle && asked_to_close {
                    // Still open a period after a graceful close of an idle connection:
                    // hyper is waiting for headers that do not come.
                    break;
                }
                if idle && !draining {
                    draining = true;
                    asked_to_close = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What the idle check of a connection hyper serves reads.
#[derive(Default)]
struct Activity {
    /// Requests started on this connection.
    started: AtomicU32,
    /// Requests whose answer is not finished yet (handler running or body streaming).
    responding: AtomicU32,
}

/// Marks a request as answering while alive (see `Activity::responding`).
struct Responding {
    ctx: Arc<ConnCtx>,
    activity: Arc<Activity>,
}

impl Responding {
    fn new(ctx: Arc<ConnCtx>, activity: Arc<Activity>) -> Self {
        activity.responding.fetch_add(1, Ordering::Relaxed);
        Responding { ctx, activity }
    }
}

impl Drop for Responding {
    fn drop(&mut self) {
        self.activity.responding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body as sent: the pipeline's body plus the mark that the request is
/// still answering.
struct ConnBody {
    inner: crate::proxy::body::RespBody,
    _guard: Responding,
}

impl http_body::Body for ConnBody {
    type Data = bytes::Bytes;
    type Error = crate::proxy::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
