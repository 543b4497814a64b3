//! `tapline-bench chain | survive | failover`: the chain's throughput
//! against its length, and the failure benchmarks.

use anyhow::Result;
use clap::Args;
use tapline_bench::progress::Progress;
use tapline_bench::{chain_bench, lab, survive};

use super::{publish, toml_keys};

#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    /// Longest chain measured.
    #[arg(long, default_value_t = 4)]
    max_hops: u8,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Frame length without FCS (60 = 64 bytes on the wire).
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
    /// UDP flows in the generated traffic.
    #[arg(long, default_value_t = 64)]
    flows: u16,
    /// Tools: bridge (a Linux bridge per tool) or mirred (tc mirred).
    #[arg(long, default_value = "mirred")]
    tool: String,
    /// Directory for chain.{json,md}.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

impl ChainArgs {
    pub(crate) fn run(self) -> Result<()> {
        let kind: lab::ToolKind = self.tool.parse()?;
        let cfg = chain_bench::ThroughputConfig {
            max_hops: self.max_hops,
            reps: self.reps,
            seconds: self.seconds,
            frame_len: self.frame_len,
            flows: self.flows,
            tool: kind.name(),
        };
        let progress = Progress::steps("chain");
        let r = chain_bench::throughput(&cfg, kind, |s, i, n| {
            progress.step(
                i,
                n,
                &format!(
                "[{i}/{n}] {} hops rep {}: offered {:.3} Mpps, delivered {:.3} Mpps, steal {:.1}%",
                s.hops,
                s.rep,
                s.offered_pps / 1e6,
                s.delivered_pps / 1e6,
                s.steal_ratio * 100.0
            ),
            );
        })?;
        progress.finish();
        let md = chain_bench::throughput_markdown(&r);
        publish(self.out.as_deref(), "chain", &r, &md)
    }
}

#[derive(Debug, Args)]
pub(crate) struct SurviveArgs {
    /// Kills (and restarts) per mode.
    #[arg(long, default_value_t = 20)]
    events: u32,
    /// Offered rate, frames per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// fallback.stall_ms of the keep mode.
    #[arg(long, default_value_t = tapline_config::DEFAULT_STALL_MS)]
    stall_ms: u32,
    /// Directory for survive.{json,md}.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

impl SurviveArgs {
    pub(crate) fn run(self) -> Result<()> {
        let cfg = survive::SurviveConfig {
            events: self.events,
            rate_pps: self.rate,
            stall_ms: self.stall_ms,
        };
        let r = survive::survive(&cfg, |mode, e| {
            eprintln!(
                "{mode} {} {:>2}: largest gap {:.1} ms, {} frames lost",
                e.kind, e.index, e.largest_gap_ms, e.lost_frames
            );
        })?;
        let md = survive::survive_markdown(&r);
        publish(self.out.as_deref(), "survive", &r, &md)
    }
}

#[derive(Debug, Args)]
pub(crate) struct FailoverArgs {
    /// Failures to induce.
    #[arg(long, default_value_t = 20)]
    failures: u32,
    /// Offered rate, frames per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Frame length without FCS.
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
    /// Tool: bridge or mirred.
    #[arg(long, default_value = "bridge")]
    tool: String,
    /// Extra [heartbeat] keys, e.g. "interval_ms = 5\ntimeout_ms = 10".
    #[arg(long, default_value = "")]
    heartbeat_keys: String,
    /// Directory for failover.{json,md}.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

impl FailoverArgs {
    pub(crate) fn run(self) -> Result<()> {
        let kind: lab::ToolKind = self.tool.parse()?;
        let failures = self.failures;
        let cfg = chain_bench::FailoverConfig {
            failures,
            rate_pps: self.rate,
            frame_len: self.frame_len,
            tool: kind.name(),
            heartbeat_keys: toml_keys(&self.heartbeat_keys),
        };
        let progress = Progress::steps("failover");
        let r = chain_bench::failover(&cfg, kind, |f| {
            progress.step(f.index as usize + 1, failures as usize, &format!(
                "failure {:>2}: bypassed after {:.1} ms, {} frames lost ({:.1} ms of traffic), UP again {:.0} ms after the link returned",
                f.index, f.detection_ms, f.lost_frames, f.loss_window_ms, f.recovery_ms
            ));
        })?;
        progress.finish();
        let md = chain_bench::failover_markdown(&r);
        publish(self.out.as_deref(), "failover", &r, &md)
    }
}
