//! What does the own HTTP/1.1 engine (`src/h1/`) spend per request on its heads and
//! bodies? Every request through the engine is parsed once (`parse::parse_request`,
//! which copies its field lines into a pooled buffer: no header map), and its head is
//! written again for the upstream (`write::write_request`, which cuts the hop-by-hop
//! fields and adds the `x-forwarded-*` ones on the way); every answer is parsed once
//! (`parse::parse_response`, which keeps the answer's end-to-end lines for the client);
//! chunked bodies go through `chunked::Decoder`.
//!
//! Measured: (a) `parse_request` of a browser-like head (10 field lines, about 550
//! bytes) and of a minimal one, each beside httparse alone on the same bytes: the floor,
//! since every parse starts with httparse and hyper's own parse (httparse plus its
//! header map) is not reachable as a function; the gap is what copying the lines and
//! deciding the framing cost; (b) the upstream head: parse and rewrite; (c)
//! `parse_response` of a typical answer head beside httparse alone; (d) the chunked
//! decoder over a 16 KiB body in 4 chunks, beside a plain copy of the 16 KiB (what any
//! reader of the body must at least do).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ninefold::config::Limits;
use ninefold::h1::chunked::{encode_size, Decoder, LAST_CHUNK};
use ninefold::h1::{parse, write};
use std::hint::black_box;

/// A browser's request for a script: the field lines a current browser sends.
const BROWSER: &[u8] = b"GET /static/app/main.4f3a9c1e.js?v=20240511 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/category/shoes?page=2&sort=price\r\n\
Connection: keep-alive\r\n\
Cookie: session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: script\r\n\
\r\n";

/// The smallest request an HTTP/1.1 client may send.
const MINIMAL: &[u8] = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n";

/// An application server's answer head.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Sat, 11 May 2024 10:21:09 GMT\r\n\
Content-Type: application/javascript; charset=utf-8\r\n\
Content-Length: 48213\r\n\
Connection: keep-alive\r\n\
Cache-Control: public, max-age=31536000, immutable\r\n\
ETag: \"5f3a-18f6c2d9a40\"\r\n\
Last-Modified: Fri, 10 May 2024 08:02:44 GMT\r\n\
Vary: Accept-Encoding\r\n\
X-Request-Id: 7c1e9a52-3b8d-4f6e-a0c2-91d4e8f7b613\r\n\
\r\n";

/// httparse alone on a request: the floor under any parse.
fn httparse_request(buf: &[u8]) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => unreachable!("the bench heads are complete"),
    }
}

fn bench_request(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("h1 request head");
    for (name, bytes) in [("browser", BROWSER), ("minimal", MINIMAL)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline: httparse alone", name),
            bytes,
            |b, bytes| b.iter(|| httparse_request(black_box(bytes))),
        );
        g.bench_with_input(
            BenchmarkId::new("parse_request", name),
            bytes,
            |b, bytes| {
                b.iter(|| {
                    parse::parse_request(black_box(bytes), &limits)
                        .unwrap()
                        .unwrap()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("parse + write_request (rewritten)", name),
            bytes,
            |b, bytes| {
                let mut out = Vec::with_capacity(1024);
                let fwd = write::Forwarding {
                    client_ip: b"192.0.2.10",
                    tls: false,
                };
                b.iter(|| {
                    let h = parse::parse_request(black_box(bytes), &limits)
                        .unwrap()
                        .unwrap();
                    out.clear();
                    write::write_request(&mut out, &h.parts, Some(&h.fields), fwd);
                    out.len()
                })
            },
        );
    }
    g.finish();
}

fn bench_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("h1 response head");
    g.throughput(Throughput::Bytes(ANSWER.len() as u64));
    g.bench_function("baseline: httparse alone", |b| {
        b.iter(|| {
            let mut slots = [httparse::EMPTY_HEADER; 100];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(black_box(ANSWER)) {
                Ok(httparse::Status::Complete(n)) => n,
                _ => unreachable!("the bench head is complete"),
            }
        })
    });
    g.bench_function("parse_response", |b| {
        b.iter(|| {
            parse::parse_response(black_box(ANSWER), false, 16 * 1024)
                .unwrap()
                .unwrap()
        })
    });
    g.finish();
}

/// A 16 KiB body in 4 chunks of 4 KiB, then the last chunk.
fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..4u8 {
        encode_size(&mut body, 4096);
        body.extend(std::iter::repeat_n(b'a' + i, 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(LAST_CHUNK);
    body
}

fn bench_chunked(c: &mut Criterion) {
    let body = chunked_body();
    let mut g = c.benchmark_group("h1 chunked body, 16 KiB in 4 chunks");
    g.throughput(Throughput::Bytes(16 * 1024));
    g.bench_function("baseline: copy of 16 KiB", |b| {
        let src = vec![b'a'; 16 * 1024];
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&src));
            out.len()
        })
    });
    g.bench_function("Decoder, body in one piece", |b| {
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            out.clear();
            let mut d = Decoder::new(16 * 1024, 16 * 1024);
            let mut rest = black_box(&body[..]);
            loop {
                let r = d.decode(rest).unwrap();
                if let Some(range) = r.data {
                    out.extend_from_slice(&rest[range]);
                }
                rest = &rest[r.consumed..];
                if r.done {
                    break;
                }
            }
            assert_eq!(out.len(), 16 * 1024);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_request, bench_response, bench_chunked);
criterion_main!(benches);
