//! The layers of `src/`, enforced: each top-level module imports only from the floors
//! below it, so the tree has no import circle and the next person cannot make one
//! unknowingly. The table is docs/architecture.md's ("Layers"); a new module takes its
//! floor here and there.
//!
//! An import is any `crate::` path in code (a `use`, a path in an expression or a
//! type, a `use crate::{a, b::c}` group), and a `super::` path that climbs out of its
//! top-level module. Comments do not count: a doc link to a higher floor names
//! something, it does not depend on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The floors, ground first; modules on one floor do not import each other.
const FLOORS: &[(&str, &[&str])] = &[
    (
        "ground",
        &[
            "alloc",
            "availability",
            "events",
            "logging",
            "oneshot",
            "rlimit",
            "runtime",
            "timer",
            "tls",
        ],
    ),
    ("model", &["config", "metrics"]),
    ("engine", &["discovery", "h1", "upstream"]),
    ("message", &["message"]),
    (
        "policy",
        &[
            "autoscale",
            "bulkhead",
            "cells",
            "fallback",
            "fault",
            "gate",
            "routes",
            "slo",
        ],
    ),
    ("snapshot", &["snapshot"]),
    ("pipeline", &["dns", "proxy", "tcp"]),
    ("process", &["server"]),
    ("admin", &["admin"]),
    ("estimate", &["topology"]),
    (
        "face",
        &["calc", "demo", "drill", "grafana", "lint", "origin"],
    ),
];

/// One import found in the tree.
#[derive(Debug)]
struct Import {
    file: PathBuf,
    line: usize,
    from: String,
    to: String,
}

#[test]
fn every_module_imports_only_from_the_floors_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let floor_of: BTreeMap<&str, usize> = FLOORS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, mods))| mods.iter().map(move |m| (*m, i)))
        .collect();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let top = top_module(&rel);
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&mine) = floor_of.get(top.as_str()) else {
            problems.push(format!(
                "src/{}: module `{top}` is on no floor: give it one in tests/it/layers.rs and docs/architecture.md",
                rel.display()
            ));
            continue;
        };
        seen.push(top.clone());
        let text = std::fs::read_to_string(&file).unwrap();
        for imp in imports(&rel, &text) {
            let Some(&theirs) = floor_of.get(imp.to.as_str()) else {
                // An item of the crate root (none today) or a module on no floor
                // (reported above when its own files are read).
                continue;
            };
            if theirs >= mine {
                let how = if theirs == mine {
                    "on its own floor"
                } else {
                    "above it"
                };
                problems.push(format!(
                    "src/{}:{}: `{}` (floor {}, {}) imports `{}` (floor {}, {}), {how}: a module imports only from the floors below it",
                    imp.file.display(),
                    imp.line,
                    imp.from,
                    mine + 1,
                    FLOORS[mine].0,
                    imp.to,
                    theirs + 1,
                    FLOORS[theirs].0,
                ));
            }
        }
    }
    for (_, mods) in FLOORS {
        for m in *mods {
            if !seen.iter().any(|s| s == m) {
                problems.push(format!(
                    "module `{m}` is in the table but not in src/: take it out of tests/it/layers.rs and docs/architecture.md"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layers (docs/architecture.md, \"Layers\") are broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_imports_in_every_form() {
    let rel = Path::new("h1/client.rs");
    let text = "use crate::config::Limits;\n\
                use crate::{proxy::ConnCtx, message::Head};\n\
                // use crate::admin; (a comment)\n\
                /// [`crate::server`] in a doc\n\
                fn f() { crate::snapshot::x(); let s = \"crate::fake\"; }\n\
                use super::super::slo;\n\
                const Q: char = '\"'; const R: &str = r#\"crate::raw\"#;\n";
    let found: Vec<(String, usize)> = imports(rel, text).map(|i| (i.to, i.line)).collect();
    assert_eq!(
        found,
        [
            ("config".to_owned(), 1),
            ("proxy".to_owned(), 2),
            ("message".to_owned(), 2),
            ("snapshot".to_owned(), 5),
            ("slo".to_owned(), 6),
        ]
    );
    // Within its own module, `super::` is no import of another.
    let inner: Vec<String> = imports(rel, "use super::io;\n").map(|i| i.to).collect();
    assert!(inner.is_empty(), "{inner:?}");
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file under `src/` belongs to.
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// How deep the module of file `rel` sits (`h1/mod.rs` and `h1.rs`: 1).
fn depth(rel: &Path) -> usize {
    let n = rel.components().count();
    if rel.file_name().is_some_and(|f| f == "mod.rs") {
        n - 1
    } else {
        n
    }
}

/// The imports of file `rel` (under `src/`) whose text is `text`: the top-level
/// modules its `crate::` paths name, and those its `super::` paths climb to.
fn imports<'a>(rel: &'a Path, text: &'a str) -> impl Iterator<Item = Import> + 'a {
    let from = top_module(rel);
    let depth = depth(rel);
    let code = code_only(text);
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let preceded = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !preceded {
                for name in first_segments(tail, &code, i) {
                    out.push((i + 1, name));
                }
            }
            rest = tail;
        }
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            let mut tail = &rest[at..];
            let mut ups = 0;
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            // Out of the top-level module: to the crate root, then into another.
            if ups >= depth {
                if let Some(name) = ident(tail) {
                    out.push((i + 1, name));
                }
            }
            rest = tail;
        }
    }
    out.into_iter()
        .filter(move |(_, to)| *to != from && to != "self")
        .map(move |(line, to)| Import {
            file: rel.to_path_buf(),
            line,
            from: top_module(rel),
            to,
        })
}

/// The first path segments after a `crate::`: one identifier, or each item of a
/// `{...}` group (which may run over several lines: `code` from line `i` on).
fn first_segments(tail: &str, code: &str, i: usize) -> Vec<String> {
    if !tail.starts_with('{') {
        return ident(tail).into_iter().collect();
    }
    let group: String = code.lines().skip(i).collect::<Vec<_>>().join("\n");
    let start = group.find(tail).unwrap_or(0);
    let mut depth = 0;
    let mut item_start = true;
    let mut names = Vec::new();
    for (k, c) in group[start..].char_indices() {
        match c {
            '{' => {
                depth += 1;
                item_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if item_start && depth == 1 && !c.is_whitespace() => {
                item_start = false;
                if let Some(name) = ident(&group[start + k..]) {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
}

/// The identifier `s` starts with.
fn ident(s: &str) -> Option<String> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_owned())
}

/// `text` with comments and string literals blanked (lines kept, so line numbers
/// hold).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_line, mut block) = (false, false, 0usize);
    while let Some(c) = chars.next() {
        if c == '\n' {
            in_line = false;
            out.push('\n');
            continue;
        }
        if in_line {
            continue;
        }
        if block > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                block += 1;
            }
            continue;
        }
        if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => in_line = true,
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                block = 1;
            }
            // A raw string: `r"..."`, `r#"..."#` (a `"` inside ends nothing).
            'r' if matches!(chars.peek(), Some('#' | '"'))
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.next() != Some('"') {
                    continue;
                }
                let mut run = None;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    run = match (c, run) {
                        ('"', _) => Some(0),
                        ('#', Some(n)) => Some(n + 1),
                        _ => None,
                    };
                    if run == Some(hashes) {
                        break;
                    }
                }
            }
            // A character literal (`'"'`, `'\''`), not a lifetime.
            '\'' => {
                let mut ahead = chars.clone();
                match (ahead.next(), ahead.next()) {
                    (Some('\\'), _) => {
                        chars.next();
                        chars.next();
                        while chars.next().is_some_and(|c| c != '\'') {}
                    }
                    (Some(_), Some('\'')) => {
                        chars.next();
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            c => out.push(c),
        }
    }
    out
}
