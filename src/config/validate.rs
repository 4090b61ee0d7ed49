//! Validation: the raw file becomes a [`Config`] of parsed, cross-checked values.
//!
//! [`validate()`] checks the top-level settings and hands each section to its own
//! validator (`listeners`, `clusters`, `cells`, `breaker`, `failover`, `isolation`,
//! `slo`), all methods of one collector, `V`, which names the key path of every
//! problem and finds its position in the document's [`PosIndex`]. Settings that are
//! valid but whose behaviour this build of ninefold does not implement yet are
//! collected in [`Config::unsupported`]: `ninefold check` accepts them (tools can read
//! any valid file), `ninefold serve` refuses them, so a setting is never accepted and
//! silently ignored.

use super::listeners::Names;
use super::model::*;
use super::raw::*;
use super::units::{parse_duration, parse_percent, parse_size};
use super::{resolve_path, ConfigError, ConfigErrors, PosIndex};
use http::{HeaderName, Method};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The collector of a file's problems; each section's validator is a method of it.
pub(crate) struct V<'a> {
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

    let mut names = Names {
        clusters: &cluster_names,
        cells: raw.cells.iter().map(|c| c.name.as_str()).collect(),
        slos: raw.slos.iter().map(|s| s.name.as_str()).collect(),
        listeners: HashSet::new(),
        binds: HashSet::new(),
    };
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        listeners.push(v.listener(i, l, &mut names, base));
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

    pub(super) fn addr(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
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
    pub(super) fn size(
        &mut self,
        path: &str,
        s: Option<&Scalar>,
        min: usize,
        default: usize,
    ) -> usize {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
