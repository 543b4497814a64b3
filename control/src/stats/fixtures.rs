//! Snapshots for tests, shared by the `Stats` mapping's, the metrics' and
//! `GetInfo`'s tests.

#![allow(clippy::field_reassign_with_default)]

use tapline_segment::counters::{
    HopCounts, KernelCounts, OutputCounts, PortCounts, RecorderCounts, TapCounts,
};
use tapline_segment::{
    HistogramValues, HopSnapshot, LatencyValues, OutputDropReason, OutputInfo, OutputKind,
    OutputSnapshot, QueueInfo, QueueSnapshot, RecorderSnapshot, SegmentState, Snapshot,
    TapSnapshot, WorkerSnapshot, DROP_SLOTS, HOP_RTT_BUCKETS,
};

pub(crate) fn queue(role: &str, ifname: &str, queue: u32, rx: u64) -> QueueSnapshot {
    QueueSnapshot {
        info: QueueInfo {
            role: role.into(),
            ifname: ifname.into(),
            queue,
            mode: "native-zero-copy".into(),
            worker: 0,
            hop: String::new(),
        },
        counts: PortCounts {
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: rx / 2,
            tx_bytes: rx * 50,
            drops: [rx / 10, 0, 0, 0, 0, 0, 0, 0],
            kernel: KernelCounts {
                kernel_rx_dropped: 1,
                kernel_rx_invalid_descs: 2,
                kernel_tx_invalid_descs: 3,
                kernel_rx_ring_full: 4,
                kernel_rx_fill_ring_empty: 5,
                kernel_tx_ring_empty: 6,
            },
        },
    }
}

pub(crate) fn worker(batches: u64) -> WorkerSnapshot {
    WorkerSnapshot {
        batches,
        busy_loops: batches,
        idle_loops: batches * 3,
        idle_waits: batches / 2,
        latency: Some(LatencyValues {
            count: 10,
            p50_ns: 1_500,
            p90_ns: 2_000,
            p99_ns: 5_000,
            p999_ns: 9_000,
            max_ns: 12_000,
            window_ns: 1_000_000_000,
        }),
    }
}

/// inline-1/inline-2 with two queues each, passive-1 with one; two
/// workers. Slot order as the dataplane writes it.
/// Two bridge queue pairs and one passive queue; tasks dealt to two
/// workers as the dataplane does (bridge q0 -> 0, q1 -> 1, capture -> 0).
pub(crate) fn snapshot(epoch: u64, rx: u64) -> Snapshot {
    let mut s = Snapshot {
        dataplane_version: "0.1.0".into(),
        dataplane_pid: 1,
        epoch,
        started_unix_ns: 1_800_000_000_500_000_000,
        heartbeat_unix_ns: 1_800_000_100_000_000_000,
        state: SegmentState::Running as u64,
        links_down: 0,
        queues: vec![
            queue("inline-1", "i1", 0, rx),
            queue("inline-2", "i2", 0, rx * 2),
            queue("inline-1", "i1", 1, rx * 3),
            queue("inline-2", "i2", 1, rx * 4),
            queue("passive-1", "p1", 0, rx * 5),
        ],
        workers: vec![worker(rx), worker(rx * 2)],
        hops: Vec::new(),
        outputs: Vec::new(),
        recorders: Vec::new(),
        taps: Vec::new(),
        fallback: None,
    };
    for (q, w) in s.queues.iter_mut().zip([0, 0, 1, 1, 0]) {
        q.info.worker = w;
    }
    s
}

/// A tool port queue of hop `hop`.
pub(crate) fn tool_queue(
    role: &str,
    ifname: &str,
    queue: u32,
    hop: &str,
    rx: u64,
) -> QueueSnapshot {
    let mut q = self::queue(role, ifname, queue, rx);
    q.info.hop = hop.into();
    q
}

/// A hop of the chain, its counters scaled by `n`.
pub(crate) fn hop(name: &str, position: u32, slot: usize, n: u64) -> HopSnapshot {
    let mut buckets = [0u64; HOP_RTT_BUCKETS];
    buckets[0] = n; // <= 10 us
    buckets[3] = n; // (50 us, 100 us]
    buckets[HOP_RTT_BUCKETS - 1] = 1; // > 1 s
                                      // Field by field, so that a counter added to the family needs no
                                      // change here (it stays 0).
    let mut counts = HopCounts::default();
    counts.to_tool_packets = n * 10;
    counts.to_tool_bytes = n * 1000;
    counts.from_tool_packets = n * 9;
    counts.from_tool_bytes = n * 900;
    counts.bypassed_packets = n;
    counts.bypassed_bytes = n * 100;
    counts.drops = [0, n, 0, 2, 0, 0, 0, 0];
    counts.heartbeats_sent = n * 4;
    counts.heartbeats_returned = n * 3;
    counts.heartbeats_late = n;
    counts.heartbeats_lost = 1;
    HopSnapshot {
        slot,
        name: name.into(),
        position,
        counts,
        round_trip: Some(LatencyValues {
            count: 5,
            p50_ns: 45_000,
            p90_ns: 80_000,
            p99_ns: 95_000,
            p999_ns: 99_000,
            max_ns: 99_500,
            window_ns: 1_000_000_000,
        }),
        round_trip_histogram: Some(HistogramValues {
            count: 2 * n + 1,
            sum_ns: n * 60_000 + 2_000_000_000,
            buckets,
        }),
    }
}

/// [`snapshot`] with a chain of two hops, "waf" (slot 0) after "ids"
/// (slot 1); the tool ports' slots are in neither chain nor role order.
pub(crate) fn chain_snapshot(epoch: u64, rx: u64) -> Snapshot {
    let mut s = snapshot(epoch, rx);
    s.queues.extend([
        tool_queue("tool-b", "t2b", 0, "waf", rx * 6),
        tool_queue("tool-a", "t1a", 0, "ids", rx * 7),
        tool_queue("tool-b", "t1b", 0, "ids", rx * 8),
        tool_queue("tool-a", "t2a", 0, "waf", rx * 9),
    ]);
    s.hops = vec![hop("ids", 0, 1, rx), hop("waf", 1, 0, rx * 2)];
    s
}

/// An output slot, its counters scaled by `n`: `packets` and
/// `filtered_out` as given times `n`, 100 bytes a packet, and `drops`
/// (by `OutputDropReason` slot) times `n`.
pub(crate) fn output(
    slot: usize,
    kind: OutputKind,
    parent: u32,
    name: &str,
    n: u64,
    (packets, filtered_out): (u64, u64),
    drops: &[(OutputDropReason, u64)],
) -> OutputSnapshot {
    let mut d = [0u64; DROP_SLOTS];
    for &(r, k) in drops {
        d[r as usize] = k * n;
    }
    OutputSnapshot {
        slot,
        info: OutputInfo {
            kind,
            parent,
            name: name.into(),
            ifname: if kind == OutputKind::Member {
                name.into()
            } else {
                String::new()
            },
            filter: String::new(),
            snaplen: 0,
        },
        counts: OutputCounts {
            packets: packets * n,
            bytes: packets * n * 100,
            filtered_out: filtered_out * n,
            drops: d,
        },
    }
}

/// [`snapshot`] with two output groups, "ids" (members "o1" and "o2",
/// filter "tcp port 80") and "zeek" (member "o3", snap length 128), a
/// recorder "disk" (filter "udp") and two live taps (ids 9 and 4, in
/// slot order), their counters scaled by `n`. Slots as the dataplane
/// describes them: groups, members group by group, recorder stages.
pub(crate) fn outputs_snapshot(epoch: u64, n: u64) -> Snapshot {
    use OutputDropReason::{MemberDown, QueueFull, TxRingFull};
    use OutputKind::{Group, Member, Recorder};
    let mut s = snapshot(epoch, n);
    s.outputs = vec![
        output(0, Group, 0, "ids", n, (10, 2), &[]),
        output(1, Group, 1, "zeek", n, (5, 0), &[]),
        output(2, Member, 0, "o1", n, (5, 0), &[(TxRingFull, 1)]),
        output(3, Member, 0, "o2", n, (3, 0), &[(MemberDown, 1)]),
        output(4, Member, 1, "o3", n, (5, 0), &[]),
        output(5, Recorder, 0, "disk", n, (4, 8), &[(QueueFull, 1)]),
    ];
    s.outputs[0].info.filter = "tcp port 80".into();
    s.outputs[1].info.snaplen = 128;
    s.outputs[5].info.filter = "udp".into();
    s.outputs[5].info.snaplen = 96;
    s.recorders = vec![RecorderSnapshot {
        index: 0,
        name: "disk".into(),
        directory: "/data/pcap".into(),
        current_file: "/data/pcap/disk-000001.pcap.part".into(),
        last_error: "writing /data/pcap/disk-000001.pcap.part: No space left on device".into(),
        counts: RecorderCounts {
            files_created: 3 * n,
            files_completed: 2 * n,
            files_migrated: n,
            files_deleted: n,
            bytes_written: 1000 * n,
            packets_written: 4 * n,
            disk_errors: 2,
            last_error_unix_ns: 1_800_000_050_250_000_000,
            queue_dropped_packets: n,
            queue_dropped_bytes: 100 * n,
            disk_dropped_packets: 2 * n,
        },
    }];
    s.taps = [(9, "passive-1 rx", "icmp"), (4, "ids/a both", "")]
        .into_iter()
        .map(|(id, point, filter)| TapSnapshot {
            id,
            point: point.into(),
            filter: filter.into(),
            started_unix_ns: 1_800_000_090_000_000_000 + id,
            counts: TapCounts {
                matched: 10 * n + id,
                sent: 9 * n,
                lost: n,
            },
        })
        .collect();
    s
}
