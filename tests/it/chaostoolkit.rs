//! The Chaos Toolkit extension (`contrib/chaostoolkit-ninefold`): `chaos run` of an
//! experiment that drains an endpoint, probes it out, adds a fault with a ttl and
//! enables the endpoint back as its rollback, against a real gateway. Chaos Toolkit
//! comes from PyPI into a virtualenv the test makes (kept under the target directory,
//! so later runs reuse it).

use crate::support::{self, get, Backend, Gateway};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "chaos-token";

/// A virtualenv with Chaos Toolkit and the extension, or why not.
fn venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaostoolkit-venv");
    let pip = dir.join("bin/pip");
    if !dir.join("bin/chaos").exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("python3: {e}"))?
            .success();
        if !ok {
            return Err("python3 -m venv failed (Debian: apt-get install python3-venv)".into());
        }
        let out = Command::new(&pip)
            .args(["install", "--quiet", "chaostoolkit"])
            .output()
            .map_err(|e| format!("pip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install chaostoolkit: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // The extension, from the repository, every run (it may have changed), built from
    // a copy: a build in place would leave `build/` and `*.egg-info` in the tree.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/chaostoolkit-ninefold");
    let copy = tempfile::tempdir().map_err(|e| e.to_string())?;
    for f in [
        "pyproject.toml",
        "README.md",
        "chaosninefold/__init__.py",
        "chaosninefold/actions.py",
        "chaosninefold/probes.py",
    ] {
        let to = copy.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(src.join(f), &to).map_err(|e| format!("{f}: {e}"))?;
    }
    let out = Command::new(&pip)
        .args(["install", "--quiet", "--no-deps", "--force-reinstall"])
        .arg(copy.path())
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install the extension: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_drives_the_gateway_through_the_extension() {
    let dir = match venv() {
        Ok(d) => d,
        Err(e) if std::env::var_os("NINEFOLD_REQUIRE_CHAOSTOOLKIT").is_none() => {
            support::skipped(&format!("the Chaos Toolkit test: {e}"));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "admin: {{bind: \"127.0.0.1:0\", token: {TOKEN}}}
listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{name: api, match: {{path_prefix: /}}, cluster: api, slo: api-availability}}
clusters:
  - name: api
    endpoints: [{{address: \"{}\"}}, {{address: \"{}\"}}]
slos:
  - {{name: api-availability, objective: 99.9%, window: 30d}}
",
        a.addr, b.addr
    ));
    let work = tempfile::tempdir().unwrap();
    let journal = work.path().join("journal.json");
    let experiment = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/chaostoolkit-ninefold/tests/experiment.json");
    let out = Command::new(dir.join("bin/chaos"))
        .args([
            "--no-log-file",
            "run",
            "--rollback-strategy",
            "always",
            "--journal-path",
        ])
        .arg(&journal)
        .arg(&experiment)
        .current_dir(work.path())
        .env("NINEFOLD_ADMIN", gw.admin.to_string())
        .env("NINEFOLD_ADMIN_TOKEN", TOKEN)
        .env("NINEFOLD_CLUSTER", "api")
        .env("NINEFOLD_ENDPOINT", a.addr.to_string())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    assert_eq!(j["status"], "completed", "{log}");
    assert_eq!(j["deviated"], false, "{log}");
    // The method ran (drain, probe, fault), saw the endpoint out; the rollback enabled
    // it again.
    assert_eq!(j["run"].as_array().map(Vec::len), Some(3), "{log}\n{j:#}");
    assert_eq!(
        j["steady_states"]["after"]["steady_state_met"], true,
        "{log}"
    );
    assert_eq!(j["run"][1]["output"], false, "{log}\n{j:#}");
    let st = get(&gw.admin_url("/api/v1/state")).await.json();
    let e = st["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == a.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(e["drained"], false, "the rollback enabled it: {e}");
    // The fault it added carries its ttl.
    let faults = get(&gw.admin_url("/api/v1/faults")).await.json();
    assert_eq!(
        faults["faults"].as_array().map(Vec::len),
        Some(1),
        "{faults}"
    );
    assert!(faults["faults"][0]["expires_in_ms"].as_u64().unwrap() <= 20_000);
}
