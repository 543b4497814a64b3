//! What the passive benchmarks measure: per-repetition samples, their
//! medians and the ratios against the peers, and the whole result.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{median, Machine};
use crate::search::{Outcome, Trial};

use super::{CaptureDut, PassiveConfig, ZeroDropDut, MEASURED, SKIPPED};

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
    /// [`MEASURED`](super::MEASURED) or [`SKIPPED`](super::SKIPPED).
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
    /// [`MEASURED`](super::MEASURED) or [`SKIPPED`](super::SKIPPED) (a peer that is not installed).
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

impl Ratio {
    /// The ratio against a peer that is not installed: no numbers.
    pub(crate) fn skipped(name: String) -> Ratio {
        Ratio {
            name,
            status: SKIPPED.into(),
            of_medians: None,
            median_of_per_rep: None,
            per_rep: Vec::new(),
            of_medians_bounds: LowerBounds::default(),
            median_of_per_rep_bounds: LowerBounds::default(),
        }
    }

    /// The measured ratio of `ours` over `peer` (values per repetition, as
    /// [`ratio_of`] takes them), neither side a lower bound.
    pub(crate) fn measured(name: String, ours: &[(u32, f64)], peer: &[(u32, f64)]) -> Ratio {
        let (of_medians, median_of_per_rep, per_rep) = ratio_of(ours, peer);
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
pub(crate) fn median_is_lower_bound(values: &[(f64, bool)]) -> bool {
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
    /// The paced rate aimed at, frames per second ([`PROBE_PPS`](super::PROBE_PPS) for the
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
    /// The trial as [`search::search`](crate::search::search) judges it: received = sent - lost.
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
    /// [`MEASURED`](super::MEASURED) or [`SKIPPED`](super::SKIPPED).
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
    /// Version line of each DUT's program (tapline always), or [`SKIPPED`](super::SKIPPED).
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
