//! `tapline-bench micro | micro-filter`: per-frame costs of tapline's own
//! code, without a lab.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tapline_bench::{filter_micro, micro};

use super::publish;

#[derive(Debug, Args)]
pub(crate) struct MicroArgs {
    /// bridge, bridge-bidir, capture, chain-1, chain-2, chain-4 (a chain
    /// of 1, 2 or 4 tools, heartbeats on), chain (the three chains) or all.
    #[arg(long, default_value = "all")]
    path: micro::PathSel,
    /// Frames per timed repetition.
    #[arg(long, default_value_t = 20_000_000)]
    frames: u64,
    /// Batch passed to poll (the worker's batch_size).
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: u32,
    /// Also count instructions per frame under valgrind --tool=callgrind.
    #[arg(long)]
    callgrind: bool,
    /// Write micro.json, micro.md and the callgrind files under this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run one loop and exit (what --callgrind runs under valgrind).
    #[arg(long, hide = true)]
    inner: bool,
}

impl MicroArgs {
    pub(crate) fn run(self) -> Result<()> {
        if self.inner {
            return micro::run_inner(self.path.0, self.frames, self.batch);
        }
        let cfg = micro::MicroConfig {
            paths: self.path.0.to_vec(),
            frames: self.frames,
            batch: self.batch,
            reps: self.reps,
            callgrind: self.callgrind,
            out: self.out.clone(),
        };
        let r = micro::run(&cfg)?;
        let md = micro::markdown(&r);
        publish(self.out.as_deref(), "micro", &r, &md)
    }
}

#[derive(Debug, Args)]
pub(crate) struct MicroFilterArgs {
    /// Frames per timed repetition (per filter).
    #[arg(long, default_value_t = 5_000_000)]
    frames: u64,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: u32,
    /// Write micro-filter.json and micro-filter.md under this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl MicroFilterArgs {
    pub(crate) fn run(self) -> Result<()> {
        let r = filter_micro::run(self.frames, self.reps)?;
        let md = filter_micro::markdown(&r);
        publish(self.out.as_deref(), "micro-filter", &r, &md)
    }
}
