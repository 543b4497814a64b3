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
//!
//! Live taps ([`crate::tap`]): every port carries a [`TapPort`], refreshed
//! once per poll (one Relaxed load while no tap changes). Frames received
//! on a port with an RX tap, or routed to a port with a TX tap, take a
//! third path that receives the batch into a scratch list, offers the
//! frames to the taps (one clock read per poll) and transmits them, still
//! by descriptor. Without a tap on the route, the paths above are
//! untouched.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;
use tracing::info;

use crate::chain::heartbeat::{self, Beat, Dir, Judge, Outcome, TagKey};
use crate::chain::runtime::{ChainShared, Layout, PortId, Route, INLINE_1, INLINE_2};
use crate::stats::KernelCountersExt;
use crate::tap::TapPort;
use crate::xdp::fallback::Lease;
use crate::xdp::socket::{RxQueue, TxQueue};
use crate::xdp::{
    forward, forward_each, EachResult, Frame, FramePool, QueueGroup, Umem, Verdict, XskSocket,
};
use tapline_config::heartbeat::Timing;
use tapline_segment::{unix_ns, LatencyValues};
use tapline_segment::{
    DropExt, DropReason, HopCounters, HopLatency, QueueCounters, Slot, StatsSegment,
};

use super::PollOutcome;
use tapped::{forward_tapped, TapScratch};

mod tapped;
pub use crate::chain::messages::{ChainPort, HopEvent, TaskAck, TaskUpdate};

/// Kicks per poll while the kernel still holds TX descriptors: copy mode
/// transmits a bounded number of frames per `sendto`.
const MAX_TX_KICKS: u32 = 4;
/// Frames the fill rings never take: heartbeats always find one.
const RESERVED_FRAMES: u32 = 64;
/// Round-trip times above this are clamped into the histogram's last bucket.
const MAX_RTT_NS: u64 = 10_000_000_000;

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
pub(crate) fn mono_ns() -> u64 {
    crate::sys::monotonic_ns()
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
    /// By index in `ports`: frames received there go past a tap (an RX tap
    /// on that port or a TX tap on its egress).
    tapped: Vec<bool>,
    /// The time taps give the frames of this poll (read at the first
    /// tapped frame; 0: not yet).
    tap_ts: u64,
    /// Scratch of the tapped path: frames received, frames to transmit
    /// (capacity of a batch, allocated once).
    scratch: Vec<Frame>,
    keep: Vec<Frame>,
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
    /// This queue's lease on the inline ports (the kernel fallback takes
    /// over when it is not renewed).
    lease: Option<Lease>,
}

impl ChainTask {
    /// A task over a queue group of inline-1 and inline-2 (in that order),
    /// with an empty chain. `taps` are the two ports' [`TapPort`]s (same
    /// order).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: u32,
        group: QueueGroup,
        counters: [Slot<QueueCounters>; 2],
        taps: [TapPort; 2],
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
        let [t1, t2] = taps;
        let mut t = ChainTask::assemble(
            [
                ChainPort::new(INLINE_1, a, c1, t1),
                ChainPort::new(INLINE_2, b, c2, t2),
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

    /// A task over in-memory sockets (tests, microbenchmarks), with ports
    /// no tap reaches.
    pub fn in_memory(
        sockets: [XskSocket; 2],
        pool: FramePool,
        umem: Arc<Umem>,
        segment: Arc<StatsSegment>,
    ) -> ChainTask {
        let [a, b] = sockets;
        let ports = [
            ChainPort::new(INLINE_1, a, segment.queue_slot(0), TapPort::disabled()),
            ChainPort::new(INLINE_2, b, segment.queue_slot(1), TapPort::disabled()),
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
            tapped: Vec::new(),
            tap_ts: 0,
            scratch: Vec::with_capacity(tapline_config::MAX_BATCH as usize),
            keep: Vec::with_capacity(tapline_config::MAX_BATCH as usize),
            hop_counters: Vec::new(),
            shared,
            seen_version: 0,
            segment,
            updates: None,
            heartbeats: None,
            key,
            outcomes: Vec::new(),
            lease: None,
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
        self.retap();
    }

    /// Recomputes which ports' frames go past a tap (after the taps or
    /// the routes changed).
    fn retap(&mut self) {
        let ports = &self.ports;
        let egress = &self.egress;
        self.tapped.clear();
        self.tapped.extend((0..ports.len()).map(|i| {
            ports[i].tap.rx_active()
                || egress[i].is_some_and(|e| e != i && ports[e].tap.tx_active())
        }));
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
                        at_unix_ns: tapline_segment::unix_ns(),
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

    /// Gives the task its queue's lease (see [`crate::xdp::fallback`]).
    pub fn with_lease(mut self, lease: Option<Lease>) -> ChainTask {
        self.lease = lease;
        self
    }

    /// Moves up to `batch` frames from every port along its route.
    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        // Renewed on every poll (a vDSO clock read; the store happens at
        // most once a millisecond): a worker that stops polling loses the
        // queue to the kernel within `fallback.stall_ms`.
        if let Some(l) = self.lease.as_mut() {
            if let Some(late_ns) = l.renew(crate::sys::monotonic_ns()) {
                info!(
                    queue = self.queue,
                    expired_for_us = late_ns / 1000,
                    "the worker took its queue back from the kernel fallback"
                );
            }
        }
        if let Some(u) = self.updates.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.apply(u);
        }
        if self.shared.version() != self.seen_version {
            self.rebuild_routes();
        }
        let mut taps_changed = false;
        for p in self.ports.iter_mut() {
            p.sock.comp.reap(&mut self.pool, u32::MAX);
            taps_changed |= p.tap.refresh();
        }
        if taps_changed {
            self.retap();
        }
        self.tap_ts = 0;
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
        let tapped = self.tapped[i];
        if !self.inspect[i] && !tapped {
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
        let inspect = self.inspect[i];
        let (layout, key, port_id) = (&self.layout, &self.key, rx_port.id);
        let mut hb_invalid = 0u64;
        let mut hb_wire = 0u64;
        let mut now = 0u64;
        let (tx_q, cout, sent_flag, tx_tap) = match tx_port {
            Some(ChainPort {
                sock,
                counters,
                sent_now,
                tap,
                ..
            }) => (
                sock.tx.as_mut(),
                Some(&*counters),
                Some(sent_now),
                Some(tap),
            ),
            None => (None, None, None, None),
        };
        // Without hops (a tapped bridge) nothing is taken out of the stream.
        let verdict = |data: &[u8]| {
            if !inspect || !heartbeat::is_heartbeat(data) {
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
        };
        let r = if tapped {
            let taps = TapScratch {
                rx_tap: &mut rx_port.tap,
                tx_tap,
                frames: &mut self.scratch,
                keep: &mut self.keep,
                ts: &mut self.tap_ts,
            };
            forward_tapped(rx, tx_q, &self.umem, &mut self.pool, batch, taps, verdict)
        } else {
            // No egress (a fail-closed hop's route): inspected, dropped.
            forward_each(rx, tx_q, &self.umem, &mut self.pool, batch, verdict)
        };
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
    pub(crate) fn refresh_kernel_stats(&mut self, window: Duration) {
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

    pub(crate) fn wait_fds(&self, out: &mut Vec<RawFd>) {
        out.extend(self.ports.iter().filter_map(|p| p.sock.raw_fd()));
    }

    /// Longest the worker may sleep in poll(2): heartbeats must go out on
    /// time, so 1 ms while hops exist.
    pub(crate) fn max_wait_ms(&self) -> Option<u32> {
        let hb = (self.heartbeats.is_some() && !self.layout.hops.is_empty()).then_some(1);
        match (hb, self.lease.as_ref().map(Lease::max_wait_ms)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the poll fds changed since the worker last asked (ports were
    /// added or removed).
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }
}

#[cfg(test)]
mod tests;
