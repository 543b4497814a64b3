//! `tapline-bench`: lab topologies, traffic, benchmarks and the demo.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tapline_bench::progress::Progress;

use tapline_bench::{
    afpacket, chain_bench, demo, filter_micro, inline_bench, lab, measure, micro, passive_bench,
    report, search, traffic,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "tapline lab topologies, traffic generator, benchmarks and demo"
)]
struct Args {
    /// Cable a link of the labs with a real test NIC instead of a veth
    /// pair: lab interface ROLE (g0, i1, i2, s0, t0, p1, hKa, hKb, toolK:a,
    /// toolK:b, dut:M and sen-M:e0 for sensor M) is NIC IFNAME, moved into
    /// the lab under ROLE's name and back afterwards. Repeatable; give both
    /// ends of each link.
    #[arg(long = "iface", value_name = "ROLE=IFNAME", global = true)]
    iface: Vec<lab::NicAssignment>,
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
    /// Survive: SIGKILLs and restarts of the dataplane under a paced
    /// stream; gap and frames lost per event, with the kernel fallback kept
    /// by the sidecar against detach-on-exit, in the same run.
    Survive {
        /// Kills (and restarts) per mode.
        #[arg(long, default_value_t = 20)]
        events: u32,
        /// Offered rate, frames per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// fallback.stall_ms of the keep mode.
        #[arg(long, default_value_t = tapline_dataplane::config::DEFAULT_STALL_MS)]
        stall_ms: u32,
        /// Directory for survive.{json,md}.
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
    /// Inline throughput: tapline against the Linux bridge, tc mirred, an
    /// AF_PACKET forwarder, DPDK testpmd and Suricata (when installed).
    Bridge {
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
    },
    /// Per-frame cost of tapline's own code: the tasks' poll over in-memory
    /// rings with a fake kernel (frames/s; instructions/frame with --callgrind).
    Micro {
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
    },
    /// Per-frame cost of the pcap-filter: ns/frame of matching (frame
    /// parsed) and of parsing + matching, for typical filters over a mix
    /// of 16 frames (IPv4/IPv6, tagged, ARP).
    MicroFilter {
        /// Frames per timed repetition (per filter).
        #[arg(long, default_value_t = 5_000_000)]
        frames: u64,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// Write micro-filter.json and micro-filter.md under this directory.
        #[arg(long)]
        out: Option<PathBuf>,
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
    },
    /// RFC 2544-style searches on the inline lab: the no-drop rate (NDR,
    /// no loss) and the partial-drop rate (PDR, at most 0.1% loss) by binary
    /// search over paced runs, then latency at 10%, 50% and 90% of the NDR;
    /// repeated with the DUTs interleaved, reporting medians, ratios of
    /// tapline to each peer and the targets.
    Ndr {
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
    },
    /// Passive side on the passive lab, in one run, interleaved: capture to
    /// disk (tapline's recorder against tcpdump and netsniff-ng: frames
    /// written to pcap files against frames sent), the cost of fan-out
    /// (tapline with 0, 1, 2, 4 output groups) and the zero-drop rate (a
    /// binary search per DUT over the paced rate: tapline and an AF_PACKET
    /// recvmmsg reader by their counters, tapline's recorder, tcpdump -w and
    /// netsniff-ng by the records in their files).
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
    },
}

/// `tapline-bench peer ...`: a benchmark peer run as its own process (the
/// benchmarks start it inside a lab namespace). It prints {"event":"ready"}
/// once its sockets are bound, and its counters as one {"event":"done",...}
/// line after SIGTERM or SIGINT. Parsed apart from [`Args`]: its command
/// line is a contract with the benchmarks and takes none of the main CLI's
/// global options (its `--iface` is an interface, not a NIC assignment).
#[derive(Debug, Parser)]
#[command(
    name = "tapline-bench peer",
    bin_name = "tapline-bench peer",
    about = "Run a benchmark peer"
)]
struct PeerArgs {
    #[command(subcommand)]
    peer: PeerCmd,
}

/// The first argument that selects [`PeerArgs`].
const PEER_COMMAND: &str = "peer";

#[derive(Debug, Subcommand)]
enum PeerCmd {
    /// AF_PACKET L2 forwarder A <-> B (recvmmsg/sendmmsg, one thread per
    /// direction); done: forwarded, dropped, kernel_drops.
    AfPacketFwd {
        /// First interface.
        #[arg(long)]
        a: String,
        /// Second interface.
        #[arg(long)]
        b: String,
        /// Frames per recvmmsg/sendmmsg (1 to 1024).
        #[arg(long, default_value_t = afpacket::DEFAULT_BATCH)]
        batch: usize,
    },
    /// AF_PACKET reader counting frames on IFACE (recvmmsg); done:
    /// received, bytes, kernel_drops.
    AfPacketRead {
        /// Interface to read.
        #[arg(long)]
        iface: String,
        /// Frames per recvmmsg (1 to 1024).
        #[arg(long, default_value_t = afpacket::DEFAULT_BATCH)]
        batch: usize,
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

/// Handles SIGINT and SIGTERM on a thread of their own: the NICs that labs
/// of this process hold are returned (their drops will not run), and the
/// process exits with 128 + the signal's number. The handlers only write to
/// a pipe (signal-hook); no signal is blocked, so the children (the
/// dataplane, the peers) start with the usual signal mask.
fn exit_on_signal() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT and SIGTERM handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Some(signo) = signals.forever().next() else {
                return;
            };
            let signal = nix::sys::signal::Signal::try_from(signo)
                .map_or_else(|_| format!("signal {signo}"), |s| s.to_string());
            let labs = lab::return_all_nics();
            if labs.is_empty() {
                eprintln!("tapline-bench: {signal}: exiting");
            }
            for (prefix, result) in labs {
                match result {
                    Ok(t) => eprintln!(
                        "tapline-bench: {signal}: lab {prefix} removed, NICs returned: {}",
                        t.nics.join(", ")
                    ),
                    Err(e) => eprintln!(
                        "tapline-bench: {signal}: lab {prefix}: {e:#}; `tapline-bench lab down --prefix {prefix}` tries again"
                    ),
                }
            }
            std::process::exit(128 + signo);
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == PEER_COMMAND)
    {
        return match PeerArgs::parse_from(std::env::args_os().skip(1)).peer {
            PeerCmd::AfPacketFwd { a, b, batch } => afpacket::run_forwarder(&a, &b, batch),
            PeerCmd::AfPacketRead { iface, batch } => afpacket::run_reader(&iface, batch),
        };
    }
    exit_on_signal()?;
    let args = Args::parse();
    // clap does not merge a global option given both before and after the
    // subcommand: one side's values replace the other's. Refuse that
    // rather than build a lab on some of the NICs.
    let iface_given = std::env::args_os()
        .filter(|a| a == "--iface" || a.to_string_lossy().starts_with("--iface="))
        .count();
    if iface_given != args.iface.len() {
        bail!("--iface: give all of them on the same side of the subcommand (before or after it)");
    }
    if !args.iface.is_empty() {
        if matches!(
            args.cmd,
            Cmd::Lab {
                op: LabOp::Down { .. }
            }
        ) {
            bail!("--iface builds labs on NICs; lab down returns the NICs its lab recorded");
        }
        lab::set_external(lab::Nics::new(args.iface)?);
    }
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
            for nic in l.nics() {
                println!("  NIC {nic}");
            }
            l.persist();
        }
        Cmd::Lab {
            op: LabOp::Down { prefix },
        } => {
            let t = lab::teardown(&prefix)?;
            println!("lab {prefix} down: {} namespaces removed", t.namespaces);
            if !t.nics.is_empty() {
                println!("  NICs returned: {}", t.nics.join(", "));
            }
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
            let progress = Progress::steps("chain");
            let r = chain_bench::throughput(&cfg, kind, |s, i, n| {
                progress.step(i, n, &format!(
                    "[{i}/{n}] {} hops rep {}: offered {:.3} Mpps, delivered {:.3} Mpps, steal {:.1}%",
                    s.hops,
                    s.rep,
                    s.offered_pps / 1e6,
                    s.delivered_pps / 1e6,
                    s.steal_ratio * 100.0
                ));
            })?;
            progress.finish();
            let md = chain_bench::throughput_markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "chain", &r, &md)?;
            }
        }
        Cmd::Survive {
            events,
            rate,
            stall_ms,
            out,
        } => {
            let cfg = tapline_bench::survive::SurviveConfig {
                events,
                rate_pps: rate,
                stall_ms,
            };
            let r = tapline_bench::survive::survive(&cfg, |mode, e| {
                eprintln!(
                    "{mode} {} {:>2}: largest gap {:.1} ms, {} frames lost",
                    e.kind, e.index, e.largest_gap_ms, e.lost_frames
                );
            })?;
            let md = tapline_bench::survive::survive_markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "survive", &r, &md)?;
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
            let progress = Progress::steps("failover");
            let r = chain_bench::failover(&cfg, kind, |f| {
                progress.step(f.index as usize + 1, failures as usize, &format!(
                    "failure {:>2}: bypassed after {:.1} ms, {} frames lost ({:.1} ms of traffic), UP again {:.0} ms after the link returned",
                    f.index, f.detection_ms, f.lost_frames, f.loss_window_ms, f.recovery_ms
                ));
            })?;
            progress.finish();
            let md = chain_bench::failover_markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "failover", &r, &md)?;
            }
        }
        Cmd::Bridge {
            reps,
            seconds,
            frame_lens,
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
                frame_lens,
                flows,
                gen_cpu,
                dut_cpu,
                dataplane_keys: dataplane_keys.replace("\\n", "\n"),
                xdp_keys: xdp_keys.replace("\\n", "\n"),
            };
            let progress = Progress::steps("bridge");
            let r = inline_bench::run(&cfg, |s, i, n| {
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
                progress.step(i, n, &line);
            })?;
            progress.finish();
            let md = inline_bench::markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "bridge", &r, &md)?;
                if let Some(svg) = inline_bench::throughput_plot(&r)? {
                    let path = report::write_svg(&dir, "bridge-throughput", &svg)?;
                    eprintln!("plot written to {}", path.display());
                }
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
                return micro::run_inner(path.0, frames, batch);
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
        Cmd::MicroFilter { frames, reps, out } => {
            let r = filter_micro::run(frames, reps)?;
            let md = filter_micro::markdown(&r);
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "micro-filter", &r, &md)?;
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
            reps,
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
                reps,
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
            println!("{md}");
            if let Some(dir) = out {
                report::write_results(&dir, "ndr", &r, &md)?;
                let plots = search::write_plots(&r, &dir)?;
                if plots.is_empty() {
                    eprintln!("no latency CDF plot: no DUT's NDR search found a rate");
                }
                for p in plots {
                    eprintln!("plot written to {}", p.display());
                }
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
            zero_drop,
            zero_drop_trial_seconds,
            zero_drop_max_pps,
            zero_drop_min_pps,
            zero_drop_resolution_pct,
            zero_drop_max_trials,
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
                zero_drop: passive_bench::ZeroDropConfig {
                    duts: zero_drop
                        .iter()
                        .filter(|d| !d.is_empty())
                        .map(|d| passive_bench::ZeroDropDut::parse(d))
                        .collect::<Result<Vec<_>>>()?,
                    trial_seconds: zero_drop_trial_seconds,
                    max_pps: zero_drop_max_pps,
                    min_pps: zero_drop_min_pps,
                    resolution_pct: zero_drop_resolution_pct,
                    max_trials: zero_drop_max_trials,
                },
            };
            let progress = Progress::steps("passive");
            let r = passive_bench::run(&cfg, |p, i, n| {
                progress.set_done(i, n);
                progress.suspend(|| match p {
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
                passive_bench::Progress::ZeroDropTrial(t) => eprintln!(
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
                passive_bench::Progress::ZeroDrop(s) => eprintln!(
                    "[{i}/{n}] zero-drop {:<14} rep {}: {} kfps ({:?}, {} trials)",
                    s.dut.name(),
                    s.rep,
                    passive_bench::zero_drop_cell(s),
                    s.outcome,
                    s.trials.len()
                ),
            })
            })?;
            progress.finish();
            let md = passive_bench::markdown(&r);
            println!("{md}");
            report::write_results(&out, "passive", &r, &md)?;
        }
    }
    Ok(())
}
