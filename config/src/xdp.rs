//! `[xdp]`: the mode an operator asks for and the UMEM and ring geometry.

use crate::error::{err, ConfigError};
use crate::raw::RawXdp;

/// Sizes of a UMEM frame the dataplane supports (aligned chunks the kernel
/// accepts); the dataplane's `xdp::umem::FRAME_SIZES` is checked against
/// this at compile time.
pub const FRAME_SIZES: [u32; 2] = [2048, 4096];
const MIN_RING: u32 = 64;
const MAX_RING: u32 = 16384;
const MAX_FRAMES: u32 = 1 << 20;

named_enum! {
    /// The mode an operator asks for (`xdp.mode`).
    pub enum XdpMode: "a mode" {
        /// native+zero-copy, then native+copy, then generic+copy.
        Auto = "auto",
        NativeZeroCopy = "native-zerocopy",
        NativeCopy = "native-copy",
        Generic = "generic",
    }
}

/// Sizes of the four rings of a socket (powers of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSizes {
    pub rx: u32,
    pub tx: u32,
    pub fill: u32,
    pub completion: u32,
}

/// UMEM and ring geometry for a queue group.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub frame_size: u32,
    pub frame_count: u32,
    pub rings: RingSizes,
}

fn check_ring(field: &str, v: u32) -> Result<u32, ConfigError> {
    if !v.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&v) {
        return Err(err(
            field,
            format!("{v} must be a power of two from {MIN_RING} to {MAX_RING}"),
        ));
    }
    Ok(v)
}

/// `[xdp]` into the mode and the geometry; `batch_size`
/// (`dataplane.batch_size`) must fit in a ring.
pub(crate) fn validate_xdp(
    x: &RawXdp,
    batch_size: u32,
) -> Result<(XdpMode, Geometry), ConfigError> {
    let mode: XdpMode = x
        .mode
        .parse()
        .map_err(|e: crate::UnknownName| err("xdp.mode", e.to_string()))?;
    if !FRAME_SIZES.contains(&x.frame_size) {
        return Err(err(
            "xdp.frame_size",
            format!("{} must be 2048 or 4096", x.frame_size),
        ));
    }
    let ring = check_ring("xdp.ring_size", x.ring_size)?;
    if batch_size > ring {
        return Err(err(
            "dataplane.batch_size",
            format!("{batch_size} is larger than xdp.ring_size {ring}"),
        ));
    }
    if x.frame_count < 2 * ring || x.frame_count > MAX_FRAMES {
        return Err(err(
            "xdp.frame_count",
            format!(
                "{} must be from 2 x ring_size ({}) to {MAX_FRAMES}, so both fill rings of a bridge can be full",
                x.frame_count,
                2 * ring
            ),
        ));
    }
    let geometry = Geometry {
        frame_size: x.frame_size,
        frame_count: x.frame_count,
        rings: RingSizes {
            rx: ring,
            tx: ring,
            fill: ring,
            completion: ring,
        },
    };
    Ok((mode, geometry))
}
