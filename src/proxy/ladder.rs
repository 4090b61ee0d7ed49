//! The fallback ladder's run: when the attempts on a route's cluster fail (a gateway
//! failure that is not the client's fault, or an upstream 5xx), its rungs are tried in
//! order (another cluster, the stale answer, the static one) and the first that
//! answers wins. The rungs themselves, the stale cache and the static answer, are
//! `fallback`'s.

use super::attempts::{Answered, Attempts, Failed};
use super::ConnCtx;
use crate::fallback::{self, Kind, RouteFallback};
use crate::message::{Failure, Head, ReqBody};
use crate::snapshot::{ClusterSnap, RouteSnap};
use http::{Method, Request};
use tokio::time::Instant;

/// What the fallback ladder keeps of a request head: to ask another cluster, and to
/// key the stale cache (extensions are not kept: an upgrade is never retried). Its
/// fields are a map: ladders are not the hot path.
pub(super) struct Kept {
    /// The method.
    pub method: Method,
    /// The target.
    pub uri: http::Uri,
    version: http::Version,
    /// The fields, as a map.
    pub headers: http::HeaderMap,
}

pub(super) fn kept_of(h: &Head) -> Kept {
    Kept {
        method: h.parts.method.clone(),
        uri: h.parts.uri.clone(),
        version: h.parts.version,
        headers: h.to_map(),
    }
}

fn rebuild(h: &Kept) -> Head {
    let (mut p, ()) = Request::new(()).into_parts();
    p.method = h.method.clone();
    p.uri = h.uri.clone();
    p.version = h.version;
    p.headers = h.headers.clone();
    Head::new(p)
}

/// Whether an outcome calls for the fallback ladder: a gateway failure (not the
/// client's fault) or an upstream 5xx.
pub(super) fn needs_fallback(r: &Result<Answered, Failed>) -> bool {
    match r {
        Ok(a) => a.response.status().is_server_error(),
        Err(e) => !e.failure.is_client_fault() && e.failure != Failure::ListenerGone,
    }
}

/// Tries the rungs in order (another cluster, stale, static); the first that answers
/// wins. Without an answer from any rung, the cluster's own outcome stands.
pub(super) async fn run(
    ctx: &ConnCtx,
    route: &RouteSnap,
    f: &RouteFallback<ClusterSnap>,
    head: Option<&Kept>,
    bodiless: bool,
    primary: Result<Answered, Failed>,
) -> (Result<Answered, Failed>, Option<Kind>) {
    // Another cluster: the request again, which needs its body again; a request with
    // a body skips this rung (the body went to the first cluster).
    if let (Some(cluster), Some(head), true) = (&f.cluster, head, bodiless) {
        let mut again = rebuild(head);
        let at = Instant::now() + route.timeout;
        let attempts = Attempts::new(ctx, route, cluster, None, at);
        let run = attempts.run(&mut again, ReqBody::Full(None), None);
        if let Ok(Ok(a)) = crate::timer::timeout_at(at, run).await {
            if !a.response.status().is_server_error() {
                f.count(Kind::Cluster);
                let response = fallback::degraded(a.response, Kind::Cluster);
                let endpoint = a.endpoint;
                return (Ok(Answered { response, endpoint }), Some(Kind::Cluster));
            }
        }
    }
    if let Some(resp) = head.and_then(|h| f.stale(&h.method, &h.uri, &h.headers, Instant::now())) {
        f.count(Kind::Stale);
        let stale = Answered {
            response: resp,
            endpoint: None,
        };
        return (Ok(stale), Some(Kind::Stale));
    }
    if let Some(resp) = f.static_answer() {
        f.count(Kind::Static);
        let fixed = Answered {
            response: resp,
            endpoint: None,
        };
        return (Ok(fixed), Some(Kind::Static));
    }
    (primary, None)
}
