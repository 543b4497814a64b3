//! Passive capture on passive-1: one task per RX queue, with the fan-out to
//! output groups and the recorders.
//!
//! A received frame is shown, in this order, to the recorders (which copy
//! what their filter accepts into their queue), to the consumers, and to
//! every output group: a group whose filter accepts the frame lends it to
//! exactly one of its members, chosen by the symmetric flow hash
//! ([`Packet::flow_hash`]). Members' AF_XDP sockets share the capture
//! queue's UMEM, so a frame that goes to several groups is never copied: its
//! descriptor is placed on each member's TX ring, a per-frame reference
//! count remembers how many, and the frame returns to the fill ring only
//! when the last completion came back.
//!
//! Nothing here waits: a member whose TX ring is full, whose share of the
//! UMEM is in flight, or whose link is down drops its share of the frame
//! (counted by reason); capture and the other members carry on.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::filter::Filter;
use crate::packet::Packet;
use crate::record::{RecordProducer, MAX_BLOCK_AGE_NS};
use crate::stats::{KernelCountersExt, OutputCounters, OutputDropReason, QueueCounters, Slot};
use crate::tap::TapPort;
use crate::xdp::shm::unix_ns;
use crate::xdp::{Frame, FramePool, QueueGroup, Umem, XdpDesc, XskSocket};

use super::PollOutcome;

/// Kicks per poll while a member's TX ring still holds descriptors: copy
/// mode transmits a bounded number of frames per `sendto`.
const MAX_TX_KICKS: u32 = 4;
/// A member needs room for at least this many frames in flight.
const MIN_MEMBER_FRAMES: u32 = 64;
/// Empty polls between two looks at the recorders' partial blocks: one
/// clock read per this many idle polls.
const FLUSH_CHECK_IDLE_POLLS: u32 = 64;

/// Something that wants to see captured frames. Called on the worker thread
/// for every frame, so it must not block: a consumer that cannot keep up
/// drops and counts, it never stalls capture.
pub trait CaptureConsumer: Send + std::fmt::Debug {
    fn on_frame(&mut self, frame: &[u8]);
}

/// One member's AF_XDP socket on this capture queue (TX only, on the
/// capture queue's UMEM).
#[derive(Debug)]
pub struct MemberPort {
    sock: XskSocket,
    /// Kept up to date by the link monitor (carrier and admin state).
    link_up: Arc<AtomicBool>,
    counters: Slot<OutputCounters>,
    /// Frames on our TX ring or in the kernel, not yet completed.
    in_flight: u32,
    /// Most frames this member may hold (its share of the UMEM).
    cap: u32,
    /// This poll: descriptors to queue, and how many fit.
    pending: Vec<XdpDesc>,
    room: u32,
    down: bool,
    /// The kernel still holds descriptors of ours: kick again next poll.
    tx_pending: bool,
}

impl MemberPort {
    pub fn new(sock: XskSocket, link_up: Arc<AtomicBool>, counters: Slot<OutputCounters>) -> Self {
        MemberPort {
            sock,
            link_up,
            counters,
            in_flight: 0,
            cap: 0,
            pending: Vec::new(),
            room: 0,
            down: false,
            tx_pending: false,
        }
    }
}

/// An output group as one capture task sees it.
#[derive(Debug)]
pub struct GroupOutput {
    pub filter: Option<Filter>,
    /// Bytes transmitted of each frame; 0: whole frames.
    pub snaplen: u32,
    /// Indices into the task's member ports, in configuration order.
    pub members: Vec<usize>,
    pub counters: Slot<OutputCounters>,
}

/// A recorder's filter stage as one capture task sees it.
#[derive(Debug)]
pub struct RecorderOutput {
    pub filter: Option<Filter>,
    pub producer: RecordProducer,
    pub counters: Slot<OutputCounters>,
}

/// Everything a capture task feeds besides its consumers.
#[derive(Debug, Default)]
pub struct Outputs {
    pub groups: Vec<GroupOutput>,
    pub members: Vec<MemberPort>,
    pub recorders: Vec<RecorderOutput>,
}

impl Outputs {
    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.recorders.is_empty()
    }

    /// A parse of the frame is needed (a filter, or a hash to pick a
    /// member).
    fn needs_parse(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.filter.is_some() || g.members.len() > 1)
            || self.recorders.iter().any(|r| r.filter.is_some())
    }
}

fn accepts(filter: &Option<Filter>, p: &Option<Packet<'_>>) -> bool {
    match (filter, p) {
        (None, _) => true,
        (Some(f), Some(p)) => f.matches_packet(p),
        (Some(_), None) => unreachable!("a filter implies a parse"),
    }
}

/// Captures one RX queue.
#[derive(Debug)]
pub struct CaptureTask {
    socket: XskSocket,
    pool: FramePool,
    umem: Arc<Umem>,
    counters: Slot<QueueCounters>,
    consumers: Vec<Box<dyn CaptureConsumer>>,
    /// Live taps on passive-1 (RX).
    tap: TapPort,
    outputs: Outputs,
    /// Per UMEM frame: member TX rings holding it.
    refs: Vec<u8>,
    frame_shift: u32,
    needs_parse: bool,
    /// Frames received this poll (fan-out path).
    rx_buf: Vec<Frame>,
    until_flush: u32,
}

impl CaptureTask {
    /// A capture task over a bound queue group: socket 0 receives, the
    /// others are the group members' TX sockets, in the order of `members`
    /// (their link flags and counters). `groups` index into `members`.
    pub fn new(
        group: QueueGroup,
        counters: Slot<QueueCounters>,
        members: Vec<(Arc<AtomicBool>, Slot<OutputCounters>)>,
        groups: Vec<GroupOutput>,
        recorders: Vec<RecorderOutput>,
    ) -> CaptureTask {
        let QueueGroup { umem, sockets, .. } = group;
        assert_eq!(sockets.len(), members.len() + 1, "one socket per member");
        let mut sockets = sockets.into_iter();
        let socket = sockets.next().expect("a capture group has its RX socket");
        let outputs = Outputs {
            groups,
            members: sockets
                .zip(members)
                .map(|(s, (link, c))| MemberPort::new(s, link, c))
                .collect(),
            recorders,
        };
        Self::build(socket, FramePool::for_umem(&umem), umem, counters, outputs)
    }

    /// A capture task over an in-memory socket (tests, microbenchmarks).
    pub fn in_memory(socket: XskSocket, pool: FramePool, umem: Arc<Umem>) -> CaptureTask {
        let counters = crate::stats::StatsSegment::in_memory(1, 0).queue_slot(0);
        Self::build(socket, pool, umem, counters, Outputs::default())
    }

    /// A capture task over in-memory sockets with outputs (tests): the
    /// members' sockets are in `outputs`.
    pub fn in_memory_with(
        socket: XskSocket,
        pool: FramePool,
        umem: Arc<Umem>,
        counters: Slot<QueueCounters>,
        outputs: Outputs,
    ) -> CaptureTask {
        Self::build(socket, pool, umem, counters, outputs)
    }

    fn build(
        mut socket: XskSocket,
        mut pool: FramePool,
        umem: Arc<Umem>,
        counters: Slot<QueueCounters>,
        mut outputs: Outputs,
    ) -> CaptureTask {
        // The members share what the kernel's fill and RX rings do not
        // hold: both full, plus a batch in our hands.
        let ring = socket.fill.size();
        let spare = umem.frame_count().saturating_sub(2 * ring + 256);
        let n = outputs.members.len().max(1) as u32;
        for m in outputs.members.iter_mut() {
            let tx = m.sock.tx.as_mut().map_or(0, |t| t.free_slots());
            m.cap = (spare / n).min(tx).max(1);
            m.pending = Vec::with_capacity(m.cap as usize);
        }
        socket.fill.refill(&mut pool, u32::MAX);
        let needs_parse = outputs.needs_parse();
        CaptureTask {
            socket,
            refs: vec![0; umem.frame_count() as usize],
            frame_shift: umem.frame_size().trailing_zeros(),
            pool,
            umem,
            counters,
            consumers: Vec::new(),
            tap: TapPort::disabled(),
            outputs,
            needs_parse,
            rx_buf: Vec::with_capacity(crate::config::MAX_BATCH as usize),
            until_flush: FLUSH_CHECK_IDLE_POLLS,
        }
    }

    /// Frames each member may hold, for the startup check (see
    /// [`MIN_MEMBER_FRAMES`]): the smallest share.
    pub fn member_share(&self) -> Option<u32> {
        self.outputs.members.iter().map(|m| m.cap).min()
    }

    /// The smallest share a member may get and still keep up.
    pub const MIN_MEMBER_FRAMES: u32 = MIN_MEMBER_FRAMES;

    /// Attaches the live taps of passive-1 (this queue's port).
    pub fn set_tap(&mut self, tap: TapPort) {
        self.tap = tap;
    }

    /// Adds a consumer; it sees every frame captured from now on.
    pub fn add_consumer(&mut self, c: Box<dyn CaptureConsumer>) {
        self.consumers.push(c);
    }

    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        self.tap.refresh();
        if self.outputs.is_empty() {
            return self.poll_plain(batch);
        }
        self.poll_outputs(batch)
    }

    /// Capture with no outputs: frames go straight back to the fill ring.
    fn poll_plain(&mut self, batch: u32) -> PollOutcome {
        let s = &mut self.socket;
        let rx = s.rx.as_mut().expect("capture sockets have RX");
        let tapped = self.tap.rx_active();
        let (n, bytes) = if self.consumers.is_empty() && !tapped {
            rx.count_into_fill(batch, &self.umem, &mut s.fill, &mut self.pool)
        } else {
            let consumers = &mut self.consumers;
            let tap = &mut self.tap;
            let ts = if tapped { unix_ns() } else { 0 };
            rx.consume_into_fill(batch, &self.umem, &mut s.fill, &mut self.pool, |frame| {
                for c in consumers.iter_mut() {
                    c.on_frame(frame);
                }
                if tapped {
                    tap.offer_rx(frame, ts);
                }
            })
        };
        if n > 0 {
            self.counters.rx_packets.add(u64::from(n));
            self.counters.rx_bytes.add(bytes);
        }
        self.refill();
        PollOutcome {
            frames: n,
            pending: false,
        }
    }

    /// Gives the pool's free frames to the fill ring (and wakes a
    /// zero-copy driver that asked for it).
    fn refill(&mut self) {
        let s = &mut self.socket;
        if self.pool.available() > 0 {
            s.fill.refill(&mut self.pool, u32::MAX);
        }
        if s.is_zerocopy() && s.fill.needs_wakeup() {
            s.kick_rx();
        }
    }

    /// Capture with output groups and recorders.
    fn poll_outputs(&mut self, batch: u32) -> PollOutcome {
        // Completions first: frames the members are done with come back.
        self.reap();
        for m in self.outputs.members.iter_mut() {
            m.down = !m.link_up.load(Ordering::Relaxed);
            let free = m.sock.tx.as_mut().map_or(0, |t| t.free_slots());
            m.room = free.min(m.cap.saturating_sub(m.in_flight));
        }
        let rx = self.socket.rx.as_mut().expect("capture sockets have RX");
        let n = rx.recv(batch, &mut self.rx_buf);
        let mut bytes = 0u64;
        let tapped = self.tap.rx_active();
        let ts = if n > 0 && (tapped || !self.outputs.recorders.is_empty()) {
            unix_ns()
        } else {
            0
        };
        for frame in self.rx_buf.drain(..) {
            let data = self.umem.data(&frame);
            bytes += data.len() as u64;
            for c in self.consumers.iter_mut() {
                c.on_frame(data);
            }
            let parsed = (self.needs_parse || tapped).then(|| Packet::parse(data));
            if tapped {
                if let Some(p) = &parsed {
                    self.tap.offer_rx_packet(p, ts);
                }
            }
            for r in self.outputs.recorders.iter_mut() {
                if !accepts(&r.filter, &parsed) {
                    r.counters.filtered_out.add(1);
                    continue;
                }
                if r.producer.record(ts, data) {
                    r.counters.packets.add(1);
                    r.counters.bytes.add(data.len() as u64);
                } else {
                    r.counters.drops[OutputDropReason::QueueFull as usize].add(1);
                }
            }
            let mut refs = 0u8;
            let mut hash = None;
            for g in self.outputs.groups.iter() {
                if !accepts(&g.filter, &parsed) {
                    g.counters.filtered_out.add(1);
                    continue;
                }
                g.counters.packets.add(1);
                g.counters.bytes.add(data.len() as u64);
                let pick = if g.members.len() == 1 {
                    0
                } else {
                    let h = *hash.get_or_insert_with(|| {
                        parsed.as_ref().expect("parsed for hashing").flow_hash()
                    });
                    (h % g.members.len() as u32) as usize
                };
                let m = &mut self.outputs.members[g.members[pick]];
                let reason = if m.down {
                    OutputDropReason::MemberDown
                } else if m.pending.len() as u32 >= m.room {
                    OutputDropReason::TxRingFull
                } else {
                    let len = match g.snaplen {
                        0 => frame.len(),
                        s => frame.len().min(s),
                    };
                    m.pending.push(XdpDesc {
                        addr: frame.addr(),
                        len,
                        options: 0,
                    });
                    m.counters.packets.add(1);
                    m.counters.bytes.add(u64::from(len));
                    refs += 1;
                    continue;
                };
                m.counters.drops[reason as usize].add(1);
            }
            if refs == 0 {
                self.pool.free(frame);
            } else {
                // The frame now belongs to the member TX rings; it comes
                // back through `reap` when the last of them completes.
                self.refs[(frame.addr() >> self.frame_shift) as usize] = refs;
            }
        }
        if n > 0 {
            self.counters.rx_packets.add(u64::from(n));
            self.counters.rx_bytes.add(bytes);
        }
        let mut pending = false;
        for m in self.outputs.members.iter_mut() {
            if !m.pending.is_empty() {
                let queued = m.sock.tx.as_mut().map_or(0, |t| t.push_descs(&m.pending));
                debug_assert_eq!(queued, m.pending.len(), "room was reserved");
                m.in_flight += queued as u32;
                m.pending.clear();
                m.tx_pending = true;
            }
            // A member whose link is down is not kicked (the kernel would
            // refuse with ENETDOWN at every poll) and does not keep the
            // worker from idling; its queued frames go out, or come back,
            // when the link returns.
            if !m.down {
                if m.tx_pending {
                    m.tx_pending = kick(&mut m.sock);
                }
                pending |= m.tx_pending || m.in_flight > 0;
            }
        }
        if n == 0 && !self.outputs.recorders.is_empty() {
            // Idle: now and then, hand over partial blocks that have waited
            // long enough, so quiet traffic still reaches the disk. (Under
            // load a block goes when it is full, or with the first packet
            // after it got old: see `RecordProducer::record`.) Handing a
            // block over at every idle poll would send the writer slivers
            // and run the queue out of blocks.
            self.until_flush = self.until_flush.saturating_sub(1);
            if self.until_flush == 0 {
                self.until_flush = FLUSH_CHECK_IDLE_POLLS;
                let now = unix_ns();
                for r in self.outputs.recorders.iter_mut() {
                    r.producer.flush_older_than(now, MAX_BLOCK_AGE_NS);
                }
            }
        }
        self.refill();
        PollOutcome { frames: n, pending }
    }

    /// Takes the members' completions: a frame returns to the pool when
    /// its last member is done with it.
    fn reap(&mut self) {
        let (refs, pool, shift) = (&mut self.refs, &mut self.pool, self.frame_shift);
        for m in self.outputs.members.iter_mut() {
            let in_flight = &mut m.in_flight;
            m.sock.comp.reap_each(u32::MAX, |addr| {
                *in_flight -= 1;
                let r = &mut refs[(addr >> shift) as usize];
                *r -= 1;
                if *r == 0 {
                    pool.free_addr(addr);
                }
            });
        }
    }

    pub fn refresh_kernel_stats(&mut self) {
        if let Ok(k) = self.socket.statistics() {
            self.counters.kernel.store(&k);
        }
    }

    pub fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.socket.raw_fd());
    }

    /// Hands every recorder's partial block over (the task is stopping).
    pub fn flush_recorders(&mut self) {
        for r in self.outputs.recorders.iter_mut() {
            r.producer.flush();
        }
    }
}

/// Asks the kernel to transmit; returns whether descriptors remain queued.
fn kick(sock: &mut XskSocket) -> bool {
    let zc = sock.is_zerocopy();
    let Some(tx) = sock.tx.as_mut() else {
        return false;
    };
    if zc && !tx.needs_wakeup() {
        return false;
    }
    for _ in 0..MAX_TX_KICKS {
        // A down link (ENETDOWN) leaves the descriptors queued; the link
        // monitor marks the member down and its share is dropped from then
        // on.
        let _ = sock.try_kick_tx();
        if sock.tx.as_mut().map_or(0, |t| t.pending()) == 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_frames;
    use crate::stats::{Layout, StatsSegment};
    use crate::xdp::socket::FakeKernel;
    use crate::xdp::RingSizes;

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
        test_frames::v4(&[], crate::packet::IPPROTO_UDP, src, sport, dst, dport)
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

        fn outputs(&self) -> Vec<crate::xdp::shm::OutputSnapshot> {
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
        use crate::stats::{OutputInfo, OutputKind};
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
        use crate::record::{RecordSettings, Recorder};
        let dir = std::env::temp_dir().join(format!("tapline-capture-rec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let seg = StatsSegment::in_memory_with(&Layout {
            n_queues: 1,
            n_outputs: 1,
            n_output_writers: 1,
            max_recorders: 1,
            ..Layout::default()
        });
        let rec =
            Recorder::start(RecordSettings::new("q", dir.clone()), seg.recorder_slot(0)).unwrap();
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
}
