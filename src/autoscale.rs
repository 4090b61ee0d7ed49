//! Autoscaling from the data path (`clusters[].autoscale`): a recommender per cluster,
//! once a second, off the data path, and the hook that closes the loop.
//!
//! The figure per endpoint comes from what the gateway already counts (requests in
//! flight, the arrival rate) or from each endpoint's own Prometheus page (`cpu`: the
//! CPU-seconds counter, differentiated, ÷ cores). Endpoints that are out (unhealthy,
//! ejected, drained) carry no load and count as no capacity: the figure is per
//! available endpoint. The [`Recommender`] applies Kubernetes HPA's rule, with a
//! clock the caller drives:
//!
//! 1. `desired = ceil(available × figure ÷ target)`, unchanged while `figure ÷ target`
//!    is within `tolerance` of 1;
//! 2. with `zone_headroom`, raised until losing the largest zone (its share of the
//!    endpoints now, at least an even share) leaves enough at target; endpoints that
//!    are out come on top, as they serve nothing;
//! 3. at most double the current count per step, within `[min, max]`;
//! 4. stabilised: a rise is followed with the lowest recommendation of the last
//!    `scale_up_cooldown`, a fall with the highest of the last `scale_down_cooldown`.
//!
//! A change of recommendation is logged, published (`/api/v1/state`,
//! `ninefold_autoscale_desired_endpoints`) and handed to the hook: a command with
//! `NINEFOLD_CLUSTER`, `NINEFOLD_CURRENT`, `NINEFOLD_DESIRED` and `NINEFOLD_REASON` in
//! its environment, or a webhook POSTed them as JSON; one run at a time per cluster
//! (a change during a run waits, and only the latest waits), each within its timeout.

use crate::config::{AutoscaleConfig, HookKind, ScaleTarget};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One endpoint as the recommender sees it.
#[derive(Debug, Clone)]
pub struct EndpointInput {
    /// Its address.
    pub address: SocketAddr,
    /// Its zone label.
    pub zone: Option<Arc<str>>,
    /// Whether it may take requests now.
    pub available: bool,
    /// Requests in flight to it now.
    pub in_flight: u32,
    /// Requests sent to it so far (a counter).
    pub requests: u64,
}

/// One cluster as the runner sees it at a tick.
#[derive(Debug, Clone)]
pub struct ClusterInput {
    /// The cluster.
    pub name: String,
    /// Its `autoscale`.
    pub config: AutoscaleConfig,
    /// Its endpoints, without those discovery removed.
    pub endpoints: Vec<EndpointInput>,
    /// p99 latency over the last minute, shown beside the figure.
    pub p99_ms: Option<f64>,
}

/// What the recommender is given at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Endpoints in the set.
    pub current: u32,
    /// Of them, available.
    pub available: u32,
    /// The figure per available endpoint (a fraction for `cpu`); `None` while unknown.
    pub figure: Option<f64>,
    /// Endpoints per zone, largest first (unlabelled endpoints form one zone).
    pub zones: Vec<(String, u32)>,
}

/// A recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Endpoints in the set now.
    pub current: u32,
    /// Endpoints recommended.
    pub desired: u32,
    /// What the rule alone asked this tick, before the windows.
    pub raw: u32,
    /// Why, in words.
    pub reason: String,
    /// Whether it differs from the previous recommendation.
    pub changed: bool,
}

/// The recommender of one cluster.
#[derive(Debug)]
pub struct Recommender {
    cfg: AutoscaleConfig,
    /// (time in ms, raw recommendation), oldest first.
    history: VecDeque<(u64, u32)>,
    last: Option<u32>,
}

// === impl Recommender ===

impl Recommender {
    /// A recommender with no history.
    pub fn new(cfg: AutoscaleConfig) -> Recommender {
        Recommender {
            cfg,
            history: VecDeque::new(),
            last: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &AutoscaleConfig {
        &self.cfg
    }

    /// The recommendation at `now` (ms) for `s`.
    pub fn step(&mut self, now: u64, s: &Sample) -> Decision {
        let c = &self.cfg;
        let target = c.target.value();
        let current = s.current;
        let mut why = Vec::new();
        // 1. HPA's rule: the endpoints that must serve for the figure to be at
        // target. Endpoints that are out serve nothing: they come on top.
        let out = current.saturating_sub(s.available);
        let serving = match s.figure {
            _ if s.available == 0 => {
                why.push("no endpoint is available: holding".to_owned());
                None
            }
            None => {
                why.push(format!("no {} figure yet: holding", c.target.name()));
                None
            }
            Some(f) => {
                let ratio = f / target;
                let phrase = figure_phrase(c.target, f);
                let exact = if (ratio - 1.0).abs() <= c.tolerance {
                    why.push(format!(
                        "{phrase} per endpoint against {}: within {}% tolerance",
                        target_phrase(c.target),
                        round(c.tolerance * 100.0)
                    ));
                    f64::from(s.available)
                } else {
                    why.push(format!(
                        "{phrase} per endpoint against {}",
                        target_phrase(c.target)
                    ));
                    f64::from(s.available) * ratio
                };
                // Never more than max needs: the rest is arithmetic on small numbers.
                let need = (exact - 1e-9).ceil().clamp(0.0, f64::from(c.max)) as u32;
                if out > 0 {
                    why.push(format!("{out} out, not counted as capacity"));
                }
                Some(need)
            }
        };
        // Holding (no figure, nothing available): the count stays, windows aside.
        let mut raw = match serving {
            None => current,
            Some(need) => {
                let need = need.max(c.min).min(c.max);
                // 2. Zone headroom: enough that losing the largest zone (its share
                // now, at least an even share) leaves `need` serving.
                let zones = s.zones.len() as u32;
                let with = if !c.zone_headroom {
                    need
                } else if zones < 2 {
                    why.push("zone headroom: every endpoint is in one zone".to_owned());
                    need
                } else {
                    let (largest, in_largest) = (&s.zones[0].0, s.zones[0].1);
                    let share = (f64::from(in_largest) / f64::from(current.max(1)))
                        .max(1.0 / f64::from(zones));
                    let d = headroom(need, share);
                    let lost = |d: u32| (f64::from(d) * share - 1e-9).ceil() as u32;
                    if d > c.max {
                        why.push(format!(
                            "zone headroom short: at max ({}), losing {largest} leaves {} where {need} are needed",
                            c.max,
                            c.max - lost(c.max).min(c.max)
                        ));
                        c.max
                    } else {
                        if d > need {
                            why.push(format!(
                                "zone headroom: losing {largest} leaves {} of {d}",
                                d - lost(d)
                            ));
                        }
                        d
                    }
                };
                let want = with.saturating_add(out);
                // 3. At most double per step; within bounds.
                let cap = current.max(1).saturating_mul(2).max(c.min);
                if want > cap && cap < c.max {
                    why.push(format!("at most doubling per step ({cap})"));
                }
                let bounded = want.min(cap).clamp(c.min, c.max);
                if want.min(cap) > c.max {
                    why.push(format!("bounded by max ({})", c.max));
                }
                bounded
            }
        };
        raw = raw.clamp(c.min, c.max);
        // 4. The windows. Before its first tick the cluster was at its current count:
        // a fresh recommender waits a whole window before it moves.
        if self.history.is_empty() {
            self.history.push_back((now.saturating_sub(1), current));
        }
        self.history.push_back((now, raw));
        let keep = c.scale_up_cooldown.max(c.scale_down_cooldown).as_millis() as u64;
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > keep)
        {
            self.history.pop_front();
        }
        let within = |w: Duration| {
            let w = w.as_millis() as u64;
            self.history
                .iter()
                .filter(move |(t, _)| now.saturating_sub(*t) < w.max(1))
        };
        let mut desired = if raw > current {
            let up = within(c.scale_up_cooldown)
                .map(|(_, r)| *r)
                .min()
                .unwrap_or(raw);
            let d = current.max(up);
            if d < raw {
                // Held until the last lower recommendation leaves the window.
                let until = within(c.scale_up_cooldown)
                    .filter(|(_, r)| *r < raw)
                    .map(|(t, _)| *t + c.scale_up_cooldown.as_millis() as u64)
                    .max()
                    .unwrap_or(now);
                why.push(format!(
                    "held by scale-up cooldown until +{}",
                    human(until.saturating_sub(now))
                ));
            }
            d
        } else if raw < current {
            let down = within(c.scale_down_cooldown)
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(raw);
            let d = current.min(down);
            if d > raw {
                let until = within(c.scale_down_cooldown)
                    .filter(|(_, r)| *r > raw)
                    .map(|(t, _)| *t + c.scale_down_cooldown.as_millis() as u64)
                    .max()
                    .unwrap_or(now);
                why.push(format!(
                    "held by scale-down cooldown until +{}",
                    human(until.saturating_sub(now))
                ));
            }
            d
        } else {
            current
        };
        desired = desired.clamp(c.min, c.max);
        if current < c.min || current > c.max {
            why.push(format!("bounds [{}, {}]", c.min, c.max));
        }
        // The first recommendation is a change only if it differs from the count.
        let changed = self.last.map_or(desired != current, |l| l != desired);
        self.last = Some(desired);
        let mut reason = why.join("; ");
        if let Some(first) = why.first() {
            // "in flight 73 per endpoint against 50: 3 → 5; ..."
            reason = format!("{first}: {current} → {desired}");
            for w in &why[1..] {
                reason.push_str("; ");
                reason.push_str(w);
            }
        }
        Decision {
            current,
            desired,
            raw,
            reason,
            changed,
        }
    }
}

/// The smallest count from `need` that still has `need` after losing `share` of it
/// (rounded up): zone headroom for a largest zone holding that share. `need` when no
/// count can (a share of 1).
pub fn headroom(need: u32, share: f64) -> u32 {
    if share >= 1.0 {
        return need;
    }
    // d − ceil(d × share) ≥ need starts at about need ÷ (1 − share).
    let mut d = ((f64::from(need) / (1.0 - share)).floor() as u32).max(need);
    while d > need && d - 1 - ((f64::from(d - 1) * share - 1e-9).ceil() as u32) >= need {
        d -= 1;
    }
    while d - ((f64::from(d) * share - 1e-9).ceil() as u32).min(d) < need {
        d += 1;
    }
    d
}

fn round(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn figure_phrase(t: ScaleTarget, f: f64) -> String {
    match t {
        ScaleTarget::Cpu(_) => format!("cpu {}%", round(f * 100.0)),
        ScaleTarget::InFlight(_) => format!("in flight {}", round(f)),
        ScaleTarget::Rps(_) => format!("{} requests/s", round(f)),
    }
}

fn target_phrase(t: ScaleTarget) -> String {
    match t {
        ScaleTarget::Cpu(v) => format!("{}%", round(v * 100.0)),
        ScaleTarget::InFlight(v) | ScaleTarget::Rps(v) => round(v),
    }
}

/// `2m10s`, `45s`, `1.5s`.
fn human(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if ms >= 10_000 || ms % 1000 == 0 {
        format!("{s}s")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Each autoscaled cluster's last decision, for the state API.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, Status>>);

/// One cluster's autoscaling, as the state API shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Endpoints in the set.
    pub current: u32,
    /// Of them, available.
    pub available: u32,
    /// Endpoints recommended.
    pub desired: u32,
    /// `cpu`, `in_flight_per_endpoint` or `requests_per_second_per_endpoint`.
    pub figure_name: &'static str,
    /// The figure per available endpoint (percent for `cpu`).
    pub figure: Option<f64>,
    /// The target (percent for `cpu`).
    pub target: f64,
    /// p99 latency over the last minute, beside the figure.
    pub p99_ms: Option<f64>,
    /// Why, in words.
    pub reason: String,
    /// `[min, max]`.
    pub bounds: (u32, u32),
    /// The hook's runs.
    pub hook: Option<HookStatus>,
}

/// What the hook did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HookStatus {
    /// Runs so far.
    pub runs: u64,
    /// Of them, failed (exit status, timeout, webhook error).
    pub failures: u64,
    /// The last run's result in words.
    pub last: Option<String>,
    /// The desired count the last run was given.
    pub last_desired: Option<u32>,
}

// === impl Board ===

impl Board {
    /// `cluster`'s status.
    pub fn get(&self, cluster: &str) -> Option<Status> {
        self.lock().get(cluster).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Status>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the runner reads each tick: the autoscaled clusters of the running snapshot.
pub type Inputs = Box<dyn Fn() -> Vec<ClusterInput> + Send>;

/// The autoscale thread: ticks once a second until `stop` turns true.
pub fn spawn(
    inputs: Inputs,
    board: Arc<Board>,
    metrics: crate::metrics::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ninefold-autoscale".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                tracing::error!("autoscale: cannot start its runtime");
                return;
            };
            rt.block_on(async move {
                let mut r = Runner {
                    board,
                    metrics,
                    clusters: HashMap::new(),
                    epoch: tokio::time::Instant::now(),
                };
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = tick.tick() => r.tick(inputs()).await,
                        _ = stop.changed() => break,
                    }
                }
            });
        })
}

struct Runner {
    board: Arc<Board>,
    metrics: crate::metrics::Metrics,
    clusters: HashMap<String, Running>,
    epoch: tokio::time::Instant,
}

/// One cluster's recommender and what its figures need from the last tick.
struct Running {
    rec: Recommender,
    /// Requests counters at the last tick, by address, and when.
    requests: HashMap<SocketAddr, u64>,
    /// CPU-seconds counters at the last scrape, by address, with when each answered.
    cpu: HashMap<SocketAddr, (f64, std::time::Instant)>,
    last_at: Option<u64>,
    /// The cluster's hook task, fed each change with the hook's settings then.
    hook: Option<tokio::sync::watch::Sender<Option<(Decision, crate::config::Hook)>>>,
    hook_status: Arc<Mutex<HookStatus>>,
}

impl Runner {
    async fn tick(&mut self, inputs: Vec<ClusterInput>) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let gone: Vec<String> = self
            .clusters
            .keys()
            .filter(|name| !inputs.iter().any(|i| &i.name == *name))
            .cloned()
            .collect();
        for name in gone {
            // Its hook task ends with its sender; its series go.
            self.clusters.remove(&name);
            let _ = self.metrics.autoscale_desired.remove_label_values(&[&name]);
            let _ = self.metrics.autoscale_current.remove_label_values(&[&name]);
        }
        self.board
            .lock()
            .retain(|name, _| inputs.iter().any(|i| &i.name == name));
        for input in inputs {
            // A reload that edits the block reconfigures the recommender in place: its
            // windows' history, its last recommendation and its hook carry on.
            let r = self
                .clusters
                .entry(input.name.clone())
                .or_insert_with(|| Running {
                    rec: Recommender::new(input.config.clone()),
                    requests: HashMap::new(),
                    cpu: HashMap::new(),
                    last_at: None,
                    hook: None,
                    hook_status: Arc::new(Mutex::new(HookStatus::default())),
                });
            if *r.rec.config() != input.config {
                r.rec.cfg = input.config.clone();
            }
            if r.hook.is_none() && input.config.hook.is_some() {
                let (tx, rx) = tokio::sync::watch::channel(None);
                tokio::spawn(run_hooks(input.name.clone(), rx, r.hook_status.clone()));
                r.hook = Some(tx);
            }
            let figure = figure(r, &input, now).await;
            let mut zones: BTreeMap<String, u32> = BTreeMap::new();
            for e in &input.endpoints {
                let z = e.zone.as_deref().unwrap_or("(no zone)").to_owned();
                *zones.entry(z).or_default() += 1;
            }
            let mut zones: Vec<(String, u32)> = zones.into_iter().collect();
            zones.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let sample = Sample {
                current: input.endpoints.len() as u32,
                available: input.endpoints.iter().filter(|e| e.available).count() as u32,
                figure,
                zones,
            };
            let d = r.rec.step(now, &sample);
            let cfg = r.rec.config();
            let scale = if matches!(cfg.target, ScaleTarget::Cpu(_)) {
                100.0
            } else {
                1.0
            };
            let name = cfg.target.name();
            self.metrics
                .autoscale_desired
                .with_label_values(&[&input.name])
                .set(i64::from(d.desired));
            self.metrics
                .autoscale_current
                .with_label_values(&[&input.name])
                .set(i64::from(d.current));
            if let Some(f) = figure {
                self.metrics
                    .autoscale_figure
                    .with_label_values(&[&input.name, name])
                    .set(f * scale);
            }
            if d.changed {
                tracing::info!(cluster = %input.name, current = d.current, desired = d.desired, "autoscale: {}", d.reason);
                crate::events::emit(
                    "autoscale",
                    Some(&input.name),
                    None,
                    format!("autoscale: {}", d.reason),
                );
                if let (Some(tx), Some(h)) = (&r.hook, &cfg.hook) {
                    let _ = tx.send(Some((d.clone(), h.clone())));
                }
            }
            let status = Status {
                current: d.current,
                available: sample.available,
                desired: d.desired,
                figure_name: name,
                figure: figure.map(|f| (f * scale * 100.0).round() / 100.0),
                target: cfg.target.value() * scale,
                p99_ms: input.p99_ms,
                reason: d.reason,
                bounds: (cfg.min, cfg.max),
                hook: cfg.hook.as_ref().map(|_| {
                    r.hook_status
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                }),
            };
            self.board.lock().insert(input.name.clone(), status);
        }
    }
}

/// The figure per available endpoint at `now` (ms), from the data path's counters or
/// the endpoints' Prometheus pages.
async fn figure(r: &mut Running, input: &ClusterInput, now: u64) -> Option<f64> {
    let available: Vec<&EndpointInput> = input.endpoints.iter().filter(|e| e.available).collect();
    let n = available.len() as f64;
    let last_at = r.last_at.replace(now);
    match input.config.target {
        ScaleTarget::InFlight(_) => {
            let total: u32 = input.endpoints.iter().map(|e| e.in_flight).sum();
            (n > 0.0).then(|| f64::from(total) / n)
        }
        ScaleTarget::Rps(_) => {
            let before = std::mem::take(&mut r.requests);
            let mut sent = 0;
            for e in &input.endpoints {
                r.requests.insert(e.address, e.requests);
                sent += e
                    .requests
                    .saturating_sub(before.get(&e.address).copied().unwrap_or(e.requests));
            }
            let secs = now.saturating_sub(last_at?) as f64 / 1000.0;
            (n > 0.0 && secs > 0.0).then(|| sent as f64 / secs / n)
        }
        ScaleTarget::Cpu(_) => {
            let m = &input.config.cpu_metric;
            let reads = futures_util::future::join_all(available.iter().map(|e| {
                let addr = e.address;
                async move {
                    let v = scrape(addr, &m.path, &m.name).await;
                    (addr, v, std::time::Instant::now())
                }
            }))
            .await;
            let mut rates = Vec::new();
            let mut missing = 0usize;
            let mut next = HashMap::new();
            for (addr, value, at) in reads {
                let Some(v) = value else {
                    missing += 1;
                    continue;
                };
                if let Some((prev, then)) = r.cpu.get(&addr) {
                    let secs = at.duration_since(*then).as_secs_f64();
                    if secs > 0.0 && v >= *prev {
                        rates.push((v - prev) / secs / m.cores);
                    }
                }
                next.insert(addr, (v, at));
            }
            r.cpu = next;
            // An endpoint whose page did not answer (an overloaded one, often) counts
            // as at target: it neither hides load nor invents it.
            let target = input.config.target.value();
            let n = rates.len() + missing;
            (!rates.is_empty())
                .then(|| (rates.iter().sum::<f64>() + missing as f64 * target) / n as f64)
        }
    }
}

/// Reads counter `name` (its series summed) from `addr`'s Prometheus page at `path`.
async fn scrape(addr: SocketAddr, path: &str, name: &str) -> Option<f64> {
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let a = crate::oneshot::exchange(&addr.to_string(), req, Duration::from_millis(800))
        .await
        .ok()?;
    if !a.status.is_success() {
        return None;
    }
    prometheus_value(std::str::from_utf8(&a.body).ok()?, name)
}

/// The sum of the samples of metric `name` in Prometheus text, if it has any.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: a space or the label set.
        let rest = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(i) => &r[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            rest
        } else {
            continue;
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// Runs the hook on each change of recommendation, one run at a time; a change during
/// a run waits, and only the latest.
async fn run_hooks(
    cluster: String,
    mut rx: tokio::sync::watch::Receiver<Option<(Decision, crate::config::Hook)>>,
    status: Arc<Mutex<HookStatus>>,
) {
    while rx.changed().await.is_ok() {
        let Some((d, hook)) = rx.borrow_and_update().clone() else {
            continue;
        };
        let result = match &hook.kind {
            HookKind::Command(argv) => run_command(&cluster, argv, &d, hook.timeout).await,
            HookKind::Webhook(url) => run_webhook(&cluster, url, &d, hook.timeout).await,
        };
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.runs += 1;
        s.last_desired = Some(d.desired);
        match result {
            Ok(()) => {
                tracing::info!(cluster = %cluster, desired = d.desired, "autoscale hook ran");
                s.last = Some("ok".into());
            }
            Err(e) => {
                s.failures += 1;
                tracing::warn!(cluster = %cluster, desired = d.desired, "autoscale hook failed (it runs again at the next change): {e}");
                s.last = Some(e);
            }
        }
    }
}

async fn run_command(
    cluster: &str,
    argv: &[String],
    d: &Decision,
    timeout: Duration,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("NINEFOLD_CLUSTER", cluster)
        .env("NINEFOLD_CURRENT", d.current.to_string())
        .env("NINEFOLD_DESIRED", d.desired.to_string())
        .env("NINEFOLD_REASON", &d.reason)
        .stdin(std::process::Stdio::null())
        // Its output is not ours to hold: a chatty hook, or instances it starts in the
        // background, must not keep a pipe open under us. Its stderr's first 4 KiB
        // explain a failure.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    // Read all along (a full pipe would stall the hook), keeping the first 4 KiB.
    let stderr = child.stderr.take().map(|mut s| {
        tokio::spawn(async move {
            let (mut keep, mut buf) = (Vec::new(), [0u8; 4096]);
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = 4096usize.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
            keep
        })
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("{}: {e}", argv[0])),
        Err(_) => {
            if let Some(pid) = child.id() {
                // The group: the hook and whatever it started and still runs.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
            let _ = child.kill().await;
            return Err(format!(
                "timed out after {}s (its process group was killed)",
                timeout.as_secs_f64()
            ));
        }
    };
    let mut err = Vec::new();
    if let Some(mut task) = stderr {
        // Something the hook started may hold its stderr open: wait a little only.
        match tokio::time::timeout(Duration::from_millis(200), &mut task).await {
            Ok(Ok(e)) => err = e,
            _ => task.abort(),
        }
    }
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&err);
    let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
    Err(format!("{} exited with {status}: {tail}", argv[0]))
}

async fn run_webhook(
    cluster: &str,
    url: &str,
    d: &Decision,
    timeout: Duration,
) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or_default(),
        uri.port_u16().unwrap_or(80)
    );
    let body = serde_json::json!({
        "cluster": cluster,
        "current": d.current,
        "desired": d.desired,
        "reason": d.reason,
    })
    .to_string();
    let req = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let a = crate::oneshot::exchange(&addr, req, timeout)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if a.status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", a.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpuMetric;

    fn cfg(target: ScaleTarget) -> AutoscaleConfig {
        AutoscaleConfig {
            min: 2,
            max: 100,
            target,
            cpu_metric: CpuMetric {
                path: "/metrics".into(),
                name: "process_cpu_seconds_total".into(),
                cores: 1.0,
            },
            scale_up_cooldown: Duration::from_secs(60),
            scale_down_cooldown: Duration::from_secs(300),
            tolerance: 0.1,
            zone_headroom: false,
            hook: None,
        }
    }

    fn sample(current: u32, figure: f64) -> Sample {
        Sample {
            current,
            available: current,
            figure: Some(figure),
            zones: vec![("a".into(), current)],
        }
    }

    #[test]
    fn hpa_rule_with_tolerance_and_doubling() {
        let mut cfg = cfg(ScaleTarget::InFlight(50.0));
        cfg.scale_up_cooldown = Duration::from_millis(1);
        let mut r = Recommender::new(cfg);
        // 73 in flight per endpoint against 50 on 3: ceil(3 × 1.46) = 5.
        let d = r.step(1_000, &sample(3, 73.0));
        assert_eq!((d.desired, d.changed), (5, true));
        assert_eq!(d.reason, "in flight 73 per endpoint against 50: 3 → 5");
        // Within 10% of the target: nothing changes.
        let mut r = Recommender::new(r.config().clone());
        let d = r.step(1_000, &sample(4, 54.0));
        assert_eq!(d.desired, 4);
        assert!(d.reason.contains("within 10% tolerance"), "{}", d.reason);
        let d = r.step(2_000, &sample(4, 46.0));
        assert_eq!((d.desired, d.changed), (4, false));
        // At most doubling per step.
        let d = r.step(3_000, &sample(4, 500.0));
        assert_eq!(d.desired, 8);
        assert!(d.reason.contains("at most doubling"), "{}", d.reason);
    }

    #[test]
    fn out_endpoints_are_no_capacity_and_bounds_hold() {
        let mut c = cfg(ScaleTarget::InFlight(10.0));
        c.scale_up_cooldown = Duration::from_millis(1);
        let mut r = Recommender::new(c);
        // 5 endpoints, 2 out: 30 in flight over the 3 available, 10 each: on target.
        let s = Sample {
            current: 5,
            available: 3,
            figure: Some(10.0),
            zones: vec![],
        };
        let d = r.step(1_000, &s);
        assert_eq!(d.desired, 5);
        assert!(
            d.reason.contains("2 out, not counted as capacity"),
            "{}",
            d.reason
        );
        // 30 in flight on the 1 available of 3: 3 must serve, and the 2 out come on
        // top (a zone outage must scale up, not look like no change).
        let s = Sample {
            current: 3,
            available: 1,
            figure: Some(30.0),
            zones: vec![],
        };
        assert_eq!(r.step(2_000, &s).desired, 5);
        // Nothing available: hold; never under min.
        let s = Sample {
            current: 1,
            available: 0,
            figure: None,
            zones: vec![],
        };
        let d = r.step(3_000, &s);
        assert_eq!(d.desired, 2);
        assert!(
            d.reason.contains("no endpoint is available"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn windows_stabilise_up_and_down_on_a_driven_clock() {
        let mut r = Recommender::new(cfg(ScaleTarget::InFlight(10.0)));
        let s = 1_000;
        assert_eq!(r.step(0, &sample(2, 10.0)).desired, 2);
        // Load doubles: the rule asks 4, the up window (60 s) holds.
        let d = r.step(s, &sample(2, 20.0));
        assert_eq!(d.desired, 2);
        assert!(
            d.reason.contains("held by scale-up cooldown until +59s"),
            "{}",
            d.reason
        );
        for t in 2..60 {
            assert_eq!(r.step(t * s, &sample(2, 20.0)).desired, 2, "at {t}s");
        }
        let d = r.step(60 * s, &sample(2, 20.0));
        assert_eq!((d.desired, d.changed), (4, true));
        // Load gone: held for the down window (300 s) after the last high one.
        let d = r.step(61 * s, &sample(4, 0.0));
        assert_eq!(d.desired, 4);
        assert!(
            d.reason
                .contains("held by scale-down cooldown until +4m59s"),
            "{}",
            d.reason
        );
        for t in 62..360 {
            assert_eq!(r.step(t * s, &sample(4, 0.0)).desired, 4, "at {t}s");
        }
        let d = r.step(361 * s, &sample(4, 0.0));
        assert_eq!(d.desired, 2, "{}", d.reason);
        // Flapping inside the tolerance changes nothing.
        let mut r = Recommender::new(cfg(ScaleTarget::InFlight(10.0)));
        for t in 0..600 {
            let f = if t % 2 == 0 { 9.2 } else { 10.9 };
            let d = r.step(t * s, &sample(4, f));
            assert_eq!(d.desired, 4);
            assert!(!d.changed);
        }
    }

    #[test]
    fn zone_headroom_survives_the_loss_of_the_largest_zone() {
        let mut c = cfg(ScaleTarget::InFlight(10.0));
        c.zone_headroom = true;
        c.scale_up_cooldown = Duration::from_millis(1);
        let mut r = Recommender::new(c);
        // 3 zones, zone-a holds half: the load needs 4 at target, and 8 leave 4 when
        // zone-a (half) goes.
        let s = Sample {
            current: 4,
            available: 4,
            figure: Some(10.0),
            zones: vec![
                ("zone-a".into(), 2),
                ("zone-b".into(), 1),
                ("zone-c".into(), 1),
            ],
        };
        let d = r.step(1_000, &s);
        assert_eq!(d.desired, 8, "{}", d.reason);
        assert!(
            d.reason
                .contains("zone headroom: losing zone-a leaves 4 of 8"),
            "{}",
            d.reason
        );
        // Evenly over 3 zones: 6 leave 4.
        let mut r = Recommender::new(r.config().clone());
        let s = Sample {
            current: 6,
            available: 6,
            figure: Some(10.0 * 4.0 / 6.0),
            zones: vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 2)],
        };
        let d = r.step(1_000, &s);
        assert_eq!((d.desired, d.changed), (6, false), "{}", d.reason);
        // Steady on target with headroom: it holds, it does not climb (no figure
        // either: holding adds nothing).
        for t in 2..10 {
            assert_eq!(r.step(t * 1_000, &s).desired, 6);
        }
        let none = Sample {
            figure: None,
            ..s.clone()
        };
        assert_eq!(r.step(10_000, &none).desired, 6);
        // Two zones, 3 and 2: losing a (60%) must leave 5: 13, at most doubling: 10.
        let mut r = Recommender::new(r.config().clone());
        let s = Sample {
            current: 5,
            available: 5,
            figure: Some(10.0),
            zones: vec![("a".into(), 3), ("b".into(), 2)],
        };
        let d = r.step(1_000, &s);
        assert_eq!(d.desired, 10);
        assert!(
            d.reason.contains("at most doubling per step (10)"),
            "{}",
            d.reason
        );
        // Capped by max: said so.
        let mut c = r.config().clone();
        c.max = 7;
        let mut r = Recommender::new(c);
        let d = r.step(1_000, &s);
        assert_eq!(d.desired, 7);
        assert!(
            d.reason.contains("zone headroom short: at max (7)"),
            "{}",
            d.reason
        );
        assert_eq!(headroom(25, 1.0 / 3.0), 38);
        assert_eq!(headroom(3, 0.5), 6);
        assert_eq!(headroom(7, 1.0), 7);
    }

    #[test]
    fn cpu_reads_prometheus_text() {
        let text = "# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\nprocess_cpu_seconds_total_other 3\nfoo{a=\"b\"} 1\nprocess_cpu_seconds_total{mode=\"user\"} 0.5\n";
        assert_eq!(
            prometheus_value(text, "process_cpu_seconds_total"),
            Some(13.0)
        );
        assert_eq!(prometheus_value(text, "missing"), None);
        let mut r = Recommender::new(cfg(ScaleTarget::Cpu(0.6)));
        let d = r.step(0, &sample(2, 0.9));
        assert_eq!(
            d.reason,
            "cpu 90% per endpoint against 60%: 2 → 2; held by scale-up cooldown until +1m0s"
        );
    }
}
