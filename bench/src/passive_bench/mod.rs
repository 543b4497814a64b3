//! Passive-side benchmarks on the passive lab, in one run, interleaved,
//! with medians over repetitions:
//!
//! ```text
//! [tap] t0 ==veth==> p1 [dut: tapline | tcpdump | netsniff-ng]  m0..mN ==veth==> e0 [sensor k]
//! ```
//!
//! 1. **Capture to disk.** The AF_XDP generator sends from `t0` into `p1`
//!    (passive-1); each DUT in turn records `p1` to pcap files: tapline with
//!    one `[[recorder]]`, `tcpdump -w` and `netsniff-ng --out`. The number
//!    that counts is the records in the files, against the frames sent.
//! 2. **Fan-out cost.** tapline capturing `p1` with no consumer against 1,
//!    2, 4... output groups of one member each (a sensor namespace per
//!    member): capture rate, deliveries per group, kernel drops.
//! 3. **Zero-drop rate.** For each DUT, a binary search
//!    ([`crate::search::search`], no loss allowed) over the paced
//!    generator's rate for the highest rate at which every frame sent is
//!    received: by tapline capturing with no consumer (passive-1
//!    rx_packets, no kernel drop), by an AF_PACKET `recvmmsg` reader
//!    (`tapline-bench peer af-packet-read`), and into pcap files by tapline
//!    with a recorder, `tcpdump -w` and netsniff-ng.
//!
//! Peers that are not installed are reported as skipped, never estimated.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use serde::Serialize;
use tapline_dataplane::pcap::PcapReader;
use tapline_dataplane::stats::OutputDropReason;
use tapline_dataplane::xdp::shm::{OutputKind, SegmentReader, Snapshot};

use crate::afpacket::ReadCounts;
use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::report::{markdown_table, median, CpuTimes, Machine};
use crate::runner::{
    lab_config, obtained_mode, wait_or_kill, workspace_binary, DataplaneProcess, StartOptions,
};
use crate::search::{self, Outcome, SearchConfig, Trial, NDR_LOSS};
use crate::traffic::{is_ours, xdp_generate, FrameSizes, GenConfig, GenReport};

/// Sender id of the generator's frames (in their source MAC).
const SENDER: u8 = 1;
/// Recorder of the tapline DUT: name, rotation and queue.
const RECORDER_NAME: &str = "bench";
const RECORDER_ROTATE_SIZE: &str = "256MiB";
const RECORDER_QUEUE_SIZE: &str = "64MiB";
/// Kernel ring of the peers, the same size as tapline's recorder queue:
/// `tcpdump -B` (KiB) and `netsniff-ng --ring-size`. Without it
/// netsniff-ng sizes its ring from the machine's memory (2.4 GiB here),
/// which takes more than a second to set up.
const PEER_RING_MIB: u32 = 64;
/// How long a peer may take to say it is capturing.
const PEER_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between a peer's ready line and the traffic.
const PEER_SETTLE: Duration = Duration::from_millis(300);
/// How long a peer may take to flush its buffers and exit after SIGINT.
const PEER_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after the traffic before reading interface counters.
const SETTLE: Duration = Duration::from_millis(200);
/// Free space a capture needs in `--dir` before it starts: the files of one
/// measurement are deleted before the next one.
const MIN_FREE_BYTES: u64 = 4 << 30;
/// Read buffer of the pcap counter.
const PCAP_READ_BUF_BYTES: usize = 1 << 20;
/// Most output groups measured (the dataplane's limit).
pub const MAX_GROUPS: u8 = 16;
/// What a skipped DUT is reported as.
pub const SKIPPED: &str = "skipped (not installed)";
const MEASURED: &str = "measured";
/// The dataplane's role of `p1`.
const PASSIVE_ROLE: &str = "passive-1";
/// Frames per `recvmmsg` call of the AF_PACKET reader.
pub const READER_BATCH: u32 = 64;
/// A rate the paced generator cannot reach: the zero-drop search's probe
/// for its highest rate runs effectively unpaced (as `tapline-bench ndr`'s).
pub const PROBE_PPS: u64 = 1_000_000_000;

/// A capture-to-disk DUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureDut {
    /// tapline-dataplane with one `[[recorder]]`.
    Tapline,
    /// `tcpdump -i p1 -w FILE -n -B 65536 -s 0`.
    Tcpdump,
    /// `netsniff-ng --in p1 --out FILE --silent --ring-size 64MiB`.
    NetsniffNg,
}

impl CaptureDut {
    pub const ALL: [CaptureDut; 3] = [
        CaptureDut::Tapline,
        CaptureDut::Tcpdump,
        CaptureDut::NetsniffNg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CaptureDut::Tapline => "tapline",
            CaptureDut::Tcpdump => "tcpdump",
            CaptureDut::NetsniffNg => "netsniff-ng",
        }
    }

    pub fn parse(s: &str) -> Result<CaptureDut> {
        CaptureDut::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .with_context(|| format!("unknown DUT {s:?}: use tapline, tcpdump or netsniff-ng"))
    }

    /// The program and the argument that prints its version.
    fn version_command(self) -> Result<(PathBuf, &'static str)> {
        Ok(match self {
            CaptureDut::Tapline => (workspace_binary("tapline-dataplane")?, "--version"),
            CaptureDut::Tcpdump => ("tcpdump".into(), "--version"),
            CaptureDut::NetsniffNg => ("netsniff-ng".into(), "-v"),
        })
    }

    /// A peer's command line writing `file`, and the line it prints once
    /// its capture socket is bound.
    fn peer_command(self, file: &Path) -> (Vec<String>, &'static str) {
        let file = file.to_string_lossy().into_owned();
        match self {
            CaptureDut::Tapline => unreachable!("tapline is not a peer"),
            CaptureDut::Tcpdump => (
                [
                    "tcpdump",
                    "-i",
                    ifs::PASSIVE_1,
                    "-w",
                    &file,
                    "-n",
                    "-B",
                    &(PEER_RING_MIB * 1024).to_string(),
                    "-s",
                    "0",
                ]
                .map(String::from)
                .to_vec(),
                "listening on",
            ),
            CaptureDut::NetsniffNg => (
                [
                    "netsniff-ng",
                    "--in",
                    ifs::PASSIVE_1,
                    "--out",
                    &file,
                    "--silent",
                    "--ring-size",
                    &format!("{PEER_RING_MIB}MiB"),
                ]
                .map(String::from)
                .to_vec(),
                "Running!",
            ),
        }
    }
}

/// The first line of `PROGRAM VERSION_ARG`, or `None` when the program is
/// not installed.
pub fn dut_version(dut: CaptureDut) -> Result<Option<String>> {
    let (program, arg) = dut.version_command()?;
    let out = match Command::new(&program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("running {}", program.display())),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Some(
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    ))
}

/// A DUT of the zero-drop part, and what its verdict counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroDropDut {
    /// tapline capturing `p1` with no consumer: passive-1 rx_packets from
    /// its stats segment, and no kernel drop on its XDP socket.
    Tapline,
    /// `tapline-bench peer af-packet-read`: an AF_PACKET socket on `p1`
    /// read with `recvmmsg` ([`READER_BATCH`] frames per call): the frames
    /// it received, and no kernel drop on its socket.
    AfPacketRead,
    /// tapline with one `[[recorder]]`: the generator's records in its files.
    TaplineRecord,
    /// `tcpdump -w`: the generator's records in its file.
    Tcpdump,
    /// `netsniff-ng --out`: the generator's records in its file.
    NetsniffNg,
}

impl ZeroDropDut {
    /// Every zero-drop DUT, in the default order.
    pub const ALL: [ZeroDropDut; 5] = [
        ZeroDropDut::Tapline,
        ZeroDropDut::AfPacketRead,
        ZeroDropDut::TaplineRecord,
        ZeroDropDut::Tcpdump,
        ZeroDropDut::NetsniffNg,
    ];

    /// The ratios the zero-drop part reports: (ours, peer).
    pub const RATIOS: [(ZeroDropDut, ZeroDropDut); 3] = [
        (ZeroDropDut::Tapline, ZeroDropDut::AfPacketRead),
        (ZeroDropDut::TaplineRecord, ZeroDropDut::Tcpdump),
        (ZeroDropDut::TaplineRecord, ZeroDropDut::NetsniffNg),
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            ZeroDropDut::Tapline => "tapline",
            ZeroDropDut::AfPacketRead => "af-packet-read",
            ZeroDropDut::TaplineRecord => "tapline-record",
            ZeroDropDut::Tcpdump => "tcpdump",
            ZeroDropDut::NetsniffNg => "netsniff-ng",
        }
    }

    /// The DUT named `s` (see [`Self::name`]).
    pub fn parse(s: &str) -> Result<ZeroDropDut> {
        ZeroDropDut::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .with_context(|| {
                format!(
                    "unknown zero-drop DUT {s:?}: use tapline, af-packet-read, tapline-record, tcpdump or netsniff-ng"
                )
            })
    }

    /// The capture-to-disk DUT that runs the same program (its version
    /// and whether it is installed); `None` for the reader, which is part
    /// of tapline-bench.
    pub fn program(self) -> Option<CaptureDut> {
        match self {
            ZeroDropDut::Tapline | ZeroDropDut::TaplineRecord => Some(CaptureDut::Tapline),
            ZeroDropDut::Tcpdump => Some(CaptureDut::Tcpdump),
            ZeroDropDut::NetsniffNg => Some(CaptureDut::NetsniffNg),
            ZeroDropDut::AfPacketRead => None,
        }
    }

    /// The capture-to-disk DUT whose files this one's verdict counts;
    /// `None` for the DUTs judged by their own counters.
    pub fn writes_files(self) -> Option<CaptureDut> {
        match self {
            ZeroDropDut::Tapline | ZeroDropDut::AfPacketRead => None,
            ZeroDropDut::TaplineRecord => Some(CaptureDut::Tapline),
            ZeroDropDut::Tcpdump => Some(CaptureDut::Tcpdump),
            ZeroDropDut::NetsniffNg => Some(CaptureDut::NetsniffNg),
        }
    }

    /// Frames a trial lost: the shortfall of `counted` (the DUT's receive
    /// counter, or the generator's records in its files) against `sent`;
    /// for the DUTs judged by their counters, at least the drops the kernel
    /// reported for their socket (a counter that reaches `sent` while the
    /// kernel dropped frames saw frames that were not the generator's).
    pub fn frames_lost(self, sent: u64, counted: u64, kernel_drops: u64) -> u64 {
        let short = sent.saturating_sub(counted);
        match self.writes_files() {
            Some(_) => short,
            None => short.max(kernel_drops),
        }
    }
}

/// Settings of the zero-drop part.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroDropConfig {
    /// DUTs, in the order of the first repetition (empty: the part is
    /// skipped).
    pub duts: Vec<ZeroDropDut>,
    /// Seconds of traffic per trial.
    pub trial_seconds: f64,
    /// The highest rate searched; `None`: the unpaced generator's rate,
    /// measured through each DUT at the start of each search.
    pub max_pps: Option<u64>,
    /// The lowest rate searched and floor of the resolution.
    pub min_pps: u64,
    /// Search resolution, percent of the highest rate.
    pub resolution_pct: f64,
    /// At most this many search trials per search (the probe excluded).
    pub max_trials: u32,
}

impl Default for ZeroDropConfig {
    /// Every DUT, 2 s trials, probed highest rate, 1000 frames/s floor,
    /// 2% resolution, 16 trials: the defaults of `tapline-bench ndr`.
    fn default() -> ZeroDropConfig {
        ZeroDropConfig {
            duts: ZeroDropDut::ALL.to_vec(),
            trial_seconds: 2.0,
            max_pps: None,
            min_pps: 1_000,
            resolution_pct: 2.0,
            max_trials: 16,
        }
    }
}

impl ZeroDropConfig {
    fn validate(&self) -> Result<()> {
        for (i, d) in self.duts.iter().enumerate() {
            ensure!(
                !self.duts[..i].contains(d),
                "zero-drop DUT {} listed twice",
                d.name()
            );
        }
        ensure!(
            self.trial_seconds > 0.0 && self.trial_seconds.is_finite(),
            "--zero-drop-trial-seconds must be positive"
        );
        ensure!(self.min_pps > 0, "--zero-drop-min-pps must be above 0");
        ensure!(
            self.resolution_pct > 0.0 && self.resolution_pct.is_finite(),
            "--zero-drop-resolution-pct must be a positive percentage"
        );
        ensure!(
            self.max_trials >= 1,
            "--zero-drop-max-trials must be at least 1"
        );
        if let Some(m) = self.max_pps {
            ensure!(
                m >= self.min_pps,
                "--zero-drop-max-pps ({m}) is below --zero-drop-min-pps ({})",
                self.min_pps
            );
        }
        Ok(())
    }

    /// The search resolution for the highest rate `hi_pps`.
    pub fn resolution_pps(&self, hi_pps: u64) -> u64 {
        ((hi_pps as f64 * self.resolution_pct / 100.0) as u64).max(self.min_pps)
    }
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PassiveConfig {
    /// Capture-to-disk DUTs, in the order of the first repetition.
    pub duts: Vec<CaptureDut>,
    /// Output group counts of the fan-out part (0: capture alone).
    pub groups: Vec<u8>,
    pub reps: u32,
    /// Seconds of traffic per measurement.
    pub seconds: f64,
    /// Frame length without FCS.
    pub frame_len: usize,
    pub flows: u16,
    /// Offered rate; `None`: as fast as the generator can.
    pub rate_pps: Option<u64>,
    /// Capture files go to a fresh directory under this one (absolute).
    pub dir: PathBuf,
    /// Seconds between the end of the traffic and stopping a capture DUT,
    /// for it to drain its buffers to disk.
    pub grace_s: f64,
    /// Keep the capture files (they are deleted once counted otherwise).
    pub keep_files: bool,
    /// Extra keys for tapline's `[dataplane]` table.
    pub dataplane_keys: String,
    /// Extra keys for tapline's `[xdp]` table.
    pub xdp_keys: String,
    /// The zero-drop part.
    pub zero_drop: ZeroDropConfig,
}

impl PassiveConfig {
    fn validate(&self) -> Result<()> {
        ensure!(self.reps >= 1, "--reps must be at least 1");
        ensure!(
            self.seconds > 0.0 && self.seconds.is_finite(),
            "--seconds must be positive"
        );
        ensure!(
            self.grace_s >= 0.0 && self.grace_s.is_finite(),
            "--grace-s must not be negative"
        );
        ensure!(self.rate_pps != Some(0), "--rate must be positive");
        ensure!(
            self.dir.is_absolute(),
            "--dir {} must be absolute (the recorder requires it)",
            self.dir.display()
        );
        for (i, d) in self.duts.iter().enumerate() {
            ensure!(!self.duts[..i].contains(d), "DUT {} listed twice", d.name());
        }
        for (i, &g) in self.groups.iter().enumerate() {
            ensure!(g <= MAX_GROUPS, "{g} output groups: at most {MAX_GROUPS}");
            ensure!(
                !self.groups[..i].contains(&g),
                "{g} output groups listed twice"
            );
        }
        self.zero_drop.validate()?;
        ensure!(
            !self.duts.is_empty() || !self.groups.is_empty() || !self.zero_drop.duts.is_empty(),
            "nothing to measure: no capture DUT, no group count and no zero-drop DUT"
        );
        Ok(())
    }
}

/// One capture-to-disk measurement.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSample {
    pub dut: CaptureDut,
    pub rep: u32,
    /// Frames the generator sent (completed by the kernel on t0).
    pub sent: u64,
    /// Seconds the generator ran.
    pub elapsed_s: f64,
    pub offered_pps: f64,
    /// p1's rx_packets counter over the traffic (what reached the DUT's
    /// interface).
    pub p1_rx_packets: u64,
    /// Frames the DUT says it captured: tapline's passive-1 rx_packets,
    /// tcpdump's "packets received by filter", netsniff-ng's "packets
    /// incoming"; `None` if the peer printed no statistics.
    pub captured: Option<u64>,
    /// Records in the DUT's pcap files.
    pub written: u64,
    /// Of them, the generator's frames (all of them on this lab).
    pub written_ours: u64,
    pub files: usize,
    pub file_bytes: u64,
    /// Files cut inside a record (counted up to the cut).
    pub truncated_files: usize,
    /// Drops the DUT counted itself (sum of `drop_detail`).
    pub dut_drops: u64,
    /// The DUT's drop counters (and, for tapline, its recorder's
    /// `packets_written` as a check on the file count).
    pub drop_detail: BTreeMap<String, u64>,
    /// `written / sent`.
    pub written_ratio: f64,
    /// `written / elapsed_s`.
    pub written_pps: f64,
    /// Share of CPU time stolen by the hypervisor during the traffic.
    pub steal_ratio: f64,
    /// tapline's XDP mode on passive-1 as it reported it (e.g.
    /// `native-copy`); `None` for the peers.
    pub xdp_mode: Option<String>,
}

/// Medians of one capture DUT.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    pub dut: CaptureDut,
    /// [`MEASURED`] or [`SKIPPED`].
    pub status: String,
    pub version: Option<String>,
    pub median_written_pps: Option<f64>,
    pub median_written_ratio: Option<f64>,
    pub median_captured_ratio: Option<f64>,
    pub median_offered_pps: Option<f64>,
    /// `written / sent` of each repetition.
    pub written_ratio_samples: Vec<f64>,
}

/// `ours / peer` of a per-repetition metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub name: String,
    /// [`MEASURED`] or [`SKIPPED`] (a peer that is not installed).
    pub status: String,
    /// median(ours) / median(peer).
    pub of_medians: Option<f64>,
    /// Median over repetitions of ours / peer within the repetition.
    pub median_of_per_rep: Option<f64>,
    pub per_rep: Vec<f64>,
    /// Which side of `of_medians` is only a lower bound.
    pub of_medians_bounds: LowerBounds,
    /// Which side of `median_of_per_rep` is only a lower bound.
    pub median_of_per_rep_bounds: LowerBounds,
}

/// Which sides of a ratio are only lower bounds: set for a zero-drop
/// ratio whose median would rise were the searches that passed at their
/// highest rate searched higher; never set for the other ratios, whose
/// values are measured, not searched for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LowerBounds {
    /// `ours` is a lower bound: the ratio is at least the value shown.
    pub ours: bool,
    /// `peer` is a lower bound: the ratio is at most the value shown.
    pub peer: bool,
}

/// Whether the median of `values` (each with whether it is only a lower
/// bound) would change were the bounded values higher: if so it is only a
/// lower bound too. False for no values.
fn median_is_lower_bound(values: &[(f64, bool)]) -> bool {
    // Far above any rate, yet finite so that `median` keeps it.
    const RAISED: f64 = f64::MAX / 4.0;
    let m = |raise: bool| {
        median(
            &values
                .iter()
                .map(|&(v, bounded)| if raise && bounded { RAISED } else { v })
                .collect::<Vec<_>>(),
        )
    };
    !values.is_empty() && m(true) != m(false)
}

/// The two ratios of `ours` against `peer`, from `(rep, value)` samples:
/// the ratio of the medians, and the median of the per-repetition ratios
/// (repetitions missing on either side, or where `peer` is 0, are left
/// out). `None` where there is nothing to divide.
pub fn ratio_of(ours: &[(u32, f64)], peer: &[(u32, f64)]) -> (Option<f64>, Option<f64>, Vec<f64>) {
    let values = |s: &[(u32, f64)]| s.iter().map(|&(_, v)| v).collect::<Vec<_>>();
    let (a, b) = (median(&values(ours)), median(&values(peer)));
    let of_medians = (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b);
    let per_rep: Vec<f64> = ours
        .iter()
        .filter_map(|&(rep, x)| {
            let &(_, y) = peer.iter().find(|&&(r, _)| r == rep)?;
            (y > 0.0).then(|| x / y)
        })
        .collect();
    let m = median(&per_rep);
    (of_medians, m.is_finite().then_some(m), per_rep)
}

/// One fan-out measurement.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSample {
    /// Output groups (group k: one member, `mk`, no filter).
    pub groups: u8,
    pub rep: u32,
    pub sent: u64,
    pub elapsed_s: f64,
    pub offered_pps: f64,
    /// passive-1 rx_packets.
    pub captured: u64,
    /// `captured / sent`.
    pub capture_ratio: f64,
    /// `captured / elapsed_s`.
    pub captured_pps: f64,
    /// Frames transmitted to members, summed over members.
    pub delivered: u64,
    /// `delivered / (sent x groups)`; `None` without groups.
    pub delivery_ratio: Option<f64>,
    /// Member drops by reason, summed over members.
    pub member_drops: BTreeMap<String, u64>,
    /// passive-1's XDP socket statistics (XDP_STATISTICS).
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
    pub steal_ratio: f64,
    /// tapline's XDP mode on passive-1 as it reported it.
    pub xdp_mode: Option<String>,
}

impl FanoutSample {
    /// Frames the kernel dropped on the way into the socket: no buffer
    /// (`rx_dropped`) or a full RX ring (`rx_ring_full`).
    pub fn kernel_drops(&self) -> u64 {
        self.kernel_rx_dropped + self.kernel_rx_ring_full
    }
}

/// Medians of one group count.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSummary {
    pub groups: u8,
    pub median_capture_ratio: f64,
    pub median_delivery_ratio: Option<f64>,
    pub median_captured_pps: f64,
    pub median_kernel_drops: f64,
    pub median_fill_ring_empty: f64,
    /// Captured frames per second against capture alone (0 groups).
    pub vs_alone: Option<Ratio>,
}

/// Why a zero-drop trial ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialPurpose {
    /// The unpaced run that sets the highest rate searched.
    GeneratorProbe,
    /// A paced trial of the binary search.
    Search,
}

/// One zero-drop trial: the DUT started fresh, paced traffic, its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroDropTrial {
    pub dut: ZeroDropDut,
    pub rep: u32,
    pub purpose: TrialPurpose,
    /// The paced rate aimed at, frames per second ([`PROBE_PPS`] for the
    /// probe: effectively unpaced).
    pub target_pps: u64,
    /// Frames the generator sent (completed by the kernel on t0).
    pub sent: u64,
    /// `sent` over the seconds the generator ran.
    pub offered_pps: f64,
    /// Frames the pacing skipped because the generator was held up (its
    /// shortfall against `target_pps`).
    pub pacing_skipped: u64,
    /// p1's rx_packets counter over the traffic.
    pub p1_rx_packets: u64,
    /// What the verdict counted: passive-1 rx_packets (tapline), the
    /// reader's `received`, or the generator's records in the files.
    pub counted: u64,
    /// Drops the kernel reported for the DUT's socket (XDP rx_dropped +
    /// rx_ring_full for tapline, the reader's `kernel_drops`,
    /// tcpdump's "dropped by kernel"; 0 where the DUT says nothing).
    pub kernel_drops: u64,
    /// Frames lost by [`ZeroDropDut::frames_lost`].
    pub lost: u64,
    /// No frame lost (and at least one sent).
    pub passed: bool,
    /// pcap files the DUT wrote (0 for the DUTs judged by counters).
    pub files: usize,
    /// Files cut inside a record.
    pub truncated_files: usize,
    /// The DUT's own counters, as in the capture part.
    pub drop_detail: BTreeMap<String, u64>,
    /// tapline's XDP mode on passive-1 as it reported it; `None` for the
    /// other DUTs.
    pub xdp_mode: Option<String>,
    pub steal_ratio: f64,
}

impl ZeroDropTrial {
    /// The trial as [`search::search`] judges it: received = sent - lost.
    pub fn search_trial(&self) -> Trial {
        Trial {
            rate_pps: self.target_pps,
            sent: self.sent,
            received: self.sent - self.lost.min(self.sent),
            offered_pps: self.offered_pps,
        }
    }
}

/// One zero-drop search: one DUT in one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroDropSample {
    pub dut: ZeroDropDut,
    pub rep: u32,
    /// The highest rate searched and where it came from.
    pub hi_pps: u64,
    pub hi_source: &'static str,
    pub resolution_pps: u64,
    /// The highest rate that passed; `None` if even the lowest failed.
    pub rate_pps: Option<u64>,
    pub outcome: Outcome,
    /// The lowest failing rate above `rate_pps`, when one is known.
    pub failed_at_pps: Option<u64>,
    /// Whether the bounds met the resolution within the trial budget.
    pub converged: bool,
    /// The generator's achieved rate in the trial at `rate_pps`.
    pub offered_at_rate_pps: Option<f64>,
    /// Every trial of the search, the probe first, in order.
    pub trials: Vec<ZeroDropTrial>,
}

impl ZeroDropSample {
    /// The rate for medians and ratios: a search whose lowest rate failed
    /// counts as 0.
    pub fn rate_value(&self) -> f64 {
        self.rate_pps.map_or(0.0, |r| r as f64)
    }

    /// The trial that judged `rate_pps`: the search trial at that target,
    /// or the probe when `rate_pps` is the probed highest rate.
    pub fn trial_at(&self, rate_pps: u64) -> Option<&ZeroDropTrial> {
        self.trials.iter().find(|t| match t.purpose {
            TrialPurpose::Search => t.target_pps == rate_pps,
            TrialPurpose::GeneratorProbe => rate_pps == self.hi_pps,
        })
    }

    /// The generator's achieved rate at the zero-drop rate, for medians
    /// and ratios (0, like [`Self::rate_value`], without a rate).
    pub fn offered_value(&self) -> f64 {
        self.offered_at_rate_pps.unwrap_or(0.0)
    }
}

/// Medians of one zero-drop DUT.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroDropSummary {
    pub dut: ZeroDropDut,
    /// [`MEASURED`] or [`SKIPPED`].
    pub status: String,
    pub version: Option<String>,
    /// Median of the repetitions' zero-drop rates (a repetition below the
    /// lowest rate counts as 0).
    pub median_rate_pps: Option<f64>,
    /// Median of the generator's achieved rates at those rates (0 for a
    /// repetition below the lowest rate).
    pub median_offered_pps: Option<f64>,
    /// Median of the highest rates searched.
    pub median_hi_pps: Option<f64>,
    /// Repetitions whose trial at the highest rate passed (the zero-drop
    /// rate is then a lower bound, set by the generator or the option).
    pub at_hi_reps: usize,
    /// `median_rate_pps` is only a lower bound: it would rise were the
    /// repetitions at their highest rate searched higher.
    pub median_rate_at_hi: bool,
    /// Repetitions in which even the lowest rate failed.
    pub below_lo_reps: usize,
    /// Repetitions whose search ran out of trials before the resolution.
    pub unconverged_reps: usize,
    /// tapline's XDP modes over the trials (empty for the other DUTs).
    pub xdp_modes: Vec<String>,
    /// Trials over every repetition, probes included.
    pub trials: usize,
}

/// A complete result, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct PassiveResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: PassiveConfig,
    pub generator: String,
    /// Version line of each DUT's program (tapline always), or [`SKIPPED`].
    pub versions: BTreeMap<String, String>,
    pub capture_samples: Vec<CaptureSample>,
    pub capture_summary: Vec<CaptureSummary>,
    /// tapline / each peer, of written frames per second.
    pub capture_ratios: Vec<Ratio>,
    pub fanout_samples: Vec<FanoutSample>,
    pub fanout_summary: Vec<FanoutSummary>,
    /// One search per zero-drop DUT and repetition, with its trial log.
    pub zero_drop_samples: Vec<ZeroDropSample>,
    pub zero_drop_summary: Vec<ZeroDropSummary>,
    /// tapline / the AF_PACKET reader and tapline's recorder / each disk
    /// peer, of zero-drop rates and of the generator's achieved rates at
    /// them (`, offered`).
    pub zero_drop_ratios: Vec<Ratio>,
}

/// Records in a pcap stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapCount {
    pub records: u64,
    /// Records whose frame the generator built (`is_ours`).
    pub ours: u64,
    /// The stream ended inside the file header or a record.
    pub truncated: bool,
}

/// Counts the records of a pcap stream (either magic, either byte order),
/// and those built by `sender`. A stream cut inside a record (a capture
/// killed mid-write) counts the records before the cut and says so; an
/// empty stream or one cut inside the file header counts nothing.
pub fn count_pcap(inp: impl Read, sender: u8) -> io::Result<PcapCount> {
    let mut count = PcapCount::default();
    let mut r = match PcapReader::new(inp) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            count.truncated = true;
            return Ok(count);
        }
        Err(e) => return Err(e),
    };
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                count.records += 1;
                count.ours += u64::from(is_ours(&rec.data, sender));
            }
            Ok(None) => return Ok(count),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                count.truncated = true;
                return Ok(count);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The pcap files in a directory, counted.
#[derive(Debug, Clone, Copy, Default)]
struct DirCount {
    records: u64,
    ours: u64,
    files: usize,
    bytes: u64,
    truncated_files: usize,
}

/// Counts every `*.pcap` and `*.pcap.part` file in `dir`.
fn count_dir(dir: &Path) -> Result<DirCount> {
    let mut total = DirCount::default();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            p.is_file() && (n.ends_with(".pcap") || n.ends_with(".pcap.part"))
        })
        .collect();
    paths.sort();
    for p in paths {
        let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        total.bytes += f.metadata()?.len();
        let c = count_pcap(BufReader::with_capacity(PCAP_READ_BUF_BYTES, f), SENDER)
            .with_context(|| format!("reading {}", p.display()))?;
        total.records += c.records;
        total.ours += c.ours;
        total.files += 1;
        total.truncated_files += usize::from(c.truncated);
    }
    Ok(total)
}

/// What a peer printed about its capture when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames its socket received (tcpdump "packets received by filter",
    /// netsniff-ng "packets incoming").
    pub received: Option<u64>,
    /// Its drop counters, by the label it printed.
    pub drops: BTreeMap<String, u64>,
}

/// Parses the statistics tcpdump (`N packets dropped by kernel`) or
/// netsniff-ng (`N  packets failed filter (out of space)`) print on exit.
pub fn parse_peer_stats(dut: CaptureDut, lines: &[String]) -> PeerStats {
    let mut s = PeerStats::default();
    for line in lines {
        let line = line.trim();
        let Some((n, label)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let label = label.trim();
        match dut {
            CaptureDut::Tcpdump => {
                if label == "packets received by filter" {
                    s.received = Some(n);
                } else if let Some(what) = label.strip_prefix("packets dropped by ") {
                    s.drops.insert(format!("dropped by {what}"), n);
                }
            }
            CaptureDut::NetsniffNg => {
                if label.starts_with("packets incoming") {
                    s.received = Some(n);
                } else if label == "packets failed filter (out of space)" {
                    s.drops.insert("out of space".into(), n);
                }
            }
            CaptureDut::Tapline => {}
        }
    }
    s
}

/// Whether `line` is the reader's JSON event `event` (`{"event":"ready"}`).
fn is_reader_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// The reader's `{"event":"done",...}` line among its output, if any.
pub fn parse_reader_done(lines: &[String]) -> Option<ReadCounts> {
    lines
        .iter()
        .rev()
        .find(|l| is_reader_event(l, "done"))
        .and_then(|l| serde_json::from_str(l).ok())
}

/// A peer capturing in the lab's dut namespace, its output collected.
struct PeerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl PeerProcess {
    /// Starts `argv` in `ns` and waits for a line containing `ready`.
    fn start(ns: &Netns, argv: &[String], ready: &str) -> Result<PeerProcess> {
        PeerProcess::start_until(ns, argv, ready, |l| l.contains(ready))
    }

    /// Starts `argv` in `ns` and waits for a line that `is_ready`
    /// (`ready` describes it in errors).
    fn start_until(
        ns: &Netns,
        argv: &[String],
        ready: &str,
        is_ready: impl Fn(&str) -> bool,
    ) -> Result<PeerProcess> {
        let mut child = ns
            .command(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", argv.join(" ")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let readers = [
            Box::new(out) as Box<dyn Read + Send>,
            Box::new(err) as Box<dyn Read + Send>,
        ]
        .into_iter()
        .map(|stream| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("peer lines").push(line);
                }
            })
        })
        .collect();
        let mut p = PeerProcess {
            child,
            lines,
            readers,
        };
        let deadline = Instant::now() + PEER_READY_TIMEOUT;
        loop {
            if p.lines().iter().any(|l| is_ready(l)) {
                return Ok(p);
            }
            if let Some(status) = p.child.try_wait()? {
                let (_, lines) = p.finish(status);
                bail!(
                    "{} exited ({status}) before it was capturing:\n{}",
                    argv[0],
                    lines.join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {ready:?} within {PEER_READY_TIMEOUT:?}:\n{}",
                    argv[0],
                    p.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("peer lines").clone()
    }

    /// Sends `signal` (SIGINT, as ^C, makes both capture peers flush their
    /// file and print statistics; SIGTERM makes the reader print its
    /// counters), then waits; SIGKILL and an error after
    /// [`PEER_STOP_TIMEOUT`].
    fn stop(mut self, signal: Signal) -> Result<(ExitStatus, Vec<String>)> {
        // `ip netns exec` execs the program: the child's pid is the peer's.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .with_context(|| format!("sending {signal} to the capture peer"))?;
        let (status, killed) = wait_or_kill(&mut self.child, PEER_STOP_TIMEOUT)?;
        if killed {
            bail!(
                "capture peer did not exit within {PEER_STOP_TIMEOUT:?} of {signal}:\n{}",
                self.lines().join("\n")
            );
        }
        Ok(self.finish(status))
    }

    fn finish(&mut self, status: ExitStatus) -> (ExitStatus, Vec<String>) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.lines())
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The generator's load in one measurement.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Paced rate; `None`: as fast as the generator can.
    rate_pps: Option<u64>,
    seconds: f64,
}

impl Load {
    /// The capture and fan-out parts' load (`--rate`, `--seconds`).
    fn of(cfg: &PassiveConfig) -> Load {
        Load {
            rate_pps: cfg.rate_pps,
            seconds: cfg.seconds,
        }
    }
}

/// The traffic of one measurement.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    gen: GenReport,
    p1_rx_packets: u64,
    steal_ratio: f64,
}

/// Sends `load` from t0 and reads p1's counter around it.
fn run_traffic(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<Traffic> {
    let gc = GenConfig {
        ifname: ifs::TAP.into(),
        sizes: FrameSizes::Fixed(cfg.frame_len),
        flows: cfg.flows,
        rate_pps: load.rate_pps,
        duration: Duration::from_secs_f64(load.seconds),
        count: None,
        sender: SENDER,
        stream: 0,
    };
    let before = lab::rx_packets(&lab.dut, ifs::PASSIVE_1)?;
    let cpu = CpuTimes::now();
    let gen = lab
        .tap()
        .enter(move || xdp_generate(&gc, &AtomicBool::new(false)))??;
    let steal_ratio = CpuTimes::now().steal_since(&cpu);
    std::thread::sleep(SETTLE);
    let after = lab::rx_packets(&lab.dut, ifs::PASSIVE_1)?;
    Ok(Traffic {
        gen,
        p1_rx_packets: after.saturating_sub(before),
        steal_ratio,
    })
}

/// `[xdp]` with the extra keys, or nothing.
fn xdp_section(cfg: &PassiveConfig) -> String {
    if cfg.xdp_keys.trim().is_empty() {
        String::new()
    } else {
        format!("[xdp]\n{}\n\n", cfg.xdp_keys)
    }
}

/// The tapline DUT's recorder, writing into `dir`.
pub fn recorder_section(dir: &Path) -> String {
    format!(
        "[[recorder]]\nname = \"{RECORDER_NAME}\"\ndir = \"{}\"\nrotate_size = \"{RECORDER_ROTATE_SIZE}\"\n\
         rotate_interval_s = 0\nqueue_size = \"{RECORDER_QUEUE_SIZE}\"\n",
        dir.display()
    )
}

/// The member interface of output group `k` (in the dut namespace).
pub fn member_name(k: u8) -> String {
    format!("m{k}")
}

/// `groups` output groups: group `g{k}` has one member, `m{k}`, no filter.
pub fn fanout_section(groups: u8) -> String {
    (0..groups)
        .map(|k| {
            format!(
                "[[output_group]]\nname = \"g{k}\"\nmembers = [\"{}\"]\n\n",
                member_name(k)
            )
        })
        .collect()
}

/// passive-1's queues in a snapshot, summed: (rx_packets, rx_dropped,
/// rx_ring_full, fill_ring_empty).
fn passive_totals(s: &Snapshot) -> (u64, u64, u64, u64) {
    s.queues
        .iter()
        .filter(|q| q.info.role == PASSIVE_ROLE)
        .fold((0, 0, 0, 0), |(a, b, c, d), q| {
            (
                a + q.rx_packets,
                b + q.kernel_rx_dropped,
                c + q.kernel_rx_ring_full,
                d + q.kernel_rx_fill_ring_empty,
            )
        })
}

/// tapline running in the lab's dut namespace.
struct TaplineRun {
    process: DataplaneProcess,
    /// Its stats segment, mapped: the mapping outlives the run's files, so
    /// the final counters can be read after the stop.
    segment: SegmentReader,
    /// passive-1's XDP mode from its ready line.
    xdp_mode: Option<String>,
}

/// Starts tapline in the dut namespace with `extra` config sections and
/// maps its stats segment.
fn start_tapline(lab: &Lab, cfg: &PassiveConfig, extra: &str) -> Result<TaplineRun> {
    let config = lab_config(
        Some(ifs::PASSIVE_1),
        None,
        &cfg.dataplane_keys,
        &format!("{}{extra}", xdp_section(cfg)),
    );
    let process = DataplaneProcess::start(
        &lab.dut,
        &config,
        &StartOptions {
            expect_ready: true,
            ..Default::default()
        },
    )?;
    let segment =
        SegmentReader::open(process.state_dir()).context("opening tapline's stats segment")?;
    let xdp_mode = obtained_mode(&process.lines(), PASSIVE_ROLE);
    Ok(TaplineRun {
        process,
        segment,
        xdp_mode,
    })
}

impl TaplineRun {
    /// Stops tapline and returns the final snapshot of its segment.
    fn stop(self) -> Result<Snapshot> {
        let f = self.process.stop()?;
        ensure!(
            f.status.success(),
            "tapline-dataplane exited with {}:\n{}",
            f.status,
            f.lines.join("\n")
        );
        Ok(self.segment.snapshot())
    }
}

/// What a capture DUT reported about itself.
struct DutReport {
    traffic: Traffic,
    captured: Option<u64>,
    /// Frames the kernel dropped for the DUT's socket, as the DUT reports
    /// them (0 where it says nothing).
    kernel_drops: u64,
    drop_detail: BTreeMap<String, u64>,
    /// Counters in `drop_detail` that are not drops.
    not_drops: &'static [&'static str],
    xdp_mode: Option<String>,
}

impl DutReport {
    /// The sum of the drop counters in `drop_detail`.
    fn dut_drops(&self) -> u64 {
        self.drop_detail
            .iter()
            .filter(|(k, _)| !self.not_drops.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Runs `load` through a DUT and, unless the traffic failed, gives it
/// `grace_s` to drain before the caller stops it.
fn traffic_then_grace(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<Traffic> {
    let traffic = run_traffic(lab, cfg, load);
    if traffic.is_ok() {
        std::thread::sleep(Duration::from_secs_f64(cfg.grace_s));
    }
    traffic
}

/// tapline with a recorder writing into `dir`.
fn capture_tapline(lab: &Lab, cfg: &PassiveConfig, load: Load, dir: &Path) -> Result<DutReport> {
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
fn capture_tapline_alone(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<DutReport> {
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
fn ensure_no_xdp(lab: &Lab) -> Result<()> {
    ensure!(
        !lab::link_state(&lab.dut, ifs::PASSIVE_1)?.xdp_attached,
        "an XDP program is still attached to p1 (left by the previous DUT)"
    );
    Ok(())
}

fn capture_peer(
    lab: &Lab,
    dut: CaptureDut,
    cfg: &PassiveConfig,
    load: Load,
    dir: &Path,
) -> Result<DutReport> {
    ensure_no_xdp(lab)?;
    let (argv, ready) = dut.peer_command(&dir.join(format!("{}.pcap", dut.name())));
    let peer = PeerProcess::start(&lab.dut, &argv, ready)?;
    std::thread::sleep(PEER_SETTLE);
    let traffic = traffic_then_grace(lab, cfg, load);
    let stopped = peer.stop(Signal::SIGINT);
    let ((status, lines), traffic) = (stopped?, traffic?);
    ensure!(
        status.success(),
        "{} exited with {status}:\n{}",
        argv.join(" "),
        lines.join("\n")
    );
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

/// The reader's command line: `tapline-bench peer af-packet-read` on p1.
fn reader_command() -> Result<Vec<String>> {
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
fn reader_version() -> Result<String> {
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
fn capture_reader(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<DutReport> {
    ensure_no_xdp(lab)?;
    let argv = reader_command()?;
    let peer = PeerProcess::start_until(&lab.dut, &argv, r#"{"event":"ready"}"#, |l| {
        is_reader_event(l, "ready")
    })?;
    std::thread::sleep(PEER_SETTLE);
    let traffic = traffic_then_grace(lab, cfg, load);
    let stopped = peer.stop(Signal::SIGTERM);
    let ((status, lines), traffic) = (stopped?, traffic?);
    ensure!(
        status.success(),
        "{} exited with {status}:\n{}",
        argv.join(" "),
        lines.join("\n")
    );
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
fn free_bytes(dir: &Path) -> Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Runs `load` through capture DUT `dut` writing into a fresh `dir`, and
/// counts the files (deleted afterwards unless `--keep-files`).
fn capture_to_files(
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

fn measure_capture(
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

fn measure_fanout(lab: &Lab, groups: u8, rep: u32, cfg: &PassiveConfig) -> Result<FanoutSample> {
    let t = start_tapline(lab, cfg, &fanout_section(groups))
        .with_context(|| format!("starting tapline with {groups} output groups"))?;
    let xdp_mode = t.xdp_mode.clone();
    let traffic = run_traffic(lab, cfg, Load::of(cfg));
    let snap = t.stop();
    let (traffic, snap) = (traffic?, snap?);
    let (captured, rx_dropped, ring_full, fill_empty) = passive_totals(&snap);
    let members: Vec<_> = snap
        .outputs
        .iter()
        .filter(|o| o.info.kind == OutputKind::Member)
        .collect();
    ensure!(
        members.len() == usize::from(groups),
        "{} members in tapline's stats segment, {groups} configured",
        members.len()
    );
    let delivered: u64 = members.iter().map(|o| o.packets).sum();
    let member_drops = OutputDropReason::ALL
        .iter()
        .map(|&r| {
            let n = members.iter().map(|o| o.drops[r as usize]).sum();
            (r.name().to_string(), n)
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    let secs = traffic.gen.elapsed.as_secs_f64();
    let sent = traffic.gen.sent;
    let per = |x: u64, of: u64| if of > 0 { x as f64 / of as f64 } else { 0.0 };
    Ok(FanoutSample {
        groups,
        rep,
        sent,
        elapsed_s: secs,
        offered_pps: sent as f64 / secs,
        captured,
        capture_ratio: per(captured, sent),
        captured_pps: captured as f64 / secs,
        delivered,
        delivery_ratio: (groups > 0).then(|| per(delivered, sent * u64::from(groups))),
        member_drops,
        kernel_rx_dropped: rx_dropped,
        kernel_rx_ring_full: ring_full,
        kernel_fill_ring_empty: fill_empty,
        steal_ratio: traffic.steal_ratio,
        xdp_mode,
    })
}

/// Which trial of which search: names the capture directory of a trial.
#[derive(Debug, Clone, Copy)]
struct TrialId {
    dut: ZeroDropDut,
    rep: u32,
    index: usize,
    purpose: TrialPurpose,
}

/// One zero-drop trial: `dut` started fresh, `target_pps` for
/// `--zero-drop-trial-seconds`, the grace, the stop, the verdict.
fn zero_drop_trial(
    lab: &Lab,
    cfg: &PassiveConfig,
    id: TrialId,
    target_pps: u64,
    run_dir: &Path,
) -> Result<ZeroDropTrial> {
    let load = Load {
        rate_pps: Some(target_pps),
        seconds: cfg.zero_drop.trial_seconds,
    };
    let (report, files) = match id.dut.writes_files() {
        Some(capture) => {
            let dir = run_dir.join(format!(
                "zero-drop-{}-rep{}-trial{}",
                id.dut.name(),
                id.rep,
                id.index
            ));
            let (r, c) = capture_to_files(lab, capture, cfg, load, &dir)?;
            (r, Some(c))
        }
        None if id.dut == ZeroDropDut::Tapline => (capture_tapline_alone(lab, cfg, load)?, None),
        None => (capture_reader(lab, cfg, load)?, None),
    };
    let counted = match files {
        Some(c) => c.ours,
        None => report
            .captured
            .with_context(|| format!("{} reported no received count", id.dut.name()))?,
    };
    let sent = report.traffic.gen.sent;
    let lost = id.dut.frames_lost(sent, counted, report.kernel_drops);
    let files = files.unwrap_or_default();
    Ok(ZeroDropTrial {
        dut: id.dut,
        rep: id.rep,
        purpose: id.purpose,
        target_pps,
        sent,
        offered_pps: report.traffic.gen.pps(),
        pacing_skipped: report.traffic.gen.pacing_skipped,
        p1_rx_packets: report.traffic.p1_rx_packets,
        counted,
        kernel_drops: report.kernel_drops,
        lost,
        passed: sent > 0 && lost == 0,
        files: files.files,
        truncated_files: files.truncated_files,
        drop_detail: report.drop_detail,
        xdp_mode: report.xdp_mode,
        steal_ratio: report.traffic.steal_ratio,
    })
}

/// The zero-drop search of `dut` in repetition `rep` through the lab:
/// [`zero_drop_search`] over fresh-DUT trials. `on_trial` hears of each
/// trial as it lands.
fn measure_zero_drop(
    lab: &Lab,
    cfg: &PassiveConfig,
    dut: ZeroDropDut,
    rep: u32,
    run_dir: &Path,
    on_trial: &mut dyn FnMut(&ZeroDropTrial),
) -> Result<ZeroDropSample> {
    zero_drop_search(&cfg.zero_drop, dut, rep, |purpose, rate, index| {
        let id = TrialId {
            dut,
            rep,
            index,
            purpose,
        };
        let t = zero_drop_trial(lab, cfg, id, rate, run_dir)?;
        on_trial(&t);
        Ok(t)
    })
}

/// The zero-drop search of `dut` in repetition `rep` over the trials
/// `run_trial(purpose, target_pps, index)` makes. Unless `zd.max_pps` sets
/// the highest rate, a probe at [`PROBE_PPS`] (unpaced) comes first: the
/// rate the generator achieved is the highest rate, and the probe, a trial
/// at that rate, seeds the search (a pass ends it there, a failure makes
/// it bisect below without repeating the rate paced).
pub fn zero_drop_search(
    zd: &ZeroDropConfig,
    dut: ZeroDropDut,
    rep: u32,
    mut run_trial: impl FnMut(TrialPurpose, u64, usize) -> Result<ZeroDropTrial>,
) -> Result<ZeroDropSample> {
    let mut trials: Vec<ZeroDropTrial> = Vec::new();
    let (hi_pps, hi_source, seed) = match zd.max_pps {
        Some(m) => (m, "--zero-drop-max-pps", Vec::new()),
        None => {
            let probe = run_trial(TrialPurpose::GeneratorProbe, PROBE_PPS, 0)
                .context("probing the unpaced generator's rate")?;
            let hi = probe.offered_pps as u64;
            let seed = Trial {
                rate_pps: hi,
                ..probe.search_trial()
            };
            trials.push(probe);
            (hi, "unpaced generator", vec![seed])
        }
    };
    ensure!(
        hi_pps >= zd.min_pps,
        "the highest rate ({hi_pps} fps) is below the lowest ({} fps)",
        zd.min_pps
    );
    let resolution_pps = zd.resolution_pps(hi_pps);
    let sc = SearchConfig {
        lo: zd.min_pps,
        hi: hi_pps,
        threshold: NDR_LOSS,
        resolution_pps,
        max_trials: zd.max_trials,
    };
    let found = search::search(&sc, &seed, |rate| {
        let t = run_trial(TrialPurpose::Search, rate, trials.len())?;
        let st = t.search_trial();
        trials.push(t);
        Ok(st)
    })?;
    let mut sample = ZeroDropSample {
        dut,
        rep,
        hi_pps,
        hi_source,
        resolution_pps,
        rate_pps: found.rate_pps,
        outcome: found.outcome,
        failed_at_pps: found.failed_at_pps,
        converged: found.converged,
        offered_at_rate_pps: None,
        trials,
    };
    sample.offered_at_rate_pps = found
        .rate_pps
        .and_then(|rate| sample.trial_at(rate))
        .map(|t| t.offered_pps);
    Ok(sample)
}

/// One measurement of a repetition.
#[derive(Debug, Clone, Copy)]
enum Job {
    Capture(CaptureDut),
    Fanout(u8),
    ZeroDrop(ZeroDropDut),
}

/// The measurements of repetition `rep`: the capture DUTs, the group
/// counts, then the zero-drop searches, each list rotated by `rep` so no
/// DUT always runs first.
fn schedule(duts: &[CaptureDut], groups: &[u8], zero_drop: &[ZeroDropDut], rep: u32) -> Vec<Job> {
    let rotated = |n: usize| (0..n).map(move |k| (k + rep as usize) % n);
    rotated(duts.len())
        .map(|i| Job::Capture(duts[i]))
        .chain(rotated(groups.len()).map(|i| Job::Fanout(groups[i])))
        .chain(rotated(zero_drop.len()).map(|i| Job::ZeroDrop(zero_drop[i])))
        .collect()
}

/// What a measurement produced, for progress lines.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Capture(&'a CaptureSample),
    Fanout(&'a FanoutSample),
    /// A zero-drop trial. Its search is still running, so the index is
    /// the number of measurements finished before it (one less than the
    /// search's own index).
    ZeroDropTrial(&'a ZeroDropTrial),
    /// A finished zero-drop search.
    ZeroDrop(&'a ZeroDropSample),
    Skipped(CaptureDut),
}

/// Runs the benchmark. `progress` hears of each measurement as it lands,
/// with its index and the total.
pub fn run(
    cfg: &PassiveConfig,
    mut progress: impl FnMut(Progress, usize, usize),
) -> Result<PassiveResult> {
    cfg.validate()?;
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    let programs: BTreeSet<CaptureDut> = std::iter::once(CaptureDut::Tapline)
        .chain(cfg.duts.iter().copied())
        .chain(cfg.zero_drop.duts.iter().filter_map(|d| d.program()))
        .collect();
    let mut versions = BTreeMap::new();
    for d in programs {
        let v = dut_version(d)?;
        match v {
            None if d == CaptureDut::Tapline => {
                bail!("tapline-dataplane did not run: build it first")
            }
            None => progress(Progress::Skipped(d), 0, 0),
            Some(_) => {}
        }
        versions.insert(d, v);
    }
    let reader = if cfg.zero_drop.duts.contains(&ZeroDropDut::AfPacketRead) {
        Some(reader_version()?)
    } else {
        None
    };
    let zero_drop_version = |d: ZeroDropDut| match d.program() {
        Some(p) => versions[&p].clone(),
        None => reader.clone(),
    };
    let measured: Vec<CaptureDut> = cfg
        .duts
        .iter()
        .copied()
        .filter(|d| versions[d].is_some())
        .collect();
    let zero_drop_measured: Vec<ZeroDropDut> = cfg
        .zero_drop
        .duts
        .iter()
        .copied()
        .filter(|&d| zero_drop_version(d).is_some())
        .collect();
    let mut lab = Lab::build(&lab::unique_prefix(), Scenario::Passive)?;
    let max_groups = cfg.groups.iter().copied().max().unwrap_or(0);
    let members: Vec<String> = (0..max_groups).map(member_name).collect();
    lab.add_sensors(&members.iter().map(String::as_str).collect::<Vec<_>>())?;
    let run_dir = cfg.dir.join(&lab.prefix);
    let total = cfg.reps as usize * (measured.len() + cfg.groups.len() + zero_drop_measured.len());
    let mut capture_samples = Vec::new();
    let mut fanout_samples = Vec::new();
    let mut zero_drop_samples = Vec::new();
    let result = (|| -> Result<()> {
        for rep in 0..cfg.reps {
            for job in schedule(&measured, &cfg.groups, &zero_drop_measured, rep) {
                let done =
                    capture_samples.len() + fanout_samples.len() + zero_drop_samples.len() + 1;
                match job {
                    Job::Capture(d) => {
                        let s = measure_capture(&lab, d, rep, cfg, &run_dir)?;
                        progress(Progress::Capture(&s), done, total);
                        capture_samples.push(s);
                    }
                    Job::Fanout(g) => {
                        let s = measure_fanout(&lab, g, rep, cfg)?;
                        progress(Progress::Fanout(&s), done, total);
                        fanout_samples.push(s);
                    }
                    Job::ZeroDrop(d) => {
                        let s = measure_zero_drop(&lab, cfg, d, rep, &run_dir, &mut |t| {
                            progress(Progress::ZeroDropTrial(t), done - 1, total)
                        })
                        .with_context(|| format!("zero-drop search of {} rep {rep}", d.name()))?;
                        progress(Progress::ZeroDrop(&s), done, total);
                        zero_drop_samples.push(s);
                    }
                }
            }
        }
        Ok(())
    })();
    if !cfg.keep_files {
        // Empty by now unless a capture failed half-way.
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result?;
    drop(lab);

    let capture_summary = cfg
        .duts
        .iter()
        .map(|&d| capture_summary(d, versions[&d].clone(), &capture_samples))
        .collect();
    let capture_ratios = if cfg.duts.contains(&CaptureDut::Tapline) {
        cfg.duts
            .iter()
            .filter(|&&d| d != CaptureDut::Tapline)
            .map(|&peer| capture_ratio(peer, versions[&peer].is_some(), &capture_samples))
            .collect()
    } else {
        Vec::new()
    };
    let fanout_summary = cfg
        .groups
        .iter()
        .map(|&g| fanout_summary(g, &fanout_samples))
        .collect();
    let zero_drop_summary = cfg
        .zero_drop
        .duts
        .iter()
        .map(|&d| zero_drop_summary(d, zero_drop_version(d), &zero_drop_samples))
        .collect();
    let zero_drop_ratios = ZeroDropDut::RATIOS
        .iter()
        .filter(|(ours, peer)| {
            cfg.zero_drop.duts.contains(ours) && cfg.zero_drop.duts.contains(peer)
        })
        .flat_map(|&(ours, peer)| {
            let installed = zero_drop_version(ours).is_some() && zero_drop_version(peer).is_some();
            [false, true]
                .map(|offered| zero_drop_ratio(ours, peer, offered, installed, &zero_drop_samples))
        })
        .collect();
    let mut version_names: BTreeMap<String, String> = versions
        .iter()
        .map(|(d, v)| (d.name().to_string(), v.clone().unwrap_or(SKIPPED.into())))
        .collect();
    if let Some(r) = &reader {
        version_names.insert(ZeroDropDut::AfPacketRead.name().to_string(), r.clone());
    }
    Ok(PassiveResult {
        benchmark: "passive-capture-fanout-zero-drop",
        machine: Machine::describe(),
        config: cfg.clone(),
        generator: format!(
            "tapline-bench AF_XDP TX (copy mode), one thread, {}",
            cfg.rate_pps
                .map_or("unpaced".to_string(), |r| format!("paced at {r} frames/s"))
        ),
        versions: version_names,
        capture_samples,
        capture_summary,
        capture_ratios,
        fanout_samples,
        fanout_summary,
        zero_drop_samples,
        zero_drop_summary,
        zero_drop_ratios,
    })
}

fn capture_summary(
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

fn capture_ratio(peer: CaptureDut, installed: bool, samples: &[CaptureSample]) -> Ratio {
    let name = format!("tapline / {}", peer.name());
    if !installed {
        return Ratio {
            name,
            status: SKIPPED.into(),
            of_medians: None,
            median_of_per_rep: None,
            per_rep: Vec::new(),
            of_medians_bounds: LowerBounds::default(),
            median_of_per_rep_bounds: LowerBounds::default(),
        };
    }
    let of = |d: CaptureDut| -> Vec<(u32, f64)> {
        samples
            .iter()
            .filter(|s| s.dut == d)
            .map(|s| (s.rep, s.written_pps))
            .collect()
    };
    let (of_medians, median_of_per_rep, per_rep) = ratio_of(&of(CaptureDut::Tapline), &of(peer));
    Ratio {
        name,
        status: MEASURED.into(),
        of_medians,
        median_of_per_rep,
        per_rep,
        of_medians_bounds: LowerBounds::default(),
        median_of_per_rep_bounds: LowerBounds::default(),
    }
}

fn fanout_summary(groups: u8, samples: &[FanoutSample]) -> FanoutSummary {
    let of = |g: u8| -> Vec<&FanoutSample> { samples.iter().filter(|s| s.groups == g).collect() };
    let mine = of(groups);
    let med =
        |f: &dyn Fn(&FanoutSample) -> f64| median(&mine.iter().map(|s| f(s)).collect::<Vec<_>>());
    let pps = |v: &[&FanoutSample]| -> Vec<(u32, f64)> {
        v.iter().map(|s| (s.rep, s.captured_pps)).collect()
    };
    let alone = of(0);
    let vs_alone = (groups > 0 && !alone.is_empty()).then(|| {
        let (of_medians, median_of_per_rep, per_rep) = ratio_of(&pps(&mine), &pps(&alone));
        Ratio {
            name: format!("{groups} groups / capture alone"),
            status: MEASURED.into(),
            of_medians,
            median_of_per_rep,
            per_rep,
            of_medians_bounds: LowerBounds::default(),
            median_of_per_rep_bounds: LowerBounds::default(),
        }
    });
    let delivery = median(
        &mine
            .iter()
            .filter_map(|s| s.delivery_ratio)
            .collect::<Vec<_>>(),
    );
    FanoutSummary {
        groups,
        median_capture_ratio: med(&|s| s.capture_ratio),
        median_delivery_ratio: delivery.is_finite().then_some(delivery),
        median_captured_pps: med(&|s| s.captured_pps),
        median_kernel_drops: med(&|s| s.kernel_drops() as f64),
        median_fill_ring_empty: med(&|s| s.kernel_fill_ring_empty as f64),
        vs_alone,
    }
}

fn zero_drop_summary(
    dut: ZeroDropDut,
    version: Option<String>,
    samples: &[ZeroDropSample],
) -> ZeroDropSummary {
    let mine: Vec<&ZeroDropSample> = samples.iter().filter(|s| s.dut == dut).collect();
    let med = |v: Vec<f64>| {
        let m = median(&v);
        m.is_finite().then_some(m)
    };
    let count = |f: &dyn Fn(&ZeroDropSample) -> bool| mine.iter().filter(|s| f(s)).count();
    let xdp_modes: BTreeSet<String> = mine
        .iter()
        .flat_map(|s| s.trials.iter().filter_map(|t| t.xdp_mode.clone()))
        .collect();
    ZeroDropSummary {
        dut,
        status: if version.is_some() { MEASURED } else { SKIPPED }.to_string(),
        version,
        median_rate_pps: med(mine.iter().map(|s| s.rate_value()).collect()),
        median_offered_pps: med(mine.iter().map(|s| s.offered_value()).collect()),
        median_hi_pps: med(mine.iter().map(|s| s.hi_pps as f64).collect()),
        at_hi_reps: count(&|s| s.outcome == Outcome::AtHi),
        median_rate_at_hi: median_is_lower_bound(
            &mine
                .iter()
                .map(|s| (s.rate_value(), s.outcome == Outcome::AtHi))
                .collect::<Vec<_>>(),
        ),
        below_lo_reps: count(&|s| s.outcome == Outcome::BelowLo),
        unconverged_reps: count(&|s| !s.converged),
        xdp_modes: xdp_modes.into_iter().collect(),
        trials: mine.iter().map(|s| s.trials.len()).sum(),
    }
}

/// `ours / peer` of zero-drop rates, or with `offered` of the rates the
/// generator achieved at them; [`SKIPPED`] unless both ran.
fn zero_drop_ratio(
    ours: ZeroDropDut,
    peer: ZeroDropDut,
    offered: bool,
    installed: bool,
    samples: &[ZeroDropSample],
) -> Ratio {
    let name = format!(
        "{} / {}{}",
        ours.name(),
        peer.name(),
        if offered { ", offered" } else { "" }
    );
    if !installed {
        return Ratio {
            name,
            status: SKIPPED.into(),
            of_medians: None,
            median_of_per_rep: None,
            per_rep: Vec::new(),
            of_medians_bounds: LowerBounds::default(),
            median_of_per_rep_bounds: LowerBounds::default(),
        };
    }
    // (rep, value, whether the value is only a lower bound)
    let of = |d: ZeroDropDut| -> Vec<(u32, f64, bool)> {
        samples
            .iter()
            .filter(|s| s.dut == d)
            .map(|s| {
                let v = if offered {
                    s.offered_value()
                } else {
                    s.rate_value()
                };
                (s.rep, v, s.outcome == Outcome::AtHi)
            })
            .collect()
    };
    let (a, b) = (of(ours), of(peer));
    let values = |x: &[(u32, f64, bool)]| x.iter().map(|&(r, v, _)| (r, v)).collect::<Vec<_>>();
    let (of_medians, median_of_per_rep, per_rep) = ratio_of(&values(&a), &values(&b));
    let bounded = |x: &[(u32, f64, bool)]| x.iter().map(|&(_, v, h)| (v, h)).collect::<Vec<_>>();
    // The per-repetition ratios as `ratio_of` pairs them, with whether
    // each side of each is bounded. A bounded `ours` can only raise a
    // ratio and a bounded `peer` only lower it: negating the ratios turns
    // the second into the first.
    let pairs: Vec<(f64, bool, bool)> = a
        .iter()
        .filter_map(|&(rep, x, x_hi)| {
            let &(_, y, y_hi) = b.iter().find(|&&(r, ..)| r == rep)?;
            (y > 0.0).then_some((x / y, x_hi, y_hi))
        })
        .collect();
    let per_rep_ours: Vec<(f64, bool)> = pairs.iter().map(|&(x, h, _)| (x, h)).collect();
    let per_rep_peer: Vec<(f64, bool)> = pairs.iter().map(|&(x, _, h)| (-x, h)).collect();
    Ratio {
        name,
        status: MEASURED.into(),
        of_medians,
        median_of_per_rep,
        per_rep,
        of_medians_bounds: LowerBounds {
            ours: median_is_lower_bound(&bounded(&a)),
            peer: median_is_lower_bound(&bounded(&b)),
        },
        median_of_per_rep_bounds: LowerBounds {
            ours: median_is_lower_bound(&per_rep_ours),
            peer: median_is_lower_bound(&per_rep_peer),
        },
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn mfps(x: f64) -> String {
    format!("{:.3}", x / 1e6)
}

fn times(x: f64) -> String {
    format!("{x:.2}x")
}

/// A table of `tapline / peer` ratios, both ways, with lower bounds marked
/// (see [`bounded_times`]) and skipped peers named.
fn ratio_table(what: &str, ratios: &[Ratio]) -> String {
    let rows: Vec<Vec<String>> = ratios
        .iter()
        .map(|x| {
            if x.status == SKIPPED {
                vec![x.name.clone(), SKIPPED.into(), String::new()]
            } else {
                vec![
                    x.name.clone(),
                    bounded_times(x.of_medians, x.of_medians_bounds),
                    bounded_times(x.median_of_per_rep, x.median_of_per_rep_bounds),
                ]
            }
        })
        .collect();
    markdown_table(
        &[what, "ratio of medians", "median of per-rep ratios"],
        &rows,
    )
}

/// A ratio, `>=` when only `ours` is a lower bound, `<=` when only the
/// peer is, and `bounds only` when both are (nothing follows).
fn bounded_times(x: Option<f64>, bounds: LowerBounds) -> String {
    match (x, bounds.ours, bounds.peer) {
        (None, ..) => "-".to_string(),
        (Some(_), true, true) => "bounds only".to_string(),
        (Some(x), true, false) => format!(">= {}", times(x)),
        (Some(x), false, true) => format!("<= {}", times(x)),
        (Some(x), false, false) => times(x),
    }
}

fn kfps(x: f64) -> String {
    format!("{:.1}", x / 1000.0)
}

/// A search's zero-drop rate in kfps: `>= X` when the trial at the
/// highest rate passed, `below lowest` when even the lowest failed, and
/// `(not converged)` when the trials ran out first.
pub fn zero_drop_cell(s: &ZeroDropSample) -> String {
    let rate = s
        .rate_pps
        .map_or_else(|| "-".to_string(), |r| kfps(r as f64));
    match s.outcome {
        Outcome::AtHi => format!(">= {rate}"),
        Outcome::BelowLo => "below lowest".to_string(),
        Outcome::Found if !s.converged => format!("{rate} (not converged)"),
        Outcome::Found => rate,
    }
}

/// The zero-drop part's tables.
fn zero_drop_markdown(r: &PassiveResult) -> String {
    let mut out = format!(
        "\n## Zero-drop rate\n\nHighest rate (kfps) at which every frame sent was received, in {} s trials; \
         *offered*: what the generator achieved in that trial.\n\n",
        r.config.zero_drop.trial_seconds
    );
    let rows: Vec<Vec<String>> = r
        .zero_drop_summary
        .iter()
        .map(|s| {
            if s.version.is_none() {
                let mut row = vec![s.dut.name().to_string(), SKIPPED.to_string()];
                row.resize(9, String::new());
                return row;
            }
            let reps = r.zero_drop_samples.iter().filter(|x| x.dut == s.dut);
            vec![
                s.dut.name().to_string(),
                s.version.clone().unwrap_or_default(),
                opt(s.median_rate_pps, |x| {
                    if s.median_rate_at_hi {
                        format!(">= {}", kfps(x))
                    } else {
                        kfps(x)
                    }
                }),
                opt(s.median_offered_pps, kfps),
                reps.map(zero_drop_cell).collect::<Vec<_>>().join(", "),
                opt(s.median_hi_pps, kfps),
                s.at_hi_reps.to_string(),
                if s.xdp_modes.is_empty() {
                    "-".to_string()
                } else {
                    s.xdp_modes.join(", ")
                },
                s.trials.to_string(),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "version",
            "zero-drop kfps",
            "offered kfps",
            "per rep",
            "highest kfps",
            "reps at highest",
            "XDP mode",
            "trials",
        ],
        &rows,
    );
    if !r.zero_drop_ratios.is_empty() {
        out += "\n";
        out += &ratio_table("zero-drop rate", &r.zero_drop_ratios);
    }
    let bounded = |b: LowerBounds| b.ours || b.peer;
    if r.zero_drop_summary.iter().any(|s| s.median_rate_at_hi)
        || r.zero_drop_ratios
            .iter()
            .any(|x| bounded(x.of_medians_bounds) || bounded(x.median_of_per_rep_bounds))
    {
        out += "\n`>=` on a median: repetitions passed at their highest rate, which leaves the median a lower bound. \
                On a ratio, `>=`: ours is such a bound; `<=`: the peer's is; `bounds only`: both are, and the ratio says nothing.\n";
    }
    out += "\n";
    let rows: Vec<Vec<String>> = r
        .zero_drop_samples
        .iter()
        .map(|s| {
            let failed = s.failed_at_pps.and_then(|f| s.trial_at(f));
            vec![
                s.dut.name().to_string(),
                s.rep.to_string(),
                format!("{} ({})", kfps(s.hi_pps as f64), s.hi_source),
                kfps(s.resolution_pps as f64),
                zero_drop_cell(s),
                opt(s.offered_at_rate_pps, kfps),
                s.failed_at_pps
                    .map_or_else(|| "-".to_string(), |f| kfps(f as f64)),
                failed.map_or_else(|| "-".to_string(), |t| format!("{} of {}", t.lost, t.sent)),
                s.trials.len().to_string(),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "rep",
            "highest kfps",
            "resolution kfps",
            "zero-drop kfps",
            "offered kfps",
            "failed at kfps",
            "lost there",
            "trials",
        ],
        &rows,
    );
    out
}

/// How the zero-drop part measures, for the "How measured" section.
fn zero_drop_how_measured(r: &PassiveResult) -> String {
    let z = &r.config.zero_drop;
    let hi = match z.max_pps {
        Some(m) => format!(
            "The highest rate searched is {m} frames/s (`--zero-drop-max-pps`), tried first: a pass \
             ends the search (shown as >=: the zero-drop rate is at least that)"
        ),
        None => "The highest rate searched is what the generator achieves unpaced through the DUT: \
                 each search starts with such a probe trial, which is also the search's trial at that \
                 rate. A pass ends the search (shown as >=: the zero-drop rate is at least that, and \
                 the generator, not the DUT, set the bound)"
            .to_string(),
    };
    format!(
        "\nZero-drop rate: for each DUT and repetition, a binary search (RFC 2544-style, the search of \
         `tapline-bench ndr` with a loss threshold of 0) over the rate of the paced generator (a token \
         bucket 1 ms deep) finds the highest rate at which no frame is lost. Each trial starts the DUT \
         fresh, sends {t} s at the target rate, waits {g} s, stops the DUT and judges it: \
         *tapline* (capturing p1 with no consumer) passes when passive-1 rx_packets from its stats \
         segment reaches the frames sent and its XDP socket reports no kernel drop (rx_dropped + \
         rx_ring_full); *af-packet-read* (`tapline-bench peer af-packet-read --iface p1 --batch {batch}`: \
         one AF_PACKET socket on p1 read with recvmmsg, {batch} frames per call, in the dut namespace, \
         stopped with SIGTERM) passes when the frames it received reach the frames sent and the kernel \
         reported no drop for its socket (PACKET_STATISTICS); *tapline-record*, *tcpdump* and \
         *netsniff-ng*, set up as above, pass when the generator's records in their pcap files equal \
         the frames sent. {hi}; otherwise the search bisects until the passing and failing rates are \
         within {res}% of the highest rate (at least {min} frames/s) or {max} paced trials ran (shown as \
         not converged). The lowest rate is {min} frames/s; a search that fails even there is shown as \
         below lowest and counts as 0 in medians and ratios. Each rate is tried once. The repetitions \
         interleave the DUTs (rep 0: every DUT's search, then rep 1: every DUT's search, ..., the order \
         rotated by one each time); the tables give medians over the repetitions. *offered* is the rate \
         the generator achieved in the trial at the zero-drop rate: below the target, the generator fell \
         short (the DUT and the generator share the CPUs, so a DUT that takes more CPU slows the \
         generator and is offered less); the *, offered* ratios compare those achieved rates and are the \
         ones to read when the two differ. Ratios compare tapline capturing with the AF_PACKET reader, \
         and tapline's recorder with tcpdump and netsniff-ng; between two searches that both passed at \
         their highest rate a ratio compares generator probes, not DUTs. Every trial (target, sent, \
         counted, kernel drops, lost, the DUT's counters, tapline's XDP mode) is in the JSON under \
         `zero_drop_samples`.\n",
        t = z.trial_seconds,
        g = r.config.grace_s,
        batch = READER_BATCH,
        res = z.resolution_pct,
        min = z.min_pps,
        max = z.max_trials,
    )
}

/// The result as Markdown.
pub fn markdown(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::from("# Passive capture: to disk, fan-out cost, zero-drop rate\n\n");
    out += &format!(
        "Passive lab (t0 -> p1 = passive-1), frames of {}, {} UDP flows, {}{}; {} reps, DUTs interleaved, medians. \
         Machine: {} ({} CPUs, {} GiB), kernel {}, {}. Versions: {}.\n\n",
        FrameSizes::Fixed(c.frame_len).describe(),
        c.flows,
        r.generator,
        if r.zero_drop_summary.is_empty() {
            ""
        } else {
            " (the zero-drop searches pace it)"
        },
        c.reps,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.kernel,
        r.machine.links(),
        r.versions
            .iter()
            .map(|(d, v)| format!("{d}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !r.capture_summary.is_empty() {
        out += &format!(
            "## Capture to disk\n\n{} s of traffic per measurement.\n\n",
            c.seconds
        );
        let rows: Vec<Vec<String>> = r
            .capture_summary
            .iter()
            .map(|s| {
                if s.version.is_none() {
                    let mut row = vec![s.dut.name().to_string(), SKIPPED.to_string()];
                    row.resize(7, String::new());
                    return row;
                }
                vec![
                    s.dut.name().to_string(),
                    s.version.clone().unwrap_or_default(),
                    opt(s.median_written_pps, mfps),
                    opt(s.median_written_ratio, pct),
                    opt(s.median_captured_ratio, pct),
                    opt(s.median_offered_pps, mfps),
                    s.written_ratio_samples
                        .iter()
                        .map(|&x| pct(x))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "DUT",
                "version",
                "written Mfps",
                "written / sent",
                "captured / sent",
                "offered Mfps",
                "written / sent per rep",
            ],
            &rows,
        );
        if !r.capture_ratios.is_empty() {
            out += "\n";
            out += &ratio_table("written frames/s", &r.capture_ratios);
        }
        out += "\n";
        let rows: Vec<Vec<String>> = r
            .capture_samples
            .iter()
            .map(|s| {
                vec![
                    s.dut.name().to_string(),
                    s.rep.to_string(),
                    s.sent.to_string(),
                    s.p1_rx_packets.to_string(),
                    s.captured.map_or("-".into(), |x| x.to_string()),
                    s.written.to_string(),
                    s.files.to_string(),
                    s.dut_drops.to_string(),
                    s.drop_detail
                        .iter()
                        .filter(|(_, &v)| v > 0)
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    pct(s.steal_ratio),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "DUT",
                "rep",
                "sent",
                "p1 rx",
                "captured",
                "written",
                "files",
                "DUT drops",
                "DUT counters",
                "steal",
            ],
            &rows,
        );
    }
    if !r.fanout_summary.is_empty() {
        out += &format!(
            "\n## Fan-out cost (tapline, no recorder)\n\n{} s of traffic per measurement.\n\n",
            c.seconds
        );
        let rows: Vec<Vec<String>> = r
            .fanout_summary
            .iter()
            .map(|s| {
                vec![
                    s.groups.to_string(),
                    pct(s.median_capture_ratio),
                    opt(s.median_delivery_ratio, pct),
                    mfps(s.median_captured_pps),
                    format!("{:.0}", s.median_kernel_drops),
                    format!("{:.0}", s.median_fill_ring_empty),
                    opt(s.vs_alone.as_ref().and_then(|v| v.of_medians), times),
                    opt(s.vs_alone.as_ref().and_then(|v| v.median_of_per_rep), times),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "output groups",
                "captured / sent",
                "delivered / (sent x groups)",
                "captured Mfps",
                "kernel drops",
                "fill ring empty",
                "captured fps vs alone (of medians)",
                "(median of per-rep)",
            ],
            &rows,
        );
        out += "\n";
        let rows: Vec<Vec<String>> = r
            .fanout_samples
            .iter()
            .map(|s| {
                vec![
                    s.groups.to_string(),
                    s.rep.to_string(),
                    s.sent.to_string(),
                    s.captured.to_string(),
                    s.delivered.to_string(),
                    s.member_drops
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.kernel_rx_dropped.to_string(),
                    s.kernel_rx_ring_full.to_string(),
                    s.kernel_fill_ring_empty.to_string(),
                    pct(s.steal_ratio),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "groups",
                "rep",
                "sent",
                "captured",
                "delivered",
                "member drops",
                "rx_dropped",
                "rx_ring_full",
                "fill ring empty",
                "steal",
            ],
            &rows,
        );
    }
    if !r.zero_drop_summary.is_empty() {
        out += &zero_drop_markdown(r);
    }
    let foreign: u64 = r
        .capture_samples
        .iter()
        .map(|s| s.written - s.written_ours)
        .sum();
    let writes_files = !r.capture_summary.is_empty()
        || r.zero_drop_summary
            .iter()
            .any(|s| s.dut.writes_files().is_some());
    out += "\n## How measured\n\n\
            One lab of network namespaces: the generator (tapline-bench's AF_XDP TX, copy mode) sends IPv4/UDP \
            test frames from t0 over a veth into p1 in the dut namespace; nothing else is on that link.";
    if !r.capture_summary.is_empty() {
        out += &format!(
            " Each capture-to-disk measurement starts its DUT fresh, sends for {s} s, waits {g} s for the DUT \
             to drain its buffers, stops it (SIGTERM for tapline, SIGINT for the peers, which flush their file \
             and print their statistics) and then counts the records in the pcap files it wrote. \
             *sent* is what the generator's kernel completed on t0, *p1 rx* p1's rx_packets counter, \
             *captured* what the DUT says it received (tapline: passive-1 rx_packets from its stats segment; \
             tcpdump: \"packets received by filter\"; netsniff-ng: \"packets incoming\"), *written* the records \
             in its files (every record is counted; {foreign}). \
             *written Mfps* is written frames per second of traffic. Unpaced, the offered rate depends on how \
             much CPU the DUT leaves the generator, so compare *written / sent* as well, or fix the load with \
             `--rate`.",
            s = c.seconds,
            g = c.grace_s,
            foreign = match foreign {
                0 => "all of them were the generator's frames".to_string(),
                n => format!("{n} of them were not the generator's frames"),
            },
        );
    }
    if writes_files {
        out += &format!(
            " tapline runs one `[[recorder]]` (rotate_size {rot}, queue_size {q}, rotate_interval_s 0); \
             tcpdump runs `tcpdump -i p1 -w FILE -n -B {b} -s 0` and netsniff-ng \
             `netsniff-ng --in p1 --out FILE --silent --ring-size {ring}MiB`, both inside the dut namespace, \
             so every DUT that writes files has a 64 MiB buffer between the kernel and the disk.",
            rot = RECORDER_ROTATE_SIZE,
            q = RECORDER_QUEUE_SIZE,
            b = PEER_RING_MIB * 1024,
            ring = PEER_RING_MIB,
        );
    }
    if !r.fanout_summary.is_empty() {
        out += &format!(
            " The fan-out part runs tapline without a recorder and with 0 to N output groups, group k with \
             one member mk (a veth to its own sensor namespace, no filter), for {s} s each: *captured / sent* \
             is passive-1 rx_packets over frames sent, *delivered / (sent x groups)* the frames transmitted to \
             members over what a lossless fan-out would transmit, *kernel drops* passive-1's XDP socket \
             statistics rx_dropped + rx_ring_full (fill ring empty is the count of times the kernel found no \
             buffer).",
            s = c.seconds,
        );
    }
    out += "\n";
    if !r.zero_drop_summary.is_empty() {
        out += &zero_drop_how_measured(r);
    }
    out += &format!(
        "\nRatios are given both as the ratio of the medians and as the median of the per-repetition \
         ratios (the DUTs of one repetition run back to back, so slow drift of the host cancels out). \
         A peer that is not installed is reported as {skipped}, never estimated. \
         The generator, the DUT, its disk writer and the veth softirqs share the machine's {cpus} CPUs: \
         read the numbers as ratios on this machine, not as absolute capacities.\n",
        skipped = SKIPPED,
        cpus = r.machine.cpus,
    );
    let extra: Vec<String> = [("dataplane", &c.dataplane_keys), ("xdp", &c.xdp_keys)]
        .iter()
        .filter(|(_, k)| !k.trim().is_empty())
        .map(|(t, k)| format!("[{t}] {}", k.trim().replace('\n', "; ")))
        .collect();
    out += &format!(
        "\ntapline settings: {}.\n",
        if extra.is_empty() {
            "defaults".to_string()
        } else {
            extra.join(" ")
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::build_frame;
    use crate::traffic::FrameKind;
    use tapline_dataplane::pcap::PcapWriter;

    fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), 65_535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(i as u64, f.len() as u32, f).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn counts_records_and_the_generators_frames() {
        let frames = vec![
            build_frame(FrameKind::Udp4, 512, SENDER, 1, 1),
            build_frame(FrameKind::Udp4, 60, SENDER, 2, 2),
            build_frame(FrameKind::Udp4, 60, SENDER + 1, 3, 3),
            vec![0xff; 14],
        ];
        let c = count_pcap(&pcap_bytes(&frames)[..], SENDER).unwrap();
        assert_eq!(
            c,
            PcapCount {
                records: 4,
                ours: 2,
                truncated: false
            }
        );
        // A file header alone: no record.
        assert_eq!(
            count_pcap(&pcap_bytes(&[])[..], SENDER).unwrap(),
            PcapCount::default()
        );
    }

    #[test]
    fn a_cut_file_counts_the_records_before_the_cut() {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| build_frame(FrameKind::Udp4, 100, SENDER, i, 0))
            .collect();
        let bytes = pcap_bytes(&frames);
        // Inside the third record's data, then inside its header.
        for cut in [bytes.len() - 1, bytes.len() - 100 - 8] {
            let c = count_pcap(&bytes[..cut], SENDER).unwrap();
            assert_eq!(
                (c.records, c.ours, c.truncated),
                (2, 2, true),
                "cut at {cut}"
            );
        }
        for cut in [0, 10] {
            let c = count_pcap(&bytes[..cut], SENDER).unwrap();
            assert_eq!((c.records, c.truncated), (0, true), "cut at {cut}");
        }
        assert!(count_pcap(&b"not a pcap file at all.."[..], SENDER).is_err());
    }

    #[test]
    fn microsecond_big_endian_files_count_too() {
        // tcpdump/netsniff-ng default: microsecond magic; here big-endian.
        let frame = build_frame(FrameKind::Udp4, 64, SENDER, 7, 7);
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65_535u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        for _ in 0..2 {
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(&2u32.to_be_bytes());
            b.extend_from_slice(&64u32.to_be_bytes());
            b.extend_from_slice(&64u32.to_be_bytes());
            b.extend_from_slice(&frame);
        }
        let c = count_pcap(&b[..], SENDER).unwrap();
        assert_eq!((c.records, c.ours, c.truncated), (2, 2, false));
    }

    #[test]
    fn ratios_of_medians_and_of_repetitions() {
        let ours = [(0, 10.0), (1, 20.0), (2, 30.0)];
        let peer = [(0, 5.0), (1, 40.0), (2, 10.0)];
        let (of_medians, per_rep_median, per_rep) = ratio_of(&ours, &peer);
        assert_eq!(of_medians, Some(2.0));
        assert_eq!(per_rep, vec![2.0, 0.5, 3.0]);
        assert_eq!(per_rep_median, Some(2.0));
        // A repetition missing on one side, and a zero peer, are left out
        // of the per-rep ratios.
        let (_, m, per_rep) = ratio_of(&ours, &[(0, 5.0), (2, 0.0)]);
        assert_eq!(per_rep, vec![2.0]);
        assert_eq!(m, Some(2.0));
        assert_eq!(ratio_of(&ours, &[]), (None, None, Vec::new()));
        assert_eq!(ratio_of(&ours, &[(0, 0.0)]).0, None);
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn peer_statistics_parse() {
        let td = lines(
            "tcpdump: listening on p1, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
             1000 packets captured\n1200 packets received by filter\n200 packets dropped by kernel\n\
             3 packets dropped by interface\n",
        );
        let s = parse_peer_stats(CaptureDut::Tcpdump, &td);
        assert_eq!(s.received, Some(1200));
        assert_eq!(
            s.drops,
            BTreeMap::from([
                ("dropped by kernel".to_string(), 200),
                ("dropped by interface".to_string(), 3)
            ])
        );
        let ns = lines(
            "Running! Hang up with ^C!\n\n\r        1000  packets incoming (5 unread on exit)\n\
             \r         990  packets passed filter\n\r          10  packets failed filter (out of space)\n\
             \r      0.0000% packet droprate\n\r           1  sec, 140990 usec in total\n",
        );
        let s = parse_peer_stats(CaptureDut::NetsniffNg, &ns);
        assert_eq!(s.received, Some(1000));
        assert_eq!(s.drops, BTreeMap::from([("out of space".to_string(), 10)]));
        assert_eq!(
            parse_peer_stats(CaptureDut::Tcpdump, &lines("tcpdump: killed\n")),
            PeerStats::default()
        );
    }

    #[test]
    fn generated_configs_are_valid() {
        let rec = recorder_section(Path::new("/var/tmp/x"));
        for extra in [rec, fanout_section(0), fanout_section(4)] {
            let text = lab_config(Some(ifs::PASSIVE_1), None, "", &extra)
                .replace(crate::runner::STATE_DIR_PLACEHOLDER, "/run/tapline-test");
            let c =
                tapline_dataplane::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(c.output_groups.len(), fanout_count(&extra));
        }
        let c = tapline_dataplane::Config::parse(
            &lab_config(
                Some(ifs::PASSIVE_1),
                None,
                "",
                &recorder_section(Path::new("/d")),
            )
            .replace(crate::runner::STATE_DIR_PLACEHOLDER, "/run/t"),
        )
        .unwrap();
        let r = &c.recorders[0].settings;
        assert_eq!(
            (r.rotate_bytes, r.queue_bytes, r.rotate_interval),
            (256 << 20, 64 << 20, None)
        );
    }

    fn fanout_count(extra: &str) -> usize {
        extra.matches("[[output_group]]").count()
    }

    #[test]
    fn repetitions_rotate_the_order() {
        let duts = [CaptureDut::Tapline, CaptureDut::Tcpdump];
        let names = |rep| {
            schedule(
                &duts,
                &[0, 2],
                &[ZeroDropDut::Tapline, ZeroDropDut::AfPacketRead],
                rep,
            )
            .iter()
            .map(|j| match j {
                Job::Capture(d) => d.name().to_string(),
                Job::Fanout(g) => g.to_string(),
                Job::ZeroDrop(d) => format!("zd {}", d.name()),
            })
            .collect::<Vec<_>>()
        };
        assert_eq!(
            names(0),
            [
                "tapline",
                "tcpdump",
                "0",
                "2",
                "zd tapline",
                "zd af-packet-read"
            ]
        );
        assert_eq!(
            names(1),
            [
                "tcpdump",
                "tapline",
                "2",
                "0",
                "zd af-packet-read",
                "zd tapline"
            ]
        );
        assert_eq!(
            CaptureDut::parse("netsniff-ng").unwrap(),
            CaptureDut::NetsniffNg
        );
        assert!(CaptureDut::parse("wireshark").is_err());
    }

    fn capture_sample(dut: CaptureDut, rep: u32, sent: u64, written: u64) -> CaptureSample {
        CaptureSample {
            dut,
            rep,
            sent,
            elapsed_s: 1.0,
            offered_pps: sent as f64,
            p1_rx_packets: sent,
            captured: Some(sent),
            written,
            written_ours: written,
            files: 1,
            file_bytes: written * 528,
            truncated_files: 0,
            dut_drops: sent - written,
            drop_detail: BTreeMap::from([("dropped by kernel".to_string(), sent - written)]),
            written_ratio: written as f64 / sent as f64,
            written_pps: written as f64,
            steal_ratio: 0.0,
            xdp_mode: (dut == CaptureDut::Tapline).then(|| "native-copy".to_string()),
        }
    }

    #[test]
    fn summaries_and_markdown_report_skipped_peers_without_numbers() {
        let samples = vec![
            capture_sample(CaptureDut::Tapline, 0, 1000, 900),
            capture_sample(CaptureDut::Tcpdump, 0, 1000, 600),
            capture_sample(CaptureDut::Tapline, 1, 1000, 800),
            capture_sample(CaptureDut::Tcpdump, 1, 1000, 400),
        ];
        let tapline = capture_summary(CaptureDut::Tapline, Some("t 1".into()), &samples);
        assert_eq!(tapline.median_written_pps, Some(850.0));
        assert!((tapline.median_written_ratio.unwrap() - 0.85).abs() < 1e-12);
        let skipped = capture_summary(CaptureDut::NetsniffNg, None, &samples);
        assert_eq!(
            (skipped.status.as_str(), skipped.median_written_pps),
            (SKIPPED, None)
        );
        let td = capture_ratio(CaptureDut::Tcpdump, true, &samples);
        assert_eq!(td.of_medians, Some(850.0 / 500.0));
        assert_eq!(td.per_rep, vec![1.5, 2.0]);
        assert_eq!(td.median_of_per_rep, Some(1.75));
        let ns = capture_ratio(CaptureDut::NetsniffNg, false, &samples);
        assert_eq!((ns.status.as_str(), ns.of_medians), (SKIPPED, None));

        let fan = |groups, rep, captured| FanoutSample {
            groups,
            rep,
            sent: 1000,
            elapsed_s: 1.0,
            offered_pps: 1000.0,
            captured,
            capture_ratio: captured as f64 / 1000.0,
            captured_pps: captured as f64,
            delivered: captured * u64::from(groups),
            delivery_ratio: (groups > 0).then(|| captured as f64 / 1000.0),
            member_drops: BTreeMap::new(),
            kernel_rx_dropped: 1000 - captured,
            kernel_rx_ring_full: 0,
            kernel_fill_ring_empty: 0,
            steal_ratio: 0.0,
            xdp_mode: Some("native-copy".into()),
        };
        let fanout_samples = vec![fan(0, 0, 1000), fan(2, 0, 500)];
        let two = fanout_summary(2, &fanout_samples);
        assert_eq!(two.median_delivery_ratio, Some(0.5));
        assert_eq!(two.median_kernel_drops, 500.0);
        assert_eq!(two.vs_alone.as_ref().and_then(|r| r.of_medians), Some(0.5));
        assert!(fanout_summary(0, &fanout_samples).vs_alone.is_none());

        let r = PassiveResult {
            benchmark: "passive-capture-and-fanout",
            machine: Machine::describe(),
            config: PassiveConfig {
                duts: CaptureDut::ALL.to_vec(),
                groups: vec![0, 2],
                reps: 2,
                seconds: 1.0,
                frame_len: 512,
                flows: 1024,
                rate_pps: None,
                dir: "/var/tmp/x".into(),
                grace_s: 2.0,
                keep_files: false,
                dataplane_keys: String::new(),
                xdp_keys: String::new(),
                zero_drop: ZeroDropConfig {
                    duts: Vec::new(),
                    ..ZeroDropConfig::default()
                },
            },
            generator: "g".into(),
            versions: BTreeMap::from([("netsniff-ng".to_string(), SKIPPED.to_string())]),
            capture_summary: vec![tapline, skipped],
            capture_ratios: vec![td, ns],
            capture_samples: samples,
            fanout_summary: vec![fanout_summary(0, &fanout_samples), two],
            fanout_samples,
            zero_drop_samples: Vec::new(),
            zero_drop_summary: Vec::new(),
            zero_drop_ratios: Vec::new(),
        };
        let md = markdown(&r);
        assert!(
            md.contains("| netsniff-ng | skipped (not installed) |"),
            "{md}"
        );
        assert!(md.contains("| tapline / tcpdump | 1.70x | 1.75x |"), "{md}");
        assert!(
            md.contains("| tapline / netsniff-ng | skipped (not installed) |"),
            "{md}"
        );
        assert!(
            md.contains("| 2 | 50.0% | 50.0% | 0.001 | 500 | 0 | 0.50x | 0.50x |"),
            "{md}"
        );
        assert!(
            md.contains("all of them were the generator's frames"),
            "{md}"
        );
        assert!(!md.contains("## Zero-drop rate"), "{md}");
    }

    #[test]
    fn zero_drop_verdicts() {
        use ZeroDropDut::*;
        // Counter DUTs: the shortfall, or the kernel's drops if larger.
        assert_eq!(Tapline.frames_lost(1000, 1000, 0), 0);
        assert_eq!(Tapline.frames_lost(1000, 990, 0), 10);
        assert_eq!(Tapline.frames_lost(1000, 1000, 3), 3);
        assert_eq!(AfPacketRead.frames_lost(1000, 995, 2), 5);
        assert_eq!(AfPacketRead.frames_lost(1000, 1000, 0), 0);
        // Disk DUTs: the generator's records in the files, nothing else.
        for d in [TaplineRecord, Tcpdump, NetsniffNg] {
            assert_eq!(d.frames_lost(1000, 1000, 7), 0, "{}", d.name());
            assert_eq!(d.frames_lost(1000, 999, 0), 1, "{}", d.name());
        }
        // A trial as the search sees it.
        let t = zd_trial(Tapline, 0, 5_000, 10_000, 9_990, 0);
        assert!(!t.passed);
        let st = t.search_trial();
        assert_eq!((st.rate_pps, st.sent, st.received), (5_000, 10_000, 9_990));
        assert!(!st.passes(NDR_LOSS));
        assert!(zd_trial(Tcpdump, 0, 5_000, 10_000, 10_000, 4)
            .search_trial()
            .passes(NDR_LOSS));
        // Nothing sent proves nothing.
        let none = zd_trial(Tapline, 0, 5_000, 0, 0, 0);
        assert!(!none.passed && !none.search_trial().passes(NDR_LOSS));
    }

    #[test]
    fn zero_drop_duts_parse_and_map_to_programs() {
        for d in ZeroDropDut::ALL {
            assert_eq!(ZeroDropDut::parse(d.name()).unwrap(), d);
        }
        assert!(ZeroDropDut::parse("pcap").is_err());
        assert_eq!(ZeroDropDut::AfPacketRead.program(), None);
        assert_eq!(
            ZeroDropDut::TaplineRecord.program(),
            Some(CaptureDut::Tapline)
        );
        assert_eq!(ZeroDropDut::Tapline.writes_files(), None);
        assert_eq!(
            ZeroDropDut::NetsniffNg.writes_files(),
            Some(CaptureDut::NetsniffNg)
        );
        let ok = ZeroDropConfig::default();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.resolution_pps(1_000_000), 20_000);
        assert_eq!(ok.resolution_pps(10_000), 1_000, "floored at min_pps");
        let bad = |f: fn(&mut ZeroDropConfig)| {
            let mut c = ZeroDropConfig::default();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.duts.push(ZeroDropDut::Tapline)));
        assert!(bad(|c| c.trial_seconds = 0.0));
        assert!(bad(|c| c.min_pps = 0));
        assert!(bad(|c| c.resolution_pct = f64::NAN));
        assert!(bad(|c| c.max_trials = 0));
        assert!(bad(|c| c.max_pps = Some(10)));
    }

    #[test]
    fn reader_events_parse() {
        let out = lines(
            "{\"event\":\"ready\"}\nwarning: something\n\
             {\"event\": \"done\", \"received\": 1200, \"bytes\": 614400, \"kernel_drops\": 3}\n",
        );
        assert!(is_reader_event(&out[0], "ready"));
        assert!(!is_reader_event(&out[1], "ready"));
        assert!(!is_reader_event(&out[0], "done"));
        assert_eq!(
            parse_reader_done(&out),
            Some(ReadCounts {
                received: 1200,
                bytes: 614_400,
                kernel_drops: 3
            })
        );
        assert_eq!(parse_reader_done(&out[..2]), None);
        // A done event missing a counter is no answer, not zeros.
        assert_eq!(
            parse_reader_done(&lines("{\"event\":\"done\",\"received\":5}\n")),
            None
        );
    }

    fn zd_trial(
        dut: ZeroDropDut,
        rep: u32,
        target_pps: u64,
        sent: u64,
        counted: u64,
        kernel_drops: u64,
    ) -> ZeroDropTrial {
        let lost = dut.frames_lost(sent, counted, kernel_drops);
        ZeroDropTrial {
            dut,
            rep,
            purpose: TrialPurpose::Search,
            target_pps,
            sent,
            offered_pps: target_pps as f64 * 0.99,
            pacing_skipped: 0,
            p1_rx_packets: sent,
            counted,
            kernel_drops,
            lost,
            passed: sent > 0 && lost == 0,
            files: usize::from(dut.writes_files().is_some()),
            truncated_files: 0,
            drop_detail: BTreeMap::new(),
            xdp_mode: matches!(dut, ZeroDropDut::Tapline | ZeroDropDut::TaplineRecord)
                .then(|| "native-copy".to_string()),
            steal_ratio: 0.0,
        }
    }

    /// A search of `dut` in `rep` through [`zero_drop_search`] against a
    /// fake generator that reaches `gen_max` fps unpaced and at most 90% of
    /// that paced, and a fake DUT that loses frames when offered more than
    /// `capacity` fps (`None`: at any rate).
    fn zd_search(
        cfg: &ZeroDropConfig,
        dut: ZeroDropDut,
        rep: u32,
        gen_max: u64,
        capacity: Option<u64>,
    ) -> ZeroDropSample {
        let mut next_index = 0;
        zero_drop_search(cfg, dut, rep, |purpose, target, index| {
            assert_eq!(index, next_index, "trials are numbered in order");
            next_index += 1;
            let offered = match purpose {
                TrialPurpose::GeneratorProbe => {
                    assert_eq!(target, PROBE_PPS);
                    gen_max
                }
                TrialPurpose::Search => target.min(gen_max / 10 * 9),
            };
            let sent = offered * 2;
            let counted = match capacity {
                Some(c) if offered <= c => sent,
                _ => sent - 1,
            };
            Ok(ZeroDropTrial {
                purpose,
                offered_pps: offered as f64,
                ..zd_trial(dut, rep, target, sent, counted, 0)
            })
        })
        .unwrap()
    }

    fn zd_sample(
        dut: ZeroDropDut,
        rep: u32,
        gen_max: u64,
        capacity: Option<u64>,
    ) -> ZeroDropSample {
        zd_search(&ZeroDropConfig::default(), dut, rep, gen_max, capacity)
    }

    #[test]
    fn medians_and_ratios_bounded_by_the_highest_rate_are_marked() {
        assert!(median_is_lower_bound(&[
            (1.0, false),
            (2.0, false),
            (1.5, true)
        ]));
        assert!(!median_is_lower_bound(&[
            (1.0, false),
            (2.0, false),
            (10.0, true)
        ]));
        assert!(median_is_lower_bound(&[(1.0, false), (2.0, true)]));
        assert!(!median_is_lower_bound(&[]));

        use ZeroDropDut::*;
        let hi = 1_000_000;
        let mut samples = Vec::new();
        for rep in 0..3 {
            // tapline passes at the highest rate every time; the recorder
            // in two of three repetitions; the reader never.
            samples.push(zd_sample(Tapline, rep, hi, Some(2_000_000)));
            samples.push(zd_sample(
                TaplineRecord,
                rep,
                hi,
                Some(if rep == 2 { 300_000 } else { 2_000_000 }),
            ));
            samples.push(zd_sample(AfPacketRead, rep, hi, Some(500_000)));
        }
        let summary = |d| zero_drop_summary(d, Some("v".into()), &samples);
        assert!(summary(Tapline).median_rate_at_hi);
        assert!(summary(TaplineRecord).median_rate_at_hi);
        assert!(!summary(AfPacketRead).median_rate_at_hi);
        // One repetition of three at the highest rate leaves the median
        // exact.
        let one_at_hi: Vec<ZeroDropSample> = [2_000_000, 300_000, 400_000]
            .into_iter()
            .enumerate()
            .map(|(rep, c)| zd_sample(TaplineRecord, rep as u32, hi, Some(c)))
            .collect();
        assert!(!zero_drop_summary(TaplineRecord, Some("v".into()), &one_at_hi).median_rate_at_hi);

        let cells = |ours, peer| {
            let x = zero_drop_ratio(ours, peer, false, true, &samples);
            (
                bounded_times(x.of_medians, x.of_medians_bounds),
                bounded_times(x.median_of_per_rep, x.median_of_per_rep_bounds),
            )
        };
        let reader = samples
            .iter()
            .find(|s| s.dut == AfPacketRead)
            .unwrap()
            .rate_value();
        let at_least = format!(">= {}", times(hi as f64 / reader));
        assert_eq!(cells(Tapline, AfPacketRead), (at_least.clone(), at_least));
        let at_most = format!("<= {}", times(reader / hi as f64));
        assert_eq!(cells(AfPacketRead, Tapline), (at_most.clone(), at_most));
        assert_eq!(
            cells(Tapline, TaplineRecord),
            ("bounds only".to_string(), "bounds only".to_string())
        );
        assert_eq!(
            bounded_times(
                None,
                LowerBounds {
                    ours: true,
                    peer: true
                }
            ),
            "-"
        );

        let json =
            serde_json::to_value(zero_drop_ratio(Tapline, AfPacketRead, true, true, &samples))
                .unwrap();
        assert_eq!(json["of_medians_bounds"]["ours"], true);
        assert_eq!(json["of_medians_bounds"]["peer"], false);
        assert_eq!(json["median_of_per_rep_bounds"]["ours"], true);
    }

    #[test]
    fn the_probe_sets_the_highest_rate_and_seeds_the_search() {
        let cfg = ZeroDropConfig::default();
        // The DUT keeps up with the unpaced generator: the probe is the
        // only trial.
        let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(2_000_000));
        assert_eq!(
            (s.hi_pps, s.outcome, s.rate_pps, s.trials.len()),
            (1_000_000, Outcome::AtHi, Some(1_000_000), 1)
        );
        assert_eq!(s.trials[0].purpose, TrialPurpose::GeneratorProbe);
        assert_eq!(s.offered_at_rate_pps, Some(1_000_000.0));
        assert_eq!(s.hi_source, "unpaced generator");
        // It does not: the probe's failure counts as the failure at the
        // highest rate, which is not tried again paced.
        let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(600_000));
        assert_eq!(s.outcome, Outcome::Found);
        assert!(s.converged);
        let rate = s.rate_pps.unwrap();
        assert!(
            rate <= 600_000 && 600_000 - rate <= s.resolution_pps,
            "{rate}"
        );
        assert_eq!(s.resolution_pps, 20_000);
        assert!(s.trials[1..]
            .iter()
            .all(|t| t.purpose == TrialPurpose::Search && t.target_pps < 1_000_000));
        assert_eq!(s.offered_at_rate_pps, Some(rate as f64));
        assert_eq!(
            s.trial_at(1_000_000).map(|t| t.purpose),
            Some(TrialPurpose::GeneratorProbe),
            "the probe judged the highest rate"
        );
        assert_eq!(s.trial_at(rate).map(|t| t.target_pps), Some(rate));
        assert!(s.trial_at(rate + 1).is_none());
        // The paced generator falls short of the targets near the top: the
        // zero-drop rate is a target, the offered rate what was achieved.
        let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(950_000));
        assert!(s.rate_pps.unwrap() > 950_000, "{:?}", s.rate_pps);
        assert_eq!(s.offered_at_rate_pps, Some(900_000.0));
        // With --zero-drop-max-pps there is no probe.
        let fixed = ZeroDropConfig {
            max_pps: Some(500_000),
            ..ZeroDropConfig::default()
        };
        let s = zd_search(&fixed, ZeroDropDut::Tcpdump, 1, 1_000_000, Some(2_000_000));
        assert_eq!(
            (s.hi_source, s.outcome, s.trials.len()),
            ("--zero-drop-max-pps", Outcome::AtHi, 1)
        );
        assert_eq!(
            (s.trials[0].purpose, s.trials[0].target_pps),
            (TrialPurpose::Search, 500_000)
        );
        // A generator slower than the lowest rate is an error.
        assert!(
            zero_drop_search(&cfg, ZeroDropDut::Tapline, 0, |purpose, target, _| {
                Ok(ZeroDropTrial {
                    purpose,
                    offered_pps: 10.0,
                    ..zd_trial(ZeroDropDut::Tapline, 0, target, 20, 20, 0)
                })
            })
            .is_err()
        );
    }

    #[test]
    fn zero_drop_medians_ratios_and_cells() {
        use ZeroDropDut::*;
        let hi = 1_000_000;
        let samples = vec![
            zd_sample(Tapline, 0, hi, Some(600_000)),
            zd_sample(AfPacketRead, 0, hi, Some(500_000)),
            zd_sample(TaplineRecord, 0, hi, Some(2_000_000)),
            zd_sample(Tapline, 1, hi, Some(400_000)),
            zd_sample(AfPacketRead, 1, hi, Some(950_000)),
            zd_sample(TaplineRecord, 1, hi, None),
            zd_sample(Tapline, 2, hi, Some(800_000)),
            zd_sample(AfPacketRead, 2, hi, Some(200_000)),
            zd_sample(TaplineRecord, 2, hi, Some(300_000)),
        ];
        let rate =
            |d: ZeroDropDut, r: u32| samples.iter().find(|s| s.dut == d && s.rep == r).unwrap();
        let res = ZeroDropConfig::default().resolution_pps(hi);
        for (d, r, cap) in [(Tapline, 0, 600_000), (AfPacketRead, 2, 200_000)] {
            let got = rate(d, r).rate_pps.unwrap();
            assert!(got <= cap && cap - got <= res, "{got} for {cap}");
        }
        assert_eq!(zero_drop_cell(rate(TaplineRecord, 0)), ">= 1000.0");
        assert_eq!(zero_drop_cell(rate(TaplineRecord, 1)), "below lowest");
        let found = rate(Tapline, 0);
        assert_eq!(
            zero_drop_cell(found),
            format!("{:.1}", found.rate_pps.unwrap() as f64 / 1000.0)
        );
        let unconverged = ZeroDropSample {
            converged: false,
            ..found.clone()
        };
        assert!(zero_drop_cell(&unconverged).ends_with("(not converged)"));

        let tapline = zero_drop_summary(Tapline, Some("t 1".into()), &samples);
        let t_rates: Vec<f64> = (0..3).map(|r| rate(Tapline, r).rate_value()).collect();
        assert_eq!(tapline.median_rate_pps, Some(median(&t_rates)));
        assert_eq!(tapline.median_hi_pps, Some(hi as f64));
        assert_eq!(tapline.xdp_modes, vec!["native-copy".to_string()]);
        assert_eq!((tapline.at_hi_reps, tapline.below_lo_reps), (0, 0));
        let rec = zero_drop_summary(TaplineRecord, Some("t 1".into()), &samples);
        assert_eq!((rec.at_hi_reps, rec.below_lo_reps), (1, 1));
        // Below lowest counts as 0: the median is rep 2's rate.
        assert_eq!(
            rec.median_rate_pps,
            Some(rate(TaplineRecord, 2).rate_value())
        );
        let reader = zero_drop_summary(AfPacketRead, Some("r".into()), &samples);
        assert!(reader.xdp_modes.is_empty());
        let skipped = zero_drop_summary(Tcpdump, None, &samples);
        assert_eq!(
            (
                skipped.status.as_str(),
                skipped.median_rate_pps,
                skipped.trials
            ),
            (SKIPPED, None, 0)
        );

        let ratio = zero_drop_ratio(Tapline, AfPacketRead, false, true, &samples);
        assert_eq!(ratio.name, "tapline / af-packet-read");
        let r_rates: Vec<f64> = (0..3).map(|r| rate(AfPacketRead, r).rate_value()).collect();
        assert_eq!(ratio.of_medians, Some(median(&t_rates) / median(&r_rates)));
        let per_rep: Vec<f64> = (0..3).map(|r| t_rates[r] / r_rates[r]).collect();
        assert_eq!(ratio.per_rep, per_rep);
        assert_eq!(ratio.median_of_per_rep, Some(median(&per_rep)));
        // Of the achieved rates: the reader's rep 1 was offered 900k for a
        // target above 950k.
        let offered = zero_drop_ratio(Tapline, AfPacketRead, true, true, &samples);
        assert_eq!(offered.name, "tapline / af-packet-read, offered");
        assert_eq!(rate(AfPacketRead, 1).offered_value(), 900_000.0);
        let t_offered: Vec<f64> = (0..3).map(|r| rate(Tapline, r).offered_value()).collect();
        let r_offered: Vec<f64> = (0..3)
            .map(|r| rate(AfPacketRead, r).offered_value())
            .collect();
        assert_eq!(
            offered.per_rep,
            (0..3)
                .map(|r| t_offered[r] / r_offered[r])
                .collect::<Vec<_>>()
        );
        assert_ne!(offered.per_rep, ratio.per_rep);
        let ns = zero_drop_ratio(TaplineRecord, NetsniffNg, false, false, &samples);
        assert_eq!((ns.status.as_str(), ns.of_medians), (SKIPPED, None));

        let r = PassiveResult {
            benchmark: "passive-capture-fanout-zero-drop",
            machine: Machine::describe(),
            config: PassiveConfig {
                duts: Vec::new(),
                groups: Vec::new(),
                reps: 3,
                seconds: 5.0,
                frame_len: 512,
                flows: 1024,
                rate_pps: None,
                dir: "/var/tmp/x".into(),
                grace_s: 2.0,
                keep_files: false,
                dataplane_keys: String::new(),
                xdp_keys: String::new(),
                zero_drop: ZeroDropConfig {
                    duts: vec![Tapline, AfPacketRead, TaplineRecord, NetsniffNg],
                    ..ZeroDropConfig::default()
                },
            },
            generator: "g".into(),
            versions: BTreeMap::new(),
            capture_samples: Vec::new(),
            capture_summary: Vec::new(),
            capture_ratios: Vec::new(),
            fanout_samples: Vec::new(),
            fanout_summary: Vec::new(),
            zero_drop_summary: vec![
                tapline,
                reader,
                rec,
                zero_drop_summary(NetsniffNg, None, &samples),
            ],
            zero_drop_ratios: vec![
                ratio.clone(),
                offered.clone(),
                zero_drop_ratio(TaplineRecord, NetsniffNg, false, false, &samples),
            ],
            zero_drop_samples: samples.clone(),
        };
        let md = markdown(&r);
        assert!(md.contains("## Zero-drop rate"), "{md}");
        assert!(
            md.contains(&format!(
                "| tapline / af-packet-read | {} | {} |",
                times(ratio.of_medians.unwrap()),
                times(ratio.median_of_per_rep.unwrap())
            )),
            "{md}"
        );
        assert!(
            md.contains(&format!(
                "| tapline / af-packet-read, offered | {} |",
                times(offered.of_medians.unwrap())
            )),
            "{md}"
        );
        assert!(
            md.contains("| tapline-record / netsniff-ng | skipped (not installed) |"),
            "{md}"
        );
        // Failed at the highest rate: the probe's loss.
        assert!(md.contains("| 1000.0 | 1 of 2000000 |"), "{md}");
        // Only the part that ran is described.
        assert!(!md.contains("fan-out part"), "{md}");
        assert!(md.contains("tcpdump -i p1 -w FILE"), "{md}");
        assert!(
            md.contains("| netsniff-ng | skipped (not installed) |"),
            "{md}"
        );
        assert!(md.contains("| 1000.0 | 1 | native-copy |"), "{md}");
        assert!(md.contains(">= 1000.0, below lowest, "), "{md}");
        assert!(md.contains("Zero-drop rate: for each DUT"), "{md}");
        assert!(md.contains("--batch 64"), "{md}");
        // The trial log is in the JSON, probe and search trials alike.
        let json = serde_json::to_value(&r).unwrap();
        let first = &json["zero_drop_samples"][0];
        assert_eq!(first["dut"], "tapline");
        assert_eq!(first["trials"][0]["purpose"], "generator-probe");
        assert_eq!(first["trials"][1]["purpose"], "search");
        assert_eq!(first["trials"][0]["xdp_mode"], "native-copy");
        assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    }
}
