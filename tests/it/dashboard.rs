//! The dashboard's server side: the page and its assets, per-endpoint figures and state
//! words in `/api/v1/state`, SLO sparklines, the `/api/v1/events` contract (server-sent
//! events with a backlog and resumption, and its JSON form), and the audit lines of
//! mutations.

use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn config(addrs: &[std::net::SocketAddr], admin: &str) -> String {
    let eps: String = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("      - {{address: \"{a}\", zone: z{}}}\n", i % 2))
        .collect();
    format!(
        "admin: {{bind: \"127.0.0.1:0\"{admin}}}
workers: 2
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: main, match: {{path_prefix: /}}, cluster: app, slo: avail}}
clusters:
  - name: app
    health_check: {{http: {{path: /health}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2}}
    circuit_breaker: {{scope: endpoint}}
    endpoints:
{eps}slos:
  - {{name: avail, objective: 99.9%, window: 30d}}
"
    )
}

async fn state(g: &Gateway) -> Value {
    get(&g.admin_url("/api/v1/state")).await.json()
}

fn endpoint<'v>(state: &'v Value, address: &str) -> &'v Value {
    state["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == address)
        .unwrap_or_else(|| panic!("{address} in {state}"))
}

/// Polls the state until `f` holds for it, or fails with the last one.
async fn state_until(g: &Gateway, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = state(g).await;
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary_with_a_strict_policy() {
    let b = Backend::start("a").await;
    let g = Gateway::start(&config(&[b.addr], ""));
    let page = get(&g.admin_url("/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("/dashboard/app.js"), "{html}");
    for (path, kind) in [
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let a = get(&g.admin_url(path)).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert!(a.body.len() > 100, "{path} is not a placeholder");
    }
}

#[tokio::test]
async fn endpoints_carry_their_minute_of_figures_and_their_state_in_words() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let g = Gateway::start(&config(&[a.addr, b.addr], ""));
    let (ea, eb) = (a.addr.to_string(), b.addr.to_string());
    state_until(&g, "both up", |s| {
        endpoint(s, &ea)["state"] == "up" && endpoint(s, &eb)["state"] == "up"
    })
    .await;
    get_ok_n(&g.url("web", "/"), 40).await;
    let s = state(&g).await;
    let (fa, fb) = (&endpoint(&s, &ea)["figures"], &endpoint(&s, &eb)["figures"]);
    let total = fa["requests"].as_u64().unwrap() + fb["requests"].as_u64().unwrap();
    assert_eq!(total, 40, "{fa} {fb}");
    for f in [fa, fb] {
        assert!(f["rps"].as_f64().unwrap() > 0.0, "{f}");
        assert_eq!(f["errors"], 0, "{f}");
        assert_eq!(f["error_rate"], 0.0, "{f}");
        let (p50, p99) = (f["p50_ms"].as_f64().unwrap(), f["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 1000.0, "{f}");
        assert!(f["window_seconds"].as_f64().unwrap() <= 60.0, "{f}");
    }
    // Answers with 5xx count as errors.
    b.fail_with(503);
    get(&g.url("web", "/")).await;
    get(&g.url("web", "/")).await;
    let s = state(&g).await;
    assert!(
        endpoint(&s, &eb)["figures"]["errors"].as_u64().unwrap() >= 1,
        "{s:#}"
    );
    // A failing health check: "going down" may show between; then "down" with why.
    b.set_health(500, "sick");
    let s = state_until(&g, "b down", |s| endpoint(s, &eb)["state"] == "down").await;
    let why = endpoint(&s, &eb)["why"].as_str().unwrap().to_owned();
    assert!(why.contains("failing health checks"), "{why}");
    b.set_health(200, "ok");
    state_until(&g, "b up again", |s| endpoint(s, &eb)["state"] == "up").await;
    // An operator's drain reads as such.
    let url = g.admin_url(&format!("/api/v1/clusters/app/endpoints/{ea}/drain"));
    assert_eq!(post(&url, None).await.status, 200);
    let s = state(&g).await;
    assert_eq!(endpoint(&s, &ea)["state"], "drained");
    assert_eq!(s["admin"]["token_required"], false);
}

#[tokio::test]
async fn slos_carry_an_hour_of_burn_rates_a_minute_apart() {
    let b = Backend::start("a").await;
    let g = Gateway::start(&config(&[b.addr], ""));
    get_ok_n(&g.url("web", "/"), 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(&g.admin_url("/api/v1/slos")).await.json();
        let h = &v["slos"][0]["burn_history"];
        for w in ["5m", "1h", "6h", "3d"] {
            assert_eq!(h[w].as_array().map(Vec::len), Some(60), "{w}: {v:#}");
        }
        // The newest point is now's burn rate; nothing went wrong, so it is 0.
        if h["5m"][59] == 0.0 {
            assert_eq!(h["5m"][0], Value::Null, "an hour ago had no traffic");
            break;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads server-sent events from a raw connection: (id, data) of each event, until
/// `n` are read or the deadline passes.
async fn read_events(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
    n: usize,
) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let (mut id, mut data) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(line))) = tokio::time::timeout(left, lines.next_line()).await else {
            break;
        };
        if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            data = serde_json::from_str(v.trim()).ok();
        } else if line.is_empty() {
            if let (Some(i), Some(d)) = (id.take(), data.take()) {
                out.push((i, d));
            }
        }
    }
    out
}

async fn open_events(
    g: &Gateway,
    last_event_id: Option<u64>,
) -> tokio::io::Lines<BufReader<tokio::net::TcpStream>> {
    let mut s = tokio::net::TcpStream::connect(g.admin).await.unwrap();
    let resume = last_event_id.map_or(String::new(), |i| format!("Last-Event-ID: {i}\r\n"));
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(s).lines();
    // The head: 200 and text/event-stream, then a blank line.
    let status = lines.next_line().await.unwrap().unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut sse = false;
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.is_empty() {
            break;
        }
        sse |= l
            .to_ascii_lowercase()
            .starts_with("content-type: text/event-stream");
    }
    assert!(sse, "answered as server-sent events");
    lines
}

#[tokio::test]
async fn events_stream_transitions_with_a_backlog_and_resume_after_the_last_seen() {
    let b = Backend::start("a").await;
    let g = Gateway::start(&config(&[b.addr], ""));
    let ep = b.addr.to_string();
    state_until(&g, "up", |s| endpoint(s, &ep)["state"] == "up").await;
    let base = g.admin_url(&format!("/api/v1/clusters/app/endpoints/{ep}"));
    assert_eq!(post(&format!("{base}/drain"), None).await.status, 200);

    // The JSON form: the backlog, each event with its contract fields.
    let list = get(&g.admin_url("/api/v1/events?format=json")).await.json();
    let list = list.as_array().unwrap().clone();
    let drained = list
        .iter()
        .find(|e| e["kind"] == "drained")
        .unwrap_or_else(|| panic!("{list:#?}"));
    assert_eq!(drained["cluster"], "app");
    assert_eq!(drained["endpoint"], ep.as_str());
    assert!(drained["message"].as_str().unwrap().contains("drained"));
    assert!(drained["at_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(list.iter().any(|e| e["kind"] == "endpoint_up"), "{list:#?}");
    let ids: Vec<u64> = list.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The stream: the backlog first (a late client still sees the drain)...
    let mut stream = open_events(&g, None).await;
    let backlog = read_events(&mut stream, list.len()).await;
    assert_eq!(backlog.len(), list.len());
    assert!(backlog.iter().any(|(_, e)| e["kind"] == "drained"));
    let last = backlog.last().unwrap().0;
    // ... then what happens, as it happens.
    assert_eq!(post(&format!("{base}/enable"), None).await.status, 200);
    // Other transitions may come between (a health check's flap on a loaded machine):
    // read until the enable.
    let mut next = Vec::new();
    for _ in 0..20 {
        let got = read_events(&mut stream, 1).await;
        assert_eq!(got.len(), 1, "the enable arrives on the open stream");
        let done = got[0].1["kind"] == "enabled";
        next.extend(got);
        if done {
            break;
        }
    }
    let enabled = next.last().unwrap();
    assert_eq!(enabled.1["kind"], "enabled");
    assert!(
        next.iter().all(|(id, _)| *id > last),
        "only new events after the backlog"
    );
    // A client that reconnects with Last-Event-ID gets only what it missed, in order.
    let mut resumed = open_events(&g, Some(last)).await;
    let missed = read_events(&mut resumed, next.len()).await;
    let ids = |v: &[(u64, Value)]| v.iter().map(|(i, _)| *i).collect::<Vec<_>>();
    assert_eq!(ids(&missed), ids(&next));
    // Open streams do not hold the gateway up at shutdown.
    let mut g = g;
    g.signal("TERM");
    let status = g.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "exits with streams open: {status:?}"
    );
    drop((stream, resumed));
}

#[tokio::test]
async fn every_mutation_writes_an_audit_line_naming_the_peer_and_refusals_too() {
    let b = Backend::start("a").await;
    let g = Gateway::start(&config(&[b.addr], ", token: s3cret"));
    let ep = b.addr.to_string();
    let url = g.admin_url(&format!("/api/v1/clusters/app/endpoints/{ep}/drain"));
    assert_eq!(post(&url, None).await.status, 401);
    assert_eq!(post(&url, Some("s3cret")).await.status, 200);
    let fault = g.admin_url("/api/v1/faults");
    let req = hyper::Request::post(&fault)
        .header("authorization", "Bearer s3cret")
        .body(body(
            r#"{"route": "main", "abort": {"percent": 1, "status": 503}, "ttl": "1m"}"#,
        ))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 201);
    let path = format!("/api/v1/clusters/app/endpoints/{ep}/drain");
    let lines = |g: &Gateway| -> Vec<String> {
        g.stderr()
            .lines()
            .filter(|l| l.contains("audit"))
            .map(str::to_owned)
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || lines(&g).len() >= 3).await,
        "{}",
        g.stderr()
    );
    let audit = lines(&g);
    let refused = audit
        .iter()
        .find(|l| l.contains("refused"))
        .expect("refusal audited");
    assert!(
        refused.contains("127.0.0.1:") && refused.contains(&path) && refused.contains("401"),
        "{refused}"
    );
    let done = audit
        .iter()
        .find(|l| l.contains("audit: drain"))
        .expect("drain audited");
    assert!(
        done.contains("127.0.0.1:") && done.contains(&format!("POST {path}")),
        "{done}"
    );
    assert!(
        audit.iter().any(|l| l.contains("audit: fault added")),
        "{audit:#?}"
    );
    // A page elsewhere cannot drive the admin API through an operator's browser, token
    // or not.
    let req = hyper::Request::post(&url)
        .header("authorization", "Bearer s3cret")
        .header("origin", "https://evil.example")
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        eventually(Duration::from_secs(5), || g
            .stderr()
            .contains("refused: cross-origin request"))
        .await,
        "{}",
        g.stderr()
    );
    // The token never reaches a log line.
    assert!(!g.stderr().contains("s3cret"));
}
