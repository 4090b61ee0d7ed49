//! Cells: the seed's four cells on four clusters, keyed by `x-user-id`; one cell goes
//! down (its backend stops listening, its TCP health check fails) and the tests check
//! isolation (`fail`), evacuation and return (`evacuate`), and the missing key.

use crate::support::*;
use std::collections::HashMap;
use std::time::Duration;

const USERS: usize = 100;

/// Four backends `c1`..`c4`, each the only endpoint of cluster `cell-N`, checked by TCP
/// every 100 ms so that a stopped one is down within a few hundred milliseconds.
fn config(backends: &[Backend], on_down: &str, extra: &str) -> String {
    let mut clusters = String::new();
    let mut members = String::new();
    for (i, b) in backends.iter().enumerate() {
        let n = i + 1;
        clusters.push_str(&format!(
            "  - name: cell-{n}\n    endpoints: [{{address: \"{}\"}}]\n    health_check: {{tcp: {{}}, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}}\n",
            b.addr
        ));
        members.push_str(&format!("      - {{name: cell-{n}, cluster: cell-{n}}}\n"));
    }
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 2
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: app
        match: {{path_prefix: /}}
        cells: users
        retry: {{attempts: 1}}
cells:
  - name: users
    key: {{header: x-user-id}}
    on_cell_down: {on_down}
{extra}    members:
{members}clusters:
{clusters}"
    )
}

async fn four() -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 1..=4 {
        v.push(Backend::start(&format!("c{i}")).await);
    }
    v
}

/// Which backend serves each user now.
async fn homes(gw: &Gateway) -> Vec<Answer> {
    let c = client();
    let mut out = Vec::new();
    for u in 0..USERS {
        let req = hyper::Request::get(gw.url("web", "/"))
            .header("x-user-id", format!("user-{u}"))
            .body(empty())
            .unwrap();
        out.push(send(&c, req).await);
    }
    out
}

fn backend_of(a: &Answer) -> String {
    a.header("x-backend").unwrap_or("").to_owned()
}

async fn cell_state(gw: &Gateway, cell: &str) -> (String, bool) {
    let s = get(&gw.admin_url("/api/v1/state")).await.json();
    let m = s["cells"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == cell)
        .unwrap()
        .clone();
    (
        m["state"].as_str().unwrap().to_owned(),
        m["evacuated"].as_bool().unwrap(),
    )
}

async fn wait_state(gw: &Gateway, cell: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if cell_state(gw, cell).await.0 == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{cell} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every user is served by one backend, and each cell gets some users.
fn spread(before: &[Answer]) -> HashMap<String, usize> {
    let mut per: HashMap<String, usize> = HashMap::new();
    for a in before {
        assert_eq!(a.status, 200, "{a:?}");
        *per.entry(backend_of(a)).or_default() += 1;
    }
    assert_eq!(per.len(), 4, "{per:?}");
    per
}

#[tokio::test]
async fn fail_isolates_a_dead_cell_and_the_others_keep_full_success() {
    let backends = four().await;
    let gw = Gateway::start(&config(&backends, "fail", ""));
    for i in 1..=4 {
        wait_state(&gw, &format!("cell-{i}"), "up").await;
    }
    let before = homes(&gw).await;
    let per = spread(&before);

    backends[2].stop();
    wait_state(&gw, "cell-3", "down").await;
    assert_eq!(cell_state(&gw, "cell-3").await, ("down".into(), false));

    let after = homes(&gw).await;
    let (mut ok, mut down) = (0, 0);
    for (b, a) in before.iter().zip(&after) {
        if backend_of(b) == "c3" {
            assert_eq!(a.status, 503, "{a:?}");
            assert_eq!(a.header("x-ninefold-reason"), Some("cell-down"));
            down += 1;
        } else {
            // 100% success on their own cell.
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(backend_of(a), backend_of(b), "a live cell's user moved");
            ok += 1;
        }
    }
    assert_eq!(down, per["c3"]);
    assert_eq!(ok + down, USERS);
    eprintln!(
        "fail: {ok} users on live cells all 200, {down} users of the dead cell 503 cell-down"
    );

    let m = get(&gw.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("ninefold_cell_available{cells=\"users\",cell=\"cell-3\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("ninefold_cell_available{cells=\"users\",cell=\"cell-1\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ninefold_cell_requests_total{{cell=\"cell-3\",cells=\"users\",outcome=\"cell_down\"}} {down}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn evacuate_rehomes_only_the_dead_cells_users_and_they_return() {
    let mut backends = four().await;
    let gw = Gateway::start(&config(&backends, "evacuate", ""));
    for i in 1..=4 {
        wait_state(&gw, &format!("cell-{i}"), "up").await;
    }
    let before = homes(&gw).await;
    spread(&before);

    let addr = backends[2].addr;
    backends[2].stop();
    wait_state(&gw, "cell-3", "down").await;
    assert_eq!(cell_state(&gw, "cell-3").await, ("down".into(), true));

    let during = homes(&gw).await;
    let mut moved = 0;
    for (b, a) in before.iter().zip(&during) {
        assert_eq!(a.status, 200, "{a:?}");
        if backend_of(b) == "c3" {
            assert_ne!(backend_of(a), "c3");
            moved += 1;
        } else {
            assert_eq!(backend_of(a), backend_of(b), "a live cell's user moved");
        }
    }
    eprintln!("evacuate: {moved} of {USERS} users moved, the others stayed home");

    // The cell comes back on the same address: its users go home.
    backends.remove(2);
    backends.insert(2, Backend::start_on("c3", addr).await);
    wait_state(&gw, "cell-3", "up").await;
    let after = homes(&gw).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(backend_of(a), backend_of(b), "not back home");
    }
}

#[tokio::test]
async fn a_request_without_the_key_gets_400_unless_a_default_cell() {
    let backends = four().await;
    let gw = Gateway::start(&config(&backends, "fail", ""));
    let r = get(&gw.url("web", "/")).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("x-ninefold-reason"), Some("no-cell-key"));
    drop(gw);

    let gw = Gateway::start(&format!(
        "access_log: text\n{}",
        config(&backends, "fail", "    default: cell-2\n")
    ));
    let r = get(&gw.url("web", "/")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("c2"));
    // The access log names the cell's cluster, not a stand-in.
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stdout()
            .contains("cluster=cell-2"))
        .await,
        "{}",
        gw.stdout()
    );
}

#[tokio::test]
async fn an_unknown_default_cell_is_a_config_error() {
    let backends = four().await;
    let (code, out, err) = check(&config(&backends, "fail", "    default: cell-9\n"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cells[0].default: unknown cell \"cell-9\""),
        "{err}"
    );
}
