//! `ninefold drill run FILE`: a disaster-recovery drill against real systems, with
//! what a drill is for measured: how long recovery took (RTO) and what was lost (RPO).
//!
//! A drill runs in phases: its load starts (a SQL writer of a monotonic sequence,
//! HTTP requests; every operation stamped with the drill's monotonic clock); the
//! steady state is checked (a failing one aborts before anything is broken); the
//! method runs step by step (signals, commands, drains and faults through the
//! gateway's admin API, waits), watched by `stop_when`; the steady state is checked
//! again; the acknowledged writes are read back through the gateway; the rollbacks run
//! (`rollback: always` by default, also after a failed step, on Ctrl-C and when
//! `stop_when` fires; a failing rollback is reported, never hidden). Meanwhile the
//! gateway's state is polled, so the timeline holds what it saw (an endpoint marked
//! down, a role changed, a new primary generation) beside what the load saw (first
//! failure, first success, recovered). The result is a journal shaped as Chaos
//! Toolkit's (`--journal`), a Markdown report (`--report`) and the exit code: 0 when
//! the steady state held afterwards and every target was met, 1 when not, 2 for a bad
//! file.

pub mod demo;
pub mod file;
pub mod load;
pub mod report;

use file::{Drill, Load, PidSource, Probe, Rollback, Rpo, Step};
use load::Recorder;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// How often the gateway's state is read during a drill.
const POLL: Duration = Duration::from_millis(100);

/// One event of the timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Seconds since the drill began.
    pub t: f64,
    /// What happened.
    pub event: String,
}

/// What a drill found; the journal and the report are made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The journal (JSON).
    pub journal: Value,
    /// Exit code: 0 held and met, 1 deviated or missed.
    pub code: u8,
}

/// Runs the drill in `path`; writes the journal and the report where asked. `Err` is
/// a bad file (exit 2), with its errors.
pub fn run_file(
    path: &Path,
    journal: Option<&Path>,
    report_path: Option<&Path>,
    json: bool,
) -> Result<u8, crate::config::ConfigErrors> {
    let drill = file::load(path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let acked = journal.map(|j| j.with_extension("acked"));
    let out = rt.block_on(run(&drill, acked.as_deref()));
    if let Some(j) = journal {
        let text = serde_json::to_string_pretty(&out.journal).unwrap_or_default();
        if let Err(e) = std::fs::write(j, text + "\n") {
            eprintln!("drill: cannot write the journal {}: {e}", j.display());
        }
    }
    let md = report::markdown(&drill, &out.journal);
    match report_path {
        Some(r) => {
            if let Err(e) = std::fs::write(r, &md) {
                eprintln!("drill: cannot write the report {}: {e}", r.display());
            }
        }
        None if !json => print!("{md}"),
        None => {}
    }
    if json {
        println!("{:#}", out.journal);
    }
    Ok(out.code)
}

/// A progress line on a terminal.
fn progress(t0: Instant, what: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("drill [{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    }
}

/// Runs a checked drill; `acked_log` is where acknowledged writes are logged durably.
pub async fn run(d: &Drill, acked_log: Option<&Path>) -> Outcome {
    let t0 = Instant::now();
    // Ctrl-C and SIGTERM from the start: whenever they come, the method stops and the
    // rollbacks run (a signal before the method stops it before its first step).
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let interrupted = async move {
        let a = async {
            match &mut int {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let b = async {
            match &mut term {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = a => "Ctrl-C",
            _ = b => "SIGTERM",
        }
    };
    let mut interrupted = std::pin::pin!(interrupted);
    let start_wall = httpdate::fmt_http_date(std::time::SystemTime::now());
    let admin = Admin {
        addr: d.admin,
        token: d.token.clone(),
    };
    let log = acked_log.and_then(|p| std::fs::File::create(p).ok());
    let rec = Recorder::new(t0, log);
    let mut timeline: Vec<Event> = Vec::new();
    let ev = |timeline: &mut Vec<Event>, t: f64, e: String| {
        timeline.push(Event { t, event: e });
    };
    progress(t0, &format!("{}: starting", d.title));

    // The SQL streams' tables, fresh.
    let mut setup_errors = Vec::new();
    for l in &d.load {
        if let Load::Sql {
            login,
            table,
            query: None,
            ..
        } = l
        {
            let r = async {
                let mut c = load::connect(login).await?;
                c.query(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now()); SELECT 1")).await?;
                c.close().await;
                Ok::<(), String>(())
            }
            .await;
            if let Err(e) = r {
                setup_errors.push(format!("sql load at {}: {e}", login.address));
            }
        }
    }
    let budget_before = slo_budgets(&admin).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut streams = Vec::new();
    for (i, l) in d.load.iter().enumerate() {
        streams.push(tokio::spawn(load::run(
            i,
            l.clone(),
            rec.clone(),
            stop_rx.clone(),
        )));
    }
    // The gateway's state, watched.
    let watcher = tokio::spawn(watch_gateway(admin.clone(), rec.clone(), stop_rx.clone()));
    // Let the load settle into a baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // How long the gateway takes to notice a dead endpoint: `wait_for` gives it at
    // least that (plus a probe's timeout), or a drill whose retries hide the fault
    // would call itself recovered before the gateway even looked.
    let detect = detection(&admin).await;
    progress(t0, "steady state before");
    let before = steady_state(d, &admin).await;
    let before_ok = setup_errors.is_empty() && before.iter().all(|p| p["tolerance_met"] == true);
    let mut run_log: Vec<Value> = Vec::new();
    let mut status = "completed";
    let mut fault_at = None;
    let mut aborted_by = None;
    if before_ok {
        let at = rec.now();
        fault_at = Some(at);
        ev(
            &mut timeline,
            at,
            "fault injected: the method starts".into(),
        );
        let mut steps = std::pin::pin!(method(d, &admin, &rec, &mut run_log, t0, detect));
        let limit = async {
            match d.stop_after {
                Some(a) => tokio::time::sleep(a).await,
                None => std::future::pending().await,
            }
        };
        let error_rate = watch_error_rate(d, &rec);
        tokio::select! {
            r = &mut steps => if let Err(e) = r {
                status = "failed";
                aborted_by = Some(format!("a step failed: {e}"));
            },
            _ = limit => {
                status = "interrupted";
                aborted_by = Some("stop_when.after".into());
            }
            why = error_rate => {
                status = "interrupted";
                aborted_by = Some(why);
            }
            why = &mut interrupted => {
                status = "interrupted";
                aborted_by = Some(why.into());
            }
        }
        if let Some(why) = &aborted_by {
            ev(&mut timeline, rec.now(), format!("method aborted: {why}"));
            progress(t0, &format!("method aborted: {why}"));
        }
    } else {
        status = "failed";
        aborted_by = Some(if setup_errors.is_empty() {
            "the steady state did not hold before the method".into()
        } else {
            setup_errors.join("; ")
        });
        progress(t0, "steady state before: failed, no method run");
    }
    // After: recovered or not, the load keeps running while the steady state is read.
    progress(t0, "steady state after");
    let after = if before_ok {
        steady_state(d, &admin).await
    } else {
        Vec::new()
    };
    let after_ok = before_ok && after.iter().all(|p| p["tolerance_met"] == true);
    let _ = stop_tx.send(true);
    for s in streams {
        let _ = s.await;
    }
    let gateway_events = watcher.await.unwrap_or_default();
    let deviated = before_ok && !after_ok;
    // Rollbacks: whatever happened (always), or when deviated.
    let run_rollbacks = match d.rollback {
        Rollback::Always => true,
        Rollback::Deviated => deviated || status != "completed",
        Rollback::Never => false,
    };
    let mut rollbacks: Vec<Value> = Vec::new();
    if run_rollbacks && !d.rollbacks.is_empty() {
        progress(t0, "rollbacks");
        for s in &d.rollbacks {
            let started = rec.now();
            let r = step(s, &admin).await;
            rollbacks.push(json!({
                "action": s.describe(),
                "start": started,
                "end": rec.now(),
                "status": if r.is_ok() { "succeeded" } else { "failed" },
                "output": r.clone().unwrap_or_else(|e| e),
            }));
            if let Err(e) = r {
                progress(t0, &format!("rollback failed: {}: {e}", s.describe()));
            }
        }
    }
    // What was lost: read the sequences back through the gateway.
    let record = rec
        .inner
        .lock()
        .map(|r| (r.ops.clone(), r.acked.clone(), r.indeterminate.clone()));
    let (ops, acked, indeterminate) = record.unwrap_or_default();
    let mut lost: Vec<(usize, u64, f64)> = Vec::new();
    let mut verify_errors = Vec::new();
    for (i, l) in d.load.iter().enumerate() {
        let Load::Sql {
            login,
            table,
            query: None,
            ..
        } = l
        else {
            continue;
        };
        match read_back(login, table).await {
            Ok(present) => lost.extend(
                acked
                    .iter()
                    .filter(|(s, n, _)| *s == i && !present.contains(n))
                    .copied(),
            ),
            Err(e) => verify_errors.push(format!("stream {i}: {e}")),
        }
    }
    let lost_seconds = match (
        lost.iter().map(|l| l.2).reduce(f64::min),
        lost.iter().map(|l| l.2).reduce(f64::max),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let budget_after = slo_budgets(&admin).await;
    let budget_spent: BTreeMap<String, f64> = budget_after
        .iter()
        .filter_map(|(k, after)| {
            let b = budget_before.get(k)?;
            Some((k.clone(), round3((b - after).max(0.0))))
        })
        .collect();

    // The timeline and RTO.
    let fault = fault_at.unwrap_or(0.0);
    let m = measure(&ops, d.load.len(), fault, d.recovered_after);
    for e in gateway_events {
        timeline.push(e);
    }
    if let Some(t) = m.first_failure {
        ev(&mut timeline, t, "first failed operation".into());
    }
    if let Some(t) = m.first_success_after {
        ev(
            &mut timeline,
            t,
            "first successful operation after the failures".into(),
        );
    }
    if let Some(t) = m.recovered_at {
        ev(
            &mut timeline,
            t,
            format!(
                "recovered: {} successes in a row on every load stream",
                d.recovered_after
            ),
        );
    }
    timeline.sort_by(|a, b| a.t.total_cmp(&b.t));
    let rto = m.recovered_at.map(|t| round3(t - fault));
    let model = model_rto(&admin, &run_log).await;
    let failed_ops: Vec<&load::Op> = ops.iter().filter(|o| !o.ok).collect();
    let rto_met = match (d.rto, rto) {
        (Some(target), Some(r)) => r <= target.as_secs_f64(),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let rpo_met = match d.rpo {
        Some(Rpo::Writes(n)) => verify_errors.is_empty() && lost.len() as u64 <= n,
        Some(Rpo::Span(s)) => verify_errors.is_empty() && lost_seconds <= s.as_secs_f64(),
        None => true,
    };
    let met = rto_met && rpo_met;
    let code = if after_ok && met && status == "completed" {
        0
    } else {
        1
    };
    let end = rec.now();
    let journal = json!({
        "title": d.title,
        "file": d.file,
        "start": start_wall,
        "end": httpdate::fmt_http_date(std::time::SystemTime::now()),
        "duration": round3(end),
        "status": status,
        "aborted_by": aborted_by,
        "deviated": deviated,
        "steady_states": {"before": {"steady_state_met": before_ok, "probes": before}, "after": {"steady_state_met": after_ok, "probes": after}},
        "run": run_log,
        "rollbacks": rollbacks,
        "load": d.load.iter().enumerate().map(|(i, l)| {
            let (n, ok) = ops.iter().filter(|o| o.stream == i).fold((0, 0), |(n, ok), o| (n + 1, ok + usize::from(o.ok)));
            json!({"stream": i, "kind": match l { Load::Sql {..} => "sql", Load::Http {..} => "http" }, "operations": n, "succeeded": ok})
        }).collect::<Vec<_>>(),
        "measurements": {
            "rto_seconds": rto,
            "timeline": timeline,
            "failed_operations": failed_ops,
            "rpo": {
                "acked_writes": acked.len(),
                "lost_writes": lost.len(),
                "lost": lost.iter().map(|l| json!({"stream": l.0, "seq": l.1, "acked_at": round3(l.2)})).collect::<Vec<_>>(),
                "indeterminate_writes": indeterminate.len(),
                "lost_seconds": round3(lost_seconds),
                "verify_errors": verify_errors,
            },
            "budget_spent_minutes": budget_spent,
            "model_rto_seconds": model.map(round3),
            "rto_over_model": match (rto, model) { (Some(r), Some(m)) if m > 0.0 => r > 1.5 * m, _ => false },
        },
        "targets": {
            "rto_seconds": d.rto.map(|r| r.as_secs_f64()),
            "rpo_writes": match d.rpo { Some(Rpo::Writes(n)) => Some(n), _ => None },
            "rpo_seconds": match d.rpo { Some(Rpo::Span(s)) => Some(s.as_secs_f64()), _ => None },
            "met": met,
        },
    });
    progress(
        t0,
        if code == 0 {
            "done: held and met"
        } else {
            "done: deviated or missed"
        },
    );
    Outcome { journal, code }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the method's steps in order; `Err` at the first that fails.
async fn method(
    d: &Drill,
    admin: &Admin,
    rec: &Recorder,
    run_log: &mut Vec<Value>,
    t0: Instant,
    detect: Duration,
) -> Result<(), String> {
    for s in &d.method {
        progress(t0, &s.describe());
        let start = rec.now();
        let r = match s {
            Step::WaitRecovered(timeout) => {
                wait_recovered(rec, d, start, start + detect.as_secs_f64(), *timeout).await
            }
            _ => step(s, admin).await,
        };
        run_log.push(json!({
            "action": s.describe(),
            "kind": kind(s),
            "start": round3(start),
            "end": round3(rec.now()),
            "status": if r.is_ok() { "succeeded" } else { "failed" },
            "output": r.clone().unwrap_or_else(|e| e.clone()),
        }));
        r?;
    }
    Ok(())
}

fn kind(s: &Step) -> &'static str {
    match s {
        Step::Signal { .. } => "signal",
        Step::Wait(_) => "wait",
        Step::Command { .. } => "command",
        Step::Drain { .. } => "drain",
        Step::Enable { .. } => "enable",
        Step::Fault(_) => "fault",
        Step::WaitRecovered(_) => "wait_for",
    }
}

/// Runs one step (not `wait_for`): its output, or why it failed.
async fn step(s: &Step, admin: &Admin) -> Result<String, String> {
    match s {
        Step::Signal { pid, signal } => {
            let pid = match pid {
                PidSource::Pid(p) => *p,
                PidSource::File(f) => std::fs::read_to_string(f)
                    .map_err(|e| format!("{}: {e}", f.display()))?
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .ok_or_else(|| format!("{}: no pid on its first line", f.display()))?,
            };
            let sig = file::signal_number(signal).ok_or("unknown signal")?;
            let pid = i32::try_from(pid).map_err(|_| "pid out of range".to_string())?;
            // SAFETY: kill(2) reads and writes no memory of ours.
            let r = unsafe { libc::kill(pid, sig) };
            if r == 0 {
                Ok(format!("sent {signal} to {pid}"))
            } else {
                Err(format!("kill {pid}: {}", std::io::Error::last_os_error()))
            }
        }
        Step::Wait(d) => {
            tokio::time::sleep(*d).await;
            Ok(String::new())
        }
        Step::Command { run, user, timeout } => {
            let mut cmd = match user {
                Some(u) => {
                    let mut c = tokio::process::Command::new("runuser");
                    c.args(["-u", u, "--"]).args(run);
                    c
                }
                None => {
                    let mut c = tokio::process::Command::new(&run[0]);
                    c.args(&run[1..]);
                    c
                }
            };
            cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
            let out = tokio::time::timeout(*timeout, cmd.output())
                .await
                .map_err(|_| format!("still running after {timeout:?}"))?
                .map_err(|e| format!("{}: {e}", run[0]))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(text.trim().to_owned())
            } else {
                Err(format!("{}: {}", out.status, text.trim()))
            }
        }
        Step::Drain { cluster, endpoint } | Step::Enable { cluster, endpoint } => {
            let verb = if matches!(s, Step::Drain { .. }) {
                "drain"
            } else {
                "enable"
            };
            let (status, body) = admin
                .post(
                    &format!("/api/v1/clusters/{cluster}/endpoints/{endpoint}/{verb}"),
                    None,
                )
                .await?;
            if status == 200 {
                Ok(body)
            } else {
                Err(format!("{verb}: status {status}: {body}"))
            }
        }
        Step::Fault(v) => {
            let (status, body) = admin.post("/api/v1/faults", Some(v.to_string())).await?;
            if (200..300).contains(&status) {
                Ok(body)
            } else {
                Err(format!("fault: status {status}: {body}"))
            }
        }
        Step::WaitRecovered(_) => Ok(String::new()),
    }
}

/// Waits until every load stream has `recovered_after` successes in a row among the
/// operations started after `since`, and not before `not_before` (the gateway's
/// detection time after the step before).
async fn wait_recovered(
    rec: &Recorder,
    d: &Drill,
    since: f64,
    not_before: f64,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = rec.inner.lock().is_ok_and(|r| {
            (0..d.load.len()).all(|i| {
                let tail: Vec<&load::Op> = r
                    .ops
                    .iter()
                    .filter(|o| o.stream == i && o.start >= since)
                    .collect();
                let run = tail.iter().rev().take_while(|o| o.ok).count();
                run >= d.recovered_after as usize
            })
        });
        if done && rec.now() >= not_before {
            return Ok(format!("recovered at {:.3}s", rec.now()));
        }
        if Instant::now() >= deadline {
            return Err(format!("not recovered within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves when the load's error rate over the last second reaches `stop_when`'s.
async fn watch_error_rate(d: &Drill, rec: &Recorder) -> String {
    let Some(limit) = d.stop_error_rate else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rec.now();
        let (n, bad) = rec.inner.lock().map_or((0, 0), |r| {
            r.ops
                .iter()
                .filter(|o| o.end >= now - 1.0)
                .fold((0, 0), |(n, b), o| (n + 1, b + usize::from(!o.ok)))
        });
        if n >= 5 && bad as f64 / n as f64 >= limit {
            return format!(
                "stop_when.error_rate: {bad} of {n} operations failed in the last second"
            );
        }
    }
}

/// What the load measured.
struct Measured {
    first_failure: Option<f64>,
    first_success_after: Option<f64>,
    recovered_at: Option<f64>,
}

/// The timeline's load events: the first failure after `fault`, the first success
/// after it, and recovery: per stream, the start of its last run of successes that
/// is at least `n` long, after its last failure (a stream that never failed recovered
/// at the fault); the latest over the streams.
fn measure(ops: &[load::Op], streams: usize, fault: f64, n: u32) -> Measured {
    let after: Vec<&load::Op> = ops.iter().filter(|o| o.start >= fault).collect();
    let first_failure = after
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.start)
        .reduce(f64::min);
    // Per stream that failed: its first success after its first failure.
    let first_success_after = (0..streams)
        .filter_map(|i| {
            let f = after
                .iter()
                .filter(|o| o.stream == i && !o.ok)
                .map(|o| o.start)
                .reduce(f64::min)?;
            after
                .iter()
                .filter(|o| o.stream == i && o.ok && o.start > f)
                .map(|o| o.start)
                .reduce(f64::min)
        })
        .reduce(f64::min);
    let mut recovered = Some(fault);
    for i in 0..streams {
        let mut mine: Vec<&&load::Op> = after.iter().filter(|o| o.stream == i).collect();
        mine.sort_by(|a, b| a.start.total_cmp(&b.start));
        let last_fail = mine.iter().rposition(|o| !o.ok);
        let tail = match last_fail {
            Some(k) => &mine[k + 1..],
            None => &mine[..],
        };
        let at = match last_fail {
            None => Some(fault),
            Some(_) if tail.len() >= n as usize => tail.first().map(|o| o.start),
            Some(_) => None,
        };
        recovered = match (recovered, at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Measured {
        first_failure,
        first_success_after,
        recovered_at: recovered,
    }
}

/// The slowest detection of a dead endpoint among the gateway's checked clusters
/// (interval × unhealthy_threshold, plus one probe's timeout).
async fn detection(admin: &Admin) -> Duration {
    let Ok(state) = admin.get_json("/api/v1/state").await else {
        return Duration::ZERO;
    };
    let secs = state["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let h = &c["health_check"];
            Some(h["interval_ms"].as_f64()? * (h["unhealthy_threshold"].as_f64()? + 1.0) / 1000.0)
        })
        .fold(0.0, f64::max);
    Duration::from_secs_f64(secs)
}

/// The RTO the configuration predicts: the slowest health check among the clusters
/// whose endpoints went down (interval × unhealthy_threshold), plus the method's waits
/// and its commands' run time (a promotion).
async fn model_rto(admin: &Admin, run_log: &[Value]) -> Option<f64> {
    let state = admin.get_json("/api/v1/state").await.ok()?;
    let detect = state["clusters"]
        .as_array()?
        .iter()
        .filter_map(|c| {
            let h = &c["health_check"];
            Some(h["interval_ms"].as_f64()? * h["unhealthy_threshold"].as_f64()? / 1000.0)
        })
        .fold(0.0, f64::max);
    let steps: f64 = run_log
        .iter()
        .filter(|s| s["kind"] == "wait" || s["kind"] == "command")
        .filter_map(|s| Some(s["end"].as_f64()? - s["start"].as_f64()?))
        .sum();
    Some(detect + steps)
}

/// Reads every sequence number back through the gateway.
async fn read_back(
    login: &file::Sql,
    table: &str,
) -> Result<std::collections::HashSet<u64>, String> {
    let mut c = load::connect(login).await?;
    let rows = c.query_all(&format!("SELECT seq FROM {table}")).await?;
    c.close().await;
    Ok(rows
        .iter()
        .filter_map(|r| r.first()?.as_deref()?.parse().ok())
        .collect())
}

/// The steady-state probes, each as `{probe, tolerance_met, output}`.
async fn steady_state(d: &Drill, admin: &Admin) -> Vec<Value> {
    let mut out = Vec::new();
    for p in &d.steady_state {
        let (name, r): (String, Result<String, String>) = match p {
            Probe::Http { url, expect } => (
                format!("GET {}", url.text),
                match load::get(url).await {
                    Ok(s) if expect.contains(&s) => Ok(format!("status {s}")),
                    Ok(s) => Err(format!("status {s}")),
                    Err(e) => Err(e),
                },
            ),
            Probe::Sql { login, query } => (
                format!("{query} at {}", login.address),
                async {
                    let mut c = load::connect(login).await?;
                    let r = c.query(query).await;
                    c.close().await;
                    r.map(|row| format!("{row:?}"))
                }
                .await,
            ),
            Probe::Slo {
                name,
                max_burn_rate,
            } => (
                format!("slo {name} burn rate (5m) ≤ {max_burn_rate}"),
                async {
                    let v = admin.get_json("/api/v1/slos").await?;
                    let slo = v["slos"]
                        .as_array()
                        .and_then(|a| a.iter().find(|s| s["name"] == name.as_str()))
                        .ok_or_else(|| format!("no slo {name:?} on the gateway"))?;
                    let burn = slo["burn_rates"]["5m"].as_f64().unwrap_or(0.0);
                    if burn <= *max_burn_rate {
                        Ok(format!("burn rate {burn}"))
                    } else {
                        Err(format!("burn rate {burn} > {max_burn_rate}"))
                    }
                }
                .await,
            ),
        };
        out.push(json!({
            "probe": name,
            "tolerance_met": r.is_ok(),
            "output": r.unwrap_or_else(|e| e),
        }));
    }
    out
}

/// Remaining error budget (minutes) per SLO of the gateway.
async fn slo_budgets(admin: &Admin) -> HashMap<String, f64> {
    let Ok(v) = admin.get_json("/api/v1/slos").await else {
        return HashMap::new();
    };
    v["slos"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["name"].as_str()?.to_owned(),
                        s["budget"]["remaining_minutes"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the gateway's state and returns what changed, as timeline events: endpoints
/// marked down or up, roles, drains, primary generations.
async fn watch_gateway(
    admin: Admin,
    rec: Recorder,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Event> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut events = Vec::new();
    let mut first = true;
    let mut first_metrics = true;
    loop {
        if let Ok(s) = admin.get_json("/api/v1/state").await {
            let t = rec.now();
            for c in s["clusters"].as_array().into_iter().flatten() {
                let cname = c["name"].as_str().unwrap_or_default();
                if let Some(g) = c["primary"]["generation"].as_u64() {
                    let key = format!("{cname} generation");
                    let v = g.to_string();
                    if seen.get(&key) != Some(&v) && !first {
                        events.push(Event {
                            t,
                            event: format!(
                                "cluster {cname}: primary generation {g} ({})",
                                c["primary"]["current"].as_str().unwrap_or("none")
                            ),
                        });
                    }
                    seen.insert(key, v);
                }
                for e in c["endpoints"].as_array().into_iter().flatten() {
                    let addr = e["address"].as_str().unwrap_or_default();
                    for field in ["health", "role", "drained"] {
                        let key = format!("{cname} {addr} {field}");
                        let v = e[field].to_string();
                        if let Some(old) = seen.get(&key) {
                            if *old != v {
                                let why = e["why"]
                                    .as_str()
                                    .map(|w| format!(": {w}"))
                                    .unwrap_or_default();
                                let what = match (field, v.as_str()) {
                                    ("health", "\"unhealthy\"") => {
                                        format!("endpoint {addr} of {cname} marked down{why}")
                                    }
                                    ("health", "\"healthy\"") if old == "\"unhealthy\"" => {
                                        format!("endpoint {addr} of {cname} up again")
                                    }
                                    // From unknown at start: not an event.
                                    ("health", _) => {
                                        seen.insert(key, v);
                                        continue;
                                    }
                                    ("role", _) => {
                                        format!("endpoint {addr} of {cname}: role {old} → {v}")
                                    }
                                    ("drained", "true") => {
                                        format!("endpoint {addr} of {cname} drained")
                                    }
                                    _ => format!("endpoint {addr} of {cname}: {field} {old} → {v}"),
                                };
                                events.push(Event { t, event: what });
                            }
                        }
                        seen.insert(key, v);
                    }
                }
            }
            first = false;
        }
        // Sessions the gateway closed when their endpoint left the set.
        if let Ok((200, text)) = admin.request(http::Method::GET, "/metrics", None).await {
            let t = rec.now();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("ninefold_tcp_sessions_fenced_total{") else {
                    continue;
                };
                let Some((labels, value)) = rest.split_once("} ") else {
                    continue;
                };
                let key = format!("fenced {labels}");
                let v = value.trim().to_owned();
                if let Some(old) = seen.get(&key) {
                    let (a, b) = (
                        old.parse::<f64>().unwrap_or(0.0),
                        v.parse::<f64>().unwrap_or(0.0),
                    );
                    if b > a {
                        events.push(Event {
                            t,
                            event: format!("{} TCP sessions closed by the fence ({labels})", b - a),
                        });
                    }
                } else if v != "0" && !first_metrics {
                    events.push(Event {
                        t,
                        event: format!("{v} TCP sessions closed by the fence ({labels})"),
                    });
                }
                seen.insert(key, v);
            }
            first_metrics = false;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return events,
        }
    }
}

/// The gateway's admin API, as the drill uses it.
#[derive(Clone)]
struct Admin {
    addr: std::net::SocketAddr,
    token: Option<String>,
}

impl Admin {
    async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let go = async {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("admin {}: {e}", self.addr))?;
            let mut b = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, self.addr.to_string());
            if let Some(t) = &self.token {
                b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            if body.is_some() {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
            }
            let req = b
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.unwrap_or_default(),
                )))
                .map_err(|e| e.to_string())?;
            let resp = crate::oneshot::send(stream, req, false)
                .await
                .map_err(|e| format!("admin: {e}"))?;
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .map_err(|e| format!("admin: {e}"))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(5), go)
            .await
            .map_err(|_| "admin: timeout".to_string())?
    }

    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.request(http::Method::GET, path, None).await?;
        if status != 200 {
            return Err(format!("{path}: status {status}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
    }

    async fn post(&self, path: &str, body: Option<String>) -> Result<(u16, String), String> {
        self.request(http::Method::POST, path, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(stream: usize, start: f64, ok: bool) -> load::Op {
        load::Op {
            stream,
            start,
            end: start + 0.01,
            ok,
            error: None,
            seq: None,
        }
    }

    #[test]
    fn recovery_is_the_first_success_after_the_last_failure_confirmed_by_n() {
        // Stream 0 fails at 1.0-1.2 and succeeds from 1.3; stream 1 never fails.
        let mut ops: Vec<load::Op> = (0..10).map(|i| op(0, 0.1 * f64::from(i), true)).collect();
        ops.extend([op(0, 1.0, false), op(0, 1.1, false), op(0, 1.2, false)]);
        ops.extend((0..5).map(|i| op(0, 1.3 + 0.1 * f64::from(i), true)));
        ops.extend((0..20).map(|i| op(1, 0.1 * f64::from(i), true)));
        let m = measure(&ops, 2, 0.95, 3);
        assert_eq!(m.first_failure, Some(1.0));
        assert_eq!(m.first_success_after, Some(1.3));
        assert_eq!(m.recovered_at, Some(1.3));
        // Not confirmed: 5 successes, 10 wanted.
        assert_eq!(measure(&ops, 2, 0.95, 10).recovered_at, None);
        // Nothing failed after the fault: recovered at the fault (RTO 0).
        assert_eq!(measure(&ops, 2, 1.25, 3).recovered_at, Some(1.25));
    }

    #[test]
    fn a_bad_file_names_every_error_at_its_key() {
        let text = "title: t\ngateway: {admin: nowhere}\ntargets: {rto: soon}\nmethod:\n  - {signal: {signal: BOOM, pid: 1}}\n  - {wait: 1s, command: {run: [true]}}\nrollback: sometimes\n";
        let e = file::parse("d.yaml", text, Path::new("."))
            .unwrap_err()
            .to_string();
        for want in [
            "d.yaml:2:",
            "gateway.admin: not an ip:port",
            "targets.rto",
            "method[0].signal.signal: must be one of KILL",
            "method[1]: set exactly one of",
            "rollback: must be always, deviated or never",
        ] {
            assert!(e.contains(want), "{want:?} missing in:\n{e}");
        }
    }
}
