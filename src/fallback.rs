//! The fallback ladder: what a route answers when its cluster fails.
//!
//! When the attempt loop (retries included) ends in a gateway failure (connect
//! failure, timeout, broken exchange, no healthy endpoint, cell down) or in an upstream
//! 5xx, the route's `fallback` rungs are tried in order: another cluster (one more run
//! of the attempt loop there), the last good answer to the same request (`stale`), then
//! a fixed answer (`static`). The first rung that answers wins and its answer carries
//! `x-ninefold-degraded: cluster|stale|static`, so clients and dashboards can tell a
//! degraded answer from a real one. Stale is served on connect failures and timeouts
//! as well as on 5xx: a dead origin is exactly when it is needed (Envoy #9976 serves
//! it on 5xx only).
//!
//! Only the methods in `fallback.methods` (GET and HEAD by default) use the ladder: a
//! POST must never get a made-up success.
//!
//! The stale cache is per worker thread (`thread_local!`), so storing and serving take
//! no lock; each worker keeps its own copy of popular answers. Per route it is an LRU
//! bounded by entries and bytes, keyed by method and URI (plus `Authorization` and
//! `Cookie` when the route opts in with `stale.private`), and each entry remembers the
//! request header values its answer's `Vary` names, which must match to serve it. An
//! answer is stored only if it is a 2xx (not 206), is not marked `no-store` or
//! `private`, sets no cookie, does not `Vary: *`, and answers a request without
//! credentials (unless opted in): one user's answer must never reach another user.
//! Its body is copied as it streams (see `proxy::Finish`) and the entry is inserted only
//! when the body ended cleanly, so a cut body is never served later.

use crate::config::{StaleConfig, StaticConfig, STALE_MAX_ENTRY};
use crate::message::RespBody;
use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderName, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use tokio::time::Instant;

/// The header that marks an answer of the ladder.
pub static DEGRADED: HeaderName = HeaderName::from_static("x-ninefold-degraded");

/// `kind` labels of `ninefold_fallback_total`, by [`Kind`] index.
pub const KIND_LABELS: [&str; 3] = ["cluster", "stale", "static"];

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Another cluster answered.
    Cluster = 0,
    /// The last good answer was served.
    Stale = 1,
    /// The fixed answer was served.
    Static = 2,
}

/// A route's compiled ladder; `C` is the cluster of its first rung (the snapshot's:
/// this module only carries it).
pub struct RouteFallback<C> {
    /// Identity of the route's stale cache: `listener/route`, stable across reloads.
    pub cache_id: Arc<str>,
    /// Another cluster.
    pub cluster: Option<Arc<C>>,
    /// The stale rung.
    pub stale: Option<StaleConfig>,
    /// The static rung.
    pub static_answer: Option<StaticConfig>,
    /// Methods the ladder serves.
    pub methods: Vec<Method>,
    /// `ninefold_fallback_total{listener,route,kind}`, by [`Kind`] index.
    pub served: [prometheus::IntCounter; 3],
}

/// An answer being copied into the stale cache as it streams.
pub struct Pending {
    cache_id: Arc<str>,
    cfg: StaleConfig,
    key: Box<[u8]>,
    vary: Box<[HeaderName]>,
    variant: Box<[u8]>,
    status: StatusCode,
    headers: HeaderMap,
    buf: BytesMut,
    /// Set once the body outgrew the entry limit: nothing is stored.
    overflow: bool,
}

struct Entry {
    key: Box<[u8]>,
    vary: Box<[HeaderName]>,
    variant: Box<[u8]>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    tick: u64,
    size: usize,
}

/// One route's LRU on one worker.
#[derive(Default)]
struct RouteCache {
    map: HashMap<u64, Entry>,
    /// Use tick → key hash, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
    bytes: usize,
}

thread_local! {
    static CACHES: RefCell<HashMap<Arc<str>, RouteCache>> = RefCell::new(HashMap::new());
}

// === impl Kind ===

impl Kind {
    /// The `x-ninefold-degraded` value and metric label.
    pub fn as_str(self) -> &'static str {
        KIND_LABELS[self as usize]
    }

    /// Reason written to the access log.
    pub fn reason(self) -> &'static str {
        match self {
            Kind::Cluster => "fallback-cluster",
            Kind::Stale => "fallback-stale",
            Kind::Static => "fallback-static",
        }
    }
}

// === impl RouteFallback ===

impl<C> RouteFallback<C> {
    /// Whether the ladder serves requests with this method.
    pub fn serves(&self, m: &Method) -> bool {
        self.methods.contains(m)
    }

    /// Counts an answer of rung `k`.
    pub fn count(&self, k: Kind) {
        self.served[k as usize].inc();
    }

    /// The stored answer to this request, if one is fresh at `now`.
    pub fn stale(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: Instant,
    ) -> Option<Response<RespBody>> {
        let cfg = self.stale?;
        let key = cache_key(method, uri, headers, cfg.private);
        let h = hash(&key);
        CACHES.with(|c| {
            let mut caches = c.borrow_mut();
            let cache = caches.get_mut(&self.cache_id)?;
            let e = cache.map.get(&h)?;
            if e.key != key || variant(&e.vary, headers) != e.variant {
                return None;
            }
            if now.saturating_duration_since(e.stored) > cfg.max_age {
                return None;
            }
            let mut resp = Response::new(RespBody::Full(Some(e.body.clone())));
            *resp.status_mut() = e.status;
            *resp.headers_mut() = e.headers.clone();
            cache.touch(h);
            Some(degraded(resp, Kind::Stale))
        })
    }

    /// The fixed answer, if the route has one.
    pub fn static_answer(&self) -> Option<Response<RespBody>> {
        let s = self.static_answer.as_ref()?;
        let mut resp = Response::new(RespBody::Full(Some(s.body.clone())));
        *resp.status_mut() = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
        resp.headers_mut()
            .insert(CONTENT_TYPE, s.content_type.clone());
        Some(degraded(resp, Kind::Static))
    }

    /// Starts copying an answer for the stale cache, if it may be stored.
    pub fn pending(
        &self,
        method: &Method,
        uri: &Uri,
        req: &HeaderMap,
        status: StatusCode,
        resp: &HeaderMap,
    ) -> Option<Box<Pending>> {
        let cfg = self.stale?;
        if !cacheable(status, resp, req, cfg.private) {
            return None;
        }
        let vary: Box<[HeaderName]> = vary_names(resp).collect();
        let mut headers = resp.clone();
        headers.remove(&DEGRADED);
        Some(Box::new(Pending {
            cache_id: self.cache_id.clone(),
            cfg,
            key: cache_key(method, uri, req, cfg.private),
            variant: variant(&vary, req),
            vary,
            status,
            headers,
            buf: BytesMut::new(),
            overflow: false,
        }))
    }
}

/// Marks an answer as served by rung `k`.
pub fn degraded(mut resp: Response<RespBody>, k: Kind) -> Response<RespBody> {
    resp.headers_mut()
        .insert(DEGRADED.clone(), HeaderValue::from_static(k.as_str()));
    resp
}

// === impl Pending ===

impl Pending {
    /// Copies a chunk of the body.
    pub fn data(&mut self, d: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + d.len() > self.limit() {
            self.overflow = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(d);
    }

    fn limit(&self) -> usize {
        STALE_MAX_ENTRY.min(self.cfg.max_bytes)
    }

    /// The body ended cleanly: the answer goes into this worker's cache.
    pub fn commit(self: Box<Self>, now: Instant) {
        if self.overflow {
            return;
        }
        let p = *self;
        let size = p.buf.len()
            + p.key.len()
            + p.variant.len()
            + p.headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len())
                .sum::<usize>();
        if size > p.limit() {
            return;
        }
        let cfg = p.cfg;
        CACHES.with(|c| {
            let mut caches = c.borrow_mut();
            let cache = caches.entry(p.cache_id.clone()).or_default();
            cache.insert(
                Entry {
                    key: p.key,
                    vary: p.vary,
                    variant: p.variant,
                    status: p.status,
                    headers: p.headers,
                    body: p.buf.freeze(),
                    stored: now,
                    tick: 0,
                    size,
                },
                &cfg,
            );
        });
    }
}

// === impl RouteCache ===

impl RouteCache {
    fn insert(&mut self, mut e: Entry, cfg: &StaleConfig) {
        let h = hash(&e.key);
        self.remove(h);
        while !self.map.is_empty()
            && (self.map.len() >= cfg.max_entries || self.bytes + e.size > cfg.max_bytes)
        {
            let Some((_, &oldest)) = self.order.iter().next() else {
                break;
            };
            self.remove(oldest);
        }
        self.tick += 1;
        e.tick = self.tick;
        self.order.insert(e.tick, h);
        self.bytes += e.size;
        self.map.insert(h, e);
    }

    fn remove(&mut self, h: u64) {
        if let Some(old) = self.map.remove(&h) {
            self.order.remove(&old.tick);
            self.bytes -= old.size;
        }
    }

    fn touch(&mut self, h: u64) {
        self.tick += 1;
        let t = self.tick;
        if let Some(e) = self.map.get_mut(&h) {
            self.order.remove(&e.tick);
            e.tick = t;
            self.order.insert(t, h);
        }
    }
}

/// Whether an answer may be stored: 2xx but not partial, not `no-store`/`private`, no
/// cookie set, not `Vary: *`, and its request carried no credentials unless the route
/// keys the cache by them (`private`).
pub fn cacheable(status: StatusCode, resp: &HeaderMap, req: &HeaderMap, private: bool) -> bool {
    if !status.is_success() || status == StatusCode::PARTIAL_CONTENT {
        return false;
    }
    if resp.contains_key(SET_COOKIE) {
        return false;
    }
    if !private && (req.contains_key(AUTHORIZATION) || req.contains_key(COOKIE)) {
        return false;
    }
    let forbidden = resp
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim())
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"));
    if forbidden {
        return false;
    }
    // A value that is not text cannot be read as names: do not guess, do not store.
    let vary_ok = resp.get_all(VARY).iter().all(|v| {
        v.to_str()
            .is_ok_and(|s| !s.split(',').any(|n| n.trim() == "*"))
    });
    vary_ok && vary_names(resp).count() == count_vary(resp)
}

fn count_vary(resp: &HeaderMap) -> usize {
    resp.get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|n| !n.trim().is_empty())
        .count()
}

fn vary_names(resp: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    resp.get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
}

/// Method, URI and, for a private cache, the request's credentials.
fn cache_key(method: &Method, uri: &Uri, req: &HeaderMap, private: bool) -> Box<[u8]> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(method.as_str().as_bytes());
    k.push(b' ');
    k.extend_from_slice(uri.to_string().as_bytes());
    if private {
        for name in [AUTHORIZATION, COOKIE] {
            k.push(0);
            for v in req.get_all(&name) {
                k.extend_from_slice(v.as_bytes());
                k.push(1);
            }
        }
    }
    k.into_boxed_slice()
}

/// The request's values of the headers an answer varies on.
fn variant(names: &[HeaderName], req: &HeaderMap) -> Box<[u8]> {
    let mut out = Vec::new();
    for n in names {
        out.extend_from_slice(n.as_str().as_bytes());
        out.push(b':');
        for v in req.get_all(n) {
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out.push(b'\n');
    }
    out.into_boxed_slice()
}

fn hash(key: &[u8]) -> u64 {
    // A fixed seed: the key is checked whole on every hit, so a collision is a miss.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(key);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fb(cfg: StaleConfig, id: &str) -> RouteFallback<()> {
        let c = prometheus::IntCounter::new("x", "x").unwrap();
        RouteFallback {
            cache_id: id.into(),
            cluster: None,
            stale: Some(cfg),
            static_answer: None,
            methods: vec![Method::GET, Method::HEAD],
            served: [c.clone(), c.clone(), c],
        }
    }

    fn cfg() -> StaleConfig {
        StaleConfig {
            max_age: Duration::from_secs(60),
            max_entries: 3,
            max_bytes: 1 << 20,
            private: false,
        }
    }

    fn hm(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn store(
        f: &RouteFallback<()>,
        uri: &str,
        req: &HeaderMap,
        resp: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> bool {
        let uri: Uri = uri.parse().unwrap();
        match f.pending(&Method::GET, &uri, req, StatusCode::OK, resp) {
            Some(mut p) => {
                p.data(body);
                p.commit(now);
                true
            }
            None => false,
        }
    }

    fn body_of(r: Response<RespBody>) -> Bytes {
        match r.into_body() {
            RespBody::Full(Some(b)) => b,
            _ => Bytes::new(),
        }
    }

    fn lookup(f: &RouteFallback<()>, uri: &str, req: &HeaderMap, now: Instant) -> Option<Bytes> {
        f.stale(&Method::GET, &uri.parse().unwrap(), req, now)
            .map(body_of)
    }

    #[test]
    fn cacheability_rules() {
        let ok = StatusCode::OK;
        let none = HeaderMap::new();
        assert!(cacheable(ok, &none, &none, false));
        assert!(!cacheable(StatusCode::PARTIAL_CONTENT, &none, &none, false));
        assert!(!cacheable(StatusCode::NOT_FOUND, &none, &none, false));
        assert!(!cacheable(StatusCode::BAD_GATEWAY, &none, &none, false));
        assert!(!cacheable(
            ok,
            &hm(&[("cache-control", "max-age=5, no-store")]),
            &none,
            false
        ));
        assert!(!cacheable(
            ok,
            &hm(&[("cache-control", "Private")]),
            &none,
            true
        ));
        assert!(!cacheable(ok, &hm(&[("set-cookie", "a=b")]), &none, true));
        assert!(!cacheable(ok, &hm(&[("vary", "accept, *")]), &none, false));
        assert!(!cacheable(
            ok,
            &none,
            &hm(&[("authorization", "Bearer a")]),
            false
        ));
        assert!(!cacheable(ok, &none, &hm(&[("cookie", "s=1")]), false));
        assert!(cacheable(
            ok,
            &none,
            &hm(&[("authorization", "Bearer a")]),
            true
        ));
        assert!(cacheable(
            ok,
            &hm(&[("cache-control", "public, max-age=60")]),
            &none,
            false
        ));
    }

    #[test]
    fn served_until_max_age_only() {
        let f = fb(cfg(), "t/age");
        let t0 = Instant::now();
        assert!(store(
            &f,
            "/a",
            &HeaderMap::new(),
            &HeaderMap::new(),
            b"A",
            t0
        ));
        let got = f.stale(&Method::GET, &"/a".parse().unwrap(), &HeaderMap::new(), t0);
        let got = got.unwrap();
        assert_eq!(got.headers()[&DEGRADED], "stale");
        assert_eq!(body_of(got), Bytes::from_static(b"A"));
        assert!(lookup(&f, "/a", &HeaderMap::new(), t0 + Duration::from_secs(61)).is_none());
        // Another method or URL is another answer.
        assert!(f
            .stale(&Method::HEAD, &"/a".parse().unwrap(), &HeaderMap::new(), t0)
            .is_none());
        assert!(lookup(&f, "/a?x=1", &HeaderMap::new(), t0).is_none());
    }

    #[test]
    fn lru_bounded_by_entries_and_bytes() {
        let f = fb(cfg(), "t/lru");
        let t0 = Instant::now();
        let none = HeaderMap::new();
        for u in ["/1", "/2", "/3"] {
            store(&f, u, &none, &none, b"x", t0);
        }
        // Touch /1, so /2 is the least recently used.
        assert!(lookup(&f, "/1", &none, t0).is_some());
        store(&f, "/4", &none, &none, b"x", t0);
        assert!(lookup(&f, "/2", &none, t0).is_none());
        for u in ["/1", "/3", "/4"] {
            assert!(lookup(&f, u, &none, t0).is_some(), "{u}");
        }

        let small = StaleConfig {
            max_bytes: 100,
            max_entries: 100,
            ..cfg()
        };
        let f = fb(small, "t/bytes");
        store(&f, "/a", &none, &none, &[b'a'; 60], t0);
        store(&f, "/b", &none, &none, &[b'b'; 60], t0);
        assert!(lookup(&f, "/a", &none, t0).is_none(), "evicted for bytes");
        assert!(lookup(&f, "/b", &none, t0).is_some());
        // Larger than the whole cache: not stored, nothing evicted.
        assert!(store(&f, "/c", &none, &none, &[b'c'; 200], t0));
        assert!(lookup(&f, "/c", &none, t0).is_none());
        assert!(lookup(&f, "/b", &none, t0).is_some());
    }

    #[test]
    fn vary_headers_key_the_answer() {
        let f = fb(cfg(), "t/vary");
        let t0 = Instant::now();
        let resp = hm(&[("vary", "Accept-Language")]);
        store(
            &f,
            "/v",
            &hm(&[("accept-language", "fr")]),
            &resp,
            b"bonjour",
            t0,
        );
        assert_eq!(
            lookup(&f, "/v", &hm(&[("accept-language", "fr")]), t0).as_deref(),
            Some(&b"bonjour"[..])
        );
        assert!(lookup(&f, "/v", &hm(&[("accept-language", "de")]), t0).is_none());
        assert!(lookup(&f, "/v", &HeaderMap::new(), t0).is_none());
    }

    #[test]
    fn private_cache_is_keyed_by_credentials() {
        let t0 = Instant::now();
        let a = hm(&[("authorization", "Bearer alice")]);
        let b = hm(&[("authorization", "Bearer bob")]);
        let none = HeaderMap::new();
        // Not opted in: an answer to a request with credentials is never kept.
        let f = fb(cfg(), "t/public");
        assert!(!store(&f, "/me", &a, &none, b"alice", t0));
        assert!(lookup(&f, "/me", &b, t0).is_none());
        assert!(lookup(&f, "/me", &none, t0).is_none());
        // Opted in: only the same credentials read it back.
        let f = fb(
            StaleConfig {
                private: true,
                ..cfg()
            },
            "t/private",
        );
        assert!(store(&f, "/me", &a, &none, b"alice", t0));
        assert_eq!(lookup(&f, "/me", &a, t0).as_deref(), Some(&b"alice"[..]));
        assert!(lookup(&f, "/me", &b, t0).is_none());
        assert!(lookup(&f, "/me", &none, t0).is_none());
    }

    #[test]
    fn a_body_over_the_entry_limit_is_not_kept() {
        let f = fb(
            StaleConfig {
                max_bytes: 64,
                ..cfg()
            },
            "t/big",
        );
        let uri: Uri = "/big".parse().unwrap();
        let none = HeaderMap::new();
        let mut p = f
            .pending(&Method::GET, &uri, &none, StatusCode::OK, &none)
            .unwrap();
        p.data(&[0; 50]);
        p.data(&[0; 50]);
        p.commit(Instant::now());
        assert!(lookup(&f, "/big", &none, Instant::now()).is_none());
    }
}
