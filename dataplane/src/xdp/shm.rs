//! The stats segment: counters in a memory-mapped file in `state_dir`,
//! written in place by the dataplane's workers and read by the sidecar.
//!
//! Like the rings, this is memory shared with another party (here another
//! process, which holds no capabilities), so it lives beside them. Every
//! field is an `AtomicU64`: any bit pattern is valid, there is no padding and
//! no pointer, and a reader can never observe a torn word. Each block has a
//! single writer (the worker owning the queue, the chain task owning a hop
//! writer slot, the heartbeat judge for a hop's latency, or the main/apply
//! thread for the header and the descriptions), which stores with plain
//! load + store; readers load `Relaxed`. Fields that must be read together
//! are guarded by a sequence counter (seqlock: odd while being written): the
//! latency summaries, the RTT histograms, and the queue and hop descriptions
//! (which are rewritten at run time as tool ports and hops come and go).
//!
//! Layout version 3 (every block a whole number of 64-byte cache lines):
//!
//! ```text
//! offset 0      SegmentHeader   (128 bytes)
//!                 line 0: magic, version, epoch, started_unix_ns,
//!                         heartbeat_unix_ns, state, n_queues, n_workers
//!                         (same words and offsets as version 1)
//!                 line 1: max_hops, n_hop_writers, n_outputs,
//!                         n_output_writers, max_recorders, max_taps,
//!                         links_down, 1 reserved word
//! 128           DataplaneDesc   (64 bytes: version string, pid)
//! 192           QueueDesc       x n_queues   (128 bytes each: seq, role,
//!                                             ifname, queue, mode, worker, hop)
//!               QueueCounters   x n_queues   (192 bytes each)
//!               WorkerCounters  x n_workers  (64 bytes each)
//!               LatencySummary  x n_workers  (64 bytes each)
//!               HopDesc         x max_hops   (64 bytes each: seq, in_use,
//!                                             position, name)
//!               HopCounters     x max_hops * n_hop_writers
//!                                            (192 bytes each; block
//!                                             `slot * n_hop_writers + writer`)
//!               HopLatency      x max_hops   (256 bytes each: LatencySummary,
//!                                             then a seqlocked histogram)
//!               OutputDesc      x n_outputs  (256 bytes each: seq, kind,
//!                                             parent, snaplen, name, ifname,
//!                                             filter)
//!               OutputCounters  x n_outputs * n_output_writers
//!                                            (128 bytes each; block
//!                                             `slot * n_output_writers + writer`)
//!               RecorderCounters x max_recorders (576 bytes each: counters,
//!                                             then seqlocked texts)
//!               TapCounters     x max_taps   (256 bytes each)
//! ```
//!
//! Output slots are described once at start (groups, their members,
//! recorders' filter stages); recorder blocks are written by the recorder's
//! writer thread; tap blocks are taken and freed as taps start and end
//! (`id` 0: free).
//!
//! A queue slot whose role is empty is unused (a tool port slot not handed
//! out, or handed back): readers skip it. A hop slot is used while its
//! `in_use` word is 1. A slot's description has one writer at a time (the
//! thread starting the dataplane or the one applying a chain), and a slot is
//! cleared only while no worker writes its counters.
//!
//! The file is created under a temporary name, initialised, then renamed
//! into place, so a reader never maps a half-initialised segment. A new
//! dataplane process writes a new file (new inode) with a new `epoch`.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use super::sys::Mmap;

/// `b"TAPLSTAT"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TAPLSTAT");
/// Layout version; bumped on any incompatible change.
pub const VERSION: u64 = 3;
/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "stats.shm";
/// Mode of the segment file: owner read-write, group read.
pub const FILE_MODE: u32 = 0o640;

/// One monotonically increasing counter with a single writer.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread calls this, so load + store is exact
    /// and costs no atomic read-modify-write.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds `n` where several threads count into the same word (the slow
    /// paths: recorder queue drops, taps). An atomic read-modify-write.
    #[inline]
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Overwrites the value (mirrors of kernel counters, gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Tries of a seqlock read before giving up (the writer is stuck or keeps
/// the fields busy).
const SEQ_READ_TRIES: usize = 64;

/// Writes the fields guarded by `seq` (single writer): `seq` is odd while
/// `write` runs.
fn seq_write(seq: &Counter, write: impl FnOnce()) {
    let s = seq.get();
    // Odd: readers retry. The Release fence orders the odd store before the
    // field stores: a reader that sees a new field value then sees, after its
    // Acquire fence in `seq_read`, a sequence other than the one it began
    // with. The second fence orders the field stores before the even store
    // that the reader's Acquire load pairs with.
    seq.set(s.wrapping_add(1));
    fence(Ordering::Release);
    write();
    fence(Ordering::Release);
    seq.set(s.wrapping_add(2));
}

/// A consistent read of the fields guarded by `seq`, or `None` if the writer
/// kept them busy for [`SEQ_READ_TRIES`] tries.
fn seq_read<T>(seq: &Counter, read: impl Fn() -> T) -> Option<T> {
    for _ in 0..SEQ_READ_TRIES {
        // Acquire: pairs with the writer's Release fence before its even
        // store, so the fields read below are at least that new.
        let s1 = seq.0.load(Ordering::Acquire);
        if s1 % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let v = read();
        // Acquire: orders the field loads above before the second sequence
        // load (pairs with the writer's first Release fence).
        fence(Ordering::Acquire);
        if seq.0.load(Ordering::Relaxed) == s1 {
            return Some(v);
        }
    }
    None
}

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
    fn clear(&self) {
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
    fn clear(&self) {
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

/// Dataplane state as published in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SegmentState {
    Starting = 0,
    Running = 1,
    Stopped = 2,
}

/// Reserved words at the end of the header's second line.
const HEADER_RESERVED_WORDS: usize = 1;

/// Bits of [`SegmentHeader::links_down`]: the port has no carrier (or is
/// administratively down, or gone).
pub const LINK_DOWN_INLINE_1: u64 = 1 << 0;
pub const LINK_DOWN_INLINE_2: u64 = 1 << 1;
pub const LINK_DOWN_PASSIVE_1: u64 = 1 << 2;

/// The segment header. Its first cache line is word for word the version 1
/// header, so any reader can tell the version of any segment.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct SegmentHeader {
    pub magic: Counter,
    pub version: Counter,
    /// Changes with every dataplane start: a reader that sees it change
    /// restarts its rate computations (counters went back to zero).
    pub epoch: Counter,
    pub started_unix_ns: Counter,
    /// Refreshed by the dataplane's main thread several times a second; a
    /// stale value means the dataplane is gone (even after SIGKILL).
    pub heartbeat_unix_ns: Counter,
    /// A [`SegmentState`].
    pub state: Counter,
    pub n_queues: Counter,
    pub n_workers: Counter,
    /// Hop slots ([`HopDesc`], [`HopLatency`]).
    pub max_hops: Counter,
    /// [`HopCounters`] blocks per hop slot (one per chain task).
    pub n_hop_writers: Counter,
    /// Output slots ([`OutputDesc`]): passive output groups, their members
    /// and the recorders' filter stages.
    pub n_outputs: Counter,
    /// [`OutputCounters`] blocks per output slot (one per capture task).
    pub n_output_writers: Counter,
    /// Recorder blocks ([`RecorderCounters`]).
    pub max_recorders: Counter,
    /// Tap blocks ([`TapCounters`]): the most taps running at once.
    pub max_taps: Counter,
    /// `LINK_DOWN_*` bits of the configured ports whose link is down
    /// (written by the link monitor; 0 in segments of older builds, which
    /// had a reserved word here).
    pub links_down: Counter,
    _reserved: [Counter; HEADER_RESERVED_WORDS],
}

/// Words of the version string in a [`DataplaneDesc`] (48 bytes).
const VERSION_WORDS: usize = 6;

/// Which dataplane wrote the segment.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct DataplaneDesc {
    version: [Counter; VERSION_WORDS],
    pid: Counter,
    _reserved: Counter,
}

/// Words of a short string field in a [`QueueDesc`] (16 bytes).
const NAME_WORDS: usize = 2;
const MODE_WORDS: usize = 2;
/// Longest hop name the segment holds, in bytes (longer ones are cut).
pub const HOP_NAME_BYTES: usize = 32;
const HOP_NAME_WORDS: usize = HOP_NAME_BYTES / 8;

/// What a queue slot describes. Role empty: the slot is unused.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueDesc {
    /// Odd while the description (or the slot's counters, when it is
    /// cleared) is being rewritten.
    seq: Counter,
    role: [Counter; NAME_WORDS],
    ifname: [Counter; NAME_WORDS],
    queue: Counter,
    mode: [Counter; MODE_WORDS],
    worker: Counter,
    hop: [Counter; HOP_NAME_WORDS],
}

/// Plain values of a [`QueueDesc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueInfo {
    /// "passive-1", "inline-1", "inline-2", "tool-a", "tool-b"; empty for
    /// an unused slot.
    pub role: String,
    pub ifname: String,
    pub queue: u32,
    pub mode: String,
    /// Index of the worker thread that serves this queue.
    pub worker: u32,
    /// Name of the chain hop of a tool port; empty for other ports.
    pub hop: String,
}

fn put_str(words: &[Counter], s: &str) {
    let mut bytes = vec![0u8; words.len() * 8];
    let n = s.len().min(bytes.len());
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        w.set(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
}

fn get_str(words: &[Counter]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.get().to_le_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl QueueDesc {
    /// Stores the fields (inside the caller's seqlock write).
    fn store(&self, info: &QueueInfo) {
        put_str(&self.role, &info.role);
        put_str(&self.ifname, &info.ifname);
        self.queue.set(u64::from(info.queue));
        put_str(&self.mode, &info.mode);
        self.worker.set(u64::from(info.worker));
        put_str(&self.hop, &info.hop);
    }

    /// Loads the fields (inside the caller's seqlock read).
    fn load(&self) -> QueueInfo {
        QueueInfo {
            role: get_str(&self.role),
            ifname: get_str(&self.ifname),
            queue: self.queue.get() as u32,
            mode: get_str(&self.mode),
            worker: self.worker.get() as u32,
            hop: get_str(&self.hop),
        }
    }
}

/// What a hop slot describes.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HopDesc {
    /// Odd while the description (or the slot's counters, when it is
    /// cleared) is being rewritten.
    seq: Counter,
    /// 1 while the slot describes a hop of the applied chain.
    in_use: Counter,
    /// Index of the hop in the applied chain (0 = nearest inline-1).
    position: Counter,
    name: [Counter; HOP_NAME_WORDS],
}

/// Plain values of a used [`HopDesc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopInfo {
    /// The hop's name (`HopSpec.name`); cut to [`HOP_NAME_BYTES`].
    pub name: String,
    /// Index of the hop in the applied chain (0 = nearest inline-1).
    pub position: u32,
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
    fn clear(&self) {
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
    hist_seq: Counter,
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
fn rtt_bucket(ns: u64) -> usize {
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

    fn clear(&self) {
        self.summary.publish(&LatencyValues::default());
        seq_write(&self.hist_seq, || {
            for c in [&self.count, &self.sum_ns].into_iter().chain(&self.buckets) {
                c.set(0);
            }
        });
    }
}

/// Longest output or recorder name the segment holds, in bytes.
pub const OUTPUT_NAME_BYTES: usize = 32;
const OUTPUT_NAME_WORDS: usize = OUTPUT_NAME_BYTES / 8;
/// Longest filter expression, path or error text the segment holds, in
/// bytes (longer ones are cut).
pub const OUTPUT_TEXT_BYTES: usize = 128;
const OUTPUT_TEXT_WORDS: usize = OUTPUT_TEXT_BYTES / 8;

/// What an output slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OutputKind {
    /// A passive output group: its counters count accepted packets (each
    /// once) and filtered-out ones.
    Group = 1,
    /// One member (an interface) of a group: its counters count delivered
    /// packets and drops.
    Member = 2,
    /// A recorder's filter stage: accepted and filtered-out packets, and
    /// packets its queue could not take. The disk side is in the
    /// recorder's own block ([`RecorderCounters`]).
    Recorder = 3,
}

impl OutputKind {
    fn from_word(v: u64) -> Option<OutputKind> {
        match v {
            1 => Some(OutputKind::Group),
            2 => Some(OutputKind::Member),
            3 => Some(OutputKind::Recorder),
            _ => None,
        }
    }
}

/// What an output slot describes. Written once at start.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct OutputDesc {
    seq: Counter,
    /// An [`OutputKind`]; 0: unused.
    kind: Counter,
    /// For a member, the slot of its group; for a recorder stage, the index
    /// of its recorder block; else the slot itself.
    parent: Counter,
    /// Snap length in bytes; 0: whole frames.
    snaplen: Counter,
    name: [Counter; OUTPUT_NAME_WORDS],
    ifname: [Counter; NAME_WORDS],
    filter: [Counter; OUTPUT_TEXT_WORDS],
}

/// Plain values of a used [`OutputDesc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    pub kind: OutputKind,
    /// See [`OutputDesc`]: the group slot of a member, the recorder block of
    /// a recorder stage.
    pub parent: u32,
    pub name: String,
    /// The member's interface; empty for groups and recorders.
    pub ifname: String,
    /// The filter expression; empty: every packet.
    pub filter: String,
    /// Snap length in bytes; 0: whole frames.
    pub snaplen: u32,
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
    seq: Counter,
    /// 1 while the block describes a recorder.
    in_use: Counter,
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
    name: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    directory: [Counter; OUTPUT_TEXT_WORDS],
    current_file: [Counter; OUTPUT_TEXT_WORDS],
    last_error: [Counter; OUTPUT_TEXT_WORDS],
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
    seq: Counter,
    /// The tap's id while the slot is used; 0: unused.
    id: Counter,
    started_unix_ns: Counter,
    pub matched: Counter,
    pub sent: Counter,
    /// Matching packets discarded because the client (or the stream to
    /// it) was slow.
    pub lost: Counter,
    _reserved: [Counter; 2],
    point: [Counter; OUTPUT_NAME_WORDS],
    _reserved2: [Counter; 4],
    filter: [Counter; OUTPUT_TEXT_WORDS],
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

/// The sizes a segment is created with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Queue slots: every (port, queue) the dataplane may bind, tool ports
    /// included.
    pub n_queues: usize,
    /// Worker threads.
    pub n_workers: usize,
    /// Hop slots: the most hops a chain may have at once.
    pub max_hops: usize,
    /// Counter blocks per hop: one per chain task (inline queue).
    pub n_hop_writers: usize,
    /// Output slots: groups + members + recorders.
    pub n_outputs: usize,
    /// Counter blocks per output slot: one per capture task.
    pub n_output_writers: usize,
    /// Recorder blocks.
    pub max_recorders: usize,
    /// Tap blocks.
    pub max_taps: usize,
}

/// Upper bounds a reader accepts (and a writer creates), so a corrupt
/// header cannot make a reader compute absurd sizes.
const MAX_QUEUES: usize = 1 << 16;
const MAX_WORKERS: usize = 1 << 12;
const MAX_HOPS: usize = 1 << 10;
const MAX_HOP_WRITERS: usize = 1 << 12;
const MAX_OUTPUTS: usize = 1 << 12;
const MAX_OUTPUT_WRITERS: usize = 1 << 12;
const MAX_RECORDERS: usize = 1 << 8;
const MAX_TAPS: usize = 1 << 10;

impl Layout {
    /// The first field out of bounds, as (name, value, bound).
    fn out_of_bounds(&self) -> Option<(&'static str, usize, usize)> {
        [
            ("n_queues", self.n_queues, MAX_QUEUES),
            ("n_workers", self.n_workers, MAX_WORKERS),
            ("max_hops", self.max_hops, MAX_HOPS),
            ("n_hop_writers", self.n_hop_writers, MAX_HOP_WRITERS),
            ("n_outputs", self.n_outputs, MAX_OUTPUTS),
            (
                "n_output_writers",
                self.n_output_writers,
                MAX_OUTPUT_WRITERS,
            ),
            ("max_recorders", self.max_recorders, MAX_RECORDERS),
            ("max_taps", self.max_taps, MAX_TAPS),
        ]
        .into_iter()
        .find(|&(_, v, max)| v > max)
    }
}

/// Byte offsets of the parts of a segment (see the diagram at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offsets {
    dataplane: usize,
    queue_descs: usize,
    queues: usize,
    workers: usize,
    latency: usize,
    hop_descs: usize,
    hops: usize,
    hop_latency: usize,
    output_descs: usize,
    outputs: usize,
    recorders: usize,
    taps: usize,
    len: usize,
}

impl Offsets {
    /// Offsets of a layout within the bounds of [`Layout::out_of_bounds`]
    /// (so nothing overflows).
    fn new(l: &Layout) -> Offsets {
        let dataplane = size_of::<SegmentHeader>();
        let queue_descs = dataplane + size_of::<DataplaneDesc>();
        let queues = queue_descs + l.n_queues * size_of::<QueueDesc>();
        let workers = queues + l.n_queues * size_of::<QueueCounters>();
        let latency = workers + l.n_workers * size_of::<WorkerCounters>();
        let hop_descs = latency + l.n_workers * size_of::<LatencySummary>();
        let hops = hop_descs + l.max_hops * size_of::<HopDesc>();
        let hop_latency = hops + l.max_hops * l.n_hop_writers * size_of::<HopCounters>();
        let output_descs = hop_latency + l.max_hops * size_of::<HopLatency>();
        let outputs = output_descs + l.n_outputs * size_of::<OutputDesc>();
        let recorders = outputs + l.n_outputs * l.n_output_writers * size_of::<OutputCounters>();
        let taps = recorders + l.max_recorders * size_of::<RecorderCounters>();
        let len = taps + l.max_taps * size_of::<TapCounters>();
        Offsets {
            dataplane,
            queue_descs,
            queues,
            workers,
            latency,
            hop_descs,
            hops,
            hop_latency,
            output_descs,
            outputs,
            recorders,
            taps,
            len,
        }
    }
}

/// A mapped segment (writer or reader side).
#[derive(Debug)]
struct Mapped {
    map: Mmap,
    layout: Layout,
    off: Offsets,
}

impl Mapped {
    /// # Safety
    ///
    /// `off` must be a multiple of `align_of::<T>()` with `off + size_of::<T>()`
    /// within the mapping, and `T` must be a block of `Counter`s (every bit
    /// pattern valid, no padding).
    unsafe fn at<T>(&self, off: usize) -> &T {
        debug_assert!(
            off.is_multiple_of(align_of::<T>()) && off + size_of::<T>() <= self.map.len()
        );
        // SAFETY: forwarded: in bounds and aligned (the mapping is page
        // aligned, every block size is a multiple of 64); any bit pattern is
        // a valid `T`; the reference lives as long as `&self`, which owns the
        // mapping.
        unsafe { &*self.map.as_ptr().add(off).cast::<T>() }
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a mapping at least `off.len` long, which starts
        // with a whole `SegmentHeader`.
        unsafe { self.at(0) }
    }

    /// Block `i` of an array of `n` blocks of `T` starting at `base`.
    fn nth<T>(&self, base: usize, i: usize, n: usize) -> &T {
        assert!(i < n, "slot {i} out of range ({n} slots)");
        // SAFETY: `Offsets` places `n` blocks of `T` (whole cache lines, so
        // aligned) from `base`, inside the mapping; `T` is a block of
        // `Counter`s (every caller below names one).
        unsafe { self.at(base + i * size_of::<T>()) }
    }

    fn dataplane(&self) -> &DataplaneDesc {
        self.nth(self.off.dataplane, 0, 1)
    }

    fn queue_desc(&self, i: usize) -> &QueueDesc {
        self.nth(self.off.queue_descs, i, self.layout.n_queues)
    }

    fn queue(&self, i: usize) -> &QueueCounters {
        self.nth(self.off.queues, i, self.layout.n_queues)
    }

    fn worker(&self, i: usize) -> &WorkerCounters {
        self.nth(self.off.workers, i, self.layout.n_workers)
    }

    fn latency(&self, i: usize) -> &LatencySummary {
        self.nth(self.off.latency, i, self.layout.n_workers)
    }

    fn hop_desc(&self, slot: usize) -> &HopDesc {
        self.nth(self.off.hop_descs, slot, self.layout.max_hops)
    }

    fn hop(&self, slot: usize, writer: usize) -> &HopCounters {
        let l = &self.layout;
        assert!(
            slot < l.max_hops && writer < l.n_hop_writers,
            "hop block ({slot}, {writer}) out of range ({} slots x {} writers)",
            l.max_hops,
            l.n_hop_writers
        );
        self.nth(
            self.off.hops,
            slot * l.n_hop_writers + writer,
            l.max_hops * l.n_hop_writers,
        )
    }

    fn hop_latency(&self, slot: usize) -> &HopLatency {
        self.nth(self.off.hop_latency, slot, self.layout.max_hops)
    }

    fn output_desc(&self, slot: usize) -> &OutputDesc {
        self.nth(self.off.output_descs, slot, self.layout.n_outputs)
    }

    fn output(&self, slot: usize, writer: usize) -> &OutputCounters {
        let l = &self.layout;
        assert!(
            slot < l.n_outputs && writer < l.n_output_writers,
            "output block ({slot}, {writer}) out of range ({} slots x {} writers)",
            l.n_outputs,
            l.n_output_writers
        );
        self.nth(
            self.off.outputs,
            slot * l.n_output_writers + writer,
            l.n_outputs * l.n_output_writers,
        )
    }

    fn recorder(&self, i: usize) -> &RecorderCounters {
        self.nth(self.off.recorders, i, self.layout.max_recorders)
    }

    fn tap(&self, i: usize) -> &TapCounters {
        self.nth(self.off.taps, i, self.layout.max_taps)
    }
}

/// The writer's side of a stats segment.
#[derive(Debug)]
pub struct StatsSegment {
    m: Mapped,
    /// (device, inode) of the published file, `None` in memory.
    file_id: std::sync::Mutex<Option<(u64, u64)>>,
    /// Where the file is, `None` for an in-memory segment.
    path: Option<PathBuf>,
}

impl StatsSegment {
    /// Creates `dir/stats.shm` for `n_queues` queues and `n_workers`
    /// workers, without hop slots. See [`StatsSegment::create_with`].
    pub fn create(
        dir: &Path,
        n_queues: usize,
        n_workers: usize,
        epoch: u64,
    ) -> io::Result<Arc<StatsSegment>> {
        Self::create_with(
            dir,
            &Layout {
                n_queues,
                n_workers,
                ..Layout::default()
            },
            epoch,
        )
    }

    /// Creates `dir/stats.shm` with the sizes of `layout`, atomically
    /// replacing any previous one, with mode [`FILE_MODE`]: readable by the
    /// dataplane's group (the sidecar runs with the same group), never by
    /// everyone (it describes tap filters and recorder paths). Sizes above the bounds readers accept (65536 queues,
    /// 4096 workers, 1024 hops, 4096 hop writers) are `InvalidInput`.
    pub fn create_with(dir: &Path, layout: &Layout, epoch: u64) -> io::Result<Arc<StatsSegment>> {
        if let Some((field, value, max)) = layout.out_of_bounds() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stats segment {field} = {value} exceeds {max}"),
            ));
        }
        let off = Offsets::new(layout);
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // Whatever the umask: group readers need the group bit.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.set_len(off.len as u64)?;
        let map = Mmap::shared_file(file.as_fd(), off.len, true)?;
        let meta = file.metadata()?;
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout: *layout,
                off,
            },
            file_id: std::sync::Mutex::new(Some((meta.dev(), meta.ino()))),
            path: Some(path.clone()),
        };
        seg.init(epoch);
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(Arc::new(seg))
    }

    /// A segment in anonymous memory without hop slots (tests,
    /// microbenchmarks, or a state directory that cannot be written).
    pub fn in_memory(n_queues: usize, n_workers: usize) -> Arc<StatsSegment> {
        Self::in_memory_with(&Layout {
            n_queues,
            n_workers,
            ..Layout::default()
        })
    }

    /// A segment in anonymous memory with the sizes of `layout`.
    pub fn in_memory_with(layout: &Layout) -> Arc<StatsSegment> {
        let off = Offsets::new(layout);
        let map = Mmap::anonymous(off.len).expect("anonymous mapping for stats");
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout: *layout,
                off,
            },
            file_id: std::sync::Mutex::new(None),
            path: None,
        };
        seg.init(0);
        Arc::new(seg)
    }

    fn init(&self, epoch: u64) {
        let h = self.m.header();
        let l = &self.m.layout;
        h.version.set(VERSION);
        h.epoch.set(epoch);
        h.started_unix_ns.set(unix_ns());
        h.heartbeat_unix_ns.set(unix_ns());
        h.state.set(SegmentState::Starting as u64);
        h.n_queues.set(l.n_queues as u64);
        h.n_workers.set(l.n_workers as u64);
        h.max_hops.set(l.max_hops as u64);
        h.n_hop_writers.set(l.n_hop_writers as u64);
        h.n_outputs.set(l.n_outputs as u64);
        h.n_output_writers.set(l.n_output_writers as u64);
        h.max_recorders.set(l.max_recorders as u64);
        h.max_taps.set(l.max_taps as u64);
        let d = self.m.dataplane();
        put_str(&d.version, env!("CARGO_PKG_VERSION"));
        d.pid.set(u64::from(std::process::id()));
        // Magic last: a reader that sees it sees the rest.
        fence(Ordering::Release);
        h.magic.set(MAGIC);
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// False when the segment has a file and `stats.shm` in its directory
    /// is gone or is another file (the state directory was deleted or
    /// emptied): readers cannot see this segment any more.
    pub fn is_published(&self) -> bool {
        let (Some(path), Some(id)) = (&self.path, *self.file_id.lock().expect("file id")) else {
            return true;
        };
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
    }

    /// Publishes the segment again under its path, after the file was
    /// deleted: a new file gets the current contents, is mapped in place
    /// of the old one (same addresses, so every slot handed out stays
    /// valid) and renamed into place. The epoch stays: counters continue.
    /// Increments made between the copy and the remap (a few microseconds)
    /// are lost; counters never go backwards for a reader of the new file.
    pub fn republish(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        let words = self.m.map.len() / size_of::<Counter>();
        // SAFETY: the mapping is `words` whole `Counter`s (every block is
        // a multiple of 64 bytes, see `Offsets`), page-aligned, and lives
        // as long as `self`; it is read here with atomic loads only.
        let counters: &[Counter] =
            unsafe { std::slice::from_raw_parts(self.m.map.as_ptr().cast::<Counter>(), words) };
        let mut bytes = Vec::with_capacity(self.m.map.len());
        for c in counters {
            bytes.extend_from_slice(&c.get().to_le_bytes());
        }
        std::io::Write::write_all(&mut file, &bytes)?;
        self.m.map.remap_shared_file(file.as_fd())?;
        let meta = file.metadata()?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        *self.file_id.lock().expect("file id") = Some((meta.dev(), meta.ino()));
        Ok(())
    }

    pub fn header(&self) -> &SegmentHeader {
        self.m.header()
    }

    /// The sizes the segment was created with.
    pub fn layout(&self) -> Layout {
        self.m.layout
    }

    /// Refreshes the heartbeat (main thread).
    pub fn beat(&self) {
        self.m.header().heartbeat_unix_ns.set(unix_ns());
    }

    pub fn set_state(&self, s: SegmentState) {
        self.m.header().state.set(s as u64);
        self.beat();
    }

    /// Publishes the `LINK_DOWN_*` bits of the configured ports.
    pub fn set_links_down(&self, bits: u64) {
        self.m.header().links_down.set(bits);
    }

    /// (Re)writes the description of queue slot `i`; readers see the old or
    /// the new one, never a mix. One thread at a time describes and clears
    /// a given slot.
    pub fn describe_queue(&self, i: usize, info: &QueueInfo) {
        let d = self.m.queue_desc(i);
        seq_write(&d.seq, || d.store(info));
    }

    /// Zeroes queue slot `i`'s counters and marks it unused (empty role):
    /// readers skip it until it is described again. Only while no worker
    /// writes the slot's counters.
    pub fn clear_queue(&self, i: usize) {
        let d = self.m.queue_desc(i);
        let c = self.m.queue(i);
        seq_write(&d.seq, || {
            d.store(&QueueInfo::default());
            c.clear();
        });
    }

    /// A handle to queue slot `i`'s counters, for the worker that owns it.
    pub fn queue_slot(self: &Arc<Self>, i: usize) -> Slot<QueueCounters> {
        let ptr: *const QueueCounters = self.m.queue(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to worker slot `i`'s counters.
    pub fn worker_slot(self: &Arc<Self>, i: usize) -> Slot<WorkerCounters> {
        let ptr: *const WorkerCounters = self.m.worker(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to worker slot `i`'s latency summary.
    pub fn latency_slot(self: &Arc<Self>, i: usize) -> Slot<LatencySummary> {
        let ptr: *const LatencySummary = self.m.latency(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// Describes hop slot `slot` as a hop of the applied chain (`Some`), or
    /// frees it (`None`: readers stop reporting it). Its counters are left
    /// as they are: a new hop in a slot starts with [`StatsSegment::clear_hop`].
    /// One thread at a time describes and clears a given slot.
    pub fn describe_hop(&self, slot: usize, hop: Option<HopInfo>) {
        let d = self.m.hop_desc(slot);
        seq_write(&d.seq, || match &hop {
            Some(h) => {
                d.position.set(u64::from(h.position));
                put_str(&d.name, &h.name);
                d.in_use.set(1);
            }
            None => {
                d.in_use.set(0);
                d.position.set(0);
                put_str(&d.name, "");
            }
        });
    }

    /// Zeroes hop slot `slot`'s counters (every writer's) and its latency.
    /// Only while no chain task and no heartbeat judge writes them.
    pub fn clear_hop(&self, slot: usize) {
        let d = self.m.hop_desc(slot);
        seq_write(&d.seq, || {
            for w in 0..self.m.layout.n_hop_writers {
                self.m.hop(slot, w).clear();
            }
            self.m.hop_latency(slot).clear();
        });
    }

    /// A handle to hop slot `slot`'s counters as counted by `writer` (the
    /// chain task's index, `0..n_hop_writers`).
    pub fn hop_slot(self: &Arc<Self>, slot: usize, writer: usize) -> Slot<HopCounters> {
        let ptr: *const HopCounters = self.m.hop(slot, writer);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to hop slot `slot`'s round-trip latency, for the heartbeat
    /// judge.
    pub fn hop_latency_slot(self: &Arc<Self>, slot: usize) -> Slot<HopLatency> {
        let ptr: *const HopLatency = self.m.hop_latency(slot);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// Describes output slot `slot` (at start, before any worker runs).
    pub fn describe_output(&self, slot: usize, info: &OutputInfo) {
        let d = self.m.output_desc(slot);
        seq_write(&d.seq, || {
            d.kind.set(info.kind as u64);
            d.parent.set(u64::from(info.parent));
            d.snaplen.set(u64::from(info.snaplen));
            put_str(&d.name, &info.name);
            put_str(&d.ifname, &info.ifname);
            put_str(&d.filter, &info.filter);
        });
    }

    /// A handle to output slot `slot`'s counters as counted by `writer`
    /// (the capture task's index, `0..n_output_writers`).
    pub fn output_slot(self: &Arc<Self>, slot: usize, writer: usize) -> Slot<OutputCounters> {
        let ptr: *const OutputCounters = self.m.output(slot, writer);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to recorder block `i`.
    pub fn recorder_slot(self: &Arc<Self>, i: usize) -> Slot<RecorderCounters> {
        let ptr: *const RecorderCounters = self.m.recorder(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to tap block `i`.
    pub fn tap_slot(self: &Arc<Self>, i: usize) -> Slot<TapCounters> {
        let ptr: *const TapCounters = self.m.tap(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// Everything, as plain values.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }
}

/// A counter block inside a segment, kept alive by its segment.
#[derive(Debug)]
pub struct Slot<T> {
    seg: Arc<StatsSegment>,
    ptr: *const T,
}

// SAFETY: `T` is a block of atomics (Sync); the pointer stays valid as long
// as `seg`, which the slot owns, keeps the mapping alive.
unsafe impl<T: Sync> Send for Slot<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Slot<T> {}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            seg: self.seg.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T> Deref for Slot<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from a reference into `seg`'s mapping, which
        // lives as long as this slot.
        unsafe { &*self.ptr }
    }
}

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

fn snapshot_of(m: &Mapped) -> Snapshot {
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
    }
}

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("opening the stats segment {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is not a tapline stats segment (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("{path} has layout version {found}, this build reads {VERSION}: run matching dataplane and sidecar versions")]
    Version { path: PathBuf, found: u64 },
    #[error("{path} is truncated ({len} bytes, the header describes {needed})")]
    Truncated {
        path: PathBuf,
        len: usize,
        needed: usize,
    },
    #[error("{path} has a corrupt header: {field} = {value} exceeds {max}")]
    BadHeader {
        path: PathBuf,
        field: &'static str,
        value: u64,
        max: usize,
    },
}

/// The words a reader checks before anything else: the first two of every
/// version's header.
#[repr(C)]
struct Preamble {
    magic: Counter,
    version: Counter,
}

/// The reader's side: a read-only mapping, for processes without
/// capabilities. Only plain values come out of it.
#[derive(Debug)]
pub struct SegmentReader {
    m: Mapped,
    path: PathBuf,
    inode: u64,
}

impl SegmentReader {
    /// Maps `dir/stats.shm` read-only and validates it: magic, version,
    /// sizes within bounds, and a file long enough for them.
    pub fn open(dir: &Path) -> Result<SegmentReader, SegmentError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source| SegmentError::Open {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let len = meta.len() as usize;
        let truncated = |path, needed| SegmentError::Truncated { path, len, needed };
        if len < size_of::<Preamble>() {
            return Err(truncated(path, size_of::<Preamble>()));
        }
        let map = Mmap::shared_file(file.as_fd(), len, false).map_err(open_err)?;
        let probe = Mapped {
            map,
            layout: Layout::default(),
            off: Offsets::new(&Layout::default()),
        };
        // SAFETY: offset 0 of a page-aligned mapping at least
        // `size_of::<Preamble>()` long; `Preamble` is two `Counter`s.
        let pre: &Preamble = unsafe { probe.at(0) };
        if pre.magic.get() != MAGIC {
            return Err(SegmentError::BadMagic { path });
        }
        // Acquire: pairs with the Release fence before the writer's magic
        // store (and the rename made the file visible only after that).
        fence(Ordering::Acquire);
        let found = pre.version.get();
        if found != VERSION {
            return Err(SegmentError::Version { path, found });
        }
        if len < size_of::<SegmentHeader>() {
            return Err(truncated(path, size_of::<SegmentHeader>()));
        }
        let h = probe.header();
        let fields = [
            ("n_queues", h.n_queues.get(), MAX_QUEUES),
            ("n_workers", h.n_workers.get(), MAX_WORKERS),
            ("max_hops", h.max_hops.get(), MAX_HOPS),
            ("n_hop_writers", h.n_hop_writers.get(), MAX_HOP_WRITERS),
            ("n_outputs", h.n_outputs.get(), MAX_OUTPUTS),
            (
                "n_output_writers",
                h.n_output_writers.get(),
                MAX_OUTPUT_WRITERS,
            ),
            ("max_recorders", h.max_recorders.get(), MAX_RECORDERS),
            ("max_taps", h.max_taps.get(), MAX_TAPS),
        ];
        if let Some(&(field, value, max)) = fields.iter().find(|(_, v, max)| *v > *max as u64) {
            return Err(SegmentError::BadHeader {
                path,
                field,
                value,
                max,
            });
        }
        // In bounds: every value fits a usize and `Offsets` cannot overflow.
        let [q, w, hops, writers, outputs, output_writers, recorders, taps] =
            fields.map(|(_, v, _)| v as usize);
        let layout = Layout {
            n_queues: q,
            n_workers: w,
            max_hops: hops,
            n_hop_writers: writers,
            n_outputs: outputs,
            n_output_writers: output_writers,
            max_recorders: recorders,
            max_taps: taps,
        };
        let off = Offsets::new(&layout);
        if off.len > len {
            return Err(truncated(path, off.len));
        }
        Ok(SegmentReader {
            m: Mapped {
                map: probe.map,
                layout,
                off,
            },
            path,
            inode: meta.ino(),
        })
    }

    /// The sizes the segment was created with.
    pub fn layout(&self) -> Layout {
        self.m.layout
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }

    /// False once a newer dataplane has replaced the file: reopen then.
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}

/// Nanoseconds since the Unix epoch (wall clock: comparable across
/// processes, unlike `Instant`).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(o.len, o.hop_latency + 3 * 256);
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
        assert_eq!((o.outputs, o.recorders, o.taps), (o.len, o.len, o.len));

        // Hop blocks are indexed slot-major.
        let o = Offsets::new(&CHAIN);
        let seg = StatsSegment::in_memory_with(&CHAIN);
        let base = seg.m.map.as_ptr() as usize;
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
        seg.queue_slot(2).kernel.rx_ring_full.add(1);
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
        assert_eq!(s.queues[1].kernel_rx_ring_full, 0);
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
            msg.contains("layout version 1, this build reads 3"),
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
}
