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
//! `PROBE_SPLICE=1` relays bodies as ninefold's `h1::splice` does: the first upstream
//! read takes at most 4 KiB; when 8 KiB or more of the body are still to come, the head
//! and the first bytes go with `MSG_MORE` and the rest by `splice(2)` through a pipe.

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

/// Whether `PROBE_SPLICE=1` is set.
fn splicing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PROBE_SPLICE").is_ok_and(|v| v == "1"))
}

/// The thread's pipe for splicing (made once, always left empty).
fn pipe() -> (i32, i32) {
    thread_local! {
        static PIPE: (i32, i32) = {
            let mut fds = [0i32; 2];
            // SAFETY: `fds` has room for the two descriptors.
            let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            assert_eq!(r, 0, "pipe2");
            (fds[0], fds[1])
        };
    }
    PIPE.with(|p| *p)
}

/// One `splice(2)` of up to `len` bytes, as a `WouldBlock`-aware result.
fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain descriptors, no offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends the head and first bytes with `MSG_MORE`, then moves `left` bytes from `u` to
/// `c` through the pipe: filled when empty, drained to empty.
async fn relay_spliced(
    c: &TcpStream,
    u: &TcpStream,
    mut head: &[u8],
    mut left: usize,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (r, w) = pipe();
    while !head.is_empty() {
        c.writable().await?;
        let sent = c.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: `head` is valid for reads of its length.
            let n = unsafe {
                libc::send(
                    c.as_raw_fd(),
                    head.as_ptr().cast(),
                    head.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    while left > 0 {
        u.readable().await?;
        let mut held = match u.try_io(tokio::io::Interest::READABLE, || {
            splice(u.as_raw_fd(), w, left)
        }) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        left -= held;
        while held > 0 {
            c.writable().await?;
            match c.try_io(tokio::io::Interest::WRITABLE, || {
                splice(r, c.as_raw_fd(), held)
            }) {
                Ok(n) => held -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
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
        let first = if splicing() { 4096 } else { buf.len() };
        let (head_len, total, keep) = loop {
            let end = if len == 0 { first } else { buf.len() };
            let n = u.read(&mut buf[len..end]).await?;
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
        if splicing() && total - len >= 8192 {
            let (body_now, left) = (len - head_len, total - len);
            out[keep..keep + body_now].copy_from_slice(&buf[head_len..len]);
            relay_spliced(&c, &u, &out[..keep + body_now], left).await?;
            pool.borrow_mut().push(u);
            give(buf);
            give(out);
            if close {
                return Ok(());
            }
            continue;
        }
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
