use anyhow::{bail, Result};

use crate::inline_bench::Dut;
use crate::report::Machine;
use crate::sink::LatencyReport;

use super::render::{offered_cell, rate_cell};
use super::run::schedule;
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

    let verdicts: Vec<(&str, Verdict)> = r.targets.iter().map(|t| (t.target, t.verdict)).collect();
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
fn one_target(ours: (SearchResult, u64), peer: Dut, theirs: (SearchResult, u64)) -> TargetCheck {
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
