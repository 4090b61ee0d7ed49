//! The validated configuration's model: [`Config`] and the types of its top-level
//! sections (admin, limits, listeners and routes, clusters and endpoints), with the
//! defaults a file may leave out. The sections with a validator of their own keep
//! their types beside it (`breaker`, `cells`, `failover`, `isolation`, `slo`).

use super::breaker::BreakerConfig;
use super::cells::{CellSetConfig, FallbackConfig, HashKey};
use super::failover::{HealthCheckConfig, OutlierConfig, RetryConfig, Writes};
use super::isolation::{BulkheadConfig, FaultsConfig};
use super::raw::RawConfig;
use super::slo::SloDef;
use super::{ConfigError, PosIndex};
use http::{HeaderName, HeaderValue, Method};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default admin bind address: loopback only.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9901";
/// Default whole-request timeout of a route; Envoy's default, so that no request hangs.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default upstream connect timeout; long enough for a loaded LAN, short enough to fail fast.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest silence inside a response body: Envoy's stream idle timeout, long
/// enough for server-sent events and gRPC streams that pause, short enough to free a
/// stuck connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a client connection may go without starting a request (idle
/// keep-alive, or headers never finished) before it is closed; checked at this
/// granularity, so a connection goes after one to two periods.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval between two writes of SLO state.
pub const DEFAULT_STATE_FLUSH: Duration = Duration::from_secs(10);
/// Default time SIGTERM waits for in-flight requests.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default largest request head: HAProxy's usable buffer is about 15 KiB and nginx
/// refuses a header line over 8 KiB, so 16 KiB keeps ninefold as strict as the stricter
/// of the two on large heads while leaving room for big cookies.
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Smallest head limit accepted (a head must fit common cookies; hyper's floor, kept
/// for the TLS listeners hyper still serves).
pub const MIN_HEAD_LIMIT: usize = 8 * 1024;
/// Default most request headers: HAProxy's `tune.http.maxhdr` is 101, hyper's 100.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
/// Default longest request header field: nginx refuses a field line past its 8 KiB
/// buffer (`large_client_header_buffers 4 8k`), HAProxy past its own.
pub const DEFAULT_MAX_REQUEST_FIELD: usize = 8 * 1024;
/// Default longest request target: nginx answers 414 past its 8 KiB buffer.
pub const DEFAULT_MAX_URI: usize = 8 * 1024;
/// Default largest upstream response head, the same as a request's.
pub const DEFAULT_MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Default most bytes of chunk extensions per chunked body: hyper's 16 KiB
/// (hyper#3495: many tiny chunks with extensions cost CPU without carrying data).
pub const DEFAULT_MAX_CHUNK_EXTENSION: usize = 16 * 1024;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File name the config came from (for messages).
    pub source: String,
    /// Admin listener.
    pub admin: AdminConfig,
    /// Data-path worker threads.
    pub workers: usize,
    /// Access log format.
    pub access_log: AccessLog,
    /// SIGTERM drain time.
    pub shutdown_grace: Duration,
    /// Idle client connection check period.
    pub client_idle_timeout: Duration,
    /// Size and count limits on requests and upstream answers.
    pub limits: Limits,
    /// Listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Clusters.
    pub clusters: Vec<ClusterConfig>,
    /// Cell sets.
    pub cells: Vec<CellSetConfig>,
    /// SLO definitions (`slos:`), defaults applied.
    pub slos: Vec<SloDef>,
    /// The authoritative DNS server, when `dns:` is set.
    pub dns: Option<super::dns::DnsConfig>,
    /// The file as written: the whole contract, for tools (`check`'s lint, `calc
    /// topology`). Emptied in a configuration `serve` runs (`server::Servable`), which
    /// reads only the validated form.
    pub raw: RawConfig,
    /// Valid settings whose behaviour is not built yet; `serve` refuses them.
    pub unsupported: Vec<ConfigError>,
    /// Where each key path sits in the file, for tools that point at a key (the lint).
    pub index: PosIndex,
    /// Where SLO counters are persisted (resolved against the file's directory).
    pub state_dir: Option<PathBuf>,
    /// How often SLO counters are persisted.
    pub state_flush: Duration,
}

/// `admin:`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Bind address.
    pub bind: SocketAddr,
    /// Bearer token for mutations.
    pub token: Option<String>,
}

/// `limits:`: what the gateway refuses before anything reaches an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes; larger gets 431.
    pub max_request_head: usize,
    /// Most request header fields; more gets 431.
    pub max_request_headers: usize,
    /// Longest request header field (name, `: ` and value); longer gets 431.
    pub max_request_field: usize,
    /// Longest request target in bytes; longer gets 414.
    pub max_uri: usize,
    /// Largest upstream response head in bytes; larger gets 502 `upstream-error`.
    pub max_response_head: usize,
    /// Most bytes of chunk extensions in one chunked body (request or response); more
    /// gets 400 (a request) or 502 (an answer).
    pub max_chunk_extension: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_head: DEFAULT_MAX_REQUEST_HEAD,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            max_request_field: DEFAULT_MAX_REQUEST_FIELD,
            max_uri: DEFAULT_MAX_URI,
            max_response_head: DEFAULT_MAX_RESPONSE_HEAD,
            max_chunk_extension: DEFAULT_MAX_CHUNK_EXTENSION,
        }
    }
}

/// `access_log:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    Off,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c on one port.
    Http,
    /// TLS with HTTP/1.1 and h2 via ALPN.
    Https,
    /// TCP relay.
    Tcp,
}

/// A listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name.
    pub name: String,
    /// Bind address.
    pub bind: SocketAddr,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Certificate files for `https`.
    pub tls: Option<TlsFiles>,
    /// Routes, first match wins.
    pub routes: Vec<RouteConfig>,
    /// A `tcp` listener's settings.
    pub tcp: Option<TcpListenerConfig>,
}

/// Default longest silence of a TCP session (Envoy's `tcp_proxy` default).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a `tcp` listener relays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListenerConfig {
    /// The cluster new connections go to.
    pub cluster: String,
    /// Where new connections go when `cluster` has no eligible endpoint.
    pub fallback_cluster: Option<String>,
    /// Longest silence in both directions before the session is closed.
    pub idle_timeout: Duration,
    /// Most sessions at once (`bulkhead.max_concurrent`); more are closed at once.
    pub max_connections: Option<u32>,
}

/// What happens to the open TCP sessions of an endpoint that leaves the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMarkedDown {
    /// Close them at once (HAProxy's `on-marked-down shutdown-sessions`).
    ShutdownSessions,
    /// Let them run.
    Keep,
}

impl OnMarkedDown {
    /// The name the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnMarkedDown::ShutdownSessions => "shutdown_sessions",
            OnMarkedDown::Keep => "keep",
        }
    }
}

/// Certificate and key files, resolved against the config's directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM chain.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
    /// Most sessions kept for resumption by id; 0 for none.
    pub session_cache: usize,
    /// Whether stateless session tickets are issued.
    pub tickets: bool,
    /// The fleet's shared ticket keys; `None` for per-process random keys.
    pub ticket_keys_file: Option<PathBuf>,
}

/// Default size of a listener's TLS session cache (HAProxy's `tune.ssl.cachesize`).
pub const DEFAULT_TLS_SESSION_CACHE: usize = 20_000;

/// Largest accepted `tls.session_cache`. rustls reserves its table at start (about
/// 80 bytes a slot: 1.6 MB for the default, 80 MB here) and a session takes a few
/// hundred bytes more when stored.
pub const MAX_TLS_SESSION_CACHE: u64 = 1_000_000;

/// A route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Name (given, or `listener#index`).
    pub name: String,
    /// Matcher.
    pub matcher: MatchConfig,
    /// Target cluster; empty when the route targets a cell set.
    pub cluster: String,
    /// Target cell set, instead of a cluster.
    pub cells: Option<String>,
    /// The fallback ladder.
    pub fallback: Option<Box<FallbackConfig>>,
    /// Time until the upstream's response headers.
    pub timeout: Duration,
    /// Longest silence between two frames of the response body.
    pub idle_timeout: Duration,
    /// The SLO the route counts towards.
    pub slo: Option<String>,
    /// Retry policy (defaults when the file has none).
    pub retry: RetryConfig,
    /// Where writes go, when split from reads.
    pub writes: Option<Writes>,
    /// Concurrency limit of the route.
    pub bulkhead: Option<BulkheadConfig>,
    /// Fault injection.
    pub faults: Option<FaultsConfig>,
}

/// What a route matches; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct MatchConfig {
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Lower-case host without port.
    pub host: Option<String>,
    /// Allowed methods.
    pub methods: Option<Vec<Method>>,
    /// Required header values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// Weighted round robin.
    RoundRobin,
    /// Power of two choices over in-flight requests.
    LeastRequest,
    /// Weighted random.
    Random,
    /// Maglev consistent hashing.
    ConsistentHash,
}

impl LbKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LbKind::RoundRobin => "round_robin",
            LbKind::LeastRequest => "least_request",
            LbKind::Random => "random",
            LbKind::ConsistentHash => "consistent_hash",
        }
    }
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge (h2c); gRPC passes.
    Http2,
}

/// A cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique name.
    pub name: String,
    /// Algorithm.
    pub lb: LbKind,
    /// Hash key for `consistent_hash`.
    pub hash_on: Option<HashKey>,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// This gateway's zone: `local_zone`, else `NINEFOLD_ZONE`.
    pub local_zone: Option<String>,
    /// Healthy share (percent) of the local zone below which traffic spills.
    pub zone_spill_below: f64,
    /// Healthy share (percent) below which health is ignored; `None`: never.
    pub panic_threshold: Option<f64>,
    /// Active health checks.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier detection.
    pub outlier: OutlierConfig,
    /// Circuit breaker; `None`: no breaker.
    pub breaker: Option<BreakerConfig>,
    /// Concurrency limit of the cluster.
    pub bulkhead: Option<BulkheadConfig>,
    /// Open TCP sessions of an endpoint that leaves the set: closed or kept. Default
    /// `shutdown_sessions` for a cluster whose check wants a primary, `keep` otherwise.
    pub on_marked_down: OnMarkedDown,
    /// Where endpoints come from besides `endpoints:` (which is then a seed list).
    pub discovery: Option<super::discovery::DiscoveryConfig>,
    /// The churn guard: the largest share (percent) of the set one discovery update
    /// may remove; larger removals wait for the next lookups to confirm them.
    pub max_removed_per_update: f64,
    /// The autoscaling recommender (off the data path).
    pub autoscale: Option<super::autoscale::AutoscaleConfig>,
}

/// An endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Address.
    pub address: SocketAddr,
    /// Zone label.
    pub zone: Option<String>,
    /// Weight, at least 1.
    pub weight: u32,
    /// Priority group.
    pub priority: u32,
}
