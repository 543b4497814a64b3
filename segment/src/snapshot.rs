//! Plain values of a segment at one moment: what readers (the sidecar, the
//! CLI, tests, benchmarks) get out of it. Counters of blocks with several
//! writers are summed; slots are read under their description's seqlock.

use crate::counter::{get_str, seq_read, unix_ns, Counter};
use crate::counters::{FallbackSnapshot, HistogramValues, LatencyValues, DROP_SLOTS};
use crate::layout::{OutputInfo, OutputKind, QueueInfo, SegmentState};
use crate::mapped::Mapped;

/// Plain values of one used queue slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The description; `info.hop` names the hop of a tool port.
    pub info: QueueInfo,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DROP_SLOTS],
    pub kernel_rx_dropped: u64,
    pub kernel_rx_invalid_descs: u64,
    pub kernel_tx_invalid_descs: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_rx_fill_ring_empty: u64,
    pub kernel_tx_ring_empty: u64,
}

/// Plain values of one worker slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub batches: u64,
    pub busy_loops: u64,
    pub idle_loops: u64,
    pub idle_waits: u64,
    pub latency: Option<LatencyValues>,
}

/// Plain values of one hop of the applied chain, summed over its writers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopSnapshot {
    /// The hop slot (stable while the hop stays in the chain).
    pub slot: usize,
    pub name: String,
    /// Index in the applied chain.
    pub position: u32,
    pub to_tool_packets: u64,
    pub to_tool_bytes: u64,
    pub from_tool_packets: u64,
    pub from_tool_bytes: u64,
    pub bypassed_packets: u64,
    pub bypassed_bytes: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DROP_SLOTS],
    pub heartbeats_sent: u64,
    pub heartbeats_returned: u64,
    pub heartbeats_late: u64,
    pub heartbeats_lost: u64,
    /// Round-trip percentiles over the judge's latest window.
    pub round_trip: Option<LatencyValues>,
    /// Round-trip histogram since the hop slot was cleared.
    pub round_trip_histogram: Option<HistogramValues>,
}

/// Plain values of one used output slot, summed over its writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSnapshot {
    pub slot: usize,
    pub info: OutputInfo,
    pub packets: u64,
    pub bytes: u64,
    pub filtered_out: u64,
    /// Indexed by `OutputDropReason as usize`.
    pub drops: [u64; DROP_SLOTS],
}

/// Plain values of one used recorder block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderSnapshot {
    pub index: usize,
    pub name: String,
    pub directory: String,
    /// Empty when no file is open.
    pub current_file: String,
    pub files_created: u64,
    pub files_completed: u64,
    pub files_migrated: u64,
    pub files_deleted: u64,
    pub bytes_written: u64,
    pub packets_written: u64,
    pub disk_errors: u64,
    pub last_error: String,
    pub last_error_unix_ns: u64,
    pub queue_dropped_packets: u64,
    pub queue_dropped_bytes: u64,
    pub disk_dropped_packets: u64,
}

/// Plain values of one running tap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSnapshot {
    pub id: u64,
    pub point: String,
    pub filter: String,
    pub started_unix_ns: u64,
    pub matched: u64,
    pub sent: u64,
    pub lost: u64,
}

/// Everything in a segment at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Version of the dataplane that wrote the segment.
    pub dataplane_version: String,
    pub dataplane_pid: u32,
    pub epoch: u64,
    pub started_unix_ns: u64,
    pub heartbeat_unix_ns: u64,
    pub state: u64,
    /// `LINK_DOWN_*` bits: configured ports without carrier.
    pub links_down: u64,
    /// Used queue slots, in slot order (unused slots are left out).
    pub queues: Vec<QueueSnapshot>,
    pub workers: Vec<WorkerSnapshot>,
    /// Hops of the applied chain, in chain order.
    pub hops: Vec<HopSnapshot>,
    /// Used output slots, in slot order (groups before their members).
    pub outputs: Vec<OutputSnapshot>,
    pub recorders: Vec<RecorderSnapshot>,
    /// Taps running now.
    pub taps: Vec<TapSnapshot>,
    /// The kernel fallback's counters as last copied by the dataplane;
    /// `None` without an inline pair (or from a version 3 segment).
    pub fallback: Option<FallbackSnapshot>,
}

impl Snapshot {
    /// The dataplane is running and its heartbeat is younger than `max_age`.
    pub fn is_live(&self, max_age: std::time::Duration) -> bool {
        self.state == SegmentState::Running as u64
            && unix_ns().saturating_sub(self.heartbeat_unix_ns) <= max_age.as_nanos() as u64
    }
}

/// Queue slot `i`, with its description and counters read under the
/// description's seqlock (a slot cleared and described again in between is
/// retried); `None` when unused or kept busy.
fn queue_snapshot(m: &Mapped, i: usize) -> Option<QueueSnapshot> {
    let d = m.queue_desc(i);
    let c = m.queue(i);
    seq_read(&d.seq, || {
        let info = d.load();
        if info.role.is_empty() {
            return None;
        }
        Some(QueueSnapshot {
            info,
            rx_packets: c.rx_packets.get(),
            rx_bytes: c.rx_bytes.get(),
            tx_packets: c.tx_packets.get(),
            tx_bytes: c.tx_bytes.get(),
            drops: std::array::from_fn(|d| c.drops[d].get()),
            kernel_rx_dropped: c.kernel.rx_dropped.get(),
            kernel_rx_invalid_descs: c.kernel.rx_invalid_descs.get(),
            kernel_tx_invalid_descs: c.kernel.tx_invalid_descs.get(),
            kernel_rx_ring_full: c.kernel.rx_ring_full.get(),
            kernel_rx_fill_ring_empty: c.kernel.rx_fill_ring_empty.get(),
            kernel_tx_ring_empty: c.kernel.tx_ring_empty.get(),
        })
    })
    .flatten()
}

/// Hop slot `slot`, summed over its writers, read under the description's
/// seqlock; `None` when unused or kept busy.
fn hop_snapshot(m: &Mapped, slot: usize) -> Option<HopSnapshot> {
    let d = m.hop_desc(slot);
    seq_read(&d.seq, || {
        if d.in_use.get() != 1 {
            return None;
        }
        let mut h = HopSnapshot {
            slot,
            name: get_str(&d.name),
            position: d.position.get() as u32,
            ..HopSnapshot::default()
        };
        let sum = |acc: &mut u64, c: &Counter| *acc = acc.wrapping_add(c.get());
        for w in 0..m.layout.n_hop_writers {
            let c = m.hop(slot, w);
            sum(&mut h.to_tool_packets, &c.to_tool_packets);
            sum(&mut h.to_tool_bytes, &c.to_tool_bytes);
            sum(&mut h.from_tool_packets, &c.from_tool_packets);
            sum(&mut h.from_tool_bytes, &c.from_tool_bytes);
            sum(&mut h.bypassed_packets, &c.bypassed_packets);
            sum(&mut h.bypassed_bytes, &c.bypassed_bytes);
            for (acc, c) in h.drops.iter_mut().zip(&c.drops) {
                sum(acc, c);
            }
            sum(&mut h.heartbeats_sent, &c.heartbeats_sent);
            sum(&mut h.heartbeats_returned, &c.heartbeats_returned);
            sum(&mut h.heartbeats_late, &c.heartbeats_late);
            sum(&mut h.heartbeats_lost, &c.heartbeats_lost);
        }
        let lat = m.hop_latency(slot);
        h.round_trip = lat.summary.read();
        h.round_trip_histogram = lat.histogram();
        Some(h)
    })
    .flatten()
}

fn output_snapshot(m: &Mapped, slot: usize) -> Option<OutputSnapshot> {
    let d = m.output_desc(slot);
    let info = seq_read(&d.seq, || {
        Some(OutputInfo {
            kind: OutputKind::from_word(d.kind.get())?,
            parent: d.parent.get() as u32,
            name: get_str(&d.name),
            ifname: get_str(&d.ifname),
            filter: get_str(&d.filter),
            snaplen: d.snaplen.get() as u32,
        })
    })
    .flatten()?;
    let mut o = OutputSnapshot {
        slot,
        info,
        packets: 0,
        bytes: 0,
        filtered_out: 0,
        drops: [0; DROP_SLOTS],
    };
    for w in 0..m.layout.n_output_writers {
        let c = m.output(slot, w);
        o.packets = o.packets.wrapping_add(c.packets.get());
        o.bytes = o.bytes.wrapping_add(c.bytes.get());
        o.filtered_out = o.filtered_out.wrapping_add(c.filtered_out.get());
        for (acc, c) in o.drops.iter_mut().zip(&c.drops) {
            *acc = acc.wrapping_add(c.get());
        }
    }
    Some(o)
}

fn recorder_snapshot(m: &Mapped, index: usize) -> Option<RecorderSnapshot> {
    let r = m.recorder(index);
    seq_read(&r.seq, || {
        if r.in_use.get() != 1 {
            return None;
        }
        Some(RecorderSnapshot {
            index,
            name: get_str(&r.name),
            directory: get_str(&r.directory),
            current_file: get_str(&r.current_file),
            files_created: r.files_created.get(),
            files_completed: r.files_completed.get(),
            files_migrated: r.files_migrated.get(),
            files_deleted: r.files_deleted.get(),
            bytes_written: r.bytes_written.get(),
            packets_written: r.packets_written.get(),
            disk_errors: r.disk_errors.get(),
            last_error: get_str(&r.last_error),
            last_error_unix_ns: r.last_error_unix_ns.get(),
            queue_dropped_packets: r.queue_dropped_packets.get(),
            queue_dropped_bytes: r.queue_dropped_bytes.get(),
            disk_dropped_packets: r.disk_dropped_packets.get(),
        })
    })
    .flatten()
}

fn tap_snapshot(m: &Mapped, index: usize) -> Option<TapSnapshot> {
    let t = m.tap(index);
    seq_read(&t.seq, || {
        let id = t.id.get();
        if id == 0 {
            return None;
        }
        Some(TapSnapshot {
            id,
            point: get_str(&t.point),
            filter: get_str(&t.filter),
            started_unix_ns: t.started_unix_ns.get(),
            matched: t.matched.get(),
            sent: t.sent.get(),
            lost: t.lost.get(),
        })
    })
    .flatten()
}

pub(crate) fn snapshot_of(m: &Mapped) -> Snapshot {
    let h = m.header();
    let d = m.dataplane();
    let mut hops: Vec<HopSnapshot> = (0..m.layout.max_hops)
        .filter_map(|slot| hop_snapshot(m, slot))
        .collect();
    hops.sort_by_key(|h| (h.position, h.slot));
    Snapshot {
        dataplane_version: get_str(&d.version),
        dataplane_pid: d.pid.get() as u32,
        epoch: h.epoch.get(),
        started_unix_ns: h.started_unix_ns.get(),
        heartbeat_unix_ns: h.heartbeat_unix_ns.get(),
        state: h.state.get(),
        links_down: h.links_down.get(),
        queues: (0..m.layout.n_queues)
            .filter_map(|i| queue_snapshot(m, i))
            .collect(),
        workers: (0..m.layout.n_workers)
            .map(|i| {
                let w = m.worker(i);
                WorkerSnapshot {
                    batches: w.batches.get(),
                    busy_loops: w.busy_loops.get(),
                    idle_loops: w.idle_loops.get(),
                    idle_waits: w.idle_waits.get(),
                    latency: m.latency(i).read(),
                }
            })
            .collect(),
        hops,
        outputs: (0..m.layout.n_outputs)
            .filter_map(|i| output_snapshot(m, i))
            .collect(),
        recorders: (0..m.layout.max_recorders)
            .filter_map(|i| recorder_snapshot(m, i))
            .collect(),
        taps: (0..m.layout.max_taps)
            .filter_map(|i| tap_snapshot(m, i))
            .collect(),
        fallback: m
            .fallback()
            .filter(|f| f.in_use.get() == 1)
            .map(|f| FallbackSnapshot {
                forwarded: [f.forwarded[0].get(), f.forwarded[1].get()],
                dropped: [f.dropped[0].get(), f.dropped[1].get()],
                lease_expiries: [f.lease_expiries[0].get(), f.lease_expiries[1].get()],
                takeovers: f.takeovers.get(),
            }),
    }
}
