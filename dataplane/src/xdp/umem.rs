//! The UMEM area, owned frames and the per-worker free-frame pool.
//!
//! A frame address belongs to exactly one party at any time: the pool, the
//! kernel (fill ring, RX/TX in flight), or user space as a [`Frame`] value.
//! `Frame` is not `Clone`, so user space cannot hold one address twice; the
//! pool checks the same invariant at its boundary (`free` of an address that
//! is already free is a bug and is caught in debug builds and tests).

use std::sync::Arc;

use crate::sys::Mmap;

/// Sizes the kernel accepts for aligned chunks that we support.
pub(crate) const FRAME_SIZES: [u32; 2] = [2048, 4096];

/// The registered memory area that frames live in.
#[derive(Debug)]
pub struct Umem {
    area: Mmap,
    frame_size: u32,
    frame_count: u32,
}

impl Umem {
    /// Allocates `frame_count` frames of `frame_size` bytes (2048 or 4096).
    pub fn new(frame_size: u32, frame_count: u32) -> std::io::Result<Arc<Umem>> {
        assert!(FRAME_SIZES.contains(&frame_size), "validated by config");
        let len = frame_size as usize * frame_count as usize;
        Ok(Arc::new(Umem {
            area: Mmap::anonymous(len)?,
            frame_size,
            frame_count,
        }))
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    pub(crate) fn len_bytes(&self) -> usize {
        self.area.len()
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.area.as_ptr()
    }

    /// Start of the chunk that contains `addr` (RX/TX descriptors carry an
    /// offset for the kernel's headroom; fill and pool deal in chunk starts).
    pub(crate) fn chunk_of(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// Bytes of a frame that the caller owns (`addr` and `len` come from a
    /// descriptor the kernel handed to user space).
    ///
    /// Out-of-range descriptors (a kernel bug or memory corruption) yield an
    /// empty slice rather than touching memory outside the area.
    pub fn data(&self, frame: &Frame) -> &[u8] {
        match self.range(frame.addr, frame.len) {
            // SAFETY: in range of the mapping; `frame` proves user space owns
            // this chunk, so the kernel is not writing it.
            Some((p, len)) => unsafe { std::slice::from_raw_parts(p, len) },
            None => &[],
        }
    }

    /// Mutable bytes of an owned frame, up to the end of its chunk
    /// (`frame.len()` is only what is currently valid).
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let chunk_end = self.chunk_of(frame.addr) + u64::from(self.frame_size);
        let room = (chunk_end.saturating_sub(frame.addr)) as u32;
        match self.range(frame.addr, room) {
            // SAFETY: in range of the mapping; the `&mut Frame` is the one
            // owner of this chunk (Frame is not Clone), so no other reference
            // to these bytes exists.
            Some((p, len)) => unsafe { std::slice::from_raw_parts_mut(p, len) },
            None => &mut [],
        }
    }

    fn range(&self, addr: u64, len: u32) -> Option<(*mut u8, usize)> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.area.len() as u64 {
            return None;
        }
        // SAFETY: `addr + len` is within the mapping, checked above.
        Some((unsafe { self.base().add(addr as usize) }, len as usize))
    }
}

/// An owned UMEM frame. Exactly one `Frame` exists per address; it is never
/// `Clone`, and it goes back to the kernel (TX, fill) or to a [`FramePool`]
/// by value.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    addr: u64,
    len: u32,
}

impl Frame {
    /// Only the AF_XDP module mints frames (from the pool or an RX ring).
    pub(crate) fn new(addr: u64, len: u32) -> Frame {
        Frame { addr, len }
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the valid length (after writing a frame built in place).
    pub fn set_len(&mut self, len: u32) {
        self.len = len;
    }
}

/// Free frames of one UMEM, owned by one worker (no locking).
#[derive(Debug)]
pub struct FramePool {
    free: Vec<u64>,
    frame_size: u32,
    frame_count: u32,
    /// `in_pool[i]`: frame `i` is in `free`. Checked in debug builds so an
    /// accounting bug is caught where it happens, not as corrupt traffic.
    #[cfg(debug_assertions)]
    in_pool: Vec<bool>,
}

impl FramePool {
    /// A pool holding every frame of a UMEM of `frame_count` frames.
    pub fn new(frame_size: u32, frame_count: u32) -> FramePool {
        FramePool {
            // Reverse so `alloc` hands out low addresses first.
            free: (0..frame_count)
                .rev()
                .map(|i| u64::from(i) * u64::from(frame_size))
                .collect(),
            frame_size,
            frame_count,
            #[cfg(debug_assertions)]
            in_pool: vec![true; frame_count as usize],
        }
    }

    pub fn for_umem(umem: &Umem) -> FramePool {
        Self::new(umem.frame_size(), umem.frame_count())
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> u32 {
        self.frame_count
    }

    /// Takes a free frame (length 0).
    pub fn alloc(&mut self) -> Option<Frame> {
        let addr = self.free.pop()?;
        #[cfg(debug_assertions)]
        self.mark(addr, false);
        Some(Frame::new(addr, 0))
    }

    /// Returns an owned frame.
    pub fn free(&mut self, frame: Frame) {
        self.free_addr(frame.addr);
    }

    /// Returns a frame by address; used where the kernel hands an address
    /// back (completion ring) or where a descriptor is dropped unsent.
    pub(crate) fn free_addr(&mut self, addr: u64) {
        let chunk = addr & !(u64::from(self.frame_size) - 1);
        #[cfg(debug_assertions)]
        self.mark(chunk, true);
        self.free.push(chunk);
    }

    /// Returns frames by address in bulk (completion ring), normalising each
    /// to its chunk start.
    pub(crate) fn free_addrs(&mut self, addrs: &[u64]) {
        let mask = !(u64::from(self.frame_size) - 1);
        #[cfg(debug_assertions)]
        for &a in addrs {
            self.mark(a & mask, true);
        }
        self.free.extend(addrs.iter().map(|&a| a & mask));
    }

    /// Moves the last `n` free addresses into `dst` (two slices, in order)
    /// and removes them from the pool. `n` must not exceed `available()`.
    pub(crate) fn take_into(&mut self, dst: (&mut [u64], &mut [u64])) {
        let n = dst.0.len() + dst.1.len();
        let start = self.free.len() - n;
        #[cfg(debug_assertions)]
        for i in start..self.free.len() {
            self.mark(self.free[i], false);
        }
        let (a, b) = self.free[start..].split_at(dst.0.len());
        dst.0.copy_from_slice(a);
        dst.1.copy_from_slice(b);
        self.free.truncate(start);
    }

    /// Takes one free chunk address (tests; the fill path uses `take_into`).
    #[cfg(test)]
    pub(crate) fn alloc_addr(&mut self) -> Option<u64> {
        let addr = self.free.pop()?;
        #[cfg(debug_assertions)]
        self.mark(addr, false);
        Some(addr)
    }

    #[cfg(debug_assertions)]
    fn mark(&mut self, chunk: u64, now_free: bool) {
        let i = (chunk / u64::from(self.frame_size)) as usize;
        assert!(i < self.in_pool.len(), "frame {chunk:#x} outside the UMEM");
        assert_ne!(
            self.in_pool[i],
            now_free,
            "frame {chunk:#x} {} twice",
            if now_free { "freed" } else { "allocated" }
        );
        self.in_pool[i] = now_free;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_frame_once() {
        let mut p = FramePool::new(2048, 8);
        let frames: Vec<Frame> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(frames.len(), 8);
        let mut addrs: Vec<u64> = frames.iter().map(Frame::addr).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 8, "an address was handed out twice");
        assert!(addrs.iter().all(|a| a % 2048 == 0 && *a < 8 * 2048));
        assert!(p.alloc().is_none());
        for f in frames {
            p.free(f);
        }
        assert_eq!(p.available(), 8);
    }

    #[test]
    fn pool_normalises_offset_addresses_to_chunk_starts() {
        let mut p = FramePool::new(4096, 2);
        let a = p.alloc_addr().unwrap();
        // The kernel returns RX/TX addresses with its headroom added.
        p.free_addr(a + 256);
        assert_eq!(p.alloc_addr(), Some(a));
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn pool_catches_double_free() {
        let mut p = FramePool::new(2048, 2);
        let a = p.alloc_addr().unwrap();
        p.free_addr(a);
        p.free_addr(a);
    }

    #[test]
    fn umem_data_is_bounds_checked() {
        let u = Umem::new(2048, 4).unwrap();
        let mut f = Frame::new(2048 + 256, 60);
        u.data_mut(&mut f)[..4].copy_from_slice(b"abcd");
        assert_eq!(&u.data(&f)[..4], b"abcd");
        assert_eq!(u.data_mut(&mut f).len(), 2048 - 256);
        assert!(u.data(&Frame::new(4 * 2048 - 10, 60)).is_empty());
        assert!(u.data(&Frame::new(u64::MAX - 1, 60)).is_empty());
    }
}
