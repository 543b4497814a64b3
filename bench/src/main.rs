//! `tapline-bench`: lab topologies, traffic, benchmarks and the demo.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use tapline_bench::{
    chain_bench, demo, inline_bench, lab, measure, micro, passive_bench, report, search, traffic,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "tapline lab topologies, traffic generator, benchmarks and demo"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build or remove a lab of network namespaces and veth pairs.
    Lab {
        #[command(subcommand)]
        op: LabOp,
    },
    /// Self-contained demo: lab, dataplane, traffic, counters, teardown.
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Frames per second from each of the three generators.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// Frame length without FCS.
        #[arg(long, default_value_t = 60)]
        frame_len: usize,
    },
    /// Chain throughput against the number of hops (0 to --max-hops).
    Chain {
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
    },
    /// Failover: induced tool failures under paced traffic; detection to
    /// bypass time and frames lost per failure.
    Failover {
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
    },
    /// Inline throughput: tapline against the Linux bridge and tc mirred.
    Bridge {
        /// Repetitions (medians are reported).
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Frame length without FCS (60 = 64 bytes on the wire).
        #[arg(long, default_value_t = 60)]
        frame_len: usize,
        /// UDP flows in the generated traffic.
        #[arg(long, default_value_t = 64)]
        flows: u16,
        /// DUTs, comma separated: tapline, tapline-generic, linux-bridge, tc-mirred.
        #[arg(
            long,
            default_value = "tapline,tapline-generic,linux-bridge,tc-mirred",
            value_delimiter = ','
        )]
        duts: Vec<String>,
        /// CPU for the generator thread.
        #[arg(long)]
        gen_cpu: Option<usize>,
        /// CPU for tapline's worker.
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
    },
    /// Per-frame cost of tapline's own code: the tasks' poll over in-memory
    /// rings with a fake kernel (frames/s; instructions/frame with --callgrind).
    Micro {
        /// bridge, bridge-bidir, capture or all.
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
    },
    /// One paced run through a DUT on the inline lab: test frames with
    /// sequence numbers and timestamps from g0, an AF_XDP sink on s0;
    /// prints sent, received, lost, reordered, duplicated and one-way
    /// latency percentiles.
    Run {
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
        /// tapline, tapline-generic, linux-bridge or tc-mirred.
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
    },
    /// RFC 2544-style searches on the inline lab: the no-drop rate (NDR,
    /// no loss) and the partial-drop rate (PDR, at most 0.1% loss) by binary
    /// search over paced runs, then latency at 10%, 50% and 90% of the NDR.
    Ndr {
        /// DUTs, comma separated: tapline, tapline-generic, linux-bridge, tc-mirred.
        #[arg(long, default_value = "tapline", value_delimiter = ',')]
        dut: Vec<String>,
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
    },
    /// Passive side on the passive lab, in one run, interleaved: capture to
    /// disk (tapline's recorder against tcpdump and netsniff-ng: frames
    /// written to pcap files against frames sent) and the cost of fan-out
    /// (tapline with 0, 1, 2, 4 output groups).
    Passive {
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
        /// Directory for passive.{json,md}.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum LabOp {
    /// Build SCENARIO (inline, passive, full, chain) under PREFIX (idempotent).
    Up {
        /// inline, passive, full or chain (inline plus --hops tools).
        scenario: lab::Scenario,
        /// Inline tools of the chain scenario, 1 to 8 (default 1): tool K is
        /// namespace PREFIX-toolK, reached from the dut through hKa and hKb.
        #[arg(long)]
        hops: Option<u8>,
        /// How each chain tool bridges its sides a <-> b: bridge (a Linux
        /// bridge made into a wire, the default) or mirred (tc redirects).
        #[arg(long)]
        tool: Option<lab::ToolKind>,
        #[arg(long, default_value = "tlab")]
        prefix: String,
    },
    /// Remove every namespace under PREFIX.
    Down {
        #[arg(long, default_value = "tlab")]
        prefix: String,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Lab {
            op:
                LabOp::Up {
                    scenario,
                    hops,
                    tool,
                    prefix,
                },
        } => {
            let scenario = scenario.with_chain_options(hops, tool)?;
            lab::teardown(&prefix)?;
            let l = lab::Lab::build(&prefix, scenario)?;
            let tools = match scenario {
                lab::Scenario::Chain { tool, .. } => format!(" (tools: {})", tool.name()),
                _ => String::new(),
            };
            println!(
                "lab {prefix} up: namespaces {}{tools}",
                l.namespace_names().join(", ")
            );
            l.persist();
        }
        Cmd::Lab {
            op: LabOp::Down { prefix },
        } => {
            let n = lab::teardown(&prefix)?;
            println!("lab {prefix} down: {n} namespaces removed");
        }
        Cmd::Demo {
            seconds,
            rate,
            frame_len,
        } => {
            demo::run(&demo::DemoConfig {
                seconds,
                rate_pps: rate,
                frame_len,
            })?;
        }
        Cmd::Chain {
            max_hops,
            reps,
            seconds,
            frame_len,
            flows,
            tool,
            out,
        } => {
            let kind: lab::ToolKind = tool.parse()?;
            let cfg = chain_bench::ThroughputConfig {
                max_hops,
                reps,
                seconds,
                frame_len,
                flows,
                tool: kind.name(),
            };
            let r = chain_bench::throughput(&cfg, kind, |s, i, n| {
                eprintln!(
                    "[{i}/{n}] {} hops rep {}: offered {:.3} Mpps, delivered {:.3} Mpps, steal {:.1}%",
                    s.hops,
                    s.rep,
                    s.offered_pps / 1e6,
                    s.delivered_pps / 1e6,
                    s.steal_ratio * 100.0
                );
            })?;
            let md = chain_bench::throughput_markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "chain", &r, &md)?;
            }
        }
        Cmd::Failover {
            failures,
            rate,
            frame_len,
            tool,
            heartbeat_keys,
            out,
        } => {
            let kind: lab::ToolKind = tool.parse()?;
            let cfg = chain_bench::FailoverConfig {
                failures,
                rate_pps: rate,
                frame_len,
                tool: kind.name(),
                heartbeat_keys: heartbeat_keys.replace("\\n", "\n"),
            };
            let r = chain_bench::failover(&cfg, kind, |f| {
                eprintln!(
                    "failure {:>2}: bypassed after {:.1} ms, {} frames lost ({:.1} ms of traffic), UP again {:.0} ms after the link returned",
                    f.index, f.detection_ms, f.lost_frames, f.loss_window_ms, f.recovery_ms
                );
            })?;
            let md = chain_bench::failover_markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "failover", &r, &md)?;
            }
        }
        Cmd::Bridge {
            reps,
            seconds,
            frame_len,
            flows,
            duts,
            gen_cpu,
            dut_cpu,
            dataplane_keys,
            xdp_keys,
            out,
        } => {
            let duts = duts
                .iter()
                .map(|d| inline_bench::Dut::parse(d))
                .collect::<Result<Vec<_>>>()?;
            let cfg = inline_bench::BenchConfig {
                duts,
                reps,
                seconds,
                frame_len,
                flows,
                gen_cpu,
                dut_cpu,
                dataplane_keys: dataplane_keys.replace("\\n", "\n"),
                xdp_keys: xdp_keys.replace("\\n", "\n"),
            };
            let r = inline_bench::run(&cfg, |s, i, n| {
                eprintln!(
                    "[{i}/{n}] {:<16} rep {}: offered {:.3} Mpps, delivered {:.3} Mpps, loss {:.1}%, steal {:.1}%",
                    s.dut.name(),
                    s.rep,
                    s.offered_pps / 1e6,
                    s.delivered_pps / 1e6,
                    s.loss_ratio * 100.0,
                    s.steal_ratio * 100.0
                );
                if let Some(c) = &s.tapline_counters {
                    eprintln!("        tapline counters: {c}");
                }
            })?;
            let md = inline_bench::markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "bridge", &r, &md)?;
            }
        }
        Cmd::Micro {
            path,
            frames,
            batch,
            reps,
            callgrind,
            out,
            inner,
        } => {
            if inner {
                for &p in path.0 {
                    micro::run_once(p, frames, batch)?;
                }
                return Ok(());
            }
            let cfg = micro::MicroConfig {
                paths: path.0.to_vec(),
                frames,
                batch,
                reps,
                callgrind,
                out: out.clone(),
            };
            let r = micro::run(&cfg)?;
            let md = micro::markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "micro", &r, &md)?;
            }
        }
        Cmd::Run {
            rate,
            seconds,
            frame_len,
            imix,
            flows,
            dut,
            dataplane_keys,
            xdp_keys,
            json,
        } => {
            let cfg = measure::RunConfig {
                dut: inline_bench::Dut::parse(&dut)?,
                rate_pps: rate,
                seconds,
                sizes: if imix {
                    traffic::FrameSizes::imix()
                } else {
                    traffic::FrameSizes::Fixed(frame_len)
                },
                flows,
                dataplane_keys: dataplane_keys.replace("\\n", "\n"),
                xdp_keys: xdp_keys.replace("\\n", "\n"),
            };
            let r = measure::run(&cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", measure::markdown(&r));
            }
        }
        Cmd::Ndr {
            dut,
            frame_len,
            flows,
            trial_seconds,
            max_pps,
            resolution_pct,
            min_pps,
            max_trials,
            dataplane_keys,
            xdp_keys,
            out,
        } => {
            let cfg = search::NdrConfig {
                duts: dut
                    .iter()
                    .map(|d| inline_bench::Dut::parse(d))
                    .collect::<Result<Vec<_>>>()?,
                frame_len,
                flows,
                trial_seconds,
                max_pps,
                resolution_pct,
                min_pps,
                max_trials,
                dataplane_keys: dataplane_keys.replace("\\n", "\n"),
                xdp_keys: xdp_keys.replace("\\n", "\n"),
            };
            let r = search::run(&cfg, |d, what, t| {
                eprintln!(
                    "{:<16} {what:<16} {:>10} fps: offered {:.0}, sent {}, received {}, loss {:.4}%",
                    d.name(),
                    t.rate_pps,
                    t.offered_pps,
                    t.sent,
                    t.received,
                    t.loss_ratio() * 100.0
                );
            })?;
            let md = search::markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "ndr", &r, &md)?;
            }
        }
        Cmd::Passive {
            reps,
            seconds,
            frame_len,
            flows,
            rate,
            duts,
            groups,
            dir,
            grace_s,
            keep_files,
            dataplane_keys,
            xdp_keys,
            out,
        } => {
            let cfg = passive_bench::PassiveConfig {
                duts: duts
                    .iter()
                    .filter(|d| !d.is_empty())
                    .map(|d| passive_bench::CaptureDut::parse(d))
                    .collect::<Result<Vec<_>>>()?,
                groups: groups
                    .iter()
                    .filter(|g| !g.is_empty())
                    .map(|g| {
                        g.parse()
                            .with_context(|| format!("--groups: {g:?} is not a group count"))
                    })
                    .collect::<Result<Vec<u8>>>()?,
                reps,
                seconds,
                frame_len,
                flows,
                rate_pps: rate,
                dir: std::path::absolute(&dir)?,
                grace_s,
                keep_files,
                dataplane_keys: dataplane_keys.replace("\\n", "\n"),
                xdp_keys: xdp_keys.replace("\\n", "\n"),
            };
            let r = passive_bench::run(&cfg, |p, i, n| {
                match p {
                passive_bench::Progress::Skipped(d) => {
                    eprintln!("{}: {}", d.name(), passive_bench::SKIPPED)
                }
                passive_bench::Progress::Capture(s) => eprintln!(
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
                passive_bench::Progress::Fanout(s) => eprintln!(
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
            }
            })?;
            let md = passive_bench::markdown(&r);
            println!("{md}");
            report::write_results(&out, "passive", &r, &md)?;
        }
    }
    Ok(())
}
