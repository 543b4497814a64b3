//! [`summarize`]: medians over the repetitions, ratios of tapline to each
//! peer (of the medians, and the median of the per-repetition ratios), and
//! the checks of the targets.

use crate::inline_bench::Dut;
use crate::report::{self, Machine};

use super::results::{
    DutRun, DutSummary, LatencyPoint, LatencySummary, NdrConfig, NdrResult, Ratio, RatioStats,
    Skipped, TargetCheck, Verdict,
};
use super::{Outcome, SearchResult, LATENCY_SHARES};

/// The tapline DUTs compared against the peers.
pub(crate) const OURS: [Dut; 2] = [Dut::Tapline, Dut::TaplineGeneric];
/// The share of the NDR at which latency is compared.
pub const COMPARED_SHARE: f64 = 0.1;

/// What a target asks of `ours / peer`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// NDR ratio at least this.
    NdrAtLeast(f64),
    /// p99 latency ratio at [`COMPARED_SHARE`] of the NDR at most this.
    P99AtMost(f64),
}

/// The targets of the issue: tapline's inline bridge against each peer.
pub(crate) const TARGETS: [(&str, Dut, Goal); 4] = [
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
pub(crate) fn median_of(xs: &[f64]) -> Option<f64> {
    let m = report::median(xs);
    m.is_finite().then_some(m)
}

/// One DUT's latency at `share` over its runs (in repetition order).
pub(crate) fn latency_summary(share: f64, runs: &[&DutRun]) -> Option<LatencySummary> {
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
pub(crate) fn ndr_bracket(run: &DutRun) -> Option<u64> {
    let s = &run.ndr;
    let rate = s.rate_pps.filter(|_| s.outcome == Outcome::Found)?;
    Some(
        s.failed_at_pps
            .map_or(run.resolution_pps, |f| f.saturating_sub(rate)),
    )
}

/// One DUT over its runs.
pub(crate) fn dut_summary(dut: Dut, runs: &[DutRun]) -> DutSummary {
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
pub(crate) fn ratio_stats(
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
pub(crate) fn rates_by_rep(
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
pub(crate) fn p99_by_rep(runs: &[DutRun], dut: Dut) -> Vec<(u32, Option<f64>)> {
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

pub(crate) fn ratio(
    runs: &[DutRun],
    summary: &[DutSummary],
    ours: Dut,
    peer: Dut,
) -> Option<Ratio> {
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
pub(crate) fn check(
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
