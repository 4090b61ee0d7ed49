//! `ninefold grafana -c FILE`: a Grafana dashboard (the JSON model, importable as is)
//! for one configuration, so a fleet's operators get panels for every route, cluster
//! and SLO it has without writing a query. Each panel is built from ninefold's own
//! metric families, for what the file configures: a breaker panel only for a cluster
//! with a breaker, a bulkhead panel only where there is a bulkhead, TCP panels for TCP
//! listeners, and for each SLO its budget over exactly its window and the four burn
//! rates the alerts use (the same sums as `ninefold slo rules`, so the dashboard and
//! the rules agree, and the dashboard needs none of the rules loaded).
//!
//! The data source is a dashboard variable (`datasource`, any Prometheus), and
//! `--selector` adds label matchers (`job="ninefold"`) to every series selector, as
//! `slo rules --selector` does.

use crate::config::{Config, ListenerProtocol};
use serde_json::{json, Value};

/// The dashboard for `cfg`; `selector` is extra label matchers for every selector.
pub fn dashboard(cfg: &Config, selector: Option<&str>) -> Value {
    let mut b = Builder {
        panels: Vec::new(),
        y: 0,
        x: 0,
        id: 0,
        extra: selector.map(str::trim).filter(|s| !s.is_empty()),
    };
    let rate = "[$__rate_interval]";

    b.row("Overview");
    let all = b.sel(&[]);
    b.panel(
        "Requests per second by route",
        "reqps",
        &[(
            format!("sum by (listener, route) (rate(ninefold_requests_total{all}{rate}))"),
            "{{listener}}/{{route}}",
        )],
    );
    b.panel(
        "Endpoints available per cluster",
        "short",
        &[(
            format!("sum by (cluster) (ninefold_endpoint_available{all})"),
            "{{cluster}}",
        )],
    );

    for l in &cfg.listeners {
        if l.protocol == ListenerProtocol::Tcp {
            let s = b.sel(&[("listener", &l.name)]);
            b.row(&format!("TCP listener {}", l.name));
            b.panel(
                &format!("{}: open sessions by endpoint", l.name),
                "short",
                &[(
                    format!("sum by (endpoint) (ninefold_tcp_connections_active{s})"),
                    "{{endpoint}}",
                )],
            );
            b.panel(
                &format!("{}: bytes per second", l.name),
                "Bps",
                &[(
                    format!("sum by (direction) (rate(ninefold_tcp_bytes_total{s}{rate}))"),
                    "{{direction}}",
                )],
            );
            continue;
        }
        for r in &l.routes {
            let s = b.sel(&[("listener", &l.name), ("route", &r.name)]);
            b.row(&format!("Route {} ({})", r.name, l.name));
            b.panel(
                &format!("{}: requests by status class", r.name),
                "reqps",
                &[(
                    format!("sum by (code_class) (rate(ninefold_requests_total{s}{rate}))"),
                    "{{code_class}}",
                )],
            );
            b.panel(
                &format!("{}: gateway errors by reason", r.name),
                "reqps",
                &[(
                    format!("sum by (reason) (rate(ninefold_gateway_errors_total{s}{rate}))"),
                    "{{reason}}",
                )],
            );
            let bucket =
                format!("sum by (le) (rate(ninefold_request_duration_seconds_bucket{s}{rate}))");
            b.panel(
                &format!("{}: latency to response headers", r.name),
                "s",
                &[
                    (format!("histogram_quantile(0.5, {bucket})"), "p50"),
                    (format!("histogram_quantile(0.99, {bucket})"), "p99"),
                ],
            );
            b.panel(
                &format!("{}: retries and retry budget headroom", r.name),
                "short",
                &[
                    (
                        // A route's retry series exist from its first retry on: 0
                        // until then, not "no data".
                        format!(
                            "sum by (reason) (rate(ninefold_retries_total{s}{rate})) or vector(0)"
                        ),
                        "retries/s {{reason}}",
                    ),
                    (
                        format!("sum(ninefold_retry_budget_headroom{s})"),
                        "budget headroom",
                    ),
                ],
            );
            if r.bulkhead.is_some() {
                let s = b.sel(&[("scope", "route"), ("listener", &l.name), ("name", &r.name)]);
                b.bulkhead(&format!("{}: bulkhead", r.name), &s);
            }
        }
    }

    for c in &cfg.clusters {
        let s = b.sel(&[("cluster", &c.name)]);
        b.row(&format!("Cluster {}", c.name));
        b.panel(
            &format!("{}: endpoint health", c.name),
            "short",
            &[
                (format!("sum(ninefold_endpoint_available{s})"), "available"),
                (
                    format!("count(ninefold_endpoint_available{s})"),
                    "configured",
                ),
                (format!("sum(ninefold_endpoint_drained{s})"), "drained"),
                (format!("max(ninefold_cluster_panic{s})"), "panic mode"),
            ],
        );
        b.panel(
            &format!("{}: ejections", c.name),
            "short",
            &[
                (
                    format!(
                        "sum by (endpoint) (increase(ninefold_endpoint_ejections_total{s}{rate}))"
                    ),
                    "ejections {{endpoint}}",
                ),
                (format!("sum(ninefold_endpoint_ejected{s})"), "ejected now"),
            ],
        );
        if c.breaker.is_some() {
            b.panel_with(
                &format!(
                    "{}: circuit breakers (0 closed, 1 open, 2 half-open)",
                    c.name
                ),
                "short",
                &[(
                    format!("max by (endpoint) (ninefold_circuit_state{s})"),
                    "{{endpoint}}",
                )],
                json!([{"type": "value", "options": {
                    "0": {"text": "closed", "color": "green"},
                    "1": {"text": "open", "color": "red"},
                    "2": {"text": "half-open", "color": "orange"}
                }}]),
            );
        }
        if c.bulkhead.is_some() {
            let s = b.sel(&[("scope", "cluster"), ("name", &c.name)]);
            b.bulkhead(&format!("{}: bulkhead", c.name), &s);
        }
        if c.health_check.as_ref().and_then(|h| h.role()) == Some(crate::config::Role::Primary) {
            b.panel(
                &format!("{}: primary generation", c.name),
                "short",
                &[(format!("max(ninefold_primary_generation{s})"), "generation")],
            );
        }
    }

    for slo in &cfg.slos {
        let bad = b.sel(&[("slo", &slo.name), ("slo_result", "bad")]);
        let counted = b.sel_with(&[("slo", &slo.name)], "slo_result!=\"excluded\"");
        let allowed = crate::availability::snap(1.0 - slo.objective.up());
        let window = crate::slo::window::fmt_dur(slo.window);
        let ratio = |w: &str, f: &str| {
            format!(
                "((sum({f}(ninefold_requests_total{bad}[{w}])) or vector(0)) / (sum({f}(ninefold_requests_total{counted}[{w}])) > 0)) / {allowed}"
            )
        };
        b.row(&format!(
            "SLO {} ({} over {window})",
            slo.name, slo.objective_text
        ));
        b.panel(
            &format!("{}: error budget remaining, {window} window", slo.name),
            "percentunit",
            &[(
                format!("1 - {}", ratio(&window, "increase")),
                "budget remaining",
            )],
        );
        b.panel(
            &format!("{}: burn rates (1 = spending the budget exactly)", slo.name),
            "short",
            &[
                (ratio("5m", "rate"), "5m"),
                (ratio("1h", "rate"), "1h"),
                (ratio("6h", "rate"), "6h"),
                (ratio("3d", "rate"), "3d"),
            ],
        );
    }

    let title = format!(
        "ninefold: {}",
        std::path::Path::new(&cfg.source)
            .file_stem()
            .map_or_else(|| cfg.source.clone(), |s| s.to_string_lossy().into_owned())
    );
    json!({
        "title": title,
        "uid": uid(&title),
        "tags": ["ninefold"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": b.panels,
    })
}

/// Every panel query of a dashboard, with its panel's title: what the tests send to a
/// real Prometheus.
pub fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let (Some(title), Some(expr)) = (p["title"].as_str(), t["expr"].as_str()) {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    out
}

/// A stable uid from the title (Grafana allows 40 characters).
fn uid(title: &str) -> String {
    // FNV-1a: stable across builds and platforms.
    let h = title.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("ninefold-{h:016x}")
}

struct Builder<'a> {
    panels: Vec<Value>,
    y: u32,
    x: u32,
    id: u32,
    extra: Option<&'a str>,
}

impl Builder<'_> {
    /// A series selector with `labels` and the extra matchers.
    fn sel(&self, labels: &[(&str, &str)]) -> String {
        self.sel_with(labels, "")
    }

    /// [`Builder::sel`] with one more matcher written out (`slo_result!="excluded"`).
    fn sel_with(&self, labels: &[(&str, &str)], matcher: &str) -> String {
        let mut parts: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", promql_string(v)))
            .collect();
        if !matcher.is_empty() {
            parts.push(matcher.to_owned());
        }
        if let Some(e) = self.extra {
            parts.push(e.to_owned());
        }
        format!("{{{}}}", parts.join(", "))
    }

    fn next_id(&mut self) -> u32 {
        self.id += 1;
        self.id
    }

    fn row(&mut self, title: &str) {
        if self.x > 0 {
            self.y += 8;
            self.x = 0;
        }
        let id = self.next_id();
        self.panels.push(json!({
            "type": "row", "id": id, "title": title, "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": [],
        }));
        self.y += 1;
    }

    fn panel(&mut self, title: &str, unit: &str, targets: &[(String, &str)]) {
        self.panel_with(title, unit, targets, json!([]));
    }

    fn panel_with(&mut self, title: &str, unit: &str, targets: &[(String, &str)], mappings: Value) {
        let id = self.next_id();
        let targets: Vec<Value> = targets
            .iter()
            .zip('A'..)
            .map(|((expr, legend), r)| {
                json!({
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": expr, "legendFormat": legend, "refId": r.to_string(),
                })
            })
            .collect();
        self.panels.push(json!({
            "type": "timeseries", "id": id, "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": targets,
        }));
        if self.x == 0 {
            self.x = 12;
        } else {
            self.x = 0;
            self.y += 8;
        }
    }

    fn bulkhead(&mut self, title: &str, s: &str) {
        self.panel(
            title,
            "short",
            &[
                (format!("sum(ninefold_bulkhead_in_flight{s})"), "in flight"),
                (format!("sum(ninefold_bulkhead_queued{s})"), "queued"),
                (
                    format!("sum(rate(ninefold_bulkhead_shed_total{s}[$__rate_interval]))"),
                    "shed/s",
                ),
            ],
        );
    }
}

/// A PromQL string literal.
fn promql_string(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - name: api
        match: {path_prefix: /}
        cluster: api
        slo: avail
        bulkhead: {max_concurrent: 10}
clusters:
  - name: api
    endpoints: [{address: 127.0.0.1:9}]
    circuit_breaker: {}
slos:
  - name: avail
    objective: 99.9%
    window: 30d
"#;

    fn dash(selector: Option<&str>) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::parse("g.yaml", CONFIG, dir.path()).expect("valid");
        dashboard(&cfg, selector)
    }

    #[test]
    fn panels_follow_what_the_config_has() {
        let d = dash(None);
        let titles: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        for want in [
            "api: requests by status class",
            "api: gateway errors by reason",
            "api: latency to response headers",
            "api: retries and retry budget headroom",
            "api: bulkhead",
            "api: circuit breakers (0 closed, 1 open, 2 half-open)",
            "avail: error budget remaining, 30d window",
            "avail: burn rates (1 = spending the budget exactly)",
        ] {
            assert!(titles.contains(&want), "{want} in {titles:?}");
        }
        assert!(!titles.iter().any(|t| t.contains("primary generation")));
        // Ids are unique; panels do not overlap in a column.
        let mut ids: Vec<u64> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        ids.dedup();
        assert_eq!(ids.len(), d["panels"].as_array().unwrap().len());
    }

    #[test]
    fn the_selector_reaches_every_query_and_budgets_use_the_slo_window() {
        // A regex with braces in the extra matchers stays inside its selector.
        let d = dash(Some(r#"instance=~"gw[0-9]{2}""#));
        for (title, q) in queries(&d) {
            assert!(!q.contains(r#"{2}, slo_result"#), "{title}: {q}");
        }
        let d = dash(Some(r#"job="ninefold""#));
        let qs = queries(&d);
        assert!(qs.len() > 10);
        for (title, q) in &qs {
            assert!(q.contains(r#"job="ninefold""#), "{title}: {q}");
        }
        let budget = qs.iter().find(|(t, _)| t.contains("error budget")).unwrap();
        assert!(
            budget.1.contains("[30d]") && budget.1.contains("/ 0.001"),
            "{}",
            budget.1
        );
    }
}
