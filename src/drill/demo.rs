//! `ninefold drill demo`: a self-contained drill for a newcomer. It starts three
//! `ninefold origin` processes in two zones and a gateway in front of them (this very
//! binary, `serve`, in a temporary directory, on free ports), runs the shipped
//! `examples/drills/replica-loss.yaml` against them (one origin SIGKILLed under load),
//! prints the report, and stops everything it started.

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
pub fn run() -> Result<u8, String> {
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
    print!("{}", super::report::markdown(&drill, &out.journal));
    drop(kids);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out.code)
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
