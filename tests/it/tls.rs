//! https listeners: TLS termination with rustls, HTTP/1.1 and h2 by ALPN, and
//! certificates re-read on reload.

use crate::support::*;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

struct Cert {
    pem: String,
    key: String,
    der: CertificateDer<'static>,
}

fn make_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Cert {
        pem: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    trust: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_connector(trust, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn tls_config(backend: &Backend) -> String {
    format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
listeners:
  - name: secure
    bind: \"127.0.0.1:0\"
    protocol: https
    tls: {{cert: cert.pem, key: key.pem}}
    routes: [{{match: {{path_prefix: /}}, cluster: app}}]
clusters:
  - {{name: app, endpoints: [{{address: \"{}\"}}]}}
",
        backend.addr
    )
}

#[tokio::test]
async fn https_serves_http1_and_h2_by_alpn_and_reloads_certificates() {
    let b = Backend::start("b").await;
    let first = make_cert();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &first.pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &first.key).unwrap();
    let config = dir.path().join("ninefold.yaml");
    std::fs::write(&config, tls_config(&b)).unwrap();
    let gw = Gateway::start_file(config, dir).unwrap();
    let addr = gw.addr("secure");

    // HTTP/1.1.
    let tls = connect(addr, &first.der, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = tx
        .send_request(
            Request::get("/one")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = {
        use http_body_util::BodyExt;
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    };
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");

    // h2 by ALPN.
    let tls = connect(addr, &first.der, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let r = h2
        .send_request(
            Request::get(format!("https://localhost:{}/two", addr.port()))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // New certificate + reload: new connections get it.
    let second = make_cert();
    std::fs::write(gw.dir.path().join("cert.pem"), &second.pem).unwrap();
    std::fs::write(gw.dir.path().join("key.pem"), &second.key).unwrap();
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tls = connect(addr, &second.der, &[b"http/1.1"]).await;
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(peer, second.der);
    // The h2 connection opened before the reload still works.
    let r = h2
        .send_request(
            Request::get(format!("https://localhost:{}/three", addr.port()))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_missing_certificate_fails_start_with_the_key_path() {
    let b = Backend::start("b").await;
    let err = Gateway::try_start(&tls_config(&b))
        .err()
        .expect("must fail");
    assert!(
        err.contains("listeners[0].tls") && err.contains("cert.pem"),
        "{err}"
    );
}

/// A ticket key file of `keys` (seeds of 48-byte keys), current first.
fn ticket_keys(keys: &[u8]) -> String {
    use base64::Engine as _;
    let mut s = String::from("# current first, then previous\n");
    for k in keys {
        s += &base64::engine::general_purpose::STANDARD.encode([*k; 48]);
        s.push('\n');
    }
    s
}

/// One gateway of a fleet: the shared certificate, and `tls_extra` in its `tls:`.
fn fleet_gateway(b: &Backend, cert: &Cert, keys: Option<&str>, tls_extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &cert.pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &cert.key).unwrap();
    if let Some(k) = keys {
        std::fs::write(dir.path().join("ticket.keys"), k).unwrap();
    }
    let yaml = tls_config(b).replace(
        "tls: {cert: cert.pem, key: key.pem}",
        &format!("tls: {{cert: cert.pem, key: key.pem{tls_extra}}}"),
    );
    let config = dir.path().join("ninefold.yaml");
    std::fs::write(&config, yaml).unwrap();
    Gateway::start_file(config, dir).unwrap()
}

/// A client that keeps sessions (rustls's in-memory store) across connections, for one
/// TLS version.
fn resuming_client(
    trust: &CertificateDer<'static>,
    v: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(ninefold::tls::provider())
        .with_protocol_versions(&[v])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}

/// One request over a new connection; the handshake's kind as the client saw it. The
/// answer is read to its end, so TLS 1.3 tickets sent after the handshake are kept.
async fn one_request(
    c: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET /t HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    kind
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn tickets_resume_across_a_fleet_sharing_a_key_file_and_survive_rotation() {
    use rustls::HandshakeKind::{Full, Resumed};
    let b = Backend::start("b").await;
    let cert = make_cert();
    let file = ", ticket_keys_file: ticket.keys";
    let a = fleet_gateway(&b, &cert, Some(&ticket_keys(&[1])), file);
    let g = fleet_gateway(&b, &cert, Some(&ticket_keys(&[1])), file);
    let lone = fleet_gateway(&b, &cert, None, "");

    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // A full handshake on one gateway, resumed on the other with the ticket it gave.
        let c = resuming_client(&cert.der, v);
        assert_eq!(one_request(&c, a.addr("secure")).await, Full);
        assert_eq!(one_request(&c, g.addr("secure")).await, Resumed, "{v:?}");
        // A gateway with its own random keys cannot open it: a full handshake, no error.
        let c = resuming_client(&cert.der, v);
        assert_eq!(one_request(&c, a.addr("secure")).await, Full);
        assert_eq!(one_request(&c, lone.addr("secure")).await, Full, "{v:?}");
        // Its own tickets resume with itself.
        assert_eq!(one_request(&c, lone.addr("secure")).await, Resumed, "{v:?}");
    }
    let m = text(&get(&g.admin_url("/metrics")).await.body);
    assert_eq!(
        metric(
            &m,
            "ninefold_tls_handshakes_total{kind=\"resumed\",listener=\"secure\",version=\"1.3\"}"
        ),
        1,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "ninefold_tls_handshakes_total{kind=\"resumed\",listener=\"secure\",version=\"1.2\"}"
        ),
        1
    );
    let m = text(&get(&a.admin_url("/metrics")).await.body);
    assert_eq!(
        metric(
            &m,
            "ninefold_tls_handshakes_total{kind=\"full\",listener=\"secure\",version=\"1.3\"}"
        ),
        2
    );

    // Rotation: a ticket from key 1; the file gets key 2 first and keeps key 1 second,
    // the gateway reloads, and the ticket still resumes; new tickets carry key 2.
    let c = resuming_client(&cert.der, &rustls::version::TLS13);
    assert_eq!(one_request(&c, a.addr("secure")).await, Full);
    std::fs::write(g.dir.path().join("ticket.keys"), ticket_keys(&[2, 1])).unwrap();
    let r = post(&g.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(one_request(&c, g.addr("secure")).await, Resumed);
    // The state API shows the keys in use by name (4 bytes), current first.
    let state = get(&g.admin_url("/api/v1/state")).await.json();
    let tls = &state["listeners"][0]["tls"];
    assert_eq!(
        tls["tickets"]["keys"],
        serde_json::json!(["02020202", "01010101"]),
        "{tls}"
    );
    assert!(
        tls["tickets"]["source"]
            .as_str()
            .unwrap()
            .starts_with("file "),
        "{tls}"
    );
    assert_eq!(tls["session_cache"], 20000);
    // Once key 1 leaves the file, its tickets are full handshakes.
    let c = resuming_client(&cert.der, &rustls::version::TLS13);
    assert_eq!(one_request(&c, a.addr("secure")).await, Full);
    std::fs::write(g.dir.path().join("ticket.keys"), ticket_keys(&[2])).unwrap();
    let r = post(&g.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(one_request(&c, g.addr("secure")).await, Full);

    // A broken key file is refused with its line; the keys in use stay.
    std::fs::write(g.dir.path().join("ticket.keys"), "# keys\nnot-a-key\n").unwrap();
    let r = post(&g.admin_url("/api/v1/reload"), None).await;
    assert_ne!(r.status, 200);
    let body = text(&r.body);
    assert!(body.contains("ticket.keys:2"), "{body}");
    let c = resuming_client(&cert.der, &rustls::version::TLS13);
    assert_eq!(one_request(&c, g.addr("secure")).await, Full);
    assert_eq!(one_request(&c, g.addr("secure")).await, Resumed);
}

#[tokio::test]
async fn the_session_cache_resumes_without_tickets_and_failures_count_by_reason() {
    use rustls::HandshakeKind::{Full, Resumed};
    use tokio::io::AsyncWriteExt;
    let b = Backend::start("b").await;
    let cert = make_cert();
    let gw = fleet_gateway(&b, &cert, None, ", tickets: false, session_cache: 100");
    // TLS 1.2 by session id, TLS 1.3 by a stateful ticket: both from the cache.
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let c = resuming_client(&cert.der, v);
        assert_eq!(one_request(&c, gw.addr("secure")).await, Full);
        assert_eq!(one_request(&c, gw.addr("secure")).await, Resumed, "{v:?}");
    }
    // The cache survives a reload.
    let c = resuming_client(&cert.der, &rustls::version::TLS12);
    assert_eq!(one_request(&c, gw.addr("secure")).await, Full);
    let r = post(&gw.admin_url("/api/v1/reload"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(one_request(&c, gw.addr("secure")).await, Resumed);

    // Plain HTTP to the TLS port, and a client that leaves mid-handshake.
    let mut s = tokio::net::TcpStream::connect(gw.addr("secure"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    drop(s);
    let s = tokio::net::TcpStream::connect(gw.addr("secure"))
        .await
        .unwrap();
    drop(s);
    let url = gw.admin_url("/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let failures = |m: &str, reason: &str| {
        metric(
            m,
            &format!(
                "ninefold_tls_handshake_failures_total{{listener=\"secure\",reason=\"{reason}\"}}"
            ),
        )
    };
    loop {
        let m = text(&get(&url).await.body);
        if failures(&m, "bad_message") == 1 && failures(&m, "closed") == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
