//! What the `ndr` benchmark records: its configuration, each DUT run, the
//! summaries, ratios and target verdicts, and the whole result.

use serde::Serialize;

use crate::inline_bench::Dut;
use crate::report::Machine;
use crate::sink::LatencyReport;

use super::{SearchResult, Trial};

/// Settings of `tapline-bench ndr`.
#[derive(Debug, Clone, Serialize)]
pub struct NdrConfig {
    /// The DUTs asked for, in order (skipped ones included).
    pub duts: Vec<Dut>,
    /// Repetitions; each runs every DUT's searches and latency trials.
    pub reps: u32,
    pub frame_len: usize,
    pub flows: u16,
    /// Seconds per trial.
    pub trial_seconds: f64,
    /// The highest rate searched; `None`: the unpaced generator's rate,
    /// measured first through each DUT in each repetition.
    pub max_pps: Option<u64>,
    /// Search resolution, percent of the highest rate.
    pub resolution_pct: f64,
    /// Floor of the resolution and the lowest rate searched.
    pub min_pps: u64,
    pub max_trials: u32,
    pub dataplane_keys: String,
    pub xdp_keys: String,
}

/// Latency at a share of the NDR.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    pub share: f64,
    pub rate_pps: u64,
    pub trial: Trial,
    pub latency: LatencyReport,
}

/// The searches and latency trials of one DUT in one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct DutRun {
    pub dut: Dut,
    /// The repetition, from 0.
    pub rep: u32,
    /// The highest rate searched and where it came from.
    pub hi_pps: u64,
    pub hi_source: &'static str,
    pub resolution_pps: u64,
    pub ndr: SearchResult,
    pub pdr: SearchResult,
    /// At each of [`LATENCY_SHARES`](super::LATENCY_SHARES) of the NDR; empty when the NDR search
    /// found no rate.
    pub latency: Vec<LatencyPoint>,
}

/// A DUT that was asked for but not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub dut: Dut,
    pub reason: String,
}

/// One DUT's latency at one share of the NDR over the repetitions whose
/// NDR search found a rate. Latencies are medians over those repetitions,
/// nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub share: f64,
    /// The repetitions with a trial at this share.
    pub reps: Vec<u32>,
    pub median_rate_pps: f64,
    pub median_loss_ratio: f64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub max_ns: f64,
    /// Each repetition's p99, in `reps` order.
    pub p99_per_rep_ns: Vec<u64>,
    /// The repetition whose p99 is the median (the lower of the middle two
    /// for an even count): its CDF stands for the DUT in the plots.
    pub median_rep: u32,
}

/// One DUT over the repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DutSummary {
    pub dut: Dut,
    /// Each repetition's NDR and PDR, frames per second, in repetition
    /// order; `None`: the search found no rate (even the lowest failed).
    pub ndr_pps: Vec<Option<u64>>,
    pub pdr_pps: Vec<Option<u64>>,
    /// Medians over the repetitions (see [`median_rate`](super::median_rate)).
    pub median_ndr_pps: Option<f64>,
    pub median_pdr_pps: Option<f64>,
    /// Some repetition's search passed at its highest rate: that rate is a
    /// lower bound (the generator's or `--max-pps`), and so may the median
    /// be.
    pub ndr_at_hi: bool,
    pub pdr_at_hi: bool,
    /// How far above the rate it found an NDR search leaves the true NDR
    /// open, frames per second: the median, over the repetitions whose
    /// search found a rate below its highest, of the gap up to the lowest
    /// failing rate (wider than the resolution when the search ran out of
    /// trials), or of the resolution when no failing rate is known. `None`
    /// when no repetition's search found such a rate.
    pub ndr_bracket_pps: Option<f64>,
    /// At each of [`LATENCY_SHARES`](super::LATENCY_SHARES) that some repetition measured.
    pub latency: Vec<LatencySummary>,
}

/// `ours / peer` of one metric, two ways.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioStats {
    /// The ratio of the two medians; `None` when either has none.
    pub of_medians: Option<f64>,
    /// `(repetition, ours / peer)` for each repetition where both have a
    /// value: the DUTs of one repetition run back to back, so slow drift
    /// of the host cancels out.
    pub per_rep: Vec<(u32, f64)>,
    /// The median of `per_rep`.
    pub median_of_per_rep: Option<f64>,
}

/// A tapline DUT against a peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub ours: Dut,
    pub peer: Dut,
    pub ndr: RatioStats,
    pub pdr: RatioStats,
    /// p99 latency at 10% of each DUT's own NDR (lower is better for ours).
    pub p99_at_10pct: RatioStats,
}

/// A target's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The ratio meets the target.
    Met,
    /// It does not, and the measurement can tell.
    Missed,
    /// The measurement cannot decide: a search was bounded by its highest
    /// rate on the side that matters, or a value is missing on both sides.
    Inconclusive,
}

/// One target of the issue checked against this run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    /// The target as stated.
    pub target: &'static str,
    pub ours: Dut,
    pub peer: Dut,
    /// The ratio the verdict is taken from (the ratio of medians).
    pub measured: Option<f64>,
    /// The median of the per-repetition ratios, for comparison.
    pub median_of_per_rep: Option<f64>,
    /// For an NDR target with a rate on both sides: the range the ratio of
    /// the true medians may lie in given the searches' brackets
    /// ([`DutSummary::ndr_bracket_pps`]), `(ours / (peer + its bracket),
    /// (ours + its bracket) / peer)`.
    pub within_resolution: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// What decided a verdict that is not a plain comparison.
    pub note: String,
}

/// The result of `tapline-bench ndr`.
#[derive(Debug, Clone, Serialize)]
pub struct NdrResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: NdrConfig,
    /// DUTs asked for whose software is not installed: not run, not
    /// estimated.
    pub skipped: Vec<Skipped>,
    /// Every DUT's run in every repetition, in the order they ran.
    pub runs: Vec<DutRun>,
    /// Per DUT that ran, in the order asked for.
    pub summary: Vec<DutSummary>,
    /// Each tapline DUT against each peer that ran.
    pub ratios: Vec<Ratio>,
    /// The targets whose peer ran.
    pub targets: Vec<TargetCheck>,
}
