//! The janitor thread (`tapline-rec-NAME-j`): recovers leftovers of a
//! crashed run, moves completed files to the bulk directory and applies
//! retention, after each completed file and about once a second. It runs
//! beside the writer so that a slow copy to the bulk directory never stalls
//! writing.
//!
//! Retention, per directory and independently: this recorder's completed
//! files are deleted oldest first (by the time and sequence number in their
//! names) while the recorder's files in the directory (completed, being
//! written, being copied) take more than the byte limit, and any completed
//! file whose modification time (when its last packet was written) is older
//! than the age limit is deleted. Migration keeps the modification time, so
//! a file's age does not restart in the bulk directory. The file being
//! written (`.part`), copies in progress and files that are not this
//! recorder's are never deleted.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam::channel::{Receiver, RecvTimeoutError};

use super::disk::{self, Context, DiskError, Entry};
use super::naming::{self, Kind};
use super::recover::{self, Recovered};
use super::Shared;
use tapline_config::record::RecordSettings;
use tapline_segment::{RecorderCounters, Slot};

/// Passes are at most this far apart.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// Bytes copied per read when migrating across filesystems.
const COPY_CHUNK: usize = 1 << 20;

pub(super) struct Janitor {
    settings: RecordSettings,
    shared: Arc<Shared>,
    counters: Slot<RecorderCounters>,
    /// One message per completed file (coalesced); disconnected when the
    /// writer ends.
    rx: Receiver<()>,
    /// `.part` files found at start, from an earlier run.
    leftovers: Vec<(PathBuf, String)>,
    /// An error incident is under way (it was logged).
    incident: bool,
}

/// How moving one file ended.
#[derive(Debug, PartialEq, Eq)]
enum Moved {
    Done,
    /// The recorder is stopping: the copy was abandoned (the source stays).
    Aborted,
}

impl Janitor {
    pub(super) fn new(
        settings: RecordSettings,
        shared: Arc<Shared>,
        counters: Slot<RecorderCounters>,
        rx: Receiver<()>,
        leftovers: Vec<(PathBuf, String)>,
    ) -> Janitor {
        Janitor {
            settings,
            shared,
            counters,
            rx,
            leftovers,
            incident: false,
        }
    }

    fn stopping(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    pub(super) fn run(mut self) {
        let mut errors = Vec::new();
        self.recover_leftovers(&mut errors);
        self.report(errors);
        while !self.stopping() {
            let mut errors = Vec::new();
            self.pass(&mut errors);
            self.report(errors);
            match self.rx.recv_timeout(INTERVAL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Completes `.part` files of a crashed run; deletes copies to the
    /// bulk directory that a crash interrupted (their source is still in
    /// the fast directory).
    fn recover_leftovers(&mut self, errors: &mut Vec<DiskError>) {
        let name = self.settings.name.clone();
        for (path, file_name) in std::mem::take(&mut self.leftovers) {
            match recover::recover_part(&self.settings.dir, &name, &path, &file_name) {
                Ok(Recovered::Completed {
                    path: done,
                    packets,
                    cut_bytes,
                }) => tracing::info!(
                    recorder = %name,
                    path = %done.display(),
                    packets,
                    cut_bytes,
                    "recorder {name}: completed {file_name} left by an earlier run"
                ),
                Ok(Recovered::Deleted) => tracing::info!(
                    recorder = %name,
                    path = %path.display(),
                    "recorder {name}: deleted {file_name} left by an earlier run (no whole packet)"
                ),
                Err(e) => errors.push(e),
            }
        }
        if let Some(bulk) = &self.settings.bulk_dir {
            match disk::list(bulk, &name) {
                Ok(entries) => {
                    for e in entries.iter().filter(|e| e.kind == Kind::Migrating) {
                        if let Err(err) = fs::remove_file(&e.path).ctx("deleting", &e.path) {
                            errors.push(err);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }

    fn pass(&mut self, errors: &mut Vec<DiskError>) {
        let s = &self.settings;
        if let Some(bulk) = &s.bulk_dir {
            if let Err(e) = self.migrate(bulk) {
                errors.push(e);
            }
        }
        if let Err(e) = self.retain(&s.dir, s.retain_bytes, s.retain_age) {
            errors.push(e);
        }
        if let Some(bulk) = &s.bulk_dir {
            if let Err(e) = self.retain(bulk, s.bulk_retain_bytes, s.bulk_retain_age) {
                errors.push(e);
            }
        }
    }

    /// Counts errors; logs the first of an incident, and its end.
    fn report(&mut self, errors: Vec<DiskError>) {
        let name = &self.settings.name;
        if errors.is_empty() {
            if self.incident {
                self.incident = false;
                tracing::info!(recorder = %name, "recorder {name}: migration and retention work again");
            }
            return;
        }
        for e in &errors {
            self.shared.disk_error(&self.counters, &e.to_string());
        }
        if !self.incident {
            self.incident = true;
            let e = &errors[0];
            tracing::warn!(
                recorder = %name,
                path = %e.path.display(),
                error = %e.source,
                "recorder {name}: {e}: migration or retention failed; retrying every second"
            );
        }
    }

    /// Moves completed files, oldest first, to the bulk directory; stops
    /// at the first error (the rest waits for the next pass).
    fn migrate(&self, bulk: &Path) -> Result<(), DiskError> {
        let entries = disk::list(&self.settings.dir, &self.settings.name)?;
        let mut finals = entries.iter().filter(|e| e.kind == Kind::Final).peekable();
        if finals.peek().is_none() {
            return Ok(());
        }
        fs::create_dir_all(bulk).ctx("creating", bulk)?;
        for e in finals {
            if self.stopping() {
                break;
            }
            if self.move_one(e, bulk)? == Moved::Aborted {
                break;
            }
            self.counters.files_migrated.add(1);
        }
        Ok(())
    }

    /// rename(2) when both directories are on one filesystem; across
    /// filesystems (EXDEV), a copy.
    fn move_one(&self, e: &Entry, bulk: &Path) -> Result<Moved, DiskError> {
        let dst = bulk.join(&e.file_name);
        match fs::rename(&e.path, &dst) {
            Ok(()) => Ok(Moved::Done),
            Err(err) if err.raw_os_error() == Some(libc::EXDEV) => self.copy_across(e, bulk, &dst),
            Err(err) => Err(err).ctx("moving", &e.path),
        }
    }

    /// Copies `e` to `.NAME.migrating` in `bulk`, syncs it, keeps the
    /// modification time, renames it to `dst` and deletes the source: the
    /// file exists whole under a final name at every moment.
    fn copy_across(&self, e: &Entry, bulk: &Path, dst: &Path) -> Result<Moved, DiskError> {
        let tmp = bulk.join(naming::migrating_name(&e.file_name));
        let res = self.copy_to(&e.path, &tmp, e.modified);
        match res {
            Ok(Moved::Done) => {}
            other => {
                let _ = fs::remove_file(&tmp);
                return other;
            }
        }
        if let Err(err) = fs::rename(&tmp, dst).ctx("renaming", &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
        disk::sync_dir(bulk)?;
        fs::remove_file(&e.path).ctx("deleting migrated", &e.path)?;
        Ok(Moved::Done)
    }

    fn copy_to(&self, src: &Path, tmp: &Path, modified: SystemTime) -> Result<Moved, DiskError> {
        let mut from = File::open(src).ctx("opening", src)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(super::FILE_MODE)
            .open(tmp)
            .ctx("creating", tmp)?;
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            if self.stopping() {
                return Ok(Moved::Aborted);
            }
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx("reading", src),
            };
            to.write_all(&buf[..n]).ctx("writing", tmp)?;
        }
        to.sync_all().ctx("syncing", tmp)?;
        to.set_modified(modified)
            .ctx("setting the modification time of", tmp)?;
        Ok(Moved::Done)
    }

    /// Retention in one directory (see the module doc).
    fn retain(
        &self,
        dir: &Path,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
    ) -> Result<(), DiskError> {
        if max_bytes.is_none() && max_age.is_none() {
            return Ok(());
        }
        let entries = disk::list(dir, &self.settings.name)?;
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        let now = SystemTime::now();
        for e in entries.iter().filter(|e| e.kind == Kind::Final) {
            if self.stopping() {
                break;
            }
            let too_big = max_bytes.is_some_and(|b| total > b);
            let too_old =
                max_age.is_some_and(|a| now.duration_since(e.modified).is_ok_and(|age| age > a));
            if !(too_big || too_old) {
                continue;
            }
            match fs::remove_file(&e.path) {
                Ok(()) => self.counters.files_deleted.add(1),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).ctx("deleting", &e.path),
            }
            total -= e.len;
        }
        Ok(())
    }
}
