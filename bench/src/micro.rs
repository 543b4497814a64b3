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
//! Conservation is checked every round, so a broken path cannot produce a
//! number: the bridge must put on the other side's TX ring exactly the
//! descriptors the kernel received, in order; capture must report every
//! frame, and its consumer must see every frame with its length.
//!
//! Two measurements:
//! - frames per second of the whole loop (fake kernel and checks included:
//!   an upper bound on tapline's cost, and noisy on a shared VM);
//! - with `--callgrind`, instructions per frame of the task's `poll` alone,
//!   from `valgrind --tool=callgrind --toggle-collect` on
//!   [`measured_bridge_poll`] / [`measured_capture_poll`] at two frame
//!   counts: the difference of the instruction counts over the difference of
//!   frames cancels setup and teardown, and the count is deterministic.
//!   (Demangled patterns such as `*ChainTask::poll*` work as well while
//!   `poll` is not inlined; mangled `_ZN...` patterns match nothing.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use tapline_dataplane::config::MAX_BATCH;
use tapline_dataplane::pipeline::{CaptureConsumer, CaptureTask, ChainTask, PollOutcome};
use tapline_dataplane::xdp::socket::FakeKernel;
use tapline_dataplane::xdp::{FramePool, RingSizes, Umem, XdpDesc, XskSocket};

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

/// One measured path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MicroPath {
    /// inline-1 -> inline-2 only.
    Bridge,
    /// Both directions every round (a frame counts once, whichever way).
    BridgeBidir,
    /// Passive capture with one consumer that counts frames and bytes.
    Capture,
}

impl MicroPath {
    pub const ALL: [MicroPath; 3] = [
        MicroPath::Bridge,
        MicroPath::BridgeBidir,
        MicroPath::Capture,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MicroPath::Bridge => "bridge",
            MicroPath::BridgeBidir => "bridge-bidir",
            MicroPath::Capture => "capture",
        }
    }

    /// The function `--toggle-collect` switches on (see [`measured_poll`]).
    fn poll_symbol(self) -> &'static str {
        match self {
            MicroPath::Bridge | MicroPath::BridgeBidir => "*micro::measured_bridge_poll*",
            MicroPath::Capture => "*micro::measured_capture_poll*",
        }
    }

    /// The function holding the whole driver loop (fake kernel included).
    fn loop_symbol(self) -> &'static str {
        match self {
            MicroPath::Bridge | MicroPath::BridgeBidir => "*micro::bridge_loop*",
            MicroPath::Capture => "*micro::capture_loop*",
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
            "capture" => &[MicroPath::Capture],
            "all" => &MicroPath::ALL,
            other => bail!("unknown path {other:?}: use bridge, bridge-bidir, capture or all"),
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoopRun {
    /// Frames the fake kernel received and tapline handled.
    pub frames: u64,
    /// Calls of `poll`.
    pub polls: u64,
    /// Wall time of the loop alone (setup excluded).
    pub elapsed_s: f64,
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
    /// Instructions per frame inside `poll` (callgrind), when measured.
    pub poll_ir_per_frame: Option<f64>,
    /// Instructions per frame of the whole loop (callgrind), when measured.
    pub loop_ir_per_frame: Option<f64>,
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
    pub results: Vec<PathResult>,
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

/// One poll of a bridge, kept out of line so callgrind can switch counting on
/// at its entry and off at its exit: everything between is tapline's code
/// (whether or not LTO inlined `ChainTask::poll` into it) plus a call and a
/// return per batch.
#[inline(never)]
pub fn measured_bridge_poll(t: &mut ChainTask, batch: u32) -> PollOutcome {
    t.poll(batch)
}

/// As [`measured_bridge_poll`], for capture.
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
fn bridge_loop(frames: u64, batch: u32, both_ways: bool) -> Result<LoopRun> {
    let (a, mut ka) = XskSocket::in_memory(sizes());
    let (b, mut kb) = XskSocket::in_memory(sizes());
    let (umem, pool) = new_umem()?;
    let segment = tapline_dataplane::stats::StatsSegment::in_memory(2, 0);
    let mut task = ChainTask::in_memory([a, b], pool, umem, segment);
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
        let out = measured_bridge_poll(&mut task, batch);
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
    })
}

/// Runs one path's loop once (what the callgrind child does).
pub fn run_once(path: MicroPath, frames: u64, batch: u32) -> Result<LoopRun> {
    match path {
        MicroPath::Bridge => bridge_loop(frames, batch, false),
        MicroPath::BridgeBidir => bridge_loop(frames, batch, true),
        MicroPath::Capture => capture_loop(frames, batch, false),
    }
}

/// Instruction counts of one callgrind run.
fn callgrind_ir(
    path: MicroPath,
    frames: u64,
    batch: u32,
    toggle: &str,
    out_file: &Path,
) -> Result<u64> {
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
        .stdout(Stdio::null())
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
    Ok(ir)
}

/// The `totals:` (or older `summary:`) line of a callgrind output file.
fn parse_callgrind_total(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Instructions per frame inside `toggle`, from two runs (difference method).
fn ir_per_frame(path: MicroPath, batch: u32, toggle: &str, what: &str, dir: &Path) -> Result<f64> {
    let [f1, f2] = CALLGRIND_FRAMES;
    let file = |f: u64| dir.join(format!("callgrind.{}.{what}.{f}.out", path.name()));
    let i1 = callgrind_ir(path, f1, batch, toggle, &file(f1))?;
    let i2 = callgrind_ir(path, f2, batch, toggle, &file(f2))?;
    eprintln!(
        "callgrind {} {what}: {i1} Ir at {f1} frames, {i2} Ir at {f2} frames",
        path.name()
    );
    Ok((i2 as f64 - i1 as f64) / (f2 - f1) as f64)
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
        let mut polls = 0;
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
        }
        let loop_fps = median(&fps);
        let (poll_ir, loop_ir) = if cfg.callgrind {
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
            let p = ir_per_frame(path, cfg.batch, path.poll_symbol(), "poll", dir)?;
            let l = ir_per_frame(path, cfg.batch, path.loop_symbol(), "loop", dir)?;
            if cfg.out.is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
            (Some(p), Some(l))
        } else {
            (None, None)
        };
        results.push(PathResult {
            path,
            batch: cfg.batch,
            frames_per_rep: cfg.frames,
            reps: cfg.reps,
            loop_frames_per_s: loop_fps,
            loop_ns_per_frame: 1e9 / loop_fps,
            polls_per_frame: polls as f64 / cfg.frames as f64,
            poll_ir_per_frame: poll_ir,
            loop_ir_per_frame: loop_ir,
        });
    }
    Ok(MicroResult {
        machine: Machine::describe(),
        frame_len: FRAME_LEN,
        ring_size: RING_SIZE,
        frame_count: FRAME_COUNT,
        callgrind_frames: cfg.callgrind.then_some(CALLGRIND_FRAMES),
        target_ir_per_bridged_frame: TARGET_IR_PER_BRIDGED_FRAME,
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
                (MicroPath::Bridge | MicroPath::BridgeBidir, Some(ir)) => {
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
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_one_way_forwards_every_frame() {
        // 5000 is not a multiple of the batch: the last round is partial.
        let r = bridge_loop(5000, 64, false).unwrap();
        assert_eq!(r.frames, 5000);
        assert_eq!(r.polls, 5000_u64.div_ceil(64));
    }

    #[test]
    fn bridge_both_ways_forwards_every_frame() {
        // More frames than the UMEM holds, so every chunk is reused.
        let r = bridge_loop(20_000, 64, true).unwrap();
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
        assert!("bridges".parse::<PathSel>().is_err());
    }
}
