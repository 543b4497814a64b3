use super::*;
use tapline_segment::Layout;

fn segment(max_taps: usize) -> Arc<StatsSegment> {
    StatsSegment::in_memory_with(&Layout {
        max_taps,
        ..Layout::default()
    })
}

fn registry(settings: TapSettings) -> Arc<TapRegistry> {
    let n = settings.max_concurrent;
    TapRegistry::new(settings, &segment(n), 2048)
}

fn ports() -> PortNames {
    PortNames {
        passive: Some("p1".into()),
        inline: Some(("i1".into(), "i2".into())),
    }
}

fn hops() -> Vec<HopPorts> {
    vec![HopPorts {
        name: "ids".into(),
        a: "h1a".into(),
        b: "h1b".into(),
    }]
}

fn port_point(role: &str, dir: v1::TapDirection) -> v1::TapPoint {
    v1::TapPoint {
        location: Some(v1::tap_point::Location::Port(role.into())),
        direction: dir.into(),
    }
}

fn hop_point(hop: &str, side: v1::HopSide, dir: v1::TapDirection) -> v1::TapPoint {
    v1::TapPoint {
        location: Some(v1::tap_point::Location::Hop(v1::HopTapPoint {
            hop: hop.into(),
            side: side.into(),
        })),
        direction: dir.into(),
    }
}

fn request(point: v1::TapPoint) -> v1::TapRequest {
    v1::TapRequest {
        point: Some(point),
        ..Default::default()
    }
}

fn plan_for(req: &v1::TapRequest) -> Result<TapPlan, TapError> {
    TapPlan::new(req, &TapSettings::default(), &ports(), &hops())
}

fn frame(i: u8, len: usize) -> Vec<u8> {
    let mut f = vec![i; len];
    f[12] = 0x08;
    f[13] = 0x00;
    f
}

#[test]
fn points_resolve_to_interfaces_and_bad_ones_say_why() {
    let p = plan_for(&request(port_point("inline-1", v1::TapDirection::Rx))).unwrap();
    assert_eq!(
        (p.point.ifname.as_str(), p.point.rx, p.point.tx),
        ("i1", true, false)
    );
    assert_eq!(p.point.label, "inline-1 rx");
    let p = plan_for(&request(port_point(
        "inline-2",
        v1::TapDirection::Unspecified,
    )))
    .unwrap();
    assert_eq!((p.point.rx, p.point.tx), (true, true));
    assert_eq!(
        p.started().point.unwrap().direction(),
        v1::TapDirection::Both
    );
    let p = plan_for(&request(port_point(
        "passive-1",
        v1::TapDirection::Unspecified,
    )))
    .unwrap();
    assert_eq!((p.point.ifname.as_str(), p.point.tx), ("p1", false));
    let p = plan_for(&request(hop_point(
        "ids",
        v1::HopSide::A,
        v1::TapDirection::Tx,
    )))
    .unwrap();
    assert_eq!(p.point.ifname, "h1a");
    assert_eq!(p.point.hop.as_deref(), Some("ids"));
    assert_eq!(p.point.label, "ids/a tx");
    let p = plan_for(&request(hop_point(
        "ids",
        v1::HopSide::B,
        v1::TapDirection::Rx,
    )))
    .unwrap();
    assert_eq!(p.point.ifname, "h1b");

    let err = |req: v1::TapRequest| plan_for(&req).unwrap_err();
    let e = err(request(port_point("passive-1", v1::TapDirection::Tx)));
    assert_eq!(e, TapError::PassiveTx);
    assert_eq!(e.code(), code::INVALID_ARGUMENT);
    assert!(e.to_string().contains("passive-1 only receives"), "{e}");
    let e = err(request(port_point("passive-1", v1::TapDirection::Both)));
    assert_eq!(e, TapError::PassiveTx);
    let e = err(request(port_point("inline-3", v1::TapDirection::Rx)));
    assert_eq!(e.code(), code::INVALID_ARGUMENT);
    assert!(e.to_string().contains("\"inline-3\""), "{e}");
    let e = err(request(hop_point(
        "nope",
        v1::HopSide::A,
        v1::TapDirection::Rx,
    )));
    assert_eq!(e.code(), code::NOT_FOUND);
    assert_eq!(
        e.to_string(),
        "no hop \"nope\" in the applied chain (hops: ids)"
    );
    let e = err(request(hop_point(
        "ids",
        v1::HopSide::Unspecified,
        v1::TapDirection::Rx,
    )));
    assert_eq!(e, TapError::NoSide);
    let e = err(v1::TapRequest::default());
    assert_eq!(e, TapError::NoPoint);
    let mut bad_dir = port_point("inline-1", v1::TapDirection::Rx);
    bad_dir.direction = 9;
    assert_eq!(err(request(bad_dir)), TapError::BadDirection(9));
    // A role that is not configured here.
    let e = TapPlan::new(
        &request(port_point("inline-1", v1::TapDirection::Rx)),
        &TapSettings::default(),
        &PortNames {
            passive: Some("p1".into()),
            inline: None,
        },
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code(), code::NOT_FOUND);
    assert!(e.to_string().contains("[interfaces] inline-1"), "{e}");
}

#[test]
fn caps_and_defaults_apply() {
    let settings = TapSettings {
        max_snaplen: 1000,
        default_snaplen: 200,
        max_duration: Duration::from_secs(60),
        ..TapSettings::default()
    };
    let mut req = request(port_point("inline-1", v1::TapDirection::Rx));
    let p = TapPlan::new(&req, &settings, &ports(), &[]).unwrap();
    assert_eq!(p.snaplen, 200);
    assert_eq!(p.sample_one_in, 1);
    assert_eq!(p.max_duration, Duration::from_secs(60));
    assert!(p.filter.is_none());
    req.snap_length_bytes = 5000;
    req.max_duration_ms = 120_000;
    req.sample_one_in = 10;
    req.max_packets = 7;
    let p = TapPlan::new(&req, &settings, &ports(), &[]).unwrap();
    assert_eq!(p.snaplen, 1000);
    assert_eq!(p.max_duration, Duration::from_secs(60));
    let s = p.started();
    assert_eq!(
        (s.snap_length_bytes, s.sample_one_in, s.max_packets),
        (1000, 10, 7)
    );
    assert_eq!((s.max_duration_ms, s.link_type), (60_000, 1));
    assert_eq!(s.ifname, "i1");
    req.max_duration_ms = 1500;
    req.snap_length_bytes = 96;
    let p = TapPlan::new(&req, &settings, &ports(), &[]).unwrap();
    assert_eq!(
        (p.snaplen, p.max_duration),
        (96, Duration::from_millis(1500))
    );
}

#[test]
fn workers_see_taps_of_their_interface_from_their_next_batch() {
    let reg = registry(TapSettings::default());
    let mut i1 = TapPort::new(reg.clone(), "i1", 0);
    let mut i2 = TapPort::new(reg.clone(), "i2", 0);
    // The first refresh reads the registry once.
    assert!(i1.refresh());
    assert!(!i1.refresh());
    assert!(!i1.rx_active() && !i1.tx_active());
    let g = reg.generation();
    let plan = plan_for(&request(port_point("inline-1", v1::TapDirection::Tx))).unwrap();
    let tap = reg.start(&plan).unwrap();
    assert_eq!(reg.generation(), g + 1);
    assert!(i1.refresh());
    assert!(!i1.rx_active() && i1.tx_active());
    assert!(i2.refresh());
    assert!(!i2.rx_active() && !i2.tx_active());
    assert!(!i1.refresh() && !i2.refresh());

    // While the registry is being written, a worker does not wait: it
    // tries again at its next batch.
    reg.remove(&tap);
    {
        let _w = reg.write();
        assert!(!i1.refresh());
        assert!(i1.tx_active());
    }
    assert!(i1.refresh());
    assert!(!i1.tx_active());
    assert_eq!(reg.count(), 1, "the slot is held until released");
    reg.release(&tap);
    assert_eq!(reg.count(), 0);
}

#[test]
fn the_concurrency_cap_is_resource_exhausted() {
    let reg = registry(TapSettings {
        max_concurrent: 2,
        ..TapSettings::default()
    });
    let plan = plan_for(&request(port_point("inline-1", v1::TapDirection::Rx))).unwrap();
    let a = reg.start(&plan).unwrap();
    let _b = reg.start(&plan).unwrap();
    let e = reg.start(&plan).unwrap_err();
    assert_eq!(e.code(), code::RESOURCE_EXHAUSTED);
    assert!(e.to_string().contains("tap.max_concurrent"), "{e}");
    reg.remove(&a);
    reg.release(&a);
    reg.start(&plan).unwrap();
    let e = TapRegistry::disabled().start(&plan).unwrap_err();
    assert_eq!(e, TapError::Disabled);
    assert_eq!(e.code(), code::FAILED_PRECONDITION);
}

#[test]
fn sampling_limit_and_snaplen_apply_per_packet() {
    let reg = registry(TapSettings::default());
    let mut req = request(port_point("inline-1", v1::TapDirection::Rx));
    req.sample_one_in = 3;
    req.snap_length_bytes = 64;
    let tap = reg.start(&plan_for(&req).unwrap()).unwrap();
    let mut port = TapPort::new(reg.clone(), "i1", 5);
    port.refresh();
    for i in 0..9u8 {
        port.offer_rx(&frame(i, 100), 1000 + u64::from(i));
        // TX frames do not reach an RX tap.
        port.offer_tx(&frame(i, 100), 0);
    }
    let got: Vec<TapRecord> = std::iter::from_fn(|| tap.pop()).collect();
    assert_eq!(
        got.iter().map(|r| r.data[0]).collect::<Vec<_>>(),
        vec![0, 3, 6]
    );
    assert!(got.iter().all(|r| r.data.len() == 64 && r.orig_len == 100));
    assert!(got
        .iter()
        .all(|r| r.queue == 5 && r.direction == Direction::Rx));
    assert_eq!(got[1].ts_unix_ns, 1003);
    assert_eq!(tap.counters().matched.get(), 3);

    let mut req = request(port_point("inline-1", v1::TapDirection::Both));
    req.max_packets = 4;
    let limited = reg.start(&plan_for(&req).unwrap()).unwrap();
    port.refresh();
    for i in 0..10u8 {
        port.offer_tx(&frame(i, 60), 0);
    }
    let got: Vec<u8> = std::iter::from_fn(|| limited.pop())
        .map(|r| r.data[0])
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(limited.counters().matched.get(), 4);
    assert_eq!(limited.counters().lost.get(), 0);
}

#[test]
fn filters_select_packets_raw_or_parsed() {
    let reg = registry(TapSettings::default());
    let mut req = request(port_point("passive-1", v1::TapDirection::Rx));
    req.filter = "udp and dst port 5001".into();
    let tap = reg.start(&plan_for(&req).unwrap()).unwrap();
    let mut port = TapPort::new(reg.clone(), "p1", 0);
    port.refresh();
    let udp = |dport: u16| {
        tapline_packet::packet::test_frames::v4(
            &[],
            tapline_packet::packet::IPPROTO_UDP,
            [10, 0, 0, 1],
            1234,
            [10, 0, 0, 2],
            dport,
        )
    };
    port.offer_rx(&udp(5001), 1);
    port.offer_rx(&udp(5002), 2);
    port.offer_rx(&frame(7, 60), 3);
    let f = udp(5001);
    port.offer_rx_packet(&Packet::parse(&f), 4);
    let g = udp(53);
    port.offer_rx_packet(&Packet::parse(&g), 5);
    let got: Vec<u64> = std::iter::from_fn(|| tap.pop())
        .map(|r| r.ts_unix_ns)
        .collect();
    assert_eq!(got, vec![1, 4]);
    assert_eq!(tap.counters().matched.get(), 2);
    let e = TapPlan::new(
        &v1::TapRequest {
            filter: "udp and prot 5".into(),
            ..req
        },
        &TapSettings::default(),
        &ports(),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGUMENT);
    assert!(e.to_string().starts_with("filter: column 9: "), "{e}");
}

#[test]
fn a_full_queue_drops_and_counts_and_never_grows() {
    let reg = registry(TapSettings {
        queue_packets: 4,
        ..TapSettings::default()
    });
    let tap = reg
        .start(&plan_for(&request(port_point("inline-2", v1::TapDirection::Rx))).unwrap())
        .unwrap();
    let mut port = TapPort::new(reg.clone(), "i2", 0);
    port.refresh();
    for i in 0..10u8 {
        port.offer_rx(&frame(i, 80), 0);
    }
    assert_eq!(tap.counters().matched.get(), 10);
    assert_eq!(tap.counters().lost.get(), 6);
    let first: Vec<TapRecord> = std::iter::from_fn(|| tap.pop()).collect();
    assert_eq!(
        first.iter().map(|r| r.data[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // Buffers come back and are reused: room for four more.
    for r in first {
        tap.recycle(r.data);
    }
    for i in 10..20u8 {
        port.offer_rx(&frame(i, 80), 0);
    }
    assert_eq!(tap.counters().lost.get(), 12);
    assert_eq!(std::iter::from_fn(|| tap.pop()).count(), 4);
}

/// A client that keeps every message, and closes after `close_after`.
#[derive(Default)]
struct Client {
    got: Vec<v1::TapResponse>,
    close_after: Option<usize>,
    fail_writes: bool,
}

impl TapSink for Client {
    fn send(&mut self, msg: &v1::DataplaneResponse) -> io::Result<()> {
        if self.fail_writes {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match &msg.response {
            Some(v1::dataplane_response::Response::Tap(t)) => self.got.push(t.clone()),
            other => panic!("not a tap message: {other:?}"),
        }
        Ok(())
    }
    fn closed(&mut self) -> bool {
        self.close_after.is_some_and(|n| self.got.len() >= n)
    }
}

#[test]
fn the_stream_starts_batches_and_ends_at_the_packet_limit() {
    let reg = registry(TapSettings {
        queue_packets: 16,
        ..TapSettings::default()
    });
    let mut req = request(port_point("inline-1", v1::TapDirection::Rx));
    req.max_packets = 20;
    let plan = plan_for(&req).unwrap();
    let tap = reg.start(&plan).unwrap();
    let mut port = TapPort::new(reg.clone(), "i1", 0);
    port.refresh();
    // 30 offered into a queue of 16: 16 queued, 14 lost.
    for i in 0..30u8 {
        port.offer_rx(&frame(i, 70), u64::from(i));
    }
    let feeder = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            let mut port = TapPort::new(reg, "i1", 1);
            // Later packets, until the limit stops them.
            std::thread::sleep(Duration::from_millis(100));
            port.refresh();
            for i in 100..140u8 {
                port.offer_rx(&frame(i, 70), u64::from(i));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut client = Client::default();
    let out = stream(&reg, &tap, &plan, &mut client);
    feeder.join().unwrap();
    assert_eq!(out.reason, Some(v1::TapEndReason::PacketLimit));
    let first = &client.got[0];
    let started = first.started.as_ref().expect("started first");
    assert_eq!((started.ifname.as_str(), started.max_packets), ("i1", 20));
    let last = client.got.last().unwrap();
    let ended = last.ended.as_ref().expect("ended last");
    let packets: Vec<&v1::TapPacket> = client.got.iter().flat_map(|m| &m.packets).collect();
    let lost: u64 = client.got.iter().map(|m| m.lost_packets).sum();
    assert_eq!(packets.len(), 20);
    assert_eq!(ended.sent_packets, 20);
    assert_eq!(ended.lost_packets, lost);
    assert_eq!(
        ended.sent_packets + ended.lost_packets,
        ended.matched_packets
    );
    assert!(ended.lost_packets >= 14, "{ended:?}");
    // In order: the first 16 of the burst, then the later ones.
    let firsts: Vec<u8> = packets.iter().map(|p| p.data[0]).collect();
    assert_eq!(&firsts[..16], &(0..16).collect::<Vec<u8>>()[..]);
    assert!(firsts[16..].iter().all(|&b| b >= 100));
    assert!(packets
        .iter()
        .all(|p| p.original_length_bytes == 70 && p.data.len() == 70));
    // The tap is gone and its slot free.
    assert_eq!(reg.count(), 0);
    assert!(port.refresh());
    assert!(!port.rx_active());
}

#[test]
fn the_stream_ends_on_time_on_point_removal_and_when_the_client_leaves() {
    let reg = registry(TapSettings::default());
    let mut req = request(port_point("inline-1", v1::TapDirection::Rx));
    req.max_duration_ms = 120;
    let plan = plan_for(&req).unwrap();
    let tap = reg.start(&plan).unwrap();
    let t0 = Instant::now();
    let mut client = Client::default();
    let out = stream(&reg, &tap, &plan, &mut client);
    assert!(t0.elapsed() >= Duration::from_millis(120));
    assert_eq!(out.reason, Some(v1::TapEndReason::TimeLimit));
    assert_eq!(client.got.len(), 2);

    let plan = plan_for(&request(hop_point(
        "ids",
        v1::HopSide::B,
        v1::TapDirection::Both,
    )))
    .unwrap();
    let tap = reg.start(&plan).unwrap();
    // A chain change that keeps the hop does not end it.
    reg.end_removed_points(|hop, ifname| hop == "ids" && ifname == "h1b");
    reg.end_removed_points(|_, _| false);
    let mut client = Client::default();
    let out = stream(&reg, &tap, &plan, &mut client);
    assert_eq!(out.reason, Some(v1::TapEndReason::PointRemoved));
    let ended = client.got.last().unwrap().ended.clone().unwrap();
    assert!(ended.message.contains("\"ids\""), "{ended:?}");

    // The client closes: no `ended`, the tap is freed.
    let plan = plan_for(&request(port_point("inline-1", v1::TapDirection::Rx))).unwrap();
    let tap = reg.start(&plan).unwrap();
    let mut client = Client {
        close_after: Some(1),
        ..Client::default()
    };
    let out = stream(&reg, &tap, &plan, &mut client);
    assert_eq!(out.reason, None);
    assert_eq!(client.got.len(), 1);
    assert_eq!(reg.count(), 0);

    // Writes fail (the client is gone): the same.
    let tap = reg.start(&plan).unwrap();
    let mut client = Client {
        fail_writes: true,
        ..Client::default()
    };
    assert_eq!(stream(&reg, &tap, &plan, &mut client).reason, None);
    assert_eq!(reg.count(), 0);

    // A stopping dataplane.
    let tap = reg.start(&plan).unwrap();
    reg.shutdown();
    let mut client = Client::default();
    let out = stream(&reg, &tap, &plan, &mut client);
    assert_eq!(out.reason, Some(v1::TapEndReason::DataplaneStopped));
}
