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
//! The stale cache is one per process: an answer one worker stored serves a client
//! whose connection the kernel gave to another worker. (It was one per worker thread,
//! and with two workers a URL just served could get the static answer: issue 22.) Per
//! route it is bounded by entries and bytes, keyed by method and URI (plus
//! `Authorization` and `Cookie` when the route opts in with `stale.private`), and each
//! entry remembers the request header values its answer's `Vary` names, which must
//! match to serve it. An answer is stored only if it is a 2xx (not 206), is not marked
//! `no-store` or `private`, sets no cookie, does not `Vary: *`, and answers a request
//! without credentials (unless opted in): one user's answer must never reach another
//! user. Its body is copied as it streams (see `proxy::Finish`) and the entry is inserted
//! only when the body ended cleanly, so a cut body is never served later. An answer
//! older than `max_age` is not served (it stays until evicted).
//!
//! # Sharing it between workers
//!
//! A route's cache is 16 shards (`SHARDS`), each a `Mutex` over an LRU of the keys
//! that hash to it. A store or a lookup takes one shard's lock, briefly: a map probe, the
//! key check and the LRU update. The response is built after the lock (the entry is
//! shared, `Arc<Stored>`), and evicted answers are freed after it. Workers storing or
//! serving different keys of one route rarely meet, and requests of routes without
//! `stale` never come here (a store happens only for a cacheable 2xx of a route with
//! `stale`, a lookup only on the ladder).
//!
//! The bounds are the route's, counted over all its shards (two atomics beside
//! them), not split into a share per shard. A split would leave some shards of a
//! cache of fewer than 16 entries room for nothing, make a 1 MiB answer a whole shard's
//! share of a 16 MiB cache, and tie the shards to bounds that a reload may change while
//! it keeps the cache. A store that needs room evicts its own shard's least recently used
//! answers first; only when its shard has none left (a cache of a few entries, or a
//! large answer) does it look at each shard's oldest, one lock at a time, and evict the
//! oldest of them. Eviction is LRU within a shard, and close to it across the route: in
//! a full cache, an answer evicted is the least recently used of about a sixteenth of
//! it. The other choice, one exact LRU per route behind one lock, would put every
//! worker's stores to a busy route on that one lock.
//!
//! Sharing has a cost the shards do not remove: an answer one worker stored is often
//! evicted, and so freed, by another, and glibc's allocator takes the other worker's
//! arena lock for that. `benches/pipeline.rs` measures it: two threads storing and
//! looking up on one route, beside the same work on a route each.
//!
//! The caches are found by `cache_id` (`listener/route`) in a map read through
//! `ArcSwap`, with no lock; a route's first store adds its cache, once. A reload keeps
//! a route's cache, and new bounds apply from its next store. A route removed keeps its
//! cache, within its last bounds, until the process exits.

use crate::config::{StaleConfig, StaticConfig, STALE_MAX_ENTRY};
use crate::message::RespBody;
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderName, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
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

/// A stored answer. Shared, so that a lookup takes it under its shard's lock and builds
/// the response after, and an evicted one is freed after the lock.
struct Stored {
    key: Box<[u8]>,
    vary: Box<[HeaderName]>,
    variant: Box<[u8]>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    size: usize,
}

/// A stored answer in its shard, with its place in the shard's LRU order.
struct Entry {
    stored: Arc<Stored>,
    used: Used,
}

/// When an entry was last stored or served, then a number of its shard that tells two
/// uses at the same instant apart: the LRU order.
type Used = (Instant, u64);

/// One route's stale cache, for the whole process.
struct RouteCache {
    shards: [Padded<Mutex<Shard>>; SHARDS],
    /// Entries and bytes of all the shards: the route's bounds are on these.
    totals: Padded<Totals>,
}

/// Answers a store evicted, freed when it returns, after the locks: freeing a large
/// body must not hold a shard. A store usually evicts one, kept without a `Vec`.
#[derive(Default)]
struct Gone {
    one: Option<Arc<Stored>>,
    more: Vec<Arc<Stored>>,
}

/// Counts of a route's cache, changed under the lock of the shard that changed.
#[derive(Default)]
struct Totals {
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

/// The entries whose keys hash to one shard.
#[derive(Default)]
struct Shard {
    map: HashMap<u64, Entry>,
    /// Last use → key hash, least recently used first.
    order: BTreeMap<Used, u64>,
    seq: u64,
}

/// A value on cache lines of its own (128 bytes: x86-64 fetches lines in pairs), so
/// that two cores taking two shards' locks do not pass one line back and forth.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Shards of a route's stale cache. Two stores or lookups at once meet on one shard's
/// lock one time in 16; the cost is 2 KiB per route with `stale`.
const SHARDS: usize = 16;

/// Every route's stale cache, by `cache_id`. Read with no lock; copied and swapped
/// once per route, by its first store.
static CACHES: OnceLock<ArcSwap<HashMap<Arc<str>, Arc<RouteCache>>>> = OnceLock::new();

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
        let e = with_cache(&self.cache_id, false, |c| {
            c.lookup(h, &key, headers, cfg.max_age, now)
        })??;
        let mut resp = Response::new(RespBody::Full(Some(e.body.clone())));
        *resp.status_mut() = e.status;
        *resp.headers_mut() = e.headers.clone();
        Some(degraded(resp, Kind::Stale))
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

    /// The body ended cleanly: the answer goes into the route's cache.
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
        let h = hash(&p.key);
        let stored = Arc::new(Stored {
            key: p.key,
            vary: p.vary,
            variant: p.variant,
            status: p.status,
            headers: p.headers,
            body: p.buf.freeze(),
            stored: now,
            size,
        });
        with_cache(&p.cache_id, true, |c| c.insert(h, stored, &cfg, now));
    }
}

/// Runs `f` on the route's cache; `create`: adds the cache if the route has none yet.
/// `f` runs under a read guard of the map, so it takes no reference count.
fn with_cache<R>(id: &Arc<str>, create: bool, f: impl FnOnce(&RouteCache) -> R) -> Option<R> {
    let all = CACHES.get_or_init(ArcSwap::default);
    if let Some(c) = all.load().get(id) {
        return Some(f(c));
    }
    if !create {
        return None;
    }
    all.rcu(|m| {
        let mut m = HashMap::clone(m);
        m.entry(Arc::clone(id))
            .or_insert_with(|| Arc::new(RouteCache::default()));
        m
    });
    all.load().get(id).map(|c| f(c))
}

// === impl RouteCache ===

impl Default for RouteCache {
    fn default() -> Self {
        RouteCache {
            shards: std::array::from_fn(|_| Padded::default()),
            totals: Padded::default(),
        }
    }
}

impl RouteCache {
    /// Shard `i`, locked. A release build aborts on a panic, so no shard is ever
    /// poisoned there; a test build's poisoned shard is used on.
    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry for this key and request, if fresh at `now`; marks it used.
    fn lookup(
        &self,
        h: u64,
        key: &[u8],
        req: &HeaderMap,
        max_age: Duration,
        now: Instant,
    ) -> Option<Arc<Stored>> {
        let mut s = self.shard(shard_of(h));
        let e = &s.map.get(&h)?.stored;
        if *e.key != *key || !same_variant(&e.vary, req, &e.variant) {
            return None;
        }
        if now.saturating_duration_since(e.stored) > max_age {
            return None;
        }
        let e = Arc::clone(e);
        s.touch(h, now);
        Some(e)
    }

    /// Stores an answer (replacing the key's old one) and evicts until the route is
    /// within its bounds again.
    fn insert(&self, h: u64, new: Arc<Stored>, cfg: &StaleConfig, now: Instant) {
        let totals = &self.totals.0;
        let size = new.size;
        let mut gone = Gone::default();
        {
            let mut s = self.shard(shard_of(h));
            if let Some(old) = s.remove(h) {
                totals.sub(&old);
                gone.push(old);
            }
            while !totals.fits(1, size, cfg) {
                let Some(old) = s.pop_oldest() else {
                    break;
                };
                totals.sub(&old);
                gone.push(old);
            }
            totals.add(&new);
            s.insert(h, new, now);
        }
        // The shard had too little to give: the route's oldest go, wherever they are.
        while !totals.fits(0, 0, cfg) {
            match self.evict_oldest() {
                Some(old) => gone.push(old),
                None => break,
            }
        }
    }

    /// Evicts the least recently used entry of all the shards: a look at each shard's
    /// oldest, one lock at a time, then the oldest of them goes (or, if its shard
    /// changed meanwhile, that shard's oldest now). None when every shard is empty.
    fn evict_oldest(&self) -> Option<Arc<Stored>> {
        loop {
            let (i, _) = (0..SHARDS)
                .filter_map(|i| Some((i, *self.shard(i).order.keys().next()?)))
                .min_by_key(|&(_, used)| used)?;
            if let Some(old) = self.shard(i).pop_oldest() {
                self.totals.0.sub(&old);
                return Some(old);
            }
        }
    }
}

// === impl Gone ===

impl Gone {
    fn push(&mut self, e: Arc<Stored>) {
        match self.one {
            None => self.one = Some(e),
            Some(_) => self.more.push(e),
        }
    }
}

// === impl Totals ===

impl Totals {
    /// Whether `entries` more entries of `bytes` more bytes keep the route within its
    /// bounds.
    fn fits(&self, entries: usize, bytes: usize, cfg: &StaleConfig) -> bool {
        self.entries.load(Relaxed) + entries <= cfg.max_entries
            && self.bytes.load(Relaxed) + bytes <= cfg.max_bytes
    }

    fn add(&self, e: &Stored) {
        self.entries.fetch_add(1, Relaxed);
        self.bytes.fetch_add(e.size, Relaxed);
    }

    fn sub(&self, e: &Stored) {
        self.entries.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(e.size, Relaxed);
    }
}

// === impl Shard ===

impl Shard {
    fn insert(&mut self, h: u64, stored: Arc<Stored>, now: Instant) {
        let used = self.next(now);
        self.order.insert(used, h);
        self.map.insert(h, Entry { stored, used });
    }

    fn remove(&mut self, h: u64) -> Option<Arc<Stored>> {
        let e = self.map.remove(&h)?;
        self.order.remove(&e.used);
        Some(e.stored)
    }

    fn pop_oldest(&mut self) -> Option<Arc<Stored>> {
        let (_, h) = self.order.pop_first()?;
        self.map.remove(&h).map(|e| e.stored)
    }

    fn touch(&mut self, h: u64, now: Instant) {
        let used = self.next(now);
        if let Some(e) = self.map.get_mut(&h) {
            self.order.remove(&e.used);
            // Another worker's clock reading may be a little older than the last use.
            e.used = used.max(e.used);
            self.order.insert(e.used, h);
        }
    }

    fn next(&mut self, now: Instant) -> Used {
        self.seq += 1;
        (now, self.seq)
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

/// Whether the request's values of `names` are `want` (what [`variant`] would make of
/// them), compared piece by piece: no copy under the shard's lock.
fn same_variant(names: &[HeaderName], req: &HeaderMap, want: &[u8]) -> bool {
    let mut rest = want;
    let mut eat = |piece: &[u8]| match rest.strip_prefix(piece) {
        Some(r) => {
            rest = r;
            true
        }
        None => false,
    };
    for n in names {
        if !(eat(n.as_str().as_bytes()) && eat(b":")) {
            return false;
        }
        for v in req.get_all(n) {
            if !(eat(v.as_bytes()) && eat(&[0])) {
                return false;
            }
        }
        if !eat(b"\n") {
            return false;
        }
    }
    rest.is_empty()
}

/// The shard of a key hash.
fn shard_of(h: u64) -> usize {
    (h % SHARDS as u64) as usize
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

    /// The shard of a GET of `path` without credentials.
    fn shard_of_path(path: &str) -> usize {
        let k = cache_key(
            &Method::GET,
            &path.parse().unwrap(),
            &HeaderMap::new(),
            false,
        );
        shard_of(hash(&k))
    }

    /// `n` paths whose keys hash to shard `shard`.
    fn paths_in(shard: usize, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("/k{i}"))
            .filter(|p| shard_of_path(p) == shard)
            .take(n)
            .collect()
    }

    /// Entries and bytes of a route's cache, counted from its shards, after checking
    /// that they agree with its totals and that each shard's map and order agree.
    fn counted(id: &str) -> (usize, usize) {
        with_cache(&Arc::from(id), false, |c| {
            let (mut n, mut bytes) = (0, 0);
            for i in 0..SHARDS {
                let s = c.shard(i);
                assert_eq!(s.map.len(), s.order.len());
                n += s.map.len();
                bytes += s.map.values().map(|e| e.stored.size).sum::<usize>();
            }
            assert_eq!(n, c.totals.0.entries.load(Relaxed));
            assert_eq!(bytes, c.totals.0.bytes.load(Relaxed));
            (n, bytes)
        })
        .unwrap()
    }

    #[test]
    fn an_answer_stored_on_one_thread_is_served_on_another() {
        let f = fb(cfg(), "t/threads");
        let t0 = Instant::now();
        let none = HeaderMap::new();
        std::thread::scope(|s| {
            s.spawn(|| store(&f, "/there", &none, &none, b"stored there", t0));
        });
        assert_eq!(
            lookup(&f, "/there", &none, t0).as_deref(),
            Some(&b"stored there"[..])
        );
        store(&f, "/here", &none, &none, b"stored here", t0);
        let there = std::thread::scope(|s| s.spawn(|| lookup(&f, "/here", &none, t0)).join());
        assert_eq!(there.unwrap().as_deref(), Some(&b"stored here"[..]));
    }

    #[test]
    fn lru_bounded_by_entries_and_bytes() {
        // Four keys of one shard: within a shard the order is exactly LRU.
        let f = fb(cfg(), "t/lru");
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let p = paths_in(5, 4);
        for u in &p[..3] {
            store(&f, u, &none, &none, b"x", t0);
        }
        // Touch the first, so the second is the least recently used.
        assert!(lookup(&f, &p[0], &none, t0).is_some());
        store(&f, &p[3], &none, &none, b"x", t0);
        assert!(lookup(&f, &p[1], &none, t0).is_none());
        for u in [&p[0], &p[2], &p[3]] {
            assert!(lookup(&f, u, &none, t0).is_some(), "{u}");
        }
        assert_eq!(counted("t/lru").0, 3);

        let small = StaleConfig {
            max_bytes: 100,
            max_entries: 100,
            ..cfg()
        };
        let f = fb(small, "t/bytes");
        store(&f, "/a", &none, &none, &[b'a'; 60], t0);
        store(&f, "/b", &none, &none, &[b'b'; 60], t1(t0, 1));
        assert!(lookup(&f, "/a", &none, t0).is_none(), "evicted for bytes");
        assert!(lookup(&f, "/b", &none, t0).is_some());
        // Larger than the whole cache: not stored, nothing evicted.
        assert!(store(&f, "/c", &none, &none, &[b'c'; 200], t0));
        assert!(lookup(&f, "/c", &none, t0).is_none());
        assert!(lookup(&f, "/b", &none, t0).is_some());
        assert!(counted("t/bytes").1 <= 100);
    }

    fn t1(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_answer_of_the_route() {
        // Four keys, each in a shard of its own: the store of the fourth finds nothing
        // to evict in its shard and evicts the route's least recently used.
        let f = fb(cfg(), "t/route-lru");
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let p: Vec<String> = (0..4).map(|s| paths_in(s, 1).remove(0)).collect();
        for (i, u) in p[..3].iter().enumerate() {
            store(&f, u, &none, &none, b"x", t1(t0, i as u64));
        }
        assert!(lookup(&f, &p[0], &none, t1(t0, 3)).is_some());
        store(&f, &p[3], &none, &none, b"x", t1(t0, 4));
        assert!(lookup(&f, &p[1], &none, t0).is_none());
        for u in [&p[0], &p[2], &p[3]] {
            assert!(lookup(&f, u, &none, t0).is_some(), "{u}");
        }
        assert_eq!(counted("t/route-lru").0, 3);
    }

    #[test]
    fn a_store_makes_room_in_its_own_shard_first() {
        // The approximation the shards cost: in a full cache, a store evicts its own
        // shard's least recently used even when another shard holds an older one.
        let f = fb(
            StaleConfig {
                max_entries: 2,
                ..cfg()
            },
            "t/own-shard",
        );
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let other = paths_in(0, 1).remove(0);
        let same = paths_in(1, 2);
        store(&f, &other, &none, &none, b"x", t0);
        store(&f, &same[0], &none, &none, b"x", t1(t0, 1));
        store(&f, &same[1], &none, &none, b"x", t1(t0, 2));
        assert!(lookup(&f, &other, &none, t0).is_some());
        assert!(lookup(&f, &same[0], &none, t0).is_none());
        assert!(lookup(&f, &same[1], &none, t0).is_some());
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

    #[test]
    fn the_bounds_hold_with_threads_storing_at_once() {
        let small = StaleConfig {
            max_entries: 50,
            max_bytes: 20_000,
            ..cfg()
        };
        let f = fb(small, "t/race");
        let none = HeaderMap::new();
        let body = [b'r'; 700];
        std::thread::scope(|s| {
            for t in 0..4 {
                let (f, none) = (&f, &none);
                s.spawn(move || {
                    for i in 0..3000usize {
                        let k = (i * 7 + t * 13) % 300;
                        let now = Instant::now();
                        if i % 3 == 0 {
                            lookup(f, &format!("/r{k}"), none, now);
                        } else {
                            store(f, &format!("/r{k}"), none, none, &body[..k % 7 * 100], now);
                        }
                    }
                });
            }
        });
        let (n, bytes) = counted("t/race");
        assert!(n > 0 && n <= 50, "{n} entries");
        assert!(bytes <= 20_000, "{bytes} bytes");
    }

    #[test]
    fn a_reload_keeps_the_cache_and_its_new_bounds_apply_from_the_next_store() {
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let before = fb(cfg(), "t/reload");
        for u in ["/1", "/2", "/3"] {
            store(&before, u, &none, &none, b"x", t0);
        }
        // The reloaded route: same `cache_id`, another `Arc`, smaller bounds.
        let after = fb(
            StaleConfig {
                max_entries: 1,
                ..cfg()
            },
            "t/reload",
        );
        for u in ["/1", "/2", "/3"] {
            assert!(lookup(&after, u, &none, t0).is_some(), "{u}");
        }
        store(&after, "/4", &none, &none, b"x", t1(t0, 1));
        assert_eq!(counted("t/reload").0, 1);
        assert!(lookup(&after, "/4", &none, t0).is_some());
    }

    #[test]
    fn same_variant_agrees_with_variant() {
        let names: Vec<HeaderName> = vec![VARY, http::header::ACCEPT_ENCODING];
        let reqs = [
            HeaderMap::new(),
            hm(&[("vary", "a"), ("accept-encoding", "gzip")]),
            hm(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]),
            hm(&[("accept-encoding", "gzip, br")]),
        ];
        for a in &reqs {
            for b in &reqs {
                let want = variant(&names, a);
                assert_eq!(same_variant(&names, b, &want), variant(&names, b) == want);
            }
            assert!(same_variant(&[], a, &[]));
            assert!(!same_variant(&[], a, b"x"));
        }
    }
}
