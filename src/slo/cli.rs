//! `ninefold slo budget|rules|status`.

use super::spec::read_file;
use super::window::fmt_dur;
use crate::availability::sig3;
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::Full;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// SLO tools.
#[derive(Debug, Subcommand)]
pub enum Slo {
    /// Objective, window, allowed bad ratio and budget minutes of each SLO in FILE (a
    /// gateway config, the seed's SLO file, or OpenSLO v1).
    Budget {
        /// SLO file.
        file: PathBuf,
    },
    /// Prometheus recording and alerting rules (multiwindow, multi-burn-rate) for the
    /// SLOs in FILE, over ninefold_requests_total.
    Rules {
        /// SLO file.
        file: PathBuf,
        /// Extra label matchers on ninefold_requests_total, e.g. 'env="prod",job="ninefold"',
        /// so gateways of other environments are not summed in.
        #[arg(long, value_name = "MATCHERS")]
        selector: Option<String>,
    },
    /// A table of the live SLOs of a running gateway (its admin API).
    Status {
        /// Admin address of the gateway.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

/// Runs one `slo` command; `Ok((text, json))`, or an error message (exit 2).
pub fn run(cmd: &Slo) -> Result<(String, Value), String> {
    match cmd {
        Slo::Budget { file } => {
            let defs = read_file(file)?;
            let mut text = String::new();
            let mut out = Vec::new();
            for d in &defs {
                let ratio = d.objective.down();
                let minutes =
                    crate::availability::budget(d.objective, d.window.as_secs_f64(), None).minutes;
                let _ = writeln!(
                    text,
                    "{} (service {}): objective {}, window {}\n  indicator          {}\n  allowed bad ratio  {} ({}%)\n  error budget       {} minutes",
                    d.name,
                    d.service,
                    d.objective_text,
                    fmt_dur(d.window),
                    d.indicator.describe(),
                    sig3(ratio),
                    sig3(ratio * 100.0),
                    sig3(minutes),
                );
                if let Some(stated) = d.stated_budget_minutes {
                    if (stated - minutes).abs() > minutes * 0.01 + 0.05 {
                        let _ = writeln!(
                            text,
                            "  note: the file says error_budget_minutes: {stated}, but the objective and window give {}",
                            sig3(minutes)
                        );
                    }
                }
                out.push(json!({
                    "name": d.name, "service": d.service,
                    "objective": d.objective.up(), "objective_text": d.objective_text,
                    "window_seconds": d.window.as_secs(), "allowed_bad_ratio": ratio,
                    "budget_minutes": minutes, "stated_budget_minutes": d.stated_budget_minutes,
                    "indicator": d.indicator.describe(),
                }));
            }
            Ok((text, json!({ "slos": out })))
        }
        Slo::Rules { file, selector } => {
            let defs = read_file(file)?;
            let sel = match selector.as_deref().map(str::trim) {
                Some(s) if !s.is_empty() => {
                    check_selector(s)?;
                    Some(s)
                }
                _ => None,
            };
            let r = super::rules::generate_with(&defs, sel);
            Ok((r.clone(), json!({ "rules_yaml": r })))
        }
        Slo::Status { admin } => {
            let body = fetch(admin)?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("bad answer from {admin}: {e}"))?;
            Ok((status_table(&v), v))
        }
    }
}

/// A list of PromQL label matchers: `name="value"` (or `!=`, `=~`, `!~`), separated
/// by commas.
fn check_selector(s: &str) -> Result<(), String> {
    let bad =
        || format!("--selector {s:?}: expected label matchers like env=\"prod\",job=\"ninefold\"");
    let mut rest = s;
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(bad)?;
        if name_end == 0 {
            return Err(bad());
        }
        let after = &rest[name_end..];
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|o| after.starts_with(o))
            .ok_or_else(bad)?;
        let v = after[op.len()..].strip_prefix('"').ok_or_else(bad)?;
        let mut end = None;
        let mut esc = false;
        for (i, c) in v.char_indices() {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(bad)?;
        rest = v[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err(bad());
            }
        } else if !rest.is_empty() {
            return Err(bad());
        }
    }
    Ok(())
}

fn status_table(v: &Value) -> String {
    let mut t = format!(
        "{:<24} {:>9} {:>6} {:>10} {:>10} {:>12} {:>9} {:>9}  {}\n",
        "SLO",
        "OBJECTIVE",
        "WINDOW",
        "SLI",
        "EVENTS",
        "BUDGET LEFT",
        "BURN 1h",
        "BURN 5m",
        "FIRING"
    );
    for s in v["slos"].as_array().into_iter().flatten() {
        let f = |x: &Value| x.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
        let sli = s["sli"]
            .as_f64()
            .map_or("-".to_owned(), |x| format!("{:.4}%", x * 100.0));
        let firing: Vec<String> = s["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["firing"] == true)
            .map(|a| {
                format!(
                    "{} {}/{}",
                    a["severity"].as_str().unwrap_or(""),
                    a["long_window"].as_str().unwrap_or(""),
                    a["short_window"].as_str().unwrap_or("")
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "{:<24} {:>9} {:>6} {:>10} {:>10} {:>11}% {:>9} {:>9}  {}",
            s["name"].as_str().unwrap_or(""),
            s["objective_text"].as_str().unwrap_or(""),
            s["window"].as_str().unwrap_or(""),
            sli,
            s["total"],
            format!(
                "{:.1}",
                s["budget"]["remaining_ratio"].as_f64().unwrap_or(1.0) * 100.0
            ),
            f(&s["burn_rates"]["1h"]),
            f(&s["burn_rates"]["5m"]),
            if firing.is_empty() {
                "-".into()
            } else {
                firing.join(", ")
            }
        );
    }
    t
}

/// How long `slo status` waits for the admin API, connect included: it answers from
/// memory in microseconds, so this only matters when something is wrong.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// GET http://ADMIN/api/v1/slos on a small current-thread runtime (the CLI is
/// synchronous); the body of a 200, or an error message.
fn fetch(admin: &str) -> Result<Bytes, String> {
    let addr = admin.trim_start_matches("http://").trim_end_matches('/');
    let req = http::Request::get("/api/v1/slos")
        .header(http::header::HOST, addr)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = rt
        .block_on(crate::oneshot::exchange(addr, req, STATUS_TIMEOUT))
        .map_err(|e| {
            if e.is_connect() {
                format!("cannot reach the admin API at {addr}: {e}")
            } else {
                e.to_string()
            }
        })?;
    if answer.status != http::StatusCode::OK {
        return Err(format!(
            "admin API answered {:?} {}",
            answer.version, answer.status
        ));
    }
    Ok(answer.body)
}
