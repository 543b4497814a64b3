use std::collections::BTreeMap;
use std::path::Path;

use crate::lab::ifs;
use crate::report::{median, Machine};
use crate::runner::lab_config;
use crate::search::{Outcome, NDR_LOSS};

use super::capture::{capture_ratio, capture_summary};
use super::fanout::fanout_summary;
use super::report::{bounded_times, times};
use super::results::median_is_lower_bound;
use super::run::{schedule, Job};
use super::zero_drop::{zero_drop_ratio, zero_drop_summary};
use super::*;

#[test]
fn ratios_of_medians_and_of_repetitions() {
    let ours = [(0, 10.0), (1, 20.0), (2, 30.0)];
    let peer = [(0, 5.0), (1, 40.0), (2, 10.0)];
    let (of_medians, per_rep_median, per_rep) = ratio_of(&ours, &peer);
    assert_eq!(of_medians, Some(2.0));
    assert_eq!(per_rep, vec![2.0, 0.5, 3.0]);
    assert_eq!(per_rep_median, Some(2.0));
    // A repetition missing on one side, and a zero peer, are left out
    // of the per-rep ratios.
    let (_, m, per_rep) = ratio_of(&ours, &[(0, 5.0), (2, 0.0)]);
    assert_eq!(per_rep, vec![2.0]);
    assert_eq!(m, Some(2.0));
    assert_eq!(ratio_of(&ours, &[]), (None, None, Vec::new()));
    assert_eq!(ratio_of(&ours, &[(0, 0.0)]).0, None);
}

#[test]
fn generated_configs_are_valid() {
    let rec = recorder_section(Path::new("/var/tmp/x"));
    for extra in [rec, fanout_section(0), fanout_section(4)] {
        let text = lab_config(Some(ifs::PASSIVE_1), None, "", &extra)
            .replace(crate::runner::STATE_DIR_PLACEHOLDER, "/run/tapline-test");
        let c = tapline_config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.output_groups.len(), fanout_count(&extra));
    }
    let c = tapline_config::Config::parse(
        &lab_config(
            Some(ifs::PASSIVE_1),
            None,
            "",
            &recorder_section(Path::new("/d")),
        )
        .replace(crate::runner::STATE_DIR_PLACEHOLDER, "/run/t"),
    )
    .unwrap();
    let r = &c.recorders[0].settings;
    assert_eq!(
        (r.rotate_bytes, r.queue_bytes, r.rotate_interval),
        (256 << 20, 64 << 20, None)
    );
}

fn fanout_count(extra: &str) -> usize {
    extra.matches("[[output_group]]").count()
}

#[test]
fn repetitions_rotate_the_order() {
    let duts = [CaptureDut::Tapline, CaptureDut::Tcpdump];
    let names = |rep| {
        schedule(
            &duts,
            &[0, 2],
            &[ZeroDropDut::Tapline, ZeroDropDut::AfPacketRead],
            rep,
        )
        .iter()
        .map(|j| match j {
            Job::Capture(d) => d.name().to_string(),
            Job::Fanout(g) => g.to_string(),
            Job::ZeroDrop(d) => format!("zd {}", d.name()),
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(
        names(0),
        [
            "tapline",
            "tcpdump",
            "0",
            "2",
            "zd tapline",
            "zd af-packet-read"
        ]
    );
    assert_eq!(
        names(1),
        [
            "tcpdump",
            "tapline",
            "2",
            "0",
            "zd af-packet-read",
            "zd tapline"
        ]
    );
    assert_eq!(
        CaptureDut::parse("netsniff-ng").unwrap(),
        CaptureDut::NetsniffNg
    );
    assert!(CaptureDut::parse("wireshark").is_err());
}

fn capture_sample(dut: CaptureDut, rep: u32, sent: u64, written: u64) -> CaptureSample {
    CaptureSample {
        dut,
        rep,
        sent,
        elapsed_s: 1.0,
        offered_pps: sent as f64,
        p1_rx_packets: sent,
        captured: Some(sent),
        written,
        written_ours: written,
        files: 1,
        file_bytes: written * 528,
        truncated_files: 0,
        dut_drops: sent - written,
        drop_detail: BTreeMap::from([("dropped by kernel".to_string(), sent - written)]),
        written_ratio: written as f64 / sent as f64,
        written_pps: written as f64,
        steal_ratio: 0.0,
        xdp_mode: (dut == CaptureDut::Tapline).then(|| "native-copy".to_string()),
    }
}

/// The config of a report fixture: 512-byte frames, 1024 flows, unpaced,
/// defaults otherwise.
fn passive_config(
    duts: Vec<CaptureDut>,
    groups: Vec<u8>,
    reps: u32,
    seconds: f64,
    zero_drop_duts: Vec<ZeroDropDut>,
) -> PassiveConfig {
    PassiveConfig {
        duts,
        groups,
        reps,
        seconds,
        frame_len: 512,
        flows: 1024,
        rate_pps: None,
        dir: "/var/tmp/x".into(),
        grace_s: 2.0,
        keep_files: false,
        dataplane_keys: String::new(),
        xdp_keys: String::new(),
        zero_drop: ZeroDropConfig {
            duts: zero_drop_duts,
            ..ZeroDropConfig::default()
        },
    }
}

#[test]
fn summaries_and_markdown_report_skipped_peers_without_numbers() {
    let samples = vec![
        capture_sample(CaptureDut::Tapline, 0, 1000, 900),
        capture_sample(CaptureDut::Tcpdump, 0, 1000, 600),
        capture_sample(CaptureDut::Tapline, 1, 1000, 800),
        capture_sample(CaptureDut::Tcpdump, 1, 1000, 400),
    ];
    let tapline = capture_summary(CaptureDut::Tapline, Some("t 1".into()), &samples);
    assert_eq!(tapline.median_written_pps, Some(850.0));
    assert!((tapline.median_written_ratio.unwrap() - 0.85).abs() < 1e-12);
    let skipped = capture_summary(CaptureDut::NetsniffNg, None, &samples);
    assert_eq!(
        (skipped.status.as_str(), skipped.median_written_pps),
        (SKIPPED, None)
    );
    let td = capture_ratio(CaptureDut::Tcpdump, true, &samples);
    assert_eq!(td.of_medians, Some(850.0 / 500.0));
    assert_eq!(td.per_rep, vec![1.5, 2.0]);
    assert_eq!(td.median_of_per_rep, Some(1.75));
    let ns = capture_ratio(CaptureDut::NetsniffNg, false, &samples);
    assert_eq!((ns.status.as_str(), ns.of_medians), (SKIPPED, None));

    let fan = |groups, rep, captured| FanoutSample {
        groups,
        rep,
        sent: 1000,
        elapsed_s: 1.0,
        offered_pps: 1000.0,
        captured,
        capture_ratio: captured as f64 / 1000.0,
        captured_pps: captured as f64,
        delivered: captured * u64::from(groups),
        delivery_ratio: (groups > 0).then(|| captured as f64 / 1000.0),
        member_drops: BTreeMap::new(),
        kernel_rx_dropped: 1000 - captured,
        kernel_rx_ring_full: 0,
        kernel_fill_ring_empty: 0,
        steal_ratio: 0.0,
        xdp_mode: Some("native-copy".into()),
    };
    let fanout_samples = vec![fan(0, 0, 1000), fan(2, 0, 500)];
    let two = fanout_summary(2, &fanout_samples);
    assert_eq!(two.median_delivery_ratio, Some(0.5));
    assert_eq!(two.median_kernel_drops, 500.0);
    assert_eq!(two.vs_alone.as_ref().and_then(|r| r.of_medians), Some(0.5));
    assert!(fanout_summary(0, &fanout_samples).vs_alone.is_none());

    let r = PassiveResult {
        benchmark: "passive-capture-and-fanout",
        machine: Machine::describe(),
        config: passive_config(CaptureDut::ALL.to_vec(), vec![0, 2], 2, 1.0, Vec::new()),
        generator: "g".into(),
        versions: BTreeMap::from([("netsniff-ng".to_string(), SKIPPED.to_string())]),
        capture_summary: vec![tapline, skipped],
        capture_ratios: vec![td, ns],
        capture_samples: samples,
        fanout_summary: vec![fanout_summary(0, &fanout_samples), two],
        fanout_samples,
        zero_drop_samples: Vec::new(),
        zero_drop_summary: Vec::new(),
        zero_drop_ratios: Vec::new(),
    };
    let md = markdown(&r);
    assert!(
        md.contains("| netsniff-ng | skipped (not installed) |"),
        "{md}"
    );
    assert!(md.contains("| tapline / tcpdump | 1.70x | 1.75x |"), "{md}");
    assert!(
        md.contains("| tapline / netsniff-ng | skipped (not installed) |"),
        "{md}"
    );
    assert!(
        md.contains("| 2 | 50.0% | 50.0% | 0.001 | 500 | 0 | 0.50x | 0.50x |"),
        "{md}"
    );
    assert!(
        md.contains("all of them were the generator's frames"),
        "{md}"
    );
    assert!(!md.contains("## Zero-drop rate"), "{md}");
}

#[test]
fn zero_drop_verdicts() {
    use ZeroDropDut::*;
    // Counter DUTs: the shortfall, or the kernel's drops if larger.
    assert_eq!(Tapline.frames_lost(1000, 1000, 0), 0);
    assert_eq!(Tapline.frames_lost(1000, 990, 0), 10);
    assert_eq!(Tapline.frames_lost(1000, 1000, 3), 3);
    assert_eq!(AfPacketRead.frames_lost(1000, 995, 2), 5);
    assert_eq!(AfPacketRead.frames_lost(1000, 1000, 0), 0);
    // Disk DUTs: the generator's records in the files, nothing else.
    for d in [TaplineRecord, Tcpdump, NetsniffNg] {
        assert_eq!(d.frames_lost(1000, 1000, 7), 0, "{}", d.name());
        assert_eq!(d.frames_lost(1000, 999, 0), 1, "{}", d.name());
    }
    // A trial as the search sees it.
    let t = zd_trial(Tapline, 0, 5_000, 10_000, 9_990, 0);
    assert!(!t.passed);
    let st = t.search_trial();
    assert_eq!((st.rate_pps, st.sent, st.received), (5_000, 10_000, 9_990));
    assert!(!st.passes(NDR_LOSS));
    assert!(zd_trial(Tcpdump, 0, 5_000, 10_000, 10_000, 4)
        .search_trial()
        .passes(NDR_LOSS));
    // Nothing sent proves nothing.
    let none = zd_trial(Tapline, 0, 5_000, 0, 0, 0);
    assert!(!none.passed && !none.search_trial().passes(NDR_LOSS));
}

#[test]
fn zero_drop_duts_parse_and_map_to_programs() {
    for d in ZeroDropDut::ALL {
        assert_eq!(ZeroDropDut::parse(d.name()).unwrap(), d);
    }
    assert!(ZeroDropDut::parse("pcap").is_err());
    assert_eq!(ZeroDropDut::AfPacketRead.program(), None);
    assert_eq!(
        ZeroDropDut::TaplineRecord.program(),
        Some(CaptureDut::Tapline)
    );
    assert_eq!(ZeroDropDut::Tapline.writes_files(), None);
    assert_eq!(
        ZeroDropDut::NetsniffNg.writes_files(),
        Some(CaptureDut::NetsniffNg)
    );
    let ok = ZeroDropConfig::default();
    assert!(ok.validate().is_ok());
    assert_eq!(ok.resolution_pps(1_000_000), 20_000);
    assert_eq!(ok.resolution_pps(10_000), 1_000, "floored at min_pps");
    let bad = |f: fn(&mut ZeroDropConfig)| {
        let mut c = ZeroDropConfig::default();
        f(&mut c);
        c.validate().is_err()
    };
    assert!(bad(|c| c.duts.push(ZeroDropDut::Tapline)));
    assert!(bad(|c| c.trial_seconds = 0.0));
    assert!(bad(|c| c.min_pps = 0));
    assert!(bad(|c| c.resolution_pct = f64::NAN));
    assert!(bad(|c| c.max_trials = 0));
    assert!(bad(|c| c.max_pps = Some(10)));
}

fn zd_trial(
    dut: ZeroDropDut,
    rep: u32,
    target_pps: u64,
    sent: u64,
    counted: u64,
    kernel_drops: u64,
) -> ZeroDropTrial {
    let lost = dut.frames_lost(sent, counted, kernel_drops);
    ZeroDropTrial {
        dut,
        rep,
        purpose: TrialPurpose::Search,
        target_pps,
        sent,
        offered_pps: target_pps as f64 * 0.99,
        pacing_skipped: 0,
        p1_rx_packets: sent,
        counted,
        kernel_drops,
        lost,
        passed: sent > 0 && lost == 0,
        files: usize::from(dut.writes_files().is_some()),
        truncated_files: 0,
        drop_detail: BTreeMap::new(),
        xdp_mode: matches!(dut, ZeroDropDut::Tapline | ZeroDropDut::TaplineRecord)
            .then(|| "native-copy".to_string()),
        steal_ratio: 0.0,
    }
}

/// A search of `dut` in `rep` through [`zero_drop_search`] against a
/// fake generator that reaches `gen_max` fps unpaced and at most 90% of
/// that paced, and a fake DUT that loses frames when offered more than
/// `capacity` fps (`None`: at any rate).
fn zd_search(
    cfg: &ZeroDropConfig,
    dut: ZeroDropDut,
    rep: u32,
    gen_max: u64,
    capacity: Option<u64>,
) -> ZeroDropSample {
    let mut next_index = 0;
    zero_drop_search(cfg, dut, rep, |purpose, target, index| {
        assert_eq!(index, next_index, "trials are numbered in order");
        next_index += 1;
        let offered = match purpose {
            TrialPurpose::GeneratorProbe => {
                assert_eq!(target, PROBE_PPS);
                gen_max
            }
            TrialPurpose::Search => target.min(gen_max / 10 * 9),
        };
        let sent = offered * 2;
        let counted = match capacity {
            Some(c) if offered <= c => sent,
            _ => sent - 1,
        };
        Ok(ZeroDropTrial {
            purpose,
            offered_pps: offered as f64,
            ..zd_trial(dut, rep, target, sent, counted, 0)
        })
    })
    .unwrap()
}

fn zd_sample(dut: ZeroDropDut, rep: u32, gen_max: u64, capacity: Option<u64>) -> ZeroDropSample {
    zd_search(&ZeroDropConfig::default(), dut, rep, gen_max, capacity)
}

#[test]
fn medians_and_ratios_bounded_by_the_highest_rate_are_marked() {
    assert!(median_is_lower_bound(&[
        (1.0, false),
        (2.0, false),
        (1.5, true)
    ]));
    assert!(!median_is_lower_bound(&[
        (1.0, false),
        (2.0, false),
        (10.0, true)
    ]));
    assert!(median_is_lower_bound(&[(1.0, false), (2.0, true)]));
    assert!(!median_is_lower_bound(&[]));

    use ZeroDropDut::*;
    let hi = 1_000_000;
    let mut samples = Vec::new();
    for rep in 0..3 {
        // tapline passes at the highest rate every time; the recorder
        // in two of three repetitions; the reader never.
        samples.push(zd_sample(Tapline, rep, hi, Some(2_000_000)));
        samples.push(zd_sample(
            TaplineRecord,
            rep,
            hi,
            Some(if rep == 2 { 300_000 } else { 2_000_000 }),
        ));
        samples.push(zd_sample(AfPacketRead, rep, hi, Some(500_000)));
    }
    let summary = |d| zero_drop_summary(d, Some("v".into()), &samples);
    assert!(summary(Tapline).median_rate_at_hi);
    assert!(summary(TaplineRecord).median_rate_at_hi);
    assert!(!summary(AfPacketRead).median_rate_at_hi);
    // One repetition of three at the highest rate leaves the median
    // exact.
    let one_at_hi: Vec<ZeroDropSample> = [2_000_000, 300_000, 400_000]
        .into_iter()
        .enumerate()
        .map(|(rep, c)| zd_sample(TaplineRecord, rep as u32, hi, Some(c)))
        .collect();
    assert!(!zero_drop_summary(TaplineRecord, Some("v".into()), &one_at_hi).median_rate_at_hi);

    let cells = |ours, peer| {
        let x = zero_drop_ratio(ours, peer, false, true, &samples);
        (
            bounded_times(x.of_medians, x.of_medians_bounds),
            bounded_times(x.median_of_per_rep, x.median_of_per_rep_bounds),
        )
    };
    let reader = samples
        .iter()
        .find(|s| s.dut == AfPacketRead)
        .unwrap()
        .rate_value();
    let at_least = format!(">= {}", times(hi as f64 / reader));
    assert_eq!(cells(Tapline, AfPacketRead), (at_least.clone(), at_least));
    let at_most = format!("<= {}", times(reader / hi as f64));
    assert_eq!(cells(AfPacketRead, Tapline), (at_most.clone(), at_most));
    assert_eq!(
        cells(Tapline, TaplineRecord),
        ("bounds only".to_string(), "bounds only".to_string())
    );
    assert_eq!(
        bounded_times(
            None,
            LowerBounds {
                ours: true,
                peer: true
            }
        ),
        "-"
    );

    let json =
        serde_json::to_value(zero_drop_ratio(Tapline, AfPacketRead, true, true, &samples)).unwrap();
    assert_eq!(json["of_medians_bounds"]["ours"], true);
    assert_eq!(json["of_medians_bounds"]["peer"], false);
    assert_eq!(json["median_of_per_rep_bounds"]["ours"], true);
}

#[test]
fn the_probe_sets_the_highest_rate_and_seeds_the_search() {
    let cfg = ZeroDropConfig::default();
    // The DUT keeps up with the unpaced generator: the probe is the
    // only trial.
    let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(2_000_000));
    assert_eq!(
        (s.hi_pps, s.outcome, s.rate_pps, s.trials.len()),
        (1_000_000, Outcome::AtHi, Some(1_000_000), 1)
    );
    assert_eq!(s.trials[0].purpose, TrialPurpose::GeneratorProbe);
    assert_eq!(s.offered_at_rate_pps, Some(1_000_000.0));
    assert_eq!(s.hi_source, "unpaced generator");
    // It does not: the probe's failure counts as the failure at the
    // highest rate, which is not tried again paced.
    let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(600_000));
    assert_eq!(s.outcome, Outcome::Found);
    assert!(s.converged);
    let rate = s.rate_pps.unwrap();
    assert!(
        rate <= 600_000 && 600_000 - rate <= s.resolution_pps,
        "{rate}"
    );
    assert_eq!(s.resolution_pps, 20_000);
    assert!(s.trials[1..]
        .iter()
        .all(|t| t.purpose == TrialPurpose::Search && t.target_pps < 1_000_000));
    assert_eq!(s.offered_at_rate_pps, Some(rate as f64));
    assert_eq!(
        s.trial_at(1_000_000).map(|t| t.purpose),
        Some(TrialPurpose::GeneratorProbe),
        "the probe judged the highest rate"
    );
    assert_eq!(s.trial_at(rate).map(|t| t.target_pps), Some(rate));
    assert!(s.trial_at(rate + 1).is_none());
    // The paced generator falls short of the targets near the top: the
    // zero-drop rate is a target, the offered rate what was achieved.
    let s = zd_search(&cfg, ZeroDropDut::Tapline, 0, 1_000_000, Some(950_000));
    assert!(s.rate_pps.unwrap() > 950_000, "{:?}", s.rate_pps);
    assert_eq!(s.offered_at_rate_pps, Some(900_000.0));
    // With --zero-drop-max-pps there is no probe.
    let fixed = ZeroDropConfig {
        max_pps: Some(500_000),
        ..ZeroDropConfig::default()
    };
    let s = zd_search(&fixed, ZeroDropDut::Tcpdump, 1, 1_000_000, Some(2_000_000));
    assert_eq!(
        (s.hi_source, s.outcome, s.trials.len()),
        ("--zero-drop-max-pps", Outcome::AtHi, 1)
    );
    assert_eq!(
        (s.trials[0].purpose, s.trials[0].target_pps),
        (TrialPurpose::Search, 500_000)
    );
    // A generator slower than the lowest rate is an error.
    assert!(
        zero_drop_search(&cfg, ZeroDropDut::Tapline, 0, |purpose, target, _| {
            Ok(ZeroDropTrial {
                purpose,
                offered_pps: 10.0,
                ..zd_trial(ZeroDropDut::Tapline, 0, target, 20, 20, 0)
            })
        })
        .is_err()
    );
}

/// The generator's rate in [`zd_samples`], frames per second.
const ZD_HI: u64 = 1_000_000;

/// Zero-drop samples of three DUTs over three repetitions, each DUT
/// passing up to its capacity (none: it fails at every rate).
fn zd_samples() -> Vec<ZeroDropSample> {
    use ZeroDropDut::*;
    let hi = ZD_HI;
    vec![
        zd_sample(Tapline, 0, hi, Some(600_000)),
        zd_sample(AfPacketRead, 0, hi, Some(500_000)),
        zd_sample(TaplineRecord, 0, hi, Some(2_000_000)),
        zd_sample(Tapline, 1, hi, Some(400_000)),
        zd_sample(AfPacketRead, 1, hi, Some(950_000)),
        zd_sample(TaplineRecord, 1, hi, None),
        zd_sample(Tapline, 2, hi, Some(800_000)),
        zd_sample(AfPacketRead, 2, hi, Some(200_000)),
        zd_sample(TaplineRecord, 2, hi, Some(300_000)),
    ]
}

/// The sample of `dut` in repetition `rep`.
fn zd_rate(samples: &[ZeroDropSample], dut: ZeroDropDut, rep: u32) -> &ZeroDropSample {
    samples
        .iter()
        .find(|s| s.dut == dut && s.rep == rep)
        .unwrap()
}

#[test]
fn zero_drop_medians_and_cells() {
    use ZeroDropDut::*;
    let hi = ZD_HI;
    let samples = zd_samples();
    let rate = |d: ZeroDropDut, r: u32| zd_rate(&samples, d, r);
    let res = ZeroDropConfig::default().resolution_pps(hi);
    for (d, r, cap) in [(Tapline, 0, 600_000), (AfPacketRead, 2, 200_000)] {
        let got = rate(d, r).rate_pps.unwrap();
        assert!(got <= cap && cap - got <= res, "{got} for {cap}");
    }
    assert_eq!(zero_drop_cell(rate(TaplineRecord, 0)), ">= 1000.0");
    assert_eq!(zero_drop_cell(rate(TaplineRecord, 1)), "below lowest");
    let found = rate(Tapline, 0);
    assert_eq!(
        zero_drop_cell(found),
        format!("{:.1}", found.rate_pps.unwrap() as f64 / 1000.0)
    );
    let unconverged = ZeroDropSample {
        converged: false,
        ..found.clone()
    };
    assert!(zero_drop_cell(&unconverged).ends_with("(not converged)"));

    let tapline = zero_drop_summary(Tapline, Some("t 1".into()), &samples);
    let t_rates: Vec<f64> = (0..3).map(|r| rate(Tapline, r).rate_value()).collect();
    assert_eq!(tapline.median_rate_pps, Some(median(&t_rates)));
    assert_eq!(tapline.median_hi_pps, Some(hi as f64));
    assert_eq!(tapline.xdp_modes, vec!["native-copy".to_string()]);
    assert_eq!((tapline.at_hi_reps, tapline.below_lo_reps), (0, 0));
    let rec = zero_drop_summary(TaplineRecord, Some("t 1".into()), &samples);
    assert_eq!((rec.at_hi_reps, rec.below_lo_reps), (1, 1));
    // Below lowest counts as 0: the median is rep 2's rate.
    assert_eq!(
        rec.median_rate_pps,
        Some(rate(TaplineRecord, 2).rate_value())
    );
    let reader = zero_drop_summary(AfPacketRead, Some("r".into()), &samples);
    assert!(reader.xdp_modes.is_empty());
    let skipped = zero_drop_summary(Tcpdump, None, &samples);
    assert_eq!(
        (
            skipped.status.as_str(),
            skipped.median_rate_pps,
            skipped.trials
        ),
        (SKIPPED, None, 0)
    );
}

#[test]
fn zero_drop_ratios_of_rates_and_of_offered_rates() {
    use ZeroDropDut::*;
    let samples = zd_samples();
    let rate = |d: ZeroDropDut, r: u32| zd_rate(&samples, d, r);
    let t_rates: Vec<f64> = (0..3).map(|r| rate(Tapline, r).rate_value()).collect();
    let ratio = zero_drop_ratio(Tapline, AfPacketRead, false, true, &samples);
    assert_eq!(ratio.name, "tapline / af-packet-read");
    let r_rates: Vec<f64> = (0..3).map(|r| rate(AfPacketRead, r).rate_value()).collect();
    assert_eq!(ratio.of_medians, Some(median(&t_rates) / median(&r_rates)));
    let per_rep: Vec<f64> = (0..3).map(|r| t_rates[r] / r_rates[r]).collect();
    assert_eq!(ratio.per_rep, per_rep);
    assert_eq!(ratio.median_of_per_rep, Some(median(&per_rep)));
    // Of the achieved rates: the reader's rep 1 was offered 900k for a
    // target above 950k.
    let offered = zero_drop_ratio(Tapline, AfPacketRead, true, true, &samples);
    assert_eq!(offered.name, "tapline / af-packet-read, offered");
    assert_eq!(rate(AfPacketRead, 1).offered_value(), 900_000.0);
    let t_offered: Vec<f64> = (0..3).map(|r| rate(Tapline, r).offered_value()).collect();
    let r_offered: Vec<f64> = (0..3)
        .map(|r| rate(AfPacketRead, r).offered_value())
        .collect();
    assert_eq!(
        offered.per_rep,
        (0..3)
            .map(|r| t_offered[r] / r_offered[r])
            .collect::<Vec<_>>()
    );
    assert_ne!(offered.per_rep, ratio.per_rep);
    let ns = zero_drop_ratio(TaplineRecord, NetsniffNg, false, false, &samples);
    assert_eq!((ns.status.as_str(), ns.of_medians), (SKIPPED, None));
}

#[test]
fn zero_drop_markdown_and_json() {
    use ZeroDropDut::*;
    let samples = zd_samples();
    let ratio = zero_drop_ratio(Tapline, AfPacketRead, false, true, &samples);
    let offered = zero_drop_ratio(Tapline, AfPacketRead, true, true, &samples);
    let r = PassiveResult {
        benchmark: "passive-capture-fanout-zero-drop",
        machine: Machine::describe(),
        config: passive_config(
            Vec::new(),
            Vec::new(),
            3,
            5.0,
            vec![Tapline, AfPacketRead, TaplineRecord, NetsniffNg],
        ),
        generator: "g".into(),
        versions: BTreeMap::new(),
        capture_samples: Vec::new(),
        capture_summary: Vec::new(),
        capture_ratios: Vec::new(),
        fanout_samples: Vec::new(),
        fanout_summary: Vec::new(),
        zero_drop_summary: vec![
            zero_drop_summary(Tapline, Some("t 1".into()), &samples),
            zero_drop_summary(AfPacketRead, Some("r".into()), &samples),
            zero_drop_summary(TaplineRecord, Some("t 1".into()), &samples),
            zero_drop_summary(NetsniffNg, None, &samples),
        ],
        zero_drop_ratios: vec![
            ratio.clone(),
            offered.clone(),
            zero_drop_ratio(TaplineRecord, NetsniffNg, false, false, &samples),
        ],
        zero_drop_samples: samples.clone(),
    };
    let md = markdown(&r);
    assert!(md.contains("## Zero-drop rate"), "{md}");
    assert!(
        md.contains(&format!(
            "| tapline / af-packet-read | {} | {} |",
            times(ratio.of_medians.unwrap()),
            times(ratio.median_of_per_rep.unwrap())
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| tapline / af-packet-read, offered | {} |",
            times(offered.of_medians.unwrap())
        )),
        "{md}"
    );
    assert!(
        md.contains("| tapline-record / netsniff-ng | skipped (not installed) |"),
        "{md}"
    );
    // Failed at the highest rate: the probe's loss.
    assert!(md.contains("| 1000.0 | 1 of 2000000 |"), "{md}");
    // Only the part that ran is described.
    assert!(!md.contains("fan-out part"), "{md}");
    assert!(md.contains("tcpdump -i p1 -w FILE"), "{md}");
    assert!(
        md.contains("| netsniff-ng | skipped (not installed) |"),
        "{md}"
    );
    assert!(md.contains("| 1000.0 | 1 | native-copy |"), "{md}");
    assert!(md.contains(">= 1000.0, below lowest, "), "{md}");
    assert!(md.contains("Zero-drop rate: for each DUT"), "{md}");
    assert!(md.contains("--batch 64"), "{md}");
    // The trial log is in the JSON, probe and search trials alike.
    let json = serde_json::to_value(&r).unwrap();
    let first = &json["zero_drop_samples"][0];
    assert_eq!(first["dut"], "tapline");
    assert_eq!(first["trials"][0]["purpose"], "generator-probe");
    assert_eq!(first["trials"][1]["purpose"], "search");
    assert_eq!(first["trials"][0]["xdp_mode"], "native-copy");
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
}
