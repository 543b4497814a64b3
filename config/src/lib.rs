//! tapline's configuration file (TOML), shared by `tapline-dataplane` and
//! `tapline-control`, and its validation into types that cannot hold an
//! invalid state. No kernel interface and no `unsafe`: the sidecar reads
//! the same file without linking the dataplane.
//!
//! One module per section, each with its validated types and the small
//! functions that check it: [`deployment`] (`[interfaces]`),
//! [`dataplane`], [`xdp`], [`control`], [`chain`], [`heartbeat`], [`tap`],
//! [`fallback`], [`output`] (`[[output_group]]`) and [`record`]
//! (`[[recorder]]`). The file as written is in `raw`; operator-facing
//! names (`xdp.mode`, failure actions, roles, ...) come from one table per
//! enum ([`names`]).
//!
//! Every key, its default and its meaning is listed in `docs/config.md`; a
//! test checks that the example in `containers/tapline.toml` parses.

#![forbid(unsafe_code)]

#[macro_use]
pub mod names;

pub mod chain;
pub mod control;
pub mod dataplane;
pub mod deployment;
mod error;
pub mod fallback;
pub mod heartbeat;
pub mod output;
mod raw;
pub mod record;
pub mod tap;
pub mod xdp;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use chain::{ChainSpec, FailureAction, HopSpec};
pub use control::{ClientAuth, ControlConfig, Role, TlsSettings};
pub use dataplane::{IdleKind, IdleMode, WorkerConfig, MAX_BATCH};
pub use deployment::{Deployment, InlinePair};
pub use error::{read_bounded, ConfigError, MAX_CONFIG_BYTES};
pub use fallback::{FallbackConfig, OnExit, DEFAULT_STALL_MS};
pub use heartbeat::Timing;
pub use names::{Named, UnknownName};
pub use output::{OutputGroup, MAX_GROUP_MEMBERS, MAX_OUTPUT_GROUPS, MAX_SNAPLEN};
pub use record::{RecordSettings, RecorderConfig, MAX_RECORDERS};
pub use tap::TapSettings;
pub use xdp::{Geometry, RingSizes, XdpMode};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What runs: passive-1, the inline pair, or both.
    pub deployment: Deployment,
    pub state_dir: PathBuf,
    pub workers: WorkerConfig,
    pub xdp_mode: XdpMode,
    pub geometry: Geometry,
    /// Hold every configured interface in promiscuous mode while running.
    pub promiscuous: bool,
    /// Uids besides the dataplane's own allowed on the command socket.
    pub command_uids: Vec<u32>,
    /// Seconds between counter summaries in the log; 0 disables them.
    pub log_stats_interval_s: u32,
    /// The initial chain (a chain persisted in `state_dir` takes precedence);
    /// hops only with the inline pair.
    pub chain: ChainSpec,
    /// How long a removed hop's tool is given to return the frames inside it
    /// before its ports are closed.
    pub chain_drain_ms: u32,
    /// `[chain] allowed_interfaces`: tool ports allowed despite a default
    /// route or a routable address.
    pub chain_allowed: Vec<String>,
    pub heartbeat: Timing,
    /// Caps of live taps (`[tap]`).
    pub tap: TapSettings,
    pub control: ControlConfig,
    /// The inline pair's kernel fallback (`[fallback]`).
    pub fallback: FallbackConfig,
    /// Passive output groups (`[[output_group]]`), in order; only with
    /// passive-1.
    pub output_groups: Vec<OutputGroup>,
    /// Recorders (`[[recorder]]`), in order; only with passive-1.
    pub recorders: Vec<RecorderConfig>,
}

impl Config {
    /// Reads and validates `path`: a regular file of at most
    /// [`MAX_CONFIG_BYTES`], opened without blocking (a FIFO or a device
    /// is refused, never read).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::parse(&read_bounded(path)?)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| error::toml_error(text, &e))?;
        validate(&raw)
    }

    /// passive-1, if configured.
    pub fn passive(&self) -> Option<&String> {
        self.deployment.passive()
    }

    /// The inline pair, if configured.
    pub fn inline(&self) -> Option<&InlinePair> {
        self.deployment.inline()
    }
}

/// Interfaces with a role output group members may not take: the ports of
/// the deployment and the sides of the hops.
fn reserved<'a>(deployment: &'a Deployment, chain: &'a ChainSpec) -> Vec<(&'a str, &'a str)> {
    deployment
        .ports()
        .into_iter()
        .map(|(role, name)| (name, role))
        .chain(
            chain
                .hops
                .iter()
                .flat_map(|h| [(h.a.as_str(), "a chain hop"), (h.b.as_str(), "a chain hop")]),
        )
        .collect()
}

/// Section by section, in the order errors are reported.
fn validate(raw: &raw::RawConfig) -> Result<Config, ConfigError> {
    let deployment = deployment::validate_interfaces(&raw.interfaces)?;
    let d = &raw.dataplane;
    let workers = dataplane::validate_dataplane(d)?;
    let (xdp_mode, geometry) = xdp::validate_xdp(&raw.xdp, workers.batch_size)?;
    let control = control::validate_control(&raw.control)?;
    let (chain, chain_drain_ms) = chain::validate_chain(&raw.chain, &deployment)?;
    let heartbeat = heartbeat::validate_heartbeat(&raw.heartbeat)?;
    let tap = tap::validate_tap(&raw.tap)?;
    let output_groups = output::validate_groups(
        &raw.output_group,
        &deployment,
        &reserved(&deployment, &chain),
    )?;
    let recorders = record::validate_recorders(&raw.recorder, &deployment)?;
    let fallback = fallback::validate_fallback(&raw.fallback)?;
    let chain_allowed = deployment::check_allowed(
        "chain.allowed_interfaces",
        raw.chain.allowed_interfaces.clone(),
    )?;
    Ok(Config {
        deployment,
        state_dir: d.state_dir.clone(),
        workers,
        xdp_mode,
        geometry,
        promiscuous: d.promiscuous,
        command_uids: d.command_uids.clone(),
        log_stats_interval_s: d.log_stats_interval_s,
        chain,
        chain_drain_ms,
        chain_allowed,
        heartbeat,
        tap,
        control,
        fallback,
        output_groups,
        recorders,
    })
}
