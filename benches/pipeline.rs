//! What do the data path's per-request decisions cost? Route matching over a listener
//! of 20 routes; one endpoint pick per balancer beside a naive baseline (a
//! `Mutex`-guarded round robin, what a first version would write), to show that the
//! lock-free picks stay in the tens of nanoseconds; the whole selection step (live
//! state, priority levels, zones, balancer) with every endpoint available and with one
//! out (and with 1,000 endpoints: what grows per endpoint), beside the bare balancer; the retry budget's per-request count; the SLI step.
//! Route matching of the request that matches the last route, with 1 to 10,000
//! routes, beside the linear first-match scan the route index replaced. The stale cache of the
//! fallback ladder: what a route with `stale` adds to a cacheable 2xx GET (the copy and
//! the store) and what an answer of the stale rung costs (the lookup), alone and with
//! two threads at once on one route, beside a naive baseline (one `Mutex<HashMap>` per
//! route, no LRU, no bounds, the key already made).

use criterion::{criterion_group, criterion_main, Criterion};
use ninefold::metrics::{Metrics, SloResult};
use ninefold::proxy::route;
use ninefold::snapshot::Snapshot;
use ninefold::upstream::balance::{hash_bytes, Balancer};
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn config(routes: usize) -> String {
    config_eps(routes, 8)
}

fn config_eps(routes: usize, endpoints: usize) -> String {
    let mut s = String::from("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    routes:\n");
    for i in 0..routes {
        s.push_str(&format!(
            "      - {{match: {{path_prefix: /svc{i}/, methods: [GET, POST], headers: {{x-env: prod}}}}, cluster: app}}\n"
        ));
    }
    s.push_str("clusters:\n  - name: app\n    endpoints:\n");
    for i in 0..endpoints {
        s.push_str(&format!(
            "      - {{address: 127.0.{}.{}:9000}}\n",
            i / 250,
            1 + i % 250
        ));
    }
    s
}

fn bench_route(c: &mut Criterion) {
    let metrics = Metrics::new().unwrap();
    let slo = ninefold::slo::Engine::new(
        None,
        std::time::Duration::from_secs(10),
        Arc::new(ninefold::slo::engine::SystemClock),
        metrics.slo_alert_firing.clone(),
    );
    let mut g = c.benchmark_group("route");
    for n in [1usize, 20, 1_000, 10_000] {
        let cfg = ninefold::config::parse("bench.yaml", &config(n), Path::new(".")).unwrap();
        let slots = ninefold::snapshot::Slots::default();
        let (snap, _) = Snapshot::build(Arc::new(cfg), None, &metrics, &slo, &slots).unwrap();
        let listener = &snap.listeners[0];
        // As the own HTTP/1.1 engine hands it over: fields as raw lines. The request
        // matches the last route.
        let raw = format!(
            "GET /svc{}/items?id=4 HTTP/1.1\r\nHost: a.example\r\nx-env: prod\r\n\r\n",
            n - 1
        );
        let h = ninefold::h1::parse::parse_request(
            raw.as_bytes(),
            &ninefold::config::Limits::default(),
        )
        .unwrap()
        .unwrap();
        let head = ninefold::message::Head::from_raw(h.parts, h.fields);
        g.bench_function(format!("last of {n} routes"), |b| {
            b.iter(|| route::resolve(black_box(listener), black_box(&head)).map(|r| r.timeout))
        });
        if n == 1_000 {
            // The linear first-match scan the index replaced, as a baseline.
            g.bench_function(format!("last of {n} routes, linear scan"), |b| {
                b.iter(|| {
                    black_box(listener)
                        .routes
                        .iter()
                        .find(|r| route::matches(&r.matcher, black_box(&head)))
                        .map(|r| r.timeout)
                })
            });
        }
    }
    g.finish();
}

fn bench_pick(c: &mut Criterion) {
    let weights = [1u32, 2, 1, 3, 1, 1, 2, 1];
    let names: Vec<String> = (0..8).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
    let load = |i: usize| i as u32;
    let rr = Balancer::round_robin(&weights);
    let random = Balancer::random(&weights);
    let least = Balancer::least_request(&weights);
    let maglev = Balancer::maglev(&names, &weights);
    let naive = Mutex::new(0usize);
    let mut g = c.benchmark_group("pick of 8 weighted endpoints");
    g.bench_function("baseline: mutex round robin", |b| {
        b.iter(|| {
            let mut n = naive.lock().unwrap();
            *n = (*n + 1) % 8;
            black_box(*n)
        })
    });
    g.bench_function("round_robin", |b| b.iter(|| rr.pick(None, load)));
    g.bench_function("random", |b| b.iter(|| random.pick(None, load)));
    g.bench_function("least_request", |b| b.iter(|| least.pick(None, load)));
    g.bench_function("consistent_hash (with key hashing)", |b| {
        b.iter(|| maglev.pick(Some(hash_bytes(0, black_box(b"user-12345"))), load))
    });
    g.finish();
}

/// The selection step of a request, with and without an endpoint out, against the
/// bare balancer it ends in; and the budget's count of a request.
fn bench_select(c: &mut Criterion) {
    use ninefold::upstream::select::Tried;
    let mut yaml = config(1);
    yaml = yaml.replace("    endpoints:\n", "    local_zone: a\n    endpoints:\n");
    let cfg = ninefold::config::parse("bench.yaml", &yaml, Path::new(".")).unwrap();
    let metrics = Metrics::new().unwrap();
    let slo = ninefold::slo::Engine::new(
        None,
        std::time::Duration::from_secs(10),
        Arc::new(ninefold::slo::engine::SystemClock),
        metrics.slo_alert_firing.clone(),
    );
    let slots = ninefold::snapshot::Slots::default();
    let (snap, _) = Snapshot::build(Arc::new(cfg), None, &metrics, &slo, &slots).unwrap();
    let cluster = &snap.clusters[0];
    let route = &snap.listeners[0].routes[0];
    let tried = Tried::default();
    let mut g = c.benchmark_group("select of 8 endpoints");
    g.bench_function("baseline: balancer alone", |b| {
        b.iter(|| cluster.select.balancer.pick(None, |_| 0))
    });
    g.bench_function("all available", |b| {
        b.iter(|| cluster.select.pick(None, None, black_box(&tried), 1, 0.5))
    });
    cluster.select.endpoints[3].set_drained(true, 1);
    g.bench_function("one drained", |b| {
        b.iter(|| cluster.select.pick(None, None, black_box(&tried), 1, 0.5))
    });
    g.bench_function("retry budget: count a request", |b| {
        b.iter(|| route.budget.request(black_box(1_000)))
    });
    g.finish();

    // What grows with the endpoints of a cluster: the eligibility pass reads each
    // endpoint's live state once per pick (and above 256 endpoints its bitset is on
    // the heap); the balancer's own pick does not grow.
    let cfg = ninefold::config::parse("bench.yaml", &config_eps(1, 1_000), Path::new(".")).unwrap();
    let (snap, _) = Snapshot::build(Arc::new(cfg), None, &metrics, &slo, &slots).unwrap();
    let cluster = &snap.clusters[0];
    let mut g = c.benchmark_group("select of 1000 endpoints");
    g.bench_function("baseline: balancer alone", |b| {
        b.iter(|| cluster.select.balancer.pick(None, |_| 0))
    });
    g.bench_function("all available", |b| {
        b.iter(|| cluster.select.pick(None, None, black_box(&tried), 1, 0.5))
    });
    g.finish();
}

/// The SLI step of a request: classify the answer, count it (what `slo:` on a route
/// adds to the data path, besides choosing between two pre-resolved counters).
fn bench_slo(c: &mut Criterion) {
    use ninefold::slo::{Counters, Indicator};
    use std::hint::black_box;
    use std::time::Duration;
    let counters = Counters::default();
    let avail = Indicator::Availability {
        good: vec![(200, 200), (201, 201), (204, 204)],
    };
    c.bench_function("slo: classify + count (availability, 3 codes)", |b| {
        b.iter(|| {
            let good = avail.is_good(black_box(204), Duration::from_micros(900), false);
            counters.record(good);
        })
    });
    let metrics = Metrics::new().unwrap();
    let plain = metrics.route(&"l".into(), &"r".into(), &"c".into(), None);
    let with_slo = metrics.route(&"l".into(), &"r2".into(), &"c".into(), Some("s"));
    c.bench_function("metrics: record without slo", |b| {
        b.iter(|| plain.record(black_box(200), SloResult::Good, 0.0009))
    });
    c.bench_function("metrics: record with slo (good)", |b| {
        b.iter(|| with_slo.record(black_box(200), black_box(SloResult::Good), 0.0009))
    });
}

/// The stale cache of one route: a store (the whole path a cacheable answer takes:
/// `pending`, its 1 KiB body, `commit`) into a full cache, so each store evicts one
/// answer; a lookup that hits; then both, alternately, on two threads at once (each
/// figure is the wall time of one store or lookup on each thread), on one route and on
/// a route each (nothing shared, as with a cache per worker); each beside a bare
/// `Mutex<HashMap>` doing the same inserts and gets.
fn bench_stale(c: &mut Criterion) {
    use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
    use ninefold::config::StaleConfig;
    use ninefold::fallback::RouteFallback;
    use std::collections::HashMap;
    use std::time::Duration;
    use tokio::time::Instant;

    const URLS: usize = 2000;
    let cfg = StaleConfig {
        max_age: Duration::from_secs(300),
        max_entries: URLS / 2,
        max_bytes: 16 << 20,
        private: false,
    };
    let served = prometheus::IntCounter::new("x", "x").unwrap();
    let route = |id: &str| RouteFallback::<()> {
        cache_id: id.into(),
        cluster: None,
        stale: Some(cfg),
        static_answer: None,
        methods: vec![Method::GET, Method::HEAD],
        served: [served.clone(), served.clone(), served.clone()],
    };
    let uris: Vec<Uri> = (0..URLS)
        .map(|i| format!("/catalog/items/{i}?page=2").parse().unwrap())
        .collect();
    let mut req = HeaderMap::new();
    req.insert("host", HeaderValue::from_static("shop.example"));
    req.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    req.insert("accept", HeaderValue::from_static("*/*"));
    let mut resp = HeaderMap::new();
    resp.insert("content-type", HeaderValue::from_static("application/json"));
    resp.insert("content-length", HeaderValue::from_static("1024"));
    resp.insert("cache-control", HeaderValue::from_static("max-age=60"));
    resp.insert("etag", HeaderValue::from_static("\"5f3c9a\""));
    resp.insert(
        "date",
        HeaderValue::from_static("Mon, 04 May 2026 10:00:00 GMT"),
    );
    let body = vec![b'x'; 1024];
    let now = Instant::now();
    let store = |f: &RouteFallback<()>, i: usize| {
        let p = f.pending(&Method::GET, &uris[i % URLS], &req, StatusCode::OK, &resp);
        if let Some(mut p) = p {
            p.data(black_box(&body));
            p.commit(now);
        }
    };
    let lookup = |f: &RouteFallback<()>, i: usize| {
        f.stale(&Method::GET, &uris[i % URLS], &req, now)
            .map(|r| r.status())
    };
    let naive: Mutex<HashMap<Box<[u8]>, bytes::Bytes>> = Mutex::new(HashMap::new());
    let keys: Vec<Box<[u8]>> = uris
        .iter()
        .map(|u| format!("GET {u}").into_bytes().into_boxed_slice())
        .collect();
    let naive_store = |i: usize| {
        let b = bytes::Bytes::copy_from_slice(black_box(&body));
        naive.lock().unwrap().insert(keys[i % URLS].clone(), b);
    };
    let naive_lookup = |i: usize| naive.lock().unwrap().get(&keys[i % URLS]).cloned();
    let mut g = c.benchmark_group("stale cache of one route (1000 entries, 1 KiB answers)");
    let f = route("bench/store");
    let mut i = 0;
    g.bench_function("store into a full cache (pending + body + commit)", |b| {
        b.iter(|| {
            i += 1;
            store(&f, i)
        })
    });
    let f = route("bench/lookup");
    for i in 0..URLS / 2 {
        store(&f, i);
    }
    let mut i = 0;
    g.bench_function("lookup, a hit", |b| {
        b.iter(|| {
            i = (i + 1) % (URLS / 2);
            lookup(&f, i)
        })
    });
    g.bench_function("baseline: mutex map, store", |b| {
        b.iter(|| {
            i += 1;
            naive_store(i)
        })
    });
    g.bench_function("baseline: mutex map, lookup", |b| {
        b.iter(|| {
            i += 1;
            naive_lookup(i)
        })
    });
    g.finish();

    // Two long-lived threads (as two workers), each doing `iters` turns per sample: a
    // store on even turns, on odd ones a lookup of what it just stored (a hit, unless
    // the other thread's stores evicted it). The figure is the wall time over `iters`.
    // The caches fill during the warm-up, from these threads: answers the main thread
    // stored would be freed by them, and glibc's per-thread caches would then pass
    // chunks of the main thread's arena around, a cost no worker has. So the routes
    // each thread keeps to itself come first, then the shared route, where one
    // thread's stores evict and free the other's answers: that cost is part of sharing.
    let shared = route("bench/two");
    let own = [route("bench/own0"), route("bench/own1")];
    // `op(thread, key, store)`.
    type Op<'a> = &'a (dyn Fn(usize, usize, bool) + Sync);
    let ops: [(&str, Op); 3] = [
        // Nothing shared: each thread on a route of its own, as with a cache per
        // worker. What sharing costs is the gap to the next figure.
        ("a route each, store and lookup in turn", &|t, k, st| {
            if st {
                store(&own[t], k)
            } else {
                black_box(lookup(&own[t], k));
            }
        }),
        ("one route, store and lookup in turn", &|_, k, st| {
            if st {
                store(&shared, k)
            } else {
                black_box(lookup(&shared, k));
            }
        }),
        ("baseline: mutex map, store and get in turn", &|_, k, st| {
            if st {
                naive_store(k)
            } else {
                black_box(naive_lookup(k));
            }
        }),
    ];
    let mut g = c.benchmark_group("stale cache, two threads at once");
    let job = Mutex::new((0u64, None::<usize>));
    let (go, done) = (std::sync::Barrier::new(3), std::sync::Barrier::new(3));
    std::thread::scope(|s| {
        for t in 0..2usize {
            let (job, go, done, ops) = (&job, &go, &done, &ops);
            s.spawn(move || loop {
                go.wait();
                let (iters, Some(which)) = *job.lock().unwrap() else {
                    return;
                };
                for n in 0..iters as usize {
                    (ops[which].1)(t, n / 2 * 7 + t * 1000, n % 2 == 0);
                }
                done.wait();
            });
        }
        for (which, (name, _)) in ops.iter().enumerate() {
            g.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    *job.lock().unwrap() = (iters, Some(which));
                    let start = std::time::Instant::now();
                    go.wait();
                    done.wait();
                    start.elapsed()
                })
            });
        }
        *job.lock().unwrap() = (0, None);
        go.wait();
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_route,
    bench_pick,
    bench_select,
    bench_slo,
    bench_stale
);
criterion_main!(benches);
