//! Moving frames from an RX ring to a TX ring by descriptor, in bulk:
//! [`forward`] as is, [`forward_each`] after a per-frame verdict of the
//! caller's, [`release_each`] when there is no egress.

use super::{RxQueue, TxQueue};
use crate::xdp::ring::{copy_split, XdpDesc};
use crate::xdp::umem::{Frame, FramePool, Umem};

/// Why a received frame was not transmitted by [`forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardResult {
    /// Frames taken from the RX ring.
    pub received: u32,
    pub rx_bytes: u64,
    /// Frames placed on the TX ring.
    pub forwarded: u32,
    pub tx_bytes: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_full: u32,
}

/// Moves up to `max` frames from `rx` to `tx` by descriptor: the frame bytes
/// are never copied in user space. Frames that find the TX ring full are
/// returned to `pool` (and counted) so the RX side never stalls.
pub fn forward(
    rx: &mut RxQueue,
    tx: &mut TxQueue,
    pool: &mut FramePool,
    max: u32,
) -> ForwardResult {
    let n = rx.ring.peek(max);
    if n == 0 {
        return ForwardResult {
            received: 0,
            rx_bytes: 0,
            forwarded: 0,
            tx_bytes: 0,
            tx_full: 0,
        };
    }
    let room = tx.ring.reserve(n);
    let (r1, r2) = rx.ring.peeked(n);
    let len_sum = |d: &[XdpDesc]| d.iter().map(|d| u64::from(d.len)).sum::<u64>();
    let rx_bytes = len_sum(r1) + len_sum(r2);
    // The descriptors that fit go to TX in at most three memcpys; the rest
    // (TX ring full) go back to the pool.
    let fit1 = r1.len().min(room as usize);
    let fit2 = room as usize - fit1;
    let tx_bytes = if room == n {
        rx_bytes
    } else {
        len_sum(&r1[..fit1]) + len_sum(&r2[..fit2])
    };
    copy_split((&r1[..fit1], &r2[..fit2]), tx.ring.reserved_mut(room));
    for d in r1[fit1..].iter().chain(&r2[fit2..]) {
        pool.free_addr(d.addr);
    }
    rx.ring.release(n);
    tx.ring.publish(room);
    ForwardResult {
        received: n,
        rx_bytes,
        forwarded: room,
        tx_bytes,
        tx_full: n - room,
    }
}

/// The largest batch the bulk operations of this module are built for:
/// [`forward_each`] and [`release_each`] take at most this many frames per
/// call (the size of their per-frame bitmap), and a copy-mode TX kick asks
/// the kernel for a budget of this many frames. The configuration's batch
/// size is bounded by it (the pipeline checks that at compile time).
pub const MAX_BATCH_FRAMES: u32 = 256;
const BATCH_WORDS: usize = (MAX_BATCH_FRAMES as usize).div_ceil(64);

/// What [`forward_each`] does with one received frame, as the caller's
/// closure decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit it on the egress queue.
    Forward,
    /// Take it out of the stream (the caller has dealt with its bytes):
    /// back to the pool.
    Consume,
}

/// Totals of one [`forward_each`] (or [`release_each`]) pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EachResult {
    /// Frames taken from the RX ring, and their bytes.
    pub received: u32,
    pub rx_bytes: u64,
    /// Frames the verdict consumed (not forwarded).
    pub consumed: u32,
    pub consumed_bytes: u64,
    /// Frames placed on the TX ring, and their bytes.
    pub forwarded: u32,
    pub tx_bytes: u64,
    /// Frames to forward that found the TX ring full.
    pub tx_full: u32,
    /// Frames to forward with no egress ([`release_each`]): dropped.
    pub no_egress: u32,
    pub no_egress_bytes: u64,
}

/// Pass 1 of [`forward_each`] and [`release_each`]: shows the `n` peeked
/// frames to `verdict`, counting bytes, with a bit per consumed frame.
#[inline(always)]
fn sort_batch<F: FnMut(&[u8]) -> Verdict>(
    peeked: (&[XdpDesc], &[XdpDesc]),
    umem: &Umem,
    r: &mut EachResult,
    mut verdict: F,
) -> [u64; BATCH_WORDS] {
    let (r1, r2) = peeked;
    let mut consumed = [0u64; BATCH_WORDS];
    for (i, d) in r1.iter().chain(r2).enumerate() {
        let len = u64::from(d.len);
        r.rx_bytes += len;
        if verdict(umem.data(&Frame::new(d.addr, d.len))) == Verdict::Consume {
            consumed[i / 64] |= 1 << (i % 64);
            r.consumed += 1;
            r.consumed_bytes += len;
        }
    }
    consumed
}

/// Like [`forward`], but shows every frame to `verdict` first (which reads
/// its bytes), so some frames can be taken out of the stream. Frames move
/// by descriptor.
///
/// At most [`MAX_BATCH_FRAMES`] frames are taken per call. A batch in which
/// the verdict consumes nothing (the common case) moves to TX in bulk, as
/// in [`forward`]; only a batch with a consumed frame is sorted frame by
/// frame.
pub fn forward_each<F: FnMut(&[u8]) -> Verdict>(
    rx: &mut RxQueue,
    tx: &mut TxQueue,
    umem: &Umem,
    pool: &mut FramePool,
    max: u32,
    verdict: F,
) -> EachResult {
    let mut r = EachResult::default();
    let n = rx.ring.peek(max.min(MAX_BATCH_FRAMES));
    if n == 0 {
        return r;
    }
    let (r1, r2) = rx.ring.peeked(n);
    let consumed = sort_batch((r1, r2), umem, &mut r, verdict);
    r.received = n;
    let is_consumed = |i: usize| consumed[i / 64] & (1 << (i % 64)) != 0;
    if r.consumed == 0 {
        // Everything is forwarded: at most three memcpys, the rest (TX
        // ring full) back to the pool.
        let room = tx.ring.reserve(n);
        let fit1 = r1.len().min(room as usize);
        let fit2 = room as usize - fit1;
        let len_sum = |d: &[XdpDesc]| d.iter().map(|d| u64::from(d.len)).sum::<u64>();
        r.tx_bytes = if room == n {
            r.rx_bytes
        } else {
            len_sum(&r1[..fit1]) + len_sum(&r2[..fit2])
        };
        copy_split((&r1[..fit1], &r2[..fit2]), tx.ring.reserved_mut(room));
        for d in r1[fit1..].iter().chain(&r2[fit2..]) {
            pool.free_addr(d.addr);
        }
        r.forwarded = room;
        r.tx_full = n - room;
        tx.ring.publish(room);
    } else {
        let room = tx.ring.reserve(n - r.consumed);
        for (i, &d) in r1.iter().chain(r2).enumerate() {
            if is_consumed(i) {
                pool.free_addr(d.addr);
            } else if r.forwarded < room {
                // The descriptor now stands for the frame (it comes back
                // through the completion ring).
                tx.ring.write(r.forwarded, d);
                r.forwarded += 1;
                r.tx_bytes += u64::from(d.len);
            } else {
                r.tx_full += 1;
                pool.free_addr(d.addr);
            }
        }
        tx.ring.publish(r.forwarded);
    }
    rx.ring.release(n);
    r
}

/// [`forward_each`] without an egress queue: every frame is shown to
/// `verdict`, then all of them go back to the pool; the frames the verdict
/// would have forwarded are counted as `no_egress`.
pub fn release_each<F: FnMut(&[u8]) -> Verdict>(
    rx: &mut RxQueue,
    umem: &Umem,
    pool: &mut FramePool,
    max: u32,
    verdict: F,
) -> EachResult {
    let mut r = EachResult::default();
    let n = rx.ring.peek(max.min(MAX_BATCH_FRAMES));
    if n == 0 {
        return r;
    }
    let (r1, r2) = rx.ring.peeked(n);
    sort_batch((r1, r2), umem, &mut r, verdict);
    r.received = n;
    for d in r1.iter().chain(r2) {
        pool.free_addr(d.addr);
    }
    r.no_egress = n - r.consumed;
    r.no_egress_bytes = r.rx_bytes - r.consumed_bytes;
    rx.ring.release(n);
    r
}
