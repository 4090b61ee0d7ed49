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
