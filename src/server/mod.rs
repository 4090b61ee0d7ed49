//! The process: worker threads that serve the data path, and the control plane that
//! starts them, reloads the configuration and shuts down gracefully.
//!
//! Thread per core, like nginx: each worker runs its own current_thread tokio runtime
//! (`worker`) and its own listening socket per listener (`listen`: SO_REUSEPORT, so
//! the kernel spreads connections), and a connection lives and dies on the worker that
//! accepted it, together with its upstream connections (see `h1::pool`). Its driver is
//! the own engine's connection loop ([`h1`], answers written by `answer`) for HTTP/1.x,
//! hyper's (`hyper`) for h2 and h2c. What workers share is the [`Shared`] state: one
//! `ArcSwap<Snapshot>` and atomics.
//!
//! The control plane (the main thread, [`Gateway`]) owns the listener sockets'
//! lifecycle. A reload validates the new file, builds a new snapshot, binds sockets for
//! new listeners, and only when all of that worked swaps the snapshot, applies what it
//! changes (`snapshot::Changes`), pushes the health checks their new targets and hands
//! the sockets to the workers; removed listeners stop accepting. A refused reload
//! changes nothing, and says why as a list of `file:line:col` errors. Connections
//! already open, including WebSocket tunnels and h2 connections, carry on: each request
//! reads whatever snapshot is current when it starts.
//!
//! The admin API sits above this module and asks it to reload over a channel
//! ([`ControlRequest`]); the face (`main`) starts both.

mod answer;
mod discovered;
pub mod h1;
mod hyper;
mod listen;
mod worker;

use crate::config::{self, Config, ConfigError, ConfigErrors, ListenerProtocol};
use crate::metrics::Metrics;
use crate::snapshot::{Slots, Snapshot};
use crate::upstream::health::Targets;
use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use listen::bind_sockets;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use worker::Cmd;

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

/// A configuration `serve` can run: valid, and using no setting that is not built yet
/// (see `Config::unsupported`). Only [`Servable::check`] makes one, so the check runs
/// once for each configuration read, at start and at each reload.
#[derive(Debug)]
pub struct Servable(Config);

/// Requests the admin API sends to the control plane.
pub enum ControlRequest {
    /// Reload the configuration; the answer says what happened, or why not.
    Reload(oneshot::Sender<Result<ReloadOutcome, ConfigErrors>>),
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
    control_tx: mpsc::Sender<ControlRequest>,
    control_rx: mpsc::Receiver<ControlRequest>,
    /// The pool slots of the running snapshot's endpoints.
    slots: Slots,
    /// What the health checks probe: the running snapshot's targets.
    targets: Arc<ArcSwap<Targets>>,
    slo_stop: watch::Sender<bool>,
    slo_thread: Option<std::thread::JoinHandle<()>>,
    health_stop: watch::Sender<bool>,
    health_thread: Option<std::thread::JoinHandle<()>>,
    /// The configuration as read, before discovered sets are merged in.
    base: Arc<Config>,
    /// Discovered sets, endpoints draining out, and the discovery thread.
    discovered: discovered::Discovered,
    /// The autoscale thread, started when a cluster first has `autoscale`.
    autoscale: Option<(watch::Sender<bool>, std::thread::JoinHandle<()>)>,
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

/// A listener a reload starts: its sockets, bound, one per worker.
struct NewListener {
    name: String,
    active: Active,
    sockets: Vec<std::net::TcpListener>,
    kind: listen::Kind,
}

/// The listeners a configuration starts and stops.
struct ListenerPlan {
    added: Vec<NewListener>,
    removed: Vec<String>,
}

/// Reads a config source and checks that `serve` can run it.
pub fn load(source: &ConfigSource) -> Result<Servable, ConfigErrors> {
    let cfg = match source {
        ConfigSource::File(p) => config::load(p)?,
        ConfigSource::Text { name, text } => config::parse(name, text, std::path::Path::new("."))?,
    };
    Servable::check(cfg)
}

// === impl Servable ===

impl Servable {
    /// `cfg`, unless it uses settings whose behaviour is not built yet: those are the
    /// errors, each at its key.
    pub fn check(mut cfg: Config) -> Result<Servable, ConfigErrors> {
        if cfg.unsupported.is_empty() {
            // The file as written is kept for `check`'s lint; serving reads only the
            // validated form (10,000 routes as written hold about 14 MB).
            cfg.raw = Default::default();
            cfg.index.compact();
            Ok(Servable(cfg))
        } else {
            Err(ConfigErrors(cfg.unsupported))
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0
    }
}

// === impl Gateway ===

impl Gateway {
    /// Binds every listener of `cfg` and starts the workers, the health checks and the
    /// SLO engine. The admin API is the caller's to start (`admin::start`, with
    /// [`Gateway::shared`] and [`Gateway::control`]).
    pub fn start(cfg: Servable, source: ConfigSource) -> anyhow::Result<Gateway> {
        let metrics = Metrics::new()?;
        let cfg = Arc::new(cfg.0);
        // Endpoint figures get a shard per worker.
        crate::upstream::figures::set_shards(cfg.workers);
        let slo = crate::slo::Engine::new(
            cfg.state_dir.as_deref(),
            cfg.state_flush,
            Arc::new(crate::slo::engine::SystemClock),
            metrics.slo_alert_firing.clone(),
        );
        let mut slots = Slots::default();
        let (snap, changes) = Snapshot::build(cfg.clone(), None, &metrics, &slo, &slots)
            .map_err(|e| anyhow!("{e}"))?;
        changes.apply(&mut slots, &slo, crate::upstream::now_ms());
        slo.update(&cfg.slos);
        let targets = Arc::new(ArcSwap::from_pointee(snap.health_targets()));
        let gauges = crate::upstream::health::Gauges {
            healthy: metrics.endpoint_healthy.clone(),
            primary_generation: metrics.primary_generation.clone(),
            fenced: metrics.fenced.clone(),
        };
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap),
            metrics,
            bound: ArcSwap::from_pointee(Vec::new()),
            slo: slo.clone(),
            faults: Default::default(),
            discovery: Default::default(),
            autoscale: Default::default(),
        });
        let (control_tx, control_rx) = mpsc::channel(16);
        let (slo_stop, slo_stop_rx) = watch::channel(false);
        let slo_thread = slo
            .spawn(slo_stop_rx)
            .context("cannot start the SLO thread")?;
        // Active health checks, off the data path on their own thread and runtime.
        let (health_stop, health_stop_rx) = watch::channel(false);
        let health_thread = crate::upstream::health::spawn(targets.clone(), gauges, health_stop_rx)
            .context("cannot start the health check thread")?;

        let mut workers = Vec::new();
        for id in 0..cfg.workers {
            let (tx, rx) = mpsc::unbounded_channel();
            let thread =
                worker::spawn(id, shared.clone(), rx).context("cannot start a worker thread")?;
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
            control_tx,
            control_rx,
            slots,
            targets,
            slo_stop,
            slo_thread: Some(slo_thread),
            health_stop,
            health_thread: Some(health_thread),
            base: cfg.clone(),
            discovered: discovered::Discovered::new(),
            autoscale: None,
        };
        let plan = gw.plan_listeners(&cfg).map_err(|e| anyhow!("{e}"))?;
        gw.commit_listeners(plan);
        // The seed lists serve until discovery answers.
        let (_, plan) = gw.discovered.merge(&cfg, crate::upstream::now_ms());
        gw.discovered.keep(plan);
        gw.discovered
            .run(&cfg, &gw.shared.discovery, &gw.shared.metrics);
        gw.start_autoscale(&cfg);
        // What parsing and building freed goes back to the system now.
        crate::alloc::release_freed();
        Ok(gw)
    }

    /// The shared state (for the admin API, tests and the demo).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Where the admin API sends its requests (a reload).
    pub fn control(&self) -> mpsc::Sender<ControlRequest> {
        self.control_tx.clone()
    }

    /// Addresses bound per listener.
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.shared.bound.load().as_ref().clone()
    }

    /// Re-reads the configuration source and applies it, or changes nothing.
    pub fn reload(&mut self) -> Result<ReloadOutcome, ConfigErrors> {
        let result = load(&self.source).and_then(|cfg| self.apply(cfg));
        let label = if result.is_ok() { "ok" } else { "failed" };
        self.shared
            .metrics
            .reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(o) => {
                tracing::info!(generation = o.generation, added = ?o.listeners_added, removed = ?o.listeners_removed, "configuration reloaded");
                crate::events::emit(
                    "reload",
                    None,
                    None,
                    format!("configuration reloaded: generation {}", o.generation),
                );
            }
            Err(e) => {
                tracing::error!("reload refused, the running configuration stays:\n{e}");
                crate::events::emit(
                    "reload_failed",
                    None,
                    None,
                    format!("reload refused, the running configuration stays: {e}"),
                );
            }
        }
        for s in result.iter().flat_map(|o| &o.needs_restart) {
            tracing::warn!("{s}");
        }
        // The parsed file and what the old snapshot freed go back to the system now
        // (requests still on the old snapshot free the rest as they end).
        crate::alloc::release_freed();
        result
    }

    /// Applies a configuration: builds its snapshot and binds its new listeners, and
    /// only when both worked stores the snapshot, applies what it changes, pushes the
    /// health checks their targets and starts and stops listeners. Refused, it changes
    /// nothing.
    pub fn apply(&mut self, cfg: Servable) -> Result<ReloadOutcome, ConfigErrors> {
        self.commit(Arc::new(cfg.0))
    }

    /// Stores a snapshot of `base` with the discovered sets merged in (see
    /// `discovered`): the work of [`Gateway::apply`], and of every discovery update.
    fn commit(&mut self, base: Arc<Config>) -> Result<ReloadOutcome, ConfigErrors> {
        let (cfg, found) = self.discovered.merge(&base, crate::upstream::now_ms());
        let old = self.shared.snapshot.load_full();
        let mut needs_restart = Vec::new();
        if cfg.admin.bind != old.config.admin.bind || cfg.admin.token != old.config.admin.token {
            needs_restart.push("admin settings changed; they take effect at restart".to_owned());
        }
        let dns_bind = |c: &crate::config::Config| c.dns.as_ref().map(|d| d.bind);
        if dns_bind(&cfg) != dns_bind(&old.config) {
            needs_restart.push(
                "dns.bind changed (or dns: was added or removed); the DNS server's socket follows at restart, its zones and records apply now".to_owned(),
            );
        }
        if cfg.workers != old.config.workers {
            needs_restart.push(format!(
                "workers changed from {} to {}; this takes effect at restart",
                old.config.workers, cfg.workers
            ));
        }
        let shared = &self.shared;
        let (snap, changes) = Snapshot::build(
            cfg.clone(),
            Some(&old),
            &shared.metrics,
            &shared.slo,
            &self.slots,
        )
        .map_err(|e| ConfigErrors(vec![e]))?;
        // Bind before swapping: a listener that cannot bind fails the whole reload.
        let plan = self.plan_listeners(&cfg)?;
        // From here the reload is committed.
        let generation = snap.generation;
        let targets = snap.health_targets();
        self.discovered.mark(&found, &snap);
        self.discovered.keep(found);
        self.shared.snapshot.store(Arc::new(snap));
        changes.apply(&mut self.slots, &self.shared.slo, crate::upstream::now_ms());
        self.shared.slo.update(&cfg.slos);
        self.targets.store(Arc::new(targets));
        let outcome = ReloadOutcome {
            generation,
            listeners_added: plan.added.iter().map(|l| l.name.clone()).collect(),
            listeners_removed: plan.removed.clone(),
            needs_restart,
        };
        self.commit_listeners(plan);
        self.discovered
            .run(&base, &self.shared.discovery, &self.shared.metrics);
        self.start_autoscale(&base);
        self.base = base;
        Ok(outcome)
    }

    /// Starts the autoscale thread the first time a cluster has `autoscale`; it reads
    /// the running snapshot at each tick, so reloads need nothing more.
    fn start_autoscale(&mut self, cfg: &Config) {
        if self.autoscale.is_some() || cfg.clusters.iter().all(|c| c.autoscale.is_none()) {
            return;
        }
        let shared = self.shared.clone();
        let inputs: crate::autoscale::Inputs = Box::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let snap = shared.snapshot.load();
            let now = crate::upstream::now_ms();
            snap.config
                .clusters
                .iter()
                .zip(&snap.clusters)
                .filter_map(|(cc, c)| {
                    let config = cc.autoscale.clone()?;
                    let live = c
                        .endpoints()
                        .iter()
                        .zip(&c.select.meta)
                        .filter(|(e, _)| !e.retiring());
                    let p99_ms = live
                        .clone()
                        .filter_map(|(e, _)| e.figures.read(now).p99_ms)
                        .reduce(f64::max);
                    let endpoints = live
                        .map(|(e, m)| crate::autoscale::EndpointInput {
                            address: e.address,
                            zone: m.zone.clone(),
                            available: e.available(now),
                            in_flight: e.in_flight.load(Relaxed),
                            requests: e.requests.load(Relaxed),
                        })
                        .collect();
                    Some(crate::autoscale::ClusterInput {
                        name: cc.name.clone(),
                        config,
                        endpoints,
                        p99_ms,
                    })
                })
                .collect()
        });
        let (stop, stop_rx) = watch::channel(false);
        match crate::autoscale::spawn(
            inputs,
            self.shared.autoscale.clone(),
            self.shared.metrics.clone(),
            stop_rx,
        ) {
            Ok(t) => self.autoscale = Some((stop, t)),
            Err(e) => tracing::error!("cannot start the autoscale thread: {e}"),
        }
    }

    /// Serves a set discovery accepted (or the seed list again), as a commit of the
    /// running configuration.
    fn discovered(&mut self, u: crate::discovery::Update) {
        let cluster = u.cluster.clone();
        let version = u.version;
        if !self.discovered.take(u, &self.base) {
            return;
        }
        self.recommit(&format!(
            "discovery of cluster {cluster:?}, version {version}"
        ));
    }

    /// Drops endpoints whose drain ended, if any.
    fn expire_drains(&mut self) {
        let snap = self.shared.snapshot.load_full();
        let expired = self.discovered.expire(&snap, crate::upstream::now_ms());
        if expired || self.discovered.retry {
            self.recommit("the end of a drain");
        }
    }

    /// Commits the running base again (after `why`), logging a refusal.
    fn recommit(&mut self, why: &str) {
        match self.commit(self.base.clone()) {
            Ok(o) => {
                self.discovered.retry = false;
                tracing::debug!(generation = o.generation, "applied {why}");
            }
            Err(e) => {
                // Tried again by the drain timer until it lands.
                if !self.discovered.retry {
                    tracing::error!("cannot apply {why}; the running set stays, and it is tried again every 0.5 s:\n{e}");
                }
                self.discovered.retry = true;
            }
        }
    }

    /// Binds sockets for listeners that are new or changed; returns them with the names
    /// of listeners to stop.
    /// Binds sockets for listeners that are new or changed; returns them with the names
    /// of listeners to stop. A listener that cannot bind is an error at its `bind` key.
    fn plan_listeners(&self, cfg: &Config) -> Result<ListenerPlan, ConfigErrors> {
        let mut added = Vec::new();
        for (i, l) in cfg.listeners.iter().enumerate() {
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
            let at = format!("listeners[{i}].bind");
            let sockets = bind_sockets(l.bind, self.workers.len(), held).map_err(|e| {
                let why = format!("listener {:?} cannot bind {}: {e}", l.name, l.bind);
                config_errors(
                    cfg,
                    &at,
                    why,
                    "another process holds the address, or it is not this host's",
                )
            })?;
            let local = sockets[0]
                .local_addr()
                .map_err(|e| config_errors(cfg, &at, format!("listener {:?}: {e}", l.name), ""))?;
            let (stop, _) = watch::channel(false);
            added.push(NewListener {
                name: l.name.clone(),
                active: Active {
                    bind: l.bind,
                    protocol: l.protocol,
                    local,
                    stop,
                },
                sockets,
                kind: match l.protocol {
                    ListenerProtocol::Http => listen::Kind::Http,
                    ListenerProtocol::Https => listen::Kind::Https,
                    ListenerProtocol::Tcp => listen::Kind::Tcp,
                },
            });
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
        Ok(ListenerPlan { added, removed })
    }

    /// Stops the listeners `plan` removes and hands the sockets of those it adds to the
    /// workers.
    fn commit_listeners(&mut self, plan: ListenerPlan) {
        for name in plan.removed {
            if let Some(a) = self.listeners.remove(&name) {
                let _ = a.stop.send(true);
                tracing::info!(listener = %name, "listener stopped");
            }
        }
        for NewListener {
            name,
            active,
            sockets,
            kind,
        } in plan.added
        {
            let arc_name: Arc<str> = name.as_str().into();
            for (w, socket) in self.workers.iter().zip(sockets) {
                let _ = w.tx.send(Cmd::Listen {
                    name: arc_name.clone(),
                    socket,
                    kind,
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
            let mut drains = tokio::time::interval(std::time::Duration::from_millis(500));
            drains.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = self.reload(); }
                    Some(u) = self.discovered.rx.recv() => self.discovered(u),
                    _ = drains.tick(), if self.discovered.draining_any() => self.expire_drains(),
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
        self.discovered.stop();
        if let Some((stop, t)) = self.autoscale.take() {
            let _ = stop.send(true);
            let _ = t.join();
        }
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

/// `message` about key `path` of `cfg` (with `hint`, unless empty), as a reload's
/// error list.
fn config_errors(cfg: &Config, path: &str, message: String, hint: &str) -> ConfigErrors {
    let (line, column) = cfg.index.locate(path);
    ConfigErrors(vec![ConfigError {
        file: cfg.source.clone(),
        line,
        column,
        path: path.to_owned(),
        message,
        hint: (!hint.is_empty()).then(|| hint.to_owned()),
    }])
}
