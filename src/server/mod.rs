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

mod answer;
pub mod h1;
mod hyper;
mod listen;
mod worker;

use crate::config::{self, Config, ListenerProtocol};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use listen::bind_sockets;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use worker::{worker_main, Cmd};

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
