//! `tapline-bench peer ...`: a benchmark peer run as its own process (the
//! benchmarks start it inside a lab namespace).

use anyhow::Result;
use clap::{Parser, Subcommand};
use tapline_bench::afpacket;

/// `tapline-bench peer ...`: a benchmark peer run as its own process (the
/// benchmarks start it inside a lab namespace). It prints {"event":"ready"}
/// once its sockets are bound, and its counters as one {"event":"done",...}
/// line after SIGTERM or SIGINT. Parsed apart from [`super::Args`]: its command
/// line is a contract with the benchmarks and takes none of the main CLI's
/// global options (its `--iface` is an interface, not a NIC assignment).
#[derive(Debug, Parser)]
#[command(
    name = "tapline-bench peer",
    bin_name = "tapline-bench peer",
    about = "Run a benchmark peer"
)]
pub(crate) struct PeerArgs {
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

impl PeerArgs {
    /// Whether this command line (the process's arguments) is a peer's.
    pub(crate) fn selected() -> bool {
        std::env::args_os()
            .nth(1)
            .is_some_and(|a| a == PEER_COMMAND)
    }

    /// Parses the process's arguments after `peer` and runs the peer.
    pub(crate) fn run() -> Result<()> {
        match PeerArgs::parse_from(std::env::args_os().skip(1)).peer {
            PeerCmd::AfPacketFwd { a, b, batch } => afpacket::run_forwarder(&a, &b, batch),
            PeerCmd::AfPacketRead { iface, batch } => afpacket::run_reader(&iface, batch),
        }
    }
}
