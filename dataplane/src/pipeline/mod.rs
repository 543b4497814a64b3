//! Pipeline tasks: safe code over the AF_XDP queue types. A task is polled
//! by a worker thread; it moves at most one batch per direction per poll and
//! reports how much work it did, so one worker can serve several tasks.

pub mod capture;
pub mod chain;

pub use capture::{CaptureConsumer, CaptureTask};

// The largest configurable batch fits the AF_XDP layer's bulk operations
// (`forward_each` sorts at most this many frames per call, a copy-mode TX
// kick asks for this budget).
const _: () = assert!(tapline_config::MAX_BATCH == crate::xdp::MAX_BATCH_FRAMES);
pub use chain::ChainTask;

/// Result of one poll of a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Frames moved (received, forwarded or consumed).
    pub frames: u32,
    /// The task has work queued in the kernel (e.g. TX descriptors not yet
    /// transmitted) and must not be left waiting in poll(2).
    pub pending: bool,
}

/// A unit of work owned by a worker.
// Tasks are few and live for the whole run; boxing them would only add a
// pointer chase to every poll.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Task {
    Chain(ChainTask),
    Capture(CaptureTask),
}

impl Task {
    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        match self {
            Task::Chain(t) => t.poll(batch),
            Task::Capture(t) => t.poll(batch),
        }
    }

    /// Refreshes the kernel's drop counters into the stats, and publishes
    /// the window's latency summaries (`window`: its length).
    pub(crate) fn refresh_kernel_stats(&mut self, window: std::time::Duration) {
        match self {
            Task::Chain(t) => t.refresh_kernel_stats(window),
            Task::Capture(t) => t.refresh_kernel_stats(),
        }
    }

    /// Longest the worker may block in poll(2) for this task's sake.
    pub(crate) fn max_wait_ms(&self) -> Option<u32> {
        match self {
            Task::Chain(t) => t.max_wait_ms(),
            Task::Capture(_) => None,
        }
    }

    /// Raw fds to wait on when idle.
    pub(crate) fn wait_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        match self {
            Task::Chain(t) => t.wait_fds(out),
            Task::Capture(t) => t.wait_fds(out),
        }
    }
}
