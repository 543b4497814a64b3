//! Zero-drop rate: the binary search over the paced generator's rate for
//! the highest rate at which every frame sent is received.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::lab::Lab;
use crate::report::median;
use crate::search::{self, Outcome, SearchConfig, Trial, NDR_LOSS};

use super::capture::{capture_reader, capture_tapline_alone, capture_to_files};
use super::dut::Load;
use super::results::{
    median_is_lower_bound, LowerBounds, Ratio, TrialPurpose, ZeroDropSample, ZeroDropSummary,
    ZeroDropTrial,
};
use super::{PassiveConfig, ZeroDropConfig, ZeroDropDut, MEASURED, PROBE_PPS, SKIPPED};

/// Which trial of which search: names the capture directory of a trial.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrialId {
    pub(crate) dut: ZeroDropDut,
    pub(crate) rep: u32,
    pub(crate) index: usize,
    pub(crate) purpose: TrialPurpose,
}

/// One zero-drop trial: `dut` started fresh, `target_pps` for
/// `--zero-drop-trial-seconds`, the grace, the stop, the verdict.
pub(crate) fn zero_drop_trial(
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
pub(crate) fn measure_zero_drop(
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

pub(crate) fn zero_drop_summary(
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
pub(crate) fn zero_drop_ratio(
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
        return Ratio::skipped(name);
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
        of_medians_bounds: LowerBounds {
            ours: median_is_lower_bound(&bounded(&a)),
            peer: median_is_lower_bound(&bounded(&b)),
        },
        median_of_per_rep_bounds: LowerBounds {
            ours: median_is_lower_bound(&per_rep_ours),
            peer: median_is_lower_bound(&per_rep_peer),
        },
        ..Ratio::measured(name, &values(&a), &values(&b))
    }
}
