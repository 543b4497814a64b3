//! RFC 2544-style rate searches: the no-drop rate (NDR, no loss at all)
//! and the partial-drop rate (PDR, loss ratio at most 0.1%), by binary
//! search over the offered rate, and the `tapline-bench ndr` benchmark built
//! on them.
//!
//! The search core ([`search`]) is pure: it is generic over the trial
//! function, so it is tested with fake DUTs; [`run`] plugs in
//! [`crate::measure::measure_in`] trials through the inline lab.
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

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::inline_bench::Dut;
use crate::lab::{self, Lab, Scenario};
use crate::measure::{self, RunConfig};
use crate::report::{markdown_table, Machine};
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
    pub duts: Vec<Dut>,
    pub frame_len: usize,
    pub flows: u16,
    /// Seconds per trial.
    pub trial_seconds: f64,
    /// The highest rate searched; `None`: the unpaced generator's rate,
    /// measured first through each DUT.
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

/// The searches of one DUT.
#[derive(Debug, Clone, Serialize)]
pub struct DutResult {
    pub dut: Dut,
    /// The highest rate searched and where it came from.
    pub hi_pps: u64,
    pub hi_source: &'static str,
    pub resolution_pps: u64,
    pub ndr: SearchResult,
    pub pdr: SearchResult,
    pub latency: Vec<LatencyPoint>,
}

/// The result of `tapline-bench ndr`.
#[derive(Debug, Clone, Serialize)]
pub struct NdrResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: NdrConfig,
    pub results: Vec<DutResult>,
}

/// Runs the NDR and PDR searches and the latency trials for each DUT, in
/// one inline lab reused by every trial. `progress` is told about each
/// trial (DUT, what it is for, the trial).
pub fn run(cfg: &NdrConfig, mut progress: impl FnMut(Dut, &str, &Trial)) -> Result<NdrResult> {
    if !lab::privileged()? {
        bail!("the search builds network namespaces and needs root");
    }
    ensure!(cfg.min_pps > 0, "the lowest rate must be above 0");
    ensure!(
        cfg.resolution_pct > 0.0 && cfg.resolution_pct.is_finite(),
        "the resolution must be a positive percentage"
    );
    let lab = Lab::build(&lab::unique_prefix(), Scenario::Inline)?;
    let mut results = Vec::new();
    for &dut in &cfg.duts {
        results.push(run_dut(&lab, cfg, dut, &mut progress)?);
    }
    Ok(NdrResult {
        benchmark: "rfc2544-ndr-pdr",
        machine: Machine::describe(),
        config: cfg.clone(),
        results,
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
    progress: &mut impl FnMut(Dut, &str, &Trial),
) -> Result<DutResult> {
    let (hi, hi_source) = match cfg.max_pps {
        Some(m) => (m, "--max-pps"),
        None => {
            let (t, _) = measure_at(lab, cfg, dut, PROBE_PPS)?;
            progress(dut, "generator probe", &t);
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
        progress(dut, what, &t);
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
            progress(dut, &format!("latency {:.0}%", share * 100.0), &t);
            latency.push(LatencyPoint {
                share,
                rate_pps: rate,
                trial: t,
                latency: r.sink.latency,
            });
        }
    }
    Ok(DutResult {
        dut,
        hi_pps: hi,
        hi_source,
        resolution_pps,
        ndr,
        pdr,
        latency,
    })
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

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// The result as Markdown.
pub fn markdown(r: &NdrResult) -> String {
    let c = &r.config;
    let mut out = format!(
        "RFC 2544-style rate search through the inline lab: {}-byte frames ({} on the wire), {} flows, {} s per trial, resolution {}% of the highest rate (at least {} fps). NDR: no loss; PDR: at most {}% loss. Machine: {} ({} CPUs), kernel {}.\n\n",
        c.frame_len,
        c.frame_len + crate::traffic::FCS_BYTES,
        c.flows,
        c.trial_seconds,
        c.resolution_pct,
        c.min_pps,
        PDR_LOSS * 100.0,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel
    );
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|d| {
            vec![
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
    out += "\nOne-way latency at shares of the NDR (us, generator queue to sink read):\n\n";
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .flat_map(|d| {
            d.latency.iter().map(|p| {
                let l = &p.latency;
                vec![
                    d.dut.name().to_string(),
                    format!("{:.0}%", p.share * 100.0),
                    format!("{:.1}", p.rate_pps as f64 / 1000.0),
                    format!("{:.4}", p.trial.loss_ratio() * 100.0),
                    us(l.p50_ns),
                    us(l.p90_ns),
                    us(l.p99_ns),
                    us(l.p999_ns),
                    us(l.max_ns),
                ]
            })
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT", "share", "kfps", "loss %", "p50", "p90", "p99", "p99.9", "max",
        ],
        &rows,
    );
    out += "\nEach rate is tried once (no repetition); \"offered\" is what the generator achieved in the trial at that rate (below the rate: the generator fell short, not the DUT). The trial log is in the JSON.\n";
    out
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
}
