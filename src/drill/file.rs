//! A drill file: the YAML contract (`title`, `gateway`, `targets`, `load`,
//! `steady_state`, `method`, `rollbacks`, `rollback`, `stop_when`), read with the
//! configuration's reader (unknown keys refused, `${ENV}` interpolated, errors as
//! `file:line:col: key: message`) and checked into a [`Drill`].

use crate::config::raw::{RawAbort, RawDelay, Scalar};
use crate::config::{parse_duration, parse_percent, ConfigError, ConfigErrors, PosIndex};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Successes in a row, per load stream, that count as recovered (default).
pub const DEFAULT_RECOVERED_AFTER: u32 = 10;

// === the file as written ===

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    /// What the drill is about.
    pub title: Option<String>,
    /// The gateway's admin API.
    pub gateway: Option<RawGateway>,
    /// `rto` and `rpo`.
    pub targets: Option<RawTargets>,
    /// Load streams, from before the method until the end.
    #[serde(default)]
    pub load: Vec<RawLoad>,
    /// Checked before the method and after it.
    #[serde(default)]
    pub steady_state: Vec<RawProbe>,
    /// The experiment's steps, in order.
    #[serde(default)]
    pub method: Vec<RawStep>,
    /// Steps that put things back.
    #[serde(default)]
    pub rollbacks: Vec<RawStep>,
    /// `always`, `deviated` or `never`.
    pub rollback: Option<String>,
    /// When to abort the method.
    pub stop_when: Option<RawStopWhen>,
    /// Successes in a row, per load stream, that mean recovered.
    pub recovered_after: Option<u32>,
}

/// `gateway`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Admin address.
    pub admin: Option<String>,
    /// Bearer token for mutations.
    pub token: Option<String>,
}

/// `targets`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    /// Longest recovery.
    pub rto: Option<Scalar>,
    /// Lost acknowledged writes allowed (a count), or a duration of them.
    pub rpo: Option<Scalar>,
}

/// One `load` stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    /// A writer of a monotonic sequence.
    pub sql: Option<RawSql>,
    /// HTTP requests.
    pub http: Option<RawHttp>,
}

/// `sql` (a load stream or a steady-state probe).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    /// `ip:port`.
    pub address: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Operations per second (load).
    pub rate: Option<u32>,
    /// The query: a steady-state probe's, or a reader's (a load stream with a query
    /// reads instead of writing).
    pub query: Option<String>,
    /// The sequence table the writer uses (load).
    pub table: Option<String>,
}

/// `http` (a load stream or a steady-state probe).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `http://ip:port/path`.
    pub url: Option<String>,
    /// Requests per second (load).
    pub rate: Option<u32>,
    /// Statuses that count as success.
    pub expect_status: Option<Vec<u16>>,
}

/// One `steady_state` probe.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// An HTTP answer.
    pub http: Option<RawHttp>,
    /// A query that answers.
    pub sql: Option<RawSql>,
    /// An SLO's burn rate.
    pub slo: Option<RawSloProbe>,
}

/// `steady_state[].slo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSloProbe {
    /// SLO name.
    pub name: Option<String>,
    /// Largest 5-minute burn rate that still holds.
    pub max_burn_rate: Option<f64>,
}

/// One step of `method` or `rollbacks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Send a signal.
    pub signal: Option<RawSignal>,
    /// Wait.
    pub wait: Option<Scalar>,
    /// Run a command.
    pub command: Option<RawCommand>,
    /// Drain an endpoint through the admin API.
    pub drain: Option<RawEndpointRef>,
    /// Enable an endpoint through the admin API.
    pub enable: Option<RawEndpointRef>,
    /// Add a fault with a ttl through the admin API.
    pub fault: Option<RawFault>,
    /// Wait for a condition.
    pub wait_for: Option<RawWaitFor>,
}

/// `signal`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignal {
    /// A file whose first line is the pid (`postmaster.pid`).
    pub pid_file: Option<String>,
    /// The pid.
    pub pid: Option<u32>,
    /// `KILL`, `TERM`, `STOP`, `CONT`, `INT`, `HUP`.
    pub signal: Option<String>,
}

/// `command`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// Program and arguments.
    pub run: Option<Vec<String>>,
    /// Run as this user (`runuser -u USER --`).
    pub user: Option<String>,
    /// Longest run.
    pub timeout: Option<Scalar>,
}

/// `drain` and `enable`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpointRef {
    /// Cluster.
    pub cluster: Option<String>,
    /// `ip:port`.
    pub endpoint: Option<String>,
}

/// `fault`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// Route name.
    pub route: Option<String>,
    /// As a route's `faults.abort`.
    pub abort: Option<RawAbort>,
    /// As a route's `faults.delay`.
    pub delay: Option<RawDelay>,
    /// How long it lasts (required: a killed drill leaves nothing switched on).
    pub ttl: Option<Scalar>,
}

/// `wait_for`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaitFor {
    /// Every load stream recovered.
    pub recovered: Option<bool>,
    /// Longest wait.
    pub timeout: Option<Scalar>,
}

/// `stop_when`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStopWhen {
    /// The method runs at most this long.
    pub after: Option<Scalar>,
    /// Error rate of the load over the last second that aborts.
    pub error_rate: Option<Scalar>,
}

// === the checked drill ===

/// A checked drill.
#[derive(Debug, Clone)]
pub struct Drill {
    /// Title.
    pub title: String,
    /// The file it came from.
    pub file: String,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Bearer token.
    pub token: Option<String>,
    /// Longest recovery allowed.
    pub rto: Option<Duration>,
    /// Data loss allowed.
    pub rpo: Option<Rpo>,
    /// Load streams.
    pub load: Vec<Load>,
    /// Steady-state probes.
    pub steady_state: Vec<Probe>,
    /// The method.
    pub method: Vec<Step>,
    /// The rollbacks.
    pub rollbacks: Vec<Step>,
    /// When rollbacks run.
    pub rollback: Rollback,
    /// Longest method.
    pub stop_after: Option<Duration>,
    /// Error rate that aborts, as a share in [0, 1].
    pub stop_error_rate: Option<f64>,
    /// Successes in a row that mean recovered.
    pub recovered_after: u32,
}

/// `targets.rpo`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rpo {
    /// Lost acknowledged writes allowed.
    Writes(u64),
    /// Span of lost acknowledged writes allowed.
    Span(Duration),
}

/// A login to PostgreSQL.
#[derive(Debug, Clone)]
pub struct Sql {
    /// Address.
    pub address: SocketAddr,
    /// User.
    pub user: String,
    /// Database.
    pub database: String,
    /// Password.
    pub password: Option<crate::config::Secret>,
}

/// A load stream.
#[derive(Debug, Clone)]
pub enum Load {
    /// Inserts 1, 2, 3, ... into `table`, one per tick; or, with `query`, runs it
    /// (a reader).
    Sql {
        /// Where.
        login: Sql,
        /// Operations per second.
        rate: u32,
        /// The sequence table of a writer.
        table: String,
        /// A reader's query.
        query: Option<String>,
    },
    /// GETs `url`.
    Http {
        /// Where.
        url: HttpUrl,
        /// Requests per second.
        rate: u32,
        /// Statuses that succeed.
        expect: Vec<u16>,
    },
}

/// An `http://` URL, split.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    /// As written.
    pub text: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Path and query.
    pub path: String,
}

/// A steady-state probe.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An answer with one of `expect`.
    Http {
        /// Where.
        url: HttpUrl,
        /// Statuses that pass.
        expect: Vec<u16>,
    },
    /// A query that answers.
    Sql {
        /// Where.
        login: Sql,
        /// What.
        query: String,
    },
    /// An SLO whose 5-minute burn rate is at most `max_burn_rate`.
    Slo {
        /// SLO name.
        name: String,
        /// Bound.
        max_burn_rate: f64,
    },
}

/// A step.
#[derive(Debug, Clone)]
pub enum Step {
    /// A signal to a process.
    Signal {
        /// Where the pid comes from.
        pid: PidSource,
        /// Signal name.
        signal: String,
    },
    /// A pause.
    Wait(Duration),
    /// A program run to its end.
    Command {
        /// Program and arguments.
        run: Vec<String>,
        /// As this user.
        user: Option<String>,
        /// Longest run.
        timeout: Duration,
    },
    /// Drain an endpoint.
    Drain {
        /// Cluster.
        cluster: String,
        /// Endpoint.
        endpoint: String,
    },
    /// Enable an endpoint.
    Enable {
        /// Cluster.
        cluster: String,
        /// Endpoint.
        endpoint: String,
    },
    /// A run-time fault, as JSON for `POST /api/v1/faults`.
    Fault(serde_json::Value),
    /// Wait until every load stream recovered.
    WaitRecovered(Duration),
}

/// Where a signal's pid comes from.
#[derive(Debug, Clone)]
pub enum PidSource {
    /// A file's first line, read when the step runs.
    File(PathBuf),
    /// A pid.
    Pid(u32),
}

/// `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Whatever happened.
    Always,
    /// Only when the drill deviated.
    Deviated,
    /// Never.
    Never,
}

impl Step {
    /// A short description, for the journal and the report.
    pub fn describe(&self) -> String {
        match self {
            Step::Signal { pid, signal } => match pid {
                PidSource::File(f) => format!("signal {signal} to the pid in {}", f.display()),
                PidSource::Pid(p) => format!("signal {signal} to pid {p}"),
            },
            Step::Wait(d) => format!("wait {d:?}"),
            Step::Command { run, user, .. } => match user {
                Some(u) => format!("run `{}` as {u}", run.join(" ")),
                None => format!("run `{}`", run.join(" ")),
            },
            Step::Drain { cluster, endpoint } => format!("drain {endpoint} of {cluster}"),
            Step::Enable { cluster, endpoint } => format!("enable {endpoint} of {cluster}"),
            Step::Fault(v) => format!("fault {v}"),
            Step::WaitRecovered(t) => format!("wait until recovered (at most {t:?})"),
        }
    }
}

// === reading ===

/// Reads and checks a drill file: every error, each at its key.
pub fn load(path: &Path) -> Result<Drill, ConfigErrors> {
    let (name, text) = crate::config::read(path)?;
    parse(&name, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Checks drill text named `file`; relative paths resolve against `base`.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Drill, ConfigErrors> {
    let text = crate::config::interpolate(file, text, |k| std::env::var(k).ok())?;
    let raw: RawDrill = crate::config::parse_yaml(file, &text)?;
    let index = PosIndex::build(&text);
    let mut c = Check {
        file,
        index: &index,
        errors: Vec::new(),
        base,
    };
    let d = c.drill(raw);
    if c.errors.is_empty() {
        Ok(d)
    } else {
        Err(ConfigErrors(c.errors))
    }
}

struct Check<'a> {
    file: &'a str,
    index: &'a PosIndex,
    errors: Vec<ConfigError>,
    base: &'a Path,
}

impl Check<'_> {
    fn err(&mut self, path: &str, message: String) {
        let (line, column) = self.index.locate(path);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
            hint: None,
        });
    }

    fn duration(&mut self, path: &str, s: Option<&Scalar>) -> Option<Duration> {
        let s = s?;
        match parse_duration(&s.0) {
            Ok(d) => Some(d),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    fn addr(&mut self, path: &str, s: Option<&str>) -> SocketAddr {
        match s.map(|s| s.parse::<SocketAddr>()) {
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                self.err(path, format!("not an ip:port: {:?}", s.unwrap_or_default()));
                ([127, 0, 0, 1], 0).into()
            }
            None => {
                self.err(path, "required".into());
                ([127, 0, 0, 1], 0).into()
            }
        }
    }

    fn url(&mut self, path: &str, s: Option<&str>) -> HttpUrl {
        let text = s.unwrap_or_default().to_owned();
        let parsed = text.strip_prefix("http://").and_then(|rest| {
            let (host, p) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            Some((host.parse::<SocketAddr>().ok()?, p.to_owned()))
        });
        match parsed {
            Some((addr, path)) => HttpUrl { text, addr, path },
            None => {
                self.err(
                    path,
                    format!("must be http://IP:PORT/PATH (no names, no https), got {text:?}"),
                );
                HttpUrl {
                    text,
                    addr: ([127, 0, 0, 1], 0).into(),
                    path: "/".into(),
                }
            }
        }
    }

    fn sql(&mut self, p: &str, s: &RawSql) -> Sql {
        Sql {
            address: self.addr(&format!("{p}.address"), s.address.as_deref()),
            user: s.user.clone().unwrap_or_else(|| "postgres".into()),
            database: s.database.clone().unwrap_or_else(|| "postgres".into()),
            password: s.password.clone().map(crate::config::Secret::new),
        }
    }

    fn drill(&mut self, raw: RawDrill) -> Drill {
        let title = raw.title.clone().unwrap_or_default();
        if title.is_empty() {
            self.err("title", "required: say what the drill is about".into());
        }
        let gw = raw.gateway.clone().unwrap_or_default();
        let admin = self.addr("gateway.admin", gw.admin.as_deref());
        let targets = raw.targets.clone().unwrap_or_default();
        let rto = self.duration("targets.rto", targets.rto.as_ref());
        let rpo = targets.rpo.as_ref().and_then(|s| {
            if let Ok(n) = s.0.trim().parse::<u64>() {
                return Some(Rpo::Writes(n));
            }
            match parse_duration(&s.0) {
                Ok(d) => Some(Rpo::Span(d)),
                Err(_) => {
                    self.err(
                        "targets.rpo",
                        format!("must be a count of lost writes (0) or a duration, got {s}"),
                    );
                    None
                }
            }
        });
        let mut load = Vec::new();
        for (i, l) in raw.load.iter().enumerate() {
            let p = format!("load[{i}]");
            match (&l.sql, &l.http) {
                (Some(s), None) => {
                    let table = s.table.clone().unwrap_or_else(|| "ninefold_drill".into());
                    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        self.err(
                            &format!("{p}.sql.table"),
                            format!("not a plain table name: {table:?}"),
                        );
                    }
                    load.push(Load::Sql {
                        login: self.sql(&format!("{p}.sql"), s),
                        rate: self.rate(&format!("{p}.sql.rate"), s.rate),
                        table,
                        query: s.query.clone(),
                    })
                }
                (None, Some(h)) => load.push(Load::Http {
                    url: self.url(&format!("{p}.http.url"), h.url.as_deref()),
                    rate: self.rate(&format!("{p}.http.rate"), h.rate),
                    expect: h.expect_status.clone().unwrap_or_else(|| vec![200]),
                }),
                _ => self.err(&p, "set exactly one of sql, http".into()),
            }
        }
        let mut steady_state = Vec::new();
        for (i, s) in raw.steady_state.iter().enumerate() {
            let p = format!("steady_state[{i}]");
            match (&s.http, &s.sql, &s.slo) {
                (Some(h), None, None) => steady_state.push(Probe::Http {
                    url: self.url(&format!("{p}.http.url"), h.url.as_deref()),
                    expect: h.expect_status.clone().unwrap_or_else(|| vec![200]),
                }),
                (None, Some(q), None) => steady_state.push(Probe::Sql {
                    login: self.sql(&format!("{p}.sql"), q),
                    query: q.query.clone().unwrap_or_else(|| "select 1".into()),
                }),
                (None, None, Some(o)) => match &o.name {
                    Some(n) => steady_state.push(Probe::Slo {
                        name: n.clone(),
                        max_burn_rate: o.max_burn_rate.unwrap_or(14.4),
                    }),
                    None => self.err(&format!("{p}.slo.name"), "required".into()),
                },
                _ => self.err(&p, "set exactly one of http, sql, slo".into()),
            }
        }
        let method = self.steps("method", &raw.method);
        let rollbacks = self.steps("rollbacks", &raw.rollbacks);
        if method.is_empty() {
            self.err("method", "required: at least one step".into());
        }
        let rollback = match raw.rollback.as_deref() {
            None | Some("always") => Rollback::Always,
            Some("deviated") => Rollback::Deviated,
            Some("never") => Rollback::Never,
            Some(o) => {
                self.err(
                    "rollback",
                    format!("must be always, deviated or never, got {o:?}"),
                );
                Rollback::Always
            }
        };
        let stop = raw.stop_when.clone().unwrap_or_default();
        let stop_after = self.duration("stop_when.after", stop.after.as_ref());
        let stop_error_rate = stop
            .error_rate
            .as_ref()
            .and_then(|s| match parse_percent(&s.0) {
                Ok(p) => Some(p / 100.0),
                Err(m) => {
                    self.err("stop_when.error_rate", m);
                    None
                }
            });
        let recovered_after = raw.recovered_after.unwrap_or(DEFAULT_RECOVERED_AFTER);
        if recovered_after == 0 {
            self.err("recovered_after", "must be at least 1".into());
        }
        Drill {
            title,
            file: self.file.to_owned(),
            admin,
            token: gw.token.filter(|t| !t.is_empty()),
            rto,
            rpo,
            load,
            steady_state,
            method,
            rollbacks,
            rollback,
            stop_after,
            stop_error_rate,
            recovered_after,
        }
    }

    fn rate(&mut self, path: &str, r: Option<u32>) -> u32 {
        match r {
            Some(0) | Some(1001..) => {
                self.err(path, "must be between 1 and 1000 per second".into());
                10
            }
            Some(r) => r,
            None => 10,
        }
    }

    fn steps(&mut self, at: &str, raw: &[RawStep]) -> Vec<Step> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let p = format!("{at}[{i}]");
            let kinds = [
                s.signal.is_some(),
                s.wait.is_some(),
                s.command.is_some(),
                s.drain.is_some(),
                s.enable.is_some(),
                s.fault.is_some(),
                s.wait_for.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                self.err(
                    &p,
                    "set exactly one of signal, wait, command, drain, enable, fault, wait_for"
                        .into(),
                );
                continue;
            }
            if let Some(sig) = &s.signal {
                let signal = sig.signal.clone().unwrap_or_else(|| "KILL".into());
                if signal_number(&signal).is_none() {
                    self.err(
                        &format!("{p}.signal.signal"),
                        format!("must be one of KILL, TERM, INT, HUP, STOP, CONT, got {signal:?}"),
                    );
                }
                let pid = match (&sig.pid_file, sig.pid) {
                    (Some(f), None) => PidSource::File(crate::config::resolve_path(self.base, f)),
                    (None, Some(n)) => PidSource::Pid(n),
                    _ => {
                        self.err(
                            &format!("{p}.signal"),
                            "set exactly one of pid_file, pid".into(),
                        );
                        continue;
                    }
                };
                out.push(Step::Signal { pid, signal });
            } else if let Some(w) = &s.wait {
                if let Some(d) = self.duration(&format!("{p}.wait"), Some(w)) {
                    out.push(Step::Wait(d));
                }
            } else if let Some(c) = &s.command {
                let run = c.run.clone().unwrap_or_default();
                if run.is_empty() {
                    self.err(
                        &format!("{p}.command.run"),
                        "required: [program, args...]".into(),
                    );
                }
                let timeout = self
                    .duration(&format!("{p}.command.timeout"), c.timeout.as_ref())
                    .unwrap_or(Duration::from_secs(60));
                out.push(Step::Command {
                    run,
                    user: c.user.clone(),
                    timeout,
                });
            } else if let Some(e) = s.drain.as_ref().or(s.enable.as_ref()) {
                let key = if s.drain.is_some() { "drain" } else { "enable" };
                let (Some(cluster), Some(endpoint)) = (e.cluster.clone(), e.endpoint.clone())
                else {
                    self.err(&format!("{p}.{key}"), "needs cluster and endpoint".into());
                    continue;
                };
                out.push(if s.drain.is_some() {
                    Step::Drain { cluster, endpoint }
                } else {
                    Step::Enable { cluster, endpoint }
                });
            } else if let Some(f) = &s.fault {
                if f.ttl.is_none() {
                    self.err(
                        &format!("{p}.fault.ttl"),
                        "required: a drill's fault must end by itself, even if the drill is killed"
                            .into(),
                    );
                }
                let mut v = serde_json::Map::new();
                v.insert("route".into(), f.route.clone().unwrap_or_default().into());
                if let Some(a) = &f.abort {
                    let mut m = serde_json::Map::new();
                    if let Some(p) = &a.percent {
                        m.insert("percent".into(), p.0.clone().into());
                    }
                    if let Some(s) = a.status {
                        m.insert("status".into(), s.into());
                    }
                    v.insert("abort".into(), m.into());
                }
                if let Some(d) = &f.delay {
                    let mut m = serde_json::Map::new();
                    if let Some(p) = &d.percent {
                        m.insert("percent".into(), p.0.clone().into());
                    }
                    if let Some(x) = &d.duration {
                        m.insert("duration".into(), x.0.clone().into());
                    }
                    v.insert("delay".into(), m.into());
                }
                if let Some(t) = &f.ttl {
                    v.insert("ttl".into(), t.0.clone().into());
                }
                out.push(Step::Fault(v.into()));
            } else if let Some(w) = &s.wait_for {
                if w.recovered != Some(true) {
                    self.err(
                        &format!("{p}.wait_for.recovered"),
                        "must be true (the condition wait_for knows)".into(),
                    );
                }
                let t = self
                    .duration(&format!("{p}.wait_for.timeout"), w.timeout.as_ref())
                    .unwrap_or(Duration::from_secs(60));
                out.push(Step::WaitRecovered(t));
            }
        }
        out
    }
}

/// The number of a signal name this tool sends.
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim_start_matches("SIG");
    let map: BTreeMap<&str, i32> = [
        ("KILL", libc::SIGKILL),
        ("TERM", libc::SIGTERM),
        ("INT", libc::SIGINT),
        ("HUP", libc::SIGHUP),
        ("STOP", libc::SIGSTOP),
        ("CONT", libc::SIGCONT),
    ]
    .into_iter()
    .collect();
    map.get(n).copied()
}
