//! Reading SLO definitions from the three formats `ninefold slo` takes: the seed's
//! stand-alone SLO file, OpenSLO v1 `kind: SLO` with a `ratioMetric`, and a gateway
//! config's `slos:` (read by `config`, where the definition types and their defaults
//! live: this module reads config, never the other way).

use crate::availability::parse_objective;
use crate::config::{
    default_good, parse_duration, parse_status_match, AlertSpec, Indicator, SloDef, DEFAULT_WINDOW,
};
use serde_json::Value;
use std::time::Duration;

/// Reads SLO definitions from any of the three formats, detected by content:
/// OpenSLO (`apiVersion: openslo/v1`, one document, a list, or `---`-separated), the
/// seed's file (top-level `service` and `slo`), or a gateway config (`slos:`).
pub fn read_file(path: &std::path::Path) -> Result<Vec<SloDef>, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    parse_any(&name, &text, path)
}

/// [`read_file`] on text.
pub fn parse_any(name: &str, text: &str, path: &std::path::Path) -> Result<Vec<SloDef>, String> {
    let defs = parse_formats(name, text, path)?;
    let mut seen = std::collections::HashSet::new();
    for d in &defs {
        if !seen.insert(d.name.as_str()) {
            return Err(format!("{name}: SLO {:?} is defined twice", d.name));
        }
    }
    Ok(defs)
}

fn parse_formats(name: &str, text: &str, path: &std::path::Path) -> Result<Vec<SloDef>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| format!("{name}: {e}"))?;
    let docs: Vec<Value> = docs
        .into_iter()
        .flat_map(|d| match d {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        })
        .collect();
    let is_openslo = |d: &Value| {
        d.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("openslo/"))
    };
    if !docs.is_empty() && docs.iter().all(is_openslo) {
        let slos: Vec<SloDef> = docs
            .iter()
            .filter(|d| d.get("kind").and_then(Value::as_str) == Some("SLO"))
            .map(|d| openslo(name, d))
            .collect::<Result<_, _>>()?;
        if slos.is_empty() {
            return Err(format!("{name}: no OpenSLO document of kind SLO"));
        }
        return Ok(slos);
    }
    if let [doc] = docs.as_slice() {
        if doc.get("service").is_some() && doc.get("slo").is_some() {
            return seed(name, doc).map(|s| vec![s]);
        }
    }
    if docs.len() > 1 {
        return Err(format!(
            "{name}: {} YAML documents; only OpenSLO files (apiVersion: openslo/v1) may hold several, a seed SLO file or a gateway config is one document",
            docs.len()
        ));
    }
    let cfg = crate::config::load(path).map_err(|e| e.to_string())?;
    if cfg.slos.is_empty() {
        return Err(format!("{name}: no SLO found (expected slos: in a gateway config, the seed's service/slo file, or OpenSLO kind: SLO)"));
    }
    Ok(cfg.slos)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The seed's format: `service`, `slo: 99.95%`, `window: 30 days`,
/// `indicator: {type: availability, good: status_code in [200, 201, 204], total: all_requests}`,
/// optional `error_budget_minutes`.
fn seed(name: &str, d: &Value) -> Result<SloDef, String> {
    let known = [
        "service",
        "slo",
        "window",
        "indicator",
        "error_budget_minutes",
    ];
    if let Some(obj) = d.as_object() {
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                return Err(format!(
                    "{name}: {k}: unknown key (expected one of {})",
                    known.join(", ")
                ));
            }
        }
    }
    let service = d
        .get("service")
        .and_then(scalar)
        .ok_or(format!("{name}: service: required"))?;
    let objective_text = d
        .get("slo")
        .and_then(scalar)
        .ok_or(format!("{name}: slo: required, e.g. 99.95%"))?;
    let objective = parse_objective(&objective_text).map_err(|e| format!("{name}: slo: {e}"))?;
    let window = match d.get("window").and_then(scalar) {
        Some(w) => parse_duration(&w)
            .and_then(check_window)
            .map_err(|e| format!("{name}: window: {e}"))?,
        None => DEFAULT_WINDOW,
    };
    let ind = d.get("indicator");
    let kind = ind
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("availability");
    let indicator = match kind {
        "availability" => {
            let good = match ind.and_then(|i| i.get("good")) {
                None => default_good(),
                Some(g) => parse_good_expr(&scalar(g).unwrap_or_default())
                    .map_err(|e| format!("{name}: indicator.good: {e}"))?,
            };
            if let Some(t) = ind.and_then(|i| i.get("total")).and_then(scalar) {
                if t != "all_requests" {
                    return Err(format!(
                        "{name}: indicator.total: only all_requests is supported, got {t:?}"
                    ));
                }
            }
            Indicator::Availability { good }
        }
        "latency" => {
            let t = ind
                .and_then(|i| i.get("threshold"))
                .and_then(scalar)
                .ok_or(format!(
                    "{name}: indicator.threshold: required for a latency SLO"
                ))?;
            Indicator::Latency {
                threshold: parse_duration(&t)
                    .map_err(|e| format!("{name}: indicator.threshold: {e}"))?,
            }
        }
        other => {
            return Err(format!(
                "{name}: indicator.type: must be availability or latency, got {other:?}"
            ))
        }
    };
    let stated = d.get("error_budget_minutes").and_then(Value::as_f64);
    Ok(SloDef {
        name: service.clone(),
        service,
        objective_text,
        objective,
        window,
        indicator,
        count_faults: true,
        alerts: AlertSpec::default(),
        stated_budget_minutes: stated,
    })
}

/// `status_code in [200, 201, 204]` (codes or classes such as `2xx`), or
/// `status_code < 500`.
pub fn parse_good_expr(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let t = s.trim();
    let rest = t
        .strip_prefix("status_code")
        .ok_or_else(|| format!("expected `status_code in [...]` or `status_code < N`, got {s:?}"))?
        .trim();
    if let Some(list) = rest.strip_prefix("in") {
        let list = list.trim();
        let inner = list
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .ok_or_else(|| format!("expected a list in brackets, got {list:?}"))?;
        let mut out = Vec::new();
        for item in inner.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            out.push(parse_status_match(item).ok_or_else(|| format!("invalid status {item:?}"))?);
        }
        if out.is_empty() {
            return Err("the list of good statuses is empty".into());
        }
        return Ok(out);
    }
    if let Some(n) = rest.strip_prefix('<') {
        let n: u16 = n
            .trim()
            .parse()
            .map_err(|_| format!("invalid status bound in {s:?}"))?;
        if n <= 100 {
            return Err(format!("no status is below {n}"));
        }
        return Ok(vec![(100, n - 1)]);
    }
    Err(format!(
        "expected `status_code in [...]` or `status_code < N`, got {s:?}"
    ))
}

/// OpenSLO v1 `kind: SLO`, the subset ninefold reads: `metadata.name`, `spec.service`,
/// one `objectives[]` entry (`target` or `targetPercent`), one rolling `timeWindow`,
/// `budgetingMethod: Occurrences`, and an inline `indicator` with a `ratioMetric`.
/// The ratio's queries are not evaluated (ninefold measures in its data path); a
/// `metricSource` of `type: ninefold` may carry `spec: {good_status: [...]}` or
/// `spec: {latency_threshold: 300ms}` to define the indicator.
fn openslo(name: &str, d: &Value) -> Result<SloDef, String> {
    let at = |p: &str| format!("{name}: {p}");
    let slo_name = d
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| at("metadata.name: required"))?
        .to_owned();
    let spec = d.get("spec").ok_or_else(|| at("spec: required"))?;
    let service = spec
        .get("service")
        .and_then(Value::as_str)
        .unwrap_or(&slo_name)
        .to_owned();
    match spec.get("budgetingMethod").and_then(Value::as_str) {
        None | Some("Occurrences") => {}
        Some(o) => {
            return Err(at(&format!(
                "spec.budgetingMethod: only Occurrences is supported, got {o:?}"
            )))
        }
    }
    let objs = spec
        .get("objectives")
        .and_then(Value::as_array)
        .ok_or_else(|| at("spec.objectives: required"))?;
    let [obj] = objs.as_slice() else {
        return Err(at("spec.objectives: ninefold reads exactly one objective"));
    };
    let objective_text = if let Some(t) = obj.get("target").and_then(Value::as_f64) {
        if !(0.0..1.0).contains(&t) {
            return Err(at(&format!(
                "spec.objectives[0].target: must be in [0, 1), got {t}"
            )));
        }
        format!("{}%", crate::availability::fixed(t * 100.0, 12))
    } else if let Some(t) = obj.get("targetPercent").and_then(Value::as_f64) {
        if t <= 1.0 {
            return Err(at(&format!(
                "spec.objectives[0].targetPercent: {t} means {t}%; for a fraction use target: {t}"
            )));
        }
        format!("{}%", crate::availability::fixed(t, 12))
    } else {
        return Err(at("spec.objectives[0]: target or targetPercent required"));
    };
    let objective =
        parse_objective(&objective_text).map_err(|e| at(&format!("spec.objectives[0]: {e}")))?;
    let window = match spec
        .get("timeWindow")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([w]) => {
            if w.get("isRolling").and_then(Value::as_bool) == Some(false)
                || w.get("calendar").is_some()
            {
                return Err(at(
                    "spec.timeWindow[0]: calendar windows are not supported; use isRolling: true",
                ));
            }
            let dur = w
                .get("duration")
                .and_then(Value::as_str)
                .ok_or_else(|| at("spec.timeWindow[0].duration: required"))?;
            openslo_duration(dur)
                .and_then(check_window)
                .map_err(|e| at(&format!("spec.timeWindow[0].duration: {e}")))?
        }
        None => DEFAULT_WINDOW,
        _ => return Err(at("spec.timeWindow: exactly one window")),
    };
    let ratio = spec
        .pointer("/indicator/spec/ratioMetric")
        .ok_or_else(|| at("spec.indicator.spec.ratioMetric: required (ninefold reads ratio SLIs; thresholdMetric and indicatorRef are not supported)"))?;
    if ratio.get("total").is_none() || (ratio.get("good").is_none() && ratio.get("bad").is_none()) {
        return Err(at(
            "spec.indicator.spec.ratioMetric: needs total and good (or bad)",
        ));
    }
    let mut indicator = Indicator::Availability {
        good: default_good(),
    };
    for side in ["good", "bad"] {
        let src = ratio.get(side).and_then(|s| s.get("metricSource"));
        if src.and_then(|s| s.get("type")).and_then(Value::as_str) != Some("ninefold") {
            continue;
        }
        let s = src.and_then(|s| s.get("spec"));
        if let Some(list) = s
            .and_then(|s| s.get("good_status"))
            .and_then(Value::as_array)
        {
            let good = list
                .iter()
                .map(|g| {
                    scalar(g)
                        .and_then(|g| parse_status_match(&g))
                        .ok_or_else(|| at(&format!("ratioMetric.{side}: invalid status {g}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            indicator = Indicator::Availability { good };
        } else if let Some(t) = s.and_then(|s| s.get("latency_threshold")).and_then(scalar) {
            indicator = Indicator::Latency {
                threshold: parse_duration(&t)
                    .map_err(|e| at(&format!("ratioMetric.{side}.latency_threshold: {e}")))?,
            };
        }
    }
    Ok(SloDef {
        name: slo_name,
        service,
        objective_text,
        objective,
        window,
        indicator,
        count_faults: true,
        alerts: AlertSpec::default(),
        stated_budget_minutes: None,
    })
}

/// A window of whole seconds, from 1 minute to 90 days.
fn check_window(d: Duration) -> Result<Duration, String> {
    if d < Duration::from_secs(60) || d > Duration::from_secs(90 * 86400) {
        return Err(format!(
            "must be between 1m and 90d, got {}s",
            d.as_secs_f64()
        ));
    }
    Ok(Duration::from_secs(d.as_secs()))
}

/// OpenSLO duration shorthand: `m`, `h`, `d`, `w` (rolling windows).
fn openslo_duration(s: &str) -> Result<Duration, String> {
    if let Some(w) = s.strip_suffix('w') {
        let n: u64 = w.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let secs = n
            .checked_mul(7 * 86400)
            .ok_or_else(|| format!("duration {s:?} is out of range"))?;
        return Ok(Duration::from_secs(secs));
    }
    if s.ends_with('M') || s.ends_with('Q') || s.ends_with('Y') {
        return Err(format!(
            "{s:?}: month, quarter and year windows are calendar-like; use days (e.g. 30d)"
        ));
    }
    parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The seed's SLO file, as the wiki page writes it.
    const SEED: &str = include_str!("../../examples/slo/seed.yaml");

    #[test]
    fn the_seed_file_reads_as_written() {
        let s = parse_any("seed.yaml", SEED, Path::new("seed.yaml")).unwrap();
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.name, "payments");
        assert_eq!(s.window, Duration::from_secs(30 * 86400));
        assert!((s.objective.down() - 0.0005).abs() < 1e-15);
        assert_eq!(
            s.indicator,
            Indicator::Availability {
                good: vec![(200, 200), (201, 201), (204, 204)]
            }
        );
        assert_eq!(s.stated_budget_minutes, Some(21.6));
    }

    #[test]
    fn openslo_ratio_metric() {
        let y = "apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability}
spec:
  service: web
  budgetingMethod: Occurrences
  timeWindow: [{duration: 4w, isRolling: true}]
  objectives: [{displayName: good, target: 0.999}]
  indicator:
    metadata: {name: ok-ratio}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: ninefold, spec: {good_status: [2xx, 304]}}}
        total: {metricSource: {type: ninefold, spec: {}}}
";
        let s = &parse_any("o.yaml", y, Path::new("o.yaml")).unwrap()[0];
        assert_eq!(s.name, "web-availability");
        assert_eq!(s.service, "web");
        assert_eq!(s.window, Duration::from_secs(28 * 86400));
        assert_eq!(s.objective_text, "99.9%");
        assert_eq!(
            s.indicator,
            Indicator::Availability {
                good: vec![(200, 299), (304, 304)]
            }
        );
        // Timeslices and calendar windows are refused by name.
        let e = parse_any(
            "o.yaml",
            &y.replace("Occurrences", "Timeslices"),
            Path::new("o.yaml"),
        )
        .unwrap_err();
        assert!(e.contains("budgetingMethod"), "{e}");
        let e = parse_any(
            "o.yaml",
            &y.replace("isRolling: true", "isRolling: false"),
            Path::new("o.yaml"),
        )
        .unwrap_err();
        assert!(e.contains("calendar"), "{e}");
    }

    #[test]
    fn bad_stand_alone_files_are_clear_errors() {
        let p = Path::new("x.yaml");
        for (yaml, want) in [
            (SEED.replace("99.95%", "0.9995"), "ambiguous"),
            (SEED.replace("30 days", "0s"), "window"),
            (SEED.replace("30 days", "500d"), "between 1m and 90d"),
            (SEED.replace("service: payments", "service: payments\nalerts: {}"), "unknown key"),
            ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {objectives: [{targetPercent: 0.999}], indicator: {spec: {ratioMetric: {good: {}, total: {}}}}}\n".into(), "targetPercent"),
            ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {timeWindow: [{duration: 99999999999999999w, isRolling: true}], objectives: [{target: 0.99}], indicator: {spec: {ratioMetric: {good: {}, total: {}}}}}\n".into(), "out of range"),
            ("- apiVersion: openslo/v1\n  kind: SLO\n  metadata: {name: a}\n  spec: {objectives: [{target: 0.99}], indicator: {spec: {ratioMetric: {good: {}, total: {}}}}}\n- apiVersion: openslo/v1\n  kind: SLO\n  metadata: {name: a}\n  spec: {objectives: [{target: 0.99}], indicator: {spec: {ratioMetric: {good: {}, total: {}}}}}\n".into(), "defined twice"),
        ] {
            let e = parse_any("x.yaml", &yaml, p).map(|d| format!("{d:?}")).unwrap_or_else(|e| e);
            assert!(!e.starts_with("[SloDef"), "{want}: parsed: {yaml}");
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = parse_any("x.yaml", &format!("{SEED}---\n{SEED}"), p).unwrap_err();
        assert!(e.contains("2 YAML documents"), "{e}");
        let ok = "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {objectives: [{target: 0.9999999999999}], indicator: {spec: {ratioMetric: {good: {}, total: {}}}}}\n";
        assert_eq!(
            parse_any("x.yaml", ok, p).unwrap()[0].objective_text,
            "99.99999999999%"
        );
    }

    #[test]
    fn good_expressions() {
        assert_eq!(
            parse_good_expr("status_code in [2xx, 304]").unwrap(),
            vec![(200, 299), (304, 304)]
        );
        assert_eq!(
            parse_good_expr("status_code < 500").unwrap(),
            vec![(100, 499)]
        );
        assert!(parse_good_expr("code in [200]").is_err());
        assert!(parse_good_expr("status_code in [abc]").is_err());
        assert!(parse_good_expr("status_code in []").is_err());
    }

    #[test]
    fn gateway_failures_are_never_good() {
        let i = Indicator::Availability {
            good: vec![(100, 599)],
        };
        assert!(i.is_good(503, Duration::ZERO, false));
        assert!(!i.is_good(503, Duration::ZERO, true));
        let l = Indicator::Latency {
            threshold: Duration::from_millis(300),
        };
        assert!(l.is_good(200, Duration::from_millis(299), false));
        assert!(!l.is_good(200, Duration::from_millis(301), false));
    }
}
