//! Load balancing end to end: real requests through the gateway, hits counted at the
//! backends.

use crate::support::*;

fn cluster_yaml(backends: &[&Backend], lb: &str, extra: &str, weights: &[u32]) -> String {
    let eps: String = backends
        .iter()
        .zip(weights.iter().chain(std::iter::repeat(&1)))
        .map(|(b, w)| format!("      - {{address: \"{}\", weight: {w}}}\n", b.addr))
        .collect();
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 2
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes: [{{match: {{path_prefix: /}}, cluster: app}}]
clusters:
  - name: app
    lb: {lb}
{extra}    endpoints:
{eps}"
    )
}

#[tokio::test]
async fn weighted_round_robin_is_exact() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gateway::start(&cluster_yaml(&[&a, &b], "round_robin", "", &[3, 1]));
    get_ok_n(&gw.url("web", "/"), 400).await;
    assert_eq!((a.hits(), b.hits()), (300, 100));
}

#[tokio::test]
async fn random_and_least_request_use_every_endpoint() {
    for lb in ["random", "least_request"] {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let c3 = Backend::start("c").await;
        let gw = Gateway::start(&cluster_yaml(&[&a, &b, &c3], lb, "", &[1, 1, 1]));
        get_ok_n(&gw.url("web", "/"), 300).await;
        for (n, h) in [("a", a.hits()), ("b", b.hits()), ("c", c3.hits())] {
            assert!(h > 40, "{lb}: backend {n} got only {h} of 300");
        }
    }
}

#[tokio::test]
async fn least_request_avoids_the_busy_endpoint() {
    let slow = Backend::start("slow").await;
    let fast = Backend::start("fast").await;
    let gw = Gateway::start(&cluster_yaml(&[&slow, &fast], "least_request", "", &[1, 1]));
    // Pin 8 long requests: P2C puts at most a few on one endpoint before the other wins.
    let mut pinned = Vec::new();
    for _ in 0..8 {
        let url = gw.url("web", "/slow/1500");
        pinned.push(tokio::spawn(async move { get(&url).await.status }));
    }
    assert!(
        eventually(std::time::Duration::from_secs(5), || slow.hits()
            + fast.hits()
            >= 8)
        .await
    );
    let (s0, f0) = (slow.hits(), fast.hits());
    // Both got some of them: each pick compares the two in-flight counts.
    assert!(s0 >= 2 && f0 >= 2, "in-flight split {s0}/{f0}");
    for p in pinned {
        assert_eq!(p.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn consistent_hash_is_sticky_by_header_and_cookie() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    for (extra, mk) in [
        ("    hash_on: {header: x-user-id}\n", 0),
        ("    hash_on: {cookie: uid}\n", 1),
    ] {
        let gw = Gateway::start(&cluster_yaml(
            &[&a, &b, &c],
            "consistent_hash",
            extra,
            &[1, 1, 1],
        ));
        let mut seen = std::collections::HashSet::new();
        for user in 0..30 {
            let hv = if mk == 0 {
                format!("{user}")
            } else {
                format!("theme=dark; uid={user}")
            };
            let hn = if mk == 0 { "x-user-id" } else { "cookie" };
            let first = get_with(&gw.url("web", "/"), &[(hn, &hv)]).await;
            let who = first.header("x-backend").unwrap().to_owned();
            for _ in 0..3 {
                let again = get_with(&gw.url("web", "/"), &[(hn, &hv)]).await;
                assert_eq!(again.header("x-backend").unwrap(), who, "user {user} moved");
            }
            seen.insert(who);
        }
        assert_eq!(seen.len(), 3, "30 users spread over all endpoints");
    }
}

#[tokio::test]
async fn consistent_hash_keeps_most_keys_when_an_endpoint_goes() {
    let bs = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    ];
    let all: Vec<&Backend> = bs.iter().collect();
    let extra = "    hash_on: {header: x-user-id}\n";
    let gw = Gateway::start(&cluster_yaml(&all, "consistent_hash", extra, &[1; 4]));
    let users = 200;
    let mut before = Vec::new();
    for u in 0..users {
        let r = get_with(&gw.url("web", "/"), &[("x-user-id", &format!("u{u}"))]).await;
        before.push(r.header("x-backend").unwrap().to_owned());
    }
    // Remove "d" by reload.
    let yaml = cluster_yaml(&all[..3], "consistent_hash", extra, &[1; 3]);
    gw.rewrite(&yaml);
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut moved = 0;
    for (u, was) in before.iter().enumerate() {
        let r = get_with(&gw.url("web", "/"), &[("x-user-id", &format!("u{u}"))]).await;
        let now = r.header("x-backend").unwrap();
        if was != "d" && now != was {
            moved += 1;
        }
        assert_ne!(now, "d");
    }
    // Keys that were not on "d" stay where they were (Maglev moves ~1/N; allow a few).
    assert!(
        moved <= users / 20,
        "{moved} of {users} keys not on the removed endpoint moved"
    );
}
