//! Microbenchmark of tapline's own per-frame cost: the pipeline tasks' `poll`
//! over in-memory rings, with a fake kernel in this thread playing the other
//! end of every ring (no sockets, no syscalls).
//!
//! Each round the fake kernel does what the kernel does in copy mode: it
//! takes up to a batch of chunk addresses from the fill ring and publishes
//! them as RX descriptors (chunk + [`HEADROOM_BYTES`], [`FRAME_LEN`] bytes);
//! then the task is polled once; then the kernel "transmits" what the task
//! put on the TX ring by moving those addresses to the completion ring. Every
//! UMEM chunk holds a real 60-byte Ethernet/IPv4/UDP frame at that offset,
//! written once before the run (descriptors are moved, frame bytes never
//! change, so writing them per round would only measure the fake kernel).
//!
//! The chain paths (`chain-1`, `chain-2`, `chain-4`) build the chain task
//! as the engine does (queue 0, heartbeats on, the layout delivered as a
//! chain update through the task's channel) with 1, 2 or 4 hops on the same
//! UMEM, and the fake kernel plays every tool as a wire: what the task
//! transmits on side A of a hop is received on side B, and the other way
//! round (heartbeats go both ways). The wire hands the transmitted chunk
//! itself to the other side and completes, in its place, the chunk it took
//! from that side's fill ring: the task sees exactly what copy mode shows it
//! (a descriptor on RX, a chunk of its UMEM on the completion ring), minus
//! the kernel's copy, and a frame keeps one descriptor from inline-1 to
//! inline-2. Before the measured loop, one round of heartbeats brings every
//! hop up (see [`CHAIN_HEARTBEAT`]).
//!
//! Conservation is checked every round, so a broken path cannot produce a
//! number: the bridge must put on the other side's TX ring exactly the
//! descriptors the kernel received, in order, and so must a chain on
//! inline-2 after every hop; capture must report every frame, and its
//! consumer must see every frame with its length. The counters are checked
//! at the end (a chain's hop counters too: every frame into and out of
//! every tool, no drop, no bypass, every hop still up).
//!
//! Two measurements:
//! - frames per second of the whole loop (fake kernel and checks included:
//!   an upper bound on tapline's cost, and noisy on a shared VM);
//! - with `--callgrind`, instructions per frame of the task's `poll` alone,
//!   from `valgrind --tool=callgrind --toggle-collect` on
//!   [`measured_chain_poll`] / [`measured_capture_poll`] at two frame
//!   counts: the difference of the instruction counts over the difference
//!   of frames cancels setup and teardown, and the count is deterministic
//!   (for the chain paths, up to the hops' judging every millisecond, which
//!   follows the clock: their counts move by about 1% from run to run).
//!   (Demangled patterns such as `*ChainTask::poll*` work as well while
//!   `poll` is not inlined; mangled `_ZN...` patterns match nothing.)

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crossbeam::channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use tapline_dataplane::chain::heartbeat::{Health, TagKey, Timing};
use tapline_dataplane::chain::runtime::{ChainShared, HopShared, Layout, LayoutHop, PortId};
use tapline_dataplane::chain::spec::FailureAction;
use tapline_dataplane::config::MAX_BATCH;
use tapline_dataplane::pipeline::chain::{ChainPort, Heartbeats, HopEvent, TaskUpdate};
use tapline_dataplane::pipeline::{CaptureConsumer, CaptureTask, ChainTask, PollOutcome};
use tapline_dataplane::stats::{Counter, DropReason, HopCounters, Slot, StatsSegment};
use tapline_dataplane::tap::TapPort;
use tapline_dataplane::xdp::shm::Layout as SegmentLayout;
use tapline_dataplane::xdp::socket::FakeKernel;
use tapline_dataplane::xdp::{
    AttachMode, BindMode, FramePool, PortMode, QueueGroup, RingSizes, Umem, XdpDesc, XskSocket,
};

use crate::report::{median, Machine};
use crate::traffic::{build_frame, is_ours, FrameKind};

/// Frame length without FCS (64 bytes on the wire).
pub const FRAME_LEN: u32 = 60;
/// Offset of received data in a chunk: the kernel's `XDP_PACKET_HEADROOM`,
/// which copy mode leaves in front of every received frame.
pub const HEADROOM_BYTES: u64 = 256;
/// The dataplane's defaults (`xdp.frame_size`, `xdp.frame_count`,
/// `xdp.ring_size`), so the rings and pool behave as in production.
const FRAME_SIZE_BYTES: u32 = 2048;
const FRAME_COUNT: u32 = 8192;
const RING_SIZE: u32 = 2048;
/// The target from issue 6: tapline's user-space cost per bridged frame.
pub const TARGET_IR_PER_BRIDGED_FRAME: f64 = 60.0;
/// Frame counts of the two callgrind runs whose difference is reported.
pub const CALLGRIND_FRAMES: [u64; 2] = [100_000, 200_000];
/// `sender` byte of the frames in the UMEM (see `traffic::build_frame`).
const SENDER: u8 = 1;
const MS: u64 = 1_000_000;
/// Heartbeat timing of the chain paths: the configuration's defaults
/// (`[heartbeat]`: timeout 15 ms, 3 misses, hold 1000 ms) with the longest
/// interval it accepts, 10 s. The task runs its heartbeat code as in
/// production (in `poll`: the clock read every poll, the hops judged every
/// millisecond); the first round of heartbeats brings the hops up before
/// the measured loop, and a loop shorter than the interval sends none, so
/// heartbeat frames (a keyed hash each way, per hop) are not counted as the
/// cost of data frames. Each loop reports how many it sent.
pub const CHAIN_HEARTBEAT: Timing = Timing {
    interval_ns: 10_000 * MS,
    timeout_ns: 15 * MS,
    misses: 3,
    hold_ns: 1_000 * MS,
};
/// Added to the time the heartbeats of [`hops_up_timeout`] need, for the
/// polls and judging passes around them (slow under valgrind).
const HOPS_UP_MARGIN: Duration = Duration::from_secs(1);

/// Longest the hops may take to come up under `t`. One round trip takes
/// about a millisecond, but a heartbeat back after `t.timeout_ns` is a
/// miss (the thread descheduled, valgrind translating code on its first
/// use), and the next one goes out a whole interval later. A hop stays
/// Unknown through `t.misses - 1` misses, so the last heartbeat that can
/// still bring it up leaves `t.misses - 1` intervals after the first and
/// is judged `t.timeout_ns` later.
fn hops_up_timeout(t: &Timing) -> Duration {
    let retries = u64::from(t.misses.saturating_sub(1));
    Duration::from_nanos(
        retries
            .saturating_mul(t.interval_ns)
            .saturating_add(t.timeout_ns),
    ) + HOPS_UP_MARGIN
}
/// Rounds in a row in which no frame moves before a chain loop declares the
/// frames still in flight lost.
const MAX_IDLE_ROUNDS: u32 = 3;
/// Port id of side A of the first hop (the engine numbers tool ports from
/// 2, after inline-1 and inline-2; side B is the next id).
const FIRST_TOOL_PORT: PortId = 2;

/// One measured path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MicroPath {
    /// inline-1 -> inline-2 only.
    Bridge,
    /// Both directions every round (a frame counts once, whichever way).
    BridgeBidir,
    /// The bridge one way with the queue's kernel-fallback lease renewed
    /// on every poll, as the engine runs it (needs CAP_BPF for the maps).
    #[serde(rename = "bridge-lease")]
    BridgeLease,
    /// Passive capture with one consumer that counts frames and bytes.
    Capture,
    /// inline-1 -> tool 1 -> inline-2, heartbeats on.
    #[serde(rename = "chain-1")]
    Chain1,
    /// inline-1 -> tool 1 -> tool 2 -> inline-2, heartbeats on.
    #[serde(rename = "chain-2")]
    Chain2,
    /// inline-1 -> tools 1 to 4 -> inline-2, heartbeats on.
    #[serde(rename = "chain-4")]
    Chain4,
}

impl MicroPath {
    pub const ALL: [MicroPath; 7] = [
        MicroPath::Bridge,
        MicroPath::BridgeBidir,
        MicroPath::BridgeLease,
        MicroPath::Capture,
        MicroPath::Chain1,
        MicroPath::Chain2,
        MicroPath::Chain4,
    ];
    /// The chain paths (`--path chain`).
    pub const CHAINS: [MicroPath; 3] = [MicroPath::Chain1, MicroPath::Chain2, MicroPath::Chain4];

    pub fn name(self) -> &'static str {
        match self {
            MicroPath::Bridge => "bridge",
            MicroPath::BridgeBidir => "bridge-bidir",
            MicroPath::BridgeLease => "bridge-lease",
            MicroPath::Capture => "capture",
            MicroPath::Chain1 => "chain-1",
            MicroPath::Chain2 => "chain-2",
            MicroPath::Chain4 => "chain-4",
        }
    }

    /// Tools in the chain (`None`: not a chain path; the bridge is the
    /// chain task with no hop).
    pub fn hops(self) -> Option<u32> {
        match self {
            MicroPath::Bridge
            | MicroPath::BridgeBidir
            | MicroPath::BridgeLease
            | MicroPath::Capture => None,
            MicroPath::Chain1 => Some(1),
            MicroPath::Chain2 => Some(2),
            MicroPath::Chain4 => Some(4),
        }
    }

    /// The function `--toggle-collect` switches on (see
    /// [`measured_chain_poll`]).
    fn poll_symbol(self) -> &'static str {
        match self {
            MicroPath::Capture => "*micro::measured_capture_poll*",
            MicroPath::Bridge
            | MicroPath::BridgeBidir
            | MicroPath::BridgeLease
            | MicroPath::Chain1
            | MicroPath::Chain2
            | MicroPath::Chain4 => "*micro::measured_chain_poll*",
        }
    }

    /// The function holding the whole driver loop (fake kernel included).
    fn loop_symbol(self) -> &'static str {
        match self {
            MicroPath::Bridge | MicroPath::BridgeBidir | MicroPath::BridgeLease => {
                "*micro::bridge_loop*"
            }
            MicroPath::Capture => "*micro::capture_loop*",
            MicroPath::Chain1 | MicroPath::Chain2 | MicroPath::Chain4 => "*micro::chain_loop*",
        }
    }
}

/// `--path`: one path or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSel(pub &'static [MicroPath]);

impl std::str::FromStr for PathSel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(PathSel(match s {
            "bridge" => &[MicroPath::Bridge],
            "bridge-bidir" => &[MicroPath::BridgeBidir],
            "bridge-lease" => &[MicroPath::BridgeLease],
            "capture" => &[MicroPath::Capture],
            "chain-1" => &[MicroPath::Chain1],
            "chain-2" => &[MicroPath::Chain2],
            "chain-4" => &[MicroPath::Chain4],
            "chain" => &MicroPath::CHAINS,
            "all" => &MicroPath::ALL,
            other => bail!(
                "unknown path {other:?}: use bridge, bridge-bidir, bridge-lease, capture, chain-1, chain-2, \
                 chain-4, chain (the three chains) or all"
            ),
        }))
    }
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct MicroConfig {
    pub paths: Vec<MicroPath>,
    /// Frames per timed repetition.
    pub frames: u64,
    /// Batch passed to `poll` (the worker's `batch_size`).
    pub batch: u32,
    /// Timed repetitions (the median is reported).
    pub reps: u32,
    pub callgrind: bool,
    /// Keeps the callgrind output files here (for `callgrind_annotate`).
    pub out: Option<PathBuf>,
}

impl MicroConfig {
    fn validate(&self) -> Result<()> {
        ensure!(
            (1..=MAX_BATCH.min(RING_SIZE)).contains(&self.batch),
            "--batch {} must be from 1 to {}",
            self.batch,
            MAX_BATCH.min(RING_SIZE)
        );
        ensure!(self.frames > 0, "--frames must be at least 1");
        ensure!(self.reps > 0, "--reps must be at least 1");
        Ok(())
    }
}

/// What one run of a driver loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopRun {
    /// Frames the fake kernel received and tapline handled (for a chain:
    /// delivered to inline-2).
    pub frames: u64,
    /// Calls of `poll`.
    pub polls: u64,
    /// Wall time of the loop alone (setup excluded).
    pub elapsed_s: f64,
    /// Heartbeats the task sent during the loop, all hops and both
    /// directions together (0 on paths without hops).
    pub heartbeats: u64,
}

/// Result of one path.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: MicroPath,
    pub batch: u32,
    pub frames_per_rep: u64,
    pub reps: u32,
    /// Median frames per second of the whole loop, fake kernel included.
    pub loop_frames_per_s: f64,
    /// The same as nanoseconds per frame.
    pub loop_ns_per_frame: f64,
    pub polls_per_frame: f64,
    /// Tools in the chain (chain paths only).
    pub hops: Option<u32>,
    /// The most heartbeats sent during one timed repetition.
    pub heartbeats_per_rep: u64,
    /// Instructions per frame inside `poll` (callgrind), when measured.
    pub poll_ir_per_frame: Option<f64>,
    /// Instructions per frame of the whole loop (callgrind), when measured.
    pub loop_ir_per_frame: Option<f64>,
    /// The most heartbeats sent during one callgrind run, when measured.
    pub callgrind_heartbeats: Option<u64>,
}

impl PathResult {
    /// Instructions in `poll` per forwarding step: a chain of N hops moves
    /// a frame N + 1 times (inline-1 -> hop 1, hop k -> hop k + 1, hop N ->
    /// inline-2); the bridge once.
    pub fn poll_ir_per_step(&self) -> Option<f64> {
        let steps = match self.path {
            MicroPath::Capture => return None,
            MicroPath::Bridge | MicroPath::BridgeBidir | MicroPath::BridgeLease => 1,
            _ => self.hops? + 1,
        };
        Some(self.poll_ir_per_frame? / f64::from(steps))
    }
}

/// Everything `tapline-bench micro` reports.
#[derive(Debug, Clone, Serialize)]
pub struct MicroResult {
    pub machine: Machine,
    pub frame_len: u32,
    pub ring_size: u32,
    pub frame_count: u32,
    pub callgrind_frames: Option<[u64; 2]>,
    pub target_ir_per_bridged_frame: f64,
    /// Heartbeat interval of the chain paths ([`CHAIN_HEARTBEAT`]).
    pub chain_heartbeat_interval_ms: u64,
    pub results: Vec<PathResult>,
}

impl MicroResult {
    /// What one more hop adds to a chain's instructions per frame in
    /// `poll`: the slope between the shortest and the longest chain
    /// measured (`None` without two chain lengths under callgrind).
    pub fn poll_ir_per_added_hop(&self) -> Option<f64> {
        let chains: Vec<(u32, f64)> = self
            .results
            .iter()
            .filter_map(|r| Some((r.hops?, r.poll_ir_per_frame?)))
            .collect();
        let lo = chains.iter().min_by_key(|c| c.0)?;
        let hi = chains.iter().max_by_key(|c| c.0)?;
        (hi.0 > lo.0).then(|| (hi.1 - lo.1) / f64::from(hi.0 - lo.0))
    }
}

/// Counts what the capture consumer saw; shared with the driver.
#[derive(Debug, Default)]
struct Tally {
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Frames that were not a [`FRAME_LEN`]-byte frame of ours (checked only
    /// with `verify`, as the check is the consumer's cost, not tapline's).
    foreign: AtomicU64,
}

/// The cheapest useful consumer: counts frames and bytes, as a real one
/// would count before deciding what to do with a frame.
#[derive(Debug)]
struct CountingConsumer {
    tally: Arc<Tally>,
    verify: bool,
}

impl CaptureConsumer for CountingConsumer {
    fn on_frame(&mut self, frame: &[u8]) {
        // Load and store, not `fetch_add`: only this thread writes, as with
        // the dataplane's own counters.
        let t = &*self.tally;
        t.frames
            .store(t.frames.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        t.bytes.store(
            t.bytes.load(Ordering::Relaxed) + frame.len() as u64,
            Ordering::Relaxed,
        );
        if self.verify && (frame.len() != FRAME_LEN as usize || !is_ours(frame, SENDER)) {
            t.foreign
                .store(t.foreign.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

/// One poll of the chain task (the bridge and chain paths), kept out of line
/// so callgrind can switch counting on at its entry and off at its exit:
/// everything between is tapline's code (whether or not LTO inlined
/// `ChainTask::poll` into it) plus a call and a return per batch. One
/// function for all these paths: two with the same body would be merged
/// into one symbol by LLVM, and each callgrind run drives one path anyway.
#[inline(never)]
pub fn measured_chain_poll(t: &mut ChainTask, batch: u32) -> PollOutcome {
    t.poll(batch)
}

/// As [`measured_chain_poll`], for capture.
#[inline(never)]
pub fn measured_capture_poll(t: &mut CaptureTask, batch: u32) -> PollOutcome {
    t.poll(batch)
}

/// Writes a frame of ours at [`HEADROOM_BYTES`] into every chunk of `pool`'s
/// UMEM (all chunks are in the pool before a task starts).
fn write_frames(umem: &Umem, pool: &mut FramePool) {
    let mut frames = Vec::with_capacity(pool.available());
    while let Some(f) = pool.alloc() {
        frames.push(f);
    }
    let start = HEADROOM_BYTES as usize;
    for (seq, f) in frames.iter_mut().enumerate() {
        let bytes = build_frame(FrameKind::Udp4, FRAME_LEN as usize, SENDER, seq as u32, 1);
        umem.data_mut(f)[start..start + bytes.len()].copy_from_slice(&bytes);
    }
    // Back in reverse, so the pool hands out low addresses first as when new.
    for f in frames.into_iter().rev() {
        pool.free(f);
    }
}

fn sizes() -> RingSizes {
    RingSizes {
        rx: RING_SIZE,
        tx: RING_SIZE,
        fill: RING_SIZE,
        completion: RING_SIZE,
    }
}

fn new_umem() -> Result<(Arc<Umem>, FramePool)> {
    let umem = Umem::new(FRAME_SIZE_BYTES, FRAME_COUNT).context("allocating the UMEM")?;
    let mut pool = FramePool::for_umem(&umem);
    write_frames(&umem, &mut pool);
    Ok((umem, pool))
}

/// The fake kernel's reusable buffers for one side (no allocation per round).
#[derive(Debug, Default)]
struct SideBufs {
    fill: Vec<u64>,
    rx: Vec<XdpDesc>,
    tx: Vec<XdpDesc>,
    comp: Vec<u64>,
}

impl SideBufs {
    fn with_capacity(n: usize) -> SideBufs {
        SideBufs {
            fill: Vec::with_capacity(n),
            rx: Vec::with_capacity(n),
            tx: Vec::with_capacity(n),
            comp: Vec::with_capacity(n),
        }
    }
}

/// Kernel RX in copy mode: up to `max` chunks from the fill ring become
/// received frames. Returns how many; they stay in `b.rx` for checking.
fn kernel_receive(k: &mut FakeKernel, b: &mut SideBufs, max: u64) -> usize {
    b.fill.clear();
    k.fill.kernel_pop(max as usize, &mut b.fill);
    b.rx.clear();
    b.rx.extend(b.fill.iter().map(|&chunk| XdpDesc {
        addr: chunk + HEADROOM_BYTES,
        len: FRAME_LEN,
        options: 0,
    }));
    k.rx.kernel_push(&b.rx)
}

/// Kernel TX: takes every descriptor on the TX ring and completes it at
/// once. Returns how many.
fn kernel_transmit(k: &mut FakeKernel, b: &mut SideBufs) -> Result<usize> {
    b.tx.clear();
    k.tx.kernel_pop(usize::MAX, &mut b.tx);
    b.comp.clear();
    b.comp.extend(b.tx.iter().map(|d| d.addr));
    let n = k.comp.kernel_push(&b.comp);
    ensure!(
        n == b.comp.len(),
        "completion ring full: {n} of {}",
        b.comp.len()
    );
    Ok(n)
}

/// Drives a bridge until `frames` frames went through (each way counts).
#[inline(never)]
fn bridge_loop(frames: u64, batch: u32, both_ways: bool, lease: bool) -> Result<LoopRun> {
    let (a, mut ka) = XskSocket::in_memory(sizes());
    let (b, mut kb) = XskSocket::in_memory(sizes());
    let (umem, pool) = new_umem()?;
    let segment = tapline_dataplane::stats::StatsSegment::in_memory(2, 0);
    let mut task = ChainTask::in_memory([a, b], pool, umem, segment);
    // The real lease map (a BPF_F_MMAPABLE array): the store the worker
    // does goes to the kernel's memory, as in production.
    let _maps = if lease {
        use tapline_dataplane::xdp::fallback::{FallbackAction, FallbackMaps};
        let maps = FallbackMaps::create(1, FallbackAction::Forward)
            .context("creating the fallback maps (the bridge-lease path needs CAP_BPF)")?;
        let stall_ns = u64::from(tapline_dataplane::config::DEFAULT_STALL_MS) * 1_000_000;
        task = task.with_lease(maps.lease(0, stall_ns, Arc::default()));
        Some(maps)
    } else {
        None
    };
    let mut bufs = [
        SideBufs::with_capacity(batch as usize),
        SideBufs::with_capacity(batch as usize),
    ];
    let (mut done, mut polls) = (0u64, 0u64);
    let mut per_side = [0u64; 2];
    let start = Instant::now();
    while done < frames {
        let want = u64::from(batch).min(frames - done);
        let got_a = kernel_receive(&mut ka, &mut bufs[0], want);
        let got_b = if both_ways {
            kernel_receive(
                &mut kb,
                &mut bufs[1],
                (frames - done - got_a as u64).min(want),
            )
        } else {
            0
        };
        ensure!(
            got_a + got_b > 0,
            "the fill rings ran dry after {done} frames: the bridge lost frames"
        );
        let out = measured_chain_poll(&mut task, batch);
        polls += 1;
        ensure!(
            out.frames as usize == got_a + got_b,
            "poll reported {} frames, the kernel received {}",
            out.frames,
            got_a + got_b
        );
        // Side 1's RX comes out on side 2's TX and vice versa.
        kernel_transmit(&mut kb, &mut bufs[1])?;
        kernel_transmit(&mut ka, &mut bufs[0])?;
        ensure!(
            bufs[1].tx == bufs[0].rx && bufs[0].tx == bufs[1].rx,
            "TX descriptors differ from the RX descriptors after {done} frames"
        );
        per_side[0] += got_a as u64;
        per_side[1] += got_b as u64;
        done += (got_a + got_b) as u64;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let c = [&task.ports()[0].counters, &task.ports()[1].counters];
    for (from, to) in [(0, 1), (1, 0)] {
        ensure!(
            c[from].rx_packets.get() == per_side[from] && c[to].tx_packets.get() == per_side[from],
            "counters: side {} rx {} / side {} tx {}, expected {}",
            from + 1,
            c[from].rx_packets.get(),
            to + 1,
            c[to].tx_packets.get(),
            per_side[from]
        );
    }
    Ok(LoopRun {
        frames: done,
        polls,
        elapsed_s,
        heartbeats: 0,
    })
}

/// Drives a capture task with one counting consumer until `frames` frames
/// were captured.
#[inline(never)]
fn capture_loop(frames: u64, batch: u32, verify: bool) -> Result<LoopRun> {
    let (s, mut k) = XskSocket::in_memory(sizes());
    let (umem, pool) = new_umem()?;
    let mut task = CaptureTask::in_memory(s, pool, umem);
    let tally = Arc::new(Tally::default());
    task.add_consumer(Box::new(CountingConsumer {
        tally: tally.clone(),
        verify,
    }));
    let mut bufs = SideBufs::with_capacity(batch as usize);
    let (mut done, mut polls) = (0u64, 0u64);
    let start = Instant::now();
    while done < frames {
        let got = kernel_receive(&mut k, &mut bufs, u64::from(batch).min(frames - done));
        ensure!(
            got > 0,
            "the fill ring ran dry after {done} frames: capture lost frames"
        );
        let out = measured_capture_poll(&mut task, batch);
        polls += 1;
        ensure!(
            out.frames as usize == got,
            "poll reported {} frames, the kernel received {got}",
            out.frames
        );
        done += got as u64;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let seen = tally.frames.load(Ordering::Relaxed);
    let bytes = tally.bytes.load(Ordering::Relaxed);
    ensure!(
        seen == done && bytes == done * u64::from(FRAME_LEN),
        "the consumer saw {seen} frames / {bytes} bytes, expected {done} / {}",
        done * u64::from(FRAME_LEN)
    );
    let foreign = tally.foreign.load(Ordering::Relaxed);
    ensure!(
        foreign == 0,
        "the consumer saw {foreign} frames that are not ours"
    );
    Ok(LoopRun {
        frames: done,
        polls,
        elapsed_s,
        heartbeats: 0,
    })
}

/// The fake kernel's side of one tool: the rings of its two ports, and per
/// direction the frames inside the tool.
#[derive(Debug)]
struct ToolWire {
    a: FakeKernel,
    b: FakeKernel,
    a_to_b: WireBufs,
    b_to_a: WireBufs,
}

/// One direction of a [`ToolWire`] (reused every round).
#[derive(Debug, Default)]
struct WireBufs {
    /// Transmitted on one side, not yet received on the other (only while
    /// the receiving side's fill ring is short).
    held: Vec<XdpDesc>,
    /// Chunks taken from the receiving side's fill ring this round.
    fill: Vec<u64>,
}

impl ToolWire {
    /// Plays the tool for one round, both ways. Returns the frames moved.
    fn run(&mut self) -> Result<usize> {
        Ok(wire(&mut self.a, &mut self.b, &mut self.a_to_b)?
            + wire(&mut self.b, &mut self.a, &mut self.b_to_a)?)
    }
}

/// Moves what `from`'s socket transmitted to `to`'s RX ring: each frame
/// arrives in the chunk it was sent from, and the chunk `to` lent on its
/// fill ring completes the transmission on `from` (the task gets back as
/// many chunks as it gave, as after copy mode's copy). Frames for which
/// `to` has no fill chunk wait in the tool for the next round.
fn wire(from: &mut FakeKernel, to: &mut FakeKernel, b: &mut WireBufs) -> Result<usize> {
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
struct ChainRig {
    task: ChainTask,
    /// inline-1, inline-2.
    inline: [FakeKernel; 2],
    tools: Vec<ToolWire>,
    hops: Vec<Arc<HopShared>>,
    segment: Arc<StatsSegment>,
    events: Receiver<HopEvent>,
    /// The control thread's end of the task's update channel: kept open,
    /// as in production, so `poll` checks an empty channel every time.
    _updates: Sender<TaskUpdate>,
}

impl ChainRig {
    /// Builds the task, installs a chain of `hops` tools through its update
    /// channel and polls (heartbeats crossing the fake tools) until every
    /// hop is up. No data frame moves here.
    fn start(hops: u32, batch: u32, heartbeat: Timing) -> Result<ChainRig> {
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
    fn hop_counters(&self, h: usize) -> Slot<HopCounters> {
        self.segment.hop_slot(h, 0)
    }

    /// Every hop's health and counters, and the frames held in the tools
    /// (for errors).
    fn describe(&self) -> String {
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
    fn heartbeats_sent(&self) -> u64 {
        (0..self.hops.len())
            .map(|h| self.hop_counters(h).heartbeats_sent.get())
            .sum()
    }
}

/// Drops of every reason on one port or hop.
fn drops(c: &[Counter]) -> u64 {
    DropReason::ALL.iter().map(|&r| c[r as usize].get()).sum()
}

/// Sends `frames` frames into inline-1 of `rig`'s chain and runs until they
/// all came out of inline-2, through every tool.
#[inline(never)]
fn chain_loop(rig: &mut ChainRig, frames: u64, batch: u32) -> Result<LoopRun> {
    let mut inline = [
        SideBufs::with_capacity(batch as usize),
        SideBufs::with_capacity(batch as usize),
    ];
    // Descriptors received on inline-1 and not yet transmitted on inline-2.
    let mut in_flight: VecDeque<XdpDesc> = VecDeque::with_capacity(RING_SIZE as usize);
    let heartbeats_before = rig.heartbeats_sent();
    let (mut sent, mut delivered, mut polls, mut idle) = (0u64, 0u64, 0u64, 0u32);
    let start = Instant::now();
    while delivered < frames {
        let got = if sent < frames {
            let want = u64::from(batch).min(frames - sent);
            let got = kernel_receive(&mut rig.inline[0], &mut inline[0], want);
            ensure!(
                got == inline[0].rx.len(),
                "inline-1's RX ring is full after {sent} frames"
            );
            in_flight.extend(&inline[0].rx);
            got
        } else {
            0
        };
        sent += got as u64;
        let out = measured_chain_poll(&mut rig.task, batch);
        polls += 1;
        let mut moved = 0;
        for t in rig.tools.iter_mut() {
            moved += t.run()?;
        }
        let out_n = kernel_transmit(&mut rig.inline[1], &mut inline[1])?;
        for d in &inline[1].tx {
            let want = in_flight.pop_front();
            ensure!(
                want == Some(*d),
                "inline-2 transmitted {d:?} after {delivered} frames, expected {want:?}"
            );
        }
        delivered += out_n as u64;
        if got + out_n + moved == 0 && out.frames == 0 {
            idle += 1;
            ensure!(
                idle < MAX_IDLE_ROUNDS,
                "frames lost in the chain: {sent} received on inline-1, {delivered} \
                 transmitted on inline-2, nothing moves; {}",
                rig.describe()
            );
        } else {
            idle = 0;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let heartbeats = rig.heartbeats_sent() - heartbeats_before;
    check_chain_counters(rig, frames)?;
    Ok(LoopRun {
        frames: delivered,
        polls,
        elapsed_s,
        heartbeats,
    })
}

/// After a chain loop of `frames` frames (the rig's only data frames):
/// inline-1 received them all, inline-2 transmitted them all, every tool
/// got them and gave them back, nothing was dropped, went around a tool or
/// went west, and every hop is still up.
fn check_chain_counters(rig: &mut ChainRig, frames: u64) -> Result<()> {
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
fn chain_run(hops: u32, frames: u64, batch: u32) -> Result<LoopRun> {
    let mut rig = ChainRig::start(hops, batch, CHAIN_HEARTBEAT)
        .with_context(|| format!("setting up a chain of {hops} hops"))?;
    chain_loop(&mut rig, frames, batch)
}

/// Runs one path's loop once (what the callgrind child does).
pub fn run_once(path: MicroPath, frames: u64, batch: u32) -> Result<LoopRun> {
    match path {
        MicroPath::Bridge => bridge_loop(frames, batch, false, false),
        MicroPath::BridgeBidir => bridge_loop(frames, batch, true, false),
        MicroPath::BridgeLease => bridge_loop(frames, batch, false, true),
        MicroPath::Capture => capture_loop(frames, batch, false),
        MicroPath::Chain1 | MicroPath::Chain2 | MicroPath::Chain4 => {
            let hops = path.hops().expect("a chain path has hops");
            chain_run(hops, frames, batch)
        }
    }
}

/// What `micro --inner` does: runs each path's loop once and prints its
/// [`LoopRun`] as one JSON line on stdout (read back by the parent of a
/// callgrind run).
pub fn run_inner(paths: &[MicroPath], frames: u64, batch: u32) -> Result<()> {
    for &p in paths {
        let r = run_once(p, frames, batch)?;
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

/// Instruction count of one callgrind run, and what its loop did.
fn callgrind_ir(
    path: MicroPath,
    frames: u64,
    batch: u32,
    toggle: &str,
    out_file: &Path,
) -> Result<(u64, LoopRun)> {
    let exe = std::env::current_exe().context("finding tapline-bench's own executable")?;
    let res = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={toggle}"))
        .arg(&exe)
        .args(["micro", "--inner", "--path", path.name()])
        .arg(format!("--frames={frames}"))
        .arg(format!("--batch={batch}"))
        .stdin(Stdio::null())
        .output()
        .context("running valgrind")?;
    if !res.status.success() {
        bail!(
            "valgrind --tool=callgrind on {} micro --path {} failed ({}):\n{}",
            exe.display(),
            path.name(),
            res.status,
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let text = std::fs::read_to_string(out_file)
        .with_context(|| format!("reading {}", out_file.display()))?;
    let ir = parse_callgrind_total(&text)
        .with_context(|| format!("no totals line in {}", out_file.display()))?;
    ensure!(
        ir > 0,
        "callgrind counted no instructions in {toggle}: the symbol was not found \
         (renamed, or inlined into its caller)"
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let run: LoopRun = serde_json::from_str(line)
        .with_context(|| format!("reading the loop's summary from {line:?}"))?;
    ensure!(
        run.frames == frames,
        "the loop under callgrind handled {} frames, expected {frames}",
        run.frames
    );
    Ok((ir, run))
}

/// The `totals:` (or older `summary:`) line of a callgrind output file.
fn parse_callgrind_total(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Instructions per frame inside `toggle`, from two runs (difference
/// method), and the most heartbeats either run sent.
fn ir_per_frame(
    path: MicroPath,
    batch: u32,
    toggle: &str,
    what: &str,
    dir: &Path,
) -> Result<(f64, u64)> {
    let [f1, f2] = CALLGRIND_FRAMES;
    let file = |f: u64| dir.join(format!("callgrind.{}.{what}.{f}.out", path.name()));
    let (i1, r1) = callgrind_ir(path, f1, batch, toggle, &file(f1))?;
    let (i2, r2) = callgrind_ir(path, f2, batch, toggle, &file(f2))?;
    let heartbeats = match path.hops() {
        Some(_) => format!(" ({} and {} heartbeats sent)", r1.heartbeats, r2.heartbeats),
        None => String::new(),
    };
    eprintln!(
        "callgrind {} {what}: {i1} Ir at {f1} frames, {i2} Ir at {f2} frames{heartbeats}",
        path.name()
    );
    Ok((
        (i2 as f64 - i1 as f64) / (f2 - f1) as f64,
        r1.heartbeats.max(r2.heartbeats),
    ))
}

fn check_valgrind() -> Result<()> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "`valgrind --version` failed ({}): --callgrind needs a working valgrind",
            o.status
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("--callgrind needs valgrind, which is not on PATH (apt-get install valgrind)")
        }
        Err(e) => Err(e).context("running `valgrind --version`"),
    }
}

/// Runs every selected path: timed repetitions, then callgrind if asked.
pub fn run(cfg: &MicroConfig) -> Result<MicroResult> {
    cfg.validate()?;
    if cfg.callgrind {
        check_valgrind()?;
    }
    let mut results = Vec::new();
    for &path in &cfg.paths {
        // Warm-up: page in the UMEM's code and data paths once.
        run_once(path, cfg.frames.min(100_000), cfg.batch)?;
        let mut fps = Vec::new();
        let (mut polls, mut heartbeats) = (0, 0);
        for rep in 1..=cfg.reps {
            let r = run_once(path, cfg.frames, cfg.batch)?;
            let f = r.frames as f64 / r.elapsed_s;
            eprintln!(
                "{} rep {rep}: {} frames in {:.3} s, {:.2} Mframes/s (whole loop)",
                path.name(),
                r.frames,
                r.elapsed_s,
                f / 1e6
            );
            fps.push(f);
            polls = r.polls;
            heartbeats = heartbeats.max(r.heartbeats);
        }
        let loop_fps = median(&fps);
        let (poll_ir, loop_ir, callgrind_heartbeats) = if cfg.callgrind {
            let tmp;
            let dir = match &cfg.out {
                Some(d) => d.as_path(),
                None => {
                    tmp =
                        std::env::temp_dir().join(format!("tapline-micro-{}", std::process::id()));
                    tmp.as_path()
                }
            };
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let (p, hb_p) = ir_per_frame(path, cfg.batch, path.poll_symbol(), "poll", dir)?;
            let (l, hb_l) = ir_per_frame(path, cfg.batch, path.loop_symbol(), "loop", dir)?;
            if cfg.out.is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
            (Some(p), Some(l), Some(hb_p.max(hb_l)))
        } else {
            (None, None, None)
        };
        results.push(PathResult {
            path,
            batch: cfg.batch,
            frames_per_rep: cfg.frames,
            reps: cfg.reps,
            loop_frames_per_s: loop_fps,
            loop_ns_per_frame: 1e9 / loop_fps,
            polls_per_frame: polls as f64 / cfg.frames as f64,
            hops: path.hops(),
            heartbeats_per_rep: heartbeats,
            poll_ir_per_frame: poll_ir,
            loop_ir_per_frame: loop_ir,
            callgrind_heartbeats,
        });
    }
    Ok(MicroResult {
        machine: Machine::describe(),
        frame_len: FRAME_LEN,
        ring_size: RING_SIZE,
        frame_count: FRAME_COUNT,
        callgrind_frames: cfg.callgrind.then_some(CALLGRIND_FRAMES),
        target_ir_per_bridged_frame: TARGET_IR_PER_BRIDGED_FRAME,
        chain_heartbeat_interval_ms: CHAIN_HEARTBEAT.interval_ns / MS,
        results,
    })
}

/// The result as Markdown: a table and what the columns mean.
pub fn markdown(r: &MicroResult) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|p| {
            let verdict = match (p.path, p.poll_ir_per_frame) {
                (MicroPath::Bridge | MicroPath::BridgeBidir | MicroPath::BridgeLease, Some(ir)) => {
                    if ir <= r.target_ir_per_bridged_frame {
                        format!("met (<= {})", r.target_ir_per_bridged_frame)
                    } else {
                        format!("missed (> {})", r.target_ir_per_bridged_frame)
                    }
                }
                _ => "-".to_string(),
            };
            vec![
                p.path.name().to_string(),
                p.batch.to_string(),
                format!("{:.2}", p.loop_frames_per_s / 1e6),
                format!("{:.1}", p.loop_ns_per_frame),
                opt(p.poll_ir_per_frame),
                opt(p.loop_ir_per_frame),
                verdict,
            ]
        })
        .collect();
    let mut s = crate::report::markdown_table(
        &[
            "path",
            "batch",
            "Mframes/s (whole loop)",
            "ns/frame (whole loop)",
            "Ir/frame in poll",
            "Ir/frame whole loop",
            "bridge target",
        ],
        &rows,
    );
    s += &format!(
        "\n{}-byte frames, in-memory rings of {}, {} frames of {} bytes in the UMEM; {} ({} CPUs), kernel {}.\n",
        r.frame_len,
        r.ring_size,
        r.frame_count,
        FRAME_SIZE_BYTES,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel
    );
    s += "Frames/s time the whole loop: the fake kernel (fill -> RX, TX -> completion) and the \
          conservation checks run on the same thread, so tapline alone is faster.\n";
    if let Some([f1, f2]) = r.callgrind_frames {
        s += &format!(
            "Ir/frame: instructions counted by callgrind inside the task's poll (or the whole \
             driver loop), (Ir({f2}) - Ir({f1})) / {} frames, so setup cancels out; \
             bridge-bidir counts a frame once whichever way it goes; capture includes one \
             consumer that counts frames and bytes.\n",
            f2 - f1
        );
    }
    let chains: Vec<&PathResult> = r.results.iter().filter(|p| p.hops.is_some()).collect();
    if !chains.is_empty() {
        let timed_hb = chains
            .iter()
            .map(|p| p.heartbeats_per_rep)
            .max()
            .unwrap_or(0);
        let callgrind_hb = chains.iter().filter_map(|p| p.callgrind_heartbeats).max();
        s += &format!(
            "Chain paths (chain-N: N tools): the chain task built as the engine builds queue 0's, \
             every port on one UMEM, the chain installed through its update channel; the fake \
             kernel plays each tool as a wire (what the task transmits on side A of a hop comes \
             back on side B in the same chunk, without copy mode's copy, and the other way \
             round). Ir/frame is per frame delivered to inline-2, which takes N + 1 forwarding \
             steps, each reading the frame's ethertype to take heartbeats out. Heartbeats run as \
             in production: every poll reads the clock and every millisecond the hops are judged \
             (both counted in poll; as the judging follows the clock, the chains' Ir/frame moves \
             by about 1% from run to run under callgrind); with an interval of {} ms, one round \
             of heartbeats brings the tools up before the measured loop and the loops themselves \
             sent at most {timed_hb} heartbeats per timed repetition{}.\n",
            r.chain_heartbeat_interval_ms,
            callgrind_hb.map_or(String::new(), |h| format!(" and {h} per callgrind run"))
        );
        let steps: Vec<String> = r
            .results
            .iter()
            .filter_map(|p| Some(format!("{} {:.1}", p.path.name(), p.poll_ir_per_step()?)))
            .collect();
        if !steps.is_empty() {
            s += &format!(
                "Ir/frame in poll per forwarding step: {}.",
                steps.join(", ")
            );
            if let Some(per_hop) = r.poll_ir_per_added_hop() {
                s += &format!(" Each added hop costs {per_hop:.1} Ir/frame in poll.");
            }
            s += "\n";
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_one_way_forwards_every_frame() {
        // 5000 is not a multiple of the batch: the last round is partial.
        let r = bridge_loop(5000, 64, false, false).unwrap();
        assert_eq!(r.frames, 5000);
        assert_eq!(r.polls, 5000_u64.div_ceil(64));
    }

    #[test]
    fn bridge_both_ways_forwards_every_frame() {
        // More frames than the UMEM holds, so every chunk is reused.
        let r = bridge_loop(20_000, 64, true, false).unwrap();
        assert_eq!(r.frames, 20_000);
        assert_eq!(r.polls, 20_000_u64.div_ceil(128));
    }

    #[test]
    fn capture_shows_every_frame_to_the_consumer() {
        let r = capture_loop(20_000, 32, true).unwrap();
        assert_eq!(r.frames, 20_000);
        assert_eq!(r.polls, 20_000_u64.div_ceil(32));
    }

    #[test]
    fn chains_deliver_every_frame_through_every_tool() {
        for hops in [1, 2, 4] {
            // More frames than the UMEM holds, a partial last batch.
            let r = chain_run(hops, 20_000, 64).unwrap();
            assert_eq!(r.frames, 20_000, "{hops} hops");
            // A frame takes one poll per forwarding step to come out.
            assert_eq!(
                r.polls,
                20_000_u64.div_ceil(64) + u64::from(hops),
                "{hops} hops"
            );
        }
    }

    #[test]
    fn a_tool_holds_what_its_other_side_cannot_receive_yet() {
        let (mut sa, mut ka) = XskSocket::in_memory(sizes());
        let (mut sb, mut kb) = XskSocket::in_memory(sizes());
        let mut pool = FramePool::new(FRAME_SIZE_BYTES, 16);
        let mut sent = Vec::new();
        for _ in 0..3 {
            let mut f = pool.alloc().unwrap();
            f.set_len(FRAME_LEN);
            sent.push(f.addr());
            sa.tx.as_mut().unwrap().push(f).unwrap();
        }
        // Side B lends two chunks: two frames cross, one waits.
        assert_eq!(sb.fill.refill(&mut pool, 2), 2);
        let mut bufs = WireBufs::default();
        assert_eq!(wire(&mut ka, &mut kb, &mut bufs).unwrap(), 2);
        assert_eq!(bufs.held.len(), 1);
        assert_eq!(sb.fill.refill(&mut pool, 1), 1);
        assert_eq!(wire(&mut ka, &mut kb, &mut bufs).unwrap(), 1);
        assert!(bufs.held.is_empty());
        // B receives A's frames, in order and unchanged; A's completions
        // hand back as many chunks (B's fill chunks).
        let mut got = Vec::new();
        assert_eq!(sb.rx.as_mut().unwrap().recv(64, &mut got), 3);
        let got_addrs: Vec<u64> = got.iter().map(|f| f.addr()).collect();
        assert_eq!(got_addrs, sent);
        assert!(got.iter().all(|f| f.len() == FRAME_LEN));
        assert_eq!(sa.comp.reap(&mut pool, u32::MAX), 3);
        for f in got {
            pool.free(f);
        }
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn the_hops_have_every_heartbeat_that_can_bring_them_up() {
        // Two heartbeats missed (the third would take the hop down): the
        // third goes out two intervals after the first.
        let t = CHAIN_HEARTBEAT;
        assert_eq!(
            hops_up_timeout(&t),
            Duration::from_nanos(2 * t.interval_ns + t.timeout_ns) + HOPS_UP_MARGIN
        );
        let quick = Timing {
            interval_ns: MS,
            timeout_ns: 10_000 * MS,
            ..CHAIN_HEARTBEAT
        };
        assert_eq!(
            hops_up_timeout(&quick),
            Duration::from_millis(10_002) + HOPS_UP_MARGIN
        );
    }

    #[test]
    fn heartbeats_between_the_frames_take_nothing_from_them() {
        // A 1 ms interval: heartbeats cross the tools among the frames and
        // are taken out of the stream before inline-2; `chain_loop` checks
        // that inline-2 still transmits exactly the frames, in order. The
        // loop grows until it outlasts an interval, whatever the build. The
        // long timeout keeps a test thread descheduled for a while (tests
        // run in parallel) from failing the hops.
        let timing = Timing {
            interval_ns: MS,
            timeout_ns: 10_000 * MS,
            ..CHAIN_HEARTBEAT
        };
        let mut frames = 50_000;
        loop {
            let mut rig = ChainRig::start(2, 32, timing).unwrap();
            let r = chain_loop(&mut rig, frames, 32).unwrap();
            assert_eq!(r.frames, frames);
            if r.heartbeats > 0 {
                for h in 0..2 {
                    let c = rig.hop_counters(h);
                    assert_eq!(c.heartbeats_lost.get(), 0, "hop {h}");
                    assert!(c.heartbeats_returned.get() >= 2, "hop {h}");
                }
                break;
            }
            assert!(frames < 10_000_000, "no heartbeat during {frames} frames");
            frames *= 4;
        }
    }

    #[test]
    fn umem_holds_a_frame_of_ours_in_every_chunk() {
        let (umem, mut pool) = new_umem().unwrap();
        assert_eq!(pool.available(), FRAME_COUNT as usize);
        let mut f = pool.alloc().unwrap();
        f.set_len(HEADROOM_BYTES as u32 + FRAME_LEN);
        let at = HEADROOM_BYTES as usize;
        let bytes = &umem.data(&f)[at..];
        assert_eq!(bytes, &build_frame(FrameKind::Udp4, 60, SENDER, 0, 1)[..]);
        pool.free(f);
    }

    #[test]
    fn callgrind_totals_are_parsed() {
        let text = "events: Ir\nfn=foo\n1 2\ntotals: 12345\n";
        assert_eq!(parse_callgrind_total(text), Some(12345));
        assert_eq!(parse_callgrind_total("summary: 7\n"), Some(7));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn path_selection_parses() {
        assert_eq!("all".parse::<PathSel>().unwrap().0, &MicroPath::ALL);
        assert_eq!(
            "capture".parse::<PathSel>().unwrap().0,
            &[MicroPath::Capture]
        );
        assert_eq!("chain".parse::<PathSel>().unwrap().0, &MicroPath::CHAINS);
        assert_eq!(
            "chain-4".parse::<PathSel>().unwrap().0,
            &[MicroPath::Chain4]
        );
        assert!("chain-3".parse::<PathSel>().is_err());
        assert!("bridges".parse::<PathSel>().is_err());
    }
}
