//! Worker threads: busy-poll loops over pipeline tasks.
//!
//! The loop is retina's `rx_core` shape: poll every task for one batch, keep
//! counters local to the thread's own cache lines, check the stop flag every
//! iteration (one relaxed load) and read the clock rarely. No tokio, no locks,
//! no allocation per batch, and nothing here ever waits on the control side.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use hdrhistogram::Histogram;

use crate::pipeline::Task;
use crate::sys;
use tapline_config::{IdleMode, WorkerConfig};
use tapline_segment::LatencyValues;
use tapline_segment::{LatencySummary, Slot, WorkerCounters};

/// Iterations between checks of the wall clock (stats refresh, publishing).
const CLOCK_EVERY_LOOPS: u32 = 1024;
/// Batch times above this are clamped into the histogram's last bucket.
const MAX_BATCH_NS: u64 = 10_000_000_000;
/// Significant figures of the batch-time histogram.
const BATCH_HIST_SIGFIG: u8 = 2;

/// A running worker thread.
#[derive(Debug)]
pub struct Worker {
    pub name: String,
    handle: JoinHandle<Vec<Task>>,
}

impl Worker {
    /// Starts a thread that polls `tasks` until `stop` is set. `cpu` pins it.
    pub fn spawn(
        name: String,
        tasks: Vec<Task>,
        cpu: Option<usize>,
        cfg: WorkerConfig,
        counters: WorkerSlots,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Worker> {
        let thread_name = name.clone();
        let handle = std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu, &thread_name);
                }
                run(tasks, &cfg, &counters, &stop)
            })?;
        Ok(Worker { name, handle })
    }

    /// Waits for the thread to finish and takes its tasks back (so sockets
    /// are closed by the caller, in order).
    pub fn join(self) -> Vec<Task> {
        match self.handle.join() {
            Ok(tasks) => tasks,
            Err(_) => {
                warn!(worker = self.name, "worker thread panicked");
                Vec::new()
            }
        }
    }
}

fn pin_to(cpu: usize, name: &str) {
    match crate::sys::process::pin_current_thread(cpu) {
        Ok(()) => info!(worker = name, cpu, "worker pinned"),
        Err(e) => warn!(worker = name, cpu, error = %e, "could not pin worker; running unpinned"),
    }
}

/// Where a worker publishes what it counts.
#[derive(Debug, Clone)]
pub struct WorkerSlots {
    pub counters: Slot<WorkerCounters>,
    pub latency: Slot<LatencySummary>,
}

/// Percentiles of the window's batch times, then a fresh window.
fn publish_latency(h: &mut Histogram<u64>, slot: &LatencySummary, window_ns: u64) {
    slot.publish(&LatencyValues {
        count: h.len(),
        p50_ns: h.value_at_quantile(0.50),
        p90_ns: h.value_at_quantile(0.90),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        window_ns,
    });
    h.reset();
}

/// The loop. Returns the tasks when stopped.
pub fn run(
    mut tasks: Vec<Task>,
    cfg: &WorkerConfig,
    slots: &WorkerSlots,
    stop: &AtomicBool,
) -> Vec<Task> {
    let counters = &*slots.counters;
    // Time of each loop iteration that moved frames: the worker's own
    // processing latency, exported as percentiles per stats window.
    let mut batch_ns = Histogram::<u64>::new_with_bounds(1, MAX_BATCH_NS, BATCH_HIST_SIGFIG)
        .expect("valid histogram bounds");
    let mut window_start = Instant::now();
    let batch = cfg.batch_size;
    let stats_every = Duration::from_millis(u64::from(cfg.kernel_stats_interval_ms));
    let mut fds: Vec<RawFd> = Vec::new();
    let mut empty_streak: u32 = 0;
    let mut until_clock = CLOCK_EVERY_LOOPS;
    let mut next_stats = Instant::now() + stats_every;
    // Thread-local tallies, published to the shared counters once per clock
    // period so the hot loop touches only this stack frame.
    let (mut busy, mut idle, mut batches, mut waits) = (0u64, 0u64, 0u64, 0u64);

    while !stop.load(Ordering::Relaxed) {
        let mut frames = 0u32;
        let mut pending = false;
        let t0 = Instant::now();
        for t in tasks.iter_mut() {
            let out = t.poll(batch);
            frames += out.frames;
            pending |= out.pending;
            batches += u64::from(out.frames > 0);
        }
        if frames > 0 {
            busy += 1;
            empty_streak = 0;
            batch_ns.saturating_record(t0.elapsed().as_nanos() as u64);
        } else {
            idle += 1;
            empty_streak = empty_streak.saturating_add(1);
            if let IdleMode::Backoff { spins, wait_ms } = cfg.idle {
                if empty_streak >= spins && !pending {
                    waits += 1;
                    // The fds are gathered anew each time: a chain update
                    // may have added or removed ports (this is the idle
                    // path, so the cost does not matter).
                    fds.clear();
                    let mut wait = wait_ms;
                    for t in &tasks {
                        t.wait_fds(&mut fds);
                        if let Some(m) = t.max_wait_ms() {
                            wait = wait.min(m);
                        }
                    }
                    // Woken at once by a received frame; the timeout bounds
                    // how late we notice `stop`, refresh stats and send
                    // heartbeats.
                    let _ = sys::poll_readable(&fds, wait as i32);
                    until_clock = 0;
                }
            }
        }
        until_clock = until_clock.saturating_sub(1);
        if until_clock == 0 {
            until_clock = CLOCK_EVERY_LOOPS;
            let now = Instant::now();
            if now >= next_stats {
                next_stats = now + stats_every;
                for t in tasks.iter_mut() {
                    t.refresh_kernel_stats(now - window_start);
                }
                publish_latency(
                    &mut batch_ns,
                    &slots.latency,
                    (now - window_start).as_nanos() as u64,
                );
                window_start = now;
            }
            publish(counters, &mut busy, &mut idle, &mut batches, &mut waits);
        }
    }
    for t in tasks.iter_mut() {
        t.refresh_kernel_stats(window_start.elapsed());
    }
    publish(counters, &mut busy, &mut idle, &mut batches, &mut waits);
    publish_latency(
        &mut batch_ns,
        &slots.latency,
        window_start.elapsed().as_nanos() as u64,
    );
    tasks
}

fn publish(c: &WorkerCounters, busy: &mut u64, idle: &mut u64, batches: &mut u64, waits: &mut u64) {
    c.busy_loops.add(std::mem::take(busy));
    c.idle_loops.add(std::mem::take(idle));
    c.batches.add(std::mem::take(batches));
    c.idle_waits.add(std::mem::take(waits));
}
