//! Capture to disk: each DUT records passive-1 to pcap files; the records
//! in the files count against the frames sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;

use crate::lab::{self, ifs, Lab};
use crate::peers::{PeerProcess, PeerTimeouts};
use crate::report::median;
use crate::runner::workspace_binary;

use super::dut::{
    passive_totals, recorder_section, start_tapline, traffic_then_grace, DutReport, Load, Traffic,
};
use super::peers::{count_dir, is_reader_event, parse_peer_stats, parse_reader_done, DirCount};
use super::results::{CaptureSample, CaptureSummary, Ratio};
use super::{
    CaptureDut, PassiveConfig, MEASURED, MIN_FREE_BYTES, PEER_READY_TIMEOUT, PEER_SETTLE,
    PEER_STOP_TIMEOUT, READER_BATCH, RECORDER_NAME, SKIPPED,
};

/// tapline with a recorder writing into `dir`.
pub(crate) fn capture_tapline(
    lab: &Lab,
    cfg: &PassiveConfig,
    load: Load,
    dir: &Path,
) -> Result<DutReport> {
    let t = start_tapline(lab, cfg, &recorder_section(dir))?;
    let xdp_mode = t.xdp_mode.clone();
    let traffic = traffic_then_grace(lab, cfg, load);
    let snap = t.stop();
    let (traffic, snap) = (traffic?, snap?);
    let (rx, rx_dropped, ring_full, fill_empty) = passive_totals(&snap);
    let rec = snap
        .recorders
        .iter()
        .find(|r| r.name == RECORDER_NAME)
        .context("no recorder in tapline's stats segment")?;
    let drop_detail = BTreeMap::from([
        ("kernel_rx_dropped".to_string(), rx_dropped),
        ("kernel_rx_ring_full".to_string(), ring_full),
        (
            "recorder_queue_dropped".to_string(),
            rec.queue_dropped_packets,
        ),
        (
            "recorder_disk_dropped".to_string(),
            rec.disk_dropped_packets,
        ),
        // Not drops, but where to look when the file count disagrees.
        ("kernel_fill_ring_empty".to_string(), fill_empty),
        ("recorder_packets_written".to_string(), rec.packets_written),
        ("recorder_disk_errors".to_string(), rec.disk_errors),
    ]);
    Ok(DutReport {
        traffic,
        captured: Some(rx),
        kernel_drops: rx_dropped + ring_full,
        drop_detail,
        not_drops: &[
            "kernel_fill_ring_empty",
            "recorder_packets_written",
            "recorder_disk_errors",
        ],
        xdp_mode,
    })
}

/// tapline capturing with no consumer (the zero-drop part's `tapline`).
pub(crate) fn capture_tapline_alone(
    lab: &Lab,
    cfg: &PassiveConfig,
    load: Load,
) -> Result<DutReport> {
    let t = start_tapline(lab, cfg, "")?;
    let xdp_mode = t.xdp_mode.clone();
    let traffic = traffic_then_grace(lab, cfg, load);
    let snap = t.stop();
    let (traffic, snap) = (traffic?, snap?);
    let (rx, rx_dropped, ring_full, fill_empty) = passive_totals(&snap);
    Ok(DutReport {
        traffic,
        captured: Some(rx),
        kernel_drops: rx_dropped + ring_full,
        drop_detail: BTreeMap::from([
            ("kernel_rx_dropped".to_string(), rx_dropped),
            ("kernel_rx_ring_full".to_string(), ring_full),
            ("kernel_fill_ring_empty".to_string(), fill_empty),
        ]),
        not_drops: &["kernel_fill_ring_empty"],
        xdp_mode,
    })
}

/// Fails if a previous DUT left an XDP program on p1 (a peer would then
/// see nothing).
pub(crate) fn ensure_no_xdp(lab: &Lab) -> Result<()> {
    ensure!(
        !lab::link_state(&lab.dut, ifs::PASSIVE_1)?.xdp_attached,
        "an XDP program is still attached to p1 (left by the previous DUT)"
    );
    Ok(())
}

pub(crate) fn capture_peer(
    lab: &Lab,
    dut: CaptureDut,
    cfg: &PassiveConfig,
    load: Load,
    dir: &Path,
) -> Result<DutReport> {
    ensure_no_xdp(lab)?;
    let (argv, ready) = dut.peer_command(&dir.join(format!("{}.pcap", dut.name())));
    let (lines, traffic) = run_peer(lab, cfg, load, &argv, |l| l.contains(ready), Signal::SIGINT)?;
    let stats = parse_peer_stats(dut, &lines);
    Ok(DutReport {
        traffic,
        captured: stats.received,
        kernel_drops: stats.drops.get("dropped by kernel").copied().unwrap_or(0),
        drop_detail: stats.drops,
        not_drops: &[],
        xdp_mode: None,
    })
}

/// Runs the capture peer `argv` in the dut namespace through one
/// measurement: starts it, waits until a line `is_ready` and then
/// [`PEER_SETTLE`], sends the traffic and waits the grace, and stops it with
/// `signal`. Its output lines and the traffic's report, once it exited 0.
fn run_peer(
    lab: &Lab,
    cfg: &PassiveConfig,
    load: Load,
    argv: &[String],
    is_ready: impl Fn(&str) -> bool,
    signal: Signal,
) -> Result<(Vec<String>, Traffic)> {
    let mut cmd = lab.dut.command(&argv[0]);
    cmd.args(&argv[1..]);
    let timeouts = PeerTimeouts {
        start: PEER_READY_TIMEOUT,
        stop: PEER_STOP_TIMEOUT,
    };
    let peer = PeerProcess::start_within(&argv[0], cmd, timeouts, |lines| {
        lines.iter().any(|l| is_ready(l))
    })?;
    std::thread::sleep(PEER_SETTLE);
    let traffic = traffic_then_grace(lab, cfg, load);
    let stopped = peer.stop_with(signal);
    let (exit, traffic) = (stopped?, traffic?);
    ensure!(
        exit.status.success(),
        "{} exited with {}:\n{}",
        argv.join(" "),
        exit.status,
        exit.lines.join("\n")
    );
    Ok((exit.lines, traffic))
}

/// The reader's command line: `tapline-bench peer af-packet-read` on p1.
pub(crate) fn reader_command() -> Result<Vec<String>> {
    let bin = workspace_binary("tapline-bench")?;
    Ok(vec![
        bin.to_string_lossy().into_owned(),
        "peer".into(),
        "af-packet-read".into(),
        "--iface".into(),
        ifs::PASSIVE_1.into(),
        "--batch".into(),
        READER_BATCH.to_string(),
    ])
}

/// The reader's version line, after checking that this build has it.
pub(crate) fn reader_version() -> Result<String> {
    let argv = reader_command()?;
    let out = Command::new(&argv[0])
        .args(["peer", "af-packet-read", "--help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    ensure!(
        out.status.success(),
        "{} has no `peer af-packet-read` ({}): build the current tapline-bench:\n{}",
        argv[0],
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!(
        "tapline-bench {} peer af-packet-read (recvmmsg, batch {READER_BATCH})",
        env!("CARGO_PKG_VERSION")
    ))
}

/// The AF_PACKET reader on p1, stopped with SIGTERM after the grace.
pub(crate) fn capture_reader(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<DutReport> {
    ensure_no_xdp(lab)?;
    let argv = reader_command()?;
    let (lines, traffic) = run_peer(
        lab,
        cfg,
        load,
        &argv,
        |l| is_reader_event(l, "ready"),
        Signal::SIGTERM,
    )?;
    let done = parse_reader_done(&lines).with_context(|| {
        format!(
            "the AF_PACKET reader printed no done event:\n{}",
            lines.join("\n")
        )
    })?;
    Ok(DutReport {
        traffic,
        captured: Some(done.received),
        kernel_drops: done.kernel_drops,
        drop_detail: BTreeMap::from([("kernel_drops".to_string(), done.kernel_drops)]),
        not_drops: &[],
        xdp_mode: None,
    })
}

/// Space available to unprivileged writers at `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Runs `load` through capture DUT `dut` writing into a fresh `dir`, and
/// counts the files (deleted afterwards unless `--keep-files`).
pub(crate) fn capture_to_files(
    lab: &Lab,
    dut: CaptureDut,
    cfg: &PassiveConfig,
    load: Load,
    dir: &Path,
) -> Result<(DutReport, DirCount)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let free = free_bytes(dir)?;
    ensure!(
        free >= MIN_FREE_BYTES,
        "only {} MiB free at {}: a capture needs {} MiB",
        free >> 20,
        dir.display(),
        MIN_FREE_BYTES >> 20
    );
    let report = match dut {
        CaptureDut::Tapline => capture_tapline(lab, cfg, load, dir),
        peer => capture_peer(lab, peer, cfg, load, dir),
    }
    .with_context(|| format!("capturing with {}", dut.name()));
    let counted = report.and_then(|r| Ok((r, count_dir(dir)?)));
    if !cfg.keep_files {
        let _ = std::fs::remove_dir_all(dir);
    }
    counted
}

pub(crate) fn measure_capture(
    lab: &Lab,
    dut: CaptureDut,
    rep: u32,
    cfg: &PassiveConfig,
    run_dir: &Path,
) -> Result<CaptureSample> {
    let dir = run_dir.join(format!("{}-rep{rep}", dut.name()));
    let (r, c) = capture_to_files(lab, dut, cfg, Load::of(cfg), &dir)?;
    let secs = r.traffic.gen.elapsed.as_secs_f64();
    let sent = r.traffic.gen.sent;
    let dut_drops = r.dut_drops();
    Ok(CaptureSample {
        dut,
        rep,
        sent,
        elapsed_s: secs,
        offered_pps: sent as f64 / secs,
        p1_rx_packets: r.traffic.p1_rx_packets,
        captured: r.captured,
        written: c.records,
        written_ours: c.ours,
        files: c.files,
        file_bytes: c.bytes,
        truncated_files: c.truncated_files,
        dut_drops,
        drop_detail: r.drop_detail,
        written_ratio: if sent > 0 {
            c.records as f64 / sent as f64
        } else {
            0.0
        },
        written_pps: c.records as f64 / secs,
        steal_ratio: r.traffic.steal_ratio,
        xdp_mode: r.xdp_mode,
    })
}

pub(crate) fn capture_summary(
    dut: CaptureDut,
    version: Option<String>,
    samples: &[CaptureSample],
) -> CaptureSummary {
    let mine: Vec<&CaptureSample> = samples.iter().filter(|s| s.dut == dut).collect();
    let med = |f: &dyn Fn(&CaptureSample) -> Option<f64>| {
        let v: Vec<f64> = mine.iter().filter_map(|s| f(s)).collect();
        let m = median(&v);
        m.is_finite().then_some(m)
    };
    CaptureSummary {
        dut,
        status: if version.is_some() { MEASURED } else { SKIPPED }.to_string(),
        version,
        median_written_pps: med(&|s| Some(s.written_pps)),
        median_written_ratio: med(&|s| Some(s.written_ratio)),
        median_captured_ratio: med(&|s| {
            s.captured
                .filter(|_| s.sent > 0)
                .map(|c| c as f64 / s.sent as f64)
        }),
        median_offered_pps: med(&|s| Some(s.offered_pps)),
        written_ratio_samples: mine.iter().map(|s| s.written_ratio).collect(),
    }
}

pub(crate) fn capture_ratio(peer: CaptureDut, installed: bool, samples: &[CaptureSample]) -> Ratio {
    let name = format!("tapline / {}", peer.name());
    if !installed {
        return Ratio::skipped(name);
    }
    let of = |d: CaptureDut| -> Vec<(u32, f64)> {
        samples
            .iter()
            .filter(|s| s.dut == d)
            .map(|s| (s.rep, s.written_pps))
            .collect()
    };
    Ratio::measured(name, &of(CaptureDut::Tapline), &of(peer))
}
