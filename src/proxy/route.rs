//! Route matching: the first route of the listener whose every condition holds.
//!
//! Conditions: exact `path`, `path_prefix`, `host` (case-insensitive, port ignored),
//! `methods`, and exact `headers`. Matching allocates nothing.

use crate::config::{HashKey, MatchConfig};
use crate::message::Head;
use crate::snapshot::{ListenerSnap, RouteSnap};
use crate::upstream::balance::hash_bytes;
use std::sync::Arc;

/// The route for a request, if any: the first, in written order, whose every
/// condition holds. The listener's index yields the candidates (host and path can
/// hold), so the cost does not grow with the number of routes.
pub fn resolve<'a>(listener: &'a ListenerSnap, req: &Head) -> Option<&'a Arc<RouteSnap>> {
    let path = req.parts.uri.path();
    let host = request_host(req);
    let i = listener.index.first(host, path, |i| {
        listener
            .routes
            .get(i)
            .is_some_and(|r| matches(&r.matcher, req))
    })?;
    listener.routes.get(i)
}

/// Whether a request meets every condition of `m`.
pub fn matches(m: &MatchConfig, req: &Head) -> bool {
    let path = req.parts.uri.path();
    if let Some(p) = &m.path {
        if path != p {
            return false;
        }
    }
    if let Some(p) = &m.path_prefix {
        if !path.starts_with(p.as_str()) {
            return false;
        }
    }
    if let Some(methods) = &m.methods {
        if !methods.contains(&req.parts.method) {
            return false;
        }
    }
    if let Some(host) = &m.host {
        match request_host(req) {
            Some(h) if h.eq_ignore_ascii_case(host) => {}
            _ => return false,
        }
    }
    m.headers
        .iter()
        .all(|(name, value)| req.values(name.as_str()).any(|v| v == value.as_bytes()))
}

/// The request's host without port: the Host header, or the URI's authority (h2).
pub fn request_host(req: &Head) -> Option<&str> {
    let raw = match req.get("host") {
        Some(h) => std::str::from_utf8(h).ok()?,
        None => req.parts.uri.authority()?.as_str(),
    };
    Some(strip_port(raw))
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        // [v6]:port
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    match h.rfind(':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

/// The hash of a request's key for consistent hashing, or `None` when absent.
pub fn hash_key(key: &HashKey, req: &Head) -> Option<u64> {
    let value: &[u8] = match key {
        HashKey::Header(name) => req.get(name.as_str())?,
        HashKey::Cookie(name) => req
            .values("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then_some(v)
            })?
            .as_bytes(),
        HashKey::Query(name) => req
            .parts
            .uri
            .query()?
            .split('&')
            .find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then_some(v)
            })?
            .as_bytes(),
    };
    Some(hash_bytes(0, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Head {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        Head::new(b.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn host_and_port() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.example"), "a.example");
        let p = parts("/", &[("host", "API.Example.com:8443")]);
        let m = MatchConfig {
            host: Some("api.example.com".into()),
            ..Default::default()
        };
        assert!(matches(&m, &p));
    }

    #[test]
    fn keys() {
        let p = parts(
            "/x?a=1&uid=42",
            &[("cookie", "x=1; uid=42"), ("x-user", "42")],
        );
        let h = hash_key(
            &HashKey::Header(http::HeaderName::from_static("x-user")),
            &p,
        );
        let c = hash_key(&HashKey::Cookie("uid".into()), &p);
        let q = hash_key(&HashKey::Query("uid".into()), &p);
        assert!(h.is_some());
        assert_eq!(h, c);
        assert_eq!(c, q);
        assert_eq!(hash_key(&HashKey::Query("nope".into()), &p), None);
    }
}
