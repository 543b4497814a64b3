//! The chain's control thread: owns the desired and applied chain, applies
//! changes to the workers, follows hop health, and serves the command
//! socket through which the sidecar reads and changes the chain.
//!
//! # Applying a chain
//!
//! Hops are matched by name and interfaces: a hop that stays keeps its
//! sockets, health and counters. Then, in order:
//! 1. hops being removed are marked `removing` in a layout sent to every
//!    task: no new traffic goes into their tools, what comes back out still
//!    flows; the thread waits `chain.drain_ms` for the tools to empty;
//! 2. their XDP programs are detached, so nothing more arrives on them;
//! 3. new hops' interfaces are opened and one socket per queue is bound on
//!    that queue's UMEM (shared with inline-1's socket);
//! 4. the final layout, the new sockets and the list of retired ports go to
//!    every task in one message, applied between two batches; each task
//!    reclaims the retired sockets' frames and hands the sockets back;
//! 5. the applied spec is recorded (the desired one was persisted before).
//!
//! A hop whose interfaces cannot be bound is applied anyway, as DOWN with
//! reason "PortUnavailable": its failure action applies (a fail-closed hop
//! must not silently disappear), and binding is retried every second.
//!
//! # The command socket
//!
//! [`crate::command::ControlThread`] serves `state_dir/control.sock`
//! whether or not an inline pair is configured (without one, chain requests
//! fail with FAILED_PRECONDITION): connections are served concurrently,
//! each under a deadline, and their requests come to [`ChainControl::handle`]
//! one at a time on the control thread.
//!
//! # Bounds
//!
//! Every request is checked against [`tapline_proto::limits`] before
//! anything else (INVALID_ARGUMENT naming the field), and everything kept
//! (the last rejected update, a hop's reason) is bounded, so the chain's
//! answers always fit in a command frame.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod requests;

use crossbeam::channel::{Receiver, Sender};
use tapline_proto::{limits, v1};
use tracing::{error, info, warn};

use super::heartbeat::Health;
use super::messages::{ChainPort, HopEvent, TaskAck, TaskUpdate};
use super::runtime::{ChainShared, HopShared, Layout, LayoutHop, PortId, Traffic};
use super::spec::{self, Persisted};
use crate::stats::Role;
use crate::tap::{HopPorts, TapPort, TapRegistry};
use crate::xdp::fallback::FallbackMaps;
use crate::xdp::{BindMode, Interface, PortMode, Umem, XdpError, XskParams, XskSocket};
use tapline_config::chain::{ChainSpec, HopSpec, Issue};
use tapline_config::xdp::{Geometry, XdpMode};
use tapline_segment::StatsSegment;
use tapline_segment::{unix_ns, HopInfo, QueueInfo};

/// How long a task may take to take an update (it does so between two
/// batches, so normally well under a millisecond).
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often unbound hops are retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Validation issues kept with a rejected update (a spec within the
/// bounds has at most three per hop and one for the hop count).
const MAX_STORED_ISSUES: usize = limits::MAX_HOPS * 3 + 2;

use crate::logfields::json;
use crate::status::{self as code, error};

/// Why a chain change could not be applied (the control thread logs it and
/// records it as the last rejected update; the hops it could not bind stay
/// DOWN and are retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    #[error("the worker of queue {queue} is gone")]
    WorkerGone { queue: u32 },
    #[error("{missing} of {workers} workers did not take the chain update within {timeout:?}")]
    AckTimeout {
        missing: usize,
        workers: usize,
        timeout: Duration,
    },
    #[error("no free hop slot (more hops than the segment holds)")]
    NoFreeSlot,
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("registering {ifname} queue {queue} in its XSKMAP: {source}")]
    MapUpdate {
        ifname: String,
        queue: u32,
        source: std::io::Error,
    },
}

/// One inline queue: its UMEM, a handle on the socket that registered it,
/// and the channel to its task.
#[derive(Debug)]
pub(crate) struct QueueHandle {
    pub queue: u32,
    pub umem: Arc<Umem>,
    /// A duplicate of inline-1's socket fd on this queue: new sockets share
    /// its UMEM (`XDP_SHARED_UMEM`).
    pub owner: OwnedFd,
    pub mode: PortMode,
    pub worker: u32,
    pub updates: Sender<TaskUpdate>,
}

/// What the control thread needs from the configuration.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub state_dir: PathBuf,
    pub xdp_mode: XdpMode,
    pub promiscuous: bool,
    pub geometry: Geometry,
    pub drain: Duration,
    /// Uids besides our own allowed on the command socket.
    pub allowed_uids: Vec<u32>,
}

/// Stats segment slots of tool ports: after the fixed ones, `2 * queues`
/// per hop slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSlots {
    pub base: usize,
    pub queues: usize,
}

impl ToolSlots {
    pub fn index(&self, hop_slot: usize, side_b: bool, queue: usize) -> usize {
        self.base + (hop_slot * 2 + usize::from(side_b)) * self.queues + queue
    }

    /// Slots needed for `max_hops` hops.
    pub fn count(max_hops: usize, queues: usize) -> usize {
        max_hops * 2 * queues
    }
}

#[derive(Debug)]
struct HopRecord {
    spec: HopSpec,
    shared: Arc<HopShared>,
    ports: Option<[PortId; 2]>,
    /// The tool's interfaces with our XDP program attached.
    ifaces: Option<[Interface; 2]>,
    /// Why the ports are not bound.
    port_error: Option<String>,
    last_transition_unix_ns: u64,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Applied {
    generation: u64,
    spec: ChainSpec,
    at_unix_ns: u64,
}

/// The chain's owner. See the module documentation.
#[derive(Debug)]
pub(crate) struct ChainControl {
    settings: ControlSettings,
    env: spec::Host,
    queues: Vec<QueueHandle>,
    segment: Arc<StatsSegment>,
    tool_slots: ToolSlots,
    shared: Arc<ChainShared>,
    events: Receiver<HopEvent>,
    taps: Arc<TapRegistry>,
    desired: Persisted,
    applied: Option<Applied>,
    last_rejected: Option<v1::RejectedUpdate>,
    hops: Vec<HopRecord>,
    layout: Arc<Layout>,
    free_slots: Vec<usize>,
    next_port: PortId,
    next_nonce: u32,
    last_retry: Instant,
    last_iface_check: Instant,
    /// The inline ports' kernel fallback: its action follows the chain.
    fallback: Option<Arc<FallbackMaps>>,
}

impl ChainControl {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ControlSettings,
        env: spec::Host,
        queues: Vec<QueueHandle>,
        segment: Arc<StatsSegment>,
        tool_slots: ToolSlots,
        shared: Arc<ChainShared>,
        events: Receiver<HopEvent>,
        taps: Arc<TapRegistry>,
        max_hops: usize,
    ) -> ChainControl {
        ChainControl {
            settings,
            env,
            queues,
            segment,
            tool_slots,
            shared,
            events,
            taps,
            desired: Persisted::new(0, 0, ChainSpec::default()),
            applied: None,
            last_rejected: None,
            hops: Vec::new(),
            layout: Arc::new(Layout::default()),
            free_slots: (0..max_hops).rev().collect(),
            next_port: 2,
            next_nonce: (unix_ns() as u32) | 1,
            last_retry: Instant::now(),
            last_iface_check: Instant::now(),
            fallback: None,
        }
    }

    /// Makes the kernel fallback's action follow the chain.
    pub(crate) fn set_fallback(&mut self, maps: Arc<FallbackMaps>) {
        self.fallback = Some(maps);
    }

    /// Sets the kernel fallback's action for the applied chain: drop while
    /// a fail-closed hop is in it and not bypassed, else forward.
    fn sync_fallback(&self) {
        let Some(maps) = &self.fallback else { return };
        let action = crate::survive::action_for(
            self.hops
                .iter()
                .map(|h| (h.shared.on_failure(), h.shared.manual_bypass())),
        );
        if maps.action().ok() != Some(action) {
            match maps.set_action(action) {
                Ok(()) => info!(action = %action, "kernel fallback action set for the chain"),
                Err(e) => error!(error = %e, "cannot set the kernel fallback action"),
            }
        }
    }

    /// Applies the initial chain, chosen and validated by the engine's
    /// preflight (the persisted one, else the configuration's, which is
    /// then persisted). A hop whose interfaces cannot be bound comes up
    /// DOWN and is retried (see module docs).
    pub fn start(&mut self, source: &str, persisted: Persisted) {
        info!(
            source,
            generation = persisted.generation,
            hops = persisted.spec.hops.len(),
            "applying the initial chain"
        );
        if source == "configuration" {
            if let Err(e) = self.persist(&persisted) {
                warn!(error = %e, "cannot persist the chain; a restarted dataplane will start from the configuration");
            }
        }
        self.desired = persisted.clone();
        if let Err(e) = self.apply(&persisted.spec, persisted.generation) {
            error!(error = %e, "applying the initial chain failed");
        }
    }

    /// Writes the desired chain again (the state directory was re-created
    /// after it was deleted, with `chain.json` in it).
    pub(crate) fn persist_again(&self) {
        match self.persist(&self.desired) {
            Ok(()) => info!(
                generation = self.desired.generation,
                "persisted chain re-written"
            ),
            Err(e) => error!(error = %e, "cannot re-write the persisted chain"),
        }
    }

    fn persist(&self, p: &Persisted) -> std::io::Result<()> {
        spec::save(&self.settings.state_dir, p)
    }

    fn alloc_port(&mut self) -> PortId {
        let id = self.next_port;
        self.next_port += 1;
        id
    }

    /// Makes `layout` the one in force: sends it to every task with that
    /// queue's new ports (`add[i]` for queue `i`, or none) and the ports to
    /// retire, and waits until every task has taken it.
    fn install(
        &mut self,
        layout: Layout,
        mut add: Vec<Vec<ChainPort>>,
        remove: &[PortId],
    ) -> Result<Vec<TaskAck>, ChainError> {
        let layout = Arc::new(layout);
        add.resize_with(self.queues.len(), Vec::new);
        let (tx, rx) = crossbeam::channel::unbounded();
        for (q, add) in self.queues.iter().zip(add) {
            let update = TaskUpdate {
                add,
                layout: layout.clone(),
                remove: remove.to_vec(),
                ack: tx.clone(),
            };
            q.updates
                .send(update)
                .map_err(|_| ChainError::WorkerGone { queue: q.queue })?;
        }
        drop(tx);
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acks = Vec::new();
        while acks.len() < self.queues.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => acks.push(a),
                Err(_) => {
                    return Err(ChainError::AckTimeout {
                        missing: self.queues.len() - acks.len(),
                        workers: self.queues.len(),
                        timeout: ACK_TIMEOUT,
                    })
                }
            }
        }
        self.layout = layout;
        Ok(acks)
    }

    /// The layout of `self.hops` at `generation`.
    fn hops_layout(&self, generation: u64) -> Layout {
        Layout {
            generation,
            hops: self
                .hops
                .iter()
                .map(|h| LayoutHop {
                    shared: h.shared.clone(),
                    ports: h.ports,
                    removing: false,
                })
                .collect(),
        }
    }

    /// Opens a hop's interfaces and binds one socket per queue on each side.
    fn bind_hop(
        &mut self,
        h: &HopSpec,
    ) -> Result<([Interface; 2], Vec<[XskSocket; 2]>), ChainError> {
        let open = |n: &str| Interface::open(n, self.settings.xdp_mode, self.settings.promiscuous);
        let ia = open(&h.a)?;
        let ib = open(&h.b)?;
        let mut socks = Vec::new();
        for q in &self.queues {
            let mut pair = Vec::new();
            for iface in [&ia, &ib] {
                let params = XskParams {
                    ifindex: iface.ifindex,
                    queue: q.queue,
                    rx: true,
                    tx: true,
                    sizes: self.settings.geometry.rings,
                    mode: BindMode::Copy,
                };
                let s = XskSocket::bind(&q.umem, &params, Some(q.owner.as_fd()), &iface.name)?;
                let fd = s.fd().expect("kernel socket");
                iface
                    .attachment
                    .map
                    .set(q.queue, fd)
                    .map_err(|source| ChainError::MapUpdate {
                        ifname: iface.name.clone(),
                        queue: q.queue,
                        source,
                    })?;
                pair.push(s);
            }
            let [a, b]: [XskSocket; 2] = pair.try_into().expect("two sides");
            socks.push([a, b]);
        }
        Ok(([ia, ib], socks))
    }

    fn describe_hop_ports(&self, slot: usize, h: &HopSpec) {
        for (qi, q) in self.queues.iter().enumerate() {
            for (side_b, role, ifname) in [(false, Role::ToolA, &h.a), (true, Role::ToolB, &h.b)] {
                let i = self.tool_slots.index(slot, side_b, qi);
                self.segment.clear_queue(i);
                self.segment.describe_queue(
                    i,
                    &QueueInfo {
                        role: role.as_str().to_string(),
                        ifname: ifname.clone(),
                        queue: q.queue,
                        mode: q.mode.to_string(),
                        worker: q.worker,
                        hop: h.name.clone(),
                    },
                );
            }
        }
    }

    fn clear_hop_slots(&self, slot: usize) {
        self.segment.describe_hop(slot, None);
        self.segment.clear_hop(slot);
        for qi in 0..self.queues.len() {
            for side_b in [false, true] {
                self.segment
                    .clear_queue(self.tool_slots.index(slot, side_b, qi));
            }
        }
    }

    /// Makes `spec` the applied chain. See the module documentation.
    pub fn apply(&mut self, new: &ChainSpec, generation: u64) -> Result<(), ChainError> {
        let t0 = Instant::now();
        // Match the hops that stay.
        let mut old: Vec<Option<HopRecord>> = std::mem::take(&mut self.hops)
            .into_iter()
            .map(Some)
            .collect();
        let mut next: Vec<Option<HopRecord>> = Vec::new();
        for h in &new.hops {
            let found = old.iter().position(|o| {
                o.as_ref()
                    .is_some_and(|o| o.spec.name == h.name && o.spec.a == h.a && o.spec.b == h.b)
            });
            next.push(found.and_then(|i| old[i].take()));
        }
        let removed: Vec<HopRecord> = old.into_iter().flatten().collect();

        // 1. Drain the tools being removed.
        if !removed.is_empty() {
            // The current layout, with the removed hops marked.
            let mut layout = (*self.layout).clone();
            for h in layout.hops.iter_mut() {
                h.removing |= removed.iter().any(|r| Arc::ptr_eq(&r.shared, &h.shared));
            }
            self.install(layout, Vec::new(), &[])?;
            std::thread::sleep(self.settings.drain);
        }
        // 2. Detach the removed tools' XDP programs.
        let mut retire: Vec<PortId> = Vec::new();
        let mut freed_slots = Vec::new();
        for mut r in removed {
            info!(hop = %r.spec.name, a = %r.spec.a, b = %r.spec.b, "removing hop");
            if let Some(p) = r.ports {
                retire.extend(p);
            }
            drop(r.ifaces.take());
            freed_slots.push(r.shared.slot);
        }
        // 3. New hops: slots, interfaces, sockets.
        let mut add: Vec<Vec<ChainPort>> = self.queues.iter().map(|_| Vec::new()).collect();
        let mut records = Vec::new();
        for (i, h) in new.hops.iter().enumerate() {
            let action = h.on_failure.unwrap_or(new.default_on_failure);
            let rec = match next[i].take() {
                Some(mut r) => {
                    r.shared.set_on_failure(action);
                    r.spec = h.clone();
                    r
                }
                None => {
                    let slot = self.free_slots.pop().ok_or(ChainError::NoFreeSlot)?;
                    let nonce = self.next_nonce;
                    self.next_nonce = self.next_nonce.wrapping_add(1);
                    let shared = Arc::new(HopShared::new(slot, nonce, h.name.clone(), action));
                    self.segment.clear_hop(slot);
                    let mut rec = HopRecord {
                        spec: h.clone(),
                        shared,
                        ports: None,
                        ifaces: None,
                        port_error: None,
                        last_transition_unix_ns: unix_ns(),
                        reason: "Applied".into(),
                        message: "hop added; waiting for heartbeats".into(),
                    };
                    self.bind_into(&mut rec, &mut add);
                    rec
                }
            };
            records.push(rec);
        }
        self.hops = records;
        // Taps on the sides of removed (or moved) hops end.
        let hops = &self.hops;
        self.taps.end_removed_points(|hop, ifname| {
            hops.iter()
                .any(|h| h.spec.name == hop && (h.spec.a == ifname || h.spec.b == ifname))
        });
        // 4. The final layout, with the new sockets and the retired ports.
        let acks = self.install(self.hops_layout(generation), add, &retire)?;
        let reclaimed: u32 = acks.iter().map(|a| a.reclaimed).sum();
        for a in acks {
            drop(a.removed);
        }
        for slot in freed_slots {
            self.clear_hop_slots(slot);
            self.free_slots.push(slot);
        }
        for (pos, h) in self.hops.iter().enumerate() {
            self.segment.describe_hop(
                h.shared.slot,
                Some(HopInfo {
                    name: h.spec.name.clone(),
                    position: pos as u32,
                }),
            );
        }
        self.applied = Some(Applied {
            generation,
            spec: new.clone(),
            at_unix_ns: unix_ns(),
        });
        info!(
            generation,
            hops = %json(&self.hops.iter().map(|h| h.spec.name.as_str()).collect::<Vec<_>>()),
            retired_ports = retire.len(),
            reclaimed_frames = reclaimed,
            took_ms = t0.elapsed().as_millis() as u64,
            "chain applied"
        );
        self.sync_fallback();
        Ok(())
    }

    /// Binds `rec`'s ports, queueing the new sockets per queue in `add`; on
    /// failure leaves the hop unbound with the reason.
    fn bind_into(&mut self, rec: &mut HopRecord, add: &mut [Vec<ChainPort>]) {
        match self.bind_hop(&rec.spec) {
            Ok((ifaces, socks)) => {
                let (pa, pb) = (self.alloc_port(), self.alloc_port());
                let slot = rec.shared.slot;
                self.describe_hop_ports(slot, &rec.spec);
                for (qi, [sa, sb]) in socks.into_iter().enumerate() {
                    let queue = self.queues[qi].queue;
                    add[qi].push(ChainPort::new(
                        pa,
                        sa,
                        self.segment
                            .queue_slot(self.tool_slots.index(slot, false, qi)),
                        TapPort::new(self.taps.clone(), &rec.spec.a, queue),
                    ));
                    add[qi].push(ChainPort::new(
                        pb,
                        sb,
                        self.segment
                            .queue_slot(self.tool_slots.index(slot, true, qi)),
                        TapPort::new(self.taps.clone(), &rec.spec.b, queue),
                    ));
                }
                info!(hop = %rec.spec.name, a = %rec.spec.a, b = %rec.spec.b, "hop ports bound");
                rec.ports = Some([pa, pb]);
                rec.ifaces = Some(ifaces);
                rec.port_error = None;
            }
            Err(e) => {
                let e = e.to_string();
                if rec.port_error.as_deref() != Some(e.as_str()) {
                    error!(hop = %rec.spec.name, error = %e, "cannot bind the hop's interfaces: the hop is down (its failure action applies); retrying every second");
                    rec.last_transition_unix_ns = unix_ns();
                    rec.reason = "PortUnavailable".into();
                    rec.message = e.clone();
                }
                rec.port_error = Some(e);
            }
        }
    }

    /// Retries binding hops whose interfaces were unavailable.
    fn retry_unbound(&mut self) {
        if self.last_retry.elapsed() < RETRY_EVERY || self.hops.iter().all(|h| h.ports.is_some()) {
            return;
        }
        self.last_retry = Instant::now();
        let mut add: Vec<Vec<ChainPort>> = self.queues.iter().map(|_| Vec::new()).collect();
        let mut hops = std::mem::take(&mut self.hops);
        let mut any = false;
        for h in hops.iter_mut().filter(|h| h.ports.is_none()) {
            self.bind_into(h, &mut add);
            any |= h.ports.is_some();
        }
        self.hops = hops;
        if !any {
            return;
        }
        if let Err(e) = self.install(self.hops_layout(self.layout.generation), add, &[]) {
            error!(error = %e, "installing rebound hop ports failed");
        }
    }

    fn on_event(&mut self, ev: HopEvent) {
        let Some(h) = self
            .hops
            .iter_mut()
            .find(|h| h.shared.slot == ev.slot && h.shared.nonce == ev.nonce)
        else {
            return;
        };
        let traffic = LayoutHop {
            shared: h.shared.clone(),
            ports: h.ports,
            removing: false,
        }
        .traffic();
        match ev.health {
            Health::Down => {
                warn!(hop = %h.spec.name, reason = ev.reason, detail = %ev.message, traffic = traffic.as_str(), "hop DOWN")
            }
            _ => {
                info!(hop = %h.spec.name, reason = ev.reason, detail = %ev.message, traffic = traffic.as_str(), "hop UP")
            }
        }
        if !h.shared.manual_bypass() {
            h.last_transition_unix_ns = ev.at_unix_ns;
            h.reason = ev.reason.into();
            h.message = ev.message;
        }
    }

    /// The hops of the applied chain and their interfaces (tap points).
    pub(crate) fn hop_ports(&self) -> Vec<HopPorts> {
        self.hops
            .iter()
            .map(|h| HopPorts {
                name: h.spec.name.clone(),
                a: h.spec.a.clone(),
                b: h.spec.b.clone(),
            })
            .collect()
    }

    /// Processes pending hop events, notices replaced tool interfaces and
    /// retries unbound hops; called by the thread loop.
    pub fn tick(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev);
        }
        self.unbind_replaced();
        self.retry_unbound();
    }

    /// Unbinds the hops whose tool interface disappeared or was re-created
    /// (its name now has another ifindex): their sockets and XDP program
    /// belong to a device that is gone, so nothing would ever arrive on
    /// them again. The hop is then DOWN ("PortUnavailable", its failure
    /// action applies) and [`ChainControl::retry_unbound`] binds it again on
    /// the new device once it exists; heartbeats then bring it UP after the
    /// hold time. Checked every [`RETRY_EVERY`].
    fn unbind_replaced(&mut self) {
        if self.last_iface_check.elapsed() < RETRY_EVERY {
            return;
        }
        self.last_iface_check = Instant::now();
        let mut retire: Vec<PortId> = Vec::new();
        let mut closed: Vec<[Interface; 2]> = Vec::new();
        for h in &mut self.hops {
            let Some(ifaces) = h.ifaces.as_ref() else {
                continue;
            };
            let why = ifaces
                .iter()
                .find_map(|i| match crate::xdp::netdev::ifindex(&i.name) {
                    Ok(now) if now == i.ifindex => None,
                    Ok(now) => Some(format!(
                        "interface {:?} was re-created (ifindex {} is now {now})",
                        i.name, i.ifindex
                    )),
                    Err(_) => Some(format!(
                        "interface {:?} (ifindex {}) disappeared",
                        i.name, i.ifindex
                    )),
                });
            let Some(why) = why else { continue };
            warn!(hop = %h.spec.name, detail = %why, "a hop's tool interface was replaced: unbinding the hop (it is down, its failure action applies); it is bound again when the interface is back");
            if let Some(p) = h.ports.take() {
                retire.extend(p);
            }
            closed.extend(h.ifaces.take());
            h.last_transition_unix_ns = unix_ns();
            h.reason = "PortUnavailable".into();
            h.message = why.clone();
            h.port_error = Some(why);
        }
        if closed.is_empty() {
            return;
        }
        match self.install(
            self.hops_layout(self.layout.generation),
            Vec::new(),
            &retire,
        ) {
            // The tasks hand the retired sockets back: closed before the
            // interfaces they were bound to.
            Ok(acks) => drop(acks),
            Err(e) => error!(error = %e, "retiring the ports of a replaced tool interface failed"),
        }
        drop(closed);
        // Retry at once rather than a second later.
        self.last_retry = Instant::now()
            .checked_sub(RETRY_EVERY)
            .unwrap_or_else(Instant::now);
    }
}
