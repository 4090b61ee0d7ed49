//! Validated `clusters[].discovery` and `max_removed_per_update`: where a cluster's
//! endpoints come from besides the file (a DNS name looked up again and again, or a
//! file watched for changes), and the churn guard over what one update may remove.
//! Also the reader of a discovery file, which shares the config file's parser and its
//! `file:line:col` errors.

use super::collect::V;
use super::raw::{RawDiscovery, RawEndpoint, RawEndpointsFile};
use super::{resolve_path, ConfigError, ConfigErrors, EndpointConfig, PosIndex};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time between DNS lookups.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Default drain time of an endpoint discovery removed.
pub const DEFAULT_DISCOVERY_DRAIN: Duration = Duration::from_secs(30);
/// Default churn guard: one update may remove at most half of the set.
pub const DEFAULT_MAX_REMOVED: f64 = 50.0;
/// The longest wait between lookups when `respect_ttl` follows a long TTL.
pub const MAX_TTL_WAIT: Duration = Duration::from_secs(300);

/// `clusters[].discovery`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    /// The source.
    pub source: DiscoverySource,
    /// How long a removed endpoint drains before it goes.
    pub drain_timeout: Duration,
}

/// Where discovered endpoints come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoverySource {
    /// A DNS name, looked up every `refresh`.
    Dns(DnsSource),
    /// A file in the `endpoints:` list shape, read again when it changes.
    File {
        /// Resolved against the configuration file's directory.
        path: PathBuf,
    },
}

/// `clusters[].discovery.dns`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSource {
    /// The name, as written (a final dot is added for the lookup).
    pub name: String,
    /// The record type.
    pub kind: LookupKind,
    /// Port of A/AAAA answers (SRV answers carry theirs).
    pub port: u16,
    /// Time between lookups; the floor when `respect_ttl` is on.
    pub refresh: Duration,
    /// Whether the answer's TTL (between `refresh` and [`MAX_TTL_WAIT`]) sets the
    /// time to the next lookup.
    pub respect_ttl: bool,
    /// How long the last good set is kept while lookups fail or answer nothing;
    /// `None`: for as long as they do.
    pub stale_for: Option<Duration>,
    /// Resolvers; empty means the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
}

/// What a discovery lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// IPv4 addresses, with the configured port.
    A,
    /// IPv6 addresses, with the configured port.
    Aaaa,
    /// Targets with their own ports, weights and priorities.
    Srv,
}

// === impl DiscoverySource ===

impl DiscoverySource {
    /// How the state API and logs name the source: `dns A api.internal`, `file PATH`.
    pub fn describe(&self) -> String {
        match self {
            DiscoverySource::Dns(d) => format!("dns {} {}", d.kind.as_str(), d.name),
            DiscoverySource::File { path } => format!("file {}", path.display()),
        }
    }

    /// `dns` or `file`, the label of metrics and the endpoints' `origin`.
    pub fn kind(&self) -> &'static str {
        match self {
            DiscoverySource::Dns(_) => "dns",
            DiscoverySource::File { .. } => "file",
        }
    }
}

// === impl LookupKind ===

impl LookupKind {
    /// The record type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::A => "A",
            LookupKind::Aaaa => "AAAA",
            LookupKind::Srv => "SRV",
        }
    }
}

impl V<'_> {
    /// `{p}.discovery`, with relative file paths resolved against `base`.
    pub(super) fn discovery(
        &mut self,
        p: &str,
        raw: &RawDiscovery,
        base: &Path,
    ) -> Option<DiscoveryConfig> {
        let p = format!("{p}.discovery");
        let drain_timeout = self
            .opt_duration(&format!("{p}.drain_timeout"), raw.drain_timeout.as_ref())
            .unwrap_or(DEFAULT_DISCOVERY_DRAIN);
        let source = match (&raw.dns, &raw.file) {
            (Some(_), Some(_)) | (None, None) => {
                self.err_hint(
                    &p,
                    "needs exactly one source, dns or file".into(),
                    "write discovery: {dns: {name: api.internal, port: 8000}} or discovery: {file: {path: endpoints.yaml}}",
                );
                return None;
            }
            (None, Some(f)) => {
                if f.path.trim().is_empty() {
                    self.err(&format!("{p}.file.path"), "must not be empty".into());
                    return None;
                }
                DiscoverySource::File {
                    path: resolve_path(base, &f.path),
                }
            }
            (Some(d), None) => {
                let dp = format!("{p}.dns");
                let name = d.name.trim().trim_end_matches('.').to_owned();
                if super::dns_name(&name).is_none() {
                    self.err(
                        &format!("{dp}.name"),
                        format!("{:?} is not a DNS name", d.name),
                    );
                }
                let kind = match d.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("A") => LookupKind::A,
                    Some("AAAA") => LookupKind::Aaaa,
                    Some("SRV") => LookupKind::Srv,
                    Some(o) => {
                        self.err(
                            &format!("{dp}.type"),
                            format!("must be A, AAAA or SRV, got {o:?}"),
                        );
                        LookupKind::A
                    }
                };
                let port = match (kind, d.port) {
                    (LookupKind::Srv, Some(_)) => {
                        self.err_hint(
                            &format!("{dp}.port"),
                            "SRV records carry their own ports".into(),
                            "remove port, or look up A records",
                        );
                        0
                    }
                    (LookupKind::Srv, None) => 0,
                    (_, Some(0)) | (_, None) => {
                        self.err_hint(
                            &format!("{dp}.port"),
                            "A and AAAA lookups need the endpoints' port (1 to 65535)".into(),
                            "add port: 8000 (or look up SRV records, which carry ports)",
                        );
                        0
                    }
                    (_, Some(n)) => n,
                };
                let refresh = self
                    .opt_duration(&format!("{dp}.refresh"), d.refresh.as_ref())
                    .unwrap_or(DEFAULT_REFRESH);
                let stale_for = self.opt_duration(&format!("{dp}.stale_for"), d.stale_for.as_ref());
                let mut resolvers = Vec::new();
                for (i, r) in d.resolvers.iter().flatten().enumerate() {
                    let rp = format!("{dp}.resolvers[{i}]");
                    // A bare IP means port 53.
                    let parsed = r
                        .trim()
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| (ip, 53).into());
                    if let Some(a) = parsed.or_else(|| self.addr(&rp, r)) {
                        resolvers.push(a);
                    }
                }
                DiscoverySource::Dns(DnsSource {
                    name,
                    kind,
                    port,
                    refresh,
                    respect_ttl: d.respect_ttl.unwrap_or(true),
                    stale_for,
                    resolvers,
                })
            }
        };
        Some(DiscoveryConfig {
            source,
            drain_timeout,
        })
    }

    /// The endpoint list at `p` (items at `{p}[k]`): addresses, no duplicates, weights
    /// 1..=10000, priorities 0..=7.
    pub(super) fn endpoint_list(
        &mut self,
        p: &str,
        eps: &[RawEndpoint],
        cluster: &str,
    ) -> Vec<EndpointConfig> {
        let mut seen = std::collections::HashSet::new();
        let mut endpoints = Vec::new();
        for (k, e) in eps.iter().enumerate() {
            let ep = format!("{p}[{k}]");
            let address = self.addr(&format!("{ep}.address"), &e.address);
            if let Some(a) = address {
                if !seen.insert(a) {
                    self.err(
                        &format!("{ep}.address"),
                        format!("duplicate endpoint {a} in cluster {cluster:?}"),
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
        endpoints
    }
}

/// Reads a discovery file's text (`endpoints: [...]`, or the bare list) into endpoints,
/// checked as the config file's are; every problem is a `file:line:col` error. An
/// empty list is an error too: a file being rewritten must not empty a cluster.
pub fn parse_endpoints(
    file: &str,
    text: &str,
    cluster: &str,
) -> Result<Vec<EndpointConfig>, ConfigErrors> {
    let text = &super::interpolate(file, text, |k| std::env::var(k).ok())?;
    let bare = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('-') || l.starts_with('['));
    let (prefix, raw) = if bare {
        ("", super::parse_yaml::<Vec<RawEndpoint>>(file, text)?)
    } else {
        let keyed: RawEndpointsFile = super::parse_yaml(file, text)?;
        ("endpoints", keyed.endpoints)
    };
    let index = PosIndex::build(text);
    let mut v = V::new(file, &index);
    if raw.is_empty() {
        v.err(
            prefix,
            "lists no endpoint; the last good set stays (a cluster is never emptied by its file)"
                .into(),
        );
    }
    let eps = v.endpoint_list(prefix, &raw, cluster);
    let (errors, _) = v.finish();
    if errors.is_empty() {
        Ok(eps)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// An error about a discovery source that is not in a file (a lookup).
pub fn source_error(source: &str, message: String) -> ConfigError {
    ConfigError {
        file: source.to_owned(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discovery_file_is_checked_like_the_config() {
        let eps = parse_endpoints(
            "eps.yaml",
            "endpoints:\n  - {address: 127.0.0.1:8001}\n  - {address: 127.0.0.1:8002, weight: 3, priority: 1}\n",
            "api",
        )
        .unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!((eps[1].weight, eps[1].priority), (3, 1));
        let bare =
            parse_endpoints("eps.yaml", "# bare\n- address: 127.0.0.1:8001\n", "api").unwrap();
        assert_eq!(bare[0].address.port(), 8001);

        let e = parse_endpoints(
            "eps.yaml",
            "endpoints:\n  - {address: 127.0.0.1:8001}\n  - {address: nowhere}\n",
            "api",
        )
        .unwrap_err();
        assert_eq!(
            (e.0[0].line, e.0[0].path.as_str()),
            (3, "endpoints[1].address")
        );
        let e = parse_endpoints("eps.yaml", "endpoints:\n  - {adress: 127.0.0.1:1}\n", "api")
            .unwrap_err();
        assert_eq!(e.0[0].line, 2, "{e}");
        let e = parse_endpoints("eps.yaml", "endpoints: []\n", "api").unwrap_err();
        assert!(e.0[0].message.contains("no endpoint"), "{e}");
        let e = parse_endpoints(
            "eps.yaml",
            "- {address: 127.0.0.1:1}\n- {address: 127.0.0.1:1}\n",
            "api",
        )
        .unwrap_err();
        assert!(e.0[0].message.contains("duplicate"), "{e}");
    }
}
