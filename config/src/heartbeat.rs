//! `[heartbeat]`: how the dataplane judges a tool of the chain alive.

use crate::error::{err, ConfigError};
use crate::raw::RawHeartbeat;

/// Timing of heartbeats (`[heartbeat]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval_ns: u64,
    pub timeout_ns: u64,
    pub misses: u32,
    pub hold_ns: u64,
}

const NS_PER_MS: u64 = 1_000_000;

/// `[heartbeat]` into [`Timing`].
pub(crate) fn validate_heartbeat(hb: &RawHeartbeat) -> Result<Timing, ConfigError> {
    if !(1..=10_000).contains(&hb.interval_ms) {
        return Err(err(
            "heartbeat.interval_ms",
            format!("{} must be from 1 to 10000", hb.interval_ms),
        ));
    }
    if !(1..=60_000).contains(&hb.timeout_ms) {
        return Err(err(
            "heartbeat.timeout_ms",
            format!("{} must be from 1 to 60000", hb.timeout_ms),
        ));
    }
    if !(1..=60).contains(&hb.misses) {
        return Err(err(
            "heartbeat.misses",
            format!("{} must be from 1 to 60", hb.misses),
        ));
    }
    if hb.hold_ms > 3_600_000 {
        return Err(err(
            "heartbeat.hold_ms",
            format!("{} must be at most 3600000 (an hour)", hb.hold_ms),
        ));
    }
    Ok(Timing {
        interval_ns: u64::from(hb.interval_ms) * NS_PER_MS,
        timeout_ns: u64::from(hb.timeout_ms) * NS_PER_MS,
        misses: hb.misses,
        hold_ns: u64::from(hb.hold_ms) * NS_PER_MS,
    })
}
