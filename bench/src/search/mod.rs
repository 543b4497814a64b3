//! RFC 2544-style rate searches: the no-drop rate (NDR, no loss at all)
//! and the partial-drop rate (PDR, loss ratio at most 0.1%), by binary
//! search over the offered rate, and the `tapline-bench ndr` benchmark built
//! on them.
//!
//! The search core ([`search`]) is pure: it is generic over the trial
//! function, so it is tested with fake DUTs; [`run`] plugs in
//! [`crate::measure::measure_in`] trials through the inline lab.
//!
//! The benchmark runs every DUT in the same lab, repeated and interleaved
//! (repetition `k` of every DUT before repetition `k + 1` of any), then
//! [`summarize`] (pure too) takes medians over the repetitions, ratios of
//! tapline to each peer two ways (of the medians, and the median of the
//! ratios within each repetition) and checks the targets. Peers
//! whose software is not installed are skipped and listed, never
//! estimated.
//!
//! Choices, against RFC 2544 section 26.1:
//!
//! - Each rate is tried once, for the whole trial duration (RFC 2544 asks
//!   for at least 60 s; the duration is the caller's knob). A trial is not
//!   repeated or re-validated: the search is a plain bisection, so on a
//!   noisy machine it finds *a* boundary within the noise band, and the
//!   result should be read with the trial log beside it.
//! - The search starts with a trial at `hi` (the RFC starts at the maximum
//!   frame rate); a pass ends it there ([`Outcome::AtHi`]: the capacity is
//!   at least `hi`, bounded by the generator or the caller).
//! - `lo` is only tried when no trial above it passed; when it fails too
//!   the result is [`Outcome::BelowLo`] and no rate.
//! - Trials already made (the NDR search's, for the PDR search) can seed
//!   the bounds: a trial's verdict at one threshold is known without
//!   repeating it.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::inline_bench::Dut;
use crate::lab::{self, Lab, Scenario};
use crate::measure::{self, RunConfig};
use crate::plot::{self, Series};
use crate::report::{self, markdown_table, Machine};
use crate::sink::LatencyReport;
use crate::traffic::FrameSizes;

/// The loss ratio allowed at the no-drop rate.
pub const NDR_LOSS: f64 = 0.0;
/// The loss ratio allowed at the partial-drop rate (0.1%).
pub const PDR_LOSS: f64 = 0.001;
/// The shares of the NDR at which latency is measured.
pub const LATENCY_SHARES: [f64; 3] = [0.1, 0.5, 0.9];

/// The outcome of one trial at one offered rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// The target (paced) rate, frames per second.
    pub rate_pps: u64,
    /// Frames sent.
    pub sent: u64,
    /// Distinct frames received (duplicates excluded).
    pub received: u64,
    /// The rate the generator achieved, frames per second.
    pub offered_pps: f64,
}

impl Trial {
    /// Lost frames over sent frames; 1 when nothing was sent (a trial that
    /// sent nothing proves nothing).
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }

    /// Whether the trial's loss is within `threshold` (inclusive: with 0 no
    /// frame may be lost, with 0.001 exactly 0.1% passes).
    pub fn passes(&self, threshold: f64) -> bool {
        self.sent > 0 && self.loss_ratio() <= threshold
    }
}

/// Settings of one search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SearchConfig {
    /// The lowest rate of interest, frames per second (above 0).
    pub lo: u64,
    /// The highest rate tried, frames per second.
    pub hi: u64,
    /// Loss ratio allowed ([`NDR_LOSS`], [`PDR_LOSS`]).
    pub threshold: f64,
    /// Stop once the passing and failing rates are this close.
    pub resolution_pps: u64,
    /// At most this many new trials (the trial at `lo`, when needed, is
    /// made even past it: without it there is no answer).
    pub max_trials: u32,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The rate is between a passing and a failing trial.
    Found,
    /// The trial at `hi` passed: the capacity is at least `hi`.
    AtHi,
    /// Even `lo` failed: no rate.
    BelowLo,
}

/// The result of one search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// The highest rate that passed; `None` with [`Outcome::BelowLo`].
    pub rate_pps: Option<u64>,
    pub outcome: Outcome,
    /// The lowest failing rate above `rate_pps`, when one is known.
    pub failed_at_pps: Option<u64>,
    /// Whether the bounds met the resolution (false: `max_trials` ran out).
    pub converged: bool,
    /// The trials this search made, in order (seed trials excluded).
    pub trials: Vec<Trial>,
}

/// Binary search for the highest rate in `[cfg.lo, cfg.hi]` whose trial
/// loses at most `cfg.threshold` of the frames. `seed` holds trials made
/// before (at any threshold): their verdicts at this threshold set the
/// initial bounds. `trial` runs one trial at the given rate.
pub fn search(
    cfg: &SearchConfig,
    seed: &[Trial],
    mut trial: impl FnMut(u64) -> Result<Trial>,
) -> Result<SearchResult> {
    ensure!(cfg.lo > 0, "the lowest rate must be above 0");
    ensure!(
        cfg.lo <= cfg.hi,
        "the lowest rate ({}) is above the highest ({})",
        cfg.lo,
        cfg.hi
    );
    ensure!(
        cfg.threshold.is_finite() && (0.0..1.0).contains(&cfg.threshold),
        "the loss threshold must be in [0, 1)"
    );
    let in_range = |t: &&Trial| (cfg.lo..=cfg.hi).contains(&t.rate_pps);
    // Highest known pass, lowest known failure above it.
    let mut pass = seed
        .iter()
        .filter(in_range)
        .filter(|t| t.passes(cfg.threshold))
        .map(|t| t.rate_pps)
        .max();
    let mut fail = seed
        .iter()
        .filter(in_range)
        .filter(|t| !t.passes(cfg.threshold) && Some(t.rate_pps) > pass)
        .map(|t| t.rate_pps)
        .min();
    let mut trials = Vec::new();
    let mut run = |rate: u64, trials: &mut Vec<Trial>| -> Result<bool> {
        let t = trial(rate).with_context(|| format!("trial at {rate} fps"))?;
        let ok = t.passes(cfg.threshold);
        trials.push(t);
        Ok(ok)
    };
    if pass != Some(cfg.hi) && fail.is_none() {
        if run(cfg.hi, &mut trials)? {
            pass = Some(cfg.hi);
        } else {
            fail = Some(cfg.hi);
        }
    }
    let Some(fail_at) = fail else {
        return Ok(SearchResult {
            rate_pps: Some(cfg.hi),
            outcome: Outcome::AtHi,
            failed_at_pps: None,
            converged: true,
            trials,
        });
    };
    let mut fail_at = fail_at;
    let converged = loop {
        let low = pass.unwrap_or(cfg.lo);
        if fail_at.saturating_sub(low) <= cfg.resolution_pps.max(1) {
            break true;
        }
        if trials.len() >= cfg.max_trials as usize {
            break false;
        }
        let mid = low + (fail_at - low) / 2;
        if run(mid, &mut trials)? {
            pass = Some(mid);
        } else {
            fail_at = mid;
        }
    };
    if pass.is_none() && fail_at != cfg.lo && run(cfg.lo, &mut trials)? {
        pass = Some(cfg.lo);
    }
    Ok(SearchResult {
        rate_pps: pass,
        outcome: if pass.is_some() {
            Outcome::Found
        } else {
            Outcome::BelowLo
        },
        failed_at_pps: Some(fail_at),
        converged,
        trials,
    })
}

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
    /// At each of [`LATENCY_SHARES`] of the NDR; empty when the NDR search
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
    /// Medians over the repetitions (see [`median_rate`]).
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
    /// At each of [`LATENCY_SHARES`] that some repetition measured.
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

/// The tapline DUTs compared against the peers.
const OURS: [Dut; 2] = [Dut::Tapline, Dut::TaplineGeneric];
/// The share of the NDR at which latency is compared.
pub const COMPARED_SHARE: f64 = 0.1;

/// What a target asks of `ours / peer`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// NDR ratio at least this.
    NdrAtLeast(f64),
    /// p99 latency ratio at [`COMPARED_SHARE`] of the NDR at most this.
    P99AtMost(f64),
}

/// The targets of the issue: tapline's inline bridge against each peer.
const TARGETS: [(&str, Dut, Goal); 4] = [
    (
        "tapline NDR >= 1.5x linux-bridge",
        Dut::LinuxBridge,
        Goal::NdrAtLeast(1.5),
    ),
    (
        "tapline NDR >= 1.2x tc-mirred",
        Dut::TcMirred,
        Goal::NdrAtLeast(1.2),
    ),
    (
        "tapline NDR >= 1.0x testpmd (net_af_xdp)",
        Dut::Testpmd,
        Goal::NdrAtLeast(1.0),
    ),
    (
        "tapline p99 at 10% of NDR <= linux-bridge's",
        Dut::LinuxBridge,
        Goal::P99AtMost(1.0),
    ),
];

/// Splits the DUTs asked for into those that can run here and those whose
/// software is missing ([`Dut::missing`]); duplicates are dropped.
pub fn split_runnable(duts: &[Dut]) -> (Vec<Dut>, Vec<Skipped>) {
    let mut run = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    for &dut in duts {
        if run.contains(&dut) || skipped.iter().any(|s| s.dut == dut) {
            continue;
        }
        match dut.missing() {
            Some(reason) => skipped.push(Skipped { dut, reason }),
            None => run.push(dut),
        }
    }
    (run, skipped)
}

/// Runs the NDR and PDR searches and the latency trials of each DUT that
/// can run here, `cfg.reps` times, in one inline lab reused by every
/// trial. The repetitions are interleaved: repetition `k` runs every DUT
/// before repetition `k + 1` starts, in an order rotated by one each
/// repetition so that no DUT always runs first. `progress` is told about
/// each trial (repetition, DUT, what it is for, the trial).
pub fn run(cfg: &NdrConfig, mut progress: impl FnMut(u32, Dut, &str, &Trial)) -> Result<NdrResult> {
    if !lab::privileged()? {
        bail!("the search builds network namespaces and needs root");
    }
    ensure!(cfg.reps > 0, "at least one repetition is needed");
    ensure!(cfg.min_pps > 0, "the lowest rate must be above 0");
    ensure!(
        cfg.resolution_pct > 0.0 && cfg.resolution_pct.is_finite(),
        "the resolution must be a positive percentage"
    );
    let (duts, skipped) = split_runnable(&cfg.duts);
    if duts.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|s| format!("{} ({})", s.dut.name(), s.reason))
            .collect();
        bail!("none of the DUTs can run here: {}", why.join(", "));
    }
    let lab = Lab::build(&lab::unique_prefix(), Scenario::Inline)?;
    let mut runs = Vec::with_capacity(cfg.reps as usize * duts.len());
    for (rep, dut) in schedule(&duts, cfg.reps) {
        let r = run_dut(&lab, cfg, dut, rep, &mut progress)
            .with_context(|| format!("repetition {rep}, {}", dut.name()))?;
        runs.push(r);
    }
    Ok(summarize(
        cfg.clone(),
        Machine::describe(),
        &duts,
        skipped,
        runs,
    ))
}

/// The order of the runs: `(repetition, DUT)`, every DUT once per
/// repetition, the order rotated by one DUT each repetition.
fn schedule(duts: &[Dut], reps: u32) -> impl Iterator<Item = (u32, Dut)> + '_ {
    (0..reps).flat_map(move |rep| {
        (0..duts.len()).map(move |k| (rep, duts[(k + rep as usize) % duts.len()]))
    })
}

/// A paced run at `rate_pps` through `dut` in `lab`.
fn measure_at(
    lab: &Lab,
    cfg: &NdrConfig,
    dut: Dut,
    rate_pps: u64,
) -> Result<(Trial, measure::RunReport)> {
    let r = measure::measure_in(
        lab,
        &RunConfig {
            dut,
            rate_pps,
            seconds: cfg.trial_seconds,
            sizes: FrameSizes::Fixed(cfg.frame_len),
            flows: cfg.flows,
            dataplane_keys: cfg.dataplane_keys.clone(),
            xdp_keys: cfg.xdp_keys.clone(),
        },
    )?;
    let t = Trial {
        rate_pps,
        sent: r.sent,
        received: r.sink.received,
        offered_pps: r.offered_pps,
    };
    Ok((t, r))
}

/// A rate the paced generator cannot reach: the probe for `hi` runs
/// effectively unpaced.
const PROBE_PPS: u64 = 1_000_000_000;

fn run_dut(
    lab: &Lab,
    cfg: &NdrConfig,
    dut: Dut,
    rep: u32,
    progress: &mut impl FnMut(u32, Dut, &str, &Trial),
) -> Result<DutRun> {
    let (hi, hi_source) = match cfg.max_pps {
        Some(m) => (m, "--max-pps"),
        None => {
            let (t, _) = measure_at(lab, cfg, dut, PROBE_PPS)?;
            progress(rep, dut, "generator probe", &t);
            (t.offered_pps as u64, "unpaced generator")
        }
    };
    ensure!(
        hi >= cfg.min_pps,
        "the highest rate ({hi} fps) is below the lowest ({} fps)",
        cfg.min_pps
    );
    let resolution_pps = ((hi as f64 * cfg.resolution_pct / 100.0) as u64).max(cfg.min_pps);
    let sc = |threshold| SearchConfig {
        lo: cfg.min_pps,
        hi,
        threshold,
        resolution_pps,
        max_trials: cfg.max_trials,
    };
    let mut trial = |what: &str, rate: u64| -> Result<Trial> {
        let (t, _) = measure_at(lab, cfg, dut, rate)?;
        progress(rep, dut, what, &t);
        Ok(t)
    };
    let ndr = search(&sc(NDR_LOSS), &[], |r| trial("ndr", r))
        .with_context(|| format!("NDR search through {}", dut.name()))?;
    let pdr = search(&sc(PDR_LOSS), &ndr.trials, |r| trial("pdr", r))
        .with_context(|| format!("PDR search through {}", dut.name()))?;
    let mut latency = Vec::new();
    if let Some(ndr_rate) = ndr.rate_pps {
        for share in LATENCY_SHARES {
            let rate = ((ndr_rate as f64 * share) as u64).max(1);
            let (t, r) = measure_at(lab, cfg, dut, rate)?;
            progress(rep, dut, &format!("latency {:.0}%", share * 100.0), &t);
            latency.push(LatencyPoint {
                share,
                rate_pps: rate,
                trial: t,
                latency: r.sink.latency,
            });
        }
    }
    Ok(DutRun {
        dut,
        rep,
        hi_pps: hi,
        hi_source,
        resolution_pps,
        ndr,
        pdr,
        latency,
    })
}

/// The median of rates where `None` (no rate: below the lowest) ranks
/// below every rate. With an even count the two middle rates are
/// averaged; when either of them is `None` so is the median, since half
/// of the repetitions or more found no rate. `None` for no values.
pub fn median_rate(rates: &[Option<u64>]) -> Option<f64> {
    let mut v = rates.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        v[n / 2].map(|r| r as f64)
    } else {
        Some((v[n / 2 - 1]? as f64 + v[n / 2]? as f64) / 2.0)
    }
}

/// `None` for an empty sample, else its median.
fn median_of(xs: &[f64]) -> Option<f64> {
    let m = report::median(xs);
    m.is_finite().then_some(m)
}

/// One DUT's latency at `share` over its runs (in repetition order).
fn latency_summary(share: f64, runs: &[&DutRun]) -> Option<LatencySummary> {
    let points: Vec<(u32, &LatencyPoint)> = runs
        .iter()
        .filter_map(|r| Some((r.rep, r.latency.iter().find(|p| p.share == share)?)))
        .collect();
    if points.is_empty() {
        return None;
    }
    let med = |f: fn(&LatencyPoint) -> f64| {
        report::median(&points.iter().map(|(_, p)| f(p)).collect::<Vec<_>>())
    };
    let mut by_p99: Vec<(u64, u32)> = points
        .iter()
        .map(|(rep, p)| (p.latency.p99_ns, *rep))
        .collect();
    by_p99.sort_unstable();
    Some(LatencySummary {
        share,
        reps: points.iter().map(|(rep, _)| *rep).collect(),
        median_rate_pps: med(|p| p.rate_pps as f64),
        median_loss_ratio: med(|p| p.trial.loss_ratio()),
        p50_ns: med(|p| p.latency.p50_ns as f64),
        p90_ns: med(|p| p.latency.p90_ns as f64),
        p99_ns: med(|p| p.latency.p99_ns as f64),
        p999_ns: med(|p| p.latency.p999_ns as f64),
        max_ns: med(|p| p.latency.max_ns as f64),
        p99_per_rep_ns: points.iter().map(|(_, p)| p.latency.p99_ns).collect(),
        median_rep: by_p99[(by_p99.len() - 1) / 2].1,
    })
}

/// How far above the rate it found `run`'s NDR search leaves the true NDR
/// open: up to the lowest failing rate when known, else the resolution.
/// `None` unless the search found a rate below its highest.
fn ndr_bracket(run: &DutRun) -> Option<u64> {
    let s = &run.ndr;
    let rate = s.rate_pps.filter(|_| s.outcome == Outcome::Found)?;
    Some(
        s.failed_at_pps
            .map_or(run.resolution_pps, |f| f.saturating_sub(rate)),
    )
}

/// One DUT over its runs.
fn dut_summary(dut: Dut, runs: &[DutRun]) -> DutSummary {
    let mut mine: Vec<&DutRun> = runs.iter().filter(|r| r.dut == dut).collect();
    mine.sort_by_key(|r| r.rep);
    let ndr_pps: Vec<Option<u64>> = mine.iter().map(|r| r.ndr.rate_pps).collect();
    let pdr_pps: Vec<Option<u64>> = mine.iter().map(|r| r.pdr.rate_pps).collect();
    DutSummary {
        dut,
        median_ndr_pps: median_rate(&ndr_pps),
        median_pdr_pps: median_rate(&pdr_pps),
        ndr_pps,
        pdr_pps,
        ndr_at_hi: mine.iter().any(|r| r.ndr.outcome == Outcome::AtHi),
        pdr_at_hi: mine.iter().any(|r| r.pdr.outcome == Outcome::AtHi),
        ndr_bracket_pps: median_of(
            &mine
                .iter()
                .filter_map(|r| ndr_bracket(r).map(|b| b as f64))
                .collect::<Vec<_>>(),
        ),
        latency: LATENCY_SHARES
            .iter()
            .filter_map(|&s| latency_summary(s, &mine))
            .collect(),
    }
}

/// `ours / peer` from per-repetition values and the two medians.
fn ratio_stats(
    ours: &[(u32, Option<f64>)],
    peer: &[(u32, Option<f64>)],
    medians: (Option<f64>, Option<f64>),
) -> RatioStats {
    let per_rep: Vec<(u32, f64)> = ours
        .iter()
        .filter_map(|&(rep, a)| {
            let b = peer.iter().find(|(r, _)| *r == rep)?.1?;
            (b > 0.0).then_some((rep, a? / b))
        })
        .collect();
    let of_medians = match medians {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    RatioStats {
        of_medians,
        median_of_per_rep: median_of(&per_rep.iter().map(|(_, r)| *r).collect::<Vec<_>>()),
        per_rep,
    }
}

/// Per repetition: the rate a search found.
fn rates_by_rep(
    runs: &[DutRun],
    dut: Dut,
    pick: fn(&DutRun) -> &SearchResult,
) -> Vec<(u32, Option<f64>)> {
    runs.iter()
        .filter(|r| r.dut == dut)
        .map(|r| (r.rep, pick(r).rate_pps.map(|x| x as f64)))
        .collect()
}

/// Per repetition: the p99 latency at [`COMPARED_SHARE`] of the NDR.
fn p99_by_rep(runs: &[DutRun], dut: Dut) -> Vec<(u32, Option<f64>)> {
    runs.iter()
        .filter(|r| r.dut == dut)
        .map(|r| {
            let p = r.latency.iter().find(|p| p.share == COMPARED_SHARE);
            (r.rep, p.map(|p| p.latency.p99_ns as f64))
        })
        .collect()
}

impl DutSummary {
    /// The latency summary at `share`, when measured.
    pub fn latency_at(&self, share: f64) -> Option<&LatencySummary> {
        self.latency.iter().find(|l| l.share == share)
    }
}

fn ratio(runs: &[DutRun], summary: &[DutSummary], ours: Dut, peer: Dut) -> Option<Ratio> {
    let a = summary.iter().find(|s| s.dut == ours)?;
    let b = summary.iter().find(|s| s.dut == peer)?;
    let p99 = |s: &DutSummary| s.latency_at(COMPARED_SHARE).map(|l| l.p99_ns);
    Some(Ratio {
        ours,
        peer,
        ndr: ratio_stats(
            &rates_by_rep(runs, ours, |r| &r.ndr),
            &rates_by_rep(runs, peer, |r| &r.ndr),
            (a.median_ndr_pps, b.median_ndr_pps),
        ),
        pdr: ratio_stats(
            &rates_by_rep(runs, ours, |r| &r.pdr),
            &rates_by_rep(runs, peer, |r| &r.pdr),
            (a.median_pdr_pps, b.median_pdr_pps),
        ),
        p99_at_10pct: ratio_stats(
            &p99_by_rep(runs, ours),
            &p99_by_rep(runs, peer),
            (p99(a), p99(b)),
        ),
    })
}

/// The verdict on one target from the summaries and the ratio of the two
/// DUTs. `min_pps` is the lowest rate searched: a DUT that did not pass it
/// has an NDR somewhere below it.
fn check(
    target: &'static str,
    goal: Goal,
    ours: &DutSummary,
    peer: &DutSummary,
    r: &Ratio,
    min_pps: u64,
) -> TargetCheck {
    let (o, p) = (ours.dut.name(), peer.dut.name());
    let mut within_resolution = None;
    let (stats, verdict, note) = match goal {
        Goal::NdrAtLeast(min) => {
            let (verdict, note) = match (ours.median_ndr_pps, peer.median_ndr_pps, r.ndr.of_medians)
            {
                (None, None, _) => (
                    Verdict::Inconclusive,
                    "neither passed the lowest rate".to_string(),
                ),
                (None, Some(_), _) => {
                    (Verdict::Missed, format!("{o} did not pass the lowest rate"))
                }
                // The peer's NDR is only known to be below the lowest rate,
                // so the ratio only to be above `a / min_pps`.
                (Some(a), None, _) if a >= min * min_pps as f64 => {
                    (Verdict::Met, format!("{p} did not pass the lowest rate"))
                }
                (Some(a), None, _) => (
                    Verdict::Inconclusive,
                    format!(
                        "{p} did not pass the lowest rate ({min_pps} fps): the ratio is only known to be above {:.2}x",
                        a / min_pps as f64
                    ),
                ),
                (_, _, Some(x)) if x >= min && peer.ndr_at_hi => (
                    Verdict::Inconclusive,
                    format!("{p}'s NDR reached the highest rate searched: it is a lower bound"),
                ),
                (_, _, Some(x)) if x < min && ours.ndr_at_hi => (
                    Verdict::Inconclusive,
                    format!("{o}'s NDR reached the highest rate searched: it is a lower bound"),
                ),
                (Some(a), Some(b), Some(_)) => {
                    let lo = a / (b + peer.ndr_bracket_pps.unwrap_or(0.0));
                    let hi = (a + ours.ndr_bracket_pps.unwrap_or(0.0)) / b;
                    within_resolution = Some((lo, hi));
                    if lo >= min {
                        (Verdict::Met, String::new())
                    } else if hi < min {
                        (Verdict::Missed, String::new())
                    } else {
                        (
                            Verdict::Inconclusive,
                            format!("within the searches' resolution: {lo:.2}x to {hi:.2}x"),
                        )
                    }
                }
                // Both medians are rates, so only a zero peer rate (not a
                // rate a search can find) leaves no ratio.
                (Some(_), Some(_), None) => (
                    Verdict::Inconclusive,
                    format!("{p}'s NDR is 0: no ratio"),
                ),
            };
            (&r.ndr, verdict, note)
        }
        Goal::P99AtMost(max) => {
            // Latency is measured only in repetitions whose NDR search
            // found a rate; a median over fewer than half of them says
            // little about the DUT.
            let sparse = [ours, peer].into_iter().find_map(|s| {
                let reps = s.ndr_pps.len();
                let measured = s.latency_at(COMPARED_SHARE).map_or(0, |l| l.reps.len());
                (measured * 2 < reps).then(|| (s.dut.name(), measured, reps))
            });
            let (verdict, note) = match (r.p99_at_10pct.of_medians, sparse) {
                (None, _) => (
                    Verdict::Inconclusive,
                    "no latency at 10% of the NDR on one side (its NDR search found no rate)"
                        .to_string(),
                ),
                (Some(_), Some((name, measured, reps))) => (
                    Verdict::Inconclusive,
                    format!(
                        "{name} has latency at 10% of the NDR in only {measured} of {reps} repetitions (its NDR search found no rate in the others)"
                    ),
                ),
                (Some(x), None) if x <= max => (Verdict::Met, String::new()),
                (Some(_), None) => (Verdict::Missed, String::new()),
            };
            (&r.p99_at_10pct, verdict, note)
        }
    };
    TargetCheck {
        target,
        ours: ours.dut,
        peer: peer.dut,
        measured: stats.of_medians,
        median_of_per_rep: stats.median_of_per_rep,
        within_resolution,
        verdict,
        note,
    }
}

/// Medians, ratios and target verdicts of finished runs. `duts` are the
/// DUTs that ran, in the order asked for.
pub fn summarize(
    config: NdrConfig,
    machine: Machine,
    duts: &[Dut],
    skipped: Vec<Skipped>,
    runs: Vec<DutRun>,
) -> NdrResult {
    let summary: Vec<DutSummary> = duts.iter().map(|&d| dut_summary(d, &runs)).collect();
    let ratios: Vec<Ratio> = OURS
        .iter()
        .flat_map(|&ours| {
            duts.iter()
                .filter(|&&d| !d.is_tapline())
                .map(move |&peer| (ours, peer))
        })
        .filter_map(|(ours, peer)| ratio(&runs, &summary, ours, peer))
        .collect();
    let find = |d: Dut| summary.iter().find(|s| s.dut == d);
    let targets = TARGETS
        .iter()
        .filter_map(|&(target, peer, goal)| {
            let r = ratios
                .iter()
                .find(|r| r.ours == Dut::Tapline && r.peer == peer)?;
            Some(check(
                target,
                goal,
                find(Dut::Tapline)?,
                find(peer)?,
                r,
                config.min_pps,
            ))
        })
        .collect();
    NdrResult {
        benchmark: "rfc2544-ndr-pdr",
        machine,
        config,
        skipped,
        runs,
        summary,
        ratios,
        targets,
    }
}

fn kfps(r: Option<u64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}", r as f64 / 1000.0))
}

fn rate_cell(s: &SearchResult) -> String {
    let mut c = kfps(s.rate_pps);
    match s.outcome {
        Outcome::Found if !s.converged => c += " (not converged)",
        Outcome::AtHi => c = format!(">= {c}"),
        Outcome::BelowLo => c = "below lowest".to_string(),
        Outcome::Found => {}
    }
    c
}

/// A median rate in kfps; `*` marks one some repetition bounded by its
/// highest rate.
fn median_cell(median_pps: Option<f64>, at_hi: bool) -> String {
    match median_pps {
        None => "below lowest".to_string(),
        Some(r) if at_hi => format!("{:.1} *", r / 1000.0),
        Some(r) => format!("{:.1}", r / 1000.0),
    }
}

/// The rate the generator achieved in the trial that set `s`'s rate (a
/// PDR search's may come from the NDR search's trials).
fn offered_cell(s: &SearchResult, seed: &[Trial]) -> String {
    s.trials
        .iter()
        .chain(seed)
        .find(|t| Some(t.rate_pps) == s.rate_pps)
        .map_or_else(
            || "-".to_string(),
            |t| format!("{:.1}", t.offered_pps / 1000.0),
        )
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

fn ratio_cell(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"))
}

fn verdict_cell(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::Missed => "missed",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// The targets that could not be checked, and why.
fn unchecked_targets(r: &NdrResult) -> Vec<String> {
    let ran = |d: Dut| r.summary.iter().any(|s| s.dut == d);
    TARGETS
        .iter()
        .filter(|(target, ..)| !r.targets.iter().any(|t| t.target == *target))
        .map(|&(target, peer, _)| {
            let why = if !ran(Dut::Tapline) {
                "tapline did not run".to_string()
            } else if let Some(s) = r.skipped.iter().find(|s| s.dut == peer) {
                format!("{} skipped: {}", peer.name(), s.reason)
            } else if !ran(peer) {
                format!("{} not in --dut", peer.name())
            } else {
                format!("no result for {}", peer.name())
            };
            format!("{target} ({why})")
        })
        .collect()
}

/// The result as Markdown.
pub fn markdown(r: &NdrResult) -> String {
    let c = &r.config;
    let mut out = format!(
        "RFC 2544-style rate search through the inline lab: {}-byte frames ({} on the wire), {} flows, {} repetitions interleaved, {} s per trial, resolution {}% of the highest rate (at least {} fps). NDR: no loss; PDR: at most {}% loss. Machine: {} ({} CPUs), kernel {}, {}.\n\n",
        c.frame_len,
        c.frame_len + crate::traffic::FCS_BYTES,
        c.flows,
        c.reps,
        c.trial_seconds,
        c.resolution_pct,
        c.min_pps,
        PDR_LOSS * 100.0,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel,
        r.machine.links()
    );
    if !r.skipped.is_empty() {
        let s: Vec<String> = r
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.dut.name(), s.reason))
            .collect();
        out += &format!(
            "Skipped, not installed here (not run, nothing estimated): {}.\n\n",
            s.join("; ")
        );
    }

    out += "Rates (kfps), medians over the repetitions:\n\n";
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .map(|s| {
            let each = |pick: fn(&DutRun) -> &SearchResult| {
                r.runs
                    .iter()
                    .filter(|x| x.dut == s.dut)
                    .map(|x| rate_cell(pick(x)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                s.dut.name().to_string(),
                median_cell(s.median_ndr_pps, s.ndr_at_hi),
                each(|x| &x.ndr),
                median_cell(s.median_pdr_pps, s.pdr_at_hi),
                each(|x| &x.pdr),
            ]
        })
        .collect();
    out += &markdown_table(&["DUT", "NDR", "NDR per rep", "PDR", "PDR per rep"], &rows);
    if r.summary.iter().any(|s| s.ndr_at_hi || s.pdr_at_hi) {
        out += "\n\\* some repetition passed at its highest rate (the generator's or --max-pps): a lower bound.\n";
    }

    if !r.ratios.is_empty() {
        out += "\nRatios:\n\n";
        let rows: Vec<Vec<String>> = r
            .ratios
            .iter()
            .map(|x| {
                vec![
                    format!("{} / {}", x.ours.name(), x.peer.name()),
                    ratio_cell(x.ndr.of_medians),
                    ratio_cell(x.ndr.median_of_per_rep),
                    ratio_cell(x.pdr.of_medians),
                    ratio_cell(x.pdr.median_of_per_rep),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "ratio",
                "NDR, of medians",
                "NDR, median of per-rep",
                "PDR, of medians",
                "PDR, median of per-rep",
            ],
            &rows,
        );
    }

    out += "\nTargets:\n\n";
    if r.targets.is_empty() {
        out += "None checked.\n";
    } else {
        let rows: Vec<Vec<String>> = r
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.target.to_string(),
                    ratio_cell(t.measured),
                    ratio_cell(t.median_of_per_rep),
                    t.within_resolution.map_or_else(
                        || "-".to_string(),
                        |(lo, hi)| format!("{lo:.2}x to {hi:.2}x"),
                    ),
                    verdict_cell(t.verdict).to_string(),
                    t.note.clone(),
                ]
            })
            .collect();
        out += &markdown_table(
            &[
                "target",
                "measured (of medians)",
                "median of per-rep",
                "within resolution",
                "verdict",
                "note",
            ],
            &rows,
        );
        if r.targets.iter().any(|t| t.within_resolution.is_some()) {
            out += "\nWithin resolution: where the ratio of the true median NDRs lies, each search having bracketed its NDR between the rate found and the lowest failing rate above it. A target is met or missed only when the whole range is on one side.\n";
        }
    }
    let unchecked = unchecked_targets(r);
    if !unchecked.is_empty() {
        out += &format!("\nNot checked: {}.\n", unchecked.join("; "));
    }

    out += "\nOne-way latency at shares of each DUT's own NDR (us, generator queue to sink read), medians over the repetitions:\n\n";
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .flat_map(|s| {
            s.latency.iter().map(|l| {
                vec![
                    s.dut.name().to_string(),
                    format!("{:.0}%", l.share * 100.0),
                    format!("{:.1}", l.median_rate_pps / 1000.0),
                    format!("{:.4}", l.median_loss_ratio * 100.0),
                    us(l.p50_ns),
                    us(l.p90_ns),
                    us(l.p99_ns),
                    us(l.p999_ns),
                    us(l.max_ns),
                    l.p99_per_rep_ns
                        .iter()
                        .map(|&ns| us(ns as f64))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "share",
            "kfps",
            "loss %",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "p99 per rep",
        ],
        &rows,
    );

    out += &format!(
        "\nLatency at {:.0}% of the NDR (us, medians):\n\n",
        COMPARED_SHARE * 100.0
    );
    let bridge_p99 = r
        .summary
        .iter()
        .find(|s| s.dut == Dut::LinuxBridge)
        .and_then(|s| s.latency_at(COMPARED_SHARE))
        .map(|l| l.p99_ns);
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .filter_map(|s| {
            let l = s.latency_at(COMPARED_SHARE)?;
            Some(vec![
                s.dut.name().to_string(),
                us(l.p50_ns),
                us(l.p99_ns),
                us(l.p999_ns),
                ratio_cell(bridge_p99.filter(|&b| b > 0.0).map(|b| l.p99_ns / b)),
            ])
        })
        .collect();
    out += &markdown_table(
        &["DUT", "p50", "p99", "p99.9", "p99 / linux-bridge p99"],
        &rows,
    );

    out += "\nEvery search, in the order run:\n\n";
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|d| {
            vec![
                d.rep.to_string(),
                d.dut.name().to_string(),
                format!("{:.1} ({})", d.hi_pps as f64 / 1000.0, d.hi_source),
                rate_cell(&d.ndr),
                offered_cell(&d.ndr, &[]),
                rate_cell(&d.pdr),
                offered_cell(&d.pdr, &d.ndr.trials),
                (d.ndr.trials.len() + d.pdr.trials.len()).to_string(),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "rep",
            "DUT",
            "highest kfps",
            "NDR kfps",
            "offered",
            "PDR kfps",
            "offered",
            "trials",
        ],
        &rows,
    );
    out += &format!(
        "\nHow measured: all DUTs run in one inline lab (generator veth -> DUT namespace -> AF_XDP sink), set up and torn down around every trial. \
The repetitions are interleaved: repetition k runs every DUT's NDR search, PDR search and latency trials before repetition k+1 starts, in an order rotated by one DUT per repetition, so slow drift of the host weighs on all DUTs alike. \
Each search is a bisection over paced trials, starting at the highest rate ({}), each rate tried once; a trial passes the NDR when no frame was lost and the PDR when at most {}% were (frames received are distinct sequence numbers at the sink). The PDR search reuses the NDR search's trials. \
Latency is one-way, from the generator's timestamp at queueing to the sink's read (CLOCK_MONOTONIC, one host), in trials at {} of the NDR found in the same repetition: each DUT at its own load. \
Medians are over the repetitions; a repetition whose search found no rate ranks below every rate. Ratios are tapline / peer: \"of medians\" divides the two medians, \"median of per-rep\" is the median of the ratios within each repetition. \
Targets are judged on the ratio of medians, and are inconclusive when a search that could change the verdict ended at its highest rate. \
\"offered\" is what the generator achieved in the trial at that rate (below the rate: the generator fell short, not the DUT). \
Peers whose software is not installed are skipped: not run, nothing estimated. \
The trial log, every repetition's latency percentiles and CDFs are in the JSON; the CDF plots show, per DUT, the repetition whose p99 at that share is the median.\n",
        match c.max_pps {
            Some(_) => "--max-pps",
            None => "the unpaced generator's rate through the DUT, measured at the start of its search in each repetition",
        },
        PDR_LOSS * 100.0,
        LATENCY_SHARES
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

/// The latency CDF plots written beside the result: file name (without
/// `.svg`) and the share of the NDR drawn.
pub const CDF_PLOTS: [(&str, f64); 2] = [
    ("ndr-latency-cdf", COMPARED_SHARE),
    ("ndr-latency-cdf-50pct", 0.5),
];

/// One series per DUT with latency at `share` of its NDR: the CDF of the
/// repetition whose p99 there is the median (x: latency in microseconds,
/// y: percent of frames at or below).
pub fn latency_cdf_series(r: &NdrResult, share: f64) -> Vec<Series> {
    r.summary
        .iter()
        .filter_map(|s| {
            let l = s.latency_at(share)?;
            let run = r
                .runs
                .iter()
                .find(|x| x.dut == s.dut && x.rep == l.median_rep)?;
            let p = run.latency.iter().find(|p| p.share == share)?;
            // A log axis has no place for 0 ns (a clock step, in practice).
            let points: Vec<(f64, f64)> = p
                .latency
                .cdf
                .iter()
                .filter(|&&(_, ns)| ns > 0)
                .map(|&(pct, ns)| (ns as f64 / 1000.0, pct))
                .collect();
            (!points.is_empty()).then(|| Series {
                name: format!(
                    "{} ({:.1} kfps, rep {})",
                    s.dut.name(),
                    p.rate_pps as f64 / 1000.0,
                    run.rep
                ),
                points,
            })
        })
        .collect()
}

/// Writes the [`CDF_PLOTS`] under `dir` and returns their paths; a plot
/// no DUT has latency for (every NDR search found no rate) is left out.
pub fn write_plots(r: &NdrResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, share) in CDF_PLOTS {
        let series = latency_cdf_series(r, share);
        if series.is_empty() {
            continue;
        }
        let title = format!(
            "One-way latency at {:.0}% of each DUT's NDR, {}-byte frames",
            share * 100.0,
            r.config.frame_len + crate::traffic::FCS_BYTES
        );
        let svg = plot::latency_cdf(&title, &series).with_context(|| format!("plotting {name}"))?;
        written.push(report::write_svg(dir, name, &svg)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake DUT: frames above `capacity` are lost.
    fn dut(capacity: u64) -> impl FnMut(u64) -> Result<Trial> {
        move |rate| {
            let sent = rate * 2;
            let received = sent.min(capacity * 2);
            Ok(Trial {
                rate_pps: rate,
                sent,
                received,
                offered_pps: rate as f64,
            })
        }
    }

    fn cfg(threshold: f64) -> SearchConfig {
        SearchConfig {
            lo: 1_000,
            hi: 1_000_000,
            threshold,
            resolution_pps: 10_000,
            max_trials: 30,
        }
    }

    #[test]
    fn finds_a_deterministic_capacity_within_the_resolution() {
        let r = search(&cfg(0.0), &[], dut(420_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Found);
        assert!(r.converged);
        let rate = r.rate_pps.unwrap();
        assert!(rate <= 420_000 && 420_000 - rate <= 10_000, "{rate}");
        assert!(r.failed_at_pps.unwrap() > 420_000);
        assert_eq!(r.trials[0].rate_pps, 1_000_000, "starts at hi");
        // Bisection of 1M down to 10k: about log2(100) trials plus hi.
        assert!(r.trials.len() <= 9, "{}", r.trials.len());
    }

    #[test]
    fn capacity_above_hi_ends_at_hi() {
        let r = search(&cfg(0.0), &[], dut(5_000_000)).unwrap();
        assert_eq!(
            (r.rate_pps, r.outcome, r.trials.len()),
            (Some(1_000_000), Outcome::AtHi, 1)
        );
    }

    #[test]
    fn capacity_below_lo_gives_no_rate() {
        let r = search(&cfg(0.0), &[], dut(500)).unwrap();
        assert_eq!((r.rate_pps, r.outcome), (None, Outcome::BelowLo));
        assert_eq!(r.trials.last().unwrap().rate_pps, 1_000, "lo was tried");
    }

    #[test]
    fn capacity_between_lo_and_the_first_midpoint_tries_lo() {
        // Converges to [lo, lo + resolution] without a pass: lo decides.
        let r = search(&cfg(0.0), &[], dut(5_000)).unwrap();
        assert_eq!((r.rate_pps, r.outcome), (Some(1_000), Outcome::Found));
    }

    #[test]
    fn threshold_is_inclusive() {
        // Loses exactly 0.1% at every rate.
        let lossy = |rate: u64| {
            Ok(Trial {
                rate_pps: rate,
                sent: 100_000,
                received: 99_900,
                offered_pps: rate as f64,
            })
        };
        let pdr = search(&cfg(PDR_LOSS), &[], lossy).unwrap();
        assert_eq!(pdr.outcome, Outcome::AtHi);
        let ndr = search(&cfg(NDR_LOSS), &[], lossy).unwrap();
        assert_eq!(ndr.outcome, Outcome::BelowLo);
        // One frame more lost fails the PDR.
        let t = Trial {
            rate_pps: 1,
            sent: 100_000,
            received: 99_899,
            offered_pps: 1.0,
        };
        assert!(!t.passes(PDR_LOSS));
        let nothing = Trial {
            sent: 0,
            received: 0,
            ..t
        };
        assert!(!nothing.passes(PDR_LOSS), "a trial that sent nothing fails");
    }

    #[test]
    fn pdr_is_at_least_ndr_with_gradual_loss() {
        // One frame lost per 100 fps above 300k (of 1M sent): no loss up to
        // 300,099 fps, 0.1% up to 400,099 fps. The PDR search reuses the NDR
        // trials as seed.
        let gradual = |rate: u64| {
            let sent = 1_000_000u64;
            let over = rate.saturating_sub(300_000);
            let lost = over / 100;
            Ok(Trial {
                rate_pps: rate,
                sent,
                received: sent - lost.min(sent),
                offered_pps: rate as f64,
            })
        };
        let ndr = search(&cfg(NDR_LOSS), &[], gradual).unwrap();
        let pdr = search(&cfg(PDR_LOSS), &ndr.trials, gradual).unwrap();
        let (n, p) = (ndr.rate_pps.unwrap(), pdr.rate_pps.unwrap());
        assert!(n <= 300_099 && 300_099 - n <= 10_000, "ndr {n}");
        assert!(p <= 400_099 && 400_099 - p <= 10_000, "pdr {p}");
        assert!(
            pdr.trials.iter().all(|t| t.rate_pps != 1_000_000),
            "hi is known to fail from the seed and not tried again"
        );
    }

    #[test]
    fn noisy_capacity_lands_in_the_noise_band() {
        // Capacity 500k +- 3%, from a fixed LCG.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noisy = move |rate: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let capacity = (500_000.0 * (0.97 + 0.06 * u)) as u64;
            dut(capacity)(rate)
        };
        for _ in 0..20 {
            let r = search(&cfg(0.0), &[], &mut noisy).unwrap();
            let rate = r.rate_pps.unwrap();
            assert!(
                (485_000 - 10_000..=515_000).contains(&rate),
                "{rate} outside the band"
            );
        }
    }

    #[test]
    fn max_trials_stops_the_search_unconverged() {
        let c = SearchConfig {
            max_trials: 3,
            resolution_pps: 1,
            ..cfg(0.0)
        };
        let r = search(&c, &[], dut(420_000)).unwrap();
        assert_eq!(r.trials.len(), 3);
        assert!(!r.converged);
        assert_eq!(r.outcome, Outcome::Found);
    }

    #[test]
    fn table_cells_show_bounds_and_the_offered_rate() {
        let ndr = search(&cfg(NDR_LOSS), &[], dut(420_000)).unwrap();
        let pdr = search(&cfg(PDR_LOSS), &ndr.trials, dut(420_000)).unwrap();
        assert!(pdr.trials.is_empty(), "the NDR trials settle the PDR too");
        let rate = ndr.rate_pps.unwrap() as f64 / 1000.0;
        assert_eq!(offered_cell(&pdr, &ndr.trials), format!("{rate:.1}"));
        let at_hi = search(&cfg(0.0), &[], dut(5_000_000)).unwrap();
        assert_eq!(rate_cell(&at_hi), ">= 1000.0");
        let below = search(&cfg(0.0), &[], dut(1)).unwrap();
        assert_eq!(
            (rate_cell(&below), offered_cell(&below, &[])),
            ("below lowest".to_string(), "-".to_string())
        );
    }

    #[test]
    fn bad_bounds_and_trial_errors_are_reported() {
        let c = SearchConfig {
            lo: 10,
            hi: 5,
            ..cfg(0.0)
        };
        assert!(search(&c, &[], dut(1)).is_err());
        let failing = |_| -> Result<Trial> { bail!("no lab") };
        let e = search(&cfg(0.0), &[], failing).unwrap_err();
        assert!(format!("{e:#}").contains("no lab"));
    }

    /// A search that found `rate` (or nothing), without its trial log.
    fn searched(rate: Option<u64>, outcome: Outcome) -> SearchResult {
        SearchResult {
            rate_pps: rate,
            outcome,
            failed_at_pps: None,
            converged: true,
            trials: Vec::new(),
        }
    }

    fn found(rate: Option<u64>) -> SearchResult {
        let outcome = if rate.is_some() {
            Outcome::Found
        } else {
            Outcome::BelowLo
        };
        searched(rate, outcome)
    }

    /// A fake run: the NDR, the PDR 10k above it, and latency at every
    /// share with the given p99 (other percentiles scale from it).
    fn fake_run(dut: Dut, rep: u32, ndr: SearchResult, p99_us: u64) -> DutRun {
        let pdr = found(ndr.rate_pps.map(|r| r + 10_000));
        let latency = match ndr.rate_pps {
            None => Vec::new(),
            Some(ndr_rate) => LATENCY_SHARES
                .iter()
                .map(|&share| {
                    let rate_pps = (ndr_rate as f64 * share) as u64;
                    let p99_ns = p99_us * 1000;
                    LatencyPoint {
                        share,
                        rate_pps,
                        trial: Trial {
                            rate_pps,
                            sent: 1000,
                            received: 1000,
                            offered_pps: rate_pps as f64,
                        },
                        latency: LatencyReport {
                            count: 1000,
                            min_ns: p99_ns / 4,
                            mean_ns: (p99_ns / 2) as f64,
                            p50_ns: p99_ns / 2,
                            p90_ns: p99_ns * 9 / 10,
                            p99_ns,
                            p999_ns: p99_ns * 2,
                            max_ns: p99_ns * 3,
                            cdf: vec![
                                (0.0, p99_ns / 4),
                                (50.0, p99_ns / 2),
                                (99.0, p99_ns),
                                (100.0, p99_ns * 3),
                            ],
                        },
                    }
                })
                .collect(),
        };
        DutRun {
            dut,
            rep,
            hi_pps: 1_000_000,
            hi_source: "--max-pps",
            resolution_pps: 10_000,
            ndr,
            pdr,
            latency,
        }
    }

    fn ndr_config(duts: Vec<Dut>, reps: u32) -> NdrConfig {
        NdrConfig {
            duts,
            reps,
            frame_len: 60,
            flows: 64,
            trial_seconds: 1.0,
            max_pps: Some(1_000_000),
            resolution_pct: 1.0,
            min_pps: 1_000,
            max_trials: 16,
            dataplane_keys: String::new(),
            xdp_keys: String::new(),
        }
    }

    fn machine() -> Machine {
        Machine {
            cpu_model: "test".into(),
            cpus: 2,
            kernel: "test".into(),
            memory_gib: 1,
            nics: Vec::new(),
        }
    }

    /// `(dut, [(ndr, p99 us) per rep])` into runs, interleaved as run.
    fn fake_runs(per_dut: &[(Dut, Vec<(SearchResult, u64)>)]) -> Vec<DutRun> {
        let reps = per_dut[0].1.len();
        (0..reps)
            .flat_map(|rep| {
                per_dut.iter().map(move |(dut, v)| {
                    let (ndr, p99) = v[rep].clone();
                    fake_run(*dut, rep as u32, ndr, p99)
                })
            })
            .collect()
    }

    fn summarized(per_dut: &[(Dut, Vec<(SearchResult, u64)>)], skipped: Vec<Skipped>) -> NdrResult {
        let duts: Vec<Dut> = per_dut.iter().map(|(d, _)| *d).collect();
        let asked: Vec<Dut> = duts
            .iter()
            .copied()
            .chain(skipped.iter().map(|s| s.dut))
            .collect();
        let reps = per_dut[0].1.len() as u32;
        summarize(
            ndr_config(asked, reps),
            machine(),
            &duts,
            skipped,
            fake_runs(per_dut),
        )
    }

    fn f(rate: u64, p99_us: u64) -> (SearchResult, u64) {
        (found(Some(rate)), p99_us)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn median_rate_ranks_no_rate_lowest() {
        assert_eq!(median_rate(&[Some(3), Some(1), Some(2)]), Some(2.0));
        assert_eq!(median_rate(&[Some(1), Some(4)]), Some(2.5));
        assert_eq!(median_rate(&[None, Some(7), Some(5)]), Some(5.0));
        assert_eq!(median_rate(&[None, Some(5)]), None, "half found nothing");
        assert_eq!(median_rate(&[None, None, Some(1)]), None);
        assert_eq!(median_rate(&[]), None);
    }

    #[test]
    fn repetitions_interleave_with_a_rotating_order() {
        let duts = [Dut::Tapline, Dut::LinuxBridge, Dut::TcMirred];
        let order: Vec<(u32, Dut)> = schedule(&duts, 2).collect();
        use Dut::*;
        assert_eq!(
            order,
            [
                (0, Tapline),
                (0, LinuxBridge),
                (0, TcMirred),
                (1, LinuxBridge),
                (1, TcMirred),
                (1, Tapline)
            ]
        );
    }

    fn three_duts() -> Vec<(Dut, Vec<(SearchResult, u64)>)> {
        vec![
            (
                Dut::Tapline,
                vec![f(900_000, 30), f(1_000_000 - 1, 20), f(950_000, 25)],
            ),
            (
                Dut::LinuxBridge,
                vec![f(600_000, 40), f(500_000, 50), f(700_000, 45)],
            ),
            (
                Dut::TcMirred,
                vec![f(800_000, 30), f(850_000, 30), f(820_000, 30)],
            ),
        ]
    }

    #[test]
    fn medians_ratios_and_target_verdicts() {
        let r = summarized(&three_duts(), Vec::new());
        let tap = &r.summary[0];
        assert_eq!(
            tap.ndr_pps,
            [Some(900_000), Some(999_999), Some(950_000)],
            "each rep's NDR, in rep order"
        );
        assert_eq!(tap.median_ndr_pps, Some(950_000.0));
        assert_eq!(tap.median_pdr_pps, Some(960_000.0));
        assert!(!tap.ndr_at_hi);
        // Latency at 10%: p99 30, 20, 25 us -> median 25 us, from rep 2.
        let l = tap.latency_at(COMPARED_SHARE).unwrap();
        assert_eq!((l.p99_ns, l.median_rep), (25_000.0, 2));
        assert_eq!(l.p99_per_rep_ns, [30_000, 20_000, 25_000]);
        assert_eq!(l.reps, [0, 1, 2]);
        assert_eq!(l.median_rate_pps, 95_000.0);
        assert_eq!(tap.latency.len(), LATENCY_SHARES.len());

        // Ratios: tapline against both peers; tapline-generic did not run.
        let pairs: Vec<(Dut, Dut)> = r.ratios.iter().map(|x| (x.ours, x.peer)).collect();
        assert_eq!(
            pairs,
            [
                (Dut::Tapline, Dut::LinuxBridge),
                (Dut::Tapline, Dut::TcMirred)
            ]
        );
        let br = &r.ratios[0];
        assert!(close(br.ndr.of_medians, 950.0 / 600.0));
        // Per rep: 1.5, 1.999998, 1.357 -> median 1.5.
        assert_eq!(br.ndr.per_rep.len(), 3);
        assert!(close(br.ndr.median_of_per_rep, 1.5));
        assert!(close(br.pdr.of_medians, 960.0 / 610.0));
        assert!(close(br.p99_at_10pct.of_medians, 25.0 / 45.0));

        let verdicts: Vec<(&str, Verdict)> =
            r.targets.iter().map(|t| (t.target, t.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                ("tapline NDR >= 1.5x linux-bridge", Verdict::Met),
                ("tapline NDR >= 1.2x tc-mirred", Verdict::Missed),
                ("tapline p99 at 10% of NDR <= linux-bridge's", Verdict::Met),
            ],
            "no testpmd target: testpmd did not run"
        );
        assert!(close(r.targets[1].measured, 950.0 / 820.0));

        let md = markdown(&r);
        assert!(
            md.contains("| tapline / linux-bridge | 1.58x | 1.50x | 1.57x |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| tapline NDR >= 1.2x tc-mirred | 1.16x | 1.16x | 1.14x to 1.17x | missed |  |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| tapline | 12.5 | 25.0 | 50.0 | 0.56x |"),
            "{md}"
        );
        assert!(
            md.contains("| linux-bridge | 22.5 | 45.0 | 90.0 | 1.00x |"),
            "{md}"
        );
        assert!(
            md.contains("| tapline | 950.0 | 900.0, 1000.0, 950.0 | 960.0 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "Not checked: tapline NDR >= 1.0x testpmd (net_af_xdp) (testpmd not in --dut)."
            ),
            "{md}"
        );
    }

    #[test]
    fn skipped_peers_are_listed_and_never_estimated() {
        let skipped = vec![Skipped {
            dut: Dut::Testpmd,
            reason: "dpdk-testpmd is not installed".into(),
        }];
        let r = summarized(&three_duts()[..2], skipped);
        assert!(r.summary.iter().all(|s| s.dut != Dut::Testpmd));
        assert!(r.runs.iter().all(|s| s.dut != Dut::Testpmd));
        assert!(r.ratios.iter().all(|s| s.peer != Dut::Testpmd));
        assert!(r.targets.iter().all(|t| t.peer != Dut::Testpmd));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["skipped"][0]["dut"], "testpmd");
        assert_eq!(
            json["skipped"][0]["reason"],
            "dpdk-testpmd is not installed"
        );
        let md = markdown(&r);
        assert!(
            md.contains("Skipped, not installed here (not run, nothing estimated): testpmd (dpdk-testpmd is not installed)."),
            "{md}"
        );
        assert!(
            md.contains("tapline NDR >= 1.0x testpmd (net_af_xdp) (testpmd skipped: dpdk-testpmd is not installed)"),
            "{md}"
        );
        assert!(
            md.contains("tapline NDR >= 1.2x tc-mirred (tc-mirred not in --dut)"),
            "{md}"
        );
    }

    #[test]
    fn bounded_or_missing_rates_make_verdicts_inconclusive_or_missed() {
        let at_hi = |rate| (searched(Some(rate), Outcome::AtHi), 10);
        let none = (found(None), 10);
        let r = summarized(
            &[
                // Generator-bound at 1M in every rep.
                (
                    Dut::Tapline,
                    vec![at_hi(1_000_000), at_hi(1_000_000), at_hi(1_000_000)],
                ),
                // 1.25x < 1.5x, but tapline's NDR is only a lower bound.
                (
                    Dut::LinuxBridge,
                    vec![f(800_000, 20), f(800_000, 20), f(800_000, 20)],
                ),
                (
                    Dut::TcMirred,
                    vec![none.clone(), none.clone(), f(100_000, 20)],
                ),
            ],
            Vec::new(),
        );
        assert!(r.summary[0].ndr_at_hi);
        assert_eq!(r.summary[2].median_ndr_pps, None);
        assert_eq!(r.summary[2].latency_at(COMPARED_SHARE).unwrap().reps, [2]);
        let v: Vec<(Verdict, &str)> = r
            .targets
            .iter()
            .map(|t| (t.verdict, t.note.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                (
                    Verdict::Inconclusive,
                    "tapline's NDR reached the highest rate searched: it is a lower bound"
                ),
                (Verdict::Met, "tc-mirred did not pass the lowest rate"),
                (Verdict::Met, ""),
            ]
        );
        let md = markdown(&r);
        assert!(
            md.contains("| tapline | 1000.0 * | >= 1000.0, >= 1000.0, >= 1000.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| tc-mirred | below lowest | below lowest, below lowest, 100.0 |"),
            "{md}"
        );

        // The other way round: tapline found nothing, the bridge's NDR is
        // bounded from below and a large ratio would not be trusted.
        let r = summarized(
            &[
                (Dut::Tapline, vec![none.clone(), none.clone(), none.clone()]),
                (
                    Dut::LinuxBridge,
                    vec![at_hi(500_000), at_hi(500_000), at_hi(500_000)],
                ),
            ],
            Vec::new(),
        );
        let v: Vec<Verdict> = r.targets.iter().map(|t| t.verdict).collect();
        assert_eq!(v, [Verdict::Missed, Verdict::Inconclusive]);
        assert_eq!(r.targets[0].note, "tapline did not pass the lowest rate");
        assert!(r.summary[0].latency.is_empty());
        let r = summarized(
            &[
                (Dut::Tapline, vec![f(900_000, 10)]),
                (Dut::LinuxBridge, vec![at_hi(500_000)]),
            ],
            Vec::new(),
        );
        assert_eq!(
            (r.targets[0].verdict, r.targets[0].note.as_str()),
            (
                Verdict::Inconclusive,
                "linux-bridge's NDR reached the highest rate searched: it is a lower bound"
            )
        );
    }

    /// A search that found `rate` with its lowest failure at `failed_at`.
    fn bracketed(rate: u64, failed_at: u64) -> (SearchResult, u64) {
        let mut s = found(Some(rate));
        s.failed_at_pps = Some(failed_at);
        (s, 10)
    }

    /// The verdict and note of the one target of tapline against `peer`.
    fn one_target(
        ours: (SearchResult, u64),
        peer: Dut,
        theirs: (SearchResult, u64),
    ) -> TargetCheck {
        let r = summarized(
            &[(Dut::Tapline, vec![ours]), (peer, vec![theirs])],
            Vec::new(),
        );
        r.targets
            .into_iter()
            .find(|t| t.target.contains("NDR"))
            .unwrap()
    }

    #[test]
    fn ndr_verdicts_account_for_the_searches_resolution() {
        // 1.05x, but 210k may be up to 230k and 200k up to 220k: the ratio
        // is anywhere from 210/220 to 230/200.
        let t = one_target(
            bracketed(210_000, 230_000),
            Dut::Testpmd,
            bracketed(200_000, 220_000),
        );
        assert!(close(t.measured, 1.05));
        assert_eq!(t.verdict, Verdict::Inconclusive);
        assert_eq!(t.note, "within the searches' resolution: 0.95x to 1.15x");
        let (lo, hi) = t.within_resolution.unwrap();
        assert!((lo - 210.0 / 220.0).abs() < 1e-9 && (hi - 230.0 / 200.0).abs() < 1e-9);

        let t = one_target(
            bracketed(300_000, 301_000),
            Dut::Testpmd,
            bracketed(200_000, 201_000),
        );
        assert_eq!((t.verdict, t.note.as_str()), (Verdict::Met, ""));
        let t = one_target(
            bracketed(150_000, 151_000),
            Dut::Testpmd,
            bracketed(200_000, 201_000),
        );
        assert_eq!((t.verdict, t.note.as_str()), (Verdict::Missed, ""));

        // A search that ran out of trials leaves its NDR open up to the
        // failing rate: 0.95x is not a miss when tapline's may be 1.3x.
        let mut unconverged = bracketed(190_000, 260_000);
        unconverged.0.converged = false;
        let t = one_target(unconverged, Dut::Testpmd, bracketed(200_000, 201_000));
        assert_eq!(t.verdict, Verdict::Inconclusive);
        assert_eq!(t.note, "within the searches' resolution: 0.95x to 1.30x");

        // Without a failing rate the bracket is the resolution (10k here).
        let t = one_target(f(206_000, 10), Dut::Testpmd, f(200_000, 10));
        assert_eq!(t.note, "within the searches' resolution: 0.98x to 1.08x");
        let md = markdown(&summarized(
            &[
                (Dut::Tapline, vec![f(206_000, 10)]),
                (Dut::Testpmd, vec![f(200_000, 10)]),
            ],
            Vec::new(),
        ));
        assert!(
            md.contains("| 1.03x | 1.03x | 0.98x to 1.08x | inconclusive |"),
            "{md}"
        );
    }

    #[test]
    fn a_peer_below_the_lowest_rate_bounds_the_ratio_from_below_only() {
        // tc-mirred's NDR is below 1000 fps: 1100 / 1000 = 1.1x at least,
        // which does not show 1.2x.
        let none = (found(None), 10);
        let t = one_target(f(1_100, 10), Dut::TcMirred, none.clone());
        assert_eq!(t.verdict, Verdict::Inconclusive);
        assert_eq!(
            t.note,
            "tc-mirred did not pass the lowest rate (1000 fps): the ratio is only known to be above 1.10x"
        );
        let t = one_target(f(1_200, 10), Dut::TcMirred, none);
        assert_eq!(
            (t.verdict, t.note.as_str()),
            (Verdict::Met, "tc-mirred did not pass the lowest rate")
        );
    }

    #[test]
    fn p99_from_fewer_than_half_of_the_reps_is_inconclusive() {
        let none = (found(None), 10);
        let r = summarized(
            &[
                (
                    Dut::Tapline,
                    vec![f(900_000, 10), f(900_000, 10), f(900_000, 10)],
                ),
                (Dut::LinuxBridge, vec![none.clone(), none, f(100_000, 20)]),
            ],
            Vec::new(),
        );
        let t = r.targets.iter().find(|t| t.target.contains("p99")).unwrap();
        assert!(close(t.measured, 0.5));
        assert_eq!(t.verdict, Verdict::Inconclusive);
        assert_eq!(
            t.note,
            "linux-bridge has latency at 10% of the NDR in only 1 of 3 repetitions (its NDR search found no rate in the others)"
        );

        // Two of three is enough.
        let r = summarized(
            &[
                (Dut::Tapline, vec![f(900_000, 10), f(900_000, 10)]),
                (Dut::LinuxBridge, vec![(found(None), 10), f(100_000, 20)]),
            ],
            Vec::new(),
        );
        let t = r.targets.iter().find(|t| t.target.contains("p99")).unwrap();
        assert_eq!((t.verdict, t.note.as_str()), (Verdict::Met, ""));
    }

    #[test]
    fn cdf_plot_series_come_from_the_median_p99_rep() {
        let r = summarized(&three_duts(), Vec::new());
        let series = latency_cdf_series(&r, COMPARED_SHARE);
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].name, "tapline (95.0 kfps, rep 2)");
        assert_eq!(
            series[0].points,
            [(6.25, 0.0), (12.5, 50.0), (25.0, 99.0), (75.0, 100.0)]
        );
        assert_eq!(series[1].name, "linux-bridge (70.0 kfps, rep 2)");
        assert!(latency_cdf_series(&r, 0.3).is_empty(), "no trials at 30%");
        let dir = std::env::temp_dir().join(format!("tapline-ndr-plot-{}", std::process::id()));
        let written = write_plots(&r, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ndr-latency-cdf.svg", "ndr-latency-cdf-50pct.svg"]);
        let svg = std::fs::read_to_string(&written[0]).unwrap();
        assert!(svg.contains("tapline (95.0 kfps, rep 2)"), "legend");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
