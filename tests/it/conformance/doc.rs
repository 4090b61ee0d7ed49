//! The table in docs/conformance.md, held to what the suite measures.
//!
//! The doc carries the suite's table between two marker comments. Every run compares
//! that block with the table it has just measured and fails on a difference, naming the
//! rows that differ and the command that rewrites the block;
//! `NINEFOLD_CONFORMANCE_BLESS=1` rewrites it in place instead (only on a run where no
//! vector fails, so the doc never records a failing run). What is compared:
//!
//! - always: the rows (every vector once, in the suite's order), their categories and
//!   ninefold's column;
//! - when nginx and HAProxy both ran and are the versions the block names: their columns
//!   too, the verdicts (rule (b)'s notes depend on the anchors) and the summary line (its
//!   tallies compare ninefold with the anchors).
//!
//! Why the anchors' side is conditional: other versions of nginx and HAProxy answer some
//! vectors differently, and the block states what the versions it names did. So a run
//! with other versions (or without the anchors) checks ninefold's side only and says so,
//! except under `NINEFOLD_REQUIRE_ANCHORS=1` (CI), where other versions fail: the
//! anchors' columns would otherwise go unchecked there for good. Nothing in the block
//! depends on timing: the run's duration is printed, never written.
//!
//! The README quotes the number of vectors ("a differential suite of N hostile"); that
//! count is checked here too, since nothing else would notice it go stale.

/// The table's columns; the first three are ninefold's side.
pub(crate) const HEADER: [&str; 6] = [
    "vector", "category", "ninefold", "nginx", "haproxy", "verdict",
];

/// The columns compared on every run: the vector, its category and ninefold's outcome.
const NINEFOLD_COLUMNS: usize = 3;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/conformance.md");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The markers around the generated block in docs/conformance.md.
const BEGIN: &str = "<!-- BEGIN conformance table: written by the suite; \
                     NINEFOLD_CONFORMANCE_BLESS=1 rewrites it, do not edit by hand -->";
const END: &str = "<!-- END conformance table -->";

/// The command that rewrites the block, quoted in every failure.
const BLESS: &str = "NINEFOLD_CONFORMANCE_BLESS=1 cargo test --test it conformance";

/// The block's first line when an anchor did not run (only `NINEFOLD_CONFORMANCE_TABLE`
/// writes such a table: blessing needs both).
const NO_ANCHORS: &str = "Measured without both anchors.";

/// The README's phrase before its count of vectors.
const README_PHRASE: &str = "a differential suite of ";

/// The anchors' versions a table was measured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) nginx: String,
    pub(crate) haproxy: String,
}

/// The suite's table, as the doc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    /// `None` when an anchor did not run.
    pub(crate) versions: Option<Versions>,
    /// One row per vector, cells in [`HEADER`] order.
    pub(crate) rows: Vec<Vec<String>>,
    /// The closing line: counts only, nothing timed.
    pub(crate) summary: String,
}

/// How much of the doc's table a run can vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The rows, categories and ninefold's column.
    Ninefold,
    /// Everything in the block.
    All,
}

// === impl Versions ===

impl Versions {
    fn describe(v: Option<&Versions>) -> String {
        match v {
            Some(v) => format!("nginx {} and HAProxy {}", v.nginx, v.haproxy),
            None => "no anchors".to_owned(),
        }
    }
}

// === impl Table ===

impl Table {
    /// The block as it goes between the markers.
    pub(crate) fn render(&self) -> String {
        let mut s = match &self.versions {
            Some(v) => format!(
                "Measured with nginx {} and HAProxy {}.\n\n",
                v.nginx, v.haproxy
            ),
            None => format!("{NO_ANCHORS}\n\n"),
        };
        s.push_str(&format!(
            "| {} |\n|{}\n",
            HEADER.join(" | "),
            "---|".repeat(HEADER.len())
        ));
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s.push_str(&format!("\n{}\n", self.summary));
        s
    }

    /// Reads a block [`Table::render`] wrote (and someone may have edited).
    fn parse(block: &str) -> Result<Table, String> {
        let mut lines = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .peekable();
        let first = lines.next().ok_or("the block is empty")?;
        let versions = if first == NO_ANCHORS {
            None
        } else {
            let (nginx, haproxy) = first
                .strip_prefix("Measured with nginx ")
                .and_then(|r| r.strip_suffix('.'))
                .and_then(|r| r.split_once(" and HAProxy "))
                .ok_or_else(|| {
                    format!(
                        "the block's first line is {first:?}, not \
                         \"Measured with nginx X and HAProxy Y.\""
                    )
                })?;
            Some(Versions {
                nginx: nginx.to_owned(),
                haproxy: haproxy.to_owned(),
            })
        };
        let header = lines.next().map(cells);
        if header.as_deref() != Some(&HEADER.map(str::to_owned)[..]) {
            return Err(format!("the table's header is {header:?}, not {HEADER:?}"));
        }
        if !lines.next().is_some_and(|l| l.starts_with("|---")) {
            return Err("the table's header has no |---| line under it".to_owned());
        }
        let mut rows = Vec::new();
        while let Some(line) = lines.next_if(|l| l.starts_with('|')) {
            let row = cells(line);
            if row.len() != HEADER.len() {
                return Err(format!(
                    "a row has {} cells, not {}: {line}",
                    row.len(),
                    HEADER.len()
                ));
            }
            rows.push(row);
        }
        let summary = lines.next().ok_or("no summary line after the table")?;
        if let Some(extra) = lines.next() {
            return Err(format!("more after the summary line: {extra:?}"));
        }
        Ok(Table {
            versions,
            rows,
            summary: summary.to_owned(),
        })
    }

    /// What differs between the doc's table (`self`) and the measured one, within
    /// `scope`; one line each.
    fn diff(&self, measured: &Table, scope: Scope) -> Vec<String> {
        let columns = match scope {
            Scope::Ninefold => NINEFOLD_COLUMNS,
            Scope::All => HEADER.len(),
        };
        let mut out = Vec::new();
        for m in &measured.rows {
            let Some(d) = self.rows.iter().find(|d| d[0] == m[0]) else {
                out.push(format!("{:?}: measured, but not in the doc", m[0]));
                continue;
            };
            for c in 1..columns {
                if d[c] != m[c] {
                    out.push(format!(
                        "{:?} {}: the doc says {:?}, measured {:?}",
                        m[0], HEADER[c], d[c], m[c]
                    ));
                }
            }
        }
        for d in &self.rows {
            if !measured.rows.iter().any(|m| m[0] == d[0]) {
                out.push(format!("{:?}: in the doc, but no such vector", d[0]));
            }
        }
        let names = |t: &Table| t.rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        if out.is_empty() && names(self) != names(measured) {
            out.push(
                "the doc's rows are not the suite's vectors in order (moved or repeated)".into(),
            );
        }
        if scope == Scope::All && self.summary != measured.summary {
            out.push(format!(
                "summary: the doc says {:?}, measured {:?}",
                self.summary, measured.summary
            ));
        }
        out
    }
}

/// Checks docs/conformance.md's table against `measured`, or with
/// `NINEFOLD_CONFORMANCE_BLESS=1` rewrites it; and checks the README's count of vectors.
/// `require` is `NINEFOLD_REQUIRE_ANCHORS=1`. The error is the whole failure message.
pub(crate) fn check_or_bless(measured: &Table, require: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(DOC).map_err(|e| format!("{DOC}: {e}"))?;
    let (head, block, tail) = split(&text)?;
    let mut problems = Vec::new();
    let mut checked = "";
    if std::env::var("NINEFOLD_CONFORMANCE_BLESS").is_ok_and(|v| v == "1") {
        if measured.versions.is_none() {
            return Err(
                "NINEFOLD_CONFORMANCE_BLESS=1 needs nginx and HAProxy installed: \
                 the doc's table carries their columns"
                    .to_owned(),
            );
        }
        let text = format!("{head}\n\n{}\n{tail}", measured.render());
        std::fs::write(DOC, text).map_err(|e| format!("{DOC}: {e}"))?;
        println!(
            "docs/conformance.md: table rewritten ({})",
            Versions::describe(measured.versions.as_ref())
        );
    } else {
        let doc = Table::parse(block).map_err(|e| {
            format!("docs/conformance.md: {e}; `{BLESS}` rewrites the block between the markers")
        })?;
        let scope = match (&measured.versions, &doc.versions) {
            (Some(m), Some(d)) if m == d => {
                checked = " (every column: the anchors are the versions it names)";
                Scope::All
            }
            (Some(_), d) => {
                let why = format!(
                    "its table was measured with {}, this run had {}",
                    Versions::describe(d.as_ref()),
                    Versions::describe(measured.versions.as_ref())
                );
                if require {
                    problems.push(format!(
                        "{why}, and NINEFOLD_REQUIRE_ANCHORS=1 wants the anchors' columns checked"
                    ));
                } else {
                    println!("docs/conformance.md: {why}; only ninefold's side is checked");
                }
                checked = " (ninefold's side only: other anchor versions)";
                Scope::Ninefold
            }
            (None, _) => {
                println!(
                    "docs/conformance.md: an anchor is missing; only ninefold's side is checked"
                );
                checked = " (ninefold's side only: an anchor is missing)";
                Scope::Ninefold
            }
        };
        problems.extend(doc.diff(measured, scope));
        if problems.is_empty() {
            println!("docs/conformance.md: the table matches{checked}");
        }
    }
    let readme = readme_count(measured.rows.len());
    if problems.is_empty() && readme.is_none() {
        return Ok(());
    }
    let mut msg = String::new();
    if !problems.is_empty() {
        msg.push_str(&format!(
            "docs/conformance.md's table is not what the suite measured{checked}:\n  {}\n\
             Rewrite it with `{BLESS}` (nginx and HAProxy installed), then read \
             `git diff docs/conformance.md` before committing it.\n",
            problems.join("\n  ")
        ));
    }
    if let Some(r) = readme {
        msg.push_str(&r);
    }
    Err(msg)
}

/// `text` cut around the block: everything up to the end of the begin marker, the block,
/// and everything from the end marker on.
fn split(text: &str) -> Result<(&str, &str, &str), String> {
    let missing = || {
        format!(
            "docs/conformance.md: no generated table; the doc needs the lines\n  {BEGIN}\n  {END}\n\
             and `{BLESS}` fills them in"
        )
    };
    let b = text.find(BEGIN).ok_or_else(missing)? + BEGIN.len();
    let e = b + text[b..].find(END).ok_or_else(missing)?;
    Ok((&text[..b], &text[b..e], &text[e..]))
}

/// The README's count of vectors, when it is not `vectors`: the failure message.
fn readme_count(vectors: usize) -> Option<String> {
    let text = match std::fs::read_to_string(README) {
        Ok(t) => t,
        Err(e) => return Some(format!("{README}: {e}\n")),
    };
    let quoted = text.split_once(README_PHRASE).and_then(|(_, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().ok()
    });
    match quoted {
        Some(n) if n == vectors => None,
        Some(n) => Some(format!(
            "README.md says \"{README_PHRASE}{n} hostile\", but the suite has {vectors} \
             vectors: edit README.md\n"
        )),
        None => Some(format!(
            "README.md has no \"{README_PHRASE}N hostile\" count to check; if the count is \
             gone on purpose, drop `readme_count` in tests/it/conformance/doc.rs\n"
        )),
    }
}

/// A markdown row's cells, trimmed, with `\|` read back as `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().unwrap().push('|');
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let row = |cells: [&str; 6]| cells.map(str::to_owned).to_vec();
        Table {
            versions: Some(Versions {
                nginx: "1.22.1".into(),
                haproxy: "2.6.12".into(),
            }),
            rows: vec![
                row(["cl+te", "cl-te", "400", "400", "fwd 200", "ok"]),
                row(["a | b", "fields", "fwd 200", "fwd 200", "400", "ok (x; y)"]),
            ],
            summary: "2 vectors: like both 2; 0 failing".into(),
        }
    }

    #[test]
    fn a_rendered_table_reads_back_the_same() {
        let t = table();
        assert_eq!(Table::parse(&t.render()), Ok(t.clone()));
        let bare = Table {
            versions: None,
            ..t
        };
        assert_eq!(Table::parse(&bare.render()), Ok(bare));
    }

    #[test]
    fn the_anchors_columns_count_only_in_full_scope() {
        let doc = table();
        let mut measured = table();
        measured.rows[0][4] = "400".into();
        measured.summary = "2 vectors: like both 1; 0 failing".into();
        assert!(doc.diff(&measured, Scope::Ninefold).is_empty());
        assert_eq!(doc.diff(&measured, Scope::All).len(), 2);
        measured.rows[1][2] = "400".into();
        let d = doc.diff(&measured, Scope::Ninefold);
        assert_eq!(
            d,
            ["\"a | b\" ninefold: the doc says \"fwd 200\", measured \"400\""]
        );
    }

    #[test]
    fn rows_missing_extra_or_moved_are_differences() {
        let doc = table();
        let mut measured = table();
        measured.rows.reverse();
        assert_eq!(doc.diff(&measured, Scope::Ninefold).len(), 1);
        measured.rows[0][0] = "new".into();
        let d = doc.diff(&measured, Scope::Ninefold);
        assert!(
            d[0].contains("\"new\": measured, but not in the doc"),
            "{d:?}"
        );
        assert!(
            d[1].contains("\"a | b\": in the doc, but no such vector"),
            "{d:?}"
        );
    }

    #[test]
    fn the_doc_has_its_markers_and_a_table_that_parses() {
        let text = std::fs::read_to_string(DOC).unwrap();
        let (_, block, _) = split(&text).unwrap();
        let t = Table::parse(block).unwrap();
        assert_eq!(t.rows.len(), super::super::vectors::all().len());
    }
}
