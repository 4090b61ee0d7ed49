//! `ninefold calc` and the HA lint of `ninefold check`, through the real binary: text
//! and `--json` answers, exit codes, and the decision-table examples.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    // The lint reads NINEFOLD_ZONE as the default local zone; the host's must not leak in.
    let out = Command::new(bin())
        .args(args)
        .env_remove("NINEFOLD_ZONE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn near(v: &Value, want: f64, rel: f64) -> bool {
    let x = v.as_f64().unwrap_or(f64::NAN);
    ((x - want) / want).abs() <= rel
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn nines_and_downtime_match_the_seed_table() {
    let (code, out, _) = run(&["calc", "nines", "99.9%"]);
    assert_eq!(code, 0);
    assert!(out.contains("a year is 365 days"), "{out}");
    assert!(out.contains("8.76 h"), "{out}");
    let (_, out, _) = run(&["calc", "nines", "99.99%"]);
    assert!(out.contains("52.6 min"), "{out}");
    let (_, out, _) = run(&["calc", "nines", "99.999%"]);
    assert!(out.contains("5.26 min"), "{out}");

    let j = json(&["calc", "nines", "99.95%"]);
    assert_eq!(j["year_days"], 365.0);
    let rows = j["downtime"].as_array().unwrap();
    let periods: Vec<&str> = rows.iter().map(|r| r["period"].as_str().unwrap()).collect();
    assert_eq!(periods, ["year", "quarter", "30 days", "week", "day"]);
    assert!(near(&rows[0]["seconds"], 4.38 * 3600.0, 1e-9));
    assert!(near(&rows[2]["seconds"], 21.6 * 60.0, 1e-9));

    let (code, out, _) = run(&["calc", "downtime", "52m", "--per", "year"]);
    assert_eq!(code, 0);
    assert!(out.contains("99.9901%"), "{out}");
    let j = json(&["calc", "downtime", "21.6m", "--per", "30d"]);
    assert!(near(&j["availability"], 0.9995, 1e-12));
}

#[test]
fn the_seed_budget_is_21_6_minutes() {
    let (code, out, _) = run(&["calc", "budget", "99.95%", "30d"]);
    assert_eq!(code, 0);
    assert!(out.contains("21.6 minutes"), "{out}");
    let j = json(&[
        "calc",
        "budget",
        "99.95%",
        "30 days",
        "--requests",
        "2000000",
    ]);
    assert!(near(&j["budget_minutes"], 21.6, 1e-12));
    assert_eq!(j["allowed_bad_requests"], 1000.0);
}

#[test]
fn k_of_n_serial_and_parallel() {
    // 2 of 3 at 99%.
    let two_of_three = [
        "calc",
        "kofn",
        "--availability",
        "99%",
        "--n",
        "3",
        "--k",
        "2",
    ];
    let (code, out, _) = run(&two_of_three);
    assert_eq!(code, 0);
    assert!(out.contains("99.97%") && out.contains("2.98e-4"), "{out}");
    let j = json(&two_of_three);
    assert!(near(&j["availability"], 0.999702, 1e-12));
    // Far past f64's range: the log carries it.
    let j = json(&["calc", "kofn", "--availability", "99%", "--n", "1000"]);
    assert!(near(&j["unavailability_log10"], -2000.0, 1e-9));
    let j = json(&[
        "calc",
        "kofn",
        "--availabilities",
        "99%,99.5%,98%",
        "--k",
        "2",
    ]);
    let want =
        0.01 * 0.005 * 0.02 + 0.99 * 0.005 * 0.02 + 0.01 * 0.995 * 0.02 + 0.01 * 0.005 * 0.98;
    assert!(near(&j["unavailability"], want, 1e-12));

    let j = json(&["calc", "serial", "99.9%", "99.95%"]);
    assert!(near(&j["availability"], 0.999 * 0.9995, 1e-12));
    let j = json(&["calc", "parallel", "99%", "99%"]);
    assert!(near(&j["unavailability"], 1e-4, 1e-12));

    // Bad input: a clear message and exit 2.
    let (code, _, err) = run(&[
        "calc",
        "kofn",
        "--availability",
        "99%",
        "--n",
        "3",
        "--k",
        "4",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("k (4) cannot exceed n (3)"), "{err}");
    let (code, _, err) = run(&["calc", "serial", "0.99"]);
    assert_eq!(code, 2);
    assert!(err.contains("ambiguous"), "{err}");
    let (code, _, err) = run(&["calc", "nines", "101%"]);
    assert_eq!(code, 2);
    assert!(err.contains("at most 100%"), "{err}");
}

#[test]
fn topology_explains_each_step() {
    let cells = example("high-traffic-cells.yaml");
    let cells = cells.to_str().unwrap();
    let (code, out, err) = run(&["calc", "topology", "-c", cells, "--gateways", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("assumptions: endpoint 99.5%, zone 99.95%"),
        "{out}"
    );
    assert!(
        out.contains("cluster cell-1: 2 endpoints in 2 zones"),
        "{out}"
    );
    assert!(out.contains("1/4 = 25% of users"), "{out}");
    assert!(out.contains("1 of 3 instances"), "{out}");

    let j = json(&[
        "calc",
        "topology",
        "-c",
        cells,
        "--endpoint-availability",
        "99%",
        "--zone-availability",
        "100%",
        "--gateway-availability",
        "100%",
    ]);
    let r = &j["routes"][0];
    assert_eq!(r["cell_blast_radius"], 0.25);
    // Each cell: 1 of 2 at 99% → down 1e-4; the mean over identical cells is the same.
    assert!(near(&r["unavailability"], 1e-4, 1e-9), "{r}");
    assert_eq!(r["slo"]["reachable"], true);

    // A broken config is an error with its position, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "clusters:\n  - {name: a, endpoints: [{address: nope}]}\n",
    )
    .unwrap();
    let (code, _, err) = run(&["calc", "topology", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:2:"), "{err}");
}

const RISKY: &str = "\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - name: pay
        match: {path_prefix: /}
        cluster: pay
        retry: {attempts: 3, budget: 100%}
        slo: five-nines
slos:
  - {name: five-nines, objective: 99.999%, window: 30d}
clusters:
  - name: pay
    endpoints:
      - {address: 127.0.0.1:9001, zone: a}
";

#[test]
fn check_warns_about_anti_patterns_and_deny_warnings_fails() {
    let (code, out, err) = check(RISKY);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 HA warnings"), "{out}");
    for want in [
        "warning[no-timeout]: ninefold.yaml:5:9: listeners[0].routes[0]: route \"pay\" has no timeout",
        "warning[retry-budget-too-large]: ninefold.yaml:8:16: listeners[0].routes[0].retry:",
        "warning[unreachable-objective]: ninefold.yaml:9:14: listeners[0].routes[0].slo:",
        "warning[no-health-check]: ninefold.yaml:13:5: clusters[0]:",
        "warning[single-zone]: ninefold.yaml:15:7: clusters[0].endpoints: cluster \"pay\" has a single endpoint",
        "  why: single-AZ \"production\"",
        "  fix: ",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ninefold.yaml");
    std::fs::write(&path, RISKY).unwrap();
    let p = path.to_str().unwrap();
    let (code, _, err) = run(&["check", "-c", p, "--deny-warnings"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("error: 5 HA warnings and --deny-warnings"),
        "{err}"
    );

    let (code, out, _) = run(&["check", "-c", p, "--json"]);
    assert_eq!(code, 0);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ok"], true);
    let codes: Vec<&str> = j["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "no-timeout",
            "retry-budget-too-large",
            "unreachable-objective",
            "no-health-check",
            "single-zone"
        ]
    );
    assert_eq!(j["warnings"][0]["line"], 5);
    // Retries are built now (issue 9): nothing in RISKY is left for a note.
    assert_eq!(j["notes"].as_array().unwrap().len(), 0, "{j}");

    // Errors in --json too, with exit 2.
    std::fs::write(&path, "workers: 0\n").unwrap();
    let (code, out, _) = run(&["check", "-c", p, "--json"]);
    assert_eq!(code, 2);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["errors"][0]["path"], "workers");
}

/// The decision table of the seed, one example per row.
const DECISION_TABLE: [&str; 5] = [
    "critical-multi-region.yaml",
    "high-traffic-cells.yaml",
    "tight-budget-multi-az.yaml",
    "latency-zone-aware.yaml",
    "external-deps-breaker.yaml",
];

#[tokio::test]
async fn decision_table_examples_pass_deny_warnings_and_say_whether_they_serve() {
    let readme = std::fs::read_to_string(example("README.md")).expect("examples/README.md exists");
    for name in DECISION_TABLE {
        let path = example(name);
        let (code, out, err) = run(&["check", "-c", path.to_str().unwrap(), "--deny-warnings"]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains("0 HA warnings"), "{name}: {out}");
        assert!(
            readme.contains(name),
            "examples/README.md does not map {name}"
        );

        // The first comment line says whether `serve` runs the file, and names what it
        // does not run yet; when nothing is missing, the file is served for real.
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let cfg = ninefold::config::load(&path).unwrap();
        if cfg.unsupported.is_empty() {
            assert!(
                !first.contains("not served yet"),
                "{name}: serve runs every key now; drop the first-line marker"
            );
            // Ports from the example are replaced by ephemeral ones, and every endpoint
            // by one real backend, so that each listener answers a request for real.
            let mut backends = Vec::new();
            for _ in text.matches("{address: ") {
                backends.push(Backend::start(name).await);
            }
            let mut next = backends.iter();
            let yaml = text
                .lines()
                .map(|l| {
                    let l = match l.find("bind: ") {
                        Some(i) => format!("{}bind: 127.0.0.1:0", &l[..i]),
                        None => l.to_owned(),
                    };
                    match l.find("{address: ") {
                        Some(i) => {
                            let backend = next.next().expect("one backend per endpoint");
                            let rest = &l[i + "{address: ".len()..];
                            let end = rest.find([',', '}']).unwrap_or(rest.len());
                            format!("{}{{address: \"{}\"{}", &l[..i], backend.addr, &rest[end..])
                        }
                        None => l,
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let yaml = if yaml.contains("admin:") {
                yaml
            } else {
                format!("admin: {{bind: 127.0.0.1:0}}\n{yaml}")
            };
            let gw =
                Gateway::try_start(&yaml).unwrap_or_else(|e| panic!("{name} does not serve: {e}"));
            for listener in gw.listeners.keys() {
                // The cell key of the cells example; other examples ignore it.
                let r = get_with(&gw.url(listener, "/"), &[("x-user-id", "42")]).await;
                assert_eq!(r.status, 200, "{name}: listener {listener}: {r:?}");
                assert_eq!(r.header("x-backend"), Some(name));
            }
            assert!(
                backends.iter().any(|b| b.hits() > 0),
                "{name}: no request reached a backend"
            );
            drop(gw);
        } else {
            assert!(
                first.starts_with("# not served yet:"),
                "{name}: first line must say it is not served yet"
            );
            for u in &cfg.unsupported {
                let key = u.path.rsplit('.').next().unwrap_or_default();
                let key = key.split('[').next().unwrap_or_default();
                let key = if key == "slos" { "slo" } else { key };
                assert!(
                    first.contains(key),
                    "{name}: the first line does not name {key} ({})",
                    u.path
                );
            }
        }
    }
}

#[test]
fn capacity_with_and_without_zone_headroom() {
    let (code, out, _) = run(&[
        "calc",
        "capacity",
        "--rps",
        "12000",
        "--per-endpoint",
        "800",
        "--zones",
        "3",
        "--target",
        "60%",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("25 endpoints (15 carry it at full capacity)"),
        "{out}"
    );
    assert!(
        out.contains("38 endpoints (up to 13 per zone); losing a zone leaves 25"),
        "{out}"
    );
    let j = json(&[
        "calc",
        "capacity",
        "--rps",
        "12000",
        "--per-endpoint",
        "800",
        "--zones",
        "3",
        "--target",
        "60%",
    ]);
    assert_eq!(j["endpoints_at_target"], 25);
    assert_eq!(j["endpoints_with_zone_headroom"], 38);
    // Headroom buys availability: a zone's loss no longer drops below full capacity.
    assert!(j["availability_with_zone_headroom"].as_f64() > j["availability"].as_f64());
    let (code, _, err) = run(&["calc", "capacity", "--rps", "0", "--per-endpoint", "800"]);
    assert_eq!(code, 2, "{err}");
}
