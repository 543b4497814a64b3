//! The `ndr` benchmark's run: every DUT in the inline lab, repeated and
//! interleaved, each searched with [`search`](super::search) over
//! [`crate::measure::measure_in`] trials.

use anyhow::{bail, ensure, Context, Result};

use crate::inline_bench::Dut;
use crate::lab::{self, Lab, Scenario};
use crate::measure::{self, RunConfig};
use crate::report::Machine;
use crate::traffic::FrameSizes;

use super::results::{DutRun, LatencyPoint, NdrConfig, NdrResult};
use super::summary::{split_runnable, summarize};
use super::{search, SearchConfig, Trial, LATENCY_SHARES, NDR_LOSS, PDR_LOSS};

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
pub(crate) fn schedule(duts: &[Dut], reps: u32) -> impl Iterator<Item = (u32, Dut)> + '_ {
    (0..reps).flat_map(move |rep| {
        (0..duts.len()).map(move |k| (rep, duts[(k + rep as usize) % duts.len()]))
    })
}

/// A paced run at `rate_pps` through `dut` in `lab`.
pub(crate) fn measure_at(
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
pub(crate) const PROBE_PPS: u64 = 1_000_000_000;

pub(crate) fn run_dut(
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
