//! The reader's side: a read-only mapping of a segment another process
//! wrote, validated before use.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use crate::layout::{
    Layout, Offsets, Preamble, SegmentHeader, FILE_NAME, MAGIC, MAX_HOPS, MAX_HOP_WRITERS,
    MAX_OUTPUTS, MAX_OUTPUT_WRITERS, MAX_QUEUES, MAX_RECORDERS, MAX_TAPS, MAX_WORKERS,
    MIN_READ_VERSION, VERSION,
};
use crate::mapped::Mapped;
use crate::snapshot::{snapshot_of, Snapshot};
use crate::sys::Mmap;

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("opening the stats segment {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is not a tapline stats segment (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("{path} has layout version {found}, this build reads {MIN_READ_VERSION} to {VERSION}: run matching dataplane and sidecar versions")]
    Version { path: PathBuf, found: u64 },
    #[error("{path} is truncated ({len} bytes, the header describes {needed})")]
    Truncated {
        path: PathBuf,
        len: usize,
        needed: usize,
    },
    #[error("{path} has a corrupt header: {field} = {value} exceeds {max}")]
    BadHeader {
        path: PathBuf,
        field: &'static str,
        value: u64,
        max: usize,
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

impl SegmentReader {
    /// Maps `dir/stats.shm` read-only and validates it: magic, version,
    /// sizes within bounds, and a file long enough for them.
    pub fn open(dir: &Path) -> Result<SegmentReader, SegmentError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source| SegmentError::Open {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let len = meta.len() as usize;
        let truncated = |path, needed| SegmentError::Truncated { path, len, needed };
        if len < size_of::<Preamble>() {
            return Err(truncated(path, size_of::<Preamble>()));
        }
        let map = Mmap::shared_file(file.as_fd(), len, false).map_err(open_err)?;
        let probe = Mapped {
            map,
            layout: Layout::default(),
            off: Offsets::new(&Layout::default()),
        };
        let pre: &Preamble = probe.map.block(0);
        if pre.magic.get() != MAGIC {
            return Err(SegmentError::BadMagic { path });
        }
        // Acquire: pairs with the Release fence before the writer's magic
        // store (and the rename made the file visible only after that).
        fence(Ordering::Acquire);
        let found = pre.version.get();
        if !(MIN_READ_VERSION..=VERSION).contains(&found) {
            return Err(SegmentError::Version { path, found });
        }
        if len < size_of::<SegmentHeader>() {
            return Err(truncated(path, size_of::<SegmentHeader>()));
        }
        let h = probe.header();
        let fields = [
            ("n_queues", h.n_queues.get(), MAX_QUEUES),
            ("n_workers", h.n_workers.get(), MAX_WORKERS),
            ("max_hops", h.max_hops.get(), MAX_HOPS),
            ("n_hop_writers", h.n_hop_writers.get(), MAX_HOP_WRITERS),
            ("n_outputs", h.n_outputs.get(), MAX_OUTPUTS),
            (
                "n_output_writers",
                h.n_output_writers.get(),
                MAX_OUTPUT_WRITERS,
            ),
            ("max_recorders", h.max_recorders.get(), MAX_RECORDERS),
            ("max_taps", h.max_taps.get(), MAX_TAPS),
        ];
        if let Some(&(field, value, max)) = fields.iter().find(|(_, v, max)| *v > *max as u64) {
            return Err(SegmentError::BadHeader {
                path,
                field,
                value,
                max,
            });
        }
        // In bounds: every value fits a usize and `Offsets` cannot overflow.
        let [q, w, hops, writers, outputs, output_writers, recorders, taps] =
            fields.map(|(_, v, _)| v as usize);
        let layout = Layout {
            n_queues: q,
            n_workers: w,
            max_hops: hops,
            n_hop_writers: writers,
            n_outputs: outputs,
            n_output_writers: output_writers,
            max_recorders: recorders,
            max_taps: taps,
        };
        let off = Offsets::of_version(&layout, found);
        if off.len > len {
            return Err(truncated(path, off.len));
        }
        Ok(SegmentReader {
            m: Mapped {
                map: probe.map,
                layout,
                off,
            },
            path,
            inode: meta.ino(),
        })
    }

    /// The sizes the segment was created with.
    pub fn layout(&self) -> Layout {
        self.m.layout
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.m)
    }

    /// False once a newer dataplane has replaced the file: reopen then.
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}
