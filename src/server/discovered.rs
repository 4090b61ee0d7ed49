//! The control plane's side of endpoint discovery: the sets discovery found, merged
//! into the configuration as read (the *base*) at every commit, whether a discovery
//! update or a SIGHUP reload caused it, and the endpoints discovery removed, which
//! drain (no new requests, in-flight ones finish, pooled connections age out) and go
//! after the source's `drain_timeout`, or as soon as their health check fails.
//!
//! A discovered cluster serves its discovered set when it has one, else its seed list
//! (`endpoints:`). Live state is carried by address through the snapshot build, so a
//! kept address keeps its health, ejection, breaker and drain.

use crate::config::{Config, EndpointConfig, OnMarkedDown};
use crate::discovery::{Board, Discovery, Spec, Update};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::upstream::Health;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Discovery as the control plane keeps it.
pub(super) struct Discovered {
    /// The set each discovered cluster serves (absent: its seed list).
    sets: HashMap<String, Vec<EndpointConfig>>,
    /// What each discovered cluster served at the last commit (set or seed).
    active: HashMap<String, Vec<EndpointConfig>>,
    /// Endpoints discovery removed, each draining until a time (`now_ms`).
    draining: HashMap<String, Vec<(EndpointConfig, u64)>>,
    /// The discovery thread, started when a cluster first needs it.
    thread: Option<Discovery>,
    tx: mpsc::UnboundedSender<Update>,
    /// Accepted sets from the discovery thread.
    pub rx: mpsc::UnboundedReceiver<Update>,
    /// A discovery commit was refused (a certificate file being replaced): the timer
    /// tries again.
    pub retry: bool,
}

/// What a commit will make of the discovery state, kept only if the commit lands.
pub(super) struct Plan {
    active: HashMap<String, Vec<EndpointConfig>>,
    draining: HashMap<String, Vec<(EndpointConfig, u64)>>,
}

// === impl Discovered ===

impl Discovered {
    pub(super) fn new() -> Discovered {
        let (tx, rx) = mpsc::unbounded_channel();
        Discovered {
            sets: HashMap::new(),
            active: HashMap::new(),
            draining: HashMap::new(),
            thread: None,
            tx,
            rx,
            retry: false,
        }
    }

    /// Takes a set discovery accepted, unless its source is no longer `base`'s (an
    /// update a replaced source queued before it stopped); whether it took it (then
    /// the caller commits).
    pub(super) fn take(&mut self, u: Update, base: &Config) -> bool {
        let current = base.clusters.iter().find(|c| c.name == u.cluster);
        let same = current.is_some_and(|c| {
            c.max_removed_per_update == u.spec.max_removed
                && c.discovery.as_ref().map(|d| &d.source) == Some(&u.spec.discovery.source)
        });
        if !same {
            tracing::debug!(cluster = %u.cluster, "discovery: dropped an update of a replaced source");
            return false;
        }
        match u.endpoints {
            Some(set) => self.sets.insert(u.cluster, set),
            None => self.sets.remove(&u.cluster),
        };
        true
    }

    /// `base` with each discovered cluster's endpoints replaced by its set (or seed)
    /// plus the endpoints draining out, and the discovery state that goes with it.
    /// An endpoint that left the active set since the last commit starts draining at
    /// `now` (ms); one that came back stops.
    pub(super) fn merge(&self, base: &Arc<Config>, now: u64) -> (Arc<Config>, Plan) {
        let mut plan = Plan {
            active: HashMap::new(),
            draining: HashMap::new(),
        };
        // Without discovery the configuration is the base itself, not a copy (a copy
        // of a 10,000-route file is tens of megabytes).
        if base.clusters.iter().all(|c| c.discovery.is_none()) {
            return (Arc::clone(base), plan);
        }
        let mut cfg = Config::clone(base);
        for c in cfg.clusters.iter_mut() {
            let Some(d) = &c.discovery else { continue };
            let active = self
                .sets
                .get(&c.name)
                .cloned()
                .unwrap_or_else(|| c.endpoints.clone());
            let mut draining: Vec<(EndpointConfig, u64)> = self
                .draining
                .get(&c.name)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(e, _)| !active.iter().any(|a| a.address == e.address))
                .collect();
            for old in self.active.get(&c.name).into_iter().flatten() {
                let gone = !active.iter().any(|a| a.address == old.address);
                let known = draining.iter().any(|(e, _)| e.address == old.address);
                if gone && !known {
                    let until = now.saturating_add(d.drain_timeout.as_millis() as u64);
                    draining.push((old.clone(), until));
                }
            }
            c.endpoints = active.clone();
            c.endpoints.extend(draining.iter().map(|(e, _)| e.clone()));
            plan.active.insert(c.name.clone(), active);
            if !draining.is_empty() {
                plan.draining.insert(c.name.clone(), draining);
            }
        }
        (Arc::new(cfg), plan)
    }

    /// Marks the endpoints of `snap` (not stored yet) that are draining out, and clears
    /// the mark of those back in a set, so the stored snapshot never offers a
    /// removed endpoint a new request.
    pub(super) fn mark(&self, plan: &Plan, snap: &Snapshot) {
        for c in &snap.clusters {
            let draining = plan.draining.get(&*c.name);
            for e in c.endpoints() {
                let out = draining.is_some_and(|d| d.iter().any(|(x, _)| x.address == e.address));
                e.set_retiring(out);
            }
        }
    }

    /// Keeps the state of a commit that landed.
    pub(super) fn keep(&mut self, plan: Plan) {
        self.active = plan.active;
        self.draining = plan.draining;
        // A cluster that lost its discovery forgets its set.
        self.sets.retain(|c, _| self.active.contains_key(c));
    }

    /// Drops the endpoints whose drain ended at `now` (ms) or whose health check
    /// fails (nothing left to drain); closes the TCP sessions of those in clusters
    /// with `on_marked_down: shutdown_sessions`. Whether any went (then the caller
    /// commits).
    pub(super) fn expire(&mut self, snap: &Snapshot, now: u64) -> bool {
        let mut any = false;
        for (cluster, list) in self.draining.iter_mut() {
            let c = snap.clusters.iter().find(|c| &*c.name == cluster);
            list.retain(|(e, until)| {
                let state = c.and_then(|c| c.endpoints().iter().find(|s| s.address == e.address));
                let down = state.is_some_and(|s| s.health() == Health::Unhealthy);
                let keep = *until > now && !down;
                if !keep {
                    any = true;
                    let why = if down { "its health check fails" } else { "its drain time passed" };
                    tracing::info!(cluster = %cluster, endpoint = %e.address, "discovery: removed endpoint leaves ({why})");
                    crate::events::emit(
                        "discovery",
                        Some(cluster),
                        Some(&e.address.to_string()),
                        format!("removed endpoint {} leaves: {why}", e.address),
                    );
                    if let (Some(c), Some(s)) = (c, state) {
                        if c.on_marked_down == OnMarkedDown::ShutdownSessions {
                            s.fence();
                        }
                    }
                }
                keep
            });
        }
        self.draining.retain(|_, l| !l.is_empty());
        any
    }

    /// Whether the timer has work: endpoints draining out, or a commit to try again.
    pub(super) fn draining_any(&self) -> bool {
        !self.draining.is_empty() || self.retry
    }

    /// Runs the sources of `base`'s discovered clusters (starting the thread the first
    /// time one is needed).
    pub(super) fn run(&mut self, base: &Config, board: &Arc<Board>, metrics: &Metrics) {
        let specs: Vec<Spec> = base
            .clusters
            .iter()
            .filter_map(|c| {
                c.discovery.as_ref().map(|d| Spec {
                    cluster: c.name.clone(),
                    discovery: d.clone(),
                    max_removed: c.max_removed_per_update,
                })
            })
            .collect();
        if self.thread.is_none() {
            if specs.is_empty() {
                return;
            }
            match Discovery::spawn(self.tx.clone(), board.clone(), metrics.clone()) {
                Ok(d) => self.thread = Some(d),
                Err(e) => {
                    tracing::error!("cannot start the discovery thread: {e}");
                    return;
                }
            }
        }
        if let Some(t) = &self.thread {
            t.set(specs, self.sets.clone());
        }
    }

    /// Stops the discovery thread.
    pub(super) fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
    }
}
