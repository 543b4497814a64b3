//! Fuzzes the heartbeat parser: whatever comes back out of a tool (or is
//! forged on the wire) goes through `heartbeat::parse`, so any bytes must
//! give a beat or an `Invalid`, never a panic; a beat that authenticates
//! survives `write_frame` and a second parse under the same key unchanged,
//! and a frame the parser accepts claims the heartbeat ethertype.
//!
//! Input layout: 16 bytes of key, then the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapline_dataplane::chain::heartbeat::{self, TagKey};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let word = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
    let key = TagKey::from_words(word(0), word(8));
    let frame = &data[16..];
    let Ok(beat) = heartbeat::parse(frame, &key) else {
        return;
    };
    assert!(heartbeat::is_heartbeat(frame));
    let mut again = vec![0u8; heartbeat::FRAME_LEN];
    let n = heartbeat::write_frame(&mut again, &beat, &key);
    assert_eq!(heartbeat::parse(&again[..n], &key), Ok(beat));
});
