//! Validation: the raw file becomes a [`Config`] of parsed, cross-checked values.
//!
//! Each check names the key path it is about; positions come from the document's
//! [`PosIndex`]. Settings that are valid but whose behaviour this build of ninefold does
//! not implement yet are collected in [`Config::unsupported`]: `ninefold check`
//! accepts them (tools can read any valid file), `ninefold serve` refuses them, so a
//! setting is never accepted and silently ignored.

use super::breaker::*;
use super::cells::*;
use super::failover::*;
use super::isolation::*;
use super::raw::*;
use super::{resolve_path, ConfigError, ConfigErrors, PosIndex};
use crate::availability::parse_objective;
use crate::slo::spec::{self, AlertSpec, AlertWindow, Indicator, SloDef};
use http::{HeaderName, HeaderValue, Method};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// The file as written: the whole contract, for tools.
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
}

/// Certificate and key files, resolved against the config's directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM chain.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
}

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
    pub fallback: Option<FallbackConfig>,
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

/// A request key used for hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
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
}

/// An endpoint.
#[derive(Debug, Clone)]
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

pub(super) struct V<'a> {
    file: &'a str,
    index: &'a PosIndex,
    errors: Vec<ConfigError>,
    unsupported: Vec<ConfigError>,
}

/// Validates a raw config. `base` resolves relative file paths.
pub fn validate(
    raw: RawConfig,
    file: &str,
    index: &PosIndex,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let mut v = V {
        file,
        index,
        errors: Vec::new(),
        unsupported: Vec::new(),
    };

    let admin = {
        let a = raw.admin.clone().unwrap_or_default();
        let bind = match &a.bind {
            Some(b) => v.addr("admin.bind", b),
            None => DEFAULT_ADMIN_BIND.parse().ok(),
        }
        .unwrap_or_else(|| ([127, 0, 0, 1], 9901).into());
        let token = a.token.filter(|t| !t.is_empty());
        if !bind.ip().is_loopback() && token.is_none() {
            v.err_hint(
                "admin.bind",
                format!("non-loopback admin bind {bind} needs admin.token"),
                "set admin.token (e.g. token: ${NINEFOLD_ADMIN_TOKEN}) or bind to 127.0.0.1",
            );
        }
        AdminConfig { bind, token }
    };

    let state_dir = raw.state_dir.as_ref().map(|d| resolve_path(base, d));

    let state_flush = v
        .opt_duration("state_flush", raw.state_flush.as_ref())
        .unwrap_or(DEFAULT_STATE_FLUSH);
    let workers = match raw.workers {
        Some(0) => {
            v.err("workers", "must be at least 1, got 0".into());
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let access_log = match raw.access_log.as_deref() {
        None | Some("off") => AccessLog::Off,
        Some("text") => AccessLog::Text,
        Some("json") => AccessLog::Json,
        Some(other) => {
            v.err(
                "access_log",
                format!("must be one of off, text, json, got {other:?}"),
            );
            AccessLog::Off
        }
    };
    let shutdown_grace = v
        .opt_duration("shutdown_grace", raw.shutdown_grace.as_ref())
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
    let client_idle_timeout = v
        .opt_duration("client_idle_timeout", raw.client_idle_timeout.as_ref())
        .unwrap_or(DEFAULT_CLIENT_IDLE_TIMEOUT);
    let limits = v.limits(raw.limits.as_ref());

    // Clusters first: routes refer to them.
    let mut cluster_names = HashSet::new();
    let mut clusters = Vec::new();
    for (i, c) in raw.clusters.iter().enumerate() {
        let p = format!("clusters[{i}]");
        if c.name.is_empty() {
            v.err(&format!("{p}.name"), "must not be empty".into());
        } else if !cluster_names.insert(c.name.clone()) {
            v.err(
                &format!("{p}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
        }
        clusters.push(v.cluster(&p, c));
    }

    let cell_names: HashSet<&str> = raw.cells.iter().map(|c| c.name.as_str()).collect();
    let slo_names: HashSet<&str> = raw.slos.iter().map(|s| s.name.as_str()).collect();

    let mut listener_names = HashSet::new();
    let mut binds = HashSet::new();
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        if l.name.is_empty() {
            v.err(&format!("{p}.name"), "must not be empty".into());
        } else if !listener_names.insert(l.name.clone()) {
            v.err(
                &format!("{p}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        let bind = v.addr(&format!("{p}.bind"), &l.bind);
        if let Some(b) = bind {
            if b.port() != 0 && !binds.insert(b) {
                v.err(
                    &format!("{p}.bind"),
                    format!("address {b} is used by another listener"),
                );
            }
        }
        let protocol = match l.protocol.as_deref() {
            None | Some("http") => ListenerProtocol::Http,
            Some("https") => ListenerProtocol::Https,
            Some("tcp") => ListenerProtocol::Tcp,
            Some(o) => {
                v.err(
                    &format!("{p}.protocol"),
                    format!("must be one of http, https, tcp, got {o:?}"),
                );
                ListenerProtocol::Http
            }
        };
        let tls = l.tls.as_ref().map(|t| TlsFiles {
            cert: resolve_path(base, &t.cert),
            key: resolve_path(base, &t.key),
        });
        match protocol {
            ListenerProtocol::Https if tls.is_none() => v.err_hint(
                &format!("{p}.tls"),
                "an https listener needs tls".into(),
                "add tls: {cert: server.pem, key: server.key}",
            ),
            ListenerProtocol::Http if tls.is_some() => v.err_hint(
                &format!("{p}.tls"),
                "tls is set but protocol is http".into(),
                "set protocol: https",
            ),
            _ => {}
        }
        if protocol == ListenerProtocol::Tcp {
            v.unsupported(&format!("{p}.protocol"), "TCP listeners");
            match &l.cluster {
                None => v.err(
                    &format!("{p}.cluster"),
                    "a tcp listener needs a cluster".into(),
                ),
                Some(c) if !cluster_names.contains(c) => {
                    v.err(&format!("{p}.cluster"), format!("unknown cluster {c:?}"))
                }
                _ => {}
            }
        } else if l.cluster.is_some() {
            v.err_hint(
                &format!("{p}.cluster"),
                "only tcp listeners take a cluster".into(),
                "put the cluster on a route",
            );
        }
        let mut routes = Vec::new();
        let mut route_names = HashSet::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{j}]");
            let name = r.name_in(&l.name, j);
            if !route_names.insert(name.clone()) {
                v.err(
                    &format!("{rp}.name"),
                    format!("duplicate route name {name:?} in listener {:?}", l.name),
                );
            }
            let cluster = match (&r.cluster, &r.cells) {
                (Some(c), None) => {
                    if !cluster_names.contains(c) {
                        v.err_hint(
                            &format!("{rp}.cluster"),
                            format!("unknown cluster {c:?}"),
                            &format!(
                                "define it under clusters: or use one of {}",
                                list(&cluster_names)
                            ),
                        );
                    }
                    c.clone()
                }
                (None, Some(c)) => {
                    if !cell_names.contains(c.as_str()) {
                        v.err(&format!("{rp}.cells"), format!("unknown cells {c:?}"));
                    }
                    String::new()
                }
                (Some(_), Some(_)) => {
                    v.err(&rp, "set either cluster or cells, not both".into());
                    String::new()
                }
                (None, None) => {
                    v.err(&rp, "a route needs cluster (or cells)".into());
                    String::new()
                }
            };
            let timeout = v
                .opt_duration(&format!("{rp}.timeout"), r.timeout.as_ref())
                .unwrap_or(DEFAULT_ROUTE_TIMEOUT);
            let idle_timeout = v
                .opt_duration(&format!("{rp}.idle_timeout"), r.idle_timeout.as_ref())
                .unwrap_or(DEFAULT_IDLE_TIMEOUT);
            let matcher = v.matcher(&format!("{rp}.match"), &r.matcher);
            v.route_extras(&rp, r, &slo_names);
            let bulkhead = r
                .bulkhead
                .as_ref()
                .and_then(|b| v.bulkhead(&format!("{rp}.bulkhead"), b));
            let faults = r
                .faults
                .as_ref()
                .and_then(|f| v.faults(&format!("{rp}.faults"), f));
            let retry = v.retry(&format!("{rp}.retry"), r.retry.as_ref());
            if let Some(t) = retry.per_try_timeout {
                if t > timeout {
                    v.err_hint(
                        &format!("{rp}.retry.per_try_timeout"),
                        format!("is longer than the route's timeout ({t:?} > {timeout:?})"),
                        "the route's timeout bounds the whole request, retries included",
                    );
                }
            }
            let writes = v.writes(&format!("{rp}.writes"), r.writes.as_ref());
            if let Some(Writes::Cluster(c)) = &writes {
                if !cluster_names.contains(c) {
                    v.err(
                        &format!("{rp}.writes.cluster"),
                        format!("unknown cluster {c:?}"),
                    );
                }
            }
            let fallback = r
                .fallback
                .as_ref()
                .map(|f| v.fallback(&format!("{rp}.fallback"), f, &cluster_names, base));
            routes.push(RouteConfig {
                name,
                matcher,
                cluster,
                cells: r.cells.clone(),
                fallback,
                timeout,
                idle_timeout,
                slo: r.slo.clone(),
                retry,
                writes,
                bulkhead,
                faults,
            });
        }
        if protocol == ListenerProtocol::Tcp && !l.routes.is_empty() {
            v.err(
                &format!("{p}.routes"),
                "a tcp listener has no routes".into(),
            );
        }
        listeners.push(ListenerConfig {
            name: l.name.clone(),
            bind: bind.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            protocol,
            tls,
            routes,
        });
    }

    let cells = v.cell_sets(&raw.cells, &cluster_names);
    let slos = v.slos(&raw.slos);

    if v.errors.is_empty() {
        Ok(Config {
            source: file.to_owned(),
            admin,
            workers,
            access_log,
            shutdown_grace,
            client_idle_timeout,
            limits,
            listeners,
            clusters,
            cells,
            slos,
            raw,
            unsupported: v.unsupported,
            index: index.clone(),
            state_dir,
            state_flush,
        })
    } else {
        Err(ConfigErrors(v.errors))
    }
}

fn list(names: &HashSet<String>) -> String {
    let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
    v.sort_unstable();
    if v.is_empty() {
        "(none defined)".into()
    } else {
        v.join(", ")
    }
}

/// Parses `250ms`, `5s`, `1.5m`, `2h`, `30d`, `30 days`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("missing unit in duration {s:?} (use ms, s, m, h or d)"))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return Err(format!("invalid duration {s:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || secs > 10.0 * 365.0 * 86400.0 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: `16384`, `16KiB`, `16 KiB`, `16k`, `1MiB`, `1m` (binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (write 16384, 16KiB or 1MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("invalid size {s:?} (write 16384, 16KiB or 1MiB)")),
    };
    n.checked_mul(mult)
        .filter(|&b| b <= 1 << 30)
        .ok_or_else(|| format!("size {s:?} is out of range (at most 1GiB)"))
}

/// Parses a status code (`204`) or a class (`2xx`) into the inclusive range it covers.
pub fn parse_status_match(s: &str) -> Option<(u16, u16)> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(d) = t.strip_suffix("xx") {
        let c: u16 = d.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some((c * 100, c * 100 + 99));
    }
    let code: u16 = t.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some((code, code))
}

/// Parses `99.95%` or `99.95` into a percentage in `[0, 100]`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    let n: f64 = t.parse().map_err(|_| format!("invalid percentage {s:?}"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("must be between 0% and 100%, got {s}"));
    }
    Ok(n)
}

/// `text` with a `%` sign when it has none.
fn percent_sign(text: &str) -> String {
    let t = text.trim();
    if t.ends_with('%') {
        t.to_owned()
    } else {
        format!("{t}%")
    }
}

// === impl V ===

impl V<'_> {
    fn make(&self, path: &str, message: String, hint: Option<String>) -> ConfigError {
        let (line, column) = self.index.locate(path);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
            hint,
        }
    }

    pub(super) fn err(&mut self, path: &str, message: String) {
        let e = self.make(path, message, None);
        self.errors.push(e);
    }

    pub(super) fn err_hint(&mut self, path: &str, message: String, hint: &str) {
        let e = self.make(path, message, Some(hint.to_owned()));
        self.errors.push(e);
    }

    pub(super) fn unsupported(&mut self, path: &str, what: &str) {
        let e = self.make(
            path,
            format!("{what} is not built yet in this version of ninefold"),
            Some("remove the key to serve this file; `ninefold check` accepts it".into()),
        );
        self.unsupported.push(e);
    }

    fn addr(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
        match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err_hint(
                    path,
                    format!("invalid socket address {s:?}"),
                    "use ip:port, e.g. 127.0.0.1:8080 or [::1]:8080",
                );
                None
            }
        }
    }

    pub(super) fn opt_duration(&mut self, path: &str, s: Option<&Scalar>) -> Option<Duration> {
        let s = s?;
        match parse_duration(&s.0) {
            Ok(d) if d.is_zero() => {
                self.err(path, format!("must be greater than zero, got {s}"));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                self.err_hint(path, m, "write durations like 250ms, 5s, 1m, 2h or 30d");
                None
            }
        }
    }

    /// A size between `min` and 1 GiB, or `default` when absent.
    fn size(&mut self, path: &str, s: Option<&Scalar>, min: usize, default: usize) -> usize {
        let Some(s) = s else { return default };
        match parse_size(&s.0) {
            Ok(n) if n < min => {
                self.err(path, format!("must be at least {min} bytes, got {s}"));
                default
            }
            Ok(n) => n,
            Err(m) => {
                self.err(path, m);
                default
            }
        }
    }

    fn limits(&mut self, raw: Option<&RawLimits>) -> Limits {
        let d = Limits::default();
        let Some(l) = raw else { return d };
        let max_request_headers = match l.max_request_headers {
            Some(0) => {
                self.err(
                    "limits.max_request_headers",
                    "must be at least 1, got 0".into(),
                );
                d.max_request_headers
            }
            Some(n) => n,
            None => d.max_request_headers,
        };
        Limits {
            max_request_head: self.size(
                "limits.max_request_head",
                l.max_request_head.as_ref(),
                MIN_HEAD_LIMIT,
                d.max_request_head,
            ),
            max_request_headers,
            max_request_field: self.size(
                "limits.max_request_field",
                l.max_request_field.as_ref(),
                64,
                d.max_request_field,
            ),
            max_uri: self.size("limits.max_uri", l.max_uri.as_ref(), 1, d.max_uri),
            max_response_head: self.size(
                "limits.max_response_head",
                l.max_response_head.as_ref(),
                MIN_HEAD_LIMIT,
                d.max_response_head,
            ),
            max_chunk_extension: self.size(
                "limits.max_chunk_extension",
                l.max_chunk_extension.as_ref(),
                0,
                d.max_chunk_extension,
            ),
        }
    }

    pub(super) fn opt_percent(&mut self, path: &str, s: Option<&Scalar>) -> Option<f64> {
        let s = s?;
        match parse_percent(&s.0) {
            Ok(p) => Some(p),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    pub(super) fn key(&mut self, path: &str, k: &RawKey) -> Option<HashKey> {
        let n = [&k.header, &k.cookie, &k.query]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if n != 1 {
            self.err(path, "set exactly one of header, cookie, query".into());
            return None;
        }
        if let Some(h) = &k.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(HashKey::Header(h)),
                Err(_) => {
                    self.err(
                        &format!("{path}.header"),
                        format!("invalid header name {h:?}"),
                    );
                    None
                }
            }
        } else if let Some(c) = &k.cookie {
            Some(HashKey::Cookie(c.clone()))
        } else {
            k.query.clone().map(HashKey::Query)
        }
    }

    fn cluster(&mut self, p: &str, c: &RawCluster) -> ClusterConfig {
        let lb = match c.lb.as_deref() {
            None | Some("round_robin") => LbKind::RoundRobin,
            Some("least_request") => LbKind::LeastRequest,
            Some("random") => LbKind::Random,
            Some("consistent_hash") => LbKind::ConsistentHash,
            Some(o) => {
                self.err(
                    &format!("{p}.lb"),
                    format!(
                        "must be one of round_robin, least_request, random, consistent_hash, got {o:?}"
                    ),
                );
                LbKind::RoundRobin
            }
        };
        let hash_on = c
            .hash_on
            .as_ref()
            .and_then(|k| self.key(&format!("{p}.hash_on"), k));
        if lb == LbKind::ConsistentHash && c.hash_on.is_none() {
            self.err_hint(
                &format!("{p}.hash_on"),
                "consistent_hash needs hash_on".into(),
                "add hash_on: {header: x-user-id} (or cookie: / query:)",
            );
        }
        if lb != LbKind::ConsistentHash && c.hash_on.is_some() {
            self.err_hint(
                &format!("{p}.hash_on"),
                "hash_on is only used by lb: consistent_hash".into(),
                "set lb: consistent_hash or remove hash_on",
            );
        }
        let protocol = match c.protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("http2") => UpstreamProtocol::Http2,
            Some(o) => {
                self.err(
                    &format!("{p}.protocol"),
                    format!("must be http1 or http2, got {o:?}"),
                );
                UpstreamProtocol::Http1
            }
        };
        let connect_timeout = self
            .opt_duration(&format!("{p}.connect_timeout"), c.connect_timeout.as_ref())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let local_zone = c
            .local_zone
            .clone()
            .or_else(|| std::env::var("NINEFOLD_ZONE").ok())
            .filter(|z| !z.is_empty());
        let zone_spill_below = self
            .percent_upto(
                &format!("{p}.zone_spill_below"),
                c.zone_spill_below.as_ref(),
                100.0,
            )
            .unwrap_or(DEFAULT_ZONE_SPILL_BELOW);
        let panic_threshold = self.percent_upto(
            &format!("{p}.panic_threshold"),
            c.panic_threshold.as_ref(),
            100.0,
        );
        let mut endpoints = Vec::new();
        match &c.endpoints {
            None => self.err(
                &format!("{p}.endpoints"),
                "required: at least one endpoint".into(),
            ),
            Some(e) if e.is_empty() => self.err(
                &format!("{p}.endpoints"),
                "must list at least one endpoint".into(),
            ),
            Some(eps) => {
                let mut seen = HashSet::new();
                for (k, e) in eps.iter().enumerate() {
                    let ep = format!("{p}.endpoints[{k}]");
                    let address = self.addr(&format!("{ep}.address"), &e.address);
                    if let Some(a) = address {
                        if !seen.insert(a) {
                            self.err(
                                &format!("{ep}.address"),
                                format!("duplicate endpoint {a} in cluster {:?}", c.name),
                            );
                        }
                    }
                    let weight = e.weight.unwrap_or(1);
                    if weight == 0 || weight > 10_000 {
                        self.err(
                            &format!("{ep}.weight"),
                            format!("must be between 1 and 10000, got {weight}"),
                        );
                    }
                    let priority = e.priority.unwrap_or(0);
                    if priority > 7 {
                        self.err(
                            &format!("{ep}.priority"),
                            format!("must be between 0 and 7, got {priority}"),
                        );
                    }
                    endpoints.push(EndpointConfig {
                        address: address.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                        zone: e.zone.clone(),
                        weight: weight.clamp(1, 10_000),
                        priority: priority.min(7),
                    });
                }
            }
        }
        let health_check = c
            .health_check
            .as_ref()
            .and_then(|h| self.health_check(&format!("{p}.health_check"), h));
        let outlier = self.outlier(
            &format!("{p}.outlier_detection"),
            c.outlier_detection.as_ref(),
        );
        let breaker = c
            .circuit_breaker
            .as_ref()
            .map(|b| self.breaker(&format!("{p}.circuit_breaker"), b));
        let bulkhead = c
            .bulkhead
            .as_ref()
            .and_then(|b| self.bulkhead(&format!("{p}.bulkhead"), b));
        ClusterConfig {
            name: c.name.clone(),
            lb,
            hash_on,
            protocol,
            connect_timeout,
            endpoints,
            local_zone,
            zone_spill_below,
            panic_threshold,
            health_check,
            outlier,
            breaker,
            bulkhead,
        }
    }

    /// A list of HTTP methods (any case); each invalid one is an error at its index.
    pub(super) fn methods(&mut self, p: &str, list: &[String]) -> Vec<Method> {
        list.iter()
            .enumerate()
            .filter_map(
                |(i, s)| match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        self.err(&format!("{p}[{i}]"), format!("invalid method {s:?}"));
                        None
                    }
                },
            )
            .collect()
    }

    fn matcher(&mut self, p: &str, m: &RawMatch) -> MatchConfig {
        for (key, val) in [("path_prefix", &m.path_prefix), ("path", &m.path)] {
            if let Some(v) = val {
                if !v.starts_with('/') {
                    self.err(
                        &format!("{p}.{key}"),
                        format!("must start with '/', got {v:?}"),
                    );
                }
            }
        }
        let methods = m
            .methods
            .as_ref()
            .map(|ms| self.methods(&format!("{p}.methods"), ms));
        let mut headers = Vec::new();
        for (k, val) in m.headers.iter().flatten() {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(val),
            ) {
                (Ok(n), Ok(hv)) => headers.push((n, hv)),
                _ => self.err(
                    &format!("{p}.headers.{k}"),
                    format!("invalid header {k:?}: {val:?}"),
                ),
            }
        }
        MatchConfig {
            path_prefix: m.path_prefix.clone(),
            path: m.path.clone(),
            host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
            methods,
            headers,
        }
    }

    fn route_extras(&mut self, rp: &str, r: &RawRoute, slos: &HashSet<&str>) {
        if let Some(s) = &r.slo {
            if !slos.contains(s.as_str()) {
                self.err(&format!("{rp}.slo"), format!("unknown slo {s:?}"));
            }
        }
    }

    /// Checks `slos:` and builds the definitions: the one place the config's SLO
    /// defaults are applied (they live in [`crate::slo::spec`]).
    fn slos(&mut self, slos: &[RawSlo]) -> Vec<SloDef> {
        let mut defs = Vec::with_capacity(slos.len());
        for (i, s) in slos.iter().enumerate() {
            let p = format!("slos[{i}]");
            let objective = match &s.objective {
                None => {
                    self.err(&format!("{p}.objective"), "required, e.g. 99.9%".into());
                    None
                }
                // A bare number is a percentage here (`ninefold check` warns when it
                // looks like a fraction); the stand-alone formats refuse it instead.
                Some(o) => match parse_objective(&percent_sign(&o.0)) {
                    Ok(prob) => Some((o.0.trim().to_owned(), prob)),
                    Err(m) => {
                        self.err(&format!("{p}.objective"), m);
                        None
                    }
                },
            };
            let window = self.opt_duration(&format!("{p}.window"), s.window.as_ref());
            let mut indicator = Indicator::Availability {
                good: spec::default_good(),
            };
            if let Some(ind) = &s.indicator {
                let threshold =
                    self.opt_duration(&format!("{p}.indicator.threshold"), ind.threshold.as_ref());
                let mut good = Vec::new();
                for (j, g) in ind.good_status.iter().flatten().enumerate() {
                    match parse_status_match(&g.0) {
                        Some(range) => good.push(range),
                        None => self.err_hint(
                            &format!("{p}.indicator.good_status[{j}]"),
                            format!("invalid status {:?}", g.0),
                            "use a status code (200) or a class (2xx)",
                        ),
                    }
                }
                match ind.kind.as_deref() {
                    Some("latency") => {
                        indicator = Indicator::Latency {
                            threshold: threshold.unwrap_or(spec::DEFAULT_THRESHOLD),
                        }
                    }
                    Some("availability") | None => match &ind.good_status {
                        Some(list) if list.is_empty() => self.err_hint(
                            &format!("{p}.indicator.good_status"),
                            "is empty: no answer would count as good".into(),
                            "list the good statuses, e.g. [2xx, 404], or leave good_status out (everything but 5xx)",
                        ),
                        Some(_) => indicator = Indicator::Availability { good },
                        None => {}
                    },
                    Some(o) => self.err(
                        &format!("{p}.indicator.type"),
                        format!("must be availability or latency, got {o:?}"),
                    ),
                }
            }
            let mut alert_windows = Vec::new();
            if let Some(a) = &s.alerts {
                if let Some(w) = &a.webhook {
                    if !(w.starts_with("http://") && w.parse::<http::Uri>().is_ok()) {
                        self.err_hint(
                            &format!("{p}.alerts.webhook"),
                            format!("invalid webhook URL {w:?}"),
                            "use http://host:port/api/v2/alerts (Alertmanager API v2; https is not supported yet)",
                        );
                    }
                }
                for (j, w) in a.windows.iter().flatten().enumerate() {
                    let wp = format!("{p}.alerts.windows[{j}]");
                    let long = self.opt_duration(&format!("{wp}.long"), w.long.as_ref());
                    let short = self.opt_duration(&format!("{wp}.short"), w.short.as_ref());
                    if w.long.is_none() || w.short.is_none() || w.burn_rate.is_none() {
                        self.err(&wp, "long, short and burn_rate are required".into());
                    }
                    if let (Some(l), Some(s)) = (long, short) {
                        if s > l {
                            self.err(
                                &format!("{wp}.short"),
                                "must not be longer than long".into(),
                            );
                        }
                        if l > Duration::from_secs(90 * 86400) {
                            self.err(&format!("{wp}.long"), "must be at most 90d".into());
                        }
                    }
                    if w.burn_rate.is_some_and(|b| !(b > 0.0 && b.is_finite())) {
                        self.err(&format!("{wp}.burn_rate"), "must be above 0".into());
                    }
                    if let (Some(long), Some(short), Some(burn_rate)) = (long, short, w.burn_rate) {
                        alert_windows.push(AlertWindow {
                            severity: w.severity.clone().unwrap_or_else(|| "page".into()),
                            long,
                            short,
                            burn_rate,
                        });
                    }
                }
            }
            if let Some(w) = &s.window {
                if parse_duration(&w.0).is_ok_and(|d| {
                    d > Duration::from_secs(90 * 86400) || d < Duration::from_secs(60)
                }) {
                    self.err(&format!("{p}.window"), "must be between 1m and 90d".into());
                }
            }
            for (k, _) in s.alerts.iter().flat_map(|a| a.labels.iter().flatten()) {
                let valid = k.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                }) && !k.is_empty();
                const RESERVED: [&str; 8] = [
                    "alertname",
                    "slo",
                    "service",
                    "severity",
                    "long_window",
                    "short_window",
                    "gateway",
                    "exhaustion",
                ];
                if !valid {
                    self.err(
                        &format!("{p}.alerts.labels.{k}"),
                        format!("invalid label name {k:?} (letters, digits and _, not starting with a digit)"),
                    );
                } else if RESERVED.contains(&k.as_str())
                    || k.starts_with("sloth_")
                    || k.starts_with("__")
                {
                    self.err(
                        &format!("{p}.alerts.labels.{k}"),
                        format!("label {k:?} is set by ninefold"),
                    );
                }
            }
            if let Some((objective_text, objective)) = objective {
                let alerts = s.alerts.as_ref();
                defs.push(SloDef {
                    name: s.name.clone(),
                    service: s.service.clone().unwrap_or_else(|| s.name.clone()),
                    objective_text,
                    objective,
                    window: window.unwrap_or(spec::DEFAULT_WINDOW),
                    indicator,
                    count_faults: s.count_faults.unwrap_or(true),
                    alerts: AlertSpec {
                        webhook: alerts.and_then(|a| a.webhook.clone()),
                        windows: match alerts.and_then(|a| a.windows.as_ref()) {
                            Some(_) => alert_windows,
                            None => spec::default_windows(),
                        },
                        min_events: alerts.and_then(|a| a.min_events).unwrap_or(1),
                        labels: alerts
                            .and_then(|a| a.labels.clone())
                            .unwrap_or_default()
                            .into_iter()
                            .collect(),
                    },
                    stated_budget_minutes: None,
                });
            }
        }
        let mut names = HashSet::new();
        for (i, s) in slos.iter().enumerate() {
            if s.name.is_empty() {
                self.err(&format!("slos[{i}].name"), "must not be empty".into());
            } else if !names.insert(s.name.as_str()) {
                self.err(
                    &format!("slos[{i}].name"),
                    format!("duplicate slo name {:?}", s.name),
                );
            }
        }
        defs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            parse_duration("30 days").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn status_matches() {
        assert_eq!(parse_status_match("204"), Some((204, 204)));
        assert_eq!(parse_status_match("2xx"), Some((200, 299)));
        assert_eq!(parse_status_match("5XX"), Some((500, 599)));
        assert_eq!(parse_status_match("6xx"), None);
        assert_eq!(parse_status_match("99"), None);
        assert_eq!(parse_status_match("abc"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size(" 16 kib "), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999k").is_err());
        assert!(parse_size("2048MiB").is_err());
    }

    #[test]
    fn limits_have_floors() {
        let yaml = "limits: {max_request_head: 4KiB, max_request_headers: 0, max_uri: 2k}\n";
        let e = crate::config::parse("f.yaml", yaml, Path::new(".")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                "f.yaml:1:28: limits.max_request_head: must be at least 8192 bytes, got 4KiB"
            ),
            "{text}"
        );
        assert!(
            text.contains("limits.max_request_headers: must be at least 1"),
            "{text}"
        );
        let c = crate::config::parse("f.yaml", "limits: {max_uri: 2k}\n", Path::new(".")).unwrap();
        assert_eq!(c.limits.max_uri, 2048);
        assert_eq!(c.limits.max_request_head, DEFAULT_MAX_REQUEST_HEAD);
    }

    #[test]
    fn slos_are_built_once_with_their_defaults() {
        let yaml = "slos:\n  - {name: api, objective: 99.95%}\n  - name: fast\n    objective: \"99.9\"\n    window: 7d\n    indicator: {type: latency}\n    alerts: {windows: [{long: 1h, short: 5m, burn_rate: 10}], min_events: 20}\n";
        let c = crate::config::parse("f.yaml", yaml, Path::new(".")).unwrap();
        let [api, fast] = c.slos.as_slice() else {
            panic!("{:?}", c.slos)
        };
        assert_eq!(api.objective_text, "99.95%");
        assert_eq!(api.window, spec::DEFAULT_WINDOW);
        assert_eq!(
            api.indicator,
            Indicator::Availability {
                good: spec::default_good()
            }
        );
        assert_eq!(api.alerts.windows, spec::default_windows());
        assert_eq!(api.service, "api");
        assert_eq!(fast.window, Duration::from_secs(7 * 86400));
        assert_eq!(
            fast.indicator,
            Indicator::Latency {
                threshold: spec::DEFAULT_THRESHOLD
            }
        );
        assert_eq!(fast.alerts.min_events, 20);
        assert_eq!(fast.alerts.windows.len(), 1);
        assert_eq!(fast.alerts.windows[0].severity, "page");
        assert_eq!(fast.alerts.windows[0].burn_rate, 10.0);
    }

    #[test]
    fn slo_objectives_are_read_one_way() {
        // The first once passed the validator and then silently became 99.9%.
        for (objective, message) in [
            ("9.995e1%", "invalid availability"),
            ("100", "must be above 0% and below 100%"),
            ("100%", "must be above 0% and below 100%"),
            ("0%", "must be above 0% and below 100%"),
        ] {
            let yaml = format!("slos: [{{name: api, objective: \"{objective}\"}}]\n");
            let e = crate::config::parse("f.yaml", &yaml, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("slos[0].objective: ") && e.contains(message),
                "{objective}: {e}"
            );
        }
        let yaml = "slos: [{name: api, objective: 0.999}]\n";
        let c = crate::config::parse("f.yaml", yaml, Path::new(".")).unwrap();
        assert!((c.slos[0].objective.up() - 0.00999).abs() < 1e-12);
        let yaml = "slos: [{name: api, indicator: {good_status: []}, objective: 99%}]\n";
        let e = crate::config::parse("f.yaml", yaml, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("slos[0].indicator.good_status: is empty"), "{e}");
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("99.95%").unwrap(), 99.95);
        assert_eq!(parse_percent("99.95").unwrap(), 99.95);
        assert!(parse_percent("150%").is_err());
        assert!(parse_percent("x%").is_err());
    }
}
