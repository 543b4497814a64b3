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

mod capture;
mod dut;
mod fanout;
mod peers;
mod report;
mod results;
mod run;
#[cfg(test)]
mod tests;
mod zero_drop;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::lab::ifs;
use crate::runner::workspace_binary;

pub use dut::{fanout_section, member_name, recorder_section};
pub use peers::{count_pcap, parse_peer_stats, parse_reader_done, PcapCount, PeerStats};
pub use report::{markdown, zero_drop_cell};
pub use results::{
    ratio_of, CaptureSample, CaptureSummary, FanoutSample, FanoutSummary, LowerBounds,
    PassiveResult, Ratio, TrialPurpose, ZeroDropSample, ZeroDropSummary, ZeroDropTrial,
};
pub use run::{run, Progress};
pub use zero_drop::zero_drop_search;

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
