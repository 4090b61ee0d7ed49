//! The validator of `clusters:` and their endpoints.

use super::collect::V;
use super::failover::{Role, DEFAULT_ZONE_SPILL_BELOW};
use super::model::*;
use super::raw::*;

// === impl V ===

impl V<'_> {
    pub(super) fn cluster(
        &mut self,
        p: &str,
        c: &RawCluster,
        base: &std::path::Path,
    ) -> ClusterConfig {
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
        let discovery = c
            .discovery
            .as_ref()
            .and_then(|d| self.discovery(p, d, base));
        let endpoints = match &c.endpoints {
            // With discovery, the list is a seed used until discovery answers; it
            // may be empty.
            None if c.discovery.is_some() => Vec::new(),
            None => {
                self.err_hint(
                    &format!("{p}.endpoints"),
                    "required: at least one endpoint".into(),
                    "list endpoints, or find them with discovery: (dns or file)",
                );
                Vec::new()
            }
            Some(e) if e.is_empty() && c.discovery.is_none() => {
                self.err(
                    &format!("{p}.endpoints"),
                    "must list at least one endpoint".into(),
                );
                Vec::new()
            }
            Some(eps) => self.endpoint_list(&format!("{p}.endpoints"), eps, &c.name),
        };
        let max_removed_per_update = self
            .percent_upto(
                &format!("{p}.max_removed_per_update"),
                c.max_removed_per_update.as_ref(),
                100.0,
            )
            .unwrap_or(super::discovery::DEFAULT_MAX_REMOVED);
        if c.max_removed_per_update.is_some() && c.discovery.is_none() {
            self.err_hint(
                &format!("{p}.max_removed_per_update"),
                "guards discovery updates, and this cluster has no discovery".into(),
                "add discovery: or remove max_removed_per_update",
            );
        }
        let autoscale = c
            .autoscale
            .as_ref()
            .and_then(|a| self.autoscale(p, a, base));
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
            discovery,
            max_removed_per_update,
            autoscale,
        }
    }
}
