//! Where everything is in a segment: the header, the descriptions of its
//! slots, the sizes it is created with and the byte offsets they give.
//!
//! Layout version 4 (every block a whole number of 64-byte cache lines;
//! version 3 is the same without the trailing `FallbackCounters` block, and
//! readers still read it, reporting no kernel fallback):
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
//!               FallbackCounters (64 bytes: the kernel fallback's per-CPU
//!                                 counters, summed, copied by the main
//!                                 thread with every heartbeat)

use std::mem::size_of;

use crate::counter::{get_str, put_str, Counter};
use crate::counters::{
    FallbackCounters, HopCounters, HopLatency, LatencySummary, OutputCounters, QueueCounters,
    RecorderCounters, TapCounters, WorkerCounters,
};

/// `b"TAPLSTAT"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TAPLSTAT");
/// Layout version; bumped on any incompatible change.
pub const VERSION: u64 = 4;
/// The oldest layout version a reader still reads (version 3 lacks the
/// [`FallbackCounters`] block).
pub const MIN_READ_VERSION: u64 = 3;
/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "stats.shm";
/// Mode of the segment file: owner read-write, group read.
pub const FILE_MODE: u32 = 0o640;

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
    pub(crate) version: [Counter; VERSION_WORDS],
    pub(crate) pid: Counter,
    _reserved: Counter,
}

/// Words of a short string field in a [`QueueDesc`] (16 bytes).
pub(crate) const NAME_WORDS: usize = 2;
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
    pub(crate) seq: Counter,
    pub(crate) role: [Counter; NAME_WORDS],
    pub(crate) ifname: [Counter; NAME_WORDS],
    pub(crate) queue: Counter,
    pub(crate) mode: [Counter; MODE_WORDS],
    pub(crate) worker: Counter,
    pub(crate) hop: [Counter; HOP_NAME_WORDS],
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

impl QueueDesc {
    /// Stores the fields (inside the caller's seqlock write).
    pub(crate) fn store(&self, info: &QueueInfo) {
        put_str(&self.role, &info.role);
        put_str(&self.ifname, &info.ifname);
        self.queue.set(u64::from(info.queue));
        put_str(&self.mode, &info.mode);
        self.worker.set(u64::from(info.worker));
        put_str(&self.hop, &info.hop);
    }

    /// Loads the fields (inside the caller's seqlock read).
    pub(crate) fn load(&self) -> QueueInfo {
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
    pub(crate) seq: Counter,
    /// 1 while the slot describes a hop of the applied chain.
    pub(crate) in_use: Counter,
    /// Index of the hop in the applied chain (0 = nearest inline-1).
    pub(crate) position: Counter,
    pub(crate) name: [Counter; HOP_NAME_WORDS],
}

/// Plain values of a used [`HopDesc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopInfo {
    /// The hop's name (`HopSpec.name`); cut to [`HOP_NAME_BYTES`].
    pub name: String,
    /// Index of the hop in the applied chain (0 = nearest inline-1).
    pub position: u32,
}

/// Longest output or recorder name the segment holds, in bytes.
pub const OUTPUT_NAME_BYTES: usize = 32;
pub(crate) const OUTPUT_NAME_WORDS: usize = OUTPUT_NAME_BYTES / 8;
/// Longest filter expression, path or error text the segment holds, in
/// bytes (longer ones are cut).
pub const OUTPUT_TEXT_BYTES: usize = 128;
pub(crate) const OUTPUT_TEXT_WORDS: usize = OUTPUT_TEXT_BYTES / 8;

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
    pub(crate) fn from_word(v: u64) -> Option<OutputKind> {
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
    pub(crate) seq: Counter,
    /// An [`OutputKind`]; 0: unused.
    pub(crate) kind: Counter,
    /// For a member, the slot of its group; for a recorder stage, the index
    /// of its recorder block; else the slot itself.
    pub(crate) parent: Counter,
    /// Snap length in bytes; 0: whole frames.
    pub(crate) snaplen: Counter,
    pub(crate) name: [Counter; OUTPUT_NAME_WORDS],
    pub(crate) ifname: [Counter; NAME_WORDS],
    pub(crate) filter: [Counter; OUTPUT_TEXT_WORDS],
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
pub(crate) const MAX_QUEUES: usize = 1 << 16;
pub(crate) const MAX_WORKERS: usize = 1 << 12;
pub(crate) const MAX_HOPS: usize = 1 << 10;
pub(crate) const MAX_HOP_WRITERS: usize = 1 << 12;
pub(crate) const MAX_OUTPUTS: usize = 1 << 12;
pub(crate) const MAX_OUTPUT_WRITERS: usize = 1 << 12;
pub(crate) const MAX_RECORDERS: usize = 1 << 8;
pub(crate) const MAX_TAPS: usize = 1 << 10;

impl Layout {
    /// The first field out of bounds, as (name, value, bound).
    pub(crate) fn out_of_bounds(&self) -> Option<(&'static str, usize, usize)> {
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
pub(crate) struct Offsets {
    pub(crate) dataplane: usize,
    pub(crate) queue_descs: usize,
    pub(crate) queues: usize,
    pub(crate) workers: usize,
    pub(crate) latency: usize,
    pub(crate) hop_descs: usize,
    pub(crate) hops: usize,
    pub(crate) hop_latency: usize,
    pub(crate) output_descs: usize,
    pub(crate) outputs: usize,
    pub(crate) recorders: usize,
    pub(crate) taps: usize,
    /// `None` in a version 3 segment.
    pub(crate) fallback: Option<usize>,
    pub(crate) len: usize,
}

impl Offsets {
    /// Offsets of a layout within the bounds of [`Layout::out_of_bounds`]
    /// (so nothing overflows).
    pub(crate) fn new(l: &Layout) -> Offsets {
        Self::of_version(l, VERSION)
    }

    /// Offsets of a segment of layout version `version` (3 or 4).
    pub(crate) fn of_version(l: &Layout, version: u64) -> Offsets {
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
        let end = taps + l.max_taps * size_of::<TapCounters>();
        let (fallback, len) = if version >= 4 {
            (Some(end), end + size_of::<FallbackCounters>())
        } else {
            (None, end)
        };
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
            fallback,
            len,
        }
    }
}

/// The words a reader checks before anything else: the first two of every
/// version's header.
#[repr(C)]
pub(crate) struct Preamble {
    pub(crate) magic: Counter,
    pub(crate) version: Counter,
}
