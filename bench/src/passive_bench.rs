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
//!
//! Peers that are not installed are reported as skipped, never estimated.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use tapline_dataplane::pcap::PcapReader;
use tapline_dataplane::stats::OutputDropReason;
use tapline_dataplane::xdp::shm::{OutputKind, SegmentReader, Snapshot};

use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::report::{markdown_table, median, CpuTimes, Machine};
use crate::runner::{lab_config, workspace_binary, DataplaneProcess, StartOptions};
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
        ensure!(
            !self.duts.is_empty() || !self.groups.is_empty(),
            "nothing to measure: no DUT and no group count"
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

/// A peer capturing in the lab's dut namespace, its output collected.
struct PeerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl PeerProcess {
    /// Starts `argv` in `ns` and waits for `ready` in its output.
    fn start(ns: &Netns, argv: &[String], ready: &str) -> Result<PeerProcess> {
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
            if p.lines().iter().any(|l| l.contains(ready)) {
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

    /// SIGINT (as ^C: both peers flush their file and print statistics),
    /// then waits; SIGKILL and an error after [`PEER_STOP_TIMEOUT`].
    fn interrupt(mut self) -> Result<(ExitStatus, Vec<String>)> {
        // `ip netns exec` execs the program: the child's pid is the peer's.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )?;
        let deadline = Instant::now() + PEER_STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(self.finish(status));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "capture peer did not exit within {PEER_STOP_TIMEOUT:?} of SIGINT:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The traffic of one measurement.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    gen: GenReport,
    p1_rx_packets: u64,
    steal_ratio: f64,
}

/// Sends the configured load from t0 and reads p1's counter around it.
fn run_traffic(lab: &Lab, cfg: &PassiveConfig) -> Result<Traffic> {
    let gc = GenConfig {
        ifname: ifs::TAP.into(),
        sizes: FrameSizes::Fixed(cfg.frame_len),
        flows: cfg.flows,
        rate_pps: cfg.rate_pps,
        duration: Duration::from_secs_f64(cfg.seconds),
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
        .filter(|q| q.info.role == "passive-1")
        .fold((0, 0, 0, 0), |(a, b, c, d), q| {
            (
                a + q.rx_packets,
                b + q.kernel_rx_dropped,
                c + q.kernel_rx_ring_full,
                d + q.kernel_rx_fill_ring_empty,
            )
        })
}

/// Starts tapline in the dut namespace with `extra` config sections and
/// maps its stats segment (the mapping outlives the run's files, so the
/// final counters can be read after the stop).
fn start_tapline(
    lab: &Lab,
    cfg: &PassiveConfig,
    extra: &str,
) -> Result<(DataplaneProcess, SegmentReader)> {
    let config = lab_config(
        Some(ifs::PASSIVE_1),
        None,
        &cfg.dataplane_keys,
        &format!("{}{extra}", xdp_section(cfg)),
    );
    let p = DataplaneProcess::start(
        &lab.dut,
        &config,
        &StartOptions {
            expect_ready: true,
            ..Default::default()
        },
    )?;
    let seg = SegmentReader::open(p.state_dir()).context("opening tapline's stats segment")?;
    Ok((p, seg))
}

/// Stops tapline and returns the final snapshot of its segment.
fn stop_tapline(p: DataplaneProcess, seg: &SegmentReader) -> Result<Snapshot> {
    let f = p.stop()?;
    ensure!(
        f.status.success(),
        "tapline-dataplane exited with {}:\n{}",
        f.status,
        f.lines.join("\n")
    );
    Ok(seg.snapshot())
}

/// What a capture DUT reported about itself.
struct DutReport {
    traffic: Traffic,
    captured: Option<u64>,
    drop_detail: BTreeMap<String, u64>,
    /// Counters in `drop_detail` that are not drops.
    not_drops: &'static [&'static str],
}

fn capture_tapline(lab: &Lab, cfg: &PassiveConfig, dir: &Path) -> Result<DutReport> {
    let (p, seg) = start_tapline(lab, cfg, &recorder_section(dir))?;
    let traffic = run_traffic(lab, cfg);
    if traffic.is_ok() {
        std::thread::sleep(Duration::from_secs_f64(cfg.grace_s));
    }
    let snap = stop_tapline(p, &seg);
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
        drop_detail,
        not_drops: &[
            "kernel_fill_ring_empty",
            "recorder_packets_written",
            "recorder_disk_errors",
        ],
    })
}

fn capture_peer(lab: &Lab, dut: CaptureDut, cfg: &PassiveConfig, dir: &Path) -> Result<DutReport> {
    ensure!(
        !lab::link_state(&lab.dut, ifs::PASSIVE_1)?.xdp_attached,
        "an XDP program is still attached to p1 (left by the previous DUT)"
    );
    let (argv, ready) = dut.peer_command(&dir.join(format!("{}.pcap", dut.name())));
    let peer = PeerProcess::start(&lab.dut, &argv, ready)?;
    std::thread::sleep(PEER_SETTLE);
    let traffic = run_traffic(lab, cfg);
    if traffic.is_ok() {
        std::thread::sleep(Duration::from_secs_f64(cfg.grace_s));
    }
    let stopped = peer.interrupt();
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
        drop_detail: stats.drops,
        not_drops: &[],
    })
}

/// Space available to unprivileged writers at `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn measure_capture(
    lab: &Lab,
    dut: CaptureDut,
    rep: u32,
    cfg: &PassiveConfig,
    run_dir: &Path,
) -> Result<CaptureSample> {
    let dir = run_dir.join(format!("{}-rep{rep}", dut.name()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let free = free_bytes(&dir)?;
    ensure!(
        free >= MIN_FREE_BYTES,
        "only {} MiB free at {}: a capture needs {} MiB",
        free >> 20,
        dir.display(),
        MIN_FREE_BYTES >> 20
    );
    let report = match dut {
        CaptureDut::Tapline => capture_tapline(lab, cfg, &dir),
        peer => capture_peer(lab, peer, cfg, &dir),
    }
    .with_context(|| format!("capturing with {}", dut.name()));
    let counted = report.and_then(|r| Ok((r, count_dir(&dir)?)));
    if !cfg.keep_files {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (r, c) = counted?;
    let secs = r.traffic.gen.elapsed.as_secs_f64();
    let sent = r.traffic.gen.sent;
    let dut_drops = r
        .drop_detail
        .iter()
        .filter(|(k, _)| !r.not_drops.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
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
    })
}

fn measure_fanout(lab: &Lab, groups: u8, rep: u32, cfg: &PassiveConfig) -> Result<FanoutSample> {
    let (p, seg) = start_tapline(lab, cfg, &fanout_section(groups))
        .with_context(|| format!("starting tapline with {groups} output groups"))?;
    let traffic = run_traffic(lab, cfg);
    let snap = stop_tapline(p, &seg);
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
    })
}

/// One measurement of a repetition.
#[derive(Debug, Clone, Copy)]
enum Job {
    Capture(CaptureDut),
    Fanout(u8),
}

/// The measurements of repetition `rep`: the capture DUTs, then the group
/// counts, each list rotated by `rep` so no DUT always runs first.
fn schedule(duts: &[CaptureDut], groups: &[u8], rep: u32) -> Vec<Job> {
    let rotated = |n: usize| (0..n).map(move |k| (k + rep as usize) % n);
    rotated(duts.len())
        .map(|i| Job::Capture(duts[i]))
        .chain(rotated(groups.len()).map(|i| Job::Fanout(groups[i])))
        .collect()
}

/// What a measurement produced, for progress lines.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Capture(&'a CaptureSample),
    Fanout(&'a FanoutSample),
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
    let mut versions = BTreeMap::new();
    let mut measured = Vec::new();
    let duts = std::iter::once(CaptureDut::Tapline).chain(cfg.duts.iter().copied());
    for d in duts {
        if versions.contains_key(&d) {
            continue;
        }
        let v = dut_version(d)?;
        match v {
            None if d == CaptureDut::Tapline => {
                bail!("tapline-dataplane did not run: build it first")
            }
            None => progress(Progress::Skipped(d), 0, 0),
            Some(_) if cfg.duts.contains(&d) => measured.push(d),
            Some(_) => {}
        }
        versions.insert(d, v);
    }
    let mut lab = Lab::build(&lab::unique_prefix(), Scenario::Passive)?;
    let max_groups = cfg.groups.iter().copied().max().unwrap_or(0);
    let members: Vec<String> = (0..max_groups).map(member_name).collect();
    lab.add_sensors(&members.iter().map(String::as_str).collect::<Vec<_>>())?;
    let run_dir = cfg.dir.join(&lab.prefix);
    let total = cfg.reps as usize * (measured.len() + cfg.groups.len());
    let mut capture_samples = Vec::new();
    let mut fanout_samples = Vec::new();
    let result = (|| -> Result<()> {
        for rep in 0..cfg.reps {
            for job in schedule(&measured, &cfg.groups, rep) {
                let done = capture_samples.len() + fanout_samples.len() + 1;
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
    Ok(PassiveResult {
        benchmark: "passive-capture-and-fanout",
        machine: Machine::describe(),
        config: cfg.clone(),
        generator: format!(
            "tapline-bench AF_XDP TX (copy mode), one thread, {}",
            cfg.rate_pps
                .map_or("unpaced".to_string(), |r| format!("paced at {r} frames/s"))
        ),
        versions: versions
            .iter()
            .map(|(d, v)| (d.name().to_string(), v.clone().unwrap_or(SKIPPED.into())))
            .collect(),
        capture_samples,
        capture_summary,
        capture_ratios,
        fanout_samples,
        fanout_summary,
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

/// The result as Markdown.
pub fn markdown(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::from("# Passive capture to disk and fan-out cost\n\n");
    out += &format!(
        "Passive lab (t0 -> p1 = passive-1), frames of {}, {} UDP flows, {}; {} reps x {} s, DUTs interleaved, medians. \
         Machine: {} ({} CPUs, {} GiB), kernel {}. Versions: {}.\n\n",
        FrameSizes::Fixed(c.frame_len).describe(),
        c.flows,
        r.generator,
        c.reps,
        c.seconds,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.kernel,
        r.versions
            .iter()
            .map(|(d, v)| format!("{d}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !r.capture_summary.is_empty() {
        out += "## Capture to disk\n\n";
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
            let rows: Vec<Vec<String>> = r
                .capture_ratios
                .iter()
                .map(|x| {
                    if x.status == SKIPPED {
                        vec![x.name.clone(), SKIPPED.into(), String::new()]
                    } else {
                        vec![
                            x.name.clone(),
                            opt(x.of_medians, times),
                            opt(x.median_of_per_rep, times),
                        ]
                    }
                })
                .collect();
            out += &markdown_table(
                &[
                    "written frames/s",
                    "ratio of medians",
                    "median of per-rep ratios",
                ],
                &rows,
            );
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
        out += "\n## Fan-out cost (tapline, no recorder)\n\n";
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
    let foreign: u64 = r
        .capture_samples
        .iter()
        .map(|s| s.written - s.written_ours)
        .sum();
    out += &format!(
        "\n## How measured\n\n\
         One lab of network namespaces: the generator (tapline-bench's AF_XDP TX, copy mode) sends IPv4/UDP \
         test frames from t0 over a veth into p1 in the dut namespace; nothing else is on that link. \
         Each measurement starts its DUT fresh, sends for {s} s, waits {g} s for the DUT to drain its \
         buffers, stops it (SIGTERM for tapline, SIGINT for the peers, which flush their file and print \
         their statistics) and then counts the records in the pcap files it wrote. \
         *sent* is what the generator's kernel completed on t0, *p1 rx* p1's rx_packets counter, \
         *captured* what the DUT says it received (tapline: passive-1 rx_packets from its stats segment; \
         tcpdump: \"packets received by filter\"; netsniff-ng: \"packets incoming\"), *written* the records \
         in its files (every record is counted; {foreign}). \
         *written Mfps* is written frames per second of traffic. Unpaced, the offered rate depends on how \
         much CPU the DUT leaves the generator, so compare *written / sent* as well, or fix the load with \
         `--rate`. \
         tapline runs one `[[recorder]]` (rotate_size {rot}, queue_size {q}, rotate_interval_s 0); \
         tcpdump runs `tcpdump -i p1 -w FILE -n -B {b} -s 0` and netsniff-ng \
         `netsniff-ng --in p1 --out FILE --silent --ring-size {ring}MiB`, both inside the dut namespace, \
         so every DUT has a 64 MiB buffer between the kernel and the disk. \
         The fan-out part runs tapline without a recorder and with 0 to N output groups, group k with \
         one member mk (a veth to its own sensor namespace, no filter): *captured / sent* is passive-1 \
         rx_packets over frames sent, *delivered / (sent x groups)* the frames transmitted to members \
         over what a lossless fan-out would transmit, *kernel drops* passive-1's XDP socket statistics \
         rx_dropped + rx_ring_full (fill ring empty is the count of times the kernel found no buffer). \
         Ratios are given both as the ratio of the medians and as the median of the per-repetition \
         ratios (the DUTs of one repetition run back to back, so slow drift of the host cancels out). \
         A peer that is not installed is reported as {skipped}, never estimated. \
         The generator, the DUT, its disk writer and the veth softirqs share the machine's {cpus} CPUs: \
         read the numbers as ratios on this machine, not as absolute capacities.\n",
        s = c.seconds,
        g = c.grace_s,
        rot = RECORDER_ROTATE_SIZE,
        q = RECORDER_QUEUE_SIZE,
        b = PEER_RING_MIB * 1024,
        ring = PEER_RING_MIB,
        skipped = SKIPPED,
        cpus = r.machine.cpus,
        foreign = match foreign {
            0 => "all of them were the generator's frames".to_string(),
            n => format!("{n} of them were not the generator's frames"),
        },
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
            schedule(&duts, &[0, 2], rep)
                .iter()
                .map(|j| match j {
                    Job::Capture(d) => d.name().to_string(),
                    Job::Fanout(g) => g.to_string(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["tapline", "tcpdump", "0", "2"]);
        assert_eq!(names(1), ["tcpdump", "tapline", "2", "0"]);
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
            },
            generator: "g".into(),
            versions: BTreeMap::from([("netsniff-ng".to_string(), SKIPPED.to_string())]),
            capture_summary: vec![tapline, skipped],
            capture_ratios: vec![td, ns],
            capture_samples: samples,
            fanout_summary: vec![fanout_summary(0, &fanout_samples), two],
            fanout_samples,
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
    }
}
