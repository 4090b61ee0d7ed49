//! Validated `dns:`: ninefold as the authoritative DNS server of a few zones, whose
//! A and AAAA records answer with a cluster's eligible endpoints (the seed's DNS
//! failover: priority 0 is the primary answer, priority 1 the secondary).

use super::collect::V;
use super::raw::{RawDns, RawDnsRecord};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Default address of the DNS server (an unprivileged port on loopback).
pub const DEFAULT_DNS_BIND: &str = "127.0.0.1:5353";
/// Default TTL of a zone's answers.
pub const DEFAULT_DNS_TTL: Duration = Duration::from_secs(30);
/// The longest TTL allowed: a day.
pub const MAX_DNS_TTL: Duration = Duration::from_secs(86_400);

/// `dns:`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP, the same port.
    pub bind: SocketAddr,
    /// The zones answered; every other name is refused.
    pub zones: Vec<DnsZone>,
}

/// `dns.zones[]`.
#[derive(Debug, Clone)]
pub struct DnsZone {
    /// The zone's apex, lowercase, without the final dot.
    pub name: String,
    /// TTL of its answers (and of its negative answers, through the SOA).
    pub ttl: Duration,
    /// Its records.
    pub records: Vec<DnsRecord>,
}

/// `dns.zones[].records[]`.
#[derive(Debug, Clone)]
pub struct DnsRecord {
    /// The owner name, lowercase, without the final dot.
    pub name: String,
    /// A or AAAA.
    pub kind: DnsKind,
    /// The cluster whose endpoints' addresses answer.
    pub cluster: String,
    /// TTL (the zone's unless set).
    pub ttl: Duration,
    /// What to answer when no endpoint is eligible.
    pub when_none_eligible: WhenNoneEligible,
}

/// A record's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsKind {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
}

/// `when_none_eligible`: a client that gets no address has no chance, so the default
/// answers the whole first priority group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNoneEligible {
    /// Every endpoint of the lowest priority group, eligible or not.
    FirstGroup,
    /// An empty answer (NOERROR, no address).
    Nothing,
}

/// Lowercase, without the final dot; `None` unless every label is 1 to 63 letters,
/// digits, `-` or `_`, and the whole at most 253 characters.
pub fn dns_name(s: &str) -> Option<String> {
    let n = s.trim_end_matches('.').to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(n)
}

impl V<'_> {
    /// `dns:`, its zones and records; records name existing clusters.
    pub(super) fn dns(
        &mut self,
        raw: Option<&RawDns>,
        clusters: &HashSet<String>,
    ) -> Option<DnsConfig> {
        let raw = raw?;
        let bind = match &raw.bind {
            Some(b) => self.addr("dns.bind", b),
            None => DEFAULT_DNS_BIND.parse().ok(),
        }?;
        let mut zones = Vec::new();
        let mut apexes = HashSet::new();
        for (i, z) in raw.zones.iter().enumerate() {
            let p = format!("dns.zones[{i}]");
            let Some(name) = dns_name(&z.name) else {
                self.err(
                    &format!("{p}.name"),
                    format!("{:?} is not a DNS name", z.name),
                );
                continue;
            };
            if !apexes.insert(name.clone()) {
                self.err(&format!("{p}.name"), format!("duplicate zone {name:?}"));
            }
            let ttl = self
                .dns_ttl(&format!("{p}.ttl"), z.ttl.as_ref())
                .unwrap_or(DEFAULT_DNS_TTL);
            let mut seen = HashSet::new();
            let mut records = Vec::new();
            for (j, r) in z.records.iter().enumerate() {
                let rp = format!("{p}.records[{j}]");
                if let Some(rec) = self.dns_record(&rp, r, &name, ttl, clusters) {
                    if !seen.insert((rec.name.clone(), rec.kind)) {
                        self.err(
                            &format!("{rp}.name"),
                            format!("duplicate record {:?}", rec.name),
                        );
                    }
                    records.push(rec);
                }
            }
            zones.push(DnsZone { name, ttl, records });
        }
        Some(DnsConfig { bind, zones })
    }

    fn dns_ttl(&mut self, path: &str, raw: Option<&super::raw::Scalar>) -> Option<Duration> {
        let t = self.opt_duration(path, raw)?;
        if t > MAX_DNS_TTL {
            self.err(path, format!("must be at most 1d, got {}s", t.as_secs()));
        }
        Some(t.min(MAX_DNS_TTL))
    }

    fn dns_record(
        &mut self,
        p: &str,
        r: &RawDnsRecord,
        zone: &str,
        zone_ttl: Duration,
        clusters: &HashSet<String>,
    ) -> Option<DnsRecord> {
        let Some(name) = dns_name(&r.name) else {
            self.err(
                &format!("{p}.name"),
                format!("{:?} is not a DNS name", r.name),
            );
            return None;
        };
        if name != zone && !name.ends_with(&format!(".{zone}")) {
            self.err(
                &format!("{p}.name"),
                format!("{name:?} is not in zone {zone:?}"),
            );
        }
        let kind = match r.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("A") => DnsKind::A,
            Some("AAAA") => DnsKind::Aaaa,
            Some(other) => {
                self.err(
                    &format!("{p}.type"),
                    format!("must be A or AAAA, got {other:?}"),
                );
                DnsKind::A
            }
        };
        if !clusters.contains(&r.cluster) {
            self.err(
                &format!("{p}.cluster"),
                format!("no cluster named {:?}", r.cluster),
            );
        }
        let ttl = self
            .dns_ttl(&format!("{p}.ttl"), r.ttl.as_ref())
            .unwrap_or(zone_ttl);
        let when_none_eligible = match r.when_none_eligible.as_deref() {
            None | Some("first_group") => WhenNoneEligible::FirstGroup,
            Some("nothing") => WhenNoneEligible::Nothing,
            Some(other) => {
                self.err(
                    &format!("{p}.when_none_eligible"),
                    format!("must be first_group or nothing, got {other:?}"),
                );
                WhenNoneEligible::FirstGroup
            }
        };
        Some(DnsRecord {
            name,
            kind,
            cluster: r.cluster.clone(),
            ttl,
            when_none_eligible,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "clusters:\n  - {name: gateways, endpoints: [{address: 127.0.0.2:80}]}\n";

    #[test]
    fn names_are_checked_and_lowercased() {
        assert_eq!(dns_name("API.Example.com."), Some("api.example.com".into()));
        assert_eq!(dns_name("a..b"), None);
        assert_eq!(dns_name(&"x".repeat(64)), None);
        assert_eq!(dns_name("bad name"), None);
    }

    #[test]
    fn a_zone_with_its_records_validates_and_mistakes_say_where() {
        let ok = format!("{BASE}dns:\n  bind: 127.0.0.1:0\n  zones:\n    - name: Example.com\n      ttl: 10s\n      records:\n        - {{name: api.example.com, type: A, cluster: gateways}}\n");
        let c = crate::config::parse("f.yaml", &ok, Path::new(".")).unwrap();
        let d = c.dns.unwrap();
        assert_eq!(d.zones[0].name, "example.com");
        assert_eq!(d.zones[0].records[0].ttl, Duration::from_secs(10));
        assert_eq!(
            d.zones[0].records[0].when_none_eligible,
            WhenNoneEligible::FirstGroup
        );
        let bad = format!("{BASE}dns:\n  zones:\n    - name: example.com\n      records:\n        - {{name: api.example.org, type: MX, cluster: nope}}\n");
        let e = crate::config::parse("f.yaml", &bad, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dns.zones[0].records[0].name: \"api.example.org\" is not in zone"),
            "{e}"
        );
        assert!(
            e.contains("dns.zones[0].records[0].type: must be A or AAAA"),
            "{e}"
        );
        assert!(
            e.contains("dns.zones[0].records[0].cluster: no cluster named \"nope\""),
            "{e}"
        );
        assert!(e.contains("f.yaml:"), "{e}");
    }
}
