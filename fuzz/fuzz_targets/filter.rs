//! Fuzzes the pcap-filter compiler and the frame parser behind it.
//! `Filter::compile` takes text an operator typed (a config file, a
//! `taplinectl` flag), and `Packet::parse` / `Filter::matches` take whatever
//! arrives on the wire, so: any text compiles or yields a `FilterError`
//! whose column points inside the expression (or one past its end) and
//! whose caret renders; a filter that compiles (libpcap or `lenient:` mode,
//! byte offsets and arithmetic included) matches any bytes without a
//! panic, gives the same answer twice, and compiles again from `expr()`
//! into the same mode;
//! and the parsed packet keeps its invariants.
//!
//! Input layout: the expression, a 0 byte, the frame. Without a 0 byte the
//! whole input is the expression and the frame is empty.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapline_packet::filter::Filter;
use tapline_packet::packet::Packet;

fuzz_target!(|data: &[u8]| {
    let (expr, frame) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // Filters come from text: make invalid UTF-8 valid (U+FFFD) rather than
    // throwing the input away, so byte mutations still explore the grammar.
    let expr = String::from_utf8_lossy(expr);

    let p = Packet::parse(frame);
    let _ = (p.flow_hash(), p.arp_addrs(), p.eth_src(), p.eth_dst());
    assert!(usize::from(p.n_vlans) <= p.vlans.len());
    assert_eq!(p.src.is_some(), p.dst.is_some());
    if p.ports.is_some() {
        assert!(
            matches!(p.proto, 6 | 17 | 132),
            "ports for proto {}",
            p.proto
        );
    }

    match Filter::compile(&expr) {
        Ok(filter) => {
            let m = filter.matches(frame);
            assert_eq!(m, filter.matches_packet(&p));
            let again = Filter::compile(filter.expr()).expect("recompiles");
            assert_eq!(again.mode(), filter.mode());
            assert_eq!(again.matches(frame), m);
        }
        Err(e) => {
            let len = expr.chars().count();
            assert!(
                (1..=len + 1).contains(&e.column),
                "column {} outside 1..={} for {expr:?}",
                e.column,
                len + 1
            );
            assert!(!e.message.is_empty());
            assert_eq!(e.caret().lines().count(), 2);
        }
    }
});
