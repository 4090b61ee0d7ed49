//! `ninefold drill demo`: self-contained drills for a newcomer. It starts three
//! `ninefold origin` processes in two zones and a gateway in front of them (this very
//! binary, `serve`, in a temporary directory, on free ports), runs the shipped
//! `examples/drills/replica-loss.yaml` against them (one origin SIGKILLed under load)
//! and prints the report. Where Debian's PostgreSQL is installed, it then makes a
//! primary and a synchronous standby in the temporary directory (as `postgres` through
//! `runuser` when run as root), puts a gateway with the TCP tier in front, and runs
//! the shipped `examples/drills/postgres-failover.yaml` (SIGKILL the primary, promote
//! the standby, RTO and lost writes). It stops everything it started.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped drill the demo runs (embedded, so the demo works from any directory).
pub const REPLICA_LOSS: &str = include_str!("../../examples/drills/replica-loss.yaml");

/// Children killed when dropped.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `exe args`, and waits (10 s at most) for the stdout lines `want` picks.
fn spawn(
    kids: &mut Kids,
    exe: &Path,
    args: &[&str],
    mut want: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    let mut c = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let out = c.stdout.take().ok_or("no stdout")?;
    kids.0.push(c);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Keep reading, so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return Ok(()),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "{} {} did not start",
                    exe.display(),
                    args.join(" ")
                ))
            }
        }
    }
}

/// Runs the demo drill; returns the drill's exit code.
pub fn run(json: bool) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = tempfile_dir()?;
    let mut kids = Kids(Vec::new());
    let mut origins = Vec::new();
    for (i, zone) in ["a", "a", "b"].iter().enumerate() {
        let name = format!("replica-{}", i + 1);
        let mut addr = None;
        spawn(&mut kids, &exe, &["origin", "--name", &name], |l| {
            // `origin NAME listening on ADDR`
            addr = l
                .rsplit(' ')
                .next()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            addr.is_some()
        })?;
        let pid = kids.0.last().map(Child::id).unwrap_or(0);
        let pid_file = dir.join(format!("{name}.pid"));
        std::fs::write(&pid_file, format!("{pid}\n")).map_err(|e| e.to_string())?;
        origins.push((addr.ok_or("no origin address")?, *zone, pid_file));
    }
    let endpoints: Vec<String> = origins
        .iter()
        .map(|(a, z, _)| format!("{{address: \"{a}\", zone: {z}}}"))
        .collect();
    let config = format!(
        "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: api, match: {{path_prefix: /}}, cluster: api, timeout: 2s, slo: api-availability}}
clusters:
  - name: api
    endpoints: [{}]
    health_check: {{http: {{path: /health}}, interval: 500ms, timeout: 250ms, healthy_threshold: 1, unhealthy_threshold: 2}}
slos:
  - {{name: api-availability, objective: 99.9%, window: 30d}}
",
        endpoints.join(", ")
    );
    let cfg = dir.join("gateway.yaml");
    std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
    let (mut web, mut admin) = (None, None);
    spawn(
        &mut kids,
        &exe,
        &["serve", "-c", &cfg.to_string_lossy()],
        |l| {
            if let Some(a) = l.strip_prefix("ninefold: listener web on ") {
                web = a.parse::<SocketAddr>().ok();
            }
            if let Some(a) = l.strip_prefix("ninefold: admin on ") {
                admin = a.parse::<SocketAddr>().ok();
            }
            l == "ninefold: ready"
        },
    )?;
    let (web, admin) = (web.ok_or("no web listener")?, admin.ok_or("no admin")?);
    eprintln!(
        "drill demo: gateway on {web} (admin {admin}) in front of {}; killing replica-1 under load",
        origins
            .iter()
            .map(|(a, z, _)| format!("{a} (zone {z})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lookup = |k: &str| match k {
        "NINEFOLD_DRILL_ADMIN" => Some(admin.to_string()),
        "NINEFOLD_DRILL_URL" => Some(format!("http://{web}/api")),
        "NINEFOLD_DRILL_PID_FILE" => Some(origins[0].2.display().to_string()),
        _ => std::env::var(k).ok(),
    };
    let text = crate::config::interpolate("replica-loss.yaml", REPLICA_LOSS, lookup)
        .map_err(|e| e.to_string())?;
    let drill = super::file::parse("examples/drills/replica-loss.yaml", &text, &dir)
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let out = rt.block_on(super::run(&drill, None));
    let mut journals = vec![out.journal.clone()];
    if !json {
        print!("{}", super::report::markdown(&drill, &out.journal));
    }
    drop(kids);
    let mut code = out.code;
    // Where Debian's PostgreSQL is installed: the seed's failover drill too.
    match postgres_drill(&exe, &dir, json, &mut journals) {
        None => eprintln!("drill demo: PostgreSQL is not installed; the failover drill is skipped"),
        Some(Ok(c)) => code = code.max(c),
        Some(Err(e)) => {
            eprintln!("drill demo: the PostgreSQL drill could not run: {e}");
            code = 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if json {
        println!("{:#}", serde_json::json!({ "drills": journals }));
    }
    Ok(code)
}

/// A private temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "ninefold-drill-demo-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The shipped PostgreSQL drill (embedded).
pub const POSTGRES_FAILOVER: &str = include_str!("../../examples/drills/postgres-failover.yaml");

/// Debian's PostgreSQL programs (`/usr/lib/postgresql/<version>/bin`, the newest).
fn pg_bin() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// Whether this process runs as root (PostgreSQL then runs as `postgres`).
fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL primary and a synchronous streaming standby in a temporary directory,
/// stopped (immediate) when dropped.
struct PgPair {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    primary: (std::path::PathBuf, u16),
    standby: (std::path::PathBuf, u16),
}

impl PgPair {
    fn cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.current_dir(&self.dir).stdin(Stdio::null());
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{program} {}: {text}", args.join(" ")))
        }
    }

    fn start(bin: std::path::PathBuf, dir: std::path::PathBuf) -> Result<PgPair, String> {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| e.to_string())
        };
        let pair = PgPair {
            primary: (dir.join("primary"), port()?),
            standby: (dir.join("standby"), port()?),
            bin,
            dir,
        };
        let p = pair.primary.0.to_string_lossy().into_owned();
        let s = pair.standby.0.to_string_lossy().into_owned();
        pair.run(
            "initdb",
            &[
                "-D",
                &p,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n\
             wal_level = replica\nhot_standby = on\n\
             wal_retrieve_retry_interval = 100ms\nshared_buffers = 32MB\n",
            pair.dir.display()
        );
        let append = |f: std::path::PathBuf, t: &str| -> Result<(), String> {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .and_then(|mut h| h.write_all(t.as_bytes()))
                .map_err(|e| format!("{}: {e}", f.display()))
        };
        append(pair.primary.0.join("postgresql.conf"), &conf)?;
        append(
            pair.primary.0.join("pg_hba.conf"),
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )?;
        let pp = format!("-p {}", pair.primary.1);
        let log = pair.dir.join("primary.log").to_string_lossy().into_owned();
        pair.run("pg_ctl", &["-D", &p, "-l", &log, "-o", &pp, "-w", "start"])?;
        let host = pair.dir.to_string_lossy().into_owned();
        let port_s = pair.primary.1.to_string();
        for sql in ["CREATE ROLE app LOGIN", "CREATE DATABASE app OWNER app"] {
            pair.run(
                "psql",
                &["-h", &host, "-p", &port_s, "-U", "postgres", "-c", sql],
            )?;
        }
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port_s,
                "-U",
                "postgres",
                "-D",
                &s,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )?;
        let sp = format!("-p {}", pair.standby.1);
        let log = pair.dir.join("standby.log").to_string_lossy().into_owned();
        pair.run("pg_ctl", &["-D", &s, "-l", &log, "-o", &sp, "-w", "start"])?;
        // Synchronous once the standby streams (set now: with no standby yet, every
        // commit would wait for one).
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            pair.run(
                "psql",
                &["-h", &host, "-p", &port_s, "-U", "postgres", "-c", sql],
            )?;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = pair.run(
                "psql",
                &[
                    "-h",
                    &host,
                    "-p",
                    &port_s,
                    "-U",
                    "postgres",
                    "-At",
                    "-c",
                    "select sync_state from pg_stat_replication",
                ],
            );
            if r.as_deref().map(str::trim) == Ok("sync") {
                return Ok(pair);
            }
            if Instant::now() > deadline {
                return Err("the standby did not become synchronous within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for d in [&self.standby.0, &self.primary.0] {
            let d = d.to_string_lossy().into_owned();
            let _ = self.run("pg_ctl", &["-D", &d, "-m", "immediate", "stop"]);
        }
    }
}

/// The PostgreSQL part of the demo: a pair, a gateway with the TCP tier in front, and
/// the shipped failover drill. `None` when PostgreSQL is not installed.
fn postgres_drill(
    exe: &Path,
    dir: &Path,
    json: bool,
    journals: &mut Vec<serde_json::Value>,
) -> Option<Result<u8, String>> {
    let bin = pg_bin()?;
    Some((|| {
        let pgdir = dir.join("pg");
        std::fs::create_dir(&pgdir).map_err(|e| e.to_string())?;
        if as_root() {
            let ids = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or("no postgres user")?;
            std::os::unix::fs::chown(&pgdir, Some(ids), None).map_err(|e| e.to_string())?;
        }
        eprintln!(
            "drill demo: PostgreSQL primary and synchronous standby in {}",
            pgdir.display()
        );
        let pair = PgPair::start(bin.clone(), pgdir)?;
        let (p, s) = (pair.primary.1, pair.standby.1);
        let config = format!(
            "admin: {{bind: \"127.0.0.1:0\"}}
workers: 1
listeners:
  - {{name: pg-rw, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-primary}}
  - {{name: pg-ro, bind: \"127.0.0.1:0\", protocol: tcp, cluster: pg-replicas, fallback_cluster: pg-primary}}
clusters:
  - name: pg-primary
    endpoints: [{{address: \"127.0.0.1:{p}\", zone: a}}, {{address: \"127.0.0.1:{s}\", zone: b}}]
    health_check: {{postgres: {{role: primary, user: app, database: app, sslmode: disable}}, interval: 500ms, timeout: 400ms, healthy_threshold: 1, unhealthy_threshold: 2}}
  - name: pg-replicas
    endpoints: [{{address: \"127.0.0.1:{p}\"}}, {{address: \"127.0.0.1:{s}\"}}]
    health_check: {{postgres: {{role: replica, user: app, database: app, sslmode: disable, max_replication_lag: 5s}}, interval: 500ms, timeout: 400ms, healthy_threshold: 1, unhealthy_threshold: 2}}
"
        );
        let cfg = dir.join("pg-gateway.yaml");
        std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
        let mut kids = Kids(Vec::new());
        let mut addrs: std::collections::HashMap<String, String> = Default::default();
        spawn(
            &mut kids,
            exe,
            &["serve", "-c", &cfg.to_string_lossy()],
            |l| {
                if let Some(rest) = l.strip_prefix("ninefold: listener ") {
                    if let Some((n, a)) = rest.split_once(" on ") {
                        addrs.insert(n.to_owned(), a.to_owned());
                    }
                }
                if let Some(a) = l.strip_prefix("ninefold: admin on ") {
                    addrs.insert("admin".into(), a.to_owned());
                }
                l == "ninefold: ready"
            },
        )?;
        let get = |k: &str| addrs.get(k).cloned().unwrap_or_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // The first probes decide the roles: wait until the primary cluster has one.
        let admin = super::Admin {
            addr: get("admin").parse().map_err(|_| "no admin address")?,
            token: None,
        };
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let ok = admin.get_json("/api/v1/state").await.is_ok_and(|st| {
                    let c = |i: usize| &st["clusters"][i];
                    let healthy = |i: usize| {
                        c(i)["endpoints"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(|e| e["health"] == "healthy"))
                    };
                    !c(0)["primary"]["current"].is_null() && healthy(1)
                });
                if ok {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(
                        "the gateway did not see the primary and the standby within 15 s"
                            .to_string(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })?;
        let vars: Vec<(&str, String)> = vec![
            ("NINEFOLD_DRILL_ADMIN", get("admin")),
            ("NINEFOLD_DRILL_RW", get("pg-rw")),
            ("NINEFOLD_DRILL_RO", get("pg-ro")),
            ("APP_PG_PASSWORD", String::new()),
            (
                "NINEFOLD_DRILL_PRIMARY_DATA",
                pair.primary.0.display().to_string(),
            ),
            (
                "NINEFOLD_DRILL_STANDBY_DATA",
                pair.standby.0.display().to_string(),
            ),
            ("NINEFOLD_DRILL_PG_BIN", bin.display().to_string()),
            ("NINEFOLD_DRILL_REBUILD", "/bin/true".into()),
        ];
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        };
        let text = crate::config::interpolate("postgres-failover.yaml", POSTGRES_FAILOVER, lookup)
            .map_err(|e| e.to_string())?;
        let drill = super::file::parse("examples/drills/postgres-failover.yaml", &text, dir)
            .map_err(|e| e.to_string())?;
        let out = rt.block_on(super::run(&drill, None));
        if !json {
            print!("\n{}", super::report::markdown(&drill, &out.journal));
        }
        journals.push(out.journal.clone());
        drop(kids);
        drop(pair);
        Ok(out.code)
    })())
}
