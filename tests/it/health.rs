//! Active health checks end to end: HTTP and TCP probes against real backends, the
//! state API and `/health` following them, reloads reconciling probes, and failover
//! to a backup priority level driven by the checks.

use crate::support::*;
use hyper::Request;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A socket bound to a loopback port but not listening: connects to it are refused,
/// and nobody else can take the port while the test holds it (unlike `free_port`).
fn refusing_port() -> (socket2::Socket, SocketAddr) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    (sock, addr)
}

/// Config: listener `web`, one route to cluster `app` with `check` (a YAML flow map,
/// or empty for none) over `endpoints` (address, priority).
fn config(check: &str, endpoints: &[(SocketAddr, u32)]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(a, p)| format!("      - {{address: \"{a}\", priority: {p}}}\n"))
        .collect();
    let check = if check.is_empty() {
        String::new()
    } else {
        format!("    health_check: {check}\n")
    };
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 2
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: main
        match: {{path_prefix: /}}
        cluster: app
clusters:
  - name: app
{check}    endpoints:
{eps}"
    )
}

/// The state API's view of endpoint `addr` of cluster `app`.
async fn endpoint(gw: &Gateway, addr: SocketAddr) -> Value {
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    let c = s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == addr.to_string())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Polls the state of `addr` until `pred` holds; fails after `within`.
async fn until_endpoint(
    gw: &Gateway,
    addr: SocketAddr,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let e = endpoint(gw, addr).await;
        if pred(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "endpoint {addr} did not get there within {within:?}; last: {e}\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text without terminal colour escapes (the gateway's log is coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn metrics(gw: &Gateway) -> String {
    String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned()
}

/// Polls `/metrics` until `pred` holds (the gauge is written just after the health
/// the state API shows); fails after two seconds.
async fn until_metrics(gw: &Gateway, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let m = metrics(gw).await;
        if pred(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "metrics never matched:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gateway's log lines about health transitions, once there are `n` of them
/// (stderr is read by another thread); fails after two seconds.
async fn transitions(gw: &Gateway, n: usize) -> Vec<String> {
    let lines = || -> Vec<String> {
        strip_ansi(&gw.stderr())
            .lines()
            .filter(|l| l.contains("endpoint health changed"))
            .map(str::to_owned)
            .collect()
    };
    eventually(Duration::from_secs(2), || lines().len() >= n).await;
    let l = lines();
    assert_eq!(l.len(), n, "{l:#?}");
    l
}

/// The gauge's series of one endpoint, without its value.
fn series(cluster: &str, endpoint: SocketAddr) -> String {
    format!("ninefold_endpoint_healthy{{cluster=\"{cluster}\",endpoint=\"{endpoint}\"}}")
}

/// The gauge's line of one endpoint with value `v`.
fn gauge(cluster: &str, endpoint: SocketAddr, v: u8) -> String {
    format!("{} {v}", series(cluster, endpoint))
}

const HTTP_CHECK: &str = "{http: {path: /health, expect_status: [200], expect_json_status: ok}, \
                          interval: 200ms, timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 2}";

#[tokio::test]
async fn http_check_follows_the_json_status_and_a_reload_removing_it_resets_to_unknown() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&config(HTTP_CHECK, &[(a.addr, 0)]));
    let up = Duration::from_secs(3);

    // (Health and the last check are two reads in the state API: wait for both.)
    until_endpoint(&gw, a.addr, up, |e| {
        e["health"] == "healthy" && e["last_check"]["result"] == "ok"
    })
    .await;
    until_metrics(&gw, |m| m.contains(&gauge("app", a.addr, 1))).await;

    // A degraded JSON status takes it out, with the reason in the state API.
    a.set_health(200, r#"{"status":"degraded"}"#);
    // `available` is read before `out` and `health`, `last_check` before all three.
    let e = until_endpoint(&gw, a.addr, up, |e| {
        e["available"] == false && e["last_check"]["failures_in_a_row"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(e["health"], "unhealthy");
    assert_eq!(e["out"], "unhealthy");
    assert_eq!(e["last_check"]["result"], r#"json status "degraded""#);
    until_metrics(&gw, |m| m.contains(&gauge("app", a.addr, 0))).await;
    let h = get(&gw.admin_url("/health")).await;
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "down");

    // A 503 keeps it out, with its own reason.
    a.set_health(503, "");
    until_endpoint(&gw, a.addr, up, |e| {
        e["last_check"]["result"] == "status 503"
    })
    .await;

    // Back: healthy again after healthy_threshold passes in a row.
    a.set_health(200, HEALTH_OK);
    let e = until_endpoint(&gw, a.addr, up, |e| {
        e["health"] == "healthy" && e["last_check"]["passes_in_a_row"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(e["out"], Value::Null);
    assert_eq!(get(&gw.url("web", "/")).await.status, 200);

    // One log line per transition: unknown → healthy → unhealthy → healthy.
    let lines = transitions(&gw, 3).await;
    let err = lines.join("\n");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("from=unknown to=healthy reason=ok"),
        "{err}"
    );
    assert!(
        lines[1].contains("WARN")
            && lines[1].contains(&format!("cluster=app endpoint={}", a.addr))
            && lines[1].contains(r#"from=healthy to=unhealthy reason=json status "degraded""#),
        "{err}"
    );
    assert!(
        lines[2].contains("INFO") && lines[2].contains("to=healthy reason=ok"),
        "{err}"
    );

    // A reload without the check: health back to unknown, the gauge's label gone.
    a.set_health(503, "");
    until_endpoint(&gw, a.addr, up, |e| e["health"] == "unhealthy").await;
    gw.rewrite(&config("", &[(a.addr, 0)]));
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let e = until_endpoint(&gw, a.addr, up, |e| {
        e["health"] == "unknown" && e["last_check"].is_null()
    })
    .await;
    assert_eq!(e["available"], true);
    until_metrics(&gw, |m| !m.contains("ninefold_endpoint_healthy{")).await;
}

/// A `protocol: http2` cluster is probed over HTTP/2 with prior knowledge: its
/// endpoints may speak nothing else (nginx's `listen ... http2` here, as a gRPC server
/// would), and an HTTP/1.1 probe called such an endpoint unhealthy.
#[tokio::test]
async fn an_http2_cluster_is_probed_over_http2() {
    let Some(origin) = crate::conformance::anchors::Anchor::nginx_h2_origin_for_test() else {
        return;
    };
    let addr = origin.addrs[0];
    let check = "{http: {path: /health, expect_status: [200]}, interval: 200ms, \
                 timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1}";
    let yaml = config(check, &[(addr, 0)])
        .replace("  - name: app\n", "  - name: app\n    protocol: http2\n");
    let gw = Gateway::start(&yaml);
    // Two passes in a row: the first probe alone could be the start state's.
    let e = until_endpoint(&gw, addr, Duration::from_secs(3), |e| {
        e["last_check"]["passes_in_a_row"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(e["health"], "healthy", "{e}");
    assert_eq!(e["last_check"]["result"], "ok", "{e}");
    let a = get(&gw.url("web", "/x")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

#[tokio::test]
async fn tcp_check_finds_a_refusing_endpoint_and_health_says_degraded_then_down() {
    let a = Backend::start("a").await;
    let (_dead1, d1) = refusing_port();
    let (_dead2, d2) = refusing_port();
    let check = "{tcp: {}, interval: 200ms, timeout: 150ms}";
    let gw = Gateway::start(&config(check, &[(a.addr, 0), (d1, 0)]));

    // The first probe decides: within the initial delay (< interval) plus one probe.
    let t = Instant::now();
    let e = until_endpoint(&gw, d1, Duration::from_secs(3), |e| {
        e["health"] == "unhealthy" && !e["last_check"].is_null()
    })
    .await;
    let took = t.elapsed();
    let result = e["last_check"]["result"].as_str().unwrap_or_default();
    assert!(result.starts_with("connect: "), "{e}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    until_endpoint(&gw, a.addr, Duration::from_secs(3), |e| {
        e["health"] == "healthy"
    })
    .await;
    let h = get(&gw.admin_url("/health")).await;
    assert_eq!(h.status, 200);
    assert_eq!(
        h.json(),
        serde_json::json!({"status": "degraded", "checks": {"app": "degraded"}})
    );
    until_metrics(&gw, |m| {
        m.contains(&gauge("app", a.addr, 1)) && m.contains(&gauge("app", d1, 0))
    })
    .await;
    // Requests avoid the dead endpoint: no 502.
    for _ in 0..10 {
        assert_eq!(get(&gw.url("web", "/")).await.status, 200);
    }

    // A reload to two refusing endpoints: the one kept stays unhealthy, the new one is
    // probed, and the removed one's gauge goes away.
    gw.rewrite(&config(check, &[(d1, 0), (d2, 0)]));
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    until_endpoint(&gw, d2, Duration::from_secs(3), |e| {
        e["health"] == "unhealthy"
    })
    .await;
    let h = get(&gw.admin_url("/health")).await;
    assert_eq!(h.status, 503);
    assert_eq!(
        h.json(),
        serde_json::json!({"status": "down", "checks": {"app": "down"}})
    );
    until_metrics(&gw, |m| {
        !m.contains(&series("app", a.addr)) && m.contains(&gauge("app", d2, 0))
    })
    .await;
}

/// Sends requests until `n` in a row were answered by one of `by`; returns when the
/// first of them was sent, or fails after `within`.
async fn until_all_from(gw: &Gateway, by: &[&str], n: usize, within: Duration) -> Instant {
    let c = client();
    let deadline = Instant::now() + within;
    let mut streak: Option<Instant> = None;
    let mut run = 0;
    loop {
        let sent = Instant::now();
        let r = send(&c, Request::get(gw.url("web", "/")).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        if by.contains(&r.header("x-backend").unwrap_or("")) {
            streak.get_or_insert(sent);
            run += 1;
            if run == n {
                return streak.unwrap_or(sent);
            }
        } else {
            streak = None;
            run = 0;
        }
        assert!(
            Instant::now() < deadline,
            "traffic did not move to {by:?} within {within:?}"
        );
    }
}

#[tokio::test]
async fn active_passive_fails_over_to_the_backup_and_back() {
    let p1 = Backend::start("p1").await;
    let p2 = Backend::start("p2").await;
    let backup = Backend::start("backup").await;
    let interval = Duration::from_millis(200);
    let check = "{http: {path: /health, expect_status: [200], expect_json_status: ok}, \
                 interval: 200ms, timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 2}";
    let gw = Gateway::start(&config(
        check,
        &[(p1.addr, 0), (p2.addr, 0), (backup.addr, 1)],
    ));
    for b in [&p1, &p2, &backup] {
        until_endpoint(&gw, b.addr, Duration::from_secs(3), |e| {
            e["health"] == "healthy"
        })
        .await;
    }
    until_all_from(&gw, &["p1", "p2"], 20, Duration::from_secs(3)).await;

    // The primaries' checks fail: all traffic on the backup within
    // interval × unhealthy_threshold + one interval (jitter and probe time included).
    let failed = Instant::now();
    p1.set_health(503, "");
    p2.set_health(503, "");
    let budget = interval * 2 + interval;
    let moved = until_all_from(&gw, &["backup"], 20, Duration::from_secs(5)).await;
    let took = moved.saturating_duration_since(failed);
    eprintln!("active-passive: backup serves everything {took:?} after the primaries failed");
    assert!(took <= budget, "took {took:?}, budget {budget:?}");

    // Restored: back to the primaries after healthy_threshold passes.
    let restored = Instant::now();
    p1.set_health(200, HEALTH_OK);
    p2.set_health(200, HEALTH_OK);
    let back = until_all_from(&gw, &["p1", "p2"], 20, Duration::from_secs(5)).await;
    let took = back.saturating_duration_since(restored);
    eprintln!("active-passive: primaries serve everything {took:?} after they recovered");
    assert!(took <= budget, "took {took:?}, budget {budget:?}");
    assert!(p1.hits() > 0 && p2.hits() > 0);
}
