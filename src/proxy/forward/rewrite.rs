//! Rewriting a request head held as a map for the next hop: hop-by-hop fields out,
//! the client into `x-forwarded-*`, the target in the upstream protocol's form (an h2
//! upstream's `:authority` from `Host`). A head the own engine read (raw lines) gets
//! the same rewrite from `h1::write::write_request` as it is written; the `h1_framing`
//! fuzz target holds the two to the same result.

use super::ConnCtx;
use crate::message::Failure;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::Version;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Rewrites the client's request for the upstream: hop-by-hop headers out,
/// `x-forwarded-*` in, URI in the form the upstream protocol wants, Host kept (to an
/// h2 upstream, as `:authority`).
pub(super) fn rewrite_request(
    ctx: &ConnCtx,
    parts: &mut Parts,
    upgrade: bool,
    h2: bool,
) -> Result<(), Failure> {
    rewrite_fields(&mut parts.headers, &ctx.client_ip, ctx.tls, upgrade)?;
    if h2 {
        // hyper's h2 client wants an absolute URI; :authority comes from Host, which
        // then leaves the fields (RFC 9113 §8.3.1): nginx refuses a request with both
        // ("client sent duplicate host header").
        let authority = parts
            .headers
            .remove(header::HOST)
            .and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok()));
        let mut up = parts.uri.clone().into_parts();
        up.scheme = Some(Scheme::HTTP);
        up.authority = authority.or(up.authority);
        if up.authority.is_none() {
            return Err(Failure::BadRequest);
        }
        up.path_and_query = match up.path_and_query.take() {
            Some(pq) if pq.as_str().starts_with('?') => {
                Some(PathAndQuery::try_from(format!("/{pq}")).map_err(|_| Failure::BadRequest)?)
            }
            None => Some(PathAndQuery::from_static("/")),
            pq => pq,
        };
        parts.uri = Uri::from_parts(up).map_err(|_| Failure::BadRequest)?;
        parts.version = Version::HTTP_2;
    } else {
        origin_form(parts)?;
    }
    Ok(())
}

/// The map's side of the fields' rewrite for the upstream: hop-by-hop fields out,
/// the client (`client_ip`, over TLS or not) into `x-forwarded-*`. A head the own
/// engine read gets the same rewrite from `h1::write::write_request`; the `h1_framing`
/// fuzz target holds the two to the same result.
pub fn rewrite_fields(
    h: &mut HeaderMap,
    client_ip: &HeaderValue,
    tls: bool,
    upgrade: bool,
) -> Result<(), Failure> {
    strip_hop_headers(h, upgrade);
    // A client's request for an injected fault is the gateway's business, read by then.
    h.remove(&crate::fault::FAULT_HEADER);
    // Room for the x-forwarded-* headers, so adding them does not grow the map twice.
    h.reserve(3);

    // Host is in place already: `conform::check_request` put the target's authority
    // (absolute-form, h2's :authority) there.
    // Append the client to the chain; several x-forwarded-for lines become one.
    let mut prev = h.get_all(&X_FORWARDED_FOR).iter();
    match (prev.next(), prev.next()) {
        (None, _) => {
            h.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        }
        (Some(first), second) => {
            let mut v = Vec::with_capacity(first.len() + 2 + client_ip.len());
            v.extend_from_slice(first.as_bytes());
            for more in second.into_iter().chain(prev) {
                v.extend_from_slice(b", ");
                v.extend_from_slice(more.as_bytes());
            }
            v.extend_from_slice(b", ");
            v.extend_from_slice(client_ip.as_bytes());
            let v = HeaderValue::from_bytes(&v).map_err(|_| Failure::BadRequest)?;
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
    Ok(())
}

/// The target in origin form (an absolute-form one loses its scheme and authority,
/// which are in `Host` already), for an HTTP/1.1 upstream.
pub(super) fn origin_form(parts: &mut Parts) -> Result<(), Failure> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = match parts.uri.path_and_query() {
            // An empty path is `/`, before a query too (RFC 9112 §3.2.1).
            Some(pq) if pq.as_str().starts_with('?') => {
                PathAndQuery::try_from(format!("/{pq}")).map_err(|_| Failure::BadRequest)?
            }
            Some(pq) => pq.clone(),
            None => PathAndQuery::from_static("/"),
        };
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the Connection header
/// names, except `Host` and `Content-Length`, which routing and framing rest on
/// (`Trailer` is end-to-end since RFC 9110 and stays). `te: trailers` stays (gRPC needs it); with `keep_upgrade`, `connection` and
/// `upgrade` stay too.
pub fn strip_hop_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names to see which hop-by-hop headers are there at all: most
    // messages carry none but Connection, and a hashed remove per absent name would
    // cost more than the whole scan.
    const CONN: u8 = 1;
    const UPGRADE: u8 = 2;
    const KEEP: u8 = 4;
    const PROXY_CONN: u8 = 8;
    const TRANSFER: u8 = 16;
    const TE: u8 = 32;
    let mut present = 0u8;
    for name in h.keys() {
        present |= if *name == header::CONNECTION {
            CONN
        } else if *name == header::UPGRADE {
            UPGRADE
        } else if *name == header::TRANSFER_ENCODING {
            TRANSFER
        } else if *name == header::TE {
            TE
        } else if *name == KEEP_ALIVE {
            KEEP
        } else if *name == PROXY_CONNECTION {
            PROXY_CONN
        } else {
            0
        };
    }
    if present == 0 {
        return;
    }
    if present & CONN != 0 {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| {
                // Connection may not take away what routing and framing rest on.
                let ignored = t.is_empty()
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"host")
                    || t.eq_ignore_ascii_case(b"content-length")
                    || (keep_upgrade && t.eq_ignore_ascii_case(b"upgrade"));
                !ignored
            })
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
        if !keep_upgrade {
            h.remove(header::CONNECTION);
        }
    }
    if present & UPGRADE != 0 && !keep_upgrade {
        h.remove(header::UPGRADE);
    }
    if present & KEEP != 0 {
        h.remove(&KEEP_ALIVE);
    }
    if present & PROXY_CONN != 0 {
        h.remove(&PROXY_CONNECTION);
    }
    if present & TRANSFER != 0 {
        h.remove(header::TRANSFER_ENCODING);
    }
    if present & TE != 0 {
        // Only `trailers` goes on (gRPC needs it), once, if any TE line has it.
        let trailers = h
            .get_all(header::TE)
            .iter()
            .any(|v| has_token(v, "trailers"));
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            h.remove(header::TE);
        }
    }
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_headers(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn connection_cannot_name_host_or_length() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Host, content-length, x-a"),
        );
        h.insert("host", HeaderValue::from_static("a.example"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_headers(&mut h, false);
        assert_eq!(h.get("host").unwrap(), "a.example");
        assert_eq!(h.get("content-length").unwrap(), "3");
        assert!(h.get("x-a").is_none());
    }

    #[test]
    fn upgrade_keeps_its_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_headers(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
    }
}
