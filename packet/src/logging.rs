//! Logging to stdout, as text or JSON (`--log-format json`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging flags every tapline binary takes (`--log-format`,
/// `--log-level`), flattened into each binary's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter directive (RUST_LOG overrides it).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl LogArgs {
    /// Installs the global subscriber as these flags say.
    pub fn init(&self) {
        init(self.log_format, &self.log_level);
    }
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive
/// (`info`, `debug`, `tapline_dataplane=debug`); `RUST_LOG` overrides it.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // Colour only for people at a terminal, never in collected logs.
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // JSON lines name their module (`target`), so a collector can
        // route them; fields are JSON values (numbers, booleans, strings).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_target(true)
            .try_init(),
    };
}
