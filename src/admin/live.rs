//! The live-state families of `/metrics`: endpoint availability, drains, ejections,
//! panic mode, circuit breakers, cells, retry budget headroom and bulkheads, read from
//! the running snapshot at scrape time (Prometheus text format) and appended to the
//! registry's exposition. They cost the data path nothing, and are never stale or left
//! behind for an endpoint a reload removed.

use crate::bulkhead::Bulkhead;
use crate::snapshot::Snapshot;
use crate::upstream::EndpointState;

/// Appends the live-state families, read from `snap` at `now` (ms of
/// `upstream::now_ms`), to a text exposition.
pub fn render(snap: &Snapshot, now: u64, out: &mut String) {
    let endpoint_gauge =
        |out: &mut String, name: &str, help: &str, f: &dyn Fn(&EndpointState) -> bool| {
            family(out, name, help);
            for c in &snap.clusters {
                for (e, n) in c.endpoints().iter().zip(&c.endpoint_names) {
                    sample(
                        out,
                        name,
                        &[("cluster", &c.name), ("endpoint", n)],
                        f64::from(u8::from(f(e))),
                    );
                }
            }
        };
    endpoint_gauge(
        out,
        "ninefold_endpoint_available",
        "1 while the endpoint may take new requests: not drained, not failing health checks, not ejected, circuit breaker not rejecting.",
        &|e| e.available(now),
    );
    endpoint_gauge(
        out,
        "ninefold_endpoint_drained",
        "1 while an operator has drained the endpoint.",
        &|e| e.drained(),
    );
    endpoint_gauge(
        out,
        "ninefold_endpoint_ejected",
        "1 while passive outlier detection ejects the endpoint.",
        &|e| e.ejected_until() > now,
    );
    family(
        out,
        "ninefold_cluster_panic",
        "1 while the cluster is in panic mode (too few endpoints available: health is ignored).",
    );
    for c in &snap.clusters {
        let on = c.select.in_panic(now);
        sample(
            out,
            "ninefold_cluster_panic",
            &[("cluster", &c.name)],
            f64::from(u8::from(on)),
        );
    }
    family(
        out,
        "ninefold_circuit_state",
        "Circuit breaker state: 0 closed (passing), 1 open (rejecting), 2 half-open (probing); endpoint=\"\" for the cluster's own breaker.",
    );
    for c in &snap.clusters {
        let Some(b) = c.breaker else { continue };
        if b.scope.cluster() {
            let v = c.select.live.breaker.state(now).gauge();
            sample(
                out,
                "ninefold_circuit_state",
                &[("cluster", &c.name), ("endpoint", "")],
                v,
            );
        }
        if b.scope.endpoint() {
            for (e, n) in c.endpoints().iter().zip(&c.endpoint_names) {
                sample(
                    out,
                    "ninefold_circuit_state",
                    &[("cluster", &c.name), ("endpoint", n)],
                    e.breaker.state(now).gauge(),
                );
            }
        }
    }
    family(
        out,
        "ninefold_cell_available",
        "1 while the cell's cluster has an available endpoint (the cell takes its own keys).",
    );
    for set in &snap.cells {
        for (i, m) in set.members.iter().enumerate() {
            sample(
                out,
                "ninefold_cell_available",
                &[("cells", &set.name), ("cell", &m.name)],
                f64::from(u8::from(set.live(i, now))),
            );
        }
    }
    family(
        out,
        "ninefold_retry_budget_headroom",
        "Retries the route's budget still allows now (budget share of recent requests plus the floor, minus recent retries).",
    );
    for l in &snap.listeners {
        // A route that has seen no request since the configuration was loaded has
        // no series yet, as its counters do not: 10,000 idle routes, no page to match.
        for r in l.routes.iter().filter(|r| r.budget.used()) {
            sample(
                out,
                "ninefold_retry_budget_headroom",
                &[("listener", &l.name), ("route", &r.name)],
                r.budget.headroom(now),
            );
        }
    }
    bulkheads(snap, out);
}

/// The bulkheads' gauges and shed counter, per route and cluster that has one.
fn bulkheads(snap: &Snapshot, out: &mut String) {
    let all: Vec<&Bulkhead> = snap
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter().filter_map(|r| r.bulkhead.as_deref()))
        .chain(snap.clusters.iter().filter_map(|c| c.bulkhead.as_deref()))
        .collect();
    type Read = fn(&Bulkhead) -> f64;
    let families: [(&str, &str, &str, Read); 3] = [
        (
            "ninefold_bulkhead_in_flight",
            "Requests admitted by the bulkhead and not finished (their body included).",
            "gauge",
            |b| f64::from(b.in_flight()),
        ),
        (
            "ninefold_bulkhead_queued",
            "Requests waiting in the bulkhead's queue.",
            "gauge",
            |b| f64::from(b.queued()),
        ),
        (
            "ninefold_bulkhead_shed_total",
            "Requests shed by the bulkhead with 503 bulkhead-full.",
            "counter",
            |b| b.shed() as f64,
        ),
    ];
    for (name, help, kind, read) in families {
        family_of(out, name, help, kind);
        for b in &all {
            sample(
                out,
                name,
                &[
                    ("scope", b.scope.as_str()),
                    ("listener", b.scope.listener()),
                    ("name", &b.name),
                ],
                read(b),
            );
        }
    }
}

/// `# HELP` and `# TYPE ... gauge` lines of a family.
fn family(out: &mut String, name: &str, help: &str) {
    family_of(out, name, help, "gauge");
}

/// `# HELP` and `# TYPE` lines of a family of type `kind`.
fn family_of(out: &mut String, name: &str, help: &str, kind: &str) {
    use std::fmt::Write;
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line, label values escaped per the text format.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    use std::fmt::Write;
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

/// Label value escaping of the Prometheus text format: backslash, double quote and
/// line feed.
fn escape_label(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw"), ("b", "ok")], 1.0);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\",b=\"ok\"} 1\n");
    }

    #[test]
    fn families_have_help_and_type() {
        let mut out = String::new();
        family(&mut out, "ninefold_x", "One\nline.");
        assert_eq!(
            out,
            "# HELP ninefold_x One\\nline.\n# TYPE ninefold_x gauge\n"
        );
    }
}
