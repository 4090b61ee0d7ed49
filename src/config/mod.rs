//! Configuration: reading a YAML file into a validated [`Config`], with errors that
//! point at the file, line, column and key.
//!
//! Two stages, as in ripgrep's flags: [`raw`] is the file as written (serde types,
//! unknown keys denied, `${ENV}` interpolated by the YAML reader), and [`validate()`]
//! turns it into a [`Config`] whose values are parsed and cross-checked (durations,
//! addresses, a route's cluster exists, ...). All errors of a file are reported in one
//! run, each as `file:line:col: key.path: message`. Positions of validation errors come
//! from a small index of the YAML document built alongside (key path → line, column).
//! Only a validated `Config` can become a running snapshot.

pub mod autoscale;
pub mod breaker;
pub mod cells;
mod clusters;
mod collect;
pub mod discovery;
pub mod dns;
pub mod failover;
pub mod isolation;
mod listeners;
pub mod model;
pub mod raw;
pub mod slo;
pub mod units;
pub mod validate;

pub use autoscale::*;
pub use breaker::*;
pub use cells::*;
pub use discovery::*;
pub use dns::*;
pub use failover::*;
pub use isolation::*;
pub use model::*;
pub use slo::*;
pub use units::*;
pub use validate::validate;

use serde_saphyr::granit_parser::{Event, Parser};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// All problems found in one file (as JSON, the list of them).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Key path → position of its value in the YAML document.
///
/// A served configuration keeps only the text ([`PosIndex::compact`]): its positions
/// are needed for the rare error found after validation (a certificate that cannot be
/// read at a reload), and the map costs about 0.7 KB per route, the text a fifth of it.
/// The text has the environment's values in it (secrets too): `Debug` leaves it out.
#[derive(Default, Clone)]
pub struct PosIndex {
    positions: HashMap<String, (usize, usize)>,
    text: Arc<str>,
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let (name, text) = read(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&name, &text, &base)
}

/// Reads a YAML file: its name as errors give it, and its text; a file that cannot be
/// read is an error naming it.
pub fn read(path: &Path) -> Result<(String, String), ConfigErrors> {
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
    Ok((name, text))
}

/// Parses and validates configuration text; `file` names it in errors and `base` is
/// the directory relative paths (certificates) are resolved against.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let text = &interpolate(file, text, |k| std::env::var(k).ok())?;
    let raw = parse_raw(file, text)?;
    let index = PosIndex::build(text);
    validate::validate(raw, file, &index, base)
}

/// Replaces `${NAME}` with the value of environment variable NAME (as `lookup` tells),
/// in quoted and plain values alike; `$${` writes a literal `${`. Comments (whole lines
/// and trailing ` # ...`) are left alone. Inside a quoted value, the substituted text is
/// escaped for that quoting, so a value with `"` or `'` cannot end the string early;
/// in a plain value it is inserted as is (quote the reference when the value can hold
/// YAML syntax such as `: ` or ` #`). An unset variable, or a value with a line break
/// (which would shift every line after it), is an error at the reference's position.
/// Values are substituted in place, so line numbers stay those of the file.
pub fn interpolate(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigErrors> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let b = line.as_bytes();
        let mut quote = Quote::None;
        let mut i = 0;
        let mut copied = 0; // bytes of `line` already in `out`
        while i < b.len() {
            let c = b[i];
            let after_space = i == 0 || matches!(b[i - 1], b' ' | b'\t');
            let opens =
                i == 0 || matches!(b[i - 1], b' ' | b'\t' | b':' | b'[' | b'{' | b',' | b'-');
            match (&quote, c) {
                (Quote::None, b'#') if after_space => break,
                (Quote::Double, b'\\') => {
                    i += 2;
                    continue;
                }
                (Quote::Double, b'"') | (Quote::Single, b'\'') => quote = Quote::None,
                (Quote::None, b'"') if opens => quote = Quote::Double,
                (Quote::None, b'\'') if opens => quote = Quote::Single,
                (_, b'$') if line[i..].starts_with("$${") => {
                    out.push_str(&line[copied..i]);
                    out.push_str("${");
                    i += 3;
                    copied = i;
                    continue;
                }
                (_, b'$') if line[i..].starts_with("${") => {
                    let Some(len) = line[i + 2..].find('}') else {
                        break;
                    };
                    let name = &line[i + 2..i + 2 + len];
                    out.push_str(&line[copied..i]);
                    let err = |message: String| ConfigError {
                        file: file.to_owned(),
                        line: n + 1,
                        column: line[..i].chars().count() + 1,
                        path: String::new(),
                        message,
                        hint: None,
                    };
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        errors.push(err(format!("invalid variable name in \"${{{name}}}\"")));
                    } else {
                        match lookup(name) {
                            Some(v) if v.contains(['\n', '\r']) => errors.push(err(format!(
                                "environment variable {name} holds a line break; only one-line values can be interpolated"
                            ))),
                            Some(v) => match quote {
                                Quote::None => out.push_str(&v),
                                Quote::Double => out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\"")),
                                Quote::Single => out.push_str(&v.replace('\'', "''")),
                            },
                            None => {
                                let mut e = err(format!("environment variable {name} is not set"));
                                e.hint = Some(format!(
                                    "export {name}=... before starting, or write the value in the file"
                                ));
                                errors.push(e);
                            }
                        }
                    }
                    i += 3 + len;
                    copied = i;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        out.push_str(&line[copied.min(line.len())..]);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Parses configuration text into the raw model without validating values (and
/// without `${ENV}` interpolation: see [`interpolate`]).
pub fn parse_raw(file: &str, text: &str) -> Result<raw::RawConfig, ConfigErrors> {
    parse_yaml(file, text)
}

/// Parses YAML text into `T` (unknown keys refused where `T` says so), an error
/// naming the file, line, column and key path; empty text is `T::default()`. The
/// drill files are read with it too.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    file: &str,
    text: &str,
) -> Result<T, ConfigErrors> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let mut options = serde_saphyr::Options::default();
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

impl fmt::Debug for PosIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosIndex")
            .field("positions", &self.positions.len())
            .field("text_bytes", &self.text.len())
            .finish()
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PosIndex {
    /// Walks the YAML events once and records where each key path's value starts.
    /// A document that does not parse yields an empty index (the serde stage reports
    /// the syntax error with its own position).
    pub fn build(text: &str) -> Self {
        PosIndex {
            positions: Self::walk(text),
            text: Arc::from(text),
        }
    }

    /// Drops the positions and keeps the text, from which [`PosIndex::locate`] finds
    /// them again when asked.
    pub fn compact(&mut self) {
        self.positions = HashMap::new();
    }

    fn walk(text: &str) -> HashMap<String, (usize, usize)> {
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
        positions
    }

    /// Position of a key path's value, or of its nearest ancestor present in the file.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        if self.positions.is_empty() && !self.text.is_empty() {
            // Compacted: walk the text again. Text with no node walks to an empty map,
            // which `find` answers with (0, 0) like any index without the path.
            return Self::find(&Self::walk(&self.text), path);
        }
        Self::find(&self.positions, path)
    }

    fn find(positions: &HashMap<String, (usize, usize)>, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = positions.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return positions.get("").copied().unwrap_or((0, 0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |k: &str| match k {
            "A" => Some("1.2.3.4:80".to_owned()),
            "NL" => Some("x\ny".to_owned()),
            _ => None,
        };
        let out = interpolate("f", "a: ${A}\nb: \"${A}\"\n# ${NOPE}\nc: $${A} $x\n", env).unwrap();
        assert_eq!(
            out,
            "a: 1.2.3.4:80\nb: \"1.2.3.4:80\"\n# ${NOPE}\nc: ${A} $x\n"
        );
        let e = interpolate("f", "a: 1\nbb: x ${MISSING}\nc: ${NL}\n", env).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!((e.0[0].line, e.0[0].column), (2, 7));
        assert!(e.0[0].message.contains("MISSING is not set"));
        assert_eq!((e.0[1].line, e.0[1].column), (3, 4));
    }

    #[test]
    fn index_finds_nested_values() {
        let text = "a:\n  b:\n    - x: 1\n    - {x: 2, y: [3, 4]}\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.locate("a.b[0].x"), (3, 10));
        assert_eq!(idx.locate("a.b[1].y[1]"), (4, 21));
        assert_eq!(idx.locate("a.b[1].missing"), (4, 7));
        // A compacted index finds them again from the text.
        let mut small = idx.clone();
        small.compact();
        assert_eq!(small.locate("a.b[1].y[1]"), (4, 21));
        // Text without a node (blank, or only comments) finds nothing, and returns.
        for text in ["\n", "   ", "# only a comment\n"] {
            let mut blank = PosIndex::build(text);
            blank.compact();
            assert_eq!(blank.locate("endpoints"), (0, 0));
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the text, parsing answers Ok or Err and never panics.
        #[test]
        fn parse_never_panics(text in "\\PC{0,400}") {
            let _ = parse("f.yaml", &text, Path::new("."));
        }

        /// Interpolation over text dense in quotes, escapes, comments and references.
        #[test]
        fn interpolate_never_panics(text in "[$${}\"'\\\\# aéX_\n:]{0,80}") {
            let _ = interpolate("f", &text, |k| (k == "X").then(|| "v\"'\\".to_owned()));
        }

        /// YAML-shaped noise: keys of the contract with random values.
        #[test]
        fn contract_shaped_noise_never_panics(
            key in prop::sample::select(vec!["bind", "address", "timeout", "weight", "lb", "protocol", "path_prefix", "objective", "hash_on", "connect_timeout"]),
            val in "[ -~]{0,30}",
        ) {
            let text = format!(
                "listeners:\n  - name: w\n    bind: 127.0.0.1:1\n    routes:\n      - {{match: {{{key}: {val}}}, cluster: c, {key}: {val}}}\nclusters:\n  - {{name: c, {key}: {val}, endpoints: [{{address: 127.0.0.1:2, {key}: {val}}}]}}\n"
            );
            let _ = parse("f.yaml", &text, Path::new("."));
        }
    }
}
