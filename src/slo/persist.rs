//! SLO state that survives restarts: each SLO's rolling windows, written to
//! `state_dir/slo-state.json` atomically (a temp file, fsync, rename, fsync of the
//! directory) every `state_flush` and at shutdown, and read back at start. A file that
//! is not ninefold's, or is corrupt, is moved aside with a log line and the budgets
//! start fresh: a bad file never stops the gateway.

use super::window::Windows;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The file's `format`.
const FORMAT: &str = "ninefold-slo-state";

/// The on-disk state (`state_dir/slo-state.json`).
#[derive(Serialize, Deserialize)]
struct Persisted {
    format: String,
    version: u32,
    saved_at: u64,
    slos: Vec<PersistedSlo>,
}

#[derive(Serialize, Deserialize)]
struct PersistedSlo {
    name: String,
    windows: Windows,
}

/// Reads the saved state at `now` (Unix seconds); a file that is not ours is moved
/// aside, stamped with `now`.
pub(super) fn restore(path: &Path, now: u64) -> HashMap<String, Windows> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::error!(file = %path.display(), "cannot read the SLO state file: {e}; budgets start fresh");
            return HashMap::new();
        }
    };
    let parsed: Result<Persisted, String> = serde_json::from_slice::<Persisted>(&text)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            if p.format != FORMAT {
                Err(format!("format {:?} is not {FORMAT:?}", p.format))
            } else if p.version != 1 {
                Err(format!("version {} is not 1", p.version))
            } else if p.slos.iter().any(|s| !s.windows.is_valid()) {
                Err("a ring of buckets is malformed (or counts more bad than total events)".into())
            } else {
                Ok(p)
            }
        });
    match parsed {
        Ok(p) => {
            tracing::info!(file = %path.display(), slos = p.slos.len(), saved_at = p.saved_at, "SLO state restored");
            p.slos.into_iter().map(|s| (s.name, s.windows)).collect()
        }
        Err(why) => {
            let stamp = now;
            let aside = path.with_file_name(format!("slo-state.json.corrupt-{stamp}"));
            let moved = std::fs::rename(path, &aside);
            tracing::error!(
                file = %path.display(),
                kept_as = %aside.display(),
                "the SLO state file is corrupt or not ninefold's ({why}); {}; budgets start fresh",
                if moved.is_ok() { "it was kept aside" } else { "it could not be moved aside" }
            );
            HashMap::new()
        }
    }
}

/// Writes the windows of the configured SLOs (`tracks`) and of those removed from the
/// config (`parked`) to `path` atomically: a temp file, fsync, rename, fsync of the
/// directory.
pub(super) fn save<'a>(
    path: &Path,
    tracks: impl Iterator<Item = (&'a str, &'a Windows)>,
    parked: &HashMap<String, Windows>,
    now: u64,
) {
    let mut slos: Vec<PersistedSlo> = tracks
        .map(|(name, windows)| PersistedSlo {
            name: name.to_owned(),
            windows: windows.clone(),
        })
        .collect();
    for (name, w) in parked {
        // Counts of a removed SLO are kept while any of them is still in the span its
        // rings cover; after that there is nothing left to keep.
        let span = w.tiers.iter().map(|t| t.secs * t.total.len() as u64).max();
        if span.is_some_and(|s| w.over(now, Duration::from_secs(s)).total == 0) {
            continue;
        }
        slos.push(PersistedSlo {
            name: name.clone(),
            windows: w.clone(),
        });
    }
    let p = Persisted {
        format: FORMAT.into(),
        version: 1,
        saved_at: now,
        slos,
    };
    if let Err(e) = write_atomic(path, &p) {
        tracing::error!(file = %path.display(), "cannot save the SLO state: {e}");
    }
}

fn write_atomic(path: &Path, p: &Persisted) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(p).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
