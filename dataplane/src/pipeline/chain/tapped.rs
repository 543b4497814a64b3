//! The chain task's third path: a route that goes past a live tap.

use super::*;

/// What the tapped path needs besides the queues.
pub(super) struct TapScratch<'a> {
    pub(super) rx_tap: &'a mut TapPort,
    /// The egress port's taps (`None` without an egress).
    pub(super) tx_tap: Option<&'a mut TapPort>,
    pub(super) frames: &'a mut Vec<Frame>,
    pub(super) keep: &'a mut Vec<Frame>,
    /// The poll's timestamp (0: not read yet).
    pub(super) ts: &'a mut u64,
}

/// [`forward_each`] for a route that goes past a tap: the same verdicts,
/// drops and totals, and every received frame the verdict keeps is offered
/// to the RX taps of its port, every frame placed on the TX ring to the TX
/// taps of the egress. Frames still move by descriptor.
///
/// To offer exactly the frames that get a TX slot, the free TX slots are
/// read first and no more frames than that are handed to the ring (the rest
/// are TX-ring-full drops, as in [`forward_each`]).
pub(super) fn forward_tapped(
    rx: &mut RxQueue,
    mut tx: Option<&mut TxQueue>,
    umem: &Umem,
    pool: &mut FramePool,
    batch: u32,
    s: TapScratch<'_>,
    mut verdict: impl FnMut(&[u8]) -> Verdict,
) -> EachResult {
    let mut r = EachResult::default();
    s.frames.clear();
    let n = rx.recv(batch, s.frames);
    if n == 0 {
        return r;
    }
    r.received = n;
    if *s.ts == 0 {
        // CLOCK_REALTIME, once per poll.
        *s.ts = unix_ns();
    }
    let ts = *s.ts;
    let room = tx.as_deref_mut().map_or(0, |t| t.free_slots());
    let mut tx_tap = s.tx_tap.filter(|t| t.tx_active());
    s.keep.clear();
    for f in s.frames.drain(..) {
        let len = u64::from(f.len());
        r.rx_bytes += len;
        let data = umem.data(&f);
        if verdict(data) == Verdict::Consume {
            r.consumed += 1;
            r.consumed_bytes += len;
            pool.free(f);
            continue;
        }
        s.rx_tap.offer_rx(data, ts);
        if tx.is_none() {
            r.no_egress += 1;
            r.no_egress_bytes += len;
            pool.free(f);
        } else if (s.keep.len() as u32) < room {
            if let Some(t) = tx_tap.as_deref_mut() {
                t.offer_tx(data, ts);
            }
            r.forwarded += 1;
            r.tx_bytes += len;
            s.keep.push(f);
        } else {
            r.tx_full += 1;
            pool.free(f);
        }
    }
    if let Some(tx) = tx {
        // `room` was read from the ring just now and only this thread
        // fills it: every kept frame fits.
        tx.send(s.keep);
        debug_assert!(s.keep.is_empty(), "TX room shrank under us");
        for f in s.keep.drain(..) {
            pool.free(f);
        }
    }
    r
}
