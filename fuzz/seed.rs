//! Seeds the fuzz corpora: `corpus/request_path/` from the conformance vectors (each
//! HTTP/1.1 vector's request bytes, one file per vector), `corpus/h1_framing/` from the
//! same vectors (requests, upstream answers, and chunked bodies on their own) and
//! `corpus/config/` from `examples/*.yaml`.
//!
//! std only, so `fuzz/seed` compiles it with plain `rustc` in a second instead of
//! building the fuzz crate. Run from anywhere: paths are relative to this file's
//! directory, which `fuzz/seed` passes as the only argument.

#[path = "../tests/it/conformance/vectors.rs"]
mod vectors;

use std::fs;
use std::path::Path;

fn main() {
    let fuzz = std::env::args().nth(1).expect("usage: seed <fuzz dir>");
    let fuzz = Path::new(&fuzz);

    let dir = fuzz.join("corpus/request_path");
    fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for v in vectors::all() {
        // h2c vectors are frame streams; the target speaks HTTP/1.1 to the gateway.
        if v.h2 {
            continue;
        }
        fs::write(dir.join(file_name(v.category, v.name)), &v.request).unwrap();
        n += 1;
    }
    println!("corpus/request_path: {n} vectors");

    // h1_framing reads each input as a request, as an answer and as a chunked body, so
    // it gets all three shapes: every HTTP/1.1 request, every upstream answer, and the
    // bytes after the head of each chunked request.
    let dir = fuzz.join("corpus/h1_framing");
    fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    let mut write = |name: String, bytes: &[u8]| {
        fs::write(dir.join(name), bytes).unwrap();
        n += 1;
    };
    write("resp_default".into(), vectors::default_answer());
    for v in vectors::all() {
        if v.h2 {
            continue;
        }
        let name = file_name(v.category, v.name);
        write(format!("req_{name}"), &v.request);
        if let Some(answer) = &v.upstream {
            write(format!("resp_{name}"), answer);
        }
        let end = v.request.windows(4).position(|w| w == b"\r\n\r\n");
        let head = &v.request[..end.unwrap_or(0)];
        if let Some(end) = end.filter(|_| contains_ci(head, b"transfer-encoding")) {
            write(format!("body_{name}"), &v.request[end + 4..]);
        }
    }
    println!("corpus/h1_framing: {n} inputs");

    let dir = fuzz.join("corpus/config");
    fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    let examples = fuzz.join("../examples");
    let mut paths: Vec<_> = fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // examples/slo/ holds SLO files, which are not gateway configs but still YAML
    // the parser must survive.
    if let Ok(sub) = fs::read_dir(examples.join("slo")) {
        paths.extend(sub.map(|e| e.unwrap().path()));
    }
    for p in paths {
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = p
                .strip_prefix(&examples)
                .unwrap()
                .to_string_lossy()
                .replace('/', "-");
            fs::copy(&p, dir.join(name)).unwrap();
            n += 1;
        }
    }
    println!("corpus/config: {n} examples");
}

/// Whether `hay` contains `needle`, ASCII case ignored.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// A file name from a vector's category and name: `cl-te_cl-te`, with anything but
/// letters, digits, `-` and `.` turned into `-`, so names stay shell- and
/// libFuzzer-friendly.
fn file_name(category: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}_{}", clean(category), clean(name))
}
