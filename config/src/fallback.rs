//! `[fallback]`: the inline pair's kernel fallback.

use crate::error::{err, ConfigError};
use crate::raw::RawFallback;

/// Default `fallback.stall_ms` (see docs/config.md for how it was chosen).
pub const DEFAULT_STALL_MS: u32 = 50;
/// Bounds of `fallback.stall_ms`.
const STALL_MS_MIN: u32 = 5;
const STALL_MS_MAX: u32 = 1000;

named_enum! {
    /// What happens to the inline ports' programs when the dataplane exits
    /// (`fallback.on_exit`).
    pub enum OnExit: "an exit behaviour" {
        /// The sidecar keeps the links: the kernel fallback carries the wire.
        Keep = "keep" ("the sidecar keeps the kernel fallback forwarding"),
        /// The programs go with the process (the link goes dark).
        Detach = "detach",
    }
}

/// The inline pair's kernel fallback (`[fallback]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackConfig {
    /// A worker that has not polled for this long loses its queues to the
    /// kernel fallback.
    pub stall_ms: u32,
    pub on_exit: OnExit,
    /// inline-1 losing carrier sets inline-2 down, and back.
    pub link_state: bool,
}

/// `[fallback]` into [`FallbackConfig`].
pub(crate) fn validate_fallback(f: &RawFallback) -> Result<FallbackConfig, ConfigError> {
    if !(STALL_MS_MIN..=STALL_MS_MAX).contains(&f.stall_ms) {
        return Err(err(
            "fallback.stall_ms",
            format!(
                "{} must be from {STALL_MS_MIN} to {STALL_MS_MAX}",
                f.stall_ms
            ),
        ));
    }
    let on_exit = f
        .on_exit
        .parse()
        .map_err(|e: crate::UnknownName| err("fallback.on_exit", e.to_string()))?;
    Ok(FallbackConfig {
        stall_ms: f.stall_ms,
        on_exit,
        link_state: f.link_state,
    })
}
