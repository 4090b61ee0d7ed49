//! The admin API's reads: `/metrics` (the registry, then the live state read at
//! scrape time, [`super::live`]), `/health` in the seed's shape, `/api/v1/slos`, and
//! `/api/v1/state`, which answers "why is this endpoint out?" for each endpoint in one
//! `why` sentence (drain, failed checks, ejection, open circuit, panic mode, each with
//! since-when or until-when), next to the structured fields it is made of.

use super::AdminState;
use crate::bulkhead::Bulkhead;
use crate::config::BreakerConfig;
use crate::snapshot::{ClusterHealth, ClusterSnap};
use crate::upstream::breaker::Breaker;
use crate::upstream::{EndpointState, Health, Out};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub(super) async fn metrics(State(s): State<AdminState>) -> Response {
    let mut text = s.shared.metrics.render();
    // Live-state families are read from the running snapshot at scrape time, so the
    // data path pays nothing for them.
    super::live::render(
        &s.shared.snapshot.load(),
        crate::upstream::now_ms(),
        &mut text,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `/health` in the seed's shape: overall status plus one check per cluster.
pub(super) async fn health(State(s): State<AdminState>) -> Response {
    let snap = s.shared.snapshot.load();
    let now = crate::upstream::now_ms();
    let mut checks = serde_json::Map::new();
    let mut reasons = serde_json::Map::new();
    let (mut ok, mut down) = (0, 0);
    for c in &snap.clusters {
        let h = c.health(now);
        if let Some(r) = cluster_why(c, now) {
            reasons.insert(c.name.to_string(), Value::from(r));
        }
        match h {
            ClusterHealth::Ok => ok += 1,
            ClusterHealth::Down => down += 1,
            ClusterHealth::Degraded => {}
        }
        checks.insert(c.name.to_string(), Value::from(h.as_str()));
    }
    let n = snap.clusters.len();
    let status = if ok == n {
        ClusterHealth::Ok
    } else if down == n {
        ClusterHealth::Down
    } else {
        ClusterHealth::Degraded
    };
    let code = if status == ClusterHealth::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut body = json!({"status": status.as_str(), "checks": checks});
    if !reasons.is_empty() {
        body["reasons"] = Value::Object(reasons);
    }
    (code, Json(body)).into_response()
}

/// Live SLOs: SLI, budget, burn rates, alerts.
pub(super) async fn slos(State(s): State<AdminState>) -> Json<Value> {
    Json(s.shared.slo.status())
}

/// Milliseconds since `at` (a `now_ms` time), or null for "never".
fn since(at: u64, now: u64) -> Option<u64> {
    (at > 0).then(|| now.saturating_sub(at))
}

pub(super) async fn state(State(s): State<AdminState>) -> Json<Value> {
    let snap = s.shared.snapshot.load();
    let now = crate::upstream::now_ms();
    let bound = s.shared.bound.load();
    let listeners: Vec<Value> = snap
        .listeners
        .iter()
        .map(|l| {
            let addr = bound.iter().find(|(n, _)| **n == *l.name).map(|(_, a)| a.to_string());
            json!({
                "name": &*l.name,
                "bind": l.bind.to_string(),
                "address": addr,
                "protocol": listener_protocol(l.protocol),
                "tls": l.tls_info.as_ref().map(|t| t.json()),
                "tcp": l.tcp.as_ref().map(|t| json!({
                    "cluster": &*t.cluster.name,
                    "fallback_cluster": t.fallback.as_ref().map(|f| &*f.name),
                    "idle_timeout_ms": t.idle_timeout.as_millis() as u64,
                    "max_connections": t.max_connections,
                    "open": t.open.load(Ordering::Relaxed),
                })),
                "routes": l.routes.iter().map(|r| json!({
                    "name": &*r.name,
                    "match": {
                        "path_prefix": r.matcher.path_prefix,
                        "path": r.matcher.path,
                        "host": r.matcher.host,
                        "methods": r.matcher.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>()),
                        "headers": r.matcher.headers.iter().map(|(k, v)| (k.as_str().to_owned(), Value::from(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
                    },
                    "cluster": if r.cells.is_some() { Value::Null } else { Value::from(&*r.cluster.name) },
                    "cells": r.cells.as_ref().map(|c| &*c.name),
                    "fallback": r.fallback.as_ref().map(|f| json!({
                        "cluster": f.cluster.as_ref().map(|c| &*c.name),
                        "stale": f.stale.map(|s| json!({"max_age_ms": s.max_age.as_millis() as u64, "max_entries": s.max_entries, "max_bytes": s.max_bytes, "private": s.private})),
                        "static": f.static_answer.as_ref().map(|s| s.status),
                        "methods": f.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    })),
                    "timeout_ms": r.timeout.as_millis() as u64,
                    "idle_timeout_ms": r.idle_timeout.as_millis() as u64,
                    "bulkhead": r.bulkhead.as_deref().map(bulkhead_json),
                    "retry_budget": json!({
                        "headroom": (r.budget.headroom(now) * 10.0).round() / 10.0,
                        "percent": r.retry.budget,
                        "min_per_second": r.retry.min_retries_per_second,
                    }),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let clusters: Vec<Value> = snap
        .clusters
        .iter()
        .map(|c| {
            let found = s.shared.discovery.get(&c.name);
            json!({
                "name": &*c.name,
                "lb": c.lb.as_str(),
                "protocol": upstream_protocol(c.protocol),
                "connect_timeout_ms": c.connect_timeout.as_millis() as u64,
                "health": c.health(now).as_str(),
                "panic": c.select.in_panic(now),
                "panic_since_ms": since(c.select.live.panic_since.load(Ordering::Relaxed), now),
                "health_check": c.health_check.as_ref().map(|h| json!({
                    "kind": match &h.kind { crate::config::CheckKind::Http { .. } => "http", crate::config::CheckKind::Tcp => "tcp", crate::config::CheckKind::Postgres(_) => "postgres", crate::config::CheckKind::Patroni(_) => "patroni" },
                    "interval_ms": h.interval.as_millis() as u64,
                    "healthy_threshold": h.healthy_threshold,
                    "unhealthy_threshold": h.unhealthy_threshold,
                })),
                "breaker": c.breaker.filter(|b| b.scope.cluster()).map(|b| breaker_json(&c.select.live.breaker, &b, now)),
                "on_marked_down": c.on_marked_down.as_str(),
                "role": c.role.map(|r| r.as_str()),
                "primary": (c.role == Some(crate::config::Role::Primary)).then(|| {
                    let p = &c.select.live.primary;
                    json!({
                        "current": p.current().map(|a| a.to_string()),
                        "generation": p.generation.load(Ordering::Acquire),
                        "two_primaries": p.split.load(Ordering::Acquire),
                        "on_two_primaries": match c.two_primaries {
                            Some(crate::config::TwoPrimaries::KeepCurrent) => "keep_current",
                            _ => "refuse",
                        },
                    })
                }),
                "why": cluster_why(c, now),
                "endpoints": (0..c.endpoints().len()).map(|i| {
                    let mut e = endpoint_json(c, i, now);
                    e["origin"] = origin(c, i, found.as_ref()).into();
                    e
                }).collect::<Vec<_>>(),
                "bulkhead": c.bulkhead.as_deref().map(bulkhead_json),
                "discovery": found,
                "autoscale": s.shared.autoscale.get(&c.name),
            })
        })
        .collect();
    let cells: Vec<Value> = snap
        .cells
        .iter()
        .map(|set| {
            let evacuate = set.on_down == crate::config::OnCellDown::Evacuate;
            json!({
                "name": &*set.name,
                "on_cell_down": set.on_down.as_str(),
                "default": set.default.map(|i| &*set.members[i].name),
                "members": set.members.iter().enumerate().map(|(i, m)| {
                    let up = set.live(i, now);
                    json!({
                        "name": &*m.name,
                        "cluster": &*m.cluster.name,
                        "state": if up { "up" } else { "down" },
                        // Its keys are served by the other cells until it recovers.
                        "evacuated": evacuate && !up,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Json(json!({
        "now_unix_ms": now_unix_ms,
        "admin": {"token_required": s.token.is_some()},
        "generation": snap.generation,
        "source": snap.config.source,
        "workers": snap.config.workers,
        "listeners": listeners,
        "clusters": clusters,
        "cells": cells,
    }))
}

/// A bulkhead's limits and live counts, for the state API.
fn bulkhead_json(b: &Bulkhead) -> Value {
    json!({
        "max_concurrent": b.config.max_concurrent,
        "max_queue": b.config.max_queue,
        "queue_timeout_ms": b.config.queue_timeout.as_millis() as u64,
        "in_flight": b.in_flight(),
        "queued": b.queued(),
        "shed": b.shed(),
    })
}

/// One endpoint of the state API: where it sits, its live state, and `why` it is out.
pub(super) fn endpoint_json(c: &ClusterSnap, i: usize, now: u64) -> Value {
    let e = &c.endpoints()[i];
    let m = &c.select.meta[i];
    let check = e.check.lock().map(|c| c.clone()).unwrap_or_default();
    let out = e.out(now);
    let minute = e.figures.read(now);
    let round = |v: f64, places: i32| {
        let k = 10f64.powi(places);
        (v * k).round() / k
    };
    json!({
        "address": e.address.to_string(),
        "state": state_word(c, e, &check, now),
        "figures": {
            "window_seconds": round(minute.seconds, 1),
            "requests": minute.requests,
            "errors": minute.errors,
            "rps": round(minute.requests as f64 / minute.seconds, 2),
            "error_rate": (minute.requests > 0).then(|| round(minute.errors as f64 / minute.requests as f64, 4)),
            "p50_ms": minute.p50_ms.map(|v| round(v, 3)),
            "p99_ms": minute.p99_ms.map(|v| round(v, 3)),
        },
        "zone": m.zone.as_deref(),
        "weight": m.weight,
        "priority": m.priority,
        "in_flight": e.in_flight.load(Ordering::Relaxed),
        "requests": e.requests.load(Ordering::Relaxed),
        "available": out.is_none(),
        "out": out.map(out_name),
        "why": why(c, e, &check, now),
        "health": e.health().as_str(),
        "health_since_ms_ago": since(e.health_since(), now),
        "sessions": e.sessions.load(Ordering::Relaxed),
        "role": e.role().map(|r| r.as_str()),
        "lag_seconds": check.lag_seconds,
        "lag_bytes": check.lag_bytes,
        "last_check": (check.at_ms > 0).then(|| json!({
            "result": check.last,
            "ms_ago": now.saturating_sub(check.at_ms),
            "passes_in_a_row": check.passes,
            "failures_in_a_row": check.failures,
        })),
        // Ejected whatever else holds (a drained endpoint can be ejected too), as the
        // `ninefold_endpoint_ejected` gauge says.
        "ejected": e.ejected_until() > now,
        "ejected_for_ms": e.ejected_until().saturating_sub(now),
        "ejected_since_ms_ago": (e.ejected_until() > now).then(|| now.saturating_sub(e.ejected_since())),
        "ejections_in_a_row": e.ejections(),
        "failures_in_a_row": e.failures(),
        "drained": e.drained(),
        "drained_since_ms_ago": e.drained().then(|| now.saturating_sub(e.drained_since())),
        "breaker": c.breaker.filter(|b| b.scope.endpoint()).map(|b| breaker_json(&e.breaker, &b, now)),
    })
}

/// Where endpoint `i` of `c` came from: `config` (the file; the cluster has no
/// discovery), `seed` (the file's seed list, serving until discovery answers), `dns` or
/// `file` (the discovered set), or `removed` (discovery dropped it: draining out).
fn origin(c: &ClusterSnap, i: usize, found: Option<&crate::discovery::Status>) -> &'static str {
    let e = &c.endpoints()[i];
    match found {
        None => "config",
        Some(_) if e.retiring() => "removed",
        Some(f) if f.endpoints.iter().flatten().any(|a| *a == e.address) => f.kind,
        Some(_) => "seed",
    }
}

/// An endpoint's state in words, as the dashboard colours it: `drained`, `down` (failing
/// its health checks), `going up` (down, but its last checks pass), `ejected`,
/// `circuit open`, `going down` (up, but its last checks fail), `up`, or `unknown` (a
/// health check is configured and has not decided yet). The first that holds wins, in
/// that order: the operator's word first, then the active check, then what traffic
/// found.
pub(super) fn state_word(
    c: &ClusterSnap,
    e: &EndpointState,
    check: &crate::upstream::CheckReport,
    now: u64,
) -> &'static str {
    let checked = c.health_check.is_some();
    if e.draining() {
        "drained"
    } else if e.health() == Health::Unhealthy {
        if check.passes > 0 {
            "going up"
        } else {
            "down"
        }
    } else if e.ejected_until() > now {
        "ejected"
    } else if !e.breaker.may_pass(now) {
        "circuit open"
    } else if checked && e.health() == Health::Unknown {
        if check.at_ms == 0 {
            "unknown"
        } else if check.failures > 0 {
            "going down"
        } else {
            "going up"
        }
    } else if checked && check.failures > 0 {
        "going down"
    } else {
        "up"
    }
}

/// A breaker in the state API: its state as traffic sees it, since when, the open time
/// left, what it has counted, and whether an operator forced it.
pub(super) fn breaker_json(b: &Breaker, cfg: &BreakerConfig, now: u64) -> Value {
    let (requests, failures) = b.window(cfg.window_secs, now);
    json!({
        "state": b.state(now).as_str(),
        "since_ms_ago": since(b.since(), now),
        "open_for_ms_left": b.open_until().saturating_sub(now),
        "consecutive_failures": b.consecutive_failures(),
        "window": {"requests": requests, "failures": failures, "seconds": cfg.window_secs},
        "forced": b.forced().map(|s| s.as_str()),
    })
}

/// "Why is this endpoint out?" in one sentence, or null when it takes traffic. Every
/// reason that holds is named, most fundamental first, so that enabling a drained
/// endpoint does not surprise anyone with a failing check behind it.
fn why(
    c: &ClusterSnap,
    e: &EndpointState,
    check: &crate::upstream::CheckReport,
    now: u64,
) -> Option<String> {
    let mut reasons = Vec::new();
    if e.drained() {
        reasons.push(format!(
            "drained {} ago",
            human_ms(now.saturating_sub(e.drained_since()))
        ));
    }
    if e.retiring() {
        reasons.push("discovery removed it; it drains out".to_owned());
    }
    if e.health() == Health::Unhealthy {
        let mut r = match since(e.health_since(), now) {
            Some(ms) => format!("failing health checks for {}", human_ms(ms)),
            None => "failing health checks".to_owned(),
        };
        if check.at_ms > 0 {
            r.push_str(&format!(": {} ({} in a row)", check.last, check.failures));
        }
        reasons.push(r);
    }
    if e.ejected_until() > now {
        let times = e.ejections();
        reasons.push(format!(
            "ejected {} ago until +{} ({} ejection in a row)",
            human_ms(now.saturating_sub(e.ejected_since())),
            human_ms(e.ejected_until() - now),
            ordinal(times)
        ));
    }
    if !e.breaker.may_pass(now) {
        let until = e.breaker.open_until();
        reasons.push(match (e.breaker.forced(), until > now) {
            (Some(_), _) => "circuit forced open by admin".to_owned(),
            (None, true) => format!("circuit open until +{}", human_ms(until - now)),
            (None, false) => "circuit half-open, every probe taken".to_owned(),
        });
    }
    if reasons.is_empty() {
        return None;
    }
    let mut s = reasons.join("; ");
    // Panic mode sends traffic to unhealthy and ejected endpoints (never to drained
    // ones), so "out" is not the whole truth then.
    if c.select.live.panic.load(Ordering::Relaxed) && !e.drained() {
        let since_ms = since(c.select.live.panic_since.load(Ordering::Relaxed), now);
        s.push_str(&format!(
            "; serving anyway: panic mode for {}",
            human_ms(since_ms.unwrap_or(0))
        ));
    }
    Some(s)
}

/// Why a cluster is down or refuses, in one sentence, when it is not plain from its
/// endpoints: two primaries, no primary.
fn cluster_why(c: &ClusterSnap, now: u64) -> Option<String> {
    if c.role != Some(crate::config::Role::Primary) {
        return None;
    }
    let claimants: Vec<String> = c
        .endpoints()
        .iter()
        .filter(|e| e.role() == Some(crate::config::Role::Primary))
        .map(|e| e.address.to_string())
        .collect();
    if c.select.live.primary.split.load(Ordering::Acquire) {
        let what = match c.two_primaries {
            Some(crate::config::TwoPrimaries::KeepCurrent) => {
                "keeping the current primary".to_owned()
            }
            _ => "new connections refused".to_owned(),
        };
        return Some(format!(
            "two primaries: {} both claim primary; {what}",
            claimants.join(" and ")
        ));
    }
    (c.select.available(now) == 0).then(|| "no primary: no endpoint passes the role check".into())
}

/// `1234` → `1.2s`, `65000` → `1m5s`: durations a person reads at a glance.
fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=59_999 => format!("{}s", ms / 1000),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// `1` → `1st`, `2` → `2nd`, `11` → `11th`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The config's names, spelled out rather than derived from `Debug`, which is free to
/// change.
fn listener_protocol(p: crate::config::ListenerProtocol) -> &'static str {
    use crate::config::ListenerProtocol::*;
    match p {
        Http => "http",
        Https => "https",
        Tcp => "tcp",
    }
}

fn upstream_protocol(p: crate::config::UpstreamProtocol) -> &'static str {
    use crate::config::UpstreamProtocol::*;
    match p {
        Http1 => "http1",
        Http2 => "http2",
    }
}

fn out_name(o: Out) -> &'static str {
    match o {
        Out::Drained => "drained",
        Out::Unhealthy => "unhealthy",
        Out::Ejected => "ejected",
        Out::CircuitOpen => "circuit-open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(4_200), "4.2s");
        assert_eq!(human_ms(12_000), "12s");
        assert_eq!(human_ms(65_000), "1m5s");
        assert_eq!(human_ms(3_660_000), "1h1m");
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101]
            .map(ordinal)
            .into();
        assert_eq!(
            got,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st"]
        );
    }
}
