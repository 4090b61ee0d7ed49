//! Validated `clusters[].autoscale`: the recommender's bounds, its target figure per
//! endpoint, its stabilisation windows and tolerance, zone headroom, and the hook that
//! closes the loop (a command or a webhook).

use super::collect::V;
use super::raw::RawAutoscale;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default stabilisation window of scaling up.
pub const DEFAULT_SCALE_UP_COOLDOWN: Duration = Duration::from_secs(60);
/// Default stabilisation window of scaling down.
pub const DEFAULT_SCALE_DOWN_COOLDOWN: Duration = Duration::from_secs(300);
/// Default tolerance: a figure within 10% of the target changes nothing.
pub const DEFAULT_TOLERANCE: f64 = 0.10;
/// Default time one hook run may take.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// `clusters[].autoscale`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleConfig {
    /// Fewest endpoints recommended.
    pub min: u32,
    /// Most endpoints recommended.
    pub max: u32,
    /// The figure per endpoint to hold.
    pub target: ScaleTarget,
    /// Where `cpu` reads each endpoint's counter.
    pub cpu_metric: CpuMetric,
    /// A rise must hold this long before the recommendation follows it.
    pub scale_up_cooldown: Duration,
    /// A fall must hold this long before the recommendation follows it.
    pub scale_down_cooldown: Duration,
    /// A figure within this fraction of the target changes nothing (0.1 = 10%).
    pub tolerance: f64,
    /// Raise the count so that losing the largest zone keeps the rest at target.
    pub zone_headroom: bool,
    /// What runs on a change of recommendation.
    pub hook: Option<Hook>,
}

/// The figure per endpoint the recommender holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleTarget {
    /// CPU utilisation, a fraction of `cpu_metric.cores` (0.6 = 60%).
    Cpu(f64),
    /// Requests in flight per endpoint.
    InFlight(f64),
    /// Requests per second per endpoint.
    Rps(f64),
}

/// `autoscale.cpu_metric`.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuMetric {
    /// Path of each endpoint's Prometheus page.
    pub path: String,
    /// The counter of CPU seconds (its series are summed).
    pub name: String,
    /// Cores per endpoint.
    pub cores: f64,
}

/// `autoscale.hook`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// A command or a webhook.
    pub kind: HookKind,
    /// How long one run may take.
    pub timeout: Duration,
}

/// What a hook is.
#[derive(Debug, Clone, PartialEq)]
pub enum HookKind {
    /// A program (a path with a `/` is relative to the configuration file) and its
    /// arguments.
    Command(Vec<String>),
    /// An `http://` URL POSTed the decision as JSON.
    Webhook(String),
}

// === impl ScaleTarget ===

impl ScaleTarget {
    /// The figure's name: `cpu`, `in_flight_per_endpoint`,
    /// `requests_per_second_per_endpoint`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleTarget::Cpu(_) => "cpu",
            ScaleTarget::InFlight(_) => "in_flight_per_endpoint",
            ScaleTarget::Rps(_) => "requests_per_second_per_endpoint",
        }
    }

    /// The target value (a fraction for `cpu`).
    pub fn value(self) -> f64 {
        match self {
            ScaleTarget::Cpu(v) | ScaleTarget::InFlight(v) | ScaleTarget::Rps(v) => v,
        }
    }
}

impl V<'_> {
    /// `{p}.autoscale`.
    pub(super) fn autoscale(
        &mut self,
        p: &str,
        raw: &RawAutoscale,
        base: &Path,
    ) -> Option<AutoscaleConfig> {
        let p = format!("{p}.autoscale");
        let min = raw.min.unwrap_or(1);
        let max = raw.max.unwrap_or(min.max(1).saturating_mul(10));
        if min == 0 {
            self.err(&format!("{p}.min"), "must be at least 1".into());
        }
        if max < min {
            self.err(
                &format!("{p}.max"),
                format!("must be at least min ({min}), got {max}"),
            );
        }
        if max > 10_000 {
            self.err(
                &format!("{p}.max"),
                format!("must be at most 10000, got {max}"),
            );
        }
        let tp = format!("{p}.target");
        let target = match &raw.target {
            None => {
                self.err_hint(
                    &tp,
                    "required".into(),
                    "target: {in_flight_per_endpoint: 50} (or {cpu: 60%} or {requests_per_second_per_endpoint: 200})",
                );
                // Go on: every other key's problems are reported in the same run.
                ScaleTarget::InFlight(1.0)
            }
            Some(t) => {
                let set = [
                    t.cpu.is_some(),
                    t.in_flight_per_endpoint.is_some(),
                    t.requests_per_second_per_endpoint.is_some(),
                ];
                let one = set.iter().filter(|x| **x).count() == 1;
                if !one {
                    self.err(
                        &tp,
                        "needs exactly one of cpu, in_flight_per_endpoint, requests_per_second_per_endpoint".into(),
                    );
                }
                let positive = |v: &mut V<'_>, key: &str, x: f64| {
                    if !(x.is_finite() && x > 0.0) {
                        v.err(
                            &format!("{tp}.{key}"),
                            format!("must be greater than zero, got {x}"),
                        );
                    }
                    x
                };
                if !one {
                    ScaleTarget::InFlight(1.0)
                } else if let Some(c) = &t.cpu {
                    let pc = self
                        .percent_upto(&format!("{tp}.cpu"), Some(c), 100.0)
                        .unwrap_or(60.0);
                    ScaleTarget::Cpu(pc / 100.0)
                } else if let Some(x) = t.in_flight_per_endpoint {
                    ScaleTarget::InFlight(positive(self, "in_flight_per_endpoint", x))
                } else {
                    let x = t.requests_per_second_per_endpoint.unwrap_or(1.0);
                    ScaleTarget::Rps(positive(self, "requests_per_second_per_endpoint", x))
                }
            }
        };
        let cpu_metric = {
            let m = raw.cpu_metric.clone().unwrap_or_default();
            let mp = format!("{p}.cpu_metric");
            let path = m.path.unwrap_or_else(|| "/metrics".into());
            if !path.starts_with('/') {
                self.err(
                    &format!("{mp}.path"),
                    format!("must start with /, got {path:?}"),
                );
            }
            let cores = m.cores.unwrap_or(1.0);
            if !(cores.is_finite() && cores > 0.0) {
                self.err(
                    &format!("{mp}.cores"),
                    format!("must be greater than zero, got {cores}"),
                );
            }
            CpuMetric {
                path,
                name: m.name.unwrap_or_else(|| "process_cpu_seconds_total".into()),
                cores,
            }
        };
        if raw.cpu_metric.is_some() && !matches!(target, ScaleTarget::Cpu(_)) {
            self.err_hint(
                &format!("{p}.cpu_metric"),
                "is read only by target: {cpu: ...}".into(),
                "remove cpu_metric, or set target: {cpu: 60%}",
            );
        }
        let scale_up_cooldown = self
            .opt_duration(
                &format!("{p}.scale_up_cooldown"),
                raw.scale_up_cooldown.as_ref(),
            )
            .unwrap_or(DEFAULT_SCALE_UP_COOLDOWN);
        let scale_down_cooldown = self
            .opt_duration(
                &format!("{p}.scale_down_cooldown"),
                raw.scale_down_cooldown.as_ref(),
            )
            .unwrap_or(DEFAULT_SCALE_DOWN_COOLDOWN);
        let tolerance = match &raw.tolerance {
            None => DEFAULT_TOLERANCE,
            Some(t) => match self.opt_percent(&format!("{p}.tolerance"), Some(t)) {
                Some(v) if (0.0..100.0).contains(&v) => v / 100.0,
                Some(v) => {
                    self.err(
                        &format!("{p}.tolerance"),
                        format!("must be in [0%, 100%), got {v}%"),
                    );
                    DEFAULT_TOLERANCE
                }
                None => DEFAULT_TOLERANCE,
            },
        };
        let hook = raw.hook.as_ref().and_then(|h| {
            let hp = format!("{p}.hook");
            let timeout = self
                .opt_duration(&format!("{hp}.timeout"), h.timeout.as_ref())
                .unwrap_or(DEFAULT_HOOK_TIMEOUT);
            let kind = match (&h.command, &h.webhook) {
                (Some(c), None) if !c.is_empty() && !c[0].is_empty() => {
                    let mut c = c.clone();
                    if c[0].contains('/') {
                        c[0] = resolve(base, &c[0]).display().to_string();
                    }
                    HookKind::Command(c)
                }
                (None, Some(u)) if u.starts_with("http://") => HookKind::Webhook(u.clone()),
                (None, Some(u)) => {
                    self.err_hint(
                        &format!("{hp}.webhook"),
                        format!("must be an http:// URL, got {u:?}"),
                        "webhook: \"http://127.0.0.1:9000/scale\"",
                    );
                    return None;
                }
                _ => {
                    self.err_hint(
                        &hp,
                        "needs exactly one of command (a non-empty list) and webhook".into(),
                        "hook: {command: [scripts/scale.sh]} or hook: {webhook: \"http://127.0.0.1:9000/scale\"}",
                    );
                    return None;
                }
            };
            Some(Hook { kind, timeout })
        });
        Some(AutoscaleConfig {
            min: min.max(1),
            max: max.max(min.max(1)),
            target,
            cpu_metric,
            scale_up_cooldown,
            scale_down_cooldown,
            tolerance,
            zone_headroom: raw.zone_headroom.unwrap_or(false),
            hook,
        })
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    super::resolve_path(base, p)
}
