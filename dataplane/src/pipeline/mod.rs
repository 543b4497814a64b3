//! Pipeline tasks: safe code over the AF_XDP queue types. A task is polled
//! by a worker thread; it moves at most one batch per direction per poll and
//! reports how much work it did, so one worker can serve several tasks.

pub mod bridge;
pub mod capture;

pub use bridge::BridgeTask;
pub use capture::{CaptureConsumer, CaptureTask};

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
    Bridge(BridgeTask),
    Capture(CaptureTask),
}

impl Task {
    pub fn poll(&mut self, batch: u32) -> PollOutcome {
        match self {
            Task::Bridge(t) => t.poll(batch),
            Task::Capture(t) => t.poll(batch),
        }
    }

    /// Refreshes the kernel's drop counters into the stats.
    pub fn refresh_kernel_stats(&mut self) {
        match self {
            Task::Bridge(t) => t.refresh_kernel_stats(),
            Task::Capture(t) => t.refresh_kernel_stats(),
        }
    }

    /// Raw fds to wait on when idle.
    pub fn wait_fds(&self, out: &mut Vec<std::os::fd::RawFd>) {
        match self {
            Task::Bridge(t) => t.wait_fds(out),
            Task::Capture(t) => t.wait_fds(out),
        }
    }
}
