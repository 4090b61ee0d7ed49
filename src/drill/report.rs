//! The drill's report for people: a DR test protocol in Markdown (scenario, systems,
//! targets against the measure, the timeline, observations, verdict), made from the
//! journal.

use super::file::{Drill, Load, Probe};
use serde_json::Value;
use std::fmt::Write;

/// The report of drill `d` from its `journal`.
pub fn markdown(d: &Drill, j: &Value) -> String {
    let mut s = String::new();
    let m = &j["measurements"];
    let t = &j["targets"];
    let _ = writeln!(s, "# DR drill: {}\n", d.title);
    let _ = writeln!(
        s,
        "Run {} – {} ({} s), file `{}`, status **{}**{}.\n",
        j["start"].as_str().unwrap_or(""),
        j["end"].as_str().unwrap_or(""),
        j["duration"],
        d.file,
        j["status"].as_str().unwrap_or(""),
        j["aborted_by"]
            .as_str()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "## Scenario\n");
    for (i, st) in j["run"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            s,
            "{}. {} ({}, {:.3}–{:.3} s)",
            i + 1,
            st["action"].as_str().unwrap_or(""),
            st["status"].as_str().unwrap_or(""),
            st["start"].as_f64().unwrap_or(0.0),
            st["end"].as_f64().unwrap_or(0.0)
        );
    }
    if j["run"].as_array().is_none_or(|a| a.is_empty()) {
        let _ = writeln!(s, "No step ran.");
    }
    let _ = writeln!(s, "\n## Systems\n");
    let _ = writeln!(s, "- gateway admin API: {}", d.admin);
    for l in &d.load {
        let _ = match l {
            Load::Sql {
                login,
                rate,
                table,
                query: None,
            } => writeln!(
                s,
                "- load: SQL writer of a monotonic sequence into `{table}` at {}, {rate}/s, as {}",
                login.address, login.user
            ),
            Load::Sql {
                login,
                rate,
                query: Some(q),
                ..
            } => writeln!(s, "- load: SQL reader `{q}` at {}, {rate}/s", login.address),
            Load::Http { url, rate, .. } => writeln!(s, "- load: GET {} at {rate}/s", url.text),
        };
    }
    for p in &d.steady_state {
        let _ = match p {
            Probe::Http { url, .. } => writeln!(s, "- steady state: GET {}", url.text),
            Probe::Sql { login, query } => {
                writeln!(s, "- steady state: `{query}` at {}", login.address)
            }
            Probe::Slo {
                name,
                max_burn_rate,
            } => {
                writeln!(
                    s,
                    "- steady state: SLO {name}, burn rate at most {max_burn_rate}"
                )
            }
        };
    }
    let _ = writeln!(s, "\n## Targets against the measure\n");
    let _ = writeln!(s, "| | target | measured |\n|---|---|---|");
    let show = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            v.to_string()
        }
    };
    let _ = writeln!(
        s,
        "| RTO (s) | {} | {} (model: {}{}) |",
        show(&t["rto_seconds"]),
        show(&m["rto_seconds"]),
        show(&m["model_rto_seconds"]),
        if m["rto_over_model"] == true {
            ", **over 1.5× the model**"
        } else {
            ""
        }
    );
    let rpo = &m["rpo"];
    let _ = writeln!(
        s,
        "| RPO | {} | {} lost of {} acknowledged writes ({} indeterminate), lost span {} s |",
        if t["rpo_writes"].is_null() {
            t["rpo_seconds"]
                .as_f64()
                .map(|x| format!("{x} s"))
                .unwrap_or("-".into())
        } else {
            format!("{} writes", t["rpo_writes"])
        },
        rpo["lost_writes"],
        rpo["acked_writes"],
        rpo["indeterminate_writes"],
        rpo["lost_seconds"]
    );
    for (k, v) in m["budget_spent_minutes"].as_object().into_iter().flatten() {
        let _ = writeln!(s, "| error budget spent, SLO {k} | | {v} min |");
    }
    let _ = writeln!(s, "\n## Timeline\n");
    let _ = writeln!(s, "| t (s) | event |\n|---|---|");
    for e in m["timeline"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {:.3} | {} |",
            e["t"].as_f64().unwrap_or(0.0),
            e["event"].as_str().unwrap_or("").replace('|', "\\|")
        );
    }
    let _ = writeln!(s, "\n## Observations\n");
    let failed = m["failed_operations"].as_array().map_or(0, Vec::len);
    let _ = writeln!(s, "- {failed} operations failed during the drill.");
    for l in j["load"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- load stream {} ({}): {} of {} operations succeeded.",
            l["stream"],
            l["kind"].as_str().unwrap_or(""),
            l["succeeded"],
            l["operations"]
        );
    }
    for p in ["before", "after"] {
        for probe in j["steady_states"][p]["probes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if probe["tolerance_met"] != true {
                let _ = writeln!(
                    s,
                    "- steady state {p}: {} did not hold: {}",
                    probe["probe"].as_str().unwrap_or(""),
                    probe["output"].as_str().unwrap_or("")
                );
            }
        }
    }
    for r in j["rollbacks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- rollback {}: {}{}",
            r["action"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            if r["status"] == "failed" {
                format!(" ({})", r["output"].as_str().unwrap_or(""))
            } else {
                String::new()
            }
        );
    }
    for e in rpo["verify_errors"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "- the written sequence could not be read back: {e}");
    }
    let held = j["steady_states"]["after"]["steady_state_met"] == true;
    let met = t["met"] == true;
    let _ = writeln!(s, "\n## Verdict\n");
    let _ = writeln!(
        s,
        "{}",
        match (held, met, j["status"].as_str()) {
            (true, true, Some("completed")) =>
                "**Passed**: the steady state held afterwards and every target was met.",
            (false, _, _) => "**Failed**: the steady state did not hold afterwards (deviated).",
            (true, false, _) => "**Failed**: a target was missed.",
            _ => "**Failed**: the method did not complete.",
        }
    );
    s
}
