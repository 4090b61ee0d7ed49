//! The floor probe: the least an HTTP/1.1 keep-alive proxy can do on the bench harness.
//!
//! One thread, tokio's current-thread runtime. Per request: the head parsed with
//! httparse, written upstream with hop-by-hop fields cut and `x-forwarded-for` and
//! `-proto` added; an upstream connection from a free list; the answer read whole into
//! the same 32 KiB buffer (Content-Length bodies only), its head rewritten the same way,
//! and head and body written to the client in one `writev`. An idle connection holds no
//! buffer. No routing, balancing, limits, timeouts, metrics, chunked bodies, TLS or h2:
//! what it costs per request is what the harness leaves for everything else.
//!
//! It listens on `NINEFOLD_LISTEN` and forwards to `NINEFOLD_UPSTREAM`, as the harness
//! sets them. `PROBE_THREADS=N` starts N idle threads beside it (a process with more
//! than one thread pays more for each file-descriptor lookup in the kernel).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Vec<u8> {
    FREE.with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; 32 * 1024])
}

fn give(v: Vec<u8>) {
    FREE.with(|b| b.borrow_mut().push(v))
}

type Pool = Rc<RefCell<Vec<TcpStream>>>;

fn addr(var: &str, default: &str) -> SocketAddr {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .parse()
        .unwrap_or_else(|e| panic!("{var}: {e}"))
}

fn main() {
    let listen = addr("NINEFOLD_LISTEN", "127.0.0.1:18083");
    let up = addr("NINEFOLD_UPSTREAM", "127.0.0.1:18080");
    let threads: usize = std::env::var("PROBE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..threads {
        std::thread::spawn(|| loop {
            std::thread::park()
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let l = TcpListener::bind(listen).await.expect("bind");
        let pool: Pool = Rc::default();
        loop {
            let Ok((c, _)) = l.accept().await else {
                continue;
            };
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let _ = conn(c, pool, up).await;
            });
        }
    });
}

fn hop_by_hop(n: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| n.eq_ignore_ascii_case(h))
}

/// Appends to a buffer with room enough (heads are far below its 32 KiB).
struct Out<'a>(&'a mut [u8], usize);

impl Out<'_> {
    fn put(&mut self, s: &[u8]) {
        self.0[self.1..self.1 + s.len()].copy_from_slice(s);
        self.1 += s.len();
    }

    /// Writes the end-to-end fields as `name: value` lines, the hop-by-hop ones cut.
    fn fields(&mut self, headers: &[httparse::Header<'_>]) {
        for f in headers.iter().filter(|f| !hop_by_hop(f.name)) {
            self.put(f.name.as_bytes());
            self.put(b": ");
            self.put(f.value);
            self.put(b"\r\n");
        }
    }
}

async fn conn(mut c: TcpStream, pool: Pool, upstream: SocketAddr) -> io::Result<()> {
    c.set_nodelay(true)?;
    let peer = c.peer_addr()?.ip().to_string();
    loop {
        // Idle: no buffer until bytes arrive.
        c.readable().await?;
        let mut buf = take();
        let mut len = match c.try_read(&mut buf) {
            Ok(0) => {
                give(buf);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give(buf);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut out = take();
        let (olen, close) = loop {
            let mut h = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut h);
            match r.parse(&buf[..len]) {
                Ok(httparse::Status::Complete(_)) => {
                    let mut o = Out(&mut out, 0);
                    let close = r.headers.iter().any(|f| {
                        f.name.eq_ignore_ascii_case("connection")
                            && f.value.eq_ignore_ascii_case(b"close")
                    });
                    o.put(r.method.unwrap_or("GET").as_bytes());
                    o.put(b" ");
                    o.put(r.path.unwrap_or("/").as_bytes());
                    o.put(b" HTTP/1.1\r\n");
                    o.fields(r.headers);
                    o.put(b"x-forwarded-for: ");
                    o.put(peer.as_bytes());
                    o.put(b"\r\nx-forwarded-proto: http\r\n\r\n");
                    break (o.1, close);
                }
                Ok(httparse::Status::Partial) => {
                    let n = c.read(&mut buf[len..]).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    len += n;
                }
                Err(_) => return Ok(()),
            }
        };
        let pooled = pool.borrow_mut().pop();
        let mut u = match pooled {
            Some(u) => u,
            None => {
                let u = TcpStream::connect(upstream).await?;
                u.set_nodelay(true)?;
                u
            }
        };
        u.write_all(&out[..olen]).await?;
        len = 0;
        let (head_len, total, keep) = loop {
            let n = u.read(&mut buf[len..]).await?;
            if n == 0 {
                return Ok(());
            }
            len += n;
            let mut h = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut h);
            if let Ok(httparse::Status::Complete(head_len)) = r.parse(&buf[..len]) {
                let mut o = Out(&mut out, 0);
                let body: usize = r
                    .headers
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|f| std::str::from_utf8(f.value).ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                o.put(b"HTTP/1.1 ");
                o.put(r.code.unwrap_or(502).to_string().as_bytes());
                o.put(b" ");
                o.put(r.reason.unwrap_or("").as_bytes());
                o.put(b"\r\n");
                o.fields(r.headers);
                o.put(b"\r\n");
                break (head_len, head_len + body, o.1);
            }
        };
        if total > buf.len() {
            buf.resize(total, 0);
        }
        while len < total {
            let n = u.read(&mut buf[len..total]).await?;
            if n == 0 {
                return Ok(());
            }
            len += n;
        }
        pool.borrow_mut().push(u);
        let (mut a, mut b) = (&out[..keep], &buf[head_len..total]);
        while !a.is_empty() || !b.is_empty() {
            let n = c
                .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?;
            let k = n.min(a.len());
            a = &a[k..];
            b = &b[n - k..];
        }
        give(buf);
        give(out);
        if close {
            return Ok(());
        }
    }
}
