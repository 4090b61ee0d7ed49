//! TLS termination for `https` listeners: loads a PEM certificate chain and key into a
//! rustls server config that offers h2 and HTTP/1.1 by ALPN, with resumption by
//! session id (a cache per listener, kept across reloads) and by stateless tickets
//! (see [`tickets`]).
//!
//! The files are read each time a snapshot is built, so a reload picks up renewed
//! certificates and ticket keys; connections already open keep what they started
//! with. The crypto provider is a cargo feature, `aws-lc-rs` (the default) or `ring`,
//! and exactly one is compiled in.

pub mod tickets;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[cfg(all(feature = "ring", feature = "aws-lc-rs"))]
compile_error!("the features `ring` and `aws-lc-rs` exclude each other: build with --no-default-features --features ring,jemalloc");
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("a TLS provider is needed: the feature `aws-lc-rs` (default) or `ring`");

#[cfg(all(feature = "aws-lc-rs", not(feature = "ring")))]
use aws_lc_rs as crypto;
#[cfg(feature = "ring")]
use ring as crypto;

/// The name of the crypto provider compiled in, for `--version` and the state API.
pub const PROVIDER: &str = if cfg!(feature = "ring") {
    "ring"
} else {
    "aws-lc-rs"
};

/// The crypto provider compiled in.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "ring")]
    let p = rustls::crypto::ring::default_provider();
    #[cfg(all(feature = "aws-lc-rs", not(feature = "ring")))]
    let p = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(p)
}

/// What a listener's TLS is made of (`listeners[].tls`).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The same listener's TLS in the snapshot before: its session cache is kept when
    /// the size is the same, so a reload keeps the sessions clients can resume.
    pub before: Option<&'a Info>,
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key.
    pub key: &'a Path,
    /// Sessions kept for resumption by id; 0 turns the cache off.
    pub session_cache: usize,
    /// Whether stateless tickets are issued.
    pub tickets: bool,
    /// Shared ticket keys; `None` for the process's random keys.
    pub ticket_keys_file: Option<&'a Path>,
}

/// A listener's TLS as the state API shows it.
#[derive(Debug, Clone)]
pub struct Info {
    /// Sessions the cache holds at most (0: off).
    pub session_cache: usize,
    /// The cache, carried to the next snapshot's same listener.
    cache: Arc<dyn StoresServerSessions>,
    /// The ticket keys, when tickets are on.
    pub tickets: Option<Arc<tickets::Tickets>>,
}

impl Info {
    /// `{provider, session_cache, tickets: {source, keys}}`; `keys` are the first 4
    /// bytes of each key's name (sent in clear in every ticket), current first, so an
    /// operator can see that a fleet agrees.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": PROVIDER,
            "session_cache": self.session_cache,
            "tickets": self.tickets.as_ref().map(|t| serde_json::json!({
                "source": match t.source() {
                    tickets::Source::File(f) => format!("file {f}"),
                    tickets::Source::Random => "random, rotated every 12h".to_owned(),
                },
                "keys": t.key_names(),
            })),
        })
    }
}

/// Builds an acceptor from PEM files and the resumption settings.
pub fn acceptor(s: &Settings<'_>) -> Result<(TlsAcceptor, Info), String> {
    let (certs, key) = load(s.cert, s.key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let cache: Arc<dyn StoresServerSessions> = match s.before {
        _ if s.session_cache == 0 => Arc::new(NoServerSessionStorage {}),
        Some(b) if b.session_cache == s.session_cache => b.cache.clone(),
        _ => ServerSessionMemoryCache::new(s.session_cache),
    };
    cfg.session_storage = cache.clone();
    let mut info = Info {
        session_cache: s.session_cache,
        cache,
        tickets: None,
    };
    if s.tickets {
        let keys = match s.ticket_keys_file {
            Some(path) => Arc::new(tickets::Tickets::from_file(path)?),
            None => tickets::process_keys()?,
        };
        cfg.ticketer = keys.clone();
        info.tickets = Some(keys);
    }
    Ok((TlsAcceptor::from(Arc::new(cfg)), info))
}

fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    Ok((certs, key))
}

/// The signature algorithm of a private key file (`RSA`, `ECDSA`, `ED25519`), for the
/// lint: RSA-2048 full handshakes cost several times ECDSA P-256's.
pub fn key_algorithm(key: &Path) -> Result<String, String> {
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("unsupported private key {}: {e}", key.display()))?;
    Ok(format!("{:?}", signing.algorithm()))
}

/// A completed handshake's labels for `ninefold_tls_handshakes_total`: the kind
/// (`full` or `resumed`) and the version (`1.2`, `1.3`).
pub fn handshake_labels(c: &rustls::ServerConnection) -> (&'static str, &'static str) {
    let kind = match c.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => "resumed",
        _ => "full",
    };
    let version = match c.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "other",
    };
    (kind, version)
}

/// Why a handshake failed, for `ninefold_tls_handshake_failures_total`: `closed`
/// (the client left), `no_shared_cipher` (no common version, suite or group),
/// `bad_message` (not TLS, or broken), `alert` (the client refused, e.g. our
/// certificate), `other`.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(E::PeerIncompatible(_)) => "no_shared_cipher",
        Some(
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError,
        ) => "bad_message",
        Some(E::AlertReceived(_)) => "alert",
        Some(_) => "other",
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "closed",
            std::io::ErrorKind::InvalidData => "bad_message",
            _ => "other",
        },
    }
}

/// A TLS client that encrypts without checking the server's certificate: what libpq's
/// `sslmode=prefer` and `require` do, for the PostgreSQL health probe. It protects the
/// probe's password from passive eavesdropping, not from an active man in the middle.
pub fn unverified_client() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("both providers support the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Accepts any certificate, but still checks that the handshake is signed with the
/// certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
