//! Prometheus metrics of the gateway, all named `ninefold_*`.
//!
//! Metric families live in one registry; the data path never looks a label set up:
//! each route's counters and histogram are resolved when a snapshot is built and kept
//! in the route, so recording a request is a few atomic adds.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Duration buckets in seconds: 1 ms … 30 s, dense where gateways usually sit.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `ninefold_requests_total{listener,route,cluster,code_class}`.
    pub requests: IntCounterVec,
    /// `ninefold_request_duration_seconds{listener,route,cluster}`: until response headers.
    pub duration: HistogramVec,
    /// `ninefold_upstream_connect_errors_total{cluster}`.
    pub connect_errors: IntCounterVec,
    /// `ninefold_open_connections{listener}`: downstream connections open now.
    pub open_connections: IntGaugeVec,
    /// `ninefold_reloads_total{result}`.
    pub reloads: IntCounterVec,
}

/// Pre-resolved counters of one route (or of the "no route matched" pseudo route).
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// Indexed by status class: 0 for `1xx` … 4 for `5xx`.
    pub by_class: [IntCounter; 5],
    /// Duration until response headers.
    pub duration: prometheus::Histogram,
}

// === impl Metrics ===

impl Metrics {
    /// Creates and registers all families. Fails only if a definition here is wrong
    /// (an invalid name or a duplicate), which the tests would show.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ninefold_requests_total",
                "Requests answered, by route, cluster and status class.",
            ),
            &["listener", "route", "cluster", "code_class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ninefold_request_duration_seconds",
                "Time from request received to response headers sent.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["listener", "route", "cluster"],
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
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(connect_errors.clone()),
            Box::new(open_connections.clone()),
            Box::new(reloads.clone()),
        ] {
            registry.register(c)?;
        }
        // Make both results visible from the start, so rate() works at the first failure.
        reloads.with_label_values(&["ok"]);
        reloads.with_label_values(&["failed"]);
        Ok(Metrics {
            registry,
            requests,
            duration,
            connect_errors,
            open_connections,
            reloads,
        })
    }

    /// Resolves a route's counters.
    pub fn route(&self, listener: &str, route: &str, cluster: &str) -> RouteMetrics {
        let c = |class| {
            self.requests
                .with_label_values(&[listener, route, cluster, class])
        };
        RouteMetrics {
            by_class: [c("1xx"), c("2xx"), c("3xx"), c("4xx"), c("5xx")],
            duration: self.duration.with_label_values(&[listener, route, cluster]),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    /// Counts one answer with its status.
    pub fn record(&self, status: u16, seconds: f64) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }
}
