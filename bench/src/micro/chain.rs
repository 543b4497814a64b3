//! The chain loops: the chain task with 1, 2 or 4 hops on one UMEM, every
//! tool played by the fake kernel as a wire, and the hop counters checked.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use crossbeam::channel::{Receiver, Sender};
use tapline_config::chain::FailureAction;
use tapline_config::heartbeat::Timing;
use tapline_dataplane::chain::heartbeat::{Health, TagKey};
use tapline_dataplane::chain::runtime::{ChainShared, HopShared, Layout, LayoutHop};
use tapline_dataplane::pipeline::chain::{ChainPort, Heartbeats, HopEvent, TaskUpdate};
use tapline_dataplane::pipeline::ChainTask;
use tapline_dataplane::tap::TapPort;
use tapline_dataplane::xdp::socket::FakeKernel;
use tapline_dataplane::xdp::{AttachMode, BindMode, PortMode, QueueGroup, XdpDesc, XskSocket};
use tapline_segment::Layout as SegmentLayout;
use tapline_segment::{Counter, DropReason, HopCounters, Slot, StatsSegment};

use super::rings::{new_umem, sizes};
use super::{chain_loop, hops_up_timeout, LoopRun, CHAIN_HEARTBEAT, FIRST_TOOL_PORT, MS};

/// The fake kernel's side of one tool: the rings of its two ports, and per
/// direction the frames inside the tool.
#[derive(Debug)]
pub(crate) struct ToolWire {
    pub(crate) a: FakeKernel,
    pub(crate) b: FakeKernel,
    pub(crate) a_to_b: WireBufs,
    pub(crate) b_to_a: WireBufs,
}

/// One direction of a [`ToolWire`] (reused every round).
#[derive(Debug, Default)]
pub(crate) struct WireBufs {
    /// Transmitted on one side, not yet received on the other (only while
    /// the receiving side's fill ring is short).
    pub(crate) held: Vec<XdpDesc>,
    /// Chunks taken from the receiving side's fill ring this round.
    pub(crate) fill: Vec<u64>,
}

impl ToolWire {
    /// Plays the tool for one round, both ways. Returns the frames moved.
    pub(crate) fn run(&mut self) -> Result<usize> {
        Ok(wire(&mut self.a, &mut self.b, &mut self.a_to_b)?
            + wire(&mut self.b, &mut self.a, &mut self.b_to_a)?)
    }
}

/// Moves what `from`'s socket transmitted to `to`'s RX ring: each frame
/// arrives in the chunk it was sent from, and the chunk `to` lent on its
/// fill ring completes the transmission on `from` (the task gets back as
/// many chunks as it gave, as after copy mode's copy). Frames for which
/// `to` has no fill chunk wait in the tool for the next round.
pub(crate) fn wire(from: &mut FakeKernel, to: &mut FakeKernel, b: &mut WireBufs) -> Result<usize> {
    from.tx.kernel_pop(usize::MAX, &mut b.held);
    if b.held.is_empty() {
        return Ok(0);
    }
    b.fill.clear();
    to.fill.kernel_pop(b.held.len(), &mut b.fill);
    let n = b.fill.len();
    let received = to.rx.kernel_push(&b.held[..n]);
    ensure!(
        received == n,
        "a tool's RX ring is full: {received} of {n} frames fit"
    );
    let completed = from.comp.kernel_push(&b.fill);
    ensure!(
        completed == n,
        "a tool's completion ring is full: {completed} of {n} addresses fit"
    );
    b.held.drain(..n);
    Ok(n)
}

/// A chain task with its hops up, built as the engine builds queue 0's,
/// and the fake kernel's side of every port.
pub(crate) struct ChainRig {
    pub(crate) task: ChainTask,
    /// inline-1, inline-2.
    pub(crate) inline: [FakeKernel; 2],
    pub(crate) tools: Vec<ToolWire>,
    pub(crate) hops: Vec<Arc<HopShared>>,
    pub(crate) segment: Arc<StatsSegment>,
    pub(crate) events: Receiver<HopEvent>,
    /// The control thread's end of the task's update channel: kept open,
    /// as in production, so `poll` checks an empty channel every time.
    pub(crate) _updates: Sender<TaskUpdate>,
}

impl ChainRig {
    /// Builds the task, installs a chain of `hops` tools through its update
    /// channel and polls (heartbeats crossing the fake tools) until every
    /// hop is up. No data frame moves here.
    pub(crate) fn start(hops: u32, batch: u32, heartbeat: Timing) -> Result<ChainRig> {
        let n_hops = hops as usize;
        // The bytes of every chunk; the task makes its own pool of the
        // same chunks.
        let (umem, _) = new_umem()?;
        let segment = StatsSegment::in_memory_with(&SegmentLayout {
            n_queues: 2 + 2 * n_hops,
            n_workers: 0,
            max_hops: n_hops,
            n_hop_writers: 1,
            ..SegmentLayout::default()
        });
        let (s1, k1) = XskSocket::in_memory(sizes());
        let (s2, k2) = XskSocket::in_memory(sizes());
        let group = QueueGroup {
            umem,
            sockets: vec![s1, s2],
            mode: PortMode {
                attach: AttachMode::Generic,
                bind: BindMode::Copy,
            },
        };
        let key = TagKey::random();
        let (events_tx, events) = crossbeam::channel::unbounded();
        let (updates, updates_rx) = crossbeam::channel::bounded::<TaskUpdate>(4);
        let task = ChainTask::new(
            0,
            group,
            [segment.queue_slot(0), segment.queue_slot(1)],
            [TapPort::disabled(), TapPort::disabled()],
            segment.clone(),
            Arc::new(ChainShared::default()),
            key.clone(),
            Some(updates_rx),
            Some(Heartbeats::new(heartbeat, key, events_tx)),
        );
        let mut add = Vec::with_capacity(2 * n_hops);
        let mut tools = Vec::with_capacity(n_hops);
        let mut shared = Vec::with_capacity(n_hops);
        let mut layout_hops = Vec::with_capacity(n_hops);
        for h in 0..hops {
            let (sa, a) = XskSocket::in_memory(sizes());
            let (sb, b) = XskSocket::in_memory(sizes());
            let pa = FIRST_TOOL_PORT + 2 * h;
            for (id, sock) in [(pa, sa), (pa + 1, sb)] {
                let counters = segment.queue_slot(id as usize);
                add.push(ChainPort::new(id, sock, counters, TapPort::disabled()));
            }
            tools.push(ToolWire {
                a,
                b,
                a_to_b: WireBufs::default(),
                b_to_a: WireBufs::default(),
            });
            // Fail closed: a hop that went down would lose frames, which
            // the conservation checks catch, rather than let them around
            // the tool.
            let hop = Arc::new(HopShared::new(
                h as usize,
                h + 1,
                format!("tool-{}", h + 1),
                FailureAction::Drop,
            ));
            layout_hops.push(LayoutHop {
                shared: hop.clone(),
                ports: Some([pa, pa + 1]),
                removing: false,
            });
            shared.push(hop);
        }
        let (ack, acks) = crossbeam::channel::unbounded();
        updates
            .send(TaskUpdate {
                add,
                layout: Arc::new(Layout {
                    generation: 1,
                    hops: layout_hops,
                }),
                remove: Vec::new(),
                ack,
            })
            .map_err(|_| anyhow::anyhow!("the task's update channel is closed"))?;
        let mut rig = ChainRig {
            task,
            inline: [k1, k2],
            tools,
            hops: shared,
            segment,
            events,
            _updates: updates,
        };
        rig.task.poll(batch);
        let ack = acks
            .try_recv()
            .context("the task did not take the chain update in its first poll")?;
        ensure!(
            ack.removed.is_empty() && rig.task.ports().len() == 2 + 2 * n_hops,
            "the task has {} ports after the update, expected {}",
            rig.task.ports().len(),
            2 + 2 * n_hops
        );
        let up_timeout = hops_up_timeout(&heartbeat);
        let deadline = Instant::now() + up_timeout;
        while let Some(h) = rig.hops.iter().find(|h| h.health() != Health::Up) {
            ensure!(
                h.health() != Health::Down && Instant::now() < deadline,
                "hop {} is {:?} after {up_timeout:?} of heartbeats (interval {} ms, timeout {} ms)",
                h.name,
                h.health(),
                heartbeat.interval_ns / MS,
                heartbeat.timeout_ns / MS
            );
            rig.task.poll(batch);
            for t in rig.tools.iter_mut() {
                t.run()?;
            }
        }
        // Takes the new routes (through every tool) in.
        rig.task.poll(batch);
        for ev in rig.events.try_iter() {
            ensure!(
                ev.health == Health::Up,
                "hop slot {} went {:?} while coming up: {}",
                ev.slot,
                ev.health,
                ev.message
            );
        }
        Ok(rig)
    }

    /// Hop `h`'s counters (the task is the hop's only writer, 0).
    pub(crate) fn hop_counters(&self, h: usize) -> Slot<HopCounters> {
        self.segment.hop_slot(h, 0)
    }

    /// Every hop's health and counters, and the frames held in the tools
    /// (for errors).
    pub(crate) fn describe(&self) -> String {
        let hops: Vec<String> = self
            .hops
            .iter()
            .enumerate()
            .map(|(h, hop)| {
                let c = self.hop_counters(h);
                format!(
                    "{} {:?}: {} to the tool, {} back, {} around, {} dropped, {} held in \
                     the tool, heartbeats {} sent / {} returned / {} late / {} lost",
                    hop.name,
                    hop.health(),
                    c.to_tool_packets.get(),
                    c.from_tool_packets.get(),
                    c.bypassed_packets.get(),
                    drops(&c.drops),
                    self.tools[h].a_to_b.held.len() + self.tools[h].b_to_a.held.len(),
                    c.heartbeats_sent.get(),
                    c.heartbeats_returned.get(),
                    c.heartbeats_late.get(),
                    c.heartbeats_lost.get()
                )
            })
            .collect();
        hops.join("; ")
    }

    /// Heartbeats sent so far, all hops and directions.
    pub(crate) fn heartbeats_sent(&self) -> u64 {
        (0..self.hops.len())
            .map(|h| self.hop_counters(h).heartbeats_sent.get())
            .sum()
    }
}

/// Drops of every reason on one port or hop.
pub(crate) fn drops(c: &[Counter]) -> u64 {
    DropReason::ALL.iter().map(|&r| c[r as usize].get()).sum()
}

/// After a chain loop of `frames` frames (the rig's only data frames):
/// inline-1 received them all, inline-2 transmitted them all, every tool
/// got them and gave them back, nothing was dropped, went around a tool or
/// went west, and every hop is still up.
pub(crate) fn check_chain_counters(rig: &mut ChainRig, frames: u64) -> Result<()> {
    let ports = rig.task.ports();
    let (in1, in2) = (&*ports[0].counters, &*ports[1].counters);
    ensure!(
        in1.rx_packets.get() == frames && in2.tx_packets.get() == frames,
        "counters: inline-1 rx {} / inline-2 tx {}, expected {frames}",
        in1.rx_packets.get(),
        in2.tx_packets.get()
    );
    ensure!(
        in1.tx_packets.get() == 0 && in2.rx_packets.get() == 0,
        "counters: inline-1 tx {} / inline-2 rx {}, expected none (no westbound traffic)",
        in1.tx_packets.get(),
        in2.rx_packets.get()
    );
    for (i, p) in ports.iter().enumerate() {
        let d = drops(&p.counters.drops);
        ensure!(d == 0, "port {i} (id {}) dropped {d} frames", p.id);
    }
    for (h, hop) in rig.hops.iter().enumerate() {
        let c = rig.hop_counters(h);
        ensure!(
            c.to_tool_packets.get() == frames && c.from_tool_packets.get() == frames,
            "counters: {} got {} frames and gave back {}, expected {frames}",
            hop.name,
            c.to_tool_packets.get(),
            c.from_tool_packets.get()
        );
        let (d, around) = (drops(&c.drops), c.bypassed_packets.get());
        ensure!(
            d == 0 && around == 0,
            "counters: {} dropped {d} frames and let {around} around the tool",
            hop.name
        );
        ensure!(
            hop.health() == Health::Up,
            "{} is {:?} after the loop",
            hop.name,
            hop.health()
        );
    }
    if let Some(ev) = rig.events.try_iter().next() {
        bail!(
            "hop slot {} went {:?} during the loop: {}",
            ev.slot,
            ev.health,
            ev.message
        );
    }
    let mut west = Vec::new();
    rig.inline[0].tx.kernel_pop(usize::MAX, &mut west);
    ensure!(
        west.is_empty(),
        "{} frames on inline-1's TX ring",
        west.len()
    );
    Ok(())
}

/// A chain of `hops` tools with [`CHAIN_HEARTBEAT`]: `frames` frames
/// through it once.
pub(crate) fn chain_run(hops: u32, frames: u64, batch: u32) -> Result<LoopRun> {
    let mut rig = ChainRig::start(hops, batch, CHAIN_HEARTBEAT)
        .with_context(|| format!("setting up a chain of {hops} hops"))?;
    chain_loop(&mut rig, frames, batch)
}
