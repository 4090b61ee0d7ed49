//! Operations details: plain (uncoloured) logs when stderr is not a terminal, the
//! access log's queue (its drop counter on `/metrics`, its last lines written at
//! SIGTERM), and the open-files limit raised to the hard limit at start.

use crate::support::*;
use std::time::Duration;

#[tokio::test]
async fn logs_to_a_pipe_have_no_ansi_colour_codes() {
    let a = Backend::start("a").await;
    // NO_COLOR removed: the pipe alone must turn colours off.
    let gw = Gateway::start_with(&simple_config(&[&a], "", ""), |c| {
        c.env_remove("NO_COLOR");
    });
    assert_eq!(get(&gw.url("web", "/x")).await.status, 200);
    assert!(
        eventually(Duration::from_secs(5), || gw.stderr().contains("INFO")).await,
        "no info line: {}",
        gw.stderr()
    );
    let err = gw.stderr();
    assert!(!err.contains("\x1b["), "colour codes in {err:?}");
}

#[tokio::test]
async fn access_log_dropped_total_is_on_metrics() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "access_log: text\n{}",
        simple_config(&[&a], "", "")
    ));
    assert_eq!(get(&gw.url("web", "/x")).await.status, 200);
    let m = String::from_utf8_lossy(&get(&gw.admin_url("/metrics")).await.body).into_owned();
    assert!(
        m.contains("# TYPE ninefold_access_log_dropped_total counter"),
        "{m}"
    );
    assert!(m.contains("\nninefold_access_log_dropped_total 0\n"), "{m}");
}

#[tokio::test]
async fn the_last_access_lines_are_written_at_sigterm() {
    let a = Backend::start("a").await;
    let mut gw = Gateway::start(&format!(
        "access_log: text\n{}",
        simple_config(&[&a], "", "")
    ));
    const N: usize = 200;
    get_ok_n(&gw.url("web", "/last"), N).await;
    // Straight away: the lines may still be queued for the writer thread.
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success());
    let count = || {
        gw.stdout()
            .lines()
            .filter(|l| l.contains(" /last ") && l.contains("route=main"))
            .count()
    };
    // The reader thread may still be draining the pipe.
    assert!(
        eventually(Duration::from_secs(5), || count() == N).await,
        "{} access lines of {N}",
        count()
    );
}

/// Soft and hard "Max open files" of a process, from /proc.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
}

#[tokio::test]
async fn serve_raises_the_open_files_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct on our stack.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let hard = lim.rlim_max;
    // Start the child below its hard limit (as a login shell's 1024 would).
    let soft = (hard / 2).min(256);
    let a = Backend::start("a").await;
    let gw = Gateway::start_with(&simple_config(&[&a], "", ""), |c| {
        let low = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: between fork and exec the closure only calls setrlimit, which is
        // async-signal-safe, on a struct it owns.
        unsafe {
            c.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &low) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let (cur, max) = open_files_limits(gw.pid());
    assert_eq!(cur, max, "soft limit not raised");
    assert_eq!(max, hard.to_string());
    let said = format!("open files limit raised from {soft} to {hard}");
    assert!(
        eventually(Duration::from_secs(5), || gw.stderr().contains(&said)).await,
        "no {said:?} in {}",
        gw.stderr()
    );
}
