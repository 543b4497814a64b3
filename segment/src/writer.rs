//! The writer's side of a segment: created by the dataplane, described as
//! ports, hops, outputs, recorders and taps come and go, and counted into
//! through [`Slot`]s.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use crate::counter::{put_str, seq_write, unix_ns, Counter};
use crate::counters::{
    FallbackSnapshot, HopCounters, HopLatency, LatencySummary, OutputCounters, QueueCounters,
    RecorderCounters, TapCounters, WorkerCounters,
};
use crate::layout::{
    HopInfo, Layout, Offsets, OutputInfo, QueueInfo, SegmentHeader, SegmentState, FILE_MODE,
    FILE_NAME, MAGIC, VERSION,
};
use crate::mapped::Mapped;
use crate::snapshot::{snapshot_of, Snapshot};
use crate::sys::{self, Mmap, Slot};

/// The writer's side of a stats segment.
#[derive(Debug)]
pub struct StatsSegment {
    pub(crate) m: Mapped,
    /// (device, inode) of the published file, `None` in memory.
    file_id: std::sync::Mutex<Option<(u64, u64)>>,
    /// Where the file is, `None` for an in-memory segment.
    path: Option<PathBuf>,
}

impl StatsSegment {
    /// Creates `dir/stats.shm` for `n_queues` queues and `n_workers`
    /// workers, without hop slots. See [`StatsSegment::create_with`].
    pub fn create(
        dir: &Path,
        n_queues: usize,
        n_workers: usize,
        epoch: u64,
    ) -> io::Result<Arc<StatsSegment>> {
        Self::create_with(
            dir,
            &Layout {
                n_queues,
                n_workers,
                ..Layout::default()
            },
            epoch,
        )
    }

    /// Creates `dir/stats.shm` with the sizes of `layout`, atomically
    /// replacing any previous one, with mode [`FILE_MODE`]: readable by the
    /// dataplane's group (the sidecar runs with the same group), never by
    /// everyone (it describes tap filters and recorder paths). Sizes above the bounds readers accept (65536 queues,
    /// 4096 workers, 1024 hops, 4096 hop writers) are `InvalidInput`.
    pub fn create_with(dir: &Path, layout: &Layout, epoch: u64) -> io::Result<Arc<StatsSegment>> {
        if let Some((field, value, max)) = layout.out_of_bounds() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stats segment {field} = {value} exceeds {max}"),
            ));
        }
        let off = Offsets::new(layout);
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // Whatever the umask: group readers need the group bit.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.set_len(off.len as u64)?;
        let map = Mmap::shared_file(file.as_fd(), off.len, true)?;
        let meta = file.metadata()?;
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout: *layout,
                off,
            },
            file_id: std::sync::Mutex::new(Some((meta.dev(), meta.ino()))),
            path: Some(path.clone()),
        };
        seg.init(epoch);
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(Arc::new(seg))
    }

    /// A segment in anonymous memory without hop slots (tests,
    /// microbenchmarks, or a state directory that cannot be written).
    pub fn in_memory(n_queues: usize, n_workers: usize) -> Arc<StatsSegment> {
        Self::in_memory_with(&Layout {
            n_queues,
            n_workers,
            ..Layout::default()
        })
    }

    /// A segment in anonymous memory with the sizes of `layout`.
    pub fn in_memory_with(layout: &Layout) -> Arc<StatsSegment> {
        let off = Offsets::new(layout);
        let map = Mmap::anonymous(off.len).expect("anonymous mapping for stats");
        let seg = StatsSegment {
            m: Mapped {
                map,
                layout: *layout,
                off,
            },
            file_id: std::sync::Mutex::new(None),
            path: None,
        };
        seg.init(0);
        Arc::new(seg)
    }

    fn init(&self, epoch: u64) {
        let h = self.m.header();
        let l = &self.m.layout;
        h.version.set(VERSION);
        h.epoch.set(epoch);
        h.started_unix_ns.set(unix_ns());
        h.heartbeat_unix_ns.set(unix_ns());
        h.state.set(SegmentState::Starting as u64);
        h.n_queues.set(l.n_queues as u64);
        h.n_workers.set(l.n_workers as u64);
        h.max_hops.set(l.max_hops as u64);
        h.n_hop_writers.set(l.n_hop_writers as u64);
        h.n_outputs.set(l.n_outputs as u64);
        h.n_output_writers.set(l.n_output_writers as u64);
        h.max_recorders.set(l.max_recorders as u64);
        h.max_taps.set(l.max_taps as u64);
        let d = self.m.dataplane();
        put_str(&d.version, env!("CARGO_PKG_VERSION"));
        d.pid.set(u64::from(std::process::id()));
        // Magic last: a reader that sees it sees the rest.
        fence(Ordering::Release);
        h.magic.set(MAGIC);
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// False when the segment has a file and `stats.shm` in its directory
    /// is gone or is another file (the state directory was deleted or
    /// emptied): readers cannot see this segment any more.
    pub fn is_published(&self) -> bool {
        let (Some(path), Some(id)) = (&self.path, *self.file_id.lock().expect("file id")) else {
            return true;
        };
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
    }

    /// Publishes the segment again under its path, after the file was
    /// deleted: a new file gets the current contents, is mapped in place
    /// of the old one (same addresses, so every slot handed out stays
    /// valid) and renamed into place. The epoch stays: counters continue.
    /// Increments made between the copy and the remap (a few microseconds)
    /// are lost; counters never go backwards for a reader of the new file.
    pub fn republish(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        let counters: &[Counter] = self.m.map.words();
        let mut bytes = Vec::with_capacity(self.m.map.len());
        for c in counters {
            bytes.extend_from_slice(&c.get().to_le_bytes());
        }
        std::io::Write::write_all(&mut file, &bytes)?;
        self.m.map.remap_shared_file(file.as_fd())?;
        let meta = file.metadata()?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        *self.file_id.lock().expect("file id") = Some((meta.dev(), meta.ino()));
        Ok(())
    }

    pub fn header(&self) -> &SegmentHeader {
        self.m.header()
    }

    /// The sizes the segment was created with.
    pub fn layout(&self) -> Layout {
        self.m.layout
    }

    /// Refreshes the heartbeat (main thread).
    pub fn beat(&self) {
        self.m.header().heartbeat_unix_ns.set(unix_ns());
    }

    pub fn set_state(&self, s: SegmentState) {
        self.m.header().state.set(s as u64);
        self.beat();
    }

    /// Publishes the kernel fallback's counters (main thread, with the
    /// heartbeat).
    pub fn set_fallback(&self, v: &FallbackSnapshot) {
        let Some(f) = self.m.fallback() else {
            return;
        };
        for p in 0..2 {
            f.forwarded[p].set(v.forwarded[p]);
            f.dropped[p].set(v.dropped[p]);
            f.lease_expiries[p].set(v.lease_expiries[p]);
        }
        f.takeovers.set(v.takeovers);
        f.in_use.set(1);
    }

    /// Publishes the `LINK_DOWN_*` bits of the configured ports.
    pub fn set_links_down(&self, bits: u64) {
        self.m.header().links_down.set(bits);
    }

    /// (Re)writes the description of queue slot `i`; readers see the old or
    /// the new one, never a mix. One thread at a time describes and clears
    /// a given slot.
    pub fn describe_queue(&self, i: usize, info: &QueueInfo) {
        let d = self.m.queue_desc(i);
        seq_write(&d.seq, || d.store(info));
    }

    /// Zeroes queue slot `i`'s counters and marks it unused (empty role):
    /// readers skip it until it is described again. Only while no worker
    /// writes the slot's counters.
    pub fn clear_queue(&self, i: usize) {
        let d = self.m.queue_desc(i);
        let c = self.m.queue(i);
        seq_write(&d.seq, || {
            d.store(&QueueInfo::default());
            c.clear();
        });
    }

    /// A handle to queue slot `i`'s counters, for the worker that owns it.
    pub fn queue_slot(self: &Arc<Self>, i: usize) -> Slot<QueueCounters> {
        sys::slot(self, self.m.queue(i))
    }

    /// A handle to worker slot `i`'s counters.
    pub fn worker_slot(self: &Arc<Self>, i: usize) -> Slot<WorkerCounters> {
        sys::slot(self, self.m.worker(i))
    }

    /// A handle to worker slot `i`'s latency summary.
    pub fn latency_slot(self: &Arc<Self>, i: usize) -> Slot<LatencySummary> {
        sys::slot(self, self.m.latency(i))
    }

    /// Describes hop slot `slot` as a hop of the applied chain (`Some`), or
    /// frees it (`None`: readers stop reporting it). Its counters are left
    /// as they are: a new hop in a slot starts with [`StatsSegment::clear_hop`].
    /// One thread at a time describes and clears a given slot.
    pub fn describe_hop(&self, slot: usize, hop: Option<HopInfo>) {
        let d = self.m.hop_desc(slot);
        seq_write(&d.seq, || match &hop {
            Some(h) => {
                d.position.set(u64::from(h.position));
                put_str(&d.name, &h.name);
                d.in_use.set(1);
            }
            None => {
                d.in_use.set(0);
                d.position.set(0);
                put_str(&d.name, "");
            }
        });
    }

    /// Zeroes hop slot `slot`'s counters (every writer's) and its latency.
    /// Only while no chain task and no heartbeat judge writes them.
    pub fn clear_hop(&self, slot: usize) {
        let d = self.m.hop_desc(slot);
        seq_write(&d.seq, || {
            for w in 0..self.m.layout.n_hop_writers {
                self.m.hop(slot, w).clear();
            }
            self.m.hop_latency(slot).clear();
        });
    }

    /// A handle to hop slot `slot`'s counters as counted by `writer` (the
    /// chain task's index, `0..n_hop_writers`).
    pub fn hop_slot(self: &Arc<Self>, slot: usize, writer: usize) -> Slot<HopCounters> {
        sys::slot(self, self.m.hop(slot, writer))
    }

    /// A handle to hop slot `slot`'s round-trip latency, for the heartbeat
    /// judge.
    pub fn hop_latency_slot(self: &Arc<Self>, slot: usize) -> Slot<HopLatency> {
        sys::slot(self, self.m.hop_latency(slot))
    }

    /// Describes output slot `slot` (at start, before any worker runs).
    pub fn describe_output(&self, slot: usize, info: &OutputInfo) {
        let d = self.m.output_desc(slot);
        seq_write(&d.seq, || {
            d.kind.set(info.kind as u64);
            d.parent.set(u64::from(info.parent));
            d.snaplen.set(u64::from(info.snaplen));
            put_str(&d.name, &info.name);
            put_str(&d.ifname, &info.ifname);
            put_str(&d.filter, &info.filter);
        });
    }

    /// A handle to output slot `slot`'s counters as counted by `writer`
    /// (the capture task's index, `0..n_output_writers`).
    pub fn output_slot(self: &Arc<Self>, slot: usize, writer: usize) -> Slot<OutputCounters> {
        sys::slot(self, self.m.output(slot, writer))
    }

    /// A handle to recorder block `i`.
    pub fn recorder_slot(self: &Arc<Self>, i: usize) -> Slot<RecorderCounters> {
        sys::slot(self, self.m.recorder(i))
    }

    /// A handle to tap block `i`.
    pub fn tap_slot(self: &Arc<Self>, i: usize) -> Slot<TapCounters> {
        sys::slot(self, self.m.tap(i))
    }

    /// Everything, as plain values.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }
}
