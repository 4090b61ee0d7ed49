//! The validator of `clusters:` and their endpoints.

use super::collect::V;
use super::failover::{Role, DEFAULT_ZONE_SPILL_BELOW};
use super::model::*;
use super::raw::*;
use std::collections::HashSet;

// === impl V ===

impl V<'_> {
    pub(super) fn cluster(&mut self, p: &str, c: &RawCluster) -> ClusterConfig {
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
        let on_marked_down = match c.on_marked_down.as_deref() {
            Some("shutdown_sessions") => OnMarkedDown::ShutdownSessions,
            Some("keep") => OnMarkedDown::Keep,
            None if health_check.as_ref().and_then(|h| h.role()) == Some(Role::Primary) => {
                OnMarkedDown::ShutdownSessions
            }
            None => OnMarkedDown::Keep,
            Some(o) => {
                self.err(
                    &format!("{p}.on_marked_down"),
                    format!("must be shutdown_sessions or keep, got {o:?}"),
                );
                OnMarkedDown::Keep
            }
        };
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
            on_marked_down,
        }
    }
}
