//! The inline path: inline-1 <-> [tool 1] <-> ... <-> [tool N] <-> inline-2,
//! one task per queue. With no hop it is a plain L2 bridge.
//!
//! Every port of a queue (inline-1, inline-2 and both sides of every tool)
//! shares one UMEM, so a frame crosses the whole chain by descriptor: RX
//! ring of one port to TX ring of the next, never a copy in user space.
//!
//! Each poll, between two batches, the task
//! 1. takes a chain update from the control thread if one is queued (new
//!    ports, a new [`Layout`], ports to retire) and acknowledges it;
//! 2. recomputes its routes if a hop's health or bypass changed
//!    ([`ChainShared::version`]);
//! 3. (queue 0 only) sends due heartbeats and judges the hops;
//! 4. forwards one batch from every port along its route.
//!
//! With an empty chain, frames are forwarded without being looked at. With
//! hops, the task reads the ethertype of every frame (two bytes) to take
//! heartbeats out of the stream: valid ones coming back from a tool are
//! recorded, heartbeat-shaped frames from inline-1 or inline-2 are dropped
//! and counted (`heartbeat_from_wire`), tagged wrongly ones from a tool too
//! (`heartbeat_invalid`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;

use crate::chain::heartbeat::{self, Beat, Dir, Health, Judge, Outcome, TagKey, Timing};
use crate::chain::runtime::{ChainShared, Layout, PortId, Route, INLINE_1, INLINE_2};
use crate::stats::{
    DropExt, DropReason, HopCounters, HopLatency, KernelCountersExt, QueueCounters, Slot,
    StatsSegment,
};
use crate::xdp::shm::LatencyValues;
use crate::xdp::{forward, forward_each, FramePool, QueueGroup, Umem, Verdict, XskSocket};

use super::PollOutcome;

/// Kicks per poll while the kernel still holds TX descriptors: copy mode
/// transmits a bounded number of frames per `sendto`.
const MAX_TX_KICKS: u32 = 4;
/// Frames the fill rings never take: heartbeats always find one.
const RESERVED_FRAMES: u32 = 64;
/// Round-trip times above this are clamped into the histogram's last bucket.
const MAX_RTT_NS: u64 = 10_000_000_000;

/// A port of one queue: an AF_XDP socket on one interface.
#[derive(Debug)]
pub struct ChainPort {
    pub id: PortId,
    pub sock: XskSocket,
    pub counters: Slot<QueueCounters>,
    tx_pending: bool,
    /// Frames placed on its TX ring during this poll.
    sent_now: bool,
}

impl ChainPort {
    pub fn new(id: PortId, sock: XskSocket, counters: Slot<QueueCounters>) -> ChainPort {
        ChainPort {
            id,
            sock,
            counters,
            tx_pending: false,
            sent_now: false,
        }
    }
}

/// A change of the chain, for one task.
#[derive(Debug)]
pub struct TaskUpdate {
    /// Sockets bound on this task's UMEM for new tool ports.
    pub add: Vec<ChainPort>,
    pub layout: Arc<Layout>,
    /// Ports to retire (after `layout` is in force): the task reclaims their
    /// frames and hands the sockets back in the ack.
    pub remove: Vec<PortId>,
    pub ack: Sender<TaskAck>,
}

/// A task's answer to a [`TaskUpdate`].
#[derive(Debug)]
pub struct TaskAck {
    pub queue: u32,
    pub removed: Vec<XskSocket>,
    /// Frames reclaimed from the retired sockets.
    pub reclaimed: u32,
}

/// A change of a hop's health, from the judge to the control thread.
#[derive(Debug, Clone)]
pub struct HopEvent {
    pub slot: usize,
    pub nonce: u32,
    pub health: Health,
    pub at_unix_ns: u64,
    pub reason: &'static str,
    pub message: String,
}

/// The heartbeat side of queue 0's task.
#[derive(Debug)]
pub struct Heartbeats {
    pub timing: Timing,
    pub key: TagKey,
    pub events: Sender<HopEvent>,
    /// One per hop of the layout (same order), rebuilt on layout changes.
    judges: Vec<JudgeHop>,
    next_judge_ns: u64,
}

#[derive(Debug)]
struct JudgeHop {
    slot: usize,
    nonce: u32,
    judge: Judge,
    next_send_ns: u64,
    rtt: Histogram<u64>,
    latency: Slot<HopLatency>,
}

impl Heartbeats {
    pub fn new(timing: Timing, key: TagKey, events: Sender<HopEvent>) -> Heartbeats {
        Heartbeats {
            timing,
            key,
            events,
            judges: Vec::new(),
            next_judge_ns: 0,
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (the clock of heartbeat timestamps).
#[inline]
pub fn mono_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// The inline path of one queue.
#[derive(Debug)]
pub struct ChainTask {
    queue: u32,
    /// `ports[0]` is inline-1, `ports[1]` inline-2, then tool ports.
    ports: Vec<ChainPort>,
    pool: FramePool,
    umem: Arc<Umem>,
    zerocopy: bool,
    layout: Arc<Layout>,
    /// By index in `ports`: the route of frames received there.
    routes: Vec<Route>,
    /// By index in `ports`: whether frames received there are inspected.
    inspect: Vec<bool>,
    /// By index in `ports`: the index in `ports` of the route's egress.
    egress: Vec<Option<usize>>,
    /// By hop index of the layout: this queue's counters of the hop.
    hop_counters: Vec<Slot<HopCounters>>,
    shared: Arc<ChainShared>,
    seen_version: u64,
    segment: Arc<StatsSegment>,
    updates: Option<Receiver<TaskUpdate>>,
    heartbeats: Option<Heartbeats>,
    /// Key to authenticate returning heartbeats (all tasks).
    key: TagKey,
    /// Scratch: outcomes of one judging pass.
    outcomes: Vec<Outcome>,
}

impl ChainTask {
    /// A task over a queue group of inline-1 and inline-2 (in that order),
    /// with an empty chain.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: u32,
        group: QueueGroup,
        counters: [Slot<QueueCounters>; 2],
        segment: Arc<StatsSegment>,
        shared: Arc<ChainShared>,
        key: TagKey,
        updates: Option<Receiver<TaskUpdate>>,
        heartbeats: Option<Heartbeats>,
    ) -> ChainTask {
        let QueueGroup {
            umem,
            sockets,
            mode,
        } = group;
        let [a, b]: [XskSocket; 2] = sockets.try_into().expect("an inline group has two sockets");
        let [c1, c2] = counters;
        let mut t = ChainTask::assemble(
            [
                ChainPort::new(INLINE_1, a, c1),
                ChainPort::new(INLINE_2, b, c2),
            ],
            FramePool::for_umem(&umem),
            umem,
            segment,
            shared,
            key,
        );
        t.queue = queue;
        t.zerocopy = mode.bind == crate::xdp::BindMode::ZeroCopy;
        t.updates = updates;
        t.heartbeats = heartbeats;
        t.refill();
        t
    }

    /// A task over in-memory sockets (tests, microbenchmarks).
    pub fn in_memory(
        sockets: [XskSocket; 2],
        pool: FramePool,
        umem: Arc<Umem>,
        segment: Arc<StatsSegment>,
    ) -> ChainTask {
        let [a, b] = sockets;
        let ports = [
            ChainPort::new(INLINE_1, a, segment.queue_slot(0)),
            ChainPort::new(INLINE_2, b, segment.queue_slot(1)),
        ];
        let mut t = ChainTask::assemble(
            ports,
            pool,
            umem,
            segment,
            Arc::new(ChainShared::default()),
            TagKey::from_words(0, 0),
        );
        t.refill();
        t
    }

    /// Queue 0, copy mode, an empty chain, no updates, no heartbeats.
    fn assemble(
        inline: [ChainPort; 2],
        pool: FramePool,
        umem: Arc<Umem>,
        segment: Arc<StatsSegment>,
        shared: Arc<ChainShared>,
        key: TagKey,
    ) -> ChainTask {
        let mut t = ChainTask {
            queue: 0,
            ports: inline.into(),
            pool,
            umem,
            zerocopy: false,
            layout: Arc::new(Layout::default()),
            routes: Vec::new(),
            inspect: Vec::new(),
            egress: Vec::new(),
            hop_counters: Vec::new(),
            shared,
            seen_version: 0,
            segment,
            updates: None,
            heartbeats: None,
            key,
            outcomes: Vec::new(),
        };
        t.rebuild_routes();
        t
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn ports(&self) -> &[ChainPort] {
        &self.ports
    }

    pub fn ports_mut(&mut self) -> &mut [ChainPort] {
        &mut self.ports
    }

    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Installs an update and acknowledges it (the worker takes updates
    /// from the channel in `poll`; tests may call this directly).
    pub fn apply(&mut self, u: TaskUpdate) {
        let ack = u.ack.clone();
        let a = self.apply_update(u);
        let _ = ack.send(a);
    }

    fn index_of(&self, id: PortId) -> Option<usize> {
        self.ports.iter().position(|p| p.id == id)
    }

    fn apply_update(&mut self, u: TaskUpdate) -> TaskAck {
        self.ports.extend(u.add);
        self.layout = u.layout;
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for id in u.remove {
            if id == INLINE_1 || id == INLINE_2 {
                continue;
            }
            if let Some(i) = self.index_of(id) {
                let mut p = self.ports.remove(i);
                reclaimed += p.sock.reclaim(&mut self.pool);
                removed.push(p.sock);
            }
        }
        self.hop_counters = self
            .layout
            .hops
            .iter()
            .map(|h| self.segment.hop_slot(h.shared.slot, self.queue as usize))
            .collect();
        if let Some(hb) = self.heartbeats.as_mut() {
            // Hops that stay keep their judge (and so their health history);
            // new ones start unknown.
            let mut old = std::mem::take(&mut hb.judges);
            let now = mono_ns();
            for h in &self.layout.hops {
                let (slot, nonce) = (h.shared.slot, h.shared.nonce);
                let j = match old.iter().position(|j| j.slot == slot && j.nonce == nonce) {
                    Some(i) => old.swap_remove(i),
                    None => JudgeHop {
                        slot,
                        nonce,
                        judge: Judge::new(hb.timing),
                        next_send_ns: now,
                        rtt: Histogram::new_with_bounds(1, MAX_RTT_NS, 2)
                            .expect("valid histogram bounds"),
                        latency: self.segment.hop_latency_slot(slot),
                    },
                };
                hb.judges.push(j);
            }
        }
        self.rebuild_routes();
        self.refill();
        TaskAck {
            queue: self.queue,
            removed,
            reclaimed,
        }
    }

    fn rebuild_routes(&mut self) {
        self.seen_version = self.shared.version();
        let n = self.ports.len();
        self.routes = vec![Route::default(); n];
        self.egress = vec![None; n];
        let has_hops = !self.layout.hops.is_empty();
        self.inspect = vec![has_hops; n];
        for (id, r) in self.layout.routes() {
            if let Some(i) = self.index_of(id) {
                self.routes[i] = r;
                self.egress[i] = r.to.and_then(|to| self.index_of(to));
            }
        }
    }

    /// Per-port cap of frames lent to the kernel's fill rings: half of the
    /// UMEM shared out among the ports, the other half for frames in flight
    /// (RX and TX rings, inside the kernel), so every port of the UMEM gets
    /// its share and adding ports never starves the pool.
    fn fill_cap(&self) -> u32 {
        let share = self.pool.capacity() / (2 * self.ports.len() as u32);
        share.min(self.ports[0].sock.fill.size())
    }

    fn refill(&mut self) {
        let cap = self.fill_cap();
        for p in self.ports.iter_mut() {
            let have = p.sock.fill.outstanding();
            let spare = (self.pool.available() as u32).saturating_sub(RESERVED_FRAMES);
            if have < cap && spare > 0 {
                p.sock.fill.refill(&mut self.pool, (cap - have).min(spare));
            }
            if self.zerocopy && p.sock.fill.needs_wakeup() {
                p.sock.kick_rx();
            }
        }
    }

    fn kick(&mut self) {
        let zc = self.zerocopy;
        for p in self.ports.iter_mut() {
            let sent_now = std::mem::take(&mut p.sent_now);
            if !sent_now && !p.tx_pending {
                continue;
            }
            let Some(tx) = p.sock.tx.as_mut() else {
                continue;
            };
            if zc && !tx.needs_wakeup() {
                p.tx_pending = false;
                continue;
            }
            let mut pending = true;
            for _ in 0..MAX_TX_KICKS {
                p.sock.kick_tx();
                if p.sock.tx.as_mut().map_or(0, |t| t.pending()) == 0 {
                    pending = false;
                    break;
                }
            }
            p.tx_pending = pending;
        }
    }

    /// Sends due heartbeats and judges every hop (queue 0's task only).
    fn heartbeat(&mut self) {
        let Some(hb) = self.heartbeats.as_mut() else {
            return;
        };
        if hb.judges.is_empty() {
            return;
        }
        let now = mono_ns();
        if now < hb.next_judge_ns {
            return;
        }
        // Judging every 1 ms at most bounds the cost of idle chains.
        hb.next_judge_ns = now + 1_000_000;
        for (hi, j) in hb.judges.iter_mut().enumerate() {
            let lh = &self.layout.hops[hi];
            let counters = &self.hop_counters[hi];
            let Some([pa, pb]) = lh.ports else { continue };
            if lh.removing {
                continue;
            }
            if now >= j.next_send_ns {
                j.next_send_ns = now + hb.timing.interval_ns;
                for dir in Dir::BOTH {
                    let (seq, evicted) = j.judge.send(dir, now);
                    if evicted.is_some() {
                        counters.heartbeats_lost.add(1);
                    }
                    lh.shared.arm(dir, seq);
                    let Some(mut f) = self.pool.alloc() else {
                        // No free frame: this heartbeat will be a miss, as
                        // it would be if the tool were congested.
                        continue;
                    };
                    let beat = Beat {
                        dir,
                        slot: lh.shared.slot as u16,
                        nonce: lh.shared.nonce,
                        seq,
                        sent_ns: now,
                    };
                    let len = heartbeat::write_frame(self.umem.data_mut(&mut f), &beat, &hb.key);
                    f.set_len(len as u32);
                    let out = if dir == Dir::AtoB { pa } else { pb };
                    let Some(p) = self.ports.iter_mut().find(|p| p.id == out) else {
                        self.pool.free(f);
                        continue;
                    };
                    let tx = p.sock.tx.as_mut().expect("tool ports have TX");
                    let sent = match tx.push(f) {
                        Ok(()) => true,
                        Err(f) => {
                            self.pool.free(f);
                            false
                        }
                    };
                    if sent {
                        counters.heartbeats_sent.add(1);
                        p.counters.tx_packets.add(1);
                        p.counters.tx_bytes.add(len as u64);
                        p.sent_now = true;
                    }
                }
            }
            for dir in Dir::BOTH {
                self.outcomes.clear();
                let shared = &lh.shared;
                let t = j.judge.judge(
                    dir,
                    now,
                    |seq| shared.returned(dir, seq),
                    &mut self.outcomes,
                );
                for o in &self.outcomes {
                    match *o {
                        Outcome::Returned(rtt) => {
                            counters.heartbeats_returned.add(1);
                            j.rtt.saturating_record(rtt.max(1));
                            j.latency.record_cumulative(rtt);
                        }
                        Outcome::Late => counters.heartbeats_late.add(1),
                        Outcome::Lost => counters.heartbeats_lost.add(1),
                    }
                }
                if let Some(t) = t {
                    shared.set_health(t.to);
                    self.shared.bump();
                    let ev = HopEvent {
                        slot: shared.slot,
                        nonce: shared.nonce,
                        health: t.to,
                        at_unix_ns: crate::xdp::shm::unix_ns(),
                        reason: t.reason,
                        message: t.message,
                    };
                    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                        hb.events.try_send(ev)
                    {
                        // The control thread is gone or far behind; the
                        // state itself is in the atomics.
                    }
                }
            }
        }
    }

    /// Moves up to `batch` frames from every port along its route.
    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        if let Some(u) = self.updates.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.apply(u);
        }
        if self.shared.version() != self.seen_version {
            self.rebuild_routes();
        }
        for p in self.ports.iter_mut() {
            p.sock.comp.reap(&mut self.pool, u32::MAX);
        }
        self.heartbeat();
        let mut frames = 0;
        for i in 0..self.ports.len() {
            frames += self.forward_port(i, batch);
        }
        self.kick();
        self.refill();
        PollOutcome {
            frames,
            pending: self.ports.iter().any(|p| p.tx_pending),
        }
    }

    fn forward_port(&mut self, i: usize, batch: u32) -> u32 {
        let route = self.routes[i];
        let egress = self.egress[i];
        let (rx_port, tx_port) = match egress {
            Some(e) if e != i => {
                let (lo, hi) = self.ports.split_at_mut(i.max(e));
                if i < e {
                    (&mut lo[i], Some(&mut hi[0]))
                } else {
                    (&mut hi[0], Some(&mut lo[e]))
                }
            }
            _ => (&mut self.ports[i], None),
        };
        let Some(rx) = rx_port.sock.rx.as_mut() else {
            return 0;
        };
        let cin = &rx_port.counters;
        if !self.inspect[i] {
            // The bridge: no hop, no look at the frames.
            let Some(tx_port) = tx_port else { return 0 };
            let Some(tx) = tx_port.sock.tx.as_mut() else {
                return 0;
            };
            let r = forward(rx, tx, &mut self.pool, batch);
            if r.received > 0 {
                let cout = &tx_port.counters;
                cin.rx_packets.add(u64::from(r.received));
                cin.rx_bytes.add(r.rx_bytes);
                cout.tx_packets.add(u64::from(r.forwarded));
                cout.tx_bytes.add(r.tx_bytes);
                cout.drop_frames(DropReason::TxRingFull, u64::from(r.tx_full));
                tx_port.sent_now |= r.forwarded > 0;
            }
            return r.received;
        }
        let from_tool = route.from_hop.is_some();
        let (layout, key, port_id) = (&self.layout, &self.key, rx_port.id);
        let mut hb_invalid = 0u64;
        let mut hb_wire = 0u64;
        let mut now = 0u64;
        let (tx_q, cout, sent_flag) = match tx_port {
            Some(ChainPort {
                sock,
                counters,
                sent_now,
                ..
            }) => (sock.tx.as_mut(), Some(&*counters), Some(sent_now)),
            None => (None, None, None),
        };
        let r = forward_each(rx, tx_q, &self.umem, &mut self.pool, batch, |data| {
            if !heartbeat::is_heartbeat(data) {
                return Verdict::Forward;
            }
            if !from_tool {
                hb_wire += 1;
                return Verdict::Consume;
            }
            match heartbeat::parse(data, key) {
                Ok(b) => {
                    let ok = layout
                        .hop_by_id(b.slot as usize, b.nonce)
                        .and_then(|h| {
                            let [pa, pb] = layout.hops[h].ports?;
                            // A->B comes back on side B, B->A on side A.
                            let expect = if b.dir == Dir::AtoB { pb } else { pa };
                            (expect == port_id).then_some(h)
                        })
                        .is_some_and(|h| {
                            if now == 0 {
                                now = mono_ns();
                            }
                            layout.hops[h].shared.record_return(
                                b.dir,
                                b.seq,
                                now.saturating_sub(b.sent_ns),
                            )
                        });
                    if !ok {
                        hb_invalid += 1;
                    }
                }
                Err(_) => hb_invalid += 1,
            }
            Verdict::Consume
        });
        if r.received == 0 {
            return 0;
        }
        cin.rx_packets.add(u64::from(r.received));
        cin.rx_bytes.add(r.rx_bytes);
        cin.drop_frames(DropReason::HeartbeatFromWire, hb_wire);
        cin.drop_frames(DropReason::HeartbeatInvalid, hb_invalid);
        let data = u64::from(r.received - r.consumed);
        let data_bytes = r.rx_bytes - r.consumed_bytes;
        if let Some(flag) = sent_flag {
            *flag |= r.forwarded > 0;
        }
        if let Some(cout) = cout {
            cout.tx_packets.add(u64::from(r.forwarded));
            cout.tx_bytes.add(r.tx_bytes);
            cout.drop_frames(DropReason::TxRingFull, u64::from(r.tx_full));
        }
        if let Some(h) = route.from_hop {
            let c = &self.hop_counters[h];
            c.from_tool_packets.add(data);
            c.from_tool_bytes.add(data_bytes);
            c.drop_frames(DropReason::HeartbeatInvalid, hb_invalid);
        }
        if let Some(h) = route.into_hop {
            let c = &self.hop_counters[h];
            c.to_tool_packets.add(u64::from(r.forwarded));
            c.to_tool_bytes.add(r.tx_bytes);
            c.drop_frames(DropReason::TxRingFull, u64::from(r.tx_full));
        }
        if let Some(h) = route.drop_hop {
            let n = u64::from(r.no_egress);
            cin.drop_frames(DropReason::HopDown, n);
            self.hop_counters[h].drop_frames(DropReason::HopDown, n);
        }
        let mut bypassed = route.bypassed;
        while bypassed != 0 {
            let h = bypassed.trailing_zeros() as usize;
            bypassed &= bypassed - 1;
            let c = &self.hop_counters[h];
            c.bypassed_packets.add(data);
            c.bypassed_bytes.add(data_bytes);
        }
        r.received
    }

    /// Refreshes kernel counters and publishes heartbeat round-trip times.
    pub fn refresh_kernel_stats(&mut self, window: Duration) {
        for p in &self.ports {
            if let Ok(k) = p.sock.statistics() {
                p.counters.kernel.store(&k);
            }
        }
        if let Some(hb) = self.heartbeats.as_mut() {
            for j in hb.judges.iter_mut() {
                j.latency.summary.publish(&LatencyValues {
                    count: j.rtt.len(),
                    p50_ns: j.rtt.value_at_quantile(0.50),
                    p90_ns: j.rtt.value_at_quantile(0.90),
                    p99_ns: j.rtt.value_at_quantile(0.99),
                    p999_ns: j.rtt.value_at_quantile(0.999),
                    max_ns: j.rtt.max(),
                    window_ns: window.as_nanos() as u64,
                });
                j.rtt.reset();
            }
        }
    }

    pub fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.ports.iter().filter_map(|p| p.sock.raw_fd()));
    }

    /// Longest the worker may sleep in poll(2): heartbeats must go out on
    /// time, so 1 ms while hops exist.
    pub fn max_wait_ms(&self) -> Option<u32> {
        (self.heartbeats.is_some() && !self.layout.hops.is_empty()).then_some(1)
    }

    /// Whether the poll fds changed since the worker last asked (ports were
    /// added or removed).
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::runtime::{HopShared, LayoutHop};
    use crate::chain::spec::FailureAction;
    use crate::xdp::shm::Layout as SegLayout;
    use crate::xdp::socket::FakeKernel;
    use crate::xdp::{Frame, RingSizes, XdpDesc};

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
    fn a_hop_goes_up_on_heartbeats_and_traffic_then_crosses_the_tool() {
        let seg = StatsSegment::in_memory_with(&SegLayout {
            n_queues: 4,
            n_workers: 0,
            max_hops: 1,
            n_hop_writers: 1,
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
                ChainPort::new(2, sa, seg.queue_slot(2)),
                ChainPort::new(3, sb, seg.queue_slot(3)),
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
}
