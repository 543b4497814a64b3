//! `tapline-bench passive`: capture to disk, fan-out and zero-drop rate on
//! the passive lab.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tapline_bench::passive_bench::{self, Progress as Step};
use tapline_bench::progress::Progress;

use super::{publish, toml_keys};

#[derive(Debug, Args)]
pub(crate) struct PassiveArgs {
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Seconds of traffic per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Frame length without FCS.
    #[arg(long, default_value_t = 512)]
    frame_len: usize,
    /// UDP flows in the generated traffic.
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// Offered rate, frames per second (default: as fast as the
    /// generator can).
    #[arg(long)]
    rate: Option<u64>,
    /// Capture-to-disk DUTs, comma separated: tapline, tcpdump,
    /// netsniff-ng (empty: skip the capture part).
    #[arg(
        long,
        default_value = "tapline,tcpdump,netsniff-ng",
        value_delimiter = ','
    )]
    duts: Vec<String>,
    /// Output group counts of the fan-out part, comma separated (0:
    /// capture alone; empty: skip the fan-out part).
    #[arg(long, default_value = "0,1,2,4", value_delimiter = ',')]
    groups: Vec<String>,
    /// Capture files go to a fresh directory under this one, and are
    /// deleted once counted.
    #[arg(long, default_value = "/var/tmp/tapline-bench-rec")]
    dir: PathBuf,
    /// Seconds a capture DUT gets after the traffic to drain to disk.
    #[arg(long, default_value_t = 2.0)]
    grace_s: f64,
    /// Keep the capture files.
    #[arg(long)]
    keep_files: bool,
    /// Extra TOML keys for tapline's [dataplane] table (use \n between keys).
    #[arg(long, default_value = "")]
    dataplane_keys: String,
    /// Extra TOML keys for tapline's [xdp] table.
    #[arg(long, default_value = "")]
    xdp_keys: String,
    /// Zero-drop rate DUTs, comma separated: tapline, af-packet-read,
    /// tapline-record, tcpdump, netsniff-ng (empty: skip the part).
    #[arg(
        long,
        default_value = "tapline,af-packet-read,tapline-record,tcpdump,netsniff-ng",
        value_delimiter = ','
    )]
    zero_drop: Vec<String>,
    /// Seconds of traffic per zero-drop trial.
    #[arg(long, default_value_t = 2.0)]
    zero_drop_trial_seconds: f64,
    /// Highest rate of the zero-drop search, frames per second
    /// (default: the unpaced generator's rate, probed through each DUT
    /// at the start of each search).
    #[arg(long)]
    zero_drop_max_pps: Option<u64>,
    /// Lowest rate of the zero-drop search and floor of its resolution,
    /// frames per second.
    #[arg(long, default_value_t = 1_000)]
    zero_drop_min_pps: u64,
    /// Zero-drop search resolution, percent of the highest rate.
    #[arg(long, default_value_t = 2.0)]
    zero_drop_resolution_pct: f64,
    /// At most this many trials per zero-drop search (the probe excluded).
    #[arg(long, default_value_t = 16)]
    zero_drop_max_trials: u32,
    /// Directory for passive.{json,md}.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

impl PassiveArgs {
    pub(crate) fn run(self) -> Result<()> {
        let cfg = self.config()?;
        let progress = Progress::steps("passive");
        let r = passive_bench::run(&cfg, |p, i, n| {
            progress.set_done(i, n);
            progress.suspend(|| eprintln!("{}", step_line(&p, i, n)));
        })?;
        progress.finish();
        let md = passive_bench::markdown(&r);
        publish(Some(&self.out), "passive", &r, &md)
    }

    fn config(&self) -> Result<passive_bench::PassiveConfig> {
        Ok(passive_bench::PassiveConfig {
            duts: parse_list(&self.duts, passive_bench::CaptureDut::parse)?,
            groups: parse_list(&self.groups, |g| {
                g.parse::<u8>()
                    .with_context(|| format!("--groups: {g:?} is not a group count"))
            })?,
            reps: self.reps,
            seconds: self.seconds,
            frame_len: self.frame_len,
            flows: self.flows,
            rate_pps: self.rate,
            dir: std::path::absolute(&self.dir)?,
            grace_s: self.grace_s,
            keep_files: self.keep_files,
            dataplane_keys: toml_keys(&self.dataplane_keys),
            xdp_keys: toml_keys(&self.xdp_keys),
            zero_drop: passive_bench::ZeroDropConfig {
                duts: parse_list(&self.zero_drop, passive_bench::ZeroDropDut::parse)?,
                trial_seconds: self.zero_drop_trial_seconds,
                max_pps: self.zero_drop_max_pps,
                min_pps: self.zero_drop_min_pps,
                resolution_pct: self.zero_drop_resolution_pct,
                max_trials: self.zero_drop_max_trials,
            },
        })
    }
}

/// The items of a comma-separated option, parsed; empty items are skipped
/// (an empty option selects nothing).
fn parse_list<T>(items: &[String], parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    items
        .iter()
        .filter(|i| !i.is_empty())
        .map(|i| parse(i))
        .collect()
}

/// The progress line of one step of the passive benchmark.
fn step_line(p: &Step, i: usize, n: usize) -> String {
    match p {
        Step::Skipped(d) => format!("{}: {}", d.name(), passive_bench::SKIPPED),
        Step::Capture(s) => format!(
            "[{i}/{n}] capture {:<11} rep {}: sent {} ({:.3} Mfps), captured {}, written {} ({:.1}%, {:.3} Mfps), DUT drops {}, steal {:.1}%",
            s.dut.name(),
            s.rep,
            s.sent,
            s.offered_pps / 1e6,
            s.captured.map_or("?".to_string(), |c| c.to_string()),
            s.written,
            s.written_ratio * 100.0,
            s.written_pps / 1e6,
            s.dut_drops,
            s.steal_ratio * 100.0
        ),
        Step::Fanout(s) => format!(
            "[{i}/{n}] fan-out {} groups rep {}: sent {} ({:.3} Mfps), captured {:.1}%, delivered {}, kernel drops {}, steal {:.1}%",
            s.groups,
            s.rep,
            s.sent,
            s.offered_pps / 1e6,
            s.capture_ratio * 100.0,
            s.delivery_ratio
                .map_or("-".to_string(), |d| format!("{:.1}%", d * 100.0)),
            s.kernel_drops(),
            s.steal_ratio * 100.0
        ),
        Step::ZeroDropTrial(t) => format!(
            "[{i}/{n}] zero-drop {:<14} rep {} {:>10} fps: offered {:.0}, sent {}, counted {}, kernel drops {}, lost {} -> {}",
            t.dut.name(),
            t.rep,
            if t.purpose == passive_bench::TrialPurpose::GeneratorProbe {
                "probe".to_string()
            } else {
                t.target_pps.to_string()
            },
            t.offered_pps,
            t.sent,
            t.counted,
            t.kernel_drops,
            t.lost,
            if t.passed { "pass" } else { "fail" }
        ),
        Step::ZeroDrop(s) => format!(
            "[{i}/{n}] zero-drop {:<14} rep {}: {} kfps ({:?}, {} trials)",
            s.dut.name(),
            s.rep,
            passive_bench::zero_drop_cell(s),
            s.outcome,
            s.trials.len()
        ),
    }
}
