//! Startup recovery: a `.NAME-*.pcap.part` file left by a run that crashed
//! (or lost its disk at stop) is cut back to its last whole record and
//! renamed to its final name, so it stays a valid pcap and retention sees
//! it. A leftover without a single whole record is deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use super::disk::{Context, DiskError};
use super::naming;
use tapline_packet::pcap::{self, FILE_HEADER_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN};

/// What recovering one leftover did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recovered {
    /// Renamed to `path` with `packets` whole records; `cut_bytes` of a
    /// partial last record were cut off.
    Completed {
        path: PathBuf,
        packets: u64,
        cut_bytes: u64,
    },
    /// Deleted: no file header or no whole record.
    Deleted,
}

/// The length of the longest prefix of `file` made of our pcap file header
/// (little-endian, nanoseconds, as the writer writes it) and whole records,
/// and how many records it holds; `None` when even the header is missing or
/// foreign.
pub(super) fn whole_records(file: &File, len: u64) -> io::Result<Option<(u64, u64)>> {
    let mut r = BufReader::new(file);
    r.rewind()?;
    let mut h = [0u8; FILE_HEADER_LEN];
    if len < FILE_HEADER_LEN as u64 {
        return Ok(None);
    }
    r.read_exact(&mut h)?;
    if h[0..4] != pcap::MAGIC_NS.to_le_bytes() {
        return Ok(None);
    }
    let mut pos = FILE_HEADER_LEN as u64;
    let mut packets = 0;
    let mut rh = [0u8; RECORD_HEADER_LEN];
    while pos + RECORD_HEADER_LEN as u64 <= len {
        r.read_exact(&mut rh)?;
        let incl = pcap::record_incl_len(&rh).unwrap_or(u32::MAX);
        let end = pos + (RECORD_HEADER_LEN as u64) + u64::from(incl);
        if incl > MAX_RECORD_LEN || end > len {
            break;
        }
        r.seek_relative(i64::from(incl))?;
        pos = end;
        packets += 1;
    }
    Ok(Some((pos, packets)))
}

/// Recovers the leftover `part` (a `.part` name of `recorder` in `dir`).
pub(super) fn recover_part(
    dir: &Path,
    recorder: &str,
    part: &Path,
    file_name: &str,
) -> Result<Recovered, DiskError> {
    let Some(final_name) = naming::final_of(recorder, file_name) else {
        return Ok(Recovered::Deleted);
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
        .ctx("opening leftover", part)?;
    let len = f.metadata().ctx("reading metadata of", part)?.len();
    let whole = whole_records(&f, len).ctx("reading leftover", part)?;
    match whole {
        Some((keep, packets)) if packets > 0 => {
            if keep < len {
                f.set_len(keep).ctx("truncating leftover", part)?;
            }
            f.sync_all().ctx("syncing leftover", part)?;
            drop(f);
            let path = dir.join(final_name);
            fs::rename(part, &path).ctx("renaming leftover", part)?;
            Ok(Recovered::Completed {
                path,
                packets,
                cut_bytes: len - keep,
            })
        }
        _ => {
            drop(f);
            fs::remove_file(part).ctx("deleting empty leftover", part)?;
            Ok(Recovered::Deleted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapline_packet::pcap::PcapWriter;

    #[test]
    fn whole_records_stops_at_the_first_partial_or_absurd_record() {
        let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
        w.write(1, 10, &[1; 10]).unwrap();
        w.write(2, 20, &[2; 20]).unwrap();
        let good = w.into_inner();
        let dir = std::env::temp_dir().join(format!("tapline-recover-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let check = |bytes: &[u8]| {
            fs::write(&p, bytes).unwrap();
            let f = File::open(&p).unwrap();
            whole_records(&f, bytes.len() as u64).unwrap()
        };
        assert_eq!(check(&good), Some((good.len() as u64, 2)));
        for cut in 0..good.len() {
            let want = if cut < FILE_HEADER_LEN {
                None
            } else if cut < FILE_HEADER_LEN + 26 {
                Some((FILE_HEADER_LEN as u64, 0))
            } else {
                Some((FILE_HEADER_LEN as u64 + 26, 1))
            };
            assert_eq!(check(&good[..cut]), want, "cut at {cut}");
        }
        let mut absurd = good.clone();
        absurd.extend([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        absurd.extend([0u8; 64]);
        assert_eq!(check(&absurd), Some((good.len() as u64, 2)));
        let mut foreign = good.clone();
        foreign[0] ^= 1;
        assert_eq!(check(&foreign), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
