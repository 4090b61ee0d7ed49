//! Endpoint discovery (`clusters[].discovery`): a cluster's endpoints found by DNS
//! (A, AAAA or SRV records, looked up again every `refresh`, or when the answer's TTL
//! runs out) or read from a file (the `endpoints:` list shape, read again when it
//! changes), without a reload.
//!
//! Each source runs as a task on the discovery thread and feeds a [`Tracker`], the
//! part that decides, with a clock the caller drives:
//! - a failed lookup (timeout, SERVFAIL, NXDOMAIN, an empty answer, a file with
//!   errors) keeps the last good set: the cluster never goes empty because of one bad
//!   answer. It says so (the state API's `stale`, `ninefold_discovery_stale`, one log
//!   line per change of condition), and after `stale_for` without a good answer the
//!   set expires and the cluster goes back to its seed list (`endpoints:`);
//! - an answer that removes more than `max_removed_per_update` of the set is held back
//!   (the churn guard) and applies only once [`CONFIRMATIONS`] further lookups in a row
//!   gave the same answer.
//!
//! What the tracker accepts goes to the control plane as an [`Update`]; there the set
//! meets the same endpoint machinery a reload uses (live state carried by address, new
//! addresses fresh, removed ones draining). The [`Board`] keeps each cluster's
//! condition for the state API.

use crate::config::{
    parse_endpoints, DiscoveryConfig, DiscoverySource, DnsSource, EndpointConfig, LookupKind,
    MAX_TTL_WAIT,
};
use crate::metrics::Metrics;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How many further lookups in a row must repeat an answer the churn guard held before
/// it applies.
pub const CONFIRMATIONS: u32 = 2;

/// How often a discovery file is read to see whether it changed.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// A set discovery accepted, for the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The cluster.
    pub cluster: String,
    /// The endpoints to serve; `None`: back to the seed list (the set expired).
    pub endpoints: Option<Vec<EndpointConfig>>,
    /// The tracker's version after this update.
    pub version: u64,
    /// The source that found it: an update from a source a reload replaced since
    /// (queued before its task stopped) is dropped.
    pub spec: Spec,
}

/// What one cluster's discovery runs: its source and its churn guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The cluster.
    pub cluster: String,
    /// `clusters[].discovery`.
    pub discovery: DiscoveryConfig,
    /// `max_removed_per_update`, percent.
    pub max_removed: f64,
}

// === impl Spec ===

impl Spec {
    /// Whether `other` runs the same source with the same guard: then a reload keeps
    /// its task (and its tracker's state) running.
    pub fn same_run(&self, other: &Spec) -> bool {
        self.cluster == other.cluster
            && self.discovery.source == other.discovery.source
            && self.max_removed == other.max_removed
    }
}

/// What one answer did.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `applied`, `unchanged`, `held`, `failed` or `expired` (the metric's label).
    pub outcome: &'static str,
    /// The set to serve, when it changed (`Some(None)`: the seed list).
    pub update: Option<Option<Vec<EndpointConfig>>>,
    /// A log line, when the condition changed or the set did.
    pub log: Option<String>,
}

/// The condition a cluster's discovery is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No answer yet: the seed list serves.
    Waiting,
    /// The last lookup answered, and its set serves.
    Fresh,
    /// Lookups fail or answer nothing: the last good set serves, for `stale_for`.
    Stale,
    /// An answer that removes too much waits for confirmation; the current set serves.
    Held,
    /// `stale_for` passed without a good answer: the seed list serves.
    Expired,
}

/// The churn guard and staleness rules of one cluster's discovery. Times are
/// milliseconds on any monotonic clock the caller drives.
#[derive(Debug)]
pub struct Tracker {
    max_removed: f64,
    stale_for: Option<Duration>,
    current: Option<Vec<EndpointConfig>>,
    version: u64,
    failing_since: Option<u64>,
    error: Option<String>,
    held: Option<Held>,
    condition: Condition,
}

/// An answer the churn guard holds back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Held {
    /// The answer, sorted by address.
    #[serde(skip)]
    pub endpoints: Vec<EndpointConfig>,
    /// How many of the current endpoints it removes.
    pub removes: usize,
    /// Of how many.
    pub of: usize,
    /// Further lookups that gave the same answer so far.
    pub confirmations: u32,
    /// How many it needs.
    pub needs: u32,
}

// === impl Tracker ===

impl Tracker {
    /// A tracker with the churn guard at `max_removed` percent and `stale_for`, whose
    /// set starts as `current` (a set found before a reload restarted the source).
    pub fn new(
        max_removed: f64,
        stale_for: Option<Duration>,
        current: Option<Vec<EndpointConfig>>,
    ) -> Tracker {
        let condition = if current.is_some() {
            Condition::Fresh
        } else {
            Condition::Waiting
        };
        Tracker {
            max_removed,
            stale_for,
            current: current.map(sorted),
            version: 0,
            failing_since: None,
            error: None,
            held: None,
            condition,
        }
    }

    /// Takes one lookup's answer at `now`: a non-empty set, or why there is none.
    pub fn answer(&mut self, now: u64, answer: Result<Vec<EndpointConfig>, String>) -> Step {
        let before = self.condition;
        let mut step = match answer {
            Ok(set) if !set.is_empty() => self.found(sorted(set)),
            Ok(_) => self.failed(now, "the answer has no address".into()),
            Err(e) => self.failed(now, e),
        };
        if self.condition != before && step.log.is_none() {
            step.log = Some(self.describe());
        }
        step
    }

    fn found(&mut self, set: Vec<EndpointConfig>) -> Step {
        self.failing_since = None;
        self.error = None;
        if self.current.as_ref() == Some(&set) {
            self.held = None;
            self.condition = Condition::Fresh;
            return Step {
                outcome: "unchanged",
                update: None,
                log: None,
            };
        }
        let (removes, of) = match &self.current {
            Some(cur) => (
                cur.iter()
                    .filter(|c| !set.iter().any(|e| e.address == c.address))
                    .count(),
                cur.len(),
            ),
            None => (0, 0),
        };
        let too_many = of > 0 && (removes as f64) * 100.0 > self.max_removed * (of as f64);
        if too_many {
            let confirmations = match &self.held {
                Some(h) if h.endpoints == set => h.confirmations + 1,
                _ => 0,
            };
            if confirmations < CONFIRMATIONS {
                let first = confirmations == 0;
                self.held = Some(Held {
                    endpoints: set,
                    removes,
                    of,
                    confirmations,
                    needs: CONFIRMATIONS,
                });
                self.condition = Condition::Held;
                return Step {
                    outcome: "held",
                    update: None,
                    log: first.then(|| {
                        format!(
                            "an answer removes {removes} of {of} endpoints, more than max_removed_per_update ({}%): held until {CONFIRMATIONS} more lookups confirm it",
                            self.max_removed
                        )
                    }),
                };
            }
        }
        let added = set
            .iter()
            .filter(|e| {
                !self
                    .current
                    .iter()
                    .flatten()
                    .any(|c| c.address == e.address)
            })
            .count();
        let confirmed = self.held.take().is_some() && too_many;
        let n = set.len();
        self.current = Some(set.clone());
        self.version += 1;
        self.condition = Condition::Fresh;
        Step {
            outcome: "applied",
            update: Some(Some(set)),
            log: Some(format!(
                "{n} endpoints (+{added} -{removes}), version {}{}",
                self.version,
                if confirmed {
                    ", confirmed by the lookups after it"
                } else {
                    ""
                }
            )),
        }
    }

    fn failed(&mut self, now: u64, error: String) -> Step {
        let first = self.failing_since.is_none();
        let since = *self.failing_since.get_or_insert(now);
        self.error = Some(error);
        self.held = None;
        let expired = self.current.is_some()
            && self
                .stale_for
                .is_some_and(|s| now.saturating_sub(since) >= s.as_millis() as u64);
        if expired {
            self.current = None;
            self.version += 1;
            self.condition = Condition::Expired;
            return Step {
                outcome: "expired",
                update: Some(None),
                log: Some(format!(
                    "no good answer for stale_for; the last good set expired and the seed list serves ({})",
                    self.error.as_deref().unwrap_or("")
                )),
            };
        }
        self.condition = match self.condition {
            Condition::Waiting | Condition::Expired => self.condition,
            _ => Condition::Stale,
        };
        Step {
            outcome: "failed",
            update: None,
            // Failing from the start changes no condition: say so once.
            log: (first && self.condition == Condition::Waiting).then(|| self.describe()),
        }
    }

    /// The condition in a sentence, for the log line of a change.
    fn describe(&self) -> String {
        let error = self.error.as_deref().unwrap_or("");
        let n = self.current.as_ref().map_or(0, Vec::len);
        match self.condition {
            Condition::Waiting => format!("no answer yet ({error}); the seed list serves"),
            Condition::Fresh => format!("answering again; {n} endpoints"),
            Condition::Stale => format!(
                "lookup failed ({error}); keeping the last good set of {n} endpoints{}",
                match self.stale_for {
                    Some(s) => format!(" for up to {}s", s.as_secs()),
                    None => String::new(),
                }
            ),
            Condition::Held => "an answer is held by the churn guard".into(),
            Condition::Expired => format!("still failing ({error}); the seed list serves"),
        }
    }

    /// Whether an answer waits for confirmation (a file source reads again even when
    /// the file did not change).
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The current condition.
    pub fn condition(&self) -> Condition {
        self.condition
    }

    /// The set accepted last, if any.
    pub fn current(&self) -> Option<&[EndpointConfig]> {
        self.current.as_deref()
    }
}

fn sorted(mut set: Vec<EndpointConfig>) -> Vec<EndpointConfig> {
    set.sort_by_key(|e| e.address);
    set.dedup_by_key(|e| e.address);
    set
}

/// Each discovered cluster's condition, for the state API. Written by the discovery
/// thread, read by the admin API; never touched by the data path.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, Status>>);

/// One cluster's discovery, as the state API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// `dns A api.internal`, `file /etc/ninefold/api.yaml`.
    pub source: String,
    /// `dns` or `file`.
    pub kind: &'static str,
    /// See [`Condition`].
    pub condition: Condition,
    /// Whether the set serving is the last good one while lookups fail.
    pub stale: bool,
    /// Bumped by every change of the set.
    pub version: u64,
    /// When the set last changed (Unix ms).
    pub updated_unix_ms: Option<u64>,
    /// When the last lookup answered or failed (Unix ms).
    pub checked_unix_ms: Option<u64>,
    /// Since when lookups fail (Unix ms).
    pub failing_since_unix_ms: Option<u64>,
    /// Why the last lookup failed.
    pub error: Option<String>,
    /// The answer the churn guard holds.
    pub held: Option<Held>,
    /// The discovered set's addresses (none: the seed list serves).
    pub endpoints: Option<Vec<SocketAddr>>,
}

// === impl Board ===

impl Board {
    /// `cluster`'s discovery status.
    pub fn get(&self, cluster: &str) -> Option<Status> {
        self.lock().get(cluster).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Status>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }
}

/// What the control plane sends the discovery thread: the specs to run, and the sets
/// being served (a restarted source starts from its cluster's).
type Specs = (Vec<Spec>, HashMap<String, Vec<EndpointConfig>>);

/// The discovery thread: one task per discovered cluster, restarted when a reload
/// changes its source.
pub struct Discovery {
    specs: mpsc::UnboundedSender<Specs>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

// === impl Discovery ===

impl Discovery {
    /// Starts the discovery thread; accepted sets go to `updates`.
    pub fn spawn(
        updates: mpsc::UnboundedSender<Update>,
        board: Arc<Board>,
        metrics: Metrics,
    ) -> std::io::Result<Discovery> {
        let (specs, mut specs_rx) = mpsc::unbounded_channel::<Specs>();
        let (stop, mut stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("ninefold-discovery".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("discovery: cannot start its runtime");
                    return;
                };
                rt.block_on(async move {
                    let mut running: HashMap<String, (Spec, tokio::task::JoinHandle<()>)> =
                        HashMap::new();
                    loop {
                        tokio::select! {
                            got = specs_rx.recv() => {
                                let Some((list, current)) = got else { break };
                                running.retain(|name, (spec, task)| {
                                    let keep = list.iter().any(|s| s.same_run(spec));
                                    if !keep {
                                        task.abort();
                                        metrics.discovery_stale.with_label_values(&[name]).set(0);
                                    }
                                    keep
                                });
                                board.retain(|c| list.iter().any(|s| s.cluster == c));
                                for spec in list {
                                    if running.contains_key(&spec.cluster) {
                                        continue;
                                    }
                                    let task = tokio::spawn(run(
                                        spec.clone(),
                                        current.get(&spec.cluster).cloned(),
                                        updates.clone(),
                                        board.clone(),
                                        metrics.clone(),
                                    ));
                                    running.insert(spec.cluster.clone(), (spec, task));
                                }
                            }
                            _ = stop_rx.changed() => break,
                        }
                    }
                    for (_, (_, task)) in running {
                        task.abort();
                    }
                });
            })?;
        Ok(Discovery {
            specs,
            stop,
            thread: Some(thread),
        })
    }

    /// Runs exactly `specs` from now on (sources that did not change keep running);
    /// `current` holds the sets being served, which a restarted source starts from.
    pub fn set(&self, specs: Vec<Spec>, current: HashMap<String, Vec<EndpointConfig>>) {
        let _ = self.specs.send((specs, current));
    }

    /// Stops every source and the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One cluster's source, forever: look up, feed the tracker, publish.
async fn run(
    spec: Spec,
    current: Option<Vec<EndpointConfig>>,
    updates: mpsc::UnboundedSender<Update>,
    board: Arc<Board>,
    metrics: Metrics,
) {
    let cluster = spec.cluster.clone();
    let source = &spec.discovery.source;
    let stale_for = match source {
        DiscoverySource::Dns(d) => d.stale_for,
        DiscoverySource::File { .. } => None,
    };
    let mut tracker = Tracker::new(spec.max_removed, stale_for, current);
    let epoch = Instant::now();
    let mut status = Status {
        source: source.describe(),
        kind: source.kind(),
        condition: tracker.condition(),
        stale: false,
        version: 0,
        updated_unix_ms: None,
        checked_unix_ms: None,
        failing_since_unix_ms: None,
        error: None,
        held: None,
        endpoints: tracker
            .current()
            .map(|s| s.iter().map(|e| e.address).collect()),
    };
    board.lock().insert(cluster.clone(), status.clone());
    tracing::info!(cluster = %cluster, source = %status.source, "discovery started");
    let publish = |tracker: &Tracker,
                   step: Step,
                   answer_error: Option<String>,
                   status: &mut Status| {
        let now_unix = unix_ms();
        metrics
            .discovery_updates
            .with_label_values(&[&cluster, step.outcome])
            .inc();
        status.checked_unix_ms = Some(now_unix);
        match &answer_error {
            Some(e) => {
                status.failing_since_unix_ms.get_or_insert(now_unix);
                status.error = Some(e.clone());
            }
            None => {
                status.failing_since_unix_ms = None;
                status.error = None;
            }
        }
        status.condition = tracker.condition();
        status.stale = tracker.condition() == Condition::Stale;
        status.held = tracker.held.clone();
        status.version = tracker.version;
        status.endpoints = tracker
            .current()
            .map(|s| s.iter().map(|e| e.address).collect());
        metrics
            .discovery_stale
            .with_label_values(&[&cluster])
            .set(i64::from(status.stale));
        metrics
            .discovery_endpoints
            .with_label_values(&[&cluster])
            .set(tracker.current().map_or(0, |s| s.len() as i64));
        if let Some(line) = &step.log {
            match step.outcome {
                "failed" | "expired" | "held" => {
                    tracing::warn!(cluster = %cluster, source = %status.source, "discovery: {line}")
                }
                _ => {
                    tracing::info!(cluster = %cluster, source = %status.source, "discovery: {line}")
                }
            }
            let kind = match step.outcome {
                "applied" | "unchanged" => "discovery",
                _ => "discovery_problem",
            };
            crate::events::emit(kind, Some(&cluster), None, format!("discovery: {line}"));
        }
        if let Some(set) = step.update {
            status.updated_unix_ms = Some(now_unix);
            let _ = updates.send(Update {
                cluster: cluster.clone(),
                endpoints: set,
                version: tracker.version,
                spec: spec.clone(),
            });
        }
        board.lock().insert(cluster.clone(), status.clone());
    };
    match source {
        DiscoverySource::Dns(d) => {
            let mut made = None;
            loop {
                // A resolver that cannot be made (no /etc/resolv.conf) is a failed
                // lookup too, tried again at the next refresh.
                if made.is_none() {
                    made = resolver(d)
                        .map_err(|e| tracing::error!(cluster = %cluster, "discovery: cannot make a resolver: {e}"))
                        .ok();
                }
                let (answer, ttl) = match &made {
                    None => (Err("no resolver (see the log)".to_owned()), None),
                    // A lookup never outlives the next one.
                    Some(r) => match tokio::time::timeout(d.refresh, lookup(r, d)).await {
                        Ok(Ok((set, ttl))) => (Ok(set), ttl),
                        Ok(Err(e)) => (Err(e), None),
                        Err(_) => (
                            Err(format!("no answer within {}s", d.refresh.as_secs_f64())),
                            None,
                        ),
                    },
                };
                let error = answer.as_ref().err().cloned();
                let now = epoch.elapsed().as_millis() as u64;
                let step = tracker.answer(now, answer);
                publish(&tracker, step, error, &mut status);
                // A held answer is confirmed by the next lookups, at refresh, not TTL.
                let wait = if tracker.holding() {
                    d.refresh
                } else {
                    next_lookup(d, ttl)
                };
                tokio::time::sleep(wait).await;
            }
        }
        DiscoverySource::File { path } => {
            let mut last: Option<Result<String, String>> = None;
            loop {
                // Off the discovery thread's runtime: a hung read (NFS) stalls only
                // this source, for at most 5 s.
                let p = path.clone();
                let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(&p));
                let text = match tokio::time::timeout(Duration::from_secs(5), read).await {
                    Ok(Ok(r)) => r.map_err(|e| format!("cannot read {}: {e}", path.display())),
                    _ => Err(format!("reading {} took over 5s", path.display())),
                };
                let changed = last.as_ref() != Some(&text);
                if changed || tracker.holding() {
                    let answer = read_file(path, &cluster, &text);
                    let error = answer.as_ref().err().cloned();
                    let now = epoch.elapsed().as_millis() as u64;
                    let step = tracker.answer(now, answer);
                    if let Some(e) = &error {
                        if changed {
                            tracing::warn!(cluster = %cluster, "discovery: the file has errors; the last good set stays:\n{e}");
                        }
                    }
                    publish(&tracker, step, error, &mut status);
                    last = Some(text);
                }
                tokio::time::sleep(FILE_POLL).await;
            }
        }
    }
}

/// The endpoints a discovery file lists, or its errors as `file:line:col` lines.
fn read_file(
    path: &Path,
    cluster: &str,
    text: &Result<String, String>,
) -> Result<Vec<EndpointConfig>, String> {
    let text = text.as_ref().map_err(Clone::clone)?;
    parse_endpoints(&path.display().to_string(), text, cluster).map_err(|e| e.to_string())
}

/// When to look up again: `refresh`, or the answer's TTL within `refresh` and
/// [`MAX_TTL_WAIT`] when `respect_ttl` is on.
fn next_lookup(d: &DnsSource, ttl: Option<Duration>) -> Duration {
    match ttl {
        Some(t) if d.respect_ttl => t.clamp(d.refresh, MAX_TTL_WAIT.max(d.refresh)),
        _ => d.refresh,
    }
}

/// A resolver that asks `d.resolvers` (or the system's), caches nothing (the tracker
/// decides how long an answer lives) and gives up on a lookup well within `refresh`.
fn resolver(d: &DnsSource) -> Result<TokioResolver, String> {
    let mut builder = if d.resolvers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let servers = d
            .resolvers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let o = builder.options_mut();
    o.cache_size = 0;
    o.attempts = 1;
    o.timeout = (d.refresh / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
    o.use_hosts_file = ResolveHosts::Never;
    builder.build().map_err(|e| e.to_string())
}

/// Looks `d` up once: the endpoints and the answer's smallest TTL, or why not.
async fn lookup(
    resolver: &TokioResolver,
    d: &DnsSource,
) -> Result<(Vec<EndpointConfig>, Option<Duration>), String> {
    let fqdn = format!("{}.", d.name);
    let why = |e: hickory_resolver::net::NetError| {
        if e.is_nx_domain() {
            "NXDOMAIN".to_owned()
        } else if e.is_no_records_found() {
            format!("no {} record", d.kind.as_str())
        } else {
            e.to_string()
        }
    };
    let kind = match d.kind {
        LookupKind::A => RecordType::A,
        LookupKind::Aaaa => RecordType::AAAA,
        LookupKind::Srv => RecordType::SRV,
    };
    let answer = resolver.lookup(fqdn.as_str(), kind).await.map_err(why)?;
    let ttl = answer
        .answers()
        .iter()
        .map(|r| r.ttl)
        .min()
        .map(|t| Duration::from_secs(u64::from(t)));
    let mut set = Vec::new();
    match d.kind {
        LookupKind::A | LookupKind::Aaaa => {
            for r in answer.answers() {
                let ip: IpAddr = match &r.data {
                    RData::A(a) => a.0.into(),
                    RData::AAAA(a) => a.0.into(),
                    _ => continue,
                };
                set.push(endpoint((ip, d.port).into(), 1, 0));
            }
        }
        LookupKind::Srv => {
            let srvs: Vec<_> = answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            // SRV priorities are any u16; ours are groups 0..=7 in the same order.
            let mut levels: Vec<u16> = srvs.iter().map(|s| s.priority).collect();
            levels.sort_unstable();
            levels.dedup();
            let mut skipped = Vec::new();
            for s in &srvs {
                let priority = levels
                    .iter()
                    .position(|p| *p == s.priority)
                    .unwrap_or(0)
                    .min(7) as u32;
                let weight = u32::from(s.weight).clamp(1, 10_000);
                // Addresses from the answer's additional section, else looked up.
                let mut ips: Vec<IpAddr> = answer
                    .additionals()
                    .iter()
                    .filter(|r| r.name == s.target)
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0.into()),
                        RData::AAAA(a) => Some(a.0.into()),
                        _ => None,
                    })
                    .collect();
                if ips.is_empty() {
                    // A target that does not resolve is left out; the answer fails
                    // only if none does.
                    match resolver.lookup_ip(s.target.clone()).await {
                        Ok(l) => ips = l.iter().collect(),
                        Err(e) => {
                            skipped.push(format!("SRV target {}: {}", s.target, why(e)));
                            continue;
                        }
                    }
                }
                for ip in ips {
                    set.push(endpoint((ip, s.port).into(), weight, priority));
                }
            }
            if set.is_empty() && !skipped.is_empty() {
                return Err(skipped.join("; "));
            }
        }
    }
    if set.is_empty() {
        return Err(format!("no {} record", d.kind.as_str()));
    }
    Ok((set, ttl))
}

fn endpoint(address: SocketAddr, weight: u32, priority: u32) -> EndpointConfig {
    EndpointConfig {
        address,
        zone: None,
        weight,
        priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ports: &[u16]) -> Vec<EndpointConfig> {
        ports
            .iter()
            .map(|p| endpoint(([127, 0, 0, 1], *p).into(), 1, 0))
            .collect()
    }

    #[test]
    fn the_first_answer_applies_and_the_same_answer_changes_nothing() {
        let mut t = Tracker::new(50.0, None, None);
        assert_eq!(t.condition(), Condition::Waiting);
        let s = t.answer(0, Ok(set(&[2, 1])));
        assert_eq!(s.outcome, "applied");
        assert_eq!(s.update, Some(Some(set(&[1, 2]))));
        let s = t.answer(5, Ok(set(&[1, 2])));
        assert_eq!((s.outcome, s.update), ("unchanged", None));
        // Additions and small removals apply at once.
        let s = t.answer(10, Ok(set(&[1, 2, 3, 4])));
        assert_eq!(s.outcome, "applied");
        let s = t.answer(15, Ok(set(&[1, 2, 3])));
        assert_eq!(s.outcome, "applied");
        assert!(s.log.unwrap().contains("-1"));
    }

    #[test]
    fn a_bad_answer_keeps_the_last_good_set_until_stale_for() {
        let mut t = Tracker::new(50.0, Some(Duration::from_secs(60)), None);
        t.answer(0, Ok(set(&[1, 2])));
        let s = t.answer(1_000, Err("NXDOMAIN".into()));
        assert_eq!((s.outcome, s.update.clone()), ("failed", None));
        assert!(s.log.unwrap().contains("keeping the last good set of 2"));
        assert_eq!(t.condition(), Condition::Stale);
        let s = t.answer(2_000, Ok(vec![]));
        assert_eq!(
            (s.outcome, s.log),
            ("failed", None),
            "one log line per change"
        );
        let s = t.answer(60_999, Err("timeout".into()));
        assert_eq!(s.update, None);
        // A minute after the first failure the set expires: back to the seed list.
        let s = t.answer(61_000, Err("timeout".into()));
        assert_eq!((s.outcome, s.update), ("expired", Some(None)));
        assert_eq!(t.condition(), Condition::Expired);
        // The next good answer applies whole, as a first one.
        let s = t.answer(62_000, Ok(set(&[3])));
        assert_eq!((s.outcome, s.update), ("applied", Some(Some(set(&[3])))));
        assert_eq!(t.condition(), Condition::Fresh);
    }

    #[test]
    fn failing_from_the_start_is_said_once() {
        let mut t = Tracker::new(50.0, Some(Duration::from_secs(1)), None);
        let s = t.answer(0, Err("NXDOMAIN".into()));
        assert!(s.log.unwrap().contains("the seed list serves"));
        let s = t.answer(5_000, Err("NXDOMAIN".into()));
        assert_eq!((s.outcome, s.update, s.log), ("failed", None, None));
        assert_eq!(t.condition(), Condition::Waiting);
    }

    #[test]
    fn without_stale_for_the_last_good_set_stays() {
        let mut t = Tracker::new(50.0, None, None);
        t.answer(0, Ok(set(&[1])));
        let s = t.answer(u64::MAX / 2, Err("SERVFAIL".into()));
        assert_eq!(s.update, None);
        assert_eq!(t.current().unwrap().len(), 1);
    }

    #[test]
    fn the_churn_guard_holds_until_two_more_lookups_confirm() {
        let mut t = Tracker::new(50.0, None, None);
        t.answer(0, Ok(set(&[1, 2, 3, 4])));
        // Dropping 3 of 4 is more than 50%: held.
        let s = t.answer(1, Ok(set(&[1])));
        assert_eq!((s.outcome, s.update.clone()), ("held", None));
        assert!(s.log.unwrap().contains("removes 3 of 4"));
        assert!(t.holding());
        let s = t.answer(2, Ok(set(&[1])));
        assert_eq!((s.outcome, s.update), ("held", None));
        let s = t.answer(3, Ok(set(&[1])));
        assert_eq!(s.outcome, "applied");
        assert_eq!(s.update, Some(Some(set(&[1]))));
        assert!(s.log.unwrap().contains("confirmed"));

        // A different answer in between starts the count again; a failure too.
        let mut t = Tracker::new(50.0, None, Some(set(&[1, 2, 3, 4])));
        assert_eq!(t.answer(1, Ok(set(&[1]))).outcome, "held");
        assert_eq!(t.answer(2, Ok(set(&[2]))).outcome, "held");
        assert_eq!(t.answer(3, Ok(set(&[2]))).outcome, "held");
        assert_eq!(t.answer(4, Err("timeout".into())).outcome, "failed");
        assert_eq!(t.answer(5, Ok(set(&[2]))).outcome, "held");
        // Back to the current set: the hold is dropped.
        assert_eq!(t.answer(6, Ok(set(&[1, 2, 3, 4]))).outcome, "unchanged");
        assert!(!t.holding());
        // Exactly half is allowed at 50%.
        assert_eq!(t.answer(7, Ok(set(&[1, 2]))).outcome, "applied");
    }

    #[test]
    fn ttl_is_respected_within_bounds() {
        let d = DnsSource {
            name: "api.internal".into(),
            kind: LookupKind::A,
            port: 80,
            refresh: Duration::from_secs(5),
            respect_ttl: true,
            stale_for: None,
            resolvers: vec![],
        };
        let s = Duration::from_secs;
        assert_eq!(next_lookup(&d, Some(s(0))), s(5), "refresh is the floor");
        assert_eq!(next_lookup(&d, Some(s(30))), s(30));
        assert_eq!(next_lookup(&d, Some(s(86_400))), MAX_TTL_WAIT);
        assert_eq!(next_lookup(&d, None), s(5));
        let d = DnsSource {
            respect_ttl: false,
            ..d
        };
        assert_eq!(next_lookup(&d, Some(s(30))), s(5));
    }
}
