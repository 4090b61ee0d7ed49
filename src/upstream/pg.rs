//! The PostgreSQL health probe: logs in with the server's own protocol and asks for
//! the endpoint's role, and a replica's lag, the way a client would see them.
//!
//! One probe is one connection: an `SSLRequest` when `sslmode` asks for TLS (the
//! certificate is not verified, as with libpq's `prefer` and `require`), the
//! `StartupMessage`, then whatever authentication the server asks for (trust,
//! cleartext, md5, SCRAM-SHA-256, with `postgres-protocol`'s codecs and SCRAM), then
//! the role: PostgreSQL 14 and later report `in_hot_standby` right after login, older
//! servers answer `SELECT pg_is_in_recovery()`. A replica also answers its lag: 0 when
//! everything it received is replayed, else the time since the last replayed
//! transaction, and the received-but-not-replayed WAL in bytes. The probe ends with
//! `Terminate`. Every failure is a reason a person can read in the state API
//! (`auth failed: password authentication failed for user "ninefold"`,
//! `role replica, want primary`, `lag 12.4s > 5s`); a lag that cannot be measured
//! fails the check, it never passes it.

use crate::config::{LagBound, PostgresCheck, Role, SslMode};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The lag query: seconds behind (0 when all received WAL is replayed), and bytes
/// received but not replayed. Either is NULL when the server cannot tell.
const LAG_QUERY: &str = "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
     THEN 0 ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END::float8, \
     pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8";

/// What a probe learned of an endpoint that answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// The role it claims.
    pub role: Role,
    /// A replica's lag in seconds, when measured.
    pub lag_seconds: Option<f64>,
    /// A replica's WAL received but not replayed, in bytes, when measured.
    pub lag_bytes: Option<f64>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The reason, for the state API and the log.
    pub reason: String,
    /// What the endpoint claimed, when it got that far.
    pub facts: Option<Facts>,
    /// The endpoint is a healthy replica, only too far behind: its sessions are kept.
    pub lag: bool,
}

/// The probe's byte stream: plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Probes `addr` over `stream` (already connected) with `check`; the caller bounds it
/// in time. `Ok` when the endpoint has the wanted role (and a replica's lag is within
/// the bound).
pub async fn probe(
    stream: TcpStream,
    addr: SocketAddr,
    check: &PostgresCheck,
) -> Result<Facts, Failure> {
    let fail = |reason: String| Failure {
        reason,
        facts: None,
        lag: false,
    };
    let mut conn = Conn::open(stream, addr, check).await.map_err(fail)?;
    let facts = conn.facts(check.role).await.map_err(fail)?;
    conn.close().await;
    judge(facts, check)
}

/// A logged-in PostgreSQL session speaking the simple query protocol: what the probe
/// uses, and what a drill's SQL client or a test can use to hold a real session.
pub struct Conn {
    io: Box<dyn Io>,
    out: BytesMut,
    inb: BytesMut,
    /// `in_hot_standby` as the server reported it at login (PostgreSQL 14 and later).
    hot_standby: Option<bool>,
}

impl Conn {
    /// Logs in over `stream` (connected to `addr`) as `check` says: TLS per
    /// `sslmode`, then the authentication the server asks for.
    pub async fn open(
        stream: TcpStream,
        addr: SocketAddr,
        check: &PostgresCheck,
    ) -> Result<Conn, String> {
        let io = connect(stream, addr, check.sslmode).await?;
        let mut c = Conn {
            io,
            out: BytesMut::new(),
            inb: BytesMut::with_capacity(4096),
            hot_standby: None,
        };
        c.login(check).await?;
        Ok(c)
    }

    /// Runs one simple query; returns the first row's values (text, `None` for NULL),
    /// or the server's error.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Option<String>>, String> {
        query(&mut self.io, &mut self.out, &mut self.inb, sql, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| "no row".to_string())
    }

    /// Runs one simple query; returns every row (the drill reads its sequence back).
    pub async fn query_all(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        query(&mut self.io, &mut self.out, &mut self.inb, sql, true).await
    }

    /// Sends `Terminate` and closes, best effort.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.out);
        let _ = self.io.write_all(&self.out).await;
        let _ = self.io.shutdown().await;
    }
}

/// The verdict on what an endpoint claimed.
pub fn judge(facts: Facts, check: &PostgresCheck) -> Result<Facts, Failure> {
    if facts.role != check.role {
        return Err(Failure {
            reason: format!("role {}, want {}", facts.role.as_str(), check.role.as_str()),
            facts: Some(facts),
            lag: false,
        });
    }
    let lagging = |reason: String| Failure {
        reason,
        facts: Some(facts),
        lag: true,
    };
    match check.max_replication_lag {
        None => Ok(facts),
        Some(LagBound::Time(max)) => match facts.lag_seconds {
            None => Err(lagging("lag unknown: no transaction replayed yet".into())),
            Some(s) if s > max.as_secs_f64() => {
                // One decimal, unless it would round down to the bound itself.
                let shown = if (s * 10.0).round() / 10.0 > max.as_secs_f64() {
                    format!("{s:.1}")
                } else {
                    format!("{s:.3}")
                };
                Err(lagging(format!("lag {shown}s > {}", show_duration(max))))
            }
            Some(_) => Ok(facts),
        },
        Some(LagBound::Bytes(max)) => match facts.lag_bytes {
            None => Err(lagging("lag unknown: no WAL received".into())),
            Some(b) if b > max as f64 => Err(lagging(format!("lag {b:.0} bytes > {max} bytes"))),
            Some(_) => Ok(facts),
        },
    }
}

fn show_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// TLS as `sslmode` asks for it.
async fn connect(
    mut stream: TcpStream,
    addr: SocketAddr,
    mode: SslMode,
) -> Result<Box<dyn Io>, String> {
    if mode == SslMode::Disable {
        return Ok(Box::new(stream));
    }
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    stream
        .write_all(&buf)
        .await
        .map_err(|e| format!("ssl request: {e}"))?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| format!("ssl request: {e}"))?;
    match (answer[0], mode) {
        (b'S', _) => {
            let tls = tokio_rustls::TlsConnector::from(crate::tls::unverified_client());
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let s = tls
                .connect(name, stream)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            Ok(Box::new(s))
        }
        (b'N', SslMode::Require) => Err("sslmode require: the server does not offer TLS".into()),
        (b'N', _) => Ok(Box::new(stream)),
        (b, _) => Err(format!("ssl request: unexpected answer {b:#04x}")),
    }
}

impl Conn {
    /// Startup and authentication, until the server is ready for a query.
    async fn login(&mut self, check: &PostgresCheck) -> Result<(), String> {
        let Conn { io, out, inb, .. } = self;
        frontend::startup_message(
            [
                ("user", check.user.as_str()),
                ("database", check.database.as_str()),
                ("application_name", "ninefold-health"),
            ],
            out,
        )
        .map_err(|e| format!("startup: {e}"))?;
        send(io, out).await?;
        let password = || {
            check
                .password
                .as_ref()
                .map(|p| p.expose().as_bytes())
                .ok_or_else(|| {
                    "auth failed: the server asks for a password and none is set".to_string()
                })
        };
        let mut scram: Option<ScramSha256> = None;
        // Authentication.
        loop {
            match recv(io, inb).await? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?, out).map_err(|e| e.to_string())?;
                    send(io, out).await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        check.user.as_bytes(),
                        password()?,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), out).map_err(|e| e.to_string())?;
                    send(io, out).await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut scram_offered = false;
                    while let Some(m) = mechanisms.next().map_err(|e| e.to_string())? {
                        scram_offered |= m == SCRAM_SHA_256;
                    }
                    if !scram_offered {
                        return Err("auth failed: the server offers no SCRAM-SHA-256".into());
                    }
                    let s = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), out)
                        .map_err(|e| e.to_string())?;
                    send(io, out).await?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or("auth failed: SCRAM continue before start")?;
                    s.update(body.data())
                        .map_err(|e| format!("auth failed: scram: {e}"))?;
                    frontend::sasl_response(s.message(), out).map_err(|e| e.to_string())?;
                    send(io, out).await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or("auth failed: SCRAM final before start")?;
                    s.finish(body.data())
                        .map_err(|e| format!("auth failed: scram: {e}"))?;
                }
                Message::ErrorResponse(body) => return Err(error_text(&body, true)),
                Message::NoticeResponse(_) => {}
                _ => {
                    return Err("auth failed: a method the probe does not speak (gss, sspi)".into())
                }
            }
        }
        // Until ReadyForQuery: parameters, among them `in_hot_standby` on 14 and later.
        let mut hot_standby = None;
        loop {
            match recv(io, inb).await? {
                Message::ParameterStatus(p) if p.name().ok() == Some("in_hot_standby") => {
                    hot_standby = p.value().ok().map(|v| v == "on");
                }
                Message::ReadyForQuery(_) => break,
                Message::ErrorResponse(body) => return Err(error_text(&body, false)),
                _ => {}
            }
        }
        self.hot_standby = hot_standby;
        Ok(())
    }

    /// The role the server claims and, when it is a replica and `want` is replica too,
    /// its lag.
    pub async fn facts(&mut self, want: Role) -> Result<Facts, String> {
        let in_recovery = match self.hot_standby {
            Some(v) => v,
            None => {
                let row = self.query("SELECT pg_is_in_recovery()").await?;
                match row.first().and_then(|v| v.as_deref()) {
                    Some("t") => true,
                    Some("f") => false,
                    other => return Err(format!("pg_is_in_recovery() answered {other:?}")),
                }
            }
        };
        let role = if in_recovery {
            Role::Replica
        } else {
            Role::Primary
        };
        let mut facts = Facts {
            role,
            lag_seconds: None,
            lag_bytes: None,
        };
        if role == Role::Replica && want == Role::Replica {
            let row = self
                .query(LAG_QUERY)
                .await
                .map_err(|e| format!("lag query: {e}"))?;
            let num = |i: usize| {
                row.get(i)
                    .and_then(|v| v.as_deref())
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| v.max(0.0))
            };
            facts.lag_seconds = num(0);
            facts.lag_bytes = num(1);
        }
        Ok(facts)
    }
}

/// Runs one simple query; returns the first row's values (text, `None` for NULL).
async fn query(
    io: &mut Box<dyn Io>,
    out: &mut BytesMut,
    inb: &mut BytesMut,
    sql: &str,
    all: bool,
) -> Result<Vec<Vec<Option<String>>>, String> {
    frontend::query(sql, out).map_err(|e| e.to_string())?;
    send(io, out).await?;
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut error = None;
    loop {
        match recv(io, inb).await? {
            Message::DataRow(row) if all || rows.is_empty() => {
                let buf = row.buffer();
                let mut values = Vec::new();
                let mut ranges = row.ranges();
                while let Some(r) = ranges.next().map_err(|e| e.to_string())? {
                    values.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                }
                rows.push(values);
            }
            Message::ErrorResponse(body) => error = Some(error_text(&body, false)),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

async fn send(io: &mut Box<dyn Io>, out: &mut BytesMut) -> Result<(), String> {
    io.write_all(out).await.map_err(|e| format!("write: {e}"))?;
    out.clear();
    Ok(())
}

/// Reads one backend message.
async fn recv(io: &mut Box<dyn Io>, inb: &mut BytesMut) -> Result<Message, String> {
    loop {
        if let Some(m) = Message::parse(inb).map_err(|e| format!("protocol: {e}"))? {
            return Ok(m);
        }
        // A message larger than this is not an answer a probe asked for.
        if inb.len() > 1 << 20 {
            return Err("protocol: message too large".into());
        }
        let n = io.read_buf(inb).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
    }
}

/// An ErrorResponse as a reason: `auth failed: ...` for authentication errors (class
/// 28), `server: ...` otherwise (`the database system is starting up`, ...).
fn error_text(body: &postgres_protocol::message::backend::ErrorResponseBody, auth: bool) -> String {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    if auth && code.starts_with("28") {
        format!("auth failed: {message}")
    } else {
        format!("server: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(role: Role, lag: Option<LagBound>) -> PostgresCheck {
        PostgresCheck {
            role,
            user: "u".into(),
            database: "d".into(),
            password: None,
            sslmode: SslMode::Disable,
            two_primaries: crate::config::TwoPrimaries::Refuse,
            max_replication_lag: lag,
        }
    }

    fn facts(role: Role, s: Option<f64>, b: Option<f64>) -> Facts {
        Facts {
            role,
            lag_seconds: s,
            lag_bytes: b,
        }
    }

    #[test]
    fn a_replica_is_not_a_primary() {
        let e = judge(
            facts(Role::Replica, None, None),
            &check(Role::Primary, None),
        )
        .unwrap_err();
        assert_eq!(e.reason, "role replica, want primary");
        assert!(!e.lag);
        let e = judge(
            facts(Role::Primary, None, None),
            &check(Role::Replica, None),
        )
        .unwrap_err();
        assert_eq!(e.reason, "role primary, want replica");
    }

    #[test]
    fn lag_over_the_bound_fails_and_unknown_lag_never_passes() {
        let c = check(Role::Replica, Some(LagBound::Time(Duration::from_secs(5))));
        assert!(judge(facts(Role::Replica, Some(0.0), Some(0.0)), &c).is_ok());
        let e = judge(facts(Role::Replica, Some(12.44), Some(10.0)), &c).unwrap_err();
        assert_eq!(e.reason, "lag 12.4s > 5s");
        let e = judge(facts(Role::Replica, Some(5.02), Some(10.0)), &c).unwrap_err();
        assert_eq!(e.reason, "lag 5.020s > 5s");
        assert!(e.lag);
        let e = judge(facts(Role::Replica, None, None), &c).unwrap_err();
        assert!(e.reason.starts_with("lag unknown"), "{}", e.reason);
        let c = check(Role::Replica, Some(LagBound::Bytes(16 << 20)));
        assert!(judge(facts(Role::Replica, Some(99.0), Some(1024.0)), &c).is_ok());
        assert!(judge(
            facts(Role::Replica, Some(0.0), Some((17u64 << 20) as f64)),
            &c
        )
        .is_err());
    }
}
