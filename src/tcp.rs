//! The TCP tier: a `protocol: tcp` listener's sessions, each a byte relay between one
//! client and one endpoint, chosen by the same selection step HTTP uses (health,
//! priority, zone, drain, ejection, breaker) and, for a PostgreSQL primary cluster,
//! fenced: a session whose endpoint leaves the set is closed at once, and no session
//! to a new primary starts while one to the old primary is still open.
//!
//! A session runs on the worker that accepted it, like an HTTP connection:
//!
//! 1. **Admission.** Over the listener's `bulkhead.max_concurrent`, the connection is
//!    closed at once. A primary cluster with two endpoints claiming primary refuses
//!    under `two_primaries: refuse` (the health checker says so in the log and in
//!    `/health`), or keeps to the current generation's primary under `keep_current`.
//!    Endpoints of a cluster whose check reads the role count only once a probe has
//!    seen the role (a standby must never take a write because it was not probed
//!    yet); a session waits up to `connect_timeout` for that.
//! 2. **Connect.** Within the cluster's `connect_timeout`; a connect that fails is
//!    counted (and tells outlier detection), and the next eligible endpoint is tried,
//!    since a connection that never opened is safe to retry. With no eligible endpoint
//!    left, the listener's `fallback_cluster` takes the connection (reads fall back to
//!    the primary), else it is closed.
//! 3. **Relay.** Both directions at once, with `splice(2)` through a pipe on Linux
//!    (the bytes never enter the gateway), a copy elsewhere; a half-close is passed
//!    on. TCP keepalive runs on both sockets, so a silent partition ends the session.
//!    The session ends when both sides are done, at `idle_timeout` of silence, when
//!    its endpoint is fenced, or when a reload removed its listener and the drain time
//!    (`shutdown_grace`) has passed.
//!
//! Each session writes one access-log line (peer, endpoint, duration, bytes each way,
//! why it ended) and keeps the per-listener and per-endpoint counters
//! (`ninefold_tcp_*`).

use crate::config::{AccessLog, OnMarkedDown, Role, TwoPrimaries};
use crate::gate::{Gate, Probe, Rejected};
use crate::h1::splice::Pipe;
use crate::snapshot::{ClusterSnap, Shared, TcpClose, TcpEndpointMetrics, TcpRefusal, TcpSnap};
use crate::upstream::select::Tried;
use crate::upstream::{now_ms, EndpointState, Health};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// Keepalive on both sockets: first probe after this much silence ...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// ... then one every this, ...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ... and the connection is dropped after this many unanswered (about a minute in
/// all for a silent partition).
const KEEPALIVE_RETRIES: u32 = 3;

/// The largest splice or copy of one step.
const CHUNK: usize = 64 * 1024;

/// How often admission looks again while it waits (a first probe, a fence).
const ADMISSION_POLL: Duration = Duration::from_millis(5);

/// Why a session ended, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Both sides closed.
    Done,
    /// The gateway closed it by policy.
    Policy(TcpClose),
    /// A socket failed.
    Error(String),
}

/// The endpoint a session goes to.
struct Chosen {
    endpoint: Arc<EndpointState>,
    metrics: TcpEndpointMetrics,
    cluster: Arc<str>,
    stream: TcpStream,
    /// Subscribed before the session was counted: a fence from then on is seen.
    fence: watch::Receiver<u64>,
}

/// Serves one client connection of `tcp` listener `listener`; `open` counts the
/// connection on its worker while the session lives; `stop` turns true when a reload
/// removes the listener.
pub async fn serve<O: Send + 'static>(
    shared: Arc<Shared>,
    listener: Arc<str>,
    client: TcpStream,
    peer: SocketAddr,
    open: O,
    stop: watch::Receiver<bool>,
) {
    let _open = open;
    let start = Instant::now();
    let snap = shared.snapshot.load_full();
    let Some(tcp) = snap.listener(&listener).and_then(|l| l.tcp.as_ref()) else {
        return;
    };
    let mode = snap.config.access_log;
    let grace = snap.config.shutdown_grace;
    let _slot = match Slot::take(&tcp.open, tcp.max_connections) {
        Some(s) => s,
        None => return refuse(tcp, &listener, peer, TcpRefusal::Limit, mode),
    };
    let chosen = match connect(tcp).await {
        Ok(c) => c,
        Err(r) => return refuse(tcp, &listener, peer, r, mode),
    };
    // The session keeps what it needs, not the snapshot (a reload may come and go).
    let idle = tcp.idle_timeout;
    drop(snap);
    keepalive(&client);
    keepalive(&chosen.stream);
    let Chosen {
        endpoint,
        metrics,
        cluster,
        stream,
        fence,
    } = chosen;
    let _session = Session::open(&endpoint, &metrics);
    // The relay's task polls the relay only; what may end a session from outside
    // (a fence, the idle timeout, the listener's removal) is watched by a second
    // task, which shuts both sockets down and says why.
    let (client, stream) = (Arc::new(client), Arc::new(stream));
    let state = Arc::new(SessionState::new());
    let watcher = tokio::spawn(watch(
        Arc::clone(&state),
        Arc::clone(&client),
        Arc::clone(&stream),
        Watched {
            fence,
            stop,
            idle,
            grace,
        },
    ));
    let mut relay = Relay::new(&client, &stream, &metrics, &state);
    let r = (&mut relay).await;
    watcher.abort();
    let end = match (state.end(), r) {
        (Some(why), _) => End::Policy(why),
        (None, Ok(())) => End::Done,
        (None, Err(e)) => End::Error(e.to_string()),
    };
    if let End::Policy(why) = &end {
        metrics.closed[why_index(*why)].inc();
    }
    let (up, down) = (relay.up.bytes, relay.down.bytes);
    drop(relay);
    let why = match &end {
        End::Done => "closed",
        End::Policy(p) => p.as_str(),
        End::Error(e) => e.as_str(),
    };
    if matches!(end, End::Policy(TcpClose::Fenced)) {
        tracing::info!(listener = %listener, cluster = %cluster, endpoint = %metrics.name, %peer, "session closed: its endpoint left the set");
    }
    access_log(
        mode,
        &listener,
        peer,
        &metrics.name,
        start.elapsed(),
        up,
        down,
        why,
    );
}

/// What a session's relay and its watcher share: when bytes last moved, and why the
/// watcher ended it.
struct SessionState {
    /// When the session started; `last` counts from here.
    start: Instant,
    /// Milliseconds from `start` to the last time bytes moved.
    last: std::sync::atomic::AtomicU64,
    /// 0 while running, else 1 + the index of the [`TcpClose`] that ended it.
    end: std::sync::atomic::AtomicU8,
}

impl SessionState {
    fn new() -> SessionState {
        SessionState {
            start: Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            end: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// Bytes moved now.
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    fn end(&self) -> Option<TcpClose> {
        match self.end.load(Ordering::Acquire) {
            0 => None,
            i => TcpClose::ALL.get(usize::from(i) - 1).copied(),
        }
    }
}

/// What the watcher of a session waits on.
struct Watched {
    fence: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    idle: Duration,
    grace: Duration,
}

/// Watches one session from outside its relay: a fence of its endpoint, `idle` of
/// silence, or its listener's removal (then `grace` more) ends it, by shutting both
/// sockets down, which the relay sees at once.
async fn watch(
    state: Arc<SessionState>,
    client: Arc<TcpStream>,
    upstream: Arc<TcpStream>,
    w: Watched,
) {
    let Watched {
        mut fence,
        mut stop,
        idle,
        grace,
    } = w;
    let mut idle_timer = std::pin::pin!(tokio::time::sleep(idle));
    let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let why = loop {
        tokio::select! {
            _ = fence.changed() => break TcpClose::Fenced,
            _ = &mut idle_timer => {
                let last = state.last();
                if last.elapsed() >= idle {
                    break TcpClose::Idle;
                }
                idle_timer.as_mut().reset(last + idle);
            }
            _ = stop.wait_for(|s| *s), if drain.is_none() => {
                drain = Some(Box::pin(tokio::time::sleep(grace)));
            }
            _ = async { drain.as_mut().expect("guarded").await }, if drain.is_some() => {
                break TcpClose::ListenerRemoved;
            }
        }
    };
    state.end.store(why_index(why) as u8 + 1, Ordering::Release);
    for s in [&client, &upstream] {
        let _ = socket2::SockRef::from(&**s).shutdown(std::net::Shutdown::Both);
    }
}

fn why_index(c: TcpClose) -> usize {
    TcpClose::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// Closes a new connection at once (dropping it), counted and logged.
fn refuse(tcp: &TcpSnap, listener: &str, peer: SocketAddr, r: TcpRefusal, mode: AccessLog) {
    let i = TcpRefusal::ALL.iter().position(|x| *x == r).unwrap_or(0);
    tcp.refused[i].inc();
    tracing::debug!(%listener, %peer, reason = r.as_str(), "tcp connection refused");
    access_log(mode, listener, peer, "", Duration::ZERO, 0, 0, r.as_str());
}

#[allow(clippy::too_many_arguments)]
fn access_log(
    mode: AccessLog,
    listener: &str,
    peer: SocketAddr,
    endpoint: &str,
    d: Duration,
    to_endpoint: u64,
    to_client: u64,
    end: &str,
) {
    let duration_ms = d.as_secs_f64() * 1000.0;
    match mode {
        AccessLog::Off => {}
        AccessLog::Text => tracing::info!(
            target: "ninefold::access::text",
            "{peer} {listener} TCP {duration_ms:.3}ms endpoint={endpoint} to_endpoint={to_endpoint} to_client={to_client} end={end}",
        ),
        AccessLog::Json => tracing::info!(
            target: "ninefold::access::json",
            client = %peer,
            listener,
            protocol = "tcp",
            duration_ms,
            endpoint,
            to_endpoint,
            to_client,
            end,
        ),
    }
}

/// A place under the listener's connection limit, given back when dropped.
struct Slot(Arc<AtomicU32>);

impl Slot {
    fn take(open: &Arc<AtomicU32>, max: Option<u32>) -> Option<Slot> {
        let n = open.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = Slot(Arc::clone(open));
        match max {
            Some(m) if n > m => None,
            _ => Some(slot),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a session on its endpoint (what fencing waits for) and in the gauges.
struct Session {
    endpoint: Arc<EndpointState>,
    active: prometheus::IntGauge,
}

impl Session {
    fn open(endpoint: &Arc<EndpointState>, m: &TcpEndpointMetrics) -> Session {
        m.total.inc();
        m.active.inc();
        Session {
            endpoint: Arc::clone(endpoint),
            active: m.active.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.active.dec();
        self.endpoint.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

// === choosing and connecting ===

/// Connects to an endpoint of the listener's cluster, or of its fallback cluster when
/// the first has none eligible (or none answered).
async fn connect(tcp: &TcpSnap) -> Result<Chosen, TcpRefusal> {
    match connect_in(&tcp.cluster, &tcp.endpoints).await {
        Ok(c) => Ok(c),
        // Two primaries is a refusal by the cluster itself, not a lack of endpoints:
        // no fallback either, the refusal stands until one stops claiming it.
        Err(TcpRefusal::TwoPrimaries) => Err(TcpRefusal::TwoPrimaries),
        Err(r) => match &tcp.fallback {
            Some(f) => connect_in(f, &tcp.fallback_endpoints).await,
            None => Err(r),
        },
    }
}

/// Picks and connects within one cluster, trying the next eligible endpoint after a
/// failed connect.
async fn connect_in(
    cluster: &ClusterSnap,
    metrics: &[TcpEndpointMetrics],
) -> Result<Chosen, TcpRefusal> {
    let deadline = Instant::now() + cluster.connect_timeout;
    let mut tried = Tried::default();
    let n = cluster.select.endpoints.len();
    for _ in 0..n.max(1) {
        let i = admit(cluster, &tried, deadline).await?;
        let endpoint = &cluster.select.endpoints[i];
        // The breakers of the cluster's `circuit_breaker.scope` see each connect, as
        // HTTP attempts do: a refused gate is one more endpoint tried.
        let Ok(mut probes) = breakers(cluster, i) else {
            tried.add(i);
            continue;
        };
        // Watched, then counted, before the connect: a fence from now on is seen, and
        // admission elsewhere waits for this session.
        let fence = endpoint.fence.subscribe();
        endpoint.sessions.fetch_add(1, Ordering::AcqRel);
        probes.iter_mut().for_each(Outcome::sent);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let connected = tokio::time::timeout(timeout, TcpStream::connect(endpoint.address)).await;
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let now = now_ms();
                endpoint.success(&cluster.outlier, &cluster.select.live, now);
                for p in probes.drain(..) {
                    p.finish(Some(false), now);
                }
                return Ok(Chosen {
                    endpoint: Arc::clone(endpoint),
                    metrics: metrics[i].clone(),
                    cluster: cluster.name.clone(),
                    stream,
                    fence,
                });
            }
            Ok(Err(_)) | Err(_) => {
                endpoint.sessions.fetch_sub(1, Ordering::AcqRel);
                metrics[i].connect_failures.inc();
                cluster.connect_errors.inc();
                let now = now_ms();
                if let Some(crate::upstream::Ejection::Ejected { until, times }) =
                    endpoint.failure(&cluster.outlier, &cluster.select.live, n, now)
                {
                    crate::events::emit(
                        "ejected",
                        Some(&cluster.name),
                        Some(&metrics[i].name),
                        format!(
                            "ejected for {} ms after failed connects ({times} in a row)",
                            until.saturating_sub(now)
                        ),
                    );
                }
                let counts = cluster.breaker.map(|b| b.on.connect_failure);
                for p in probes.drain(..) {
                    p.finish(counts.filter(|c| *c), now);
                }
                tried.add(i);
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    Err(TcpRefusal::NoEndpoint)
}

/// One connect's passage through the breakers of `cluster` (its own, then endpoint
/// `i`'s, as its `circuit_breaker.scope` says): the outcome of each, to record, or
/// `Err` when one rejects. A gate that passes without a trial records through a
/// `Probe` too: the same bookkeeping either way.
fn breakers(cluster: &ClusterSnap, i: usize) -> Result<Vec<Outcome<'_>>, Rejected> {
    let mut out = Vec::new();
    let Some(cfg) = &cluster.breaker else {
        return Ok(out);
    };
    let now = now_ms();
    let mut gates = Vec::with_capacity(2);
    if cfg.scope.cluster() {
        gates.push(Gate::new(
            &cluster.select.live.breaker,
            cfg,
            &cluster.name,
            "",
        ));
    }
    if cfg.scope.endpoint() {
        let e = &cluster.select.endpoints[i];
        gates.push(Gate::new(
            &e.breaker,
            cfg,
            &cluster.name,
            &cluster.endpoint_names[i],
        ));
    }
    for g in gates {
        out.push(match g.admit(now)? {
            Some(probe) => Outcome::Trial(probe),
            None => Outcome::Pass(g),
        });
    }
    Ok(out)
}

/// How a connect passed one breaker.
enum Outcome<'a> {
    /// Without a trial: its outcome is recorded.
    Pass(Gate<'a>),
    /// With a half-open breaker's trial permit.
    Trial(Probe<'a>),
}

impl Outcome<'_> {
    /// The connect is under way: a trial dropped from now on counts as abandoned.
    fn sent(&mut self) {
        if let Outcome::Trial(p) = self {
            p.sent();
        }
    }

    /// Records the connect's outcome (`None`: neither way).
    fn finish(self, failed: Option<bool>, now: u64) {
        match self {
            Outcome::Pass(g) => g.record(failed, now),
            Outcome::Trial(p) => p.finish(failed, now),
        }
    }
}

/// The endpoint a new session may go to now, waiting (until `deadline`) for a first
/// probe of a role-checked cluster and for the old primary's sessions to close.
async fn admit(
    cluster: &ClusterSnap,
    tried: &Tried,
    deadline: Instant,
) -> Result<usize, TcpRefusal> {
    loop {
        let waiting = match pick(cluster, tried) {
            Ok(i) if fenced_elsewhere(cluster, i) => TcpRefusal::Fencing,
            Ok(i) => return Ok(i),
            Err(TcpRefusal::NoEndpoint) if unprobed(cluster) => TcpRefusal::NoEndpoint,
            Err(e) => return Err(e),
        };
        if Instant::now() + ADMISSION_POLL > deadline {
            return Err(waiting);
        }
        tokio::time::sleep(ADMISSION_POLL).await;
    }
}

/// One pick, without waiting.
fn pick(cluster: &ClusterSnap, tried: &Tried) -> Result<usize, TcpRefusal> {
    let now = now_ms();
    let live = &cluster.select.live;
    let mut skip = Tried::default();
    if cluster.role.is_some() {
        let split = live.primary.split.load(Ordering::Acquire);
        if split && cluster.two_primaries == Some(TwoPrimaries::Refuse) {
            return Err(TcpRefusal::TwoPrimaries);
        }
        let current = (split && cluster.two_primaries == Some(TwoPrimaries::KeepCurrent))
            .then(|| live.primary.current())
            .flatten();
        for (i, e) in cluster.select.endpoints.iter().enumerate() {
            // Only a probe that passed makes an endpoint eligible, and the last probe
            // seeing the other role takes it out at once, before the threshold (a
            // timeout or a refused connect waits for the threshold, as for HTTP).
            let wrong_role = e.role().is_some_and(|r| Some(r) != cluster.role);
            let proven = e.health() == Health::Healthy && !wrong_role;
            if !proven || current.is_some_and(|c| c != e.address) {
                skip.add(i);
            }
        }
    }
    match cluster
        .select
        .pick_with(None, None, tried, &skip, now, fastrand::f64())
    {
        // Panic mode ignores health: never for a role, a standby must not take writes.
        Ok(p) if p.panic && cluster.role.is_some() => Err(TcpRefusal::NoEndpoint),
        Ok(p) if tried.contains(p.index) => Err(TcpRefusal::NoEndpoint),
        Ok(p) => Ok(p.index),
        Err(_) => Err(TcpRefusal::NoEndpoint),
    }
}

/// A primary cluster that closes sessions on mark-down: whether another endpoint
/// still has sessions open (the old primary, being fenced). No session to the new
/// primary starts before they are closed.
fn fenced_elsewhere(cluster: &ClusterSnap, i: usize) -> bool {
    cluster.role == Some(Role::Primary)
        && cluster.on_marked_down == OnMarkedDown::ShutdownSessions
        && cluster
            .select
            .endpoints
            .iter()
            .enumerate()
            .any(|(j, e)| j != i && e.sessions.load(Ordering::Acquire) > 0)
}

/// A role-checked cluster with an endpoint no probe has decided yet (just started or
/// just added): worth waiting for.
fn unprobed(cluster: &ClusterSnap) -> bool {
    cluster.role.is_some()
        && cluster
            .select
            .endpoints
            .iter()
            .any(|e| e.health() == Health::Unknown && !e.draining())
}

/// TCP keepalive, so a silent partition ends a session within about a minute.
fn keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

// === the relay ===

/// Both directions of a session.
struct Relay<'a> {
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    /// Client → endpoint.
    up: Half,
    /// Endpoint → client.
    down: Half,
    /// Where the last time bytes moved is kept (for the idle timeout).
    state: &'a SessionState,
    to_endpoint: &'a prometheus::IntCounter,
    to_client: &'a prometheus::IntCounter,
}

/// One direction. Small transfers are copied through the worker's scratch buffer and
/// written on at once (no memory held by a quiet session); once a single read brings
/// [`SPLICE_AT`] bytes or more, the direction is bulk and moves through a pipe with
/// `splice(2)` from then on (HAProxy's `splice-auto` rule).
struct Half {
    pipe: Option<Pipe>,
    /// Bytes read but not yet written on (only when `to` took less than all).
    pending: Vec<u8>,
    at: usize,
    done: bool,
    bytes: u64,
}

/// A read at least this large makes a direction bulk (spliced).
const SPLICE_AT: usize = 16 * 1024;

thread_local! {
    /// The worker's copy buffer: every session's copied bytes pass through it, and
    /// are written on before the next session's read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]);
}

impl Half {
    fn new() -> Half {
        Half {
            pipe: None,
            pending: Vec::new(),
            at: 0,
            done: false,
            bytes: 0,
        }
    }

    /// Moves bytes from `from` to `to` until `from` ends (then half-closes `to`):
    /// `Ready(Ok(()))` at the end, `Pending` while waiting; `moved` is called with
    /// each count.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
        moved: &mut dyn FnMut(usize),
    ) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // What is still to be written goes first.
            if let Some(pipe) = &mut self.pipe {
                if pipe.held() > 0 {
                    ready!(pipe.poll_drain(cx, to))?;
                    continue;
                }
            }
            if self.at < self.pending.len() {
                ready!(to.poll_write_ready(cx))?;
                match to.try_write(&self.pending[self.at..]) {
                    Ok(n) => self.at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                if self.at == self.pending.len() {
                    self.pending.clear();
                    self.at = 0;
                }
                continue;
            }
            if let Some(pipe) = &mut self.pipe {
                match ready!(pipe.poll_fill(cx, from, CHUNK as u64)) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.bytes += n as u64;
                        moved(n);
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            ready!(from.poll_read_ready(cx))?;
            match self.copy(from, to) {
                Ok(0) => break,
                Ok(n) => {
                    self.bytes += n as u64;
                    moved(n);
                    if n >= SPLICE_AT {
                        self.pipe = Pipe::take();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // `from` ended: pass the half-close on.
        self.done = true;
        let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }

    /// One read into the scratch buffer, written on at once; what `to` does not take
    /// now is kept in `pending`. A read shorter than the buffer drained the socket:
    /// its readiness is cleared then, so the next poll waits for the kernel instead of
    /// spending a read on `EAGAIN`.
    fn copy(&mut self, from: &TcpStream, to: &TcpStream) -> io::Result<usize> {
        use std::io::Read;
        SCRATCH.with_borrow_mut(|buf| {
            let mut got = 0;
            let r = from.try_io(tokio::io::Interest::READABLE, || {
                let n = (&*socket2::SockRef::from(from)).read(buf)?;
                got = n;
                if n > 0 && n < buf.len() {
                    // Drained: WouldBlock clears the readiness (the bytes are in `got`).
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match r {
                Ok(n) => got = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
                Err(e) => return Err(e),
            }
            if got == 0 {
                return Ok(0);
            }
            let sent = match to.try_write(&buf[..got]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            if sent < got {
                self.pending.extend_from_slice(&buf[sent..got]);
            }
            Ok(got)
        })
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        if let Some(p) = self.pipe.take() {
            p.give();
        }
    }
}

impl<'a> Relay<'a> {
    fn new(
        client: &'a TcpStream,
        upstream: &'a TcpStream,
        m: &'a TcpEndpointMetrics,
        state: &'a SessionState,
    ) -> Self {
        Relay {
            client,
            upstream,
            up: Half::new(),
            down: Half::new(),
            state,
            to_endpoint: &m.to_endpoint,
            to_client: &m.to_client,
        }
    }
}

impl Future for Relay<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut moved = false;
        let up = {
            let c = this.to_endpoint;
            this.up.poll(cx, this.client, this.upstream, &mut |n| {
                moved = true;
                c.inc_by(n as u64);
            })
        };
        let down = {
            let c = this.to_client;
            this.down.poll(cx, this.upstream, this.client, &mut |n| {
                moved = true;
                c.inc_by(n as u64);
            })
        };
        if moved {
            // One clock read per wake-up that moved bytes (not per byte or syscall).
            this.state.touch();
        }
        match (up, down) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }
}
