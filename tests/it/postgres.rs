//! The stateful tier against a real PostgreSQL 15 primary and streaming standby
//! (`pgfix`): roles read by the `postgres` check through the rw and ro listeners,
//! SCRAM and md5 logins, a wrong password's reason, a failover (SIGKILL the primary,
//! promote the standby) with the old session closed and the timeline measured, two
//! primaries refused, and a lagging replica leaving the ro set while reads fall back to
//! the primary.

use crate::pgfix::{self, Pair, Pg};
use crate::support::{self, get, Gateway};
use ninefold::config::{PostgresCheck, Role, Secret, SslMode, TwoPrimaries};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 200;
const UNHEALTHY: u32 = 2;

/// The two-cluster config of the issue, both endpoints in both clusters; `extra` adds
/// clusters; `lag` is the replica bound.
fn config(pair: &Pair, lag: &str, extra: &str) -> String {
    let (p, s) = (pair.primary.addr(), pair.standby.addr());
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
access_log: text
listeners:
  - {{name: pg-rw, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-primary, idle_timeout: 30m}}
  - {{name: pg-ro, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-replicas, fallback_cluster: pg-primary}}
clusters:
  - name: pg-primary
    connect_timeout: 1s
    endpoints: [{{address: \"{p}\", zone: a}}, {{address: \"{s}\", zone: b}}]
    health_check:
      postgres: {{role: primary, user: ninefold, database: postgres, password: \"${{TEST_PG_PASSWORD}}\", sslmode: prefer}}
      interval: {INTERVAL_MS}ms
      timeout: 150ms
      healthy_threshold: 1
      unhealthy_threshold: {UNHEALTHY}
  - name: pg-replicas
    endpoints: [{{address: \"{p}\"}}, {{address: \"{s}\"}}]
    health_check:
      postgres: {{role: replica, user: ninefold, database: postgres, password: \"${{TEST_PG_PASSWORD}}\", max_replication_lag: {lag}}}
      interval: {INTERVAL_MS}ms
      timeout: 150ms
      healthy_threshold: 1
      unhealthy_threshold: 1
{extra}"
    )
}

fn start(yaml: &str) -> Gateway {
    Gateway::start_with(yaml, |c| {
        c.env("TEST_PG_PASSWORD", pgfix::NINEFOLD_PASSWORD);
    })
}

/// `select pg_is_in_recovery()` through a listener, as the app user.
fn in_recovery(at: SocketAddr) -> Result<String, String> {
    Pg::psql_at(
        at,
        pgfix::APP_USER,
        pgfix::APP_PASSWORD,
        pgfix::APP_DB,
        "select pg_is_in_recovery()",
    )
}

async fn state(gw: &Gateway) -> serde_json::Value {
    get(&gw.admin_url("/api/v1/state")).await.json()
}

fn cluster<'a>(state: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    state["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}: {state}"))
}

fn endpoint(c: &serde_json::Value, addr: SocketAddr) -> &serde_json::Value {
    c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("no endpoint {addr}: {c}"))
}

/// Polls the state API until `f` holds, or panics after `timeout` with the state.
async fn until(
    gw: &Gateway,
    timeout: Duration,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = state(gw).await;
        if f(&s) {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{s:#}\n{}", gw.stderr());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn healthy(s: &serde_json::Value, c: &str, a: SocketAddr) -> bool {
    endpoint(cluster(s, c), a)["health"] == "healthy"
}

/// A real session through a listener: logged in as the app user, held open.
async fn session(at: SocketAddr) -> ninefold::upstream::pg::Conn {
    let check = PostgresCheck {
        role: Role::Primary,
        user: pgfix::APP_USER.into(),
        database: pgfix::APP_DB.into(),
        password: Some(Secret::new(pgfix::APP_PASSWORD.into())),
        sslmode: SslMode::Disable,
        two_primaries: TwoPrimaries::Refuse,
        max_replication_lag: None,
    };
    let s = tokio::net::TcpStream::connect(at).await.unwrap();
    ninefold::upstream::pg::Conn::open(s, at, &check)
        .await
        .expect("a session through the gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_logins_and_a_wrong_password() {
    if !pgfix::require("roles_logins_and_a_wrong_password") {
        return;
    }
    let pair = Pair::start();
    let p = pair.primary.addr();
    // TLS on the primary (a self-signed certificate: sslmode never verifies it), and
    // two more logins: trust, and a cleartext password.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let data = pair.primary.data_dir().to_owned();
    std::fs::write(data.join("server.crt"), cert.cert.pem()).unwrap();
    std::fs::write(data.join("server.key"), cert.signing_key.serialize_pem()).unwrap();
    for f in ["server.crt", "server.key"] {
        std::fs::set_permissions(
            data.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        pgfix::give_to_postgres(&data.join(f));
    }
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        format!("host all trusted 127.0.0.1/32 trust\nhost all clear 127.0.0.1/32 password\n{hba}"),
    )
    .unwrap();
    for sql in [
        "ALTER SYSTEM SET ssl = on",
        "CREATE ROLE trusted LOGIN",
        "CREATE ROLE clear LOGIN PASSWORD 'clear-secret'",
        "SELECT pg_reload_conf()",
    ] {
        pair.primary.sql(sql).unwrap();
    }
    let extra = format!(
        "  - name: pg-trust
    endpoints: [{{address: \"{p}\"}}]
    health_check: {{postgres: {{role: primary, user: trusted, sslmode: disable}}, interval: 200ms, timeout: 150ms}}
  - name: pg-clear
    endpoints: [{{address: \"{p}\"}}]
    health_check: {{postgres: {{role: primary, user: clear, password: clear-secret, sslmode: disable}}, interval: 200ms, timeout: 150ms}}
  - name: pg-md5
    endpoints: [{{address: \"{p}\"}}]
    health_check: {{postgres: {{role: primary, user: md5user, password: {md5}, sslmode: disable}}, interval: 200ms, timeout: 150ms}}
  - name: pg-tls
    endpoints: [{{address: \"{p}\"}}]
    health_check: {{postgres: {{role: primary, user: ninefold, password: {pw}, sslmode: require}}, interval: 200ms, timeout: 150ms}}
  - name: pg-bad
    endpoints: [{{address: \"{p}\"}}]
    health_check: {{postgres: {{role: primary, user: ninefold, password: not-the-password, sslmode: disable}}, interval: 200ms, timeout: 150ms}}
",
        md5 = pgfix::MD5_PASSWORD,
        pw = pgfix::NINEFOLD_PASSWORD,
    );
    let gw = start(&config(&pair, "5s", &extra));
    let (rw, ro) = (gw.bound("pg-rw").await, gw.bound("pg-ro").await);
    // Each endpoint's state, with the reason in words once its probes decided (on a
    // loaded machine a first probe may time out: wait for the reason, not a state).
    let why = |s: &serde_json::Value, c: &str, a: SocketAddr| {
        endpoint(cluster(s, c), a)["why"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let sb = pair.standby.addr();
    until(&gw, Duration::from_secs(15), "roles and reasons", |s| {
        healthy(s, "pg-primary", p)
            && healthy(s, "pg-replicas", sb)
            && healthy(s, "pg-md5", p)
            && why(s, "pg-primary", sb).contains("role replica, want primary")
            && why(s, "pg-replicas", p).contains("role primary, want replica")
            && why(s, "pg-bad", p)
                .contains("auth failed: password authentication failed for user \"ninefold\"")
            // TLS required, and the server offers it.
            && healthy(s, "pg-tls", p)
            && healthy(s, "pg-trust", p)
            && healthy(s, "pg-clear", p)
    })
    .await;
    let s = state(&gw).await;
    assert_eq!(endpoint(cluster(&s, "pg-primary"), sb)["role"], "replica");
    // The replica's lag is measured (0 when everything received is replayed).
    let lag = endpoint(cluster(&s, "pg-replicas"), sb)["lag_seconds"]
        .as_f64()
        .expect("lag measured");
    assert!(lag < 5.0, "{lag}");
    // Real clients: rw reaches the primary, ro the standby.
    assert_eq!(in_recovery(rw).unwrap(), "f");
    assert_eq!(in_recovery(ro).unwrap(), "t");
    // The password is printed nowhere: not in the state API, not in the logs.
    let all = format!("{s}{}{}", gw.stderr(), gw.stdout());
    assert!(!all.contains(pgfix::NINEFOLD_PASSWORD), "password leaked");
    assert!(!all.contains(pgfix::MD5_PASSWORD), "password leaked");
    assert!(!all.contains("clear-secret"), "password leaked");
    // Per-connection access lines and counters.
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    let line = format!("ninefold_tcp_connections_total{{endpoint=\"{p}\",listener=\"pg-rw\"}} 1");
    assert!(m.contains(&line), "{m}");
    assert!(m.contains("ninefold_tcp_bytes_total"), "{m}");
    assert!(gw.stdout().contains(" pg-rw TCP "), "{}", gw.stdout());
    // `/health` says the tcp clusters are fine, the failing check's cluster is down.
    let h = get(&gw.admin_url("/health")).await.json();
    assert_eq!(h["checks"]["pg-primary"], "ok", "{h}");
    assert_eq!(h["checks"]["pg-replicas"], "degraded", "{h}");
    assert_eq!(h["checks"]["pg-bad"], "down", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_fences_the_old_primary_and_two_primaries_are_refused() {
    if !pgfix::require("failover_fences_the_old_primary_and_two_primaries_are_refused") {
        return;
    }
    let mut pair = Pair::start();
    let (p, sb) = (pair.primary.addr(), pair.standby.addr());
    let gw = start(&config(&pair, "5s", ""));
    let rw = gw.bound("pg-rw").await;
    until(&gw, Duration::from_secs(10), "primary found", |s| {
        cluster(s, "pg-primary")["primary"]["current"] == p.to_string()
    })
    .await;
    assert_eq!(
        cluster(&state(&gw).await, "pg-primary")["primary"]["generation"],
        1
    );
    Pg::psql_at(
        rw,
        pgfix::APP_USER,
        pgfix::APP_PASSWORD,
        pgfix::APP_DB,
        "create table t (id serial primary key, at timestamptz default now())",
    )
    .unwrap();
    // A session open to the primary through the gateway.
    let mut old = session(rw).await;
    assert_eq!(
        old.query("select 1").await.unwrap()[0].as_deref(),
        Some("1")
    );

    // The primary dies.
    let t0 = Instant::now();
    pair.primary.kill9();
    let killed = t0.elapsed();
    // The check fails (interval × unhealthy_threshold at most, plus a probe timeout).
    until(&gw, Duration::from_secs(5), "old primary out", |s| {
        endpoint(cluster(s, "pg-primary"), p)["health"] == "unhealthy"
    })
    .await;
    let marked_down = t0.elapsed();
    // The session to the old primary ended: the client sees it, not a hang.
    let seen = tokio::time::timeout(Duration::from_secs(5), old.query("select 1"))
        .await
        .expect("the old session must not hang");
    assert!(seen.is_err(), "the old session still answers: {seen:?}");
    let seen_closed = t0.elapsed();
    // Promote the standby; the first write through pg-rw.
    let t_promote = Instant::now();
    pair.standby.promote();
    let promoted = t0.elapsed();
    let promote_took = t_promote.elapsed();
    let mut first_write = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = Pg::psql_at(
            rw,
            pgfix::APP_USER,
            pgfix::APP_PASSWORD,
            pgfix::APP_DB,
            "insert into t default values returning id",
        );
        if r.is_ok() {
            first_write = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_write = first_write.expect("writes through pg-rw resume");
    // Bound of the issue: interval × unhealthy_threshold + promotion + one interval
    // (and the probe timeout and psql's own start, on a shared 2-core machine).
    let bound = Duration::from_millis(INTERVAL_MS * u64::from(UNHEALTHY) + INTERVAL_MS + 150)
        + promote_took
        + Duration::from_millis(1000);
    let after_promote = first_write.saturating_sub(promoted);
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    let fenced = m
        .lines()
        .find(|l| l.starts_with(&format!("ninefold_tcp_sessions_closed_total{{endpoint=\"{p}\",listener=\"pg-rw\",reason=\"fenced\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("0")
        .to_owned();
    eprintln!(
        "failover timeline: killed {killed:?}, marked down {marked_down:?}, promoted {promoted:?} \
         (pg_ctl promote took {promote_took:?}), first write {first_write:?} \
         ({after_promote:?} after promotion); old sessions closed by the fence: {fenced} \
         (the one held was seen closed at {seen_closed:?})"
    );
    assert!(
        first_write <= marked_down + bound,
        "first write at {first_write:?}, bound {:?}",
        marked_down + bound
    );
    let s = state(&gw).await;
    let primary = &cluster(&s, "pg-primary")["primary"];
    assert_eq!(primary["current"], sb.to_string(), "{primary}");
    assert_eq!(primary["generation"], 2, "{primary}");
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        m.contains("ninefold_primary_generation{cluster=\"pg-primary\"} 2"),
        "{m}"
    );
    assert_eq!(
        gw.stderr().matches("primary switched").count(),
        1,
        "logged once"
    );

    // Split brain: the old primary comes back, still a primary.
    pair.primary.start();
    until(&gw, Duration::from_secs(5), "two primaries seen", |s| {
        cluster(s, "pg-primary")["primary"]["two_primaries"] == true
    })
    .await;
    // (Both endpoints claim primary: the replica cluster has none either.)
    let h = get(&gw.admin_url("/health")).await.json();
    assert_eq!(h["checks"]["pg-primary"], "down", "{h}");
    let why = h["reasons"]["pg-primary"].as_str().unwrap();
    assert!(
        why.contains(&p.to_string()) && why.contains(&sb.to_string()),
        "{why}"
    );
    // New connections are refused: closed at once.
    let refused = in_recovery(rw);
    assert!(refused.is_err(), "a connection was admitted: {refused:?}");
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        m.lines().any(|l| l.starts_with(
            "ninefold_tcp_refused_total{listener=\"pg-rw\",reason=\"two_primaries\"}"
        ) && !l.ends_with(" 0")),
        "{m}"
    );
    let log = gw.stderr();
    assert!(
        log.contains("two primaries")
            && log.contains(&p.to_string())
            && log.contains(&sb.to_string()),
        "{log}"
    );
    // keep_current: the same split, resolved to the current generation's primary
    // (the promoted one), by a reload.
    let keep = config(&pair, "5s", "").replace(
        "sslmode: prefer}",
        "sslmode: prefer, two_primaries: keep_current}",
    );
    assert!(keep.contains("keep_current"));
    gw.rewrite(&keep);
    gw.signal("HUP");
    until(&gw, Duration::from_secs(5), "keep_current applied", |s| {
        cluster(s, "pg-primary")["primary"]["on_two_primaries"] == "keep_current"
    })
    .await;
    let port = Pg::psql_at(
        rw,
        pgfix::APP_USER,
        pgfix::APP_PASSWORD,
        pgfix::APP_DB,
        "select inet_server_port()",
    )
    .expect("keep_current admits connections");
    assert_eq!(
        port,
        sb.port().to_string(),
        "to the current generation's primary"
    );
    let h = get(&gw.admin_url("/health")).await.json();
    assert_eq!(h["checks"]["pg-primary"], "ok", "{h}");
    // One stops claiming it: the cluster serves again, on the promoted one.
    pair.primary.stop();
    until(&gw, Duration::from_secs(5), "split over", |s| {
        cluster(s, "pg-primary")["primary"]["two_primaries"] == false
    })
    .await;
    assert_eq!(in_recovery(rw).unwrap(), "f");
    let s = state(&gw).await;
    assert_eq!(
        cluster(&s, "pg-primary")["primary"]["current"],
        sb.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_the_ro_set_and_reads_fall_back() {
    if !pgfix::require("a_lagging_replica_leaves_the_ro_set_and_reads_fall_back") {
        return;
    }
    let pair = Pair::start();
    let sb = pair.standby.addr();
    pair.primary
        .psql(
            pgfix::APP_USER,
            pgfix::APP_PASSWORD,
            pgfix::APP_DB,
            "create table w (id serial primary key)",
        )
        .unwrap();
    assert!(pair.wait_replicated(Duration::from_secs(10)));
    let gw = start(&config(&pair, "1s", ""));
    let ro = gw.bound("pg-ro").await;
    until(&gw, Duration::from_secs(10), "replica in", |s| {
        healthy(s, "pg-replicas", sb)
    })
    .await;
    // A read session held on the replica: kept when it leaves for lag (drained).
    let mut kept = session(ro).await;
    assert_eq!(
        kept.query("select pg_is_in_recovery()").await.unwrap()[0].as_deref(),
        Some("t")
    );
    assert_eq!(in_recovery(ro).unwrap(), "t");
    pair.standby.sql("select pg_wal_replay_pause()").unwrap();
    let paused = Instant::now();
    // Writes go on on the primary.
    let writer = {
        let primary = pair.primary.addr();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if let Err(e) = Pg::psql_at(
                    primary,
                    pgfix::APP_USER,
                    pgfix::APP_PASSWORD,
                    pgfix::APP_DB,
                    "insert into w default values",
                ) {
                    return Some(e);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
    };
    until(&gw, Duration::from_secs(8), "replica out for lag", |s| {
        let e = endpoint(cluster(s, "pg-replicas"), sb);
        e["health"] == "unhealthy" && e["why"].as_str().unwrap_or("").contains("lag")
    })
    .await;
    let s = state(&gw).await;
    eprintln!(
        "lag: replay paused, replica out after {:?}: {}",
        paused.elapsed(),
        endpoint(cluster(&s, "pg-replicas"), sb)["why"]
    );
    // Reads fall back to the primary.
    let fell_back = in_recovery(ro);
    assert_eq!(
        fell_back.as_deref(),
        Ok("f"),
        "{}\n{}",
        pair.primary.log(),
        gw.stderr()
    );
    // The held session was kept.
    assert_eq!(
        kept.query("select 1").await.unwrap()[0].as_deref(),
        Some("1")
    );
    if let Some(e) = writer.join().unwrap() {
        panic!("a write on the primary failed: {e}\n{}", pair.primary.log());
    }
    pair.standby.sql("select pg_wal_replay_resume()").unwrap();
    let resumed = Instant::now();
    until(&gw, Duration::from_secs(8), "replica back", |s| {
        healthy(s, "pg-replicas", sb)
    })
    .await;
    eprintln!(
        "lag: replay resumed, replica back after {:?}",
        resumed.elapsed()
    );
    assert_eq!(in_recovery(ro).unwrap(), "t");
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("ninefold_tcp_sessions_closed_total")
                && l.contains("fenced")
                && !l.ends_with(" 0")),
        "no session was fenced for lag: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_gateway() {
    if !pgfix::require("pgbench_runs_through_the_gateway") {
        return;
    }
    let pair = Pair::start();
    let gw = start(&config(&pair, "5s", ""));
    let rw = gw.bound("pg-rw").await;
    until(&gw, Duration::from_secs(10), "primary found", |s| {
        healthy(s, "pg-primary", pair.primary.addr())
    })
    .await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(pgfix::bin("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &rw.port().to_string(),
                "-U",
                pgfix::APP_USER,
            ])
            .args(args)
            .arg(pgfix::APP_DB)
            .env("PGPASSWORD", pgfix::APP_PASSWORD)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pgbench {args:?}: {text}");
        text
    };
    run(&["-i", "-s", "1", "-q"]);
    let out = run(&["-c", "4", "-j", "2", "-t", "50", "-S"]);
    assert!(out.contains("number of failed transactions: 0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_az_example_passes_the_lint_and_serves() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/postgres-multi-az.yaml"
    );
    let out = std::process::Command::new(support::bin())
        .args(["check", "-c", path, "--deny-warnings"])
        .env("NINEFOLD_PG_PASSWORD", "x")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 HA warnings"), "{text}");
    if !pgfix::require("the_multi_az_example_passes_the_lint_and_serves") {
        return;
    }
    let pair = Pair::start();
    let yaml = std::fs::read_to_string(path)
        .unwrap()
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:6432", "127.0.0.1:0")
        .replace("127.0.0.1:6433", "127.0.0.1:0")
        .replace("10.0.1.5:5432", &pair.primary.addr().to_string())
        .replace("10.0.2.5:5432", &pair.standby.addr().to_string())
        .replace("${NINEFOLD_PG_PASSWORD}", "${TEST_PG_PASSWORD}");
    let gw = start(&yaml);
    let (rw, ro) = (gw.bound("pg-rw").await, gw.bound("pg-ro").await);
    until(&gw, Duration::from_secs(10), "roles decided", |s| {
        healthy(s, "pg-primary", pair.primary.addr())
            && healthy(s, "pg-replicas", pair.standby.addr())
    })
    .await;
    assert_eq!(in_recovery(rw).unwrap(), "f");
    assert_eq!(in_recovery(ro).unwrap(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_check_closes_no_session() {
    if !pgfix::require("a_flapping_check_closes_no_session") {
        return;
    }
    let pair = Pair::start();
    let p = pair.primary.addr();
    // Thresholds of 2; probes 500 ms apart, each done within 150 ms, so there is room
    // to end each stop before the next probe.
    let yaml = config(&pair, "5s", "")
        .replacen(&format!("interval: {INTERVAL_MS}ms"), "interval: 500ms", 1)
        .replacen("healthy_threshold: 1", "healthy_threshold: 2", 1);
    let gw = start(&yaml);
    let rw = gw.bound("pg-rw").await;
    until(&gw, Duration::from_secs(10), "primary up", |s| {
        healthy(s, "pg-primary", p)
    })
    .await;
    let mut held = session(rw).await;
    let postmaster = pair.primary.pid().expect("the primary runs") as i32;
    let check = |s: &serde_json::Value| endpoint(cluster(s, "pg-primary"), p)["last_check"].clone();
    for round in 0..3 {
        // A stopped postmaster accepts no login: the next probe times out, once.
        assert_eq!(signal(postmaster, libc::SIGSTOP), 0);
        until(&gw, Duration::from_secs(5), "one failure", |s| {
            check(s)["failures_in_a_row"] == 1
        })
        .await;
        assert_eq!(signal(postmaster, libc::SIGCONT), 0);
        until(&gw, Duration::from_secs(5), "a pass again", |s| {
            check(s)["passes_in_a_row"].as_u64() >= Some(1)
        })
        .await;
        let s = state(&gw).await;
        assert_eq!(
            endpoint(cluster(&s, "pg-primary"), p)["health"],
            "healthy",
            "round {round}: {s}"
        );
        // The session held through it all still answers.
        assert_eq!(
            held.query("select 1").await.unwrap()[0].as_deref(),
            Some("1"),
            "round {round}"
        );
    }
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("ninefold_tcp_sessions_closed_total") && !l.ends_with(" 0")),
        "{m}"
    );
}

/// `kill(2)` of a process this test started.
fn signal(pid: i32, sig: i32) -> i32 {
    // SAFETY: kill(2) reads and writes no memory of ours; `pid` is the postmaster this
    // test started, alive while its `Pair` is.
    unsafe { libc::kill(pid, sig) }
}
