//! Long bodies relayed by `splice(2)` (`h1::splice`): whole and in order beside copied
//! ones on one keep-alive connection, with the upstream connection reused after them;
//! cut short by the upstream, stalled past the idle timeout, or abandoned by the client,
//! each ends the client's answer visibly short and never puts the upstream connection
//! back in the pool. A raw upstream scripts the answers.

use crate::support::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The body's byte at offset `i`: a pattern that shows a lost, doubled or moved piece.
fn byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(byte).collect()
}

/// Connections the scripted upstream accepted, and those it saw end.
#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    ended: AtomicU64,
}

/// A raw upstream. Per request, by path (`N` a length):
/// - `/long/N`: a `Content-Length` body of N pattern bytes, written in pieces of 7,000;
/// - `/chunked/N`: the same bytes, chunked in pieces of 3,000;
/// - `/cut/N`: announces N, sends a quarter, closes;
/// - `/stall/N`: announces N, sends a quarter, then sends nothing more.
async fn scripted() -> (std::net::SocketAddr, Arc<Counts>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let _ = serve(s).await;
                c.ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

async fn serve(mut s: TcpStream) -> std::io::Result<()> {
    let mut got = Vec::new();
    let mut b = vec![0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut b).await?;
            if n == 0 {
                return Ok(());
            }
            got.extend_from_slice(&b[..n]);
        };
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        got.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let mut parts = path.trim_start_matches('/').split('/');
        let kind = parts.next().unwrap_or("");
        let n: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let body = pattern(0, n);
        match kind {
            "chunked" => {
                s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await?;
                for piece in body.chunks(3000) {
                    s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                    s.write_all(piece).await?;
                    s.write_all(b"\r\n").await?;
                }
                s.write_all(b"0\r\n\r\n").await?;
            }
            _ => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                s.write_all(head.as_bytes()).await?;
                let send = if kind == "long" { n } else { n / 4 };
                for piece in body[..send].chunks(7000) {
                    s.write_all(piece).await?;
                }
                match kind {
                    "cut" => return Ok(()),
                    "stall" => std::future::pending::<()>().await,
                    _ => {}
                }
            }
        }
    }
}

fn config(addr: std::net::SocketAddr, route: &str) -> String {
    config_for(&[addr], "", route).replace("workers: 2", "workers: 1")
}

/// Reads one answer's head: (status, Content-Length or `None` when chunked, bytes of
/// body that came with it).
async fn read_head(s: &mut TcpStream) -> (u16, Option<usize>, Vec<u8>) {
    let mut got = Vec::new();
    let mut b = vec![0u8; 65536];
    loop {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut h);
        if let Ok(httparse::Status::Complete(len)) = r.parse(&got) {
            let cl = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
            let code = r.code.unwrap();
            return (code, cl, got[len..].to_vec());
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("a head within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&b[..n]);
    }
}

/// Reads until `want` body bytes are there, the connection ends, or 5 s pass.
async fn read_body(s: &mut TcpStream, mut body: Vec<u8>, want: usize) -> (Vec<u8>, bool) {
    let mut b = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while body.len() < want {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (body, true),
            Ok(Ok(n)) => body.extend_from_slice(&b[..n]),
            Err(_) => return (body, false),
        }
    }
    (body, false)
}

/// Decodes a chunked body read whole (ends with the last chunk).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap(), 16).unwrap();
        b = &b[line + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

#[tokio::test]
async fn long_bodies_go_whole_beside_copied_ones_and_the_upstream_connection_is_kept() {
    let (addr, counts) = scripted().await;
    let gw = Gateway::start(&config(addr, ""));
    let pipes_before = pipes(gw.pid());
    let mut c = TcpStream::connect(gw.addr("web")).await.unwrap();
    // Spliced (long), copied after a bounded first read (short, chunked), spliced again.
    for path in [
        "/long/200000",
        "/long/6000",
        "/chunked/20000",
        "/long/16384",
        "/long/100",
        "/long/3000000",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let n: usize = path.rsplit('/').next().unwrap().parse().unwrap();
        let (status, cl, first) = read_head(&mut c).await;
        assert_eq!(status, 200, "{path}");
        let body = match cl {
            Some(len) => {
                assert_eq!(len, n, "{path}");
                let (body, closed) = read_body(&mut c, first, len).await;
                assert!(!closed, "{path}: the connection stays open");
                body
            }
            None => {
                let mut raw = first;
                let mut b = vec![0u8; 65536];
                while !raw.ends_with(b"0\r\n\r\n") {
                    let k = c.read(&mut b).await.unwrap();
                    assert!(k > 0, "{path}: closed mid-body");
                    raw.extend_from_slice(&b[..k]);
                }
                dechunk(&raw)
            }
        };
        assert_eq!(body.len(), n, "{path}");
        assert!(body == pattern(0, n), "{path}: the bytes differ");
    }
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection, checked in after each body, spliced or not"
    );
    // The long bodies went by splice: the worker keeps its pipe (two descriptors) for
    // the next one.
    assert_eq!(pipes(gw.pid()), pipes_before + 2);
}

/// Pipe descriptors the process holds.
fn pipes(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// Connects, asks for `path`, and reads the answer's head and what body comes:
/// (Content-Length, body bytes, whether the connection ended).
async fn short_answer(gw: &Gateway, path: &str) -> (usize, Vec<u8>, bool) {
    let mut c = TcpStream::connect(gw.addr("web")).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let (status, cl, first) = read_head(&mut c).await;
    assert_eq!(status, 200, "the head went before the body broke");
    let cl = cl.expect("a length");
    let (body, closed) = read_body(&mut c, first, cl).await;
    (cl, body, closed)
}

#[tokio::test]
async fn a_spliced_body_the_upstream_cuts_ends_the_answer_short() {
    let (addr, counts) = scripted().await;
    let gw = Gateway::start(&config(addr, ""));
    let (cl, body, closed) = short_answer(&gw, "/cut/400000").await;
    assert!(
        closed,
        "the client's connection is closed, not left hanging"
    );
    assert!(
        body.len() < cl,
        "a short answer, never one that looks whole"
    );
    assert!(
        body == pattern(0, body.len()),
        "what came is the upstream's bytes"
    );
    // The gateway goes on, on a new upstream connection.
    let r = get(&gw.url("web", "/long/50000")).await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(0, 50000));
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_spliced_body_that_stalls_is_cut_after_the_idle_timeout() {
    let (addr, _) = scripted().await;
    let gw = Gateway::start(&config(addr, "        idle_timeout: 300ms\n"));
    let t = std::time::Instant::now();
    let (cl, body, closed) = short_answer(&gw, "/stall/400000").await;
    assert!(closed, "cut, not hung: {:?}", t.elapsed());
    assert!(body.len() < cl);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_splice_costs_only_that_upstream_connection() {
    let (addr, counts) = scripted().await;
    let gw = Gateway::start(&config(addr, ""));
    let mut c = TcpStream::connect(gw.addr("web")).await.unwrap();
    c.write_all(b"GET /long/200000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (status, _, first) = read_head(&mut c).await;
    assert_eq!(status, 200);
    let (body, _) = read_body(&mut c, first, 300_000).await;
    assert!(body == pattern(0, body.len()));
    drop(c);
    assert!(
        eventually(Duration::from_secs(10), || counts
            .ended
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the gateway lets the upstream connection go"
    );
    let r = get(&gw.url("web", "/long/70000")).await;
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(0, 70000), "the next answer is whole");
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        2,
        "the abandoned body's connection was not pooled"
    );
}
