//! Recording passive-1 to disk on a namespace lab: the rotated files hold
//! exactly the frames sent, byte for byte and in order (read back with the
//! Rust pcap reader, and with tcpdump when it is installed); retention
//! deletes the oldest files first and never the one being written; a full
//! recording volume (a small tmpfs) never stops capture or fan-out, the
//! error is counted and logged once, and recording resumes when space
//! returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::lab_config;
use tapline_packet::pcap;
use tapline_segment::SegmentReader;
use tapline_tests::passive::{collect, output, outputs, sensor_sockets};
use tapline_tests::{
    assert_counter, open_raw, passive_frames, privileged, send_paced, start_dataplane, stop_ok,
    total_bytes, EXCHANGE_TIMEOUT,
};

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        let p = std::env::temp_dir().join(format!("tapline-rec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Only the full-disk test mounts one; quiet otherwise.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Completed capture files of recorder `name` in `dir`, oldest first.
fn completed(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().unwrap_or_default().to_string_lossy();
            f.starts_with(&format!("{name}-")) && f.ends_with(".pcap")
        })
        .collect();
    v.sort();
    Ok(v)
}

fn part_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect())
}

/// Every record of `files`, in order.
fn records(files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for f in files {
        for r in pcap::read_file(f).with_context(|| format!("reading {}", f.display()))? {
            ensure!(
                r.orig_len as usize == r.data.len(),
                "{}: a cut record",
                f.display()
            );
            out.push(r.data);
        }
    }
    Ok(out)
}

/// `tcpdump -r FILE` packet count, or `None` without tcpdump.
fn tcpdump_count(file: &Path) -> Result<Option<usize>> {
    if Command::new("tcpdump").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(file)
        .output()
        .context("running tcpdump")?;
    ensure!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per packet; tcpdump adds indented hex lines for payloads it
    // cannot decode (the lab's non-IP frames).
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .count(),
    ))
}

fn recorder_config(dir: &Path, keys: &str) -> String {
    format!(
        "[[recorder]]\nname = \"rec\"\ndir = \"{}\"\nrotate_interval_s = 0\n{keys}",
        dir.display()
    )
}

#[test]
fn recorded_files_hold_exactly_the_frames_sent_rotated_by_size() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let fast = Scratch::new("rotate")?;
    let extra = recorder_config(&fast.0, "rotate_size = \"64KiB\"\n");
    let dp = start_dataplane(&lab, &lab_config(Some(ifs::PASSIVE_1), None, "", &extra))?;
    let frames = passive_frames(3000);
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    send_paced(&tap, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(300));
    let state_dir = dp.state_dir().to_path_buf();
    let fin = stop_ok(dp)?;
    assert_counter(&fin, "passive-1", "rx_packets", frames.len() as u64)?;
    let recorder = SegmentReader::open(&state_dir)
        .map(|r| format!("{:?}", r.snapshot().recorders))
        .unwrap_or_default();

    ensure!(
        part_files(&fast.0)?.is_empty(),
        "a .part file was left behind"
    );
    let files = completed(&fast.0, "rec")?;
    // Captured traffic is never world-readable: 0640 at most (the umask
    // may take the group bit too).
    for f in &files {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(f)?.permissions());
        ensure!(
            mode & 0o777 & !0o640 == 0,
            "{} has mode {:o}: more open than 0640",
            f.display(),
            mode & 0o777
        );
    }
    let expected_files = (total_bytes(&frames) + 16 * frames.len() as u64) / (64 << 10);
    ensure!(
        files.len() as u64 >= expected_files,
        "{} files for {} bytes rotated at 64 KiB",
        files.len(),
        total_bytes(&frames)
    );
    for f in &files {
        let len = std::fs::metadata(f)?.len();
        ensure!(
            len <= 64 << 10,
            "{} is {len} bytes, over the rotation size",
            f.display()
        );
    }
    let got = records(&files)?;
    let first_diff = got.iter().zip(&frames).position(|(a, b)| a != b);
    ensure!(
        got == frames,
        "the files hold {} records; {} frames were sent (first difference at {first_diff:?}); recorder: {recorder}",
        got.len(),
        frames.len()
    );
    let mut by_tcpdump = 0;
    for f in &files {
        match tcpdump_count(f)? {
            Some(n) => by_tcpdump += n,
            None => {
                eprintln!("tcpdump is not installed: the Rust reader's check stands alone");
                by_tcpdump = frames.len();
                break;
            }
        }
    }
    ensure!(
        by_tcpdump == frames.len(),
        "tcpdump read {by_tcpdump} packets"
    );
    eprintln!(
        "{} frames in {} files, identical and in order",
        frames.len(),
        files.len()
    );
    Ok(())
}

#[test]
fn retention_deletes_the_oldest_files_first_and_keeps_the_newest() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let fast = Scratch::new("retain")?;
    let extra = recorder_config(
        &fast.0,
        "rotate_size = \"64KiB\"\nretain_size = \"256KiB\"\n",
    );
    let dp = start_dataplane(&lab, &lab_config(Some(ifs::PASSIVE_1), None, "", &extra))?;
    let frames = passive_frames(4000);
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    send_paced(&tap, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    // The janitor runs about once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let snap = SegmentReader::open(dp.state_dir())?.snapshot();
    stop_ok(dp)?;
    let rec = snap
        .recorders
        .first()
        .context("no recorder in the segment")?;
    ensure!(rec.files_deleted > 0, "nothing deleted: {rec:?}");

    let files = completed(&fast.0, "rec")?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    // At stop, the file being written is completed after the last pass: at
    // most one file over the limit.
    ensure!(
        total <= (256 << 10) + (64 << 10),
        "{total} bytes kept over {} files",
        files.len()
    );
    // What is left is the newest part of the capture, contiguous: a suffix
    // of what was sent.
    let got = records(&files)?;
    ensure!(!got.is_empty(), "every file was deleted");
    ensure!(
        frames.ends_with(&got),
        "the kept files are not the newest frames, in order ({} records)",
        got.len()
    );
    eprintln!(
        "kept {} of {} frames in {} files ({total} bytes), {} files deleted",
        got.len(),
        frames.len(),
        files.len(),
        rec.files_deleted
    );
    Ok(())
}

/// Mounts a tmpfs of `size` on `dir`.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<()> {
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .context("running mount (util-linux)")?;
    if !st.success() {
        bail!("mount -t tmpfs on {} failed: {st}", dir.display());
    }
    Ok(())
}

#[test]
fn a_full_disk_never_stops_capture_or_fan_out_and_recording_resumes() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let mut lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    lab.add_sensors(&["m0"])?;
    let fast = Scratch::new("full")?;
    mount_tmpfs(&fast.0, "1m")?;
    let extra = format!(
        "{}\n[[output_group]]\nname = \"ids\"\nmembers = [\"m0\"]\n",
        recorder_config(&fast.0, "rotate_size = \"256KiB\"\n")
    );
    let dp = start_dataplane(&lab, &lab_config(Some(ifs::PASSIVE_1), None, "", &extra))?;
    let sensor = sensor_sockets(&lab, &["m0"])?;
    let tap = open_raw(lab.tap(), ifs::TAP)?;

    // About 3 MB into a 1 MB volume.
    let frames = passive_frames(4000);
    send_paced(&tap, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    let got = collect(&sensor, frames.len(), Duration::from_millis(200))?;
    ensure!(
        got[0] == frames,
        "fan-out lost frames while the disk was full: {} of {}",
        got[0].len(),
        frames.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let snap = SegmentReader::open(dp.state_dir())?.snapshot();
    let rec = snap.recorders.first().context("no recorder")?.clone();
    ensure!(rec.disk_errors >= 1, "no disk error counted: {rec:?}");
    ensure!(
        rec.disk_dropped_packets > 0,
        "nothing dropped for the disk: {rec:?}"
    );
    ensure!(
        rec.last_error.contains("No space left"),
        "last error: {:?}",
        rec.last_error
    );

    // Space returns: the operator deletes the files.
    for f in completed(&fast.0, "rec")? {
        std::fs::remove_file(f)?;
    }
    std::thread::sleep(Duration::from_millis(1500));
    let later: Vec<Vec<u8>> = passive_frames(200);
    send_paced(&tap, &later, Instant::now() + EXCHANGE_TIMEOUT)?;
    let got_later = collect(&sensor, later.len(), Duration::from_millis(200))?;
    ensure!(got_later[0] == later, "fan-out after the disk recovered");
    std::thread::sleep(Duration::from_millis(300));
    let segment_outputs = outputs(dp.state_dir())?;
    let fin = stop_ok(dp)?;
    assert_counter(
        &fin,
        "passive-1",
        "rx_packets",
        (frames.len() + later.len()) as u64,
    )?;
    let ids = output(&segment_outputs, "ids")?;
    ensure!(
        ids.packets == (frames.len() + later.len()) as u64,
        "{ids:?}"
    );
    let warnings = fin
        .lines
        .iter()
        .filter(|l| l.contains("recording suspended"))
        .count();
    ensure!(warnings == 1, "the disk error was logged {warnings} times");
    ensure!(
        fin.lines.iter().any(|l| l.contains("recording resumed")),
        "no 'recording resumed' line"
    );
    // The frames sent after recovery are on disk, in order, at the end.
    let on_disk = records(&completed(&fast.0, "rec")?)?;
    ensure!(
        on_disk.ends_with(&later),
        "the frames sent after recovery are not the last {} records on disk ({} records)",
        later.len(),
        on_disk.len()
    );
    Ok(())
}
