//! `[dataplane]`: the state directory and the worker threads.

use std::path::PathBuf;

use crate::error::{err, ConfigError};
use crate::raw::RawDataplane;

/// Largest batch a worker handles in one go (bounds on-stack arrays).
pub const MAX_BATCH: u32 = 256;
/// Upper bound of `idle_spins` (about a second of spinning).
const MAX_IDLE_SPINS: u32 = 10_000_000;
/// Bounds of `idle_wait_ms`.
const IDLE_WAIT_MS: std::ops::RangeInclusive<u32> = 1..=1000;
/// Bounds of `kernel_stats_interval_ms`.
const KERNEL_STATS_MS: std::ops::RangeInclusive<u32> = 10..=60_000;

named_enum! {
    /// `dataplane.idle`: what a worker does when it finds no work.
    pub enum IdleKind: "an idle mode" {
        /// Spin forever.
        Busy = "busy",
        /// Spin, then block in poll(2).
        Backoff = "backoff",
    }
}

/// What a worker does when it finds no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleMode {
    /// Spin forever: lowest latency, one CPU per worker at 100%.
    Busy,
    /// After `spins` empty polls, block in poll(2) for up to `wait_ms`
    /// (woken at once by the next frame).
    Backoff { spins: u32, wait_ms: u32 },
}

/// Worker-thread settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// CPUs to pin one worker each to; empty: one unpinned worker per task.
    pub cpus: Vec<usize>,
    pub batch_size: u32,
    pub idle: IdleMode,
    /// How often workers refresh the kernel's `XDP_STATISTICS`.
    pub kernel_stats_interval_ms: u32,
}

/// CPUs in this process's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

fn check_state_dir(d: &PathBuf) -> Result<(), ConfigError> {
    if d.as_os_str().is_empty() || !d.is_absolute() {
        return Err(err(
            "dataplane.state_dir",
            format!("{d:?} must be an absolute path (the pod's shared emptyDir)"),
        ));
    }
    Ok(())
}

fn check_cpus(cpus: &[usize]) -> Result<(), ConfigError> {
    if !cpus.is_empty() {
        // Check against the CPUs this process may run on (its affinity
        // mask: a Kubernetes cpuset, taskset), not just the CPU count.
        let allowed = allowed_cpus();
        for &c in cpus {
            if !allowed.contains(&c) {
                return Err(err(
                    "dataplane.cpus",
                    format!("CPU {c} is not available to this process (allowed: {allowed:?}); list only allowed CPUs or leave cpus empty"),
                ));
            }
        }
    }
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != cpus.len() {
        return Err(err(
            "dataplane.cpus",
            "a CPU is listed twice: list each CPU once",
        ));
    }
    Ok(())
}

fn check_idle(d: &RawDataplane) -> Result<IdleMode, ConfigError> {
    if !IDLE_WAIT_MS.contains(&d.idle_wait_ms) {
        return Err(err(
            "dataplane.idle_wait_ms",
            format!("{} must be from 1 to 1000", d.idle_wait_ms),
        ));
    }
    if d.idle_spins > MAX_IDLE_SPINS {
        return Err(err(
            "dataplane.idle_spins",
            format!("{} must be at most {MAX_IDLE_SPINS}", d.idle_spins),
        ));
    }
    let kind: IdleKind = d
        .idle
        .parse()
        .map_err(|e: crate::UnknownName| err("dataplane.idle", e.to_string()))?;
    Ok(match kind {
        IdleKind::Busy => IdleMode::Busy,
        IdleKind::Backoff => IdleMode::Backoff {
            spins: d.idle_spins,
            wait_ms: d.idle_wait_ms,
        },
    })
}

/// `[dataplane]` into the worker settings (the state directory, the
/// promiscuous flag and the command uids are checked here and read from
/// `d` by the caller). `batch_size` is checked against the ring size with
/// `[xdp]`.
pub(crate) fn validate_dataplane(d: &RawDataplane) -> Result<WorkerConfig, ConfigError> {
    check_state_dir(&d.state_dir)?;
    check_cpus(&d.cpus)?;
    if !(1..=MAX_BATCH).contains(&d.batch_size) {
        return Err(err(
            "dataplane.batch_size",
            format!("{} must be from 1 to {MAX_BATCH}", d.batch_size),
        ));
    }
    let idle = check_idle(d)?;
    if !KERNEL_STATS_MS.contains(&d.kernel_stats_interval_ms) {
        return Err(err(
            "dataplane.kernel_stats_interval_ms",
            format!("{} must be from 10 to 60000", d.kernel_stats_interval_ms),
        ));
    }
    Ok(WorkerConfig {
        cpus: d.cpus.clone(),
        batch_size: d.batch_size,
        idle,
        kernel_stats_interval_ms: d.kernel_stats_interval_ms,
    })
}
