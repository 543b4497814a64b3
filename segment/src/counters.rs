//! The counter blocks: what each writer counts into, in place in the
//! segment. Every field is a [`Counter`]; each block has a single writer
//! (see the crate documentation), which stores with plain load + store.

use crate::counter::{put_str, seq_read, seq_write, unix_ns, Counter};
use crate::layout::{OUTPUT_NAME_WORDS, OUTPUT_TEXT_WORDS};

/// Number of drop reasons with a slot (room to grow without a new version).
pub const DROP_SLOTS: usize = 8;

/// Mirror of the kernel's `XDP_STATISTICS` for one socket.
#[repr(C)]
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub rx_dropped: Counter,
    pub rx_invalid_descs: Counter,
    pub tx_invalid_descs: Counter,
    pub rx_ring_full: Counter,
    pub rx_fill_ring_empty: Counter,
    pub tx_ring_empty: Counter,
}

impl KernelCounters {
    pub(crate) fn clear(&self) {
        for c in [
            &self.rx_dropped,
            &self.rx_invalid_descs,
            &self.tx_invalid_descs,
            &self.rx_ring_full,
            &self.rx_fill_ring_empty,
            &self.tx_ring_empty,
        ] {
            c.set(0);
        }
    }
}

/// Counters of one (port, queue).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Indexed by `DropReason as usize`.
    pub drops: [Counter; DROP_SLOTS],
    pub kernel: KernelCounters,
}

impl QueueCounters {
    pub(crate) fn clear(&self) {
        for c in [
            &self.rx_packets,
            &self.rx_bytes,
            &self.tx_packets,
            &self.tx_bytes,
        ]
        .into_iter()
        .chain(&self.drops)
        {
            c.set(0);
        }
        self.kernel.clear();
    }
}

/// Counters of one worker thread.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Task polls that moved at least one frame.
    pub batches: Counter,
    /// Loop iterations that found work.
    pub busy_loops: Counter,
    /// Loop iterations that found none.
    pub idle_loops: Counter,
    /// Times the worker blocked in poll(2) (idle backoff).
    pub idle_waits: Counter,
}

/// Percentiles of a latency distribution over the last window (a worker's
/// batch processing time, a hop's heartbeat round-trip time), published as
/// a unit under a sequence counter.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct LatencySummary {
    /// Odd while the writer updates the fields below.
    pub seq: Counter,
    /// Samples in the window.
    pub count: Counter,
    pub p50_ns: Counter,
    pub p90_ns: Counter,
    pub p99_ns: Counter,
    pub p999_ns: Counter,
    pub max_ns: Counter,
    /// Length of the window the percentiles describe.
    pub window_ns: Counter,
}

/// Plain values of a [`LatencySummary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyValues {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub window_ns: u64,
}

impl LatencySummary {
    /// Publishes new values (single writer).
    pub fn publish(&self, v: &LatencyValues) {
        seq_write(&self.seq, || {
            self.count.set(v.count);
            self.p50_ns.set(v.p50_ns);
            self.p90_ns.set(v.p90_ns);
            self.p99_ns.set(v.p99_ns);
            self.p999_ns.set(v.p999_ns);
            self.max_ns.set(v.max_ns);
            self.window_ns.set(v.window_ns);
        });
    }

    /// A consistent copy, or `None` if the writer kept it busy.
    pub fn read(&self) -> Option<LatencyValues> {
        seq_read(&self.seq, || LatencyValues {
            count: self.count.get(),
            p50_ns: self.p50_ns.get(),
            p90_ns: self.p90_ns.get(),
            p99_ns: self.p99_ns.get(),
            p999_ns: self.p999_ns.get(),
            max_ns: self.max_ns.get(),
            window_ns: self.window_ns.get(),
        })
    }
}

/// The kernel fallback's counters (the per-CPU array map of the inline
/// ports' XDP program, summed over CPUs), copied from the map by the
/// dataplane's main thread with every heartbeat. `in_use` is 1 when the
/// dataplane runs an inline pair with the kernel fallback.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct FallbackCounters {
    pub in_use: Counter,
    /// Frames the fallback forwarded to the other inline port, per port
    /// (inline-1, inline-2: the port the frame arrived on).
    pub forwarded: [Counter; 2],
    /// Frames the fallback dropped (fail-closed), per port.
    pub dropped: [Counter; 2],
    /// Leases the kernel found expired, per port.
    pub lease_expiries: [Counter; 2],
    /// Takeovers: a worker renewing an expired lease (sum over queues).
    pub takeovers: Counter,
}

/// The values of a [`FallbackCounters`] block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallbackSnapshot {
    pub forwarded: [u64; 2],
    pub dropped: [u64; 2],
    pub lease_expiries: [u64; 2],
    pub takeovers: u64,
}

/// Counters of one hop, as counted by one chain task (one inline queue).
/// Readers sum the blocks of all writers.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HopCounters {
    /// Frames sent to the tool (both directions together).
    pub to_tool_packets: Counter,
    pub to_tool_bytes: Counter,
    /// Frames received back from the tool (heartbeats excluded).
    pub from_tool_packets: Counter,
    pub from_tool_bytes: Counter,
    /// Frames that went around the tool while the hop was bypassed.
    pub bypassed_packets: Counter,
    pub bypassed_bytes: Counter,
    /// Indexed by `DropReason as usize`.
    pub drops: [Counter; DROP_SLOTS],
    pub heartbeats_sent: Counter,
    /// Came back within their deadline.
    pub heartbeats_returned: Counter,
    /// Came back after their deadline.
    pub heartbeats_late: Counter,
    /// Never came back.
    pub heartbeats_lost: Counter,
}

impl HopCounters {
    pub(crate) fn clear(&self) {
        for c in [
            &self.to_tool_packets,
            &self.to_tool_bytes,
            &self.from_tool_packets,
            &self.from_tool_bytes,
            &self.bypassed_packets,
            &self.bypassed_bytes,
        ]
        .into_iter()
        .chain(&self.drops)
        .chain([
            &self.heartbeats_sent,
            &self.heartbeats_returned,
            &self.heartbeats_late,
            &self.heartbeats_lost,
        ]) {
            c.set(0);
        }
    }
}

/// Inclusive upper bounds of the finite buckets of a hop's round-trip-time
/// histogram, in nanoseconds: 10 us to 1 s in 1-2-5 steps. A last bucket,
/// +Inf, takes the samples above 1 s.
pub const HOP_RTT_BOUNDS_NS: [u64; 16] = [
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];
/// Buckets of a hop's round-trip-time histogram: one per bound, then +Inf.
pub const HOP_RTT_BUCKETS: usize = HOP_RTT_BOUNDS_NS.len() + 1;

/// Heartbeat round-trip time of one hop. Single writer: the heartbeat judge.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HopLatency {
    /// Percentiles over the judge's latest window.
    pub summary: LatencySummary,
    /// Odd while [`HopLatency::record_cumulative`] updates the fields below.
    pub(crate) hist_seq: Counter,
    /// Samples since the hop slot was last cleared.
    pub count: Counter,
    /// Sum of those samples, in nanoseconds.
    pub sum_ns: Counter,
    /// Samples per bucket (not cumulative over buckets: bucket `i` counts
    /// the samples in `(HOP_RTT_BOUNDS_NS[i-1], HOP_RTT_BOUNDS_NS[i]]`, the
    /// last one those above the last bound). Readers build Prometheus-style
    /// cumulative (`le`) counts, see [`HistogramValues::cumulative`].
    pub buckets: [Counter; HOP_RTT_BUCKETS],
}

/// Plain values of the histogram of a [`HopLatency`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramValues {
    pub count: u64,
    pub sum_ns: u64,
    /// Samples per bucket, as in [`HopLatency::buckets`].
    pub buckets: [u64; HOP_RTT_BUCKETS],
}

impl HistogramValues {
    /// Samples less than or equal to each bound of [`HOP_RTT_BOUNDS_NS`]
    /// (Prometheus `le`); the +Inf bucket is `count`.
    pub fn cumulative(&self) -> [u64; HOP_RTT_BOUNDS_NS.len()] {
        let mut acc = 0u64;
        std::array::from_fn(|i| {
            acc = acc.wrapping_add(self.buckets[i]);
            acc
        })
    }
}

/// The bucket of [`HOP_RTT_BOUNDS_NS`] a sample falls in (`le` semantics).
pub(crate) fn rtt_bucket(ns: u64) -> usize {
    HOP_RTT_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

impl HopLatency {
    /// Adds one round-trip sample to the cumulative histogram (single
    /// writer; plain stores under the histogram's sequence counter, so a
    /// reader sees `count`, `sum_ns` and the buckets agree).
    pub fn record_cumulative(&self, ns: u64) {
        seq_write(&self.hist_seq, || {
            self.buckets[rtt_bucket(ns)].add(1);
            self.sum_ns.add(ns);
            self.count.add(1);
        });
    }

    /// A consistent copy of the histogram, or `None` if the writer kept it
    /// busy.
    pub fn histogram(&self) -> Option<HistogramValues> {
        seq_read(&self.hist_seq, || HistogramValues {
            count: self.count.get(),
            sum_ns: self.sum_ns.get(),
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
        })
    }

    pub(crate) fn clear(&self) {
        self.summary.publish(&LatencyValues::default());
        seq_write(&self.hist_seq, || {
            for c in [&self.count, &self.sum_ns].into_iter().chain(&self.buckets) {
                c.set(0);
            }
        });
    }
}

/// Counters of one output slot, as counted by one capture task. Readers sum
/// the blocks of all writers.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Accepted (group, recorder) or delivered (member) packets.
    pub packets: Counter,
    pub bytes: Counter,
    /// Rejected by the filter.
    pub filtered_out: Counter,
    /// Indexed by `OutputDropReason as usize`.
    pub drops: [Counter; DROP_SLOTS],
}

/// The recorder's disk side: one block per recorder, written by its writer
/// thread (but `queue_dropped_*`, counted by the capture tasks with
/// [`Counter::add_shared`]).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct RecorderCounters {
    /// Guards the texts below.
    pub(crate) seq: Counter,
    /// 1 while the block describes a recorder.
    pub(crate) in_use: Counter,
    pub files_created: Counter,
    /// Files completed (closed and renamed to their final name).
    pub files_completed: Counter,
    /// Completed files moved to the bulk directory.
    pub files_migrated: Counter,
    /// Files deleted by retention.
    pub files_deleted: Counter,
    /// Bytes written to files, pcap headers included.
    pub bytes_written: Counter,
    pub packets_written: Counter,
    /// Failed file operations (create, write, sync, rename, migrate, delete).
    pub disk_errors: Counter,
    pub last_error_unix_ns: Counter,
    /// Packets (and their bytes) the writer's queue could not take.
    pub queue_dropped_packets: Counter,
    pub queue_dropped_bytes: Counter,
    /// Packets lost because the disk failed (dropped while recording was
    /// suspended by a disk error).
    pub disk_dropped_packets: Counter,
    _reserved: [Counter; 3],
    pub(crate) name: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    pub(crate) directory: [Counter; OUTPUT_TEXT_WORDS],
    pub(crate) current_file: [Counter; OUTPUT_TEXT_WORDS],
    pub(crate) last_error: [Counter; OUTPUT_TEXT_WORDS],
}

impl RecorderCounters {
    /// Sets the name and directory and marks the block used (at start).
    pub fn describe(&self, name: &str, directory: &str) {
        seq_write(&self.seq, || {
            put_str(&self.name, name);
            put_str(&self.directory, directory);
            self.in_use.set(1);
        });
    }

    /// The file being written now (empty: none). Writer thread only.
    pub fn set_current_file(&self, path: &str) {
        seq_write(&self.seq, || put_str(&self.current_file, path));
    }

    /// Counts a disk error and keeps its text. Writer thread only.
    pub fn disk_error(&self, text: &str) {
        seq_write(&self.seq, || {
            self.disk_errors.add(1);
            self.last_error_unix_ns.set(unix_ns());
            put_str(&self.last_error, text);
        });
    }
}

/// A live tap: one block per tap slot. `matched` and `lost` are counted by
/// the capture and chain tasks ([`Counter::add_shared`]), `sent` by the
/// thread that streams the tap.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct TapCounters {
    pub(crate) seq: Counter,
    /// The tap's id while the slot is used; 0: unused.
    pub(crate) id: Counter,
    pub(crate) started_unix_ns: Counter,
    pub matched: Counter,
    pub sent: Counter,
    /// Matching packets discarded because the client (or the stream to
    /// it) was slow.
    pub lost: Counter,
    _reserved: [Counter; 2],
    pub(crate) point: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    pub(crate) filter: [Counter; OUTPUT_TEXT_WORDS],
}

impl TapCounters {
    /// Marks the slot used by tap `id` (non-zero) and zeroes its counters.
    pub fn start(&self, id: u64, point: &str, filter: &str) {
        seq_write(&self.seq, || {
            for c in [&self.matched, &self.sent, &self.lost] {
                c.set(0);
            }
            put_str(&self.point, point);
            put_str(&self.filter, filter);
            self.started_unix_ns.set(unix_ns());
            self.id.set(id);
        });
    }

    /// Frees the slot.
    pub fn end(&self) {
        seq_write(&self.seq, || self.id.set(0));
    }
}
