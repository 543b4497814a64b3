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

use crate::record::{RecordProducer, MAX_BLOCK_AGE_NS};
use crate::stats::KernelCountersExt;
use crate::tap::TapPort;
use crate::xdp::{Frame, FramePool, QueueGroup, Umem, XdpDesc, XskSocket};
use tapline_packet::filter::Filter;
use tapline_packet::packet::Packet;
use tapline_segment::unix_ns;
use tapline_segment::{OutputCounters, OutputDropReason, QueueCounters, Slot};

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
        let counters = tapline_segment::StatsSegment::in_memory(1, 0).queue_slot(0);
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
            rx_buf: Vec::with_capacity(tapline_config::MAX_BATCH as usize),
            until_flush: FLUSH_CHECK_IDLE_POLLS,
        }
    }

    /// Frames each member may hold, for the startup check (see
    /// [`MIN_MEMBER_FRAMES`]): the smallest share.
    pub(crate) fn member_share(&self) -> Option<u32> {
        self.outputs.members.iter().map(|m| m.cap).min()
    }

    /// The smallest share a member may get and still keep up.
    pub(crate) const MIN_MEMBER_FRAMES: u32 = MIN_MEMBER_FRAMES;

    /// Attaches the live taps of passive-1 (this queue's port).
    pub(crate) fn set_tap(&mut self, tap: TapPort) {
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

    pub(crate) fn refresh_kernel_stats(&mut self) {
        if let Ok(k) = self.socket.statistics() {
            self.counters.kernel.store(&k);
        }
    }

    pub(crate) fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.socket.raw_fd());
    }

    /// Hands every recorder's partial block over (the task is stopping).
    pub(crate) fn flush_recorders(&mut self) {
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
mod tests;
