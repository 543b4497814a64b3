//! Fuzzes the sink's parser of test frames: `parse_test_header` reads
//! whatever arrives on the sink interface, so it must turn any bytes into a
//! header or `None`, never a panic; and a header it finds must be one the
//! sequence tracker accepts without a panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapline_bench::sink::SeqTracker;
use tapline_bench::traffic::parse_test_header;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = parse_test_header(data) {
        let mut t = SeqTracker::new();
        t.record(&h, h.timestamp_ns.wrapping_add(1));
        t.record(&h, 0);
        let _ = t.report();
    }
});
