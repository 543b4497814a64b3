//! `tapline-bench bridge | run | ndr`: the inline benchmarks.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tapline_bench::progress::Progress;
use tapline_bench::{inline_bench, measure, report, search, traffic};

use super::{parse_duts, publish, toml_keys};

#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Frame lengths without FCS, comma separated (60 = 64 bytes on the
    /// wire), e.g. 60,124,252,508,1020,1514 for a sweep; with more than
    /// one, --out also writes bridge-throughput.svg.
    #[arg(
        long,
        visible_alias = "frame-len",
        default_value = "60",
        value_delimiter = ','
    )]
    frame_lens: Vec<usize>,
    /// UDP flows in the generated traffic.
    #[arg(long, default_value_t = 64)]
    flows: u16,
    /// DUTs, comma separated: tapline, tapline-generic, tapline-observed,
    /// tapline-observed-mtls (the same observation over mTLS),
    /// linux-bridge, tc-mirred, af-packet (tapline-bench's AF_PACKET
    /// forwarder), testpmd (DPDK, net_af_xdp), suricata (af-packet IPS).
    /// testpmd and suricata are skipped when not installed.
    #[arg(
        long,
        default_value = "tapline,tapline-generic,linux-bridge,tc-mirred,af-packet,testpmd,suricata",
        value_delimiter = ','
    )]
    duts: Vec<String>,
    /// CPU for the generator thread.
    #[arg(long)]
    gen_cpu: Option<usize>,
    /// CPU for tapline's worker (and testpmd's forwarding lcore).
    #[arg(long)]
    dut_cpu: Option<usize>,
    /// Extra TOML keys for tapline's [dataplane] table, e.g. 'idle = "busy"'
    /// (use \n between keys).
    #[arg(long, default_value = "idle = \"busy\"")]
    dataplane_keys: String,
    /// Extra TOML keys for tapline's [xdp] table, e.g. 'frame_count = 8192'.
    #[arg(long, default_value = "")]
    xdp_keys: String,
    /// Write JSON and Markdown results under this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl BridgeArgs {
    pub(crate) fn run(self) -> Result<()> {
        let cfg = inline_bench::BenchConfig {
            duts: parse_duts(&self.duts)?,
            reps: self.reps,
            seconds: self.seconds,
            frame_lens: self.frame_lens,
            flows: self.flows,
            gen_cpu: self.gen_cpu,
            dut_cpu: self.dut_cpu,
            dataplane_keys: toml_keys(&self.dataplane_keys),
            xdp_keys: toml_keys(&self.xdp_keys),
        };
        let progress = Progress::steps("bridge");
        let r = inline_bench::run(&cfg, |s, i, n| progress.step(i, n, &sample_line(s, i, n)))?;
        progress.finish();
        let md = inline_bench::markdown(&r);
        publish(self.out.as_deref(), "bridge", &r, &md)?;
        if let Some(dir) = self.out {
            if let Some(svg) = inline_bench::throughput_plot(&r)? {
                let path = report::write_svg(&dir, "bridge-throughput", &svg)?;
                eprintln!("plot written to {}", path.display());
            }
        }
        Ok(())
    }
}

/// The progress line of one bridge measurement.
fn sample_line(s: &inline_bench::Sample, i: usize, n: usize) -> String {
    let mut line = format!(
        "[{i}/{n}] {:<16} {:>4} B rep {}: offered {:.3} Mpps, delivered {:.3} Mpps, loss {:.1}%, steal {:.1}%",
        s.dut.name(),
        s.frame_len + traffic::FCS_BYTES,
        s.rep,
        s.offered_pps / 1e6,
        s.delivered_pps / 1e6,
        s.loss_ratio * 100.0,
        s.steal_ratio * 100.0
    );
    if let Some(c) = &s.tapline_counters {
        line += &format!("\n        tapline counters: {c}");
    }
    if let Some(c) = &s.peer_counters {
        line += &format!("\n        {} counters: {c}", s.dut.name());
    }
    line
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Offered rate, frames per second.
    #[arg(long)]
    rate: u64,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Frame length without FCS, 60 to 1514 (60 = 64 bytes on the wire).
    #[arg(long, default_value_t = 60, conflicts_with = "imix")]
    frame_len: usize,
    /// Simple IMIX instead: 7:4:1 of 64/594/1518 bytes on the wire,
    /// capped to the lab's MTU.
    #[arg(long)]
    imix: bool,
    /// UDP flows in the generated traffic.
    #[arg(long, default_value_t = 64)]
    flows: u16,
    /// tapline, tapline-generic, tapline-observed, tapline-observed-mtls,
    /// linux-bridge,
    /// tc-mirred, af-packet, testpmd or suricata.
    #[arg(long, default_value = "tapline")]
    dut: String,
    /// Extra TOML keys for tapline's [dataplane] table (use \n between keys).
    #[arg(long, default_value = "")]
    dataplane_keys: String,
    /// Extra TOML keys for tapline's [xdp] table, e.g. 'ring_size = 8192'.
    #[arg(long, default_value = "")]
    xdp_keys: String,
    /// Print the result as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    pub(crate) fn run(self) -> Result<()> {
        let cfg = measure::RunConfig {
            dut: inline_bench::Dut::parse(&self.dut)?,
            rate_pps: self.rate,
            seconds: self.seconds,
            sizes: if self.imix {
                traffic::FrameSizes::imix()
            } else {
                traffic::FrameSizes::Fixed(self.frame_len)
            },
            flows: self.flows,
            dataplane_keys: toml_keys(&self.dataplane_keys),
            xdp_keys: toml_keys(&self.xdp_keys),
        };
        let r = measure::run(&cfg)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!("{}", measure::markdown(&r));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(crate) struct NdrArgs {
    /// DUTs, comma separated: tapline, tapline-generic, tapline-observed,
    /// tapline-observed-mtls (the same observation over mTLS),
    /// linux-bridge, tc-mirred, af-packet, testpmd, suricata (peers that
    /// are not installed are skipped).
    #[arg(long, default_value = "tapline", value_delimiter = ',')]
    dut: Vec<String>,
    /// Repetitions; each runs every DUT's searches and latency trials
    /// before the next starts (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Frame length without FCS (60 = 64 bytes on the wire).
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
    /// UDP flows in the generated traffic.
    #[arg(long, default_value_t = 64)]
    flows: u16,
    /// Seconds per trial.
    #[arg(long, default_value_t = 2.0)]
    trial_seconds: f64,
    /// Highest rate searched, frames per second (default: the unpaced
    /// generator's rate, measured first through each DUT).
    #[arg(long)]
    max_pps: Option<u64>,
    /// Search resolution, percent of the highest rate.
    #[arg(long, default_value_t = 2.0)]
    resolution_pct: f64,
    /// Lowest rate searched and floor of the resolution, frames per second.
    #[arg(long, default_value_t = 1_000)]
    min_pps: u64,
    /// At most this many trials per search.
    #[arg(long, default_value_t = 16)]
    max_trials: u32,
    /// Extra TOML keys for tapline's [dataplane] table (use \n between keys).
    #[arg(long, default_value = "")]
    dataplane_keys: String,
    /// Extra TOML keys for tapline's [xdp] table, e.g. 'ring_size = 8192'.
    #[arg(long, default_value = "")]
    xdp_keys: String,
    /// Write ndr.json and ndr.md under this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl NdrArgs {
    pub(crate) fn run(self) -> Result<()> {
        let cfg = search::NdrConfig {
            duts: parse_duts(&self.dut)?,
            reps: self.reps,
            frame_len: self.frame_len,
            flows: self.flows,
            trial_seconds: self.trial_seconds,
            max_pps: self.max_pps,
            resolution_pct: self.resolution_pct,
            min_pps: self.min_pps,
            max_trials: self.max_trials,
            dataplane_keys: toml_keys(&self.dataplane_keys),
            xdp_keys: toml_keys(&self.xdp_keys),
        };
        let progress = Progress::spinner("ndr", "trials");
        let r = search::run(&cfg, |rep, d, what, t| {
            progress.tick(&format!(
                "rep {rep} {:<16} {what:<16} {:>10} fps: offered {:.0}, sent {}, received {}, loss {:.4}%",
                d.name(),
                t.rate_pps,
                t.offered_pps,
                t.sent,
                t.received,
                t.loss_ratio() * 100.0
            ));
        })?;
        progress.finish();
        let md = search::markdown(&r);
        publish(self.out.as_deref(), "ndr", &r, &md)?;
        if let Some(dir) = self.out {
            let plots = search::write_plots(&r, &dir)?;
            if plots.is_empty() {
                eprintln!("no latency CDF plot: no DUT's NDR search found a rate");
            }
            for p in plots {
                eprintln!("plot written to {}", p.display());
            }
        }
        Ok(())
    }
}
