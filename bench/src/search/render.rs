//! The markdown report and the latency CDF plots of an `ndr` run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::inline_bench::Dut;
use crate::plot::{self, Series};
use crate::report::{self, markdown_table};

use super::results::{DutRun, NdrResult, Verdict};
use super::summary::{COMPARED_SHARE, TARGETS};
use super::{Outcome, SearchResult, Trial, LATENCY_SHARES, PDR_LOSS};

pub(crate) fn kfps(r: Option<u64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}", r as f64 / 1000.0))
}

pub(crate) fn rate_cell(s: &SearchResult) -> String {
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
pub(crate) fn median_cell(median_pps: Option<f64>, at_hi: bool) -> String {
    match median_pps {
        None => "below lowest".to_string(),
        Some(r) if at_hi => format!("{:.1} *", r / 1000.0),
        Some(r) => format!("{:.1}", r / 1000.0),
    }
}

/// The rate the generator achieved in the trial that set `s`'s rate (a
/// PDR search's may come from the NDR search's trials).
pub(crate) fn offered_cell(s: &SearchResult, seed: &[Trial]) -> String {
    s.trials
        .iter()
        .chain(seed)
        .find(|t| Some(t.rate_pps) == s.rate_pps)
        .map_or_else(
            || "-".to_string(),
            |t| format!("{:.1}", t.offered_pps / 1000.0),
        )
}

pub(crate) fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

pub(crate) fn ratio_cell(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"))
}

pub(crate) fn verdict_cell(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::Missed => "missed",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// The targets that could not be checked, and why.
pub(crate) fn unchecked_targets(r: &NdrResult) -> Vec<String> {
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
    out += &rates_markdown(r);
    out += &targets_markdown(r);
    out += &latency_markdown(r);
    out += &runs_markdown(r);
    out += &how_measured(&r.config);
    out
}

/// NDR and PDR per DUT (medians and each repetition), and the ratios.
fn rates_markdown(r: &NdrResult) -> String {
    let mut out = String::new();
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
    out
}

/// The targets and their verdicts, and those not checked.
fn targets_markdown(r: &NdrResult) -> String {
    let mut out = String::new();
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
    out
}

/// Latency at each share of the NDR, and at the compared share against the Linux bridge.
fn latency_markdown(r: &NdrResult) -> String {
    let mut out = String::new();
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
    out
}

/// Every search, in the order run.
fn runs_markdown(r: &NdrResult) -> String {
    let mut out = String::new();
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
    out
}

/// How the searches were run.
fn how_measured(c: &super::NdrConfig) -> String {
    let mut out = String::new();
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
