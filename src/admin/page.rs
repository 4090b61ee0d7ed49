//! The dashboard: one HTML page, one script and one style sheet, embedded in the
//! binary (no build step, no files to install) and served from the admin listener.
//! The page polls `/api/v1/state`, `/api/v1/slos` and `/api/v1/faults` every 2 s and
//! follows `/api/v1/events`; everything it shows comes from those public APIs, so a
//! script sees what a person sees. Actions send the token the operator typed (kept
//! in the page's memory only) as a bearer header.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The page refuses to be framed and to load anything but its own files.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/app.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /dashboard/style.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded assets' total size in bytes.
    fn assets_bytes() -> usize {
        INDEX.len() + SCRIPT.len() + STYLE.len()
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_stays_small() {
        assert!(INDEX.contains("/dashboard/app.js") && INDEX.contains("/dashboard/style.css"));
        for text in [INDEX, SCRIPT, STYLE] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no outside URL"
            );
            assert!(!text.contains("localStorage") && !text.contains("document.cookie"));
        }
        assert!(assets_bytes() < 64 * 1024, "{} bytes", assets_bytes());
    }
}
