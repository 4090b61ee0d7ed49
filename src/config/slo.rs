//! SLO definitions (`slos:`): the types every reader of SLOs shares (the live
//! engine, the rule generator, the estimate, the stand-alone formats of `slo::spec`)
//! and the validator that builds them from the file, the one place the defaults of a
//! definition are applied.

use super::collect::V;
use super::raw::*;
use super::units::{parse_duration, parse_status_match, percent_sign};
use crate::availability::{parse_objective, Prob};
use std::collections::HashSet;
use std::time::Duration;

/// One SLO, whatever format it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SloDef {
    /// Name; the `slo` label of `ninefold_requests_total`.
    pub name: String,
    /// Service it belongs to (`sloth_service` in generated rules).
    pub service: String,
    /// Objective as written, e.g. `99.95%`.
    pub objective_text: String,
    /// Objective.
    pub objective: Prob,
    /// Rolling window.
    pub window: Duration,
    /// What is measured.
    pub indicator: Indicator,
    /// Whether injected faults count against the SLO.
    pub count_faults: bool,
    /// Alerting.
    pub alerts: AlertSpec,
    /// `error_budget_minutes` as written in a seed file, to cross-check.
    pub stated_budget_minutes: Option<f64>,
}

/// The SLI.
#[derive(Debug, Clone, PartialEq)]
pub enum Indicator {
    /// Good when the status is in one of these inclusive ranges.
    Availability {
        /// Status ranges (a code is `(c, c)`, a class `2xx` is `(200, 299)`).
        good: Vec<(u16, u16)>,
    },
    /// Good when the response headers left within the threshold.
    Latency {
        /// The threshold.
        threshold: Duration,
    },
}

/// One multiwindow burn-rate alert: fires while the burn rate over both windows is
/// above `burn_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertWindow {
    /// `page` or `ticket` (any word).
    pub severity: String,
    /// Long window.
    pub long: Duration,
    /// Short window (resets the alert quickly once the burning stops).
    pub short: Duration,
    /// Burn-rate threshold.
    pub burn_rate: f64,
}

/// Alerting settings of an SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// Alertmanager v2 endpoint (`http://host:port/api/v2/alerts`).
    pub webhook: Option<String>,
    /// The burn-rate alerts.
    pub windows: Vec<AlertWindow>,
    /// Fewer events than this in the long window: no alert (low-traffic gate).
    pub min_events: u64,
    /// Extra labels on every alert.
    pub labels: Vec<(String, String)>,
}

/// The Google SRE Workbook's defaults: 14.4× over 1 h and 5 m and 6× over 6 h and 30 m
/// page; 1× over 3 d and 6 h opens a ticket.
pub fn default_windows() -> Vec<AlertWindow> {
    let w = |sev: &str, long: u64, short: u64, burn: f64| AlertWindow {
        severity: sev.into(),
        long: Duration::from_secs(long),
        short: Duration::from_secs(short),
        burn_rate: burn,
    };
    vec![
        w("page", 3600, 300, 14.4),
        w("page", 6 * 3600, 1800, 6.0),
        w("ticket", 3 * 86400, 6 * 3600, 1.0),
    ]
}

impl Default for AlertSpec {
    /// No webhook, the Workbook's windows, no traffic gate, no extra labels.
    fn default() -> Self {
        AlertSpec {
            webhook: None,
            windows: default_windows(),
            min_events: 1,
            labels: Vec::new(),
        }
    }
}

/// An availability SLO (good: 2xx) named `api` over 30 days, for tests.
#[cfg(test)]
pub(crate) fn test_def(objective: &str) -> SloDef {
    SloDef {
        name: "api".into(),
        service: "api".into(),
        objective_text: objective.into(),
        objective: crate::availability::parse_availability(objective).unwrap(),
        window: DEFAULT_WINDOW,
        indicator: Indicator::Availability {
            good: vec![(200, 299)],
        },
        count_faults: true,
        alerts: AlertSpec::default(),
        stated_budget_minutes: None,
    }
}

/// Default window when a definition names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86400);

/// Latency threshold when a latency indicator names none.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(300);

/// Statuses good by default: everything but 5xx.
pub fn default_good() -> Vec<(u16, u16)> {
    vec![(100, 499)]
}

impl SloDef {
    /// How alerts name it: `checkout SLO payments`, or `SLO payments` when its service
    /// is its own name (no service set), not the name twice.
    pub fn title(&self) -> String {
        if self.service == self.name {
            format!("SLO {}", self.name)
        } else {
            format!("{} SLO {}", self.service, self.name)
        }
    }
}

impl Indicator {
    /// Whether an answer is good. Answers the gateway made itself for an upstream
    /// failure are never good.
    #[inline]
    pub fn is_good(&self, status: u16, elapsed: Duration, gateway_failure: bool) -> bool {
        if gateway_failure {
            return false;
        }
        match self {
            Indicator::Availability { good } => {
                good.iter().any(|&(a, b)| a <= status && status <= b)
            }
            Indicator::Latency { threshold } => elapsed <= *threshold,
        }
    }

    /// Short description, e.g. `availability (good: 200, 201, 204)`.
    pub fn describe(&self) -> String {
        match self {
            Indicator::Availability { good } => {
                let list: Vec<String> = good
                    .iter()
                    .map(|&(a, b)| {
                        if a == b {
                            a.to_string()
                        } else if b - a == 99 && a % 100 == 0 {
                            format!("{}xx", a / 100)
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("availability (good: {})", list.join(", "))
            }
            Indicator::Latency { threshold } => {
                format!("latency (good: under {} ms)", threshold.as_millis())
            }
        }
    }
}

// === impl V ===

impl V<'_> {
    /// Checks `slos:` and builds the definitions: the one place the config's SLO
    /// defaults are applied (they live in this module).
    pub(super) fn slos(&mut self, slos: &[RawSlo]) -> Vec<SloDef> {
        let mut defs = Vec::with_capacity(slos.len());
        for (i, s) in slos.iter().enumerate() {
            let p = format!("slos[{i}]");
            let objective = match &s.objective {
                None => {
                    self.err(&format!("{p}.objective"), "required, e.g. 99.9%".into());
                    None
                }
                // A bare number is a percentage here (`ninefold check` warns when it
                // looks like a fraction); the stand-alone formats refuse it instead.
                Some(o) => match parse_objective(&percent_sign(&o.0)) {
                    Ok(prob) => Some((o.0.trim().to_owned(), prob)),
                    Err(m) => {
                        self.err(&format!("{p}.objective"), m);
                        None
                    }
                },
            };
            let window = self.opt_duration(&format!("{p}.window"), s.window.as_ref());
            let mut indicator = Indicator::Availability {
                good: default_good(),
            };
            if let Some(ind) = &s.indicator {
                let threshold =
                    self.opt_duration(&format!("{p}.indicator.threshold"), ind.threshold.as_ref());
                let mut good = Vec::new();
                for (j, g) in ind.good_status.iter().flatten().enumerate() {
                    match parse_status_match(&g.0) {
                        Some(range) => good.push(range),
                        None => self.err_hint(
                            &format!("{p}.indicator.good_status[{j}]"),
                            format!("invalid status {:?}", g.0),
                            "use a status code (200) or a class (2xx)",
                        ),
                    }
                }
                match ind.kind.as_deref() {
                    Some("latency") => {
                        indicator = Indicator::Latency {
                            threshold: threshold.unwrap_or(DEFAULT_THRESHOLD),
                        }
                    }
                    Some("availability") | None => match &ind.good_status {
                        Some(list) if list.is_empty() => self.err_hint(
                            &format!("{p}.indicator.good_status"),
                            "is empty: no answer would count as good".into(),
                            "list the good statuses, e.g. [2xx, 404], or leave good_status out (everything but 5xx)",
                        ),
                        Some(_) => indicator = Indicator::Availability { good },
                        None => {}
                    },
                    Some(o) => self.err(
                        &format!("{p}.indicator.type"),
                        format!("must be availability or latency, got {o:?}"),
                    ),
                }
            }
            let mut alert_windows = Vec::new();
            if let Some(a) = &s.alerts {
                if let Some(w) = &a.webhook {
                    if !(w.starts_with("http://") && w.parse::<http::Uri>().is_ok()) {
                        self.err_hint(
                            &format!("{p}.alerts.webhook"),
                            format!("invalid webhook URL {w:?}"),
                            "use http://host:port/api/v2/alerts (Alertmanager API v2; https is not supported yet)",
                        );
                    }
                }
                for (j, w) in a.windows.iter().flatten().enumerate() {
                    let wp = format!("{p}.alerts.windows[{j}]");
                    let long = self.opt_duration(&format!("{wp}.long"), w.long.as_ref());
                    let short = self.opt_duration(&format!("{wp}.short"), w.short.as_ref());
                    if w.long.is_none() || w.short.is_none() || w.burn_rate.is_none() {
                        self.err(&wp, "long, short and burn_rate are required".into());
                    }
                    if let (Some(l), Some(s)) = (long, short) {
                        if s > l {
                            self.err(
                                &format!("{wp}.short"),
                                "must not be longer than long".into(),
                            );
                        }
                        if l > Duration::from_secs(90 * 86400) {
                            self.err(&format!("{wp}.long"), "must be at most 90d".into());
                        }
                    }
                    if w.burn_rate.is_some_and(|b| !(b > 0.0 && b.is_finite())) {
                        self.err(&format!("{wp}.burn_rate"), "must be above 0".into());
                    }
                    if let (Some(long), Some(short), Some(burn_rate)) = (long, short, w.burn_rate) {
                        alert_windows.push(AlertWindow {
                            severity: w.severity.clone().unwrap_or_else(|| "page".into()),
                            long,
                            short,
                            burn_rate,
                        });
                    }
                }
            }
            if let Some(w) = &s.window {
                if parse_duration(&w.0).is_ok_and(|d| {
                    d > Duration::from_secs(90 * 86400) || d < Duration::from_secs(60)
                }) {
                    self.err(&format!("{p}.window"), "must be between 1m and 90d".into());
                }
            }
            for (k, _) in s.alerts.iter().flat_map(|a| a.labels.iter().flatten()) {
                let valid = k.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                }) && !k.is_empty();
                const RESERVED: [&str; 8] = [
                    "alertname",
                    "slo",
                    "service",
                    "severity",
                    "long_window",
                    "short_window",
                    "gateway",
                    "exhaustion",
                ];
                if !valid {
                    self.err(
                        &format!("{p}.alerts.labels.{k}"),
                        format!("invalid label name {k:?} (letters, digits and _, not starting with a digit)"),
                    );
                } else if RESERVED.contains(&k.as_str())
                    || k.starts_with("sloth_")
                    || k.starts_with("__")
                {
                    self.err(
                        &format!("{p}.alerts.labels.{k}"),
                        format!("label {k:?} is set by ninefold"),
                    );
                }
            }
            if let Some((objective_text, objective)) = objective {
                let alerts = s.alerts.as_ref();
                defs.push(SloDef {
                    name: s.name.clone(),
                    service: s.service.clone().unwrap_or_else(|| s.name.clone()),
                    objective_text,
                    objective,
                    window: window.unwrap_or(DEFAULT_WINDOW),
                    indicator,
                    count_faults: s.count_faults.unwrap_or(true),
                    alerts: AlertSpec {
                        webhook: alerts.and_then(|a| a.webhook.clone()),
                        windows: match alerts.and_then(|a| a.windows.as_ref()) {
                            Some(_) => alert_windows,
                            None => default_windows(),
                        },
                        min_events: alerts.and_then(|a| a.min_events).unwrap_or(1),
                        labels: alerts
                            .and_then(|a| a.labels.clone())
                            .unwrap_or_default()
                            .into_iter()
                            .collect(),
                    },
                    stated_budget_minutes: None,
                });
            }
        }
        let mut names = HashSet::new();
        for (i, s) in slos.iter().enumerate() {
            if s.name.is_empty() {
                self.err(&format!("slos[{i}].name"), "must not be empty".into());
            } else if !names.insert(s.name.as_str()) {
                self.err(
                    &format!("slos[{i}].name"),
                    format!("duplicate slo name {:?}", s.name),
                );
            }
        }
        defs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn slos_are_built_once_with_their_defaults() {
        let yaml = "slos:\n  - {name: api, objective: 99.95%}\n  - name: fast\n    objective: \"99.9\"\n    window: 7d\n    indicator: {type: latency}\n    alerts: {windows: [{long: 1h, short: 5m, burn_rate: 10}], min_events: 20}\n";
        let c = crate::config::parse("f.yaml", yaml, Path::new(".")).unwrap();
        let [api, fast] = c.slos.as_slice() else {
            panic!("{:?}", c.slos)
        };
        assert_eq!(api.objective_text, "99.95%");
        assert_eq!(api.window, DEFAULT_WINDOW);
        assert_eq!(
            api.indicator,
            Indicator::Availability {
                good: default_good()
            }
        );
        assert_eq!(api.alerts.windows, default_windows());
        assert_eq!(api.service, "api");
        assert_eq!(fast.window, Duration::from_secs(7 * 86400));
        assert_eq!(
            fast.indicator,
            Indicator::Latency {
                threshold: DEFAULT_THRESHOLD
            }
        );
        assert_eq!(fast.alerts.min_events, 20);
        assert_eq!(fast.alerts.windows.len(), 1);
        assert_eq!(fast.alerts.windows[0].severity, "page");
        assert_eq!(fast.alerts.windows[0].burn_rate, 10.0);
    }

    #[test]
    fn slo_objectives_are_read_one_way() {
        // The first once passed the validator and then silently became 99.9%.
        for (objective, message) in [
            ("9.995e1%", "invalid availability"),
            ("100", "must be above 0% and below 100%"),
            ("100%", "must be above 0% and below 100%"),
            ("0%", "must be above 0% and below 100%"),
        ] {
            let yaml = format!("slos: [{{name: api, objective: \"{objective}\"}}]\n");
            let e = crate::config::parse("f.yaml", &yaml, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("slos[0].objective: ") && e.contains(message),
                "{objective}: {e}"
            );
        }
        let yaml = "slos: [{name: api, objective: 0.999}]\n";
        let c = crate::config::parse("f.yaml", yaml, Path::new(".")).unwrap();
        assert!((c.slos[0].objective.up() - 0.00999).abs() < 1e-12);
        let yaml = "slos: [{name: api, indicator: {good_status: []}, objective: 99%}]\n";
        let e = crate::config::parse("f.yaml", yaml, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("slos[0].indicator.good_status: is empty"), "{e}");
    }
}
