//! The recorder against a real filesystem that fails: a 2 MiB tmpfs that
//! fills up, and the same remounted read-only. Capture never stalls (every
//! `record` returns at once and no packet is refused by the queue), the
//! loss is counted as disk drops, one warning is logged per incident, and
//! recording resumes when the disk takes writes again, with every file a
//! valid pcap holding exactly the packets counted as written.
//!
//! Needs root (mount). Without it the tests fail, unless the run opts out
//! explicitly with `TAPLINE_SKIP_PRIVILEGED=1`. Root ignores file modes,
//! which is why a read-only remount stands in for an unwritable directory.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tapline_config::record::RecordSettings;
use tapline_dataplane::record::Recorder;
use tapline_packet::pcap::{read_file, PcapRecord};
use tapline_segment::RecorderSnapshot;
use tapline_segment::{Layout, StatsSegment};

const SKIP_PRIVILEGED_VAR: &str = "TAPLINE_SKIP_PRIVILEGED";

/// `true` when the test can run; panics naming the fix when it cannot.
fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        let mount = Command::new("mount").arg("--version").output();
        assert!(
            mount.is_ok_and(|o| o.status.success()),
            "`mount` (util-linux) is needed: apt-get install util-linux"
        );
        return true;
    }
    if std::env::var(SKIP_PRIVILEGED_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: not root and {SKIP_PRIVILEGED_VAR}=1: tmpfs recorder test not run");
        return false;
    }
    panic!(
        "this test mounts a tmpfs and needs root (run the suite as root, e.g. `sudo -E cargo test`); \
         set {SKIP_PRIVILEGED_VAR}=1 to skip privileged tests explicitly"
    );
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small tmpfs, unmounted and removed on drop (even on panic).
struct Tmpfs {
    dir: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    fn new(tag: &str, size: &str) -> Tmpfs {
        let dir =
            std::env::temp_dir().join(format!("tapline-recdisk-{}-{tag}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut t = Tmpfs {
            dir,
            mounted: false,
        };
        let opts = format!("size={size},mode=0755");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &opts, "tmpfs", t.path_str()],
        );
        t.mounted = true;
        t
    }
    fn path(&self) -> &Path {
        &self.dir
    }
    fn path_str(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 temp dir")
    }
    fn remount(&self, mode: &str) {
        run(
            "mount",
            &["-o", &format!("remount,{mode}"), self.path_str()],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a thread of a failed test may still hold a file.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Everything logged by the process (both tests: lines name their
/// recorder).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("the only subscriber");
    });
}

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// Lines logged for `recorder` that contain `what`.
fn logged(recorder: &str, what: &str) -> usize {
    let tag = format!("recorder {recorder}:");
    log_text()
        .lines()
        .filter(|l| l.contains(&tag) && l.contains(what))
        .count()
}

const SUSPENDED: &str =
    "recording suspended; packets are dropped until the disk accepts writes again";
const RESUMED: &str = "recording resumed";

fn segment() -> Arc<StatsSegment> {
    StatsSegment::in_memory_with(&Layout {
        max_recorders: 1,
        ..Layout::default()
    })
}

fn snap(seg: &StatsSegment) -> RecorderSnapshot {
    seg.snapshot().recorders[0].clone()
}

const T0: u64 = 1_795_342_502_000_000_000;

fn ts(i: u32) -> u64 {
    T0 + u64::from(i) * 1_000
}

fn frame(i: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|k| (k as u32).wrapping_add(i) as u8).collect();
    f[..4].copy_from_slice(&i.to_le_bytes());
    f
}

fn expected(ids: impl Iterator<Item = u32>, len: usize) -> Vec<PcapRecord> {
    ids.map(|i| PcapRecord {
        ts_unix_ns: ts(i),
        orig_len: len as u32,
        data: frame(i, len),
    })
    .collect()
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records `ids`, flushing in small batches; asserts that no call blocks
/// and that the queue refuses nothing.
fn record(rec: &Recorder, ids: std::ops::Range<u32>, len: usize) {
    let mut p = rec.producer();
    let mut slowest = Duration::ZERO;
    for i in ids {
        let t = Instant::now();
        assert!(p.record(ts(i), &frame(i, len)), "packet {i} refused");
        slowest = slowest.max(t.elapsed());
        if i % 50 == 49 {
            p.flush();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    p.flush();
    assert!(
        slowest < Duration::from_millis(50),
        "record took {slowest:?}"
    );
}

/// Completed files of `name` in `dir`, in name order (chronological).
fn completed(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(&format!("{name}-")) && n.ends_with(".pcap")
        })
        .collect();
    v.sort();
    v
}

fn read_all(files: &[PathBuf]) -> Vec<PcapRecord> {
    files
        .iter()
        .flat_map(|p| read_file(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

fn settings(name: &str, dir: &Path) -> RecordSettings {
    RecordSettings {
        rotate_bytes: 1 << 20,
        rotate_interval: None,
        queue_bytes: 32 << 20,
        ..RecordSettings::new(name, dir)
    }
}

/// Writes zeros to `path` until the filesystem is full (ENOSPC), then
/// gives `keep_free` bytes back.
fn fill(path: &Path, keep_free: u64) {
    let mut f = fs::File::create(path).unwrap();
    let chunk = [0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(n) => len += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.set_len(len - keep_free).unwrap();
}

#[test]
fn a_full_disk_suspends_recording_until_space_returns() {
    if !privileged() {
        return;
    }
    capture_logs();
    let fs_ = Tmpfs::new("full", "2m");
    let dir = fs_.path().join("rec");
    let filler = fs_.path().join("filler");
    fill(&filler, 300 << 10);
    let seg = segment();
    let rec = Recorder::start(settings("diskfull", &dir), seg.recorder_slot(0)).unwrap();

    // ~1 MB of packets into ~300 KiB of space.
    record(&rec, 0..1000, 1000);
    wait_until("every packet written or lost", 10, || {
        let c = snap(&seg);
        c.packets_written + c.disk_dropped_packets == 1000
    });
    let c = snap(&seg);
    let written = c.packets_written as u32;
    assert!(c.disk_errors >= 1 && c.disk_dropped_packets > 0, "{c:?}");
    assert!(written > 100, "only {written} packets fit in 300 KiB");
    assert!(c.last_error.contains("No space left"), "{}", c.last_error);
    assert_eq!(c.queue_dropped_packets, 0);
    // The file that hit ENOSPC was cut back to its last whole record: it
    // reads cleanly (as .part or, after a retry, completed).
    wait_until("the first file completed", 5, || {
        !completed(&dir, "diskfull").is_empty()
    });
    assert_eq!(
        read_all(&completed(&dir, "diskfull")),
        expected(0..written, 1000)
    );
    // Retries keep failing while the disk is full: counted, not logged.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(snap(&seg).disk_errors >= 2, "{:?}", snap(&seg));
    assert_eq!(logged("diskfull", SUSPENDED), 1, "{}", log_text());
    assert_eq!(logged("diskfull", RESUMED), 0, "{}", log_text());

    fs::remove_file(&filler).unwrap();
    wait_until("recording resumed", 5, || logged("diskfull", RESUMED) == 1);
    record(&rec, 1000..1200, 1000);
    rec.stop();

    let want: Vec<_> = expected(0..written, 1000)
        .into_iter()
        .chain(expected(1000..1200, 1000))
        .collect();
    assert_eq!(read_all(&completed(&dir, "diskfull")), want);
    let c = snap(&seg);
    assert_eq!(c.packets_written, u64::from(written) + 200);
    assert_eq!(c.disk_dropped_packets, 1000 - u64::from(written));
    assert_eq!(c.queue_dropped_packets, 0);
    assert_eq!(c.files_completed, completed(&dir, "diskfull").len() as u64);
    assert_eq!(logged("diskfull", SUSPENDED), 1, "{}", log_text());
    assert_eq!(logged("diskfull", RESUMED), 1, "{}", log_text());
    let parts = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".part")
        })
        .count();
    assert_eq!(parts, 0);
}

#[test]
fn a_read_only_remount_suspends_recording_until_it_is_writable() {
    if !privileged() {
        return;
    }
    capture_logs();
    let fs_ = Tmpfs::new("ro", "2m");
    let dir = fs_.path().join("rec");
    let seg = segment();
    let s = RecordSettings {
        rotate_interval: Some(Duration::from_secs(1)),
        ..settings("readonly", &dir)
    };
    let rec = Recorder::start(s, seg.recorder_slot(0)).unwrap();
    record(&rec, 0..10, 500);
    // Rotation by time closes the file; none is open until the next packet
    // (a remount to read-only fails with EBUSY while a file is open for
    // writing).
    wait_until("the first file completed", 5, || {
        snap(&seg).files_completed == 1
    });
    assert_eq!(rec.current_file(), None);
    fs_.remount("ro");

    record(&rec, 10..20, 500);
    wait_until("10 packets lost to the disk", 5, || {
        snap(&seg).disk_dropped_packets == 10
    });
    let c = snap(&seg);
    assert!(c.disk_errors >= 1);
    assert!(c.last_error.contains("Read-only"), "{}", c.last_error);
    assert_eq!(c.queue_dropped_packets, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(logged("readonly", SUSPENDED), 1, "{}", log_text());

    fs_.remount("rw");
    wait_until("recording resumed", 5, || logged("readonly", RESUMED) == 1);
    record(&rec, 20..30, 500);
    rec.stop();

    let want: Vec<_> = expected(0..10, 500)
        .into_iter()
        .chain(expected(20..30, 500))
        .collect();
    assert_eq!(read_all(&completed(&dir, "readonly")), want);
    let c = snap(&seg);
    assert_eq!((c.packets_written, c.disk_dropped_packets), (20, 10));
    assert_eq!(logged("readonly", SUSPENDED), 1, "{}", log_text());
}
