//! Autoscaling (`clusters[].autoscale`) with real processes:
//! - the closed loop: the hook is a shell script that starts and stops `ninefold
//!   origin` processes (answering `/slow/300`, so requests pile up in flight) and
//!   rewrites the cluster's discovery file; under a bounded load the cluster goes from
//!   `min` to the count that brings in-flight per endpoint to target, with zero failed
//!   requests, holds there, and after the load stops goes back to `min` no earlier than
//!   `scale_down_cooldown`;
//! - the `cpu` target against endpoints serving a `process_cpu_seconds_total` counter,
//!   with the decision POSTed to a webhook;
//! - zone headroom raising the count as computed.

use crate::support::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test's scaler: keeps NINEFOLD_DESIRED `ninefold origin` processes running and
/// lists them in the discovery file (written atomically). A stopped origin leaves the
/// file first and is killed after the gateway's drain (2 s).
const SCALER: &str = r#"#!/usr/bin/env bash
set -eu
dir="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$dir/run"
echo "$(date +%s.%N) ${NINEFOLD_CURRENT} -> ${NINEFOLD_DESIRED}: ${NINEFOLD_REASON}" >> "$dir/hook.log"
count() { ls "$dir/run" | grep -c '\.addr$' || true; }
n=$(count)
while [ "$n" -lt "$NINEFOLD_DESIRED" ]; do
    id=$(date +%s%N)
    "@BIN@" origin --name "o$id" --listen 127.0.0.1:0 > "$dir/run/$id.log" 2>&1 &
    echo $! > "$dir/run/$id.pid"
    for _ in $(seq 200); do
        grep -q "listening on" "$dir/run/$id.log" && break
        sleep 0.05
    done
    sed -n 's/.* listening on //p' "$dir/run/$id.log" > "$dir/run/$id.addr"
    n=$((n + 1))
done
while [ "$n" -gt "$NINEFOLD_DESIRED" ]; do
    last=$(ls "$dir/run" | grep '\.addr$' | sort -n | tail -1)
    id=${last%.addr}
    rm "$dir/run/$id.addr"
    pid=$(cat "$dir/run/$id.pid")
    ( sleep 4; kill "$pid" ) > /dev/null 2>&1 &
    n=$((n - 1))
done
{
    echo "endpoints:"
    for f in "$dir"/run/*.addr; do
        [ -e "$f" ] && echo "  - {address: \"$(cat "$f")\"}"
    done
} > "$dir/endpoints.tmp"
mv "$dir/endpoints.tmp" "$dir/endpoints.yaml"
"#;

/// Kills every origin the scaler started, when the test ends.
struct Origins(std::path::PathBuf);

impl Drop for Origins {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir(self.0.join("run")) else {
            return;
        };
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Ok(pid) = std::fs::read_to_string(e.path()) {
                    let _ = Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
    }
}

async fn autoscale_state(g: &Gateway, cluster: &str) -> Value {
    let s = get(&g.admin_url("/api/v1/state")).await.json();
    s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster)
        .map(|c| c["autoscale"].clone())
        .unwrap_or(Value::Null)
}

async fn until(
    g: &Gateway,
    cluster: &str,
    what: &str,
    secs: u64,
    f: impl Fn(&Value) -> bool,
) -> Value {
    until_json(g, what, secs, || autoscale_state(g, cluster), f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_scales_up_under_load_and_back_after_the_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("scale.sh");
    std::fs::write(&script, SCALER.replace("@BIN@", bin())).unwrap();
    let ok = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    assert!(ok.success());
    let _origins = Origins(dir.path().to_path_buf());
    // The first two, as the scaler makes them.
    let ok = Command::new(&script)
        .env("NINEFOLD_CURRENT", "0")
        .env("NINEFOLD_DESIRED", "2")
        .env("NINEFOLD_REASON", "the test starts")
        .status()
        .unwrap();
    assert!(ok.success());
    let g = Gateway::start(&format!(
        r#"
admin: {{bind: 127.0.0.1:0}}
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes: [{{name: all, match: {{path_prefix: /}}, cluster: api, timeout: 10s}}]
clusters:
  - name: api
    discovery:
      file: {{path: {dir}/endpoints.yaml}}
      drain_timeout: 2s
    autoscale:
      min: 2
      max: 6
      target: {{in_flight_per_endpoint: 4}}
      scale_up_cooldown: 2s
      scale_down_cooldown: 6s
      hook: {{command: [{dir}/scale.sh], timeout: 20s}}
"#,
        dir = dir.path().display()
    ));
    let start = Instant::now();
    let t = |i: Instant| i.duration_since(start).as_secs_f64();
    let a = until(&g, "api", "the first recommendation", 10, |a| {
        a["current"] == 2
    })
    .await;
    assert_eq!(a["desired"], 2, "{a:#}");

    // 16 clients on /slow/300: 8 in flight per endpoint, against a target of 4.
    let load_on = Instant::now();
    let load = Load::start(g.url("web", "/slow/300"), 16, Duration::ZERO);
    let up = until(&g, "api", "scaling up", 30, |a| a["desired"] == 4).await;
    let desired_up = Instant::now();
    assert!(
        up["reason"].as_str().unwrap().contains("in flight"),
        "{up:#}"
    );
    let a = until(&g, "api", "the new endpoints joining", 30, |a| {
        a["current"] == 4
    })
    .await;
    let joined = Instant::now();
    // Held there: at target, within tolerance, no new recommendation.
    let runs = a["hook"]["runs"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = autoscale_state(&g, "api").await;
    assert_eq!(
        (a["current"].as_u64(), a["desired"].as_u64()),
        (Some(4), Some(4)),
        "{a:#}"
    );
    assert_eq!(
        a["hook"]["runs"].as_u64().unwrap(),
        runs,
        "a steady load changed the recommendation: {a:#}"
    );
    let figure = a["figure"].as_f64().unwrap();
    assert!(
        (3.0..=5.0).contains(&figure),
        "in flight per endpoint at 4 endpoints: {figure}"
    );

    // Load off: back to 2, no earlier than scale_down_cooldown (6 s).
    let load_off = Instant::now();
    let (okn, failedn) = load.finish().await;
    let down = until(&g, "api", "scaling down", 30, |a| a["desired"] == 2).await;
    let desired_down = Instant::now();
    let held = desired_down.duration_since(load_off);
    // The last busy second can be up to a tick before the stop, and requests in
    // flight end 0.3 s after it: at least 6 s less that margin.
    assert!(
        held >= Duration::from_secs(4),
        "scaled down {held:?} after the load stopped"
    );
    assert!(down["reason"].as_str().is_some());
    until(&g, "api", "the endpoints leaving", 30, |a| {
        a["current"] == 2
    })
    .await;
    let back = Instant::now();
    eprintln!(
        "autoscale timeline: load on at {:.1}s; desired 2 → 4 at {:.1}s; 4 endpoints serving at {:.1}s; load off at {:.1}s; desired 4 → 2 at {:.1}s ({:.1}s after); 2 endpoints at {:.1}s; {okn} requests, {failedn} failed",
        t(load_on),
        t(desired_up),
        t(joined),
        t(load_off),
        t(desired_down),
        held.as_secs_f64(),
        t(back)
    );
    assert_eq!(failedn, 0, "requests failed while endpoints joined");
    assert!(okn > 100, "{okn}");
    let hook_log = std::fs::read_to_string(dir.path().join("hook.log")).unwrap();
    // Up to 4 (perhaps through 3 while the load ramped up), then back to 2.
    assert!(hook_log.contains(" -> 4: "), "{hook_log}");
    let last = hook_log.lines().last().unwrap_or_default();
    assert!(last.contains(" -> 2: "), "{hook_log}");
    let m = get(&g.admin_url("/metrics")).await;
    let m = String::from_utf8_lossy(&m.body);
    assert!(
        m.contains(r#"ninefold_autoscale_desired_endpoints{cluster="api"} 2"#),
        "{m}"
    );
    assert!(
        g.stderr().contains("autoscale: in flight"),
        "{}",
        g.stderr()
    );
}

/// An endpoint whose Prometheus page says it burns `share` of a core.
async fn cpu_endpoint(share: f64) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let start = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!(
                    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
                    start.elapsed().as_secs_f64() * share
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A webhook receiver: the bodies POSTed to it.
async fn webhook() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            if let Ok(v) = serde_json::from_slice(&buf[i + 4..i + 4 + len]) {
                                g.lock().unwrap().push(v);
                            }
                            break;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_from_the_endpoints_pages_and_zone_headroom() {
    let (c1, c2) = (cpu_endpoint(0.8).await, cpu_endpoint(0.8).await);
    let (hook, got) = webhook().await;
    let rate = Backend::start("rate").await;
    let zoned = [
        Backend::start("z1").await,
        Backend::start("z2").await,
        Backend::start("z3").await,
        Backend::start("z4").await,
    ];
    let g = Gateway::start(&format!(
        r#"
admin: {{bind: 127.0.0.1:0}}
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - {{name: cpu, match: {{path_prefix: /cpu}}, cluster: cpu, timeout: 5s}}
      - {{name: rate, match: {{path_prefix: /rate}}, cluster: rate, timeout: 5s}}
      - {{name: zoned, match: {{path_prefix: /}}, cluster: zoned, timeout: 5s}}
clusters:
  - name: cpu
    endpoints: [{{address: "{c1}"}}, {{address: "{c2}"}}]
    autoscale:
      min: 2
      max: 10
      target: {{cpu: 60%}}
      cpu_metric: {{path: /metrics, name: process_cpu_seconds_total, cores: 1}}
      scale_up_cooldown: 1s
      scale_down_cooldown: 2s
      hook: {{webhook: "http://{hook}/scale"}}
  - name: rate
    endpoints: [{{address: "{}"}}]
    autoscale:
      min: 1
      max: 10
      target: {{requests_per_second_per_endpoint: 10}}
      scale_up_cooldown: 1s
  - name: zoned
    endpoints:
      - {{address: "{}", zone: a}}
      - {{address: "{}", zone: a}}
      - {{address: "{}", zone: b}}
      - {{address: "{}", zone: c}}
    autoscale:
      min: 3
      max: 10
      target: {{in_flight_per_endpoint: 100}}
      scale_up_cooldown: 1s
      zone_headroom: true
      hook: {{command: [sh, -c, "echo no capacity left >&2; exit 3"], timeout: 5s}}
"#,
        rate.addr, zoned[0].addr, zoned[1].addr, zoned[2].addr, zoned[3].addr
    ));
    // 80% of a core against 60%: ceil(2 × 1.33) = 3.
    let a = until(&g, "cpu", "the cpu recommendation", 15, |a| {
        a["desired"] == 3
    })
    .await;
    let figure = a["figure"].as_f64().unwrap();
    assert!((60.0..=100.0).contains(&figure), "cpu {figure}% in {a:#}");
    assert_eq!(a["figure_name"], "cpu");
    assert_eq!(a["target"], 60.0);
    assert!(a["reason"].as_str().unwrap().starts_with("cpu "), "{a:#}");
    assert!(
        a["reason"].as_str().unwrap().contains("against 60%: 2 → 3"),
        "{a:#}"
    );
    // The webhook got the decision.
    assert!(
        eventually(Duration::from_secs(10), || !got.lock().unwrap().is_empty()).await,
        "no webhook call"
    );
    let call = got.lock().unwrap()[0].clone();
    assert_eq!(call["cluster"], "cpu");
    assert_eq!(call["current"].as_u64(), Some(2), "{call}");
    assert!(call["desired"].as_u64() >= Some(3), "{call}");
    // Idle, min 3: 3 must survive losing zone a (half of the 4 now): 6.
    let a = until(&g, "zoned", "zone headroom", 15, |a| a["desired"] == 6).await;
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("zone headroom: losing a leaves 3 of 6"),
        "{a:#}"
    );
    // About 50 requests/s on 1 endpoint against 10: 5 wanted, at most doubling: 2.
    let url = g.url("web", "/rate/x");
    let c = client();
    let end = Instant::now() + Duration::from_secs(4);
    let mut seen = None;
    while Instant::now() < end && seen.is_none() {
        let r = send(&c, hyper::Request::get(&url).body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = autoscale_state(&g, "rate").await;
        if a["desired"] == 2 {
            seen = Some(a);
        }
    }
    let a = seen.expect("the rate figure did not scale the cluster");
    let figure = a["figure"].as_f64().unwrap();
    assert!(figure > 10.0, "requests/s per endpoint {figure} in {a:#}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("requests/s per endpoint against 10"),
        "{a:#}"
    );
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("at most doubling per step (2)"),
        "{a:#}"
    );
    // A failing hook is logged and counted; the gateway carries on.
    let a = until(&g, "zoned", "the hook's failure", 10, |a| {
        a["hook"]["failures"] == 1
    })
    .await;
    let last = a["hook"]["last"].as_str().unwrap();
    assert!(
        last.contains("exited with") && last.contains("no capacity left"),
        "{a:#}"
    );
    assert!(
        g.stderr().contains("autoscale hook failed"),
        "{}",
        g.stderr()
    );
    let m = get(&g.admin_url("/metrics")).await;
    let m = String::from_utf8_lossy(&m.body);
    assert!(
        m.contains(r#"ninefold_autoscale_desired_endpoints{cluster="zoned"} 6"#),
        "{m}"
    );
    assert!(
        m.contains(r#"ninefold_autoscale_figure{cluster="cpu",figure="cpu"}"#),
        "{m}"
    );
}
