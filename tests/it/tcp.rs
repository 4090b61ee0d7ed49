//! `protocol: tcp` listeners without PostgreSQL: the relay (both ways, half-close),
//! the connection limit, a failed connect going to the next endpoint, the idle
//! timeout, a reload that drains a removed listener and keeps the others, an operator's
//! drain closing sessions, and Patroni checks against a fake REST API: a flapping
//! check closes no session, a marked-down endpoint's sessions close at once.

use crate::support::{self, get, post, Gateway};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "tcp-test-token";

/// An echo server: each connection's bytes come back; at the client's end of input,
/// the server closes too.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut b = [0u8; 4096];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&b[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Writes `msg` and reads it back, within a second.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> bool {
    let go = async {
        s.write_all(msg).await.ok()?;
        let mut b = vec![0u8; msg.len()];
        s.read_exact(&mut b).await.ok()?;
        Some(b == msg)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), go).await,
        Ok(Some(true))
    )
}

/// Whether the gateway closed `s` within `t` (a read sees the end or an error).
async fn closed_within(s: &mut TcpStream, t: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(t, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn metric(m: &str, prefix: &str) -> u64 {
    m.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_limit_next_endpoint_and_idle_timeout() {
    let live = echo().await;
    // Refuses connects for the whole test (bound, never listening).
    let (_held, gone) = support::refusing_endpoint();
    let gw = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
access_log: json
listeners:
  - {{name: db, bind: \"127.0.0.1:0\", protocol: tcp, cluster: c, bulkhead: {{max_concurrent: 2}}}}
  - {{name: quiet, bind: \"127.0.0.1:0\", protocol: tcp, cluster: c, idle_timeout: 300ms}}
clusters:
  - name: c
    connect_timeout: 500ms
    outlier_detection: {{consecutive_failures: 1000}}
    circuit_breaker: {{consecutive_failures: 2, open_for: 60s, scope: endpoint}}
    endpoints: [{{address: \"{gone}\"}}, {{address: \"{live}\"}}]
"
    ));
    let db = gw.bound("db").await;
    // Every connection reaches the live endpoint, whatever the balancer picked first.
    for _ in 0..6 {
        let mut s = TcpStream::connect(db).await.unwrap();
        assert!(round_trip(&mut s, b"ping").await);
        // Half-close: the answer still comes, then the end.
        s.write_all(b"last").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, b"last");
    }
    let m = get(&gw.admin_url("/metrics")).await.body;
    let m = String::from_utf8_lossy(&m);
    assert!(
        metric(
            &m,
            &format!("ninefold_tcp_connect_failures_total{{endpoint=\"{gone}\",listener=\"db\"}}")
        ) >= 1,
        "{m}"
    );
    assert_eq!(
        metric(&m, &format!("ninefold_tcp_bytes_total{{direction=\"to_endpoint\",endpoint=\"{live}\",listener=\"db\"}}")),
        6 * 8
    );
    // The refusing endpoint's breaker saw its connects fail, and opened.
    let st = get(&gw.admin_url("/api/v1/state")).await.json();
    let eps = st["clusters"][0]["endpoints"].as_array().unwrap();
    let dead = eps
        .iter()
        .find(|e| e["address"] == gone.to_string())
        .unwrap();
    assert_eq!(dead["breaker"]["state"], "open", "{dead}");
    let alive = eps
        .iter()
        .find(|e| e["address"] == live.to_string())
        .unwrap();
    assert_eq!(alive["breaker"]["state"], "closed", "{alive}");
    // The limit: two sessions held, the third is closed at once.
    let mut a = TcpStream::connect(db).await.unwrap();
    let mut b = TcpStream::connect(db).await.unwrap();
    assert!(round_trip(&mut a, b"a").await && round_trip(&mut b, b"b").await);
    let mut c = TcpStream::connect(db).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    drop(a);
    // Room again once one ends (the gateway notices the end first).
    let mut ok = false;
    for _ in 0..50 {
        let mut d = TcpStream::connect(db).await.unwrap();
        if round_trip(&mut d, b"d").await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a place under the limit came free");
    let m = get(&gw.admin_url("/metrics")).await.body;
    let m = String::from_utf8_lossy(&m);
    assert!(
        metric(
            &m,
            "ninefold_tcp_refused_total{listener=\"db\",reason=\"limit\"}"
        ) >= 1,
        "{m}"
    );
    // Idle: a silent session closes after idle_timeout, a talking one does not.
    let quiet = gw.bound("quiet").await;
    let mut s = TcpStream::connect(quiet).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(round_trip(&mut s, b"x").await, "a talking session stays");
    }
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    // One access line per session, with why it ended (written just after the end).
    let line = |end: &'static str| {
        let gw = &gw;
        move || {
            gw.stdout()
                .lines()
                .any(|l| l.contains("\"protocol\":\"tcp\"") && l.contains(end))
        }
    };
    assert!(
        support::eventually(Duration::from_secs(3), line("\"end\":\"idle\"")).await,
        "{}",
        gw.stdout()
    );
    assert!(
        support::eventually(Duration::from_secs(3), line("\"end\":\"limit\"")).await,
        "{}",
        gw.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_drains_a_removed_listener_and_an_operator_drain_fences() {
    let live = echo().await;
    let yaml = |with_b: bool| {
        let b = if with_b {
            "  - {name: b, bind: \"127.0.0.1:0\", protocol: tcp, cluster: keep}\n"
        } else {
            ""
        };
        format!(
            "admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
workers: 2
shutdown_grace: 600ms
listeners:
  - {{name: a, bind: \"127.0.0.1:0\", protocol: tcp, cluster: keep}}
  - {{name: f, bind: \"127.0.0.1:0\", protocol: tcp, cluster: fence}}
{b}clusters:
  - {{name: keep, endpoints: [{{address: \"{live}\"}}]}}
  - {{name: fence, on_marked_down: shutdown_sessions, endpoints: [{{address: \"{live}\"}}]}}
"
        )
    };
    let gw = Gateway::start(&yaml(true));
    let (a, b, f) = (
        gw.bound("a").await,
        gw.bound("b").await,
        gw.bound("f").await,
    );
    let mut sa = TcpStream::connect(a).await.unwrap();
    let mut sb = TcpStream::connect(b).await.unwrap();
    assert!(round_trip(&mut sa, b"a").await && round_trip(&mut sb, b"b").await);
    gw.rewrite(&yaml(false));
    gw.signal("HUP");
    assert!(
        support::eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("listener stopped"))
        .await,
        "{}",
        gw.stderr()
    );
    // Right after the reload both sessions still work: b drains.
    assert!(round_trip(&mut sa, b"a").await);
    assert!(
        round_trip(&mut sb, b"b").await,
        "the removed listener's session drains"
    );
    // b's session ends after the drain time; a's goes on.
    assert!(closed_within(&mut sb, Duration::from_secs(3)).await);
    assert!(
        round_trip(&mut sa, b"a").await,
        "a kept listener keeps its sessions"
    );
    // An operator drains the endpoint: the `fence` cluster's session closes at once,
    // the `keep` cluster's (same address, another cluster) is left alone.
    let mut sf = TcpStream::connect(f).await.unwrap();
    assert!(round_trip(&mut sf, b"f").await);
    let r = post(
        &gw.admin_url(&format!("/api/v1/clusters/fence/endpoints/{live}/drain")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sessions_closed"], 1, "{:?}", r.body);
    assert!(closed_within(&mut sf, Duration::from_secs(2)).await);
    assert!(round_trip(&mut sa, b"a").await);
    let r = post(
        &gw.admin_url(&format!("/api/v1/clusters/keep/endpoints/{live}/drain")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.json()["sessions_closed"], 0);
    assert!(round_trip(&mut sa, b"a").await, "keep: drained, not killed");
    // A drained endpoint takes no new session.
    let mut late = TcpStream::connect(f).await.unwrap();
    assert!(closed_within(&mut late, Duration::from_secs(3)).await);
}

/// A fake Patroni REST API: answers `GET /primary` and `/replica...` with 200 or 503
/// as `mode` says (0: 200, 1: 503, 2: alternate, per path), and remembers the paths.
struct Patroni {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicU64>,
    paths: Arc<Mutex<Vec<String>>>,
}

async fn patroni() -> Patroni {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Patroni {
        addr: l.local_addr().unwrap(),
        mode: Arc::new(AtomicU8::new(0)),
        hits: Arc::new(AtomicU64::new(0)),
        paths: Arc::new(Mutex::new(Vec::new())),
    };
    let (mode, hits, paths) = (p.mode.clone(), p.hits.clone(), p.paths.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (mode, hits, paths) = (mode.clone(), hits.clone(), paths.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                // Alternation counts the probes of one path: two clusters probe here.
                let n = {
                    let mut p = paths.lock().unwrap();
                    let n = p.iter().filter(|x| **x == path).count() as u64;
                    p.push(path);
                    n
                };
                hits.fetch_add(1, Ordering::SeqCst);
                let ok = match mode.load(Ordering::SeqCst) {
                    0 => true,
                    1 => false,
                    _ => n % 2 == 0,
                };
                let status = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}").as_bytes())
                    .await;
            });
        }
    });
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_checks_a_flapping_check_closes_nothing_a_markdown_fences() {
    let live = echo().await;
    let api = patroni().await;
    let port = api.addr.port();
    let gw = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
listeners:
  - {{name: rw, bind: \"127.0.0.1:0\", protocol: tcp, cluster: primary}}
clusters:
  - name: primary
    endpoints: [{{address: \"{live}\"}}]
    health_check: {{patroni: {{port: {port}, role: primary}}, interval: 100ms, timeout: 90ms, healthy_threshold: 2, unhealthy_threshold: 2}}
  - name: replicas
    endpoints: [{{address: \"{live}\"}}]
    health_check: {{patroni: {{port: {port}, role: replica, lag: 16MB}}, interval: 100ms, timeout: 90ms}}
"
    ));
    let rw = gw.bound("rw").await;
    let state = || async { get(&gw.admin_url("/api/v1/state")).await.json() };
    let healthy = |s: &serde_json::Value| s["clusters"][0]["endpoints"][0]["health"] == "healthy";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !healthy(&state().await) {
        assert!(std::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The default for a primary cluster: sessions shut down on mark-down.
    assert_eq!(
        state().await["clusters"][0]["on_marked_down"],
        "shutdown_sessions"
    );
    let mut s = TcpStream::connect(rw).await.unwrap();
    assert!(round_trip(&mut s, b"hello").await);
    // Flapping: pass, fail, pass, ... for a dozen probes; thresholds of 2 hold.
    api.mode.store(2, Ordering::SeqCst);
    let from = api.hits.load(Ordering::SeqCst);
    assert!(
        support::eventually(Duration::from_secs(10), || api.hits.load(Ordering::SeqCst)
            >= from + 12)
        .await
    );
    assert!(healthy(&state().await));
    assert!(
        round_trip(&mut s, b"still").await,
        "a flapping check closed a session"
    );
    // Down for real: two failures in a row, and the session is closed at once.
    api.mode.store(1, Ordering::SeqCst);
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let st = state().await;
    assert_eq!(
        st["clusters"][0]["endpoints"][0]["health"], "unhealthy",
        "{st}"
    );
    let why = st["clusters"][0]["endpoints"][0]["why"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("patroni /primary: status 503"), "{why}");
    let m = get(&gw.admin_url("/metrics")).await.body;
    let m = String::from_utf8_lossy(&m);
    assert_eq!(
        metric(&m, &format!("ninefold_tcp_sessions_closed_total{{endpoint=\"{live}\",listener=\"rw\",reason=\"fenced\"}}")),
        1,
        "{m}"
    );
    let paths = api.paths.lock().unwrap().clone();
    assert!(paths.iter().any(|p| p == "/primary"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p == "/replica?lag=16777216"),
        "{paths:?}"
    );
}
