//! A head's fields as the engine keeps them: `name: value` lines copied once into a
//! pooled buffer, with no header map (issue 11: building one, hashing its names and
//! counting references to its values was a fifth of the engine's user time).
//!
//! A request's fields ([`RawRequest`]) are read there by the pipeline and written
//! upstream from there with the hop-by-hop fields cut on the way ([`end_to_end`]); an
//! answer's end-to-end fields ([`RawFields`]) go to the client as they came. What
//! needs a map (hyper's h2 side, the fallback ladder's cache) makes one from the lines.
//!
//! Each field's name is classified once per head ([`Name`], eight bytes at a time), and
//! lines the client or upstream already wrote as `name: value` CRLF are copied as runs
//! of the read buffer (`Runs`), not line by line.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// `name: value` lines, each ended by CRLF, read as (name, value) pairs.
#[derive(Clone)]
pub struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let end = memchr::memchr(b'\n', self.0)?;
        let line = &self.0[..end.saturating_sub(1)];
        self.0 = &self.0[end + 1..];
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        Some((&line[..colon], line.get(colon + 2..).unwrap_or_default()))
    }
}

/// Appends a `name: value` line.
pub fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies field lines out of a head's read buffer, a run of lines at a time: a line
/// that is in the buffer as it is written (`name: value` CRLF: one space, no trailing
/// whitespace, a CRLF ending) joins the run before it when they touch, and any other is
/// written with [`line`]. A client's head, nearly always written that way, is one copy.
pub(super) struct Runs<'b> {
    buf: &'b [u8],
    /// The run not yet copied: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<'b> Runs<'b> {
    pub(super) fn new(buf: &'b [u8]) -> Self {
        Runs {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// Where `part` (a slice of the buffer, as httparse gives them) starts in it.
    #[inline]
    fn offset(&self, part: &[u8]) -> Option<usize> {
        // One comparison: a part before the buffer wraps to a huge offset.
        let at = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        (at <= self.buf.len() && part.len() <= self.buf.len() - at).then_some(at)
    }

    /// Bytes of the run not yet copied.
    pub(super) fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Adds the line `name: value`.
    pub(super) fn push(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        if let (Some(n), Some(v)) = (self.offset(name), self.offset(value)) {
            let end = v + value.len();
            if v == n + name.len() + 2
                && self.buf.get(v - 2..v) == Some(b": ")
                && self.buf.get(end..end + 2) == Some(b"\r\n")
            {
                if n != self.end {
                    self.flush(out);
                    self.start = n;
                }
                self.end = end + 2;
                return;
            }
        }
        self.flush(out);
        line(out, name, value);
    }

    /// Copies the run.
    pub(super) fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.start..self.end]);
        self.start = self.end;
    }
}

/// An answer's end-to-end fields, ready for an HTTP/1.x client: `name: value` lines
/// in the upstream's order and spelling, each ended by CRLF, with the hop-by-hop
/// fields cut (RFC 9110 §7.6.1: `Connection`, what it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Upgrade` but on a `101`, `TE` but
/// `trailers`) and `Content-Length` kept aside, since the writer frames the body.
///
/// The lines are copied once, from the upstream's read buffer into a pooled one, and
/// written out from there. What needs a map (an h2 client, the stale cache,
/// `Retry-After`) makes one with [`RawFields::into_map`].
pub struct RawFields {
    pub(super) lines: Vec<u8>,
    /// The upstream's `Content-Length`, if it sent one that stands.
    pub length: Option<u64>,
    /// Whether a `Date` line is among the lines.
    pub date: bool,
}

impl RawFields {
    /// The field lines.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Each line's name and value.
    pub fn iter(&self) -> Lines<'_> {
        Lines(&self.lines)
    }

    /// The first value of field `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The fields as a header map, `Content-Length` included, each appended after what
    /// `into` holds already unless `into` has that name (the pipeline's own fields win).
    pub fn into_map(self, into: &mut HeaderMap) {
        let had: Vec<HeaderName> = into.keys().cloned().collect();
        for (n, v) in self.iter() {
            let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) else {
                continue;
            };
            if !had.contains(&n) {
                into.append(n, v);
            }
        }
        if let Some(n) = self.length {
            if !had.contains(&http::header::CONTENT_LENGTH) {
                into.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
    }
}

impl Drop for RawFields {
    fn drop(&mut self) {
        super::buf::give(std::mem::take(&mut self.lines));
    }
}

impl std::fmt::Debug for RawFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFields")
            .field("lines", &String::from_utf8_lossy(&self.lines))
            .field("length", &self.length)
            .finish()
    }
}

/// A request's fields as the client sent them: `name: value` lines (each ended by
/// CRLF, in the client's order and spelling) in a pooled buffer. The pipeline reads
/// them through `message::Head`; `write_request` writes the upstream's head from
/// them, cutting the hop-by-hop fields and adding the forwarding ones on the way (what
/// `proxy::forward` does to a map for h2).
pub struct RawRequest {
    pub(super) lines: Vec<u8>,
    /// The known names ([`Name`]) among the lines, one bit each: a name not there is
    /// not looked for, and a head with none of [`REWRITTEN`] goes upstream as it came.
    pub(super) seen: u16,
    /// Where the first `Host` value is in `lines`, and how many `Host` lines there are.
    pub(super) host_at: (u32, u32),
    pub(super) hosts: u32,
    /// The `Content-Length` (at most one, `1*DIGIT`, checked by the parse).
    pub length: Option<u64>,
    /// A `Host` the pipeline set (the target's authority wins over the client's).
    pub(super) host: Option<HeaderValue>,
    /// The body goes upstream chunked (set by `proxy::forward::prepare`).
    pub chunked: bool,
}

impl RawRequest {
    /// Each line's name and value, as received (a `Host` set since is not among them).
    pub fn iter(&self) -> Lines<'_> {
        Lines(&self.lines)
    }

    /// Whether a line of `name` may be there: false only for a known [`Name`] the
    /// parse did not see.
    fn may_have(&self, name: &[u8]) -> bool {
        match Name::of(name) {
            Name::Other => true,
            n => self.seen & n.bit() != 0,
        }
    }

    /// The values of field `name` (lower case), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> Values<'a, 'n> {
        let host = name == "host";
        let set = host && self.host.is_some();
        Values {
            lines: if set || !self.may_have(name.as_bytes()) {
                Lines(&[])
            } else {
                self.iter()
            },
            name: name.as_bytes(),
            only: self
                .host
                .as_ref()
                .filter(|_| host)
                .map(HeaderValue::as_bytes),
            set,
        }
    }

    /// The first value of field `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        if name == "host" {
            return self.host();
        }
        if !self.may_have(name.as_bytes()) {
            return None;
        }
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The `Host` the upstream gets: the pipeline's, else the client's first.
    pub fn host(&self) -> Option<&[u8]> {
        match &self.host {
            Some(h) => Some(h.as_bytes()),
            None if self.hosts > 0 => {
                let (at, len) = self.host_at;
                self.lines.get(at as usize..(at + len) as usize)
            }
            None => None,
        }
    }

    /// How many `Host` lines the client sent, and the first one's value.
    pub fn client_hosts(&self) -> (u32, Option<&[u8]>) {
        let (at, len) = self.host_at;
        let first = (self.hosts > 0)
            .then(|| self.lines.get(at as usize..(at + len) as usize))
            .flatten();
        (self.hosts, first)
    }

    /// Replaces the client's `Host` (see `proxy::conform`).
    pub fn set_host(&mut self, v: HeaderValue) {
        self.host = Some(v);
    }

    /// The fields as a header map (for hyper's h2 side and the fallback ladder).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.iter().count() + 3);
        for (n, v) in self.iter() {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        }
        if let Some(h) = &self.host {
            map.insert(http::header::HOST, h.clone());
        }
        map
    }
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        super::buf::give(std::mem::take(&mut self.lines));
    }
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest")
            .field("lines", &String::from_utf8_lossy(&self.lines))
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The values of one field of a [`RawRequest`]; see [`RawRequest::values`].
pub struct Values<'a, 'n> {
    lines: Lines<'a>,
    name: &'n [u8],
    /// A `Host` set by the pipeline: the only value.
    only: Option<&'a [u8]>,
    set: bool,
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.set {
            return self.only.take();
        }
        let name = self.name;
        self.lines
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// The field names the engine acts on, told apart by length first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection`.
    ProxyConnection,
    /// `Upgrade`.
    Upgrade,
    /// `TE`.
    Te,
    /// `Date`.
    Date,
    /// `Host`.
    Host,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
    /// `X-Forwarded-Host`.
    ForwardedHost,
    /// `X-Ninefold-Fault`: a client's request for an injected fault, the gateway's own
    /// business; never forwarded.
    NinefoldFault,
    /// Any other.
    Other,
}

impl Name {
    /// The name `n` is, in any case.
    pub fn of(n: &[u8]) -> Name {
        match n.len() {
            2 if lower_eq(n, b"te") => Name::Te,
            4 if lower_eq(n, b"host") => Name::Host,
            4 if lower_eq(n, b"date") => Name::Date,
            6 if lower_eq(n, b"expect") => Name::Expect,
            7 if lower_eq(n, b"upgrade") => Name::Upgrade,
            10 if lower_eq(n, b"connection") => Name::Connection,
            10 if lower_eq(n, b"keep-alive") => Name::KeepAlive,
            14 if lower_eq(n, b"content-length") => Name::ContentLength,
            15 if lower_eq(n, b"x-forwarded-for") => Name::ForwardedFor,
            16 if lower_eq(n, b"proxy-connection") => Name::ProxyConnection,
            16 if lower_eq(n, b"x-forwarded-host") => Name::ForwardedHost,
            16 if lower_eq(n, b"x-ninefold-fault") => Name::NinefoldFault,
            17 if lower_eq(n, b"transfer-encoding") => Name::TransferEncoding,
            17 if lower_eq(n, b"x-forwarded-proto") => Name::ForwardedProto,
            _ => Name::Other,
        }
    }

    /// This name's bit in a set of names (see [`RawRequest`]'s).
    pub(super) const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The names whose lines a rewrite for the next hop cuts or changes: a head without
/// any of them goes on as it came.
pub(super) const REWRITTEN: u16 = Name::ContentLength.bit()
    | Name::TransferEncoding.bit()
    | Name::Connection.bit()
    | Name::KeepAlive.bit()
    | Name::ProxyConnection.bit()
    | Name::Upgrade.bit()
    | Name::Te.bit()
    | Name::ForwardedFor.bit()
    | Name::ForwardedProto.bit()
    | Name::ForwardedHost.bit()
    | Name::NinefoldFault.bit();

/// Whether `n` is `lower` in any case; `lower` is of the same length, lower-case letters
/// and `-` (a known field name). Eight bytes at a time: a letter of `n` OR 0x20 is its
/// lower case, and other bytes are compared as they are.
#[inline(always)]
fn lower_eq(n: &[u8], lower: &[u8]) -> bool {
    let len = lower.len();
    if n.len() != len {
        return false;
    }
    let word = |b: &[u8], at: usize| {
        let mut w = [0u8; 8];
        let end = (at + 8).min(b.len());
        w[..end - at].copy_from_slice(&b[at..end]);
        u64::from_le_bytes(w)
    };
    let mask = |at: usize| {
        let mut w = [0u8; 8];
        for (m, &c) in w.iter_mut().zip(&lower[at..]) {
            *m = if c.is_ascii_lowercase() { 0x20 } else { 0 };
        }
        u64::from_le_bytes(w)
    };
    let mut at = 0;
    loop {
        // The last word of a name of 8 or more bytes overlaps the one before.
        let from = if len >= 8 && at + 8 > len {
            len - 8
        } else {
            at
        };
        if word(n, from) | mask(from) != word(lower, from) {
            return false;
        }
        at += 8;
        if at >= len {
            return true;
        }
    }
}

/// Calls `emit` with each end-to-end field of `fields` (each with its [`Name`]), in
/// order: the hop-by-hop ones are cut (see [`RawFields`]; the same rules as
/// `proxy::forward::rewrite::strip_hop_headers` for a map), and the first `TE` that lists
/// `trailers` is emitted as `trailers`. `seen`: the names among the fields, one bit
/// each. `upgrade`: the message is a `101` or an Upgrade request, whose `Connection`
/// and `Upgrade` go on.
pub fn end_to_end<'a, I>(
    fields: I,
    seen: u16,
    upgrade: bool,
    mut emit: impl FnMut(Name, &'a [u8], &'a [u8]),
) where
    I: Iterator<Item = (Name, &'a [u8], &'a [u8])> + Clone,
{
    // The names the Connection fields list, but for what routing and framing rest on
    // and those cut anyway (a few on the stack; a message listing more is scanned
    // whole for each name).
    let mut listed: [&[u8]; 8] = [&[]; 8];
    let mut n_listed = 0;
    if seen & Name::Connection.bit() != 0 {
        for (_, _, v) in fields.clone().filter(|(k, _, _)| *k == Name::Connection) {
            for t in tokens(v) {
                // `keep-alive` names a field cut anyway.
                let kept = match Name::of(t) {
                    Name::Host | Name::ContentLength | Name::KeepAlive => true,
                    Name::Upgrade => upgrade,
                    _ => t.is_empty() || t.eq_ignore_ascii_case(b"close"),
                };
                if !kept {
                    if let Some(slot) = listed.get_mut(n_listed) {
                        *slot = t;
                    }
                    n_listed += 1;
                }
            }
        }
    }
    // Whether a Connection field names field `name` of kind `kind`.
    let named = |kind: Name, name: &[u8]| {
        if n_listed <= listed.len() {
            listed[..n_listed]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name))
        } else {
            let kept = match kind {
                Name::Host | Name::ContentLength => true,
                Name::Upgrade => upgrade,
                _ => name.eq_ignore_ascii_case(b"close"),
            };
            !kept
                && fields
                    .clone()
                    .filter(|(k, _, _)| *k == Name::Connection)
                    .any(|(_, _, v)| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
        }
    };
    let mut te = false;
    for (name, n, v) in fields.clone() {
        let v = match name {
            Name::TransferEncoding | Name::KeepAlive | Name::ProxyConnection => continue,
            Name::Connection | Name::Upgrade if !upgrade => continue,
            Name::Te => {
                // Only `trailers` goes on (gRPC needs it), once.
                if te || !tokens(v).any(|t| t.eq_ignore_ascii_case(b"trailers")) {
                    continue;
                }
                te = true;
                &b"trailers"[..]
            }
            _ => v,
        };
        if n_listed > 0 && named(name, n) {
            continue;
        }
        emit(name, n, v);
    }
}

/// The comma-separated elements of a field value, trimmed.
pub(super) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::parse::*;

    fn req(s: &str) -> Result<Option<RequestHead>, Refusal> {
        parse_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn known_names_in_any_case_and_nothing_else() {
        let known = [
            ("te", Name::Te),
            ("host", Name::Host),
            ("date", Name::Date),
            ("expect", Name::Expect),
            ("upgrade", Name::Upgrade),
            ("connection", Name::Connection),
            ("keep-alive", Name::KeepAlive),
            ("content-length", Name::ContentLength),
            ("x-forwarded-for", Name::ForwardedFor),
            ("proxy-connection", Name::ProxyConnection),
            ("x-forwarded-host", Name::ForwardedHost),
            ("transfer-encoding", Name::TransferEncoding),
            ("x-forwarded-proto", Name::ForwardedProto),
        ];
        for (n, name) in known {
            assert_eq!(Name::of(n.as_bytes()), name, "{n}");
            assert_eq!(Name::of(n.to_ascii_uppercase().as_bytes()), name, "{n}");
            for i in 0..n.len() {
                // One letter in the other case: the same name.
                let mut b = n.as_bytes().to_vec();
                b[i] = b[i].to_ascii_uppercase();
                assert_eq!(Name::of(&b), name, "{n} {i}");
                // One byte changed to any other token byte (or CR): another name.
                for c in (0u8..128).filter(|c| c.is_ascii_graphic() || *c == b'\r') {
                    if c.eq_ignore_ascii_case(&n.as_bytes()[i]) {
                        continue;
                    }
                    b[i] = c;
                    assert_eq!(
                        Name::of(&b),
                        Name::Other,
                        "{:?}",
                        String::from_utf8_lossy(&b)
                    );
                }
            }
            // Longer or shorter: another name.
            assert_eq!(Name::of(format!("{n}s").as_bytes()), Name::Other);
            assert_eq!(Name::of(&n.as_bytes()[1..]), Name::Other);
        }
        assert_eq!(Name::of(b""), Name::Other);
    }

    #[test]
    fn lines_are_copied_as_written_whatever_the_spacing() {
        // Lines written otherwise than `name: value` CRLF are written that way; the
        // rest are copied in runs, and the first Host is found where it lands.
        let r = req(
            "GET / HTTP/1.1\r\nX-A:1\r\nX-B:  2 \t\r\nHost:   h.example  \r\n\
                     X-C: 3\r\nX-D: 4\nhost: second\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.fields.lines),
            "X-A: 1\r\nX-B: 2\r\nHost: h.example\r\nX-C: 3\r\nX-D: 4\r\nhost: second\r\n"
        );
        assert_eq!(r.fields.host(), Some(&b"h.example"[..]));
        assert_eq!(r.fields.client_hosts(), (2, Some(&b"h.example"[..])));
        let r = req("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.fields.lines),
            "Host: a\r\nAccept: */*\r\n"
        );
        // A known name that is not there is not looked for; an unknown one is.
        assert_eq!(r.fields.get("connection"), None);
        assert_eq!(r.fields.values("upgrade").count(), 0);
        assert_eq!(r.fields.get("accept"), Some(&b"*/*"[..]));
        let r = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (r.fields.host(), r.fields.client_hosts()),
            (None, (0, None))
        );
    }

    #[test]
    fn a_connection_field_naming_many_fields_cuts_them_all() {
        // More names than the list on the stack holds: each field is looked up in the
        // Connection fields themselves.
        let names: Vec<String> = (0..12).map(|i| format!("x-h{i}")).collect();
        let lines: String = names.iter().map(|n| format!("{n}: 1\r\n")).collect();
        let s = format!(
            "HTTP/1.1 200 OK\r\nConnection: {}, close, content-length\r\n{lines}\
             X-Kept: 1\r\nContent-Length: 0\r\nClose: 1\r\n\r\n",
            names.join(", ")
        );
        let r = parse_response(s.as_bytes(), false, 16384).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(r.fields.lines()),
            "X-Kept: 1\r\nClose: 1\r\n"
        );
        assert_eq!(r.fields.length, Some(0));
    }
}
