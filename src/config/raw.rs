//! The configuration file as written: serde types that mirror the YAML contract
//! (see `docs/config.md`) one to one.
//!
//! Every struct denies unknown keys, so a typo is an error with its line instead of a
//! silently ignored setting. Durations and percentages are kept as [`Scalar`]s here and
//! parsed by `validate`, which knows the key path of each one and can name it in an
//! error. Nothing in this module decides whether a setting is *good*; that is
//! `validate`'s job.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Any YAML scalar (string, number or boolean) kept as its text, so that `5s`, `5`,
/// `99.95%` and `99.95` all reach the validator, which parses them by meaning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scalar(pub String);

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The admin listener.
    pub admin: Option<RawAdmin>,
    /// Where SLO counters survive restarts.
    pub state_dir: Option<String>,
    /// How often SLO counters are written to `state_dir`.
    pub state_flush: Option<Scalar>,
    /// Data-path worker threads.
    pub workers: Option<usize>,
    /// `off`, `text` or `json`.
    pub access_log: Option<String>,
    /// How long a SIGTERM waits for in-flight requests.
    pub shutdown_grace: Option<Scalar>,
    /// How long a client connection may go without starting a request.
    pub client_idle_timeout: Option<Scalar>,
    /// Size and count limits on requests and upstream answers.
    pub limits: Option<RawLimits>,
    /// Listeners.
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    /// Clusters of endpoints.
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    /// Cells.
    #[serde(default)]
    pub cells: Vec<RawCell>,
    /// SLO definitions.
    #[serde(default)]
    pub slos: Vec<RawSlo>,
    /// The authoritative DNS server.
    pub dns: Option<RawDns>,
}

/// `dns:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// UDP and TCP address.
    pub bind: Option<String>,
    /// Zones answered.
    #[serde(default)]
    pub zones: Vec<RawDnsZone>,
}

/// `dns.zones[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsZone {
    /// The apex.
    pub name: String,
    /// TTL of its answers.
    pub ttl: Option<Scalar>,
    /// Its records.
    #[serde(default)]
    pub records: Vec<RawDnsRecord>,
}

/// `dns.zones[].records[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsRecord {
    /// Owner name.
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The cluster whose eligible endpoints answer.
    pub cluster: String,
    /// TTL (the zone's by default).
    pub ttl: Option<Scalar>,
    /// `first_group` (default) or `nothing`.
    pub when_none_eligible: Option<String>,
}

/// `admin:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Socket address; loopback by default.
    pub bind: Option<String>,
    /// Bearer token for mutations.
    pub token: Option<String>,
}

/// `limits:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request head (request line and headers).
    pub max_request_head: Option<Scalar>,
    /// Most header fields in a request head.
    pub max_request_headers: Option<usize>,
    /// Longest single request header field (name and value).
    pub max_request_field: Option<Scalar>,
    /// Longest request target (URI).
    pub max_uri: Option<Scalar>,
    /// Largest upstream response head (status line and headers).
    pub max_response_head: Option<Scalar>,
    /// Most bytes of chunk extensions in one chunked body.
    pub max_chunk_extension: Option<Scalar>,
}

/// `listeners[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Unique name.
    pub name: String,
    /// Socket address.
    pub bind: String,
    /// `http`, `https` or `tcp`.
    pub protocol: Option<String>,
    /// Certificate and key for `https`.
    pub tls: Option<RawTls>,
    /// Target cluster of a `tcp` listener.
    pub cluster: Option<String>,
    /// A `tcp` listener's cluster for new connections when its own has no eligible
    /// endpoint.
    pub fallback_cluster: Option<String>,
    /// A `tcp` listener's longest silence (both directions) before it closes a session.
    pub idle_timeout: Option<Scalar>,
    /// A `tcp` listener's connection limit (`max_concurrent`).
    pub bulkhead: Option<RawBulkhead>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
    /// Sessions kept for resumption by session id (TLS 1.2) or stateful ticket; 0 turns
    /// the cache off. Default 20,000.
    pub session_cache: Option<u64>,
    /// Stateless session tickets (TLS 1.2 and 1.3). Default on.
    pub tickets: Option<bool>,
    /// File of ticket keys shared by a fleet: the current key first, then previous
    /// ones. Re-read on reload. Without it, per-process random keys rotated every 12 h.
    pub ticket_keys_file: Option<String>,
}

/// `listeners[].routes[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Name used in metrics and logs.
    pub name: Option<String>,
    /// What the route matches.
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// Target cluster.
    pub cluster: Option<String>,
    /// Target cell set (instead of a cluster).
    pub cells: Option<String>,
    /// Time until the upstream's response headers.
    pub timeout: Option<Scalar>,
    /// Longest silence between two frames of the upstream's response body.
    pub idle_timeout: Option<Scalar>,
    /// Retry policy.
    pub retry: Option<RawRetry>,
    /// Concurrency limit.
    pub bulkhead: Option<RawBulkhead>,
    /// Fallback ladder.
    pub fallback: Option<RawFallback>,
    /// Fault injection.
    pub faults: Option<RawFaults>,
    /// SLO name this route counts towards.
    pub slo: Option<String>,
    /// Where writes go (read/write split).
    pub writes: Option<RawWrites>,
}

/// `routes[].match`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Path prefix, segment-aware is not implied: `/api` matches `/apix` too, as in Envoy.
    pub path_prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Host (without port), case-insensitive.
    pub host: Option<String>,
    /// Allowed methods.
    pub methods: Option<Vec<String>>,
    /// Header name → exact value.
    pub headers: Option<BTreeMap<String, String>>,
}

/// `routes[].retry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Total attempts.
    pub attempts: Option<u32>,
    /// Timeout of one attempt.
    pub per_try_timeout: Option<Scalar>,
    /// Conditions that allow a retry.
    pub on: Option<Vec<Scalar>>,
    /// Retry budget as a share of requests.
    pub budget: Option<Scalar>,
    /// Retries always allowed per second, whatever the budget says.
    pub min_retries_per_second: Option<u32>,
    /// Backoff between attempts.
    pub backoff: Option<RawBackoff>,
    /// Largest request body kept for replay.
    pub buffer: Option<Scalar>,
    /// Retry non-idempotent requests that carry an `Idempotency-Key` header.
    pub idempotency_key: Option<bool>,
}

/// `retry.backoff`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// First backoff.
    pub base: Option<Scalar>,
    /// Largest backoff.
    pub max: Option<Scalar>,
}

/// `routes[].writes`: where a route's writes (unsafe methods) go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWrites {
    /// Another cluster takes the writes.
    pub cluster: Option<String>,
    /// Only the endpoints of this zone take the writes.
    pub zone: Option<String>,
}

/// `bulkhead` on a route or cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBulkhead {
    /// Concurrent requests.
    pub max_concurrent: Option<u32>,
    /// Queued requests beyond that.
    pub max_queue: Option<u32>,
    /// How long one may wait in the queue.
    pub queue_timeout: Option<Scalar>,
}

/// `routes[].fallback`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    /// Another cluster.
    pub cluster: Option<String>,
    /// Last good response.
    pub stale: Option<RawStale>,
    /// A fixed response.
    #[serde(rename = "static")]
    pub static_response: Option<RawStatic>,
    /// Methods the ladder serves; default GET and HEAD.
    pub methods: Option<Vec<String>>,
}

/// `fallback.stale`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStale {
    /// Oldest answer that may be served.
    pub max_age: Option<Scalar>,
    /// Cache size.
    pub max_entries: Option<u64>,
    /// Bytes of answers kept for the route, all workers together.
    pub max_bytes: Option<Scalar>,
    /// Also keep answers to requests with `Authorization` or `Cookie`, keyed by them.
    pub private: Option<bool>,
}

/// `fallback.static`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    /// Status code.
    pub status: Option<u16>,
    /// Content type.
    pub content_type: Option<String>,
    /// Body text.
    pub body: Option<String>,
    /// File whose bytes are the body (read when the configuration is loaded).
    pub body_file: Option<String>,
}

/// `routes[].faults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaults {
    /// Abort a share of requests.
    pub abort: Option<RawAbort>,
    /// Delay a share of requests.
    pub delay: Option<RawDelay>,
    /// Let the `x-ninefold-fault` request header trigger faults.
    pub allow_header: Option<bool>,
    /// Seed of the fault RNG, for reproducible drills.
    pub seed: Option<u64>,
}

/// `faults.abort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAbort {
    /// Share of requests.
    pub percent: Option<Scalar>,
    /// Status answered.
    pub status: Option<u16>,
}

/// `faults.delay`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelay {
    /// Share of requests.
    pub percent: Option<Scalar>,
    /// Added latency.
    pub duration: Option<Scalar>,
}

/// `clusters[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Unique name.
    pub name: String,
    /// Load-balancing algorithm.
    pub lb: Option<String>,
    /// Key for `consistent_hash`.
    pub hash_on: Option<RawKey>,
    /// Zone of this gateway for zone-aware routing.
    pub local_zone: Option<String>,
    /// Healthy share of the local zone below which traffic spills to other zones.
    pub zone_spill_below: Option<Scalar>,
    /// Healthy share below which the cluster ignores health (panic mode); off unless set.
    pub panic_threshold: Option<Scalar>,
    /// Upstream protocol: `http1` or `http2`.
    pub protocol: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: Option<Scalar>,
    /// The endpoints; at least one, unless `discovery` finds them (then a seed list).
    pub endpoints: Option<Vec<RawEndpoint>>,
    /// Where the endpoints come from besides the file: a DNS name or a watched file.
    pub discovery: Option<RawDiscovery>,
    /// The churn guard: the largest share of the set one discovery update may remove.
    pub max_removed_per_update: Option<Scalar>,
    /// The autoscaling recommender of the cluster.
    pub autoscale: Option<RawAutoscale>,
    /// Active health checking.
    pub health_check: Option<RawHealthCheck>,
    /// Passive ejection.
    pub outlier_detection: Option<RawOutlier>,
    /// Circuit breaker.
    pub circuit_breaker: Option<RawBreaker>,
    /// Concurrency limit for the cluster.
    pub bulkhead: Option<RawBulkhead>,
    /// What happens to open TCP sessions of an endpoint that leaves the set:
    /// `shutdown_sessions` or `keep`.
    pub on_marked_down: Option<String>,
    /// A dependency outside the operator's control (a third-party API). Only the HA lint
    /// reads it; unset, the lint infers it from public endpoint addresses.
    pub external: Option<bool>,
}

/// A request key: one of header, cookie or query parameter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Header name.
    pub header: Option<String>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Query parameter name.
    pub query: Option<String>,
}

/// `clusters[].autoscale`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoscale {
    /// Fewest endpoints.
    pub min: Option<u32>,
    /// Most endpoints.
    pub max: Option<u32>,
    /// The figure per endpoint to hold: exactly one key.
    pub target: Option<RawScaleTarget>,
    /// Where the `cpu` target reads each endpoint's CPU counter.
    pub cpu_metric: Option<RawCpuMetric>,
    /// Stabilisation window of scaling up.
    pub scale_up_cooldown: Option<Scalar>,
    /// Stabilisation window of scaling down.
    pub scale_down_cooldown: Option<Scalar>,
    /// A figure within this share of the target changes nothing.
    pub tolerance: Option<Scalar>,
    /// Enough endpoints that losing the largest zone keeps the rest at target.
    pub zone_headroom: Option<bool>,
    /// What runs on a change of recommendation.
    pub hook: Option<RawHook>,
}

/// `clusters[].autoscale.target`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScaleTarget {
    /// CPU utilisation per endpoint (a percentage of `cpu_metric.cores`).
    pub cpu: Option<Scalar>,
    /// Requests in flight per endpoint.
    pub in_flight_per_endpoint: Option<f64>,
    /// Requests per second per endpoint.
    pub requests_per_second_per_endpoint: Option<f64>,
}

/// `clusters[].autoscale.cpu_metric`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCpuMetric {
    /// Path of the endpoint's Prometheus page.
    pub path: Option<String>,
    /// The counter of CPU seconds.
    pub name: Option<String>,
    /// Cores the endpoint has (utilisation = rate ÷ cores).
    pub cores: Option<f64>,
}

/// `clusters[].autoscale.hook`: a command or a webhook.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// Program and arguments.
    pub command: Option<Vec<String>>,
    /// URL POSTed the decision as JSON.
    pub webhook: Option<String>,
    /// How long one run may take.
    pub timeout: Option<Scalar>,
}

/// `clusters[].discovery`: one source, `dns` or `file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// Look the endpoints up in DNS (A, AAAA or SRV records).
    pub dns: Option<RawDiscoveryDns>,
    /// Read them from a file in the `endpoints:` list shape, watched for changes.
    pub file: Option<RawDiscoveryFile>,
    /// How long an endpoint discovery removed keeps draining before it goes.
    pub drain_timeout: Option<Scalar>,
}

/// `clusters[].discovery.dns`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscoveryDns {
    /// The name looked up.
    pub name: String,
    /// `A`, `AAAA` or `SRV`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Port of the endpoints (A and AAAA; SRV records carry their own).
    pub port: Option<u16>,
    /// Time between lookups (the floor when `respect_ttl` is on).
    pub refresh: Option<Scalar>,
    /// Whether the answer's TTL sets the time to the next lookup.
    pub respect_ttl: Option<bool>,
    /// How long the last good set is kept while lookups fail or answer nothing.
    pub stale_for: Option<Scalar>,
    /// Resolvers to ask, `ip:port` (the system's when absent).
    pub resolvers: Option<Vec<String>>,
}

/// `clusters[].discovery.file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscoveryFile {
    /// The file (relative to the configuration file's directory).
    pub path: String,
}

/// A discovery file in its keyed form, `endpoints: [...]` (a bare list is read as
/// `Vec<RawEndpoint>`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpointsFile {
    /// The list.
    pub endpoints: Vec<RawEndpoint>,
}

/// `clusters[].endpoints[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// `ip:port`.
    pub address: String,
    /// Zone label.
    pub zone: Option<String>,
    /// Relative weight.
    pub weight: Option<u32>,
    /// Priority group; 0 is primary.
    pub priority: Option<u32>,
}

/// `clusters[].health_check`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// HTTP check.
    pub http: Option<RawHttpCheck>,
    /// TCP connect check.
    pub tcp: Option<BTreeMap<String, String>>,
    /// PostgreSQL role check.
    pub postgres: Option<RawPostgresCheck>,
    /// Patroni REST API role check.
    pub patroni: Option<RawPatroniCheck>,
    /// Time between checks.
    pub interval: Option<Scalar>,
    /// Timeout of one check.
    pub timeout: Option<Scalar>,
    /// Successes to become healthy.
    pub healthy_threshold: Option<u32>,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: Option<u32>,
    /// Random spread of each interval, as a share of it.
    pub jitter: Option<Scalar>,
}

/// `health_check.http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpCheck {
    /// Path probed.
    pub path: Option<String>,
    /// Statuses counted healthy.
    pub expect_status: Option<Vec<Scalar>>,
    /// Host header of the probe; default: the endpoint's address.
    pub host: Option<String>,
    /// Expected `status` field of a JSON body.
    pub expect_json_status: Option<String>,
}

/// `health_check.postgres`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresCheck {
    /// `primary` or `replica`.
    pub role: Option<String>,
    /// User the probe logs in as.
    pub user: Option<String>,
    /// Database the probe connects to.
    pub database: Option<String>,
    /// Password (cleartext, md5 or SCRAM-SHA-256, as the server asks).
    pub password: Option<String>,
    /// `disable`, `prefer` or `require`.
    pub sslmode: Option<String>,
    /// `refuse` or `keep_current`.
    pub two_primaries: Option<String>,
    /// Largest replication lag of a replica: a duration or a size.
    pub max_replication_lag: Option<Scalar>,
}

/// `health_check.patroni`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPatroniCheck {
    /// Port of Patroni's REST API on the endpoint's host.
    pub port: Option<u16>,
    /// `primary` or `replica`.
    pub role: Option<String>,
    /// Largest lag of a replica (a size), passed as `?lag=`.
    pub lag: Option<Scalar>,
    /// `refuse` or `keep_current`.
    pub two_primaries: Option<String>,
}

/// `clusters[].outlier_detection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    /// Failures in a row that eject.
    pub consecutive_failures: Option<u32>,
    /// First ejection time.
    pub base_ejection: Option<Scalar>,
    /// Longest ejection.
    pub max_ejection: Option<Scalar>,
    /// Cap on ejected share.
    pub max_ejection_percent: Option<Scalar>,
}

/// `clusters[].circuit_breaker`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Failures in a row that open it.
    pub consecutive_failures: Option<u32>,
    /// Failure share over `window` that opens it.
    pub failure_rate: Option<Scalar>,
    /// Window of the rate.
    pub window: Option<Scalar>,
    /// Requests needed before the rate counts.
    pub min_requests: Option<u32>,
    /// Time spent open.
    pub open_for: Option<Scalar>,
    /// Longest open time; each open in a row doubles `open_for` up to it.
    pub max_open_for: Option<Scalar>,
    /// Probes let through while half-open.
    pub half_open_probes: Option<u32>,
    /// What counts as a failure (the vocabulary of `retry.on`).
    pub on: Option<Vec<Scalar>>,
    /// `endpoint`, `cluster` or `both`.
    pub scope: Option<String>,
}

/// `cells[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCell {
    /// Unique name.
    pub name: String,
    /// Routing key.
    pub key: Option<RawKey>,
    /// The cells.
    #[serde(default)]
    pub members: Vec<RawCellMember>,
    /// `fail` or `evacuate`.
    pub on_cell_down: Option<String>,
    /// Member that takes requests without the key (else they get 400).
    pub default: Option<String>,
}

/// `cells[].members[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCellMember {
    /// Cell name.
    pub name: String,
    /// Cluster serving it.
    pub cluster: String,
}

/// `slos[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Unique name.
    pub name: String,
    /// Service the SLO belongs to (a label of generated rules); default: the name.
    pub service: Option<String>,
    /// Whether injected faults count against the SLO (default true).
    pub count_faults: Option<bool>,
    /// Target, e.g. `99.95%`.
    pub objective: Option<Scalar>,
    /// Rolling window, e.g. `30d`.
    pub window: Option<Scalar>,
    /// What is measured.
    pub indicator: Option<RawIndicator>,
    /// Where alerts go.
    pub alerts: Option<RawAlerts>,
}

/// `slos[].indicator`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndicator {
    /// `availability` or `latency`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Good statuses.
    pub good_status: Option<Vec<Scalar>>,
    /// Latency threshold.
    pub threshold: Option<Scalar>,
}

/// `slos[].alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Alertmanager v2 URL.
    pub webhook: Option<String>,
    /// Burn-rate alerts; default: the SRE Workbook's three.
    pub windows: Option<Vec<RawAlertWindow>>,
    /// Fewer events than this in an alert's long window: the alert does not fire.
    pub min_events: Option<u64>,
    /// Extra labels on every alert.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `slos[].alerts.windows[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertWindow {
    /// `page` or `ticket`.
    pub severity: Option<String>,
    /// Long window.
    pub long: Option<Scalar>,
    /// Short window.
    pub short: Option<Scalar>,
    /// Burn-rate threshold.
    pub burn_rate: Option<f64>,
}

// === impl RawRoute ===

impl RawRoute {
    /// The route's name: `name:` when set, else `LISTENER#J` (its index in the
    /// listener's `routes:`).
    pub fn name_in(&self, listener: &str, j: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{listener}#{j}"))
    }
}

// === impl Scalar ===

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
