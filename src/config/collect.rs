//! The collector of a configuration file's problems, [`V`]: every section's validator
//! is a method of it (in the section's own file), and each problem it records names its
//! key path and finds its position in the document's [`PosIndex`]. Here are the
//! checks every section shares: addresses, durations, sizes, percentages, methods.

use super::raw::Scalar;
use super::units::{parse_duration, parse_percent, parse_size};
use super::{ConfigError, PosIndex};
use http::Method;
use std::net::SocketAddr;
use std::time::Duration;

/// The collector of a file's problems; each section's validator is a method of it.
pub(crate) struct V<'a> {
    file: &'a str,
    index: &'a PosIndex,
    errors: Vec<ConfigError>,
    unsupported: Vec<ConfigError>,
}

// === impl V ===

impl<'a> V<'a> {
    /// A collector for `file`, whose key paths `index` locates.
    pub(super) fn new(file: &'a str, index: &'a PosIndex) -> Self {
        V {
            file,
            index,
            errors: Vec::new(),
            unsupported: Vec::new(),
        }
    }

    /// The errors found, and the valid settings not built yet.
    pub(super) fn finish(self) -> (Vec<ConfigError>, Vec<ConfigError>) {
        (self.errors, self.unsupported)
    }

    fn make(&self, path: &str, message: String, hint: Option<String>) -> ConfigError {
        let (line, column) = self.index.locate(path);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
            hint,
        }
    }

    pub(super) fn err(&mut self, path: &str, message: String) {
        let e = self.make(path, message, None);
        self.errors.push(e);
    }

    pub(super) fn err_hint(&mut self, path: &str, message: String, hint: &str) {
        let e = self.make(path, message, Some(hint.to_owned()));
        self.errors.push(e);
    }

    /// A key of the contract whose behaviour is not built yet: `check` accepts it,
    /// `serve` refuses it. Every key is built today; later contract keys go through
    /// here until they are.
    #[allow(dead_code)]
    pub(super) fn unsupported(&mut self, path: &str, what: &str) {
        let e = self.make(
            path,
            format!("{what} is not built yet in this version of ninefold"),
            Some("remove the key to serve this file; `ninefold check` accepts it".into()),
        );
        self.unsupported.push(e);
    }

    pub(super) fn addr(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
        match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err_hint(
                    path,
                    format!("invalid socket address {s:?}"),
                    "use ip:port, e.g. 127.0.0.1:8080 or [::1]:8080",
                );
                None
            }
        }
    }

    pub(super) fn opt_duration(&mut self, path: &str, s: Option<&Scalar>) -> Option<Duration> {
        let s = s?;
        match parse_duration(&s.0) {
            Ok(d) if d.is_zero() => {
                self.err(path, format!("must be greater than zero, got {s}"));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                self.err_hint(path, m, "write durations like 250ms, 5s, 1m, 2h or 30d");
                None
            }
        }
    }

    /// A size between `min` and 1 GiB, or `default` when absent.
    pub(super) fn size(
        &mut self,
        path: &str,
        s: Option<&Scalar>,
        min: usize,
        default: usize,
    ) -> usize {
        let Some(s) = s else { return default };
        match parse_size(&s.0) {
            Ok(n) if n < min => {
                self.err(path, format!("must be at least {min} bytes, got {s}"));
                default
            }
            Ok(n) => n,
            Err(m) => {
                self.err(path, m);
                default
            }
        }
    }

    pub(super) fn opt_percent(&mut self, path: &str, s: Option<&Scalar>) -> Option<f64> {
        let s = s?;
        match parse_percent(&s.0) {
            Ok(p) => Some(p),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    /// A list of HTTP methods (any case); each invalid one is an error at its index.
    pub(super) fn methods(&mut self, p: &str, list: &[String]) -> Vec<Method> {
        list.iter()
            .enumerate()
            .filter_map(
                |(i, s)| match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        self.err(&format!("{p}[{i}]"), format!("invalid method {s:?}"));
                        None
                    }
                },
            )
            .collect()
    }
}
