//! `tapline-control`: the control sidecar (gRPC API, health, Prometheus
//! metrics). See `docs/control.md`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;

use tapline_config::Config;
use tapline_packet::logging::LogArgs;

/// tapline's control sidecar: serves the dataplane's state, counters and
/// inline chain over gRPC (tapline.v1.Observer, tapline.v1.Admin,
/// grpc.health.v1.Health, reflection) and as Prometheus metrics. Chain
/// changes are forwarded to the dataplane's command socket. Needs no
/// privileges.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML; the one the dataplane reads, see
    /// docs/config.md).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[command(flatten)]
    log: LogArgs,
}

/// Threads of the runtime: the sidecar answers a few clients and reads
/// memory; it should not compete with the dataplane's workers for CPUs.
const RUNTIME_THREADS: usize = 2;

/// Completes on SIGTERM or SIGINT.
async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install the SIGTERM/SIGINT handlers; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.log.init();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(tapline_control::exit::CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("tapline-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(tapline_control::exit::OSERR);
        }
    };
    match runtime.block_on(tapline_control::serve(cfg, signalled())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
