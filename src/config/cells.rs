//! Validated settings of cells and of the fallback ladder.
//!
//! A cell set (`cells[]`) splits users by a request key over member cells, each served
//! by its own cluster; a route names a cell set instead of a cluster. The fallback
//! ladder (`routes[].fallback`) says what a route answers when its cluster fails:
//! another cluster, the last good answer (stale), or a fixed answer. Both were accepted
//! by `check` long before `serve` ran them; here they are checked for real, with
//! defaults chosen to keep the blast radius (`on_cell_down: fail`) and to never make up
//! a success for a write (the ladder serves GET and HEAD only). The reasons are in
//! `docs/failover.md`.

use super::collect::V;
use super::raw::*;
use super::resolve_path;
use super::units::parse_size;
use bytes::Bytes;
use http::{HeaderName, Method};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Default oldest stale answer served: long enough to ride out a deploy or a short
/// outage, short enough that nobody reads yesterday's data as today's.
pub const DEFAULT_STALE_MAX_AGE: Duration = Duration::from_secs(300);
/// Default entries of a route's stale cache (one per process, all workers together).
pub const DEFAULT_STALE_MAX_ENTRIES: usize = 1000;
/// Default bytes of a route's stale cache (one per process): bounded memory whatever
/// the answers' sizes (16 MiB × routes with `stale`).
pub const DEFAULT_STALE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Largest single answer kept: a few huge answers must not evict every small one, and
/// the copy made while it streams stays small.
pub const STALE_MAX_ENTRY: usize = 1024 * 1024;

/// A request key used for hashing: a cell set's `key`, a cluster's `hash_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
}

/// A validated cell set.
#[derive(Debug, Clone)]
pub struct CellSetConfig {
    /// Unique name.
    pub name: String,
    /// The request key that picks a cell.
    pub key: HashKey,
    /// Members, in config order.
    pub members: Vec<CellMemberConfig>,
    /// What happens to the keys of a cell whose cluster is down.
    pub on_cell_down: OnCellDown,
    /// Index of the member that takes requests without the key.
    pub default: Option<usize>,
}

/// One cell of a set.
#[derive(Debug, Clone)]
pub struct CellMemberConfig {
    /// Cell name (stable: the hash is over it).
    pub name: String,
    /// The cluster serving it.
    pub cluster: String,
}

/// `cells[].on_cell_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCellDown {
    /// The dead cell's users get 503 `cell-down`; the other cells are untouched.
    Fail,
    /// The dead cell's users are re-homed to live cells until it recovers.
    Evacuate,
}

/// A validated `routes[].fallback`.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    /// Another cluster, tried first.
    pub cluster: Option<String>,
    /// The last good answer.
    pub stale: Option<StaleConfig>,
    /// A fixed answer, tried last.
    pub static_answer: Option<StaticConfig>,
    /// Methods the ladder serves.
    pub methods: Vec<Method>,
}

/// `fallback.stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleConfig {
    /// Oldest answer served.
    pub max_age: Duration,
    /// Entries of the route's cache, all workers together.
    pub max_entries: usize,
    /// Bytes of the route's cache, all workers together.
    pub max_bytes: usize,
    /// Keep answers to requests with `Authorization`/`Cookie`, keyed by their values.
    pub private: bool,
}

/// `fallback.static`.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// Status answered.
    pub status: u16,
    /// Content type.
    pub content_type: http::HeaderValue,
    /// Body (`body`, or the bytes of `body_file`).
    pub body: Bytes,
}

// === impl OnCellDown ===

impl OnCellDown {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnCellDown::Fail => "fail",
            OnCellDown::Evacuate => "evacuate",
        }
    }
}

// === impl V ===

impl V<'_> {
    /// A request key (`{header: ...}`, `{cookie: ...}` or `{query: ...}`).
    pub(super) fn key(&mut self, path: &str, k: &RawKey) -> Option<HashKey> {
        let n = [&k.header, &k.cookie, &k.query]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if n != 1 {
            self.err(path, "set exactly one of header, cookie, query".into());
            return None;
        }
        if let Some(h) = &k.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(HashKey::Header(h)),
                Err(_) => {
                    self.err(
                        &format!("{path}.header"),
                        format!("invalid header name {h:?}"),
                    );
                    None
                }
            }
        } else if let Some(c) = &k.cookie {
            Some(HashKey::Cookie(c.clone()))
        } else {
            k.query.clone().map(HashKey::Query)
        }
    }

    pub(super) fn cell_sets(
        &mut self,
        cells: &[RawCell],
        clusters: &HashSet<String>,
    ) -> Vec<CellSetConfig> {
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for (i, c) in cells.iter().enumerate() {
            let p = format!("cells[{i}]");
            if c.name.is_empty() {
                self.err(&format!("{p}.name"), "must not be empty".into());
            } else if !names.insert(c.name.as_str()) {
                self.err(
                    &format!("{p}.name"),
                    format!("duplicate cell set name {:?}", c.name),
                );
            }
            let key = match &c.key {
                Some(k) => self.key(&format!("{p}.key"), k),
                None => {
                    self.err_hint(
                        &format!("{p}.key"),
                        "required".into(),
                        "add key: {header: x-user-id} (or cookie: / query:)",
                    );
                    None
                }
            };
            if c.members.is_empty() {
                self.err(
                    &format!("{p}.members"),
                    "must list at least one cell".into(),
                );
            }
            let mut member_names = HashSet::new();
            for (j, m) in c.members.iter().enumerate() {
                if m.name.is_empty() {
                    self.err(
                        &format!("{p}.members[{j}].name"),
                        "must not be empty".into(),
                    );
                } else if !member_names.insert(m.name.as_str()) {
                    self.err(
                        &format!("{p}.members[{j}].name"),
                        format!("duplicate cell {:?} in cell set {:?}", m.name, c.name),
                    );
                }
                if !clusters.contains(&m.cluster) {
                    self.err(
                        &format!("{p}.members[{j}].cluster"),
                        format!("unknown cluster {:?}", m.cluster),
                    );
                }
            }
            let on_cell_down = match c.on_cell_down.as_deref() {
                None | Some("fail") => OnCellDown::Fail,
                Some("evacuate") => OnCellDown::Evacuate,
                Some(o) => {
                    self.err(
                        &format!("{p}.on_cell_down"),
                        format!("must be fail or evacuate, got {o:?}"),
                    );
                    OnCellDown::Fail
                }
            };
            let default = match &c.default {
                None => None,
                Some(d) => {
                    let found = c.members.iter().position(|m| &m.name == d);
                    if found.is_none() {
                        self.err(
                            &format!("{p}.default"),
                            format!("unknown cell {d:?} (not a member of {:?})", c.name),
                        );
                    }
                    found
                }
            };
            if let Some(key) = key {
                out.push(CellSetConfig {
                    name: c.name.clone(),
                    key,
                    members: c
                        .members
                        .iter()
                        .map(|m| CellMemberConfig {
                            name: m.name.clone(),
                            cluster: m.cluster.clone(),
                        })
                        .collect(),
                    on_cell_down,
                    default,
                });
            }
        }
        out
    }

    pub(super) fn fallback(
        &mut self,
        p: &str,
        f: &RawFallback,
        clusters: &HashSet<String>,
        base: &Path,
    ) -> FallbackConfig {
        if let Some(c) = &f.cluster {
            if !clusters.contains(c) {
                self.err(&format!("{p}.cluster"), format!("unknown cluster {c:?}"));
            }
        }
        let stale = f.stale.as_ref().map(|s| {
            let sp = format!("{p}.stale");
            let max_age = self
                .opt_duration(&format!("{sp}.max_age"), s.max_age.as_ref())
                .unwrap_or(DEFAULT_STALE_MAX_AGE);
            let max_entries = match s.max_entries {
                Some(0) => {
                    self.err(&format!("{sp}.max_entries"), "must be at least 1".into());
                    DEFAULT_STALE_MAX_ENTRIES
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => DEFAULT_STALE_MAX_ENTRIES,
            };
            let max_bytes = match &s.max_bytes {
                None => DEFAULT_STALE_MAX_BYTES,
                Some(b) => match parse_size(&b.0) {
                    Ok(n) if n > 0 => n,
                    Ok(_) => {
                        self.err(&format!("{sp}.max_bytes"), "must be above 0".into());
                        DEFAULT_STALE_MAX_BYTES
                    }
                    Err(m) => {
                        self.err(&format!("{sp}.max_bytes"), m);
                        DEFAULT_STALE_MAX_BYTES
                    }
                },
            };
            StaleConfig {
                max_age,
                max_entries,
                max_bytes,
                private: s.private.unwrap_or(false),
            }
        });
        let static_answer = f.static_response.as_ref().map(|s| {
            let sp = format!("{p}.static");
            let status = s.status.unwrap_or(503);
            if !(200..=599).contains(&status) {
                self.err(
                    &format!("{sp}.status"),
                    format!("must be between 200 and 599, got {status}"),
                );
            }
            let ct = s.content_type.as_deref().unwrap_or("text/plain");
            let content_type = match http::HeaderValue::from_str(ct) {
                Ok(v) => v,
                Err(_) => {
                    self.err(
                        &format!("{sp}.content_type"),
                        format!("invalid header value {ct:?}"),
                    );
                    http::HeaderValue::from_static("text/plain")
                }
            };
            let body = match (&s.body, &s.body_file) {
                (Some(_), Some(_)) => {
                    self.err(&sp, "set either body or body_file, not both".into());
                    Bytes::new()
                }
                (Some(b), None) => Bytes::from(b.clone()),
                (None, Some(file)) => match std::fs::read(resolve_path(base, file)) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        self.err(
                            &format!("{sp}.body_file"),
                            format!("cannot read {file:?}: {e}"),
                        );
                        Bytes::new()
                    }
                },
                (None, None) => Bytes::new(),
            };
            StaticConfig {
                status: status.clamp(200, 599),
                content_type,
                body,
            }
        });
        let methods = match &f.methods {
            None => vec![Method::GET, Method::HEAD],
            Some(ms) => self.methods(&format!("{p}.methods"), ms),
        };
        if f.cluster.is_none() && f.stale.is_none() && f.static_response.is_none() {
            self.err_hint(
                p,
                "an empty fallback does nothing".into(),
                "set cluster, stale or static (or remove fallback)",
            );
        }
        FallbackConfig {
            cluster: f.cluster.clone(),
            stale,
            static_answer,
            methods,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> String {
        match crate::config::parse("f.yaml", yaml, Path::new(".")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const CLUSTERS: &str = "clusters:
  - {name: a, endpoints: [{address: \"127.0.0.1:1\"}]}
  - {name: b, endpoints: [{address: \"127.0.0.1:2\"}]}
";

    fn route(extra: &str) -> String {
        format!(
            "listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes:
      - {{match: {{path_prefix: /}}, cluster: a, {extra}}}
{CLUSTERS}"
        )
    }

    #[test]
    fn fallback_is_validated_and_served() {
        let ok = route("fallback: {cluster: b, stale: {max_age: 30s, max_bytes: 1MiB, private: true}, static: {status: 503, body: down}}");
        let c = crate::config::parse("f.yaml", &ok, Path::new(".")).unwrap();
        assert!(c.unsupported.is_empty(), "{:?}", c.unsupported);
        let f = c.listeners[0].routes[0].fallback.clone().unwrap();
        assert_eq!(f.methods, vec![Method::GET, Method::HEAD]);
        let s = f.stale.unwrap();
        assert_eq!(
            (s.max_age, s.max_bytes, s.max_entries, s.private),
            (
                Duration::from_secs(30),
                1 << 20,
                DEFAULT_STALE_MAX_ENTRIES,
                true
            )
        );
        assert_eq!(&f.static_answer.unwrap().body[..], b"down");

        let e = errors(&route("fallback: {cluster: nope}"));
        assert!(
            e.contains("fallback.cluster: unknown cluster \"nope\""),
            "{e}"
        );
        let e = errors(&route("fallback: {}"));
        assert!(e.contains("an empty fallback does nothing"), "{e}");
        let e = errors(&route("fallback: {static: {body: x, body_file: y}}"));
        assert!(e.contains("set either body or body_file, not both"), "{e}");
        let e = errors(&route(
            "fallback: {static: {status: 99}, methods: [\"G T\"]}",
        ));
        assert!(
            e.contains("fallback.static.status: must be between 200 and 599"),
            "{e}"
        );
        assert!(e.contains("fallback.methods[0]: invalid method"), "{e}");
    }

    #[test]
    fn cell_sets_are_validated_and_served() {
        let yaml = |set: &str| {
            format!(
                "listeners:
  - name: web
    bind: \"127.0.0.1:0\"
    routes: [{{match: {{path_prefix: /}}, cells: users}}]
cells:
  - {set}
{CLUSTERS}"
            )
        };
        let ok = yaml("{name: users, key: {cookie: uid}, on_cell_down: evacuate, default: b, members: [{name: a, cluster: a}, {name: b, cluster: b}]}");
        let c = crate::config::parse("f.yaml", &ok, Path::new(".")).unwrap();
        assert!(c.unsupported.is_empty(), "{:?}", c.unsupported);
        assert_eq!(c.cells[0].on_cell_down, OnCellDown::Evacuate);
        assert_eq!(c.cells[0].default, Some(1));
        assert_eq!(c.listeners[0].routes[0].cells.as_deref(), Some("users"));

        let e = errors(&yaml("{name: users, key: {cookie: uid}, default: z, members: [{name: a, cluster: a}, {name: a, cluster: x}]}"));
        assert!(e.contains("cells[0].default: unknown cell \"z\""), "{e}");
        assert!(e.contains("duplicate cell \"a\""), "{e}");
        assert!(
            e.contains("cells[0].members[1].cluster: unknown cluster \"x\""),
            "{e}"
        );
        let e = errors(&yaml(
            "{name: users, on_cell_down: drop, members: [{name: a, cluster: a}]}",
        ));
        assert!(e.contains("cells[0].key: required"), "{e}");
        assert!(e.contains("must be fail or evacuate, got \"drop\""), "{e}");
    }
}
