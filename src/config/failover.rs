//! Validated settings of redundancy and failover: active health checks, outlier
//! detection, priority and zone routing, panic mode, retries and the read/write split.
//!
//! Each setting has a default chosen so that a cluster without any of these keys still
//! fails over: a refused connection is retried on another endpoint (it provably never
//! reached one), and passive detection is on. The defaults are documented in
//! `docs/failover.md`, with the reasons.

use super::collect::V;
use super::raw::*;
use super::units::{parse_size, parse_status_match};
use std::time::Duration;

/// Default time between two health checks of one endpoint (the seed's ALB example).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default timeout of one health check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default passes to become healthy: one lucky probe must not bring a flapping endpoint
/// back (Traefik #12390).
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default failures to become unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default interval jitter: probes of many gateways do not arrive in lockstep.
pub const DEFAULT_CHECK_JITTER: f64 = 10.0;
/// Default failures in a row that eject an endpoint (Envoy's `consecutive_5xx`).
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Default first ejection (Envoy's `base_ejection_time`).
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// Default longest ejection (Envoy's `max_ejection_time`).
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// Default cap on the share of a cluster ejected at once. Outlier detection must never
/// take a cluster down by itself; at least one endpoint can always be ejected.
pub const DEFAULT_MAX_EJECTION_PERCENT: f64 = 50.0;
/// Default healthy share of the local zone below which traffic spills to other zones:
/// 1/1.4, the point where Envoy's overprovisioning factor starts to spill.
pub const DEFAULT_ZONE_SPILL_BELOW: f64 = 100.0 / 1.4;
/// Default attempts of a request (the first and one retry).
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// Default retry budget: retries at most 20% of the route's recent requests (Envoy's,
/// Finagle's and Linkerd's figure).
pub const DEFAULT_RETRY_BUDGET: f64 = 20.0;
/// Default floor of the budget, so a quiet route can still retry.
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 3;
/// Default first backoff (Envoy's).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Default largest backoff (Envoy's: 10 × base).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Default largest request body kept for replay (Linkerd's 64 KiB).
pub const DEFAULT_RETRY_BUFFER: usize = 64 * 1024;

/// `clusters[].health_check`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// What a probe does.
    pub kind: CheckKind,
    /// Time between probes of one endpoint.
    pub interval: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Passes in a row to become healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Spread of each interval, percent of it.
    pub jitter: f64,
}

/// What a health probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// `GET path`; healthy when the status is expected and, if asked, the JSON body's
    /// `status` field has the expected value.
    Http {
        /// Path probed.
        path: String,
        /// Host header; `None`: the endpoint's address.
        host: Option<String>,
        /// Statuses counted healthy, as inclusive ranges.
        expect_status: Vec<(u16, u16)>,
        /// Expected `status` of a JSON body shaped like `{"status": "ok", "checks": {...}}`.
        expect_json_status: Option<String>,
    },
    /// A TCP connect.
    Tcp,
    /// PostgreSQL's own protocol: log in, read the role (and a replica's lag).
    Postgres(PostgresCheck),
    /// Patroni's REST API: `GET /primary` or `/replica?lag=` on its port.
    Patroni(PatroniCheck),
}

/// The role a PostgreSQL-aware check wants of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes: not in recovery.
    Primary,
    /// A hot standby, in recovery.
    Replica,
}

impl Role {
    /// The name the configuration and the state API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// `health_check.postgres.sslmode`, as libpq reads it (no certificate verification,
/// like libpq's `prefer` and `require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, plain text otherwise.
    Prefer,
    /// TLS or fail.
    Require,
}

/// What a primary cluster does when two endpoints claim to be primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoPrimaries {
    /// Refuse new connections until one stops claiming it.
    Refuse,
    /// Keep sending to the primary of the current generation.
    KeepCurrent,
}

/// The largest replication lag of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagBound {
    /// Time since the last replayed transaction, when replay is behind.
    Time(Duration),
    /// WAL bytes received but not replayed.
    Bytes(u64),
}

/// A secret from the configuration (a password): printed as `***`, never as itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `health_check.postgres`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresCheck {
    /// The role that passes.
    pub role: Role,
    /// User to log in as.
    pub user: String,
    /// Database to connect to.
    pub database: String,
    /// Password, when the server asks for one.
    pub password: Option<Secret>,
    /// TLS.
    pub sslmode: SslMode,
    /// Two endpoints claiming primary (role primary only).
    pub two_primaries: TwoPrimaries,
    /// A replica's largest lag; `None`: lag is not checked.
    pub max_replication_lag: Option<LagBound>,
}

/// `health_check.patroni`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatroniCheck {
    /// Port of the REST API on the endpoint's host.
    pub port: u16,
    /// The role that passes.
    pub role: Role,
    /// A replica's largest lag in bytes (`/replica?lag=`).
    pub lag: Option<u64>,
    /// Two endpoints claiming primary.
    pub two_primaries: TwoPrimaries,
}

impl HealthCheckConfig {
    /// The role the check wants, for a PostgreSQL-aware check.
    pub fn role(&self) -> Option<Role> {
        match &self.kind {
            CheckKind::Postgres(p) => Some(p.role),
            CheckKind::Patroni(p) => Some(p.role),
            _ => None,
        }
    }

    /// What two primaries do, for a check that wants a primary.
    pub fn two_primaries(&self) -> Option<TwoPrimaries> {
        match &self.kind {
            CheckKind::Postgres(p) if p.role == Role::Primary => Some(p.two_primaries),
            CheckKind::Patroni(p) if p.role == Role::Primary => Some(p.two_primaries),
            _ => None,
        }
    }
}

/// `clusters[].outlier_detection` (always on, with defaults, when absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// Failures in a row that eject.
    pub consecutive_failures: u32,
    /// First ejection; the n-th lasts n × this.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Largest share of the cluster ejected at once, percent.
    pub max_ejection_percent: f64,
    /// Whether 5xx answers count as failures. Connect errors, resets and timeouts
    /// always do; 5xx only when the file configures `outlier_detection`, so that an
    /// application's own errors never eject endpoints behind the operator's back.
    pub count_5xx: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            count_5xx: false,
        }
    }
}

/// Every status 500..=599 as a [`RetryOn::statuses`] bit set.
pub const ALL_5XX: u128 = u128::MAX >> 28;

/// What allows a retry (`retry.on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// The connection could not be made.
    pub connect_failure: bool,
    /// The h2 upstream refused the stream (it never processed it).
    pub refused_stream: bool,
    /// The connection broke before the answer's head.
    pub reset: bool,
    /// The attempt passed `per_try_timeout`.
    pub timeout: bool,
    /// Statuses that allow a retry, as a bit per code 500..=599.
    pub statuses: u128,
}

/// `routes[].retry` (always present: defaults when absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Timeout of one attempt; `None`: only the route's `timeout` bounds it.
    pub per_try_timeout: Option<Duration>,
    /// Conditions.
    pub on: RetryOn,
    /// Retries as a share of recent requests, percent.
    pub budget: f64,
    /// Retries always allowed per second.
    pub min_retries_per_second: u32,
    /// First backoff.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// Largest request body kept for replay.
    pub buffer: usize,
    /// Non-idempotent requests with an `Idempotency-Key` header may be retried.
    pub idempotency_key: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: DEFAULT_ATTEMPTS,
            per_try_timeout: None,
            on: RetryOn {
                connect_failure: true,
                refused_stream: true,
                reset: true,
                timeout: false,
                statuses: 0,
            },
            budget: DEFAULT_RETRY_BUDGET,
            min_retries_per_second: DEFAULT_MIN_RETRIES_PER_SECOND,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            buffer: DEFAULT_RETRY_BUFFER,
            idempotency_key: false,
        }
    }
}

/// `routes[].writes`: where requests with unsafe methods go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// Another cluster.
    Cluster(String),
    /// Only endpoints of this zone (of the route's cluster).
    Zone(String),
}

// === impl RetryOn ===

impl RetryOn {
    /// Adds the failures of an upstream that gave no answer: connect failure, reset,
    /// per-try timeout, and a refused stream where that counts (`refused_stream`).
    fn unreachable(&mut self, refused_stream: bool) {
        self.connect_failure = true;
        self.reset = true;
        self.timeout = true;
        self.refused_stream |= refused_stream;
    }

    /// Whether `status` allows a retry.
    pub fn status(&self, status: u16) -> bool {
        (500..600).contains(&status) && self.statuses & (1u128 << (status - 500)) != 0
    }
}

// === impl V ===

impl V<'_> {
    pub(super) fn health_check(
        &mut self,
        hp: &str,
        h: &RawHealthCheck,
    ) -> Option<HealthCheckConfig> {
        let kinds = [
            h.http.is_some(),
            h.tcp.is_some(),
            h.postgres.is_some(),
            h.patroni.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if kinds > 1 {
            self.err(hp, "set only one of http, tcp, postgres, patroni".into());
        }
        let kind = if let Some(http) = &h.http {
            let path = http.path.clone().unwrap_or_else(|| "/health".into());
            if !path.starts_with('/') {
                self.err(
                    &format!("{hp}.http.path"),
                    format!("must start with '/', got {path:?}"),
                );
            }
            let mut expect_status = Vec::new();
            for (i, s) in http.expect_status.iter().flatten().enumerate() {
                match parse_status_match(&s.0) {
                    Some(r) => expect_status.push(r),
                    None => self.err(
                        &format!("{hp}.http.expect_status[{i}]"),
                        format!("not a status or class: {s}"),
                    ),
                }
            }
            if expect_status.is_empty() {
                expect_status.push((200, 299));
            }
            Some(CheckKind::Http {
                path,
                host: http.host.clone(),
                expect_status,
                expect_json_status: http.expect_json_status.clone(),
            })
        } else if h.tcp.is_some() {
            Some(CheckKind::Tcp)
        } else if let Some(pg) = &h.postgres {
            Some(CheckKind::Postgres(
                self.postgres_check(&format!("{hp}.postgres"), pg),
            ))
        } else if let Some(pt) = &h.patroni {
            self.patroni_check(&format!("{hp}.patroni"), pt)
                .map(CheckKind::Patroni)
        } else {
            self.err_hint(
                hp,
                "a health check needs a kind".into(),
                "add http: {path: /health}, tcp: {}, postgres: {role: primary} or patroni: {port: 8008, role: primary}",
            );
            None
        };
        let interval = self
            .opt_duration(&format!("{hp}.interval"), h.interval.as_ref())
            .unwrap_or(DEFAULT_CHECK_INTERVAL);
        let timeout = self
            .opt_duration(&format!("{hp}.timeout"), h.timeout.as_ref())
            .unwrap_or(DEFAULT_CHECK_TIMEOUT);
        if timeout > interval {
            self.err_hint(
                &format!("{hp}.timeout"),
                format!("is longer than the interval ({timeout:?} > {interval:?})"),
                "a probe must end before the next one starts",
            );
        }
        let healthy_threshold = self.at_least_one(
            &format!("{hp}.healthy_threshold"),
            h.healthy_threshold,
            DEFAULT_HEALTHY_THRESHOLD,
        );
        let unhealthy_threshold = self.at_least_one(
            &format!("{hp}.unhealthy_threshold"),
            h.unhealthy_threshold,
            DEFAULT_UNHEALTHY_THRESHOLD,
        );
        let jitter = self
            .percent_upto(&format!("{hp}.jitter"), h.jitter.as_ref(), 50.0)
            .unwrap_or(DEFAULT_CHECK_JITTER);
        Some(HealthCheckConfig {
            kind: kind?,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
            jitter,
        })
    }

    fn role(&mut self, p: &str, role: Option<&str>) -> Role {
        match role {
            Some("primary") => Role::Primary,
            Some("replica") => Role::Replica,
            Some(o) => {
                self.err(p, format!("must be primary or replica, got {o:?}"));
                Role::Primary
            }
            None => {
                self.err_hint(p, "required".into(), "role: primary (or replica)");
                Role::Primary
            }
        }
    }

    fn two_primaries(&mut self, p: &str, v: Option<&str>) -> TwoPrimaries {
        match v {
            None | Some("refuse") => TwoPrimaries::Refuse,
            Some("keep_current") => TwoPrimaries::KeepCurrent,
            Some(o) => {
                self.err(p, format!("must be refuse or keep_current, got {o:?}"));
                TwoPrimaries::Refuse
            }
        }
    }

    fn postgres_check(&mut self, p: &str, pg: &RawPostgresCheck) -> PostgresCheck {
        let role = self.role(&format!("{p}.role"), pg.role.as_deref());
        let sslmode = match pg.sslmode.as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some(o) => {
                self.err(
                    &format!("{p}.sslmode"),
                    format!("must be disable, prefer or require, got {o:?}"),
                );
                SslMode::Prefer
            }
        };
        let two_primaries =
            self.two_primaries(&format!("{p}.two_primaries"), pg.two_primaries.as_deref());
        if role == Role::Replica && pg.two_primaries.is_some() {
            self.err(
                &format!("{p}.two_primaries"),
                "only a role: primary check decides about two primaries".into(),
            );
        }
        let max_replication_lag = pg.max_replication_lag.as_ref().and_then(|s| {
            let lp = format!("{p}.max_replication_lag");
            if role == Role::Primary {
                self.err(&lp, "only a role: replica check measures lag".into());
                return None;
            }
            if let Ok(d) = super::units::parse_duration(&s.0) {
                return Some(LagBound::Time(d));
            }
            match parse_size(&s.0) {
                Ok(n) => Some(LagBound::Bytes(n as u64)),
                Err(_) => {
                    self.err(
                        &lp,
                        format!("must be a duration (5s) or a size (16MB), got {s}"),
                    );
                    None
                }
            }
        });
        let user = pg.user.clone().unwrap_or_else(|| "postgres".into());
        if user.is_empty() {
            self.err(&format!("{p}.user"), "must not be empty".into());
        }
        PostgresCheck {
            role,
            user,
            database: pg.database.clone().unwrap_or_else(|| "postgres".into()),
            password: pg.password.clone().map(Secret::new),
            sslmode,
            two_primaries,
            max_replication_lag,
        }
    }

    fn patroni_check(&mut self, p: &str, pt: &RawPatroniCheck) -> Option<PatroniCheck> {
        let role = self.role(&format!("{p}.role"), pt.role.as_deref());
        let two_primaries =
            self.two_primaries(&format!("{p}.two_primaries"), pt.two_primaries.as_deref());
        let lag = pt.lag.as_ref().and_then(|s| {
            if role == Role::Primary {
                self.err(
                    &format!("{p}.lag"),
                    "only a role: replica check has a lag".into(),
                );
                return None;
            }
            match parse_size(&s.0) {
                Ok(n) => Some(n as u64),
                Err(m) => {
                    self.err(&format!("{p}.lag"), m);
                    None
                }
            }
        });
        Some(PatroniCheck {
            port: pt.port.unwrap_or(8008),
            role,
            lag,
            two_primaries,
        })
    }

    pub(super) fn outlier(&mut self, op: &str, o: Option<&RawOutlier>) -> OutlierConfig {
        let d = OutlierConfig::default();
        let Some(o) = o else { return d };
        let base_ejection = self
            .opt_duration(&format!("{op}.base_ejection"), o.base_ejection.as_ref())
            .unwrap_or(d.base_ejection);
        let max_ejection = self
            .opt_duration(&format!("{op}.max_ejection"), o.max_ejection.as_ref())
            .unwrap_or(d.max_ejection.max(base_ejection));
        if max_ejection < base_ejection {
            self.err(
                &format!("{op}.max_ejection"),
                format!("is shorter than base_ejection ({max_ejection:?} < {base_ejection:?})"),
            );
        }
        OutlierConfig {
            consecutive_failures: self.at_least_one(
                &format!("{op}.consecutive_failures"),
                o.consecutive_failures,
                d.consecutive_failures,
            ),
            base_ejection,
            max_ejection,
            max_ejection_percent: self
                .percent_upto(
                    &format!("{op}.max_ejection_percent"),
                    o.max_ejection_percent.as_ref(),
                    100.0,
                )
                .unwrap_or(d.max_ejection_percent),
            count_5xx: true,
        }
    }

    pub(super) fn retry(&mut self, p: &str, r: Option<&RawRetry>) -> RetryConfig {
        let d = RetryConfig::default();
        let Some(r) = r else { return d };
        let attempts = match r.attempts {
            Some(0) => {
                self.err(&format!("{p}.attempts"), "must be at least 1".into());
                d.attempts
            }
            Some(n) if n > 10 => {
                self.err_hint(
                    &format!("{p}.attempts"),
                    format!("must be at most 10, got {n}"),
                    "more attempts multiply load on a failing upstream; 2 or 3 is usual",
                );
                10
            }
            Some(n) => n,
            None => d.attempts,
        };
        let on = match &r.on {
            None => d.on,
            Some(list) => self.conditions(&format!("{p}.on"), list, true),
        };
        let backoff_base = r
            .backoff
            .as_ref()
            .and_then(|b| self.opt_duration(&format!("{p}.backoff.base"), b.base.as_ref()))
            .unwrap_or(d.backoff_base);
        let backoff_max = r
            .backoff
            .as_ref()
            .and_then(|b| self.opt_duration(&format!("{p}.backoff.max"), b.max.as_ref()))
            .unwrap_or(d.backoff_max.max(backoff_base));
        if backoff_max < backoff_base {
            self.err(
                &format!("{p}.backoff.max"),
                format!("is shorter than backoff.base ({backoff_max:?} < {backoff_base:?})"),
            );
        }
        let buffer = match &r.buffer {
            None => d.buffer,
            Some(s) => match parse_size(&s.0) {
                Ok(n) => n,
                Err(m) => {
                    self.err(&format!("{p}.buffer"), m);
                    d.buffer
                }
            },
        };
        RetryConfig {
            attempts,
            per_try_timeout: self
                .opt_duration(&format!("{p}.per_try_timeout"), r.per_try_timeout.as_ref()),
            on,
            budget: self
                .percent_upto(&format!("{p}.budget"), r.budget.as_ref(), 100.0)
                .unwrap_or(d.budget),
            min_retries_per_second: r.min_retries_per_second.unwrap_or(d.min_retries_per_second),
            backoff_base,
            backoff_max,
            buffer,
            idempotency_key: r.idempotency_key.unwrap_or(false),
        }
    }

    pub(super) fn writes(&mut self, p: &str, w: Option<&RawWrites>) -> Option<Writes> {
        let w = w?;
        match (&w.cluster, &w.zone) {
            (Some(c), None) => Some(Writes::Cluster(c.clone())),
            (None, Some(z)) => Some(Writes::Zone(z.clone())),
            _ => {
                self.err(p, "set exactly one of cluster, zone".into());
                None
            }
        }
    }

    /// A list of failure conditions (`retry.on`, `circuit_breaker.on`): connect-failure,
    /// reset, timeout, 5xx, gateway-error, a 5xx status, and refused-stream where
    /// `refused_stream` allows it (a breaker does not count a stream the upstream
    /// refused before processing it).
    pub(super) fn conditions(&mut self, p: &str, list: &[Scalar], refused_stream: bool) -> RetryOn {
        let mut on = RetryOn::default();
        for (i, c) in list.iter().enumerate() {
            match c.0.trim() {
                "connect-failure" => on.connect_failure = true,
                "refused-stream" if refused_stream => on.refused_stream = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                // Envoy's words mean what Envoy's do: an upstream that answers 5xx and
                // one that cannot answer at all (not reached, reset, silent past the
                // per-try timeout, refusing the stream) fail the same way.
                "5xx" => {
                    on.statuses = ALL_5XX;
                    on.unreachable(refused_stream);
                }
                "gateway-error" => {
                    for s in [502, 503, 504] {
                        on.statuses |= 1 << (s - 500);
                    }
                    on.unreachable(refused_stream);
                }
                other => match other.parse::<u16>() {
                    Ok(s) if (500..600).contains(&s) => on.statuses |= 1 << (s - 500),
                    _ => self.err_hint(
                        &format!("{p}[{i}]"),
                        format!("unknown condition {other:?}"),
                        if refused_stream {
                            "use connect-failure, refused-stream, reset, timeout, 5xx, gateway-error or a 5xx status"
                        } else {
                            "use connect-failure, reset, timeout, 5xx, gateway-error or a 5xx status"
                        },
                    ),
                },
            }
        }
        on
    }

    pub(super) fn at_least_one(&mut self, path: &str, v: Option<u32>, default: u32) -> u32 {
        match v {
            Some(0) => {
                self.err(path, "must be at least 1, got 0".into());
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    /// A percentage in `(0, max]`.
    pub(super) fn percent_upto(&mut self, path: &str, s: Option<&Scalar>, max: f64) -> Option<f64> {
        let p = self.opt_percent(path, s)?;
        if p <= 0.0 || p > max {
            self.err(path, format!("must be in (0%, {max}%], got {p}%"));
            return None;
        }
        Some(p)
    }
}
