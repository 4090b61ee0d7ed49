//! The admin listener: metrics, health, state, and the token on mutations.

use crate::support::*;

#[tokio::test]
async fn metrics_count_requests_by_route_cluster_and_class() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&simple_config(&[&a], "", ""));
    for _ in 0..3 {
        assert_eq!(get(&gw.url("web", "/")).await.status, 200);
    }
    assert_eq!(get(&gw.url("web", "/status/503")).await.status, 503);
    let m = get(&gw.admin_url("/metrics")).await;
    assert_eq!(m.status, 200);
    let m = String::from_utf8_lossy(&m.body).into_owned();
    for needle in [
        "ninefold_requests_total{cluster=\"app\",code_class=\"2xx\",listener=\"web\",route=\"main\",slo=\"\",slo_result=\"\"} 3",
        "ninefold_requests_total{cluster=\"app\",code_class=\"5xx\",listener=\"web\",route=\"main\",slo=\"\",slo_result=\"\"} 1",
        "ninefold_request_duration_seconds_count{cluster=\"app\",listener=\"web\",route=\"main\"} 4",
        "ninefold_upstream_connect_errors_total{cluster=\"app\"} 0",
        "ninefold_open_connections{listener=\"web\"}",
        "ninefold_reloads_total{result=\"ok\"} 0",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[tokio::test]
async fn health_has_the_seed_shape_and_follows_endpoints() {
    let a = Backend::start("a").await;
    let dead = free_port();
    let yaml = simple_config(&[&a], "", "").replace(
        "    endpoints:\n",
        &format!("    endpoints:\n      - {{address: \"127.0.0.1:{dead}\"}}\n"),
    );
    let gw = Gateway::start(&yaml);
    let h = get(&gw.admin_url("/health")).await;
    assert_eq!(h.status, 200);
    assert_eq!(
        h.json(),
        serde_json::json!({"status": "ok", "checks": {"app": "ok"}})
    );
    // Round robin reaches the dead endpoint every other request; the refused connects
    // are retried elsewhere, and passive outlier detection ejects it after
    // `consecutive_failures` of them.
    let mut h = get(&gw.admin_url("/health")).await;
    for _ in 0..50 {
        if h.json()["status"] != "ok" {
            break;
        }
        get(&gw.url("web", "/")).await;
        h = get(&gw.admin_url("/health")).await;
    }
    assert_eq!(
        h.json(),
        serde_json::json!({"status": "degraded", "checks": {"app": "degraded"}})
    );
}

#[tokio::test]
async fn state_lists_listeners_routes_clusters_endpoints() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&simple_config(&[&a], "    lb: least_request\n", ""));
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    assert_eq!(s["generation"], 1);
    assert_eq!(s["listeners"][0]["name"], "web");
    assert_eq!(s["listeners"][0]["address"], gw.addr("web").to_string());
    assert_eq!(s["listeners"][0]["routes"][0]["name"], "main");
    assert_eq!(s["listeners"][0]["routes"][0]["cluster"], "app");
    assert_eq!(s["clusters"][0]["name"], "app");
    assert_eq!(s["clusters"][0]["lb"], "least_request");
    assert_eq!(
        s["clusters"][0]["endpoints"][0]["address"],
        a.addr.to_string()
    );
}

#[tokio::test]
async fn mutations_need_the_token() {
    let a = Backend::start("a").await;
    let yaml = simple_config(&[&a], "", "").replace(
        "admin: {bind: \"127.0.0.1:0\"}",
        "admin: {bind: \"127.0.0.1:0\", token: s3cret}",
    );
    let gw = Gateway::start(&yaml);
    assert_eq!(
        post(&gw.admin_url("/api/v1/reload"), None).await.status,
        401
    );
    assert_eq!(
        post(&gw.admin_url("/api/v1/reload"), Some("wrong"))
            .await
            .status,
        401
    );
    assert_eq!(
        post(&gw.admin_url("/api/v1/reload"), Some("s3cret"))
            .await
            .status,
        200
    );
    // Reads stay open.
    assert_eq!(get(&gw.admin_url("/health")).await.status, 200);
}

#[tokio::test]
async fn access_log_json_has_one_line_per_request() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "access_log: json\n{}",
        simple_config(&[&a], "", "")
    ));
    assert_eq!(get(&gw.url("web", "/x")).await.status, 200);
    let line = {
        let mut found = None;
        for _ in 0..100 {
            if let Some(l) = gw.stdout().lines().find(|l| l.starts_with('{')) {
                found = Some(l.to_owned());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        found.expect("an access log line")
    };
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["route"], "main");
    assert_eq!(j["cluster"], "app");
    assert_eq!(j["endpoint"], a.addr.to_string());
    assert_eq!(j["status"], 200);
    assert_eq!(j["path"], "/x");
    assert!(j["duration_ms"].as_f64().is_some());
}
