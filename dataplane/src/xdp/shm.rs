//! The stats segment now lives in the `tapline-segment` crate; these
//! re-exports keep the old paths compiling until every user imports it
//! directly.

pub use tapline_segment::{
    unix_ns, Counter, DataplaneDesc, FallbackCounters, FallbackSnapshot, HistogramValues,
    HopCounters, HopDesc, HopInfo, HopLatency, HopSnapshot, KernelCounters, LatencySummary,
    LatencyValues, Layout, OutputCounters, OutputDesc, OutputInfo, OutputKind, OutputSnapshot,
    QueueCounters, QueueDesc, QueueInfo, QueueSnapshot, RecorderCounters, RecorderSnapshot,
    SegmentError, SegmentHeader, SegmentReader, SegmentState, Slot, Snapshot, StatsSegment,
    TapCounters, TapSnapshot, WorkerCounters, WorkerSnapshot, DROP_SLOTS, FILE_MODE, FILE_NAME,
    HOP_NAME_BYTES, HOP_RTT_BOUNDS_NS, HOP_RTT_BUCKETS, LINK_DOWN_INLINE_1, LINK_DOWN_INLINE_2,
    LINK_DOWN_PASSIVE_1, MAGIC, MIN_READ_VERSION, OUTPUT_NAME_BYTES, OUTPUT_TEXT_BYTES, VERSION,
};
