//! A mapped segment with its sizes: typed, bounds-checked access to every
//! block, shared by the writer ([`crate::StatsSegment`]) and the reader
//! ([`crate::SegmentReader`]).

use std::mem::size_of;

use crate::counters::{
    FallbackCounters, HopCounters, HopLatency, LatencySummary, OutputCounters, QueueCounters,
    RecorderCounters, TapCounters, WorkerCounters,
};
use crate::layout::{
    DataplaneDesc, HopDesc, Layout, Offsets, OutputDesc, QueueDesc, SegmentHeader,
};
use crate::sys::{Block, Mmap};

/// A mapped segment (writer or reader side).
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) map: Mmap,
    pub(crate) layout: Layout,
    pub(crate) off: Offsets,
}

impl Mapped {
    pub(crate) fn header(&self) -> &SegmentHeader {
        self.map.block(0)
    }

    /// Block `i` of an array of `n` blocks of `T` starting at `base`.
    fn nth<T: Block>(&self, base: usize, i: usize, n: usize) -> &T {
        assert!(i < n, "slot {i} out of range ({n} slots)");
        // `Offsets` places `n` blocks of `T` from `base`, inside the mapping.
        self.map.block(base + i * size_of::<T>())
    }

    pub(crate) fn dataplane(&self) -> &DataplaneDesc {
        self.nth(self.off.dataplane, 0, 1)
    }

    pub(crate) fn queue_desc(&self, i: usize) -> &QueueDesc {
        self.nth(self.off.queue_descs, i, self.layout.n_queues)
    }

    pub(crate) fn queue(&self, i: usize) -> &QueueCounters {
        self.nth(self.off.queues, i, self.layout.n_queues)
    }

    pub(crate) fn worker(&self, i: usize) -> &WorkerCounters {
        self.nth(self.off.workers, i, self.layout.n_workers)
    }

    pub(crate) fn latency(&self, i: usize) -> &LatencySummary {
        self.nth(self.off.latency, i, self.layout.n_workers)
    }

    pub(crate) fn hop_desc(&self, slot: usize) -> &HopDesc {
        self.nth(self.off.hop_descs, slot, self.layout.max_hops)
    }

    pub(crate) fn hop(&self, slot: usize, writer: usize) -> &HopCounters {
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

    pub(crate) fn hop_latency(&self, slot: usize) -> &HopLatency {
        self.nth(self.off.hop_latency, slot, self.layout.max_hops)
    }

    pub(crate) fn output_desc(&self, slot: usize) -> &OutputDesc {
        self.nth(self.off.output_descs, slot, self.layout.n_outputs)
    }

    pub(crate) fn output(&self, slot: usize, writer: usize) -> &OutputCounters {
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

    pub(crate) fn recorder(&self, i: usize) -> &RecorderCounters {
        self.nth(self.off.recorders, i, self.layout.max_recorders)
    }

    pub(crate) fn tap(&self, i: usize) -> &TapCounters {
        self.nth(self.off.taps, i, self.layout.max_taps)
    }

    pub(crate) fn fallback(&self) -> Option<&FallbackCounters> {
        self.off.fallback.map(|base| self.nth(base, 0, 1))
    }
}
