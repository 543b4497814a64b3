//! The whole run over the selected paths, and one path in this process
//! (what a callgrind run executes).

use anyhow::{Context, Result};

use crate::report::{median, Machine};

use super::callgrind::{check_valgrind, ir_per_frame};
use super::chain::chain_run;
use super::{
    bridge_loop, capture_loop, LoopRun, MicroConfig, MicroPath, MicroResult, PathResult,
    CALLGRIND_FRAMES, CHAIN_HEARTBEAT, FRAME_COUNT, FRAME_LEN, MS, RING_SIZE,
    TARGET_IR_PER_BRIDGED_FRAME,
};

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
