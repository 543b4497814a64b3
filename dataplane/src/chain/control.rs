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
//! [`ControlThread`] serves `state_dir/control.sock` whether or not an
//! inline pair is configured (without one, chain requests fail with
//! FAILED_PRECONDITION). Connections are taken one at a time; a tap
//! request ([`crate::tap`]) is checked here (point, filter, caps), then its
//! connection is handed to a thread of its own (`tapline-tap-N`) that
//! streams the tap, so a running tap never holds up chain commands. A tap
//! on a hop side ends when a chain change removes that hop.

use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use tapline_proto::v1;
use tapline_proto::wire;
use tracing::{debug, error, info, warn};

use super::heartbeat::Health;
use super::runtime::{ChainShared, HopShared, Layout, LayoutHop, PortId, Traffic};
use super::spec::{self, ChainSpec, HopSpec, Issue, Persisted};
use crate::pipeline::chain::{ChainPort, HopEvent, TaskAck, TaskUpdate};
use crate::stats::{Role, StatsSegment};
use crate::tap::{self, HopPorts, PortNames, TapPlan, TapPort, TapRegistry};
use crate::xdp::fallback::FallbackMaps;
use crate::xdp::shm::{unix_ns, HopInfo, QueueInfo};
use crate::xdp::{BindMode, Geometry, Interface, PortMode, Umem, XdpMode, XskParams, XskSocket};

/// How long a task may take to take an update (it does so between two
/// batches, so normally well under a millisecond).
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often unbound hops are retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long a stopping dataplane waits for its tap threads to send their
/// `ended` message (they notice within a few milliseconds unless their
/// client stopped reading).
const TAP_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC status codes used in `DataplaneError.code`.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const INTERNAL: i32 = 13;
}

/// One inline queue: its UMEM, a handle on the socket that registered it,
/// and the channel to its task.
#[derive(Debug)]
pub struct QueueHandle {
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
#[derive(Debug, Clone, Copy)]
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
pub struct ChainControl {
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
    /// The inline ports' kernel fallback: its action follows the chain.
    fallback: Option<Arc<FallbackMaps>>,
}

fn ts(unix_ns: u64) -> Option<prost_types::Timestamp> {
    (unix_ns > 0).then_some(prost_types::Timestamp {
        seconds: (unix_ns / 1_000_000_000) as i64,
        nanos: (unix_ns % 1_000_000_000) as i32,
    })
}

fn error(code: i32, message: impl Into<String>) -> v1::dataplane_response::Response {
    v1::dataplane_response::Response::Error(v1::DataplaneError {
        code,
        message: message.into(),
        validation: None,
    })
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
            fallback: None,
        }
    }

    /// Makes the kernel fallback's action follow the chain.
    pub fn set_fallback(&mut self, maps: Arc<FallbackMaps>) {
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
    pub fn persist_again(&self) {
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

    fn record_rejected(
        &mut self,
        s: &ChainSpec,
        generation: Option<u64>,
        reason: &str,
        message: &str,
        errors: &[Issue],
    ) {
        self.last_rejected = Some(v1::RejectedUpdate {
            spec: Some(s.to_proto()),
            generation,
            rejected_at: ts(unix_ns()),
            reason: reason.into(),
            message: message.into(),
            errors: errors.iter().map(Issue::to_proto).collect(),
        });
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
    ) -> Result<Vec<TaskAck>, String> {
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
                .map_err(|_| format!("the worker of queue {} is gone", q.queue))?;
        }
        drop(tx);
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acks = Vec::new();
        while acks.len() < self.queues.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => acks.push(a),
                Err(_) => {
                    return Err(format!(
                        "{} of {} workers did not take the chain update within {:?}",
                        self.queues.len() - acks.len(),
                        self.queues.len(),
                        ACK_TIMEOUT
                    ))
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
    fn bind_hop(&mut self, h: &HopSpec) -> Result<([Interface; 2], Vec<[XskSocket; 2]>), String> {
        let open = |n: &str| {
            Interface::open(n, self.settings.xdp_mode, self.settings.promiscuous)
                .map_err(|e| e.to_string())
        };
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
                let s = XskSocket::bind(&q.umem, &params, Some(q.owner.as_fd()), &iface.name)
                    .map_err(|e| e.to_string())?;
                let fd = s.fd().expect("kernel socket");
                iface.attachment.map.set(q.queue, fd).map_err(|e| {
                    format!(
                        "registering {} queue {} in its XSKMAP: {e}",
                        iface.name, q.queue
                    )
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
    pub fn apply(&mut self, new: &ChainSpec, generation: u64) -> Result<(), String> {
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
                    let slot = self.free_slots.pop().ok_or_else(|| {
                        "no free hop slot (more hops than the segment holds)".to_string()
                    })?;
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
            hops = ?self.hops.iter().map(|h| h.spec.name.as_str()).collect::<Vec<_>>(),
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
                warn!(hop = %h.spec.name, reason = ev.reason, detail = %ev.message, traffic = ?traffic, "hop DOWN")
            }
            _ => {
                info!(hop = %h.spec.name, reason = ev.reason, detail = %ev.message, traffic = ?traffic, "hop UP")
            }
        }
        if !h.shared.manual_bypass() {
            h.last_transition_unix_ns = ev.at_unix_ns;
            h.reason = ev.reason.into();
            h.message = ev.message;
        }
    }

    fn hop_status(&self, h: &HopRecord) -> v1::HopStatus {
        let manual = h.shared.manual_bypass();
        let health = h.shared.health();
        let state = if manual {
            v1::HopState::BypassedManual
        } else if h.ports.is_none() {
            v1::HopState::Down
        } else {
            match health {
                Health::Up => v1::HopState::Up,
                Health::Down => v1::HopState::Down,
                Health::Unknown => v1::HopState::Unspecified,
            }
        };
        let traffic = match (LayoutHop {
            shared: h.shared.clone(),
            ports: h.ports,
            removing: false,
        })
        .traffic()
        {
            Traffic::Through => v1::HopTraffic::ThroughTool,
            Traffic::Bypass => v1::HopTraffic::Bypassed,
            Traffic::Drop => v1::HopTraffic::Dropped,
        };
        v1::HopStatus {
            name: h.spec.name.clone(),
            state: state.into(),
            traffic: traffic.into(),
            on_failure: h.shared.on_failure().to_proto().into(),
            manual_bypass: manual,
            tool_healthy: h.ports.is_some() && health == Health::Up,
            last_transition_at: ts(h.last_transition_unix_ns),
            reason: h.reason.clone(),
            message: h.message.clone(),
        }
    }

    /// The hops of the applied chain and their interfaces (tap points).
    pub fn hop_ports(&self) -> Vec<HopPorts> {
        self.hops
            .iter()
            .map(|h| HopPorts {
                name: h.spec.name.clone(),
                a: h.spec.a.clone(),
                b: h.spec.b.clone(),
            })
            .collect()
    }

    /// The chain as the API shows it.
    pub fn chain(&self) -> v1::Chain {
        v1::Chain {
            spec: Some(self.desired.spec.to_proto()),
            generation: self.desired.generation,
            updated_at: ts(self.desired.updated_at_unix_ns),
            status: Some(v1::ChainStatus {
                observed_generation: self.applied.as_ref().map_or(0, |a| a.generation),
                applied_spec: self.applied.as_ref().map(|a| a.spec.to_proto()),
                applied_at: self.applied.as_ref().and_then(|a| ts(a.at_unix_ns)),
                hops: self.hops.iter().map(|h| self.hop_status(h)).collect(),
                last_rejected: self.last_rejected.clone(),
            }),
        }
    }

    /// Handles one command.
    pub fn handle(&mut self, req: v1::DataplaneRequest) -> v1::DataplaneResponse {
        use v1::dataplane_request::Request;
        use v1::dataplane_response::Response;
        let response = match req.request {
            None => error(code::INVALID_ARGUMENT, "empty request"),
            Some(Request::GetChain(_)) => Response::GetChain(v1::GetChainResponse {
                chain: Some(self.chain()),
            }),
            Some(Request::SetChain(r)) => self.set_chain(r),
            Some(Request::SetHopBypass(r)) => self.set_hop_bypass(r),
            // The command socket serves taps itself (see `Server::serve`).
            Some(Request::Tap(_)) => error(
                code::INTERNAL,
                "a tap request reached the chain's handler (a dataplane bug)",
            ),
        };
        v1::DataplaneResponse {
            response: Some(response),
        }
    }

    fn set_chain(&mut self, r: v1::SetChainRequest) -> v1::dataplane_response::Response {
        use v1::dataplane_response::Response;
        let Some(p) = r.spec else {
            return error(code::INVALID_ARGUMENT, "spec is required");
        };
        if let Some(expected) = r.expected_generation {
            if expected != self.desired.generation {
                return error(
                    code::FAILED_PRECONDITION,
                    format!(
                        "the chain is at generation {}, not {expected}: read it again and retry",
                        self.desired.generation
                    ),
                );
            }
        }
        let (new, errors, warnings) = match ChainSpec::from_proto(&p) {
            Ok(s) => {
                let (e, w) = spec::validate(&s, &self.env);
                (s, e, w)
            }
            Err(e) => (ChainSpec::default(), e, Vec::new()),
        };
        let validation = v1::ValidationResult {
            valid: errors.is_empty(),
            errors: errors.iter().map(Issue::to_proto).collect(),
            warnings: warnings.iter().map(Issue::to_proto).collect(),
        };
        if r.dry_run {
            return Response::SetChain(v1::SetChainResponse {
                validation: Some(validation),
                accepted: false,
                generation: self.desired.generation,
                chain: Some(self.chain()),
            });
        }
        if !errors.is_empty() {
            let msg = errors
                .iter()
                .map(Issue::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            warn!(errors = %msg, "chain update rejected");
            self.last_rejected = Some(v1::RejectedUpdate {
                spec: Some(p),
                generation: None,
                rejected_at: ts(unix_ns()),
                reason: "InvalidSpec".into(),
                message: msg.clone(),
                errors: validation.errors.clone(),
            });
            return Response::Error(v1::DataplaneError {
                code: code::INVALID_ARGUMENT,
                message: format!("invalid chain spec: {msg}"),
                validation: Some(validation),
            });
        }
        let persisted = Persisted::new(self.desired.generation + 1, unix_ns(), new.clone());
        if let Err(e) = self.persist(&persisted) {
            error!(error = %e, "cannot persist the chain; update refused");
            return error(
                code::INTERNAL,
                format!(
                    "cannot persist the chain in {}: {e}; nothing changed",
                    self.settings.state_dir.display()
                ),
            );
        }
        self.desired = persisted;
        let generation = self.desired.generation;
        info!(generation, hops = new.hops.len(), "chain update accepted");
        if let Err(e) = self.apply(&new, generation) {
            error!(generation, error = %e, "applying the chain failed");
            self.record_rejected(&new, Some(generation), "ApplyFailed", &e, &[]);
        }
        Response::SetChain(v1::SetChainResponse {
            validation: Some(validation),
            accepted: true,
            generation,
            chain: Some(self.chain()),
        })
    }

    fn set_hop_bypass(&mut self, r: v1::SetHopBypassRequest) -> v1::dataplane_response::Response {
        let Some(i) = self.hops.iter().position(|h| h.spec.name == r.hop) else {
            return error(
                code::NOT_FOUND,
                format!(
                    "no hop {:?} in the applied chain (hops: {})",
                    r.hop,
                    self.hops
                        .iter()
                        .map(|h| h.spec.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        let h = &mut self.hops[i];
        let was = h.shared.manual_bypass();
        if was != r.bypass {
            h.shared.set_manual_bypass(r.bypass);
            self.shared.bump();
            h.last_transition_unix_ns = unix_ns();
            h.reason = if r.bypass {
                "ManualBypass"
            } else {
                "ManualBypassCleared"
            }
            .into();
            h.message = if r.reason.is_empty() {
                if r.bypass {
                    "bypass set by an operator"
                } else {
                    "bypass cleared by an operator"
                }
                .into()
            } else {
                r.reason.clone()
            };
            info!(hop = %h.spec.name, bypass = r.bypass, reason = %h.message, "manual bypass changed");
            self.sync_fallback();
        }
        v1::dataplane_response::Response::SetHopBypass(v1::SetHopBypassResponse {
            hop: Some(self.hop_status(&self.hops[i])),
        })
    }

    /// Processes pending hop events and retries; called by the thread loop.
    pub fn tick(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev);
        }
        self.retry_unbound();
    }
}

/// What the command socket needs besides the chain.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    pub state_dir: PathBuf,
    /// Uids besides our own allowed on the command socket.
    pub allowed_uids: Vec<u32>,
    /// The configured ports (tap points by role).
    pub ports: PortNames,
    pub taps: Arc<TapRegistry>,
}

/// The running control thread.
#[derive(Debug)]
pub struct ControlThread {
    stop: Arc<AtomicBool>,
    /// Asks the thread to bind the command socket again and re-persist the
    /// chain (the state directory was re-created).
    republish: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<ChainControl>>>,
    socket: PathBuf,
}

/// Binds the command socket in `state_dir` (replacing a stale one) and
/// restricts it to its owner and group.
fn listen(state_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = state_dir.join(wire::SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok((l, path))
}

impl ControlThread {
    /// Starts the thread: command socket, and with a chain (`control`, when
    /// an inline pair is configured) hop events and retries. If the socket
    /// cannot be created the dataplane still runs (the error is logged):
    /// the sidecar then cannot change the chain or tap.
    pub fn spawn(
        control: Option<ChainControl>,
        cmd: CommandSettings,
    ) -> std::io::Result<ControlThread> {
        let mut listener = match listen(&cmd.state_dir) {
            Ok((l, path)) => {
                info!(path = %path.display(), "command socket listening");
                Some(l)
            }
            Err(e) => {
                error!(state_dir = %cmd.state_dir.display(), error = %e, "cannot create the command socket: the chain cannot be read or changed and nothing can be tapped through the API; make dataplane.state_dir writable");
                None
            }
        };
        let socket = cmd.state_dir.join(wire::SOCKET_NAME);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let republish = Arc::new(AtomicBool::new(false));
        let again = republish.clone();
        let mut server = Server {
            control,
            cmd,
            tap_threads: Vec::new(),
            next_tap_thread: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tapline-ctl".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if again.swap(false, Ordering::Relaxed) {
                        match listen(&server.cmd.state_dir) {
                            Ok((l, path)) => {
                                info!(path = %path.display(), "command socket listening again");
                                listener = Some(l);
                            }
                            Err(e) => error!(error = %e, "cannot re-create the command socket"),
                        }
                        if let Some(c) = server.control.as_ref() {
                            c.persist_again();
                        }
                    }
                    if let Some(c) = server.control.as_mut() {
                        c.tick();
                    }
                    server.reap_taps();
                    match listener.as_ref().map(UnixListener::accept) {
                        Some(Ok((stream, _))) => server.serve(stream),
                        Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Some(Err(e)) => {
                            warn!(error = %e, "command socket accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        None => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                server.stop_taps();
                server.control
            })?;
        Ok(ControlThread {
            stop,
            republish,
            handle: Some(handle),
            socket,
        })
    }

    /// Asks the thread to bind the command socket again and to persist the
    /// chain again (after the state directory was re-created).
    pub fn republish(&self) {
        self.republish.store(true, Ordering::Relaxed);
    }

    /// Stops the thread (ending every tap with `DATAPLANE_STOPPED`) and
    /// returns the chain's owner, if any (whose drop closes the tool
    /// interfaces, after the workers are stopped).
    pub fn stop(mut self) -> Option<ChainControl> {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.handle.take().and_then(|h| h.join().ok()).flatten();
        let _ = std::fs::remove_file(&self.socket);
        c
    }
}

/// The command socket's side of the control thread.
#[derive(Debug)]
struct Server {
    control: Option<ChainControl>,
    cmd: CommandSettings,
    tap_threads: Vec<std::thread::JoinHandle<()>>,
    next_tap_thread: u64,
}

impl Server {
    /// Serves one connection: requests until the peer closes it or errs,
    /// or until a tap takes it over.
    fn serve(&mut self, stream: UnixStream) {
        let uid =
            match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            {
                Ok(c) => c.uid(),
                Err(e) => {
                    warn!(error = %e, "command connection without peer credentials; closing it");
                    return;
                }
            };
        let me = nix::unistd::geteuid().as_raw();
        if uid != me && !self.cmd.allowed_uids.contains(&uid) {
            warn!(
                peer_uid = uid,
                own_uid = me,
                "command connection from another uid refused (see dataplane.command_uids)"
            );
            return;
        }
        if stream.set_nonblocking(false).is_err()
            || stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .is_err()
        {
            return;
        }
        let mut stream = stream;
        loop {
            let req: v1::DataplaneRequest = match wire::read_frame(&mut stream) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut {
                        debug!(error = %e, "command connection closed");
                    }
                    return;
                }
            };
            let resp = match req.request {
                Some(v1::dataplane_request::Request::Tap(t)) => match self.plan_tap(&t) {
                    Ok(plan) => match self.cmd.taps.start(&plan) {
                        Ok(tap) => {
                            self.run_tap(stream, tap, plan);
                            return;
                        }
                        Err(e) => tap_refused(&plan.point.label, &e),
                    },
                    Err(e) => tap_refused("", &e),
                },
                _ => match self.control.as_mut() {
                    Some(c) => c.handle(req),
                    None => v1::DataplaneResponse {
                        response: Some(error(
                            code::FAILED_PRECONDITION,
                            "no inline pair is configured ([interfaces] inline-1 and \
                             inline-2): this dataplane has no chain",
                        )),
                    },
                },
            };
            if let Err(e) = wire::write_frame(&mut stream, &resp) {
                debug!(error = %e, "command reply not delivered");
                return;
            }
            if let Some(c) = self.control.as_mut() {
                c.tick();
            }
        }
    }

    fn plan_tap(&self, req: &v1::TapRequest) -> Result<TapPlan, tap::TapError> {
        let hops = self
            .control
            .as_ref()
            .map(ChainControl::hop_ports)
            .unwrap_or_default();
        TapPlan::new(req, self.cmd.taps.settings(), &self.cmd.ports, &hops)
    }

    /// Hands the connection to a new tap thread.
    fn run_tap(&mut self, mut stream: UnixStream, tap: Arc<tap::Tap>, plan: TapPlan) {
        let registry = self.cmd.taps.clone();
        let n = self.next_tap_thread;
        self.next_tap_thread += 1;
        info!(
            tap = tap.id(),
            point = %plan.point.label,
            ifname = %plan.point.ifname,
            filter = %plan.filter_expr,
            snaplen = plan.snaplen,
            sample_one_in = plan.sample_one_in,
            max_packets = plan.max_packets,
            max_duration_ms = plan.max_duration.as_millis() as u64,
            "tap started"
        );
        let spawned = std::thread::Builder::new()
            .name(format!("tapline-tap-{n}"))
            .spawn({
                let tap = tap.clone();
                let registry = registry.clone();
                move || {
                    // Writes may wait for the client; nothing is read but
                    // its close (checked without waiting).
                    let _ = stream.set_read_timeout(None);
                    let _ = stream.set_write_timeout(Some(tap::WRITE_TIMEOUT));
                    let out = tap::stream(&registry, &tap, &plan, &mut stream);
                    info!(
                        tap = tap.id(),
                        point = %plan.point.label,
                        reason = out.reason.map_or("client closed the stream", |r| r.as_str_name()),
                        matched = out.matched,
                        sent = out.sent,
                        lost = out.lost,
                        "tap ended"
                    );
                }
            });
        match spawned {
            Ok(h) => self.tap_threads.push(h),
            Err(e) => {
                // The connection is dropped with the closure: the client
                // sees it closed without an answer.
                error!(tap = tap.id(), error = %e, "cannot start a tap thread; tap refused");
                registry.remove(&tap);
                registry.release(&tap);
            }
        }
    }

    /// Joins the tap threads that are done.
    fn reap_taps(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tap_threads)
            .into_iter()
            .partition(|h| h.is_finished());
        self.tap_threads = running;
        for h in done {
            let _ = h.join();
        }
    }

    /// Ends every tap and waits (a bounded time) for their threads.
    fn stop_taps(&mut self) {
        self.cmd.taps.shutdown();
        let deadline = Instant::now() + TAP_STOP_TIMEOUT;
        while !self.tap_threads.is_empty() && Instant::now() < deadline {
            self.reap_taps();
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.tap_threads.is_empty() {
            warn!(
                taps = self.tap_threads.len(),
                "tap threads still writing to their clients at shutdown; leaving them"
            );
        }
    }
}

/// The answer to a tap request that does not start.
fn tap_refused(point: &str, e: &tap::TapError) -> v1::DataplaneResponse {
    info!(point, error = %e, "tap refused");
    v1::DataplaneResponse {
        response: Some(error(e.code(), e.to_string())),
    }
}
