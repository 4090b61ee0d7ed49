//! The dashboard in a real browser: Debian's `chromium`, headless, driven over the
//! Chrome DevTools Protocol (a WebSocket, with the tokio-tungstenite the tests already
//! use; no browser download, no driver). Three real origin processes behind a gateway:
//! one is SIGKILLed and its row must come to say so, in words, with the reason; then,
//! with the admin token typed into the page, another is drained from the page, and
//! `/api/v1/state` must say it is drained. A screenshot is saved (to
//! `docs/dashboard.png` with `NINEFOLD_SCREENSHOT=1`). A second test renders 500
//! endpoints and reports the render time.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium, killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next: u64,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<&'static str> {
    for b in ["chromium", "chromium-browser"] {
        if Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(b);
        }
    }
    if std::env::var_os("NINEFOLD_REQUIRE_CHROMIUM").is_some() {
        panic!("chromium is required (scripts/test installs Debian's chromium)");
    }
    skipped("the browser tests: chromium is not installed (scripts/test installs it)");
    None
}

impl Browser {
    /// Starts Chromium and opens one page (blank), attached.
    async fn start(bin: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr;
        // the rest of stderr is drained so the browser never blocks on it.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium prints its DevTools address");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next: 0,
            session: String::new(),
        };
        let target = b
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        b
    }

    /// Sends one DevTools command (to the page once attached) and waits for its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .expect("the DevTools socket is open")
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `js` until it returns true, or fails saying `what` with the page's text.
    async fn until(&mut self, what: &str, js: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(js).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "{what}: timed out; the page says:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn open(&mut self, url: &str) {
        self.call("Page.enable", json!({})).await;
        self.call("Page.navigate", json!({"url": url})).await;
    }

    async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        decode_base64(r["data"].as_str().unwrap())
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | val(*c) << (18 - 6 * i));
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// The row of `endpoint`, as the page shows it: `[state word, why]`, or null.
fn row_js(endpoint: &str) -> String {
    format!(
        r#"(() => {{
            const r = document.querySelector('tr.endpoint[data-endpoint="{endpoint}"]');
            if (!r) return null;
            const w = r.querySelector('.state-word'), y = r.querySelector('.why');
            return [w ? w.textContent.trim() : '', y ? y.textContent.trim() : ''];
        }})()"#
    )
}

#[tokio::test]
async fn the_dashboard_shows_a_killed_backend_down_with_its_reason_and_drains_from_the_page() {
    let Some(chrome) = chromium() else { return };
    const TOKEN: &str = "page-token";
    let mut origins: Vec<Origin> = ["a", "b", "c"].iter().map(|n| Origin::start(n)).collect();
    let eps: String = origins
        .iter()
        .zip(["z1", "z1", "z2"])
        .map(|(o, z)| format!("      - {{address: \"{}\", zone: {z}}}\n", o.addr))
        .collect();
    let g = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
workers: 1
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: api, match: {{path_prefix: /}}, cluster: app, slo: api-availability}}
clusters:
  - name: app
    health_check: {{http: {{path: /health}}, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2}}
    circuit_breaker: {{scope: endpoint}}
    endpoints:
{eps}slos:
  - {{name: api-availability, objective: 99.9%, window: 30d}}
"
    ));
    // Some traffic, so the figures have something to show.
    get_ok_n(&g.url("web", "/"), 30).await;

    let mut b = Browser::start(chrome).await;
    b.open(&g.admin_url("/")).await;
    let up = |o: &Origin| {
        format!(
            "(() => {{ const r = {}; return !!r && r[0] === 'up'; }})()",
            row_js(&o.addr.to_string())
        )
    };
    for o in &origins {
        b.until(
            &format!("{} shows up", o.name),
            &up(o),
            Duration::from_secs(20),
        )
        .await;
    }
    // Read-only without the token: no action buttons.
    let buttons = b
        .eval("document.querySelectorAll('button[data-action=\"drain\"]:not([disabled])').length")
        .await;
    assert_eq!(buttons, json!(0), "actions need the token");

    // Kill one backend for real; its row must say down (or ejected) with the reason.
    let dead = origins[0].addr.to_string();
    origins[0].kill();
    let down = format!(
        "(() => {{ const r = {}; return !!r && (r[0] === 'down' || r[0] === 'ejected') && r[1].length > 0; }})()",
        row_js(&dead)
    );
    b.until(
        "the killed backend's row says down",
        &down,
        Duration::from_secs(20),
    )
    .await;
    let row = b.eval(&row_js(&dead)).await;
    eprintln!("dashboard: the killed backend's row says {row}");
    let why = row[1].as_str().unwrap();
    assert!(why.contains("health") || why.contains("eject"), "{why}");
    // Its colour comes with it: the row carries the state for the style sheet.
    let state_attr = b
        .eval(&format!(
            "document.querySelector('tr.endpoint[data-endpoint=\"{dead}\"]').dataset.state"
        ))
        .await;
    assert!(
        state_attr == json!("down") || state_attr == json!("ejected"),
        "{state_attr}"
    );

    // The token, typed once into the page, unlocks the actions.
    b.eval("document.getElementById('token').focus()").await;
    b.call("Input.insertText", json!({"text": TOKEN})).await;
    b.eval("document.getElementById('token-set').click()").await;
    let target = origins[1].addr.to_string();
    let drain_button = format!(
        "document.querySelector('tr.endpoint[data-endpoint=\"{target}\"] button[data-action=\"drain\"]:not([disabled])')"
    );
    b.until(
        "the drain button appears",
        &format!("!!{drain_button}"),
        Duration::from_secs(10),
    )
    .await;
    b.eval(&format!("{drain_button}.click()")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = get(&g.admin_url("/api/v1/state")).await.json();
        let e = s["clusters"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == target.as_str())
            .cloned()
            .unwrap();
        if e["drained"] == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = format!(
        "(() => {{ const r = {}; return !!r && r[0] === 'drained'; }})()",
        row_js(&target)
    );
    b.until(
        "the drained row says drained",
        &drained,
        Duration::from_secs(10),
    )
    .await;
    // The drain was audited with the page's address, and the token is in no log.
    assert!(g.stderr().contains("audit: drain"), "{}", g.stderr());
    assert!(!g.stderr().contains(TOKEN));
    // The events list got the transitions.
    b.until(
        "the events list shows the drain",
        "!!document.querySelector('#events .event[data-kind=\"drained\"]')",
        Duration::from_secs(10),
    )
    .await;

    // Pause stops the refresh: the render count holds while paused.
    b.eval("document.getElementById('pause').click()").await;
    let pressed = b
        .eval("document.getElementById('pause').getAttribute('aria-pressed')")
        .await;
    assert_eq!(pressed, json!("true"));
    let renders = b.eval("window.ninefold.renders").await;
    tokio::time::sleep(Duration::from_millis(4500)).await; // two refresh periods, on purpose
    assert_eq!(
        b.eval("window.ninefold.renders").await,
        renders,
        "no render while paused"
    );
    b.eval("document.getElementById('pause').click()").await;

    let png = b.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&tmp, &png).unwrap();
    if std::env::var_os("NINEFOLD_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
    }
    eprintln!(
        "dashboard: screenshot at {} ({} bytes)",
        tmp.display(),
        png.len()
    );

    // The gateway stops answering: the badge turns stale, in words.
    let mut g = g;
    g.signal("KILL");
    let _ = g.wait_exit(Duration::from_secs(5));
    b.until(
        "the badge turns stale",
        "(() => { const u = document.getElementById('updated'); return u.classList.contains('stale') && u.textContent.startsWith('stale'); })()",
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test]
async fn five_hundred_endpoints_render_and_the_page_stays_usable() {
    let Some(chrome) = chromium() else { return };
    let mut eps = String::new();
    for c in 0..5 {
        eps.push_str(&format!("  - name: pool{c}\n    endpoints:\n"));
        for i in 0..100 {
            eps.push_str(&format!(
                "      - {{address: \"127.0.{c}.{}:{}\", zone: z{}}}\n",
                i % 250 + 2,
                20000 + i,
                i % 3
            ));
        }
    }
    let g = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: api, match: {{path_prefix: /}}, cluster: pool0}}
clusters:
{eps}"
    ));
    let mut b = Browser::start(chrome).await;
    b.open(&g.admin_url("/")).await;
    b.until(
        "500 rows",
        "document.querySelectorAll('tr.endpoint').length === 500 && Number(document.body.dataset.renders || 0) >= 3",
        Duration::from_secs(30),
    )
    .await;
    let ms = b.eval("window.ninefold.renderMs").await;
    let first = b.eval("window.ninefold.firstRenderAt").await;
    let state = get(&g.admin_url("/api/v1/state")).await.body.len();
    eprintln!(
        "dashboard: 500 endpoints: a refresh renders in {ms} ms; first render {first} ms after the page began to load; /api/v1/state is {state} bytes"
    );
    let ms = ms.as_f64().unwrap();
    // A loose bound: this is a usability check on a shared 2-core machine, not a
    // benchmark (a refresh every 2 s must leave the page time to answer).
    assert!(ms < 1500.0, "a refresh of 500 rows took {ms} ms");
    // Hiding healthy rows still works at that size.
    b.eval("document.getElementById('hide-up').click()").await;
    b.until(
        "healthy rows hidden",
        "[...document.querySelectorAll('tr.endpoint')].filter(r => r.offsetParent !== null).length === 0",
        Duration::from_secs(10),
    )
    .await;
}
