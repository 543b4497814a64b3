//! The pure half of starting: from the configuration and the queue counts
//! of the opened interfaces, which tasks run, on which worker thread, and
//! how large the stats segment is. No kernel call: unit-tested as is.

use crate::chain::control::ToolSlots;
use tapline_config::chain::MAX_HOPS;
use tapline_config::Config;

/// What one task will do, decided before anything is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedTask {
    /// The inline path of one queue (the chain task).
    Bridge(u32),
    /// The passive capture of one queue.
    Capture(u32),
}

impl PlannedTask {
    /// Stats segment queue slots the task's ports take.
    fn slots(self) -> usize {
        match self {
            PlannedTask::Bridge(_) => 2,
            PlannedTask::Capture(_) => 1,
        }
    }
}

/// The queue counts found when the interfaces were opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Queues of inline-1 (and inline-2), if an inline pair is configured.
    pub inline_queues: Option<u32>,
    /// Queues of passive-1, if configured.
    pub passive_queues: Option<u32>,
    /// Output group members opened (all groups).
    pub members: usize,
}

/// Everything decided before a queue is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPlan {
    /// The tasks, inline queues first, then capture queues.
    pub tasks: Vec<PlannedTask>,
    /// Worker threads: one per configured CPU (tasks round robin), or one
    /// unpinned thread per task.
    pub threads: usize,
    /// Where the tool ports' queue slots start in the segment.
    pub tool_slots: ToolSlots,
    /// Hops the segment has room for (0 without an inline pair).
    pub max_hops: usize,
    /// The stats segment's geometry.
    pub segment: tapline_segment::Layout,
}

impl StartPlan {
    /// The plan for `cfg` over the interfaces as `found`.
    pub fn new(cfg: &Config, found: Discovered) -> StartPlan {
        let mut tasks = Vec::new();
        if let Some(q) = found.inline_queues {
            tasks.extend((0..q).map(PlannedTask::Bridge));
        }
        if let Some(q) = found.passive_queues {
            tasks.extend((0..q).map(PlannedTask::Capture));
        }
        let n_slots: usize = tasks.iter().map(|t| t.slots()).sum();
        let threads = if cfg.workers.cpus.is_empty() {
            tasks.len()
        } else {
            cfg.workers.cpus.len().min(tasks.len())
        };
        let inline_queues = found.inline_queues.unwrap_or(0) as usize;
        let tool_slots = ToolSlots {
            base: n_slots,
            queues: inline_queues,
        };
        let max_hops = if found.inline_queues.is_some() {
            MAX_HOPS
        } else {
            0
        };
        let n_groups = cfg.output_groups.len();
        let n_recorders = cfg.recorders.len();
        let segment = tapline_segment::Layout {
            n_queues: n_slots + ToolSlots::count(max_hops, inline_queues),
            n_workers: threads,
            max_hops,
            n_hop_writers: inline_queues,
            n_outputs: n_groups + found.members + n_recorders,
            n_output_writers: found.passive_queues.unwrap_or(0) as usize,
            max_recorders: n_recorders,
            max_taps: cfg.tap.max_concurrent,
        };
        StartPlan {
            tasks,
            threads,
            tool_slots,
            max_hops,
            segment,
        }
    }

    /// The worker thread of task `index` (round robin).
    pub(crate) fn worker_of(&self, index: usize) -> usize {
        index % self.threads
    }

    /// The CPU worker thread `thread` is pinned to, if any.
    pub(crate) fn cpu_of(&self, cfg: &Config, thread: usize) -> Option<usize> {
        cfg.workers.cpus.get(thread).copied()
    }
}

// The configuration validates against the dataplane's own limits: they
// must agree (checked at compile time).
const _: () = {
    let ours = crate::xdp::umem::FRAME_SIZES;
    let theirs = tapline_config::xdp::FRAME_SIZES;
    assert!(ours.len() == theirs.len());
    let mut i = 0;
    while i < ours.len() {
        assert!(ours[i] == theirs[i], "xdp::umem::FRAME_SIZES");
        i += 1;
    }
    assert!(
        tapline_segment::OUTPUT_NAME_BYTES == tapline_config::output::OUTPUT_NAME_BYTES,
        "tapline_segment::OUTPUT_NAME_BYTES"
    );
};

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn inline_and_passive_tasks_share_threads_round_robin() {
        let cfg = config(
            "[interfaces]\npassive-1 = \"p\"\ninline-1 = \"a\"\ninline-2 = \"b\"\n\
             [dataplane]\ncpus = [0, 1]\n\
             [[output_group]]\nname = \"g\"\nmembers = [\"m0\", \"m1\"]\n",
        );
        let plan = StartPlan::new(
            &cfg,
            Discovered {
                inline_queues: Some(2),
                passive_queues: Some(3),
                members: 2,
            },
        );
        use PlannedTask::*;
        assert_eq!(
            plan.tasks,
            [Bridge(0), Bridge(1), Capture(0), Capture(1), Capture(2)]
        );
        assert_eq!(plan.threads, 2);
        let workers: Vec<usize> = (0..plan.tasks.len()).map(|i| plan.worker_of(i)).collect();
        assert_eq!(workers, [0, 1, 0, 1, 0]);
        assert_eq!(
            (plan.cpu_of(&cfg, 1), plan.cpu_of(&cfg, 2)),
            (Some(1), None)
        );
        // 2 bridge tasks x 2 ports + 3 capture ports; tool ports after them.
        assert_eq!((plan.tool_slots.base, plan.tool_slots.queues), (7, 2));
        assert_eq!(plan.max_hops, MAX_HOPS);
        assert_eq!(
            plan.segment,
            tapline_segment::Layout {
                n_queues: 7 + MAX_HOPS * 2 * 2,
                n_workers: 2,
                max_hops: MAX_HOPS,
                n_hop_writers: 2,
                n_outputs: 1 + 2,
                n_output_writers: 3,
                max_recorders: 0,
                max_taps: cfg.tap.max_concurrent,
            }
        );
    }

    #[test]
    fn without_cpus_every_task_gets_a_thread_and_passive_only_has_no_hops() {
        let cfg = config("[interfaces]\npassive-1 = \"p\"\n");
        let plan = StartPlan::new(
            &cfg,
            Discovered {
                inline_queues: None,
                passive_queues: Some(4),
                members: 0,
            },
        );
        assert_eq!(plan.threads, 4);
        assert_eq!(plan.max_hops, 0);
        assert_eq!(plan.segment.n_queues, 4);
        assert_eq!(plan.segment.n_hop_writers, 0);
        assert_eq!(plan.cpu_of(&cfg, 0), None);
    }
}
