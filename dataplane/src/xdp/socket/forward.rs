//! Moving frames from an RX ring to a TX ring by descriptor, in bulk:
//! [`forward`] as is, [`forward_each`] after a per-frame verdict of the
//! caller's.

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
// `#[inline]`: instantiated in the caller's codegen unit, so the pipeline
// inlines it whatever unit this module lands in.
#[inline]
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
/// [`forward_each`] takes at most this many frames per call (the size of
/// its per-frame bitmap), and a copy-mode TX kick asks
/// the kernel for a budget of this many frames. The configuration's batch
/// size is bounded by it (the pipeline checks that at compile time).
pub const MAX_BATCH_FRAMES: u32 = 256;

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

/// Totals of one [`forward_each`] pass.
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
    /// Frames to forward with no egress (`tx` was `None`): dropped.
    pub no_egress: u32,
    pub no_egress_bytes: u64,
}

/// Like [`forward`], but shows every frame to `verdict` first (which reads
/// its bytes), so some frames can be taken out of the stream. Without an
/// egress queue (`tx = None`) every frame goes back to the pool and those
/// the verdict would have forwarded are counted as `no_egress`; what that
/// means (e.g. a route that must drop) is the caller's business. Frames move
/// by descriptor either way.
///
/// At most [`MAX_BATCH_FRAMES`] frames are taken per call. A batch in which
/// the verdict consumes nothing (the common case) moves to TX in bulk, as in
/// [`forward`]; only a batch with a consumed frame is sorted frame by frame.
// `#[inline]`, as `forward`: the caller's verdict closure is then inlined
// into the per-frame loop.
#[inline]
pub fn forward_each<F: FnMut(&[u8]) -> Verdict>(
    rx: &mut RxQueue,
    tx: Option<&mut TxQueue>,
    umem: &Umem,
    pool: &mut FramePool,
    max: u32,
    mut verdict: F,
) -> EachResult {
    const WORDS: usize = (MAX_BATCH_FRAMES as usize).div_ceil(64);
    let mut r = EachResult::default();
    let n = rx.ring.peek(max.min(MAX_BATCH_FRAMES));
    if n == 0 {
        return r;
    }
    let (r1, r2) = rx.ring.peeked(n);
    // Pass 1: the verdicts, with a bit per consumed frame.
    let mut consumed = [0u64; WORDS];
    for (i, d) in r1.iter().chain(r2).enumerate() {
        let len = u64::from(d.len);
        r.rx_bytes += len;
        if verdict(umem.data(&Frame::new(d.addr, d.len))) == Verdict::Consume {
            consumed[i / 64] |= 1 << (i % 64);
            r.consumed += 1;
            r.consumed_bytes += len;
        }
    }
    r.received = n;
    let is_consumed = |i: usize| consumed[i / 64] & (1 << (i % 64)) != 0;
    match tx {
        None => {
            // No egress: every frame goes back to the pool.
            for d in r1.iter().chain(r2) {
                pool.free_addr(d.addr);
            }
            r.no_egress = n - r.consumed;
            r.no_egress_bytes = r.rx_bytes - r.consumed_bytes;
        }
        Some(tx) if r.consumed == 0 => {
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
        }
        Some(tx) => {
            let room = tx.ring.reserve(n - r.consumed);
            for (i, &d) in r1.iter().chain(r2).enumerate() {
                if is_consumed(i) {
                    pool.free_addr(d.addr);
                } else if r.forwarded < room {
                    // The descriptor now stands for the frame (it comes
                    // back through the completion ring).
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
    }
    rx.ring.release(n);
    r
}
