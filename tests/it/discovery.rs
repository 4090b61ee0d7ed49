//! Endpoint discovery against real DNS parts: Debian's `dnsmasq` is the authority
//! (a hosts file changed and SIGHUPed to change its answers, the process stopped to
//! make lookups fail), the backends listen on 127.0.0.2.. with one port, and a load
//! of requests runs through every change counting failures:
//! - an added address gets traffic within `refresh`; a removed one drains (its slow
//!   requests in flight finish) with zero failed requests; a SIGHUP reload keeps the
//!   discovered set;
//! - a dead resolver keeps the last good set (zero failed requests, `stale` in the
//!   state API and the metric) until `stale_for`, then the seed list serves;
//! - an answer that drops 3 of 4 addresses is held by the churn guard, and applies
//!   once two more lookups confirm it;
//! - SRV records give ports, weights and priority groups;
//! - the file source takes an edit, and keeps the last good set through a bad edit,
//!   with `file:line:col` errors.

use crate::support::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `dnsmasq` answering only from a hosts file (and `--srv-host` lines) on a free
/// loopback port, TTL 1 s.
struct Dnsmasq {
    child: Option<Child>,
    port: u16,
    hosts: PathBuf,
    extra: Vec<String>,
}

fn dnsmasq_bin() -> Option<&'static str> {
    for p in ["dnsmasq", "/usr/sbin/dnsmasq"] {
        if Command::new(p).arg("--version").output().is_ok() {
            return Some(p);
        }
    }
    if std::env::var_os("NINEFOLD_REQUIRE_DNSMASQ").is_some() {
        panic!("dnsmasq is required (scripts/test installs Debian's dnsmasq-base)");
    }
    skipped("the discovery tests: dnsmasq is not installed (scripts/test installs dnsmasq-base)");
    None
}

impl Dnsmasq {
    fn start(dir: &Path, hosts: &str, extra: &[String]) -> Dnsmasq {
        let path = dir.join("hosts");
        std::fs::write(&path, hosts).unwrap();
        for _ in 0..5 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut d = Dnsmasq {
                child: None,
                port,
                hosts: path.clone(),
                extra: extra.to_vec(),
            };
            if d.spawn() {
                return d;
            }
        }
        panic!("dnsmasq did not start");
    }

    /// Starts the process on `self.port`; whether it answers.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(dnsmasq_bin().unwrap());
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/internal/",
            "--local-ttl=1",
            "--pid-file=",
            "--log-facility=-",
        ])
        .arg(format!("--port={}", self.port))
        .arg(format!("--addn-hosts={}", self.hosts.display()))
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // Root would switch to a user that may not exist on a bare machine.
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        if root {
            cmd.arg("--user=root");
        }
        let mut child = cmd.spawn().expect("dnsmasq runs");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.answers() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether it answers a query (any answer code) on its port.
    fn answers(&self) -> bool {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // A query for "x.internal" A.
        let q = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'x', 8, b'i', b'n', b't', b'e', b'r',
            b'n', b'a', b'l', 0, 0, 1, 0, 1,
        ];
        let _ = s.send_to(&q, ("127.0.0.1", self.port));
        let mut buf = [0u8; 512];
        matches!(s.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[0] == 0x12)
    }

    fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Rewrites the hosts file and makes dnsmasq read it again.
    fn set_hosts(&self, hosts: &str) {
        write_atomically(&self.hosts, hosts);
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "SIGHUP to dnsmasq");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `text` to a temporary file and renames it over `path`, so a reader never
/// sees it half written (as consul-template does).
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Backends on 127.0.0.2, .3, ... all on one port (A records carry no port).
async fn backends(n: usize) -> Vec<Backend> {
    'again: for _ in 0..10 {
        let first = Backend::start_on("b0", "127.0.0.2:0".parse().unwrap()).await;
        let port = first.addr.port();
        let mut all = vec![first];
        for i in 1..n {
            let addr: SocketAddr = format!("127.0.0.{}:{port}", i + 2).parse().unwrap();
            if std::net::TcpListener::bind(addr).is_err() {
                continue 'again;
            }
            all.push(Backend::start_on(&format!("b{i}"), addr).await);
        }
        return all;
    }
    panic!("no port free on every loopback address");
}

fn hosts(ips: &[usize]) -> String {
    ips.iter()
        .map(|i| format!("127.0.0.{} api.internal\n", i + 2))
        .collect()
}

async fn cluster(g: &Gateway) -> Value {
    get(&g.admin_url("/api/v1/state")).await.json()["clusters"][0].clone()
}

fn addresses(c: &Value) -> Vec<String> {
    let mut v: Vec<String> = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["origin"] != "removed")
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn discovered_config(resolver: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
admin: {{bind: 127.0.0.1:0}}
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes: [{{name: all, match: {{path_prefix: /}}, cluster: api, timeout: 5s}}]
clusters:
  - name: api
    discovery:
      dns: {{name: api.internal, type: A, port: {port}, refresh: 1s, stale_for: 6s, resolvers: [{resolver}]}}
      drain_timeout: 5s
    max_removed_per_update: 50%
{extra}"#
    )
}

/// Polls until `f` holds of the cluster's state, or panics naming `what`.
async fn until(g: &Gateway, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
    until_json(g, what, secs, || cluster(g), f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_changes_move_traffic_and_removals_drain_without_a_failure() {
    if dnsmasq_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backends(3).await;
    let dns = Dnsmasq::start(dir.path(), &hosts(&[0, 1]), &[]);
    let port = b[0].addr.port();
    let g = Gateway::start(&discovered_config(&dns.resolver(), port, ""));
    let c = until(&g, "the first answer", 10, |c| addresses(c).len() == 2).await;
    assert_eq!(c["discovery"]["source"], "dns A api.internal");
    assert_eq!(c["discovery"]["stale"], false);
    assert_eq!(c["endpoints"][0]["origin"], "dns");
    let load = Load::start(g.url("web", "/"), 4, Duration::from_millis(5));

    // Added: b2 gets traffic within refresh (1 s) and a little.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = Instant::now();
    dns.set_hosts(&hosts(&[0, 1, 2]));
    let moved = eventually(Duration::from_secs(5), || b[2].hits() > 0).await;
    let added_after = changed.elapsed();
    assert!(moved, "the added address got no traffic");
    // refresh is 1 s; the rest is margin for a loaded machine.
    assert!(added_after < Duration::from_secs(5), "{added_after:?}");

    // Removed: b0's slow requests in flight finish; no new request reaches it.
    b[0].delay(Duration::from_millis(700));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = Instant::now();
    dns.set_hosts(&hosts(&[1, 2]));
    let c = until(&g, "the removal", 5, |c| {
        c["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["origin"] == "removed")
    })
    .await;
    let removed_after = changed.elapsed();
    let gone = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["origin"] == "removed")
        .unwrap();
    assert_eq!(gone["address"], b[0].addr.to_string());
    assert_eq!(gone["state"], "drained");
    assert_eq!(c["health"], "ok", "a draining endpoint is not a lost one");
    // A second later nothing new went to b0 (in-flight ones had 700 ms to finish).
    tokio::time::sleep(Duration::from_millis(900)).await;
    let hits = b[0].hits();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b[0].hits(), hits, "a removed endpoint got new requests");
    // After drain_timeout (5 s) it leaves the set.
    until(&g, "the end of the drain", 10, |c| {
        c["endpoints"].as_array().unwrap().len() == 2
    })
    .await;
    assert!(
        g.stderr().contains("removed endpoint leaves"),
        "{}",
        g.stderr()
    );

    // A reload keeps the discovered set (the file's seed list is empty).
    g.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = cluster(&g).await;
    assert_eq!(addresses(&c).len(), 2, "{c:#}");
    let (ok, failed) = load.finish().await;
    eprintln!(
        "discovery: added address served {added_after:?} after the change, removal seen {removed_after:?} after; {ok} requests, {failed} failed"
    );
    assert_eq!(failed, 0, "requests failed during the changes");
    assert!(ok > 100, "{ok}");
    let m = get(&g.admin_url("/metrics")).await;
    let m = String::from_utf8_lossy(&m.body);
    assert!(
        m.contains(r#"ninefold_discovery_updates_total{cluster="api",outcome="applied"} 3"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_resolver_keeps_the_last_good_set_until_stale_for() {
    if dnsmasq_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backends(2).await;
    let mut dns = Dnsmasq::start(dir.path(), &hosts(&[0, 1]), &[]);
    let port = b[0].addr.port();
    // The seed list (b1 only) serves before the first answer and after stale_for.
    let seed = format!("    endpoints: [{{address: \"{}\"}}]\n", b[1].addr);
    let g = Gateway::start(&discovered_config(&dns.resolver(), port, &seed));
    until(&g, "the first answer", 10, |c| {
        c["discovery"]["condition"] == "fresh"
    })
    .await;
    let load = Load::start(g.url("web", "/"), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    dns.stop();
    let c = until(&g, "stale", 5, |c| c["discovery"]["stale"] == true).await;
    assert!(c["discovery"]["error"].as_str().is_some());
    assert_eq!(addresses(&c).len(), 2, "the last good set serves");
    let m = get(&g.admin_url("/metrics")).await;
    assert!(
        String::from_utf8_lossy(&m.body).contains(r#"ninefold_discovery_stale{cluster="api"} 1"#)
    );
    // Both keep answering, through the outage, until stale_for (6 s) passes.
    let hits = (b[0].hits(), b[1].hits());
    until(&g, "expiry", 15, |c| {
        c["discovery"]["condition"] == "expired"
    })
    .await;
    let stale_lasted = stopped.elapsed();
    assert!(
        b[0].hits() > hits.0 && b[1].hits() > hits.1,
        "both served while stale"
    );
    assert!(stale_lasted >= Duration::from_secs(6), "{stale_lasted:?}");
    // Then the seed list: b1 only.
    until(&g, "the seed list", 10, |c| {
        addresses(c) == vec![b[1].addr.to_string()]
    })
    .await;
    let (ok, failed) = load.finish().await;
    eprintln!("discovery: resolver dead for {stale_lasted:?} before expiry; {ok} requests, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the resolver outage");
    let log = g.stderr();
    // One line per change of condition, not one per failed lookup.
    let lines = log.matches("keeping the last good set").count();
    assert!(
        (1..=2).contains(&lines),
        "one line per change: {lines} in {log}"
    );
    assert!(log.contains("the seed list serves"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_churn_guard_holds_an_answer_that_drops_three_of_four() {
    if dnsmasq_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backends(4).await;
    let dns = Dnsmasq::start(dir.path(), &hosts(&[0, 1, 2, 3]), &[]);
    let port = b[0].addr.port();
    let g = Gateway::start(&discovered_config(&dns.resolver(), port, ""));
    until(&g, "the first answer", 10, |c| addresses(c).len() == 4).await;
    let load = Load::start(g.url("web", "/"), 2, Duration::from_millis(5));
    dns.set_hosts(&hosts(&[0]));
    let c = until(&g, "the hold", 5, |c| !c["discovery"]["held"].is_null()).await;
    let held_at = Instant::now();
    assert_eq!(c["discovery"]["held"]["removes"], 3);
    assert_eq!(c["discovery"]["held"]["of"], 4);
    assert_eq!(c["discovery"]["held"]["needs"], 2);
    assert_eq!(c["discovery"]["condition"], "held");
    assert_eq!(addresses(&c).len(), 4, "held: the set stays");
    // Two more lookups (refresh 1 s) confirm it.
    let c = until(&g, "the confirmation", 10, |c| {
        c["discovery"]["version"] == 2
    })
    .await;
    let confirmed_after = held_at.elapsed();
    eprintln!("discovery: the held answer applied {confirmed_after:?} after the hold was seen");
    assert_eq!(c["discovery"]["endpoints"].as_array().unwrap().len(), 1);
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    let log = g.stderr();
    assert!(log.contains("removes 3 of 4 endpoints"), "{log}");
    assert!(log.contains("confirmed by the lookups after it"), "{log}");
    let m = get(&g.admin_url("/metrics")).await;
    let m = String::from_utf8_lossy(&m.body);
    let held: u64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"ninefold_discovery_updates_total{cluster="api",outcome="held"} "#)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // The answer was seen held, then confirmed: at least two held lookups.
    assert!(held >= 2, "held {held} times:\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_weights_and_priorities() {
    if dnsmasq_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start_on("a", "127.0.0.2:0".parse().unwrap()).await;
    let b = Backend::start_on("b", "127.0.0.3:0".parse().unwrap()).await;
    let c = Backend::start_on("c", "127.0.0.4:0".parse().unwrap()).await;
    let srv = |target: &str, port: u16, prio: u16, weight: u16| {
        format!("--srv-host=_http._tcp.api.internal,{target},{port},{prio},{weight}")
    };
    let dns = Dnsmasq::start(
        dir.path(),
        "127.0.0.2 a.internal\n127.0.0.3 b.internal\n127.0.0.4 c.internal\n",
        &[
            srv("a.internal", a.addr.port(), 10, 30),
            srv("b.internal", b.addr.port(), 10, 10),
            srv("c.internal", c.addr.port(), 20, 5),
        ],
    );
    let g = Gateway::start(&format!(
        r#"
admin: {{bind: 127.0.0.1:0}}
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes: [{{name: all, match: {{path_prefix: /}}, cluster: api, timeout: 5s}}]
clusters:
  - name: api
    discovery:
      dns: {{name: _http._tcp.api.internal, type: SRV, refresh: 1s, stale_for: 1m, resolvers: [{}]}}
"#,
        dns.resolver()
    ));
    let st = until(&g, "the SRV answer", 10, |c| addresses(c).len() == 3).await;
    let by = |addr: SocketAddr| {
        st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == addr.to_string())
            .unwrap_or_else(|| panic!("{addr} missing from {st:#}"))
            .clone()
    };
    assert_eq!(
        (
            by(a.addr)["weight"].as_u64(),
            by(a.addr)["priority"].as_u64()
        ),
        (Some(30), Some(0))
    );
    assert_eq!(
        (
            by(b.addr)["weight"].as_u64(),
            by(b.addr)["priority"].as_u64()
        ),
        (Some(10), Some(0))
    );
    assert_eq!(
        (
            by(c.addr)["weight"].as_u64(),
            by(c.addr)["priority"].as_u64()
        ),
        (Some(5), Some(1))
    );
    // Priority 0 takes the traffic, 3:1 by weight; priority 1 none while it is up.
    let client = client();
    for _ in 0..200 {
        let r = send(
            &client,
            hyper::Request::get(g.url("web", "/"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(c.hits(), 0);
    let (ha, hb) = (a.hits() as f64, b.hits() as f64);
    assert!(
        ha / hb > 2.0 && ha / hb < 4.5,
        "weights 30:10 gave {ha}:{hb}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_takes_edits_and_keeps_the_last_good_set_through_a_bad_one() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-endpoints.yaml");
    write_atomically(
        &file,
        &format!("endpoints:\n  - {{address: \"{}\"}}\n", a.addr),
    );
    let g = Gateway::start(&format!(
        r#"
admin: {{bind: 127.0.0.1:0}}
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes: [{{name: all, match: {{path_prefix: /}}, cluster: api, timeout: 5s}}]
clusters:
  - name: api
    discovery:
      file: {{path: {}}}
      drain_timeout: 2s
"#,
        file.display()
    ));
    let c = until(&g, "the file", 10, |c| addresses(c).len() == 1).await;
    assert_eq!(c["discovery"]["source"], format!("file {}", file.display()));
    assert_eq!(c["endpoints"][0]["origin"], "file");
    let load = Load::start(g.url("web", "/"), 2, Duration::from_millis(5));
    let changed = Instant::now();
    write_atomically(
        &file,
        &format!(
            "endpoints:\n  - {{address: \"{}\"}}\n  - {{address: \"{}\"}}\n",
            a.addr, b.addr
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || b.hits() > 0).await,
        "the edit was not taken"
    );
    let took = changed.elapsed();
    // A bad edit: the last good set stays, and the error names file, line and column.
    write_atomically(
        &file,
        &format!(
            "endpoints:\n  - {{address: \"{}\"}}\n  - {{address: nowhere}}\n",
            a.addr
        ),
    );
    let c = until(&g, "the error", 5, |c| !c["discovery"]["error"].is_null()).await;
    let err = c["discovery"]["error"].as_str().unwrap();
    assert!(err.contains("api-endpoints.yaml:3:"), "{err}");
    assert!(err.contains("endpoints[1].address"), "{err}");
    assert_eq!(c["discovery"]["stale"], true);
    assert_eq!(addresses(&c).len(), 2, "the last good set stays");
    let (ha, hb) = (a.hits(), b.hits());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.hits() > ha && b.hits() > hb);
    // Fixed: applied.
    write_atomically(&file, &format!("- {{address: \"{}\"}}\n", b.addr));
    until(&g, "the fix", 5, |c| {
        c["discovery"]["condition"] == "fresh" && c["discovery"]["version"] == 3
    })
    .await;
    let (ok, failed) = load.finish().await;
    eprintln!("discovery: a file edit served {took:?} after it; {ok} requests, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the edits");
    assert!(g.stderr().contains("the file has errors"), "{}", g.stderr());
}
