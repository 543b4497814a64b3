use super::dut::pick_testpmd_cpus;
use super::*;

#[test]
fn dut_names_round_trip_and_errors_list_every_name() {
    for d in Dut::ALL {
        assert_eq!(Dut::parse(d.name()).unwrap(), d);
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            serde_json::Value::from(d.name())
        );
    }
    let err = Dut::parse("ovs").unwrap_err().to_string();
    for d in Dut::ALL {
        assert!(err.contains(d.name()), "{err}");
    }
    // Ours and the Linux peers never miss anything.
    for d in [Dut::Tapline, Dut::LinuxBridge, Dut::TcMirred, Dut::AfPacket] {
        assert_eq!(d.missing(), None, "{}", d.name());
    }
    assert_eq!(Dut::ALL.into_iter().filter(|d| d.is_tapline()).count(), 4);
}

#[test]
fn ratios_cover_every_peer_that_ran_and_skipped_duts_are_listed() {
    let mut cfg = config(&[60]);
    cfg.duts = vec![Dut::Tapline, Dut::AfPacket, Dut::Suricata];
    let samples = vec![
        sample(Dut::Tapline, 0, 60, 0.9),
        sample(Dut::AfPacket, 0, 60, 0.6),
        sample(Dut::Suricata, 0, 60, 0.3),
    ];
    let (summary, ratios) = summarize(&cfg, &samples);
    let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["tapline / af-packet", "tapline / suricata"]);
    assert!((ratios[1].of_medians - 3.0).abs() < 1e-9);
    let mut r = sweep();
    r.config.frame_lens = vec![60];
    (r.summary, r.ratios, r.samples) = (summary, ratios, samples);
    r.skipped = vec![Skipped {
        dut: Dut::Testpmd,
        reason: "not installed (dpdk-testpmd not found in PATH)".into(),
    }];
    let md = markdown(&r);
    assert!(
        md.contains("| tapline / af-packet | 1.50x | 1.50x |"),
        "{md}"
    );
    assert!(
        md.contains(
            "Skipped (not run, nothing estimated):\n- testpmd: not installed (dpdk-testpmd not found in PATH)"
        ),
        "{md}"
    );
    assert!(!md.contains("| testpmd |"), "{md}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["skipped"][0]["dut"], "testpmd");
    assert!(json["summary"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["dut"] != "testpmd"));
}

fn config(frame_lens: &[usize]) -> BenchConfig {
    BenchConfig {
        duts: vec![Dut::Tapline, Dut::LinuxBridge],
        reps: 2,
        seconds: 1.0,
        frame_lens: frame_lens.to_vec(),
        flows: 64,
        gen_cpu: None,
        dut_cpu: None,
        dataplane_keys: String::new(),
        xdp_keys: String::new(),
    }
}

fn sample(dut: Dut, rep: u32, frame_len: usize, delivered_mpps: f64) -> Sample {
    Sample {
        dut,
        rep,
        frame_len,
        offered_pps: 1e6,
        delivered_pps: delivered_mpps * 1e6,
        loss_ratio: 0.0,
        mode: String::new(),
        steal_ratio: 0.0,
        tapline_counters: None,
        peer_counters: None,
    }
}

/// tapline at 0.8 and 0.6 Mpps for 60 bytes, 0.5 and 0.3 for 1514; the
/// bridge at half of that in every repetition.
fn sweep() -> BenchResult {
    let cfg = config(&[60, 1514]);
    let mut samples = Vec::new();
    for (rep, (short, long)) in [(0.8, 0.5), (0.6, 0.3)].into_iter().enumerate() {
        for (len, mpps) in [(60, short), (1514, long)] {
            samples.push(sample(Dut::Tapline, rep as u32, len, mpps));
            samples.push(sample(Dut::LinuxBridge, rep as u32, len, mpps / 2.0));
        }
    }
    let (summary, ratios) = summarize(&cfg, &samples);
    BenchResult {
        benchmark: "inline-bridge-throughput",
        machine: Machine {
            cpu_model: "test cpu".into(),
            cpus: 2,
            kernel: "6.18".into(),
            memory_gib: 24,
            nics: Vec::new(),
        },
        config: cfg,
        generator: "test",
        samples,
        summary,
        ratios,
        skipped: Vec::new(),
    }
}

#[test]
fn medians_and_ratios_are_per_dut_and_frame_length() {
    let r = sweep();
    let median = |d: Dut, len: usize| {
        r.summary
            .iter()
            .find(|s| s.dut == d && s.frame_len == len)
            .unwrap()
            .median_delivered_mpps
    };
    assert!((median(Dut::Tapline, 60) - 0.7).abs() < 1e-9);
    assert!((median(Dut::Tapline, 1514) - 0.4).abs() < 1e-9);
    assert!((median(Dut::LinuxBridge, 1514) - 0.2).abs() < 1e-9);
    assert_eq!(r.summary.len(), 4);
    let ratios: Vec<(&str, usize)> = r
        .ratios
        .iter()
        .map(|x| (x.name.as_str(), x.frame_len))
        .collect();
    assert_eq!(
        ratios,
        [
            ("tapline / linux-bridge", 60),
            ("tapline / linux-bridge", 1514)
        ]
    );
    for x in &r.ratios {
        assert!((x.of_medians - 2.0).abs() < 1e-9);
        assert!((x.median_per_rep - 2.0).abs() < 1e-9);
    }
}

#[test]
fn sweep_markdown_has_a_column_and_a_section_per_size() {
    let md = markdown(&sweep());
    assert!(md.contains("| DUT | 64 B | 1518 B |"), "{md}");
    assert!(md.contains("| tapline | 0.700 | 0.400 |"), "{md}");
    assert!(md.contains("### 60-byte frames (64 on the wire)"), "{md}");
    assert!(
        md.contains("### 1514-byte frames (1518 on the wire)"),
        "{md}"
    );
    assert_eq!(
        md.matches("| tapline / linux-bridge | 2.00x | 2.00x |")
            .count(),
        2
    );
}

#[test]
fn sweep_plot_has_a_series_per_dut_at_wire_sizes() {
    let svg = throughput_plot(&sweep()).unwrap().expect("two sizes plot");
    assert!(svg.contains("tapline") && svg.contains("linux-bridge"));
    assert!(svg.contains("frame size on the wire (bytes)"));
}

#[test]
fn one_size_has_no_plot_and_the_old_layout() {
    let mut r = sweep();
    r.config.frame_lens = vec![60];
    r.samples.retain(|s| s.frame_len == 60);
    (r.summary, r.ratios) = summarize(&r.config, &r.samples);
    assert!(throughput_plot(&r).unwrap().is_none());
    let md = markdown(&r);
    assert!(
        md.starts_with("Inline forwarding, 60-byte frames (64 on the wire),"),
        "{md}"
    );
    assert!(!md.contains("###"), "{md}");
}

#[test]
fn testpmd_cpus_are_allowed_cpu_ids() {
    // Allowed CPUs need not be 0..n: 2 and 5 of a larger machine.
    assert_eq!(pick_testpmd_cpus(&[2, 5], None), (2, 5));
    assert_eq!(pick_testpmd_cpus(&[2, 5], Some(2)), (5, 2));
    // One CPU: both lcores on it.
    assert_eq!(pick_testpmd_cpus(&[3], None), (3, 3));
    let (main, fwd) = testpmd_cpus(None).unwrap();
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    assert!(allowed.is_set(main).unwrap() && allowed.is_set(fwd).unwrap());
}

#[test]
fn frame_lengths_are_checked() {
    validate_frame_lens(&[60, 124, 252, 508, 1020, 1514]).unwrap();
    for (lens, expected) in [
        (&[][..], "no frame length"),
        (&[59][..], "outside"),
        (&[1515][..], "outside"),
        (&[60, 124, 60][..], "listed twice"),
    ] {
        let err = validate_frame_lens(lens).unwrap_err().to_string();
        assert!(err.contains(expected), "{lens:?}: {err}");
    }
}
