//! Plain values of a segment at one moment: what readers (the sidecar, the
//! CLI, tests, benchmarks) get out of it. Counters of blocks with several
//! writers are summed; slots are read under their description's seqlock.

use crate::counter::{get_str, seq_read, unix_ns};
use crate::counters::{
    FallbackSnapshot, HistogramValues, HopCounts, LatencyValues, OutputCounts, PortCounts,
    RecorderCounts, TapCounts,
};
use crate::layout::{OutputInfo, OutputKind, QueueInfo, SegmentState};
use crate::mapped::Mapped;

/// Derefs a snapshot to its counters, so readers write `q.rx_packets`.
macro_rules! counts_deref {
    ($snap:ty => $counts:ty) => {
        impl std::ops::Deref for $snap {
            type Target = $counts;
            fn deref(&self) -> &$counts {
                &self.counts
            }
        }
        impl std::ops::DerefMut for $snap {
            fn deref_mut(&mut self) -> &mut $counts {
                &mut self.counts
            }
        }
    };
}

/// Plain values of one used queue slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The description; `info.hop` names the hop of a tool port.
    pub info: QueueInfo,
    /// The port family's counters (the snapshot derefs to them).
    pub counts: PortCounts,
}
counts_deref!(QueueSnapshot => PortCounts);

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
    /// The hop family's counters (the snapshot derefs to them).
    pub counts: HopCounts,
    /// Round-trip percentiles over the judge's latest window.
    pub round_trip: Option<LatencyValues>,
    /// Round-trip histogram since the hop slot was cleared.
    pub round_trip_histogram: Option<HistogramValues>,
}
counts_deref!(HopSnapshot => HopCounts);

/// Plain values of one used output slot, summed over its writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSnapshot {
    pub slot: usize,
    pub info: OutputInfo,
    /// The output family's counters (the snapshot derefs to them).
    pub counts: OutputCounts,
}
counts_deref!(OutputSnapshot => OutputCounts);

/// Plain values of one used recorder block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderSnapshot {
    pub index: usize,
    pub name: String,
    pub directory: String,
    /// Empty when no file is open.
    pub current_file: String,
    pub last_error: String,
    /// The recorder family's counters (the snapshot derefs to them).
    pub counts: RecorderCounts,
}
counts_deref!(RecorderSnapshot => RecorderCounts);

/// Plain values of one running tap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSnapshot {
    pub id: u64,
    pub point: String,
    pub filter: String,
    pub started_unix_ns: u64,
    /// The tap family's counters (the snapshot derefs to them).
    pub counts: TapCounts,
}
counts_deref!(TapSnapshot => TapCounts);

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
            counts: c.values(),
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
        for w in 0..m.layout.n_hop_writers {
            m.hop(slot, w).add_to(&mut h.counts);
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
        counts: OutputCounts::default(),
    };
    for w in 0..m.layout.n_output_writers {
        m.output(slot, w).add_to(&mut o.counts);
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
            last_error: get_str(&r.last_error),
            counts: r.disk.values(),
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
            counts: t.stream.values(),
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
