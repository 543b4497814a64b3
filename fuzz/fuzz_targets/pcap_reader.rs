//! Fuzzes the pcap reader: `PcapReader` reads files from anywhere (tools,
//! tests, recovered recordings), so any bytes must give records or an
//! error, never a panic or an allocation beyond one record's limit; and
//! what it reads must survive a write and a second read unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapline_packet::pcap::{PcapReader, PcapWriter, MAX_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = PcapReader::new(data) else {
        return;
    };
    let snaplen = r.snaplen;
    let mut records = Vec::new();
    // Each record consumes at least its 16-byte header: this ends.
    while let Ok(Some(rec)) = r.next_record() {
        assert!(rec.data.len() <= MAX_RECORD_LEN as usize);
        records.push(rec);
    }
    let mut w = PcapWriter::new(Vec::new(), snaplen).expect("writing to a Vec");
    for rec in &records {
        w.write(rec.ts_unix_ns, rec.orig_len, &rec.data)
            .expect("writing to a Vec");
    }
    let bytes = w.into_inner();
    let mut again = PcapReader::new(&bytes[..]).expect("our own header");
    assert_eq!((again.snaplen, again.nanos), (snaplen, true));
    for rec in &records {
        let back = again
            .next_record()
            .expect("our own record")
            .expect("a record");
        // Seconds past u32 (a fraction field of more than a second can
        // carry a time there) saturate when written.
        if rec.ts_unix_ns / 1_000_000_000 <= u64::from(u32::MAX) {
            assert_eq!(back.ts_unix_ns, rec.ts_unix_ns);
        }
        assert_eq!(back.data, rec.data);
        // The writer raises orig_len to the captured length.
        assert_eq!(back.orig_len, rec.orig_len.max(rec.data.len() as u32));
    }
    assert!(again.next_record().expect("a clean end").is_none());
});
