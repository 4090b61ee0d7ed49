//! The gateway's transitions as a stream: endpoints going down and up, ejections,
//! breakers opening and closing, panic mode, primary switches, reloads, drains and
//! faults set from the admin API. Each is [`emit`]ted where it happens (beside its log
//! line) into one process-wide bus, which keeps the last [`BACKLOG`] for a reader that
//! comes late and passes new ones to every [`subscribe`]r; the admin API serves it as
//! server-sent events (`GET /api/v1/events`) for the dashboard and for scripts.
//!
//! Transitions are rare (a few per second at the worst), so the bus takes a lock on
//! each; on the per-request path only an ejection, a breaker transition or panic mode
//! beginning or ending emits, each beside the log line it writes anyway. A reader that
//! falls behind by more than the channel holds loses the oldest, and is told so
//! (`lagged`).
//!
//! Ids grow across restarts too: the first id of a process is its start time in Unix
//! seconds × 1,000,000, so a reader that reconnects to a restarted gateway with the
//! last id it saw (`Last-Event-ID`) still gets the new process's events. (Ids stay
//! below 2^53, exact as JSON numbers in a browser.)

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Transitions kept for a reader that connects late.
pub const BACKLOG: usize = 256;

/// One transition.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// One more per event in the process; a reader resumes after the last it saw.
    pub id: u64,
    /// When it happened (Unix time, ms).
    pub at_unix_ms: u64,
    /// What happened: `endpoint_down`, `endpoint_up`, `ejected`, `breaker_open`, ...
    pub kind: &'static str,
    /// The cluster it happened to, if any.
    pub cluster: Option<String>,
    /// The endpoint it happened to, if any.
    pub endpoint: Option<String>,
    /// What happened, in words (the log line's).
    pub message: String,
}

struct Bus {
    backlog: Mutex<(u64, VecDeque<Arc<Event>>)>,
    tx: broadcast::Sender<Arc<Event>>,
}

fn bus() -> &'static Bus {
    static BUS: OnceLock<Bus> = OnceLock::new();
    BUS.get_or_init(|| Bus {
        backlog: Mutex::new((first_id(), VecDeque::with_capacity(BACKLOG))),
        tx: broadcast::channel(BACKLOG).0,
    })
}

/// The id before this process's first: its start in Unix seconds, × 1,000,000.
fn first_id() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs * 1_000_000
}

/// Publishes a transition of `kind` (on `cluster` and `endpoint`, where it applies).
pub fn emit(kind: &'static str, cluster: Option<&str>, endpoint: Option<&str>, message: String) {
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let bus = bus();
    let mut guard = bus.backlog.lock().unwrap_or_else(|p| p.into_inner());
    let (next, backlog) = &mut *guard;
    *next += 1;
    let event = Arc::new(Event {
        id: *next,
        at_unix_ms,
        kind,
        cluster: cluster.map(str::to_owned),
        endpoint: endpoint.map(str::to_owned),
        message,
    });
    if backlog.len() == BACKLOG {
        backlog.pop_front();
    }
    backlog.push_back(event.clone());
    // Sent under the lock, so a subscriber sees each event once: in its backlog or on
    // its channel. No subscriber is not an error.
    let _ = bus.tx.send(event);
}

/// The events kept with an id above `after` (all of them for 0), and a receiver of
/// those that follow, with nothing lost or doubled between the two.
pub fn subscribe(after: u64) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
    let bus = bus();
    let guard = bus.backlog.lock().unwrap_or_else(|p| p.into_inner());
    let kept = guard.1.iter().filter(|e| e.id > after).cloned().collect();
    (kept, bus.tx.subscribe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_reader_gets_the_backlog_then_what_follows_once() {
        emit("reload", None, None, "first".into());
        let (kept, mut rx) = subscribe(0);
        let last = kept.last().expect("kept").id;
        emit("endpoint_down", Some("api"), Some("a:1"), "second".into());
        let next = rx.try_recv().expect("sent");
        assert!(next.id > last);
        // Resuming after `last` gives the second again, from the backlog.
        let (again, _) = subscribe(last);
        assert!(again
            .iter()
            .any(|e| e.id == next.id && e.message == "second"));
        assert!(again.iter().all(|e| e.id > last));
    }

    #[test]
    fn ids_start_above_any_earlier_process_and_stay_exact_in_javascript() {
        emit("reload", None, None, "x".into());
        let (kept, _) = subscribe(0);
        let id = kept.last().unwrap().id;
        // Above the start of 2026 in seconds × 10^6, below 2^53.
        assert!(id > 1_767_225_600 * 1_000_000 && id < 1 << 53, "{id}");
    }

    #[test]
    fn the_backlog_is_bounded() {
        for i in 0..BACKLOG + 10 {
            emit("reload", None, None, format!("{i}"));
        }
        let (kept, _) = subscribe(0);
        assert_eq!(kept.len(), BACKLOG);
        assert!(kept.windows(2).all(|w| w[0].id < w[1].id));
    }
}
