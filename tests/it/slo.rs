//! SLOs end to end: live SLIs at the admin API, burn-rate alerts sent to a real HTTP
//! receiver in Alertmanager's format, budgets that survive SIGKILL, a corrupt state
//! file, the `slo` subcommands, and the generated rules under promtool.

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn slo_config(backend: SocketAddr, slo: &str, extra_top: &str) -> String {
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 2
{extra_top}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: dead, match: {{path_prefix: /dead}}, cluster: dead, slo: api}}
      - {{name: main, match: {{path_prefix: /}}, cluster: app, slo: api}}
clusters:
  - {{name: app, endpoints: [{{address: \"{backend}\"}}]}}
  - {{name: dead, connect_timeout: 200ms, endpoints: [{{address: \"127.0.0.1:{dead}\"}}]}}
slos:
{slo}
",
        dead = dead_port()
    )
}

/// A port that refuses connections for the whole test run (see `refusing_endpoint`),
/// shared by the configs that need a dead cluster.
fn dead_port() -> u16 {
    static DEAD: std::sync::OnceLock<(socket2::Socket, SocketAddr)> = std::sync::OnceLock::new();
    DEAD.get_or_init(refusing_endpoint).1.port()
}

async fn slos(gw: &Gateway) -> Value {
    get(&gw.admin_url("/api/v1/slos")).await.json()
}

/// Polls the admin API until SLO 0 has counted `n` events.
async fn wait_total(gw: &Gateway, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = slos(gw).await;
        if v["slos"][0]["total"].as_u64() == Some(n) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn live_sli_budget_and_burn_rates_at_the_admin_api() {
    let b = Backend::start("a").await;
    // 502 is in the good list, but a 502 the gateway makes itself is never good.
    let gw = Gateway::start(&slo_config(
        b.addr,
        "  - {name: api, objective: 99%, window: 30d, indicator: {type: availability, good_status: [2xx, 502]}}",
        "",
    ));
    get_ok_n(&gw.url("web", "/"), 90).await;
    for _ in 0..9 {
        assert_eq!(get(&gw.url("web", "/status/500")).await.status, 500);
    }
    assert_eq!(get(&gw.url("web", "/dead")).await.status, 502);
    let v = wait_total(&gw, 100).await;
    let s = &v["slos"][0];
    assert_eq!(s["total"], 100, "{v:#}");
    assert_eq!(s["bad"], 10);
    assert!((s["sli"].as_f64().unwrap() - 0.9).abs() < 1e-12);
    // 10 bad of 100 against 1% allowed: the budget is overspent 10×.
    assert!((s["budget"]["allowed_bad_events"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!((s["budget"]["remaining_ratio"].as_f64().unwrap() + 9.0).abs() < 1e-9);
    assert!((s["budget"]["budget_minutes"].as_f64().unwrap() - 432.0).abs() < 1e-9);
    assert!((s["burn_rates"]["5m"].as_f64().unwrap() - 10.0).abs() < 1e-9);
    // The Prometheus counters carry the same classification.
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    for needle in [
        "code_class=\"2xx\",listener=\"web\",route=\"main\",slo=\"api\",slo_result=\"good\"} 90",
        "code_class=\"5xx\",listener=\"web\",route=\"main\",slo=\"api\",slo_result=\"bad\"} 9",
        "code_class=\"5xx\",listener=\"web\",route=\"dead\",slo=\"api\",slo_result=\"bad\"} 1",
    ] {
        assert!(m.contains(needle), "missing {needle}");
    }
    // `ninefold slo status` reads the same API.
    let out = Command::new(bin())
        .args([
            "slo",
            "status",
            "--admin",
            &gw.admin_url("").replace("http://", ""),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("api") && table.contains("99%") && table.contains("90.0000%"),
        "{table}"
    );
}

/// An HTTP receiver that records POSTed bodies and answers 503 to the first `fail`.
async fn receiver(fail: usize) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (g, seen) = (g.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (g, seen) = (g.clone(), seen.clone());
                    async move {
                        let ok = req.uri().path() == "/api/v2/alerts"
                            && req
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v == "application/json");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail || !ok { 503 } else { 200 };
                        if status == 200 {
                            g.lock()
                                .unwrap()
                                .push(serde_json::from_slice::<Value>(&body).unwrap());
                        }
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn alerts_matching(got: &Arc<Mutex<Vec<Value>>>, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.as_array().cloned().unwrap_or_default())
        .filter(|a| f(a))
        .collect()
}

#[tokio::test]
async fn burn_rate_alerts_reach_alertmanager_with_retries_and_resolve() {
    let b = Backend::start("a").await;
    let (rx_addr, got) = receiver(1).await;
    // 95%: a page at 14.4× needs 72% errors over both windows.
    let slo = format!(
        "  - name: api
    objective: 95%
    indicator: {{type: availability, good_status: [2xx]}}
    alerts:
      webhook: http://{rx_addr}/api/v2/alerts
      min_events: 10
      windows: [{{severity: page, long: 1h, short: 5m, burn_rate: 14.4}}]
      labels: {{team: payments}}"
    );
    let gw = Gateway::start(&slo_config(b.addr, &slo, ""));
    // Nine errors: below the low-traffic gate, no alert.
    for _ in 0..9 {
        get(&gw.url("web", "/status/500")).await;
    }
    wait_total(&gw, 9).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // one more tick: still quiet
    assert!(got.lock().unwrap().is_empty());
    // Eleven more: 100% errors over 20 events, the page fires. The receiver refuses
    // the first POST; the retry gets through.
    for _ in 0..11 {
        get(&gw.url("web", "/status/500")).await;
    }
    let firing = |a: &Value| {
        a["labels"]["severity"] == "page" && a["annotations"]["burn_rate_long"] == "20.000"
    };
    assert!(
        eventually(Duration::from_secs(15), || !alerts_matching(&got, firing)
            .is_empty())
        .await,
        "no firing alert; stderr:\n{}",
        gw.stderr()
    );
    let a = &alerts_matching(&got, firing)[0];
    assert_eq!(a["labels"]["alertname"], "ErrorBudgetBurn");
    assert_eq!(a["labels"]["slo"], "api");
    assert_eq!(a["labels"]["long_window"], "1h");
    assert_eq!(a["labels"]["short_window"], "5m");
    assert_eq!(a["labels"]["team"], "payments");
    assert!(a["annotations"]["time_to_exhaustion"].is_string());
    assert!(a["startsAt"].as_str().unwrap() < a["endsAt"].as_str().unwrap());
    // The log reaches the test through a reader thread: poll it.
    assert!(
        eventually(Duration::from_secs(5), || {
            let e = gw.stderr();
            e.contains("alert webhook failed; retrying") && e.contains("SLO alert firing")
        })
        .await,
        "{}",
        gw.stderr()
    );
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(m.contains("ninefold_slo_alert_firing{long_window=\"1h\",severity=\"page\",short_window=\"5m\",slo=\"api\"} 1"), "{m}");

    // Good traffic dilutes the 5 m window below 72%: the alert resolves, and the
    // receiver gets it with endsAt at the resolve time.
    get_ok_n(&gw.url("web", "/"), 200).await;
    let resolved = |a: &Value| {
        a["labels"]["severity"] == "page"
            && a["startsAt"].as_str() <= a["endsAt"].as_str()
            && a["annotations"]["burn_rate_short"]
                .as_str()
                .is_some_and(|b| b != "20.000")
            && a["endsAt"].as_str() <= Some(&now_rfc3339())
    };
    assert!(
        eventually(Duration::from_secs(15), || !alerts_matching(&got, resolved)
            .is_empty())
        .await,
        "no resolve message: {:#?}",
        got.lock().unwrap()
    );
    let v = slos(&gw).await;
    assert_eq!(v["slos"][0]["alerts"][0]["firing"], false);
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ninefold::slo::alerts::rfc3339(secs + 1)
}

fn saved_total(dir: &Path) -> Option<u64> {
    let text = std::fs::read(dir.join("slo-state.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    // The hourly ring holds every event of the window.
    let tiers = v["slos"][0]["windows"]["tiers"].as_array()?;
    Some(
        tiers.last()?["total"]
            .as_array()?
            .iter()
            .filter_map(Value::as_u64)
            .sum(),
    )
}

/// A gateway config with SLO `api` saving to `dir/state` every `flush`, written to
/// `dir/ninefold.yaml`; returns (config path, state dir).
fn persisted_config(
    dir: &Path,
    backend: SocketAddr,
    flush: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let state = dir.join("state");
    let yaml = slo_config(
        backend,
        "  - {name: api, objective: 99.9%}",
        &format!("state_dir: \"{}\"\nstate_flush: {flush}", state.display()),
    );
    let config = dir.join("ninefold.yaml");
    std::fs::write(&config, yaml).unwrap();
    (config, state)
}

#[tokio::test]
async fn a_sigkill_loses_at_most_one_flush_interval() {
    let b = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = persisted_config(dir.path(), b.addr, "1s");
    let mut gw = Gateway::start_file(config.clone(), tempfile::tempdir().unwrap()).unwrap();
    get_ok_n(&gw.url("web", "/"), 30).await;
    // Wait for a flush that holds all 30.
    assert!(
        eventually(Duration::from_secs(10), || saved_total(&state) == Some(30)).await,
        "saved: {:?}",
        saved_total(&state)
    );
    // Five more, then SIGKILL before (or just after) the next flush.
    get_ok_n(&gw.url("web", "/"), 5).await;
    gw.signal("KILL");
    gw.wait_exit(Duration::from_secs(5));
    let gw = Gateway::start_file(config, tempfile::tempdir().unwrap()).unwrap();
    let v = slos(&gw).await;
    let total = v["slos"][0]["total"].as_u64().unwrap();
    assert!((30..=35).contains(&total), "restored {total}");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("SLO state restored"))
        .await,
        "{}",
        gw.stderr()
    );
}

#[tokio::test]
async fn sigterm_saves_everything() {
    let b = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = persisted_config(dir.path(), b.addr, "1h");
    let mut gw = Gateway::start_file(config.clone(), tempfile::tempdir().unwrap()).unwrap();
    get_ok_n(&gw.url("web", "/"), 17).await;
    gw.signal("TERM");
    assert!(gw
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert_eq!(saved_total(&state), Some(17));
}

#[tokio::test]
async fn a_corrupt_state_file_is_kept_aside_and_the_gateway_starts_fresh() {
    let b = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = persisted_config(dir.path(), b.addr, "1s");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("slo-state.json"), b"\x00\x01 not json {").unwrap();
    let gw = Gateway::start_file(config, tempfile::tempdir().unwrap())
        .expect("a corrupt state file must not stop the gateway");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("corrupt or not ninefold's"))
        .await,
        "{}",
        gw.stderr()
    );
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("slo-state.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    get_ok_n(&gw.url("web", "/"), 3).await;
    assert_eq!(wait_total(&gw, 3).await["slos"][0]["total"], 3);
    // A fresh, valid file replaces it at the next flush.
    assert!(eventually(Duration::from_secs(10), || saved_total(&state) == Some(3)).await);
}

/// The seed's SLO file, as the wiki page writes it.
const SEED: &str = include_str!("../../examples/slo/seed.yaml");

fn ninefold(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn slo_budget_reads_all_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let (code, out, err) = ninefold(&["slo", "budget", seed.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("error budget       21.6 minutes"), "{out}");
    assert!(out.contains("good: 200, 201, 204"), "{out}");

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (file, want) in [
        ("slo/seed.yaml", "21.6 minutes"),
        ("slo/openslo.yaml", "40.3 minutes"),
        ("slo.yaml", "21.6 minutes"),
    ] {
        let (code, out, err) = ninefold(&["slo", "budget", examples.join(file).to_str().unwrap()]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains(want), "{file}: {out}");
    }
    let (code, out, _) = ninefold(&["slo", "budget", "--json", seed.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!((v["slos"][0]["budget_minutes"].as_f64().unwrap() - 21.6).abs() < 1e-9);

    std::fs::write(&seed, SEED.replace("status_code in", "code in")).unwrap();
    let (code, _, err) = ninefold(&["slo", "budget", seed.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("indicator.good"), "{err}");
}

fn promtool() -> Option<String> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if found {
        return Some("promtool".into());
    }
    if std::env::var_os("NINEFOLD_REQUIRE_PROMTOOL").is_some() {
        panic!("promtool is required (scripts/test installs Debian's prometheus package)");
    }
    skipped("the promtool checks: promtool is not installed (scripts/test installs it; NINEFOLD_REQUIRE_PROMTOOL=1 fails instead)");
    None
}

/// `promtool test rules`: at 14.6× the page alerts fire; at 1× nothing fires; without
/// traffic there is no sample and no alert.
const PROMTOOL_TEST: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - name: burning at 14.6x pages
    interval: 1m
    input_series:
      - series: 'ninefold_requests_total{slo="payments",slo_result="good",route="a"}'
        values: '0+9927x120'
      - series: 'ninefold_requests_total{slo="payments",slo_result="bad",route="a"}'
        values: '0+73x120'
    alert_rule_test:
      - eval_time: 70m
        alertname: ErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: page, sloth_severity: page, long_window: 1h, short_window: 5m, exhaustion: "2.08 d", sloth_id: payments-payments, sloth_service: payments, sloth_slo: payments}
            exp_annotations:
              summary: "SLO payments: error budget burning over 14.4x over 1h and 5m"
              description: "Error ratio 0.73% over 1h (objective 99.95%); at 14.4x the 30d budget is gone in 2.08 d."
          - exp_labels: {severity: page, sloth_severity: page, long_window: 6h, short_window: 30m, exhaustion: "5 d", sloth_id: payments-payments, sloth_service: payments, sloth_slo: payments}
            exp_annotations:
              summary: "SLO payments: error budget burning over 6x over 6h and 30m"
              description: "Error ratio 0.73% over 6h (objective 99.95%); at 6x the 30d budget is gone in 5 d."
          - exp_labels: {severity: ticket, sloth_severity: ticket, long_window: 3d, short_window: 6h, exhaustion: "30 d", sloth_id: payments-payments, sloth_service: payments, sloth_slo: payments}
            exp_annotations:
              summary: "SLO payments: error budget burning over 1x over 3d and 6h"
              description: "Error ratio 0.73% over 3d (objective 99.95%); at 1x the 30d budget is gone in 30 d."
  - name: burning at 1x stays quiet
    interval: 1m
    input_series:
      - series: 'ninefold_requests_total{slo="payments",slo_result="good",route="a"}'
        values: '0+9995x120'
      - series: 'ninefold_requests_total{slo="payments",slo_result="bad",route="a"}'
        values: '0+5x120'
    alert_rule_test:
      - eval_time: 70m
        alertname: ErrorBudgetBurn
        exp_alerts: []
  - name: no traffic, no NaN, no alert
    interval: 1m
    input_series:
      - series: 'ninefold_requests_total{slo="payments",slo_result="good",route="a"}'
        values: '0x120'
      - series: 'ninefold_requests_total{slo="payments",slo_result="bad",route="a"}'
        values: '0x120'
    alert_rule_test:
      - eval_time: 70m
        alertname: ErrorBudgetBurn
        exp_alerts: []
    promql_expr_test:
      - expr: slo:sli_error:ratio_rate5m
        eval_time: 70m
        exp_samples: []
"#;

#[test]
fn promtool_checks_and_tests_the_generated_rules() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let (code, rules, err) = ninefold(&["slo", "rules", seed.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), PROMTOOL_TEST).unwrap();
    let o = Command::new(&promtool)
        .current_dir(dir.path())
        .args(["check", "rules", "rules.yml"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // With matchers for one environment of a fleet, the rules still check.
    let (code, sel_rules, err) = ninefold(&[
        "slo",
        "rules",
        seed.to_str().unwrap(),
        "--selector",
        "env=\"prod\",job=~\"ninefold.*\"",
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("sel.yml"), &sel_rules).unwrap();
    let o = Command::new(&promtool)
        .current_dir(dir.path())
        .args(["check", "rules", "sel.yml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = Command::new(&promtool)
        .current_dir(dir.path())
        .args(["test", "rules", "test.yml"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test]
async fn a_client_that_gives_up_is_counted_against_the_slo() {
    let b = Backend::start("a").await;
    let gw = Gateway::start(&slo_config(
        b.addr,
        "  - {name: api, objective: 99%, indicator: {type: latency, threshold: 100ms}}",
        "",
    ));
    // The upstream takes 2 s; the client leaves after 200 ms.
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        get(&gw.url("web", "/slow/2000")),
    )
    .await;
    assert!(r.is_err());
    let v = wait_total(&gw, 1).await;
    assert_eq!(v["slos"][0]["total"], 1, "{v:#}");
    assert_eq!(v["slos"][0]["bad"], 1);
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        m.contains(
            "code_class=\"4xx\",listener=\"web\",route=\"main\",slo=\"api\",slo_result=\"bad\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn a_refused_reload_leaves_the_slos_alone() {
    let b = Backend::start("a").await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = slo_config(b.addr, "  - {name: api, objective: 99%}", "");
    let gw = Gateway::start(&yaml);
    get_ok_n(&gw.url("web", "/"), 5).await;
    wait_total(&gw, 5).await;
    // No SLO any more, and a listener on a port that is taken: refused as a whole.
    let taken = busy.local_addr().unwrap();
    let bad = yaml
        .replace(", slo: api}", "}")
        .replace("slos:\n  - {name: api, objective: 99%}\n", "")
        .replace(
            "clusters:\n",
            &format!(
                "  - {{name: taken, bind: \"{taken}\", routes: [{{match: {{path_prefix: /}}, cluster: app}}]}}\nclusters:\n"
            ),
        );
    assert!(!bad.contains("slo"), "{bad}");
    gw.rewrite(&bad);
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_ne!(r.status, 200, "{body}");
    assert!(
        body.contains(&taken.to_string()),
        "refused for another reason: {body}"
    );
    let v = slos(&gw).await;
    assert_eq!(v["slos"][0]["name"], "api", "{v:#}");
    assert_eq!(v["slos"][0]["total"], 5);
}

#[tokio::test]
async fn the_slo_example_serves() {
    // examples/slo.yaml with ephemeral ports and a private state_dir.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slo.yaml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = text
        .replace("bind: 127.0.0.1:8080", "bind: \"127.0.0.1:0\"")
        .replace(
            "state_dir: ./ninefold-state",
            &format!("state_dir: \"{}\"", dir.path().join("state").display()),
        );
    let gw = Gateway::try_start(&format!("admin: {{bind: \"127.0.0.1:0\"}}\n{yaml}"))
        .unwrap_or_else(|e| panic!("examples/slo.yaml does not serve: {e}"));
    let v = slos(&gw).await;
    let names: Vec<&str> = v["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "search-latency"]);
    assert_eq!(v["slos"][0]["memory_bytes"], 59952);
}

/// A raw upstream that announces `content-length: 100`, sends 10 bytes and closes.
async fn cutting_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_body_the_upstream_cuts_is_recorded_as_a_failure_not_a_200() {
    let addr = cutting_backend().await;
    let gw = Gateway::start(&slo_config(
        addr,
        "  - {name: api, objective: 99%, indicator: {type: availability, good_status: [2xx]}}",
        "access_log: text",
    ));
    // A POST: its answer streams as it comes (a GET's is held until whole, and then
    // retried when it breaks: see `failover::an_answer_cut_between_head_and_body_is_retried`).
    let r = client()
        .request(
            hyper::Request::post(gw.url("web", "/x"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // The head said 200; the body breaks. The client sees the break: either the 200
    // cut short, or, when none of the answer had left the gateway yet, its 502.
    if r.status() == 200 {
        assert!(r.into_body().collect().await.is_err());
    } else {
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["x-ninefold-reason"], "upstream-error");
    }
    let v = wait_total(&gw, 1).await;
    assert_eq!(v["slos"][0]["total"], 1, "{v:#}");
    assert_eq!(
        v["slos"][0]["bad"], 1,
        "a cut body is not a good answer: {v:#}"
    );
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        m.contains(
            "code_class=\"5xx\",listener=\"web\",route=\"main\",slo=\"api\",slo_result=\"bad\"} 1"
        ),
        "{m}"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stdout()
            .contains("reason=upstream-body-cut"))
        .await,
        "{}",
        gw.stdout()
    );
    let line = gw
        .stdout()
        .lines()
        .find(|l| l.contains("upstream-body-cut"))
        .unwrap()
        .to_owned();
    assert!(line.contains("POST /x 502 "), "{line}");
}

/// Serves `body` once per connection as a chunked `200` (in three chunks, with pauses,
/// on a kept-alive connection), like a server that streams its JSON; returns its
/// address and the request heads it read.
async fn chunked_server(body: Bytes) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (h, body) = (h.clone(), body.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                h.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                    )
                    .await;
                let third = body.len() / 3 + 1;
                for part in body.chunks(third) {
                    let _ = s
                        .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = s.write_all(part).await;
                    let _ = s.write_all(b"\r\n").await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
                // Keep the connection open: the client must end on the last chunk,
                // not on EOF.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn slo_status_reads_a_chunked_answer() {
    // The same JSON a gateway serves at /api/v1/slos, served again chunked.
    let b = Backend::start("a").await;
    let gw = Gateway::start(&slo_config(
        b.addr,
        "  - {name: api, objective: 99%, window: 30d, indicator: {type: availability, good_status: [2xx]}}",
        "",
    ));
    get_ok_n(&gw.url("web", "/"), 9).await;
    get(&gw.url("web", "/status/500")).await;
    wait_total(&gw, 10).await;
    let json = get(&gw.admin_url("/api/v1/slos")).await.body;
    let (addr, heads) = chunked_server(json).await;
    let out = tokio::task::spawn_blocking(move || {
        ninefold(&["slo", "status", "--admin", &addr.to_string()])
    })
    .await
    .unwrap();
    let (code, table, err) = out;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("api") && table.contains("99%") && table.contains("90.0000%"),
        "{table}"
    );
    // Cloned, not held: the server task takes this lock on the same thread.
    let first = heads.lock().unwrap()[0].clone();
    assert!(
        first.starts_with("GET /api/v1/slos HTTP/1.1\r\n"),
        "{first:?}"
    );
    // And --json passes the same document through.
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        ninefold(&["slo", "status", "--json", "--admin", &addr.to_string()])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["slos"][0]["total"], 10);
}

#[tokio::test]
async fn slo_status_says_when_the_admin_api_is_unreachable() {
    let (_refusing, addr) = refusing_endpoint();
    let port = addr.port();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        ninefold(&["slo", "status", "--admin", &format!("127.0.0.1:{port}")])
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the admin API at 127.0.0.1:{port}: "
        )),
        "{err}"
    );
}

#[tokio::test]
async fn the_alert_sender_reads_a_chunked_answer() {
    let b = Backend::start("a").await;
    let (rx_addr, heads) = chunked_server(Bytes::from_static(b"{\"status\":\"success\"}")).await;
    let slo = format!(
        "  - name: api
    objective: 95%
    indicator: {{type: availability, good_status: [2xx]}}
    alerts:
      webhook: http://{rx_addr}/api/v2/alerts
      min_events: 10
      windows: [{{severity: page, long: 1h, short: 5m, burn_rate: 14.4}}]"
    );
    let gw = Gateway::start(&slo_config(b.addr, &slo, ""));
    for _ in 0..20 {
        get(&gw.url("web", "/status/500")).await;
    }
    assert!(
        eventually(Duration::from_secs(15), || !heads
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "no alert posted; stderr:\n{}",
        gw.stderr()
    );
    assert!(heads.lock().unwrap()[0].starts_with("POST /api/v2/alerts HTTP/1.1\r\n"));
    // A couple of ticks more: a misread answer would show as a retry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = gw.stderr();
    assert!(!err.contains("alert webhook"), "{err}");
    assert_eq!(heads.lock().unwrap().len(), 1, "{err}");
}
