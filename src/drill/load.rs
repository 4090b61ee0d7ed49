//! The drill's load: streams of operations stamped with the drill's monotonic clock,
//! each recorded as it ends, and the acknowledged writes of a SQL stream logged
//! durably as they are acknowledged (so they can be checked against the database
//! afterwards, whatever happens to the drill).

use super::file::{HttpUrl, Load, Sql};
use crate::config::{PostgresCheck, Role, SslMode, TwoPrimaries};
use crate::upstream::pg::Conn;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest single operation.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// One operation of a load stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Op {
    /// Index of the stream in `load`.
    pub stream: usize,
    /// Start, seconds since the drill began.
    pub start: f64,
    /// End, seconds since the drill began.
    pub end: f64,
    /// It succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sequence number a SQL write carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// What the streams record, shared.
#[derive(Default)]
pub struct Record {
    /// Every operation, in the order they ended.
    pub ops: Vec<Op>,
    /// Acknowledged writes: (stream, seq, acknowledged at, seconds).
    pub acked: Vec<(usize, u64, f64)>,
    /// Writes sent whose outcome is unknown (the connection broke before the answer).
    pub indeterminate: Vec<(usize, u64, f64)>,
}

/// The recorder the streams share, and the durable log of acknowledged writes.
#[derive(Clone)]
pub struct Recorder {
    /// The record.
    pub inner: Arc<Mutex<Record>>,
    /// When the drill began.
    pub t0: Instant,
    acked_log: Arc<Mutex<Option<std::fs::File>>>,
}

impl Recorder {
    /// A recorder whose acknowledged writes are also appended to `acked_log`.
    pub fn new(t0: Instant, acked_log: Option<std::fs::File>) -> Recorder {
        Recorder {
            inner: Arc::default(),
            t0,
            acked_log: Arc::new(Mutex::new(acked_log)),
        }
    }

    /// Seconds since the drill began.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn push(&self, op: Op) {
        if let Ok(mut r) = self.inner.lock() {
            r.ops.push(op);
        }
    }

    fn ack(&self, stream: usize, seq: u64, at: f64) {
        if let Ok(mut f) = self.acked_log.lock() {
            if let Some(f) = f.as_mut() {
                // Durable before it counts: a drill killed now still knows the write.
                let _ = writeln!(f, "{stream} {seq} {at:.6}");
                let _ = f.sync_data();
            }
        }
        if let Ok(mut r) = self.inner.lock() {
            r.acked.push((stream, seq, at));
        }
    }

    fn indeterminate(&self, stream: usize, seq: u64, at: f64) {
        if let Ok(mut r) = self.inner.lock() {
            r.indeterminate.push((stream, seq, at));
        }
    }
}

/// The check settings the SQL client logs in with (only the login is read).
pub fn login_of(s: &Sql) -> PostgresCheck {
    PostgresCheck {
        role: Role::Primary,
        user: s.user.clone(),
        database: s.database.clone(),
        password: s.password.clone(),
        sslmode: SslMode::Disable,
        two_primaries: TwoPrimaries::Refuse,
        max_replication_lag: None,
    }
}

/// Opens a session to `s`, within the operation timeout.
pub async fn connect(s: &Sql) -> Result<Conn, String> {
    let go = async {
        let stream = tokio::net::TcpStream::connect(s.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Conn::open(stream, s.address, &login_of(s)).await
    };
    tokio::time::timeout(OP_TIMEOUT, go)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// Runs stream `i` until `stop` turns true.
pub async fn run(i: usize, load: Load, rec: Recorder, mut stop: watch::Receiver<bool>) {
    let rate = match &load {
        Load::Sql { rate, .. } | Load::Http { rate, .. } => *rate,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let start = rec.now();
        match &load {
            Load::Sql {
                login,
                table,
                query,
                ..
            } => {
                let (ok, error, carried) = match query {
                    Some(q) => read(login, q, &mut conn).await,
                    None => write(login, table, &mut conn, &mut seq, &rec, i).await,
                };
                rec.push(Op {
                    stream: i,
                    start,
                    end: rec.now(),
                    ok,
                    error,
                    seq: carried,
                });
            }
            Load::Http { url, expect, .. } => {
                let r = get(url).await;
                let (ok, error) = match r {
                    Ok(s) if expect.contains(&s) => (true, None),
                    Ok(s) => (false, Some(format!("status {s}"))),
                    Err(e) => (false, Some(e)),
                };
                rec.push(Op {
                    stream: i,
                    start,
                    end: rec.now(),
                    ok,
                    error,
                    seq: None,
                });
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// The stream's session, opened first when there is none (a failed open is an
/// operation that never reached the database).
async fn session<'c>(login: &Sql, conn: &'c mut Option<Conn>) -> Result<&'c mut Conn, String> {
    if conn.is_none() {
        *conn = Some(connect(login).await?);
    }
    conn.as_mut().ok_or_else(|| "no session".to_string())
}

/// One read: (succeeded, why not, no sequence number).
async fn read(
    login: &Sql,
    q: &str,
    conn: &mut Option<Conn>,
) -> (bool, Option<String>, Option<u64>) {
    let c = match session(login, conn).await {
        Ok(c) => c,
        Err(e) => return (false, Some(e), None),
    };
    match tokio::time::timeout(OP_TIMEOUT, c.query(q)).await {
        Ok(Ok(_)) => (true, None, None),
        Ok(Err(e)) => {
            *conn = None;
            (false, Some(e), None)
        }
        Err(_) => {
            *conn = None;
            (false, Some("timeout".into()), None)
        }
    }
}

/// One write of the next sequence number: (succeeded, why not, the number sent).
async fn write(
    login: &Sql,
    table: &str,
    conn: &mut Option<Conn>,
    seq: &mut u64,
    rec: &Recorder,
    i: usize,
) -> (bool, Option<String>, Option<u64>) {
    let c = match session(login, conn).await {
        Ok(c) => c,
        // Never sent: not a write at all.
        Err(e) => return (false, Some(e), None),
    };
    *seq += 1;
    let n = *seq;
    let sql = format!("INSERT INTO {table} (seq) VALUES ({n}) RETURNING seq");
    match tokio::time::timeout(OP_TIMEOUT, c.query(&sql)).await {
        Ok(Ok(_)) => {
            rec.ack(i, n, rec.now());
            (true, None, Some(n))
        }
        // The server said no: the write did not happen.
        Ok(Err(e)) if e.starts_with("server:") => {
            *conn = None;
            (false, Some(e), Some(n))
        }
        // Sent, and no answer: it may or may not have happened.
        Ok(Err(e)) => {
            *conn = None;
            rec.indeterminate(i, n, rec.now());
            (false, Some(e), Some(n))
        }
        Err(_) => {
            *conn = None;
            rec.indeterminate(i, n, rec.now());
            (false, Some("timeout".into()), Some(n))
        }
    }
}

/// One `GET` on a fresh connection: the status.
pub async fn get(url: &HttpUrl) -> Result<u16, String> {
    let go = async {
        let stream = tokio::net::TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = http::Request::get(url.path.as_str())
            .header(http::header::HOST, url.addr.to_string())
            .header(http::header::USER_AGENT, "ninefold-drill")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = crate::oneshot::send(stream, req, false)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        // Read the body to its end: the answer is whole, or it is a failure.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok(status)
    };
    tokio::time::timeout(OP_TIMEOUT, go)
        .await
        .map_err(|_| "timeout".to_string())?
}
