//! Logging through `tracing`: operational logs to stderr, the access log to stdout.
//!
//! The access log's format (`off`, `text`, `json`) is read from the running snapshot
//! per request, so a reload can switch it; both formats have a layer installed here,
//! each filtered to its own target, and the data path emits to at most one of them.

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Target of text access-log events.
pub const ACCESS_TEXT: &str = "ninefold::access::text";
/// Target of JSON access-log events.
pub const ACCESS_JSON: &str = "ninefold::access::json";

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level of
/// operational logs.
pub fn init() {
    let ops_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ops = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(ops_filter)
        .with_filter(filter_fn(|m| !m.target().starts_with("ninefold::access")));
    let text = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .with_filter(filter_fn(|m| m.target() == ACCESS_TEXT));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .with_filter(filter_fn(|m| m.target() == ACCESS_JSON));
    let _ = tracing_subscriber::registry()
        .with(ops)
        .with(text)
        .with(json)
        .try_init();
}
