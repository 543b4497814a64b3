//! tapline's stats segment: counters in a memory-mapped file in the
//! dataplane's `state_dir`, written in place by the dataplane's workers and
//! read by the sidecar (`tapline-control`), the CLI, tests and benchmarks;
//! and the link custody protocol (`keeper.sock`) by which the sidecar holds
//! the inline ports' XDP links and fallback maps across dataplane restarts.
//!
//! The segment is memory shared with another process, which holds no
//! capabilities. Every
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
//! Modules: [`layout`] (where everything is, the version and the bounds),
//! [`counter`] (one word, the seqlock, short strings), [`counters`] and
//! [`families`] (the counter blocks; each counter family declared once,
//! with its Prometheus family and CLI column), [`writer`] (the dataplane's
//! [`StatsSegment`]), [`reader`] (the read-only [`SegmentReader`]),
//! [`snapshot`] (plain values), [`drop`] (drop reason names), [`custody`]
//! (the link keeper) and [`fallback`] (the kernel fallback's counter map).
//!
//! `unsafe` lives in one module, `sys` (memory maps, typed views of counter
//! blocks, the [`Slot`] handle, the keeper's fd and `bpf(2)` calls), each
//! block with the invariant that makes it sound; every other module is
//! safe code (`#![deny(unsafe_code)]`).

#![deny(unsafe_code)]

pub mod counter;
#[macro_use]
pub mod families;
#[macro_use]
mod hop;
pub mod counters;
pub mod custody;
pub mod drop;
pub mod fallback;
pub mod layout;
mod mapped;
pub mod reader;
pub mod snapshot;
#[allow(unsafe_code)]
mod sys;
pub mod writer;

#[cfg(test)]
mod tests;

pub use counter::{unix_ns, Counter};
pub use counters::{
    FallbackCounters, FallbackSnapshot, HistogramValues, HopCounters, HopLatency, KernelCounters,
    LatencySummary, LatencyValues, OutputCounters, QueueCounters, RecorderCounters, TapCounters,
    WorkerCounters, DROP_SLOTS, HOP_RTT_BOUNDS_NS, HOP_RTT_BUCKETS,
};
pub use drop::{DropExt, DropReason, OutputDropReason};
pub use fallback::PortFallbackCounters;
pub use layout::{
    DataplaneDesc, HopDesc, HopInfo, Layout, OutputDesc, OutputInfo, OutputKind, QueueDesc,
    QueueInfo, SegmentHeader, SegmentState, FILE_MODE, FILE_NAME, HOP_NAME_BYTES,
    LINK_DOWN_INLINE_1, LINK_DOWN_INLINE_2, LINK_DOWN_PASSIVE_1, MAGIC, MIN_READ_VERSION,
    OUTPUT_NAME_BYTES, OUTPUT_TEXT_BYTES, VERSION,
};
pub use reader::{SegmentError, SegmentReader};
pub use snapshot::{
    HopSnapshot, OutputSnapshot, QueueSnapshot, RecorderSnapshot, Snapshot, TapSnapshot,
    WorkerSnapshot,
};
pub use sys::Slot;
pub use writer::StatsSegment;
