//! The names of the reasons a frame or packet is dropped: the index of a
//! drop counter in the segment, and the label readers show.

use crate::counters::DROP_SLOTS;

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
    const _FITS: () = assert!(Self::COUNT <= DROP_SLOTS);
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
    const _FITS: () = assert!(Self::COUNT <= DROP_SLOTS);
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

/// Counting a drop by reason.
pub trait DropExt {
    fn drop_frames(&self, reason: DropReason, n: u64);
}

impl DropExt for crate::QueueCounters {
    #[inline]
    fn drop_frames(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].add(n);
        }
    }
}

impl DropExt for crate::HopCounters {
    #[inline]
    fn drop_frames(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HopInfo, Layout, StatsSegment};

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
