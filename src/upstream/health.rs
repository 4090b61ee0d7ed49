//! Active health checks: one probe task per endpoint of every cluster that has a
//! `health_check`, run off the data path on the `ninefold-health` thread.
//!
//! The thread has its own current_thread runtime, so a slow or hung probe never
//! shares a scheduler with client requests. What to probe is pushed to it: each time
//! the control plane stores a snapshot, it stores that snapshot's [`Targets`] too, and
//! a reconciler looks for a new generation every [`RECONCILE_EVERY`] and keeps exactly
//! one task per (cluster, endpoint address):
//! new endpoints get a task, removed endpoints (and endpoints of a cluster whose check
//! settings changed) have theirs cancelled, and an unchanged endpoint keeps its task,
//! and its streak of passes or failures, across a reload. A cluster whose
//! `health_check` a reload removed has its endpoints set back to `unknown`.
//!
//! A probe is an HTTP `GET` over a fresh TCP connection (so it also catches what a
//! pooled connection would hide: a listener that stopped accepting, a full accept
//! queue), or a bare TCP connect. The whole probe, connect included, runs within the
//! check's `timeout`. The `GET` speaks the cluster's protocol: HTTP/1.1, or HTTP/2 with
//! prior knowledge for a `protocol: http2` cluster, whose endpoints (a gRPC server,
//! nginx's `listen ... http2`) may refuse HTTP/1.1 altogether.
//!
//! # Start state and thresholds
//!
//! An endpoint starts `unknown`, which is available, and the *first* probe result of
//! an `unknown` endpoint decides at once: a pass makes it `healthy`, a failure
//! `unhealthy`. The thresholds (`healthy_threshold` passes in a row, or
//! `unhealthy_threshold` failures in a row) apply from then on. Two reasons:
//!
//! - A restarted gateway must not black-hole traffic for `interval × healthy_threshold`
//!   waiting to prove endpoints it knows nothing bad about: starting `unhealthy` would
//!   make every restart an outage.
//! - A dead endpoint is still caught fast: the first probe runs within
//!   `min(interval, 1s)` of start and marks it `unhealthy` at once; meanwhile a refused
//!   connection is retried on another endpoint and passive outlier detection ejects
//!   it.
//!
//! Once an endpoint has a state, a flapping endpoint (pass, fail, pass, ...) keeps it
//! as long as both thresholds are at least 2: one lucky probe does not bring it back,
//! one unlucky probe does not take it out. [`Tracker`] is that state machine, pure and
//! driven by the caller.
//!
//! # Schedule
//!
//! The first probe of a task waits a random delay in `[0, min(interval, 1s))` so that
//! a start or a reload does not probe every endpoint at the same instant; then probes
//! start every `interval ± jitter%` (uniform), measured start to start. Randomness is
//! a [`fastrand::Rng`] handed in ([`initial_delay`], [`jittered`]), seeded in tests.
//!
//! # What it writes
//!
//! After each probe, the endpoint's [`CheckReport`] (for the admin API); on each
//! transition, [`EndpointState::set_health`], exactly one log line (info when the
//! endpoint becomes healthy, warn when it becomes unhealthy) and the gauge
//! `ninefold_endpoint_healthy{cluster,endpoint}`: 1 healthy, 0 unhealthy, and 1 for
//! unknown, because an unknown endpoint takes traffic. Cancelling a task removes its
//! label set, so the gauge never reports endpoints that are gone.

use crate::config::{CheckKind, HealthCheckConfig, OnMarkedDown, Role};
use crate::upstream::pg::Facts;
use crate::upstream::{now_ms, CheckReport, ClusterLive, EndpointState, Health, PrimaryEvent};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the reconciler looks for a new snapshot: a reload's new endpoints are
/// probed within this (plus their initial delay), and it costs one atomic load.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Largest health body read for `expect_json_status`: a health document is small; a
/// larger body is a misconfigured path, and must not cost memory.
pub const MAX_BODY: usize = 64 * 1024;

/// The longest initial delay: spreads the first probes of a start over a second at
/// most, so a dead endpoint is still caught within about a second.
pub const MAX_INITIAL_DELAY: Duration = Duration::from_secs(1);

/// `user-agent` of HTTP probes, so backends can tell them from traffic.
const USER_AGENT: &str = "ninefold-health";

/// The health state machine of one endpoint: the current state and the streak that
/// may change it. Pure: no clock, no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    state: Health,
    passes: u32,
    failures: u32,
}

/// A change of state, as returned by [`Tracker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: Health,
    /// The state after.
    pub to: Health,
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Whether the probe passed.
    pub pass: bool,
    /// `ok`, or what failed, for [`CheckReport::last`] and the log.
    pub reason: String,
    /// What a PostgreSQL-aware probe learned: the role claimed, a replica's lag.
    pub facts: Option<Facts>,
    /// It failed only because a replica is too far behind: its sessions are kept.
    pub lag: bool,
}

impl Outcome {
    fn pass() -> Outcome {
        Outcome {
            pass: true,
            reason: "ok".into(),
            facts: None,
            lag: false,
        }
    }

    fn fail(reason: String) -> Outcome {
        Outcome {
            pass: false,
            reason,
            facts: None,
            lag: false,
        }
    }
}

/// What the health checks probe: every cluster of one snapshot, with its check (or
/// none) and its endpoints' live state. The control plane stores a new one each time
/// it stores a snapshot.
#[derive(Default)]
pub struct Targets {
    /// The snapshot's generation.
    pub generation: u64,
    /// The clusters, in config order.
    pub clusters: Vec<ClusterTargets>,
}

/// One cluster's targets.
pub struct ClusterTargets {
    /// The cluster's name.
    pub name: Arc<str>,
    /// Its health check; `None`: its endpoints' health goes back to unknown (a reload
    /// may have removed the check that made them healthy or unhealthy).
    pub check: Option<HealthCheckConfig>,
    /// The cluster's protocol is HTTP/2 (an HTTP probe speaks it).
    pub h2: bool,
    /// The cluster's live state (a passing probe ends an ejection in it).
    pub live: Arc<ClusterLive>,
    /// The endpoints, with their names (`ip:port`), in config order.
    pub endpoints: Vec<(Arc<str>, Arc<EndpointState>)>,
    /// What happens to an endpoint's TCP sessions when it leaves the set.
    pub on_marked_down: OnMarkedDown,
}

/// The gauges the health checks write.
#[derive(Clone)]
pub struct Gauges {
    /// `ninefold_endpoint_healthy{cluster,endpoint}`.
    pub healthy: prometheus::IntGaugeVec,
    /// `ninefold_primary_generation{cluster}`.
    pub primary_generation: prometheus::IntGaugeVec,
    /// `ninefold_tcp_sessions_fenced_total{cluster,endpoint}`: sessions closed because
    /// their endpoint left the set.
    pub fenced: prometheus::IntCounterVec,
}

/// The running probe of one endpoint, as the reconciler knows it.
struct Probe {
    cfg: HealthCheckConfig,
    /// The cluster's protocol is HTTP/2 (the probe speaks it).
    h2: bool,
    endpoint: Arc<EndpointState>,
    task: JoinHandle<()>,
}

/// Keeps one probe task per (cluster, endpoint address) of the current targets.
struct Reconciler {
    targets: Arc<ArcSwap<Targets>>,
    gauge: prometheus::IntGaugeVec,
    gauges: Gauges,
    /// Probes of primary clusters name their cluster here after each probe, so the
    /// primary is looked at again at once.
    looks: tokio::sync::mpsc::UnboundedSender<Arc<str>>,
    probes: HashMap<(Arc<str>, SocketAddr), Probe>,
    generation: u64,
    rng: fastrand::Rng,
}

// === impl Tracker ===

impl Tracker {
    /// A tracker starting at `state` (the endpoint's current health, carried over a
    /// reload), with no streak.
    pub fn new(state: Health) -> Tracker {
        Tracker {
            state,
            passes: 0,
            failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Passes in a row.
    pub fn passes(&self) -> u32 {
        self.passes
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one probe result; returns the transition it caused, if any. From
    /// `unknown` the first result decides; otherwise `healthy` (`unhealthy`) takes
    /// that many passes (failures) in a row.
    pub fn record(&mut self, pass: bool, healthy: u32, unhealthy: u32) -> Option<Transition> {
        if pass {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
        }
        let to = match (self.state, pass) {
            (Health::Unknown, true) => Health::Healthy,
            (Health::Unknown, false) => Health::Unhealthy,
            (Health::Unhealthy, true) if self.passes >= healthy => Health::Healthy,
            (Health::Healthy, false) if self.failures >= unhealthy => Health::Unhealthy,
            (s, _) => s,
        };
        if to == self.state {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        Some(Transition { from, to })
    }
}

// === schedule ===

/// The delay before a task's first probe: uniform in `[0, min(interval, 1s))`.
pub fn initial_delay(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    let max = interval.min(MAX_INITIAL_DELAY).as_millis() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rng.u64(0..max))
}

/// The time to the next probe: `interval ± jitter%`, uniform (`jitter` in percent).
pub fn jittered(interval: Duration, jitter: f64, rng: &mut fastrand::Rng) -> Duration {
    let spread = (jitter.clamp(0.0, 100.0) / 100.0) * (2.0 * rng.f64() - 1.0);
    interval.mul_f64(1.0 + spread)
}

// === probes ===

/// Runs one probe of `addr`, within `cfg.timeout`; an HTTP probe speaks HTTP/2 with
/// prior knowledge when `h2` is set (a `protocol: http2` cluster), HTTP/1.1 otherwise.
pub async fn probe(addr: SocketAddr, cfg: &HealthCheckConfig, h2: bool) -> Outcome {
    let run = async {
        let target = match &cfg.kind {
            CheckKind::Patroni(p) => SocketAddr::new(addr.ip(), p.port),
            _ => addr,
        };
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| Outcome::fail(format!("connect: {e}")))?;
        match &cfg.kind {
            CheckKind::Tcp => Ok(None),
            CheckKind::Postgres(pg) => match super::pg::probe(stream, addr, pg).await {
                Ok(f) => Ok(Some(f)),
                Err(f) => Err(Outcome {
                    pass: false,
                    reason: f.reason,
                    facts: f.facts,
                    lag: f.lag,
                }),
            },
            CheckKind::Patroni(p) => {
                let path = match (p.role, p.lag) {
                    (Role::Primary, _) => "/primary".to_owned(),
                    (Role::Replica, None) => "/replica".to_owned(),
                    (Role::Replica, Some(lag)) => format!("/replica?lag={lag}"),
                };
                let host = target.to_string();
                http_probe(stream, &path, &host, false, &[(200, 299)], None)
                    .await
                    .map_err(|r| Outcome::fail(format!("patroni {path}: {r}")))?;
                Ok(Some(Facts {
                    role: p.role,
                    lag_seconds: None,
                    lag_bytes: None,
                }))
            }
            CheckKind::Http {
                path,
                host,
                expect_status,
                expect_json_status,
            } => {
                let host = host.clone().unwrap_or_else(|| addr.to_string());
                http_probe(
                    stream,
                    path,
                    &host,
                    h2,
                    expect_status,
                    expect_json_status.as_deref(),
                )
                .await
                .map(|()| None)
                .map_err(Outcome::fail)
            }
        }
    };
    match tokio::time::timeout(cfg.timeout, run).await {
        Ok(Ok(facts)) => Outcome {
            facts,
            ..Outcome::pass()
        },
        Ok(Err(o)) => o,
        Err(_) => Outcome::fail(format!("timeout after {:?}", cfg.timeout)),
    }
}

async fn http_probe(
    stream: TcpStream,
    path: &str,
    host: &str,
    h2: bool,
    expect_status: &[(u16, u16)],
    expect_json_status: Option<&str>,
) -> Result<(), String> {
    let req = if h2 {
        // The host goes as `:authority`; HTTP/2 has no `connection` field.
        http::Request::get(format!("http://{host}{path}"))
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Empty::<Bytes>::new())
    } else {
        http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, USER_AGENT)
            // One probe, one connection: tell the backend not to keep it.
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
    }
    .map_err(|e| format!("request: {e}"))?;
    // The connection ends with the probe: its answer is dropped, or the task is
    // cancelled with the probe's runtime.
    let resp = crate::oneshot::send(stream, req, h2)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    if !expect_status
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&status))
    {
        return Err(format!("status {status}"));
    }
    let Some(expected) = expect_json_status else {
        return Ok(());
    };
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("body larger than {} KiB", MAX_BODY / 1024)
            } else {
                format!("body: {e}")
            }
        })?
        .to_bytes();
    judge_body(&body, expected)
}

/// Whether a health body is `{"status": <expected>, "checks": {...}}` (`checks`
/// optional); the reason when it is not.
pub fn judge_body(body: &[u8], expected: &str) -> Result<(), String> {
    let shape = || String::from(r#"body is not {"status": ...}"#);
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| shape())?;
    let obj = v.as_object().ok_or_else(shape)?;
    let status = obj
        .get("status")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(shape)?;
    if obj.get("checks").is_some_and(|c| !c.is_object()) {
        return Err(shape());
    }
    if status != expected {
        return Err(format!("json status {status:?}"));
    }
    Ok(())
}

// === the thread ===

/// Starts the `ninefold-health` thread, probing what `targets` holds and writing
/// `gauge` (`ninefold_endpoint_healthy`); it stops when `stop` turns true (or its
/// sender is dropped).
pub fn spawn(
    targets: Arc<ArcSwap<Targets>>,
    gauges: Gauges,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::runtime::thread("ninefold-health", move |rt| run(rt, targets, gauges, stop))
}

fn run(
    rt: tokio::runtime::Runtime,
    targets: Arc<ArcSwap<Targets>>,
    gauges: Gauges,
    mut stop: watch::Receiver<bool>,
) {
    rt.block_on(async {
        let (looks, mut look_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Reconciler {
            targets,
            gauge: gauges.healthy.clone(),
            gauges,
            looks,
            probes: HashMap::new(),
            generation: 0,
            rng: fastrand::Rng::new(),
        };
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => r.tick(),
                Some(cluster) = look_rx.recv() => r.look(&cluster),
                res = stop.changed() => {
                    if res.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        r.stop_all();
    });
}

// === impl Reconciler ===

impl Reconciler {
    fn tick(&mut self) {
        let targets = self.targets.load_full();
        if targets.generation == self.generation {
            return;
        }
        self.generation = targets.generation;
        self.reconcile(&targets);
    }

    fn reconcile(&mut self, targets: &Targets) {
        type Wanted<'t> = (&'t ClusterTargets, &'t HealthCheckConfig, usize);
        let mut wanted: HashMap<(Arc<str>, SocketAddr), Wanted<'_>> = HashMap::new();
        for c in &targets.clusters {
            let Some(cfg) = &c.check else {
                forget_health(c);
                continue;
            };
            for (i, (_, e)) in c.endpoints.iter().enumerate() {
                wanted.insert((c.name.clone(), e.address), (c, cfg, i));
            }
        }
        // Cancel what is gone or changed; a task is kept only if it probes the same
        // live state with the same settings.
        self.probes.retain(|key, p| {
            let keep = wanted.get(key).is_some_and(|(c, cfg, i)| {
                **cfg == p.cfg && c.h2 == p.h2 && Arc::ptr_eq(&c.endpoints[*i].1, &p.endpoint)
            });
            if !keep {
                p.task.abort();
                let _ = self
                    .gauge
                    .remove_label_values(&[&*key.0, &key.1.to_string()]);
            }
            keep
        });
        for (key, (c, cfg, i)) in wanted {
            if self.probes.contains_key(&key) {
                continue;
            }
            let (name, endpoint) = &c.endpoints[i];
            let gauge = self.gauge.with_label_values(&[&c.name, name]);
            let looks = (cfg.role() == Some(Role::Primary)).then(|| self.looks.clone());
            let task = tokio::spawn(probe_loop(
                Named {
                    cluster: c.name.clone(),
                    name: name.clone(),
                    endpoint: Arc::clone(endpoint),
                    live: Arc::clone(&c.live),
                    on_marked_down: c.on_marked_down,
                    fenced: self.gauges.fenced.with_label_values(&[&c.name, name]),
                    looks,
                },
                cfg.clone(),
                c.h2,
                gauge,
                self.rng.fork(),
            ));
            self.probes.insert(
                key,
                Probe {
                    cfg: cfg.clone(),
                    h2: c.h2,
                    endpoint: Arc::clone(endpoint),
                    task,
                },
            );
        }
    }

    /// Looks again at who is the primary of `cluster` (a probe of it just ended):
    /// moves the generation, fences the old primary's sessions, says so once.
    fn look(&mut self, cluster: &str) {
        let targets = self.targets.load();
        let Some(c) = targets.clusters.iter().find(|c| &*c.name == cluster) else {
            return;
        };
        let Some(cfg) = &c.check else { return };
        if cfg.role() != Some(Role::Primary) {
            return;
        }
        let claims: Vec<(SocketAddr, bool, bool)> = c
            .endpoints
            .iter()
            .map(|(_, e)| {
                (
                    e.address,
                    e.role() == Some(Role::Primary),
                    e.health() == Health::Healthy && !e.draining(),
                )
            })
            .collect();
        for event in c.live.primary.update(&claims) {
            match event {
                PrimaryEvent::Switched {
                    from,
                    to,
                    generation,
                } => {
                    self.gauges
                        .primary_generation
                        .with_label_values(&[&c.name])
                        .set(generation as i64);
                    // Self-fencing: the old primary's sessions close before the relay
                    // admits a connection to the new one.
                    let mut closed = 0;
                    if let Some(old) =
                        from.and_then(|a| c.endpoints.iter().find(|(_, e)| e.address == a))
                    {
                        if c.on_marked_down == OnMarkedDown::ShutdownSessions {
                            closed = old.1.fence();
                            self.gauges
                                .fenced
                                .with_label_values(&[&c.name, &old.0])
                                .inc_by(u64::from(closed));
                        }
                    }
                    match from {
                        Some(from) => {
                            tracing::warn!(cluster = %c.name, %from, %to, generation, sessions_closed = closed, "primary switched");
                            crate::events::emit("primary_switch", Some(&c.name), Some(&to.to_string()), format!("primary switched from {from} to {to} (generation {generation}); {closed} sessions closed"));
                        }
                        None => {
                            tracing::info!(cluster = %c.name, primary = %to, generation, "primary found");
                            crate::events::emit(
                                "primary_switch",
                                Some(&c.name),
                                Some(&to.to_string()),
                                format!("primary found: {to} (generation {generation})"),
                            );
                        }
                    }
                }
                PrimaryEvent::SplitBegan(who) => {
                    let who: Vec<String> = who.iter().map(SocketAddr::to_string).collect();
                    let policy = match cfg.two_primaries() {
                        Some(crate::config::TwoPrimaries::KeepCurrent) => {
                            "keeping the current primary"
                        }
                        _ => "refusing new connections",
                    };
                    tracing::error!(cluster = %c.name, endpoints = %who.join(", "), "two primaries: {policy} until one stops claiming it");
                    crate::events::emit(
                        "two_primaries",
                        Some(&c.name),
                        None,
                        format!(
                            "two primaries: {} both claim primary; {policy}",
                            who.join(" and ")
                        ),
                    );
                }
                PrimaryEvent::SplitEnded => {
                    tracing::warn!(cluster = %c.name, "two primaries no more: one endpoint claims primary");
                    crate::events::emit(
                        "two_primaries_over",
                        Some(&c.name),
                        None,
                        "two primaries no more: one endpoint claims primary".into(),
                    );
                }
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, p) in self.probes.drain() {
            p.task.abort();
        }
    }
}

/// A cluster without a health check: its endpoints' health is `unknown` (a reload
/// may have removed the check that made them healthy or unhealthy).
fn forget_health(c: &ClusterTargets) {
    let now = now_ms();
    let mut reset = 0;
    for (_, e) in &c.endpoints {
        if e.set_health(Health::Unknown, now) {
            reset += 1;
        }
        e.set_role(None);
        if let Ok(mut r) = e.check.lock() {
            *r = CheckReport::default();
        }
    }
    if reset > 0 {
        tracing::info!(cluster = %c.name, endpoints = reset, "health check removed: endpoint health back to unknown");
    }
}

/// The gauge value of a health state: unknown counts as 1, since it takes traffic.
fn gauge_value(h: Health) -> i64 {
    match h {
        Health::Unhealthy => 0,
        Health::Healthy | Health::Unknown => 1,
    }
}

/// The endpoint a probe task probes, and what it writes besides its health.
struct Named {
    cluster: Arc<str>,
    name: Arc<str>,
    endpoint: Arc<EndpointState>,
    live: Arc<ClusterLive>,
    on_marked_down: OnMarkedDown,
    fenced: prometheus::IntCounter,
    /// For a primary cluster: where to ask for a look at the primary after a probe.
    looks: Option<tokio::sync::mpsc::UnboundedSender<Arc<str>>>,
}

async fn probe_loop(
    n: Named,
    cfg: HealthCheckConfig,
    h2: bool,
    gauge: prometheus::IntGauge,
    mut rng: fastrand::Rng,
) {
    let Named {
        cluster,
        name,
        endpoint,
        live,
        ..
    } = &n;
    let mut tracker = Tracker::new(endpoint.health());
    gauge.set(gauge_value(tracker.state()));
    let mut next = Instant::now() + initial_delay(cfg.interval, &mut rng);
    loop {
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        let outcome = probe(endpoint.address, &cfg, h2).await;
        let now = now_ms();
        let change = tracker.record(outcome.pass, cfg.healthy_threshold, cfg.unhealthy_threshold);
        if cfg.role().is_some() {
            endpoint.set_role(outcome.facts.map(|f| f.role));
        }
        if let Ok(mut r) = endpoint.check.lock() {
            *r = CheckReport {
                last: outcome.reason.clone(),
                at_ms: now,
                passes: tracker.passes(),
                failures: tracker.failures(),
                role: outcome.facts.map(|f| f.role.as_str()),
                lag_seconds: outcome.facts.and_then(|f| f.lag_seconds),
                lag_bytes: outcome.facts.and_then(|f| f.lag_bytes),
            };
        }
        // A passing probe ends a passive ejection (Envoy's default,
        // `successful_active_health_check_uneject_host`): the active check is the
        // authority on recovery, so a revived endpoint does not sit out the rest of an
        // ejection earned while it was down.
        if outcome.pass && endpoint.ejected_until() > 0 {
            endpoint.clear_ejection(live);
            tracing::info!(cluster = %cluster, endpoint = %name, "ejection ended: the health check passes");
            crate::events::emit(
                "ejection_ended",
                Some(cluster),
                Some(name),
                "ejection ended: the health check passes".into(),
            );
        }
        if let Some(t) = change {
            endpoint.set_health(t.to, now);
            gauge.set(gauge_value(t.to));
            let (from, to) = (t.from.as_str(), t.to.as_str());
            let kind = if t.to == Health::Unhealthy {
                "endpoint_down"
            } else {
                "endpoint_up"
            };
            crate::events::emit(
                kind,
                Some(cluster),
                Some(name),
                format!("health {from} → {to}: {}", outcome.reason),
            );
            if t.to == Health::Unhealthy {
                tracing::warn!(cluster = %cluster, endpoint = %name, %from, %to, reason = %outcome.reason, "endpoint health changed");
                // Out of the set: its sessions close, unless the cluster keeps them or
                // it is only a replica too far behind (drained, not killed).
                if n.on_marked_down == OnMarkedDown::ShutdownSessions && !outcome.lag {
                    let closed = endpoint.fence();
                    n.fenced.inc_by(u64::from(closed));
                    if closed > 0 {
                        tracing::warn!(cluster = %cluster, endpoint = %name, sessions = closed, "sessions closed: the endpoint left the set");
                    }
                }
            } else {
                tracing::info!(cluster = %cluster, endpoint = %name, %from, %to, reason = %outcome.reason, "endpoint health changed");
            }
        }
        if let Some(looks) = &n.looks {
            let _ = looks.send(cluster.clone());
        }
        // Start to start, so a slow probe does not stretch the interval.
        next = started + jittered(cfg.interval, cfg.jitter, &mut rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Tracker, results: &[bool], healthy: u32, unhealthy: u32) -> Vec<Transition> {
        results
            .iter()
            .filter_map(|&p| t.record(p, healthy, unhealthy))
            .collect()
    }

    #[test]
    fn the_first_probe_of_an_unknown_endpoint_decides() {
        let mut t = Tracker::new(Health::Unknown);
        assert_eq!(
            t.record(true, 3, 3),
            Some(Transition {
                from: Health::Unknown,
                to: Health::Healthy
            })
        );
        let mut t = Tracker::new(Health::Unknown);
        assert_eq!(
            t.record(false, 3, 3),
            Some(Transition {
                from: Health::Unknown,
                to: Health::Unhealthy
            })
        );
    }

    #[test]
    fn thresholds_apply_once_decided() {
        let mut t = Tracker::new(Health::Unknown);
        t.record(true, 2, 3);
        // Two failures: still healthy; the third takes it out.
        assert!(run(&mut t, &[false, false], 2, 3).is_empty());
        assert_eq!(t.failures(), 2);
        assert_eq!(
            t.record(false, 2, 3),
            Some(Transition {
                from: Health::Healthy,
                to: Health::Unhealthy
            })
        );
        // One pass is not enough to come back; the second is.
        assert_eq!(t.record(true, 2, 3), None);
        assert_eq!(
            t.record(true, 2, 3),
            Some(Transition {
                from: Health::Unhealthy,
                to: Health::Healthy
            })
        );
        assert_eq!((t.passes(), t.failures()), (2, 0));
    }

    #[test]
    fn a_failure_resets_the_pass_streak_and_back() {
        let mut t = Tracker::new(Health::Unhealthy);
        assert!(run(&mut t, &[true, true, false, true, true], 3, 3).is_empty());
        assert_eq!(t.state(), Health::Unhealthy);
        assert!(t.record(true, 3, 3).is_some());
    }

    #[test]
    fn thresholds_of_one_follow_every_probe() {
        let mut t = Tracker::new(Health::Healthy);
        let changes = run(&mut t, &[false, true, false], 1, 1);
        assert_eq!(changes.len(), 3);
        assert_eq!(t.state(), Health::Unhealthy);
    }

    #[test]
    fn a_flapping_endpoint_keeps_its_state() {
        for start in [true, false] {
            let mut t = Tracker::new(Health::Unknown);
            let first = t.record(start, 2, 2);
            assert!(first.is_some());
            let decided = t.state();
            let flaps: Vec<bool> = (0..100).map(|i| (i % 2 == 0) != start).collect();
            assert!(run(&mut t, &flaps, 2, 2).is_empty(), "start {start}");
            assert_eq!(t.state(), decided);
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let mut rng = fastrand::Rng::with_seed(7);
        let interval = Duration::from_secs(5);
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let d = jittered(interval, 10.0, &mut rng);
            assert!(
                d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500),
                "{d:?}"
            );
            lo = lo.min(d);
            hi = hi.max(d);
        }
        // Uniform over the whole band, not stuck at one end.
        assert!(lo < Duration::from_millis(4550) && hi > Duration::from_millis(5450));
        assert_eq!(jittered(interval, 0.0, &mut rng), interval);
    }

    #[test]
    fn jitter_is_reproducible_with_a_seed() {
        let a: Vec<Duration> = {
            let mut r = fastrand::Rng::with_seed(42);
            (0..5)
                .map(|_| jittered(Duration::from_secs(1), 20.0, &mut r))
                .collect()
        };
        let mut r = fastrand::Rng::with_seed(42);
        let b: Vec<Duration> = (0..5)
            .map(|_| jittered(Duration::from_secs(1), 20.0, &mut r))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn initial_delay_is_below_the_interval_and_a_second() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..10_000 {
            assert!(
                initial_delay(Duration::from_millis(200), &mut rng) < Duration::from_millis(200)
            );
            assert!(initial_delay(Duration::from_secs(30), &mut rng) < Duration::from_secs(1));
        }
        assert_eq!(initial_delay(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn health_bodies_are_judged_by_shape_and_status() {
        assert_eq!(
            judge_body(br#"{"status":"ok","checks":{"db":"ok"}}"#, "ok"),
            Ok(())
        );
        assert_eq!(judge_body(br#"{"status":"ok"}"#, "ok"), Ok(()));
        assert_eq!(
            judge_body(br#"{"status":"degraded"}"#, "ok"),
            Err(r#"json status "degraded""#.into())
        );
        let shape = Err(r#"body is not {"status": ...}"#.to_string());
        assert_eq!(judge_body(b"ok", "ok"), shape);
        assert_eq!(judge_body(br#"["ok"]"#, "ok"), shape);
        assert_eq!(judge_body(br#"{"status":1}"#, "ok"), shape);
        assert_eq!(judge_body(br#"{"status":"ok","checks":[]}"#, "ok"), shape);
    }

    fn http_cfg(timeout: Duration) -> HealthCheckConfig {
        HealthCheckConfig {
            kind: CheckKind::Http {
                path: "/health".into(),
                host: None,
                expect_status: vec![(200, 299)],
                expect_json_status: Some("ok".into()),
            },
            interval: Duration::from_secs(1),
            timeout,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            jitter: 10.0,
        }
    }

    #[tokio::test]
    async fn a_probe_that_gets_no_answer_times_out_with_a_reason() {
        // Listening but never accepting: the kernel completes the handshake, no answer.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let o = probe(addr, &http_cfg(Duration::from_millis(100)), false).await;
        assert_eq!(o, Outcome::fail("timeout after 100ms".into()));
        drop(l);
    }

    #[tokio::test]
    async fn a_refused_connect_fails_with_a_reason() {
        // Bound, not listening: connects are refused, and the port stays ours.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let mut cfg = http_cfg(Duration::from_secs(1));
        cfg.kind = CheckKind::Tcp;
        let o = probe(addr, &cfg, false).await;
        assert!(!o.pass);
        assert!(o.reason.starts_with("connect: "), "{}", o.reason);
    }

    #[test]
    fn unknown_counts_as_available_on_the_gauge() {
        assert_eq!(gauge_value(Health::Unknown), 1);
        assert_eq!(gauge_value(Health::Healthy), 1);
        assert_eq!(gauge_value(Health::Unhealthy), 0);
    }
}
