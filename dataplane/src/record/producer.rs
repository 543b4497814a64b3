//! The capture side of a recorder: pcap records appended straight into a
//! block taken from the recorder's free list, full blocks sent to the
//! writer thread. Never blocks, never allocates: with no free block the
//! packet is dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam::channel::{Sender, TrySendError};

use super::{Msg, Shared};
use tapline_packet::pcap::{self, RECORD_HEADER_LEN};
use tapline_segment::{RecorderCounters, Slot};

/// A block is handed to the writer once its first packet is this much
/// older than the packet being added (by the packets' own timestamps: no
/// clock read per packet), so a slow trickle still reaches the disk.
pub const MAX_BLOCK_AGE_NS: u64 = 100_000_000;

/// What a capture task holds to record packets: never blocks.
///
/// Records are appended to the producer's current block; full blocks, and
/// blocks whose first packet is older than [`MAX_BLOCK_AGE_NS`], go to the
/// writer in order. Call [`RecordProducer::flush`] when the capture loop is
/// idle (it costs nothing when nothing is buffered); dropping the producer
/// flushes too. After [`super::Recorder::stop`], `record` drops packets
/// without counting them (the recorder's counters may belong to a new
/// recorder by then).
#[derive(Debug)]
pub struct RecordProducer {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    counters: Slot<RecorderCounters>,
    /// The block being filled; `None` until the first packet after a
    /// hand-over.
    cur: Option<Vec<u8>>,
    /// Timestamp of the first packet in `cur`.
    cur_first_ts_ns: u64,
    /// Packets and their wire bytes in `cur` (to count them if the block
    /// is lost).
    cur_packets: u64,
    cur_bytes: u64,
    snaplen: usize,
    block_bytes: usize,
}

impl RecordProducer {
    pub(super) fn new(
        shared: Arc<Shared>,
        tx: Sender<Msg>,
        counters: Slot<RecorderCounters>,
    ) -> RecordProducer {
        shared.producers.fetch_add(1, Ordering::Relaxed);
        RecordProducer {
            snaplen: shared.snaplen as usize,
            block_bytes: shared.block_bytes,
            shared,
            tx,
            counters,
            cur: None,
            cur_first_ts_ns: 0,
            cur_packets: 0,
            cur_bytes: 0,
        }
    }

    /// Queues one packet (cut to the snap length). Never blocks: when the
    /// queue is full the packet is dropped and counted (`false`).
    #[inline]
    pub fn record(&mut self, ts_unix_ns: u64, frame: &[u8]) -> bool {
        // Relaxed: the flag only makes late packets cheap; the writer's
        // drain does not depend on seeing it.
        if self.shared.closed.load(Ordering::Relaxed) {
            return false;
        }
        let data = &frame[..frame.len().min(self.snaplen)];
        let need = RECORD_HEADER_LEN + data.len();
        if let Some(b) = &self.cur {
            if b.len() + need > self.block_bytes
                || ts_unix_ns.saturating_sub(self.cur_first_ts_ns) > MAX_BLOCK_AGE_NS
            {
                self.hand_over();
            }
        }
        let block = match &mut self.cur {
            Some(b) => b,
            None => match self.shared.free.pop() {
                Some(b) => {
                    self.cur_first_ts_ns = ts_unix_ns;
                    self.cur.insert(b)
                }
                None => {
                    self.counters.queue_dropped_packets.add_shared(1);
                    self.counters
                        .queue_dropped_bytes
                        .add_shared(frame.len() as u64);
                    return false;
                }
            },
        };
        // Blocks hold at least one record of the largest snap length
        // (`block_plan`), and `need` fits what is left: no reallocation.
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        pcap::record(ts_unix_ns, orig_len, data, block);
        self.cur_packets += 1;
        self.cur_bytes += frame.len() as u64;
        true
    }

    /// Hands what is buffered to the writer (call when idle, and at least
    /// every few hundred milliseconds). Nothing buffered: does nothing.
    #[inline]
    pub fn flush(&mut self) {
        if self.cur.is_some() {
            self.hand_over();
        }
    }

    /// Hands the buffered block over if its first packet is older than
    /// `age_ns` at `now_unix_ns` (the capture task's idle path: quiet
    /// traffic still reaches the disk, while a busy link fills whole
    /// blocks).
    #[inline]
    pub(crate) fn flush_older_than(&mut self, now_unix_ns: u64, age_ns: u64) {
        if self.cur.is_some() && now_unix_ns.saturating_sub(self.cur_first_ts_ns) >= age_ns {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let Some(block) = self.cur.take() else {
            return;
        };
        let (packets, bytes) = (self.cur_packets, self.cur_bytes);
        self.cur_packets = 0;
        self.cur_bytes = 0;
        if block.is_empty() {
            let _ = self.shared.free.push(block);
            return;
        }
        match self.tx.try_send(Msg::Block(block)) {
            Ok(()) => {}
            // The channel holds every block there is plus the stop
            // message, so it is never full; if it were, the block goes back
            // to the free list and its packets count as queue drops.
            Err(TrySendError::Full(msg)) => {
                self.counters.queue_dropped_packets.add_shared(packets);
                self.counters.queue_dropped_bytes.add_shared(bytes);
                self.recycle(msg);
            }
            // The writer is gone (stopped): late packets are not counted.
            Err(TrySendError::Disconnected(msg)) => self.recycle(msg),
        }
    }

    fn recycle(&self, msg: Msg) {
        if let Msg::Block(mut b) = msg {
            b.clear();
            let _ = self.shared.free.push(b);
        }
    }
}

impl Drop for RecordProducer {
    fn drop(&mut self) {
        self.flush();
        self.shared.producers.fetch_sub(1, Ordering::Relaxed);
    }
}
