//! What an operator installs: the systemd unit (checked by `systemd-analyze verify`
//! where it exists), the Dockerfile (multi-stage, non-root, a health check that needs
//! no curl), `ninefold health` that the health check runs, `--help` covering every
//! subcommand, and `--json` on the commands that print a result.

use crate::support::*;
use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `systemd-analyze verify` of `unit` with its binary path pointed at the built one:
/// (passed, what it said).
fn verify(unit: &str) -> Option<(bool, String)> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("systemd-analyze verify: systemd-analyze is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ninefold.service");
    let exe = std::fs::canonicalize(bin()).unwrap();
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/ninefold", exe.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    Some((out.status.success() && said.trim().is_empty(), said))
}

#[test]
fn the_systemd_unit_reloads_with_sighup_is_sandboxed_and_verifies() {
    let unit = repo("examples/systemd/ninefold.service");
    for want in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStartPre=/usr/local/bin/ninefold check -c /etc/ninefold/ninefold.yaml",
        "LimitNOFILE=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=ninefold",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(want), "the unit has {want}");
    }
    let Some((ok, said)) = verify(&unit) else {
        return;
    };
    assert!(ok, "systemd-analyze verify: {said}");
    // The check can fail: a misspelt key is reported.
    let (ok, said) = verify(&unit.replace("ProtectSystem=strict", "ProtectSystm=strict")).unwrap();
    assert!(!ok && said.contains("ProtectSystm"), "{said}");
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_a_health_check() {
    let file = repo("Dockerfile");
    let lines: Vec<&str> = file
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("FROM debian:bookworm-slim")));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(
        file.contains("HEALTHCHECK") && file.contains("\"health\""),
        "health check"
    );
    // What it copies from the repository exists.
    for l in &lines {
        if let Some(rest) = l.strip_prefix("COPY ").filter(|r| !r.starts_with("--from")) {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
                assert!(p.exists(), "COPY {src}: missing");
            }
        }
    }
    // The configuration the image starts with is valid.
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container.yaml");
    let (code, _, err) = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn ninefold_health_exits_by_what_the_gateway_says() {
    let b = Backend::start("a").await;
    let g = Gateway::start(&one_endpoint_config(b.addr, ""));
    let admin = g.admin.to_string();
    let (code, out, err) = run(&["health", "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "ok");
    drop(g);
    let (code, _, err) = run(&["health", "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(err.contains("no answer"), "{err}");
}

#[test]
fn help_covers_every_subcommand() {
    let (code, top, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for sub in [
        "serve", "check", "slo", "calc", "demo", "drill", "grafana", "health", "origin",
    ] {
        assert!(
            top.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "{sub} in --help:\n{top}"
        );
        let (code, text, err) = run(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub} --help: {err}");
        assert!(text.contains("Usage: ninefold"), "{sub}: {text}");
    }
}

#[test]
fn commands_that_print_a_result_print_json_on_request() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic.yaml");
    let cfg = cfg.to_str().unwrap();
    let slo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slo.yaml");
    let slo = slo.to_str().unwrap().to_owned();
    for args in [
        vec!["check", "-c", cfg, "--json"],
        vec!["calc", "--json", "nines", "99.95%"],
        vec!["slo", "--json", "budget", &slo],
        vec!["grafana", "-c", cfg],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let v: Result<serde_json::Value, _> = serde_json::from_str(&out);
        assert!(v.is_ok(), "{args:?} prints JSON: {out}");
    }
}
