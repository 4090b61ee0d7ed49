//! The suite's HTTP/1 vectors over TLS: an `https` listener that negotiated HTTP/1.1
//! runs the same engine as a plain one, so every vector must end the same way on both
//! (same answer, same bytes at the backend). Anchors are not involved: the plain run
//! is the reference.

use super::*;
use rustls::pki_types::ServerName;

/// Sends `request` on a TLS connection (ALPN `http/1.1`) and reads what comes back,
/// as [`exchange_h1_with`] does on plain TCP.
pub(crate) async fn exchange_h1(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    request: &[u8],
    methods: &[String],
) -> Seen {
    let seen = Seen {
        end: "reset",
        ..Seen::default()
    };
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return seen;
    };
    let name = ServerName::try_from("localhost").unwrap();
    let Ok(sock) = tls.connect(name, tcp).await else {
        return seen;
    };
    assert_eq!(sock.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    exchange_h1_on(sock, seen, request, methods, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listeners_end_every_vector_as_plain_ones_do() {
    let _ports = ANCHOR_PORTS.lock().await;
    let vectors: Arc<Vec<Vector>> =
        Arc::new(vectors::all().into_iter().filter(|v| !v.h2).collect());
    let plain = recorders(&vectors).await;
    let secure = recorders(&vectors).await;

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut yaml = String::from("admin: {bind: \"127.0.0.1:0\"}\nlisteners:\n");
    for i in 0..vectors.len() {
        yaml.push_str(&format!(
            "  - {{name: p{i}, bind: \"127.0.0.1:0\", routes: [{{match: {{path_prefix: /}}, cluster: p{i}}}]}}\n  \
             - {{name: t{i}, bind: \"127.0.0.1:0\", protocol: https, tls: {{cert: cert.pem, key: key.pem}}, \
             routes: [{{match: {{path_prefix: /}}, cluster: t{i}}}]}}\n"
        ));
    }
    yaml.push_str("clusters:\n");
    for (i, (p, t)) in plain.iter().zip(&secure).enumerate() {
        yaml.push_str(&format!(
            "  - {{name: p{i}, endpoints: [{{address: \"{}\"}}]}}\n  - {{name: t{i}, endpoints: [{{address: \"{}\"}}]}}\n",
            p.addr, t.addr
        ));
    }
    let config = dir.path().join("ninefold.yaml");
    std::fs::write(&config, yaml).unwrap();
    let gw = Gateway::start_file(config, dir).unwrap();

    let connector = crate::support::tls_connector(cert.cert.der(), &[b"http/1.1"]);

    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..vectors.len() {
        for (secure_run, backend) in [(false, plain[i].clone()), (true, secure[i].clone())] {
            let (vectors, sem, connector) = (vectors.clone(), sem.clone(), connector.clone());
            let addr = gw.addr(&format!("{}{i}", if secure_run { "t" } else { "p" }));
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                let tls = secure_run.then_some(&connector);
                run_one_via(addr, &vectors[i], &backend, tls).await
            }));
        }
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let mut differ = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let (p, t) = (&outcomes[2 * i], &outcomes[2 * i + 1]);
        if std::env::var("NINEFOLD_CONFORMANCE_VERBOSE").is_ok() {
            println!("{:40} plain {:20} https {}", v.name, p.label, t.label);
        }
        if p.label != t.label {
            differ.push(format!(
                "{}: plain {:?}, https {:?}",
                v.name, p.label, t.label
            ));
        }
    }
    println!(
        "{} HTTP/1 vectors over plain and https listeners; {} differ",
        vectors.len(),
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "{} vectors end differently over TLS:\n  {}",
        differ.len(),
        differ.join("\n  ")
    );
}
