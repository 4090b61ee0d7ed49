//! The route index: which route of a listener a request takes, first match in the
//! order the routes were written, without scanning every route.
//!
//! The order users wrote is the contract, so the index never decides alone: it yields
//! the *candidates* (routes whose host and path conditions can hold) in ascending
//! order, and the caller's full check (methods, headers, and the rest) accepts or
//! rejects each. Routes are indexed by host (exact, case-insensitive; a route without
//! `host` is in every host's set) and then by path in a radix tree: a `path_prefix`
//! route sits at the node of its prefix and is a candidate for every path under it,
//! an exact `path` route at the node of its path, and a route with neither at the
//! root. A lookup walks the request path once down the tree of the request's host and
//! once down the host-less tree, checking at each node only the routes that could
//! still beat the best found so far. The cost grows with the path's length and the
//! candidates, not with the number of routes: see `benches/pipeline.rs`.

use crate::config::MatchConfig;
use std::collections::HashMap;

/// The candidates of a listener's routes, by host and path.
#[derive(Debug, Default)]
pub struct RouteIndex {
    /// Routes with a `host`, by that host (lowercase).
    by_host: HashMap<Box<str>, Tree>,
    /// Routes without a `host`.
    any_host: Tree,
}

/// A radix tree over paths.
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// The bytes from the parent to this node.
    label: Box<[u8]>,
    /// Children, by the first byte of their label.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends here (candidates for every path through here).
    prefix: Vec<u32>,
    /// Routes whose exact path ends here.
    exact: Vec<u32>,
}

// === impl RouteIndex ===

impl RouteIndex {
    /// The index of routes whose conditions are `matchers`, in order.
    pub fn build<'a>(matchers: impl IntoIterator<Item = &'a MatchConfig>) -> RouteIndex {
        let mut index = RouteIndex::default();
        for (i, m) in matchers.into_iter().enumerate() {
            let tree = match &m.host {
                Some(h) => index
                    .by_host
                    .entry(h.to_ascii_lowercase().into_boxed_str())
                    .or_default(),
                None => &mut index.any_host,
            };
            let i = i as u32;
            match (&m.path, &m.path_prefix) {
                // An exact path is the narrower condition; the prefix, if any, is
                // checked with the rest.
                (Some(p), _) => {
                    let n = tree.insert(p.as_bytes());
                    tree.nodes[n].exact.push(i);
                }
                (None, Some(p)) => {
                    let n = tree.insert(p.as_bytes());
                    tree.nodes[n].prefix.push(i);
                }
                (None, None) => tree.nodes[0].prefix.push(i),
            }
        }
        index
    }

    /// The first route, in written order, among those whose host and path conditions
    /// can hold for `host` (without port; any case) and `path`, that `accept` accepts.
    /// `accept` is called only for candidates that could still come first.
    pub fn first(
        &self,
        host: Option<&str>,
        path: &str,
        mut accept: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut best = u32::MAX;
        if let Some(h) = host.filter(|_| !self.by_host.is_empty()) {
            if let Some(tree) = self.host_tree(h) {
                tree.walk(path.as_bytes(), &mut best, &mut accept);
            }
        }
        self.any_host.walk(path.as_bytes(), &mut best, &mut accept);
        (best != u32::MAX).then_some(best as usize)
    }

    /// The tree of `host`, compared without case and without allocating.
    fn host_tree(&self, host: &str) -> Option<&Tree> {
        let mut buf = [0u8; 256];
        let b = host.as_bytes();
        if b.len() > buf.len() {
            return self.by_host.get(host.to_ascii_lowercase().as_str());
        }
        let lower = &mut buf[..b.len()];
        lower.copy_from_slice(b);
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        self.by_host.get(lower)
    }
}

// === impl Tree ===

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: vec![Node::default()],
        }
    }
}

impl Tree {
    /// The node of `key`, made (splitting an edge if need be) when absent.
    fn insert(&mut self, key: &[u8]) -> usize {
        let mut n = 0usize;
        let mut k = key;
        loop {
            let Some(&first) = k.first() else {
                return n;
            };
            let pos = self.nodes[n].children.binary_search_by_key(&first, |c| c.0);
            match pos {
                Err(pos) => {
                    let new = self.push(k);
                    self.nodes[n].children.insert(pos, (first, new as u32));
                    return new;
                }
                Ok(pos) => {
                    let c = self.nodes[n].children[pos].1 as usize;
                    let label = &self.nodes[c].label;
                    let common = label.iter().zip(k).take_while(|(a, b)| a == b).count();
                    if common == label.len() {
                        n = c;
                        k = &k[common..];
                        continue;
                    }
                    // Split the edge: a middle node with the common part.
                    let rest: Box<[u8]> = label[common..].into();
                    let mid = self.push(&k[..common]);
                    self.nodes[c].label = rest;
                    let rest_first = self.nodes[c].label[0];
                    self.nodes[mid].children.push((rest_first, c as u32));
                    self.nodes[n].children[pos].1 = mid as u32;
                    n = mid;
                    k = &k[common..];
                }
            }
        }
    }

    fn push(&mut self, label: &[u8]) -> usize {
        self.nodes.push(Node {
            label: label.into(),
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// Walks `path` down the tree: at each node passed, the routes of its prefix; at
    /// the node where the path ends, those of its exact path. `best` is the lowest
    /// accepted route so far.
    fn walk(&self, path: &[u8], best: &mut u32, accept: &mut impl FnMut(usize) -> bool) {
        let mut n = 0usize;
        let mut rest = path;
        offer(&self.nodes[0].prefix, best, accept);
        loop {
            let Some(&first) = rest.first() else {
                offer(&self.nodes[n].exact, best, accept);
                return;
            };
            let node = &self.nodes[n];
            let Ok(pos) = node.children.binary_search_by_key(&first, |c| c.0) else {
                return;
            };
            let c = node.children[pos].1 as usize;
            let label = &self.nodes[c].label;
            if !rest.starts_with(label) {
                return;
            }
            rest = &rest[label.len()..];
            n = c;
            offer(&self.nodes[n].prefix, best, accept);
        }
    }
}

/// Offers the routes of `list` (ascending) that could beat `best`, in order, and keeps
/// the first accepted.
fn offer(list: &[u32], best: &mut u32, accept: &mut impl FnMut(usize) -> bool) {
    for &i in list {
        if i >= *best {
            return;
        }
        if accept(i as usize) {
            *best = i;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(host: Option<&str>, path: Option<&str>, prefix: Option<&str>) -> MatchConfig {
        MatchConfig {
            path_prefix: prefix.map(Into::into),
            path: path.map(Into::into),
            host: host.map(Into::into),
            methods: None,
            headers: Vec::new(),
        }
    }

    /// What a linear first-match scan finds (the definition the index must keep).
    fn scan(
        ms: &[MatchConfig],
        host: Option<&str>,
        path: &str,
        ok: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        ms.iter().enumerate().position(|(i, m)| {
            m.path.as_ref().is_none_or(|p| p == path)
                && m.path_prefix
                    .as_ref()
                    .is_none_or(|p| path.starts_with(p.as_str()))
                && m.host
                    .as_ref()
                    .is_none_or(|h| host.is_some_and(|x| x.eq_ignore_ascii_case(h)))
                && ok(i)
        })
    }

    #[test]
    fn first_match_in_written_order() {
        let ms = vec![
            m(None, None, Some("/api/v2/")),
            m(Some("a.example"), None, Some("/api/")),
            m(None, Some("/api/v2/x"), None),
            m(None, None, Some("/")),
            m(None, None, None),
        ];
        let idx = RouteIndex::build(&ms);
        let all = |_| true;
        assert_eq!(idx.first(Some("A.Example"), "/api/v2/x", all), Some(0));
        assert_eq!(idx.first(Some("a.example"), "/api/v1", all), Some(1));
        assert_eq!(idx.first(Some("b.example"), "/api/v1", all), Some(3));
        assert_eq!(idx.first(None, "/api/v2/x", |i| i != 0), Some(2));
        assert_eq!(idx.first(None, "nothing", all), Some(4));
        assert_eq!(idx.first(None, "/x", |i| i == 4), Some(4));
        assert_eq!(RouteIndex::build(&[]).first(None, "/", all), None);
    }

    fn matcher() -> impl Strategy<Value = MatchConfig> {
        let seg = prop::sample::select(vec![
            "", "/", "/a", "/a/", "/ab", "/a/b", "/b", "/abc/d", "/a/bc",
        ]);
        let host = prop::option::of(prop::sample::select(vec!["x.io", "y.io"]));
        (host, prop::option::of(seg.clone()), prop::option::of(seg))
            .prop_map(|(h, p, x)| m(h, p, x))
    }

    proptest! {
        #[test]
        fn the_index_finds_what_a_scan_finds(
            ms in prop::collection::vec(matcher(), 0..24),
            path in prop::sample::select(vec!["/", "/a", "/a/", "/ab", "/a/b", "/a/bc", "/abc/d", "/b/c", "", "/z"]),
            host in prop::option::of(prop::sample::select(vec!["x.io", "Y.IO", "z.io"])),
            reject in prop::collection::vec(any::<bool>(), 24),
        ) {
            let ok = |i: usize| !reject[i % reject.len()];
            let idx = RouteIndex::build(&ms);
            // The caller's check: every condition, as `proxy::route::matches` does.
            let full = |i: usize| scan(&ms[i..=i], host, path, &|_| true).is_some() && ok(i);
            prop_assert_eq!(idx.first(host, path, full), scan(&ms, host, path, &ok));
        }
    }
}
