//! Fuzzes the configuration parser: `Config::parse` takes text an operator
//! (or a ConfigMap generator) wrote, so it must turn any input into either a
//! `Config` or a `ConfigError`, never a panic, and every error must render as
//! one log line (the contract: "one line naming the field and the fix").

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapline_config::Config;

fuzz_target!(|data: &[u8]| {
    // The file is read with `read_to_string`, so only UTF-8 reaches the
    // parser. Other inputs are not thrown away but made valid (U+FFFD for bad
    // bytes), so the fuzzer's byte mutations still explore the TOML grammar.
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&text) {
        assert!(!e.field.is_empty(), "error without a field: {e:?}");
        let line = e.to_string();
        assert!(
            !line.contains(['\n', '\r']),
            "error is not a single line: {line:?}"
        );
    }
});
