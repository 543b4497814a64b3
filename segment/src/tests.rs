//! The segment's tests: layout, writer and reader agreement, seqlocks.

use std::io;
use std::path::PathBuf;

use crate::counters::rtt_bucket;
use crate::layout::{Offsets, MAX_HOPS};
use crate::*;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tapline-shm-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn info(role: &str, ifname: &str, queue: u32, hop: &str) -> QueueInfo {
    QueueInfo {
        role: role.into(),
        ifname: ifname.into(),
        queue,
        mode: "native-zero-copy".into(),
        worker: 0,
        hop: hop.into(),
    }
}

const CHAIN: Layout = Layout {
    n_queues: 4,
    n_workers: 2,
    max_hops: 3,
    n_hop_writers: 2,
    n_outputs: 0,
    n_output_writers: 0,
    max_recorders: 0,
    max_taps: 0,
};

const PASSIVE: Layout = Layout {
    n_queues: 2,
    n_workers: 1,
    max_hops: 0,
    n_hop_writers: 0,
    n_outputs: 5,
    n_output_writers: 2,
    max_recorders: 1,
    max_taps: 2,
};

#[test]
fn outputs_recorders_and_taps_round_trip_through_a_reader() {
    assert_eq!(size_of::<OutputDesc>(), 256);
    assert_eq!(size_of::<OutputCounters>(), 128);
    assert_eq!(size_of::<RecorderCounters>(), 576);
    assert_eq!(size_of::<TapCounters>(), 256);
    let dir = tmpdir("outputs");
    let seg = StatsSegment::create_with(&dir, &PASSIVE, 9).unwrap();
    let group = OutputInfo {
        kind: OutputKind::Group,
        parent: 0,
        name: "zeek".into(),
        ifname: String::new(),
        filter: "tcp port 80".into(),
        snaplen: 128,
    };
    seg.describe_output(0, &group);
    let member = OutputInfo {
        kind: OutputKind::Member,
        parent: 0,
        name: "zeek0".into(),
        ifname: "veth7".into(),
        filter: String::new(),
        snaplen: 0,
    };
    seg.describe_output(1, &member);
    // Two writers: readers sum them.
    seg.output_slot(1, 0).packets.add(3);
    seg.output_slot(1, 1).packets.add(4);
    seg.output_slot(1, 1).drops[1].add(2);
    seg.output_slot(0, 0).filtered_out.add(5);
    let r = seg.recorder_slot(0);
    r.describe("disk", "/data/fast");
    r.files_created.add(2);
    r.set_current_file("/data/fast/disk-1.pcap.part");
    r.queue_dropped_packets.add_shared(7);
    r.disk_error("writing: No space left on device");
    let t = seg.tap_slot(1);
    t.start(42, "passive-1", "udp");
    t.matched.add_shared(10);
    t.sent.add(8);
    t.lost.add_shared(2);

    let snap = SegmentReader::open(&dir).unwrap().snapshot();
    assert_eq!(snap.outputs.len(), 2);
    assert_eq!(snap.outputs[0].info, group);
    assert_eq!(snap.outputs[0].filtered_out, 5);
    assert_eq!(snap.outputs[1].info, member);
    assert_eq!(snap.outputs[1].packets, 7);
    assert_eq!(snap.outputs[1].drops[1], 2);
    assert_eq!(snap.recorders.len(), 1);
    let rec = &snap.recorders[0];
    assert_eq!(
        (rec.name.as_str(), rec.directory.as_str()),
        ("disk", "/data/fast")
    );
    assert_eq!(rec.current_file, "/data/fast/disk-1.pcap.part");
    assert_eq!((rec.files_created, rec.queue_dropped_packets), (2, 7));
    assert_eq!(rec.disk_errors, 1);
    assert!(rec.last_error.contains("No space"));
    assert_eq!(snap.taps.len(), 1);
    let tap = &snap.taps[0];
    assert_eq!((tap.id, tap.point.as_str()), (42, "passive-1"));
    assert_eq!((tap.matched, tap.sent, tap.lost), (10, 8, 2));
    t.end();
    assert!(SegmentReader::open(&dir)
        .unwrap()
        .snapshot()
        .taps
        .is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blocks_are_whole_cache_lines() {
    for (size, align) in [
        (size_of::<SegmentHeader>(), align_of::<SegmentHeader>()),
        (size_of::<DataplaneDesc>(), align_of::<DataplaneDesc>()),
        (size_of::<QueueDesc>(), align_of::<QueueDesc>()),
        (size_of::<QueueCounters>(), align_of::<QueueCounters>()),
        (size_of::<WorkerCounters>(), align_of::<WorkerCounters>()),
        (size_of::<LatencySummary>(), align_of::<LatencySummary>()),
        (size_of::<HopDesc>(), align_of::<HopDesc>()),
        (size_of::<HopCounters>(), align_of::<HopCounters>()),
        (size_of::<HopLatency>(), align_of::<HopLatency>()),
        (
            size_of::<FallbackCounters>(),
            align_of::<FallbackCounters>(),
        ),
    ] {
        assert_eq!(align, 64);
        assert_eq!(size % 64, 0);
    }
}

/// The sizes the diagram at the top of the file states.
#[test]
fn layout_matches_the_documented_diagram() {
    assert_eq!(size_of::<SegmentHeader>(), 128);
    assert_eq!(size_of::<DataplaneDesc>(), 64);
    assert_eq!(size_of::<QueueDesc>(), 128);
    assert_eq!(size_of::<QueueCounters>(), 192);
    assert_eq!(size_of::<WorkerCounters>(), 64);
    assert_eq!(size_of::<LatencySummary>(), 64);
    assert_eq!(size_of::<HopDesc>(), 64);
    assert_eq!(size_of::<HopCounters>(), 192);
    assert_eq!(size_of::<HopLatency>(), 256);
    assert_eq!(size_of::<FallbackCounters>(), 64);
    // The first header line is the version 1 header, word for word.
    assert_eq!(std::mem::offset_of!(SegmentHeader, version), 8);
    assert_eq!(std::mem::offset_of!(SegmentHeader, n_workers), 56);
    assert_eq!(std::mem::offset_of!(SegmentHeader, max_hops), 64);
    assert_eq!(std::mem::offset_of!(SegmentHeader, n_hop_writers), 72);
    assert_eq!(std::mem::offset_of!(HopLatency, summary), 0);

    let o = Offsets::new(&CHAIN);
    assert_eq!(o.dataplane, 128);
    assert_eq!(o.queue_descs, 192);
    assert_eq!(o.queues, 192 + 4 * 128);
    assert_eq!(o.workers, o.queues + 4 * 192);
    assert_eq!(o.latency, o.workers + 2 * 64);
    assert_eq!(o.hop_descs, o.latency + 2 * 64);
    assert_eq!(o.hops, o.hop_descs + 3 * 64);
    assert_eq!(o.hop_latency, o.hops + 3 * 2 * 192);
    assert_eq!(o.fallback, Some(o.hop_latency + 3 * 256));
    assert_eq!(o.len, o.hop_latency + 3 * 256 + 64);
    // Version 3: the same without the trailing fallback block.
    let v3 = Offsets::of_version(&CHAIN, 3);
    assert_eq!(v3.fallback, None);
    assert_eq!(v3.len, o.len - 64);
    assert_eq!(v3.taps, o.taps);
    for part in [
        o.dataplane,
        o.queue_descs,
        o.queues,
        o.workers,
        o.latency,
        o.hop_descs,
        o.hops,
        o.hop_latency,
        o.len,
    ] {
        assert_eq!(part % 64, 0);
    }
    // Without hops the hop parts are empty.
    let o = Offsets::new(&Layout {
        n_queues: 2,
        n_workers: 1,
        ..Layout::default()
    });
    assert_eq!(
        (o.hop_descs, o.hops, o.hop_latency),
        (o.output_descs, o.output_descs, o.output_descs)
    );
    assert_eq!(
        (o.outputs, o.recorders, o.taps, o.fallback),
        (o.len - 64, o.len - 64, o.len - 64, Some(o.len - 64))
    );

    // Hop blocks are indexed slot-major.
    let o = Offsets::new(&CHAIN);
    let seg = StatsSegment::in_memory_with(&CHAIN);
    let header: *const SegmentHeader = seg.header();
    let base = header as usize;
    let at = |slot, writer| {
        let p: *const HopCounters = &*seg.hop_slot(slot, writer);
        p as usize - base
    };
    assert_eq!(at(0, 0), o.hops);
    assert_eq!(at(1, 1), o.hops + 3 * 192);
    assert_eq!(at(2, 0), o.hops + 4 * 192);
    let lat: *const HopLatency = &*seg.hop_latency_slot(2);
    assert_eq!(lat as usize - base, o.hop_latency + 2 * 256);
}

#[test]
fn writer_and_reader_agree() {
    let dir = tmpdir("agree");
    let seg = StatsSegment::create(&dir, 2, 1, 0xfeed).unwrap();
    let q1 = QueueInfo {
        role: "inline-1".into(),
        ifname: "net2".into(),
        queue: 3,
        mode: "native-zerocopy".into(),
        worker: 1,
        hop: String::new(),
    };
    seg.describe_queue(0, &info("inline-2", "net3", 3, ""));
    seg.describe_queue(1, &q1);
    let q = seg.queue_slot(1);
    q.rx_packets.add(10);
    q.rx_packets.add(5);
    q.drops[0].add(2);
    seg.worker_slot(0).batches.add(7);
    seg.latency_slot(0).publish(&LatencyValues {
        count: 3,
        p50_ns: 100,
        p90_ns: 200,
        p99_ns: 300,
        p999_ns: 400,
        max_ns: 500,
        window_ns: 1_000_000_000,
    });
    seg.set_state(SegmentState::Running);
    let r = SegmentReader::open(&dir).unwrap();
    assert_eq!(r.layout(), seg.layout());
    let s = r.snapshot();
    assert_eq!(s.epoch, 0xfeed);
    assert_eq!(s.dataplane_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(s.dataplane_pid, std::process::id());
    assert_eq!(s.queues.len(), 2);
    assert_eq!(s.queues[1].info, q1);
    assert_eq!(s.queues[1].rx_packets, 15);
    assert_eq!(s.queues[1].drops[0], 2);
    assert_eq!(s.queues[0].rx_packets, 0);
    assert_eq!(s.workers[0].batches, 7);
    assert_eq!(s.workers[0].latency.unwrap().p99_ns, 300);
    assert!(s.hops.is_empty());
    assert!(s.is_live(std::time::Duration::from_secs(5)));
    // Writes after the reader mapped the file are visible to it.
    q.tx_packets.add(4);
    assert_eq!(r.snapshot().queues[1].tx_packets, 4);
    assert!(r.is_current());
    // A restarted dataplane replaces the file: the old reader notices.
    let _seg2 = StatsSegment::create(&dir, 1, 1, 0xbeef).unwrap();
    assert!(!r.is_current());
    assert_eq!(SegmentReader::open(&dir).unwrap().snapshot().epoch, 0xbeef);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn queue_slots_are_described_cleared_and_reused() {
    let dir = tmpdir("queues");
    let seg = StatsSegment::create_with(&dir, &CHAIN, 7).unwrap();
    let r = SegmentReader::open(&dir).unwrap();
    // Nothing described: every slot is unused.
    assert!(r.snapshot().queues.is_empty());
    seg.describe_queue(0, &info("inline-1", "i1", 0, ""));
    seg.describe_queue(2, &info("tool-a", "t1a", 0, "ids"));
    seg.describe_queue(3, &info("tool-b", "t1b", 0, "ids"));
    seg.queue_slot(2).rx_packets.add(9);
    seg.queue_slot(2).kernel.kernel_rx_ring_full.add(1);
    let s = r.snapshot();
    let roles: Vec<&str> = s.queues.iter().map(|q| q.info.role.as_str()).collect();
    assert_eq!(roles, ["inline-1", "tool-a", "tool-b"]);
    assert_eq!(s.queues[1].info.hop, "ids");
    assert_eq!(s.queues[1].rx_packets, 9);
    assert_eq!(s.queues[0].info.hop, "");

    // The hop is removed: its ports' slots are cleared and skipped.
    seg.clear_queue(2);
    seg.clear_queue(3);
    let s = r.snapshot();
    assert_eq!(s.queues.len(), 1);
    assert_eq!(s.queues[0].info.role, "inline-1");

    // A slot handed out again starts from zero with its new identity.
    seg.describe_queue(2, &info("tool-a", "t2a", 0, "waf"));
    let s = r.snapshot();
    assert_eq!(s.queues[1].info, info("tool-a", "t2a", 0, "waf"));
    assert_eq!(s.queues[1].rx_packets, 0);
    assert_eq!(s.queues[1].kernel.kernel_rx_ring_full, 0);
    // Rewriting a description in place keeps the counters.
    seg.queue_slot(2).tx_packets.add(3);
    let mut moved = info("tool-a", "t2a", 0, "waf");
    moved.worker = 1;
    seg.describe_queue(2, &moved);
    let s = r.snapshot();
    assert_eq!((s.queues[1].info.worker, s.queues[1].tx_packets), (1, 3));
    // Two writes per change keep the sequence even.
    assert_eq!(seg.m.queue_desc(2).seq.get() % 2, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hops_are_described_summed_over_writers_and_cleared() {
    let dir = tmpdir("hops");
    let seg = StatsSegment::create_with(&dir, &CHAIN, 1).unwrap();
    let r = SegmentReader::open(&dir).unwrap();
    assert_eq!(r.layout(), CHAIN);
    assert!(r.snapshot().hops.is_empty());

    // Slots and positions differ: readers sort by position.
    seg.describe_hop(
        2,
        Some(HopInfo {
            name: "ids".into(),
            position: 0,
        }),
    );
    seg.describe_hop(
        0,
        Some(HopInfo {
            name: "waf".into(),
            position: 1,
        }),
    );
    for (writer, n) in [(0, 10), (1, 32)] {
        let c = seg.hop_slot(2, writer);
        c.to_tool_packets.add(n);
        c.to_tool_bytes.add(n * 100);
        c.from_tool_packets.add(n - 1);
        c.from_tool_bytes.add((n - 1) * 100);
        c.bypassed_packets.add(2);
        c.bypassed_bytes.add(200);
        c.drops[3].add(1);
        c.heartbeats_sent.add(5);
        c.heartbeats_returned.add(3);
        c.heartbeats_late.add(1);
        c.heartbeats_lost.add(1);
    }
    seg.hop_slot(0, 1).to_tool_packets.add(4);
    let lat = seg.hop_latency_slot(2);
    lat.summary.publish(&LatencyValues {
        count: 2,
        p50_ns: 40_000,
        p99_ns: 90_000,
        ..LatencyValues::default()
    });
    for ns in [10_000, 10_001, 999_999_999, 5_000_000_000] {
        lat.record_cumulative(ns);
    }

    let s = r.snapshot();
    let names: Vec<(&str, u32, usize)> = s
        .hops
        .iter()
        .map(|h| (h.name.as_str(), h.position, h.slot))
        .collect();
    assert_eq!(names, [("ids", 0, 2), ("waf", 1, 0)]);
    let ids = &s.hops[0];
    assert_eq!(ids.to_tool_packets, 42);
    assert_eq!(ids.to_tool_bytes, 4200);
    assert_eq!(ids.from_tool_packets, 40);
    assert_eq!(ids.from_tool_bytes, 4000);
    assert_eq!((ids.bypassed_packets, ids.bypassed_bytes), (4, 400));
    assert_eq!(ids.drops, [0, 0, 0, 2, 0, 0, 0, 0]);
    assert_eq!(
        (
            ids.heartbeats_sent,
            ids.heartbeats_returned,
            ids.heartbeats_late,
            ids.heartbeats_lost
        ),
        (10, 6, 2, 2)
    );
    assert_eq!(ids.round_trip.unwrap().p99_ns, 90_000);
    let hist = ids.round_trip_histogram.unwrap();
    assert_eq!(hist.count, 4);
    assert_eq!(hist.sum_ns, 10_000 + 10_001 + 999_999_999 + 5_000_000_000);
    // 10 us is in the first bucket (le), 10.001 us in the second, just
    // under 1 s in the last finite one, 5 s in +Inf.
    assert_eq!(hist.buckets[0], 1);
    assert_eq!(hist.buckets[1], 1);
    assert_eq!(hist.buckets[HOP_RTT_BUCKETS - 2], 1);
    assert_eq!(hist.buckets[HOP_RTT_BUCKETS - 1], 1);
    let cum = hist.cumulative();
    assert_eq!(cum[0], 1);
    assert_eq!(cum[5], 2);
    assert_eq!(cum[HOP_RTT_BOUNDS_NS.len() - 1], 3);
    assert_eq!(s.hops[1].to_tool_packets, 4);
    assert_eq!(s.hops[1].round_trip_histogram.unwrap().count, 0);

    // The chain is reordered: only the descriptions change.
    seg.describe_hop(
        2,
        Some(HopInfo {
            name: "ids".into(),
            position: 1,
        }),
    );
    seg.describe_hop(
        0,
        Some(HopInfo {
            name: "waf".into(),
            position: 0,
        }),
    );
    let s = r.snapshot();
    assert_eq!(s.hops[0].name, "waf");
    assert_eq!(s.hops[1].to_tool_packets, 42);

    // "ids" is removed, and its slot later reused for a new hop.
    seg.describe_hop(2, None);
    assert_eq!(r.snapshot().hops.len(), 1);
    seg.clear_hop(2);
    seg.describe_hop(
        2,
        Some(HopInfo {
            name: "dlp".into(),
            position: 1,
        }),
    );
    let s = r.snapshot();
    let dlp = &s.hops[1];
    assert_eq!(dlp.name, "dlp");
    assert_eq!(
        (dlp.to_tool_packets, dlp.drops, dlp.heartbeats_lost),
        (0, [0; DROP_SLOTS], 0)
    );
    assert_eq!(dlp.round_trip.unwrap(), LatencyValues::default());
    assert_eq!(
        dlp.round_trip_histogram.unwrap(),
        HistogramValues::default()
    );
    // Clearing one slot leaves the others alone.
    assert_eq!(s.hops[0].to_tool_packets, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rtt_buckets_use_le_bounds() {
    assert_eq!(rtt_bucket(0), 0);
    assert_eq!(rtt_bucket(10_000), 0);
    assert_eq!(rtt_bucket(10_001), 1);
    assert_eq!(rtt_bucket(1_000_000), 6);
    assert_eq!(rtt_bucket(1_000_000_000), HOP_RTT_BOUNDS_NS.len() - 1);
    assert_eq!(rtt_bucket(u64::MAX), HOP_RTT_BUCKETS - 1);
    assert!(HOP_RTT_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn hop_names_are_cut_to_32_bytes() {
    let seg = StatsSegment::in_memory_with(&CHAIN);
    let long = "a-hop-name-that-is-much-longer-than-thirty-two-bytes";
    seg.describe_hop(
        1,
        Some(HopInfo {
            name: long.into(),
            position: 0,
        }),
    );
    seg.describe_queue(0, &info("tool-a", "t1a", 0, long));
    let s = seg.snapshot();
    assert_eq!(s.hops[0].name, &long[..HOP_NAME_BYTES]);
    assert_eq!(s.queues[0].info.hop, &long[..HOP_NAME_BYTES]);
}

#[test]
#[should_panic(expected = "out of range")]
fn hop_writers_are_bounds_checked() {
    let seg = StatsSegment::in_memory_with(&CHAIN);
    let _ = seg.hop_slot(0, CHAIN.n_hop_writers);
}

#[test]
fn readers_give_up_on_a_description_kept_busy() {
    let seg = StatsSegment::in_memory_with(&CHAIN);
    seg.describe_queue(0, &info("inline-1", "i1", 0, ""));
    seg.describe_hop(
        0,
        Some(HopInfo {
            name: "ids".into(),
            position: 0,
        }),
    );
    // A writer that died mid-write leaves the sequence odd: the slot is
    // left out rather than read torn.
    seg.m.queue_desc(0).seq.add(1);
    seg.m.hop_desc(0).seq.add(1);
    let s = seg.snapshot();
    assert!(s.queues.is_empty() && s.hops.is_empty());
}

#[test]
fn fallback_counters_round_trip_and_version_3_reads_without_them() {
    let dir = tmpdir("fallback");
    let seg = StatsSegment::create_with(&dir, &CHAIN, 1).unwrap();
    // Not in use until the dataplane publishes them.
    assert_eq!(SegmentReader::open(&dir).unwrap().snapshot().fallback, None);
    let v = FallbackSnapshot {
        forwarded: [4000, 17],
        dropped: [3, 0],
        lease_expiries: [2, 1],
        takeovers: 2,
    };
    seg.set_fallback(&v);
    assert_eq!(
        SegmentReader::open(&dir).unwrap().snapshot().fallback,
        Some(v)
    );
    // A version 3 segment: the same without the trailing block.
    let path = dir.join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..16].copy_from_slice(&3u64.to_le_bytes());
    bytes.truncate(bytes.len() - size_of::<FallbackCounters>());
    drop(seg);
    std::fs::write(&path, &bytes).unwrap();
    let s = SegmentReader::open(&dir).unwrap().snapshot();
    assert_eq!(s.fallback, None);
    assert_eq!(s.epoch, 1);
    // Version 4 with the block cut off is truncated.
    bytes[8..16].copy_from_slice(&4u64.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SegmentReader::open(&dir).unwrap_err(),
        SegmentError::Truncated { .. }
    ));
}

#[test]
fn reader_rejects_foreign_old_and_truncated_files() {
    let dir = tmpdir("reject");
    let open_err = || SegmentReader::open(&dir).unwrap_err();
    std::fs::write(dir.join(FILE_NAME), vec![0u8; 4096]).unwrap();
    assert!(matches!(open_err(), SegmentError::BadMagic { .. }));
    std::fs::write(dir.join(FILE_NAME), b"short").unwrap();
    assert!(matches!(open_err(), SegmentError::Truncated { .. }));

    // A version 1 segment (64-byte header, no hops): its first line is
    // enough to say so.
    let mut v1 = vec![0u8; 192];
    v1[..8].copy_from_slice(&MAGIC.to_le_bytes());
    v1[8..16].copy_from_slice(&1u64.to_le_bytes());
    std::fs::write(dir.join(FILE_NAME), &v1).unwrap();
    let e = open_err();
    assert!(matches!(e, SegmentError::Version { found: 1, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("layout version 1, this build reads 3 to 4"),
        "{msg}"
    );
    // A version 2 magic and version with a file too short for the header.
    v1[8..16].copy_from_slice(&VERSION.to_le_bytes());
    v1.truncate(100);
    std::fs::write(dir.join(FILE_NAME), &v1).unwrap();
    assert!(matches!(
        open_err(),
        SegmentError::Truncated { needed: 128, .. }
    ));

    // A header that claims more queues, or hop blocks, than the file
    // holds.
    let seg = StatsSegment::create_with(&dir, &CHAIN, 1).unwrap();
    assert!(SegmentReader::open(&dir).is_ok());
    seg.header().n_queues.set(1000);
    assert!(matches!(open_err(), SegmentError::Truncated { .. }));
    seg.header().n_queues.set(CHAIN.n_queues as u64);
    seg.header().n_hop_writers.set(3);
    assert!(matches!(open_err(), SegmentError::Truncated { .. }));
    // Absurd sizes are refused before any arithmetic.
    seg.header().max_hops.set(u64::MAX);
    let e = open_err();
    assert!(
        matches!(
            e,
            SegmentError::BadHeader {
                field: "max_hops",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("max_hops"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writers_refuse_sizes_readers_would_reject() {
    let dir = tmpdir("bounds");
    let e = StatsSegment::create_with(
        &dir,
        &Layout {
            max_hops: MAX_HOPS + 1,
            ..CHAIN
        },
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("max_hops"), "{e}");
    assert!(!dir.join(FILE_NAME).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strings_are_truncated_not_overflowed() {
    let seg = StatsSegment::in_memory(1, 0);
    seg.describe_queue(
        0,
        &QueueInfo {
            role: "a-role-name-longer-than-sixteen".into(),
            ifname: "eth0".into(),
            queue: 0,
            mode: "generic-copy".into(),
            worker: 0,
            hop: String::new(),
        },
    );
    let s = seg.snapshot();
    assert_eq!(s.queues[0].info.role, "a-role-name-long");
    assert_eq!(s.queues[0].info.ifname, "eth0");
}
