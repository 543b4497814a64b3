//! `[tap]`: caps of live taps (`Admin.Tap`).

use std::time::Duration;

use crate::error::{err, ConfigError};
use crate::raw::RawTap;

/// Default of `tap.max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// Default of `tap.max_snaplen` (and of `tap.default_snaplen`).
pub const DEFAULT_MAX_SNAPLEN: u32 = 65_535;
/// Default of `tap.max_duration_s`.
pub const DEFAULT_MAX_DURATION_S: u64 = 3600;
/// Default of `tap.queue_packets`.
pub const DEFAULT_QUEUE_PACKETS: usize = 8192;

/// Most taps `tap.max_concurrent` allows.
const MAX_TAPS: usize = 64;
/// Bounds of the tap snap lengths (pcap's usual maximum).
const TAP_SNAPLEN_MIN: u32 = 64;
const TAP_SNAPLEN_MAX: u32 = 262_144;
/// Longest `tap.max_duration_s`: a day.
const TAP_DURATION_MAX_S: u64 = 86_400;
/// Bounds of `tap.queue_packets`.
const TAP_QUEUE_MIN: usize = 16;
const TAP_QUEUE_MAX: usize = 1 << 20;

/// The `[tap]` section: caps the dataplane applies to every tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSettings {
    /// Taps running at once (`tap.max_concurrent`); 0 disables taps.
    pub max_concurrent: usize,
    /// Largest snap length a client may ask for, in bytes.
    pub max_snaplen: u32,
    /// Snap length of a request that asks for none (0), in bytes.
    pub default_snaplen: u32,
    /// Longest a tap runs; also the limit of a request without one.
    pub max_duration: Duration,
    /// Packets a tap's queue holds (its buffers, allocated at start).
    pub queue_packets: usize,
}

impl Default for TapSettings {
    fn default() -> Self {
        TapSettings {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_snaplen: DEFAULT_MAX_SNAPLEN,
            default_snaplen: DEFAULT_MAX_SNAPLEN,
            max_duration: Duration::from_secs(DEFAULT_MAX_DURATION_S),
            queue_packets: DEFAULT_QUEUE_PACKETS,
        }
    }
}

/// `[tap]` into [`TapSettings`].
pub(crate) fn validate_tap(t: &RawTap) -> Result<TapSettings, ConfigError> {
    if t.max_concurrent > MAX_TAPS {
        return Err(err(
            "tap.max_concurrent",
            format!(
                "{} must be from 0 (taps disabled) to {MAX_TAPS}",
                t.max_concurrent
            ),
        ));
    }
    if !(TAP_SNAPLEN_MIN..=TAP_SNAPLEN_MAX).contains(&t.max_snaplen) {
        return Err(err(
            "tap.max_snaplen",
            format!(
                "{} must be from {TAP_SNAPLEN_MIN} to {TAP_SNAPLEN_MAX} bytes",
                t.max_snaplen
            ),
        ));
    }
    let default_snaplen = t.default_snaplen.unwrap_or(t.max_snaplen);
    if !(TAP_SNAPLEN_MIN..=t.max_snaplen).contains(&default_snaplen) {
        return Err(err(
            "tap.default_snaplen",
            format!(
                "{default_snaplen} must be from {TAP_SNAPLEN_MIN} to tap.max_snaplen ({})",
                t.max_snaplen
            ),
        ));
    }
    if !(1..=TAP_DURATION_MAX_S).contains(&t.max_duration_s) {
        return Err(err(
            "tap.max_duration_s",
            format!(
                "{} must be from 1 to {TAP_DURATION_MAX_S} (a day)",
                t.max_duration_s
            ),
        ));
    }
    if !(TAP_QUEUE_MIN..=TAP_QUEUE_MAX).contains(&t.queue_packets) {
        return Err(err(
            "tap.queue_packets",
            format!(
                "{} must be from {TAP_QUEUE_MIN} to {TAP_QUEUE_MAX}",
                t.queue_packets
            ),
        ));
    }
    Ok(TapSettings {
        max_concurrent: t.max_concurrent,
        max_snaplen: t.max_snaplen,
        default_snaplen,
        max_duration: Duration::from_secs(t.max_duration_s),
        queue_packets: t.queue_packets,
    })
}
