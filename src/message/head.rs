//! A request's head as the pipeline reads it: method, target and version in `http`'s
//! types, and the fields either as the own HTTP/1.1 engine read them (raw lines in a
//! pooled buffer, no header map: `h1::fields::RawRequest`) or as hyper's map (h2 and
//! h2c clients). Every stage reads fields through [`Head::get`] and [`Head::values`]; what
//! needs a map (an h2 upstream, an Upgrade, the fallback ladder's copy) makes one with
//! [`Head::materialize`] or [`Head::to_map`].

use crate::h1::fields::{self, RawRequest};
use http::header::{HeaderMap, HeaderValue, ValueIter};
use http::request::Parts;

/// A request's head; see the module doc.
#[derive(Debug)]
pub struct Head {
    /// Method, target, version and extensions; the fields too when `raw` is `None`.
    pub parts: Parts,
    /// The fields as the own engine read them (then `parts`' map is empty).
    pub raw: Option<RawRequest>,
}

impl Head {
    /// A head whose fields are in `parts`' map.
    pub fn new(parts: Parts) -> Self {
        Head { parts, raw: None }
    }

    /// A head the own engine read: `parts` without fields, and its fields.
    pub fn from_raw(parts: Parts, raw: RawRequest) -> Self {
        Head {
            parts,
            raw: Some(raw),
        }
    }

    /// The first value of field `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match &self.raw {
            Some(r) => r.get(name),
            None => self.parts.headers.get(name).map(HeaderValue::as_bytes),
        }
    }

    /// Every value of field `name` (lower case), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> Values<'a, 'n> {
        match &self.raw {
            Some(r) => Values::Raw(r.values(name)),
            None => Values::Map(self.parts.headers.get_all(name).iter()),
        }
    }

    /// How many `Host` fields the client sent, and the first one's value.
    pub fn client_hosts(&self) -> (usize, Option<&[u8]>) {
        match &self.raw {
            Some(r) => {
                let (n, first) = r.client_hosts();
                (n as usize, first)
            }
            None => {
                let mut all = self.parts.headers.get_all(http::header::HOST).iter();
                let first = all.next().map(HeaderValue::as_bytes);
                (first.map_or(0, |_| 1 + all.count()), first)
            }
        }
    }

    /// Whether field `name` (lower case) is there.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `Host` (the target's authority wins over the client's, see
    /// `proxy::conform`).
    pub fn set_host(&mut self, v: HeaderValue) {
        match &mut self.raw {
            Some(r) => r.set_host(v),
            None => {
                self.parts.headers.insert(http::header::HOST, v);
            }
        }
    }

    /// The fields as a map, whichever way they are held.
    pub fn to_map(&self) -> HeaderMap {
        match &self.raw {
            Some(r) => r.to_map(),
            None => self.parts.headers.clone(),
        }
    }

    /// Moves raw fields into `parts`' map, for the stages that rewrite a map (an h2
    /// upstream, an Upgrade: see `proxy::forward`).
    pub fn materialize(&mut self) {
        if let Some(r) = self.raw.take() {
            self.parts.headers = r.to_map();
        }
    }

    /// The raw fields, for `h1::client::write_head`.
    pub fn raw(&self) -> Option<&RawRequest> {
        self.raw.as_ref()
    }
}

/// The values of one field of a [`Head`].
pub enum Values<'a, 'n> {
    /// Of raw lines.
    Raw(fields::Values<'a, 'n>),
    /// Of a map.
    Map(ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Values::Raw(v) => v.next(),
            Values::Map(v) => v.next().map(HeaderValue::as_bytes),
        }
    }
}
