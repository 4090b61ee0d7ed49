//! The `ninefold` binary: parses the command line and runs a subcommand. Exit codes:
//! 0 success, 1 runtime failure, 2 invalid configuration.

use clap::{Parser, Subcommand};
use ninefold::server::{ConfigSource, Gateway};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The allocator: jemalloc unless built without the `jemalloc` feature. An idle
/// connection's tokio task and socket record are 128-byte-aligned blocks, which glibc's
/// malloc serves with a header and split-off remainders (about 160 bytes each);
/// jemalloc's size classes are aligned already (bench/README.md, "Idle connections").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The version, with the TLS crypto provider compiled in (`aws-lc-rs` or `ring`).
#[cfg(feature = "ring")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (TLS: ring)");
/// The version, with the TLS crypto provider compiled in (`aws-lc-rs` or `ring`).
#[cfg(not(feature = "ring"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (TLS: aws-lc-rs)");

/// ninefold: a high-availability gateway.
///
/// Load balancing over redundant endpoints, failover, SLOs, hot reload, graceful
/// shutdown and live metrics in one binary, for HTTP and for TCP services such as a
/// PostgreSQL primary and its replicas (role-aware checks, sessions closed on a
/// failover, two primaries refused). Start with `ninefold demo`.
#[derive(Parser)]
#[command(version = VERSION, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a configuration file. SIGHUP (or POST /api/v1/reload) reloads it;
    /// SIGTERM/SIGINT drain in-flight requests (and TCP sessions) within
    /// `shutdown_grace` and exit 0. Clusters with `discovery:` follow their DNS name or
    /// endpoints file without a reload.
    Serve {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and lint it for HA anti-patterns. Exit 0 when
    /// valid (warnings are printed), 2 with every error (file:line:col: key: message)
    /// when not, or when there are warnings and --deny-warnings is given.
    Check {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Treat HA warnings as errors (exit 2).
        #[arg(long)]
        deny_warnings: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The topology model used by the 5-nines check (see `calc topology`).
        #[command(flatten)]
        model: ninefold::calc::ModelArgs,
    },
    /// SLO tools: budget and Prometheus rules from an SLO file (gateway config, the
    /// seed's SLO file, or OpenSLO v1), and the live SLOs of a running gateway.
    Slo {
        /// Print the result as JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ninefold::slo::cli::Slo,
    },
    /// Availability arithmetic: nines, downtime, budget, kofn, serial, parallel,
    /// capacity, topology.
    Calc {
        /// Print the result as JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ninefold::calc::Calc,
    },
    /// Run the gateway with three built-in backends in two zones, and print what to try.
    Demo {
        /// Proxy listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// Disaster-recovery drills: run an experiment against real systems and measure
    /// recovery (RTO) and data loss (RPO).
    Drill {
        /// Print the journal (JSON, shaped as Chaos Toolkit's) instead of the report.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: DrillCommand,
    },
    /// Print a Grafana dashboard (JSON model, importable as is) for a configuration:
    /// per route request rate, gateway errors by reason and latency; per cluster
    /// endpoint health, ejections, breakers, bulkheads; per SLO the budget over its
    /// window and the four burn rates. The data source is a dashboard variable.
    Grafana {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Extra label matchers on every series selector, e.g. 'job="ninefold"'.
        #[arg(long, value_name = "MATCHERS")]
        selector: Option<String>,
    },
    /// Ask a running gateway's admin listener for `/health` and print the answer (JSON).
    /// Exit 0 when the gateway says ok or degraded, 1 when it says down or does not
    /// answer within 2 s: a container or orchestrator health check needs no curl.
    Health {
        /// The admin listener's address.
        #[arg(long, default_value = "127.0.0.1:9901", value_name = "ADDR")]
        admin: String,
    },
    /// A tiny origin server for drills and tests: answers JSON naming itself, `/health`,
    /// `/status/N`, `/slow/MS`, and logs each request on stdout. Kill it for real
    /// (SIGKILL, SIGSTOP) to watch the gateway fail over.
    Origin {
        /// Name it answers with (header `x-backend`).
        #[arg(long, default_value = "origin")]
        name: String,
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Run the drill in FILE: load, steady state, method, steady state, read-back of
    /// every acknowledged write, rollbacks. Exit 0 when the steady state held and every
    /// target was met, 1 when not, 2 for a bad file. Prints the report (Markdown) unless
    /// --report is given.
    Run {
        /// Drill file (YAML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the journal (JSON, shaped as Chaos Toolkit's) here; acknowledged
        /// writes are logged durably beside it (`.acked`).
        #[arg(long, value_name = "PATH")]
        journal: Option<PathBuf>,
        /// Write the report (Markdown) here instead of stdout.
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
    },
    /// A self-contained drill: three `ninefold origin` replicas in two zones and a
    /// gateway in front of them, one replica SIGKILLed under load
    /// (examples/drills/replica-loss.yaml); prints the report.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end of `main`: dropping it writes out queued access-log lines, so
    // the last requests before a SIGTERM are logged.
    let _log = ninefold::logging::init();
    match cli.command {
        Command::Check {
            config,
            deny_warnings,
            json,
            model,
        } => check(&config, deny_warnings, json, &model),
        Command::Slo { json, command } => match ninefold::slo::cli::run(&command) {
            Ok((_, v)) if json => {
                out_line(&format!("{v:#}"));
                ExitCode::SUCCESS
            }
            Ok((text, _)) => {
                out_str(&text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                if json {
                    out_line(&format!("{:#}", serde_json::json!({ "error": e })));
                }
                fail(e, 2)
            }
        },
        Command::Calc { json, command } => match ninefold::calc::run(&command) {
            Ok(out) if json => {
                out_line(&format!("{:#}", out.json));
                ExitCode::SUCCESS
            }
            Ok(out) => {
                out_str(&out.text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                if json {
                    out_line(&format!("{:#}", serde_json::json!({ "error": e })));
                }
                fail(e, 2)
            }
        },
        Command::Serve { config } => {
            let source = ConfigSource::File(config);
            let cfg = match ninefold::server::load(&source) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // After validation, so a refused configuration prints its errors alone.
            ninefold::rlimit::raise_nofile_limit();
            run(cfg, source, None)
        }
        Command::Drill {
            json,
            command:
                DrillCommand::Run {
                    file,
                    journal,
                    report,
                },
        } => match ninefold::drill::run_file(&file, journal.as_deref(), report.as_deref(), json) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(e, 2),
        },
        Command::Drill {
            json,
            command: DrillCommand::Demo,
        } => match ninefold::drill::demo::run(json) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(e, 1),
        },
        Command::Grafana { config, selector } => match ninefold::config::load(&config) {
            Ok(cfg) => {
                let d = ninefold::grafana::dashboard(&cfg, selector.as_deref());
                out_line(&format!("{d:#}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Health { admin } => health(&admin),
        Command::Origin { name, listen } => match ninefold::origin::run(&name, listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e, 1),
        },
        Command::Demo { listen, admin } => {
            ninefold::rlimit::raise_nofile_limit();
            let backends = match ninefold::demo::start_backends() {
                Ok(b) => b,
                Err(e) => return fail(format_args!("cannot start demo backends: {e:#}"), 1),
            };
            let source = ConfigSource::Text {
                name: "demo.yaml".into(),
                text: ninefold::demo::config_text(listen, admin, &backends),
            };
            let cfg = match ninefold::server::load(&source) {
                Ok(c) => c,
                Err(e) => return fail(e, 1),
            };
            run(cfg, source, Some(&backends))
        }
    }
}

/// `ninefold health`: the admin listener's `/health`, printed; the exit code says it.
fn health(admin: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e, 1),
    };
    let req = http::Request::get("/health")
        .header(http::header::HOST, admin)
        .body(http_body_util::Full::new(bytes::Bytes::new()));
    let req = match req {
        Ok(r) => r,
        Err(e) => return fail(e, 1),
    };
    let timeout = std::time::Duration::from_secs(2);
    match rt.block_on(ninefold::oneshot::exchange(admin, req, timeout)) {
        Ok(a) => {
            out_line(String::from_utf8_lossy(&a.body).trim_end());
            if a.status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(
            format_args!("no answer from the admin listener at {admin}: {e}"),
            1,
        ),
    }
}

/// Prints an error the one way the binary does (`{:#}` shows an error's whole chain)
/// and returns the exit code. Configuration diagnostics are the exception: they are
/// a report of `file:line:col: key: message` lines, printed as they are.
fn fail(e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(code)
}

/// Writes to stdout, ignoring a closed pipe (`ninefold calc ... | head`).
fn out_str(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

fn out_line(s: &str) {
    out_str(s);
    out_str("\n");
}

fn check(
    config: &std::path::Path,
    deny_warnings: bool,
    json: bool,
    model: &ninefold::calc::ModelArgs,
) -> ExitCode {
    let cfg = match ninefold::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            if json {
                let errors: Vec<_> = e.0.iter().map(error_json).collect();
                out_line(&format!(
                    "{:#}",
                    serde_json::json!({"file": config.display().to_string(), "ok": false, "errors": errors, "warnings": [], "notes": []})
                ));
            } else {
                eprintln!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let warnings = ninefold::lint::lint(&cfg, &model.assumptions());
    let denied = warnings.iter().filter(|w| w.severity == "warning").count();
    let failed = deny_warnings && denied > 0;
    if json {
        let notes: Vec<_> = cfg.unsupported.iter().map(error_json).collect();
        out_line(&format!(
            "{:#}",
            serde_json::json!({
                "file": config.display().to_string(),
                "ok": !failed,
                "errors": [],
                "warnings": warnings,
                "notes": notes,
            })
        ));
    } else {
        for u in &cfg.unsupported {
            out_line(&format!("note: {u}"));
        }
        for w in &warnings {
            eprintln!("{w}");
        }
        if failed {
            eprintln!(
                "error: {} HA warning{} and --deny-warnings",
                denied,
                if denied == 1 { "" } else { "s" }
            );
        } else {
            let notes = warnings.len() - denied;
            out_line(&format!(
                "{}: ok ({} listeners, {} clusters, {} HA warning{}{})",
                config.display(),
                cfg.listeners.len(),
                cfg.clusters.len(),
                denied,
                if denied == 1 { "" } else { "s" },
                match notes {
                    0 => String::new(),
                    1 => ", 1 note".into(),
                    n => format!(", {n} notes"),
                }
            ));
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn error_json(e: &ninefold::config::ConfigError) -> serde_json::Value {
    serde_json::to_value(e).unwrap_or_default()
}

/// Starts the gateway, then its admin API, serves until SIGTERM or SIGINT, and stops
/// both (the admin API last, so it answers while the gateway drains).
fn run(
    cfg: ninefold::server::Servable,
    source: ConfigSource,
    demo: Option<&[ninefold::demo::Backend]>,
) -> ExitCode {
    let admin_cfg = cfg.config().admin.clone();
    let dns_cfg = cfg.config().dns.clone();
    let gw = match Gateway::start(cfg, source) {
        Ok(g) => g,
        Err(e) => return fail(e, 1),
    };
    let admin = match ninefold::admin::start(gw.shared().clone(), gw.control(), &admin_cfg) {
        Ok(a) => a,
        Err(e) => {
            gw.shutdown();
            return fail(format_args!("cannot start the admin listener: {e:#}"), 1);
        }
    };
    let dns = match dns_cfg.map(|d| ninefold::dns::start(gw.shared().clone(), &d)) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            admin.stop();
            gw.shutdown();
            return fail(format_args!("cannot start the DNS server: {e:#}"), 1);
        }
    };
    for (name, addr) in gw.bound() {
        println!("ninefold: listener {name} on {addr}");
    }
    println!("ninefold: admin on {}", admin.addr());
    if let Some(d) = &dns {
        println!("ninefold: dns on {}", d.addr());
    }
    if let Some(backends) = demo {
        let web = gw.bound().first().map(|(_, a)| *a);
        if let Some(web) = web {
            print_demo(web, admin.addr(), backends);
        }
    }
    println!("ninefold: ready");
    let ran = gw.run();
    if let Some(d) = dns {
        d.stop();
    }
    admin.stop();
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

fn print_demo(web: SocketAddr, admin: SocketAddr, backends: &[ninefold::demo::Backend]) {
    println!();
    println!(
        "ninefold demo: the gateway in front of {} backends",
        backends.len()
    );
    for b in backends {
        println!("  backend {:<7} {:<7} http://{}", b.name, b.zone, b.addr);
    }
    println!();
    println!("  proxy   http://{web}");
    println!("  admin   http://{admin}");
    println!();
    println!("Dashboard: open http://{admin}/ in a browser (live; actions need no token on this loopback demo)");
    println!();
    println!("Try:");
    println!("  curl -s http://{web}/api/hello              # round robin over all three");
    println!("  curl -s -H 'x-user-id: 42' http://{web}/sticky  # consistent hash: same backend every time");
    println!("  curl -s --http2-prior-knowledge http://{web}/api/h2   # h2c on the same port");
    println!("  curl -s http://{admin}/health");
    println!("  curl -s http://{admin}/api/v1/state");
    println!("  ninefold slo status --admin {admin}         # the api route's SLO, live");
    println!("  curl -s http://{admin}/metrics | grep ninefold_requests_total");
    println!();
    println!("Failover (README: \"Watch traffic continue\"):");
    println!("  while true; do curl -s -o /dev/null -w '%{{http_code}} ' http://{web}/api; sleep 0.2; done");
    if let Some(b) = backends.first() {
        let (name, addr) = (b.name, b.addr);
        println!(
            "  curl -s -X POST http://{web}/demo/kill/{name}     # {name} dies; traffic goes on"
        );
        println!("  curl -s http://{admin}/api/v1/state | jq '.clusters[0].endpoints[] | {{address, why}}'");
        println!("  curl -s -X POST http://{web}/demo/revive/{name}   # back in 10 s at most");
        println!("  curl -s -X POST http://{admin}/api/v1/clusters/api/endpoints/{addr}/drain");
        println!("  curl -s -X POST http://{admin}/api/v1/clusters/api/endpoints/{addr}/enable");
    }
    if let Some(b) = backends.last() {
        let name = b.name;
        println!();
        println!("Isolation and degradation (README: \"Watch a failure stay contained\"):");
        println!("  curl -s http://{web}/catalog                  # a good answer, kept for the stale rung");
        println!("  for u in 1 2 3 4 5 6; do curl -s -o /dev/null -w \"user $u: %{{http_code}}\\n\" -H \"x-user-id: $u\" http://{web}/users; done");
        println!("  curl -s -X POST http://{web}/demo/kill/{name}     # one cell down, the catalog's backend gone");
        println!("  (the users loop again: one cell's users get 503 cell-down, the others 200)");
        println!("  curl -si http://{web}/catalog | grep -i 'x-ninefold'   # stale, then the breaker opens");
        println!("  curl -s http://{admin}/metrics | grep ninefold_circuit_state");
        println!(
            "  curl -si -H 'x-ninefold-fault: abort=503' http://{web}/api    # a fault on demand"
        );
        println!("  curl -s -X POST -d '{{\"route\":\"api\",\"abort\":{{\"percent\":50,\"status\":503}},\"ttl\":\"30s\"}}' http://{admin}/api/v1/faults");
        println!("  curl -s -X POST http://{web}/demo/revive/{name}");
    }
    println!();
    println!("Ctrl-C drains and stops.");
}
