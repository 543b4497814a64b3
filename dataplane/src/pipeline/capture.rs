//! Passive capture on passive-1: one task per RX queue.
//!
//! Frames are shown to every registered [`CaptureConsumer`] and then go
//! straight back to the fill ring. Consumers (the pcap writer, fan-out, the
//! live tap) plug in through the trait without touching the engine.

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::stats::{KernelCountersExt, QueueCounters, Slot};
use crate::xdp::{FramePool, QueueGroup, Umem, XskSocket};

use super::PollOutcome;

/// Something that wants to see captured frames. Called on the worker thread
/// for every frame, so it must not block: a consumer that cannot keep up
/// drops and counts, it never stalls capture.
pub trait CaptureConsumer: Send + std::fmt::Debug {
    fn on_frame(&mut self, frame: &[u8]);
}

/// Captures one RX queue.
#[derive(Debug)]
pub struct CaptureTask {
    socket: XskSocket,
    pool: FramePool,
    umem: Arc<Umem>,
    counters: Slot<QueueCounters>,
    consumers: Vec<Box<dyn CaptureConsumer>>,
}

impl CaptureTask {
    pub fn new(group: QueueGroup, counters: Slot<QueueCounters>) -> CaptureTask {
        let QueueGroup {
            umem, mut sockets, ..
        } = group;
        assert_eq!(sockets.len(), 1, "a capture group has one socket");
        let mut socket = sockets.pop().expect("one socket");
        let mut pool = FramePool::for_umem(&umem);
        socket.fill.refill(&mut pool, u32::MAX);
        CaptureTask {
            socket,
            pool,
            umem,
            counters,
            consumers: Vec::new(),
        }
    }

    /// A capture task over an in-memory socket (tests, microbenchmarks).
    pub fn in_memory(mut socket: XskSocket, mut pool: FramePool, umem: Arc<Umem>) -> CaptureTask {
        socket.fill.refill(&mut pool, u32::MAX);
        CaptureTask {
            socket,
            pool,
            umem,
            counters: crate::stats::StatsSegment::in_memory(1, 0).queue_slot(0),
            consumers: Vec::new(),
        }
    }

    /// Adds a consumer; it sees every frame captured from now on.
    pub fn add_consumer(&mut self, c: Box<dyn CaptureConsumer>) {
        self.consumers.push(c);
    }

    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        let s = &mut self.socket;
        let rx = s.rx.as_mut().expect("capture sockets have RX");
        let (n, bytes) = if self.consumers.is_empty() {
            rx.count_into_fill(batch, &self.umem, &mut s.fill, &mut self.pool)
        } else {
            let consumers = &mut self.consumers;
            rx.consume_into_fill(batch, &self.umem, &mut s.fill, &mut self.pool, |frame| {
                for c in consumers.iter_mut() {
                    c.on_frame(frame);
                }
            })
        };
        if n > 0 {
            self.counters.rx_packets.add(u64::from(n));
            self.counters.rx_bytes.add(bytes);
        }
        if self.pool.available() > 0 {
            s.fill.refill(&mut self.pool, u32::MAX);
        }
        if s.is_zerocopy() && s.fill.needs_wakeup() {
            s.kick_rx();
        }
        PollOutcome {
            frames: n,
            pending: false,
        }
    }

    pub fn refresh_kernel_stats(&mut self) {
        if let Ok(k) = self.socket.statistics() {
            self.counters.kernel.store(&k);
        }
    }

    pub fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.socket.raw_fd());
    }
}
