//! The file operations of the recorder's threads, each returning a
//! [`DiskError`] that names the operation and the path; and a directory
//! listing of one recorder's files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::naming::{self, FileKey, Kind};

/// A failed file operation: what, on which path, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub(crate) struct DiskError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Wraps an `io::Result` into a [`DiskError`] for `op` on `path`.
pub(super) trait Context<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, DiskError>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, DiskError> {
        self.map_err(|source| DiskError {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes all of `buf`, counting what reached the file: on failure, the
/// number of bytes written before the error (a short write followed by
/// ENOSPC leaves part of `buf` in the file).
pub(super) fn write_counted(out: &mut impl Write, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match out.write(&buf[done..]) {
            Ok(0) => {
                return Err((
                    done,
                    io::Error::new(io::ErrorKind::WriteZero, "the file took no bytes"),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Flushes a directory's entries (a rename inside it) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("syncing directory", dir)
}

/// One of a recorder's files in a directory.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub kind: Kind,
    pub key: FileKey,
    pub path: PathBuf,
    pub file_name: String,
    pub len: u64,
    pub modified: SystemTime,
}

/// `recorder`'s files in `dir`, oldest first. A missing directory is empty.
/// Entries that vanish while listing (another thread deleted or moved
/// them) are left out.
pub(super) fn list(dir: &Path, recorder: &str) -> Result<Vec<Entry>, DiskError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("listing", dir),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx("listing", dir)?;
        let file_name = ent.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some((kind, key)) = naming::classify(recorder, file_name) else {
            continue;
        };
        let path = ent.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("reading metadata of", &path),
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Entry {
            kind,
            key,
            file_name: file_name.to_string(),
            path,
            len: meta.len(),
            // No mtime (not on Linux filesystems): young, so age never
            // deletes it.
            modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        });
    }
    out.sort_by_key(|e| e.key);
    Ok(out)
}
