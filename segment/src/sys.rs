//! The unsafe core of the crate, and the only module allowed `unsafe`:
//! memory mappings, typed views of counter blocks inside them, the
//! [`Slot`] handle the dataplane's workers count through, and the three
//! kernel calls the link keeper makes (taking ownership of received fds,
//! and `BPF_MAP_LOOKUP_ELEM` on the fallback maps it holds).
//!
//! What makes it sound: a counter block ([`Block`]) is a `repr(C)` struct
//! of [`Counter`]s (`AtomicU64`) and nothing else, so every bit pattern is
//! a valid value, it has no padding and no pointer, and any number of
//! threads or processes may load and store it at once. A view into a
//! mapping is checked for bounds and alignment before it is made, and
//! lives no longer than the mapping that holds it.

use std::io;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::counter::Counter;
use crate::writer::StatsSegment;

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory accessed only through atomics
// (`Counter`), from any thread.
unsafe impl Send for Mmap {}
// SAFETY: as above.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of a file shared with other processes (the stats
    /// segment, a BPF array): read-write for its writer, read-only for
    /// readers.
    pub(crate) fn shared_file(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Mmap> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a file we opened; the kernel
        // checks `len` against nothing (pages past EOF fault, which callers
        // avoid by sizing the file first or checking its length).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        Self::from_result(p, len)
    }

    /// Maps `fd` (a file at least as long as this mapping) over this shared
    /// file mapping, in place (`MAP_FIXED`): the address range stays
    /// mapped throughout, so every reference into it stays valid and from
    /// then on reads and writes the new file's pages. Used to re-publish
    /// the stats segment under a new file when the old one was deleted.
    pub(crate) fn remap_shared_file(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: MAP_FIXED over exactly our own mapping (same address,
        // length and protection), never over anything else: the range is
        // replaced atomically by the kernel and never unmapped in between,
        // so concurrent users (atomic loads and stores only, see `Counter`)
        // keep valid memory; `fd` is a file the caller sized.
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Anonymous private memory, populated (an in-memory segment).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_result(p, len)
    }

    fn from_result(p: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL without MAP_FIXED"),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The block of type `T` at byte offset `off`. Panics when it is not
    /// aligned or not inside the mapping (the segment's offsets make that
    /// a bug, never a reader's input: readers check the header first).
    pub(crate) fn block<T: Block>(&self, off: usize) -> &T {
        assert!(
            off.is_multiple_of(align_of::<T>())
                && off
                    .checked_add(size_of::<T>())
                    .is_some_and(|end| end <= self.len),
            "block of {} bytes at {off} outside a mapping of {}",
            size_of::<T>(),
            self.len
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned); `Block` guarantees every bit pattern is a valid `T` and
        // that it is only ever accessed atomically; the reference lives as
        // long as `&self`, which owns the mapping.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<T>() }
    }

    /// The whole mapping as words, for copying it (the mapping's length is
    /// a multiple of 8: every block is whole cache lines).
    pub(crate) fn words(&self) -> &[Counter] {
        // SAFETY: the mapping is page aligned, `len / 8` whole `Counter`s
        // fit in it, any bit pattern is a valid `Counter`, and the slice
        // lives as long as `&self`, which owns the mapping.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr.as_ptr().cast::<Counter>(),
                self.len / size_of::<Counter>(),
            )
        }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the range we mapped; no reference into
        // it outlives `self` (views borrow it, slots hold an `Arc` of their
        // segment).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A block of counters that may be viewed inside a mapping.
///
/// # Safety
///
/// The type must be `repr(C)` (or transparent) and consist of [`Counter`]s
/// only (any bit pattern valid, no padding, no pointer), so that a view of
/// any mapped bytes is a valid value that may be shared between threads
/// and processes.
pub(crate) unsafe trait Block: Sync {}

macro_rules! blocks {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a `repr(C)` struct of `Counter`s and arrays of them
            // only (see its definition); the layout tests check its size.
            unsafe impl Block for $t {}
        )*
    };
}

blocks!(
    crate::layout::SegmentHeader,
    crate::layout::Preamble,
    crate::layout::DataplaneDesc,
    crate::layout::QueueDesc,
    crate::layout::HopDesc,
    crate::layout::OutputDesc,
    crate::counters::QueueCounters,
    crate::counters::WorkerCounters,
    crate::counters::LatencySummary,
    crate::counters::HopCounters,
    crate::counters::HopLatency,
    crate::counters::OutputCounters,
    crate::counters::RecorderCounters,
    crate::counters::TapCounters,
    crate::counters::FallbackCounters,
    crate::counter::Counter,
);

/// A counter block inside a segment, kept alive by its segment: what a
/// worker holds to count into its own block with no lookup.
#[derive(Debug)]
pub struct Slot<T> {
    seg: Arc<StatsSegment>,
    ptr: *const T,
}

/// A slot for `block`, which must be a view into `seg`'s mapping (obtained
/// from [`Mmap::block`] on it).
pub(crate) fn slot<T: Block>(seg: &Arc<StatsSegment>, block: &T) -> Slot<T> {
    Slot {
        seg: seg.clone(),
        ptr: block,
    }
}

// SAFETY: `T` is a block of atomics (Sync); the pointer stays valid as long
// as `seg`, which the slot owns, keeps the mapping alive.
unsafe impl<T: Sync> Send for Slot<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Slot<T> {}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            seg: self.seg.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T> Deref for Slot<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from a view into `seg`'s mapping (`Slot::new`),
        // which lives as long as this slot; the segment never unmaps it
        // (a republish remaps in place).
        unsafe { &*self.ptr }
    }
}

/// Takes ownership of fds the kernel just installed in this process for us
/// alone (`SCM_RIGHTS`, `accept(2)`).
pub(crate) fn own_fds(raw: impl IntoIterator<Item = RawFd>) -> Vec<OwnedFd> {
    raw.into_iter()
        // SAFETY: the caller passes fds the kernel just returned to us;
        // nobody else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;

/// The `BPF_MAP_*_ELEM` prefix of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The start of `struct bpf_map_info`.
#[repr(C)]
#[derive(Debug, Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// The `BPF_OBJ_GET_INFO_BY_FD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    fd: u32,
    info_len: u32,
    info: u64,
}

/// `bpf(cmd, attr)`.
///
/// # Safety
///
/// `attr` must be the part of `union bpf_attr` that `cmd` reads, and every
/// pointer in it must be valid for what the kernel reads or writes there.
unsafe fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            size_of::<A>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes `BPF_MAP_LOOKUP_ELEM` writes for one entry of `map`: the value
/// size, or for a per-CPU map the value size rounded up to 8, times the
/// possible CPUs.
fn lookup_len(map: BorrowedFd<'_>) -> io::Result<usize> {
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        fd: map.as_raw_fd() as u32,
        info_len: size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    // SAFETY: the OBJ_GET_INFO_BY_FD attr; `info` outlives the call and
    // `info_len` is its size, the most the kernel writes.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let value = info.value_size as usize;
    Ok(if info.map_type == BPF_MAP_TYPE_PERCPU_ARRAY {
        value.next_multiple_of(8) * crate::fallback::possible_cpus()?
    } else {
        value
    })
}

/// `BPF_MAP_LOOKUP_ELEM` with a 4-byte key into `out`. The map's own
/// value size decides how much the kernel writes, so it is read first: a
/// map whose values do not fit `out` (a peer handed over something else
/// than it said) is `InvalidInput`, never written past `out`.
pub(crate) fn map_lookup<V: Word>(map: BorrowedFd<'_>, key: u32, out: &mut [V]) -> io::Result<()> {
    let needed = lookup_len(map)?;
    if needed > std::mem::size_of_val(out) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "map values of {needed} bytes do not fit {} bytes",
                std::mem::size_of_val(out)
            ),
        ));
    }
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: out.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the lookup attr; `key` and `out` outlive the call; `out` is
    // writable and at least as large as what the kernel writes (checked
    // above); any bytes are a valid `Word`.
    unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }
}

/// Plain integers the kernel may write any bytes into.
///
/// # Safety
///
/// Every bit pattern of the type's size must be a valid value.
pub(crate) unsafe trait Word: Copy {}
// SAFETY: any 4 bytes are a u32.
unsafe impl Word for u32 {}
// SAFETY: any 8 bytes are a u64.
unsafe impl Word for u64 {}

#[cfg(test)]
mod tests {
    use super::*;

    const BPF_MAP_CREATE: libc::c_int = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;

    #[repr(C)]
    #[derive(Default)]
    struct MapCreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }

    fn array_map(map_type: u32, value_size: u32) -> OwnedFd {
        let mut attr = MapCreateAttr {
            map_type,
            key_size: 4,
            value_size,
            max_entries: 1,
        };
        // SAFETY: the MAP_CREATE prefix of `union bpf_attr`, no pointers.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                (&mut attr as *mut MapCreateAttr).cast::<libc::c_void>(),
                size_of::<MapCreateAttr>() as libc::c_uint,
            )
        };
        assert!(
            fd >= 0,
            "BPF_MAP_CREATE: {} (this test needs root or CAP_BPF)",
            io::Error::last_os_error()
        );
        own_fds([fd as RawFd]).pop().unwrap()
    }

    /// A held "action" map whose values are larger than the word the
    /// keeper reads is refused, not written past the word.
    #[test]
    fn lookups_refuse_values_larger_than_the_buffer() {
        use std::os::fd::AsFd;
        let big = array_map(BPF_MAP_TYPE_ARRAY, 64);
        let mut word = [0u32; 1];
        let e = map_lookup(big.as_fd(), 0, &mut word).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let mut words = [0u32; 16];
        map_lookup(big.as_fd(), 0, &mut words).unwrap();

        let action = array_map(BPF_MAP_TYPE_ARRAY, 4);
        map_lookup(action.as_fd(), 0, &mut word).unwrap();
        assert_eq!(word, [0]);

        // Per-CPU: 8 bytes per possible CPU.
        let cpus = crate::fallback::possible_cpus().unwrap();
        let counters = array_map(BPF_MAP_TYPE_PERCPU_ARRAY, 8);
        let mut v = vec![0u64; cpus];
        map_lookup(counters.as_fd(), 0, &mut v).unwrap();
        let mut short = vec![0u64; cpus - 1];
        if cpus > 1 {
            assert!(map_lookup(counters.as_fd(), 0, &mut short).is_err());
        }
    }
}
