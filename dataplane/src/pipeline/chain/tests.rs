use super::*;
use crate::chain::heartbeat::Health;
use crate::chain::runtime::{HopShared, LayoutHop};
use crate::xdp::socket::FakeKernel;
use crate::xdp::XdpDesc;
use tapline_config::chain::FailureAction;
use tapline_config::xdp::RingSizes;
use tapline_proto::v1;
use tapline_segment::Layout as SegLayout;

const SIZES: RingSizes = RingSizes {
    rx: 256,
    tx: 256,
    fill: 256,
    completion: 256,
};

/// The kernel side of the in-memory sockets: moves what a socket
/// transmits into another socket's RX ring, copying the bytes into a
/// frame taken from that socket's fill ring, as copy mode does.
fn wire(umem: &Umem, from: &mut FakeKernel, to: &mut FakeKernel) -> usize {
    let mut txd = Vec::new();
    from.tx.kernel_pop(usize::MAX, &mut txd);
    let mut fill = Vec::new();
    to.fill.kernel_pop(txd.len(), &mut fill);
    let mut rx = Vec::new();
    for (d, &dst) in txd.iter().zip(&fill) {
        let bytes = umem.data(&Frame::new(d.addr, d.len)).to_vec();
        let mut f = Frame::new(dst, 0);
        umem.data_mut(&mut f)[..bytes.len()].copy_from_slice(&bytes);
        rx.push(XdpDesc {
            addr: dst,
            len: d.len,
            options: 0,
        });
    }
    to.rx.kernel_push(&rx);
    let done: Vec<u64> = txd.iter().map(|d| d.addr).collect();
    from.comp.kernel_push(&done);
    rx.len()
}

fn data_frame(umem: &Umem, k: &mut FakeKernel, payload: u8) {
    let mut fill = Vec::new();
    k.fill.kernel_pop(1, &mut fill);
    let mut f = Frame::new(fill[0], 0);
    let buf = umem.data_mut(&mut f);
    buf[..60].fill(payload);
    buf[12] = 0x08;
    buf[13] = 0x00;
    k.rx.kernel_push(&[XdpDesc {
        addr: fill[0],
        len: 60,
        options: 0,
    }]);
}

#[test]
fn taps_see_what_the_bridge_receives_and_exactly_what_it_transmits() {
    use crate::tap::{PortNames, TapPlan, TapRegistry};
    use tapline_config::tap::TapSettings;
    let seg = StatsSegment::in_memory_with(&SegLayout {
        n_queues: 2,
        max_taps: 2,
        ..SegLayout::default()
    });
    let reg = TapRegistry::new(TapSettings::default(), &seg, 2048);
    let umem = Umem::new(2048, 1024).unwrap();
    let (s1, mut k1) = XskSocket::in_memory(SIZES);
    let (s2, mut k2) = XskSocket::in_memory(SIZES);
    let mut t = ChainTask::in_memory(
        [s1, s2],
        FramePool::new(2048, 1024),
        umem.clone(),
        seg.clone(),
    );
    t.ports[0].tap = TapPort::new(reg.clone(), "in1", 0);
    t.ports[1].tap = TapPort::new(reg.clone(), "in2", 0);
    // No tap: the bridge path.
    data_frame(&umem, &mut k1, 1);
    assert_eq!(t.poll(64).frames, 1);
    assert!(t.tapped.iter().all(|x| !x));
    let mut out = Vec::new();
    k2.tx.kernel_pop(usize::MAX, &mut out);
    k2.comp
        .kernel_push(&out.iter().map(|d| d.addr).collect::<Vec<_>>());

    let ports = PortNames {
        passive: None,
        inline: Some(("in1".into(), "in2".into())),
    };
    let plan = |role: &str, dir: v1::TapDirection| {
        let req = v1::TapRequest {
            point: Some(v1::TapPoint {
                location: Some(v1::tap_point::Location::Port(role.into())),
                direction: dir.into(),
            }),
            ..Default::default()
        };
        TapPlan::new(&req, &TapSettings::default(), &ports, &[]).unwrap()
    };
    let rx_tap = reg.start(&plan("inline-1", v1::TapDirection::Rx)).unwrap();
    let tx_tap = reg.start(&plan("inline-2", v1::TapDirection::Tx)).unwrap();
    // 300 frames into a TX ring of 256 that the kernel never drains:
    // the RX tap sees all 300, the TX tap the 256 that got a slot.
    for i in 0..300u32 {
        data_frame(&umem, &mut k1, i as u8);
        t.poll(64);
    }
    assert_eq!(t.tapped, vec![true, false]);
    let c = &t.ports()[1].counters;
    assert_eq!(c.tx_packets.get(), 1 + 256);
    assert_eq!(c.drops[DropReason::TxRingFull as usize].get(), 44);
    let rx: Vec<_> = std::iter::from_fn(|| rx_tap.pop()).collect();
    let tx: Vec<_> = std::iter::from_fn(|| tx_tap.pop()).collect();
    assert_eq!(rx.len(), 300);
    assert_eq!(tx.len(), 256);
    let mut sent = Vec::new();
    k2.tx.kernel_pop(usize::MAX, &mut sent);
    assert_eq!(sent.len(), 256);
    for (i, (r, d)) in tx.iter().zip(&sent).enumerate() {
        assert_eq!(r.data, umem.data(&Frame::new(d.addr, d.len)), "frame {i}");
        assert_eq!(r.data[0], i as u8);
        assert_eq!(r.direction, crate::tap::Direction::Tx);
    }
    assert!(rx.iter().enumerate().all(|(i, r)| r.data[0] == i as u8
        && r.data.len() == 60
        && r.ts_unix_ns > 0
        && r.direction == crate::tap::Direction::Rx));
    // The taps end: back to the bridge.
    reg.remove(&rx_tap);
    reg.remove(&tx_tap);
    t.poll(64);
    assert!(t.tapped.iter().all(|x| !x));
}

#[test]
fn a_hop_goes_up_on_heartbeats_and_traffic_then_crosses_the_tool() {
    let seg = StatsSegment::in_memory_with(&SegLayout {
        n_queues: 4,
        n_workers: 0,
        max_hops: 1,
        n_hop_writers: 1,
        ..SegLayout::default()
    });
    let umem = Umem::new(2048, 1024).unwrap();
    let (s1, mut k1) = XskSocket::in_memory(SIZES);
    let (s2, mut k2) = XskSocket::in_memory(SIZES);
    let (sa, mut ka) = XskSocket::in_memory(SIZES);
    let (sb, mut kb) = XskSocket::in_memory(SIZES);
    let mut t = ChainTask::in_memory(
        [s1, s2],
        FramePool::new(2048, 1024),
        umem.clone(),
        seg.clone(),
    );
    let (etx, erx) = crossbeam::channel::unbounded();
    t.heartbeats = Some(Heartbeats::new(
        Timing {
            interval_ns: 1_000_000,
            timeout_ns: 50_000_000,
            misses: 3,
            hold_ns: 0,
        },
        t.key.clone(),
        etx,
    ));
    let hop = Arc::new(HopShared::new(0, 7, "ids".into(), FailureAction::Drop));
    let (ack, acks) = crossbeam::channel::unbounded();
    t.apply(TaskUpdate {
        add: vec![
            ChainPort::new(2, sa, seg.queue_slot(2), TapPort::disabled()),
            ChainPort::new(3, sb, seg.queue_slot(3), TapPort::disabled()),
        ],
        layout: Arc::new(Layout {
            generation: 1,
            hops: vec![LayoutHop {
                shared: hop.clone(),
                ports: Some([2, 3]),
                removing: false,
            }],
        }),
        remove: Vec::new(),
        ack,
    });
    acks.recv().unwrap();
    // Unknown + fail closed: inline traffic is dropped.
    data_frame(&umem, &mut k1, 1);
    t.poll(64);
    assert_eq!(
        seg.hop_slot(0, 0).drops[DropReason::HopDown as usize].get(),
        1
    );
    // The tool bridges a <-> b; heartbeats come back: UP.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while hop.health() != Health::Up {
        assert!(std::time::Instant::now() < deadline, "hop never came up");
        t.poll(64);
        wire(&umem, &mut ka, &mut kb);
        wire(&umem, &mut kb, &mut ka);
    }
    let ev = erx.try_recv().expect("an UP event");
    assert_eq!((ev.health, ev.reason), (Health::Up, "HeartbeatsReturned"));
    // Now inline-1 -> a, (tool) b -> inline-2, byte for byte.
    t.poll(64);
    data_frame(&umem, &mut k1, 9);
    t.poll(64);
    let mut to_tool = Vec::new();
    ka.tx.kernel_pop(usize::MAX, &mut to_tool);
    let data: Vec<&XdpDesc> = to_tool
        .iter()
        .filter(|d| umem.data(&Frame::new(d.addr, d.len))[12] == 0x08)
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(umem.data(&Frame::new(data[0].addr, 60))[0], 9);
    let c = seg.hop_slot(0, 0);
    assert_eq!(c.to_tool_packets.get(), 1);
    assert!(c.heartbeats_returned.get() >= 2);
    // A heartbeat-shaped frame from inline-1 is dropped and counted.
    let mut fill = Vec::new();
    k1.fill.kernel_pop(1, &mut fill);
    let mut f = Frame::new(fill[0], 0);
    heartbeat::write_frame(
        umem.data_mut(&mut f),
        &Beat {
            dir: Dir::AtoB,
            slot: 0,
            nonce: 7,
            seq: 1,
            sent_ns: 1,
        },
        &TagKey::from_words(9, 9),
    );
    k1.rx.kernel_push(&[XdpDesc {
        addr: fill[0],
        len: 60,
        options: 0,
    }]);
    t.poll(64);
    assert_eq!(
        t.ports()[0].counters.drops[DropReason::HeartbeatFromWire as usize].get(),
        1
    );
    let _ = &mut k2;
}
