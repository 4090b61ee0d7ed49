//! Logging through `tracing`: operational logs to stderr, the access log to stdout.
//!
//! The access log's format (`off`, `text`, `json`) is read from the running snapshot
//! per request, so a reload can switch it; both formats have a layer installed here,
//! each filtered to its own target, and the data path emits to at most one of them.
//!
//! Access lines are written off the data path: the layers hand each formatted line to
//! a bounded in-memory queue (`tracing-appender`'s non-blocking writer) and one thread
//! writes the queue to stdout. A stalled stdout (a full pipe, a slow log shipper) then
//! never blocks a worker; when the queue is full, new lines are dropped and counted
//! (see [`access_log_dropped`], exported as `ninefold_access_log_dropped_total`). The
//! [`Guard`] that [`init`] returns flushes the queue when it is dropped, at exit.
//!
//! Operational logs stay synchronous on stderr (they are rare and we would rather
//! wait than lose one), coloured only when stderr is a terminal and `NO_COLOR` is not
//! set, so journald and log files get plain text.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Target of text access-log events.
pub const ACCESS_TEXT: &str = "ninefold::access::text";
/// Target of JSON access-log events.
pub const ACCESS_JSON: &str = "ninefold::access::json";

/// Access lines the queue holds before new ones are dropped. At a few hundred bytes a
/// line this is at most about 16 MiB, and it absorbs a stall of stdout of about a
/// second at 65k requests/s, longer than a log shipper's usual hiccup; beyond that,
/// dropping lines beats slowing every request down to the speed of the pipe.
pub const ACCESS_LOG_BUFFER_LINES: usize = 65_536;

/// The drop counter of the access log's queue, set once by [`init`].
static ACCESS_DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the access log's writer thread alive; dropping it writes out the lines still
/// queued (waiting up to about a second), so hold it until the process exits.
#[must_use = "dropping the guard stops the access log"]
pub struct Guard {
    _access: Option<WorkerGuard>,
}

/// Installs the global subscriber and returns the guard of the access log's writer.
/// `RUST_LOG` overrides the default `info` level of operational logs.
pub fn init() -> Guard {
    let ops_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (access, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(ACCESS_LOG_BUFFER_LINES)
        .thread_name("ninefold-access-log")
        .finish(std::io::stdout());
    let dropped = access.error_counter();
    let installed = subscriber(ops_filter, access).try_init().is_ok();
    if !installed {
        // Another subscriber won (a second call): ours never sees an event.
        return Guard { _access: None };
    }
    let _ = ACCESS_DROPPED.set(dropped);
    Guard {
        _access: Some(guard),
    }
}

/// The subscriber: operational logs to stderr through `ops_filter`, access lines to
/// `access` as text or JSON.
///
/// Every filter says the most verbose level it can let through, so the subscriber's
/// maximum is known (`info` unless `RUST_LOG` asks for more) and the `trace` and
/// `debug` spans of h2 and hyper are turned off at their call sites. A filter without
/// a hint makes the maximum `trace`: every h2 frame then built a span that the filters
/// threw away, which was half of the h2 path's CPU (bench/README.md, h2).
fn subscriber(
    ops_filter: EnvFilter,
    access: tracing_appender::non_blocking::NonBlocking,
) -> impl tracing::Subscriber + Send + Sync {
    let ops_max = ops_filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let ops = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_filter(ops_filter)
        .with_filter(
            filter_fn(|m| !m.target().starts_with("ninefold::access")).with_max_level_hint(ops_max),
        );
    let text = tracing_subscriber::fmt::layer()
        .with_writer(access.clone())
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .with_filter(
            filter_fn(|m| m.target() == ACCESS_TEXT).with_max_level_hint(LevelFilter::INFO),
        );
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(access)
        .with_filter(
            filter_fn(|m| m.target() == ACCESS_JSON).with_max_level_hint(LevelFilter::INFO),
        );
    tracing_subscriber::registry()
        .with(ops)
        .with(text)
        .with(json)
}

/// Access lines dropped so far because the queue to stdout was full.
pub fn access_log_dropped() -> u64 {
    ACCESS_DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Whether operational logs get ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
fn use_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn the_subscriber_knows_its_most_verbose_level() {
        use tracing::Subscriber;
        let hint = |filter: &str| {
            let (w, _guard) = NonBlockingBuilder::default().finish(std::io::sink());
            subscriber(EnvFilter::new(filter), w).max_level_hint()
        };
        // The default: trace and debug call sites (h2's spans) are off.
        assert_eq!(hint("info"), Some(LevelFilter::INFO));
        // The access lines are info: a quieter RUST_LOG does not turn them off.
        assert_eq!(hint("warn"), Some(LevelFilter::INFO));
        assert_eq!(hint("debug"), Some(LevelFilter::DEBUG));
        assert_eq!(hint("info,h2=trace"), Some(LevelFilter::TRACE));
    }

    #[test]
    fn nothing_dropped_before_init() {
        // Metrics read this at every scrape, also in processes that never log.
        assert_eq!(access_log_dropped(), 0);
    }
}
