//! Counters written by one worker each and read by anyone.
//!
//! Every counter block is cache-line aligned and has a single writer (the
//! worker that owns the queue), which updates it with a plain load + store:
//! no locks and no atomic read-modify-write on the hot path. Readers load
//! with `Relaxed`; a reader may see a block mid-update (one counter newer
//! than another), never a torn `u64`. Blocks are `repr(C)` so they can live
//! in a shared-memory segment.

use std::fmt;

pub use crate::xdp::shm::{
    Counter, HopCounters, HopInfo, HopLatency, KernelCounters, LatencySummary, Layout,
    OutputCounters, OutputInfo, OutputKind, QueueCounters, QueueInfo, RecorderCounters, Slot,
    StatsSegment, TapCounters, WorkerCounters, HOP_RTT_BOUNDS_NS, HOP_RTT_BUCKETS,
};
use crate::xdp::{PortMode, XskStats};

/// Why the dataplane dropped a frame it had received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// The egress port's TX ring was full (it is slower than the ingress).
    TxRingFull = 0,
    /// The hop is down and its failure action is drop.
    HopDown = 1,
    /// A heartbeat-shaped frame (the heartbeat ethertype) arrived on
    /// inline-1 or inline-2, from the wire rather than from a tool.
    HeartbeatFromWire = 2,
    /// A frame with the heartbeat ethertype came back from a tool with a
    /// wrong keyed tag or hop id.
    HeartbeatInvalid = 3,
}

impl DropReason {
    pub const COUNT: usize = 4;
    const _FITS: () = assert!(Self::COUNT <= crate::xdp::shm::DROP_SLOTS);
    /// Every reason, in slot order (`ALL[i] as usize == i`).
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::TxRingFull,
        DropReason::HopDown,
        DropReason::HeartbeatFromWire,
        DropReason::HeartbeatInvalid,
    ];

    /// The name readers show (metrics label, API map key).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::HopDown => "hop_down",
            DropReason::HeartbeatFromWire => "heartbeat_from_wire",
            DropReason::HeartbeatInvalid => "heartbeat_invalid",
        }
    }
}

/// Why a passive output (a group member or a recorder) did not get a
/// packet its filter accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OutputDropReason {
    /// The member's TX ring was full, or its share of the UMEM was in
    /// flight (the member is slower than the capture).
    TxRingFull = 0,
    /// The member's link was down.
    MemberDown = 1,
    /// The kernel refused to transmit on the member (other than "busy").
    TxError = 2,
    /// The recorder's queue was full (the disk is slower than the traffic).
    QueueFull = 3,
    /// The recorder's directory failed (full, read-only, missing); its
    /// packets are dropped until a write succeeds again.
    DiskError = 4,
}

impl OutputDropReason {
    pub const COUNT: usize = 5;
    const _FITS: () = assert!(Self::COUNT <= crate::xdp::shm::DROP_SLOTS);
    /// Every reason, in slot order.
    pub const ALL: [OutputDropReason; Self::COUNT] = [
        OutputDropReason::TxRingFull,
        OutputDropReason::MemberDown,
        OutputDropReason::TxError,
        OutputDropReason::QueueFull,
        OutputDropReason::DiskError,
    ];

    /// The name readers show (metrics label, API map key).
    pub fn name(self) -> &'static str {
        match self {
            OutputDropReason::TxRingFull => "tx_ring_full",
            OutputDropReason::MemberDown => "member_down",
            OutputDropReason::TxError => "tx_error",
            OutputDropReason::QueueFull => "queue_full",
            OutputDropReason::DiskError => "disk_error",
        }
    }
}

impl KernelCountersExt for KernelCounters {
    fn store(&self, s: &XskStats) {
        self.rx_dropped.set(s.rx_dropped);
        self.rx_invalid_descs.set(s.rx_invalid_descs);
        self.tx_invalid_descs.set(s.tx_invalid_descs);
        self.rx_ring_full.set(s.rx_ring_full);
        self.rx_fill_ring_empty.set(s.rx_fill_ring_empty);
        self.tx_ring_empty.set(s.tx_ring_empty);
    }
}

/// Copies the kernel's socket statistics into their mirror.
pub trait KernelCountersExt {
    fn store(&self, s: &XskStats);
}

/// Counting a drop by reason.
pub trait DropExt {
    fn drop_frames(&self, reason: DropReason, n: u64);
}

impl DropExt for QueueCounters {
    #[inline]
    fn drop_frames(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].add(n);
        }
    }
}

impl DropExt for HopCounters {
    #[inline]
    fn drop_frames(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].add(n);
        }
    }
}

/// The role of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Passive1,
    Inline1,
    Inline2,
    /// A tool port facing inline-1 (a hop's `a` interface).
    ToolA,
    /// A tool port facing inline-2 (a hop's `b` interface).
    ToolB,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Passive1 => "passive-1",
            Role::Inline1 => "inline-1",
            Role::Inline2 => "inline-2",
            Role::ToolA => "tool-a",
            Role::ToolB => "tool-b",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A (port, queue) and its counters.
#[derive(Debug, Clone)]
pub struct QueueStats {
    pub role: Role,
    pub ifname: String,
    pub queue: u32,
    pub mode: PortMode,
    pub counters: Slot<QueueCounters>,
}

/// Everything the dataplane counts, for readers (logs, tests, the sidecar).
#[derive(Debug, Clone, Default)]
pub struct StatsRegistry {
    pub queues: Vec<QueueStats>,
    pub workers: Vec<Slot<WorkerCounters>>,
}

/// Totals of one port over its queues, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
    pub kernel_invalid_descs: u64,
}

impl StatsRegistry {
    /// Sums the queues of `role`.
    pub fn port_totals(&self, role: Role) -> PortTotals {
        let mut t = PortTotals::default();
        for q in self.queues.iter().filter(|q| q.role == role) {
            let c = &q.counters;
            t.rx_packets += c.rx_packets.get();
            t.rx_bytes += c.rx_bytes.get();
            t.tx_packets += c.tx_packets.get();
            t.tx_bytes += c.tx_bytes.get();
            for (d, s) in t.drops.iter_mut().zip(&c.drops) {
                *d += s.get();
            }
            t.kernel_rx_dropped += c.kernel.rx_dropped.get();
            t.kernel_rx_ring_full += c.kernel.rx_ring_full.get();
            t.kernel_fill_ring_empty += c.kernel.rx_fill_ring_empty.get();
            t.kernel_invalid_descs +=
                c.kernel.rx_invalid_descs.get() + c.kernel.tx_invalid_descs.get();
        }
        t
    }

    /// Roles present, in a stable order.
    pub fn roles(&self) -> Vec<Role> {
        let mut r: Vec<Role> = Vec::new();
        for q in &self.queues {
            if !r.contains(&q.role) {
                r.push(q.role);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_queues_of_a_role() {
        let mode = PortMode {
            attach: crate::xdp::AttachMode::Generic,
            bind: crate::xdp::BindMode::Copy,
        };
        let seg = StatsSegment::in_memory(3, 0);
        let mk = |role, queue: u32, rx| {
            let c = seg.queue_slot(queue as usize);
            c.rx_packets.add(rx);
            c.drop_frames(DropReason::TxRingFull, 1);
            QueueStats {
                role,
                ifname: "x".into(),
                queue,
                mode,
                counters: c,
            }
        };
        let reg = StatsRegistry {
            queues: vec![
                mk(Role::Inline1, 0, 5),
                mk(Role::Inline1, 1, 7),
                mk(Role::Inline2, 2, 100),
            ],
            workers: vec![],
        };
        let t = reg.port_totals(Role::Inline1);
        assert_eq!(t.rx_packets, 12);
        assert_eq!(t.drops[DropReason::TxRingFull as usize], 2);
        assert_eq!(reg.roles(), vec![Role::Inline1, Role::Inline2]);
    }

    #[test]
    fn drop_reasons_are_in_slot_order_with_unique_names() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "tx_ring_full",
                "hop_down",
                "heartbeat_from_wire",
                "heartbeat_invalid"
            ]
        );
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(Role::ToolA.to_string(), "tool-a");
        assert_eq!(Role::ToolB.as_str(), "tool-b");
    }

    #[test]
    fn hop_drops_count_by_reason() {
        let seg = StatsSegment::in_memory_with(&Layout {
            max_hops: 1,
            n_hop_writers: 2,
            ..Layout::default()
        });
        seg.describe_hop(
            0,
            Some(HopInfo {
                name: "ids".into(),
                position: 0,
            }),
        );
        seg.hop_slot(0, 0).drop_frames(DropReason::HopDown, 3);
        seg.hop_slot(0, 1).drop_frames(DropReason::HopDown, 4);
        seg.hop_slot(0, 1)
            .drop_frames(DropReason::HeartbeatInvalid, 1);
        seg.hop_slot(0, 1).drop_frames(DropReason::TxRingFull, 0);
        let h = &seg.snapshot().hops[0];
        assert_eq!(h.drops[DropReason::HopDown as usize], 7);
        assert_eq!(h.drops[DropReason::HeartbeatInvalid as usize], 1);
        assert_eq!(h.drops[DropReason::TxRingFull as usize], 0);
    }
}
