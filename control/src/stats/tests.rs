//! The tests of the `Stats` mapping (fixtures in `fixtures.rs`, also
//! reachable here for the other modules' tests).

pub(crate) use super::fixtures::*;
use super::*;
use std::time::Instant;
use tapline_segment::counters::TapCounts;
use tapline_segment::TapSnapshot;
use tonic::Code;

fn sample(snapshot: Snapshot, at: Instant) -> Sample {
    Sample {
        snapshot,
        sampled_unix_ns: 1_800_000_100_123_456_789,
        at,
    }
}

#[test]
fn intervals_are_validated() {
    assert_eq!(watch_interval(0).unwrap(), Duration::from_millis(1000));
    assert_eq!(watch_interval(10).unwrap(), Duration::from_millis(10));
    assert_eq!(watch_interval(250).unwrap(), Duration::from_millis(250));
    assert_eq!(watch_interval(60_000).unwrap(), Duration::from_secs(60));
    for bad in [1, 9, 60_001, u32::MAX] {
        let e = watch_interval(bad).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("interval_ms: "), "{}", e.message());
        assert!(e.message().contains(&bad.to_string()));
    }
}

#[test]
fn selectors_are_validated() {
    assert_eq!(
        Selector::from_proto("selector", None).unwrap(),
        Selector::default()
    );
    let ok = v1::StatsSelector {
        roles: vec!["passive-1".into(), "inline-2".into()],
        omit_queues: true,
    };
    let s = Selector::from_proto("selector", Some(&ok)).unwrap();
    assert!(s.wants("passive-1") && !s.wants("inline-1") && s.omit_queues);
    let bad = v1::StatsSelector {
        roles: vec!["inline-1".into(), "pasive-1".into()],
        omit_queues: false,
    };
    let e = Selector::from_proto("selector", Some(&bad)).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("selector.roles[1]: \"pasive-1\""),
        "{}",
        e.message()
    );
}

#[test]
fn queues_group_into_ports_in_info_order() {
    let s = snapshot(1, 10);
    let p = ports(&s);
    let names: Vec<(&str, &str, Vec<usize>)> = p
        .iter()
        .map(|p| (p.role, p.ifname, p.slots.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("passive-1", "p1", vec![4]),
            ("inline-1", "i1", vec![0, 2]),
            ("inline-2", "i2", vec![1, 3]),
        ]
    );
    assert_eq!(
        queue_workers(&s),
        vec![Some(0), Some(0), Some(1), Some(1), Some(0)]
    );
    let mut none = s.clone();
    none.workers.clear();
    assert!(queue_workers(&none).iter().all(Option::is_none));
}

#[test]
fn modes_use_the_api_spelling_and_ports_take_the_least_capable() {
    assert_eq!(api_mode("native-zero-copy"), "native-zerocopy");
    assert_eq!(api_mode("generic-copy"), "generic-copy");
    assert_eq!(
        least_capable(["native-zerocopy", "generic-copy", "native-copy"]),
        "generic-copy"
    );
    assert_eq!(least_capable(["native-zerocopy"]), "native-zerocopy");
    assert_eq!(least_capable([]), "");
}

#[test]
fn stats_carry_the_kernel_fallback_counters_per_port() {
    let cur = sample(snapshot(9, 10), Instant::now());
    let st = build_stats(&cur, None, &Selector::default(), &[]);
    assert_eq!(st.kernel_fallback, None);
    let mut s = snapshot(9, 10);
    s.fallback = Some(FallbackSnapshot {
        forwarded: [500, 7],
        dropped: [1, 2],
        lease_expiries: [3, 4],
        takeovers: 5,
    });
    let st = build_stats(&sample(s, Instant::now()), None, &Selector::default(), &[]);
    let f = st.kernel_fallback.expect("kernel_fallback");
    assert_eq!(f.lease_expiries, 7);
    assert_eq!(f.takeovers, 5);
    let ports: Vec<(&str, u64, u64, u64)> = f
        .ports
        .iter()
        .map(|p| (p.role.as_str(), p.forwarded, p.dropped, p.lease_expiries))
        .collect();
    assert_eq!(ports, [("inline-1", 500, 1, 3), ("inline-2", 7, 2, 4)]);
}

#[test]
fn stats_sum_queues_and_name_drop_reasons() {
    let cur = sample(snapshot(9, 10), Instant::now());
    let st = build_stats(&cur, None, &Selector::default(), &[3]);
    assert_eq!(st.stats_epoch, 9);
    assert_eq!(st.rates_window_ms, 0);
    assert_eq!(st.dataplane_state(), v1::DataplaneState::Running);
    assert_eq!(
        st.sampled_at,
        Some(tapline_proto::Timestamp {
            seconds: 1_800_000_100,
            nanos: 123_456_789
        })
    );
    assert_eq!(st.dataplane_started_at.unwrap().nanos, 500_000_000);
    let roles: Vec<&str> = st.ports.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(roles, ["passive-1", "inline-1", "inline-2"]);
    let i1 = &st.ports[1];
    assert_eq!(i1.ifname, "i1");
    assert_eq!(i1.xdp_mode, "native-zerocopy");
    let t = i1.totals.as_ref().unwrap();
    assert_eq!(t.rx_packets, 10 + 30);
    assert_eq!(t.rx_bytes, 4000);
    assert_eq!(t.tx_packets, 5 + 15);
    assert_eq!(t.dropped_packets, 1 + 3);
    // Every reason this build knows, zero included.
    assert_eq!(
        t.dropped_packets_by_reason,
        BTreeMap::from([
            ("tx_ring_full".to_string(), 4),
            ("hop_down".to_string(), 0),
            ("heartbeat_from_wire".to_string(), 0),
            ("heartbeat_invalid".to_string(), 0),
        ])
    );
    let k = i1.kernel_totals.unwrap();
    assert_eq!((k.rx_dropped, k.tx_ring_empty), (2, 12));
    assert_eq!(i1.queues.len(), 2);
    assert_eq!(i1.queues[1].queue_id, 1);
    assert_eq!(i1.queues[1].worker_id, 1);
    assert_eq!(i1.queues[1].counters.as_ref().unwrap().rx_packets, 30);
    assert!(i1.rates.is_none() && i1.queues[0].rates.is_none());
    assert_eq!(st.workers.len(), 2);
    assert_eq!(st.workers[0].cpu, Some(3));
    assert_eq!(st.workers[1].cpu, None);
    assert_eq!(st.workers[1].batches, 20);
    assert_eq!(st.workers[0].batch_latency.unwrap().p999_ns, 9_000);
    assert!(st.workers[0].rates.is_none());

    // A drop slot this build has no name for still counts.
    let mut odd = snapshot(9, 10);
    odd.queues[4].drops[5] = 7;
    let st = build_stats(
        &sample(odd, Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let t = st.ports[0].totals.as_ref().unwrap();
    assert_eq!(t.dropped_packets, 5 + 7);
    assert_eq!(t.dropped_packets_by_reason["unknown_5"], 7);
}

#[test]
fn selector_filters_ports_and_queues() {
    let cur = sample(snapshot(1, 10), Instant::now());
    let sel = Selector {
        roles: vec!["inline-2".into()],
        omit_queues: true,
    };
    let st = build_stats(&cur, None, &sel, &[]);
    assert_eq!(st.ports.len(), 1);
    assert_eq!(st.ports[0].role, "inline-2");
    assert!(st.ports[0].queues.is_empty());
    assert_eq!(st.ports[0].totals.as_ref().unwrap().rx_packets, 20 + 40);
    assert_eq!(st.workers.len(), 2, "workers are not filtered");
}

#[test]
fn rates_between_two_samples() {
    let t0 = Instant::now();
    let prev = sample(snapshot(5, 100), t0);
    let cur = sample(snapshot(5, 300), t0 + Duration::from_millis(500));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    assert_eq!(st.rates_window_ms, 500);
    let p = &st.ports[0]; // passive-1: rx 500 -> 1500 over 0.5 s
    let r = p.rates.as_ref().unwrap();
    assert_eq!(r.rx_packets_per_second, 2000.0);
    assert_eq!(r.rx_bytes_per_second, 200_000.0);
    assert_eq!(r.tx_packets_per_second, 1000.0);
    assert_eq!(r.dropped_packets_per_second, 200.0);
    assert_eq!(
        r.dropped_packets_per_second_by_reason["tx_ring_full"],
        200.0
    );
    let q = st.ports[1].queues[1].rates.as_ref().unwrap(); // inline-1 q1: 300 -> 900
    assert_eq!(q.rx_packets_per_second, 1200.0);
    let w = st.workers[1].rates.unwrap(); // batches 200 -> 600
    assert_eq!(w.batches_per_second, 800.0);
    assert_eq!(w.busy_loop_ratio, 0.25);
    assert_eq!(w.idle_waits_per_second, 400.0);
}

#[test]
fn rates_reset_when_the_epoch_changes() {
    let t0 = Instant::now();
    // The old run had counted a lot; the new one starts from zero.
    let prev = sample(snapshot(5, 1_000_000), t0);
    let cur = sample(snapshot(6, 10), t0 + Duration::from_secs(1));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    assert_eq!(st.stats_epoch, 6);
    assert_eq!(st.rates_window_ms, 0);
    assert!(st.ports.iter().all(|p| p.rates.is_none()));
    assert!(st
        .ports
        .iter()
        .flat_map(|p| &p.queues)
        .all(|q| q.rates.is_none()));
    assert!(st.workers.iter().all(|w| w.rates.is_none()));
    // The next sample of the new run has rates again.
    let next = sample(snapshot(6, 20), t0 + Duration::from_secs(2));
    let st = build_stats(&next, Some(&cur), &Selector::default(), &[]);
    assert_eq!(st.rates_window_ms, 1000);
    assert_eq!(
        st.ports[0].rates.as_ref().unwrap().rx_packets_per_second,
        50.0
    );
}

#[test]
fn rates_never_go_negative() {
    let t0 = Instant::now();
    // Every counter went back (every slot was cleared and handed out
    // again): each counted its value since.
    let prev = sample(snapshot(5, 300), t0);
    let cur = sample(snapshot(5, 100), t0 + Duration::from_secs(1));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    for (p, t) in st.ports.iter().zip([500, 400, 600]) {
        let r = p.rates.as_ref().unwrap();
        assert_eq!(r.rx_packets_per_second, t as f64, "{}", p.role);
        assert_eq!(r.dropped_packets_per_second, (t / 10) as f64);
    }
    // One queue of a port reset, the other advanced: the port's rate is
    // the sum of both queues' increases, not of the sums.
    let mut cur = snapshot(5, 300);
    cur.queues[0].rx_packets = 50; // inline-1 q0: 300 -> 50 (reset)
    cur.queues[2].rx_packets = 1000; // inline-1 q1: 900 -> 1000
    let cur = sample(cur, t0 + Duration::from_secs(1));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    let i1 = &st.ports[1];
    assert_eq!(i1.rates.as_ref().unwrap().rx_packets_per_second, 150.0);
    assert_eq!(
        i1.queues[0].rates.as_ref().unwrap().rx_packets_per_second,
        50.0
    );
    assert_eq!(increase(5, 7), 5);
    assert_eq!(increase(7, 5), 2);
    // No time passed: no rates rather than a division by zero.
    let same = sample(snapshot(5, 300), t0);
    assert!(rate_window(Some(&same), &same).is_none());
}

#[test]
fn tool_ports_follow_the_chain_and_name_their_hop() {
    let snap = chain_snapshot(1, 10);
    let p: Vec<(&str, &str, &str)> = ports(&snap)
        .iter()
        .map(|p| (p.role, p.ifname, p.hop))
        .collect();
    assert_eq!(
        p,
        [
            ("passive-1", "p1", ""),
            ("inline-1", "i1", ""),
            ("inline-2", "i2", ""),
            ("tool-a", "t1a", "ids"),
            ("tool-b", "t1b", "ids"),
            ("tool-a", "t2a", "waf"),
            ("tool-b", "t2b", "waf"),
        ]
    );
    let st = build_stats(
        &sample(snap, Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let t1a = &st.ports[3];
    assert_eq!((t1a.role.as_str(), t1a.hop.as_str()), ("tool-a", "ids"));
    assert_eq!(t1a.totals.as_ref().unwrap().rx_packets, 70);
    assert_eq!(t1a.queues.len(), 1);
    assert!(st.ports[..3].iter().all(|p| p.hop.is_empty()));
    // Selectable by role like any port.
    let sel = Selector::from_proto(
        "selector",
        Some(&v1::StatsSelector {
            roles: vec!["tool-b".into()],
            omit_queues: false,
        }),
    )
    .unwrap();
    let st = build_stats(
        &sample(chain_snapshot(1, 10), Instant::now()),
        None,
        &sel,
        &[],
    );
    let b: Vec<&str> = st.ports.iter().map(|p| p.ifname.as_str()).collect();
    assert_eq!(b, ["t1b", "t2b"]);
    assert_eq!(st.hops.len(), 2, "hops are not filtered");
}

#[test]
fn hops_in_chain_order_with_drops_heartbeats_and_latency() {
    let st = build_stats(
        &sample(chain_snapshot(1, 10), Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let names: Vec<&str> = st.hops.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["ids", "waf"]);
    let ids = &st.hops[0];
    assert_eq!((ids.to_tool_packets, ids.to_tool_bytes), (100, 10_000));
    assert_eq!((ids.from_tool_packets, ids.from_tool_bytes), (90, 9_000));
    assert_eq!((ids.bypassed_packets, ids.bypassed_bytes), (10, 1_000));
    assert_eq!(ids.dropped_packets, 12);
    assert_eq!(
        ids.dropped_packets_by_reason,
        BTreeMap::from([
            ("tx_ring_full".to_string(), 0),
            ("hop_down".to_string(), 10),
            ("heartbeat_from_wire".to_string(), 0),
            ("heartbeat_invalid".to_string(), 2),
        ])
    );
    assert_eq!(
        (
            ids.heartbeats_sent,
            ids.heartbeats_returned,
            ids.heartbeats_late,
            ids.heartbeats_lost
        ),
        (40, 30, 10, 1)
    );
    assert_eq!(ids.round_trip_latency.unwrap().p99_ns, 95_000);
    let h = ids.round_trip_latency_histogram.as_ref().unwrap();
    assert_eq!((h.count, h.sum_ns), (21, 2_000_600_000));
    assert_eq!(h.buckets.len(), HOP_RTT_BOUNDS_NS.len());
    let b: Vec<(u64, u64)> = h
        .buckets
        .iter()
        .map(|b| (b.upper_bound_ns, b.count))
        .take(5)
        .collect();
    assert_eq!(
        b,
        [
            (10_000, 10),
            (20_000, 10),
            (50_000, 10),
            (100_000, 20),
            (200_000, 20)
        ]
    );
    // The +Inf bucket is implicit: the last finite one leaves out the
    // sample above 1 s.
    assert_eq!(h.buckets.last().unwrap().count, 20);
    assert!(ids.rates.is_none());
}

#[test]
fn hop_rates_by_name_with_resets() {
    let t0 = Instant::now();
    let prev = sample(chain_snapshot(3, 10), t0);
    let mut cur = chain_snapshot(3, 30);
    // "waf" was removed and added back (its counters restarted); a new
    // hop "dlp" appeared.
    cur.hops[1] = hop("waf", 1, 0, 1);
    cur.hops.push(hop("dlp", 2, 2, 5));
    let cur = sample(cur, t0 + Duration::from_millis(500));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    let ids = st.hops[0].rates.unwrap(); // 100 -> 300 over 0.5 s
    assert_eq!(ids.to_tool_packets_per_second, 400.0);
    assert_eq!(ids.to_tool_bytes_per_second, 40_000.0);
    assert_eq!(ids.from_tool_packets_per_second, 360.0);
    assert_eq!(ids.from_tool_bytes_per_second, 36_000.0);
    assert_eq!(ids.bypassed_packets_per_second, 40.0);
    assert_eq!(ids.dropped_packets_per_second, 40.0); // hop_down 10 -> 30
    assert_eq!(ids.heartbeats_lost_per_second, 0.0);
    let waf = st.hops[1].rates.unwrap(); // 200 -> 10: reset, 10 since
    assert_eq!(waf.to_tool_packets_per_second, 20.0);
    // hop_down 20 -> 1 (reset: 1 since); heartbeat_invalid 2 -> 2 reads
    // as unchanged, as any counter that happens to be back where it was.
    assert_eq!(waf.dropped_packets_per_second, 2.0);
    assert!(st.hops[2].rates.is_none(), "no previous sample of dlp");
    // Another run: no rates at all.
    let other = sample(chain_snapshot(4, 40), t0 + Duration::from_secs(1));
    let st = build_stats(&other, Some(&cur), &Selector::default(), &[]);
    assert!(st.hops.iter().all(|h| h.rates.is_none()));
}

#[test]
fn output_groups_nest_members_and_sum_their_drops() {
    let st = build_stats(
        &sample(outputs_snapshot(1, 10), Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let groups: Vec<(&str, Vec<&str>)> = st
        .output_groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.members.iter().map(|m| m.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(groups, [("ids", vec!["o1", "o2"]), ("zeek", vec!["o3"])]);
    let ids = &st.output_groups[0];
    assert_eq!(
        (ids.filter.as_str(), ids.snap_length_bytes),
        ("tcp port 80", 0)
    );
    assert_eq!(st.output_groups[1].snap_length_bytes, 128);
    let c = ids.counters.as_ref().unwrap();
    assert_eq!(
        (c.packets, c.bytes, c.filtered_out_packets),
        (100, 10_000, 20)
    );
    // The group's drops are its members': accepted = delivered + dropped.
    assert_eq!(c.dropped_packets, 10 + 10);
    assert_eq!(
        c.dropped_packets_by_reason,
        BTreeMap::from([
            ("tx_ring_full".to_string(), 10),
            ("member_down".to_string(), 10),
            ("tx_error".to_string(), 0),
        ])
    );
    let delivered: u64 = ids
        .members
        .iter()
        .map(|m| m.counters.as_ref().unwrap().packets)
        .sum();
    assert_eq!(delivered + c.dropped_packets, c.packets);
    let o2 = &ids.members[1];
    assert_eq!((o2.ifname.as_str(), o2.recorder.as_str()), ("o2", ""));
    let m = o2.counters.as_ref().unwrap();
    assert_eq!((m.packets, m.bytes, m.dropped_packets), (30, 3_000, 10));
    assert_eq!(m.dropped_packets_by_reason["member_down"], 10);
    assert_eq!(m.dropped_packets_by_reason.len(), 3, "member reasons only");
    let zeek = st.output_groups[1].counters.as_ref().unwrap();
    assert_eq!((zeek.packets, zeek.dropped_packets), (50, 0));
    assert!(st.output_groups.iter().all(|g| g.rates.is_none()));

    // A reason that does not apply to members still counts when the
    // dataplane counted it, and so does a slot this build cannot name.
    let mut odd = outputs_snapshot(1, 10);
    odd.outputs[2].drops[OutputDropReason::QueueFull as usize] = 4;
    odd.outputs[2].drops[7] = 1;
    let st = build_stats(
        &sample(odd, Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let o1 = st.output_groups[0].members[0].counters.as_ref().unwrap();
    assert_eq!(o1.dropped_packets, 10 + 4 + 1);
    assert_eq!(o1.dropped_packets_by_reason["queue_full"], 4);
    assert_eq!(o1.dropped_packets_by_reason["unknown_7"], 1);
    let ids = st.output_groups[0].counters.as_ref().unwrap();
    assert_eq!(ids.dropped_packets, 10 + 4 + 1 + 10);

    // Without outputs (an inline-only dataplane): nothing, no error.
    let st = build_stats(
        &sample(snapshot(1, 10), Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    assert!(st.output_groups.is_empty() && st.recorders.is_empty() && st.taps.is_empty());
}

#[test]
fn recorders_have_their_filter_stage_and_disk_counters() {
    let st = build_stats(
        &sample(outputs_snapshot(1, 10), Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    assert_eq!(st.recorders.len(), 1);
    let r = &st.recorders[0];
    assert_eq!(
        (
            r.name.as_str(),
            r.directory.as_str(),
            r.current_file.as_str()
        ),
        ("disk", "/data/pcap", "/data/pcap/disk-000001.pcap.part")
    );
    assert_eq!((r.filter.as_str(), r.snap_length_bytes), ("udp", 96));
    assert_eq!(
        (
            r.files_created,
            r.files_completed,
            r.files_migrated,
            r.files_deleted
        ),
        (30, 20, 10, 10)
    );
    assert_eq!((r.bytes_written, r.packets_written), (10_000, 40));
    assert_eq!(
        (
            r.queue_dropped_packets,
            r.queue_dropped_bytes,
            r.disk_dropped_packets
        ),
        (10, 1_000, 20)
    );
    assert_eq!(r.disk_errors, 2);
    assert!(
        r.last_disk_error.contains("No space left"),
        "{}",
        r.last_disk_error
    );
    assert_eq!(
        r.last_disk_error_at,
        Some(tapline_proto::Timestamp {
            seconds: 1_800_000_050,
            nanos: 250_000_000
        })
    );
    let f = r.filter_stage.as_ref().unwrap();
    assert_eq!(
        (f.packets, f.bytes, f.filtered_out_packets),
        (40, 4_000, 80)
    );
    assert_eq!(f.dropped_packets, 10);
    assert_eq!(
        f.dropped_packets_by_reason,
        BTreeMap::from([
            ("queue_full".to_string(), 10),
            ("disk_error".to_string(), 0)
        ])
    );
    assert!(r.rates.is_none() && r.filter_stage_rates.is_none());
    // The recorder stages are not groups.
    assert_eq!(st.output_groups.len(), 2);

    // A recorder without an error has no error time.
    let mut fine = outputs_snapshot(1, 10);
    fine.recorders[0].last_error_unix_ns = 0;
    fine.recorders[0].last_error.clear();
    // And one whose stage the reader missed still has its disk side.
    fine.outputs.pop();
    let st = build_stats(
        &sample(fine, Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let r = &st.recorders[0];
    assert!(r.last_disk_error_at.is_none() && r.last_disk_error.is_empty());
    assert!(r.filter_stage.is_none());
    assert_eq!((r.filter.as_str(), r.packets_written), ("", 40));
}

#[test]
fn taps_are_listed_by_id() {
    let st = build_stats(
        &sample(outputs_snapshot(1, 10), Instant::now()),
        None,
        &Selector::default(),
        &[],
    );
    let ids: Vec<(u64, &str, &str)> = st
        .taps
        .iter()
        .map(|t| (t.id, t.point.as_str(), t.filter.as_str()))
        .collect();
    assert_eq!(ids, [(4, "ids/a both", ""), (9, "passive-1 rx", "icmp")]);
    let t = &st.taps[1];
    assert_eq!(
        (t.matched_packets, t.sent_packets, t.lost_packets),
        (109, 90, 10)
    );
    assert_eq!(
        t.started_at,
        Some(tapline_proto::Timestamp {
            seconds: 1_800_000_090,
            nanos: 9
        })
    );
    assert!(t.rates.is_none());
}

#[test]
fn output_recorder_and_tap_rates() {
    let t0 = Instant::now();
    let prev = sample(outputs_snapshot(2, 10), t0);
    let mut cur = outputs_snapshot(2, 30);
    // Tap 4 ended and tap 12 started; tap 9 goes on.
    cur.taps.retain(|t| t.id == 9);
    cur.taps.push(TapSnapshot {
        id: 12,
        counts: TapCounts {
            matched: 5,
            ..TapCounts::default()
        },
        ..TapSnapshot::default()
    });
    // Member o3's counters went back (counted 20 since); never negative.
    cur.outputs[4].packets = 20;
    let cur = sample(cur, t0 + Duration::from_millis(500));
    let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
    assert_eq!(st.rates_window_ms, 500);

    let ids = st.output_groups[0].rates.unwrap(); // 100 -> 300 over 0.5 s
    assert_eq!(ids.packets_per_second, 400.0);
    assert_eq!(ids.bytes_per_second, 40_000.0);
    assert_eq!(ids.filtered_out_packets_per_second, 80.0);
    // Members' drops: (10 + 10) -> (30 + 30).
    assert_eq!(ids.dropped_packets_per_second, 80.0);
    let o1 = st.output_groups[0].members[0].rates.unwrap(); // 50 -> 150
    assert_eq!(o1.packets_per_second, 200.0);
    assert_eq!(o1.dropped_packets_per_second, 40.0);
    let o3 = st.output_groups[1].members[0].rates.unwrap();
    assert_eq!(o3.packets_per_second, 40.0);

    let r = &st.recorders[0];
    let rr = r.rates.unwrap(); // 10_000 -> 30_000 bytes
    assert_eq!(rr.bytes_written_per_second, 40_000.0);
    assert_eq!(rr.packets_written_per_second, 160.0);
    assert_eq!(rr.queue_dropped_packets_per_second, 40.0);
    assert_eq!(rr.disk_dropped_packets_per_second, 80.0);
    let fr = r.filter_stage_rates.unwrap(); // accepted 40 -> 120
    assert_eq!(fr.packets_per_second, 160.0);
    assert_eq!(fr.filtered_out_packets_per_second, 320.0);
    assert_eq!(fr.dropped_packets_per_second, 40.0);

    let taps: Vec<(u64, Option<f64>)> = st
        .taps
        .iter()
        .map(|t| (t.id, t.rates.map(|r| r.matched_packets_per_second)))
        .collect();
    // Tap 9: matched 109 -> 309; tap 12 is new: no rates yet.
    assert_eq!(taps, [(9, Some(400.0)), (12, None)]);
    let t9 = st.taps[0].rates.unwrap();
    assert_eq!(
        (t9.sent_packets_per_second, t9.lost_packets_per_second),
        (360.0, 40.0)
    );

    // Outputs are matched by slot and name: a renamed slot has no rates.
    let mut renamed = outputs_snapshot(2, 30);
    renamed.outputs[3].info.name = "o9".into();
    let renamed = sample(renamed, t0 + Duration::from_secs(1));
    let st = build_stats(&renamed, Some(&prev), &Selector::default(), &[]);
    assert!(st.output_groups[0].members[1].rates.is_none());
    assert!(st.output_groups[0].members[0].rates.is_some());
    assert!(st.output_groups[0].rates.is_none(), "needs every member");

    // Another run: no rates at all.
    let other = sample(outputs_snapshot(3, 40), t0 + Duration::from_secs(1));
    let st = build_stats(&other, Some(&cur), &Selector::default(), &[]);
    assert!(st
        .output_groups
        .iter()
        .all(|g| g.rates.is_none() && g.members.iter().all(|m| m.rates.is_none())));
    assert!(st
        .recorders
        .iter()
        .all(|r| r.rates.is_none() && r.filter_stage_rates.is_none()));
    assert!(st.taps.iter().all(|t| t.rates.is_none()));
}
