//! `taplinectl`: the operator CLI of tapline, a gRPC client of
//! `tapline-control` (the `tapline.v1.Observer` and `tapline.v1.Admin`
//! services and `grpc.health.v1.Health`).
//!
//! Output is a human-readable table by default; `--json` prints the RPC's
//! response in the proto3 JSON mapping (what grpcurl and `buf curl` print),
//! documented in the `--help` of each verb; keys are only ever added.
//! Failures print one line on stderr and exit with a code that tells
//! scripts what went wrong (see [`exit`]).
//!
//! Modules: one per verb group ([`status`]: status and health, [`stats`],
//! [`chain`], [`tap`]), and the shared [`conn`] (endpoint, TLS, token,
//! status-to-exit-code mapping), [`output`] (JSON, tables, number
//! formatting), [`failure`], [`help`] and [`manual`] (completion scripts
//! and the man page).
//!
//! No `unsafe` here.

#![forbid(unsafe_code)]

mod chain;
mod conn;
mod failure;
mod help;
mod manual;
mod output;
mod stats;
mod status;
mod tap;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use failure::{esc, Failure};
use help::*;

/// Exit codes (sysexits.h where one fits).
mod exit {
    /// The server answered with an error (or refused a change).
    pub const SERVER: u8 = 1;
    /// Bad command line, endpoint, token file or input file.
    pub const USAGE: u8 = 2;
    /// EX_UNAVAILABLE: `tapline-control` cannot be reached.
    pub const UNREACHABLE: u8 = 69;
    /// EX_NOPERM: the server wants a token, or rejected the one given.
    pub const UNAUTHENTICATED: u8 = 77;
    /// `health` and `status`: the server answered, but its overall health
    /// is not SERVING (grpc_health_probe's "unhealthy" code).
    pub const NOT_SERVING: u8 = 4;
}

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// The operator CLI of tapline: reads the dataplane's state, counters,
/// health and inline chain from tapline-control.
#[derive(Debug, Parser)]
#[command(name = "taplinectl", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// gRPC endpoint of tapline-control (http://HOST:PORT, or
    /// https://HOST:PORT with --ca; "HOST:PORT" is taken as http).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = DEFAULT_ENDPOINT,
        env = "TAPLINE_ENDPOINT"
    )]
    endpoint: String,
    /// File holding the bearer token of your identity, used for every
    /// verb (its content, trimmed, is sent as `authorization: Bearer
    /// TOKEN`).
    #[arg(long, global = true, value_name = "FILE", env = "TAPLINE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA bundle that verifies tapline-control's certificate (https://).
    #[arg(long, global = true, value_name = "FILE", env = "TAPLINE_CA")]
    ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --key).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TAPLINE_CERT",
        requires = "key"
    )]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TAPLINE_KEY",
        requires = "cert"
    )]
    key: Option<PathBuf>,
    /// The name to verify in the server's certificate, when it differs from
    /// the endpoint's host (e.g. connecting by IP).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "TAPLINE_TLS_SERVER_NAME"
    )]
    tls_server_name: Option<String>,
    /// Print the response as JSON in the proto3 JSON mapping, as grpcurl
    /// prints it (shape in each verb's --help).
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call (not of watches), in milliseconds; `chain set`
    /// waits at least 20000 (the dataplane applies the chain before it
    /// answers).
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Dataplane information and a health summary.
    #[command(after_long_help = STATUS_HELP)]
    Status,
    /// Counters per port and queue, worker, hop, output group, recorder and
    /// live tap (--watch: refreshed, with rates).
    #[command(after_long_help = STATS_HELP)]
    Stats(StatsArgs),
    /// The inline chain: get, watch, set, bypass.
    #[command(subcommand)]
    Chain(ChainVerb),
    /// Health of the service names "", "passive-1" and "inline".
    #[command(after_long_help = HEALTH_HELP)]
    Health,
    /// Live packet tap: copies of the packets at one point, as lines or
    /// pcap (-w).
    #[command(after_long_help = TAP_HELP)]
    Tap(tap::TapArgs),
    /// Print a shell completion script (e.g. `source <(taplinectl
    /// completion bash)`).
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (`taplinectl man > taplinectl.1`).
    Man,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Keep printing snapshots, with rates.
    #[arg(long)]
    watch: bool,
    /// Time between snapshots of --watch, in milliseconds (the server may
    /// clamp it).
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "watch")]
    interval_ms: u32,
    /// Stop after this many snapshots (--watch).
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// Only ports in this role (repeatable), e.g. --role inline-1.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChainVerb {
    /// Print the chain.
    #[command(after_long_help = CHAIN_HELP)]
    Get,
    /// Print the chain, then again at each change (Ctrl-C to stop).
    #[command(after_long_help = CHAIN_HELP)]
    Watch {
        /// Stop after this many messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Replace the desired chain with the spec in FILE.
    #[command(after_long_help = CHAIN_SET_HELP)]
    Set {
        /// JSON chain spec ("-" for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Only validate the spec; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply only if the current generation is this (compare-and-set).
        #[arg(long, value_name = "N")]
        expected_generation: Option<u64>,
    },
    /// Set or clear the manual bypass of a hop.
    #[command(after_long_help = CHAIN_BYPASS_HELP)]
    Bypass {
        /// Name of the hop.
        hop: String,
        /// Clear the bypass: the hop's health decides again.
        #[arg(long)]
        clear: bool,
        /// Why, for people (shown in the hop's message).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

// ---------------------------------------------------------------------------
// Failures.

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.verb {
        Verb::Status => status::status(&cli).await,
        Verb::Stats(args) => stats::run(&cli, args).await,
        Verb::Chain(ChainVerb::Get) => chain::get(&cli).await,
        Verb::Chain(ChainVerb::Watch { count }) => chain::watch(&cli, *count).await,
        Verb::Chain(ChainVerb::Set {
            file,
            dry_run,
            expected_generation,
        }) => chain::set::run(&cli, file, *dry_run, *expected_generation).await,
        Verb::Chain(ChainVerb::Bypass { hop, clear, reason }) => {
            chain::bypass(&cli, hop, *clear, reason.as_deref()).await
        }
        Verb::Health => status::health(&cli).await,
        Verb::Tap(args) => tap::run(&cli, args).await,
        Verb::Completion { shell } => manual::completion(*shell),
        Verb::Man => manual::man(),
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits 2, --help and --version exit 0.
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::SERVER);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                // Line by line: some messages (a filter's caret) span lines.
                let lines: Vec<String> = f.message.lines().map(esc).collect();
                eprintln!("error: {}", lines.join("\n"));
            }
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_verb() {
        let a = Cli::try_parse_from(["taplinectl", "--json", "--endpoint", "h:1", "health"])
            .expect("parses");
        let b = Cli::try_parse_from(["taplinectl", "health", "--json", "--endpoint", "h:1"])
            .expect("parses");
        assert!(a.json && b.json);
        assert_eq!(a.endpoint, b.endpoint);
        let d = Cli::try_parse_from(["taplinectl", "status"]).expect("parses");
        assert_eq!(d.endpoint, DEFAULT_ENDPOINT);
        assert!(!d.json && d.token_file.is_none());
    }

    #[test]
    fn watch_options_require_watch() {
        assert!(Cli::try_parse_from(["taplinectl", "stats", "--interval-ms", "200"]).is_err());
        let c = Cli::try_parse_from([
            "taplinectl",
            "stats",
            "--watch",
            "--interval-ms",
            "200",
            "--count",
            "3",
        ])
        .expect("parses");
        let Verb::Stats(a) = c.verb else {
            panic!("stats")
        };
        assert!(a.watch && a.interval_ms == 200 && a.count == Some(3));
        let e = Cli::try_parse_from(["taplinectl", "bogus"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(exit::USAGE));
    }

    #[test]
    fn chain_set_takes_a_file() {
        let c = Cli::try_parse_from(["taplinectl", "chain", "set", "-f", "x.json", "--dry-run"])
            .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Set { dry_run: true, .. })
        ));
        assert!(Cli::try_parse_from(["taplinectl", "chain", "set"]).is_err());
        let c = Cli::try_parse_from([
            "taplinectl",
            "chain",
            "set",
            "-f",
            "x.json",
            "--expected-generation",
            "4",
        ])
        .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Set {
                expected_generation: Some(4),
                dry_run: false,
                ..
            })
        ));
    }

    #[test]
    fn chain_bypass_takes_a_hop() {
        let c = Cli::try_parse_from([
            "taplinectl",
            "chain",
            "bypass",
            "ids",
            "--reason",
            "upgrade, OPS-1",
        ])
        .expect("parses");
        let Verb::Chain(ChainVerb::Bypass { hop, clear, reason }) = c.verb else {
            panic!("bypass")
        };
        assert_eq!(hop, "ids");
        assert!(!clear);
        assert_eq!(reason.as_deref(), Some("upgrade, OPS-1"));
        let c = Cli::try_parse_from(["taplinectl", "chain", "bypass", "ids", "--clear"])
            .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Bypass { clear: true, .. })
        ));
        assert!(Cli::try_parse_from(["taplinectl", "chain", "bypass"]).is_err());
    }
}
