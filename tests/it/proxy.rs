//! Forwarding behaviour: what the upstream sees, what the client gets back, and every
//! failure mapped to a status with a reason.

use crate::support::*;
use http_body_util::BodyExt;
use hyper::Request;
use std::time::{Duration, Instant};

#[tokio::test]
async fn forwards_and_rewrites_headers() {
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let req = Request::get(gw.url("web", "/hello?x=1"))
        .header("host", "shop.example:8080")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-custom", "kept")
        .body(empty())
        .unwrap();
    let a = send(&client(), req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-backend"), Some("b1"));
    // Hop-by-hop headers of the response are gone too.
    assert_eq!(a.header("x-hop"), None);
    let j = a.json();
    let h = &j["headers"];
    assert_eq!(j["path"], "/hello");
    assert_eq!(j["query"], "x=1");
    assert_eq!(h["host"], "shop.example:8080", "Host is kept");
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 10.9.9.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example:8080");
    assert_eq!(h["x-custom"], "kept");
    assert!(
        h.get("x-secret").is_none(),
        "named in Connection: must not pass"
    );
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn h2c_and_http1_share_the_port() {
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let a = send(
        &h2c_client(),
        Request::get(gw.url("web", "/h2")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    let j = a.json();
    // Upstream is HTTP/1.1 by default; Host comes from :authority.
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["headers"]["host"], gw.addr("web").to_string());
    let a = get(&gw.url("web", "/h1")).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn no_route_is_a_404_json() {
    let b = Backend::start("b1").await;
    let yaml = simple_config(&[&b], "", "").replace("path_prefix: /", "path_prefix: /api");
    let gw = Gateway::start(&yaml);
    let a = get(&gw.url("web", "/other")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("x-ninefold-reason"), Some("no-route"));
    assert_eq!(a.json()["reason"], "no-route");
    assert_eq!(get(&gw.url("web", "/api/x")).await.status, 200);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn route_matching_first_match_wins() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let yaml = format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - name: exact
        match: {{path: /exact}}
        cluster: a
      - name: host-post
        match: {{path_prefix: /api, host: API.example.com, methods: [POST]}}
        cluster: b
      - name: header
        match: {{path_prefix: /api, headers: {{x-env: canary}}}}
        cluster: c
      - name: rest
        match: {{path_prefix: /}}
        cluster: a
clusters:
  - {{name: a, endpoints: [{{address: \"{}\"}}]}}
  - {{name: b, endpoints: [{{address: \"{}\"}}]}}
  - {{name: c, endpoints: [{{address: \"{}\"}}]}}
",
        a.addr, b.addr, c.addr
    );
    let gw = Gateway::start(&yaml);
    let who = |a: &Answer| a.header("x-backend").unwrap().to_owned();
    assert_eq!(who(&get(&gw.url("web", "/exact")).await), "a");
    let r = send(
        &client(),
        Request::post(gw.url("web", "/api/x"))
            .header("host", "api.example.com:80")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(who(&r), "b");
    // Same path and host but GET: falls to the header route when the header is there.
    let r = get_with(
        &gw.url("web", "/api/x"),
        &[("host", "api.example.com"), ("x-env", "canary")],
    )
    .await;
    assert_eq!(who(&r), "c");
    let r = get_with(&gw.url("web", "/api/x"), &[("x-env", "prod")]).await;
    assert_eq!(who(&r), "a");
}

#[tokio::test]
async fn connect_refused_is_502() {
    let (_refusing, addr) = refusing_endpoint();
    let yaml = one_endpoint_config(addr, "");
    let gw = Gateway::start(&yaml);
    let a = get(&gw.url("web", "/")).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-ninefold-reason"), Some("connect-failed"));
    assert_eq!(a.json()["status"], 502);
}

#[tokio::test]
async fn slow_upstream_is_504_within_the_route_timeout() {
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", "        timeout: 300ms"));
    let t = Instant::now();
    let a = get(&gw.url("web", "/slow/5000")).await;
    assert_eq!(a.status, 504);
    assert_eq!(a.header("x-ninefold-reason"), Some("upstream-timeout"));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // The gateway still serves afterwards.
    assert_eq!(get(&gw.url("web", "/")).await.status, 200);
}

#[tokio::test]
async fn a_stalled_body_is_cut_not_hung() {
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", "        idle_timeout: 300ms"));
    // A GET's answer is held until its body is whole (it may be retried): the stall
    // costs it the idle timeout, and it gets a 504, not a cut 200.
    let t = Instant::now();
    let held = get(&gw.url("web", "/stall")).await;
    assert_eq!(held.status, 504);
    assert_eq!(held.header("x-ninefold-reason"), Some("upstream-timeout"));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // A POST's answer streams as it comes: the stalled body is cut.
    let t = Instant::now();
    let resp = client()
        .request(
            Request::post(gw.url("web", "/stall"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await;
    assert!(
        r.expect("body must not hang").is_err(),
        "a cut body is an error, not a short success"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A listener with a full accept queue: further SYNs are dropped, connects hang.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let yaml = one_endpoint_config(addr, "connect_timeout: 200ms, ");
    let gw = Gateway::start(&yaml);
    let t = Instant::now();
    let a = get(&gw.url("web", "/")).await;
    assert_eq!(a.status, 504);
    assert_eq!(a.header("x-ninefold-reason"), Some("connect-timeout"));
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(sock);
}

#[tokio::test]
async fn upstream_that_closes_is_502() {
    // Accepts, reads the request, closes without answering.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let yaml = one_endpoint_config(addr, "");
    let gw = Gateway::start(&yaml);
    let a = get(&gw.url("web", "/")).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-ninefold-reason"), Some("upstream-error"));
}

#[tokio::test]
async fn post_bodies_and_keepalive_reuse() {
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let c = client();
    for i in 0..20usize {
        let payload = vec![b'p'; 1000 * i];
        let a = send(
            &c,
            Request::post(gw.url("web", "/upload"))
                .body(body(payload))
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["received"], 1000 * i);
    }
}

#[tokio::test]
async fn websocket_passes_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, _task) = ws_echo_backend().await;
    let yaml = one_endpoint_config(ws_addr, "");
    let gw = Gateway::start(&yaml);
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr("web")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
}

/// nginx as an h2c upstream: it refuses (400) a request that carries a Host field
/// beside `:authority` ("client sent duplicate host header"), so the Host goes upstream
/// as `:authority` alone, from an HTTP/1.1 client and from an h2c one.
#[tokio::test]
async fn an_nginx_h2_upstream_takes_the_host_as_authority() {
    let Some(origin) = crate::conformance::anchors::Anchor::nginx_h2_origin_for_test() else {
        return;
    };
    let gw = Gateway::start(&one_endpoint_config(origin.addrs[0], "protocol: http2, "));
    let a = get_with(&gw.url("web", "/x?y=1"), &[("host", "shop.example")]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(&a.body[..], b"host=shop.example\n");
    let req = Request::get(gw.url("web", "/x"))
        .body(body(&b""[..]))
        .unwrap();
    let resp = h2c_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &got[..],
        b"host=127.0.0.1\n",
        "from h2c, the client's :authority"
    );
}

#[tokio::test]
async fn http2_upstream_carries_grpc_trailers() {
    use bytes::Bytes;
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    // An h2c backend answering like a gRPC server: data then trailers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.version(), hyper::Version::HTTP_2);
                        let te = req.headers().get("te").cloned();
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(
                                b"\0\0\0\0\x02hi",
                            ))),
                            Ok(Frame::trailers({
                                let mut t = hyper::HeaderMap::new();
                                t.insert("grpc-status", "0".parse().unwrap());
                                t.insert(
                                    "x-te-seen",
                                    te.unwrap_or_else(|| "none".parse().unwrap()),
                                );
                                t
                            })),
                        ];
                        let body =
                            http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let yaml = one_endpoint_config(addr, "protocol: http2, ");
    let gw = Gateway::start(&yaml);
    let c = h2c_client();
    for _ in 0..3 {
        let req = Request::post(gw.url("web", "/pkg.Service/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body(&b"\0\0\0\0\0"[..]))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected
            .trailers()
            .cloned()
            .expect("trailers pass through");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-te-seen"], "trailers");
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x02hi");
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b1").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(gw.addr("web"))
            .await
            .unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4"),
            "unexpected answer to {:?}: {text}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(get(&gw.url("web", "/")).await.status, 200, "still serving");
}

#[tokio::test]
async fn the_demo_serves_three_backends_in_two_zones() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line == "ninefold: ready" {
                let _ = tx.send(text.clone());
            }
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("demo ready");
    let web = text
        .lines()
        .find_map(|l| l.strip_prefix("ninefold: listener web on "))
        .unwrap()
        .to_owned();
    assert!(text.contains("curl"), "prints what to try:\n{text}");
    let mut backends = std::collections::HashSet::new();
    let mut zones = std::collections::HashSet::new();
    for _ in 0..6 {
        let j = get(&format!("http://{web}/api/x")).await.json();
        backends.insert(j["backend"].as_str().unwrap().to_owned());
        zones.insert(j["zone"].as_str().unwrap().to_owned());
    }
    assert_eq!(backends.len(), 3);
    assert_eq!(zones.len(), 2);
    let sticky: Vec<String> = futures_util::future::join_all((0..4).map(|_| {
        let web = web.clone();
        async move {
            get_with(&format!("http://{web}/sticky"), &[("x-user-id", "42")])
                .await
                .header("x-backend")
                .unwrap()
                .to_owned()
        }
    }))
    .await;
    assert!(sticky.iter().all(|b| b == &sticky[0]));
    let _ = child.kill();
    let _ = child.wait();
}
