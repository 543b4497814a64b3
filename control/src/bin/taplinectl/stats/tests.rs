use super::*;

/// `stats --json` of a one-shot `stats`, parsed: the `stats` object.
fn stats_value(s: pb::Stats) -> serde_json::Value {
    let text = crate::output::json_text(&pb::GetStatsResponse { stats: Some(s) }, true).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["stats"].take()
}

fn counters(rx: u64) -> pb::PacketCounters {
    pb::PacketCounters {
        rx_packets: rx,
        rx_bytes: rx * 100,
        ..Default::default()
    }
}

fn sample_stats() -> pb::Stats {
    pb::Stats {
        stats_epoch: 7,
        dataplane_state: pb::DataplaneState::Running.into(),
        ports: vec![pb::PortStats {
            role: "inline-1".into(),
            ifname: "i1".into(),
            xdp_mode: "native-copy".into(),
            totals: Some(counters(5)),
            kernel_totals: Some(pb::KernelXdpCounters {
                rx_dropped: 1,
                rx_ring_full: 2,
                rx_fill_ring_empty: 100,
                ..Default::default()
            }),
            queues: vec![pb::QueueStats {
                queue_id: 0,
                xdp_mode: "native-copy".into(),
                counters: Some(counters(5)),
                kernel: Some(pb::KernelXdpCounters {
                    rx_dropped: 1,
                    rx_ring_full: 2,
                    rx_fill_ring_empty: 100,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        workers: vec![pb::WorkerStats {
            worker_id: 0,
            batches: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn stats_json_has_the_documented_shape() {
    // The proto3 JSON mapping: lowerCamelCase, 64-bit integers as strings
    // (exact in jq and JavaScript), enums by name, defaults emitted, unset
    // messages absent.
    let v = stats_value(sample_stats());
    assert_eq!(v["statsEpoch"], "7");
    assert_eq!(v["dataplaneState"], "DATAPLANE_STATE_RUNNING");
    assert_eq!(v["ratesWindowMs"], "0");
    let p = &v["ports"][0];
    assert_eq!(p["role"], "inline-1");
    assert_eq!(p["totals"]["rxPackets"], "5");
    assert_eq!(p["totals"]["rxBytes"], "500");
    assert_eq!(p["kernelTotals"]["rxRingFull"], "2");
    assert!(p.get("rates").is_none());
    assert_eq!(p["queues"][0]["counters"]["rxPackets"], "5");
    assert_eq!(p["queues"][0]["queueId"], 0);
    assert_eq!(v["workers"][0]["batches"], "3");
    assert!(v.get("sampledAt").is_none());
    // A watch prints WatchStatsResponse: the interval beside the stats.
    let w = crate::output::json_text(
        &pb::WatchStatsResponse {
            stats: Some(sample_stats()),
            interval_ms: 200,
        },
        false,
    )
    .unwrap();
    let w: serde_json::Value = serde_json::from_str(&w).unwrap();
    assert_eq!(w["intervalMs"], 200);
    assert_eq!(w["stats"]["statsEpoch"], "7");
    // u64 values beyond 2^53 stay exact.
    let mut big = sample_stats();
    big.ports[0].totals.as_mut().unwrap().rx_bytes = u64::MAX;
    let v = stats_value(big);
    assert_eq!(v["ports"][0]["totals"]["rxBytes"], "18446744073709551615");
}

#[test]
fn stats_json_and_table_show_the_kernel_fallback() {
    let none = stats_value(sample_stats());
    assert!(none.get("kernelFallback").is_none(), "{none}");
    assert!(!render(&sample_stats(), None).contains("KERNEL FALLBACK"));
    let mut s = sample_stats();
    s.kernel_fallback = Some(pb::FallbackStats {
        ports: vec![
            pb::FallbackPortStats {
                role: "inline-1".into(),
                forwarded: 4000,
                dropped: 2,
                lease_expiries: 1,
            },
            pb::FallbackPortStats {
                role: "inline-2".into(),
                forwarded: 0,
                dropped: 0,
                lease_expiries: 0,
            },
        ],
        lease_expiries: 1,
        takeovers: 3,
    });
    let v = stats_value(s.clone());
    let f = &v["kernelFallback"];
    assert_eq!(f["takeovers"], "3");
    assert_eq!(f["leaseExpiries"], "1");
    assert_eq!(f["ports"][0]["role"], "inline-1");
    assert_eq!(f["ports"][0]["forwarded"], "4000");
    assert_eq!(f["ports"][0]["dropped"], "2");
    assert_eq!(f["ports"][0]["leaseExpiries"], "1");
    assert_eq!(f["ports"][1]["forwarded"], "0");
    let text = render(&s, None);
    let at = text
        .lines()
        .position(|l| l.starts_with("KERNEL FALLBACK"))
        .expect(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[at + 1].split_whitespace().collect::<Vec<_>>(),
        ["inline-1", "4000", "2", "1"],
        "{text}"
    );
    assert_eq!(lines[at + 3], "takeovers: 3", "{text}");
}

#[test]
fn stats_table_shows_counters_and_kernel_drops() {
    let text = render(&sample_stats(), None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("dataplane running, epoch 0x7"),
        "{text}"
    );
    assert!(lines[1].starts_with("PORT"), "{text}");
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    // PORT IFNAME QUEUE MODE RX_PKTS RX_BYTES TX_PKTS TX_BYTES DROPS KDROPS
    assert_eq!(
        row,
        [
            "inline-1",
            "i1",
            "0",
            "native-copy",
            "5",
            "500",
            "0",
            "0",
            "0",
            "3"
        ]
    );
    let watch = render(&sample_stats(), Some(200));
    assert!(
        watch.contains("RX PKT/S") && watch.contains("no rates yet"),
        "{watch}"
    );
}

fn chain_stats() -> pb::Stats {
    let mut s = sample_stats();
    s.ports.push(pb::PortStats {
        role: "tool-a".into(),
        ifname: "t1a".into(),
        hop: "ids".into(),
        xdp_mode: "native-copy".into(),
        totals: Some(counters(9)),
        kernel_totals: Some(pb::KernelXdpCounters::default()),
        ..Default::default()
    });
    s.hops = vec![pb::HopStats {
        name: "ids".into(),
        to_tool_packets: 100,
        from_tool_packets: 98,
        bypassed_packets: 7,
        dropped_packets: 2,
        dropped_packets_by_reason: [("hop_down".to_string(), 2)].into(),
        heartbeats_sent: 50,
        heartbeats_returned: 48,
        heartbeats_late: 1,
        heartbeats_lost: 1,
        round_trip_latency: Some(pb::LatencySummary {
            count: 10,
            p50_ns: 45_000,
            p99_ns: 1_200_000,
            ..Default::default()
        }),
        round_trip_latency_histogram: Some(pb::LatencyHistogram {
            count: 49,
            sum_ns: 3_000_000,
            buckets: vec![pb::LatencyBucket {
                upper_bound_ns: 10_000,
                count: 4,
            }],
        }),
        rates: Some(pb::HopRates {
            to_tool_packets_per_second: 1500.0,
            from_tool_packets_per_second: 1490.0,
            ..Default::default()
        }),
        ..Default::default()
    }];
    s
}

#[test]
fn stats_json_and_table_show_hops() {
    let v = stats_value(chain_stats());
    let h = &v["hops"][0];
    assert_eq!(h["name"], "ids");
    assert_eq!(h["toToolPackets"], "100");
    assert_eq!(h["droppedPacketsByReason"]["hop_down"], "2");
    assert_eq!(h["heartbeatsLate"], "1");
    assert_eq!(h["roundTripLatency"]["p99Ns"], "1200000");
    assert_eq!(
        h["roundTripLatencyHistogram"]["buckets"][0]["upperBoundNs"],
        "10000"
    );
    assert_eq!(h["rates"]["toToolPacketsPerSecond"], 1500.0);
    assert_eq!(v["ports"][1]["hop"], "ids");
    // Without a chain: an empty list, and no hops table.
    let v = stats_value(sample_stats());
    assert_eq!(v["hops"], serde_json::json!([]));
    let plain = render(&sample_stats(), None);
    assert!(!plain.contains("HOP"), "{plain}");

    let text = render(&chain_stats(), None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("PORT"), "{text}");
    let header: Vec<&str> = lines[1].split_whitespace().take(3).collect();
    assert_eq!(header, ["PORT", "IFNAME", "HOP"], "{text}");
    let i1: Vec<&str> = lines[2].split_whitespace().take(4).collect();
    assert_eq!(i1, ["inline-1", "i1", "-", "0"], "{text}");
    let t1a: Vec<&str> = lines[3].split_whitespace().take(5).collect();
    assert_eq!(t1a, ["tool-a", "t1a", "ids", "-", "native-copy"], "{text}");
    let hop_header = lines
        .iter()
        .position(|l| l.starts_with("HOP"))
        .expect("hops table");
    let row: Vec<&str> = lines[hop_header + 1].split_whitespace().collect();
    // HOP TO FROM BYPASSED DROPS HB_SENT HB_RETURNED HB_LOST P50 P99
    assert_eq!(
        row,
        ["ids", "100", "98", "7", "2", "50", "48", "1", "45.0us", "1.2ms"],
        "{text}"
    );
    let watch = render(&chain_stats(), Some(1000));
    let row = watch
        .lines()
        .find(|l| l.starts_with("ids"))
        .expect("hop row");
    let rates: Vec<&str> = row.split_whitespace().skip(10).collect();
    assert_eq!(rates, ["1.50k", "1.49k", "0", "0"], "{watch}");
}

fn output_counters(packets: u64, by_reason: &[(&str, u64)]) -> pb::OutputCounters {
    pb::OutputCounters {
        packets,
        bytes: packets * 100,
        dropped_packets: by_reason.iter().map(|(_, n)| n).sum(),
        dropped_packets_by_reason: by_reason.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        ..Default::default()
    }
}

fn outputs_stats() -> pb::Stats {
    let mut s = sample_stats();
    let mut ids = output_counters(
        100,
        &[("tx_ring_full", 10), ("member_down", 30), ("tx_error", 0)],
    );
    ids.filtered_out_packets = 20;
    s.output_groups = vec![pb::OutputGroupStats {
        name: "ids".into(),
        filter: "tcp port 80".into(),
        counters: Some(ids),
        rates: Some(pb::OutputRates {
            packets_per_second: 2500.0,
            ..Default::default()
        }),
        members: vec![
            pb::OutputMemberStats {
                name: "o1".into(),
                ifname: "veth1".into(),
                counters: Some(output_counters(
                    50,
                    &[("tx_ring_full", 10), ("member_down", 0)],
                )),
                ..Default::default()
            },
            pb::OutputMemberStats {
                name: "o2".into(),
                ifname: "veth2".into(),
                counters: Some(output_counters(10, &[("member_down", 30)])),
                ..Default::default()
            },
        ],
        ..Default::default()
    }];
    let mut stage = output_counters(40, &[("queue_full", 5), ("disk_error", 0)]);
    stage.filtered_out_packets = 80;
    s.recorders = vec![pb::RecorderStats {
        name: "disk".into(),
        directory: "/data/pcap".into(),
        current_file: "/data/pcap/disk-1.pcap.part".into(),
        filter: "udp".into(),
        files_created: 3,
        files_completed: 2,
        bytes_written: 4_000,
        packets_written: 35,
        queue_dropped_packets: 5,
        disk_dropped_packets: 7,
        disk_errors: 1,
        last_disk_error: "writing /data/pcap/disk-1.pcap.part:\nNo space left on device".into(),
        last_disk_error_at: Some(tapline_proto::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        filter_stage: Some(stage),
        ..Default::default()
    }];
    s.taps = vec![pb::TapStats {
        id: 4,
        point: "passive-1 rx".into(),
        filter: "icmp or arp".into(),
        started_at: Some(tapline_proto::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        matched_packets: 12,
        sent_packets: 11,
        lost_packets: 1,
        rates: Some(pb::TapRates {
            matched_packets_per_second: 3.0,
            ..Default::default()
        }),
    }];
    s
}

#[test]
fn stats_json_and_tables_show_outputs_recorders_and_taps() {
    let v = stats_value(outputs_stats());
    let g = &v["outputGroups"][0];
    assert_eq!(g["name"], "ids");
    assert_eq!(g["filter"], "tcp port 80");
    assert_eq!(g["snapLengthBytes"], 0);
    assert_eq!(g["counters"]["filteredOutPackets"], "20");
    assert_eq!(g["counters"]["droppedPacketsByReason"]["member_down"], "30");
    assert_eq!(g["rates"]["packetsPerSecond"], 2500.0);
    assert_eq!(g["members"][1]["ifname"], "veth2");
    assert_eq!(g["members"][1]["recorder"], "");
    assert!(g["members"][1].get("rates").is_none());
    let r = &v["recorders"][0];
    assert_eq!(r["currentFile"], "/data/pcap/disk-1.pcap.part");
    assert_eq!(r["filesCompleted"], "2");
    assert_eq!(r["diskDroppedPackets"], "7");
    // RFC 3339 (pbjson-types writes UTC as +00:00).
    assert_eq!(r["lastDiskErrorAt"], "2027-01-15T08:00:00+00:00");
    assert_eq!(
        r["filterStage"]["droppedPacketsByReason"]["queue_full"],
        "5"
    );
    assert!(r.get("rates").is_none() && r.get("filterStageRates").is_none());
    let t = &v["taps"][0];
    assert_eq!(
        (t["id"].as_str(), t["point"].as_str()),
        (Some("4"), Some("passive-1 rx"))
    );
    assert_eq!(t["lostPackets"], "1");
    assert_eq!(t["rates"]["matchedPacketsPerSecond"], 3.0);
    // Without them: empty lists, and no tables.
    let v = stats_value(sample_stats());
    for key in ["outputGroups", "recorders", "taps"] {
        assert_eq!(v[key], serde_json::json!([]), "{key}");
    }
    let plain = render(&sample_stats(), None);
    for header in ["GROUP", "RECORDER", "TAP"] {
        assert!(
            !plain.lines().any(|l| l.starts_with(header)),
            "{header}: {plain}"
        );
    }

    let text = render(&outputs_stats(), None);
    let lines: Vec<&str> = text.lines().collect();
    let at = |header: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(header))
            .unwrap_or_else(|| panic!("no {header} table:\n{text}"))
    };
    let g = at("GROUP");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // GROUP MEMBER IFNAME PACKETS BYTES FILTERED_OUT DROPS TOP_REASONS
    assert_eq!(
        cols(lines[g + 1]),
        [
            "ids",
            "-",
            "-",
            "100",
            "10000",
            "20",
            "40",
            "member_down",
            "30,",
            "tx_ring_full",
            "10"
        ],
        "{text}"
    );
    assert_eq!(
        cols(lines[g + 2]),
        [
            "ids",
            "o1",
            "veth1",
            "50",
            "5000",
            "-",
            "10",
            "tx_ring_full",
            "10"
        ],
        "{text}"
    );
    assert_eq!(
        cols(lines[g + 3])[..7],
        ["ids", "o2", "veth2", "10", "1000", "-", "30"]
    );
    let r = at("RECORDER");
    // RECORDER ACCEPTED FILTERED_OUT WRITTEN BYTES FILES QDROPS DISKDROPS ERRORS FILE
    assert_eq!(
        cols(lines[r + 1]),
        [
            "disk",
            "40",
            "80",
            "35",
            "4000",
            "3",
            "5",
            "7",
            "1",
            "/data/pcap/disk-1.pcap.part"
        ],
        "{text}"
    );
    assert_eq!(
        lines[r + 2],
        "recorder disk: last disk error at 2027-01-15T08:00:00Z: writing /data/pcap/disk-1.pcap.part: No space left on device",
        "{text}"
    );
    let t = at("TAP");
    // TAP POINT (two words) STARTED MATCHED SENT LOST FILTER
    assert_eq!(
        cols(lines[t + 1]),
        [
            "4",
            "passive-1",
            "rx",
            "2027-01-15T08:00:00Z",
            "12",
            "11",
            "1",
            "icmp",
            "or",
            "arp"
        ],
        "{text}"
    );

    let watch = render(&outputs_stats(), Some(1000));
    let row = watch
        .lines()
        .find(|l| l.starts_with("ids  "))
        .expect("group row");
    // The rates come after DROPS, before the reasons.
    // Byte rates through bytesize (SI units).
    assert_eq!(cols(row)[7..10], ["2.50k", "0B", "0"], "{watch}");
    let member = watch.lines().find(|l| l.contains("veth1")).unwrap();
    assert_eq!(cols(member)[7..10], ["-", "-", "-"], "{watch}");
    let tap = watch
        .lines()
        .find(|l| l.contains("passive-1 rx  2027"))
        .unwrap();
    assert_eq!(cols(tap)[7..10], ["3", "0", "0"], "{watch}");
    assert!(watch.contains("WRITE PKT/S"), "{watch}");
}

#[test]
fn top_drop_reasons_are_the_largest_first() {
    let m = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
        v.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    };
    assert_eq!(top_drop_reasons(&m(&[])), "-");
    assert_eq!(top_drop_reasons(&m(&[("tx_error", 0)])), "-");
    assert_eq!(
        top_drop_reasons(&m(&[("a", 1), ("b", 5), ("c", 3)])),
        "b 5, c 3"
    );
    // Ties by name.
    assert_eq!(
        top_drop_reasons(&m(&[("tx_ring_full", 2), ("member_down", 2)])),
        "member_down 2, tx_ring_full 2"
    );
}
