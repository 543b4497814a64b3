//! The stats segment: counters in a memory-mapped file in `state_dir`,
//! written in place by the dataplane's workers and read by the sidecar.
//!
//! Like the rings, this is memory shared with another party (here another
//! process, which holds no capabilities), so it lives beside them. Every
//! field is an `AtomicU64`: any bit pattern is valid, there is no padding and
//! no pointer, and a reader can never observe a torn word. Each block has a
//! single writer (the worker owning the queue, or the main thread for the
//! header), which stores with plain load + store; readers load `Relaxed`.
//! The latency summary, whose fields must be read together, is guarded by a
//! sequence counter (seqlock: odd while being written).
//!
//! ```text
//! offset 0      SegmentHeader                 (64 bytes)
//!               DataplaneDesc                 (64 bytes: version, pid)
//!               QueueDesc       x n_queues    (64 bytes each: role, ifname, queue, mode)
//!               QueueCounters   x n_queues    (cache-line aligned)
//!               WorkerCounters  x n_workers
//!               LatencySummary  x n_workers
//! ```
//!
//! The file is created under a temporary name, initialised, then renamed
//! into place, so a reader never maps a half-initialised segment. A new
//! dataplane process writes a new file (new inode) with a new `epoch`.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::sys::Mmap;

/// `b"TAPLSTAT"` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TAPLSTAT");
/// Layout version; bumped on any incompatible change.
pub const VERSION: u64 = 1;
/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "stats.shm";

/// One monotonically increasing counter with a single writer.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread calls this, so load + store is exact
    /// and costs no atomic read-modify-write.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Overwrites the value (mirrors of kernel counters, gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Number of drop reasons with a slot (room to grow without a new version).
pub const DROP_SLOTS: usize = 8;

/// Mirror of the kernel's `XDP_STATISTICS` for one socket.
#[repr(C)]
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub rx_dropped: Counter,
    pub rx_invalid_descs: Counter,
    pub tx_invalid_descs: Counter,
    pub rx_ring_full: Counter,
    pub rx_fill_ring_empty: Counter,
    pub tx_ring_empty: Counter,
}

/// Counters of one (port, queue).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Indexed by `DropReason as usize`.
    pub drops: [Counter; DROP_SLOTS],
    pub kernel: KernelCounters,
}

/// Counters of one worker thread.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Task polls that moved at least one frame.
    pub batches: Counter,
    /// Loop iterations that found work.
    pub busy_loops: Counter,
    /// Loop iterations that found none.
    pub idle_loops: Counter,
    /// Times the worker blocked in poll(2) (idle backoff).
    pub idle_waits: Counter,
}

/// Percentiles of one worker's batch processing time over the last window,
/// published as a unit under a sequence counter.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct LatencySummary {
    /// Odd while the writer updates the fields below.
    pub seq: Counter,
    /// Batches in the window.
    pub count: Counter,
    pub p50_ns: Counter,
    pub p90_ns: Counter,
    pub p99_ns: Counter,
    pub p999_ns: Counter,
    pub max_ns: Counter,
    /// Length of the window the percentiles describe.
    pub window_ns: Counter,
}

/// Plain values of a [`LatencySummary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyValues {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub window_ns: u64,
}

impl LatencySummary {
    /// Publishes new values (single writer).
    pub fn publish(&self, v: &LatencyValues) {
        let s = self.seq.get();
        // Odd: readers retry. Release fences order the field stores between
        // the two sequence stores for the reader's Acquire fence below.
        self.seq.set(s.wrapping_add(1));
        std::sync::atomic::fence(Ordering::Release);
        self.count.set(v.count);
        self.p50_ns.set(v.p50_ns);
        self.p90_ns.set(v.p90_ns);
        self.p99_ns.set(v.p99_ns);
        self.p999_ns.set(v.p999_ns);
        self.max_ns.set(v.max_ns);
        self.window_ns.set(v.window_ns);
        std::sync::atomic::fence(Ordering::Release);
        self.seq.set(s.wrapping_add(2));
    }

    /// A consistent copy, or `None` if the writer kept it busy.
    pub fn read(&self) -> Option<LatencyValues> {
        for _ in 0..64 {
            let s1 = self.seq.0.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = LatencyValues {
                count: self.count.get(),
                p50_ns: self.p50_ns.get(),
                p90_ns: self.p90_ns.get(),
                p99_ns: self.p99_ns.get(),
                p999_ns: self.p999_ns.get(),
                max_ns: self.max_ns.get(),
                window_ns: self.window_ns.get(),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.0.load(Ordering::Relaxed) == s1 {
                return Some(v);
            }
        }
        None
    }
}

/// Dataplane state as published in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SegmentState {
    Starting = 0,
    Running = 1,
    Stopped = 2,
}

/// The segment header.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct SegmentHeader {
    pub magic: Counter,
    pub version: Counter,
    /// Changes with every dataplane start: a reader that sees it change
    /// restarts its rate computations (counters went back to zero).
    pub epoch: Counter,
    pub started_unix_ns: Counter,
    /// Refreshed by the dataplane's main thread several times a second; a
    /// stale value means the dataplane is gone (even after SIGKILL).
    pub heartbeat_unix_ns: Counter,
    /// A [`SegmentState`].
    pub state: Counter,
    pub n_queues: Counter,
    pub n_workers: Counter,
}

/// Words of the version string in a [`DataplaneDesc`] (48 bytes).
const VERSION_WORDS: usize = 6;

/// Which dataplane wrote the segment.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct DataplaneDesc {
    version: [Counter; VERSION_WORDS],
    pid: Counter,
    _reserved: Counter,
}

/// Words of a short string field in a [`QueueDesc`] (16 bytes).
const NAME_WORDS: usize = 2;
const MODE_WORDS: usize = 2;

/// What a queue slot describes.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueDesc {
    role: [Counter; NAME_WORDS],
    ifname: [Counter; NAME_WORDS],
    queue: Counter,
    mode: [Counter; MODE_WORDS],
    worker: Counter,
}

/// Plain values of a [`QueueDesc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub role: String,
    pub ifname: String,
    pub queue: u32,
    pub mode: String,
    /// Index of the worker thread that serves this queue.
    pub worker: u32,
}

fn put_str(words: &[Counter], s: &str) {
    let mut bytes = vec![0u8; words.len() * 8];
    let n = s.len().min(bytes.len());
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        w.set(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
}

fn get_str(words: &[Counter]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.get().to_le_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl QueueDesc {
    pub fn set(&self, info: &QueueInfo) {
        put_str(&self.role, &info.role);
        put_str(&self.ifname, &info.ifname);
        self.queue.set(u64::from(info.queue));
        put_str(&self.mode, &info.mode);
        self.worker.set(u64::from(info.worker));
    }

    pub fn get(&self) -> QueueInfo {
        QueueInfo {
            role: get_str(&self.role),
            ifname: get_str(&self.ifname),
            queue: self.queue.get() as u32,
            mode: get_str(&self.mode),
            worker: self.worker.get() as u32,
        }
    }
}

/// Byte offsets of the parts of a segment with `q` queues and `w` workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    dataplane: usize,
    descs: usize,
    queues: usize,
    workers: usize,
    latency: usize,
    len: usize,
}

impl Layout {
    fn new(q: usize, w: usize) -> Layout {
        let dataplane = size_of::<SegmentHeader>();
        let descs = dataplane + size_of::<DataplaneDesc>();
        let queues = descs + q * size_of::<QueueDesc>();
        let workers = queues + q * size_of::<QueueCounters>();
        let latency = workers + w * size_of::<WorkerCounters>();
        let len = latency + w * size_of::<LatencySummary>();
        Layout {
            dataplane,
            descs,
            queues,
            workers,
            latency,
            len,
        }
    }
}

/// A mapped segment (writer or reader side).
#[derive(Debug)]
struct Mapped {
    map: Mmap,
    layout: Layout,
    n_queues: usize,
    n_workers: usize,
}

impl Mapped {
    /// # Safety
    ///
    /// `off` must be a multiple of `align_of::<T>()` with `off + size_of::<T>()`
    /// within the mapping, and `T` must be a block of `Counter`s (every bit
    /// pattern valid, no padding).
    unsafe fn at<T>(&self, off: usize) -> &T {
        debug_assert!(
            off.is_multiple_of(align_of::<T>()) && off + size_of::<T>() <= self.map.len()
        );
        // SAFETY: forwarded: in bounds and aligned (the mapping is page
        // aligned, every block size is a multiple of 64); any bit pattern is
        // a valid `T`; the reference lives as long as `&self`, which owns the
        // mapping.
        unsafe { &*self.map.as_ptr().add(off).cast::<T>() }
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a mapping at least `layout.len` long.
        unsafe { self.at(0) }
    }

    /// Block `i` of an array of `n` blocks of `T` starting at `base`.
    fn nth<T>(&self, base: usize, i: usize, n: usize) -> &T {
        assert!(i < n, "slot {i} out of range ({n} slots)");
        // SAFETY: `Layout` places `n` blocks of `T` (whole cache lines, so
        // aligned) from `base`, inside the mapping; `T` is a block of
        // `Counter`s (every caller below names one).
        unsafe { self.at(base + i * size_of::<T>()) }
    }

    fn dataplane(&self) -> &DataplaneDesc {
        self.nth(self.layout.dataplane, 0, 1)
    }

    fn desc(&self, i: usize) -> &QueueDesc {
        self.nth(self.layout.descs, i, self.n_queues)
    }

    fn queue(&self, i: usize) -> &QueueCounters {
        self.nth(self.layout.queues, i, self.n_queues)
    }

    fn worker(&self, i: usize) -> &WorkerCounters {
        self.nth(self.layout.workers, i, self.n_workers)
    }

    fn latency(&self, i: usize) -> &LatencySummary {
        self.nth(self.layout.latency, i, self.n_workers)
    }
}

/// The writer's side of a stats segment.
#[derive(Debug)]
pub struct StatsSegment {
    m: Mapped,
    /// Where the file is, `None` for an in-memory segment.
    path: Option<PathBuf>,
}

impl StatsSegment {
    /// Creates `dir/stats.shm` for `n_queues` queues and `n_workers`
    /// workers, atomically replacing any previous one, readable by everyone
    /// (it holds counters, not traffic).
    pub fn create(
        dir: &Path,
        n_queues: usize,
        n_workers: usize,
        epoch: u64,
    ) -> io::Result<Arc<StatsSegment>> {
        let layout = Layout::new(n_queues, n_workers);
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.set_len(layout.len as u64)?;
        let map = Mmap::shared_file(file.as_fd(), layout.len, true)?;
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout,
                n_queues,
                n_workers,
            },
            path: Some(path.clone()),
        };
        seg.init(epoch);
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(Arc::new(seg))
    }

    /// A segment in anonymous memory (tests, microbenchmarks, or a state
    /// directory that cannot be written).
    pub fn in_memory(n_queues: usize, n_workers: usize) -> Arc<StatsSegment> {
        let layout = Layout::new(n_queues, n_workers);
        let map = Mmap::anonymous(layout.len.max(1)).expect("anonymous mapping for stats");
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout,
                n_queues,
                n_workers,
            },
            path: None,
        };
        seg.init(0);
        Arc::new(seg)
    }

    fn init(&self, epoch: u64) {
        let h = self.m.header();
        h.version.set(VERSION);
        h.epoch.set(epoch);
        h.started_unix_ns.set(unix_ns());
        h.heartbeat_unix_ns.set(unix_ns());
        h.state.set(SegmentState::Starting as u64);
        h.n_queues.set(self.m.n_queues as u64);
        h.n_workers.set(self.m.n_workers as u64);
        let d = self.m.dataplane();
        put_str(&d.version, env!("CARGO_PKG_VERSION"));
        d.pid.set(u64::from(std::process::id()));
        // Magic last: a reader that sees it sees the rest.
        std::sync::atomic::fence(Ordering::Release);
        h.magic.set(MAGIC);
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn header(&self) -> &SegmentHeader {
        self.m.header()
    }

    /// Refreshes the heartbeat (main thread).
    pub fn beat(&self) {
        self.m.header().heartbeat_unix_ns.set(unix_ns());
    }

    pub fn set_state(&self, s: SegmentState) {
        self.m.header().state.set(s as u64);
        self.beat();
    }

    pub fn describe_queue(&self, i: usize, info: &QueueInfo) {
        self.m.desc(i).set(info);
    }

    /// A handle to queue slot `i`'s counters, for the worker that owns it.
    pub fn queue_slot(self: &Arc<Self>, i: usize) -> Slot<QueueCounters> {
        let ptr: *const QueueCounters = self.m.queue(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to worker slot `i`'s counters.
    pub fn worker_slot(self: &Arc<Self>, i: usize) -> Slot<WorkerCounters> {
        let ptr: *const WorkerCounters = self.m.worker(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// A handle to worker slot `i`'s latency summary.
    pub fn latency_slot(self: &Arc<Self>, i: usize) -> Slot<LatencySummary> {
        let ptr: *const LatencySummary = self.m.latency(i);
        Slot {
            seg: self.clone(),
            ptr,
        }
    }

    /// Everything, as plain values.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }
}

/// A counter block inside a segment, kept alive by its segment.
#[derive(Debug)]
pub struct Slot<T> {
    seg: Arc<StatsSegment>,
    ptr: *const T,
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
        // SAFETY: `ptr` came from a reference into `seg`'s mapping, which
        // lives as long as this slot.
        unsafe { &*self.ptr }
    }
}

/// Plain values of one queue slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub info: QueueInfo,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DROP_SLOTS],
    pub kernel_rx_dropped: u64,
    pub kernel_rx_invalid_descs: u64,
    pub kernel_tx_invalid_descs: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_rx_fill_ring_empty: u64,
    pub kernel_tx_ring_empty: u64,
}

/// Plain values of one worker slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub batches: u64,
    pub busy_loops: u64,
    pub idle_loops: u64,
    pub idle_waits: u64,
    pub latency: Option<LatencyValues>,
}

/// Everything in a segment at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Version of the dataplane that wrote the segment.
    pub dataplane_version: String,
    pub dataplane_pid: u32,
    pub epoch: u64,
    pub started_unix_ns: u64,
    pub heartbeat_unix_ns: u64,
    pub state: u64,
    pub queues: Vec<QueueSnapshot>,
    pub workers: Vec<WorkerSnapshot>,
}

impl Snapshot {
    /// The dataplane is running and its heartbeat is younger than `max_age`.
    pub fn is_live(&self, max_age: std::time::Duration) -> bool {
        self.state == SegmentState::Running as u64
            && unix_ns().saturating_sub(self.heartbeat_unix_ns) <= max_age.as_nanos() as u64
    }
}

fn snapshot_of(m: &Mapped) -> Snapshot {
    let h = m.header();
    let d = m.dataplane();
    Snapshot {
        dataplane_version: get_str(&d.version),
        dataplane_pid: d.pid.get() as u32,
        epoch: h.epoch.get(),
        started_unix_ns: h.started_unix_ns.get(),
        heartbeat_unix_ns: h.heartbeat_unix_ns.get(),
        state: h.state.get(),
        queues: (0..m.n_queues)
            .map(|i| {
                let c = m.queue(i);
                QueueSnapshot {
                    info: m.desc(i).get(),
                    rx_packets: c.rx_packets.get(),
                    rx_bytes: c.rx_bytes.get(),
                    tx_packets: c.tx_packets.get(),
                    tx_bytes: c.tx_bytes.get(),
                    drops: std::array::from_fn(|d| c.drops[d].get()),
                    kernel_rx_dropped: c.kernel.rx_dropped.get(),
                    kernel_rx_invalid_descs: c.kernel.rx_invalid_descs.get(),
                    kernel_tx_invalid_descs: c.kernel.tx_invalid_descs.get(),
                    kernel_rx_ring_full: c.kernel.rx_ring_full.get(),
                    kernel_rx_fill_ring_empty: c.kernel.rx_fill_ring_empty.get(),
                    kernel_tx_ring_empty: c.kernel.tx_ring_empty.get(),
                }
            })
            .collect(),
        workers: (0..m.n_workers)
            .map(|i| {
                let w = m.worker(i);
                WorkerSnapshot {
                    batches: w.batches.get(),
                    busy_loops: w.busy_loops.get(),
                    idle_loops: w.idle_loops.get(),
                    idle_waits: w.idle_waits.get(),
                    latency: m.latency(i).read(),
                }
            })
            .collect(),
    }
}

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("opening the stats segment {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is not a tapline stats segment (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("{path} has layout version {found}, this build reads {VERSION}: run matching dataplane and sidecar versions")]
    Version { path: PathBuf, found: u64 },
    #[error("{path} is truncated ({len} bytes, the header describes {needed})")]
    Truncated {
        path: PathBuf,
        len: usize,
        needed: usize,
    },
}

/// The reader's side: a read-only mapping, for processes without
/// capabilities. Only plain values come out of it.
#[derive(Debug)]
pub struct SegmentReader {
    m: Mapped,
    path: PathBuf,
    inode: u64,
}

/// Upper bounds a reader accepts, so a corrupt header cannot make it map
/// absurd sizes.
const MAX_QUEUES: u64 = 1 << 16;
const MAX_WORKERS: u64 = 1 << 12;

impl SegmentReader {
    /// Maps `dir/stats.shm` read-only and validates it.
    pub fn open(dir: &Path) -> Result<SegmentReader, SegmentError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source| SegmentError::Open {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let len = meta.len() as usize;
        if len < size_of::<SegmentHeader>() {
            return Err(SegmentError::Truncated {
                path,
                len,
                needed: size_of::<SegmentHeader>(),
            });
        }
        let map = Mmap::shared_file(file.as_fd(), len, false).map_err(open_err)?;
        let probe = Mapped {
            map,
            layout: Layout::new(0, 0),
            n_queues: 0,
            n_workers: 0,
        };
        let h = probe.header();
        if h.magic.get() != MAGIC {
            return Err(SegmentError::BadMagic { path });
        }
        std::sync::atomic::fence(Ordering::Acquire);
        if h.version.get() != VERSION {
            return Err(SegmentError::Version {
                path,
                found: h.version.get(),
            });
        }
        let (q, w) = (h.n_queues.get(), h.n_workers.get());
        let layout = Layout::new(q.min(MAX_QUEUES) as usize, w.min(MAX_WORKERS) as usize);
        if q > MAX_QUEUES || w > MAX_WORKERS || layout.len > len {
            return Err(SegmentError::Truncated {
                path,
                len,
                needed: layout.len,
            });
        }
        Ok(SegmentReader {
            m: Mapped {
                map: probe.map,
                layout,
                n_queues: q as usize,
                n_workers: w as usize,
            },
            path,
            inode: meta.ino(),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }

    /// False once a newer dataplane has replaced the file: reopen then.
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}

/// Nanoseconds since the Unix epoch (wall clock: comparable across
/// processes, unlike `Instant`).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tapline-shm-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn blocks_are_whole_cache_lines() {
        for (size, align) in [
            (size_of::<SegmentHeader>(), align_of::<SegmentHeader>()),
            (size_of::<DataplaneDesc>(), align_of::<DataplaneDesc>()),
            (size_of::<QueueDesc>(), align_of::<QueueDesc>()),
            (size_of::<QueueCounters>(), align_of::<QueueCounters>()),
            (size_of::<WorkerCounters>(), align_of::<WorkerCounters>()),
            (size_of::<LatencySummary>(), align_of::<LatencySummary>()),
        ] {
            assert_eq!(align, 64);
            assert_eq!(size % 64, 0);
        }
    }

    #[test]
    fn writer_and_reader_agree() {
        let dir = tmpdir("agree");
        let seg = StatsSegment::create(&dir, 2, 1, 0xfeed).unwrap();
        let info = QueueInfo {
            role: "inline-1".into(),
            ifname: "net2".into(),
            queue: 3,
            mode: "native-zerocopy".into(),
            worker: 1,
        };
        seg.describe_queue(1, &info);
        let q = seg.queue_slot(1);
        q.rx_packets.add(10);
        q.rx_packets.add(5);
        q.drops[0].add(2);
        seg.worker_slot(0).batches.add(7);
        seg.latency_slot(0).publish(&LatencyValues {
            count: 3,
            p50_ns: 100,
            p90_ns: 200,
            p99_ns: 300,
            p999_ns: 400,
            max_ns: 500,
            window_ns: 1_000_000_000,
        });
        seg.set_state(SegmentState::Running);
        let r = SegmentReader::open(&dir).unwrap();
        let s = r.snapshot();
        assert_eq!(s.epoch, 0xfeed);
        assert_eq!(s.dataplane_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(s.dataplane_pid, std::process::id());
        assert_eq!(s.queues.len(), 2);
        assert_eq!(s.queues[1].info, info);
        assert_eq!(s.queues[1].rx_packets, 15);
        assert_eq!(s.queues[1].drops[0], 2);
        assert_eq!(s.queues[0].rx_packets, 0);
        assert_eq!(s.workers[0].batches, 7);
        assert_eq!(s.workers[0].latency.unwrap().p99_ns, 300);
        assert!(s.is_live(std::time::Duration::from_secs(5)));
        // Writes after the reader mapped the file are visible to it.
        q.tx_packets.add(4);
        assert_eq!(r.snapshot().queues[1].tx_packets, 4);
        assert!(r.is_current());
        // A restarted dataplane replaces the file: the old reader notices.
        let _seg2 = StatsSegment::create(&dir, 1, 1, 0xbeef).unwrap();
        assert!(!r.is_current());
        assert_eq!(SegmentReader::open(&dir).unwrap().snapshot().epoch, 0xbeef);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reader_rejects_foreign_and_truncated_files() {
        let dir = tmpdir("reject");
        std::fs::write(dir.join(FILE_NAME), vec![0u8; 4096]).unwrap();
        assert!(matches!(
            SegmentReader::open(&dir),
            Err(SegmentError::BadMagic { .. })
        ));
        std::fs::write(dir.join(FILE_NAME), b"short").unwrap();
        assert!(matches!(
            SegmentReader::open(&dir),
            Err(SegmentError::Truncated { .. })
        ));
        // A header that claims more queues than the file holds.
        let seg = StatsSegment::create(&dir, 1, 0, 1).unwrap();
        seg.header().n_queues.set(1000);
        assert!(matches!(
            SegmentReader::open(&dir),
            Err(SegmentError::Truncated { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strings_are_truncated_not_overflowed() {
        let seg = StatsSegment::in_memory(1, 0);
        seg.describe_queue(
            0,
            &QueueInfo {
                role: "a-role-name-longer-than-sixteen".into(),
                ifname: "eth0".into(),
                queue: 0,
                mode: "generic-copy".into(),
                worker: 0,
            },
        );
        let s = seg.snapshot();
        assert_eq!(s.queues[0].info.role, "a-role-name-long");
        assert_eq!(s.queues[0].info.ifname, "eth0");
    }
}
