//! The availability a configuration's topology can reach: `ninefold calc topology` and
//! the 5-nines check of the HA lint.
//!
//! The model, step by step (each step is written out in the estimate so a reader can
//! check it):
//! - an endpoint is up with the endpoint availability, independently of the others;
//! - endpoints share the fate of their zone: a zone is up with the zone availability,
//!   and a zone's endpoints are only reachable while it is up (endpoints without a
//!   `zone` count as one unnamed zone; pass a zone availability of 100% for the pure
//!   k-of-n model);
//! - a cluster is up while at least one endpoint of any priority is up: per zone,
//!   zone × (1 of n endpoints), and zones in parallel;
//! - a route's fallback cluster is a parallel alternative; a static or stale fallback
//!   answers, but degraded, so it is not counted as availability;
//! - cells: each user lives in one cell; with `on_cell_down: fail` a user's
//!   availability is their cell's, the route figure is the mean over cells and one
//!   cell's loss affects 1/N of users; with `evacuate` the cells act in parallel;
//! - the gateway is in series with everything, as 1 of `gateways` instances.

use crate::availability::{k_of_n, parallel, parse_availability, serial, Prob};
use crate::config::raw::RawRoute;
use crate::config::{ClusterConfig, Config};
use crate::config::{Indicator, SloDef};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the estimate assumes about the parts it cannot see.
#[derive(Debug, Clone, Copy)]
pub struct Assumptions {
    /// Availability of one endpoint.
    pub endpoint: Prob,
    /// Availability of one zone (shared fate of its endpoints).
    pub zone: Prob,
    /// Availability of one gateway instance.
    pub gateway: Prob,
    /// Gateway instances in front of the routes (any one of them can serve).
    pub gateways: u32,
}

/// The default endpoint availability, `99.5%`: a single cloud instance's usual SLA.
pub const DEFAULT_ENDPOINT: &str = "99.5%";
/// The default zone availability, `99.95%`: a zone-wide outage of a few hours a year.
pub const DEFAULT_ZONE: &str = "99.95%";

/// One route's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct RouteEstimate {
    /// Listener name.
    pub listener: String,
    /// Route name.
    pub route: String,
    /// Key path of the route in the file.
    pub path: String,
    /// What the route sends to: `cluster NAME` or `cells NAME`.
    pub target: String,
    /// Estimated availability, as a fraction.
    pub availability: f64,
    /// Estimated unavailability, as a fraction (precise even when tiny).
    pub unavailability: f64,
    /// The estimate as a percentage string.
    pub availability_percent: String,
    /// −log10(unavailability).
    pub nines: f64,
    /// Expected downtime per 365-day year, in seconds.
    pub downtime_per_year_seconds: f64,
    /// The SLO the route counts towards, and whether the estimate reaches it.
    pub slo: Option<SloCheck>,
    /// For cell routes: the share of users one cell's loss affects.
    pub cell_blast_radius: Option<f64>,
    /// The reasoning, one step per line.
    pub steps: Vec<String>,
    /// The estimate, kept in log form for composition.
    #[serde(skip)]
    pub prob: Prob,
}

/// A route's SLO against its estimate.
#[derive(Debug, Clone, Serialize)]
pub struct SloCheck {
    /// SLO name.
    pub name: String,
    /// Objective as a fraction.
    pub objective: f64,
    /// Objective as written.
    pub objective_text: String,
    /// Whether the estimate is at or above the objective.
    pub reachable: bool,
}

impl Default for Assumptions {
    fn default() -> Self {
        let endpoint = parse_availability(DEFAULT_ENDPOINT).unwrap_or(Prob::ALWAYS);
        Assumptions {
            endpoint,
            zone: parse_availability(DEFAULT_ZONE).unwrap_or(Prob::ALWAYS),
            gateway: endpoint,
            gateways: 1,
        }
    }
}

/// Estimates every HTTP route of `cfg`.
pub fn estimate(cfg: &Config, a: &Assumptions) -> Vec<RouteEstimate> {
    let mut out = Vec::new();
    for (i, l) in cfg.raw.listeners.iter().enumerate() {
        for (j, r) in l.routes.iter().enumerate() {
            let name = r.name_in(&l.name, j);
            let path = format!("listeners[{i}].routes[{j}]");
            if let Some(e) = route(cfg, a, &l.name, &name, path, r) {
                out.push(e);
            }
        }
    }
    out
}

fn route(
    cfg: &Config,
    a: &Assumptions,
    listener: &str,
    name: &str,
    path: String,
    r: &RawRoute,
) -> Option<RouteEstimate> {
    let find = |n: &str| cfg.clusters.iter().find(|x| x.name == n);
    let mut steps = Vec::new();
    let mut blast = None;
    let fallback = r
        .fallback
        .as_ref()
        .and_then(|f| f.cluster.as_deref())
        .and_then(find);
    if let Some(fc) = fallback {
        steps.push(format!(
            "fallback cluster {} answers when the primary cannot: its endpoints join the primary's, zone by zone (a zone outage takes both sides' endpoints in it)",
            fc.name
        ));
    }
    fn with_fallback<'c>(
        c: &'c ClusterConfig,
        f: Option<&'c ClusterConfig>,
    ) -> Vec<&'c ClusterConfig> {
        let mut v = vec![c];
        v.extend(f.filter(|f| f.name != c.name));
        v
    }
    let (target, mut p) = if let Some(c) = &r.cluster {
        let cl = find(c)?;
        (
            format!("cluster {c}"),
            clusters(&with_fallback(cl, fallback), a, &mut steps),
        )
    } else {
        let cells_name = r.cells.as_ref()?;
        let set = cfg.raw.cells.iter().find(|c| &c.name == cells_name)?;
        let members: Vec<&ClusterConfig> = set
            .members
            .iter()
            .map(|m| find(&m.cluster))
            .collect::<Option<_>>()?;
        if members.is_empty() {
            return None;
        }
        let n = members.len();
        blast = Some(1.0 / n as f64);
        let evacuate = set.on_cell_down.as_deref() == Some("evacuate");
        let p = if evacuate {
            let mut all = members.clone();
            all.extend(fallback);
            let p = clusters(&all, a, &mut steps);
            steps.push(format!(
                "cells {cells_name}: {n} cells, on_cell_down: evacuate moves a failed cell's users to the others, so every cell's endpoints serve every user (capacity assumed) → {p}"
            ));
            p
        } else {
            let per: Vec<Prob> = members
                .iter()
                .map(|m| clusters(&with_fallback(m, fallback), a, &mut steps))
                .collect();
            // Mean over cells, each holding 1/n of users; the down side averaged from
            // the precise per-cell downs.
            let down = per.iter().map(Prob::down).sum::<f64>() / n as f64;
            let up = per.iter().map(Prob::up).sum::<f64>() / n as f64;
            let p = Prob::from_parts(up, down);
            steps.push(format!(
                "cells {cells_name}: {n} cells, on_cell_down: fail; a user sees their own cell, so the route is the mean over cells → {p}; losing one cell affects 1/{n} = {}% of users",
                crate::availability::sig3(100.0 / n as f64)
            ));
            p
        };
        (format!("cells {cells_name}"), p)
    };
    if let Some(f) = &r.fallback {
        if f.static_response.is_some() || f.stale.is_some() {
            steps.push(
                "static/stale fallback: answers while everything behind is down, but degraded; not counted as availability"
                    .into(),
            );
        }
    }
    let gw = k_of_n(a.gateway, a.gateways.max(1), 1).unwrap_or(a.gateway);
    let before = p;
    p = serial(&[gw, before]);
    if a.gateways <= 1 {
        steps.push(format!(
            "the gateway in series: one instance at {} × {before} → {p} (pass --gateways N for N instances)",
            a.gateway
        ));
    } else {
        steps.push(format!(
            "the gateway in series: 1 of {} instances at {} up → {gw}; × {before} → {p}",
            a.gateways, a.gateway
        ));
    }
    let slo = r.slo.as_ref().and_then(|s| slo_check(&cfg.slos, s, p));
    Some(RouteEstimate {
        listener: listener.to_owned(),
        route: name.to_owned(),
        path,
        target,
        availability: p.up(),
        unavailability: p.down(),
        availability_percent: p.percent(),
        nines: p.nines(),
        downtime_per_year_seconds: p.down() * crate::availability::YEAR_DAYS * 86_400.0,
        slo,
        cell_blast_radius: blast,
        steps,
        prob: p,
    })
}

fn slo_check(slos: &[SloDef], name: &str, p: Prob) -> Option<SloCheck> {
    let s = slos.iter().find(|s| s.name == name)?;
    // A latency SLO is about speed; the availability model says nothing about it.
    if matches!(s.indicator, Indicator::Latency { .. }) {
        return None;
    }
    Some(SloCheck {
        name: name.to_owned(),
        objective: s.objective.up(),
        objective_text: s.objective_text.clone(),
        reachable: p.ln_down <= s.objective.ln_down + 1e-12,
    })
}

/// One or more clusters whose endpoints serve together (a cluster and its fallback):
/// zones in parallel, each zone × (1 of its endpoints). Appends its reasoning to
/// `steps`.
pub fn clusters(cs: &[&ClusterConfig], a: &Assumptions, steps: &mut Vec<String>) -> Prob {
    let mut zones: BTreeMap<&str, u32> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for c in cs {
        for e in &c.endpoints {
            if seen.insert(e.address) {
                *zones
                    .entry(e.zone.as_deref().unwrap_or("(no zone)"))
                    .or_default() += 1;
            }
        }
    }
    let mut parts = Vec::new();
    // Zones with the same number of endpoints have the same figures: describe them once.
    let mut by_count: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (z, n) in &zones {
        let eps = k_of_n(a.endpoint, *n, 1).unwrap_or(a.endpoint);
        parts.push(serial(&[a.zone, eps]));
        by_count.entry(*n).or_default().push(z);
    }
    let desc: Vec<String> = by_count
        .iter()
        .map(|(n, zs)| {
            let eps = k_of_n(a.endpoint, *n, 1).unwrap_or(a.endpoint);
            let zp = serial(&[a.zone, eps]);
            let each = if zs.len() > 1 { " each" } else { "" };
            format!(
                "{}{each}: 1 of {n} endpoint{} at {} → {eps}, × zone {} → {zp}",
                zs.join(", "),
                if *n == 1 { "" } else { "s" },
                a.endpoint,
                a.zone
            )
        })
        .collect();
    let p = parallel(&parts);
    let n = seen.len();
    let nz = zones.len();
    let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
    steps.push(format!(
        "cluster{} {}: {n} endpoint{} in {nz} zone{} [{}]{} → {p}",
        if cs.len() > 1 { "s" } else { "" },
        names.join(" + "),
        if n == 1 { "" } else { "s" },
        if nz == 1 { "" } else { "s" },
        desc.join("; "),
        if nz > 1 { ", zones in parallel" } else { "" }
    ));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::parse_availability as pa;

    fn cfg(yaml: &str) -> Config {
        crate::config::parse("t.yaml", yaml, std::path::Path::new(".")).unwrap()
    }

    fn pure(endpoint: &str, gateways: u32) -> Assumptions {
        Assumptions {
            endpoint: pa(endpoint).unwrap(),
            zone: Prob::ALWAYS,
            gateway: Prob::ALWAYS,
            gateways,
        }
    }

    const TWO_ZONES: &str = "\
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - {name: api, match: {path_prefix: /}, cluster: api, slo: avail}
slos:
  - {name: avail, objective: 99.999%}
clusters:
  - name: api
    endpoints:
      - {address: 127.0.0.1:1, zone: a}
      - {address: 127.0.0.1:2, zone: a}
      - {address: 127.0.0.1:3, zone: b}
";

    #[test]
    fn pure_k_of_n_when_zones_and_gateway_are_perfect() {
        let est = estimate(&cfg(TWO_ZONES), &pure("99%", 1));
        assert_eq!(est.len(), 1);
        // 1 of 3 at 99%: down = 1e-6.
        assert!((est[0].unavailability / 1e-6 - 1.0).abs() < 1e-9);
        assert!(est[0].slo.as_ref().unwrap().reachable);
    }

    #[test]
    fn zones_share_fate_and_the_gateway_counts() {
        let a = Assumptions {
            endpoint: pa("99%").unwrap(),
            zone: pa("99.9%").unwrap(),
            gateway: pa("99.9%").unwrap(),
            gateways: 1,
        };
        let est = &estimate(&cfg(TWO_ZONES), &a)[0];
        let za = 0.999 * (1.0 - 0.01f64.powi(2));
        let zb = 0.999 * 0.99;
        let cluster_down = (1.0 - za) * (1.0 - zb);
        let want_up = 0.999 * (1.0 - cluster_down);
        assert!((est.availability - want_up).abs() < 1e-12);
        // One gateway at 99.9% caps the route below 99.999%.
        assert!(!est.slo.as_ref().unwrap().reachable);
        assert!(est.steps.iter().any(|s| s.contains("--gateways")));
        // Three gateways lift the cap.
        let est = &estimate(&cfg(TWO_ZONES), &Assumptions { gateways: 3, ..a })[0];
        let gw_down = 1e-9;
        let want_down = 1.0 - (1.0 - gw_down) * (1.0 - cluster_down);
        assert!((est.unavailability / want_down - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_fallback_in_the_same_zone_shares_its_fate() {
        let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - {name: a, match: {path_prefix: /}, cluster: one, fallback: {cluster: two}}
clusters:
  - {name: one, endpoints: [{address: 127.0.0.1:1, zone: a}, {address: 127.0.0.1:2, zone: a}]}
  - {name: two, endpoints: [{address: 127.0.0.1:3, zone: a}, {address: 127.0.0.1:4, zone: a}]}
";
        let a = Assumptions {
            endpoint: pa("99%").unwrap(),
            zone: pa("99.9%").unwrap(),
            gateway: Prob::ALWAYS,
            gateways: 1,
        };
        let est = &estimate(&cfg(yaml), &a)[0];
        // Zone a up and 1 of 4 endpoints up: never better than the zone.
        let want = 0.999 * (1.0 - 0.01f64.powi(4));
        assert!(
            (est.availability - want).abs() < 1e-12,
            "{}",
            est.availability
        );
    }

    #[test]
    fn fallback_and_cells() {
        let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes:
      - {name: a, match: {path_prefix: /a}, cluster: one, fallback: {cluster: two, static: {status: 200}}}
      - {name: b, match: {path_prefix: /b}, cells: users}
      - {name: c, match: {path_prefix: /c}, cells: spill}
cells:
  - {name: users, key: {header: x-user}, members: [{name: c1, cluster: one}, {name: c2, cluster: two}, {name: c3, cluster: one}, {name: c4, cluster: two}]}
  - {name: spill, key: {header: x-user}, on_cell_down: evacuate, members: [{name: c1, cluster: one}, {name: c2, cluster: two}]}
clusters:
  - {name: one, endpoints: [{address: 127.0.0.1:1}]}
  - {name: two, endpoints: [{address: 127.0.0.1:2}]}
";
        let est = estimate(&cfg(yaml), &pure("99%", 1));
        assert!((est[0].unavailability / 1e-4 - 1.0).abs() < 1e-9);
        assert!(est[0].steps.iter().any(|s| s.contains("not counted")));
        assert!((est[1].unavailability / 1e-2 - 1.0).abs() < 1e-9);
        assert_eq!(est[1].cell_blast_radius, Some(0.25));
        assert!((est[2].unavailability / 1e-4 - 1.0).abs() < 1e-9);
    }
}
