//! Fuzz target: the configuration parser (`ninefold::config::parse`) on arbitrary text.
//!
//! Asserts only that parsing never panics: any input either becomes a `Config` or a
//! list of errors. Inputs that are not UTF-8 are read lossily rather than thrown away,
//! so byte-level mutations still reach the YAML reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Relative certificate paths resolve against a directory that has none, so a
    // config naming one fails validation instead of reading the machine's files.
    let _ = ninefold::config::parse("fuzz.yaml", &text, Path::new("/nonexistent"));
});
