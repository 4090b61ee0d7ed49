//! Message rules the gateway enforces itself, on top of what hyper's parser checks: the
//! places where a lenient proxy and a strict upstream could read one message two ways
//! (request smuggling, response splitting), or where the upstream would see something
//! other than what was routed.
//!
//! Requests ([`check_request`]), before routing:
//! - at most one `Host`, a valid authority; HTTP/1.1 needs one (RFC 9112 §3.2);
//! - the request target's authority wins over `Host` (absolute-form, RFC 9112 §3.2.2),
//!   and on h2 a `host` that names another authority than `:authority` is refused
//!   (RFC 9113 §8.3.1), so routing and the upstream see the same host;
//! - at most one `Content-Length`, never with `Transfer-Encoding` (nginx's answer;
//!   RFC 9112 §6.3 allows either refusing or dropping the length);
//! - `Transfer-Encoding` is exactly `chunked`: another coding gets 501 (nginx), a
//!   repeated or empty one 400;
//! - a request target longer than `limits.max_uri` gets 414, a header field longer than
//!   `limits.max_request_field` 431.
//!
//! Upstream answers are framed by the HTTP/1.1 engine's own rules
//! (`h1::parse::parse_response`): two `Content-Length`s or a `Transfer-Encoding` other
//! than `chunked` are refused (502); `Content-Length` beside `Transfer-Encoding:
//! chunked` is removed, as RFC 9112 §6.3 requires of an intermediary, and such a
//! connection is not reused.
//!
//! Nothing here allocates unless it rewrites `Host`.

use crate::config::Limits;
use crate::message::Failure;
use crate::message::Head;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Version;

/// Checks a request and puts its host where routing and the upstream read it.
pub fn check_request(head: &mut Head, limits: &Limits) -> Result<(), Failure> {
    if head.raw.is_some() {
        // The own engine's parse applied the limits and the framing rules already
        // (`h1::parse::parse_request`); the length goes upstream as the number read.
        return host(head);
    }
    let parts = &mut head.parts;
    if uri_len(&parts.uri) > limits.max_uri {
        return Err(Failure::UriTooLong);
    }
    // One pass over the fields: nginx and HAProxy refuse a field line past their
    // buffer even when the whole head fits.
    if parts
        .headers
        .iter()
        .any(|(n, v)| n.as_str().len() + 2 + v.len() > limits.max_request_field)
    {
        return Err(Failure::FieldTooLarge);
    }
    host(head)?;
    let parts = &mut head.parts;
    if parts.version == Version::HTTP_2 {
        // h2 frames its own bodies; the h2 layer refuses connection-specific fields and
        // a content-length that disagrees with the DATA frames.
        return Ok(());
    }
    let h = &parts.headers;
    let mut lengths = h.get_all(CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(Failure::BadRequest);
    }
    let mut canonical = None;
    if let Some(l) = length {
        let digits = l.as_bytes();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Failure::BadRequest);
        }
        // Leading zeros are valid, but a next hop that reads a bounded number of
        // digits could take `00000000000088947693` for another length: forward the
        // number as read (found by the request_path fuzz target).
        if digits.len() > 1 && digits[0] == b'0' {
            let n = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Failure::BadRequest)?;
            canonical = Some(HeaderValue::from(n));
        }
    }
    if h.contains_key(TRANSFER_ENCODING) {
        if length.is_some() || parts.version != Version::HTTP_11 {
            return Err(Failure::BadRequest);
        }
        transfer_coding(h)?;
    }
    if let Some(v) = canonical {
        parts.headers.insert(CONTENT_LENGTH, v);
    }
    Ok(())
}

/// `Transfer-Encoding` must be exactly one `chunked`, in any case: another coding is
/// 501 (`UnsupportedCoding`), a repeated or empty one 400: the own HTTP/1.1 engine's
/// rule (`h1::parse::transfer_codings`), for a head hyper read.
pub(crate) fn transfer_coding(h: &HeaderMap) -> Result<(), Failure> {
    crate::h1::parse::transfer_codings(
        h.get_all(TRANSFER_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes),
    )
    .map_err(Failure::from)
}

/// Host rules; see the module doc.
fn host(head: &mut Head) -> Result<(), Failure> {
    let (hosts, given) = head.client_hosts();
    if hosts > 1 {
        return Err(Failure::BadRequest);
    }
    let parts = &head.parts;
    if let Some(v) = given {
        let valid = valid_host(v);
        // An empty Host is allowed when the target has no authority (RFC 9112 §3.2).
        let empty_ok = v.is_empty() && parts.uri.authority().is_none();
        if !(valid || empty_ok) {
            return Err(Failure::BadRequest);
        }
    }
    match parts.uri.authority() {
        Some(a) => {
            if a.as_str().contains('@') {
                return Err(Failure::BadRequest);
            }
            if parts.version == Version::HTTP_2 {
                if let Some(v) = given {
                    if !v.eq_ignore_ascii_case(a.as_str().as_bytes()) {
                        return Err(Failure::BadRequest);
                    }
                    return Ok(());
                }
            }
            // The target's authority is the host (absolute-form, or h2 without Host).
            let v = HeaderValue::from_str(a.as_str()).map_err(|_| Failure::BadRequest)?;
            head.set_host(v);
            Ok(())
        }
        None if given.is_none() && parts.version == Version::HTTP_11 => Err(Failure::BadRequest),
        None => Ok(()),
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2): a reg-name of unreserved, pct-encoded and
/// sub-delim characters, an IPv4 address, or an IP literal in brackets; never
/// userinfo (`user@host` is no host). Checked by hand, as every request has a Host and
/// a parse into `http::uri::Authority` would allocate.
fn valid_host(b: &[u8]) -> bool {
    let (host, port) = if b.first() == Some(&b'[') {
        let Some(end) = b.iter().position(|&c| c == b']') else {
            return false;
        };
        let literal = &b[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return false;
        }
        (&b[..=end], &b[end + 1..])
    } else {
        match b.iter().rposition(|&c| c == b':') {
            Some(i) => (&b[..i], &b[i..]),
            None => (b, &b[b.len()..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty() && host.iter().all(|&c| REG_NAME[c as usize]));
    host_ok && port_ok
}

/// The bytes of a reg-name: unreserved, `%` of pct-encoded, and sub-delims.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        c += 1;
    }
    t
};

/// Length of the request target as received.
fn uri_len(uri: &http::Uri) -> usize {
    let pq = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => s.len() + 3 + a.as_str().len() + pq,
        (None, Some(a)) => a.as_str().len() + pq,
        _ => pq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, uri: &str, headers: &[(&str, &str)]) -> Head {
        let mut b = Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        Head::new(b.body(()).unwrap().into_parts().0)
    }

    /// Checks a request held as a map (h2's way), and for HTTP/1.x the same request as
    /// the own engine reads it (raw lines): both must come to the same verdict and host.
    fn check(version: Version, uri: &str, headers: &[(&str, &str)]) -> Result<Head, Failure> {
        let limits = Limits::default();
        let mut p = parts(version, uri, headers);
        let map = check_request(&mut p, &limits).map(|()| p);
        if version != Version::HTTP_2 {
            let v = if version == Version::HTTP_10 {
                "1.0"
            } else {
                "1.1"
            };
            let mut text = format!("GET {uri} HTTP/{v}\r\n");
            for (k, val) in headers {
                text += &format!("{k}: {val}\r\n");
            }
            text += "\r\n";
            let raw = crate::h1::parse::parse_request(text.as_bytes(), &limits)
                .map_err(Failure::from)
                .and_then(|h| {
                    let h = h.expect("a whole head");
                    let mut head = Head::from_raw(h.parts, h.fields);
                    check_request(&mut head, &limits).map(|()| head)
                });
            assert_eq!(raw.as_ref().err(), map.as_ref().err(), "{text:?}");
            if let (Ok(a), Ok(b)) = (&raw, &map) {
                assert_eq!(a.get("host"), b.get("host"), "{text:?}");
            }
        }
        map
    }

    const H11: Version = Version::HTTP_11;

    #[test]
    fn host_rules() {
        assert!(check(H11, "/", &[("host", "a.example")]).is_ok());
        assert_eq!(
            check(H11, "/", &[("host", "a"), ("host", "a")]).unwrap_err(),
            Failure::BadRequest
        );
        assert_eq!(check(H11, "/", &[]).unwrap_err(), Failure::BadRequest);
        assert!(check(Version::HTTP_10, "/", &[]).is_ok());
        assert_eq!(
            check(H11, "/", &[("host", "u@a.example")]).unwrap_err(),
            Failure::BadRequest
        );
        assert_eq!(
            check(H11, "/", &[("host", "a b")]).unwrap_err(),
            Failure::BadRequest
        );
        // Absolute form: the target's authority replaces Host.
        let p = check(H11, "http://other.example/x", &[("host", "a.example")]).unwrap();
        assert_eq!(p.get("host"), Some(&b"other.example"[..]));
        // h2: a host that disagrees with :authority is refused, an equal one passes.
        let h2 = Version::HTTP_2;
        assert_eq!(
            check(h2, "http://b.example/", &[("host", "a.example")]).unwrap_err(),
            Failure::BadRequest
        );
        assert!(check(h2, "http://B.example/", &[("host", "b.EXAMPLE")]).is_ok());
        let p = check(h2, "http://b.example/", &[]).unwrap();
        assert_eq!(p.get("host"), Some(&b"b.example"[..]));
    }

    #[test]
    fn hosts_by_hand() {
        for ok in [
            "a.example",
            "a.example:8080",
            "[::1]:80",
            "[::1]",
            "127.0.0.1",
            "x_y-z.~",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "u@a.example",
            "a b",
            "a/b",
            "a.example:80x",
            "[::1",
            "[]",
            "a:123456",
            "a?b",
            "a#b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn length_and_coding_rules() {
        let host = ("host", "a");
        assert_eq!(
            check(
                H11,
                "/",
                &[host, ("content-length", "5"), ("content-length", "5")]
            )
            .unwrap_err(),
            Failure::BadRequest
        );
        assert_eq!(
            check(
                H11,
                "/",
                &[
                    host,
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked")
                ]
            )
            .unwrap_err(),
            Failure::BadRequest
        );
        assert!(check(H11, "/", &[host, ("transfer-encoding", "Chunked")]).is_ok());
        for te in ["gzip, chunked", "identity, chunked", "gzip"] {
            assert_eq!(
                check(H11, "/", &[host, ("transfer-encoding", te)]).unwrap_err(),
                Failure::UnsupportedCoding,
                "{te}"
            );
        }
        assert_eq!(
            check(
                H11,
                "/",
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            )
            .unwrap_err(),
            Failure::BadRequest
        );
        assert_eq!(
            check(H11, "/", &[host, ("transfer-encoding", "chunked,")]).unwrap_err(),
            Failure::BadRequest
        );
    }

    #[test]
    fn a_length_with_leading_zeros_goes_on_as_the_number_read() {
        let p = check(
            H11,
            "/",
            &[("host", "a"), ("content-length", "00000000000088947693")],
        )
        .unwrap();
        assert_eq!(p.parts.headers[CONTENT_LENGTH], "88947693");
        let p = check(H11, "/", &[("host", "a"), ("content-length", "0")]).unwrap();
        assert_eq!(p.parts.headers[CONTENT_LENGTH], "0");
        assert_eq!(
            check(
                H11,
                "/",
                &[("host", "a"), ("content-length", "099999999999999999999")]
            )
            .unwrap_err(),
            Failure::BadRequest
        );
    }

    #[test]
    fn uri_limit() {
        let long = format!("/{}", "a".repeat(DEFAULT_URI));
        assert_eq!(
            check(H11, &long, &[("host", "a")]).unwrap_err(),
            Failure::UriTooLong
        );
        assert!(check(H11, &long[..DEFAULT_URI], &[("host", "a")]).is_ok());
    }
    const DEFAULT_URI: usize = crate::config::DEFAULT_MAX_URI;
}
