//! Counters written by one worker each and read by anyone.
//!
//! Every counter block is cache-line aligned and has a single writer (the
//! worker that owns the queue), which updates it with a plain load + store:
//! no locks and no atomic read-modify-write on the hot path. Readers load
//! with `Relaxed`; a reader may see a block mid-update (one counter newer
//! than another), never a torn `u64`. Blocks are `repr(C)` so they can live
//! in a shared-memory segment.

use std::fmt;

use crate::xdp::{PortMode, XskStats};
use tapline_segment::{DropReason, KernelCounters, QueueCounters, Slot, WorkerCounters};

impl KernelCountersExt for KernelCounters {
    fn store(&self, s: &XskStats) {
        self.kernel_rx_dropped.set(s.rx_dropped);
        self.kernel_rx_invalid_descs.set(s.rx_invalid_descs);
        self.kernel_tx_invalid_descs.set(s.tx_invalid_descs);
        self.kernel_rx_ring_full.set(s.rx_ring_full);
        self.kernel_rx_fill_ring_empty.set(s.rx_fill_ring_empty);
        self.kernel_tx_ring_empty.set(s.tx_ring_empty);
    }
}

/// Copies the kernel's socket statistics into their mirror.
pub(crate) trait KernelCountersExt {
    fn store(&self, s: &XskStats);
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
            t.kernel_rx_dropped += c.kernel.kernel_rx_dropped.get();
            t.kernel_rx_ring_full += c.kernel.kernel_rx_ring_full.get();
            t.kernel_fill_ring_empty += c.kernel.kernel_rx_fill_ring_empty.get();
            t.kernel_invalid_descs +=
                c.kernel.kernel_rx_invalid_descs.get() + c.kernel.kernel_tx_invalid_descs.get();
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
    use tapline_segment::DropExt;

    #[test]
    fn totals_sum_queues_of_a_role() {
        let mode = PortMode {
            attach: crate::xdp::AttachMode::Generic,
            bind: crate::xdp::BindMode::Copy,
        };
        let seg = tapline_segment::StatsSegment::in_memory(3, 0);
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
    fn roles_have_their_names() {
        assert_eq!(Role::ToolA.to_string(), "tool-a");
        assert_eq!(Role::ToolB.as_str(), "tool-b");
    }
}
