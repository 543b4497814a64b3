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

mod render;
mod results;
mod run;
mod summary;
#[cfg(test)]
mod tests;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

pub use render::{latency_cdf_series, markdown, write_plots, CDF_PLOTS};
pub use results::{
    DutRun, DutSummary, LatencyPoint, LatencySummary, NdrConfig, NdrResult, Ratio, RatioStats,
    Skipped, TargetCheck, Verdict,
};
pub use run::run;
pub use summary::{median_rate, split_runnable, summarize, COMPARED_SHARE};

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
