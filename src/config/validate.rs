//! Validation: the raw file becomes a [`Config`] of parsed, cross-checked values.
//!
//! [`validate()`] checks the top-level settings and hands each section to its own
//! validator (`listeners`, `clusters`, `cells`, `breaker`, `failover`, `isolation`,
//! `slo`), all methods of one collector (`collect::V`), which names the key path of
//! every problem and finds its position in the document's [`PosIndex`]. Settings that
//! are valid but whose behaviour this build of ninefold does not implement yet are
//! collected in [`Config::unsupported`]: `ninefold check` accepts them (tools can read
//! any valid file), `ninefold serve` refuses them, so a setting is never accepted and
//! silently ignored.

use super::collect::V;
use super::listeners::Names;
use super::model::*;
use super::raw::*;
use super::{resolve_path, ConfigErrors, PosIndex};
use std::collections::HashSet;
use std::path::Path;

/// Validates a raw config. `base` resolves relative file paths.
pub fn validate(
    raw: RawConfig,
    file: &str,
    index: &PosIndex,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let mut v = V::new(file, index);

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
        clusters.push(v.cluster(&p, c, base));
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
    let dns = v.dns(raw.dns.as_ref(), &cluster_names);

    let (errors, unsupported) = v.finish();
    if errors.is_empty() {
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
            dns,
            raw,
            unsupported,
            index: index.clone(),
            state_dir,
            state_flush,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

// === impl V ===

impl V<'_> {
    /// `limits:`, each bound with its floor.
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
