//! The own HTTP/1.1 engine's behaviour on raw sockets, where the conformance suite's
//! one-shot vectors do not reach: the chunk-extension limit as configured, pooled
//! upstream connections the upstream closed meanwhile, a client body streamed into an
//! h2 upstream, `Expect: 100-continue` on a request answered without its body,
//! pipelined requests with bodies, keep-alive with HTTP/1.0 clients, a whole answer
//! for a client still sending the body the answer came before (lingering close), and a
//! keep-alive connection whose listener a reload removed.

use crate::support::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes `bytes` and reads until `n` complete answers arrived (by Content-Length or
/// chunked end), the peer closes, or 5 s pass. Returns everything read.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8], n: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_answers(&mut s, n).await
}

async fn read_answers(s: &mut TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut b = [0u8; 65536];
    while count_answers(&got) < n {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => got.extend_from_slice(&b[..k]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Final answers complete in `b` (a simple reader: Content-Length or chunked bodies).
fn count_answers(mut b: &[u8]) -> usize {
    let mut n = 0;
    loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        let Ok(httparse::Status::Complete(len)) = r.parse(b) else {
            return n;
        };
        let code = r.code.unwrap_or(0);
        let cl = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        let chunked = r
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        b = &b[len..];
        if (100..200).contains(&code) {
            continue;
        }
        if chunked {
            let Some(end) = b.windows(5).position(|w| w == b"0\r\n\r\n") else {
                return n;
            };
            b = &b[end + 5..];
        } else {
            let cl = cl.unwrap_or(0);
            if b.len() < cl {
                return n;
            }
            b = &b[cl..];
        }
        n += 1;
    }
}

fn status_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect()
}

#[tokio::test]
async fn chunk_extensions_past_the_configured_limit_are_refused() {
    let b = Backend::start("a").await;
    let yaml = simple_config(&[&b], "", "") + "limits: {max_chunk_extension: 32}\n";
    let gw = Gateway::start(&yaml);
    let addr = gw.addr("web");
    let ext = |n: usize| {
        format!(
            "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n",
            "x".repeat(n)
        )
    };
    // 1 byte of `;` plus 30: within 32.
    let ok = exchange(addr, ext(30).as_bytes(), 1).await;
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert!(ok.contains("{\"received\":5}"), "{ok}");
    let hits = b.hits();
    let refused = exchange(addr, ext(40).as_bytes(), 1).await;
    assert!(refused.starts_with("HTTP/1.1 400 "), "{refused}");
    assert!(
        refused.contains("x-ninefold-reason: bad-request-body"),
        "{refused}"
    );
    assert_eq!(
        b.hits(),
        hits,
        "a refused body never reaches the backend whole"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    // A raw backend that answers one request per connection with keep-alive framing,
    // then closes the connection after a moment: the gateway has pooled it by then.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(s);
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let yaml = config_for(&[addr], "", "").replace("workers: 2", "workers: 1");
    let gw = Gateway::start(&yaml);
    for i in 0..3 {
        let r = get(&gw.url("web", "/x")).await;
        assert_eq!(r.status, 200, "request {i}: {:?}", r.body);
        let want = i + 1;
        assert!(
            eventually(Duration::from_secs(5), || closed.load(Ordering::SeqCst)
                >= want)
            .await,
            "the backend closes its side"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_client_body_streams_into_an_h2_upstream() {
    let b = Backend::start("h2").await;
    let gw = Gateway::start(&one_endpoint_config(b.addr, "protocol: http2, "));
    let addr = gw.addr("web");
    // 300 KiB in chunks of 10 KiB, on a raw HTTP/1.1 connection.
    let mut req = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..30 {
        req.extend_from_slice(b"2800\r\n");
        req.extend_from_slice(&[b'z'; 10240]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let got = exchange(addr, &req, 1).await;
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    assert!(got.contains("{\"received\":307200}"), "{got}");
}

#[tokio::test]
async fn an_early_upstream_answer_is_relayed_without_the_body() {
    let b = Backend::start("a").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    // The backend answers /status/503 without reading the body, which the client
    // has not sent: it waits for a 100 that the gateway sends when it starts forwarding.
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(
        b"POST /status/503 HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_answers(&mut s, 1).await;
    // The body was asked for (the request went upstream), the backend answered
    // without waiting for it, and that answer came at once, with the connection
    // closing after it: 100 000 bytes are more than the gateway drains.
    assert_eq!(
        status_lines(&got),
        ["HTTP/1.1 100 Continue", "HTTP/1.1 503 Service Unavailable"],
        "{got}"
    );
    assert!(got.contains("connection: close"), "{got}");
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_answered_in_order() {
    let b = Backend::start("a").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let req = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
GET /second HTTP/1.1\r\nHost: a\r\n\r\n\
POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n\
GET /fourth HTTP/1.1\r\nHost: a\r\n\r\n";
    let got = exchange(gw.addr("web"), req, 4).await;
    assert_eq!(count_answers(got.as_bytes()), 4, "{got}");
    let first = got.find("{\"received\":3}").expect("first");
    let second = got.find("\"path\":\"/second\"").expect("second");
    let third = got.find("{\"received\":4}").expect("third");
    let fourth = got.find("\"path\":\"/fourth\"").expect("fourth");
    assert!(first < second && second < third && third < fourth, "{got}");
}

#[tokio::test]
async fn http10_keeps_alive_only_when_asked() {
    let b = Backend::start("a").await;
    let gw = Gateway::start(&simple_config(&[&b], "", ""));
    let addr = gw.addr("web");
    // Asked: two requests on one connection, each answered with a length.
    let two = exchange(
        addr,
        b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        2,
    )
    .await;
    assert_eq!(count_answers(two.as_bytes()), 2, "{two}");
    assert!(two.contains("connection: keep-alive"), "{two}");
    // Not asked: one answer, then the close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.0\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
    assert!(r.is_ok(), "the gateway closes after an HTTP/1.0 answer");
    let text = String::from_utf8_lossy(&all);
    assert_eq!(count_answers(&all), 1, "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn an_answer_given_before_the_body_reaches_a_client_still_sending_whole() {
    // The upstream answers 401 with 1 MiB at once, without reading the request body.
    const ANSWER: usize = 1 << 20;
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = up.accept().await {
            let mut head = Vec::new();
            let mut b = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let mut answer =
                format!("HTTP/1.1 401 Unauthorized\r\ncontent-length: {ANSWER}\r\n\r\n")
                    .into_bytes();
            answer.resize(answer.len() + ANSWER, b'x');
            let _ = s.write_all(&answer).await;
            held.push(s);
        }
    });
    let gw = Gateway::start(&one_endpoint_config(up_addr, ""));

    // A client with a small receive window: most of the answer is still in the
    // gateway's send queue when the gateway is done with the connection. Closing a
    // socket with unread bytes (the body the client is still sending) resets the
    // connection and throws that queue away, unless the gateway reads on first.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    sock.connect(&gw.addr("web").into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let s = TcpStream::from_std(sock.into()).unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n")
        .await
        .unwrap();
    // The client goes on sending its body (4 MiB of the 64 it announced) meanwhile.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..64 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    let read = async {
        let mut got = Vec::new();
        let mut b = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut b).await {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => return (got, Some(e.kind())),
            }
        }
    };
    let (got, err) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the answer ends within 30 s");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let head = String::from_utf8_lossy(&got[..head_end.unwrap_or(got.len().min(200))]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(
        (got.len() - head_end.unwrap_or(0), err),
        (ANSWER, None),
        "the whole answer, then the close, not a reset"
    );
    drop(writer.await);
}

/// A keep-alive connection accepted before a reload removed its listener: its next
/// request gets a 503 that says why, counted under the listener's name.
#[tokio::test]
async fn a_request_on_a_removed_listener_is_answered_503_and_counted() {
    let a = Backend::start("a").await;
    let base = simple_config(&[&a], "", "");
    let with_extra = base.replace(
        "clusters:\n",
        "  - name: extra\n    bind: \"127.0.0.1:0\"\n    routes: [{match: {path_prefix: /}, cluster: app}]\nclusters:\n",
    );
    let gw = Gateway::start(&with_extra);
    let req = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut s = TcpStream::connect(gw.bound("extra").await).await.unwrap();
    s.write_all(req).await.unwrap();
    let first = read_answers(&mut s, 1).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    gw.rewrite(&base);
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(
        r.json()["reload"]["listeners_removed"][0],
        "extra",
        "{:?}",
        r.body
    );

    s.write_all(req).await.unwrap();
    let second = read_answers(&mut s, 1).await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.contains("x-ninefold-reason: listener-removed"),
        "{second}"
    );
    let metrics = get(&gw.admin_url("/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    let line = r#"ninefold_requests_total{cluster="",code_class="5xx",listener="extra",route="",slo="",slo_result=""} 1"#;
    assert!(metrics.contains(line), "{metrics}");
}
