//! PostgreSQL fixture: a real PostgreSQL primary and a streaming standby, each in its
//! own data directory under one temporary directory, on free loopback ports, for the
//! tests in `postgres`. The binaries come from `pg_config --bindir` (when that holds
//! `initdb`) or the newest `/usr/lib/postgresql/*/bin`; as root they run as the
//! `postgres` user (through `runuser`), who is given the temporary directory. The
//! primary has three login roles (`ninefold` and `app` with SCRAM-SHA-256 passwords,
//! `md5user` with an MD5-stored one, which `pg_hba.conf` answers with the md5 method),
//! and the database `app` owned by `app`; the superuser `postgres` has no password and
//! connects over the Unix socket only ([`Pg::sql`]). The standby retries its connection
//! to the primary every 100 ms (`wal_retrieve_retry_interval`, 5 s by default), so it
//! catches up right after the primary restarts. Every start waits with a deadline
//! (`pg_ctl -w`, then a TCP connect), nothing sleeps except short poll intervals, a
//! failure panics with the tail of the server's log, and dropping a [`Pg`] or [`Pair`]
//! stops its servers (immediate mode), also when a test panics. Everything here blocks
//! (child processes, short polls): fine in an async test while the gateway is its own
//! process, else wrap calls in `tokio::task::spawn_blocking`.

// The fixture is used by the `postgres` tests; not every helper by each of them.
#![allow(dead_code)]

use crate::support;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role the gateway logs in as (SCRAM-SHA-256, member of `pg_monitor`).
pub const NINEFOLD_USER: &str = "ninefold";
/// Password of [`NINEFOLD_USER`].
pub const NINEFOLD_PASSWORD: &str = "ninefold-secret";
/// A role whose password is stored as MD5, authenticated with the md5 method.
pub const MD5_USER: &str = "md5user";
/// Password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5-secret";
/// The application's role (SCRAM-SHA-256), owner of [`APP_DB`].
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app-secret";
/// The application's database, owned by [`APP_USER`].
pub const APP_DB: &str = "app";

/// Deadline of a server start (`pg_ctl -w -t`), a stop and a promotion.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one `psql` run, connection included.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls of a condition.
const POLL: Duration = Duration::from_millis(20);

/// Whether the PostgreSQL binaries (`initdb`, `pg_ctl`, `postgres`, `pg_basebackup`,
/// `psql`) are installed, and, when the tests run as root, `runuser` and a `postgres`
/// user to run them as.
pub fn available() -> bool {
    bin_dir().is_some() && (!as_root() || (postgres_ids().is_some() && runuser_works()))
}

/// [`available`] for the test `test`: true when PostgreSQL is there; otherwise says so
/// with [`support::skipped`] and returns false, or panics when
/// `NINEFOLD_REQUIRE_POSTGRES` is set (as `NINEFOLD_REQUIRE_PROMTOOL` does for
/// promtool).
pub fn require(test: &str) -> bool {
    if available() {
        return true;
    }
    if std::env::var_os("NINEFOLD_REQUIRE_POSTGRES").is_some() {
        panic!(
            "{test}: PostgreSQL is required (NINEFOLD_REQUIRE_POSTGRES is set) but not installed"
        );
    }
    support::skipped(&format!(
        "{test}: PostgreSQL is not installed (no initdb under `pg_config --bindir` or \
         /usr/lib/postgresql/*/bin; NINEFOLD_REQUIRE_POSTGRES=1 fails instead)"
    ));
    false
}

/// Path of the PostgreSQL program `name` (`pgbench`, `psql`, ...) in the directory
/// [`available`] found. Panics when PostgreSQL is not installed.
pub fn bin(name: &str) -> PathBuf {
    bin_dir()
        .expect("PostgreSQL is not installed (check pgfix::available() first)")
        .join(name)
}

/// One PostgreSQL server: its data directory, port and log. The postmaster's pid is
/// read from `postmaster.pid` when needed, since `pg_ctl` detaches it.
pub struct Pg {
    name: &'static str,
    base: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// Started and neither stopped nor killed since: what `Drop` has to stop.
    running: bool,
}

impl Pg {
    fn new(name: &'static str, base: &Path) -> Pg {
        Pg {
            name,
            base: base.to_owned(),
            data: base.join(name),
            log: base.join(format!("{name}.log")),
            port: 0,
            running: false,
        }
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The pid in `postmaster.pid`, if the file is there (it stays after [`Pg::kill9`]
    /// when the postmaster was reaped, as after a real crash).
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGKILLs the postmaster (its pid from `postmaster.pid`) and waits until the port
    /// refuses connections. Its children notice the death and exit by themselves; those
    /// still there after 5 s are SIGKILLed too, so that [`Pg::start`] finds no shared
    /// memory in use. A postmaster left a zombie (when nobody reaps orphans, as under a
    /// container's PID 1 that does not) would make the next start take `postmaster.pid`
    /// and the socket's lock file for a live server's (`kill(pid, 0)` succeeds on a
    /// zombie), so both files are removed then.
    pub fn kill9(&mut self) {
        let Some(pid) = self.pid() else {
            self.fail("kill9: no postmaster.pid, the server is not running")
        };
        let Some(postmaster) = Proc::find(pid) else {
            self.fail(&format!("kill9: the postmaster (pid {pid}) is not running"))
        };
        let children = postmaster.children();
        postmaster.signal(libc::SIGKILL);
        self.running = false;
        let addr = self.addr();
        if !wait_until(Duration::from_secs(10), || !accepts(addr)) {
            self.fail("kill9: the port still accepts connections 10 s after SIGKILL");
        }
        let gone = || !postmaster.alive() && children.iter().all(|c| !c.alive());
        if !wait_until(Duration::from_secs(5), gone) {
            for c in &children {
                c.signal(libc::SIGKILL);
            }
            if !wait_until(Duration::from_secs(10), gone) {
                self.fail("kill9: the server's processes outlived SIGKILL by 10 s");
            }
        }
        if postmaster.zombie() {
            let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
            let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
            let _ = std::fs::remove_file(self.base.join(socket_lock));
        }
    }

    /// Starts the server again (`pg_ctl start -w`) on the same data directory and port,
    /// and waits until the port accepts connections. A primary killed by [`Pg::kill9`]
    /// runs crash recovery first.
    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            self.fail(&e);
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`), waiting until it has.
    pub fn stop(&mut self) {
        let out = self.pg_ctl(&["stop", "-m", "fast"]);
        if !out.status.success() {
            self.fail(&format!("pg_ctl stop failed: {}", output_text(&out)));
        }
        self.running = false;
    }

    /// Promotes a standby (`pg_ctl promote -w`), waiting until it accepts writes.
    pub fn promote(&self) {
        let out = self.pg_ctl(&["promote"]);
        if !out.status.success() {
            self.fail(&format!("pg_ctl promote failed: {}", output_text(&out)));
        }
    }

    /// Runs `sql` with `psql -At` on this server over TCP as `user`/`password` in `db`:
    /// its output trimmed, or the error text.
    pub fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
        Self::psql_at(self.addr(), user, password, db, sql)
    }

    /// Like [`Pg::psql`], against any address (through the gateway, say). Connecting
    /// gives up after 3 s (`PGCONNECT_TIMEOUT`), the whole run after 30 s.
    pub fn psql_at(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        psql(
            &addr.ip().to_string(),
            addr.port(),
            user,
            Some(password),
            db,
            &[sql],
        )
    }

    /// Runs `sql` as the superuser `postgres` in database `postgres`, over the Unix
    /// socket (trusted): for what the tests' roles may not do (`pg_terminate_backend`
    /// of others, reading `pg_authid`, ...).
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        self.sql_many(&[sql])
    }

    /// Several statements as the superuser in one session, each in its own
    /// transaction (so `CREATE DATABASE` can be one of them).
    fn sql_many(&self, sqls: &[&str]) -> Result<String, String> {
        psql(
            &self.base.to_string_lossy(),
            self.port,
            "postgres",
            None,
            "postgres",
            sqls,
        )
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.running = true;
        let port = format!("-p {}", self.port);
        let out = self.pg_ctl(&["start", "-l", &self.log.to_string_lossy(), "-o", &port]);
        if !out.status.success() {
            return Err(format!("pg_ctl start failed: {}", output_text(&out)));
        }
        let addr = self.addr();
        if !wait_until(START_TIMEOUT, || accepts(addr)) {
            return Err(format!("started, but {addr} refuses connections"));
        }
        Ok(())
    }

    /// The first start, on a free port: another process may take the port between
    /// [`free_port`] and the server's bind, so a bind failure picks another.
    fn first_start(&mut self) {
        for attempt in 1..=3 {
            self.port = free_port();
            let before = std::fs::metadata(&self.log).map_or(0, |m| m.len());
            let Err(e) = self.try_start() else { return };
            let lost_port = read_from(&self.log, before).contains("Address already in use");
            if !(lost_port && attempt < 3) {
                self.fail(&e);
            }
            self.running = false;
        }
    }

    /// `pg_ctl ACTION -w -t 60 -D data ...` as the server's user.
    fn pg_ctl(&self, args: &[&str]) -> Output {
        let secs = START_TIMEOUT.as_secs().to_string();
        server_cmd("pg_ctl", &self.base)
            .arg(args[0])
            .args(["-w", "-t", &secs, "-D"])
            .arg(&self.data)
            .args(&args[1..])
            .output()
            .expect("run pg_ctl")
    }

    /// Stops whatever runs, quietly (for `Drop`): `pg_ctl stop -m immediate`, then
    /// SIGKILL for a postmaster still there.
    fn shutdown(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let Some(postmaster) = self.pid().and_then(Proc::find) else {
            return;
        };
        let children = postmaster.children();
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        if postmaster.alive() {
            postmaster.signal(libc::SIGKILL);
            for c in &children {
                c.signal(libc::SIGKILL);
            }
        }
    }

    /// Panics with `what` and the tail of the server's log.
    fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "PostgreSQL {} (port {}): {what}\n--- last lines of {} ---\n{tail}",
            self.name,
            self.port,
            self.log.display()
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A primary and a standby that streams from it (`pg_basebackup -R -X stream`), in one
/// temporary directory: `primary/`, `standby/`, their logs `primary.log` and
/// `standby.log`, and the Unix sockets.
pub struct Pair {
    pub primary: Pg,
    pub standby: Pg,
    dir: tempfile::TempDir,
    /// One pair at a time in this process: the tests' probe timeouts are tight, and
    /// a killed server's port must not be taken by another test's pair before it is
    /// restarted. Dropped last, after both servers stopped.
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Held by each [`Pair`] while it lives.
static ONE_PAIR: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Pair {
    /// Creates and starts both servers, the roles and the database `app` (see the
    /// module's documentation), and waits until the standby is in recovery and
    /// accepts connections. Panics, with the log's tail, when a step fails.
    pub fn start() -> Pair {
        assert!(
            available(),
            "PostgreSQL is not installed (check pgfix::available() first)"
        );
        // A test that panicked while holding it poisoned it; the pair it held is gone.
        let serial = ONE_PAIR.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("ninefold-pg-")
            .tempdir()
            .expect("create the temporary directory");
        let base = dir.path().to_owned();
        give_to_postgres(&base);

        let mut primary = Pg::new("primary", &base);
        let out = server_cmd("initdb", &base)
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
                "--encoding=UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&primary.data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", output_text(&out));
        append(
            &primary.data.join("postgresql.conf"),
            &format!(
                "\n# pgfix\n\
                 listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{}'\n\
                 fsync = off\n\
                 shared_buffers = 32MB\n\
                 wal_level = replica\n\
                 max_wal_senders = 5\n\
                 hot_standby = on\n\
                 wal_keep_size = 64MB\n\
                 wal_retrieve_retry_interval = 100ms\n\
                 password_encryption = 'scram-sha-256'\n\
                 log_connections = on\n",
                base.display()
            ),
        );
        std::fs::write(
            primary.data.join("pg_hba.conf"),
            "# pgfix\n\
             local all all trust\n\
             local replication all trust\n\
             host replication all 127.0.0.1/32 trust\n\
             host all md5user 127.0.0.1/32 md5\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        primary.first_start();
        let roles = [
            format!("CREATE ROLE {NINEFOLD_USER} LOGIN PASSWORD '{NINEFOLD_PASSWORD}'"),
            format!("GRANT pg_monitor TO {NINEFOLD_USER}"),
            format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"),
            format!("CREATE DATABASE {APP_DB} OWNER {APP_USER}"),
            "SET password_encryption = 'md5'".to_owned(),
            format!("CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'"),
        ];
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        if let Err(e) = primary.sql_many(&roles) {
            primary.fail(&format!("creating the roles failed: {e}"));
        }

        let mut standby = Pg::new("standby", &base);
        let out = server_cmd("pg_basebackup", &base)
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-w", "-R", "-X", "stream", "-c", "fast"])
            .arg("--no-sync")
            .arg("-D")
            .arg(&standby.data)
            .output()
            .expect("run pg_basebackup");
        if !out.status.success() {
            primary.fail(&format!("pg_basebackup failed: {}", output_text(&out)));
        }
        standby.first_start();
        let in_recovery = || standby.sql("SELECT pg_is_in_recovery()").as_deref() == Ok("t");
        if !wait_until(START_TIMEOUT, in_recovery) {
            standby.fail("the standby is not in recovery");
        }
        Pair {
            primary,
            standby,
            dir,
            _serial: serial,
        }
    }

    /// Whether the standby has replayed the primary's current WAL position within
    /// `timeout`. False as well when the primary does not answer.
    pub fn wait_replicated(&self, timeout: Duration) -> bool {
        let Ok(lsn) = self.primary.sql("SELECT pg_current_wal_lsn()") else {
            return false;
        };
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        wait_until(timeout, || self.standby.sql(&sql).as_deref() == Ok("t"))
    }

    /// The temporary directory holding both servers.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // The standby first, so it does not log the primary going away.
        self.standby.shutdown();
        self.primary.shutdown();
    }
}

// ---------------------------------------------------------------------------------
// Helpers

fn bin_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_bin_dir).as_deref()
}

/// `pg_config --bindir` when it holds the programs, else the newest
/// `/usr/lib/postgresql/VERSION/bin` that does.
fn find_bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    let configured = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = configured {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && complete(&d) {
            return Some(d);
        }
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .split('.')
            .map(|p| p.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
        else {
            continue;
        };
        let d = entry.path().join("bin");
        if complete(&d) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, d));
        }
    }
    best.map(|(_, d)| d)
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn runuser_works() -> bool {
    Command::new("runuser")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Uid and gid of the `postgres` user.
fn postgres_ids() -> Option<(u32, u32)> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success().then(|| text.trim().parse().ok())?
        };
        Some((id("-u")?, id("-g")?))
    })
}

/// As root, hands `dir` to the `postgres` user (PostgreSQL refuses to run as root).
pub fn give_to_postgres(dir: &Path) {
    if as_root() {
        let (uid, gid) = postgres_ids().expect("no postgres user");
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown to postgres");
    }
}

/// A PostgreSQL server program, as `postgres` through `runuser` when root, run in
/// `cwd` (the server's user may not enter the test's working directory).
fn server_cmd(program: &str, cwd: &Path) -> Command {
    let path = bin(program);
    let mut cmd = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    cmd.current_dir(cwd)
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .stdin(Stdio::null());
    cmd
}

/// `psql -X -w -At -v ON_ERROR_STOP=1 -h HOST -p PORT -U USER -d DB -c SQL...`: stdout
/// trimmed, or stderr (stdout when stderr is empty) on a failure or after
/// [`PSQL_TIMEOUT`].
fn psql(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
    sqls: &[&str],
) -> Result<String, String> {
    let mut cmd = Command::new(bin("psql"));
    cmd.args(["-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-h", host])
        .args(["-p", &port.to_string(), "-U", user, "-d", db]);
    for sql in sqls {
        cmd.arg("-c").arg(sql);
    }
    for var in [
        "PGHOSTADDR",
        "PGSERVICE",
        "PGOPTIONS",
        "PGPASSFILE",
        "PGPASSWORD",
    ] {
        cmd.env_remove(var);
    }
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot run psql: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(PSQL_TIMEOUT) {
        Ok(out) => out.map_err(|e| format!("psql: {e}"))?,
        Err(_) => {
            // The child is not reaped yet (the thread still waits on it), so its pid
            // is still its own.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(format!("psql: no answer within {PSQL_TIMEOUT:?}"));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match (out.status.success(), stderr.is_empty()) {
        (true, _) => Ok(stdout),
        (false, false) => Err(stderr),
        (false, true) => Err(format!("psql: {} {stdout}", out.status)),
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Polls `f` every [`POLL`] until it is true or `timeout` passes.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    f()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// The text of `path` from byte `offset` on.
fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A process as seen in `/proc`: its pid and start time, so that a pid reused by
/// another process after this one exited is never taken for it.
#[derive(Clone, Copy)]
struct Proc {
    pid: u32,
    start: u64,
}

impl Proc {
    /// The process `pid`, if it exists and is a (possibly dead) `postgres`.
    fn find(pid: u32) -> Option<Proc> {
        let stat = Stat::read(pid)?;
        (stat.comm == "postgres").then_some(Proc {
            pid,
            start: stat.start,
        })
    }

    fn stat(&self) -> Option<Stat> {
        Stat::read(self.pid).filter(|s| s.start == self.start)
    }

    /// Running, not exited (a zombie has exited).
    fn alive(&self) -> bool {
        self.stat().is_some_and(|s| s.state != 'Z')
    }

    /// Exited, and not reaped by its parent.
    fn zombie(&self) -> bool {
        self.stat().is_some_and(|s| s.state == 'Z')
    }

    fn signal(&self, sig: libc::c_int) {
        if self.alive() {
            // SAFETY: kill has no memory-safety preconditions; the pid was checked to
            // be this very process (same start time) just before.
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }

    /// Its live children.
    fn children(&self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let s = Stat::read(pid)?;
                (s.ppid == self.pid && s.state != 'Z').then_some(Proc {
                    pid,
                    start: s.start,
                })
            })
            .collect()
    }
}

/// The fields of `/proc/PID/stat` the fixture reads.
struct Stat {
    comm: String,
    state: char,
    ppid: u32,
    start: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text[open + 1..close].to_owned();
        let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
        Some(Stat {
            comm,
            state: rest.first()?.chars().next()?,
            ppid: rest.get(1)?.parse().ok()?,
            // Field 22 (starttime); `rest` starts at field 3.
            start: rest.get(19)?.parse().ok()?,
        })
    }
}

// ---------------------------------------------------------------------------------
// Smoke tests of the fixture itself

/// A pair starts; a row written on the primary by `app` is read on the standby, which
/// refuses writes; the three roles log in with their methods and storage.
#[test]
fn pair_starts_and_replicates() {
    if !require("pgfix::pair_starts_and_replicates") {
        return;
    }
    let t0 = Instant::now();
    let pair = Pair::start();
    eprintln!("pgfix: Pair::start took {:?}", t0.elapsed());
    let (p, s) = (&pair.primary, &pair.standby);
    let app = |pg: &Pg, sql: &str| pg.psql(APP_USER, APP_PASSWORD, APP_DB, sql);
    app(p, "CREATE TABLE t (id int PRIMARY KEY, v text)").unwrap();
    app(p, "INSERT INTO t VALUES (1, 'one')").unwrap();
    assert!(pair.wait_replicated(Duration::from_secs(10)));
    assert_eq!(app(s, "SELECT v FROM t WHERE id = 1").unwrap(), "one");
    let err = app(s, "INSERT INTO t VALUES (2, 'two')").unwrap_err();
    assert!(err.contains("read-only"), "{err}");

    let whoami = |user: &str, password: &str| p.psql(user, password, APP_DB, "SELECT current_user");
    assert_eq!(
        whoami(NINEFOLD_USER, NINEFOLD_PASSWORD).unwrap(),
        NINEFOLD_USER
    );
    assert_eq!(whoami(MD5_USER, MD5_PASSWORD).unwrap(), MD5_USER);
    let err = whoami(APP_USER, "wrong").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    let stored = p
        .sql(
            "SELECT rolname || ' ' || split_part(rolpassword, '$', 1) FROM pg_authid \
             WHERE rolname IN ('ninefold', 'md5user') ORDER BY 1",
        )
        .unwrap();
    assert!(stored.starts_with("md5user md5"), "{stored}");
    assert!(stored.ends_with("\nninefold SCRAM-SHA-256"), "{stored}");
}

/// kill9 leaves the port refusing and the server restartable on it; the standby
/// catches up again and, promoted, accepts writes.
#[test]
fn kill9_restart_and_promote() {
    if !require("pgfix::kill9_restart_and_promote") {
        return;
    }
    let mut pair = Pair::start();
    let app = |pg: &Pg, sql: &str| pg.psql(APP_USER, APP_PASSWORD, APP_DB, sql);
    app(&pair.primary, "CREATE TABLE t (id int)").unwrap();
    let old = pair.primary.pid().unwrap();
    pair.primary.kill9();
    assert!(app(&pair.primary, "SELECT 1").is_err());
    pair.primary.start();
    assert_ne!(pair.primary.pid().unwrap(), old);
    app(&pair.primary, "INSERT INTO t VALUES (1)").unwrap();
    assert!(pair.wait_replicated(Duration::from_secs(20)));
    assert_eq!(app(&pair.standby, "SELECT count(*) FROM t").unwrap(), "1");

    pair.primary.stop();
    pair.standby.promote();
    app(&pair.standby, "INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(app(&pair.standby, "SELECT count(*) FROM t").unwrap(), "2");
}
