//! The live SLO engine of a running gateway: counters the data path bumps, and a
//! once-a-second tick that moves them into rolling windows and evaluates the burn-rate
//! alerts. Its state survives restarts (`slo::persist`); its alerts go to
//! Alertmanager ([`super::alerts`]).
//!
//! The data path only does one relaxed atomic add per request (plus the Prometheus
//! counter). Everything else runs on the engine's own thread, `ninefold-slo`, with
//! its own current-thread runtime; the admin API reads the engine's state under a
//! mutex the data path never touches.

use super::alerts::{alert_json, hostname, log_change, sender, Webhooks, RESEND};
use super::persist::{restore, save};
use super::window::{budget, evaluate, fmt_dur, AlertEval, Budget, Windows};
use crate::config::SloDef;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Cumulative counters of one SLO, bumped by the data path; kept across reloads by
/// name.
#[derive(Debug, Default)]
pub struct Counters {
    total: AtomicU64,
    bad: AtomicU64,
}

impl Counters {
    /// Counts one event.
    #[inline]
    pub fn record(&self, good: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if !good {
            // Release: whoever sees this bad event also sees its total.
            self.bad.fetch_add(1, Ordering::Release);
        }
    }

    fn read(&self) -> (u64, u64) {
        // bad first (Acquire), then total: total ≥ bad in what is read.
        let bad = self.bad.load(Ordering::Acquire);
        (self.total.load(Ordering::Relaxed), bad)
    }
}

/// The clock the engine reads: Unix seconds. Tests drive their own.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

struct Track {
    def: SloDef,
    counters: Arc<Counters>,
    seen: (u64, u64),
    windows: Windows,
    alerts: Vec<AlertState>,
}

#[derive(Clone, Default)]
struct AlertState {
    firing: bool,
    since: u64,
    /// When the current (or last) firing began: the alert's `startsAt`.
    started: u64,
    last_sent: u64,
    last: Option<AlertEval>,
}

struct State {
    tracks: Vec<Track>,
    /// Counts restored from disk for SLOs not (yet) configured, by name.
    parked: HashMap<String, Windows>,
    state_file: Option<PathBuf>,
    flush_every: u64,
    last_flush: u64,
    admin_url: String,
    /// This gateway's identity on alerts (`gateway` label): host name and admin port.
    instance: String,
}

/// The engine. Cheap to share; all methods are called off the data path.
pub struct Engine {
    state: Mutex<State>,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    clock: Arc<dyn Clock>,
    alerts_tx: mpsc::UnboundedSender<Vec<Value>>,
    alerts_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Value>>>>,
    firing_gauge: prometheus::IntGaugeVec,
    /// Each SLO's webhook, as the running config sets it (the sender reads it).
    webhooks: Webhooks,
}

impl Engine {
    /// Creates the engine, reading `state_dir/slo-state.json` when there is one. A file
    /// that cannot be read as ninefold's SLO state is moved aside with a log line, and
    /// the budgets start fresh.
    pub fn new(
        state_dir: Option<&Path>,
        flush: Duration,
        clock: Arc<dyn Clock>,
        firing_gauge: prometheus::IntGaugeVec,
    ) -> Arc<Engine> {
        let state_file = state_dir.map(|d| d.join("slo-state.json"));
        let now = clock.now();
        let parked = state_file
            .as_deref()
            .map(|f| restore(f, now))
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Engine {
            state: Mutex::new(State {
                tracks: Vec::new(),
                parked,
                state_file,
                flush_every: flush.as_secs().max(1),
                last_flush: now,
                admin_url: String::new(),
                instance: hostname(),
            }),
            counters: Mutex::new(HashMap::new()),
            clock,
            alerts_tx: tx,
            alerts_rx: Mutex::new(Some(rx)),
            firing_gauge,
            webhooks: Webhooks::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters of SLO `name`, if the engine has them (a reload's snapshot takes
    /// them, or starts new ones it hands over with [`Engine::adopt_counters`] once it
    /// is stored).
    pub fn counters_if_any(&self, name: &str) -> Option<Arc<Counters>> {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.get(name).cloned()
    }

    /// Takes `counters` as SLO `name`'s, unless it has some already.
    pub fn adopt_counters(&self, name: &str, counters: Arc<Counters>) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(name.to_owned()).or_insert(counters);
    }

    /// The counters of SLO `name` (created on first use, then kept across reloads).
    pub fn counters(&self, name: &str) -> Arc<Counters> {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(name.to_owned()).or_default().clone()
    }

    /// Sets the admin address used in alerts' `generatorURL`.
    pub fn set_admin(&self, addr: std::net::SocketAddr) {
        let mut st = self.lock();
        st.admin_url = format!("http://{addr}/api/v1/slos");
        st.instance = format!("{}:{}", hostname(), addr.port());
    }

    /// Installs the SLO definitions of a (re)loaded config. Counts carry over by name
    /// while the window layout stays the same.
    pub fn update(&self, defs: &[SloDef]) {
        let now = self.clock.now();
        self.tick(now);
        let mut st = self.lock();
        let mut old: HashMap<String, Track> = st
            .tracks
            .drain(..)
            .map(|t| (t.def.name.clone(), t))
            .collect();
        let mut urls = HashMap::new();
        let mut outgoing = Vec::new();
        let (admin_url, instance) = (st.admin_url.clone(), st.instance.clone());
        for d in defs {
            let longest = d
                .alerts
                .windows
                .iter()
                .map(|w| w.long)
                .max()
                .unwrap_or_default();
            let mut fresh = Windows::new(d.window, longest);
            let counters = self.counters(&d.name);
            let track = match old.remove(&d.name) {
                Some(mut t) => {
                    if !t.windows.same_layout(&fresh) {
                        fresh.adopt(&t.windows);
                        t.windows = fresh;
                    }
                    if t.def.alerts.windows != d.alerts.windows {
                        self.retire_alerts(&t, now, &admin_url, &instance, &mut outgoing);
                        t.alerts = vec![AlertState::default(); d.alerts.windows.len()];
                    }
                    t.def = d.clone();
                    t
                }
                None => {
                    if let Some(mut w) = st.parked.remove(&d.name) {
                        if w.drop_future(now) {
                            tracing::warn!(slo = %d.name, "saved SLO counts lie in the future of the clock (it stepped back?); those rings start fresh");
                        }
                        fresh.adopt(&w);
                    }
                    Track {
                        def: d.clone(),
                        seen: counters.read(),
                        counters,
                        windows: fresh,
                        alerts: vec![AlertState::default(); d.alerts.windows.len()],
                    }
                }
            };
            if let Some(u) = &d.alerts.webhook {
                urls.insert(d.name.clone(), u.clone());
            }
            st.tracks.push(track);
        }
        // SLOs removed from the config keep their counts until the next save, so a
        // reload that brings them back loses nothing; their alerts are resolved.
        for (name, t) in old {
            self.retire_alerts(&t, now, &admin_url, &instance, &mut outgoing);
            st.parked.insert(name, t.windows);
        }
        drop(st);
        {
            let mut u = self.webhooks.lock().unwrap_or_else(|p| p.into_inner());
            // Resolves still go to the URL the alert was sent to.
            for a in &outgoing {
                let slo = a["labels"]["slo"].as_str().unwrap_or_default();
                if let Some(url) = u.get(slo).cloned() {
                    urls.entry(slo.to_owned()).or_insert(url);
                }
            }
            *u = urls;
        }
        if !outgoing.is_empty() {
            let _ = self.alerts_tx.send(outgoing);
        }
    }

    /// Alerts of `t` that go away: their gauges are removed, and a firing one is
    /// resolved (logged and sent).
    fn retire_alerts(
        &self,
        t: &Track,
        now: u64,
        admin_url: &str,
        instance: &str,
        outgoing: &mut Vec<Value>,
    ) {
        for a in &t.alerts {
            let Some(e) = &a.last else { continue };
            let _ = self.firing_gauge.remove_label_values(&[
                &t.def.name,
                &e.severity,
                &e.long_window,
                &e.short_window,
            ]);
            if a.firing {
                let mut e = e.clone();
                e.firing = false;
                log_change(&t.def, &e);
                if t.def.alerts.webhook.is_some() {
                    outgoing.push(alert_json(&t.def, &e, a.started, now, admin_url, instance));
                }
            }
        }
    }

    /// Moves new counts into the windows, evaluates alerts, and saves the state when
    /// a flush interval has passed. Called once a second by `Engine::run`; tests
    /// call it with their own `now`.
    pub fn tick(&self, now: u64) {
        let mut st = self.lock();
        let (admin_url, instance) = (st.admin_url.clone(), st.instance.clone());
        let mut outgoing = Vec::new();
        for t in &mut st.tracks {
            let (total, bad) = t.counters.read();
            let (dt, db) = (total.saturating_sub(t.seen.0), bad.saturating_sub(t.seen.1));
            t.seen = (total, bad);
            if dt > 0 || db > 0 {
                t.windows.add(now, dt, db.min(dt));
            }
            let evals = evaluate(&t.def, &t.windows, now);
            for (i, e) in evals.into_iter().enumerate() {
                let Some(a) = t.alerts.get_mut(i) else {
                    continue;
                };
                let changed = e.firing != a.firing;
                if changed {
                    a.firing = e.firing;
                    a.since = now;
                    if e.firing {
                        a.started = now;
                    }
                    log_change(&t.def, &e);
                }
                self.firing_gauge
                    .with_label_values(&[&t.def.name, &e.severity, &e.long_window, &e.short_window])
                    .set(i64::from(e.firing));
                if t.def.alerts.webhook.is_some()
                    && (changed || (e.firing && now.saturating_sub(a.last_sent) >= RESEND))
                {
                    outgoing.push(alert_json(
                        &t.def, &e, a.started, now, &admin_url, &instance,
                    ));
                    a.last_sent = now;
                }
                a.last = Some(e);
            }
        }
        let due = now.saturating_sub(st.last_flush) >= st.flush_every;
        if due {
            st.last_flush = now;
            save_state(&st, now);
        }
        drop(st);
        if !outgoing.is_empty() {
            let _ = self.alerts_tx.send(outgoing);
        }
    }

    /// Saves the state now (on shutdown).
    pub fn flush(&self) {
        let now = self.clock.now();
        self.tick(now);
        let mut st = self.lock();
        st.last_flush = now;
        save_state(&st, now);
    }

    /// The live state of every SLO, as served at `/api/v1/slos`.
    pub fn status(&self) -> Value {
        let now = self.clock.now();
        let st = self.lock();
        let slos: Vec<Value> = st
            .tracks
            .iter()
            .map(|t| {
                let b: Budget = budget(&t.def, &t.windows, now);
                let burn_at = |at: u64, d: u64| {
                    let c = t.windows.over(at, Duration::from_secs(d));
                    super::window::burn_rate(c, t.def.objective.down())
                        .map(crate::availability::snap)
                };
                let burn = |d: u64| burn_at(now, d);
                // The last hour, a value a minute, oldest first: the sparklines.
                let history = |d: u64| {
                    (0..60u64)
                        .rev()
                        .map(|k| burn_at(now.saturating_sub(k * 60), d))
                        .collect::<Vec<_>>()
                };
                let alerts: Vec<Value> = t
                    .alerts
                    .iter()
                    .filter_map(|a| {
                        let e = a.last.as_ref()?;
                        let mut v = serde_json::to_value(e).ok()?;
                        v["since"] = json!(a.since);
                        Some(v)
                    })
                    .collect();
                json!({
                    "name": t.def.name,
                    "service": t.def.service,
                    "objective": t.def.objective.up(),
                    "objective_text": t.def.objective_text,
                    "window": fmt_dur(t.def.window),
                    "window_seconds": t.def.window.as_secs(),
                    "indicator": t.def.indicator.describe(),
                    "total": b.total,
                    "bad": b.bad,
                    "sli": b.sli,
                    "budget": b,
                    "burn_rates": {
                        "5m": burn(300), "30m": burn(1800), "1h": burn(3600),
                        "6h": burn(6 * 3600), "1d": burn(86400), "3d": burn(3 * 86400),
                    },
                    "burn_history": {
                        "5m": history(300), "1h": history(3600),
                        "6h": history(6 * 3600), "3d": history(3 * 86400),
                    },
                    "alerts": alerts,
                    "memory_bytes": t.windows.bytes(),
                })
            })
            .collect();
        json!({ "now": now, "persisted": st.state_file.is_some(), "slos": slos })
    }

    /// Starts the `ninefold-slo` thread, which runs the engine: a tick a second and
    /// the webhook sender, until `stop` fires; then a last tick and a save.
    pub fn spawn(
        self: Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        crate::runtime::thread("ninefold-slo", move |rt| self.run(rt, stop))
    }

    fn run(
        self: Arc<Self>,
        rt: tokio::runtime::Runtime,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let rx = self
            .alerts_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        rt.block_on(async {
            if let Some(rx) = rx {
                tokio::spawn(sender(Arc::clone(&self.webhooks), rx));
            }
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => self.tick(self.clock.now()),
                    _ = stop.changed() => break,
                }
            }
            self.flush();
            // Give alerts already queued a moment to leave.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
    }
}

/// Saves the tracks' windows and the parked ones to the state file, if any.
fn save_state(st: &State, now: u64) {
    let Some(path) = &st.state_file else { return };
    let tracks = st.tracks.iter().map(|t| (t.def.name.as_str(), &t.windows));
    save(path, tracks, &st.parked, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn def() -> SloDef {
        crate::config::slo::test_def("99.9%")
    }

    /// An engine saving to `dir` every 10 s on the driven `clock`.
    fn engine(dir: Option<&Path>, clock: &Arc<FakeClock>) -> Arc<Engine> {
        Engine::new(dir, Duration::from_secs(10), clock.clone(), gauge())
    }

    fn gauge() -> prometheus::IntGaugeVec {
        prometheus::IntGaugeVec::new(
            prometheus::Opts::new("g", "g"),
            &["slo", "severity", "long_window", "short_window"],
        )
        .unwrap()
    }

    #[test]
    fn counts_survive_a_save_and_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock(AtomicU64::new(1_800_000_000)));
        let e = engine(Some(dir.path()), &clock);
        e.update(&[def()]);
        let c = e.counters("api");
        for i in 0..100 {
            c.record(i % 10 != 0);
        }
        clock.0.fetch_add(1, Ordering::Relaxed);
        e.tick(clock.now());
        // Not saved yet: the flush interval has not passed.
        assert!(!dir.path().join("slo-state.json").exists());
        clock.0.fetch_add(10, Ordering::Relaxed);
        e.tick(clock.now());
        assert!(dir.path().join("slo-state.json").exists());

        let e2 = engine(Some(dir.path()), &clock);
        e2.update(&[def()]);
        let s = e2.status();
        assert_eq!(s["slos"][0]["total"], 100);
        assert_eq!(s["slos"][0]["bad"], 10);
    }

    #[test]
    fn a_removed_slo_keeps_its_counts_until_they_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock(AtomicU64::new(1_800_000_000)));
        let e = engine(Some(dir.path()), &clock);
        e.update(&[def()]);
        e.counters("api").record(false);
        e.update(&[]);
        e.flush();
        let saved = |d: &Path| -> usize {
            let v: Value =
                serde_json::from_slice(&std::fs::read(d.join("slo-state.json")).unwrap()).unwrap();
            v["slos"].as_array().unwrap().len()
        };
        assert_eq!(saved(dir.path()), 1);
        // Back within the window: the count is there again.
        e.update(&[def()]);
        assert_eq!(e.status()["slos"][0]["bad"], 1);
        e.update(&[]);
        // 100 days later nothing is left to keep.
        clock.0.fetch_add(100 * 86400, Ordering::Relaxed);
        e.flush();
        assert_eq!(saved(dir.path()), 0);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_kept_aside_and_budgets_start_fresh() {
        for junk in [
            &b"{not json"[..],
            br#"{"format":"other","version":1,"saved_at":0,"slos":[]}"#,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("slo-state.json");
            std::fs::write(&f, junk).unwrap();
            let clock = Arc::new(FakeClock(AtomicU64::new(1_800_000_000)));
            let e = engine(Some(dir.path()), &clock);
            e.update(&[def()]);
            assert_eq!(e.status()["slos"][0]["total"], 0);
            assert!(!f.exists());
            let aside: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("slo-state.json.corrupt-")
                })
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(std::fs::read(aside[0].path()).unwrap(), junk);
        }
    }

    #[test]
    fn alerts_fire_and_resolve_on_a_driven_clock() {
        let clock = Arc::new(FakeClock(AtomicU64::new(1_800_000_000)));
        let g = gauge();
        let e = Engine::new(None, Duration::from_secs(10), clock.clone(), g.clone());
        e.update(&[def()]);
        let c = e.counters("api");
        for _ in 0..100 {
            c.record(false);
        }
        e.tick(clock.now());
        assert_eq!(g.with_label_values(&["api", "page", "1h", "5m"]).get(), 1);
        // Ten minutes of clean traffic: the 5 m window clears and the page resolves.
        for m in 1..=10 {
            for _ in 0..1000 {
                c.record(true);
            }
            clock.0.fetch_add(60, Ordering::Relaxed);
            e.tick(clock.now());
            let _ = m;
        }
        assert_eq!(g.with_label_values(&["api", "page", "1h", "5m"]).get(), 0);
        // The ticket (1× over 3 d and 6 h) still fires: 100 bad in 10,100 is ~10×.
        assert_eq!(g.with_label_values(&["api", "ticket", "3d", "6h"]).get(), 1);
    }
}
