use super::*;

fn full(stream: u32, seq: u64, ts: u64) -> TestHeader {
    TestHeader {
        stream,
        seq: WireSeq::Full(seq),
        timestamp_ns: ts,
    }
}

fn feed(t: &mut SeqTracker, stream: u32, seqs: &[u64]) -> Vec<Arrival> {
    seqs.iter()
        .map(|&s| t.record(&full(stream, s, 1_000), 2_000))
        .collect()
}

fn counts(r: &SinkReport) -> (u64, u64, u64, u64, u64) {
    (r.received, r.lost, r.reordered, r.duplicated, r.late)
}

#[test]
fn in_order_stream_has_nothing_to_report() {
    let mut t = SeqTracker::new();
    let seqs: Vec<u64> = (0..100_000).collect();
    assert!(feed(&mut t, 1, &seqs)
        .iter()
        .all(|&a| a == Arrival::InOrder));
    let r = t.report();
    assert_eq!(counts(&r), (100_000, 0, 0, 0, 0));
    assert_eq!(r.streams[0].highest_seq, Some(99_999));
}

#[test]
fn gaps_count_as_lost_until_filled() {
    let mut t = SeqTracker::new();
    feed(&mut t, 0, &[0, 1, 4, 5, 9]);
    assert_eq!(
        counts(&t.report()),
        (5, 5, 0, 0, 0),
        "2, 3, 6, 7, 8 missing"
    );
    assert_eq!(feed(&mut t, 0, &[3, 7]), [Arrival::Reordered; 2]);
    assert_eq!(counts(&t.report()), (7, 3, 2, 0, 0));
    // A first frame above 0 means the ones before it were lost.
    let mut t = SeqTracker::new();
    feed(&mut t, 0, &[10]);
    assert_eq!(counts(&t.report()), (1, 10, 0, 0, 0));
}

#[test]
fn reorder_and_duplicates_are_told_apart() {
    let mut t = SeqTracker::new();
    let got = feed(&mut t, 0, &[0, 2, 1, 1, 2, 3, 3, 0]);
    use Arrival::*;
    assert_eq!(
        got,
        [InOrder, InOrder, Reordered, Duplicate, Duplicate, InOrder, Duplicate, Duplicate]
    );
    assert_eq!(counts(&t.report()), (4, 0, 1, 4, 0));
}

#[test]
fn the_window_slides_and_forgets_old_sequences() {
    let w = SEQ_WINDOW;
    let mut t = SeqTracker::new();
    feed(&mut t, 0, &[0, 5]);
    // A jump of more than the window: everything between is lost, and
    // the slots reused for the new sequences start empty.
    feed(&mut t, 0, &[5 + w + 10]);
    assert_eq!(t.report().lost, 5 + w + 10 + 1 - 3);
    // Still inside the window: 5 + 11 .. new highest.
    assert_eq!(feed(&mut t, 0, &[w + 14]), [Arrival::Reordered]);
    assert_eq!(feed(&mut t, 0, &[w + 14]), [Arrival::Duplicate]);
    // Slot of 5 (5 + w) was reused and cleared: 5 + w is new, not a dup.
    assert_eq!(feed(&mut t, 0, &[5 + w]), [Arrival::Reordered]);
    // Exactly at the window's edge and beyond it.
    let h = 5 + w + 10;
    assert_eq!(feed(&mut t, 0, &[h - (w - 1)]), [Arrival::Reordered]);
    assert_eq!(feed(&mut t, 0, &[h - w, 5, 0]), [Arrival::Late; 3]);
    let r = t.report();
    assert_eq!((r.late, r.duplicated), (3, 1));
    // Late frames stay lost: received counts distinct in-window ones.
    assert_eq!(r.received, 6);
    assert_eq!(r.lost, h + 1 - 6);
    // Many small steps across several window lengths keep it exact.
    let mut t = SeqTracker::new();
    let mut seqs = Vec::new();
    for s in 0..5 * w {
        if s % 1000 != 0 {
            seqs.push(s);
        }
    }
    feed(&mut t, 0, &seqs);
    let holes: Vec<u64> = (0..5 * w).step_by(1000).filter(|s| 5 * w - s < w).collect();
    assert!(!holes.is_empty());
    assert!(feed(&mut t, 0, &holes)
        .iter()
        .all(|&a| a == Arrival::Reordered));
    assert!(feed(&mut t, 0, &holes)
        .iter()
        .all(|&a| a == Arrival::Duplicate));
    let r = t.report();
    assert_eq!(
        r.lost,
        (0..5 * w).step_by(1000).count() as u64 - holes.len() as u64
    );
}

#[test]
fn streams_are_independent() {
    let mut t = SeqTracker::new();
    for s in 0..10u64 {
        feed(&mut t, 7, &[s]);
        feed(&mut t, 3, &[s * 2]);
    }
    feed(&mut t, 7, &[4]);
    let r = t.report();
    assert_eq!(r.streams.len(), 2);
    assert_eq!(r.streams[0].stream, 3);
    assert_eq!((r.streams[0].received, r.streams[0].lost), (10, 9));
    assert_eq!((r.streams[1].received, r.streams[1].duplicated), (10, 1));
    assert_eq!(counts(&r), (20, 9, 0, 1, 0));
}

#[test]
fn streams_beyond_the_limit_are_counted_not_tracked() {
    let mut t = SeqTracker::new();
    for s in 0..MAX_STREAMS as u32 + 5 {
        t.record(&full(s, 0, 1), 2);
    }
    let r = t.report();
    assert_eq!((r.streams.len(), r.untracked), (MAX_STREAMS, 5));
}

#[test]
fn compact_sequences_extend_across_32_bits() {
    let mut t = SeqTracker::new();
    let low = |seq: u64| TestHeader {
        stream: 1,
        seq: WireSeq::Low32(seq as u32),
        timestamp_ns: 0,
    };
    let base = (1u64 << 32) - 3;
    // The stream's highest is known in full from a full header.
    t.record(&full(1, base, 0), 1);
    for s in base + 1..base + 6 {
        assert_eq!(t.record(&low(s), 1), Arrival::InOrder);
    }
    assert_eq!(t.report().streams[0].highest_seq, Some(base + 5));
    // Behind the wrap, low 32 bits near 2^32 again: reordered, not a jump.
    t.record(&low(base + 7), 1);
    assert_eq!(t.record(&low(base + 6), 1), Arrival::Reordered);
    assert_eq!(t.record(&low(base + 2), 1), Arrival::Duplicate);
    // Sequences 0..base never came: lost.
    assert_eq!(counts(&t.report()), (8, base, 1, 1, 0));
}

#[test]
fn latency_percentiles_and_bad_timestamps() {
    let mut t = SeqTracker::new();
    // 1000 frames with latencies 1..=1000 us.
    for i in 0..1000u64 {
        t.record(&full(0, i, 10_000_000), 10_000_000 + (i + 1) * 1000);
    }
    // A duplicate is not a new latency sample; a future stamp is counted.
    t.record(&full(0, 5, 0), 1_000_000_000);
    t.record(&full(0, 1000, 20_000_000), 10_000_000);
    let r = t.report();
    let l = &r.latency;
    assert_eq!(l.count, 1000);
    assert_eq!(r.future_timestamps, 1);
    assert_eq!((l.min_ns, l.max_ns), (1000, 1_000_000));
    let near = |got: u64, want: u64| got.abs_diff(want) <= want / 500;
    assert!(near(l.p50_ns, 500_000), "{l:?}");
    assert!(near(l.p90_ns, 900_000), "{l:?}");
    assert!(near(l.p99_ns, 990_000), "{l:?}");
    assert!(near(l.p999_ns, 999_000), "{l:?}");
    assert!(l.p999_ns <= l.max_ns);
    assert!((l.mean_ns - 500_500.0).abs() < 1000.0, "{l:?}");
    // The CDF: every listed percentile, both columns ascending, exact
    // ends, and points that agree with the percentiles above.
    let pct: Vec<f64> = l.cdf.iter().map(|&(p, _)| p).collect();
    assert_eq!(pct, CDF_PERCENTILES);
    assert!(l.cdf.windows(2).all(|w| w[0].1 <= w[1].1), "{:?}", l.cdf);
    assert_eq!(l.cdf[0], (0.0, 1000));
    assert_eq!(*l.cdf.last().unwrap(), (100.0, 1_000_000));
    let at = |p: f64| l.cdf.iter().find(|&&(q, _)| q == p).unwrap().1;
    assert_eq!(
        (at(50.0), at(99.0), at(99.9)),
        (l.p50_ns, l.p99_ns, l.p999_ns)
    );
    assert!(near(at(10.0), 100_000), "{:?}", l.cdf);
    // One sample: every percentile is that sample, not its bucket's top.
    let mut one = SeqTracker::new();
    one.record(&full(0, 0, 0), 25_132_000);
    let l = one.report().latency;
    assert_eq!(
        (l.p50_ns, l.p999_ns, l.max_ns),
        (25_132_000, 25_132_000, 25_132_000)
    );
    assert!(l.cdf.iter().all(|&(_, ns)| ns == 25_132_000), "{:?}", l.cdf);
    // Empty: zeros and no CDF, no panic.
    assert_eq!(SeqTracker::new().report().latency, LatencyReport::default());
}

#[test]
fn account_sent_adds_the_missing_tail() {
    let mut t = SeqTracker::new();
    feed(&mut t, 0, &[0, 1, 3]);
    let mut r = t.report();
    r.account_sent(0, 10);
    assert_eq!(r.lost, 1 + 6);
    r.account_sent(9, 4);
    assert_eq!((r.lost, r.streams.len()), (11, 2));
    let mut r = t.report();
    r.account_sent(0, 4);
    assert_eq!(r.lost, 1, "nothing missing after the highest");
}

#[test]
fn frames_built_by_the_generator_template_feed_the_tracker() {
    use crate::traffic::{FrameKind, TestFrameTemplate};
    let tpl = TestFrameTemplate::new(FrameKind::Udp4, 1, 4);
    let mut t = SeqTracker::new();
    for seq in [0u64, 1, 2, 4, 3, 3] {
        let f = tpl.build(if seq % 2 == 0 { 60 } else { 1514 }, 0, seq, 100);
        t.record(&parse_test_header(&f).unwrap(), 250);
    }
    let r = t.report();
    assert_eq!(counts(&r), (5, 0, 1, 1, 0));
    assert_eq!(r.latency.max_ns, 150);
}
