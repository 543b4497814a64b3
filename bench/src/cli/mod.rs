//! The `tapline-bench` command line: one module per group of subcommands,
//! each holding its arguments and the function that runs it.

use std::path::Path;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tapline_bench::{inline_bench, lab, report};

mod chain;
mod demo;
mod inline;
mod lab_cmd;
mod micro;
mod passive;
pub(crate) mod peer;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "tapline lab topologies, traffic generator, benchmarks and demo"
)]
pub(crate) struct Args {
    /// Cable a link of the labs with a real test NIC instead of a veth
    /// pair: lab interface ROLE (g0, i1, i2, s0, t0, p1, hKa, hKb, toolK:a,
    /// toolK:b, dut:M and sen-M:e0 for sensor M) is NIC IFNAME, moved into
    /// the lab under ROLE's name and back afterwards. Repeatable; give both
    /// ends of each link.
    #[arg(long = "iface", value_name = "ROLE=IFNAME", global = true)]
    pub(crate) iface: Vec<lab::NicAssignment>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Build or remove a lab of network namespaces and veth pairs.
    Lab {
        #[command(subcommand)]
        op: lab_cmd::LabOp,
    },
    /// Self-contained demo: lab, dataplane, traffic, counters, teardown.
    Demo(demo::DemoArgs),
    /// Chain throughput against the number of hops (0 to --max-hops).
    Chain(chain::ChainArgs),
    /// Survive: SIGKILLs and restarts of the dataplane under a paced
    /// stream; gap and frames lost per event, with the kernel fallback kept
    /// by the sidecar against detach-on-exit, in the same run.
    Survive(chain::SurviveArgs),
    /// Failover: induced tool failures under paced traffic; detection to
    /// bypass time and frames lost per failure.
    Failover(chain::FailoverArgs),
    /// Inline throughput: tapline against the Linux bridge, tc mirred, an
    /// AF_PACKET forwarder, DPDK testpmd and Suricata (when installed).
    Bridge(inline::BridgeArgs),
    /// Per-frame cost of tapline's own code: the tasks' poll over in-memory
    /// rings with a fake kernel (frames/s; instructions/frame with --callgrind).
    Micro(micro::MicroArgs),
    /// Per-frame cost of the pcap-filter: ns/frame of matching (frame
    /// parsed) and of parsing + matching, for typical filters over a mix
    /// of 16 frames (IPv4/IPv6, tagged, ARP).
    MicroFilter(micro::MicroFilterArgs),
    /// One paced run through a DUT on the inline lab: test frames with
    /// sequence numbers and timestamps from g0, an AF_XDP sink on s0;
    /// prints sent, received, lost, reordered, duplicated and one-way
    /// latency percentiles.
    Run(inline::RunArgs),
    /// RFC 2544-style searches on the inline lab: the no-drop rate (NDR,
    /// no loss) and the partial-drop rate (PDR, at most 0.1% loss) by binary
    /// search over paced runs, then latency at 10%, 50% and 90% of the NDR;
    /// repeated with the DUTs interleaved, reporting medians, ratios of
    /// tapline to each peer and the targets.
    Ndr(inline::NdrArgs),
    /// Passive side on the passive lab, in one run, interleaved: capture to
    /// disk (tapline's recorder against tcpdump and netsniff-ng: frames
    /// written to pcap files against frames sent), the cost of fan-out
    /// (tapline with 0, 1, 2, 4 output groups) and the zero-drop rate (a
    /// binary search per DUT over the paced rate: tapline and an AF_PACKET
    /// recvmmsg reader by their counters, tapline's recorder, tcpdump -w and
    /// netsniff-ng by the records in their files).
    Passive(passive::PassiveArgs),
}

impl Cmd {
    /// Whether this is `lab down`, which returns the NICs its lab recorded
    /// and takes no `--iface`.
    pub(crate) fn is_lab_down(&self) -> bool {
        matches!(self, Cmd::Lab { op } if op.is_down())
    }

    pub(crate) fn run(self) -> Result<()> {
        match self {
            Cmd::Lab { op } => op.run(),
            Cmd::Demo(a) => a.run(),
            Cmd::Chain(a) => a.run(),
            Cmd::Survive(a) => a.run(),
            Cmd::Failover(a) => a.run(),
            Cmd::Bridge(a) => a.run(),
            Cmd::Micro(a) => a.run(),
            Cmd::MicroFilter(a) => a.run(),
            Cmd::Run(a) => a.run(),
            Cmd::Ndr(a) => a.run(),
            Cmd::Passive(a) => a.run(),
        }
    }
}

/// Extra TOML keys as given on the command line: a literal `\n` separates
/// keys.
fn toml_keys(keys: &str) -> String {
    keys.replace("\\n", "\n")
}

/// Parses DUT names given on the command line.
fn parse_duts(names: &[String]) -> Result<Vec<inline_bench::Dut>> {
    names.iter().map(|d| inline_bench::Dut::parse(d)).collect()
}

/// Prints a benchmark's Markdown report, and writes NAME.json and NAME.md
/// under `out` when given.
fn publish<T: Serialize>(out: Option<&Path>, name: &str, result: &T, md: &str) -> Result<()> {
    println!("{md}");
    if let Some(dir) = out {
        report::write_results(dir, name, result, md)?;
    }
    Ok(())
}
