//! Inline forwarding throughput: tapline's bridge against the Linux bridge,
//! a tc mirred redirect and the peers of [`crate::peers`] (tapline-bench's
//! AF_PACKET forwarder, DPDK testpmd with `net_af_xdp`, Suricata in
//! af-packet IPS mode) on the same veth topology, in the same run,
//! interleaved, with medians over repetitions. A peer that is not installed
//! is listed as skipped, never measured or estimated.
//!
//! ```text
//! [gen] g0 --veth--> i1 [dut: tapline | br0 | tc mirred | peer] i2 --veth--> s0 [sink]
//! ```
//!
//! The generator is tapline's AF_XDP TX path (copy mode on veth) sending
//! frames of one length as fast as it can (64 bytes on the wire by default;
//! a sweep measures every DUT at each length of a list); throughput is what
//! arrives at `s0` (its rx_packets counter) per second of generation.
//!
//! Modules: [`dut`] sets a DUT up on the lab, measures it and tears it
//! down; [`report`] summarises the samples into medians and ratios and
//! writes the Markdown and the plot.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::lab::{self, Lab, Scenario};
use crate::peers;
use crate::report::Machine;
use crate::traffic::{FCS_BYTES, MAX_FRAME, MIN_FRAME};

mod dut;
mod report;
#[cfg(test)]
mod tests;

use dut::measure;
pub use dut::testpmd_cpus;
pub(crate) use dut::{set_up, tear_down};
use report::summarize;
pub use report::{markdown, throughput_plot};

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dut {
    /// tapline with `xdp.mode = "auto"` (native attach, copy mode on veth).
    Tapline,
    /// tapline with `xdp.mode = "generic"`.
    TaplineGeneric,
    /// tapline (auto) with the sidecar running, `taplinectl stats --watch`
    /// at 100 ms and `/metrics` scraped every second: the cost of
    /// observation, against `Tapline` in the same run.
    TaplineObserved,
    /// The same over TLS with client certificates: the sidecar serves
    /// mTLS and `taplinectl stats --watch` holds an mTLS connection (the
    /// cost of encrypted observation, against `Tapline` in the same run).
    TaplineObservedMtls,
    /// Linux bridge, `bridge-nf-call-iptables = 0`.
    LinuxBridge,
    /// `tc` ingress u32 match-all + `mirred egress redirect`.
    TcMirred,
    /// tapline-bench's AF_PACKET forwarder (`tapline-bench peer
    /// af-packet-fwd`: recvmmsg/sendmmsg, one thread per direction).
    AfPacket,
    /// DPDK testpmd, io forwarding between two `net_af_xdp` ports, no
    /// hugepages.
    Testpmd,
    /// Suricata in af-packet IPS copy-mode (workers, one thread per
    /// interface) with one rule that never matches.
    Suricata,
}

impl Dut {
    /// Every DUT, in the order the CLI lists them.
    pub const ALL: [Dut; 9] = [
        Dut::Tapline,
        Dut::TaplineGeneric,
        Dut::TaplineObserved,
        Dut::TaplineObservedMtls,
        Dut::LinuxBridge,
        Dut::TcMirred,
        Dut::AfPacket,
        Dut::Testpmd,
        Dut::Suricata,
    ];

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Dut::Tapline => "tapline",
            Dut::TaplineGeneric => "tapline-generic",
            Dut::TaplineObserved => "tapline-observed",
            Dut::TaplineObservedMtls => "tapline-observed-mtls",
            Dut::LinuxBridge => "linux-bridge",
            Dut::TcMirred => "tc-mirred",
            Dut::AfPacket => "af-packet",
            Dut::Testpmd => "testpmd",
            Dut::Suricata => "suricata",
        }
    }

    /// Parses a CLI spelling.
    pub fn parse(s: &str) -> Result<Dut> {
        match Dut::ALL.into_iter().find(|d| d.name() == s) {
            Some(d) => Ok(d),
            None => bail!(
                "unknown DUT {s:?}: use {}",
                Dut::ALL.map(Dut::name).join(", ")
            ),
        }
    }

    /// Why the DUT cannot run on this machine (its software is not
    /// installed), or `None` when it can. A missing DUT is reported as
    /// skipped, never measured or estimated.
    pub fn missing(self) -> Option<String> {
        let program = match self {
            Dut::Testpmd => peers::TESTPMD,
            Dut::Suricata => peers::SURICATA,
            Dut::Tapline
            | Dut::TaplineGeneric
            | Dut::TaplineObserved
            | Dut::TaplineObservedMtls
            | Dut::LinuxBridge
            | Dut::TcMirred
            | Dut::AfPacket => return None,
        };
        match peers::find_program(program) {
            Some(_) => None,
            None => Some(format!("not installed ({program} not found in PATH)")),
        }
    }

    /// Whether it is one of tapline's own configurations (not a peer).
    pub fn is_tapline(self) -> bool {
        matches!(
            self,
            Dut::Tapline | Dut::TaplineGeneric | Dut::TaplineObserved | Dut::TaplineObservedMtls
        )
    }
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub duts: Vec<Dut>,
    pub reps: u32,
    pub seconds: f64,
    /// Frame lengths without FCS (60 = 64 bytes on the wire), measured in
    /// this order within each repetition.
    pub frame_lens: Vec<usize>,
    pub flows: u16,
    /// CPU the generator thread is pinned to.
    pub gen_cpu: Option<usize>,
    /// CPU tapline's worker is pinned to.
    pub dut_cpu: Option<usize>,
    /// Extra keys for tapline's `[dataplane]` table (e.g. `idle = "busy"`).
    pub dataplane_keys: String,
    /// Extra keys for tapline's `[xdp]` table (e.g. `frame_count = 8192`).
    pub xdp_keys: String,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub dut: Dut,
    pub rep: u32,
    /// Frame length without FCS.
    pub frame_len: usize,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub loss_ratio: f64,
    /// The XDP mode tapline reported, or the XDP attach mode of a peer that
    /// loads an XDP program (testpmd's `net_af_xdp`, from `ip link`); empty
    /// otherwise.
    pub mode: String,
    /// Share of CPU time stolen by the hypervisor during the measurement:
    /// high values mean the sample says more about the host than the DUT.
    pub steal_ratio: f64,
    /// tapline's final counters for the run (where frames were lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tapline_counters: Option<serde_json::Value>,
    /// A peer's counters as it reported them on exit (af-packet: forwarded,
    /// dropped, kernel drops; testpmd: its accumulated forward statistics;
    /// Suricata: packets and drops per interface).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_counters: Option<serde_json::Value>,
}

/// Medians per DUT and frame length.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dut: Dut,
    /// Frame length without FCS.
    pub frame_len: usize,
    pub median_delivered_mpps: f64,
    pub median_offered_mpps: f64,
    pub samples: Vec<f64>,
}

/// A complete result, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: BenchConfig,
    pub generator: &'static str,
    pub samples: Vec<Sample>,
    pub summary: Vec<Summary>,
    /// `tapline / peer` for each peer and frame length.
    pub ratios: Vec<Ratio>,
    /// DUTs asked for but not run because their software is not installed:
    /// listed, never measured or estimated.
    pub skipped: Vec<Skipped>,
}

/// A DUT that was not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub dut: Dut,
    /// From [`Dut::missing`].
    pub reason: String,
}

/// Splits `duts` into those that can run here and those whose software is
/// missing ([`Dut::missing`]).
pub fn split_missing(duts: &[Dut]) -> (Vec<Dut>, Vec<Skipped>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for &dut in duts {
        match dut.missing() {
            Some(reason) => skipped.push(Skipped { dut, reason }),
            None => run.push(dut),
        }
    }
    (run, skipped)
}

/// Delivered rate of one DUT over another's at one frame length.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// `"ours / peer"`, e.g. `"tapline / linux-bridge"`.
    pub name: String,
    /// Frame length without FCS.
    pub frame_len: usize,
    /// Ratio of the two medians.
    pub of_medians: f64,
    /// Median over repetitions of the ratio within each repetition (the DUTs
    /// of one repetition and frame length run back to back, so slow drift of
    /// the host cancels out).
    pub median_per_rep: f64,
}

/// Runs the benchmark. `progress` is told about each sample as it lands.
pub fn run(
    cfg: &BenchConfig,
    mut progress: impl FnMut(&Sample, usize, usize),
) -> Result<BenchResult> {
    validate_frame_lens(&cfg.frame_lens)?;
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    // DUTs whose software is missing are listed, never run.
    let (runnable, skipped) = split_missing(&cfg.duts);
    let requested = cfg;
    let cfg = &BenchConfig {
        duts: runnable,
        ..requested.clone()
    };
    // A prefix of its own, so concurrent runs never share (or tear down)
    // each other's lab.
    let lab = Lab::build(&lab::unique_prefix(), Scenario::Inline)?;
    let total = cfg.reps as usize * cfg.frame_lens.len() * cfg.duts.len();
    let mut samples = Vec::with_capacity(total);
    for rep in 0..cfg.reps {
        // All DUTs back to back at each frame length, so drift of the host
        // hits them alike; the order rotates with every (rep, length) so no
        // DUT always runs first.
        for (i, &frame_len) in cfg.frame_lens.iter().enumerate() {
            let n = cfg.duts.len();
            for k in 0..n {
                let dut = cfg.duts[(k + rep as usize + i) % n];
                let s = measure(&lab, dut, rep, frame_len, cfg)?;
                progress(&s, samples.len() + 1, total);
                samples.push(s);
            }
        }
    }
    let (summary, ratios) = summarize(cfg, &samples);
    Ok(BenchResult {
        benchmark: "inline-bridge-throughput",
        machine: Machine::describe(),
        config: requested.clone(),
        generator: "tapline-bench AF_XDP TX (copy mode), one thread, unpaced",
        samples,
        summary,
        ratios,
        skipped,
    })
}

/// Checks the frame lengths of a sweep: at least one, none twice, each a
/// frame the lab carries ([`MIN_FRAME`]..=[`MAX_FRAME`] without FCS).
pub fn validate_frame_lens(frame_lens: &[usize]) -> Result<()> {
    if frame_lens.is_empty() {
        bail!("no frame length to measure");
    }
    for (i, &len) in frame_lens.iter().enumerate() {
        if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
            bail!(
                "frame length {len} is outside {MIN_FRAME}..={MAX_FRAME} bytes (without FCS; \
                 {} to {} on the wire)",
                MIN_FRAME + FCS_BYTES,
                MAX_FRAME + FCS_BYTES
            );
        }
        if frame_lens[..i].contains(&len) {
            bail!("frame length {len} is listed twice");
        }
    }
    Ok(())
}
