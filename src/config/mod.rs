//! Configuration: reading a YAML file into a validated [`Config`], with errors that
//! point at the file, line, column and key.
//!
//! Two stages, as in ripgrep's flags: [`raw`] is the file as written (serde types,
//! unknown keys denied, `${ENV}` interpolated by the YAML reader), and [`validate`]
//! turns it into a [`Config`] whose values are parsed and cross-checked (durations,
//! addresses, a route's cluster exists, ...). All errors of a file are reported in one
//! run, each as `file:line:col: key.path: message`. Positions of validation errors come
//! from a small index of the YAML document built alongside (key path → line, column).
//! Only a validated `Config` can become a running snapshot.

pub mod raw;
pub mod validate;

pub use validate::*;

use serde_saphyr::granit_parser::{Event, Parser};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given by the user.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Key path such as `clusters[0].endpoints[1].address`; empty for the document.
    pub path: String,
    /// What is wrong, including the offending value.
    pub message: String,
    /// How to fix it, when known.
    pub hint: Option<String>,
}

/// All problems found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Key path → position of its value in the YAML document.
#[derive(Debug, Default, Clone)]
pub struct PosIndex {
    positions: HashMap<String, (usize, usize)>,
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read file: {e}"),
            hint: None,
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&name, &text, &base)
}

/// Parses and validates configuration text; `file` names it in errors and `base` is
/// the directory relative paths (certificates) are resolved against.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let raw = parse_raw(file, text)?;
    let index = PosIndex::build(text);
    validate::validate(raw, file, &index, base)
}

/// Parses configuration text into the raw model without validating values.
pub fn parse_raw(file: &str, text: &str) -> Result<raw::RawConfig, ConfigErrors> {
    if text.trim().is_empty() {
        return Ok(raw::RawConfig::default());
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut options = serde_saphyr::Options::default().with_properties(env);
    options.with_snippet = false;
    let mut key_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let path = if key_path == "." {
            String::new()
        } else {
            key_path
        };
        let message = strip_location(&e.without_snippet().to_string());
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line,
            column,
            path,
            message,
            hint: None,
        }])
    })
}

/// serde-saphyr appends ` at line L column C` to some messages; we print the position
/// in front instead, once.
fn strip_location(msg: &str) -> String {
    let msg = msg.trim();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Resolves a path relative to the configuration file's directory.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

// === impl ConfigError ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// === impl ConfigErrors ===

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// === impl PosIndex ===

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PosIndex {
    /// Walks the YAML events once and records where each key path's value starts.
    /// A document that does not parse yields an empty index (the serde stage reports
    /// the syntax error with its own position).
    pub fn build(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for ev in Parser::new_from_str(text) {
            let Ok((ev, span)) = ev else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            let is_node = matches!(
                ev,
                Event::Scalar(..)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
                    | Event::Alias(..)
            );
            if is_node {
                let child = match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map { key, path }) => match key.take() {
                        None => {
                            // This node is a key.
                            *key = Some(match &ev {
                                Event::Scalar(v, ..) => v.to_string(),
                                _ => "?".to_owned(),
                            });
                            None
                        }
                        Some(k) => Some(if path.is_empty() {
                            k
                        } else {
                            format!("{path}.{k}")
                        }),
                    },
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        Some(p)
                    }
                };
                let Some(child) = child else {
                    // A complex key (mapping as key): skip its contents as a pseudo node.
                    if let Event::MappingStart(..) | Event::SequenceStart(..) = ev {
                        stack.push(Frame::Seq {
                            path: "?".into(),
                            next: 0,
                        });
                    }
                    continue;
                };
                positions.entry(child.clone()).or_insert(pos);
                match ev {
                    Event::MappingStart(..) => stack.push(Frame::Map {
                        path: child,
                        key: None,
                    }),
                    Event::SequenceStart(..) => stack.push(Frame::Seq {
                        path: child,
                        next: 0,
                    }),
                    _ => {}
                }
            } else if matches!(ev, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
            }
        }
        PosIndex { positions }
    }

    /// Position of a key path's value, or of its nearest ancestor present in the file.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.positions.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.positions.get("").copied().unwrap_or((0, 0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_nested_values() {
        let text = "a:\n  b:\n    - x: 1\n    - {x: 2, y: [3, 4]}\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.locate("a.b[0].x"), (3, 10));
        assert_eq!(idx.locate("a.b[1].y[1]"), (4, 21));
        assert_eq!(idx.locate("a.b[1].missing"), (4, 7));
    }
}
