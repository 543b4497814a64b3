//! Single-producer/single-consumer rings shared with the kernel.
//!
//! Every AF_XDP ring is a power-of-two array of entries plus two free-running
//! `u32` indices (`producer`, `consumer`) and a `flags` word, all in memory
//! mapped from the socket. Indices are never masked when stored; only the
//! slot is (`index & mask`), so `producer - consumer` (wrapping) is the fill
//! level even across the `u32` wraparound.
//!
//! The ordering contract is the one in the kernel's `net/xdp/xsk_queue.h`:
//!
//! ```text
//! producer                          consumer
//! if (LOAD ->consumer) {  (A)       LOAD.acq ->producer  (C)
//!    STORE $data                    LOAD $data
//!    STORE.rel ->producer (B)       STORE.rel ->consumer (D)
//! }
//! (A) pairs with (D), and (B) pairs with (C).
//! ```
//!
//! For the fill and TX rings user space is the producer and the kernel the
//! consumer; for the RX and completion rings the kernel produces and user
//! space consumes. Each side keeps cached copies of both indices so the shared
//! cache lines are touched once per batch, not once per frame.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// An entry type that may live in a ring: plain old data the kernel reads or
/// writes (`u64` frame addresses in fill/completion, `XdpDesc` in RX/TX).
pub trait RingEntry: Copy + Default {}
impl RingEntry for u64 {}
impl RingEntry for XdpDesc {}

/// One RX/TX descriptor, layout-identical to the kernel's `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    /// Offset of the frame's first byte from the start of the UMEM.
    pub addr: u64,
    /// Length of the frame in bytes.
    pub len: u32,
    /// Option bits (`XDP_PKT_CONTD` for multi-buffer); zero for us.
    pub options: u32,
}

/// Where a ring lives: raw pointers into memory kept alive by `owner`.
///
/// A `RingMem` is produced either by the socket code (pointers into an
/// `mmap` of the socket, owned by an `Arc` of that mapping) or, in tests and
/// microbenchmarks, by [`HeapRing`], which plays the kernel's side in plain
/// memory.
#[derive(Clone)]
pub struct RingMem<T> {
    pub producer: *const AtomicU32,
    pub consumer: *const AtomicU32,
    pub flags: *const AtomicU32,
    pub entries: *mut T,
    pub size: u32,
    /// Keeps the memory behind the pointers alive as long as any ring end.
    pub owner: Arc<dyn Send + Sync>,
}

impl<T> fmt::Debug for RingMem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingMem")
            .field("entries", &self.entries)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// State common to both ring ends.
#[derive(Debug)]
struct RingCore<T> {
    mem: RingMem<T>,
    mask: u32,
    /// Our copy of the producer index.
    cached_prod: u32,
    /// Our copy of the consumer index.
    cached_cons: u32,
}

// SAFETY: a ring end is owned by exactly one thread at a time (it is moved
// into a worker); the memory it points to is kept alive by `mem.owner` and the
// only concurrent party is the kernel (or a `HeapRing` in tests), which
// synchronises through the atomic indices.
unsafe impl<T: Send> Send for RingCore<T> {}

impl<T: RingEntry> RingCore<T> {
    /// # Safety
    ///
    /// `mem`'s pointers must point into memory kept alive by `mem.owner`: a
    /// ring of `mem.size` entries (a power of two) whose index words are valid
    /// `AtomicU32`s. Exactly one user-space party may act as this end.
    unsafe fn new(mem: RingMem<T>) -> Self {
        debug_assert!(mem.size.is_power_of_two());
        // SAFETY: the caller guarantees the index pointers are valid.
        let (prod, cons) = unsafe {
            (
                (*mem.producer).load(Ordering::Relaxed),
                (*mem.consumer).load(Ordering::Relaxed),
            )
        };
        RingCore {
            mask: mem.size - 1,
            mem,
            cached_prod: prod,
            cached_cons: cons,
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: valid for the ring's lifetime per `new`'s contract.
        unsafe { &*self.mem.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: valid for the ring's lifetime per `new`'s contract.
        unsafe { &*self.mem.consumer }
    }

    fn flags(&self) -> u32 {
        // SAFETY: valid for the ring's lifetime per `new`'s contract. The
        // kernel sets/clears NEED_WAKEUP with plain stores; Relaxed is what
        // libbpf's `xsk_ring_prod__needs_wakeup` (READ_ONCE) does too.
        unsafe { (*self.mem.flags).load(Ordering::Relaxed) }
    }

    /// `n` entries from index `idx`: (first slot, entries before the end of
    /// the array, entries wrapped to its start).
    fn split(&self, idx: u32, n: u32) -> (usize, usize, usize) {
        let start = (idx & self.mask) as usize;
        let first = (n as usize).min(self.mem.size as usize - start);
        (start, first, n as usize - first)
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask` < size, so the pointer stays inside the array.
        unsafe { self.mem.entries.add((idx & self.mask) as usize) }
    }
}

/// The user-space producer end of a ring (fill ring, TX ring).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    core: RingCore<T>,
}

impl<T: RingEntry> ProdRing<T> {
    /// # Safety
    ///
    /// `mem`'s pointers must point into a ring kept alive by `mem.owner`, and
    /// no other user-space producer may exist for it.
    pub unsafe fn new(mem: RingMem<T>) -> Self {
        ProdRing {
            // SAFETY: forwarded contract.
            core: unsafe { RingCore::new(mem) },
        }
    }

    pub fn size(&self) -> u32 {
        self.core.mem.size
    }

    /// Free slots, refreshing our view of the consumer only when the cached
    /// view cannot satisfy `wanted`.
    pub fn free(&mut self, wanted: u32) -> u32 {
        let size = self.core.mem.size;
        let free = size - self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        if free >= wanted {
            return free;
        }
        // (A): Acquire pairs with the kernel's STORE.rel of ->consumer (D), so
        // the kernel is done reading the slots it has released.
        self.core.cached_cons = self.core.consumer().load(Ordering::Acquire);
        size - self.core.cached_prod.wrapping_sub(self.core.cached_cons)
    }

    /// Writes as many of `items` as fit and publishes them. Returns how many.
    pub(crate) fn push_slice(&mut self, items: &[T]) -> usize {
        let n = self.free(items.len() as u32).min(items.len() as u32);
        for (i, item) in items[..n as usize].iter().enumerate() {
            let slot = self.core.slot(self.core.cached_prod.wrapping_add(i as u32));
            // SAFETY: the slot is inside the ring and free (between the
            // consumer and the producer we have not yet published), so the
            // kernel does not read it until the Release below.
            unsafe { slot.write_volatile(*item) };
        }
        self.publish(n);
        n as usize
    }

    /// Reserves up to `n` slots for writing with [`ProdRing::write`].
    /// Returns the number reserved; they are published with [`ProdRing::publish`].
    pub(crate) fn reserve(&mut self, n: u32) -> u32 {
        self.free(n).min(n)
    }

    /// The first `n` free slots after the producer index, as up to two
    /// slices (the second is non-empty when the ring wraps), for bulk
    /// writes; publish them with [`ProdRing::publish`]. `n` must not exceed
    /// what [`ProdRing::reserve`] granted.
    pub(crate) fn reserved_mut(&mut self, n: u32) -> (&mut [T], &mut [T]) {
        let free = self.core.mem.size - self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        assert!(n <= free, "{n} slots requested, {free} reserved");
        let (start, first, second) = self.core.split(self.core.cached_prod, n);
        // SAFETY: the slots from the producer index on are free (between our
        // producer and the consumer + size, as last loaded with Acquire in
        // `free`), so the kernel neither reads nor writes them until our
        // Release in `publish`; the two ranges are disjoint and inside the
        // ring; `&mut self` keeps any other user-space access out.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.core.mem.entries.add(start), first),
                std::slice::from_raw_parts_mut(self.core.mem.entries, second),
            )
        }
    }

    /// Writes entry `i` (0-based) of the current reservation.
    pub fn write(&mut self, i: u32, item: T) {
        let slot = self.core.slot(self.core.cached_prod.wrapping_add(i));
        // SAFETY: as in `push_slice`; a slot past the reservation would still
        // be inside the ring, and it stays invisible to the kernel until a
        // `publish` covering it, which callers only do after `reserve`.
        unsafe { slot.write_volatile(item) };
    }

    /// Publishes `n` written entries to the consumer.
    pub fn publish(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.core.cached_prod = self.core.cached_prod.wrapping_add(n);
        // (B): Release so the entries written above are visible before the
        // kernel's LOAD.acq of ->producer (C) sees the new index.
        self.core
            .producer()
            .store(self.core.cached_prod, Ordering::Release);
    }

    /// True when the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.core.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// The entries published and not consumed yet, oldest first, and
    /// forgets them: the producer index is rolled back to the consumer's.
    /// Only for retiring a ring the consumer no longer reads (see
    /// `XskSocket::reclaim`).
    pub(crate) fn unconsumed(&mut self) -> Vec<T> {
        self.core.cached_cons = self.core.consumer().load(Ordering::Acquire);
        let n = self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        let out = (0..n)
            .map(|i| {
                let slot = self.core.slot(self.core.cached_cons.wrapping_add(i));
                // SAFETY: the slot is inside the ring and was written by us
                // before its publication; the consumer has not read it yet
                // (it is past the consumer index) and, per the contract of
                // this method, never will.
                unsafe { slot.read_volatile() }
            })
            .collect();
        self.core.cached_prod = self.core.cached_cons;
        self.core
            .producer()
            .store(self.core.cached_prod, Ordering::Release);
        out
    }

    /// Entries published and not yet consumed by the kernel (as last seen).
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.core.cached_cons = self.core.consumer().load(Ordering::Acquire);
        self.core.cached_prod.wrapping_sub(self.core.cached_cons)
    }
}

/// The user-space consumer end of a ring (RX ring, completion ring).
#[derive(Debug)]
pub struct ConsRing<T> {
    core: RingCore<T>,
}

impl<T: RingEntry> ConsRing<T> {
    /// # Safety
    ///
    /// `mem`'s pointers must point into a ring kept alive by `mem.owner`, and
    /// no other user-space consumer may exist for it.
    pub unsafe fn new(mem: RingMem<T>) -> Self {
        ConsRing {
            // SAFETY: forwarded contract.
            core: unsafe { RingCore::new(mem) },
        }
    }

    pub fn size(&self) -> u32 {
        self.core.mem.size
    }

    /// Number of entries ready, at most `max`; refreshes the producer index
    /// only when the cached view is empty.
    pub(crate) fn peek(&mut self, max: u32) -> u32 {
        let mut ready = self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        if ready == 0 {
            // (C): Acquire pairs with the kernel's STORE.rel of ->producer
            // (B), so the entries up to the new index are fully written.
            self.core.cached_prod = self.core.producer().load(Ordering::Acquire);
            ready = self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        }
        ready.min(max)
    }

    /// The first `n` ready entries, as up to two slices (the second is
    /// non-empty when the ring wraps), for bulk reads before
    /// [`ConsRing::release`]. `n` must not exceed what [`ConsRing::peek`]
    /// reported.
    pub fn peeked(&self, n: u32) -> (&[T], &[T]) {
        let ready = self.core.cached_prod.wrapping_sub(self.core.cached_cons);
        assert!(n <= ready, "{n} entries requested, {ready} ready");
        let (start, first, second) = self.core.split(self.core.cached_cons, n);
        // SAFETY: entries from the consumer index up to the producer index
        // were published with Release and seen with our Acquire in `peek`;
        // they stay ours (the producer does not touch them) until `release`,
        // which needs `&mut self` and so ends these borrows first.
        unsafe {
            (
                std::slice::from_raw_parts(self.core.mem.entries.add(start), first),
                std::slice::from_raw_parts(self.core.mem.entries, second),
            )
        }
    }

    /// Reads entry `i` (0-based) of what [`ConsRing::peek`] reported ready.
    pub fn read(&self, i: u32) -> T {
        let slot = self.core.slot(self.core.cached_cons.wrapping_add(i));
        // SAFETY: the slot is inside the ring. For `i` below the count `peek`
        // returned, the producer finished writing it before its Release.
        unsafe { slot.read_volatile() }
    }

    /// Hands `n` consumed entries back to the producer.
    pub fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.core.cached_cons = self.core.cached_cons.wrapping_add(n);
        // (D): Release so our reads of the entries happen before the kernel
        // (A) sees the slots as free and overwrites them.
        self.core
            .consumer()
            .store(self.core.cached_cons, Ordering::Release);
    }

    /// Pops up to `out.len()` entries into `out`. Returns how many.
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let n = self.peek(out.len() as u32);
        for (i, o) in out[..n as usize].iter_mut().enumerate() {
            *o = self.read(i as u32);
        }
        self.release(n);
        n as usize
    }

    /// True when the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.core.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// Shared memory of a [`HeapRing`]: what the kernel would have mapped.
struct HeapMem<T> {
    prod: AtomicU32,
    cons: AtomicU32,
    flags: AtomicU32,
    entries: Box<[UnsafeCell<T>]>,
}

// SAFETY: the entries are only accessed under the ring protocol: a slot is
// written by the producer before its Release of `prod` and read by the
// consumer after its Acquire of it (and vice versa for `cons`), so no slot is
// ever accessed by two parties at once.
unsafe impl<T: Send> Sync for HeapMem<T> {}

/// Copies `src` (two slices, read in order) into `dst` (two slices,
/// filled in order) with at most three `memcpy`s. Both sides must hold the
/// same total number of entries.
pub(crate) fn copy_split<T: Copy>(src: (&[T], &[T]), dst: (&mut [T], &mut [T])) {
    let (s1, s2) = src;
    let (d1, d2) = dst;
    debug_assert_eq!(s1.len() + s2.len(), d1.len() + d2.len());
    if s1.len() <= d1.len() {
        // s1 fits in d1; s2 fills the rest of d1, then d2.
        let (d1a, d1b) = d1.split_at_mut(s1.len());
        d1a.copy_from_slice(s1);
        let (s2a, s2b) = s2.split_at(d1b.len());
        d1b.copy_from_slice(s2a);
        d2.copy_from_slice(s2b);
    } else {
        // s1 overflows d1 into d2; s2 follows in d2.
        let (s1a, s1b) = s1.split_at(d1.len());
        d1.copy_from_slice(s1a);
        let (d2a, d2b) = d2.split_at_mut(s1b.len());
        d2a.copy_from_slice(s1b);
        d2b.copy_from_slice(s2);
    }
}

/// Like [`copy_split`], applying `f` to each entry on the way: at most
/// three tight loops over plain slices, which the compiler unrolls (a
/// chained iterator over the four pieces optimises worse).
pub(crate) fn map_split<S, D>(src: (&[S], &[S]), dst: (&mut [D], &mut [D]), f: impl Fn(&S) -> D) {
    fn run<S, D>(s: &[S], d: &mut [D], f: &impl Fn(&S) -> D) {
        for (o, i) in d.iter_mut().zip(s) {
            *o = f(i);
        }
    }
    let (s1, s2) = src;
    let (d1, d2) = dst;
    debug_assert_eq!(s1.len() + s2.len(), d1.len() + d2.len());
    if s1.len() <= d1.len() {
        // s1 fits in d1; s2 fills the rest of d1, then d2.
        let (d1a, d1b) = d1.split_at_mut(s1.len());
        run(s1, d1a, &f);
        let (s2a, s2b) = s2.split_at(d1b.len());
        run(s2a, d1b, &f);
        run(s2b, d2, &f);
    } else {
        // s1 overflows d1 into d2; s2 follows in d2.
        let (s1a, s1b) = s1.split_at(d1.len());
        run(s1a, d1, &f);
        let (d2a, d2b) = d2.split_at_mut(s1b.len());
        run(s1b, d2a, &f);
        run(s2, d2b, &f);
    }
}

/// A ring in ordinary heap memory, standing in for the kernel in unit tests
/// and in the worker-loop microbenchmark. It hands out user-space ends
/// ([`HeapRing::prod_end`] / [`HeapRing::cons_end`]) and plays the other end
/// itself through [`HeapRing::kernel_pop`] / [`HeapRing::kernel_push`].
pub struct HeapRing<T> {
    mem: Arc<HeapMem<T>>,
    /// The kernel side's own index (its producer or consumer position).
    kernel_idx: u32,
    /// A user-space end has been handed out (only one may exist).
    end_taken: bool,
}

impl<T> fmt::Debug for HeapRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRing")
            .field("size", &self.mem.entries.len())
            .field("kernel_idx", &self.kernel_idx)
            .finish()
    }
}

impl<T: RingEntry + Send + 'static> HeapRing<T> {
    /// A ring of `size` entries whose indices start at `start` (use a value
    /// near `u32::MAX` to exercise wraparound).
    pub fn new(size: u32, start: u32) -> Self {
        assert!(size.is_power_of_two(), "ring size must be a power of two");
        HeapRing {
            mem: Arc::new(HeapMem {
                prod: AtomicU32::new(start),
                cons: AtomicU32::new(start),
                flags: AtomicU32::new(0),
                entries: (0..size).map(|_| UnsafeCell::new(T::default())).collect(),
            }),
            kernel_idx: start,
            end_taken: false,
        }
    }

    fn ring_mem(&mut self) -> RingMem<T> {
        assert!(!self.end_taken, "a HeapRing hands out one user-space end");
        self.end_taken = true;
        let m = &*self.mem;
        RingMem {
            producer: &m.prod,
            consumer: &m.cons,
            flags: &m.flags,
            entries: UnsafeCell::raw_get(m.entries.as_ptr()),
            size: m.entries.len() as u32,
            owner: self.mem.clone(),
        }
    }

    /// The user-space producer end (this `HeapRing` then acts as consumer).
    pub(crate) fn prod_end(&mut self) -> ProdRing<T> {
        let mem = self.ring_mem();
        // SAFETY: the pointers point into `HeapMem`, kept alive by `owner`;
        // `ring_mem` hands out a single end.
        unsafe { ProdRing::new(mem) }
    }

    /// The user-space consumer end (this `HeapRing` then acts as producer).
    pub(crate) fn cons_end(&mut self) -> ConsRing<T> {
        let mem = self.ring_mem();
        // SAFETY: as in `prod_end`.
        unsafe { ConsRing::new(mem) }
    }

    fn slot(&self, idx: u32) -> *mut T {
        let mask = self.mem.entries.len() as u32 - 1;
        self.mem.entries[(idx & mask) as usize].get()
    }

    /// Kernel side as consumer: takes up to `max` published entries.
    pub fn kernel_pop(&mut self, max: usize, out: &mut Vec<T>) -> usize {
        let prod = self.mem.prod.load(Ordering::Acquire);
        let n = (prod.wrapping_sub(self.kernel_idx) as usize).min(max);
        for i in 0..n as u32 {
            // SAFETY: slots between our index and the producer's published
            // index were written before its Release, which our Acquire saw.
            out.push(unsafe { self.slot(self.kernel_idx.wrapping_add(i)).read() });
        }
        self.kernel_idx = self.kernel_idx.wrapping_add(n as u32);
        self.mem.cons.store(self.kernel_idx, Ordering::Release);
        n
    }

    /// Kernel side as producer: publishes as many of `items` as fit.
    pub fn kernel_push(&mut self, items: &[T]) -> usize {
        let cons = self.mem.cons.load(Ordering::Acquire);
        let size = self.mem.entries.len() as u32;
        let free = size - self.kernel_idx.wrapping_sub(cons);
        let n = (free as usize).min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            // SAFETY: the slot is free: the consumer released it (its Release
            // of `cons`, seen by our Acquire) and will not read it before our
            // Release of `prod` below.
            unsafe {
                self.slot(self.kernel_idx.wrapping_add(i as u32))
                    .write(*item)
            };
        }
        self.kernel_idx = self.kernel_idx.wrapping_add(n as u32);
        self.mem.prod.store(self.kernel_idx, Ordering::Release);
        n
    }

    /// Sets or clears `XDP_RING_NEED_WAKEUP`, as the kernel would.
    pub fn set_need_wakeup(&self, on: bool) {
        let v = if on { libc::XDP_RING_NEED_WAKEUP } else { 0 };
        self.mem.flags.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_wraps_around_u32_without_losing_entries() {
        // Start 5 below u32::MAX so the indices wrap mid-test.
        let mut k = HeapRing::<u64>::new(8, u32::MAX - 5);
        let mut p = k.prod_end();
        let mut seen = Vec::new();
        let mut next = 0u64;
        for _round in 0..10 {
            let batch: Vec<u64> = (next..next + 6).collect();
            assert_eq!(p.push_slice(&batch), 6);
            next += 6;
            assert_eq!(k.kernel_pop(usize::MAX, &mut seen), 6);
        }
        assert_eq!(seen, (0..60).collect::<Vec<_>>());
    }

    #[test]
    fn producer_never_overwrites_unconsumed_slots() {
        let mut k = HeapRing::<u64>::new(4, u32::MAX - 1);
        let mut p = k.prod_end();
        assert_eq!(p.push_slice(&[1, 2, 3]), 3);
        // Only one slot is left: the rest of the batch is refused.
        assert_eq!(p.push_slice(&[4, 5, 6]), 1);
        assert_eq!(p.free(1), 0);
        let mut out = Vec::new();
        k.kernel_pop(2, &mut out);
        assert_eq!(out, vec![1, 2]);
        assert_eq!(p.free(4), 2);
        assert_eq!(p.push_slice(&[7, 8, 9]), 2);
        out.clear();
        k.kernel_pop(usize::MAX, &mut out);
        assert_eq!(out, vec![3, 4, 7, 8]);
    }

    #[test]
    fn consumer_wraps_around_u32_in_order() {
        let mut k = HeapRing::<XdpDesc>::new(16, u32::MAX - 3);
        let mut c = k.cons_end();
        let mut got = Vec::new();
        let mut buf = [XdpDesc::default(); 5];
        let mut sent = 0u64;
        while sent < 100 {
            let items: Vec<XdpDesc> = (sent..sent + 7)
                .map(|a| XdpDesc {
                    addr: a,
                    len: 60,
                    options: 0,
                })
                .collect();
            let pushed = k.kernel_push(&items);
            sent += pushed as u64;
            loop {
                let n = c.pop_slice(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend(buf[..n].iter().map(|d| d.addr));
            }
        }
        assert_eq!(got, (0..sent).collect::<Vec<_>>());
    }

    #[test]
    fn consumer_peek_is_bounded_and_release_frees_slots() {
        let mut k = HeapRing::<u64>::new(4, 0);
        let mut c = k.cons_end();
        assert_eq!(c.peek(64), 0);
        assert_eq!(k.kernel_push(&[10, 11, 12, 13, 14]), 4);
        assert_eq!(c.peek(2), 2);
        assert_eq!((c.read(0), c.read(1)), (10, 11));
        c.release(2);
        // The kernel may now reuse the two released slots, no more.
        assert_eq!(k.kernel_push(&[20, 21, 22]), 2);
        // The cached view still holds two entries, so the first pop does not
        // re-read the producer index (as libbpf); the next one does.
        let mut buf = [0u64; 8];
        assert_eq!(c.pop_slice(&mut buf), 2);
        assert_eq!(&buf[..2], &[12, 13]);
        assert_eq!(c.pop_slice(&mut buf), 2);
        assert_eq!(&buf[..2], &[20, 21]);
        assert_eq!(c.pop_slice(&mut buf), 0);
    }

    #[test]
    fn bulk_views_follow_the_wrap() {
        // Indices start 3 before the end of an 8-entry array: 5 entries wrap.
        let mut k = HeapRing::<u64>::new(8, 5);
        let mut p = k.prod_end();
        assert_eq!(p.reserve(5), 5);
        let (a, b) = p.reserved_mut(5);
        assert_eq!((a.len(), b.len()), (3, 2));
        a.copy_from_slice(&[1, 2, 3]);
        b.copy_from_slice(&[4, 5]);
        p.publish(5);
        let mut out = Vec::new();
        k.kernel_pop(usize::MAX, &mut out);
        assert_eq!(out, vec![1, 2, 3, 4, 5]);

        let mut k = HeapRing::<u64>::new(8, 6);
        let mut c = k.cons_end();
        k.kernel_push(&[10, 11, 12, 13]);
        assert_eq!(c.peek(64), 4);
        let (a, b) = c.peeked(4);
        assert_eq!((a, b), (&[10u64, 11][..], &[12u64, 13][..]));
    }

    #[test]
    fn copy_split_covers_every_shape() {
        let src: Vec<u64> = (0..7).collect();
        for s_cut in 0..=7 {
            for d_cut in 0..=7 {
                let mut dst = vec![0u64; 7];
                let (d1, d2) = dst.split_at_mut(d_cut);
                copy_split(src.split_at(s_cut), (d1, d2));
                assert_eq!(dst, src, "src cut {s_cut}, dst cut {d_cut}");
            }
        }
    }

    #[test]
    fn map_split_applies_f_in_order() {
        let src: Vec<u64> = (0..5).collect();
        let mut dst = vec![0u64; 5];
        let (d1, d2) = dst.split_at_mut(3);
        map_split(src.split_at(1), (d1, d2), |x| x * 10);
        assert_eq!(dst, vec![0, 10, 20, 30, 40]);
    }

    #[test]
    fn need_wakeup_flag_is_visible_to_both_ends() {
        let mut k = HeapRing::<u64>::new(4, 0);
        let p = k.prod_end();
        assert!(!p.needs_wakeup());
        k.set_need_wakeup(true);
        assert!(p.needs_wakeup());
    }
}
