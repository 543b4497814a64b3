//! `tapline-dataplane`: the worker process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info};

use tapline_config::Config;
use tapline_dataplane::engine::exit;
use tapline_dataplane::stats::StatsRegistry;
use tapline_dataplane::Dataplane;
use tapline_packet::logging::LogArgs;
use tapline_segment::DropReason;

/// tapline's packet dataplane: AF_XDP capture on passive-1 and an inline
/// bridge between inline-1 and inline-2.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; see docs/config.md).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[command(flatten)]
    log: LogArgs,
    /// Validate the configuration and the interfaces it names, then exit.
    #[arg(long)]
    check: bool,
}

const TICK: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args = Args::parse();
    args.log.init();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if args.check {
        return match tapline_dataplane::engine::preflight(&cfg) {
            Ok(_) => {
                info!(config = %args.config.display(), "configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::from(e.exit_code())
            }
        };
    }

    let stop = Arc::new(AtomicBool::new(false));
    // A parent may have left SIGTERM or SIGINT blocked (the mask is
    // inherited across exec): unblock them, or a stop request would never
    // arrive.
    if let Err(e) = tapline_dataplane::sys::process::unblock_stop_signals() {
        error!(error = %e, "cannot unblock SIGTERM and SIGINT");
        return ExitCode::from(exit::OSERR);
    }
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            error!(error = %e, "cannot install signal handler");
            return ExitCode::from(exit::OSERR);
        }
    }

    let mut dp = match Dataplane::start(&cfg) {
        Ok(dp) => dp,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let modes: Vec<String> = dp
        .stats()
        .queues
        .iter()
        .map(|q| format!("{}={}:q{}:{}", q.role, q.ifname, q.queue, q.mode))
        .collect();
    info!(
        ports = %tapline_dataplane::logfields::json(&modes),
        "dataplane running"
    );

    let log_every = Duration::from_secs(u64::from(cfg.log_stats_interval_s));
    let mut next_log = Instant::now() + log_every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        dp.heartbeat();
        if cfg.log_stats_interval_s > 0 && Instant::now() >= next_log {
            next_log += log_every;
            log_counters("counters", dp.stats());
        }
    }
    info!("signal received, stopping");
    let stats = dp.stop();
    log_counters("final counters", &stats);
    ExitCode::SUCCESS
}

fn log_counters(what: &str, stats: &StatsRegistry) {
    for role in stats.roles() {
        let t = stats.port_totals(role);
        info!(
            port = %role,
            rx_packets = t.rx_packets,
            rx_bytes = t.rx_bytes,
            tx_packets = t.tx_packets,
            tx_bytes = t.tx_bytes,
            drop_tx_ring_full = t.drops[DropReason::TxRingFull as usize],
            kernel_rx_dropped = t.kernel_rx_dropped,
            kernel_rx_ring_full = t.kernel_rx_ring_full,
            kernel_fill_ring_empty = t.kernel_fill_ring_empty,
            kernel_invalid_descs = t.kernel_invalid_descs,
            "{what}"
        );
    }
}
