//! AF_XDP sockets and their four queues, as safe types.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::ring::{map_split, ConsRing, HeapRing, ProdRing, RingEntry, RingMem, XdpDesc};
use super::umem::{Frame, FramePool, Umem};
use super::{BindMode, XdpError};
use crate::sys::{self, Mmap};
use tapline_config::xdp::RingSizes;

/// RX ring: frames the kernel received into our UMEM.
#[derive(Debug)]
pub struct RxQueue {
    ring: ConsRing<XdpDesc>,
}

/// TX ring: frames we hand to the kernel to transmit.
#[derive(Debug)]
pub struct TxQueue {
    ring: ProdRing<XdpDesc>,
}

/// Fill ring: empty frames we give the kernel to receive into.
#[derive(Debug)]
pub struct FillQueue {
    ring: ProdRing<u64>,
}

/// Completion ring: frames the kernel finished transmitting.
#[derive(Debug)]
pub struct CompQueue {
    ring: ConsRing<u64>,
}

impl RxQueue {
    pub(crate) fn from_ring(ring: ConsRing<XdpDesc>) -> Self {
        RxQueue { ring }
    }

    /// Receives up to `max` frames into `out` (which is not cleared).
    pub fn recv(&mut self, max: u32, out: &mut Vec<Frame>) -> u32 {
        let n = self.ring.peek(max);
        for i in 0..n {
            let d = self.ring.read(i);
            out.push(Frame::new(d.addr, d.len));
        }
        self.ring.release(n);
        n
    }

    /// Shows up to `max` received frames to `f` and recycles them straight
    /// into `fill` (the capture path: frames are released after the
    /// consumers have seen them). Frames that do not fit in the fill ring go
    /// to `pool`. Returns (frames, bytes).
    pub fn consume_into_fill<F: FnMut(&[u8])>(
        &mut self,
        max: u32,
        umem: &Umem,
        fill: &mut FillQueue,
        pool: &mut FramePool,
        mut f: F,
    ) -> (u32, u64) {
        let n = self.ring.peek(max);
        if n == 0 {
            return (0, 0);
        }
        let (r1, r2) = self.ring.peeked(n);
        for d in r1.iter().chain(r2) {
            f(umem.data(&Frame::new(d.addr, d.len)));
        }
        self.recycle(n, umem, fill, pool)
    }

    /// Counts up to `max` received frames without looking at them and
    /// recycles them into `fill` (capture with no consumer).
    pub(crate) fn count_into_fill(
        &mut self,
        max: u32,
        umem: &Umem,
        fill: &mut FillQueue,
        pool: &mut FramePool,
    ) -> (u32, u64) {
        let n = self.ring.peek(max);
        if n == 0 {
            return (0, 0);
        }
        self.recycle(n, umem, fill, pool)
    }

    /// Gives the first `n` ready frames back to the kernel through `fill`
    /// (chunk starts, in bulk), the rest to `pool`, and releases them.
    fn recycle(
        &mut self,
        n: u32,
        umem: &Umem,
        fill: &mut FillQueue,
        pool: &mut FramePool,
    ) -> (u32, u64) {
        let (r1, r2) = self.ring.peeked(n);
        let len_sum = |d: &[XdpDesc]| d.iter().map(|d| u64::from(d.len)).sum::<u64>();
        let bytes = len_sum(r1) + len_sum(r2);
        let room = fill.ring.reserve(n);
        let fit1 = r1.len().min(room as usize);
        let fit2 = room as usize - fit1;
        let mask = !(u64::from(umem.frame_size()) - 1);
        map_split(
            (&r1[..fit1], &r2[..fit2]),
            fill.ring.reserved_mut(room),
            |d| d.addr & mask,
        );
        for d in r1[fit1..].iter().chain(&r2[fit2..]) {
            pool.free_addr(d.addr);
        }
        self.ring.release(n);
        fill.ring.publish(room);
        (n, bytes)
    }

    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

impl TxQueue {
    pub(crate) fn from_ring(ring: ProdRing<XdpDesc>) -> Self {
        TxQueue { ring }
    }

    /// Queues as many of `frames` as fit, in order, and publishes them.
    /// Returns how many were queued; the rest stay in `frames`.
    pub fn send(&mut self, frames: &mut Vec<Frame>) -> u32 {
        let n = self.ring.reserve(frames.len() as u32);
        for (i, f) in frames.drain(..n as usize).enumerate() {
            self.ring.write(
                i as u32,
                XdpDesc {
                    addr: f.addr(),
                    len: f.len(),
                    options: 0,
                },
            );
        }
        self.ring.publish(n);
        n
    }

    /// Queues one frame and publishes it; gives it back if the ring is full.
    pub fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.ring.reserve(1) == 0 {
            return Err(frame);
        }
        self.ring.write(
            0,
            XdpDesc {
                addr: frame.addr(),
                len: frame.len(),
                options: 0,
            },
        );
        self.ring.publish(1);
        Ok(())
    }

    /// Queues as many of `descs` as fit, in order, and publishes them.
    /// Returns how many were queued. The caller owns the frames the
    /// descriptors point at until they come back on the completion ring
    /// (the fan-out lends one received frame to several rings this way).
    pub(crate) fn push_descs(&mut self, descs: &[XdpDesc]) -> usize {
        self.ring.push_slice(descs)
    }

    /// Free TX slots right now.
    pub fn free_slots(&mut self) -> u32 {
        self.ring.free(self.ring.size())
    }

    /// Published descriptors the kernel has not consumed yet.
    pub fn pending(&mut self) -> u32 {
        self.ring.outstanding()
    }

    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

impl FillQueue {
    pub(crate) fn from_ring(ring: ProdRing<u64>) -> Self {
        FillQueue { ring }
    }

    /// Tops the fill ring up from `pool`, at most `max` frames. Returns how
    /// many were given to the kernel.
    pub fn refill(&mut self, pool: &mut FramePool, max: u32) -> u32 {
        let n = self.ring.reserve(max.min(pool.available() as u32));
        if n > 0 {
            pool.take_into(self.ring.reserved_mut(n));
            self.ring.publish(n);
        }
        n
    }

    pub fn size(&self) -> u32 {
        self.ring.size()
    }

    /// Frames given to the kernel and not yet used for a received frame.
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.ring.outstanding()
    }

    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

impl CompQueue {
    pub(crate) fn from_ring(ring: ConsRing<u64>) -> Self {
        CompQueue { ring }
    }

    /// Shows up to `max` completed addresses to `f` (in order) instead of
    /// returning them to a pool; returns how many.
    pub(crate) fn reap_each<F: FnMut(u64)>(&mut self, max: u32, mut f: F) -> u32 {
        let n = self.ring.peek(max);
        if n > 0 {
            let (a, b) = self.ring.peeked(n);
            for &addr in a.iter().chain(b) {
                f(addr);
            }
            self.ring.release(n);
        }
        n
    }

    /// Returns up to `max` transmitted frames to `pool`.
    pub fn reap(&mut self, pool: &mut FramePool, max: u32) -> u32 {
        let n = self.ring.peek(max);
        if n > 0 {
            let (a, b) = self.ring.peeked(n);
            pool.free_addrs(a);
            pool.free_addrs(b);
            self.ring.release(n);
        }
        n
    }
}

mod forward;
pub use forward::{forward, forward_each, EachResult, ForwardResult, Verdict, MAX_BATCH_FRAMES};

/// Kernel counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for reasons other than a full ring (e.g. frame too large).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full (user space too slow).
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

/// One AF_XDP socket bound to (interface, queue), or an in-memory stand-in.
#[derive(Debug)]
pub struct XskSocket {
    /// `None` for in-memory sockets (tests, microbenchmarks): kicks are no-ops.
    fd: Option<OwnedFd>,
    pub rx: Option<RxQueue>,
    pub tx: Option<TxQueue>,
    pub fill: FillQueue,
    pub comp: CompQueue,
    zerocopy: bool,
    /// Keeps the ring mappings alive (also held by the ring ends).
    _maps: Vec<Arc<Mmap>>,
}

/// What to create for one socket.
#[derive(Debug, Clone, Copy)]
pub struct XskParams {
    pub ifindex: u32,
    pub queue: u32,
    pub rx: bool,
    pub tx: bool,
    pub sizes: RingSizes,
    pub mode: BindMode,
}

/// `XDP_MAX_TX_SKB_BUDGET` (linux/if_xdp.h, Linux 6.17+): how many TX
/// descriptors one `sendto` may transmit in copy mode (default 32).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// The budget we ask for: a whole batch per kick.
const COPY_TX_BUDGET: u32 = MAX_BATCH_FRAMES;

/// In copy mode every frame is transmitted inside `sendto`, at most 32 per
/// call by default; a larger budget lets one kick send a whole batch. Older
/// kernels do not know the option (ENOPROTOOPT) and keep 32: the bridge then
/// kicks more than once per batch, which is also correct.
fn raise_copy_tx_budget(fd: BorrowedFd<'_>, tx_ring: u32, ifname: &str) {
    let budget = COPY_TX_BUDGET.min(tx_ring) as libc::c_int;
    match sys::setsockopt(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget) {
        Ok(()) => tracing::debug!(ifname, budget, "copy-mode TX budget raised"),
        Err(e) => {
            tracing::debug!(ifname, error = %e, "copy-mode TX budget left at the kernel default")
        }
    }
}

/// The kernel may keep a queue busy for a few tens of ms after its previous
/// socket closed (EBUSY): retry with a growing delay, about 1.1 s in all.
const BIND_BUSY_RETRIES: u32 = 10;
const BIND_BUSY_STEP: Duration = Duration::from_millis(20);

impl XskSocket {
    /// Creates and binds a socket. With `shared_with = None` it registers
    /// `umem` itself; otherwise it shares the UMEM registered by that socket
    /// (a different interface or queue: it still gets its own fill and
    /// completion rings, as the kernel requires).
    pub fn bind(
        umem: &Arc<Umem>,
        p: &XskParams,
        shared_with: Option<BorrowedFd<'_>>,
        ifname: &str,
    ) -> Result<XskSocket, XdpError> {
        let fd = sys::socket(libc::AF_XDP, libc::SOCK_RAW, 0).map_err(|source| {
            XdpError::from_os("socket(AF_XDP)", ifname, source, Some("CAP_NET_RAW"))
        })?;
        let b = fd.as_fd();
        if shared_with.is_none() {
            let reg = libc::xdp_umem_reg {
                addr: umem.base() as u64,
                len: umem.len_bytes() as u64,
                chunk_size: umem.frame_size(),
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sys::setsockopt(b, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(|source| {
                XdpError::UmemReg {
                    bytes: umem.len_bytes(),
                    source,
                }
            })?;
        }
        let set = |name, what: &'static str, size: u32| {
            sys::setsockopt(b, libc::SOL_XDP, name, &(size as libc::c_int))
                .map_err(|source| XdpError::Ring { ring: what, source })
        };
        set(libc::XDP_UMEM_FILL_RING, "fill", p.sizes.fill)?;
        set(
            libc::XDP_UMEM_COMPLETION_RING,
            "completion",
            p.sizes.completion,
        )?;
        if p.rx {
            set(libc::XDP_RX_RING, "rx", p.sizes.rx)?;
        }
        if p.tx {
            set(libc::XDP_TX_RING, "tx", p.sizes.tx)?;
        }
        let (off, _) =
            sys::getsockopt::<libc::xdp_mmap_offsets>(b, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
                .map_err(|source| XdpError::Ring {
                    ring: "offsets",
                    source,
                })?;

        let mut maps = Vec::new();
        let fill = FillQueue::from_ring(ProdRing::from_mapping(map_ring::<u64>(
            b,
            &off.fr,
            p.sizes.fill,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            "fill",
            &mut maps,
        )?));
        let comp = CompQueue::from_ring(ConsRing::from_mapping(map_ring::<u64>(
            b,
            &off.cr,
            p.sizes.completion,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "completion",
            &mut maps,
        )?));
        let rx = if p.rx {
            Some(RxQueue::from_ring(ConsRing::from_mapping(map_ring::<
                XdpDesc,
            >(
                b,
                &off.rx,
                p.sizes.rx,
                libc::XDP_PGOFF_RX_RING as u64,
                "rx",
                &mut maps,
            )?)))
        } else {
            None
        };
        let tx = if p.tx {
            Some(TxQueue::from_ring(ProdRing::from_mapping(map_ring::<
                XdpDesc,
            >(
                b,
                &off.tx,
                p.sizes.tx,
                libc::XDP_PGOFF_TX_RING as u64,
                "tx",
                &mut maps,
            )?)))
        } else {
            None
        };

        let mut addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: p.ifindex,
            sxdp_queue_id: p.queue,
            sxdp_shared_umem_fd: 0,
        };
        match shared_with {
            // A socket sharing a UMEM inherits the owner's mode and must not
            // pass COPY/ZEROCOPY/NEED_WAKEUP itself, or bind fails (EINVAL).
            Some(owner) => {
                addr.sxdp_flags = libc::XDP_SHARED_UMEM;
                addr.sxdp_shared_umem_fd = owner.as_raw_fd() as u32;
            }
            None => {
                addr.sxdp_flags = libc::XDP_USE_NEED_WAKEUP
                    | match p.mode {
                        BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
                        BindMode::Copy => libc::XDP_COPY,
                    };
            }
        }
        let mut attempt = 0;
        loop {
            match sys::bind_xdp(b, &addr) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < BIND_BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(BIND_BUSY_STEP * attempt);
                }
                Err(source) => {
                    return Err(XdpError::Bind {
                        ifname: ifname.to_string(),
                        queue: p.queue,
                        mode: p.mode,
                        source,
                    })
                }
            }
        }
        let zerocopy = sys::getsockopt::<libc::xdp_options>(b, libc::SOL_XDP, libc::XDP_OPTIONS)
            .map(|(o, _)| o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
            .unwrap_or(false);
        if p.tx && !zerocopy {
            raise_copy_tx_budget(b, p.sizes.tx, ifname);
        }
        Ok(XskSocket {
            fd: Some(fd),
            rx,
            tx,
            fill,
            comp,
            zerocopy,
            _maps: maps,
        })
    }

    /// A socket whose rings are in plain memory; the returned [`FakeKernel`]
    /// plays the kernel's side. For unit tests and the worker microbenchmark.
    pub fn in_memory(sizes: RingSizes) -> (XskSocket, FakeKernel) {
        let mut k = FakeKernel {
            rx: HeapRing::new(sizes.rx, 0),
            tx: HeapRing::new(sizes.tx, 0),
            fill: HeapRing::new(sizes.fill, 0),
            comp: HeapRing::new(sizes.completion, 0),
        };
        let s = XskSocket {
            fd: None,
            rx: Some(RxQueue::from_ring(k.rx.cons_end())),
            tx: Some(TxQueue::from_ring(k.tx.prod_end())),
            fill: FillQueue::from_ring(k.fill.prod_end()),
            comp: CompQueue::from_ring(k.comp.cons_end()),
            zerocopy: false,
            _maps: Vec::new(),
        };
        (s, k)
    }

    /// Takes back every frame this socket's rings hold on our side of the
    /// UMEM, to retire the socket without leaking frames: completions, fill
    /// entries the kernel has not consumed, received frames not yet read
    /// and TX entries not yet transmitted, all to `pool`. Call it only once
    /// nothing is redirected to the socket any more (its XDP program is
    /// detached) and no TX was queued for a while: in copy mode the kernel
    /// then touches none of these rings. Returns how many frames came back.
    /// A zero-copy driver keeps the fill frames it has posted to the NIC;
    /// they are not returned until the UMEM itself is released.
    pub(crate) fn reclaim(&mut self, pool: &mut FramePool) -> u32 {
        let mut n = self.comp.reap(pool, u32::MAX);
        for addr in self.fill.ring.unconsumed() {
            pool.free_addr(addr);
            n += 1;
        }
        if let Some(rx) = self.rx.as_mut() {
            let k = rx.ring.peek(u32::MAX);
            for i in 0..k {
                pool.free_addr(rx.ring.read(i).addr);
            }
            rx.ring.release(k);
            n += k;
        }
        if let Some(tx) = self.tx.as_mut() {
            for d in tx.ring.unconsumed() {
                pool.free_addr(d.addr);
                n += 1;
            }
        }
        n
    }

    pub(crate) fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// True if the kernel bound this socket in zero-copy mode (`XDP_OPTIONS`).
    pub fn is_zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Asks the kernel to transmit what is on the TX ring. Transient errors
    /// (the kernel is busy or out of buffers: EAGAIN, EBUSY, ENOBUFS, or the
    /// link is down: ENETDOWN, ENXIO) are expected under load and ignored;
    /// the descriptors stay queued and the next kick retries.
    #[inline]
    pub fn kick_tx(&self) {
        if let Some(fd) = &self.fd {
            let _ = sys::kick_tx(fd.as_fd());
        }
    }

    /// Like [`XskSocket::kick_tx`], but returns the kernel's answer, so a
    /// caller can tell a down link (ENETDOWN, ENXIO) from a busy one.
    #[inline]
    pub(crate) fn try_kick_tx(&self) -> io::Result<()> {
        match &self.fd {
            Some(fd) => sys::kick_tx(fd.as_fd()),
            None => Ok(()),
        }
    }

    /// Wakes the driver to take frames from the fill ring.
    #[inline]
    pub fn kick_rx(&self) {
        if let Some(fd) = &self.fd {
            let _ = sys::kick_rx(fd.as_fd());
        }
    }

    /// The kernel's drop counters for this socket.
    pub fn statistics(&self) -> io::Result<XskStats> {
        let Some(fd) = &self.fd else {
            return Ok(XskStats::default());
        };
        let (s, _) = sys::getsockopt::<libc::xdp_statistics>(
            fd.as_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
        )?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_ring_empty: s.tx_ring_empty_descs,
        })
    }
}

/// The kernel's ends of an in-memory socket's rings.
#[derive(Debug)]
pub struct FakeKernel {
    pub rx: HeapRing<XdpDesc>,
    pub tx: HeapRing<XdpDesc>,
    pub fill: HeapRing<u64>,
    pub comp: HeapRing<u64>,
}

impl<T: RingEntry> ProdRing<T> {
    fn from_mapping(mem: RingMem<T>) -> Self {
        // SAFETY: `map_ring` built `mem` from the kernel's offsets into a
        // mapping of exactly this ring, kept alive by `mem.owner`; each ring
        // of a socket gets one user-space end.
        unsafe { ProdRing::new(mem) }
    }
}

impl<T: RingEntry> ConsRing<T> {
    fn from_mapping(mem: RingMem<T>) -> Self {
        // SAFETY: as in `ProdRing::from_mapping`.
        unsafe { ConsRing::new(mem) }
    }
}

fn map_ring<T>(
    fd: BorrowedFd<'_>,
    off: &libc::xdp_ring_offset,
    size: u32,
    pgoff: u64,
    what: &'static str,
    maps: &mut Vec<Arc<Mmap>>,
) -> Result<RingMem<T>, XdpError> {
    let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
    let map = Arc::new(
        Mmap::socket_ring(fd, len, pgoff)
            .map_err(|source| XdpError::Ring { ring: what, source })?,
    );
    let base = map.as_ptr();
    // SAFETY: the kernel's offsets lie inside the ring mapping of `len` bytes
    // (`desc + size * entry` is its end by construction).
    let mem = unsafe {
        RingMem {
            producer: base.add(off.producer as usize).cast(),
            consumer: base.add(off.consumer as usize).cast(),
            flags: base.add(off.flags as usize).cast(),
            entries: base.add(off.desc as usize).cast(),
            size,
            owner: map.clone(),
        }
    };
    maps.push(map);
    Ok(mem)
}

#[cfg(test)]
mod tests;
