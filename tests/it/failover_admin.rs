//! Manual failover through the admin API (issue 9): drain and enable an endpoint, with
//! in-flight requests finishing, the drain surviving a reload, the token required, and
//! the live-state metric families at `/metrics`.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "s3cret";

/// Two backends behind route `main`, the admin token set, and a cluster `v6` that no
/// route uses, for addresses in IPv6 form.
fn config(a: &Backend, b: &Backend, extra_route: &str) -> String {
    let yaml = simple_config(&[a, b], "", extra_route).replace(
        "admin: {bind: \"127.0.0.1:0\"}",
        &format!("admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}"),
    );
    format!("{yaml}  - name: v6\n    endpoints:\n      - {{address: \"[::1]:9\"}}\n")
}

fn endpoint_url(gw: &Gateway, cluster: &str, address: &str, action: &str) -> String {
    gw.admin_url(&format!(
        "/api/v1/clusters/{cluster}/endpoints/{address}/{action}"
    ))
}

/// The state API's entry for `address` in cluster `app`.
async fn endpoint_state(gw: &Gateway, address: &str) -> serde_json::Value {
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap()["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {address} in {s}"))
}

#[tokio::test]
async fn drain_moves_new_traffic_lets_in_flight_finish_survives_reload_and_enable_restores() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&a, &b, ""));
    let b_addr = b.addr.to_string();

    // A slow request in flight on b: send slow requests until one lands there (round
    // robin puts one of two there).
    let mut slow_on_b = None;
    for _ in 0..4 {
        let before = (a.hits(), b.hits());
        let url = gw.url("web", "/slow/1500");
        let slow = tokio::spawn(async move { get(&url).await });
        assert!(
            eventually(Duration::from_secs(5), || a.hits() + b.hits()
                > before.0 + before.1)
            .await
        );
        if b.hits() > before.1 {
            slow_on_b = Some(slow);
            break;
        }
    }
    let slow_on_b = slow_on_b.expect("round robin sends a request to b");

    // Without a token, or with a wrong one: 401 and the challenge.
    for token in [None, Some("wrong")] {
        let r = post(&endpoint_url(&gw, "app", &b_addr, "drain"), token).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(endpoint_state(&gw, &b_addr).await["drained"], false);

    // Drain b.
    let r = post(&endpoint_url(&gw, "app", &b_addr, "drain"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["endpoint"]["drained"], true);
    assert_eq!(j["endpoint"]["out"], "drained");
    assert!(
        j["endpoint"]["why"]
            .as_str()
            .unwrap()
            .starts_with("drained "),
        "{j}"
    );
    // Draining again changes nothing, and says so.
    let r = post(&endpoint_url(&gw, "app", &b_addr, "drain"), Some(TOKEN)).await;
    assert_eq!(r.json()["changed"], false);
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("endpoint drained by the admin API"))
        .await
    );

    // New requests all go to a.
    let b_hits = b.hits();
    get_ok_n(&gw.url("web", "/"), 20).await;
    assert_eq!(b.hits(), b_hits, "a drained endpoint got new requests");

    // The request in flight on b finishes normally.
    let slow = slow_on_b.await.unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(slow.header("x-backend"), Some("b"));

    // A reload with an unrelated change keeps the drain.
    gw.rewrite(&config(&a, &b, "        timeout: 7s\n"));
    let r = post(&gw.admin_url("/api/v1/reload"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    assert_eq!(s["generation"], 2);
    assert_eq!(s["listeners"][0]["routes"][0]["timeout_ms"], 7000);
    let st = endpoint_state(&gw, &b_addr).await;
    assert_eq!(st["drained"], true, "{st}");
    assert_eq!(st["available"], false);
    get_ok_n(&gw.url("web", "/"), 10).await;
    assert_eq!(b.hits(), b_hits, "the drain did not survive the reload");

    // Enable: traffic returns.
    let r = post(&endpoint_url(&gw, "app", &b_addr, "enable"), Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["endpoint"]["drained"], false);
    assert_eq!(j["endpoint"]["available"], true);
    assert!(j["endpoint"]["why"].is_null(), "{j}");
    get_ok_n(&gw.url("web", "/"), 10).await;
    assert!(b.hits() >= b_hits + 4, "traffic did not return to b");
}

#[tokio::test]
async fn drain_answers_404_for_unknown_names_and_takes_ipv6_either_way() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&a, &b, ""));

    for (cluster, address) in [("nope", a.addr.to_string()), ("app", "127.0.0.1:1".into())] {
        let r = post(&endpoint_url(&gw, cluster, &address, "drain"), Some(TOKEN)).await;
        assert_eq!(r.status, 404);
        assert!(r.json()["error"].as_str().is_some());
    }
    let r = post(
        &endpoint_url(&gw, "app", "not-an-address", "drain"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 404);

    // `[::1]:9` percent-encoded, then raw; `127.0.0.1:port` with an encoded colon.
    let r = post(
        &endpoint_url(&gw, "v6", "%5B%3A%3A1%5D%3A9", "drain"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["endpoint"]["address"], "[::1]:9");
    assert_eq!(r.json()["endpoint"]["drained"], true);
    let r = post(&endpoint_url(&gw, "v6", "[::1]:9", "enable"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["endpoint"]["drained"], false);
    let encoded = a.addr.to_string().replace(':', "%3A");
    let r = post(&endpoint_url(&gw, "app", &encoded, "drain"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn metrics_export_live_endpoint_cluster_and_budget_state() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&a, &b, ""));
    get_ok_n(&gw.url("web", "/"), 4).await;
    let r = post(
        &endpoint_url(&gw, "app", &b.addr.to_string(), "drain"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200);

    let m = get(&gw.admin_url("/metrics")).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let (a_ep, b_ep) = (a.addr.to_string(), b.addr.to_string());
    for family in [
        "ninefold_endpoint_available",
        "ninefold_endpoint_drained",
        "ninefold_endpoint_ejected",
        "ninefold_cluster_panic",
        "ninefold_retry_budget_headroom",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family}:\n{text}"
        );
    }
    for line in [
        format!("ninefold_endpoint_available{{cluster=\"app\",endpoint=\"{a_ep}\"}} 1\n"),
        format!("ninefold_endpoint_available{{cluster=\"app\",endpoint=\"{b_ep}\"}} 0\n"),
        format!("ninefold_endpoint_drained{{cluster=\"app\",endpoint=\"{b_ep}\"}} 1\n"),
        format!("ninefold_endpoint_drained{{cluster=\"app\",endpoint=\"{a_ep}\"}} 0\n"),
        format!("ninefold_endpoint_ejected{{cluster=\"app\",endpoint=\"{a_ep}\"}} 0\n"),
        "ninefold_endpoint_drained{cluster=\"v6\",endpoint=\"[::1]:9\"} 0\n".into(),
        "ninefold_cluster_panic{cluster=\"app\"} 0\n".into(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    // 20% of 4 requests plus 3/s over 10 s, nothing spent.
    let headroom = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("ninefold_retry_budget_headroom{listener=\"web\",route=\"main\"} ")
        })
        .unwrap_or_else(|| panic!("no headroom sample in\n{text}"));
    let headroom: f64 = headroom.parse().unwrap();
    assert!((30.0..=31.0).contains(&headroom), "{headroom}");

    // promtool, when installed, parses and lints the whole scrape.
    if Command::new("promtool").arg("--version").output().is_ok() {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&m.body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("promtool not installed: skipping the lint of /metrics");
    }
}

/// `ninefold demo`, started and read until ready: (process, proxy address, admin
/// address).
/// A `ninefold demo` process, killed when dropped (also when a test panics).
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_demo() -> (Demo, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line == "ninefold: ready" {
                let _ = tx.send(text.clone());
            }
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("demo ready");
    assert!(text.contains("/demo/kill/api-a1"), "{text}");
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
            .to_owned()
    };
    (
        Demo(child),
        find("ninefold: listener web on "),
        find("ninefold: admin on "),
    )
}

/// The demo's failover walkthrough of the README, as a test: kill a backend through
/// the gateway, see every request still answered and the state API say why it is out,
/// revive and enable it, see it serve again.
#[tokio::test]
async fn demo_kill_and_revive_keep_traffic_flowing() {
    let (_demo, web, admin) = start_demo();
    let api = format!("http://{web}/api/x");
    let state = || async {
        let s = get(&format!("http://{admin}/api/v1/state")).await.json();
        s["clusters"][0]["endpoints"][0].clone()
    };
    let a1 = state().await["address"].as_str().unwrap().to_owned();

    let r = post(&format!("http://{web}/demo/kill/api-a1"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Every request is answered while api-a1 is dead: retries take the refused
    // connects and resets elsewhere, and outlier detection ejects it or its health
    // check (1 s) takes it out, whichever sees it first.
    let c = client();
    let mut out = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let r = send(&c, hyper::Request::get(&api).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        out = state().await;
        if out["available"] == false {
            break;
        }
    }
    assert_eq!(out["available"], false, "{out}");
    let why = out["why"].as_str().unwrap();
    assert!(
        why.contains("ejected") || why.contains("failing health checks"),
        "{out}"
    );
    for _ in 0..12 {
        let r = send(&c, hyper::Request::get(&api).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-backend"), Some("api-a1"));
    }

    // The last live backend cannot be killed.
    assert_eq!(
        post(&format!("http://{web}/demo/kill/api-a2"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        post(&format!("http://{web}/demo/kill/api-b1"), None)
            .await
            .status,
        409
    );
    assert_eq!(
        post(&format!("http://{web}/demo/revive/api-a2"), None)
            .await
            .status,
        200
    );

    // Revive, and enable it (the demo admin has no token: loopback only) so the
    // ejection ends now rather than in 10 s.
    let r = post(&format!("http://{web}/demo/revive/api-a1"), None).await;
    assert_eq!(r.status, 200);
    let r = post(
        &format!("http://{admin}/api/v1/clusters/api/endpoints/{a1}/enable"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Its health check (1 s) must also see it pass again before it takes traffic.
    let mut back = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !back && std::time::Instant::now() < deadline {
        let r = send(&c, hyper::Request::get(&api).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        back |= r.header("x-backend") == Some("api-a1");
        if !back {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(back, "api-a1 did not come back");
}

/// The demo's isolation and degradation walkthrough (README: "Watch a failure stay
/// contained"): one backend dies; its cell's users get 503 cell-down while the other
/// cells' users are served; the catalog, which depends on that backend alone, answers
/// from the stale rung and its breaker opens; faults come on by header and by the
/// admin API with a ttl.
#[tokio::test]
async fn demo_shows_a_failure_contained_and_degraded_answers() {
    let (_demo, web, admin) = start_demo();
    let user = |u: u32| {
        let url = format!("http://{web}/users");
        async move { get_with(&url, &[("x-user-id", &u.to_string())]).await }
    };
    for u in 0..30 {
        assert_eq!(user(u).await.status, 200);
    }
    let catalog = format!("http://{web}/catalog");
    assert_eq!(get(&catalog).await.status, 200);

    assert_eq!(
        post(&format!("http://{web}/demo/kill/api-b1"), None)
            .await
            .status,
        200
    );
    // The dead cell is found by its TCP check (1 s); then exactly its users fail.
    // (The kill takes effect a moment after its own answer, so a pass counts once it
    // sees the dead cell.)
    let mut down = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while down.is_empty() && std::time::Instant::now() < deadline {
        let mut pass = Vec::new();
        for u in 0..30 {
            pass.push((u, user(u).await));
        }
        if pass
            .iter()
            .any(|(_, r)| r.header("x-ninefold-reason") == Some("cell-down"))
        {
            for (u, r) in pass {
                if r.status.is_server_error() {
                    // The dead cell's users: cell-down once its check noticed; the
                    // refused connect itself (or the endpoint just marked out) in the
                    // instant before.
                    let why = r.header("x-ninefold-reason").unwrap_or_default().to_owned();
                    assert!(
                        ["cell-down", "connect-failed", "no-healthy-endpoint"]
                            .contains(&why.as_str()),
                        "user {u}: {why}"
                    );
                    down.push(u);
                } else {
                    assert_eq!(r.status, 200);
                    assert_ne!(r.header("x-backend"), Some("api-b1"), "user {u}");
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        !down.is_empty() && down.len() < 30,
        "one cell of three: {down:?}"
    );

    // The catalog: stale answers, marked, while its breaker opens.
    for _ in 0..5 {
        let r = get(&catalog).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ninefold-degraded"), Some("stale"));
    }
    let m =
        String::from_utf8_lossy(&get(&format!("http://{admin}/metrics")).await.body).into_owned();
    assert!(
        m.lines().any(
            |l| l.starts_with("ninefold_circuit_state{cluster=\"catalog\"") && l.ends_with(" 1")
        ),
        "{m}"
    );

    // Faults: on demand by header, and for a while through the admin API.
    let r = get_with(
        &format!("http://{web}/api"),
        &[("x-ninefold-fault", "abort=503")],
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-ninefold-fault"), Some("abort"));
    let body = r#"{"route":"api","abort":{"percent":100,"status":503},"ttl":"30s"}"#;
    let r = send(
        &client(),
        hyper::Request::post(format!("http://{admin}/api/v1/faults"))
            .body(crate::support::body(body))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(get(&format!("http://{web}/api")).await.status, 503);
    let list = get(&format!("http://{admin}/api/v1/faults")).await.json();
    assert_eq!(
        list.as_array()
            .map(Vec::len)
            .or(list["faults"].as_array().map(Vec::len)),
        Some(1),
        "{list}"
    );
}
