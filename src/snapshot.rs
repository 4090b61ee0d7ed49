//! The running configuration: one immutable [`Snapshot`] compiled from a validated
//! `Config`, held behind a single `ArcSwap`.
//!
//! Building a snapshot does everything the data path should not: it resolves route →
//! cluster links, builds balancers (the Maglev table), loads TLS certificates, and
//! resolves metric handles. Endpoint state (in-flight counts, pool slots) is carried
//! over from the previous snapshot by (cluster, address), so a reload neither resets
//! least-request counts nor orphans pooled connections. A request loads the snapshot
//! once and finishes on it, even if a reload swaps in a new one meanwhile.
//!
//! [`Snapshot::build`] changes nothing shared: what a new snapshot changes besides
//! being stored (breakers it leaves without a scope, the pool slots it takes and
//! frees, SLO counters it starts) comes back as [`Changes`], which the control plane
//! applies only once the snapshot is stored. A reload refused after the build (a
//! listener that cannot bind) drops them, and the gateway is as it was.

use crate::bulkhead::{Bulkhead, Scope};
use crate::cells::CellSet;
use crate::config::{
    BreakerConfig, ClusterConfig, Config, ConfigError, HashKey, HealthCheckConfig, LbKind,
    ListenerProtocol, MatchConfig, OnMarkedDown, OutlierConfig, RetryConfig, Role, TwoPrimaries,
    UpstreamProtocol, Writes,
};
use crate::fallback::{RouteFallback, KIND_LABELS};
use crate::fault::RouteFaults;
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::balance::Balancer;
use crate::upstream::health::{ClusterTargets, Targets};
use crate::upstream::retry::{Budget, Reason};
use crate::upstream::select::{EndpointMeta, Selector};
use crate::upstream::{ClusterLive, EndpointState};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// The pool slots of a gateway's endpoints (each worker keeps its idle connections to
/// an endpoint under its slot, see `h1::pool`): the next never-used slot, and the
/// slots of endpoints that reloads removed, reused first. A reused slot cannot hand
/// out a connection to the old endpoint: pooled connections are checked by address.
/// Owned by the control plane; a build plans on a copy, and the copy becomes the
/// allocator only when its snapshot is stored ([`Changes::apply`]).
#[derive(Debug, Default, Clone)]
pub struct Slots {
    next: usize,
    free: Vec<usize>,
}

/// What storing a new snapshot changes besides the swap itself, applied by the
/// control plane right after the store ([`Changes::apply`]); dropped unapplied, it
/// changes nothing.
#[must_use = "a snapshot's changes apply only when it is stored"]
pub struct Changes {
    /// The slot allocator after this snapshot: slots taken by its new endpoints, slots
    /// of endpoints it dropped freed.
    slots: Slots,
    /// Breakers this snapshot leaves without a scope (the cluster's breaker settings
    /// went, or moved to the other scope): reset, or they would keep rejecting with
    /// nothing to record an outcome or probe them again.
    resets: Vec<Reset>,
    /// SLO counters this snapshot starts (SLOs new to the engine).
    counters: Vec<(String, Arc<crate::slo::Counters>)>,
}

/// A breaker to reset.
enum Reset {
    /// A cluster's own.
    Cluster(Arc<ClusterLive>),
    /// An endpoint's.
    Endpoint(Arc<EndpointState>),
}

/// State every worker and the admin API read.
pub struct Shared {
    /// The running configuration.
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Listener name → address actually bound (ports resolved), for the state API.
    pub bound: arc_swap::ArcSwap<Vec<(String, SocketAddr)>>,
    /// The live SLO engine.
    pub slo: Arc<crate::slo::Engine>,
    /// Faults set through the admin API: outside the snapshot so that a reload keeps
    /// them, each ending at its own expiry time.
    pub faults: crate::fault::RuntimeFaults,
    /// Each discovered cluster's condition (source, version, stale, held answers).
    pub discovery: Arc<crate::discovery::Board>,
    /// Each autoscaled cluster's last recommendation.
    pub autoscale: Arc<crate::autoscale::Board>,
}

/// A compiled configuration.
pub struct Snapshot {
    /// Increases by one per successful reload.
    pub generation: u64,
    /// The validated config it was built from.
    pub config: Arc<Config>,
    /// Listeners.
    pub listeners: Vec<ListenerSnap>,
    /// Clusters, in config order (a reload looks them up by name once, at build).
    pub clusters: Vec<Arc<ClusterSnap>>,
    /// Cell sets, in config order.
    pub cells: Vec<Arc<CellSet<ClusterSnap>>>,
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
    /// What the state API shows of the listener's TLS.
    pub tls_info: Option<crate::tls::Info>,
    /// Routes, first match wins; shared so that a response body can record its
    /// route's outcome when it ends.
    pub routes: Vec<Arc<RouteSnap>>,
    /// The routes' candidates by host and path, so a match does not scan them all.
    pub index: crate::routes::RouteIndex,
    /// Counters for requests no route matched (and requests refused before routing).
    pub unmatched: RouteMetrics,
    /// What a `tcp` listener relays to.
    pub tcp: Option<TcpSnap>,
}

/// A compiled `tcp` listener.
pub struct TcpSnap {
    /// Where new connections go.
    pub cluster: Arc<ClusterSnap>,
    /// Where they go when `cluster` has no eligible endpoint.
    pub fallback: Option<Arc<ClusterSnap>>,
    /// Longest silence of a session.
    pub idle_timeout: Duration,
    /// Most sessions at once.
    pub max_connections: Option<u32>,
    /// Sessions open now, over all workers (carried across reloads by listener name).
    pub open: Arc<std::sync::atomic::AtomicU32>,
    /// Counters of `cluster`'s endpoints, by index.
    pub endpoints: Vec<TcpEndpointMetrics>,
    /// Counters of `fallback`'s endpoints, by index.
    pub fallback_endpoints: Vec<TcpEndpointMetrics>,
    /// `ninefold_tcp_refused_total{listener,reason}`, by [`TcpRefusal`].
    pub refused: [prometheus::IntCounter; TcpRefusal::ALL.len()],
}

/// Why a `tcp` listener closed a new connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpRefusal {
    /// The listener is at its `bulkhead.max_concurrent`.
    Limit,
    /// Two endpoints claim primary (`two_primaries: refuse`).
    TwoPrimaries,
    /// No eligible endpoint (nor in the fallback cluster), or none could be reached.
    NoEndpoint,
    /// The old primary's sessions did not close within the connect timeout.
    Fencing,
}

impl TcpRefusal {
    /// Every reason, in counter order.
    pub const ALL: [TcpRefusal; 4] = [
        TcpRefusal::Limit,
        TcpRefusal::TwoPrimaries,
        TcpRefusal::NoEndpoint,
        TcpRefusal::Fencing,
    ];

    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRefusal::Limit => "limit",
            TcpRefusal::TwoPrimaries => "two_primaries",
            TcpRefusal::NoEndpoint => "no_endpoint",
            TcpRefusal::Fencing => "fencing",
        }
    }
}

/// Why the gateway ended a TCP session by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// Its endpoint left the set (`on_marked_down: shutdown_sessions`).
    Fenced,
    /// Its listener was removed by a reload, and the drain time passed.
    ListenerRemoved,
    /// Silent for `idle_timeout`.
    Idle,
}

impl TcpClose {
    /// Every reason, in counter order.
    pub const ALL: [TcpClose; 3] = [TcpClose::Fenced, TcpClose::ListenerRemoved, TcpClose::Idle];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpClose::Fenced => "fenced",
            TcpClose::ListenerRemoved => "listener_removed",
            TcpClose::Idle => "idle",
        }
    }
}

/// The counters of one endpoint behind one `tcp` listener.
#[derive(Clone)]
pub struct TcpEndpointMetrics {
    /// The endpoint's `ip:port`.
    pub name: Arc<str>,
    /// Sessions open now.
    pub active: prometheus::IntGauge,
    /// Sessions opened.
    pub total: prometheus::IntCounter,
    /// Bytes from the client to the endpoint.
    pub to_endpoint: prometheus::IntCounter,
    /// Bytes from the endpoint to the client.
    pub to_client: prometheus::IntCounter,
    /// Failed connects.
    pub connect_failures: prometheus::IntCounter,
    /// Sessions closed by policy, by [`TcpClose`].
    pub closed: [prometheus::IntCounter; TcpClose::ALL.len()],
}

impl TcpEndpointMetrics {
    fn new(metrics: &Metrics, listener: &str, endpoint: &Arc<str>) -> Self {
        let l = [listener, &**endpoint];
        TcpEndpointMetrics {
            name: endpoint.clone(),
            active: metrics.tcp_active.with_label_values(&l),
            total: metrics.tcp_total.with_label_values(&l),
            to_endpoint: metrics
                .tcp_bytes
                .with_label_values(&[listener, endpoint, "to_endpoint"]),
            to_client: metrics
                .tcp_bytes
                .with_label_values(&[listener, endpoint, "to_client"]),
            connect_failures: metrics.tcp_connect_failures.with_label_values(&l),
            closed: TcpClose::ALL.map(|c| {
                metrics
                    .tcp_closed
                    .with_label_values(&[listener, endpoint, c.as_str()])
            }),
        }
    }
}

/// A compiled route.
pub struct RouteSnap {
    /// Name.
    pub name: Arc<str>,
    /// Matcher.
    pub matcher: MatchConfig,
    /// Target cluster; for a route to a cell set, the cluster of its default cell (or
    /// first member), which only names the route's target in logs.
    pub cluster: Arc<ClusterSnap>,
    /// Target cell set: when set, each request runs on its cell's cluster.
    pub cells: Option<Arc<CellSet<ClusterSnap>>>,
    /// The fallback ladder.
    pub fallback: Option<Box<RouteFallback<ClusterSnap>>>,
    /// Timeout until response headers.
    pub timeout: Duration,
    /// Longest silence inside the response body.
    pub idle_timeout: Duration,
    /// Counters.
    pub metrics: RouteMetrics,
    /// The SLO the route counts towards.
    pub slo: Option<RouteSlo>,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Retry budget, shared by all workers.
    pub budget: Budget,
    /// `ninefold_retries_total{listener,route,reason}`, by `retry::Reason`.
    pub retries: crate::metrics::RouteRetries,
    /// Where writes go when split from reads: another cluster ...
    pub write_cluster: Option<Arc<ClusterSnap>>,
    /// ... or one zone of the route's cluster.
    pub write_zone: Option<Arc<str>>,
    /// The route's own concurrency limit (carried across reloads by listener and route
    /// name while its settings stay the same).
    pub bulkhead: Option<Arc<Bulkhead>>,
    /// Fault injection.
    pub faults: RouteFaults,
}

/// A route's SLO: how to classify an answer, and where to count it.
pub struct RouteSlo {
    /// The SLI.
    pub indicator: crate::config::Indicator,
    /// The SLO's counters (kept across reloads by name).
    pub counters: Arc<crate::slo::Counters>,
    /// Whether requests with an injected fault count (`count_faults`); when false they
    /// are left out of the SLO entirely.
    pub count_faults: bool,
}

/// A compiled cluster.
pub struct ClusterSnap {
    /// Name.
    pub name: Arc<str>,
    /// The selection step over the endpoints (their live state, levels, zones, balancer).
    pub select: Selector,
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
    /// Most chunk-extension bytes in an upstream answer's chunked body
    /// (`limits.max_chunk_extension`).
    pub max_chunk_extension: usize,
    /// Active health checks.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier detection.
    pub outlier: OutlierConfig,
    /// Circuit breaker settings; the breakers themselves live in the endpoints' and
    /// the cluster's live state, carried over reloads.
    pub breaker: Option<BreakerConfig>,
    /// Endpoint addresses as `ip:port`, for logs and the state API.
    pub endpoint_names: Vec<Arc<str>>,
    /// `ninefold_upstream_connect_errors_total{cluster}`.
    pub connect_errors: prometheus::IntCounter,
    /// `ninefold_endpoint_ejections_total{cluster,endpoint}`, by endpoint index.
    pub ejections: Vec<prometheus::IntCounter>,
    /// The cluster's concurrency limit, shared by every route to it (carried across
    /// reloads by cluster name while its settings stay the same).
    pub bulkhead: Option<Arc<Bulkhead>>,
    /// Open TCP sessions of an endpoint that leaves the set: closed or kept.
    pub on_marked_down: OnMarkedDown,
    /// The role its PostgreSQL-aware check wants, if it has one.
    pub role: Option<Role>,
    /// What two primaries do (a primary cluster only).
    pub two_primaries: Option<TwoPrimaries>,
}

/// A cluster's health in the seed's words (`/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterHealth {
    /// Every endpoint is available.
    Ok,
    /// Some are lost (unhealthy, ejected or drained), not all.
    Degraded,
    /// None is available.
    Down,
}

// === impl ClusterHealth ===

impl ClusterHealth {
    /// The word `/health` says.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterHealth::Ok => "ok",
            ClusterHealth::Degraded => "degraded",
            ClusterHealth::Down => "down",
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles `config`, carrying endpoint state over from `prev`; `slots` is the
    /// running allocator of pool slots. Returns the snapshot and what storing it
    /// changes (see [`Changes`]); builds nothing shared.
    pub fn build(
        config: Arc<Config>,
        prev: Option<&Snapshot>,
        metrics: &Metrics,
        slo: &crate::slo::Engine,
        slots: &Slots,
    ) -> Result<(Snapshot, Changes), ConfigError> {
        let defs = &config.slos;
        let mut changes = Changes {
            slots: slots.clone(),
            resets: Vec::new(),
            counters: Vec::new(),
        };
        let mut carried: HashMap<(&str, SocketAddr), &Arc<EndpointState>> = HashMap::new();
        let mut lives: HashMap<&str, &Arc<ClusterLive>> = HashMap::new();
        let mut cluster_bulkheads: HashMap<&str, &Arc<Bulkhead>> = HashMap::new();
        let mut route_bulkheads: HashMap<(&str, &str), &Arc<Bulkhead>> = HashMap::new();
        if let Some(prev) = prev {
            for l in &prev.listeners {
                for r in &l.routes {
                    if let Some(b) = &r.bulkhead {
                        route_bulkheads.insert((&l.name, &r.name), b);
                    }
                }
            }
            for c in &prev.clusters {
                if let Some(b) = &c.bulkhead {
                    cluster_bulkheads.insert(&c.name, b);
                }
                lives.insert(&c.name, &c.select.live);
                for e in &c.select.endpoints {
                    carried.insert((&c.name, e.address), e);
                }
            }
        }
        let clusters: Vec<Arc<ClusterSnap>> = config
            .clusters
            .iter()
            .map(|c| {
                let mut snap = ClusterSnap::build(
                    c,
                    &carried,
                    lives.get(c.name.as_str()).copied(),
                    metrics,
                    &config.limits,
                    &mut changes,
                );
                snap.bulkhead = c.bulkhead.map(|b| {
                    Bulkhead::carry(
                        Scope::Cluster,
                        &c.name,
                        b,
                        cluster_bulkheads.get(c.name.as_str()).copied(),
                    )
                });
                Arc::new(snap)
            })
            .collect();
        let by_name: HashMap<&str, &Arc<ClusterSnap>> =
            clusters.iter().map(|c| (&*c.name, c)).collect();
        let cells = config
            .cells
            .iter()
            .map(|c| {
                CellSet::build(
                    c,
                    |name| by_name.get(name).map(|c| Arc::clone(c)),
                    |cell, outcome| {
                        metrics
                            .cell_requests
                            .with_label_values(&[&c.name, cell, outcome])
                    },
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| config_error(&config, "cells", e))?;

        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let tls = match (&l.tls, l.protocol) {
                (Some(files), ListenerProtocol::Https) => {
                    let before = prev
                        .and_then(|p| p.listener(&l.name))
                        .and_then(|b| b.tls_info.as_ref());
                    let settings = crate::tls::Settings {
                        before,
                        cert: &files.cert,
                        key: &files.key,
                        session_cache: files.session_cache,
                        tickets: files.tickets,
                        ticket_keys_file: files.ticket_keys_file.as_deref(),
                    };
                    Some(crate::tls::acceptor(&settings).map_err(|e| {
                        config_error(&config, &format!("listeners[{i}].tls"), e.to_string())
                    })?)
                }
                _ => None,
            };
            let (tls, tls_info) = match tls {
                Some((a, info)) => (Some(a), Some(info)),
                None => (None, None),
            };
            let lname: Arc<str> = l.name.as_str().into();
            let mut routes = Vec::new();
            for r in &l.routes {
                let set = match &r.cells {
                    Some(name) => Some(
                        cells
                            .iter()
                            .find(|s| &*s.name == name.as_str())
                            .cloned()
                            .ok_or_else(|| {
                                config_error(
                                    &config,
                                    "listeners",
                                    format!("route {:?}: unknown cells {name:?}", r.name),
                                )
                            })?,
                    ),
                    None => None,
                };
                let cluster = match &set {
                    Some(s) => s
                        .members
                        .get(s.default.unwrap_or(0))
                        .map(|m| &m.cluster)
                        .ok_or_else(|| {
                            config_error(
                                &config,
                                "cells",
                                format!("cells {:?}: no members", s.name),
                            )
                        })?,
                    None => by_name.get(r.cluster.as_str()).copied().ok_or_else(|| {
                        config_error(
                            &config,
                            "listeners",
                            format!("route {:?}: unknown cluster {:?}", r.name, r.cluster),
                        )
                    })?,
                };
                let target_label: Arc<str> = match &r.cells {
                    Some(c) => c.as_str().into(),
                    None if *cluster.name == *r.cluster => cluster.name.clone(),
                    None => r.cluster.as_str().into(),
                };
                let rname: Arc<str> = r.name.as_str().into();
                let fallback = match &r.fallback {
                    Some(f) => Some(Box::new(RouteFallback {
                        cache_id: format!("{}/{}", l.name, r.name).into(),
                        cluster: match &f.cluster {
                            Some(c) => {
                                Some(Arc::clone(by_name.get(c.as_str()).ok_or_else(|| {
                                    config_error(
                                        &config,
                                        "listeners",
                                        format!("route {:?}: unknown cluster {c:?}", r.name),
                                    )
                                })?))
                            }
                            None => None,
                        },
                        stale: f.stale,
                        static_answer: f.static_answer.clone(),
                        methods: f.methods.clone(),
                        served: KIND_LABELS
                            .map(|k| metrics.fallbacks.with_label_values(&[&l.name, &r.name, k])),
                    })),
                    None => None,
                };
                let route_slo = r.slo.as_deref().and_then(|name| {
                    let d = defs.iter().find(|d| d.name == name)?;
                    Some(RouteSlo {
                        indicator: d.indicator.clone(),
                        counters: changes.counters_of(slo, name),
                        count_faults: d.count_faults,
                    })
                });
                routes.push(Arc::new(RouteSnap {
                    name: rname.clone(),
                    matcher: r.matcher.clone(),
                    cluster: Arc::clone(cluster),
                    cells: set,
                    fallback,
                    timeout: r.timeout,
                    idle_timeout: r.idle_timeout,
                    metrics: metrics.route(&lname, &rname, &target_label, r.slo.as_deref()),
                    slo: route_slo,
                    retry: r.retry,
                    budget: Budget::new(&r.retry),
                    retries: metrics.retries(&lname, &rname, Reason::ALL.len()),
                    write_cluster: match &r.writes {
                        Some(Writes::Cluster(c)) => {
                            Some(Arc::clone(by_name.get(c.as_str()).ok_or_else(|| {
                                config_error(
                                    &config,
                                    "listeners",
                                    format!("route {:?}: unknown cluster {c:?}", r.name),
                                )
                            })?))
                        }
                        _ => None,
                    },
                    write_zone: match &r.writes {
                        Some(Writes::Zone(z)) => Some(z.as_str().into()),
                        _ => None,
                    },
                    bulkhead: r.bulkhead.map(|b| {
                        Bulkhead::carry(
                            Scope::Route(l.name.as_str().into()),
                            &r.name,
                            b,
                            route_bulkheads
                                .get(&(l.name.as_str(), r.name.as_str()))
                                .copied(),
                        )
                    }),
                    faults: RouteFaults::new(r.faults, &rname, metrics),
                }));
            }
            let tcp = match &l.tcp {
                Some(t) => {
                    let find = |name: &str| {
                        by_name.get(name).map(|c| Arc::clone(c)).ok_or_else(|| {
                            config_error(
                                &config,
                                &format!("listeners[{i}]"),
                                format!("unknown cluster {name:?}"),
                            )
                        })
                    };
                    let cluster = find(&t.cluster)?;
                    let fallback = t.fallback_cluster.as_deref().map(find).transpose()?;
                    let per = |c: &ClusterSnap| {
                        c.endpoint_names
                            .iter()
                            .map(|n| TcpEndpointMetrics::new(metrics, &l.name, n))
                            .collect()
                    };
                    let open = prev
                        .and_then(|p| p.listener(&l.name))
                        .and_then(|p| p.tcp.as_ref())
                        .map(|t| Arc::clone(&t.open))
                        .unwrap_or_default();
                    Some(TcpSnap {
                        endpoints: per(&cluster),
                        fallback_endpoints: fallback.as_deref().map(per).unwrap_or_default(),
                        cluster,
                        fallback,
                        idle_timeout: t.idle_timeout,
                        max_connections: t.max_connections,
                        open,
                        refused: TcpRefusal::ALL.map(|r| {
                            metrics
                                .tcp_refused
                                .with_label_values(&[&l.name, r.as_str()])
                        }),
                    })
                }
                None => None,
            };
            listeners.push(ListenerSnap {
                name: lname.clone(),
                bind: l.bind,
                protocol: l.protocol,
                tls,
                tls_info,
                index: crate::routes::RouteIndex::build(routes.iter().map(|r| &r.matcher)),
                routes,
                unmatched: metrics.route(&lname, &"".into(), &"".into(), None),
                tcp,
            });
        }
        // Slots of endpoints this snapshot drops go back to the allocator.
        if let Some(prev) = prev {
            let kept: HashSet<usize> = clusters
                .iter()
                .flat_map(|c| c.select.endpoints.iter().map(|e| e.slot))
                .collect();
            for c in &prev.clusters {
                for e in &c.select.endpoints {
                    if !kept.contains(&e.slot) {
                        changes.slots.give(e.slot);
                    }
                }
            }
        }
        let snap = Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            config,
            listeners,
            clusters,
            cells,
        };
        Ok((snap, changes))
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerSnap> {
        self.listeners.iter().find(|l| &*l.name == name)
    }

    /// What the health checks probe while this snapshot runs: each cluster's check
    /// and its endpoints' live state.
    pub fn health_targets(&self) -> Targets {
        let clusters = self
            .clusters
            .iter()
            .map(|c| ClusterTargets {
                name: c.name.clone(),
                check: c.health_check.clone(),
                h2: c.protocol == UpstreamProtocol::Http2,
                live: Arc::clone(&c.select.live),
                endpoints: c
                    .endpoint_names
                    .iter()
                    .cloned()
                    .zip(c.select.endpoints.iter().cloned())
                    .collect(),
                on_marked_down: c.on_marked_down,
            })
            .collect();
        Targets {
            generation: self.generation,
            clusters,
        }
    }
}

// === impl ClusterSnap ===

impl ClusterSnap {
    fn build(
        c: &ClusterConfig,
        carried: &HashMap<(&str, SocketAddr), &Arc<EndpointState>>,
        live: Option<&Arc<ClusterLive>>,
        metrics: &Metrics,
        limits: &crate::config::Limits,
        changes: &mut Changes,
    ) -> ClusterSnap {
        // Live state is carried by (cluster, address) whatever else changed: a weight,
        // zone or priority edit must not reset an ejection, a failed check or a drain.
        let endpoints: Vec<Arc<EndpointState>> = c
            .endpoints
            .iter()
            .map(|e| match carried.get(&(c.name.as_str(), e.address)) {
                Some(s) => Arc::clone(s),
                None => Arc::new(EndpointState::new(changes.slots.take(), e.address)),
            })
            .collect();
        let live = live.cloned().unwrap_or_default();
        // A breaker a reload took away (or moved to the other scope) must not keep
        // rejecting: nothing would ever record an outcome or probe it again. Reset
        // once the snapshot is stored.
        let scope = c.breaker.map(|b| b.scope);
        if !scope.is_some_and(|s| s.cluster()) {
            changes.resets.push(Reset::Cluster(Arc::clone(&live)));
        }
        if !scope.is_some_and(|s| s.endpoint()) {
            let eps = endpoints.iter().map(|e| Reset::Endpoint(Arc::clone(e)));
            changes.resets.extend(eps);
        }
        let weights: Vec<u32> = c.endpoints.iter().map(|e| e.weight).collect();
        let names: Vec<String> = c.endpoints.iter().map(|e| e.address.to_string()).collect();
        let balancer = match c.lb {
            LbKind::RoundRobin => Balancer::round_robin(&weights),
            LbKind::Random => Balancer::random(&weights),
            LbKind::LeastRequest => Balancer::least_request(&weights),
            LbKind::ConsistentHash => Balancer::maglev(&names, &weights),
        };
        let meta = c
            .endpoints
            .iter()
            .map(|e| EndpointMeta {
                zone: e.zone.as_deref().map(Into::into),
                weight: e.weight,
                priority: e.priority.min(7) as u8,
            })
            .collect();
        ClusterSnap {
            name: c.name.as_str().into(),
            select: Selector::new(
                c.name.as_str().into(),
                endpoints,
                meta,
                balancer,
                live,
                c.local_zone.as_deref().map(Into::into),
                c.zone_spill_below,
                c.panic_threshold,
            ),
            hash_on: c.hash_on.clone(),
            lb: c.lb,
            protocol: c.protocol,
            connect_timeout: c.connect_timeout,
            max_response_head: limits.max_response_head,
            max_chunk_extension: limits.max_chunk_extension,
            health_check: c.health_check.clone(),
            outlier: c.outlier,
            breaker: c.breaker,
            ejections: names
                .iter()
                .map(|n| metrics.ejections.with_label_values(&[&c.name, n]))
                .collect(),
            endpoint_names: names.into_iter().map(Into::into).collect(),
            connect_errors: metrics.connect_errors.with_label_values(&[&c.name]),
            bulkhead: None,
            on_marked_down: c.on_marked_down,
            role: c.health_check.as_ref().and_then(|h| h.role()),
            two_primaries: c.health_check.as_ref().and_then(|h| h.two_primaries()),
        }
    }

    /// Health at `now` (ms) in the seed's words: see [`ClusterHealth`]. A primary
    /// cluster is up when it has its one primary (its other endpoints are standbys,
    /// out by design), down with none, or with two claiming it under
    /// `two_primaries: refuse`.
    pub fn health(&self, now: u64) -> ClusterHealth {
        if self.role == Some(Role::Primary) {
            let split = self.select.live.primary.split.load(Ordering::Acquire);
            let refused = split && self.two_primaries == Some(TwoPrimaries::Refuse);
            return if refused || self.select.available(now) == 0 {
                ClusterHealth::Down
            } else {
                ClusterHealth::Ok
            };
        }
        // An endpoint discovery removed is on its way out, not lost.
        let n = self
            .select
            .endpoints
            .iter()
            .filter(|e| !e.retiring())
            .count();
        let up = self.select.available(now);
        if up == n && n > 0 {
            ClusterHealth::Ok
        } else if up == 0 {
            ClusterHealth::Down
        } else {
            ClusterHealth::Degraded
        }
    }

    /// The endpoints' live state, in config order.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.select.endpoints
    }
}

// === impl CellSet ===

impl CellSet<ClusterSnap> {
    /// Whether member `i`'s cluster has an available endpoint at `now` (ms).
    pub fn live(&self, i: usize, now: u64) -> bool {
        self.members[i].cluster.select.available(now) > 0
    }
}

// === impl Slots ===

impl Slots {
    /// A slot for a new endpoint: a freed one first, else the next never used.
    fn take(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Frees the slot of an endpoint a snapshot dropped.
    fn give(&mut self, slot: usize) {
        if !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }
}

// === impl Changes ===

impl Changes {
    /// The counters of SLO `name`: the engine's, or new ones started when this
    /// snapshot is stored.
    fn counters_of(&mut self, slo: &crate::slo::Engine, name: &str) -> Arc<crate::slo::Counters> {
        if let Some(c) = slo.counters_if_any(name) {
            return c;
        }
        if let Some((_, c)) = self.counters.iter().find(|(n, _)| n == name) {
            return Arc::clone(c);
        }
        let c = Arc::new(crate::slo::Counters::default());
        self.counters.push((name.to_owned(), Arc::clone(&c)));
        c
    }

    /// Applies the changes of the snapshot just stored: `slots` becomes the allocator
    /// it planned with, breakers left without a scope are reset at `now` (ms), and the
    /// SLO engine adopts the counters it started.
    pub fn apply(self, slots: &mut Slots, slo: &crate::slo::Engine, now: u64) {
        *slots = self.slots;
        for r in self.resets {
            match r {
                Reset::Cluster(live) => live.breaker.reset(now),
                Reset::Endpoint(e) => e.breaker.reset(now),
            };
        }
        for (name, c) in self.counters {
            slo.adopt_counters(&name, c);
        }
    }
}

/// A build error about key `path` of `config`, located in its file.
fn config_error(config: &Config, path: &str, message: String) -> ConfigError {
    let (line, column) = config.index.locate(path);
    ConfigError {
        file: config.source.clone(),
        line,
        column,
        path: path.to_owned(),
        message,
        hint: None,
    }
}
