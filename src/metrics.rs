//! Prometheus metrics of the gateway, all named `ninefold_*`.
//!
//! Metric families live in one registry; the data path never looks a label set up:
//! each route's counters and histogram are resolved when a snapshot is built and kept
//! in the route, so recording a request is a few atomic adds. Counts kept elsewhere
//! (the access log's dropped lines) are read when the registry is scraped.
//!
//! Live state (endpoint availability, drains, ejections, circuit breakers, panic mode,
//! retry budget headroom) is not kept in the registry at all: the admin API reads it
//! from the running snapshot when `/metrics` is scraped (`admin::live`), so it costs
//! nothing per request and is never stale or left behind for an endpoint a reload
//! removed.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, OnceLock};

/// Duration buckets in seconds: 1 ms … 30 s, dense where gateways usually sit.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `ninefold_tls_handshakes_total{listener,kind,version}`: completed TLS
    /// handshakes, `kind` `full` or `resumed`, `version` `1.2` or `1.3`.
    pub tls_handshakes: IntCounterVec,
    /// `ninefold_tls_handshake_failures_total{listener,reason}`.
    pub tls_handshake_failures: IntCounterVec,
    /// `ninefold_requests_total{listener,route,cluster,code_class,slo,slo_result}`;
    /// `slo` and `slo_result` (`good`, `bad`, or `excluded` for a request its SLO
    /// leaves out) are empty on routes without an SLO.
    pub requests: IntCounterVec,
    /// `ninefold_request_duration_seconds{listener,route,cluster}`: until response headers.
    pub duration: HistogramVec,
    /// `ninefold_gateway_errors_total{listener,route,reason}`: answers the gateway
    /// made itself because it could not get one upstream (the `x-ninefold-reason`).
    pub gateway_errors: IntCounterVec,
    /// `ninefold_upstream_connect_errors_total{cluster}`.
    pub connect_errors: IntCounterVec,
    /// `ninefold_dns_queries_total{type,rcode}`: queries the DNS server answered.
    pub dns_queries: IntCounterVec,
    /// `ninefold_discovery_updates_total{cluster,outcome}`: discovery answers, by what
    /// they did (applied, unchanged, held, failed, expired).
    pub discovery_updates: IntCounterVec,
    /// `ninefold_discovery_stale{cluster}`: 1 while discovery serves its last good set
    /// because lookups fail or answer nothing.
    pub discovery_stale: IntGaugeVec,
    /// `ninefold_discovery_endpoints{cluster}`: endpoints in the discovered set.
    pub discovery_endpoints: IntGaugeVec,
    /// `ninefold_autoscale_desired_endpoints{cluster}`: the recommender's count.
    pub autoscale_desired: IntGaugeVec,
    /// `ninefold_autoscale_current_endpoints{cluster}`: endpoints in the set.
    pub autoscale_current: IntGaugeVec,
    /// `ninefold_autoscale_figure{cluster,figure}`: the figure per available endpoint
    /// the recommender holds to its target (percent for `cpu`).
    pub autoscale_figure: GaugeVec,
    /// `ninefold_open_connections{listener}`: downstream connections open now.
    pub open_connections: IntGaugeVec,
    /// `ninefold_reloads_total{result}`.
    pub reloads: IntCounterVec,
    /// `ninefold_retries_total{listener,route,reason}`: retries sent, by what failed.
    pub retries: IntCounterVec,
    /// `ninefold_endpoint_ejections_total{cluster,endpoint}`: outlier ejections.
    pub ejections: IntCounterVec,
    /// `ninefold_slo_alert_firing{slo,severity,long_window,short_window}`: 1 while the
    /// burn-rate alert fires.
    pub slo_alert_firing: IntGaugeVec,
    /// `ninefold_endpoint_healthy{cluster,endpoint}`: active health of endpoints of
    /// clusters with a health check; 1 healthy or unknown (not yet decided, so it takes
    /// traffic), 0 unhealthy. Written by `upstream::health`.
    pub endpoint_healthy: IntGaugeVec,
    /// `ninefold_faults_injected_total{route,kind}`: answers with an injected fault,
    /// `kind` `abort` or `delay`.
    pub faults_injected: IntCounterVec,
    /// `ninefold_cell_requests_total{cells,cell,outcome}`: requests by home cell and
    /// what happened to them (`home`, `evacuated`, `cell_down`).
    pub cell_requests: IntCounterVec,
    /// `ninefold_fallback_total{listener,route,kind}`: answers of the fallback ladder,
    /// by rung (`cluster`, `stale`, `static`).
    pub fallbacks: IntCounterVec,
    /// `ninefold_primary_generation{cluster}`: one more each time another endpoint
    /// becomes a primary cluster's primary.
    pub primary_generation: IntGaugeVec,
    /// `ninefold_tcp_sessions_fenced_total{cluster,endpoint}`: TCP sessions closed
    /// because their endpoint left the set (`on_marked_down: shutdown_sessions`).
    pub fenced: IntCounterVec,
    /// `ninefold_tcp_connections_active{listener,endpoint}`.
    pub tcp_active: IntGaugeVec,
    /// `ninefold_tcp_connections_total{listener,endpoint}`.
    pub tcp_total: IntCounterVec,
    /// `ninefold_tcp_bytes_total{listener,endpoint,direction}`, `direction`
    /// `to_endpoint` or `to_client`.
    pub tcp_bytes: IntCounterVec,
    /// `ninefold_tcp_connect_failures_total{listener,endpoint}`.
    pub tcp_connect_failures: IntCounterVec,
    /// `ninefold_tcp_sessions_closed_total{listener,endpoint,reason}`: sessions the
    /// gateway closed by policy (`fenced`, `listener_removed`, `idle`).
    pub tcp_closed: IntCounterVec,
    /// `ninefold_tcp_refused_total{listener,reason}`: connections closed at once
    /// (`limit`, `two_primaries`, `no_endpoint`, `fencing`).
    pub tcp_refused: IntCounterVec,
}

/// A counter whose value is read from a function at each scrape, for counts that
/// another component already keeps (like `PullingGauge`, but typed as a counter so
/// `rate()` and `_total` naming are right).
struct PullingCounter {
    desc: Desc,
    read: fn() -> u64,
}

/// What an answer was for its route's SLO: the `slo_result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloResult {
    /// A bad event (or any answer of a route without an SLO).
    Bad = 0,
    /// A good event.
    Good = 1,
    /// Left out of the SLO: an injected fault under `count_faults: false`. Rules built
    /// on the counter leave it out of the total too.
    Excluded = 2,
}

/// The counters of one route (or of the "no route matched" pseudo route), each series
/// made at its first use: an idle route costs its labels and a few empty slots, not a
/// registry entry per status class (10,000 routes would hold 175 MB and print a 26 MB
/// `/metrics` page). A resolved series is read without a lock after.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    labels: Arc<RouteLabels>,
    /// Indexed by [`SloResult`] (the same series for each on a route without an SLO),
    /// then by status class: 0 for `1xx` … 4 for `5xx`.
    by_class: OnceLock<Box<ByClass>>,
    /// Duration until response headers.
    duration: OnceLock<prometheus::Histogram>,
    /// The route's `ninefold_gateway_errors_total` counters, resolved at first use.
    pub errors: GatewayErrors,
}

/// What a route's series are made from.
#[derive(Debug)]
struct RouteLabels {
    requests: IntCounterVec,
    duration: HistogramVec,
    /// The names are the snapshot's own, shared: an idle route holds no copy.
    listener: Arc<str>,
    route: Arc<str>,
    cluster: Arc<str>,
    slo: Option<Box<str>>,
}

/// A route's request counters by SLO result and status class, each made at its first
/// use; the table itself is made at the route's first answer, so a route that never
/// sees traffic holds one pointer for it.
type ByClass = [[OnceLock<IntCounter>; 5]; 3];

/// A route's `ninefold_retries_total` counters by reason, each made at its first use.
#[derive(Debug)]
pub struct RouteRetries {
    family: IntCounterVec,
    listener: Arc<str>,
    route: Arc<str>,
    /// Made at the route's first retry: most routes never retry.
    by_reason: OnceLock<Box<[OnceLock<IntCounter>]>>,
    reasons: usize,
}

/// One route's gateway-made answers by reason: each reason's counter is resolved from
/// the family once, at its first use, and read without a lock after (a small
/// insert-only table: reasons are a fixed, short list).
#[derive(Clone, Debug)]
pub struct GatewayErrors {
    family: IntCounterVec,
    listener: Arc<str>,
    route: Arc<str>,
    /// Made at the first gateway-made answer: most routes never have one.
    by_reason: Arc<OnceLock<ReasonSlots>>,
}

/// Slots of (reason, its counter), filled in the order reasons first occur.
type ReasonSlots = Box<[OnceLock<(String, IntCounter)>]>;

// === impl Metrics ===

impl Metrics {
    /// Creates and registers all families. Fails only if a definition here is wrong
    /// (an invalid name or a duplicate), which the tests would show.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ninefold_requests_total",
                "Requests answered, by route, cluster, status class, and SLO result.",
            ),
            &[
                "listener",
                "route",
                "cluster",
                "code_class",
                "slo",
                "slo_result",
            ],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ninefold_request_duration_seconds",
                "Time from request received to response headers sent.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["listener", "route", "cluster"],
        )?;
        let gateway_errors = IntCounterVec::new(
            Opts::new(
                "ninefold_gateway_errors_total",
                "Answers the gateway made itself instead of an upstream's, by route and reason (the x-ninefold-reason: no-healthy-endpoint, connect-failed, upstream-timeout, circuit-open, fault-abort, ...); a client that left is not counted.",
            ),
            &["listener", "route", "reason"],
        )?;
        let dns_queries = IntCounterVec::new(
            Opts::new(
                "ninefold_dns_queries_total",
                "Queries the authoritative DNS server (dns:) answered, by query type and answer code.",
            ),
            &["type", "rcode"],
        )?;
        let discovery_updates = IntCounterVec::new(
            Opts::new(
                "ninefold_discovery_updates_total",
                "Discovery answers by outcome: applied, unchanged, held (churn guard), failed (last good set kept), expired (stale_for passed).",
            ),
            &["cluster", "outcome"],
        )?;
        let discovery_stale = IntGaugeVec::new(
            Opts::new(
                "ninefold_discovery_stale",
                "1 while a cluster's discovery serves its last good set because lookups fail or answer nothing.",
            ),
            &["cluster"],
        )?;
        let discovery_endpoints = IntGaugeVec::new(
            Opts::new(
                "ninefold_discovery_endpoints",
                "Endpoints in a cluster's discovered set.",
            ),
            &["cluster"],
        )?;
        let autoscale_desired = IntGaugeVec::new(
            Opts::new(
                "ninefold_autoscale_desired_endpoints",
                "Endpoints the autoscale recommender wants for a cluster (feed it to an HPA through prometheus-adapter, or to KEDA's Prometheus scaler).",
            ),
            &["cluster"],
        )?;
        let autoscale_current = IntGaugeVec::new(
            Opts::new(
                "ninefold_autoscale_current_endpoints",
                "Endpoints in an autoscaled cluster's set now.",
            ),
            &["cluster"],
        )?;
        let autoscale_figure = GaugeVec::new(
            Opts::new(
                "ninefold_autoscale_figure",
                "The figure per available endpoint an autoscaled cluster holds to its target: in flight, requests per second, or CPU percent.",
            ),
            &["cluster", "figure"],
        )?;
        let connect_errors = IntCounterVec::new(
            Opts::new(
                "ninefold_upstream_connect_errors_total",
                "Failed upstream connection attempts.",
            ),
            &["cluster"],
        )?;
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "ninefold_open_connections",
                "Downstream connections open now.",
            ),
            &["listener"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "ninefold_reloads_total",
                "Configuration reloads, by result.",
            ),
            &["result"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "ninefold_retries_total",
                "Retries sent, by route and by what failed (connect-failure, refused-stream, reset, timeout, status).",
            ),
            &["listener", "route", "reason"],
        )?;
        let ejections = IntCounterVec::new(
            Opts::new(
                "ninefold_endpoint_ejections_total",
                "Endpoints ejected by passive outlier detection.",
            ),
            &["cluster", "endpoint"],
        )?;
        let slo_alert_firing = IntGaugeVec::new(
            Opts::new(
                "ninefold_slo_alert_firing",
                "1 while an SLO burn-rate alert fires.",
            ),
            &["slo", "severity", "long_window", "short_window"],
        )?;
        let access_log_dropped = PullingCounter::new(
            "ninefold_access_log_dropped_total",
            "Access log lines dropped because the queue to stdout was full.",
            crate::logging::access_log_dropped,
        )?;
        let endpoint_healthy = IntGaugeVec::new(
            Opts::new(
                "ninefold_endpoint_healthy",
                "Active health of an endpoint: 1 healthy or not yet checked (it takes traffic), 0 unhealthy.",
            ),
            &["cluster", "endpoint"],
        )?;
        let faults_injected = IntCounterVec::new(
            Opts::new(
                "ninefold_faults_injected_total",
                "Requests given an injected fault (abort or delay), by route.",
            ),
            &["route", "kind"],
        )?;
        let cell_requests = IntCounterVec::new(
            Opts::new(
                "ninefold_cell_requests_total",
                "Requests routed by a cell set, by home cell and outcome (home, evacuated, cell_down).",
            ),
            &["cells", "cell", "outcome"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "ninefold_fallback_total",
                "Answers served by a route's fallback ladder, by rung (cluster, stale, static).",
            ),
            &["listener", "route", "kind"],
        )?;
        let primary_generation = IntGaugeVec::new(
            Opts::new(
                "ninefold_primary_generation",
                "Generation of a primary cluster's primary: one more per switch.",
            ),
            &["cluster"],
        )?;
        let fenced = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_sessions_fenced_total",
                "TCP sessions closed because their endpoint left the set (on_marked_down: shutdown_sessions).",
            ),
            &["cluster", "endpoint"],
        )?;
        let tcp_active = IntGaugeVec::new(
            Opts::new(
                "ninefold_tcp_connections_active",
                "TCP sessions open now, by listener and endpoint.",
            ),
            &["listener", "endpoint"],
        )?;
        let tcp_total = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_connections_total",
                "TCP sessions opened, by listener and endpoint.",
            ),
            &["listener", "endpoint"],
        )?;
        let tcp_bytes = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_bytes_total",
                "Bytes relayed by TCP listeners, by direction (to_endpoint, to_client).",
            ),
            &["listener", "endpoint", "direction"],
        )?;
        let tcp_connect_failures = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_connect_failures_total",
                "Failed connects of TCP listeners to endpoints.",
            ),
            &["listener", "endpoint"],
        )?;
        let tcp_closed = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_sessions_closed_total",
                "TCP sessions the gateway closed by policy (fenced, listener_removed, idle).",
            ),
            &["listener", "endpoint", "reason"],
        )?;
        let tcp_refused = IntCounterVec::new(
            Opts::new(
                "ninefold_tcp_refused_total",
                "TCP connections closed at once (limit, two_primaries, no_endpoint, fencing).",
            ),
            &["listener", "reason"],
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "ninefold_tls_handshakes_total",
                "Completed TLS handshakes of https listeners, by kind (full, resumed) and version (1.2, 1.3).",
            ),
            &["listener", "kind", "version"],
        )?;
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "ninefold_tls_handshake_failures_total",
                "TLS handshakes that did not complete, by reason (timeout, closed, no_shared_cipher, bad_message, alert, other).",
            ),
            &["listener", "reason"],
        )?;
        for c in [
            Box::new(primary_generation.clone()) as Box<dyn Collector>,
            Box::new(tls_handshakes.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(fenced.clone()),
            Box::new(tcp_active.clone()),
            Box::new(tcp_total.clone()),
            Box::new(tcp_bytes.clone()),
            Box::new(tcp_connect_failures.clone()),
            Box::new(tcp_closed.clone()),
            Box::new(tcp_refused.clone()),
            Box::new(requests.clone()),
            Box::new(faults_injected.clone()),
            Box::new(cell_requests.clone()),
            Box::new(fallbacks.clone()),
            Box::new(access_log_dropped),
            Box::new(slo_alert_firing.clone()),
            Box::new(duration.clone()),
            Box::new(connect_errors.clone()),
            Box::new(gateway_errors.clone()),
            Box::new(dns_queries.clone()),
            Box::new(discovery_updates.clone()),
            Box::new(discovery_stale.clone()),
            Box::new(discovery_endpoints.clone()),
            Box::new(autoscale_desired.clone()),
            Box::new(autoscale_current.clone()),
            Box::new(autoscale_figure.clone()),
            Box::new(open_connections.clone()),
            Box::new(reloads.clone()),
            Box::new(retries.clone()),
            Box::new(ejections.clone()),
            Box::new(endpoint_healthy.clone()),
        ] {
            registry.register(c)?;
        }
        // Make both results visible from the start, so rate() works at the first failure.
        reloads.with_label_values(&["ok"]);
        reloads.with_label_values(&["failed"]);
        Ok(Metrics {
            registry,
            tls_handshakes,
            tls_handshake_failures,
            requests,
            duration,
            gateway_errors,
            connect_errors,
            dns_queries,
            discovery_updates,
            discovery_stale,
            discovery_endpoints,
            autoscale_desired,
            autoscale_current,
            autoscale_figure,
            open_connections,
            reloads,
            retries,
            ejections,
            slo_alert_firing,
            endpoint_healthy,
            faults_injected,
            cell_requests,
            fallbacks,
            primary_generation,
            fenced,
            tcp_active,
            tcp_total,
            tcp_bytes,
            tcp_connect_failures,
            tcp_closed,
            tcp_refused,
        })
    }

    /// Resolves a route's counters; `slo` is the SLO the route counts towards.
    pub fn route(
        &self,
        listener: &Arc<str>,
        route: &Arc<str>,
        cluster: &Arc<str>,
        slo: Option<&str>,
    ) -> RouteMetrics {
        RouteMetrics {
            labels: Arc::new(RouteLabels {
                requests: self.requests.clone(),
                duration: self.duration.clone(),
                listener: listener.clone(),
                route: route.clone(),
                cluster: cluster.clone(),
                slo: slo.map(Into::into),
            }),
            by_class: OnceLock::new(),
            duration: OnceLock::new(),
            errors: GatewayErrors {
                family: self.gateway_errors.clone(),
                listener: listener.clone(),
                route: route.clone(),
                by_reason: Arc::new(OnceLock::new()),
            },
        }
    }

    /// The `ninefold_retries_total` counters of route `route` of `listener`, one slot
    /// per reason (`reasons` of them), each made at its first retry.
    pub fn retries(&self, listener: &Arc<str>, route: &Arc<str>, reasons: usize) -> RouteRetries {
        RouteRetries {
            family: self.retries.clone(),
            listener: listener.clone(),
            route: route.clone(),
            by_reason: OnceLock::new(),
            reasons,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

// === impl PullingCounter ===

impl PullingCounter {
    fn new(name: &str, help: &str, read: fn() -> u64) -> Result<Self, prometheus::Error> {
        Ok(PullingCounter {
            desc: Desc::new(name.into(), help.into(), Vec::new(), Default::default())?,
            read,
        })
    }
}

impl Collector for PullingCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut counter = Counter::default();
        // f64 is exact up to 2^53 lines, far beyond what a process drops.
        counter.set_value((self.read)() as f64);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

// === impl GatewayErrors ===

impl GatewayErrors {
    /// Counts one answer the gateway made for `reason`.
    pub fn inc(&self, reason: &str) {
        let slots = self
            .by_reason
            .get_or_init(|| (0..32).map(|_| OnceLock::new()).collect());
        for slot in slots.iter() {
            let (r, c) = slot.get_or_init(|| {
                let labels = [&*self.listener, &*self.route, reason];
                (reason.to_owned(), self.family.with_label_values(&labels))
            });
            if r == reason {
                c.inc();
                return;
            }
        }
        // More reasons than slots: resolve each time (never, with today's reasons).
        let labels = [&*self.listener, &*self.route, reason];
        self.family.with_label_values(&labels).inc();
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    /// Counts one answer with its status and its SLO result (any without an SLO).
    #[inline]
    pub fn record(&self, status: u16, result: SloResult, seconds: f64) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        let l = &self.labels;
        self.by_class.get_or_init(Box::default)[result as usize][class]
            .get_or_init(|| {
                const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
                let (slo, r) = match &l.slo {
                    Some(s) => (&**s, result.as_str()),
                    None => ("", ""),
                };
                l.requests.with_label_values(&[
                    &l.listener,
                    &l.route,
                    &l.cluster,
                    CLASSES[class],
                    slo,
                    r,
                ])
            })
            .inc();
        self.duration
            .get_or_init(|| {
                l.duration
                    .with_label_values(&[&l.listener, &l.route, &l.cluster])
            })
            .observe(seconds);
    }
}

// === impl SloResult ===

impl SloResult {
    /// The `slo_result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SloResult::Bad => "bad",
            SloResult::Good => "good",
            SloResult::Excluded => "excluded",
        }
    }
}

// === impl RouteRetries ===

impl RouteRetries {
    /// Counts one retry for reason number `i`, labelled `label`.
    pub fn inc(&self, i: usize, label: &str) {
        let labels = [&*self.listener, &*self.route, label];
        let slots = self
            .by_reason
            .get_or_init(|| (0..self.reasons).map(|_| OnceLock::new()).collect());
        match slots.get(i) {
            Some(slot) => slot
                .get_or_init(|| self.family.with_label_values(&labels))
                .inc(),
            None => self.family.with_label_values(&labels).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_dropped_is_exported_as_a_counter() {
        let text = Metrics::new().unwrap().render();
        assert!(
            text.contains("# TYPE ninefold_access_log_dropped_total counter"),
            "{text}"
        );
        assert!(
            text.contains("\nninefold_access_log_dropped_total 0\n"),
            "{text}"
        );
    }
}
