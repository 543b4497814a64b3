use super::*;
use crate::xdp::socket::FakeKernel;
use tapline_config::xdp::RingSizes;
use tapline_packet::packet::test_frames;
use tapline_segment::{Layout, StatsSegment};

const SIZES: RingSizes = RingSizes {
    rx: 64,
    tx: 64,
    fill: 64,
    completion: 64,
};

struct Rig {
    task: CaptureTask,
    rx: FakeKernel,
    members: Vec<FakeKernel>,
    links: Vec<Arc<AtomicBool>>,
    seg: Arc<StatsSegment>,
    umem: Arc<Umem>,
}

/// Groups: (filter, snaplen, member count). Output slots: groups
/// first, then members, in order.
fn rig(groups: &[(&str, u32, usize)]) -> Rig {
    let n_members: usize = groups.iter().map(|g| g.2).sum();
    let seg = StatsSegment::in_memory_with(&Layout {
        n_queues: 1,
        n_outputs: groups.len() + n_members,
        n_output_writers: 1,
        ..Layout::default()
    });
    let umem = Umem::new(2048, 512).unwrap();
    let (sock, rx) = XskSocket::in_memory(SIZES);
    let mut outputs = Outputs::default();
    let mut kernels = Vec::new();
    let mut links = Vec::new();
    let mut slot = groups.len();
    for (gi, &(filter, snaplen, n)) in groups.iter().enumerate() {
        let mut members = Vec::new();
        for _ in 0..n {
            let (s, k) = XskSocket::in_memory(SIZES);
            let up = Arc::new(AtomicBool::new(true));
            members.push(outputs.members.len());
            outputs
                .members
                .push(MemberPort::new(s, up.clone(), seg.output_slot(slot, 0)));
            kernels.push(k);
            links.push(up);
            slot += 1;
        }
        outputs.groups.push(GroupOutput {
            filter: (!filter.is_empty()).then(|| Filter::compile(filter).unwrap()),
            snaplen,
            members,
            counters: seg.output_slot(gi, 0),
        });
    }
    let task = CaptureTask::in_memory_with(
        sock,
        FramePool::for_umem(&umem),
        umem.clone(),
        seg.queue_slot(0),
        outputs,
    );
    Rig {
        task,
        rx,
        members: kernels,
        links,
        seg,
        umem,
    }
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    test_frames::v4(
        &[],
        tapline_packet::packet::IPPROTO_UDP,
        src,
        sport,
        dst,
        dport,
    )
}

impl Rig {
    /// The kernel receives `frames` into fill-ring buffers.
    fn receive(&mut self, frames: &[Vec<u8>]) {
        let mut addrs = Vec::new();
        self.rx.fill.kernel_pop(frames.len(), &mut addrs);
        assert_eq!(addrs.len(), frames.len(), "fill ring has buffers");
        let mut descs = Vec::new();
        for (a, bytes) in addrs.iter().zip(frames) {
            let mut f = Frame::new(*a, 0);
            self.umem.data_mut(&mut f)[..bytes.len()].copy_from_slice(bytes);
            descs.push(XdpDesc {
                addr: *a,
                len: bytes.len() as u32,
                options: 0,
            });
        }
        assert_eq!(self.rx.rx.kernel_push(&descs), descs.len());
    }

    /// What member `i` was asked to transmit; completes it when `done`.
    fn transmitted(&mut self, i: usize, done: bool) -> Vec<Vec<u8>> {
        let mut descs = Vec::new();
        self.members[i].tx.kernel_pop(usize::MAX, &mut descs);
        let out = descs
            .iter()
            .map(|d| {
                let f = Frame::new(d.addr, d.len);
                self.umem.data(&f).to_vec()
            })
            .collect();
        if done {
            let addrs: Vec<u64> = descs.iter().map(|d| d.addr).collect();
            self.members[i].comp.kernel_push(&addrs);
        }
        out
    }

    fn outputs(&self) -> Vec<tapline_segment::OutputSnapshot> {
        self.seg.snapshot().outputs
    }
}

#[test]
fn every_frame_reaches_one_member_and_both_directions_the_same_one() {
    let mut r = rig(&[("", 0, 3)]);
    // Describe the slots so the snapshot reports them.
    describe(&r.seg, &[("all", 3)]);
    let mut frames = Vec::new();
    for i in 0..30u8 {
        frames.push(udp([10, 0, 0, i], [10, 0, 1, 1], 1000 + u16::from(i), 53));
        frames.push(udp([10, 0, 1, 1], [10, 0, 0, i], 53, 1000 + u16::from(i)));
    }
    r.receive(&frames);
    assert_eq!(r.task.poll(64).frames, 60);
    let mut seen = Vec::new();
    for m in 0..3 {
        for f in r.transmitted(m, true) {
            seen.push((f, m));
        }
    }
    assert_eq!(seen.len(), 60, "each frame exactly once");
    for pair in frames.chunks(2) {
        let m0 = seen.iter().find(|(f, _)| *f == pair[0]).unwrap().1;
        let m1 = seen.iter().find(|(f, _)| *f == pair[1]).unwrap().1;
        assert_eq!(m0, m1, "both directions on one member");
    }
    // Completions return every frame: the fill ring can be refilled
    // to the brim again.
    r.task.poll(64);
    assert_eq!(r.task.refs.iter().map(|&x| u32::from(x)).sum::<u32>(), 0);
    let o = r.outputs();
    assert_eq!(o[0].packets, 60);
    assert_eq!(o[1..].iter().map(|m| m.packets).sum::<u64>(), 60);
}

fn describe(seg: &StatsSegment, groups: &[(&str, usize)]) {
    use tapline_segment::{OutputInfo, OutputKind};
    let mut slot = groups.len();
    for (gi, (name, n)) in groups.iter().enumerate() {
        seg.describe_output(
            gi,
            &OutputInfo {
                kind: OutputKind::Group,
                parent: gi as u32,
                name: name.to_string(),
                ifname: String::new(),
                filter: String::new(),
                snaplen: 0,
            },
        );
        for j in 0..*n {
            seg.describe_output(
                slot,
                &OutputInfo {
                    kind: OutputKind::Member,
                    parent: gi as u32,
                    name: format!("{name}{j}"),
                    ifname: format!("m{j}"),
                    filter: String::new(),
                    snaplen: 0,
                },
            );
            slot += 1;
        }
    }
}

#[test]
fn a_frame_shared_by_two_groups_returns_only_after_both_complete() {
    let mut r = rig(&[("", 0, 1), ("udp port 53", 100, 1)]);
    describe(&r.seg, &[("a", 1), ("b", 1)]);
    let dns = udp([10, 0, 0, 1], [10, 0, 0, 2], 5555, 53);
    let other = udp([10, 0, 0, 1], [10, 0, 0, 2], 5555, 80);
    r.receive(&[dns.clone(), other.clone()]);
    let before = r.task.pool.available();
    r.task.poll(64);
    // Group a got both, group b only the DNS frame, cut to 100 bytes
    // (the frame is 60: whole).
    let a = r.transmitted(0, true);
    assert_eq!(a, vec![dns.clone(), other]);
    r.task.poll(64);
    // The DNS frame is still lent to member b.
    let dns_addr = {
        let mut d = Vec::new();
        r.members[1].tx.kernel_pop(usize::MAX, &mut d);
        assert_eq!(d.len(), 1);
        d[0]
    };
    assert_eq!(r.task.refs[(dns_addr.addr >> 11) as usize], 1);
    r.members[1].comp.kernel_push(&[dns_addr.addr]);
    r.task.poll(64);
    assert_eq!(r.task.refs[(dns_addr.addr >> 11) as usize], 0);
    assert!(r.task.pool.available() + 2 >= before);
    let o = r.outputs();
    assert_eq!((o[1].packets, o[1].filtered_out), (1, 1));
}

#[test]
fn snaplen_cuts_what_a_member_transmits() {
    let mut r = rig(&[("", 64, 1)]);
    let mut big = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    big.resize(300, 0xab);
    r.receive(std::slice::from_ref(&big));
    r.task.poll(64);
    let out = r.transmitted(0, true);
    assert_eq!(out, vec![big[..64].to_vec()]);
}

#[test]
fn a_down_or_full_member_drops_its_share_and_nobody_else_waits() {
    let mut r = rig(&[("", 0, 1), ("", 0, 1)]);
    describe(&r.seg, &[("a", 1), ("b", 1)]);
    r.links[1].store(false, Ordering::Relaxed);
    let frames: Vec<Vec<u8>> = (0..10u8)
        .map(|i| udp([10, 0, 0, i], [10, 0, 0, 99], 1, 2))
        .collect();
    r.receive(&frames);
    r.task.poll(64);
    assert_eq!(r.transmitted(0, true).len(), 10);
    assert!(r.transmitted(1, false).is_empty());
    r.task.poll(64);
    let o = r.outputs();
    // Slots: a, b, a0, b0.
    assert_eq!(o[2].packets, 10);
    assert_eq!(o[3].drops[OutputDropReason::MemberDown as usize], 10);
    // Every frame came back (member a completed, b never took any).
    assert!(r.task.refs.iter().all(|&x| x == 0));

    // Member b up again but never completing: it fills its TX ring
    // (64 slots) and then drops, while member a keeps receiving.
    r.links[1].store(true, Ordering::Relaxed);
    let mut to_a = 0;
    for round in 0..4u8 {
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| udp([10, 1, round, i], [10, 0, 0, 99], 1, 2))
            .collect();
        r.receive(&frames);
        r.task.poll(64);
        to_a += r.transmitted(0, true).len();
        // b's ring is drained by nobody: its kernel never consumes.
    }
    assert_eq!(to_a, 160, "member a got every frame");
    let o = r.outputs();
    assert_eq!(o[3].packets, 64, "b took what its ring holds");
    assert_eq!(
        o[3].drops[OutputDropReason::TxRingFull as usize],
        160 - 64,
        "then dropped, counted"
    );
}

#[test]
fn quiet_traffic_reaches_the_recorder_once_its_block_is_old_not_before() {
    use crate::record::Recorder;
    use tapline_config::record::RecordSettings;
    let dir = std::env::temp_dir().join(format!("tapline-capture-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seg = StatsSegment::in_memory_with(&Layout {
        n_queues: 1,
        n_outputs: 1,
        n_output_writers: 1,
        max_recorders: 1,
        ..Layout::default()
    });
    let rec = Recorder::start(RecordSettings::new("q", dir.clone()), seg.recorder_slot(0)).unwrap();
    let umem = Umem::new(2048, 512).unwrap();
    let (sock, rx) = XskSocket::in_memory(SIZES);
    let outputs = Outputs {
        recorders: vec![RecorderOutput {
            filter: None,
            producer: rec.producer(),
            counters: seg.output_slot(0, 0),
        }],
        ..Outputs::default()
    };
    let task = CaptureTask::in_memory_with(
        sock,
        FramePool::for_umem(&umem),
        umem.clone(),
        seg.queue_slot(0),
        outputs,
    );
    let mut r = Rig {
        task,
        rx,
        members: Vec::new(),
        links: Vec::new(),
        seg: seg.clone(),
        umem,
    };
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|i| udp([10, 0, 0, i], [10, 0, 0, 9], 1, 2))
        .collect();
    r.receive(&frames);
    r.task.poll(64);
    let written = || seg.snapshot().recorders[0].packets_written;
    // Idle polls while the block is young hand nothing over: a busy
    // link must fill whole blocks, not send the writer slivers.
    for _ in 0..10 * FLUSH_CHECK_IDLE_POLLS {
        r.task.poll(64);
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(written(), 0);
    std::thread::sleep(std::time::Duration::from_nanos(MAX_BLOCK_AGE_NS));
    for _ in 0..FLUSH_CHECK_IDLE_POLLS {
        r.task.poll(64);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while written() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(written(), 3, "the old block went to the writer");
    drop(r);
    rec.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shares_leave_the_fill_and_rx_rings_their_frames() {
    let r = rig(&[("", 0, 4)]);
    // 512 frames - 2 x 64 (fill, RX) - 256 = 128, over 4 members.
    assert_eq!(r.task.member_share(), Some(32));
}
