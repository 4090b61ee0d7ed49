//! A strict HTTP/1.1 framing checker: splits a byte stream into messages and decodes
//! their bodies, refusing anything whose length two honest parsers could read two ways.
//!
//! The conformance suite uses it as the judge of what ninefold put on the wire (towards
//! the backend and towards the client), and the fuzz target `#[path]`-includes this file,
//! so it depends on nothing but `std` and `httparse`: no `crate::` or `super::` paths.
//!
//! Strictness follows RFC 9112 §6: `Content-Length` must be one run of digits and appear
//! once, `Transfer-Encoding` must be exactly `chunked` (one line, one coding), the two may
//! not be combined, chunk sizes are hex without overflow, chunk lines end in CRLF, and a
//! message cut short is an error rather than a guess. Responses follow §6.3: HEAD, 1xx,
//! 204 and 304 have no body, 101 hands the connection over, and without a length the body
//! runs to the end of the stream (only acceptable when the caller saw the stream end).

#![allow(dead_code)]

/// How a message's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by rule (a request without length, HEAD, 1xx, 204, 304) or a 101 handover.
    None,
    /// `Content-Length: N`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response delimited by the connection closing.
    Close,
}

/// One parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The request line or status line, without CRLF.
    pub start_line: String,
    /// The status code, for responses.
    pub status: Option<u16>,
    /// Header fields in wire order; names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    /// The decoded body (chunk framing removed).
    pub body: Vec<u8>,
    /// Bytes the message took on the wire, head included.
    pub wire_len: usize,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// Largest head the checker accepts; anything bigger is not a framing question.
const MAX_HEADERS: usize = 512;

// === impl Message ===

impl Message {
    /// Values of every field named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, as lossy text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The request method (first word of the start line).
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or("")
    }

    /// The request target (second word of the start line).
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or("")
    }
}

/// Every request in `bytes`, in order. Errors on ambiguous framing or an incomplete
/// last request.
pub fn parse_requests(bytes: &[u8]) -> Result<Vec<Message>, String> {
    let (out, end) = parse_requests_partial(bytes);
    end.map(|()| out)
}

/// Like `parse_requests`, but also returns the requests complete before an error.
pub fn parse_requests_partial(bytes: &[u8]) -> (Vec<Message>, Result<(), String>) {
    let mut out = Vec::new();
    let end = requests_into(bytes, &mut out);
    (out, end)
}

fn requests_into(bytes: &[u8], out: &mut Vec<Message>) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(format!("request {}: incomplete head", out.len()))
            }
            Err(e) => return Err(format!("request {}: bad head: {e}", out.len())),
        };
        let start_line = first_line(rest);
        let fields = owned(req.headers);
        check_no_obs_fold(rest, head_len).map_err(|e| format!("request {}: {e}", out.len()))?;
        let framing = body_framing(&fields).map_err(|e| format!("request {}: {e}", out.len()))?;
        let framing = framing.unwrap_or(Framing::None);
        let (body, trailers, body_len) = read_body(&rest[head_len..], framing)
            .map_err(|e| format!("request {}: {e}", out.len()))?;
        out.push(Message {
            start_line,
            status: None,
            headers: fields,
            framing,
            body,
            wire_len: head_len + body_len,
            trailers,
        });
        at += head_len + body_len;
    }
    Ok(())
}

/// Every response in `bytes`, matched in order to `request_methods` (interim 1xx
/// answers do not consume a request). With `eof` the stream is known to have ended,
/// which makes a close-delimited body acceptable. A 101 ends the HTTP part of the
/// stream: what follows it is not parsed.
pub fn parse_responses(
    bytes: &[u8],
    request_methods: &[&str],
    eof: bool,
) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut finals = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(format!("response {}: incomplete head", out.len()))
            }
            Err(e) => return Err(format!("response {}: bad head: {e}", out.len())),
        };
        let code = resp.code.unwrap_or(0);
        let start_line = first_line(rest);
        let fields = owned(resp.headers);
        let n = out.len();
        check_no_obs_fold(rest, head_len).map_err(|e| format!("response {n}: {e}"))?;
        let method = request_methods.get(finals).copied().unwrap_or("GET");
        let framing = if code == 101 {
            Framing::None
        } else if (100..200).contains(&code) || code == 204 || code == 304 || method == "HEAD" {
            // The fields may still be there (a HEAD's CL), but no body follows. They must
            // still not be ambiguous: a cache would read them.
            body_framing(&fields).map_err(|e| format!("response {n}: {e}"))?;
            Framing::None
        } else {
            body_framing(&fields)
                .map_err(|e| format!("response {n}: {e}"))?
                .unwrap_or(Framing::Close)
        };
        if framing == Framing::Close && !eof {
            return Err(format!(
                "response {n}: incomplete body: no length and the stream has not ended"
            ));
        }
        let (body, trailers, body_len) =
            read_body(&rest[head_len..], framing).map_err(|e| format!("response {n}: {e}"))?;
        out.push(Message {
            start_line,
            status: Some(code),
            headers: fields,
            framing,
            body,
            wire_len: head_len + body_len,
            trailers,
        });
        at += head_len + body_len;
        if code == 101 {
            break;
        }
        if code >= 200 {
            finals += 1;
        }
    }
    Ok(out)
}

fn first_line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

/// httparse accepts obs-fold in some versions; RFC 9112 §5.2 lets a proxy forward
/// nothing folded, so the checker refuses it outright.
fn check_no_obs_fold(bytes: &[u8], head_len: usize) -> Result<(), String> {
    let head = &bytes[..head_len];
    for (i, w) in head.windows(2).enumerate() {
        if w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t') && i + 2 < head_len {
            return Err("obs-fold in the head".into());
        }
    }
    Ok(())
}

/// The framing the fields declare: `Ok(None)` when they declare none.
fn body_framing(fields: &[(String, Vec<u8>)]) -> Result<Option<Framing>, String> {
    let cls: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_slice())
        .collect();
    let tes: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_slice())
        .collect();
    if !cls.is_empty() && !tes.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if tes.len() > 1 {
        return Err(format!("{} Transfer-Encoding fields", tes.len()));
    }
    if let Some(te) = tes.first() {
        if !te.eq_ignore_ascii_case(b"chunked") {
            return Err(format!(
                "Transfer-Encoding is not exactly chunked: {:?}",
                String::from_utf8_lossy(te)
            ));
        }
        return Ok(Some(Framing::Chunked));
    }
    if cls.len() > 1 {
        return Err(format!("{} Content-Length fields", cls.len()));
    }
    if let Some(cl) = cls.first() {
        if cl.is_empty() || !cl.iter().all(u8::is_ascii_digit) || cl.len() > 18 {
            return Err(format!(
                "Content-Length is not a number: {:?}",
                String::from_utf8_lossy(cl)
            ));
        }
        let n: u64 = std::str::from_utf8(cl)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("Content-Length does not fit")?;
        return Ok(Some(Framing::Length(n)));
    }
    Ok(None)
}

/// Decodes a body: returns (decoded, trailers, bytes consumed).
#[allow(clippy::type_complexity)]
fn read_body(
    bytes: &[u8],
    framing: Framing,
) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>, usize), String> {
    match framing {
        Framing::None => Ok((Vec::new(), Vec::new(), 0)),
        Framing::Close => Ok((bytes.to_vec(), Vec::new(), bytes.len())),
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| "Content-Length too big")?;
            if bytes.len() < n {
                return Err(format!("incomplete body: {} of {n} bytes", bytes.len()));
            }
            Ok((bytes[..n].to_vec(), Vec::new(), n))
        }
        Framing::Chunked => read_chunked(bytes),
    }
}

/// RFC 9112 §7.1, strictly: `1*HEXDIG [ext] CRLF data CRLF`, last chunk `0`, trailers,
/// CRLF. Extensions are allowed (`;` then any visible text) but not bare CR/LF or CTLs.
#[allow(clippy::type_complexity)]
fn read_chunked(bytes: &[u8]) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>, usize), String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = find_crlf(&bytes[at..])?.ok_or("incomplete chunk size line")?;
        let line = &bytes[at..at + line_end];
        let size_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
        let (size, ext) = line.split_at(size_end);
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "bad chunk size {:?}",
                String::from_utf8_lossy(size)
            ));
        }
        if size.len() > 15 {
            return Err("chunk size overflows".into());
        }
        if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("control character in a chunk extension".into());
        }
        let n = u64::from_str_radix(std::str::from_utf8(size).unwrap_or("x"), 16)
            .map_err(|e| format!("chunk size: {e}"))? as usize;
        at += line_end + 2;
        if n == 0 {
            break;
        }
        if bytes.len() < at + n + 2 {
            return Err("incomplete chunk data".into());
        }
        body.extend_from_slice(&bytes[at..at + n]);
        at += n;
        if &bytes[at..at + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += 2;
    }
    let mut trailers = Vec::new();
    loop {
        let line_end = find_crlf(&bytes[at..])?.ok_or("incomplete trailer section")?;
        let line = &bytes[at..at + line_end];
        at += line_end + 2;
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("trailer line without a colon")?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("bad trailer field name".into());
        }
        let value = trim_ows(&line[colon + 1..]);
        // field-value (RFC 9110 §5.5): no control bytes but HTAB; obs-text is allowed.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("bad trailer field value".into());
        }
        trailers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Ok((body, trailers, at))
}

/// Position of the first CRLF, `None` when the bytes end first; a bare CR or LF before
/// it is an error.
fn find_crlf(bytes: &[u8]) -> Result<Option<usize>, String> {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' => {
                return match bytes.get(i + 1) {
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err("bare CR in a chunk line".into()),
                    None => Ok(None),
                }
            }
            b'\n' => return Err("bare LF in a chunk line".into()),
            _ => {}
        }
    }
    Ok(None)
}

/// Whether a parse error only says the bytes stopped early (an aborted message), as
/// opposed to bytes that frame ambiguously.
pub fn is_truncation(err: &str) -> bool {
    err.split(": ")
        .nth(1)
        .is_some_and(|e| e.starts_with("incomplete"))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_with_both_framings() {
        let wire = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nhi\r\n0\r\nX-T: 1\r\n\r\n";
        let reqs = parse_requests(wire).unwrap();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].framing, Framing::Length(3));
        assert_eq!(reqs[0].body, b"abc");
        assert_eq!(reqs[1].framing, Framing::None);
        assert_eq!(reqs[2].framing, Framing::Chunked);
        assert_eq!(reqs[2].body, b"hi");
        assert_eq!(reqs[2].trailers.len(), 1);
        assert_eq!(reqs.iter().map(|m| m.wire_len).sum::<usize>(), wire.len());
    }

    #[test]
    fn ambiguous_requests_are_errors() {
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\x00 2\r\n\r\n",
        ] {
            assert!(
                parse_requests(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn responses_follow_the_no_body_rules() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 200 OK\r\n\r\nuntil close";
        let resps = parse_responses(wire, &["POST", "HEAD", "GET", "GET"], true).unwrap();
        let codes: Vec<u16> = resps.iter().map(|m| m.status.unwrap()).collect();
        assert_eq!(codes, [100, 200, 200, 304, 200]);
        assert_eq!(resps[1].body, b"ok");
        assert_eq!(resps[2].framing, Framing::None);
        assert_eq!(resps[4].framing, Framing::Close);
        assert_eq!(resps[4].body, b"until close");
        // Without the end of stream, a close-delimited body is not yet a message.
        assert!(parse_responses(b"HTTP/1.1 200 OK\r\n\r\nx", &["GET"], false).is_err());
        // An upgrade hands the rest over.
        let up = parse_responses(
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00",
            &["GET"],
            false,
        )
        .unwrap();
        assert_eq!(up.len(), 1);
    }
}
