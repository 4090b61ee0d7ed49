//! The fallback ladder: another cluster on a connect failure, the last good answer
//! (stale) on a connect failure, a 5xx and a timeout, and not past `max_age`, a static
//! answer, never for a POST, and never one user's answer to another user.
//!
//! One worker, except where the test is about workers: the stale cache is one per
//! process, and `stale_answers_do_not_depend_on_the_worker_a_connection_landed_on`
//! checks it with four.

use crate::support::*;
use std::time::Duration;

/// One route `main` to cluster `app` at `primary`, with `fallback` (a YAML map) and
/// `clusters` appended.
fn config(primary: impl std::fmt::Display, route: &str, clusters: &str) -> String {
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: main
        match: {{path_prefix: /}}
        cluster: app
        timeout: 500ms
        retry: {{attempts: 1}}
{route}
clusters:
  - name: app
    endpoints: [{{address: \"{primary}\"}}]
{clusters}"
    )
}

fn degraded(a: &Answer) -> Option<&str> {
    a.header("x-ninefold-degraded")
}

#[tokio::test]
async fn another_cluster_answers_on_connect_failure_but_not_a_post() {
    let (_hold, refusing) = refusing_endpoint();
    let backup = Backend::start("backup").await;
    let gw = Gateway::start(&config(
        refusing,
        "        fallback: {cluster: backup}",
        &format!(
            "  - name: backup\n    endpoints: [{{address: \"{}\"}}]\n",
            backup.addr
        ),
    ));
    let r = get(&gw.url("web", "/x")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("backup"));
    assert_eq!(degraded(&r), Some("cluster"));

    // A POST never gets a made-up answer, not even another cluster's.
    let p = post(&gw.url("web", "/x"), None).await;
    assert_eq!(p.status, 502, "{p:?}");
    assert_eq!(degraded(&p), None);
    assert_eq!(backup.hits(), 1);

    let m = get(&gw.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains(
            "ninefold_fallback_total{kind=\"cluster\",listener=\"web\",route=\"main\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn stale_is_served_on_5xx_and_on_timeout() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(
        b.addr,
        "        fallback: {stale: {max_age: 1m}}",
        "",
    ));
    let url = gw.url("web", "/page");
    let fresh = get(&url).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(degraded(&fresh), None);

    b.fail_with(500);
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(degraded(&r), Some("stale"));
    assert_eq!(r.body, fresh.body);

    // A URL never fetched has nothing stale: the upstream's 5xx passes.
    let other = get(&gw.url("web", "/other")).await;
    assert_eq!(other.status, 500);
    assert_eq!(degraded(&other), None);

    b.fail_with(0);
    b.delay(Duration::from_secs(2));
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(degraded(&r), Some("stale"));
    assert_eq!(r.body, fresh.body);
}

#[tokio::test]
async fn stale_is_served_on_connect_failure_until_max_age() {
    let mut origin = Origin::start("o");
    let gw = Gateway::start(&config(
        origin.addr,
        "        fallback: {stale: {max_age: 1s}}",
        "",
    ));
    let url = gw.url("web", "/doc");
    let fresh = get(&url).await;
    assert_eq!(fresh.status, 200);
    let fetched = std::time::Instant::now();

    origin.kill();
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(degraded(&r), Some("stale"));
    assert_eq!(r.body, fresh.body);

    // Past max_age the failure shows (polled with a deadline, never before 1s).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&url).await;
        if degraded(&r).is_none() {
            assert!(r.status.is_server_error(), "{r:?}");
            assert!(fetched.elapsed() >= Duration::from_secs(1));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stale served past max_age"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn static_answer_from_body_file_and_never_for_a_post() {
    let (_hold, refusing) = refusing_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sorry.html");
    std::fs::write(&file, "<h1>back soon</h1>").unwrap();
    let gw = Gateway::start(&config(
        refusing,
        &format!(
            "        fallback: {{static: {{status: 503, content_type: text/html, body_file: \"{}\"}}}}",
            file.display()
        ),
        "",
    ));
    let r = get(&gw.url("web", "/")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(degraded(&r), Some("static"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(&r.body[..], b"<h1>back soon</h1>");

    let p = post(&gw.url("web", "/"), None).await;
    assert_eq!(p.status, 502, "{p:?}");
    assert_eq!(p.header("x-ninefold-reason"), Some("connect-failed"));
    assert_eq!(degraded(&p), None);
}

#[tokio::test]
async fn a_missing_body_file_is_a_config_error_with_its_line() {
    let (code, out, err) = check(&config(
        "127.0.0.1:1",
        "        fallback: {static: {status: 503, body_file: nope.html}}",
        "",
    ));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("ninefold.yaml:12:")
            && err.contains("fallback.static.body_file: cannot read \"nope.html\""),
        "{err}"
    );
}

#[tokio::test]
async fn one_users_answer_never_reaches_another_user() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(
        b.addr,
        "        fallback: {stale: {max_age: 1m}}",
        "",
    ));
    let alice = [("authorization", "Bearer alice")];
    // Answers that must not be kept: to a request with credentials, one that sets a
    // cookie, one marked private.
    let a = get_with(&gw.url("web", "/me"), &alice).await;
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains("alice"));
    let sc = get(&gw.url("web", "/sc?h=set-cookie:session=alice")).await;
    assert_eq!(sc.header("set-cookie"), Some("session=alice"));
    let pv = get(&gw.url("web", "/pv?h=cache-control:private")).await;
    assert_eq!(pv.status, 200);

    b.fail_with(503);
    for (path, headers) in [
        ("/me", &[][..]),
        ("/me", &[("authorization", "Bearer bob")][..]),
        ("/me", &alice[..]),
        ("/sc?h=set-cookie:session=alice", &[][..]),
        ("/pv?h=cache-control:private", &[][..]),
    ] {
        let r = get_with(&gw.url("web", path), headers).await;
        assert_eq!(r.status, 503, "{path} {headers:?}: {r:?}");
        assert_eq!(degraded(&r), None, "{path} {headers:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("alice"));
    }
}

#[tokio::test]
async fn a_private_stale_cache_serves_each_user_only_their_own_answer() {
    let b = Backend::start("b").await;
    let gw = Gateway::start(&config(
        b.addr,
        "        fallback: {stale: {max_age: 1m, private: true}}",
        "",
    ));
    let alice = [("authorization", "Bearer alice")];
    let a = get_with(&gw.url("web", "/me"), &alice).await;
    assert!(String::from_utf8_lossy(&a.body).contains("alice"));

    b.fail_with(503);
    let again = get_with(&gw.url("web", "/me"), &alice).await;
    assert_eq!(degraded(&again), Some("stale"));
    assert_eq!(again.body, a.body);
    for headers in [&[("authorization", "Bearer bob")][..], &[][..]] {
        let r = get_with(&gw.url("web", "/me"), headers).await;
        assert_eq!(r.status, 503, "{headers:?}: {r:?}");
        assert_eq!(degraded(&r), None);
    }
}

/// Issue 22: with a stale cache per worker, a URL just served got the static answer
/// when the next connection landed on another worker. Four workers, and every request
/// on a connection of its own, so that the kernel spreads them over the workers: when
/// the upstream fails, every worker serves the answer another one stored.
#[tokio::test]
async fn stale_answers_do_not_depend_on_the_worker_a_connection_landed_on() {
    const URLS: usize = 16;
    const READS: usize = 8;
    let b = Backend::start("b").await;
    let yaml = config(
        b.addr,
        "        fallback: {stale: {max_age: 1m}, static: {status: 503, body: static}}",
        "",
    )
    .replace("workers: 1", "workers: 4");
    let gw = Gateway::start(&yaml);
    let paths: Vec<String> = (0..URLS).map(|i| format!("/item/{i}")).collect();
    let mut fresh = Vec::new();
    for p in &paths {
        let r = get(&gw.url("web", p)).await;
        assert_eq!(r.status, 200, "{p}: {r:?}");
        assert_eq!(degraded(&r), None, "{p}");
        fresh.push(r.body);
    }

    b.fail_with(500);
    // Each URL again, on READS new connections at once.
    let mut reads = tokio::task::JoinSet::new();
    for (i, p) in paths.iter().enumerate() {
        for _ in 0..READS {
            let url = gw.url("web", p);
            reads.spawn(async move { (i, get(&url).await) });
        }
    }
    let mut served = 0;
    while let Some(done) = reads.join_next().await {
        let (i, r) = done.unwrap();
        assert_eq!(degraded(&r), Some("stale"), "{}: {r:?}", paths[i]);
        assert_eq!(r.status, 200, "{}", paths[i]);
        assert_eq!(r.body, fresh[i], "{}", paths[i]);
        served += 1;
    }
    assert_eq!(served, URLS * READS);
}
