//! The circuit breaker end to end: a backend that always fails trips it, after which
//! the gateway answers 503 `circuit-open` at once and lets through at most
//! `half_open_probes` upstream calls per open time (counted exactly with the backend's
//! hit counter); a healthy backend closes it again; the admin calls force and reset it
//! (with the token); its state shows in `/metrics` and `/api/v1/state`.

use crate::support::*;
use http::Request;
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret";

/// One backend behind route `main` with a single attempt per request, the breaker
/// `breaker` on cluster `app`, and the admin token set.
fn config(b: &Backend, breaker: &str) -> String {
    simple_config(
        &[b],
        &format!("    circuit_breaker: {breaker}\n"),
        "        retry: {attempts: 1}\n",
    )
    .replace(
        "admin: {bind: \"127.0.0.1:0\"}",
        &format!("admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}"),
    )
}

const TRIP_FAST: &str = "{consecutive_failures: 3, open_for: 1s, half_open_probes: 2}";

/// The state API's breaker of the only endpoint of cluster `app`.
async fn endpoint_breaker(gw: &Gateway) -> serde_json::Value {
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    let c = s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap()
        .clone();
    c["endpoints"][0].clone()
}

/// The `ninefold_circuit_state` sample of `endpoint` ("" for the cluster's breaker).
async fn circuit_metric(gw: &Gateway, endpoint: &str) -> Option<f64> {
    let m = get(&gw.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let prefix = format!("ninefold_circuit_state{{cluster=\"app\",endpoint=\"{endpoint}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends the three failures that trip a `TRIP_FAST` breaker.
async fn trip(c: &HttpClient, gw: &Gateway, b: &Backend) {
    for _ in 0..3 {
        let r = send(
            c,
            Request::get(gw.url("web", "/status/500"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 500);
    }
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn a_backend_that_always_fails_trips_the_breaker_and_sees_at_most_the_probes() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&b, TRIP_FAST));
    let c = client();
    trip(&c, &gw, &b).await;
    let t0 = Instant::now();

    // While open: one request after another, each answered at once.
    let mut slowest_open = Duration::ZERO;
    let mut answered_open = 0;
    while t0.elapsed() < Duration::from_millis(700) {
        let start = Instant::now();
        let r = send(
            &c,
            Request::get(gw.url("web", "/status/500"))
                .body(empty())
                .unwrap(),
        )
        .await;
        slowest_open = slowest_open.max(start.elapsed());
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
        answered_open += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Then until 3.5 s, bursts of 8 concurrent requests every 25 ms. Expected: open until
    // ~1 s (nothing reaches the backend), half-open (at most 2 probes; the first to
    // fail re-opens it for 2 s), half-open again at ~3 s (at most 2 more).
    let mut slowest_rejection = Duration::ZERO;
    let (mut rejections, mut upstream_answers) = (0u64, 0u64);
    // The backend's hits as last sampled while the breaker must still be open (before
    // 0.9 s) and before its first half-open phase can have ended (2.8 s): the last
    // sample before each, so a slow test machine shifts nothing.
    let mut hits_while_open = None;
    let mut hits_by_2800ms = None;
    while t0.elapsed() < Duration::from_millis(3_500) {
        let burst: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                let url = gw.url("web", "/status/500");
                tokio::spawn(async move {
                    let start = Instant::now();
                    let r = send(&c, Request::get(url).body(empty()).unwrap()).await;
                    (r, start.elapsed())
                })
            })
            .collect();
        for h in burst {
            let (r, took) = h.await.unwrap();
            if r.status == 503 {
                assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
                assert_eq!(r.json()["reason"], "circuit-open");
                rejections += 1;
                slowest_rejection = slowest_rejection.max(took);
            } else {
                assert_eq!(r.status, 500, "only probes reach the backend");
                upstream_answers += 1;
            }
        }
        let e = t0.elapsed();
        if e < Duration::from_millis(900) {
            hits_while_open = Some(b.hits());
        }
        if e < Duration::from_millis(2_800) {
            hits_by_2800ms = Some(b.hits());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let probes = b.hits() - 3;
    eprintln!(
        "breaker trip: {answered_open} sequential answers while open, slowest \
         {slowest_open:?}; {rejections} rejections in bursts of 8, slowest \
         {slowest_rejection:?}; upstream calls after the trip: {:?} while open, {:?} by 2.8 s, \
         {probes} by 3.5 s",
        hits_while_open.map(|h| h - 3),
        hits_by_2800ms.map(|h| h - 3)
    );
    // Generous, on a loaded test machine: it only guards against a rejection that
    // waits for something (a connect, a timeout), which would take a second or more.
    assert!(
        slowest_open < Duration::from_millis(250),
        "a circuit-open answer took {slowest_open:?}"
    );
    // Eight at once on a loaded test machine: generous, it only guards against a
    // rejection that waits for something.
    assert!(
        slowest_rejection < Duration::from_millis(250),
        "a circuit-open answer in a burst took {slowest_rejection:?}"
    );
    assert_eq!(
        hits_while_open,
        Some(3),
        "the backend was called while open"
    );
    let by_2800 = hits_by_2800ms.unwrap() - 3;
    assert!(
        (1..=2).contains(&by_2800),
        "first half-open phase: {by_2800} upstream calls"
    );
    assert!(probes <= 4, "{probes} upstream calls in two open periods");
    assert_eq!(
        upstream_answers, probes,
        "every backend hit was a probe's answer"
    );
    assert!(rejections > 100, "only {rejections} rejections");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("probe failed"))
        .await,
        "no log line for the failed probe: {}",
        gw.stderr()
    );
    let log = gw.stderr();
    for line in [
        "circuit closed → open: 3 failures in a row",
        "circuit open → half-open: open time over, probing",
        "circuit half-open → open: probe failed",
    ] {
        assert!(log.contains(line), "no {line:?} in {log}");
    }
}

#[tokio::test]
async fn healthy_probes_close_the_breaker_and_traffic_flows_again() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&b, TRIP_FAST));
    let c = client();
    trip(&c, &gw, &b).await;
    let e = endpoint_breaker(&gw).await;
    assert_eq!(e["breaker"]["state"], "open", "{e}");
    assert_eq!(e["out"], "circuit-open", "{e}");
    assert!(
        e["why"].as_str().unwrap().contains("circuit open until +"),
        "{e}"
    );
    assert!(
        e["breaker"]["open_for_ms_left"].as_u64().unwrap() > 0,
        "{e}"
    );
    assert_eq!(circuit_metric(&gw, &b.addr.to_string()).await, Some(1.0));

    // The backend is healthy again (for `/`): poll until the probes pass.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut passed = 0;
    while passed < 2 {
        assert!(
            Instant::now() < deadline,
            "the breaker never let a probe through"
        );
        let r = send(&c, Request::get(gw.url("web", "/")).body(empty()).unwrap()).await;
        if r.status == 200 {
            passed += 1;
        } else {
            assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Closed: everything flows.
    for _ in 0..20 {
        let r = send(&c, Request::get(gw.url("web", "/")).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
    }
    let e = endpoint_breaker(&gw).await;
    assert_eq!(e["breaker"]["state"], "closed", "{e}");
    assert_eq!(e["breaker"]["consecutive_failures"], 0, "{e}");
    assert_eq!(e["breaker"]["window"]["requests"], 20, "{e}");
    assert_eq!(e["why"], serde_json::Value::Null, "{e}");
    assert_eq!(circuit_metric(&gw, &b.addr.to_string()).await, Some(0.0));
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("2 probes passed"))
        .await,
        "{}",
        gw.stderr()
    );
}

#[tokio::test]
async fn admin_forces_and_resets_breakers_with_the_token() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(
        &b,
        "{consecutive_failures: 3, open_for: 1s, scope: both}",
    ));
    let addr = b.addr.to_string();
    let ep_url = |action: &str| {
        gw.admin_url(&format!(
            "/api/v1/clusters/app/endpoints/{addr}/breaker/{action}"
        ))
    };
    let cluster_url =
        |action: &str| gw.admin_url(&format!("/api/v1/clusters/app/breaker/{action}"));

    // Without the token, or with a wrong one: 401, nothing changes.
    for (url, token) in [
        (ep_url("open"), None),
        (ep_url("open"), Some("nope")),
        (cluster_url("open"), None),
    ] {
        assert_eq!(post(&url, token).await.status, 401, "{url}");
    }
    assert_eq!(get(&gw.url("web", "/")).await.status, 200);
    assert_eq!(post(&ep_url("explode"), Some(TOKEN)).await.status, 404);

    // Endpoint forced open: answered at once, the backend untouched, whatever time passes.
    let r = post(&ep_url("open"), Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["changed"], true);
    assert_eq!(r.json()["breaker"]["forced"], "open");
    let hits = b.hits();
    for _ in 0..5 {
        let r = get(&gw.url("web", "/")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
    }
    assert_eq!(b.hits(), hits);
    let e = endpoint_breaker(&gw).await;
    assert_eq!(e["breaker"]["state"], "open", "{e}");
    assert_eq!(e["breaker"]["forced"], "open", "{e}");
    assert!(
        e["why"].as_str().unwrap().contains("circuit forced open"),
        "{e}"
    );
    assert_eq!(circuit_metric(&gw, &addr).await, Some(1.0));
    assert_eq!(circuit_metric(&gw, "").await, Some(0.0));

    // Forced closed (both, or the cluster's would trip): failures do not open it.
    assert_eq!(post(&ep_url("close"), Some(TOKEN)).await.status, 200);
    assert_eq!(post(&cluster_url("close"), Some(TOKEN)).await.status, 200);
    for _ in 0..5 {
        assert_eq!(get(&gw.url("web", "/status/500")).await.status, 500);
    }
    assert_eq!(endpoint_breaker(&gw).await["breaker"]["forced"], "closed");
    // Reset: back to the machine.
    assert_eq!(post(&cluster_url("reset"), Some(TOKEN)).await.status, 200);
    let r = post(&ep_url("reset"), Some(TOKEN)).await;
    assert_eq!(r.json()["breaker"]["forced"], serde_json::Value::Null);
    assert_eq!(r.json()["breaker"]["state"], "closed");

    // The cluster's breaker: forced open, every request is answered at once.
    assert_eq!(post(&cluster_url("open"), Some(TOKEN)).await.status, 200);
    let hits = b.hits();
    let r = get(&gw.url("web", "/")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
    assert_eq!(b.hits(), hits);
    assert_eq!(circuit_metric(&gw, "").await, Some(1.0));
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    assert_eq!(s["clusters"][0]["breaker"]["state"], "open", "{s}");
    assert_eq!(post(&cluster_url("reset"), Some(TOKEN)).await.status, 200);
    assert_eq!(get(&gw.url("web", "/")).await.status, 200);
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("forced by admin"))
        .await
    );
}

#[tokio::test]
async fn breaker_calls_on_a_cluster_without_that_scope_are_refused() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(&b, "{}"));
    let r = post(
        &gw.admin_url("/api/v1/clusters/app/breaker/open"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(get(&gw.url("web", "/")).await.status, 200);
}

#[tokio::test]
async fn the_cluster_breaker_trips_on_failures_of_the_whole_cluster() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(
        &b,
        "{consecutive_failures: 3, open_for: 1s, half_open_probes: 1, scope: cluster, on: [503]}",
    ));
    let c = client();
    // A 500 is not listed in `on`: it counts as an answer, not a failure.
    for _ in 0..5 {
        let r = send(
            &c,
            Request::get(gw.url("web", "/status/500"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 500);
    }
    for _ in 0..3 {
        let r = send(
            &c,
            Request::get(gw.url("web", "/status/503"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-ninefold-reason"), None, "the backend's own 503");
    }
    let hits = b.hits();
    let r = send(&c, Request::get(gw.url("web", "/")).body(empty()).unwrap()).await;
    assert_eq!(r.header("x-ninefold-reason"), Some("circuit-open"));
    assert_eq!(b.hits(), hits);
    assert_eq!(circuit_metric(&gw, "").await, Some(1.0));
    // The endpoint scope is not configured: no per-endpoint breaker in the state API.
    assert_eq!(
        endpoint_breaker(&gw).await["breaker"],
        serde_json::Value::Null
    );
    // One probe after open_for, it passes: closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = send(&c, Request::get(gw.url("web", "/")).body(empty()).unwrap()).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never probed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.hits(), hits + 1);
    assert_eq!(circuit_metric(&gw, "").await, Some(0.0));
}
