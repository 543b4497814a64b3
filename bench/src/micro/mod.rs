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

mod callgrind;
mod chain;
mod consumer;
mod report;
mod rings;
mod run;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tapline_config::heartbeat::Timing;
use tapline_config::MAX_BATCH;
use tapline_dataplane::chain::runtime::PortId;
use tapline_dataplane::pipeline::{CaptureTask, ChainTask, PollOutcome};
use tapline_dataplane::xdp::{XdpDesc, XskSocket};

use crate::report::Machine;

use chain::{check_chain_counters, ChainRig};
use consumer::{CountingConsumer, Tally};
pub use report::markdown;
use rings::{kernel_receive, kernel_transmit, new_umem, sizes, SideBufs};
pub use run::{run, run_inner, run_once};

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

impl LoopRun {
    /// A run of a path without hops (no heartbeats).
    fn hopless(frames: u64, polls: u64, elapsed_s: f64) -> LoopRun {
        LoopRun {
            frames,
            polls,
            elapsed_s,
            heartbeats: 0,
        }
    }
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

// The measured functions and loops stay in this module: callgrind finds
// them by path (`*micro::measured_chain_poll*`, `*micro::chain_loop*`,
// ... in `MicroPath::poll_symbol` and `loop_symbol`).

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

/// Drives a bridge until `frames` frames went through (each way counts).
#[inline(never)]
fn bridge_loop(frames: u64, batch: u32, both_ways: bool, lease: bool) -> Result<LoopRun> {
    let (a, mut ka) = XskSocket::in_memory(sizes());
    let (b, mut kb) = XskSocket::in_memory(sizes());
    let (umem, pool) = new_umem()?;
    let segment = tapline_segment::StatsSegment::in_memory(2, 0);
    let mut task = ChainTask::in_memory([a, b], pool, umem, segment);
    // The real lease map (a BPF_F_MMAPABLE array): the store the worker
    // does goes to the kernel's memory, as in production.
    let _maps = if lease {
        use tapline_dataplane::xdp::fallback::{FallbackAction, FallbackMaps};
        let maps = FallbackMaps::create(1, FallbackAction::Forward)
            .context("creating the fallback maps (the bridge-lease path needs CAP_BPF)")?;
        let stall_ns = u64::from(tapline_config::DEFAULT_STALL_MS) * 1_000_000;
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
    Ok(LoopRun::hopless(done, polls, elapsed_s))
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
    Ok(LoopRun::hopless(done, polls, elapsed_s))
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
