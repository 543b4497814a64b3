//! Recording captured packets to rotating pcap files.
//!
//! ```text
//!  capture tasks (busy-polling, never block)            writer thread            janitor thread
//!  RecordProducer::record ─ pcap record into its block   tapline-rec-NAME          tapline-rec-NAME-j
//!        │ full / >100 ms old / flush()                   │                         │
//!        └──── bounded channel of blocks ───────────────► write .NAME-T-SEQ.pcap.part ── completed ──► migrate to bulk_dir
//!        ▲                                                 │ rotate: rename to NAME-T-SEQ.pcap         retention (bytes, age)
//!        └──── free list of empty blocks ◄────────────────┘
//! ```
//!
//! Memory is a fixed set of blocks allocated at start ([`block_plan`]): a
//! producer appends records (16-byte header + data cut to the snap length)
//! to its current block, hands full blocks to the writer over a bounded
//! channel and takes empty ones from a free list. With no free block a
//! packet is dropped and counted (`queue_dropped_packets`/`_bytes`); the
//! capture side never blocks, never allocates and never sees a disk error.
//!
//! The writer ([`writer`]) writes `.NAME-<time>-<seq>.pcap.part` files and
//! renames each, complete, to `NAME-<time>-<seq>.pcap` (names:
//! [`naming`]): a file never appears half-written under its final name.
//! Files rotate by size (exactly, at record boundaries) and by time, and are
//! opened at their first packet, so there are no empty files. Disk errors
//! (ENOSPC, EROFS, EIO, a missing directory) suspend recording: packets are
//! dropped and counted (`disk_dropped_packets`) until a retry, about once a
//! second, succeeds; each incident logs one warning and one "resumed" line.
//!
//! The janitor ([`janitor`]) moves completed files to the bulk directory
//! and applies retention in both directories, and at start completes
//! `.part` files a crashed run left behind.
//!
//! Counters go to the recorder's [`RecorderCounters`] block: the writer
//! owns most of them, the janitor `files_migrated` and `files_deleted`,
//! the producers `queue_dropped_*` (shared adds). The texts (current file,
//! last error) are written by both threads under one lock.

mod disk;
pub mod janitor;
pub mod naming;
mod producer;
mod recover;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Sender};
use crossbeam::queue::ArrayQueue;

pub use self::producer::{RecordProducer, MAX_BLOCK_AGE_NS};

/// Mode of the pcap files (before the umask): owner read-write, group
/// read; captured traffic is never world-readable.
pub(crate) const FILE_MODE: u32 = 0o640;
use tapline_config::record::{RecordSettings, SettingsError};
use tapline_packet::pcap::RECORD_HEADER_LEN;
use tapline_segment::{RecorderCounters, Slot};

/// Block sizes: the queue is cut into about [`TARGET_BLOCKS`] blocks of
/// [`MIN_BLOCK_BYTES`]..=[`MAX_BLOCK_BYTES`], at least [`MIN_BLOCKS`] of
/// them, each big enough for one record of the largest snap length.
pub(crate) const MIN_BLOCK_BYTES: usize = 256 << 10;
pub(crate) const MAX_BLOCK_BYTES: usize = 1 << 20;
pub(crate) const TARGET_BLOCKS: usize = 16;
pub(crate) const MIN_BLOCKS: usize = 4;

/// Block size and count for a queue of `queue_bytes` and a snap length:
/// `queue_bytes / 16` clamped to 256 KiB..=1 MiB (and at least one record of
/// the snap length), and as many blocks as fit, at least 4. Memory is
/// `block_bytes * blocks`, `queue_bytes` or just over it for small queues.
pub(crate) fn block_plan(queue_bytes: usize, effective_snaplen: u32) -> (usize, usize) {
    let max_record = RECORD_HEADER_LEN + effective_snaplen as usize;
    let block_bytes = (queue_bytes / TARGET_BLOCKS)
        .clamp(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES)
        .max(max_record);
    let blocks = (queue_bytes / block_bytes).max(MIN_BLOCKS);
    (block_bytes, blocks)
}

/// What goes from the producers (and `stop`) to the writer.
#[derive(Debug)]
enum Msg {
    Block(Vec<u8>),
    Stop,
}

/// State shared by a recorder's producers and threads.
#[derive(Debug)]
struct Shared {
    name: String,
    /// Set by `stop`: producers drop, the janitor ends.
    closed: AtomicBool,
    /// Empty blocks, each with a capacity of `block_bytes`.
    free: ArrayQueue<Vec<u8>>,
    block_bytes: usize,
    blocks: usize,
    /// Effective snap length.
    snaplen: u32,
    /// Serialises the writes of the counters' texts (a seqlock with one
    /// writer at a time) by the writer and the janitor.
    texts: Mutex<()>,
    current: Mutex<Option<PathBuf>>,
    producers: AtomicUsize,
    warned_few_blocks: AtomicBool,
    /// Test hook: the writer stops taking blocks while set.
    #[cfg(test)]
    paused: AtomicBool,
}

impl Shared {
    fn disk_error(&self, counters: &RecorderCounters, text: &str) {
        let _g = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        counters.disk_error(text);
    }

    fn set_current(&self, counters: &RecorderCounters, path: Option<&Path>) {
        {
            let _g = self.texts.lock().unwrap_or_else(|p| p.into_inner());
            counters.set_current_file(&path.map(|p| p.display().to_string()).unwrap_or_default());
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = path.map(Path::to_path_buf);
    }
}

/// A running recorder: its queue of blocks, its writer thread and its
/// janitor thread. Dropping it stops it like [`Recorder::stop`].
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    counters: Slot<RecorderCounters>,
    settings: RecordSettings,
    writer: Option<JoinHandle<()>>,
    janitor: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recorder settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("starting the writer thread of recorder {name}: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

/// `.part` files of `recorder` in `dir` (a run that crashed left them).
fn leftover_parts(dir: &Path, recorder: &str) -> Vec<(PathBuf, String)> {
    // Unreadable directory: the writer reports it as a disk error.
    disk::list(dir, recorder)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.kind == naming::Kind::Part)
        .map(|e| (e.path, e.file_name))
        .collect()
}

impl Recorder {
    /// Validates the settings, allocates the queue's blocks and starts the
    /// writer and janitor threads. A missing or unwritable directory is not
    /// an error here: it is a disk error, and recording starts when the
    /// directory works.
    pub fn start(
        settings: RecordSettings,
        counters: Slot<RecorderCounters>,
    ) -> Result<Recorder, RecordError> {
        settings.validate()?;
        let snaplen = settings.effective_snaplen();
        let (block_bytes, blocks) = block_plan(settings.queue_bytes, snaplen);
        let free = ArrayQueue::new(blocks);
        for _ in 0..blocks {
            // Capacity for `blocks` entries: never full.
            let _ = free.push(Vec::with_capacity(block_bytes));
        }
        let shared = Arc::new(Shared {
            name: settings.name.clone(),
            closed: AtomicBool::new(false),
            free,
            block_bytes,
            blocks,
            snaplen,
            texts: Mutex::new(()),
            current: Mutex::new(None),
            producers: AtomicUsize::new(0),
            warned_few_blocks: AtomicBool::new(false),
            #[cfg(test)]
            paused: AtomicBool::new(false),
        });
        {
            let _g = shared.texts.lock().unwrap_or_else(|p| p.into_inner());
            counters.describe(&settings.name, &settings.dir.display().to_string());
            counters.set_current_file("");
        }
        let leftovers = leftover_parts(&settings.dir, &settings.name);
        // Every block plus the stop message: a producer's try_send never
        // finds it full.
        let (tx, rx) = channel::bounded(blocks + 1);
        let (jtx, jrx) = channel::bounded(1);
        let thread_err = |source| RecordError::Thread {
            name: settings.name.clone(),
            source,
        };
        let janitor = janitor::Janitor::new(
            settings.clone(),
            shared.clone(),
            counters.clone(),
            jrx,
            leftovers,
        );
        let janitor = std::thread::Builder::new()
            .name(format!("tapline-rec-{}-j", settings.name))
            .spawn(move || janitor.run())
            .map_err(thread_err)?;
        let writer =
            writer::Writer::new(settings.clone(), shared.clone(), counters.clone(), rx, jtx);
        let writer = match std::thread::Builder::new()
            .name(format!("tapline-rec-{}", settings.name))
            .spawn(move || writer.run())
        {
            Ok(w) => w,
            Err(e) => {
                // The writer (and the janitor's sender) is gone: the
                // janitor sees its channel closed.
                shared.closed.store(true, Ordering::Relaxed);
                let _ = janitor.join();
                return Err(thread_err(e));
            }
        };
        tracing::info!(
            recorder = %settings.name,
            dir = %settings.dir.display(),
            block_bytes,
            blocks,
            "recorder {} started",
            settings.name
        );
        Ok(Recorder {
            shared,
            tx,
            counters,
            settings,
            writer: Some(writer),
            janitor: Some(janitor),
        })
    }

    /// A producer for one capture task. Give the queue at least two blocks
    /// per producer ([`Recorder::blocks`]): a producer holds one while it
    /// fills it; a warning is logged once when there are fewer.
    pub fn producer(&self) -> RecordProducer {
        let p = RecordProducer::new(self.shared.clone(), self.tx.clone(), self.counters.clone());
        let n = self.shared.producers.load(Ordering::Relaxed);
        if 2 * n > self.shared.blocks
            && !self.shared.warned_few_blocks.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                recorder = %self.shared.name,
                producers = n,
                blocks = self.shared.blocks,
                "recorder {}: {n} capture tasks share {} queue blocks; raise queue_bytes to at least {} bytes to avoid queue drops",
                self.shared.name,
                self.shared.blocks,
                2 * n * self.shared.block_bytes
            );
        }
        p
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn settings(&self) -> &RecordSettings {
        &self.settings
    }

    /// Bytes per queue block.
    pub fn block_bytes(&self) -> usize {
        self.shared.block_bytes
    }

    /// Blocks in the queue.
    pub fn blocks(&self) -> usize {
        self.shared.blocks
    }

    /// The `.part` file being written now, if any.
    pub fn current_file(&self) -> Option<PathBuf> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the writer: everything queued is written, the current file is
    /// completed under its final name. Flush or drop the producers first:
    /// what they hand over after `stop` is discarded, and `record` then
    /// drops packets without counting them. The janitor stops without a
    /// last pass (a file completed now is migrated at the next start).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        self.shared.closed.store(true, Ordering::Relaxed);
        #[cfg(test)]
        self.shared.paused.store(false, Ordering::Relaxed);
        // Blocks at most until the writer takes a message: the channel
        // has room for every block plus this one.
        let _ = self.tx.send(Msg::Stop);
        for (what, h) in [("writer", Some(writer)), ("janitor", self.janitor.take())] {
            if let Some(h) = h {
                if h.join().is_err() {
                    tracing::error!(
                        recorder = %self.settings.name,
                        "recorder {}: the {what} thread panicked",
                        self.settings.name
                    );
                }
            }
        }
        tracing::info!(recorder = %self.settings.name, "recorder {} stopped", self.settings.name);
    }

    #[cfg(test)]
    fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
