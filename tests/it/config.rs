//! Configuration errors: `ninefold check` and `ninefold serve` name file, line, column
//! and key; cross references are checked; `serve` refuses what it does not run.

use crate::support::*;

#[test]
fn valid_config_checks_ok() {
    let (code, out, err) = check(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    routes: [{match: {path_prefix: /}, cluster: app}]\nclusters:\n  - {name: app, endpoints: [{address: 127.0.0.1:9000}]}\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn invalid_address_names_file_line_column_and_key() {
    let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /}
        cluster: api
clusters:
  - name: api
    endpoints:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:99999
";
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "ninefold.yaml:11:18: clusters[0].endpoints[1].address: invalid socket address \"127.0.0.1:99999\""
        ),
        "{err}"
    );
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /}
        cluster: api
        timout: 5s
clusters:
  - {name: api, endpoints: [{address: 127.0.0.1:9001}]}
";
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2);
    assert!(err.starts_with("ninefold.yaml:7:"), "{err}");
    assert!(err.contains("timout"), "{err}");
    assert!(err.contains("listeners[0].routes[0]"), "{err}");
}

#[test]
fn every_error_is_reported_in_one_run() {
    let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - {match: {path_prefix: /}, cluster: nope, timeout: 5 parsecs}
clusters:
  - {name: api, lb: fastest, endpoints: [{address: 127.0.0.1:9001}]}
";
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2);
    assert!(err.contains("ninefold.yaml:5:"), "{err}");
    assert!(
        err.contains("listeners[0].routes[0].cluster: unknown cluster \"nope\""),
        "{err}"
    );
    assert!(
        err.contains("listeners[0].routes[0].timeout: invalid duration"),
        "{err}"
    );
    assert!(
        err.contains("ninefold.yaml:7:") && err.contains("clusters[0].lb"),
        "{err}"
    );
}

#[test]
fn env_interpolation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ninefold.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: web\n    bind: ${NF_TEST_BIND}\n    routes: [{match: {path_prefix: /}, cluster: app}]\nclusters:\n  - {name: app, endpoints: [{address: \"${NF_TEST_UP}\"}]}\n",
    )
    .unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = std::process::Command::new(bin());
        c.args(["check", "-c"]).arg(&path);
        c.env_remove("NF_TEST_BIND").env_remove("NF_TEST_UP");
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        ("NF_TEST_BIND", "127.0.0.1:8080"),
        ("NF_TEST_UP", "127.0.0.1:9000"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(&[
        ("NF_TEST_BIND", "127.0.0.1:8080"),
        ("NF_TEST_UP", "127.0.0.1:99999"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains(":6:") && err.contains("clusters[0].endpoints[0].address"),
        "{err}"
    );
    let (code, err) = run(&[("NF_TEST_UP", "127.0.0.1:9000")]);
    assert_eq!(code, 2);
    assert!(err.contains(":3:") && err.contains("NF_TEST_BIND"), "{err}");
}

#[test]
fn serve_runs_the_tcp_tier_keys() {
    // Every key of the contract is built: check has no "not built yet" note for the
    // TCP tier's keys, and serve runs them.
    let yaml = "\
admin: {bind: \"127.0.0.1:0\"}
listeners:
  - {name: pg-rw, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg, idle_timeout: 30m, bulkhead: {max_concurrent: 100}}
  - {name: pg-ro, bind: \"127.0.0.1:0\", protocol: tcp, cluster: ro, fallback_cluster: pg}
clusters:
  - name: pg
    on_marked_down: shutdown_sessions
    endpoints: [{address: 127.0.0.1:9001, zone: a}, {address: 127.0.0.1:9002, zone: b}]
    health_check: {postgres: {role: primary, user: ninefold, password: secret, two_primaries: keep_current}, interval: 1s, timeout: 500ms}
  - name: ro
    endpoints: [{address: 127.0.0.1:9001}, {address: 127.0.0.1:9002}]
    health_check: {postgres: {role: replica, max_replication_lag: 16MB}}
";
    let (code, out, err) = check(yaml);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("not built yet"), "{out}");
    assert!(
        !out.contains("secret") && !err.contains("secret"),
        "{out}{err}"
    );
    Gateway::try_start(yaml).expect("serve runs it");
}

#[test]
fn tcp_tier_keys_are_checked() {
    let (code, _, err) = check(
        "\
listeners:
  - {name: a, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg, fallback_cluster: nope}
  - {name: b, bind: \"127.0.0.1:0\", idle_timeout: 5s, routes: [{cluster: pg}]}
clusters:
  - name: pg
    on_marked_down: kill
    endpoints: [{address: 127.0.0.1:9001}]
    health_check: {postgres: {role: leader, sslmode: verify-full, max_replication_lag: soon}}
",
    );
    assert_eq!(code, 2);
    for want in [
        "listeners[0].fallback_cluster: unknown cluster \"nope\"",
        "listeners[1].idle_timeout: only tcp listeners take idle_timeout",
        "clusters[0].on_marked_down: must be shutdown_sessions or keep",
        "clusters[0].health_check.postgres.role: must be primary or replica",
        "clusters[0].health_check.postgres.sslmode: must be disable, prefer or require",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn non_loopback_admin_needs_a_token() {
    let (code, _, err) = check("admin: {bind: \"0.0.0.0:9901\"}\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("admin.bind") && err.contains("admin.token"),
        "{err}"
    );
    let (code, _, _) = check("admin: {bind: \"0.0.0.0:9901\", token: s3cret}\n");
    assert_eq!(code, 0);
}

#[test]
fn every_example_checks() {
    // examples/ holds the whole contract (full-contract.yaml) and one file per use;
    // check reads every key of each.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let o = std::process::Command::new(bin())
            .args(["check", "-c"])
            .arg(&path)
            .env("NINEFOLD_PG_PASSWORD", "x")
            // fleet-dns.yaml: one gateway of three.
            .envs(FLEET_ENV)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        n += 1;
    }
    assert!(n >= 4, "examples found: {n}");
}

#[test]
fn autoscale_and_discovery_keys_are_checked() {
    let (code, _, err) = check(
        "\
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:9001}]
    max_removed_per_update: 50%
    autoscale:
      min: 4
      max: 2
      target: {cpu: 60%, in_flight_per_endpoint: 5}
      hook: {command: [x], webhook: \"http://127.0.0.1:1/\"}
  - name: b
    endpoints: [{address: 127.0.0.1:9002}]
    autoscale:
      target: {in_flight_per_endpoint: 0}
      cpu_metric: {cores: 0}
      tolerance: 100%
  - name: c
    discovery:
      dns: {name: api.internal, type: SRV, port: 80}
  - name: d
    discovery: {}
",
    );
    assert_eq!(code, 2);
    for want in [
        "clusters[0].max_removed_per_update: guards discovery updates",
        "clusters[0].autoscale.max: must be at least min (4), got 2",
        "clusters[0].autoscale.target: needs exactly one of",
        "clusters[0].autoscale.hook: needs exactly one of command",
        "clusters[1].autoscale.target.in_flight_per_endpoint: must be greater than zero",
        "clusters[1].autoscale.cpu_metric.cores: must be greater than zero",
        "clusters[1].autoscale.cpu_metric: is read only by target: {cpu: ...}",
        "clusters[1].autoscale.tolerance: must be in [0%, 100%)",
        "clusters[2].discovery.dns.port: SRV records carry their own ports",
        "clusters[3].discovery: needs exactly one source, dns or file",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
