//! The recorder end to end, without privileges: files in temporary
//! directories, read back with `pcap::read_file` and compared byte for byte.
//! Disk-full and read-only filesystems need root: `tests/record_disk.rs`.

use std::fs;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use super::naming::{FileKey, Kind};
use super::*;
use tapline_config::record::{
    DEFAULT_QUEUE_BYTES, DEFAULT_ROTATE_BYTES, MAX_QUEUE_BYTES, MAX_SNAPLEN, MIN_INTERVAL,
    MIN_QUEUE_BYTES,
};
use tapline_packet::pcap::{self, read_file, PcapReader, PcapRecord, PcapWriter};
use tapline_segment::RecorderSnapshot;
use tapline_segment::{Layout, StatsSegment};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A unique directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tapline-rec-{}-{tag}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn segment() -> Arc<StatsSegment> {
    StatsSegment::in_memory_with(&Layout {
        max_recorders: 1,
        ..Layout::default()
    })
}

fn snap(seg: &StatsSegment) -> RecorderSnapshot {
    seg.snapshot().recorders[0].clone()
}

/// Small files, no time rotation, a 4 MiB queue.
fn settings(name: &str, dir: &Path) -> RecordSettings {
    RecordSettings {
        rotate_bytes: 1 << 20,
        rotate_interval: None,
        queue_bytes: 4 << 20,
        ..RecordSettings::new(name, dir)
    }
}

/// 2026-11-22T10:15:02Z.
const T0: u64 = 1_795_342_502_000_000_000;

/// Packet `i`'s timestamp: 1 µs apart (all within one block's age).
fn ts(i: u32) -> u64 {
    T0 + u64::from(i) * 1_000
}

/// Frame `i` of `len` bytes: `i` in the first four bytes, then a pattern.
fn frame(i: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|k| (k as u32).wrapping_add(i) as u8).collect();
    let n = len.min(4);
    f[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    f
}

fn expected(i: u32, len: usize, snaplen: usize) -> PcapRecord {
    let f = frame(i, len);
    PcapRecord {
        ts_unix_ns: ts(i),
        orig_len: len as u32,
        data: f[..len.min(snaplen)].to_vec(),
    }
}

fn files(dir: &Path, name: &str, kind: Kind) -> Vec<(FileKey, PathBuf)> {
    disk::list(dir, name)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.key, e.path))
        .collect()
}

fn finals(dir: &Path, name: &str) -> Vec<PathBuf> {
    files(dir, name, Kind::Final)
        .into_iter()
        .map(|f| f.1)
        .collect()
}

fn read_all(paths: &[PathBuf]) -> Vec<PcapRecord> {
    paths
        .iter()
        .flat_map(|p| read_file(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Waits up to `secs` seconds for `cond`, or fails naming `what`.
fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn records_read_back_byte_for_byte_with_timestamps_orig_len_and_snaplen() {
    let d = TempDir::new("bytes");
    let seg = segment();
    let s = RecordSettings {
        snaplen: 200,
        ..settings("bytes", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    assert_eq!(snap(&seg).name, "bytes");
    let mut p = rec.producer();
    let len = |i: u32| 60 + (i as usize * 37) % 1455;
    for i in 0..500 {
        assert!(p.record(ts(i), &frame(i, len(i))));
    }
    p.flush();
    rec.stop();
    let f = finals(d.path(), "bytes");
    assert_eq!(f.len(), 1);
    let r = PcapReader::new(fs::File::open(&f[0]).unwrap()).unwrap();
    assert_eq!((r.snaplen, r.linktype, r.nanos), (200, 1, true));
    let want: Vec<_> = (0..500).map(|i| expected(i, len(i), 200)).collect();
    assert_eq!(read_all(&f), want);
    let c = snap(&seg);
    assert_eq!(
        (c.files_created, c.files_completed, c.packets_written),
        (1, 1, 500)
    );
    assert_eq!(c.bytes_written, file_len(&f[0]));
    assert_eq!((c.queue_dropped_packets, c.disk_errors), (0, 0));
    assert_eq!(c.current_file, "");
    assert!(files(d.path(), "bytes", Kind::Part).is_empty());
    drop(p);
}

#[test]
fn producers_on_threads_keep_their_order_and_whole_packets_are_kept() {
    let d = TempDir::new("threads");
    let seg = segment();
    let rec = Recorder::start(settings("threads", d.path()), seg.recorder_slot(0)).unwrap();
    const N: u32 = 3000;
    let handles: Vec<_> = (0..2u32)
        .map(|t| {
            let mut p = rec.producer();
            std::thread::spawn(move || {
                let mut refused = 0u64;
                for i in 0..N {
                    let id = t * N + i;
                    // Until accepted: a full queue refuses (and counts).
                    while !p.record(ts(id), &frame(id, 64 + (i as usize % 1400))) {
                        refused += 1;
                        std::thread::yield_now();
                    }
                    if i % 64 == 0 {
                        p.flush();
                    }
                }
                // Dropping the producer hands over its last block.
                refused
            })
        })
        .collect();
    let refused: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    rec.stop();
    let f = finals(d.path(), "threads");
    let r = PcapReader::new(fs::File::open(&f[0]).unwrap()).unwrap();
    assert_eq!(r.snaplen, MAX_SNAPLEN);
    let all = read_all(&f);
    assert_eq!(all.len(), 2 * N as usize);
    for t in 0..2u32 {
        let mine: Vec<_> = all
            .iter()
            .filter(|r| u32::from_le_bytes(r.data[..4].try_into().unwrap()) / N == t)
            .cloned()
            .collect();
        let want: Vec<_> = (0..N)
            .map(|i| expected(t * N + i, 64 + (i as usize % 1400), usize::MAX))
            .collect();
        assert_eq!(mine, want, "producer {t}");
    }
    assert_eq!(snap(&seg).queue_dropped_packets, refused);
}

#[test]
fn rotation_by_size_is_exact_at_record_boundaries() {
    let d = TempDir::new("size");
    let seg = segment();
    let s = RecordSettings {
        rotate_bytes: 10_000,
        ..settings("size", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    for i in 0..50 {
        assert!(p.record(ts(i), &frame(i, 1000)));
    }
    // Varied sizes, in several blocks.
    let len = |i: u32| 1 + (i as usize * 211) % 3000;
    for i in 50..400 {
        assert!(p.record(ts(i), &frame(i, len(i))));
        if i % 50 == 0 {
            p.flush();
        }
    }
    p.flush();
    rec.stop();
    let f = finals(d.path(), "size");
    // 24 + 9 * 1016 = 9168; a tenth record would make 10184.
    for file in &f[..5] {
        assert_eq!(file_len(file), 9168);
        assert_eq!(read_file(file).unwrap().len(), 9);
    }
    let recs: Vec<Vec<PcapRecord>> = f.iter().map(|p| read_file(p).unwrap()).collect();
    for (k, file) in f.iter().enumerate() {
        let n = file_len(file);
        assert!(n <= 10_000, "{}: {n} bytes", file.display());
        assert!(!recs[k].is_empty(), "empty file {}", file.display());
        if let Some(next) = recs.get(k + 1) {
            // The next file's first record would not have fitted.
            assert!(n + 16 + next[0].data.len() as u64 > 10_000);
        }
    }
    let want: Vec<_> = (0..50)
        .map(|i| expected(i, 1000, usize::MAX))
        .chain((50..400).map(|i| expected(i, len(i), usize::MAX)))
        .collect();
    assert_eq!(recs.concat(), want);
    let c = snap(&seg);
    assert_eq!(
        (c.files_created, c.files_completed),
        (f.len() as u64, f.len() as u64)
    );
    assert_eq!(c.bytes_written, f.iter().map(|p| file_len(p)).sum::<u64>());
}

#[test]
fn a_record_larger_than_rotate_bytes_gets_a_file_of_its_own() {
    let d = TempDir::new("big");
    let seg = segment();
    let s = RecordSettings {
        rotate_bytes: 1024,
        ..settings("big", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    for i in 0..3 {
        assert!(p.record(ts(i), &frame(i, 2000)));
    }
    drop(p);
    rec.stop();
    let f = finals(d.path(), "big");
    assert_eq!(f.len(), 3);
    for (i, file) in f.iter().enumerate() {
        assert_eq!(
            read_file(file).unwrap(),
            vec![expected(i as u32, 2000, usize::MAX)]
        );
    }
}

#[test]
fn rotation_by_time_never_makes_empty_files() {
    let d = TempDir::new("time");
    let seg = segment();
    let s = RecordSettings {
        rotate_interval: Some(Duration::from_secs(1)),
        ..settings("time", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    for i in 0..3 {
        p.record(ts(i), &frame(i, 100));
    }
    p.flush();
    wait_until("a current file", 2, || rec.current_file().is_some());
    wait_until("the first file by time", 3, || {
        snap(&seg).files_completed == 1
    });
    assert_eq!(rec.current_file(), None);
    // Idle for longer than the interval: no new (empty) file.
    std::thread::sleep(Duration::from_millis(1500));
    let c = snap(&seg);
    assert_eq!((c.files_created, c.files_completed), (1, 1));
    assert!(files(d.path(), "time", Kind::Part).is_empty());
    for i in 3..5 {
        p.record(ts(i), &frame(i, 100));
    }
    p.flush();
    rec.stop();
    let f = finals(d.path(), "time");
    let counts: Vec<usize> = f.iter().map(|p| read_file(p).unwrap().len()).collect();
    assert_eq!(counts, [3, 2]);
    let want: Vec<_> = (0..5).map(|i| expected(i, 100, usize::MAX)).collect();
    assert_eq!(read_all(&f), want);
}

#[test]
fn retention_by_bytes_deletes_oldest_first_never_the_current_file() {
    let d = TempDir::new("retain");
    let seg = segment();
    let s = RecordSettings {
        rotate_bytes: 10_000,
        retain_bytes: Some(30_000),
        ..settings("ret", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    // A file of another recorder is not this one's to delete.
    fs::write(
        d.path()
            .join("ret-x-20200101T000000.000000000Z-000001.pcap"),
        [0u8; 50_000],
    )
    .unwrap();
    let mut p = rec.producer();
    for i in 0..100 {
        assert!(p.record(ts(i), &frame(i, 1000)));
    }
    p.flush();
    // 100 packets of 1016 bytes: 11 files of 9, one current file with 1.
    wait_until("11 completed files", 5, || snap(&seg).files_completed == 11);
    // 30000 bytes: the current file (1040) and 3 files of 9168.
    wait_until("8 deleted files", 5, || snap(&seg).files_deleted == 8);
    let kept: Vec<u64> = files(d.path(), "ret", Kind::Final)
        .iter()
        .map(|f| f.0.seq)
        .collect();
    assert_eq!(kept, [9, 10, 11]);
    let part = rec.current_file().expect("a current file");
    assert!(part.exists());
    assert_eq!(files(d.path(), "ret", Kind::Part)[0].0.seq, 12);
    assert!(d
        .path()
        .join("ret-x-20200101T000000.000000000Z-000001.pcap")
        .exists());
    rec.stop();
    drop(p);
    let f = finals(d.path(), "ret");
    let want: Vec<_> = (72..100).map(|i| expected(i, 1000, usize::MAX)).collect();
    assert_eq!(read_all(&f), want);
}

/// Writes a valid pcap of this recorder's name with one record, modified
/// `age` ago.
fn old_file(dir: &Path, name: &str, key: FileKey, age: Duration) -> PathBuf {
    let p = dir.join(naming::final_name(name, key));
    let mut w = PcapWriter::new(fs::File::create(&p).unwrap(), 65535).unwrap();
    w.write(key.unix_ns, 10, &[7; 10]).unwrap();
    let f = w.into_inner();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

#[test]
fn retention_by_age_uses_modification_times_and_spares_others() {
    let d = TempDir::new("age");
    let hour = Duration::from_secs(3600);
    let key = |s: u64, seq| FileKey {
        unix_ns: T0 - s * 1_000_000_000,
        seq,
    };
    let old: Vec<_> = (1..=3)
        .map(|k| old_file(d.path(), "age", key(7200, k), 2 * hour))
        .collect();
    // An old name but written recently: kept (age is the mtime).
    let recent = old_file(d.path(), "age", key(7200, 4), Duration::from_secs(60));
    let other = old_file(d.path(), "age2", key(7200, 1), 2 * hour);
    let foreign = d.path().join("notes.txt");
    fs::write(&foreign, "x").unwrap();
    fs::File::options()
        .write(true)
        .open(&foreign)
        .unwrap()
        .set_modified(SystemTime::now() - 2 * hour)
        .unwrap();
    let seg = segment();
    let s = RecordSettings {
        retain_age: Some(hour),
        ..settings("age", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    p.record(ts(0), &frame(0, 100));
    p.flush();
    wait_until("3 deleted files", 5, || snap(&seg).files_deleted == 3);
    wait_until("a current file", 2, || rec.current_file().is_some());
    for f in &old {
        assert!(!f.exists(), "{} kept", f.display());
    }
    for f in [&recent, &other, &foreign, &rec.current_file().unwrap()] {
        assert!(f.exists(), "{} deleted", f.display());
    }
    rec.stop();
    assert_eq!(snap(&seg).files_deleted, 3);
}

#[test]
fn completed_files_migrate_to_the_bulk_dir_then_bulk_retention_applies() {
    let d = TempDir::new("bulk");
    let fast = d.path().join("fast");
    let bulk = d.path().join("bulk");
    let seg = segment();
    let s = RecordSettings {
        rotate_bytes: 10_000,
        bulk_dir: Some(bulk.clone()),
        bulk_retain_bytes: Some(30_000),
        ..settings("mig", &fast)
    };
    let rec = Recorder::start(s.clone(), seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    for i in 0..100 {
        assert!(p.record(ts(i), &frame(i, 1000)));
    }
    p.flush();
    wait_until("11 migrated files", 5, || snap(&seg).files_migrated == 11);
    // 30000 bytes of 9168-byte files: 3 are kept.
    wait_until("8 deleted files", 5, || snap(&seg).files_deleted == 8);
    assert!(finals(&fast, "mig").is_empty());
    assert_eq!(files(&fast, "mig", Kind::Part).len(), 1);
    let kept: Vec<u64> = files(&bulk, "mig", Kind::Final)
        .iter()
        .map(|f| f.0.seq)
        .collect();
    assert_eq!(kept, [9, 10, 11]);
    drop(p);
    rec.stop();
    // The last file was completed at stop, in the fast directory; the next
    // start migrates it.
    assert_eq!(finals(&fast, "mig").len(), 1);
    let seg2 = segment();
    let rec = Recorder::start(s, seg2.recorder_slot(0)).unwrap();
    wait_until("the last file migrated", 5, || {
        snap(&seg2).files_migrated == 1
    });
    rec.stop();
    assert!(finals(&fast, "mig").is_empty());
    let want: Vec<_> = (72..100).map(|i| expected(i, 1000, usize::MAX)).collect();
    assert_eq!(read_all(&finals(&bulk, "mig")), want);
}

#[test]
fn migration_across_filesystems_copies_then_deletes_and_keeps_mtime() {
    use std::os::unix::fs::MetadataExt;
    // /dev/shm is a tmpfs on Linux: another filesystem than the temp dir
    // (rename(2) fails with EXDEV).
    let shm = Path::new("/dev/shm");
    let d = TempDir::new("exdev");
    assert_ne!(
        fs::metadata(shm)
            .expect("/dev/shm is needed for the cross-filesystem test")
            .dev(),
        fs::metadata(d.path()).unwrap().dev(),
        "/dev/shm and {} are one filesystem: this test needs two",
        d.path().display()
    );
    let bulk = shm.join(format!(
        "tapline-rec-{}-exdev-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _bulk_guard = TempDir(bulk.clone());
    let old = old_file(
        d.path(),
        "x",
        FileKey {
            unix_ns: T0,
            seq: 1,
        },
        Duration::from_secs(600),
    );
    let old_mtime = fs::metadata(&old).unwrap().modified().unwrap();
    let old_bytes = fs::read(&old).unwrap();
    let seg = segment();
    let s = RecordSettings {
        bulk_dir: Some(bulk.clone()),
        ..settings("x", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    wait_until("a migrated file", 5, || snap(&seg).files_migrated == 1);
    rec.stop();
    assert!(!old.exists());
    let moved = bulk.join(old.file_name().unwrap());
    assert_eq!(fs::read(&moved).unwrap(), old_bytes);
    assert_eq!(fs::metadata(&moved).unwrap().modified().unwrap(), old_mtime);
    assert!(files(&bulk, "x", Kind::Migrating).is_empty());
    assert_eq!(snap(&seg).disk_errors, 0);
}

#[test]
fn a_full_queue_drops_and_counts_and_never_blocks() {
    let d = TempDir::new("full");
    let seg = segment();
    let s = RecordSettings {
        queue_bytes: MIN_QUEUE_BYTES,
        ..settings("full", d.path())
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    // Four blocks of one 256 KiB record + header.
    assert_eq!((rec.block_bytes(), rec.blocks()), (262_160, 4));
    rec.pause(true);
    let mut p = rec.producer();
    let mut accepted = 0u32;
    let mut slowest = Duration::ZERO;
    for i in 0..2000 {
        let t = Instant::now();
        let ok = p.record(ts(i), &frame(i, 1500));
        slowest = slowest.max(t.elapsed());
        if ok {
            assert_eq!(accepted, i, "a packet accepted after a drop");
            accepted += 1;
        }
    }
    // 172 records of 1516 bytes per block.
    assert_eq!(accepted, 4 * 172);
    assert!(
        slowest < Duration::from_millis(100),
        "record took {slowest:?}"
    );
    let c = snap(&seg);
    let dropped = u64::from(2000 - accepted);
    assert_eq!(c.queue_dropped_packets, dropped);
    assert_eq!(c.queue_dropped_bytes, dropped * 1500);
    assert_eq!(c.packets_written, 0);
    rec.pause(false);
    // The blocks come back: recording goes on.
    wait_until("the queue drained", 5, || snap(&seg).packets_written == 688);
    for i in 2000..2010 {
        assert!(p.record(ts(i), &frame(i, 1500)));
    }
    p.flush();
    rec.stop();
    let want: Vec<_> = (0..accepted)
        .chain(2000..2010)
        .map(|i| expected(i, 1500, usize::MAX))
        .collect();
    assert_eq!(read_all(&finals(d.path(), "full")), want);
    assert_eq!(snap(&seg).queue_dropped_packets, dropped);
}

#[test]
fn a_block_older_than_its_age_limit_goes_to_disk_without_a_flush() {
    let d = TempDir::new("age-block");
    let seg = segment();
    let rec = Recorder::start(settings("ab", d.path()), seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    p.record(T0, &frame(0, 100));
    p.record(T0 + MAX_BLOCK_AGE_NS / 2, &frame(1, 100));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        snap(&seg).packets_written,
        0,
        "a young block was handed over"
    );
    p.record(T0 + MAX_BLOCK_AGE_NS + 1, &frame(2, 100));
    wait_until("the old block written", 5, || {
        snap(&seg).packets_written == 2
    });
    drop(p);
    rec.stop();
    assert_eq!(snap(&seg).packets_written, 3);
}

/// Writes `.NAME-<key>.pcap.part` with `records` whole records and `extra`
/// bytes of a cut one.
fn leftover(dir: &Path, name: &str, key: FileKey, records: u32, extra: usize) -> PathBuf {
    let p = dir.join(naming::part_name(&naming::final_name(name, key)));
    let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
    for i in 0..records {
        w.write(ts(i), 300, &frame(i, 300)).unwrap();
    }
    let mut bytes = w.into_inner();
    let mut cut = PcapWriter::new(Vec::new(), 65535).unwrap();
    cut.write(ts(99), 300, &frame(99, 300)).unwrap();
    bytes.extend_from_slice(&cut.into_inner()[pcap::FILE_HEADER_LEN..][..extra]);
    fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn leftover_part_files_are_completed_at_start() {
    let d = TempDir::new("leftover");
    let k1 = FileKey {
        unix_ns: T0,
        seq: 1,
    };
    let k2 = FileKey {
        unix_ns: T0,
        seq: 2,
    };
    let part1 = leftover(d.path(), "lo", k1, 3, 100);
    let part2 = leftover(d.path(), "lo", k2, 0, 10);
    let other = leftover(d.path(), "lo2", k1, 3, 100);
    let seg = segment();
    let rec = Recorder::start(settings("lo", d.path()), seg.recorder_slot(0)).unwrap();
    let done = d.path().join(naming::final_name("lo", k1));
    wait_until("the leftover completed", 5, || {
        done.exists() && !part2.exists()
    });
    rec.stop();
    assert!(!part1.exists());
    assert!(other.exists(), "another recorder's leftover was touched");
    let want: Vec<_> = (0..3).map(|i| expected(i, 300, usize::MAX)).collect();
    assert_eq!(read_file(&done).unwrap(), want);
    assert_eq!(finals(d.path(), "lo"), [done]);
    let c = snap(&seg);
    assert_eq!((c.files_completed, c.disk_errors), (0, 0));
}

#[test]
fn stop_and_drop_complete_the_last_file() {
    let d = TempDir::new("stop");
    for by_drop in [false, true] {
        let seg = segment();
        let name = if by_drop { "dropped" } else { "stopped" };
        let rec = Recorder::start(settings(name, d.path()), seg.recorder_slot(0)).unwrap();
        let mut p = rec.producer();
        for i in 0..10 {
            p.record(ts(i), &frame(i, 80));
        }
        p.flush();
        wait_until("a current file", 5, || rec.current_file().is_some());
        let part = rec.current_file().unwrap();
        if by_drop {
            drop(rec);
        } else {
            rec.stop();
        }
        assert!(!part.exists());
        let f = finals(d.path(), name);
        assert_eq!(f.len(), 1, "{name}");
        let want: Vec<_> = (0..10).map(|i| expected(i, 80, usize::MAX)).collect();
        assert_eq!(read_file(&f[0]).unwrap(), want);
        let c = snap(&seg);
        assert_eq!((c.files_completed, c.current_file.as_str()), (1, ""));
        // After stop: a cheap drop, not counted, not written.
        assert!(!p.record(ts(10), &frame(10, 80)));
        p.flush();
        drop(p);
        let c = snap(&seg);
        assert_eq!((c.packets_written, c.queue_dropped_packets), (10, 0));
    }
}

#[test]
fn no_packet_no_file() {
    let d = TempDir::new("nopacket");
    let seg = segment();
    let rec = Recorder::start(settings("none", d.path()), seg.recorder_slot(0)).unwrap();
    let mut p = rec.producer();
    p.flush();
    std::thread::sleep(Duration::from_millis(250));
    rec.stop();
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    assert_eq!(snap(&seg).files_created, 0);
}

#[test]
fn a_missing_directory_is_a_disk_error_until_it_can_be_created() {
    let d = TempDir::new("nodir");
    // A regular file where a directory should be: ENOTDIR, even for root.
    let blocker = d.path().join("blocker");
    fs::write(&blocker, "x").unwrap();
    let dir = blocker.join("rec");
    let seg = segment();
    let rec = Recorder::start(settings("nodir", &dir), seg.recorder_slot(0)).unwrap();
    wait_until("a disk error", 5, || snap(&seg).disk_errors >= 1);
    let c = snap(&seg);
    assert!(c.last_error.contains("blocker"), "{}", c.last_error);
    let mut p = rec.producer();
    for i in 0..10 {
        assert!(p.record(ts(i), &frame(i, 100)));
    }
    p.flush();
    wait_until("10 packets lost to the disk", 5, || {
        snap(&seg).disk_dropped_packets == 10
    });
    fs::remove_file(&blocker).unwrap();
    wait_until("recording resumed", 5, || rec.current_file().is_some());
    for i in 10..15 {
        assert!(p.record(ts(i), &frame(i, 100)));
    }
    p.flush();
    rec.stop();
    let want: Vec<_> = (10..15).map(|i| expected(i, 100, usize::MAX)).collect();
    assert_eq!(read_all(&finals(&dir, "nodir")), want);
    let c = snap(&seg);
    assert_eq!(
        (
            c.disk_dropped_packets,
            c.queue_dropped_packets,
            c.packets_written
        ),
        (10, 0, 5)
    );
    assert!(c.disk_errors >= 1);
    assert_eq!(c.files_completed, 1);
}

#[test]
fn validate_names_the_bad_field() {
    let ok = RecordSettings::new("rec-1.a_b", "/data/fast");
    ok.validate().unwrap();
    let cases: Vec<(RecordSettings, &str)> = vec![
        (
            RecordSettings {
                name: String::new(),
                ..ok.clone()
            },
            "name",
        ),
        (
            RecordSettings {
                name: "a".repeat(33),
                ..ok.clone()
            },
            "name",
        ),
        (
            RecordSettings {
                name: "a/b".into(),
                ..ok.clone()
            },
            "name",
        ),
        (
            RecordSettings {
                name: ".hidden".into(),
                ..ok.clone()
            },
            "name",
        ),
        (
            RecordSettings {
                name: "a b".into(),
                ..ok.clone()
            },
            "name",
        ),
        (
            RecordSettings {
                dir: PathBuf::new(),
                ..ok.clone()
            },
            "dir",
        ),
        (
            RecordSettings {
                bulk_dir: Some("/data/fast/".into()),
                ..ok.clone()
            },
            "bulk_dir",
        ),
        (
            RecordSettings {
                bulk_retain_bytes: Some(1 << 40),
                ..ok.clone()
            },
            "bulk_retain_bytes",
        ),
        (
            RecordSettings {
                bulk_retain_age: Some(MIN_INTERVAL),
                ..ok.clone()
            },
            "bulk_retain_age",
        ),
        (
            RecordSettings {
                rotate_bytes: 1023,
                ..ok.clone()
            },
            "rotate_bytes",
        ),
        (
            RecordSettings {
                rotate_interval: Some(Duration::from_millis(10)),
                ..ok.clone()
            },
            "rotate_interval",
        ),
        (
            RecordSettings {
                retain_age: Some(Duration::ZERO),
                ..ok.clone()
            },
            "retain_age",
        ),
        (
            RecordSettings {
                retain_bytes: Some(1 << 20),
                ..ok.clone()
            },
            "retain_bytes",
        ),
        (
            RecordSettings {
                queue_bytes: (1 << 20) - 1,
                ..ok.clone()
            },
            "queue_bytes",
        ),
        (
            RecordSettings {
                queue_bytes: MAX_QUEUE_BYTES + 1,
                ..ok.clone()
            },
            "queue_bytes",
        ),
        (
            RecordSettings {
                snaplen: MAX_SNAPLEN + 1,
                ..ok.clone()
            },
            "snaplen",
        ),
    ];
    for (s, field) in cases {
        let e = s.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().starts_with(field), "{e}");
    }
    let fine = RecordSettings {
        bulk_dir: Some("/data/bulk".into()),
        bulk_retain_bytes: Some(DEFAULT_ROTATE_BYTES),
        bulk_retain_age: Some(Duration::from_secs(86_400)),
        rotate_interval: None,
        snaplen: MAX_SNAPLEN,
        queue_bytes: MIN_QUEUE_BYTES,
        ..ok.clone()
    };
    fine.validate().unwrap();
    let seg = segment();
    let e = Recorder::start(
        RecordSettings {
            rotate_bytes: 0,
            ..ok
        },
        seg.recorder_slot(0),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        RecordError::Settings(SettingsError {
            field: "rotate_bytes",
            ..
        })
    ));
}

#[test]
fn block_plan_follows_the_queue_size() {
    // Small queues: four blocks, each holding one record of the snap length.
    assert_eq!(block_plan(1 << 20, MAX_SNAPLEN), (262_160, 4));
    assert_eq!(block_plan(1 << 20, 1500), (256 << 10, 4));
    assert_eq!(block_plan(8 << 20, 65535), (512 << 10, 16));
    assert_eq!(block_plan(16 << 20, 0), (1 << 20, 16));
    assert_eq!(block_plan(DEFAULT_QUEUE_BYTES, MAX_SNAPLEN), (1 << 20, 64));
    assert_eq!(block_plan(1 << 30, MAX_SNAPLEN), (1 << 20, 1024));
}
