//! The counter blocks: what each writer counts into, in place in the
//! segment. Every field is a [`Counter`]; each block has a single writer
//! (see the crate documentation), which stores with plain load + store.

use crate::counter::{put_str, seq_read, seq_write, unix_ns, Counter};
use crate::families::{Label, Metric, Scope};
use crate::layout::{OUTPUT_NAME_WORDS, OUTPUT_TEXT_WORDS};

/// Number of drop reasons with a slot (room to grow without a new version).
pub const DROP_SLOTS: usize = 8;

counter_family! {
    /// Mirror of the kernel's `XDP_STATISTICS` for one socket (nested in
    /// [`QueueCounters`]; its series carry the port's labels).
    #[repr(C)]
    block KernelCounters => values KernelCounts, family KERNEL, labels [
        Label::new("port"), Label::new("ifname"), Label::new("queue"), Label::optional("hop"),
    ];
    kernel_rx_dropped: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_rx_dropped_total",
        "Packets the kernel dropped on the AF_XDP socket for reasons other than the ones below (XDP_STATISTICS rx_dropped).",
    )], column none;
    kernel_rx_invalid_descs: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_rx_invalid_descs_total",
        "Invalid descriptors the kernel found on the fill or RX side (XDP_STATISTICS rx_invalid_descs).",
    )], column none;
    kernel_tx_invalid_descs: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_tx_invalid_descs_total",
        "Invalid descriptors the kernel found on the TX ring (XDP_STATISTICS tx_invalid_descs).",
    )], column none;
    kernel_rx_ring_full: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_rx_ring_full_total",
        "Packets the kernel dropped because the socket's RX ring was full: the worker is too slow (XDP_STATISTICS rx_ring_full).",
    )], column none;
    kernel_rx_fill_ring_empty: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_rx_fill_ring_empty_total",
        "Times the fill ring was empty when the kernel needed a buffer (XDP_STATISTICS rx_fill_ring_empty_descs).",
    )], column none;
    kernel_tx_ring_empty: Counter = metrics [Metric::counter(
        "tapline_xdp_kernel_tx_ring_empty_total",
        "Times the kernel found the TX ring empty when woken to transmit (XDP_STATISTICS tx_ring_empty_descs).",
    )], column none;
}

counter_family! {
    /// Counters of one (port, queue): the port family.
    #[repr(C, align(64))]
    block QueueCounters => values PortCounts, family PORT, labels [
        Label::new("port"), Label::new("ifname"), Label::new("queue"), Label::optional("hop"),
    ];
    rx_packets: Counter = metrics [Metric::counter(
        "tapline_port_rx_packets_total",
        "Packets received on the port's queue.",
    )], column ">RX PACKETS";
    rx_bytes: Counter = metrics [Metric::counter(
        "tapline_port_rx_bytes_total",
        "Bytes of the packets received on the port's queue (Ethernet header included, FCS excluded).",
    )], column ">RX BYTES";
    tx_packets: Counter = metrics [Metric::counter(
        "tapline_port_tx_packets_total",
        "Packets transmitted on the port's queue.",
    )], column ">TX PACKETS";
    tx_bytes: Counter = metrics [Metric::counter(
        "tapline_port_tx_bytes_total",
        "Bytes of the packets transmitted on the port's queue.",
    )], column ">TX BYTES";
    /// Indexed by `DropReason as usize`.
    drops: [Counter; DROP_SLOTS] = metrics [Metric::counter(
        "tapline_port_dropped_packets_total",
        "Packets received on the port's queue that the dataplane dropped, by reason (tx_ring_full: the egress port's TX ring was full; hop_down: the hop is down and its failure action is drop; heartbeat_from_wire: a heartbeat-shaped frame arrived on inline-1 or inline-2; heartbeat_invalid: a heartbeat frame came back from a tool with a wrong tag or hop id).",
    )], column ">DROPS";
    /// The kernel's counters of the queue's socket ([`KERNEL`]).
    kernel: KernelCounters = metrics [], column ">KERNEL DROPS";
}

/// A queue's values read as one flat set (`q.kernel_rx_dropped` beside
/// `q.rx_packets`, as readers wrote before the kernel counters were a
/// family of their own).
impl std::ops::Deref for PortCounts {
    type Target = KernelCounts;
    fn deref(&self) -> &KernelCounts {
        &self.kernel
    }
}

impl std::ops::DerefMut for PortCounts {
    fn deref_mut(&mut self) -> &mut KernelCounts {
        &mut self.kernel
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

hop_counter_fields!(counter_family! {
    /// Counters of one hop, as counted by one chain task (one inline
    /// queue). Readers sum the blocks of all writers.
    #[repr(C, align(64))]
    block HopCounters => values HopCounts, family HOP, labels [Label::new("hop")];
});

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

counter_family! {
    /// Counters of one output slot (a group, a member, a recorder's filter
    /// stage), as counted by one capture task. Readers sum the blocks of all
    /// writers.
    #[repr(C, align(64))]
    block OutputCounters => values OutputCounts, family OUTPUT, labels [];
    /// Accepted (group, recorder) or delivered (member) packets.
    packets: Counter = metrics [
        Metric::counter(
            "tapline_output_group_packets_total",
            "Packets of the passive port that the output group's filter accepted, each counted once whatever member it was sent to (delivered to a member or dropped there).",
        ).scoped(Scope::Group),
        Metric::counter(
            "tapline_output_member_packets_total",
            "Packets handed to the output group member's TX ring.",
        ).scoped(Scope::Member),
        Metric::counter(
            "tapline_recorder_accepted_packets_total",
            "Packets of the passive port that the recorder's filter accepted and its queue took (the ones its queue could not take are in tapline_recorder_queue_dropped_packets_total).",
        ).scoped(Scope::RecorderStage),
    ], column ">PACKETS";
    bytes: Counter = metrics [
        Metric::counter(
            "tapline_output_group_bytes_total",
            "Bytes of the packets the output group's filter accepted (whole packets, before the snap length).",
        ).scoped(Scope::Group),
        Metric::counter(
            "tapline_output_member_bytes_total",
            "Bytes of the packets handed to the output group member (after the group's snap length).",
        ).scoped(Scope::Member),
        Metric::counter(
            "tapline_recorder_accepted_bytes_total",
            "Bytes of the packets the recorder's queue took (whole packets, before the snap length).",
        ).scoped(Scope::RecorderStage),
    ], column ">BYTES";
    /// Rejected by the filter.
    filtered_out: Counter = metrics [
        Metric::counter(
            "tapline_output_group_filtered_out_packets_total",
            "Packets of the passive port that the output group's filter rejected.",
        ).scoped(Scope::Group),
        Metric::counter(
            "tapline_recorder_filtered_out_packets_total",
            "Packets of the passive port that the recorder's filter rejected.",
        ).scoped(Scope::RecorderStage),
    ], column ">FILTERED OUT";
    /// Indexed by `OutputDropReason as usize`. A group's drops are its
    /// members' (no family of their own).
    drops: [Counter; DROP_SLOTS] = metrics [
        Metric::counter(
            "tapline_output_member_dropped_packets_total",
            "Packets the output group picked for the member that it could not take, by reason (tx_ring_full: the member's TX ring was full or its share of buffers in flight, the member is slower than the capture; member_down: the member's link was down; tx_error: the kernel refused to transmit on it).",
        ).scoped(Scope::Member),
    ], column ">DROPS";
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
    /// The counters ([`RECORDER`]); the block derefs to them.
    pub disk: RecorderDiskCounters,
    _reserved: [Counter; 3],
    pub(crate) name: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    pub(crate) directory: [Counter; OUTPUT_TEXT_WORDS],
    pub(crate) current_file: [Counter; OUTPUT_TEXT_WORDS],
    pub(crate) last_error: [Counter; OUTPUT_TEXT_WORDS],
}

impl std::ops::Deref for RecorderCounters {
    type Target = RecorderDiskCounters;
    fn deref(&self) -> &RecorderDiskCounters {
        &self.disk
    }
}

counter_family! {
    /// The recorder's disk-side counters, inside its [`RecorderCounters`]
    /// block.
    #[repr(C)]
    block RecorderDiskCounters => values RecorderCounts, family RECORDER, labels [
        Label::new("recorder"),
    ];
    files_created: Counter = metrics [Metric::counter(
        "tapline_recorder_files_created_total",
        "Files the recorder created.",
    )], column ">FILES";
    /// Files completed (closed and renamed to their final name).
    files_completed: Counter = metrics [Metric::counter(
        "tapline_recorder_files_completed_total",
        "Files the recorder completed (closed and renamed to their final name).",
    )], column none;
    /// Completed files moved to the bulk directory.
    files_migrated: Counter = metrics [Metric::counter(
        "tapline_recorder_files_migrated_total",
        "Completed files the recorder moved to its bulk directory.",
    )], column none;
    /// Files deleted by retention.
    files_deleted: Counter = metrics [Metric::counter(
        "tapline_recorder_files_deleted_total",
        "Files the recorder's retention deleted.",
    )], column none;
    /// Bytes written to files, pcap headers included.
    bytes_written: Counter = metrics [Metric::counter(
        "tapline_recorder_bytes_written_total",
        "Bytes the recorder wrote to files (pcap headers included).",
    )], column ">BYTES WRITTEN";
    packets_written: Counter = metrics [Metric::counter(
        "tapline_recorder_packets_written_total",
        "Packets the recorder wrote to files.",
    )], column ">WRITTEN";
    /// Failed file operations (create, write, sync, rename, migrate, delete).
    disk_errors: Counter = metrics [Metric::counter(
        "tapline_recorder_disk_errors_total",
        "Failed file operations of the recorder (create, write, sync, rename, migrate, delete); the last error's text is in the API (RecorderStats.last_disk_error) and taplinectl stats.",
    )], column ">DISK ERRORS";
    /// When the last disk error happened (exported as a gauge of its own,
    /// `tapline_recorder_last_disk_error_timestamp_seconds`).
    last_error_unix_ns: Counter = metrics [], column none;
    /// Packets (and their bytes) the writer's queue could not take.
    queue_dropped_packets: Counter = metrics [Metric::counter(
        "tapline_recorder_queue_dropped_packets_total",
        "Packets the recorder's filter accepted that its queue could not take: the disk is slower than the traffic.",
    )], column ">QUEUE DROPS";
    queue_dropped_bytes: Counter = metrics [Metric::counter(
        "tapline_recorder_queue_dropped_bytes_total",
        "Bytes of the packets dropped at the recorder's queue.",
    )], column none;
    /// Packets lost because the disk failed (dropped while recording was
    /// suspended by a disk error).
    disk_dropped_packets: Counter = metrics [Metric::counter(
        "tapline_recorder_disk_dropped_packets_total",
        "Packets the recorder lost because its directory failed (dropped while recording was suspended by a disk error).",
    )], column ">DISK DROPS";
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
    /// The counters ([`TAP`]); the block derefs to them.
    pub stream: TapStreamCounters,
    _reserved: [Counter; 2],
    pub(crate) point: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    pub(crate) filter: [Counter; OUTPUT_TEXT_WORDS],
}

impl std::ops::Deref for TapCounters {
    type Target = TapStreamCounters;
    fn deref(&self) -> &TapStreamCounters {
        &self.stream
    }
}

counter_family! {
    /// A live tap's counters, inside its [`TapCounters`] block.
    #[repr(C)]
    block TapStreamCounters => values TapCounts, family TAP, labels [
        Label::new("tap_id"), Label::new("point"),
    ];
    matched: Counter = metrics [Metric::counter(
        "tapline_tap_matched_packets_total",
        "Packets at the live tap's point that passed its filter.",
    )], column ">MATCHED";
    sent: Counter = metrics [Metric::counter(
        "tapline_tap_sent_packets_total",
        "Packets the live tap sent to its client.",
    )], column ">SENT";
    /// Matching packets discarded because the client (or the stream to
    /// it) was slow.
    lost: Counter = metrics [Metric::counter(
        "tapline_tap_lost_packets_total",
        "Matching packets the live tap discarded because its client (or the stream to it) was slow.",
    )], column ">LOST";
}

impl TapCounters {
    /// Marks the slot used by tap `id` (non-zero) and zeroes its counters.
    pub fn start(&self, id: u64, point: &str, filter: &str) {
        seq_write(&self.seq, || {
            self.stream.clear();
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
