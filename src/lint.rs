//! The HA lint behind `ninefold check`: the seed's anti-patterns and their relatives,
//! found in a valid configuration. Each warning names the key (file, line, column,
//! path), says in one line why it matters and how to fix it. Warnings do not stop
//! `check` (exit 0) unless `--deny-warnings` is given.

use crate::availability::Prob;
use crate::config::raw::RawCluster;
use crate::config::{CheckKind, Config, OnMarkedDown, Role};
use crate::topology::{self, Assumptions};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

/// One anti-pattern found in a configuration.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Warning {
    /// Short stable name of the anti-pattern, e.g. `single-zone`.
    pub code: &'static str,
    /// `warning`, or `note` for advice that `--deny-warnings` does not fail on.
    pub severity: &'static str,
    /// File name.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Key path, e.g. `clusters[0].endpoints`.
    pub path: String,
    /// What was found.
    pub message: String,
    /// Why it matters, one line.
    pub why: String,
    /// How to fix it, one line.
    pub fix: String,
}

/// Every anti-pattern in `cfg`, in file order of the rules below. `a` is the model
/// used by the 5-nines rule (the same as `ninefold calc topology`).
pub fn lint(cfg: &Config, a: &Assumptions) -> Vec<Warning> {
    let mut w = Lint {
        cfg,
        out: Vec::new(),
    };
    let raw = &cfg.raw;
    let estimates = topology::estimate(cfg, a);

    let http_routes = raw.listeners.iter().map(|l| l.routes.len()).sum::<usize>();
    let any_slo = raw
        .listeners
        .iter()
        .flat_map(|l| &l.routes)
        .any(|r| r.slo.is_some());
    if http_routes > 0 && !any_slo {
        w.push(
            "no-slo",
            "listeners",
            "no route counts towards an SLO".into(),
            "no SLO is an invisible problem: nobody can tell whether the service is good enough or how much risk is left",
            "define slos: [{name: ..., objective: 99.9%, window: 30d}] and set slo: NAME on the routes users depend on",
        );
    }

    // Route rules.
    let mut single_zone_done = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        for (j, r) in l.routes.iter().enumerate() {
            let rp = format!("listeners[{i}].routes[{j}]");
            let rname = r.name_in(&l.name, j);
            if r.timeout.is_none() {
                w.push(
                    "no-timeout",
                    &rp,
                    format!("route {rname:?} has no timeout (the default, 15s, applies)"),
                    "a hung upstream holds the client, a connection and a worker slot for the whole default; callers' own timeouts fire first and retry into the pile-up",
                    "set timeout: to a bit above the route's slowest healthy answer, e.g. timeout: 2s",
                );
            }
            // Every route retries under a budget (20% by default); one so large that it
            // stops nothing is the anti-pattern.
            let budget = r
                .retry
                .as_ref()
                .and_then(|rt| rt.budget.as_ref())
                .and_then(|b| crate::config::parse_percent(&b.0).ok());
            if let Some(b) = budget.filter(|b| *b > 50.0) {
                w.push(
                    "retry-budget-too-large",
                    &format!("{rp}.retry"),
                    format!("route {rname:?} allows retries up to {b}% of its requests"),
                    "a budget this large does not stop retries from multiplying load exactly when the upstream is failing (a retry storm)",
                    "keep the default budget: 20%, or set one below 50%",
                );
            }
            let slo_def = r
                .slo
                .as_ref()
                .and_then(|s| cfg.slos.iter().find(|x| &x.name == s));
            let is_latency = slo_def
                .is_some_and(|s| matches!(s.indicator, crate::config::Indicator::Latency { .. }));
            let objective = slo_def.map(|s| s.objective);
            let target_clusters: Vec<&str> = match (&r.cluster, &r.cells) {
                (Some(c), _) => vec![c.as_str()],
                (None, Some(cells)) => raw
                    .cells
                    .iter()
                    .filter(|c| &c.name == cells)
                    .flat_map(|c| c.members.iter().map(|m| m.cluster.as_str()))
                    .collect(),
                _ => Vec::new(),
            };
            let fallback_cluster = r.fallback.as_ref().and_then(|f| f.cluster.as_deref());
            // Single zone behind a route that promises 99.9% or more.
            if let Some(o) = objective {
                if o.ln_down <= three_nines().ln_down + 1e-12 {
                    for c in &target_clusters {
                        let Some((ci, rc)) = cluster(raw.clusters.as_slice(), c) else {
                            continue;
                        };
                        // Discovered endpoints are unknown until the gateway runs.
                        if rc.discovery.is_some() {
                            continue;
                        }
                        let mut eps: Vec<_> = rc.endpoints.iter().flatten().collect();
                        if let Some(fc) = fallback_cluster.and_then(|f| cluster(&raw.clusters, f)) {
                            eps.extend(fc.1.endpoints.iter().flatten());
                        }
                        let zones: BTreeSet<_> = eps.iter().map(|e| e.zone.as_deref()).collect();
                        let slo = r.slo.as_deref().unwrap_or_default();
                        let msg = if eps.len() == 1 {
                            format!(
                                "cluster {c:?} has a single endpoint behind route {rname:?}, whose SLO {slo:?} is {o}"
                            )
                        } else if zones.len() == 1 {
                            match zones.first().copied().flatten() {
                                Some(z) => format!(
                                    "every endpoint of cluster {c:?} is in zone {z:?}, behind route {rname:?}, whose SLO {slo:?} is {o}"
                                ),
                                None => format!(
                                    "no endpoint of cluster {c:?} names a zone, behind route {rname:?}, whose SLO {slo:?} is {o}"
                                ),
                            }
                        } else {
                            continue;
                        };
                        if single_zone_done.insert(ci) {
                            w.push(
                                "single-zone",
                                &format!("clusters[{ci}].endpoints"),
                                msg,
                                "single-AZ \"production\": one machine or one zone is a single point of failure, and a zone outage takes the whole service down",
                                "run endpoints in at least two zones and label them (zone: ...), or add a fallback cluster in another zone",
                            );
                        }
                    }
                }
                // Five nines the topology cannot reach.
                let discovered = target_clusters.iter().any(|c| {
                    cluster(&raw.clusters, c).is_some_and(|(_, rc)| rc.discovery.is_some())
                });
                if !is_latency && !discovered && o.ln_down <= five_nines().ln_down + 1e-12 {
                    if let Some(e) = estimates.iter().find(|e| e.path == rp) {
                        if e.prob.ln_down > o.ln_down + 1e-12 {
                            w.push(
                                "unreachable-objective",
                                &format!("{rp}.slo"),
                                format!(
                                    "route {rname:?} promises {o}, but its topology reaches about {} (ninefold calc topology shows the steps)",
                                    e.availability_percent
                                ),
                                "a 5-nines SLO without a business case or a topology that can hold it only costs: the budget is gone after 5 minutes a year",
                                "lower the objective to what the topology reaches, or add zones, regions, fallbacks and gateway instances (--gateways N if you run several)",
                            );
                        }
                    }
                }
            }
            // Remote or external dependency without a breaker or a fallback.
            if r.fallback.is_none() {
                for c in &target_clusters {
                    let Some((_, rc)) = cluster(&raw.clusters, c) else {
                        continue;
                    };
                    if rc.circuit_breaker.is_some() {
                        continue;
                    }
                    let why = if is_external(rc) {
                        format!("cluster {c:?} is an external dependency")
                    } else if let Some((z, from)) = remote_zone(rc) {
                        format!(
                            "cluster {c:?} has no endpoint in the local zone {z:?} (from {from})"
                        )
                    } else {
                        continue;
                    };
                    w.push(
                        "no-degradation",
                        &rp,
                        format!("route {rname:?} has neither a fallback nor a circuit breaker: {why}"),
                        "no graceful degradation: when that dependency fails, every request waits for it and fails, binary up/down",
                        "add fallback: {cluster: ..., static: {...}} on the route, or circuit_breaker: on the cluster",
                    );
                }
            }
        }
    }

    // An objective written as a bare fraction is read as a percentage.
    for (i, slo) in raw.slos.iter().enumerate() {
        if let Some(o) = &slo.objective {
            let t = o.0.trim();
            if !t.ends_with('%') && t.parse::<f64>().is_ok_and(|x| x <= 1.0) {
                w.push(
                    "ambiguous-objective",
                    &format!("slos[{i}].objective"),
                    format!("objective {t} is read as {t}%, not as a fraction"),
                    "a bare number is a percentage in ninefold's config, so 0.999 means 0.999%, an objective that is always met",
                    &format!("write the percentage with its sign, e.g. {}%", crate::availability::sig3(t.parse::<f64>().unwrap_or(0.0) * 100.0)),
                );
            }
        }
    }

    // Cluster rules.
    for (i, c) in raw.clusters.iter().enumerate() {
        let p = format!("clusters[{i}]");
        if c.health_check.is_none() {
            w.push(
                "no-health-check",
                &p,
                format!("cluster {:?} has no health_check", c.name),
                "without active checks a dead endpoint keeps its share of traffic until requests fail on it",
                "add health_check: {http: {path: /health}, interval: 5s}",
            );
        }
        if let Some(o) = &c.outlier_detection {
            let all = o
                .max_ejection_percent
                .as_ref()
                .and_then(|m| crate::config::parse_percent(&m.0).ok())
                .is_some_and(|m| m >= 100.0);
            if all {
                w.push(
                    "eject-everything",
                    &format!("{p}.outlier_detection.max_ejection_percent"),
                    format!("cluster {:?} may eject every endpoint", c.name),
                    "a shared cause (a bad deploy, a slow database) can eject them all, turning degradation into an outage",
                    "keep max_ejection_percent at 50% or below",
                );
            }
        }
    }
    // The TCP tier: primary and replica clusters.
    let tcp_clusters: HashSet<&str> = cfg
        .listeners
        .iter()
        .filter_map(|l| l.tcp.as_ref())
        .flat_map(|t| std::iter::once(t.cluster.as_str()).chain(t.fallback_cluster.as_deref()))
        .collect();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let p = format!("clusters[{i}]");
        let role = c.health_check.as_ref().and_then(|h| h.role());
        if (tcp_clusters.contains(c.name.as_str()) || role.is_some()) && c.endpoints.len() == 1 {
            w.push(
                "single-point",
                &format!("{p}.endpoints"),
                format!("cluster {:?} has one endpoint only", c.name),
                "a single database (or TCP service) is a single point of failure: when it goes, there is nothing to fail over to",
                "add a standby in another zone (a streaming replica, promoted on failure) and list both endpoints",
            );
        }
        let Some(h) = &c.health_check else { continue };
        match role {
            Some(Role::Primary) => {
                if c.on_marked_down == OnMarkedDown::Keep {
                    w.push(
                        "primary-keeps-sessions",
                        &format!("{p}.on_marked_down"),
                        format!("primary cluster {:?} keeps the sessions of an endpoint that leaves the set", c.name),
                        "clients stay connected to a demoted or partitioned primary and keep writing there (patroni issue 421, HAProxy's on-marked-down shutdown-sessions)",
                        "set on_marked_down: shutdown_sessions (the default for a primary cluster)",
                    );
                }
                let detect = h.interval * h.unhealthy_threshold;
                if detect > std::time::Duration::from_secs(10) {
                    w.push(
                        "slow-failover",
                        &format!("{p}.health_check.interval"),
                        format!(
                            "primary cluster {:?} notices a dead primary after {}s (interval × unhealthy_threshold)",
                            c.name,
                            detect.as_secs_f64()
                        ),
                        "every second before the check fails is a second of failed writes, on top of the promotion",
                        "check every 1s with unhealthy_threshold: 2 or 3 (and a timeout below the interval)",
                    );
                }
            }
            Some(Role::Replica) => {
                let bounded = match &h.kind {
                    CheckKind::Postgres(pg) => pg.max_replication_lag.is_some(),
                    CheckKind::Patroni(pt) => pt.lag.is_some(),
                    _ => true,
                };
                if !bounded {
                    let key = match &h.kind {
                        CheckKind::Patroni(_) => "patroni",
                        _ => "postgres",
                    };
                    w.push(
                        "unbounded-lag",
                        &format!("{p}.health_check.{key}"),
                        format!("replica cluster {:?} has no lag bound", c.name),
                        "a replica that stopped replaying keeps serving reads from the past, silently",
                        "set max_replication_lag: 5s (or a size, 16MB) on the postgres check, lag: on a patroni check",
                    );
                }
            }
            None => {}
        }
    }
    dns_ttls(cfg, &mut w);
    discovery(cfg, &mut w);
    tls(cfg, a, &mut w);
    let mut out = w.out;
    out.sort_by_key(|w| (w.line, w.column));
    out
}

/// `dns-ttl-too-long`: a DNS record whose TTL is longer than ten times what its
/// cluster takes to notice a dead endpoint (interval × unhealthy_threshold): clients
/// keep the dead address that long after ninefold stopped answering it.
fn dns_ttls(cfg: &Config, w: &mut Lint<'_>) {
    let Some(dns) = &cfg.dns else { return };
    for (i, z) in dns.zones.iter().enumerate() {
        for (j, r) in z.records.iter().enumerate() {
            let Some(c) = cfg.clusters.iter().find(|c| c.name == r.cluster) else {
                continue;
            };
            let Some(h) = &c.health_check else { continue };
            let detect = h.interval * h.unhealthy_threshold;
            if r.ttl > detect * 10 {
                let path = match &cfg.raw.dns {
                    Some(raw) if raw.zones[i].records[j].ttl.is_some() => {
                        format!("dns.zones[{i}].records[{j}].ttl")
                    }
                    _ => format!("dns.zones[{i}].ttl"),
                };
                w.push(
                    "dns-ttl-too-long",
                    &path,
                    format!(
                        "record {:?} has a TTL of {}s, over 10 × the {}s cluster {:?} takes to notice a dead endpoint",
                        r.name,
                        r.ttl.as_secs(),
                        detect.as_secs_f64(),
                        c.name
                    ),
                    "clients and resolvers keep a dead address for the whole TTL after ninefold stopped answering it",
                    "lower the TTL to a few times interval × unhealthy_threshold (30s for a 1s check that fails after 3)",
                );
            }
        }
    }
}

/// `discovery-without-stale-for`: a DNS source whose last good set is kept for as
/// long as lookups fail; `churn-guard-off`: `max_removed_per_update: 100%`, which lets
/// one bad answer replace the whole set.
fn discovery(cfg: &Config, w: &mut Lint<'_>) {
    for (i, c) in cfg.clusters.iter().enumerate() {
        let Some(d) = &c.discovery else { continue };
        let p = format!("clusters[{i}]");
        if let crate::config::DiscoverySource::Dns(dns) = &d.source {
            if dns.stale_for.is_none() {
                w.push(
                    "discovery-without-stale-for",
                    &format!("{p}.discovery.dns"),
                    format!(
                        "cluster {:?} looks up {:?} with no stale_for: while lookups fail, its last good set serves for ever",
                        c.name, dns.name
                    ),
                    "a resolver outage that lasts goes unnoticed in the data path, and addresses handed to other services since keep getting this cluster's traffic",
                    "set stale_for: to how long a stale set is better than the seed list, e.g. stale_for: 5m (and alert on ninefold_discovery_stale)",
                );
            }
        }
        if c.max_removed_per_update >= 100.0 {
            w.push(
                "churn-guard-off",
                &format!("{p}.max_removed_per_update"),
                format!(
                    "cluster {:?} lets one discovery update remove every endpoint (max_removed_per_update: 100%)",
                    c.name
                ),
                "one wrong answer (a half-written file, a broken registry, a DNS split) replaces the whole set at once",
                "keep the default, 50%: a larger removal then waits for two more lookups to confirm it",
            );
        }
    }
}

/// `tls-rsa-certificate` (a note): an https listener whose key is RSA, whose full
/// handshakes cost several times an ECDSA P-256 key's; `tickets-without-shared-keys`:
/// several gateways (`--gateways N`) issuing tickets with per-process keys, so a
/// client that lands on another gateway, or comes back after a restart, does a full
/// handshake.
fn tls(cfg: &Config, a: &Assumptions, w: &mut Lint<'_>) {
    for (i, l) in cfg.listeners.iter().enumerate() {
        let Some(t) = &l.tls else { continue };
        if l.protocol != crate::config::ListenerProtocol::Https {
            continue;
        }
        let p = format!("listeners[{i}].tls");
        if crate::tls::key_algorithm(&t.key).is_ok_and(|alg| alg == "RSA") {
            w.note(
                "tls-rsa-certificate",
                &format!("{p}.key"),
                format!("listener {:?} signs its handshakes with an RSA key", l.name),
                "a full handshake with RSA-2048 costs the gateway several times one with ECDSA P-256 (bench/README.md, TLS handshakes); a busy listener with many new clients spends its CPU there",
                "issue an ECDSA P-256 certificate for it (every current client supports one), or keep RSA only for clients that need it",
            );
        }
        if a.gateways > 1 && t.tickets && t.ticket_keys_file.is_none() {
            w.push(
                "tickets-without-shared-keys",
                &p,
                format!(
                    "listener {:?} issues session tickets with keys of its own, on {} gateways",
                    l.name, a.gateways
                ),
                "each gateway has different random keys: a client sent to another gateway, or back after a restart, cannot resume and pays a full handshake",
                "give every gateway the same tls.ticket_keys_file (openssl rand -base64 48 per key; the current key first) and rotate it, or set tickets: false",
            );
        }
    }
}

struct Lint<'a> {
    cfg: &'a Config,
    out: Vec<Warning>,
}

impl Lint<'_> {
    fn push(&mut self, code: &'static str, path: &str, message: String, why: &str, fix: &str) {
        self.push_as("warning", code, path, message, why, fix);
    }

    fn note(&mut self, code: &'static str, path: &str, message: String, why: &str, fix: &str) {
        self.push_as("note", code, path, message, why, fix);
    }

    fn push_as(
        &mut self,
        severity: &'static str,
        code: &'static str,
        path: &str,
        message: String,
        why: &str,
        fix: &str,
    ) {
        let (line, column) = self.cfg.index.locate(path);
        self.out.push(Warning {
            code,
            severity,
            file: self.cfg.source.clone(),
            line,
            column,
            path: path.to_owned(),
            message,
            why: why.to_owned(),
            fix: fix.to_owned(),
        });
    }
}

fn three_nines() -> Prob {
    Prob::from_parts(0.999, 0.001)
}

fn five_nines() -> Prob {
    Prob::from_parts(0.99999, 0.00001)
}

fn cluster<'a>(cs: &'a [RawCluster], name: &str) -> Option<(usize, &'a RawCluster)> {
    cs.iter().enumerate().find(|(_, c)| c.name == name)
}

/// `external: true`, or (unset) every endpoint on a public address.
fn is_external(c: &RawCluster) -> bool {
    if let Some(e) = c.external {
        return e;
    }
    let eps = c.endpoints.as_deref().unwrap_or_default();
    !eps.is_empty()
        && eps.iter().all(|e| {
            e.address
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| is_public(a.ip()))
        })
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_documentation()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)) // 100.64/10, carrier-grade NAT
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            !(v.is_loopback()
                || v.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0xdb8)) // documentation
        }
    }
}

/// The local zone (the cluster's `local_zone`, else `NINEFOLD_ZONE`) and where it came
/// from, when no endpoint of the cluster is in it.
fn remote_zone(c: &RawCluster) -> Option<(String, &'static str)> {
    let (local, from) = match &c.local_zone {
        Some(z) => (z.clone(), "local_zone"),
        None => (
            std::env::var("NINEFOLD_ZONE")
                .ok()
                .filter(|z| !z.is_empty())?,
            "the NINEFOLD_ZONE environment variable",
        ),
    };
    let eps = c.endpoints.as_deref().unwrap_or_default();
    let any_local = eps
        .iter()
        .any(|e| e.zone.as_deref() == Some(local.as_str()));
    let any_zone = eps.iter().any(|e| e.zone.is_some());
    (any_zone && !any_local).then_some((local, from))
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(
            f,
            ": {}: {}\n  why: {}\n  fix: {}",
            self.path, self.message, self.why, self.fix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_yaml(yaml: &str) -> Vec<Warning> {
        let cfg = crate::config::parse("t.yaml", yaml, std::path::Path::new(".")).unwrap();
        lint(&cfg, &Assumptions::default())
    }

    fn codes(ws: &[Warning]) -> Vec<&'static str> {
        ws.iter().map(|w| w.code).collect()
    }

    const CLEAN: &str = "\
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - {name: api, match: {path_prefix: /}, cluster: api, timeout: 2s, slo: avail}
slos:
  - {name: avail, objective: 99.9%}
clusters:
  - name: api
    health_check: {http: {path: /health}}
    endpoints:
      - {address: 10.0.0.1:80, zone: a}
      - {address: 10.0.0.2:80, zone: b}
";

    #[test]
    fn the_tcp_tier_rules() {
        let ws = lint_yaml(
            "\
listeners:
  - {name: rw, bind: 127.0.0.1:0, protocol: tcp, cluster: pg}
  - {name: ro, bind: 127.0.0.1:0, protocol: tcp, cluster: ro, fallback_cluster: one}
clusters:
  - name: pg
    on_marked_down: keep
    endpoints: [{address: 10.0.1.5:5432, zone: a}, {address: 10.0.2.5:5432, zone: b}]
    health_check: {postgres: {role: primary}, interval: 5s, unhealthy_threshold: 3}
  - name: ro
    endpoints: [{address: 10.0.1.5:5432, zone: a}, {address: 10.0.2.5:5432, zone: b}]
    health_check: {postgres: {role: replica}}
  - name: one
    endpoints: [{address: 10.0.1.5:5432}]
    health_check: {tcp: {}}
",
        );
        let mut got = codes(&ws);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "primary-keeps-sessions",
                "single-point",
                "slow-failover",
                "unbounded-lag"
            ]
        );
        let at = |code| ws.iter().find(|w| w.code == code).unwrap().path.clone();
        assert_eq!(at("primary-keeps-sessions"), "clusters[0].on_marked_down");
        assert_eq!(at("slow-failover"), "clusters[0].health_check.interval");
        assert_eq!(at("unbounded-lag"), "clusters[1].health_check.postgres");
        assert_eq!(at("single-point"), "clusters[2].endpoints");
        // The example of the seed's multi-AZ database row is clean.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/postgres-multi-az.yaml"
        ))
        .unwrap();
        let ws = lint_yaml(&text.replace("${NINEFOLD_PG_PASSWORD}", "x"));
        assert!(ws.is_empty(), "{ws:#?}");
    }

    #[test]
    fn a_dns_ttl_far_longer_than_failure_detection_is_flagged_with_its_key() {
        let dns = "dns:\n  zones:\n    - name: example.com\n      ttl: 2m\n      records:\n        - {name: api.example.com, cluster: api}\n        - {name: b.example.com, cluster: api, ttl: 10s}\n";
        let ws = lint_yaml(&format!("{CLEAN}{dns}"));
        let ttl: Vec<&Warning> = ws.iter().filter(|w| w.code == "dns-ttl-too-long").collect();
        // The default check notices after 5s × 3 = 15s: 2m is within 10 × that.
        assert!(ttl.is_empty(), "{ttl:#?}");
        let ws = lint_yaml(&format!("{CLEAN}{}", dns.replace("2m", "1h")));
        let ttl: Vec<&Warning> = ws.iter().filter(|w| w.code == "dns-ttl-too-long").collect();
        assert_eq!(ttl.len(), 1, "{ttl:#?}");
        assert_eq!(ttl[0].path, "dns.zones[0].ttl");
    }

    #[test]
    fn discovery_without_stale_for_and_without_a_churn_guard_are_flagged() {
        let with = |dns: &str, extra: &str| {
            let c = format!(
                "  - name: found\n    health_check: {{tcp: {{}}}}\n    discovery:\n      dns: {{name: api.internal, port: 80{dns}}}\n{extra}"
            );
            lint_yaml(&CLEAN.replacen("clusters:\n", &format!("clusters:\n{c}"), 1))
        };
        let ws = with("", "");
        assert_eq!(codes(&ws), ["discovery-without-stale-for"]);
        assert_eq!(ws[0].path, "clusters[0].discovery.dns");
        let ws = with(", stale_for: 5m", "    max_removed_per_update: 100%\n");
        assert_eq!(codes(&ws), ["churn-guard-off"]);
        assert_eq!(ws[0].line, 13, "{ws:#?}");
        assert_eq!(
            with(", stale_for: 5m", "    max_removed_per_update: 60%\n"),
            vec![]
        );
    }

    #[test]
    fn a_clean_config_has_no_warnings() {
        assert_eq!(lint_yaml(CLEAN), vec![]);
    }

    #[test]
    fn each_anti_pattern_is_found_with_its_key() {
        let ws = lint_yaml(&CLEAN.replace("zone: b", "zone: a"));
        assert_eq!(codes(&ws), ["single-zone"]);
        assert_eq!(ws[0].path, "clusters[0].endpoints");
        assert_eq!((ws[0].line, ws[0].column), (12, 7));
        assert!(ws[0].message.contains("\"a\""), "{}", ws[0].message);

        let ws = lint_yaml(&CLEAN.replace("      - {address: 10.0.0.2:80, zone: b}\n", ""));
        assert_eq!(codes(&ws), ["single-zone"]);
        assert!(ws[0].message.contains("single endpoint"));

        // Below 99.9% a single zone is not flagged.
        let ws = lint_yaml(
            &CLEAN
                .replace("zone: b", "zone: a")
                .replace("99.9%", "99.5%"),
        );
        assert_eq!(codes(&ws), Vec::<&str>::new());

        let ws = lint_yaml(&CLEAN.replace("    health_check: {http: {path: /health}}\n", ""));
        assert_eq!(codes(&ws), ["no-health-check"]);
        assert_eq!(ws[0].path, "clusters[0]");

        let ws = lint_yaml(&CLEAN.replace(" timeout: 2s,", ""));
        assert_eq!(codes(&ws), ["no-timeout"]);

        let ws = lint_yaml(&CLEAN.replace(", slo: avail", ""));
        assert_eq!(codes(&ws), ["no-slo"]);

        let ws = lint_yaml(&CLEAN.replace(
            "timeout: 2s,",
            "timeout: 2s, retry: {attempts: 2, budget: 100%},",
        ));
        assert_eq!(codes(&ws), ["retry-budget-too-large"]);
        assert_eq!(ws[0].path, "listeners[0].routes[0].retry");
        let ws = lint_yaml(&CLEAN.replace("timeout: 2s,", "timeout: 2s, retry: {attempts: 2},"));
        assert_eq!(codes(&ws), Vec::<&str>::new(), "the default budget is fine");
        let ws = lint_yaml(&CLEAN.replace(
            "timeout: 2s,",
            "timeout: 2s, retry: {attempts: 2, budget: 20%},",
        ));
        assert_eq!(codes(&ws), Vec::<&str>::new());
    }

    #[test]
    fn external_or_remote_needs_a_breaker_or_a_fallback() {
        let ext = CLEAN
            .replace("10.0.0.1", "93.184.216.34")
            .replace("10.0.0.2", "93.184.216.35");
        assert_eq!(codes(&lint_yaml(&ext)), ["no-degradation"]);
        let explicit = CLEAN.replace("  - name: api\n", "  - name: api\n    external: true\n");
        assert_eq!(codes(&lint_yaml(&explicit)), ["no-degradation"]);
        let not_ext = ext.replace("  - name: api\n", "  - name: api\n    external: false\n");
        assert_eq!(codes(&lint_yaml(&not_ext)), Vec::<&str>::new());
        let with_breaker = explicit.replace(
            "    health_check:",
            "    circuit_breaker: {consecutive_failures: 5}\n    health_check:",
        );
        assert_eq!(codes(&lint_yaml(&with_breaker)), Vec::<&str>::new());
        let with_fallback = explicit.replace(
            "slo: avail}",
            "slo: avail, fallback: {static: {status: 200, body: '[]'}}}",
        );
        assert_eq!(codes(&lint_yaml(&with_fallback)), Vec::<&str>::new());
        let remote = CLEAN.replace("  - name: api\n", "  - name: api\n    local_zone: c\n");
        let ws = lint_yaml(&remote);
        assert_eq!(codes(&ws), ["no-degradation"]);
        assert!(ws[0].message.contains("local zone \"c\""));
    }

    #[test]
    fn five_nines_that_the_topology_cannot_reach() {
        let five = CLEAN.replace("99.9%", "99.999%");
        let ws = lint_yaml(&five);
        assert_eq!(codes(&ws), ["unreachable-objective"]);
        assert_eq!(ws[0].path, "listeners[0].routes[0].slo");
        // With three gateways and three zones the default model reaches it.
        let cfg = crate::config::parse(
            "t.yaml",
            &five.replace(
                "      - {address: 10.0.0.2:80, zone: b}\n",
                "      - {address: 10.0.0.2:80, zone: b}\n      - {address: 10.0.0.3:80, zone: c}\n",
            ),
            std::path::Path::new("."),
        )
        .unwrap();
        let a = Assumptions {
            gateways: 3,
            ..Assumptions::default()
        };
        assert_eq!(codes(&lint(&cfg, &a)), Vec::<&str>::new());
    }

    #[test]
    fn latency_slos_are_not_judged_by_the_availability_model() {
        let y = CLEAN.replace("99.9%", "99.999%").replace(
            "objective: 99.999%}",
            "objective: 99.999%, indicator: {type: latency, threshold: 100ms}}",
        );
        assert_eq!(codes(&lint_yaml(&y)), Vec::<&str>::new());
    }

    #[test]
    fn a_fraction_objective_is_flagged() {
        let y = CLEAN.replace("99.9%", "0.999");
        assert_eq!(codes(&lint_yaml(&y)), ["ambiguous-objective"]);
    }

    #[test]
    fn ejecting_everything() {
        let y = CLEAN.replace(
            "    health_check:",
            "    outlier_detection: {max_ejection_percent: 100%}\n    health_check:",
        );
        assert_eq!(codes(&lint_yaml(&y)), ["eject-everything"]);
    }

    #[test]
    fn public_addresses() {
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(!is_public("10.1.2.3".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
        assert!(!is_public("127.0.0.1".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }

    #[test]
    fn the_tls_rules() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(dir.path().join("rsa.key"), rsa.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ec.key"), ec.serialize_pem()).unwrap();
        let yaml = |key: &str, tls_extra: &str| {
            CLEAN.replace(
                "    bind: 127.0.0.1:0\n",
                &format!("    bind: 127.0.0.1:0\n    protocol: https\n    tls: {{cert: c.pem, key: {key}{tls_extra}}}\n"),
            )
        };
        let run = |y: &str, gateways: u32| {
            let cfg = crate::config::parse("t.yaml", y, dir.path()).unwrap();
            let a = Assumptions {
                gateways,
                ..Assumptions::default()
            };
            lint(&cfg, &a)
        };
        // RSA: a note at the key, which --deny-warnings does not count.
        let ws = run(&yaml("rsa.key", ""), 1);
        assert_eq!(codes(&ws), ["tls-rsa-certificate"]);
        assert_eq!(ws[0].severity, "note");
        assert_eq!(ws[0].path, "listeners[0].tls.key");
        assert_eq!(ws[0].line, 5);
        assert!(ws[0]
            .to_string()
            .starts_with("note[tls-rsa-certificate]: t.yaml:5:"));
        assert!(run(&yaml("ec.key", ""), 1).is_empty());
        // Several gateways with per-process ticket keys.
        let ws = run(&yaml("ec.key", ""), 3);
        assert_eq!(codes(&ws), ["tickets-without-shared-keys"]);
        assert_eq!(ws[0].severity, "warning");
        assert!(ws[0].message.contains("3 gateways"), "{}", ws[0].message);
        assert!(run(&yaml("ec.key", ", ticket_keys_file: t.keys"), 3).is_empty());
        assert!(run(&yaml("ec.key", ", tickets: false"), 3).is_empty());
    }
}
