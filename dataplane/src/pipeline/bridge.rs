//! The inline L2 bridge: inline-1 <-> inline-2, one task per queue pair.
//!
//! Both sockets share a UMEM, so a frame received on one side is queued for
//! transmission on the other by moving its descriptor. The bridge does not
//! look at frames: every ethertype, tagged or not, any size the link carries,
//! leaves the other side byte for byte as it arrived.

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::stats::{DropExt, DropReason, KernelCountersExt, QueueCounters, Slot, StatsSegment};
use crate::xdp::{forward, FramePool, QueueGroup, XskSocket};

use super::PollOutcome;

/// Kicks per poll while the kernel still holds TX descriptors: copy mode
/// transmits a bounded number of frames per `sendto` (32 by default), so a
/// batch of 64 needs two.
const MAX_TX_KICKS: u32 = 4;

/// Bridges queue N of inline-1 with queue N of inline-2.
#[derive(Debug)]
pub struct BridgeTask {
    /// `[side1, side2]`, sharing one UMEM.
    sockets: [XskSocket; 2],
    pool: FramePool,
    counters: [Slot<QueueCounters>; 2],
    zerocopy: bool,
    /// TX descriptors of each side the kernel had not consumed at last look.
    tx_pending: [bool; 2],
    // Keeps the UMEM alive as long as the sockets (declared after them so it
    // is dropped after them).
    _group_umem: Arc<crate::xdp::Umem>,
}

impl BridgeTask {
    /// Takes a queue group of exactly two sockets (side 1, side 2), both with
    /// RX and TX, and primes both fill rings.
    pub fn new(group: QueueGroup, counters: [Slot<QueueCounters>; 2]) -> BridgeTask {
        let QueueGroup {
            umem,
            sockets,
            mode,
        } = group;
        let [a, b]: [XskSocket; 2] = sockets.try_into().expect("a bridge group has two sockets");
        let mut t = BridgeTask {
            pool: FramePool::for_umem(&umem),
            sockets: [a, b],
            counters,
            zerocopy: mode.bind == crate::xdp::BindMode::ZeroCopy,
            tx_pending: [false; 2],
            _group_umem: umem,
        };
        t.refill();
        t
    }

    /// A bridge over two in-memory sockets (tests, microbenchmarks).
    pub fn in_memory(
        sockets: [XskSocket; 2],
        pool: FramePool,
        umem: Arc<crate::xdp::Umem>,
    ) -> BridgeTask {
        let mut t = BridgeTask {
            sockets,
            pool,
            counters: {
                let seg = StatsSegment::in_memory(2, 0);
                [seg.queue_slot(0), seg.queue_slot(1)]
            },
            zerocopy: false,
            tx_pending: [false; 2],
            _group_umem: umem,
        };
        t.refill();
        t
    }

    pub fn counters(&self) -> &[Slot<QueueCounters>; 2] {
        &self.counters
    }

    pub fn sockets_mut(&mut self) -> &mut [XskSocket; 2] {
        &mut self.sockets
    }

    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// Gives free frames to both fill rings, half of the pool each at most so
    /// one side cannot starve the other.
    fn refill(&mut self) {
        let [a, b] = &mut self.sockets;
        let half = (self.pool.available() as u32).div_ceil(2);
        a.fill.refill(&mut self.pool, half);
        b.fill.refill(&mut self.pool, u32::MAX);
        a.fill.refill(&mut self.pool, u32::MAX);
        if self.zerocopy {
            // Zero-copy drivers sleep when their fill ring ran dry and must be
            // woken (copy mode fills from softirq and never sets the flag).
            for s in [&*a, &*b] {
                if s.fill.needs_wakeup() {
                    s.kick_rx();
                }
            }
        }
    }

    fn kick(&mut self, side: usize, sent_now: bool) {
        if !sent_now && !self.tx_pending[side] {
            return;
        }
        let s = &mut self.sockets[side];
        let tx = s.tx.as_mut().expect("bridge sockets have TX");
        if self.zerocopy && !tx.needs_wakeup() {
            self.tx_pending[side] = false;
            return;
        }
        let mut pending = true;
        for _ in 0..MAX_TX_KICKS {
            s.kick_tx();
            let tx = s.tx.as_mut().expect("bridge sockets have TX");
            if tx.pending() == 0 {
                pending = false;
                break;
            }
        }
        self.tx_pending[side] = pending;
    }

    /// Moves up to `batch` frames each way.
    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        // Completions first: they free frames for the fill rings.
        {
            let [a, b] = &mut self.sockets;
            a.comp.reap(&mut self.pool, u32::MAX);
            b.comp.reap(&mut self.pool, u32::MAX);
        }
        let mut frames = 0;
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            let (rx_sock, tx_sock) = if from == 0 {
                let [a, b] = &mut self.sockets;
                (a, b)
            } else {
                let [a, b] = &mut self.sockets;
                (b, a)
            };
            let r = forward(
                rx_sock.rx.as_mut().expect("bridge sockets have RX"),
                tx_sock.tx.as_mut().expect("bridge sockets have TX"),
                &mut self.pool,
                batch,
            );
            if r.received > 0 {
                let (cin, cout) = (&self.counters[from], &self.counters[to]);
                cin.rx_packets.add(u64::from(r.received));
                cin.rx_bytes.add(r.rx_bytes);
                cout.tx_packets.add(u64::from(r.forwarded));
                cout.tx_bytes.add(r.tx_bytes);
                cout.drop_frames(DropReason::TxRingFull, u64::from(r.tx_full));
                frames += r.received;
            }
            self.kick(to, r.forwarded > 0);
        }
        self.refill();
        PollOutcome {
            frames,
            pending: self.tx_pending[0] || self.tx_pending[1],
        }
    }

    pub fn refresh_kernel_stats(&mut self) {
        for (s, c) in self.sockets.iter().zip(&self.counters) {
            if let Ok(k) = s.statistics() {
                c.kernel.store(&k);
            }
        }
    }

    pub fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.sockets.iter().filter_map(XskSocket::raw_fd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdp::{RingSizes, Umem, XdpDesc};

    const SIZES: RingSizes = RingSizes {
        rx: 64,
        tx: 64,
        fill: 64,
        completion: 64,
    };

    #[test]
    fn bridge_forwards_both_ways_and_counts() {
        let (a, mut ka) = XskSocket::in_memory(SIZES);
        let (b, mut kb) = XskSocket::in_memory(SIZES);
        let umem = Umem::new(2048, 256).unwrap();
        let mut t = BridgeTask::in_memory([a, b], FramePool::new(2048, 256), umem);
        // The kernel received 3 frames on side 1 and 2 on side 2, into frames
        // it took from the fill rings.
        let mut fa = Vec::new();
        ka.fill.kernel_pop(3, &mut fa);
        let mut fb = Vec::new();
        kb.fill.kernel_pop(2, &mut fb);
        let d = |a: &u64| XdpDesc {
            addr: *a,
            len: 100,
            options: 0,
        };
        ka.rx.kernel_push(&fa.iter().map(d).collect::<Vec<_>>());
        kb.rx.kernel_push(&fb.iter().map(d).collect::<Vec<_>>());
        let out = t.poll(64);
        assert_eq!(out.frames, 5);
        let mut on_b = Vec::new();
        kb.tx.kernel_pop(usize::MAX, &mut on_b);
        let mut on_a = Vec::new();
        ka.tx.kernel_pop(usize::MAX, &mut on_a);
        assert_eq!(on_b.iter().map(|d| d.addr).collect::<Vec<_>>(), fa);
        assert_eq!(on_a.iter().map(|d| d.addr).collect::<Vec<_>>(), fb);
        let [c1, c2] = t.counters();
        assert_eq!((c1.rx_packets.get(), c1.tx_packets.get()), (3, 2));
        assert_eq!((c2.rx_packets.get(), c2.tx_packets.get()), (2, 3));
        assert_eq!(c2.tx_bytes.get(), 300);
    }
}
