//! ninefold answering DNS (`dns:`), queried by Debian's `dig` over UDP and TCP: two
//! healthy primaries are two A records; a killed one (a real process) leaves the
//! answer after interval × threshold; with every priority-0 endpoint dead, the
//! priority-1 address is answered (the seed's Route 53 failover); SOA and NS at the
//! apex, NXDOMAIN in the zone, REFUSED outside it.

use crate::support::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn dig_bin() -> Option<&'static str> {
    if Command::new("dig").arg("-v").output().is_ok() {
        return Some("dig");
    }
    if std::env::var_os("NINEFOLD_REQUIRE_DIG").is_some() {
        panic!("dig is required (scripts/test installs Debian's dnsutils)");
    }
    skipped("the DNS server tests: dig is not installed (scripts/test installs dnsutils)");
    None
}

/// `dig` against the gateway: (status, answer lines as `name ttl type value`).
fn dig(server: SocketAddr, name: &str, kind: &str, tcp: bool) -> (String, Vec<String>) {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([
            name,
            kind,
            "+norecurse",
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
        ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

fn addresses(answers: &[String]) -> Vec<String> {
    let mut v: Vec<String> = answers
        .iter()
        .filter(|l| l.contains(" IN A ") || l.contains(" IN AAAA "))
        .filter_map(|l| l.split(' ').next_back().map(str::to_owned))
        .collect();
    v.sort();
    v
}

fn dns_addr(g: &Gateway) -> SocketAddr {
    let out = g.stdout();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("ninefold: dns on "))
        .unwrap_or_else(|| panic!("no dns line in {out}"));
    line.trim().parse().unwrap()
}

/// Polls `dig` until the A answer for `name` is `want`, over UDP and TCP alike.
async fn answers_become(server: SocketAddr, name: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, udp) = dig(server, name, "A", false);
        let (_, tcp) = dig(server, name, "A", true);
        let (udp, tcp) = (addresses(&udp), addresses(&tcp));
        if udp == want && tcp == want {
            eprintln!("dns: {name} A → {udp:?} (UDP and TCP)");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: want {want:?}, UDP {udp:?}, TCP {tcp:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dns_answers_the_healthy_primaries_then_the_secondary_and_refuses_other_zones() {
    if dig_bin().is_none() {
        return;
    }
    let mut a = Origin::start_on("a", "127.0.0.2:0");
    let mut b = Origin::start_on("b", "127.0.0.3:0");
    let c = Origin::start_on("c", "127.0.0.4:0");
    let g = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes: [{{match: {{path_prefix: /}}, cluster: gateways}}]
clusters:
  - name: gateways
    health_check: {{http: {{path: /health}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2}}
    endpoints:
      - {{address: \"{}\", priority: 0}}
      - {{address: \"{}\", priority: 0}}
      - {{address: \"{}\", priority: 1}}
dns:
  bind: 127.0.0.1:0
  zones:
    - name: example.com
      ttl: 5s
      records:
        - {{name: api.example.com, type: A, cluster: gateways}}
",
        a.addr, b.addr, c.addr
    ));
    let server = dns_addr(&g);
    // Two healthy primaries: two A records, with the zone's TTL, UDP and TCP.
    answers_become(server, "api.example.com", &["127.0.0.2", "127.0.0.3"]).await;
    let (status, lines) = dig(server, "api.example.com", "A", false);
    assert_eq!(status, "NOERROR");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("api.example.com. 5 IN A ")),
        "{lines:?}"
    );
    // One killed for real: its address leaves the answer once its checks fail.
    let t = Instant::now();
    a.kill();
    answers_become(server, "api.example.com", &["127.0.0.3"]).await;
    eprintln!(
        "dns: the killed primary left the answer after {:?}",
        t.elapsed()
    );
    // Every priority-0 endpoint dead: the priority-1 address is answered.
    b.kill();
    answers_become(server, "api.example.com", &["127.0.0.4"]).await;
    // The apex has SOA and NS; a name without a record is NXDOMAIN (with the SOA);
    // another zone is refused; AAAA of an A-only name is NOERROR without an answer.
    let (status, lines) = dig(server, "example.com", "SOA", false);
    assert_eq!(status, "NOERROR");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" IN SOA ns1.example.com. hostmaster.example.com. ")),
        "{lines:?}"
    );
    let (status, lines) = dig(server, "example.com", "NS", true);
    assert_eq!(status, "NOERROR");
    assert!(
        lines.iter().any(|l| l.ends_with("IN NS ns1.example.com.")),
        "{lines:?}"
    );
    let (status, _) = dig(server, "nothere.example.com", "A", false);
    assert_eq!(status, "NXDOMAIN");
    let (status, lines) = dig(server, "api.example.org", "A", false);
    assert_eq!((status.as_str(), lines.len()), ("REFUSED", 0));
    let (status, lines) = dig(server, "api.example.com", "AAAA", false);
    assert_eq!((status.as_str(), addresses(&lines).len()), ("NOERROR", 0));
    // Garbage gets FORMERR with its id, and the server goes on answering.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x12\x34\x01\x00garbage", server)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer to garbage")
        .unwrap();
    assert!(n >= 12 && buf[..2] == [0x12, 0x34], "{:?}", &buf[..n]);
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
    let (status, _) = dig(server, "api.example.com", "A", false);
    assert_eq!(status, "NOERROR");
    // Counted by type and answer code.
    let m = get(&g.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("ninefold_dns_queries_total{rcode=\"REFUSED\",type=\"A\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ninefold_dns_queries_total{rcode=\"NXDOMAIN\",type=\"A\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn with_no_endpoint_eligible_dns_answers_the_first_group_or_nothing_as_configured() {
    if dig_bin().is_none() {
        return;
    }
    let (_hold, dead) = refusing_endpoint();
    let dead2: SocketAddr = format!("127.0.0.5:{}", dead.port()).parse().unwrap();
    let g = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
clusters:
  - name: app
    health_check: {{tcp: {{}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1}}
    endpoints:
      - {{address: \"{dead}\"}}
      - {{address: \"{dead2}\"}}
dns:
  bind: 127.0.0.1:0
  zones:
    - name: example.net
      records:
        - {{name: all.example.net, cluster: app}}
        - {{name: none.example.net, cluster: app, when_none_eligible: nothing}}
"
    ));
    let server = dns_addr(&g);
    // Both endpoints fail their checks: `first_group` still answers both addresses.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, lines) = dig(server, "none.example.net", "A", false);
        if addresses(&lines).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "none.example.net still answers {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, lines) = dig(server, "all.example.net", "A", true);
    assert_eq!(status, "NOERROR");
    assert_eq!(
        addresses(&lines),
        vec!["127.0.0.1".to_owned(), "127.0.0.5".to_owned()]
    );
    let (status, _) = dig(server, "none.example.net", "A", false);
    assert_eq!(status, "NOERROR");
}

/// The fleet of examples/fleet-dns.yaml on one machine: three gateways on 127.0.0.2,
/// .3 and .4, each health-checking the others' admin `/health` and answering DNS for
/// api.example.com with the gateways that pass. One is SIGKILLed: the other two stop
/// answering its address.
#[tokio::test]
async fn a_fleet_of_three_gateways_answers_with_the_live_ones() {
    if dig_bin().is_none() {
        return;
    }
    let app = Backend::start("app").await;
    let config = |ip: &str, fleet: &[SocketAddr]| {
        let eps: String = fleet
            .iter()
            .map(|a| format!("      - {{address: \"{a}\"}}\n"))
            .collect();
        format!(
            "admin: {{bind: \"{ip}:0\"}}
workers: 1
listeners:
  - name: web
    bind: \"{ip}:0\"
    routes: [{{name: api, match: {{path_prefix: /}}, cluster: app}}]
clusters:
  - name: app
    endpoints: [{{address: \"{}\"}}]
  - name: gateways
    health_check: {{http: {{path: /health}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2}}
    endpoints:
{eps}dns:
  bind: \"{ip}:0\"
  zones:
    - name: example.com
      ttl: 1s
      records:
        - {{name: api.example.com, type: A, cluster: gateways}}
",
            app.addr
        )
    };
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    // Admin ports are known once the gateways run: start them, then tell each the fleet.
    let placeholder: SocketAddr = "127.0.0.9:9".parse().unwrap();
    let mut fleet: Vec<Gateway> = ips
        .iter()
        .map(|ip| Gateway::start(&config(ip, &[placeholder])))
        .collect();
    let admins: Vec<SocketAddr> = fleet.iter().map(|g| g.admin).collect();
    for (g, ip) in fleet.iter().zip(ips) {
        g.rewrite(&config(ip, &admins));
        g.signal("HUP");
    }
    let servers: Vec<SocketAddr> = fleet.iter().map(dns_addr).collect();
    for s in &servers {
        answers_become(*s, "api.example.com", &ips).await;
    }
    let t = Instant::now();
    fleet[0].signal("KILL");
    for s in &servers[1..] {
        answers_become(*s, "api.example.com", &ips[1..]).await;
    }
    eprintln!(
        "dns: the fleet stopped answering the killed gateway after {:?}",
        t.elapsed()
    );
    let _ = fleet[0].wait_exit(Duration::from_secs(5));
}

#[test]
fn the_fleet_example_checks_clean_with_its_environment() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fleet-dns.yaml");
    let out = Command::new(bin())
        .args(["check", "-c", path, "--deny-warnings"])
        .envs(FLEET_ENV)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 HA warnings"), "{text}");
}
