//! `GET /api/v1/events`: the gateway's transitions (`crate::events`) as server-sent
//! events, until the gateway stops. On connect the client gets the kept backlog (after `Last-Event-ID`, or
//! after `?after=N`, when given), then each new event as it happens; a comment every
//! 15 s keeps idle proxies from closing the stream. With `Accept: application/json`
//! (or `?format=json`) the answer is the backlog as one JSON array instead, for
//! scripts that poll.

use super::AdminState;
use crate::events::{self, Event};
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The value of query parameter `name`, if given.
fn param<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn sse_event(e: &Event) -> sse::Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    sse::Event::default().id(e.id.to_string()).data(data)
}

/// Streams the backlog, then what follows.
pub(super) async fn stream(State(s): State<AdminState>, uri: Uri, headers: HeaderMap) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume
        .or_else(|| param(&uri, "after")?.parse().ok())
        .unwrap_or(0);
    let (kept, rx) = events::subscribe(after);
    let json = param(&uri, "format") == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if json {
        let list: Vec<&Event> = kept.iter().map(|e| &**e).collect();
        return Json(list).into_response();
    }
    let backlog = futures_util::stream::iter(
        kept.into_iter()
            .map(|e| Ok::<_, Infallible>(sse_event(&e)))
            .collect::<Vec<_>>(),
    );
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        let next = match rx.recv().await {
            Ok(e) => sse_event(&e),
            // Fell behind by more than the channel holds: say how many were missed.
            Err(RecvError::Lagged(n)) => sse::Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(next), rx))
    });
    // The stream ends when the admin listener stops (its graceful shutdown waits for
    // every open connection).
    let mut stopping = s.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let stream =
        futures_util::StreamExt::take_until(futures_util::StreamExt::chain(backlog, live), stopped);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
