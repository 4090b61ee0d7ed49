//! The validator of `listeners:` and their routes.

use super::collect::V;
use super::failover::Writes;
use super::model::*;
use super::raw::*;
use super::resolve_path;
use http::{HeaderName, HeaderValue};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

/// The names a listener's validation checks against, and those listeners so far took.
pub(super) struct Names<'a> {
    /// Cluster names.
    pub clusters: &'a HashSet<String>,
    /// Cell set names.
    pub cells: HashSet<&'a str>,
    /// SLO names.
    pub slos: HashSet<&'a str>,
    /// Listener names taken so far.
    pub listeners: HashSet<String>,
    /// Bind addresses taken so far.
    pub binds: HashSet<SocketAddr>,
}

// === impl V ===

impl V<'_> {
    /// Checks `listeners[i]` and builds it.
    pub(super) fn listener(
        &mut self,
        i: usize,
        l: &RawListener,
        n: &mut Names<'_>,
        base: &Path,
    ) -> ListenerConfig {
        let p = format!("listeners[{i}]");
        if l.name.is_empty() {
            self.err(&format!("{p}.name"), "must not be empty".into());
        } else if !n.listeners.insert(l.name.clone()) {
            self.err(
                &format!("{p}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        let bind = self.addr(&format!("{p}.bind"), &l.bind);
        if let Some(b) = bind {
            if b.port() != 0 && !n.binds.insert(b) {
                self.err(
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
                self.err(
                    &format!("{p}.protocol"),
                    format!("must be one of http, https, tcp, got {o:?}"),
                );
                ListenerProtocol::Http
            }
        };
        let tls = l.tls.as_ref().map(|t| {
            let tickets = t.tickets.unwrap_or(true);
            if !tickets && t.ticket_keys_file.is_some() {
                self.err_hint(
                    &format!("{p}.tls.ticket_keys_file"),
                    "ticket_keys_file is set but tickets is false".into(),
                    "remove ticket_keys_file, or set tickets: true",
                );
            }
            let session_cache = match t.session_cache {
                None => DEFAULT_TLS_SESSION_CACHE,
                Some(n) if n > MAX_TLS_SESSION_CACHE => {
                    self.err_hint(
                        &format!("{p}.tls.session_cache"),
                        format!("{n} sessions is more than the limit of {MAX_TLS_SESSION_CACHE}"),
                        "the table is reserved at start (about 80 bytes a slot) and a stored session takes a few hundred bytes: 20000 (the default) fits most gateways",
                    );
                    DEFAULT_TLS_SESSION_CACHE
                }
                Some(n) => n as usize,
            };
            TlsFiles {
                cert: resolve_path(base, &t.cert),
                key: resolve_path(base, &t.key),
                session_cache,
                tickets,
                ticket_keys_file: t.ticket_keys_file.as_ref().map(|f| resolve_path(base, f)),
            }
        });
        match protocol {
            ListenerProtocol::Https if tls.is_none() => self.err_hint(
                &format!("{p}.tls"),
                "an https listener needs tls".into(),
                "add tls: {cert: server.pem, key: server.key}",
            ),
            ListenerProtocol::Http if tls.is_some() => self.err_hint(
                &format!("{p}.tls"),
                "tls is set but protocol is http".into(),
                "set protocol: https",
            ),
            _ => {}
        }
        let tcp = if protocol == ListenerProtocol::Tcp {
            match &l.cluster {
                None => self.err(
                    &format!("{p}.cluster"),
                    "a tcp listener needs a cluster".into(),
                ),
                Some(c) if !n.clusters.contains(c) => {
                    self.err(&format!("{p}.cluster"), format!("unknown cluster {c:?}"))
                }
                _ => {}
            }
            match &l.fallback_cluster {
                Some(c) if !n.clusters.contains(c) => self.err(
                    &format!("{p}.fallback_cluster"),
                    format!("unknown cluster {c:?}"),
                ),
                Some(c) if Some(c) == l.cluster.as_ref() => self.err(
                    &format!("{p}.fallback_cluster"),
                    "is the listener's own cluster".into(),
                ),
                _ => {}
            }
            let idle_timeout = self
                .opt_duration(&format!("{p}.idle_timeout"), l.idle_timeout.as_ref())
                .unwrap_or(DEFAULT_TCP_IDLE_TIMEOUT);
            if idle_timeout.is_zero() {
                self.err(&format!("{p}.idle_timeout"), "must be above 0".into());
            }
            let max_connections = l
                .bulkhead
                .as_ref()
                .and_then(|b| self.bulkhead(&format!("{p}.bulkhead"), b))
                .map(|b| b.max_concurrent);
            Some(TcpListenerConfig {
                cluster: l.cluster.clone().unwrap_or_default(),
                fallback_cluster: l.fallback_cluster.clone(),
                idle_timeout,
                max_connections,
            })
        } else {
            for (key, set) in [
                ("cluster", l.cluster.is_some()),
                ("fallback_cluster", l.fallback_cluster.is_some()),
                ("idle_timeout", l.idle_timeout.is_some()),
                ("bulkhead", l.bulkhead.is_some()),
            ] {
                if set {
                    self.err_hint(
                        &format!("{p}.{key}"),
                        format!("only tcp listeners take {key}"),
                        "put it on a route (or set protocol: tcp)",
                    );
                }
            }
            None
        };
        let mut routes = Vec::with_capacity(l.routes.len());
        let mut route_names = HashSet::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{j}]");
            let name = r.name_in(&l.name, j);
            if !route_names.insert(name.clone()) {
                self.err(
                    &format!("{rp}.name"),
                    format!("duplicate route name {name:?} in listener {:?}", l.name),
                );
            }
            let cluster = match (&r.cluster, &r.cells) {
                (Some(c), None) => {
                    if !n.clusters.contains(c) {
                        self.err_hint(
                            &format!("{rp}.cluster"),
                            format!("unknown cluster {c:?}"),
                            &format!(
                                "define it under clusters: or use one of {}",
                                list(n.clusters)
                            ),
                        );
                    }
                    c.clone()
                }
                (None, Some(c)) => {
                    if !n.cells.contains(c.as_str()) {
                        self.err(&format!("{rp}.cells"), format!("unknown cells {c:?}"));
                    }
                    String::new()
                }
                (Some(_), Some(_)) => {
                    self.err(&rp, "set either cluster or cells, not both".into());
                    String::new()
                }
                (None, None) => {
                    self.err(&rp, "a route needs cluster (or cells)".into());
                    String::new()
                }
            };
            let timeout = self
                .opt_duration(&format!("{rp}.timeout"), r.timeout.as_ref())
                .unwrap_or(DEFAULT_ROUTE_TIMEOUT);
            let idle_timeout = self
                .opt_duration(&format!("{rp}.idle_timeout"), r.idle_timeout.as_ref())
                .unwrap_or(DEFAULT_IDLE_TIMEOUT);
            let matcher = self.matcher(&format!("{rp}.match"), &r.matcher);
            self.route_extras(&rp, r, &n.slos);
            let bulkhead = r
                .bulkhead
                .as_ref()
                .and_then(|b| self.bulkhead(&format!("{rp}.bulkhead"), b));
            let faults = r
                .faults
                .as_ref()
                .and_then(|f| self.faults(&format!("{rp}.faults"), f));
            let retry = self.retry(&format!("{rp}.retry"), r.retry.as_ref());
            if let Some(t) = retry.per_try_timeout {
                if t > timeout {
                    self.err_hint(
                        &format!("{rp}.retry.per_try_timeout"),
                        format!("is longer than the route's timeout ({t:?} > {timeout:?})"),
                        "the route's timeout bounds the whole request, retries included",
                    );
                }
            }
            let writes = self.writes(&format!("{rp}.writes"), r.writes.as_ref());
            if let Some(Writes::Cluster(c)) = &writes {
                if !n.clusters.contains(c) {
                    self.err(
                        &format!("{rp}.writes.cluster"),
                        format!("unknown cluster {c:?}"),
                    );
                }
            }
            let fallback = r
                .fallback
                .as_ref()
                .map(|f| Box::new(self.fallback(&format!("{rp}.fallback"), f, n.clusters, base)));
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
            self.err(
                &format!("{p}.routes"),
                "a tcp listener has no routes".into(),
            );
        }
        ListenerConfig {
            name: l.name.clone(),
            bind: bind.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            protocol,
            tls,
            routes,
            tcp,
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    const TLS: &str = "listeners:\n  - name: s\n    bind: 127.0.0.1:0\n    protocol: https\n    tls: {cert: c.pem, key: k.pem";
    const REST: &str = "}\n    routes: [{match: {path_prefix: /}, cluster: a}]\nclusters:\n  - {name: a, endpoints: [{address: 127.0.0.1:1}]}\n";

    #[test]
    fn tls_resumption_settings_are_checked() {
        let ok =
            crate::config::parse("f.yaml", &format!("{TLS}{REST}"), Path::new("/etc/nf")).unwrap();
        let t = ok.listeners[0].tls.as_ref().unwrap();
        assert_eq!(t.session_cache, super::DEFAULT_TLS_SESSION_CACHE);
        assert!(t.tickets);
        assert_eq!(t.ticket_keys_file, None);
        let set = format!("{TLS}, session_cache: 0, ticket_keys_file: keys/t.keys{REST}");
        let t = crate::config::parse("f.yaml", &set, Path::new("/etc/nf")).unwrap();
        let t = t.listeners[0].tls.as_ref().unwrap();
        assert_eq!(t.session_cache, 0);
        assert_eq!(
            t.ticket_keys_file.as_deref(),
            Some(Path::new("/etc/nf/keys/t.keys"))
        );

        let bad = format!(
            "{TLS}, tickets: false, ticket_keys_file: t.keys, session_cache: 99999999{REST}"
        );
        let e = crate::config::parse("f.yaml", &bad, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.yaml:5:") && e.contains("listeners[0].tls.ticket_keys_file: ticket_keys_file is set but tickets is false"),
            "{e}"
        );
        assert!(
            e.contains("listeners[0].tls.session_cache: 99999999 sessions is more than the limit"),
            "{e}"
        );
        let typo = format!("{TLS}, ticket_keys: t.keys{REST}");
        let e = crate::config::parse("f.yaml", &typo, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ticket_keys"), "{e}");
    }
}
