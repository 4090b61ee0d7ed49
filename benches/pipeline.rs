//! What do the data path's per-request decisions cost? Route matching over a listener
//! of 20 routes; one endpoint pick per balancer beside a naive baseline (a
//! `Mutex`-guarded round robin, what a first version would write), to show that the
//! lock-free picks stay in the tens of nanoseconds; the whole selection step (live
//! state, priority levels, zones, balancer) with every endpoint available and with one
//! out, beside the bare balancer; the retry budget's per-request count; the SLI step.
//! Route matching has no baseline: it is a loop over the routes.

use criterion::{criterion_group, criterion_main, Criterion};
use ninefold::metrics::Metrics;
use ninefold::proxy::route;
use ninefold::snapshot::Snapshot;
use ninefold::upstream::balance::{hash_bytes, Balancer};
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn config(routes: usize) -> String {
    let mut s = String::from("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    routes:\n");
    for i in 0..routes {
        s.push_str(&format!(
            "      - {{match: {{path_prefix: /svc{i}/, methods: [GET, POST], headers: {{x-env: prod}}}}, cluster: app}}\n"
        ));
    }
    s.push_str("clusters:\n  - name: app\n    endpoints:\n");
    for i in 0..8 {
        s.push_str(&format!("      - {{address: 127.0.0.1:{}}}\n", 9000 + i));
    }
    s
}

fn bench_route(c: &mut Criterion) {
    let cfg = ninefold::config::parse("bench.yaml", &config(20), Path::new(".")).unwrap();
    let metrics = Metrics::new().unwrap();
    let slo = ninefold::slo::Engine::new(
        None,
        std::time::Duration::from_secs(10),
        Arc::new(ninefold::slo::engine::SystemClock),
        metrics.slo_alert_firing.clone(),
    );
    let slots = ninefold::snapshot::Slots::default();
    let (snap, _) = Snapshot::build(Arc::new(cfg), None, &metrics, &slo, &slots).unwrap();
    let listener = &snap.listeners[0];
    // As the own HTTP/1.1 engine hands it over: fields as raw lines.
    let h = ninefold::h1::parse::parse_request(
        b"GET /svc19/items?id=4 HTTP/1.1\r\nHost: a.example\r\nx-env: prod\r\n\r\n",
        &ninefold::config::Limits::default(),
    )
    .unwrap()
    .unwrap();
    let head = ninefold::message::Head::from_raw(h.parts, h.fields);
    c.bench_function("route: last of 20 routes", |b| {
        b.iter(|| route::resolve(black_box(listener), black_box(&head)).map(|r| r.timeout))
    });
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
    let plain = metrics.route("l", "r", "c", None);
    let with_slo = metrics.route("l", "r2", "c", Some("s"));
    c.bench_function("metrics: record without slo", |b| {
        b.iter(|| plain.record(black_box(200), true, 0.0009))
    });
    c.bench_function("metrics: record with slo (good)", |b| {
        b.iter(|| with_slo.record(black_box(200), black_box(true), 0.0009))
    });
}

criterion_group!(benches, bench_route, bench_pick, bench_select, bench_slo);
criterion_main!(benches);
