//! The running configuration: one immutable [`Snapshot`] compiled from a validated
//! `Config`, held behind a single `ArcSwap`.
//!
//! Building a snapshot does everything the data path should not: it resolves route →
//! cluster links, builds balancers (the Maglev table), loads TLS certificates, and
//! resolves metric handles. Endpoint state (in-flight counts, pool slots) is carried
//! over from the previous snapshot by (cluster, address), so a reload neither resets
//! least-request counts nor orphans pooled connections. A request loads the snapshot
//! once and finishes on it, even if a reload swaps in a new one meanwhile.

use crate::config::{
    ClusterConfig, Config, HashKey, LbKind, ListenerProtocol, MatchConfig, UpstreamProtocol,
};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::balance::Balancer;
use crate::upstream::EndpointState;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Allocator of pool slots; a slot is never reused, so a stale pooled connection can
/// never be handed out for a different endpoint.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// A compiled configuration.
pub struct Snapshot {
    /// Increases by one per successful reload.
    pub generation: u64,
    /// The validated config it was built from.
    pub config: Arc<Config>,
    /// Listeners.
    pub listeners: Vec<ListenerSnap>,
    /// Clusters by name.
    pub clusters: Vec<Arc<ClusterSnap>>,
}

/// A compiled listener.
pub struct ListenerSnap {
    /// Name.
    pub name: Arc<str>,
    /// Configured bind address.
    pub bind: SocketAddr,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// TLS acceptor for `https`, built from the files read at this snapshot.
    pub tls: Option<TlsAcceptor>,
    /// Routes, first match wins; shared so that a response body can record its
    /// route's outcome when it ends.
    pub routes: Vec<Arc<RouteSnap>>,
    /// Counters for requests no route matched (and requests refused before routing).
    pub unmatched: RouteMetrics,
}

/// A compiled route.
pub struct RouteSnap {
    /// Name.
    pub name: Arc<str>,
    /// Matcher.
    pub matcher: MatchConfig,
    /// Target cluster.
    pub cluster: Arc<ClusterSnap>,
    /// Timeout until response headers.
    pub timeout: Duration,
    /// Longest silence inside the response body.
    pub idle_timeout: Duration,
    /// Counters.
    pub metrics: RouteMetrics,
    /// The SLO the route counts towards.
    pub slo: Option<RouteSlo>,
}

/// A route's SLO: how to classify an answer, and where to count it.
pub struct RouteSlo {
    /// The SLI.
    pub indicator: crate::slo::Indicator,
    /// The SLO's counters (kept across reloads by name).
    pub counters: Arc<crate::slo::Counters>,
}

/// A compiled cluster.
pub struct ClusterSnap {
    /// Name.
    pub name: Arc<str>,
    /// Balancer over `endpoints`.
    pub balancer: Balancer,
    /// Hash key for consistent hashing.
    pub hash_on: Option<HashKey>,
    /// Algorithm name (for the state API).
    pub lb: LbKind,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Largest upstream answer head (`limits.max_response_head`).
    pub max_response_head: usize,
    /// Endpoints, in config order.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Endpoint addresses as `ip:port`, for logs and the state API.
    pub endpoint_names: Vec<Arc<str>>,
    /// `ninefold_upstream_connect_errors_total{cluster}`.
    pub connect_errors: prometheus::IntCounter,
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles `config`, carrying endpoint state over from `prev`.
    pub fn build(
        config: Arc<Config>,
        prev: Option<&Snapshot>,
        metrics: &Metrics,
        slo: &crate::slo::Engine,
    ) -> Result<Snapshot, String> {
        let defs = crate::slo::spec::from_config(&config.raw.slos);
        let mut carried: HashMap<(&str, SocketAddr), &Arc<EndpointState>> = HashMap::new();
        if let Some(prev) = prev {
            for c in &prev.clusters {
                for e in &c.endpoints {
                    carried.insert((&c.name, e.address), e);
                }
            }
        }
        let clusters: Vec<Arc<ClusterSnap>> = config
            .clusters
            .iter()
            .map(|c| {
                Arc::new(ClusterSnap::build(
                    c,
                    &carried,
                    metrics,
                    config.limits.max_response_head,
                ))
            })
            .collect();
        let by_name: HashMap<&str, &Arc<ClusterSnap>> =
            clusters.iter().map(|c| (&*c.name, c)).collect();

        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let tls = match (&l.tls, l.protocol) {
                (Some(files), ListenerProtocol::Https) => Some(
                    crate::tls::acceptor(&files.cert, &files.key)
                        .map_err(|e| format!("{}: listeners[{i}].tls: {e}", config.source))?,
                ),
                _ => None,
            };
            let mut routes = Vec::new();
            for r in &l.routes {
                let cluster = by_name.get(r.cluster.as_str()).ok_or_else(|| {
                    format!("route {:?}: unknown cluster {:?}", r.name, r.cluster)
                })?;
                let route_slo = r.slo.as_deref().and_then(|name| {
                    let d = defs.iter().find(|d| d.name == name)?;
                    Some(RouteSlo {
                        indicator: d.indicator.clone(),
                        counters: slo.counters(name),
                    })
                });
                routes.push(Arc::new(RouteSnap {
                    name: r.name.as_str().into(),
                    matcher: r.matcher.clone(),
                    cluster: Arc::clone(cluster),
                    timeout: r.timeout,
                    idle_timeout: r.idle_timeout,
                    metrics: metrics.route(&l.name, &r.name, &r.cluster, r.slo.as_deref()),
                    slo: route_slo,
                }));
            }
            listeners.push(ListenerSnap {
                name: l.name.as_str().into(),
                bind: l.bind,
                protocol: l.protocol,
                tls,
                routes,
                unmatched: metrics.route(&l.name, "", "", None),
            });
        }
        Ok(Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            config,
            listeners,
            clusters,
        })
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerSnap> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

// === impl ClusterSnap ===

impl ClusterSnap {
    fn build(
        c: &ClusterConfig,
        carried: &HashMap<(&str, SocketAddr), &Arc<EndpointState>>,
        metrics: &Metrics,
        max_response_head: usize,
    ) -> ClusterSnap {
        let endpoints: Vec<Arc<EndpointState>> = c
            .endpoints
            .iter()
            .map(|e| match carried.get(&(c.name.as_str(), e.address)) {
                Some(s) if s.weight == e.weight && s.zone == e.zone => Arc::clone(s),
                Some(s) => Arc::new(EndpointState::new(
                    s.slot,
                    e.address,
                    e.zone.clone(),
                    e.weight,
                )),
                None => Arc::new(EndpointState::new(
                    NEXT_SLOT.fetch_add(1, Ordering::Relaxed),
                    e.address,
                    e.zone.clone(),
                    e.weight,
                )),
            })
            .collect();
        let weights: Vec<u32> = c.endpoints.iter().map(|e| e.weight).collect();
        let names: Vec<String> = c.endpoints.iter().map(|e| e.address.to_string()).collect();
        let balancer = match c.lb {
            LbKind::RoundRobin => Balancer::round_robin(&weights),
            LbKind::Random => Balancer::random(&weights),
            LbKind::LeastRequest => Balancer::least_request(&weights),
            LbKind::ConsistentHash => Balancer::maglev(&names, &weights),
        };
        ClusterSnap {
            name: c.name.as_str().into(),
            balancer,
            hash_on: c.hash_on.clone(),
            lb: c.lb,
            protocol: c.protocol,
            connect_timeout: c.connect_timeout,
            max_response_head,
            endpoints,
            endpoint_names: names.into_iter().map(Into::into).collect(),
            connect_errors: metrics.connect_errors.with_label_values(&[&c.name]),
        }
    }

    /// Health in the seed's words: `ok` when no endpoint is failing, `down` when all
    /// are, `degraded` in between.
    pub fn health(&self) -> &'static str {
        let failing = self.endpoints.iter().filter(|e| e.is_failing()).count();
        if failing == 0 {
            "ok"
        } else if failing == self.endpoints.len() {
            "down"
        } else {
            "degraded"
        }
    }
}
