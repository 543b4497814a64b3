//! The writer thread (`tapline-rec-NAME`): blocks of records from the
//! producers into `.NAME-<time>-<seq>.pcap.part`, renamed to
//! `NAME-<time>-<seq>.pcap` when complete; rotation by size (exact, at
//! record boundaries) and by time; and suspension on disk errors.
//!
//! Disk errors never reach the capture side. On the first failed operation
//! the writer counts it, logs one warning, cuts the file back to its last
//! whole record and suspends: blocks that arrive are counted as
//! `disk_dropped_packets` and go straight back to the free list, so the
//! producers see no queue-full drops because of the disk. About once a
//! second it retries: it completes (or, with no packet in it, deletes) the
//! file it was writing and opens a fresh one; when that works it logs one
//! "recording resumed" line. Errors while suspended are counted, not
//! logged.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::disk::{self, Context, DiskError};
use super::naming::{self, FileKey};
use super::{Msg, Shared};
use tapline_config::record::RecordSettings;
use tapline_packet::pcap::{self, FILE_HEADER_LEN, RECORD_HEADER_LEN};
use tapline_segment::{RecorderCounters, Slot};

/// The writer wakes at least this often (time rotation, retries).
pub const TICK: Duration = Duration::from_millis(100);
/// Retries of a suspended writer are this far apart.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The file being written.
#[derive(Debug)]
struct OpenFile {
    file: File,
    part: PathBuf,
    final_path: PathBuf,
    /// Bytes of whole records (and the file header) in the file: where a
    /// failed write is cut back to.
    len: u64,
    packets: u64,
    /// A failed write left bytes past `len` that could not be cut yet.
    dirty_tail: bool,
    first_packet_at: Option<Instant>,
}

/// A disk error incident: recording is suspended.
#[derive(Debug)]
struct Suspension {
    since: Instant,
    next_retry: Instant,
    dropped_packets: u64,
    errors: u64,
}

pub(super) struct Writer {
    settings: RecordSettings,
    shared: Arc<Shared>,
    counters: Slot<RecorderCounters>,
    rx: Receiver<Msg>,
    /// Wakes the janitor after each completed file (coalesced: capacity 1).
    janitor: Sender<()>,
    /// Sequence number of the next file.
    seq: u64,
    file: Option<OpenFile>,
    suspended: Option<Suspension>,
    last_tick: Instant,
}

/// The length of the record at the start of `rest` (header included), or
/// `None` if `rest` does not hold a whole one (cannot happen with blocks
/// from [`super::RecordProducer`]).
#[inline]
fn record_len(rest: &[u8]) -> Option<usize> {
    let incl = pcap::record_incl_len(rest)? as usize;
    let n = RECORD_HEADER_LEN + incl;
    (n <= rest.len()).then_some(n)
}

/// Records in `block`.
fn count_records(block: &[u8]) -> u64 {
    let mut off = 0;
    let mut n = 0;
    while let Some(len) = record_len(&block[off..]) {
        off += len;
        n += 1;
    }
    n
}

impl Writer {
    pub(super) fn new(
        settings: RecordSettings,
        shared: Arc<Shared>,
        counters: Slot<RecorderCounters>,
        rx: Receiver<Msg>,
        janitor: Sender<()>,
    ) -> Writer {
        Writer {
            settings,
            shared,
            counters,
            rx,
            janitor,
            seq: 1,
            file: None,
            suspended: None,
            last_tick: Instant::now(),
        }
    }

    /// The thread's body: until [`Msg::Stop`].
    pub(super) fn run(mut self) {
        if let Err(e) = fs::create_dir_all(&self.settings.dir).ctx("creating", &self.settings.dir) {
            self.failed(&e);
        }
        loop {
            match self.rx.recv_timeout(TICK) {
                Ok(Msg::Block(b)) => {
                    // Test hook: hold this block (and take no other) while
                    // paused.
                    #[cfg(test)]
                    while self
                        .shared
                        .paused
                        .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    self.block(b)
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now.duration_since(self.last_tick) >= TICK {
                self.last_tick = now;
                self.tick(now);
            }
        }
        // Blocks producers sent before they saw the stop flag.
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Block(b)) => self.block(b),
                Ok(Msg::Stop) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.finish();
    }

    /// Writes one block and returns it to the free list.
    fn block(&mut self, mut block: Vec<u8>) {
        self.write_block(&block);
        block.clear();
        // Never full: the free list holds every block there is.
        let _ = self.shared.free.push(block);
    }

    fn write_block(&mut self, block: &[u8]) {
        if let Some(s) = &mut self.suspended {
            let n = count_records(block);
            s.dropped_packets += n;
            self.counters.disk_dropped_packets.add(n);
            return;
        }
        let rotate_bytes = self.settings.rotate_bytes;
        let mut off = 0;
        while off < block.len() {
            let Some(first) = record_len(&block[off..]) else {
                break;
            };
            // Rotation by size: complete the file if the next record would
            // take it past rotate_bytes (unless it holds no record yet).
            if let Some(f) = &self.file {
                if f.packets > 0 && f.len + first as u64 > rotate_bytes {
                    if let Err(e) = self.complete() {
                        self.failed(&e);
                        self.drop_rest(&block[off..]);
                        return;
                    }
                }
            }
            if self.file.is_none() {
                if let Err(e) = self.open() {
                    self.failed(&e);
                    self.drop_rest(&block[off..]);
                    return;
                }
            }
            let Some(f) = self.file.as_mut() else {
                return;
            };
            // The longest run of records that fits in this file.
            let mut end = off;
            let mut n = 0u64;
            let mut len = f.len;
            while let Some(rl) = record_len(&block[end..]) {
                if (f.packets + n) > 0 && len + rl as u64 > rotate_bytes {
                    break;
                }
                end += rl;
                len += rl as u64;
                n += 1;
            }
            let run = &block[off..end];
            match disk::write_counted(&mut f.file, run) {
                Ok(()) => {
                    f.len = len;
                    f.packets += n;
                    f.first_packet_at.get_or_insert_with(Instant::now);
                    self.counters.bytes_written.add(run.len() as u64);
                    self.counters.packets_written.add(n);
                    off = end;
                }
                Err((written, source)) => {
                    // Keep the whole records that reached the file.
                    let mut whole = 0;
                    let mut k = 0u64;
                    while let Some(rl) = record_len(&run[whole..]) {
                        if whole + rl > written {
                            break;
                        }
                        whole += rl;
                        k += 1;
                    }
                    f.len += whole as u64;
                    f.packets += k;
                    if k > 0 {
                        f.first_packet_at.get_or_insert_with(Instant::now);
                    }
                    self.counters.bytes_written.add(whole as u64);
                    self.counters.packets_written.add(k);
                    f.dirty_tail = written > whole;
                    let e = DiskError {
                        op: "writing",
                        path: f.part.clone(),
                        source,
                    };
                    self.cut_tail();
                    self.failed(&e);
                    self.drop_rest(&block[off + whole..]);
                    return;
                }
            }
        }
    }

    /// Counts the records of `rest` as lost to the disk.
    fn drop_rest(&mut self, rest: &[u8]) {
        let n = count_records(rest);
        self.counters.disk_dropped_packets.add(n);
        if let Some(s) = &mut self.suspended {
            s.dropped_packets += n;
        }
    }

    /// Cuts a failed write back to the last whole record, so the file
    /// stays a valid pcap. Best effort: failing (EIO, EROFS) leaves
    /// `dirty_tail` set for the retry (or for startup recovery).
    fn cut_tail(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if !f.dirty_tail {
            return;
        }
        if f.file.set_len(f.len).is_ok() && f.file.seek(SeekFrom::Start(f.len)).is_ok() {
            f.dirty_tail = false;
        }
    }

    /// Opens a fresh `.part` file and writes its file header.
    fn open(&mut self) -> Result<(), DiskError> {
        let dir = &self.settings.dir;
        fs::create_dir_all(dir).ctx("creating", dir)?;
        let key = FileKey {
            unix_ns: naming::now_unix_ns(),
            seq: self.seq,
        };
        let final_name = naming::final_name(&self.settings.name, key);
        let part = dir.join(naming::part_name(&final_name));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(super::FILE_MODE)
            .open(&part)
            .ctx("creating", &part)?;
        let header = pcap::file_header_bytes(self.shared.snaplen);
        if let Err((_, source)) = disk::write_counted(&mut file, &header) {
            drop(file);
            // A file without its header is worth nothing.
            let _ = fs::remove_file(&part);
            return Err(DiskError {
                op: "writing",
                path: part,
                source,
            });
        }
        self.seq += 1;
        self.counters.files_created.add(1);
        self.counters.bytes_written.add(FILE_HEADER_LEN as u64);
        self.shared.set_current(&self.counters, Some(&part));
        self.file = Some(OpenFile {
            file,
            part,
            final_path: dir.join(final_name),
            len: FILE_HEADER_LEN as u64,
            packets: 0,
            dirty_tail: false,
            first_packet_at: None,
        });
        Ok(())
    }

    /// Completes the current file: cut, (fsync,) close, rename to the final
    /// name; a file with no packet is deleted instead. On failure the file
    /// stays current, for a retry.
    fn complete(&mut self) -> Result<(), DiskError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if f.dirty_tail {
            f.file.set_len(f.len).ctx("truncating", &f.part)?;
            f.dirty_tail = false;
        }
        if f.packets == 0 {
            fs::remove_file(&f.part).ctx("deleting empty", &f.part)?;
            self.file = None;
            self.shared.set_current(&self.counters, None);
            return Ok(());
        }
        if self.settings.fsync {
            f.file.sync_all().ctx("syncing", &f.part)?;
        }
        fs::rename(&f.part, &f.final_path).ctx("renaming", &f.part)?;
        if self.settings.fsync {
            disk::sync_dir(&self.settings.dir)?;
        }
        self.file = None;
        self.counters.files_completed.add(1);
        self.shared.set_current(&self.counters, None);
        let _ = self.janitor.try_send(());
        Ok(())
    }

    /// Counts a failed operation; the first of an incident suspends
    /// recording and logs one warning.
    fn failed(&mut self, e: &DiskError) {
        self.shared.disk_error(&self.counters, &e.to_string());
        match &mut self.suspended {
            Some(s) => s.errors += 1,
            None => {
                tracing::warn!(
                    recorder = %self.settings.name,
                    path = %e.path.display(),
                    error = %e.source,
                    "recorder {}: {e}: recording suspended; packets are dropped until the disk accepts writes again",
                    self.settings.name
                );
                let now = Instant::now();
                self.suspended = Some(Suspension {
                    since: now,
                    next_retry: now + RETRY_INTERVAL,
                    dropped_packets: 0,
                    errors: 1,
                });
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if let Some(s) = &mut self.suspended {
            if now >= s.next_retry {
                s.next_retry = now + RETRY_INTERVAL;
                self.retry();
            }
            return;
        }
        let Some(interval) = self.settings.rotate_interval else {
            return;
        };
        // Rotation by time: only a file with packets (no empty files).
        let due = self
            .file
            .as_ref()
            .and_then(|f| f.first_packet_at)
            .is_some_and(|t| now.duration_since(t) >= interval);
        if due {
            if let Err(e) = self.complete() {
                self.failed(&e);
            }
        }
    }

    /// A suspended writer's retry: settle the old file, open a new one.
    fn retry(&mut self) {
        if let Err(e) = self.complete().and_then(|()| self.open()) {
            self.failed(&e);
            return;
        }
        if let Some(s) = self.suspended.take() {
            tracing::info!(
                recorder = %self.settings.name,
                dropped_packets = s.dropped_packets,
                errors = s.errors,
                suspended_ms = s.since.elapsed().as_millis() as u64,
                "recorder {}: recording resumed after {} dropped packets",
                self.settings.name,
                s.dropped_packets
            );
        }
    }

    /// At stop: completes the current file (deletes it without packets).
    fn finish(&mut self) {
        if let Err(e) = self.complete() {
            // Left as .part: the next start recovers it.
            self.failed(&e);
        }
        self.shared.set_current(&self.counters, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_walked_by_their_headers() {
        let mut b = Vec::new();
        pcap::record(1, 3, &[1, 2, 3], &mut b);
        pcap::record(2, 0, &[], &mut b);
        pcap::record(3, 100, &[7; 50], &mut b);
        assert_eq!(count_records(&b), 3);
        assert_eq!(record_len(&b), Some(19));
        assert_eq!(record_len(&b[19..]), Some(16));
        assert_eq!(record_len(&b[35..]), Some(66));
        assert_eq!(record_len(&b[101..]), None);
        // A cut block: the partial record does not count.
        assert_eq!(count_records(&b[..100]), 2);
    }
}
