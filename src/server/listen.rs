//! Listening: each listener's sockets, one per worker (`SO_REUSEPORT`, so the kernel
//! spreads connections and workers share no accept queue), and each worker's accept
//! loop, which counts its connections and hands each to its engine: the own HTTP/1.1
//! engine ([`super::h1`]) for HTTP/1.x, plain or over TLS, hyper ([`super::hyper`]) for
//! h2 and h2c.

use super::hyper::{conn_builder, serve_conn};
use crate::proxy::ConnCtx;
use crate::snapshot::Shared;
use http::HeaderValue;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `n` SO_REUSEPORT sockets to `addr` (port 0: the first one picks the port, the
/// rest share it). Unless we already hold the address, first make sure nobody else
/// does: SO_REUSEPORT would otherwise let two gateways share a port silently.
pub(super) fn bind_sockets(
    addr: SocketAddr,
    n: usize,
    held: bool,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if !held && addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut out = Vec::with_capacity(n);
    let mut target = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_tcp_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&target.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        target = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// HTTP/1.x and h2c.
    Http,
    /// TLS, then HTTP/1.x or h2 by ALPN.
    Https,
    /// A byte relay (`crate::tcp`).
    Tcp,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    name: Arc<str>,
    listener: tokio::net::TcpListener,
    kind: Kind,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
) {
    let counts = Arc::new(OpenCounts {
        active: active.clone(),
        gauge: shared.metrics.open_connections.with_label_values(&[&name]),
    });
    // The connection settings follow the running snapshot's limits: rebuilt when a
    // reload changed them, for connections accepted after it.
    let mut limits = shared.snapshot.load().config.limits;
    // Shared by the worker's connections: a connection's task holds a pointer, not a
    // copy of hyper's settings for its whole life.
    let mut builder = Arc::new(conn_builder(&limits));
    let mut shutdown_accept = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
            _ = shutdown_accept.wait_for(|s| *s) => break,
        };
        let (stream, client) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if kind == Kind::Tcp {
            let open = Open::new(&counts);
            tokio::spawn(crate::tcp::serve(
                shared.clone(),
                name.clone(),
                stream,
                client,
                open,
                stop.clone(),
            ));
            continue;
        }
        let tls = kind == Kind::Https;
        let now = shared.snapshot.load().config.limits;
        if now != limits {
            limits = now;
            builder = Arc::new(conn_builder(&limits));
        }
        let conn = Conn {
            shared: shared.clone(),
            name: name.clone(),
            client,
            tls,
        };
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let open = Open::new(&counts);
        tokio::spawn(async move {
            if tls {
                // Boxed, like every state a connection has only for a while: the
                // task's size is that of its largest state.
                Box::pin(async move {
                    let acceptor = conn
                        .shared
                        .snapshot
                        .load()
                        .listener(&conn.name)
                        .and_then(|l| l.tls.clone());
                    let Some(acceptor) = acceptor else { return };
                    let accept = acceptor.accept(stream);
                    let metrics = &conn.shared.metrics;
                    let s = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            let reason = crate::tls::failure_reason(&e);
                            metrics
                                .tls_handshake_failures
                                .with_label_values(&[&*conn.name, reason])
                                .inc();
                            return;
                        }
                        Err(_) => {
                            metrics
                                .tls_handshake_failures
                                .with_label_values(&[&*conn.name, "timeout"])
                                .inc();
                            return;
                        }
                    };
                    let (kind, version) = crate::tls::handshake_labels(s.get_ref().1);
                    metrics
                        .tls_handshakes
                        .with_label_values(&[&*conn.name, kind, version])
                        .inc();
                    // The engine choice after ALPN: h2 goes to hyper, HTTP/1.1 (or no
                    // ALPN) to the own engine, as on plain listeners.
                    if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let _open = open;
                        let ctx = conn.ctx(None);
                        serve_conn(TokioIo::new(s), ctx, builder, shutdown).await;
                    } else {
                        let io = crate::h1::io::Client::Tls(Box::new(std::sync::Mutex::new(s)));
                        super::h1::serve(conn.ctx(Some(io)), open).await;
                    }
                })
                .await;
                return;
            }
            let idle = conn.shared.snapshot.load().config.client_idle_timeout;
            match Box::pin(h2c_preface(&stream, idle)).await {
                Some(true) => {
                    let _open = open;
                    let ctx = conn.ctx(None);
                    Box::pin(serve_conn(TokioIo::new(stream), ctx, builder, shutdown)).await;
                }
                Some(false) => {
                    // The own engine, on a task of its own that holds only what an
                    // HTTP/1.1 connection needs (this one, and what it captured, ends).
                    let ctx = conn.ctx(Some(crate::h1::io::Client::Tcp(stream)));
                    tokio::spawn(super::h1::serve(ctx, open));
                }
                None => {}
            }
        });
    }
}

/// What counts a listener's connections on a worker: the worker's count that
/// shutdown waits on, and the listener's gauge.
struct OpenCounts {
    active: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

/// Counts a connection as open while alive (one pointer per connection).
struct Open(Arc<OpenCounts>);

impl Open {
    fn new(counts: &Arc<OpenCounts>) -> Self {
        counts.active.fetch_add(1, Ordering::AcqRel);
        counts.gauge.inc();
        Open(counts.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.gauge.dec();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a new connection's context is made of.
struct Conn {
    shared: Arc<Shared>,
    name: Arc<str>,
    client: SocketAddr,
    tls: bool,
}

impl Conn {
    fn ctx(self, stream: Option<crate::h1::io::Client>) -> Arc<ConnCtx> {
        Arc::new(ConnCtx {
            shared: self.shared,
            listener: self.name,
            client: self.client,
            client_ip: client_ip(self.client.ip()),
            tls: self.tls,
            stream,
            interim: AtomicBool::new(false),
        })
    }
}

/// The client's address as an `x-forwarded-for` value. Connections from one address
/// (a load balancer, a NAT) share one value per worker: no formatting and no
/// allocation per connection for them.
fn client_ip(ip: std::net::IpAddr) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static SEEN: RefCell<HashMap<std::net::IpAddr, HeaderValue>> = RefCell::new(HashMap::new());
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(v) = seen.get(&ip) {
            return v.clone();
        }
        let v = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        // Bounded: many distinct clients simply stop being remembered.
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(ip, v.clone());
        v
    })
}

/// The HTTP/2 connection preface a prior-knowledge h2c client opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection speaks h2c (prior knowledge): its first bytes, looked
/// at without reading them, are the HTTP/2 preface. `None`: it closed, or sent nothing
/// within `idle`.
async fn h2c_preface(stream: &tokio::net::TcpStream, idle: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + idle;
    let mut b = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut b))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if !H2_PREFACE.starts_with(&b[..n]) {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A preface cut in two writes: look again shortly.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}
