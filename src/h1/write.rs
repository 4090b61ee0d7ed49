//! Writing heads: a request head for an upstream (from the client's raw lines,
//! rewritten for the next hop on the way, or from a map), a status line, field lines.

pub use super::fields::line;
use super::fields::{end_to_end, Name, RawRequest, Runs, REWRITTEN};
use http::header::HeaderMap;
use http::{Method, StatusCode};

/// What the upstream's head says about the client (`x-forwarded-*`).
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The client's address, as text.
    pub client_ip: &'a [u8],
    /// Whether the client came over TLS.
    pub tls: bool,
}

/// Writes a request head for an upstream: request line with the origin-form target,
/// then the fields: from `raw` when the own engine read the request, rewritten here
/// (hop-by-hop fields cut, `Host` as the pipeline set it, `Content-Length` as the
/// number read, `x-forwarded-*` from `fwd`, `Transfer-Encoding: chunked` when the body
/// goes chunked); else `parts`' map, which `proxy::forward` rewrote already.
pub fn write_request(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    raw: Option<&RawRequest>,
    fwd: Forwarding<'_>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) if parts.method != Method::CONNECT => {
            // An empty path goes as `/`, before a query too (RFC 9112 §3.2.1).
            if !pq.as_str().starts_with('/') && pq.as_str() != "*" {
                out.push(b'/');
            }
            out.extend_from_slice(pq.as_str().as_bytes());
        }
        _ => match parts.uri.authority() {
            Some(a) if parts.method == Method::CONNECT => {
                out.extend_from_slice(a.as_str().as_bytes())
            }
            _ => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match raw {
        Some(r) => write_raw_fields(out, r, fwd),
        None => write_fields(out, &parts.headers),
    }
    out.extend_from_slice(b"\r\n");
}

/// The fields of a request the own engine read, rewritten for the upstream (see
/// [`write_request`]).
fn write_raw_fields(out: &mut Vec<u8>, r: &RawRequest, fwd: Forwarding<'_>) {
    let host = r.host();
    let mut forwarded = false;
    if r.seen & REWRITTEN == 0 && r.host.is_none() {
        // Nothing to cut or change: the lines go as they came.
        out.extend_from_slice(&r.lines);
    } else {
        // The lines are as they are written: kept ones go in runs.
        let mut runs = Runs::new(&r.lines);
        let fields = r.iter().map(|(n, v)| (Name::of(n), n, v));
        end_to_end(fields, r.seen, false, |name, n, v| match name {
            Name::ContentLength | Name::ForwardedProto | Name::NinefoldFault => {}
            Name::ForwardedFor => forwarded = true,
            Name::Host if r.host.is_some() => {}
            Name::ForwardedHost if host.is_some() => {}
            _ => runs.push(out, n, v),
        });
        runs.flush(out);
    }
    if let Some(h) = &r.host {
        line(out, b"host", h.as_bytes());
    }
    if let Some(n) = r.length {
        let mut b = [0; 20];
        line(out, b"content-length", fmt_u64(&mut b, n));
    }
    // The client joins the chain; several lines become one.
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded {
        for v in r.values("x-forwarded-for") {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(fwd.client_ip);
    out.extend_from_slice(b"\r\n");
    line(
        out,
        b"x-forwarded-proto",
        if fwd.tls { b"https" } else { b"http" },
    );
    if let Some(h) = host {
        line(out, b"x-forwarded-host", h);
    }
    if r.chunked {
        line(out, b"transfer-encoding", b"chunked");
    }
}

/// `n` in decimal, in `b`.
pub fn fmt_u64(b: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &b[i..]
}

/// Writes `name: value` lines.
pub fn write_fields(out: &mut Vec<u8>, h: &HeaderMap) {
    for (name, value) in h {
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Writes a status line (always `HTTP/1.1`, RFC 9110 §6.2: a server sends its own
/// version) with the status's canonical reason phrase.
pub fn write_status(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::parse::*;
    use http::header::HeaderValue;

    fn req(s: &str) -> Result<Option<RequestHead>, Refusal> {
        parse_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn formats_numbers() {
        let mut b = [0; 20];
        assert_eq!(fmt_u64(&mut b, 0), b"0");
        let mut b = [0; 20];
        assert_eq!(fmt_u64(&mut b, u64::MAX), b"18446744073709551615");
    }

    #[test]
    fn writes_heads() {
        let fwd = Forwarding {
            client_ip: b"10.0.0.9",
            tls: false,
        };
        let r = req("POST /a?b HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /a?b HTTP/1.1\r\nHost: a\r\nX-Y: z\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: a\r\n\r\n"
        );
        let r = req("GET http://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert!(out.starts_with(b"GET /?x=1 HTTP/1.1\r\n"), "{out:?}");
        let mut out = Vec::new();
        write_status(&mut out, StatusCode::NOT_FOUND);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    }

    #[test]
    fn the_upstream_head_is_rewritten_as_it_is_written() {
        let mut r = req(
            "PUT /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\n\
                         X-Hop: 1\r\nX-Forwarded-For: 1.1.1.1\r\nKeep-Alive: 5\r\n\
                         x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: gopher\r\n\
                         X-Forwarded-Host: evil\r\nContent-Length: 007\r\nTE: trailers\r\n\
                         Proxy-Connection: x\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.fields.get("x-forwarded-for"), Some(&b"1.1.1.1"[..]));
        assert_eq!(r.fields.values("x-forwarded-for").count(), 2);
        r.fields.set_host(HeaderValue::from_static("b.example"));
        assert_eq!(r.fields.get("host"), Some(&b"b.example"[..]));
        assert_eq!(r.fields.values("host").collect::<Vec<_>>(), [b"b.example"]);
        let mut out = Vec::new();
        let fwd = Forwarding {
            client_ip: b"10.0.0.9",
            tls: true,
        };
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "PUT /x HTTP/1.1\r\nTE: trailers\r\nAccept: */*\r\nhost: b.example\r\n\
             content-length: 7\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: b.example\r\n\r\n"
        );
        // A body of unknown length goes chunked; the client's coding line does not.
        let mut r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        r.fields.chunked = true;
        let mut out = Vec::new();
        write_request(&mut out, &r.parts, Some(&r.fields), fwd);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: a\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        // The map made for h2 and the ladder holds every field as received.
        let map = r.fields.to_map();
        assert_eq!(map["transfer-encoding"], "chunked");
        assert_eq!(map["host"], "a");
    }
}
