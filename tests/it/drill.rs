//! `ninefold drill run` against real processes: the PostgreSQL failover drill with a
//! synchronous standby (no acknowledged write lost, RTO measured) and with an
//! asynchronous standby whose WAL receiver was stopped (writes lost, and the verifier's
//! count is the rows really missing); rollbacks after a failed step and after Ctrl-C;
//! a bad file's line-numbered error.

use crate::pgfix::{self, Pair};
use crate::support::{self, Gateway};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ninefold drill run FILE --journal J --report R`; (exit code, journal, report,
/// stderr).
fn drill(dir: &Path, yaml: &str) -> (i32, serde_json::Value, String, String) {
    let file = dir.join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (j, r) = (dir.join("journal.json"), dir.join("report.md"));
    // Not an earlier run's.
    let _ = std::fs::remove_file(&j);
    let out = Command::new(support::bin())
        .args(["drill", "run"])
        .arg(&file)
        .arg("--journal")
        .arg(&j)
        .arg("--report")
        .arg(&r)
        .arg("--json")
        .output()
        .unwrap();
    let journal = std::fs::read_to_string(&j)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    // With --json, stdout is the journal itself.
    if !journal.is_null() {
        let printed: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("--json prints JSON");
        assert_eq!(printed, journal, "--json prints the journal");
    }
    (
        out.status.code().unwrap_or(-1),
        journal,
        std::fs::read_to_string(&r).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A gateway with the rw listener of the TCP tier in front of `pair`.
fn gateway(pair: &Pair) -> Gateway {
    let (p, s) = (pair.primary.addr(), pair.standby.addr());
    Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
listeners:
  - {{name: pg-rw, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-primary}}
  - {{name: pg-ro, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-replicas, fallback_cluster: pg-primary}}
clusters:
  - name: pg-primary
    connect_timeout: 1s
    endpoints: [{{address: \"{p}\", zone: a}}, {{address: \"{s}\", zone: b}}]
    health_check:
      postgres: {{role: primary, user: ninefold, password: {pw}, sslmode: disable}}
      interval: 200ms
      timeout: 150ms
      healthy_threshold: 1
      unhealthy_threshold: 2
  - name: pg-replicas
    endpoints: [{{address: \"{p}\"}}, {{address: \"{s}\"}}]
    health_check:
      postgres: {{role: replica, user: ninefold, password: {pw}, sslmode: disable, max_replication_lag: 5s}}
      interval: 200ms
      timeout: 150ms
      healthy_threshold: 1
      unhealthy_threshold: 1
",
        pw = pgfix::NINEFOLD_PASSWORD
    ))
}

/// The seed's drill: kill the primary, promote the standby, writes reach it.
fn failover_drill(gw: &Gateway, pair: &Pair, rw: std::net::SocketAddr, marker: &Path) -> String {
    format!(
        "title: primary database lost in zone a
gateway: {{admin: \"{admin}\"}}
targets: {{rto: 15s, rpo: 0}}
load:
  - {{sql: {{address: \"{rw}\", user: app, database: app, password: {pw}, rate: 50}}}}
steady_state:
  - {{sql: {{address: \"{rw}\", user: app, database: app, password: {pw}, query: \"select 1\"}}}}
method:
  - {{signal: {{pid_file: \"{pidfile}\", signal: KILL}}}}
  - {{wait: 500ms}}
  - {{command: {{run: [\"{pg_ctl}\", promote, -w, -D, \"{standby}\"], user: postgres}}}}
  - {{wait_for: {{recovered: true, timeout: 20s}}}}
rollbacks:
  - {{command: {{run: [touch, \"{marker}\"]}}}}
recovered_after: 10
",
        admin = gw.admin,
        pw = pgfix::APP_PASSWORD,
        pidfile = pair.primary.data_dir().join("postmaster.pid").display(),
        pg_ctl = pgfix::bin("pg_ctl").display(),
        standby = pair.standby.data_dir().display(),
        marker = marker.display(),
    )
}

async fn primary_ready(gw: &Gateway, pair: &Pair) {
    let p = pair.primary.addr().to_string();
    let ok = support::eventually(Duration::from_secs(10), || {
        // The state API through a blocking client would need the runtime; read the
        // metric the health checker writes instead.
        gw.stderr()
            .contains(&format!("primary found cluster=pg-primary primary={p}"))
    })
    .await;
    assert!(ok, "{}", gw.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_drill_with_a_synchronous_standby_loses_nothing() {
    if !pgfix::require("postgres_failover_drill_with_a_synchronous_standby_loses_nothing") {
        return;
    }
    let pair = Pair::start();
    pair.primary
        .sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .unwrap();
    pair.primary.sql("SELECT pg_reload_conf()").unwrap();
    assert!(
        support::eventually(Duration::from_secs(10), || {
            pair.primary
                .sql("select sync_state from pg_stat_replication")
                .as_deref()
                == Ok("sync")
        })
        .await
    );
    let gw = gateway(&pair);
    primary_ready(&gw, &pair).await;
    let rw = gw.bound("pg-rw").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("rolled-back");
    let started = Instant::now();
    // The shipped drill, as a user runs it: its variables from the environment.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/drills/postgres-failover.yaml"
    ))
    .unwrap();
    let ro = gw.bound("pg-ro").await;
    let vars = [
        ("NINEFOLD_DRILL_ADMIN", gw.admin.to_string()),
        ("NINEFOLD_DRILL_RW", rw.to_string()),
        ("NINEFOLD_DRILL_RO", ro.to_string()),
        ("APP_PG_PASSWORD", pgfix::APP_PASSWORD.to_string()),
        (
            "NINEFOLD_DRILL_PRIMARY_DATA",
            pair.primary.data_dir().display().to_string(),
        ),
        (
            "NINEFOLD_DRILL_STANDBY_DATA",
            pair.standby.data_dir().display().to_string(),
        ),
        (
            "NINEFOLD_DRILL_PG_BIN",
            pgfix::bin("pg_ctl").parent().unwrap().display().to_string(),
        ),
        ("NINEFOLD_DRILL_REBUILD", "/bin/true".to_string()),
    ];
    let mut text = shipped.clone();
    for (k, v) in &vars {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    // The rollback also leaves a mark, so the test sees it ran.
    let text = text.replace(
        "rollback: always",
        &format!(
            "  - {{command: {{run: [touch, \"{}\"]}}}}\nrollback: always",
            marker.display()
        ),
    );
    let (code, j, report, err) = drill(dir.path(), &text);
    let m = &j["measurements"];
    eprintln!(
        "sync drill: exit {code} in {:?}, rto {} s (model {} s), acked {}, lost {}, indeterminate {}\n{report}",
        started.elapsed(),
        m["rto_seconds"],
        m["model_rto_seconds"],
        m["rpo"]["acked_writes"],
        m["rpo"]["lost_writes"],
        m["rpo"]["indeterminate_writes"]
    );
    assert_eq!(code, 0, "{err}\n{report}\n{j:#}");
    assert_eq!(m["rpo"]["lost_writes"], 0, "{j:#}");
    assert!(m["rpo"]["acked_writes"].as_u64().unwrap() > 20, "{j:#}");
    let rto = m["rto_seconds"].as_f64().expect("an RTO");
    assert!(rto > 0.0 && rto < 15.0, "{rto}");
    assert!(marker.exists(), "the rollback ran");
    assert_eq!(j["status"], "completed");
    assert!(
        report.contains("## Verdict") && report.contains("**Passed**"),
        "{report}"
    );
    let events: Vec<String> = m["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    for want in [
        "fault injected",
        "first failed operation",
        "marked down",
        "primary generation 2",
        "recovered",
    ] {
        assert!(
            events.iter().any(|e| e.contains(want)),
            "no {want:?} in {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_standby_that_stopped_receiving_loses_writes_and_the_count_is_exact() {
    if !pgfix::require("an_asynchronous_standby_that_stopped_receiving_loses_writes") {
        return;
    }
    let pair = Pair::start();
    let gw = gateway(&pair);
    primary_ready(&gw, &pair).await;
    let rw = gw.bound("pg-rw").await;
    // The standby's WAL receiver, stopped by the drill's first step: what the primary
    // acknowledges from then on never reaches it.
    let walreceiver: i32 = pair
        .standby
        .sql("select pid from pg_stat_wal_receiver")
        .unwrap()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("rolled-back");
    // Writes for a second that the standby never receives; then the primary dies and
    // the stopped receiver with it (its socket's unread WAL goes too), and the standby
    // is promoted with what it has.
    let yaml = failover_drill(&gw, &pair, rw, &marker).replace(
        "  - {wait: 500ms}",
        &format!("  - {{signal: {{pid: {walreceiver}, signal: KILL}}}}\n  - {{wait: 500ms}}"),
    );
    let yaml = yaml.replace(
        "  - {signal: {pid_file",
        &format!("  - {{signal: {{pid: {walreceiver}, signal: STOP}}}}\n  - {{wait: 1s}}\n  - {{signal: {{pid_file"),
    );
    let (code, j, report, err) = drill(dir.path(), &yaml);
    let m = &j["measurements"];
    eprintln!(
        "async drill: exit {code}, rto {} s (model {} s), acked {}, lost {}, indeterminate {}, lost span {} s",
        m["rto_seconds"],
        m["model_rto_seconds"],
        m["rpo"]["acked_writes"],
        m["rpo"]["lost_writes"],
        m["rpo"]["indeterminate_writes"],
        m["rpo"]["lost_seconds"]
    );
    assert_eq!(code, 1, "rpo 0 missed: {err}\n{report}");
    let lost = m["rpo"]["lost_writes"].as_u64().unwrap();
    assert!(lost > 0, "{j:#}");
    assert_eq!(j["targets"]["met"], false);
    // The verifier's count is the rows really missing: the acknowledged sequence
    // numbers (logged durably beside the journal) against the new primary's table.
    let acked: std::collections::HashSet<u64> =
        std::fs::read_to_string(dir.path().join("journal.acked"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect();
    let present: std::collections::HashSet<u64> = pair
        .standby
        .psql(
            pgfix::APP_USER,
            pgfix::APP_PASSWORD,
            pgfix::APP_DB,
            "select seq from ninefold_drill",
        )
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing = acked.difference(&present).count() as u64;
    assert_eq!(missing, lost, "the drill's count against the table's");
    assert!(
        report.contains("**Failed**: a target was missed."),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_run_after_a_failed_step_and_after_ctrl_c_and_a_bad_file_says_where() {
    let dir = tempfile::tempdir().unwrap();
    // A gateway's admin API for the drill to read (no load, no steady state needed).
    let gw = Gateway::start("admin: {bind: \"127.0.0.1:0\"}\n");
    let failed = dir.path().join("after-failure");
    let yaml = format!(
        "title: a step fails
gateway: {{admin: \"{}\"}}
method:
  - {{command: {{run: [\"false\"]}}}}
  - {{wait: 10s}}
rollbacks:
  - {{command: {{run: [touch, \"{}\"]}}}}
",
        gw.admin,
        failed.display()
    );
    let (code, j, _, err) = drill(dir.path(), &yaml);
    assert_eq!(code, 1, "{err}");
    assert_eq!(j["status"], "failed");
    assert_eq!(
        j["run"].as_array().unwrap().len(),
        1,
        "the method stopped at the failure"
    );
    assert_eq!(j["rollbacks"][0]["status"], "succeeded");
    assert!(failed.exists());

    // Ctrl-C in the middle of a long wait: the rollback still runs.
    let backend = support::Backend::start("steady").await;
    let interrupted = dir.path().join("after-ctrl-c");
    let file = dir.path().join("long.yaml");
    std::fs::write(
        &file,
        format!(
            "title: interrupted
gateway: {{admin: \"{}\"}}
steady_state:
  - {{http: {{url: \"http://{}/steady\"}}}}
method:
  - {{wait: 60s}}
rollbacks:
  - {{command: {{run: [touch, \"{}\"]}}}}
",
            gw.admin,
            backend.addr,
            interrupted.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(support::bin())
        .args(["drill", "run"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the steady state was probed, the method is (about to be) running.
    assert!(support::eventually(Duration::from_secs(10), || backend.hits() > 0).await);
    // SAFETY: kill(2) reads no memory of ours; the pid is our child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(interrupted.exists(), "the rollback ran after Ctrl-C");

    // A bad file: exit 2, file:line:col: key: message.
    let (code, _, _, err) = drill(
        dir.path(),
        "title: bad\ngateway: {admin: \"127.0.0.1:1\"}\nmethod:\n  - {fault: {route: api, abort: {percent: 50}}}\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("drill.yaml:4:") && err.contains("method[0].fault.ttl"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_zone_loss_drill_holds_and_enables_the_zone_back() {
    const TOKEN: &str = "drill-token";
    let backends = [
        support::Backend::start("a1").await,
        support::Backend::start("a2").await,
        support::Backend::start("b1").await,
        support::Backend::start("b2").await,
    ];
    let eps: Vec<String> = backends
        .iter()
        .zip(["a", "a", "b", "b"])
        .map(|(b, z)| format!("{{address: \"{}\", zone: {z}}}", b.addr))
        .collect();
    let gw = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: api, match: {{path_prefix: /}}, cluster: api, timeout: 2s}}
clusters:
  - name: api
    endpoints: [{}]
    health_check: {{http: {{path: /health}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2}}
",
        eps.join(", ")
    ));
    let web = gw.bound("web").await;
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/drills/zone-loss.yaml"
    ))
    .unwrap();
    for (k, v) in [
        ("NINEFOLD_DRILL_ADMIN", gw.admin.to_string()),
        ("NINEFOLD_ADMIN_TOKEN", TOKEN.to_string()),
        ("NINEFOLD_DRILL_URL", format!("http://{web}/api")),
        ("NINEFOLD_DRILL_CLUSTER", "api".to_string()),
        ("NINEFOLD_DRILL_ZONE_A1", backends[0].addr.to_string()),
        ("NINEFOLD_DRILL_ZONE_A2", backends[1].addr.to_string()),
    ] {
        text = text.replace(&format!("${{{k}}}"), &v);
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, j, report, err) = drill(dir.path(), &text);
    let m = &j["measurements"];
    eprintln!(
        "zone-loss drill: exit {code}, rto {} s (model {} s), failed {}",
        m["rto_seconds"],
        m["model_rto_seconds"],
        m["failed_operations"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(code, 0, "{err}\n{report}");
    let events = m["timeline"].to_string();
    assert!(
        events.contains(&format!("endpoint {} of api drained", backends[0].addr)),
        "{events}"
    );
    // The rollbacks enabled the zone back.
    let st = support::get(&gw.admin_url("/api/v1/state")).await.json();
    for e in st["clusters"][0]["endpoints"].as_array().unwrap() {
        assert_eq!(e["drained"], false, "{e}");
    }
    assert_eq!(j["rollbacks"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_dependency_slow_drill_is_held_by_the_fallback() {
    const TOKEN: &str = "drill-token";
    let dep = support::Backend::start("recommendations").await;
    let gw = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: recommendations
        match: {{path_prefix: /}}
        cluster: recs
        timeout: 300ms
        slo: app-availability
        fallback: {{static: {{status: 200, content_type: application/json, body: '{{\"items\":[]}}'}}}}
clusters:
  - name: recs
    endpoints: [{{address: \"{}\"}}]
    circuit_breaker: {{consecutive_failures: 3, open_for: 5s}}
slos:
  - {{name: app-availability, objective: 99%, window: 30d}}
",
        dep.addr
    ));
    let web = gw.bound("web").await;
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/drills/dependency-slow.yaml"
    ))
    .unwrap()
    .replace("{wait: 10s}", "{wait: 2s}");
    for (k, v) in [
        ("NINEFOLD_DRILL_ADMIN", gw.admin.to_string()),
        ("NINEFOLD_ADMIN_TOKEN", TOKEN.to_string()),
        (
            "NINEFOLD_DRILL_URL",
            format!("http://{web}/recommendations"),
        ),
        ("NINEFOLD_DRILL_ROUTE", "recommendations".to_string()),
        ("NINEFOLD_DRILL_SLO", "app-availability".to_string()),
    ] {
        text = text.replace(&format!("${{{k}}}"), &v);
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, j, report, err) = drill(dir.path(), &text);
    let m = &j["measurements"];
    eprintln!(
        "dependency-slow drill: exit {code}, rto {} s, failed {}, budget spent {}",
        m["rto_seconds"],
        m["failed_operations"].as_array().map_or(0, Vec::len),
        m["budget_spent_minutes"]
    );
    assert_eq!(code, 0, "{err}\n{report}");
    // The fault the drill added is still there, with its ttl: it ends by itself.
    let faults = support::get(&gw.admin_url("/api/v1/faults")).await.json();
    assert_eq!(faults["faults"][0]["route"], "recommendations", "{faults}");
}
