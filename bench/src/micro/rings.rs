//! The fake kernel's side of the rings: UMEM with a frame in every chunk,
//! "receive" (fill ring to RX) and "transmit" (TX to completion).

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use tapline_config::xdp::RingSizes;
use tapline_dataplane::xdp::socket::FakeKernel;
use tapline_dataplane::xdp::{FramePool, Umem, XdpDesc};

use crate::traffic::{build_frame, FrameKind};

use super::{FRAME_COUNT, FRAME_LEN, FRAME_SIZE_BYTES, HEADROOM_BYTES, RING_SIZE, SENDER};

/// Writes a frame of ours at [`HEADROOM_BYTES`] into every chunk of `pool`'s
/// UMEM (all chunks are in the pool before a task starts).
pub(crate) fn write_frames(umem: &Umem, pool: &mut FramePool) {
    let mut frames = Vec::with_capacity(pool.available());
    while let Some(f) = pool.alloc() {
        frames.push(f);
    }
    let start = HEADROOM_BYTES as usize;
    for (seq, f) in frames.iter_mut().enumerate() {
        let bytes = build_frame(FrameKind::Udp4, FRAME_LEN as usize, SENDER, seq as u32, 1);
        umem.data_mut(f)[start..start + bytes.len()].copy_from_slice(&bytes);
    }
    // Back in reverse, so the pool hands out low addresses first as when new.
    for f in frames.into_iter().rev() {
        pool.free(f);
    }
}

pub(crate) fn sizes() -> RingSizes {
    RingSizes {
        rx: RING_SIZE,
        tx: RING_SIZE,
        fill: RING_SIZE,
        completion: RING_SIZE,
    }
}

pub(crate) fn new_umem() -> Result<(Arc<Umem>, FramePool)> {
    let umem = Umem::new(FRAME_SIZE_BYTES, FRAME_COUNT).context("allocating the UMEM")?;
    let mut pool = FramePool::for_umem(&umem);
    write_frames(&umem, &mut pool);
    Ok((umem, pool))
}

/// The fake kernel's reusable buffers for one side (no allocation per round).
#[derive(Debug, Default)]
pub(crate) struct SideBufs {
    pub(crate) fill: Vec<u64>,
    pub(crate) rx: Vec<XdpDesc>,
    pub(crate) tx: Vec<XdpDesc>,
    pub(crate) comp: Vec<u64>,
}

impl SideBufs {
    pub(crate) fn with_capacity(n: usize) -> SideBufs {
        SideBufs {
            fill: Vec::with_capacity(n),
            rx: Vec::with_capacity(n),
            tx: Vec::with_capacity(n),
            comp: Vec::with_capacity(n),
        }
    }
}

/// Kernel RX in copy mode: up to `max` chunks from the fill ring become
/// received frames. Returns how many; they stay in `b.rx` for checking.
pub(crate) fn kernel_receive(k: &mut FakeKernel, b: &mut SideBufs, max: u64) -> usize {
    b.fill.clear();
    k.fill.kernel_pop(max as usize, &mut b.fill);
    b.rx.clear();
    b.rx.extend(b.fill.iter().map(|&chunk| XdpDesc {
        addr: chunk + HEADROOM_BYTES,
        len: FRAME_LEN,
        options: 0,
    }));
    k.rx.kernel_push(&b.rx)
}

/// Kernel TX: takes every descriptor on the TX ring and completes it at
/// once. Returns how many.
pub(crate) fn kernel_transmit(k: &mut FakeKernel, b: &mut SideBufs) -> Result<usize> {
    b.tx.clear();
    k.tx.kernel_pop(usize::MAX, &mut b.tx);
    b.comp.clear();
    b.comp.extend(b.tx.iter().map(|d| d.addr));
    let n = k.comp.kernel_push(&b.comp);
    ensure!(
        n == b.comp.len(),
        "completion ring full: {n} of {}",
        b.comp.len()
    );
    Ok(n)
}
