//! Traffic: frame builders, the test header that generated frames carry
//! (sequence number and send timestamp, parsed by the sink in
//! [`crate::sink`]), and an AF_XDP generator built on the dataplane's own
//! socket types.
//!
//! Modules: [`header`] (the test header and the frame template that
//! carries it), [`generator`] (the AF_XDP generator); the simple frame
//! builders and the frame sizes are here.

use serde::Serialize;

mod generator;
mod header;
#[cfg(test)]
mod tests;

pub use generator::{xdp_generate, GenConfig, GenReport};
pub use header::{
    monotonic_ns, parse_test_header, TestFrameTemplate, TestHeader, WireSeq, COMPACT_HEADER_LEN,
    COMPACT_MAGIC, ETH_HEADER_BYTES, TEST_HEADER_LEN, TEST_MAGIC,
};

/// Source MAC prefix of every frame tapline's tools build (`02:74:61:70`,
/// locally administered, "tap"), so receivers can ignore anything else.
pub const SRC_MAC_PREFIX: [u8; 4] = [0x02, 0x74, 0x61, 0x70];
/// A destination MAC that belongs to no one in the lab.
pub const FOREIGN_DST_MAC: [u8; 6] = [0x02, 0x99, 0x00, 0x00, 0x00, 0x01];
/// IEEE 802 local experimental ethertype: a non-IP payload.
pub const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
/// Smallest Ethernet frame without FCS.
pub const MIN_FRAME: usize = 60;
/// Largest untagged frame for a 1500-byte MTU, without FCS.
pub const MAX_FRAME: usize = 1514;

/// The kind of frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Ethernet + IPv4 + UDP.
    Udp4,
    /// The same behind an 802.1Q tag.
    VlanUdp4 { vid: u16 },
    /// A non-IP ethertype with an opaque payload.
    Raw,
}

/// Builds a frame of exactly `len` bytes (at least 60 + 4 if tagged) whose
/// source MAC is `SRC_MAC_PREFIX:sender:0`, carrying `seq` and `flow` so a
/// receiver can check identity and order. Payload bytes after the headers
/// are a function of `seq`, so corruption anywhere is detected.
pub fn build_frame(kind: FrameKind, len: usize, sender: u8, seq: u32, flow: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&FOREIGN_DST_MAC);
    f.extend_from_slice(&SRC_MAC_PREFIX);
    f.extend_from_slice(&[sender, 0]);
    match kind {
        FrameKind::Raw => {
            f.extend_from_slice(&ETHERTYPE_EXPERIMENTAL.to_be_bytes());
        }
        FrameKind::Udp4 | FrameKind::VlanUdp4 { .. } => {
            if let FrameKind::VlanUdp4 { vid } = kind {
                f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
            }
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip_len = (len - f.len()) as u16;
            let udp_len = ip_len - 20;
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[198, 18, 0, sender]);
            ip[16..20].copy_from_slice(&[198, 19, (flow >> 8) as u8, flow as u8]);
            let csum = ipv4_checksum(&ip);
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
            f.extend_from_slice(&ip);
            let mut udp = [0u8; 8];
            udp[0..2].copy_from_slice(&(10_000 + flow).to_be_bytes());
            udp[2..4].copy_from_slice(&9u16.to_be_bytes());
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&udp);
        }
    }
    f.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(2_654_435_761);
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f.push(x as u8);
    }
    f.truncate(len);
    f
}

/// The RFC 1071 checksum of an IPv4 header.
pub fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// True if `frame` was built by `build_frame` for `sender`.
pub fn is_ours(frame: &[u8], sender: u8) -> bool {
    frame.len() >= 12 && frame[6..10] == SRC_MAC_PREFIX && frame[10] == sender
}

/// Frame lengths on the wire of the simple IMIX (with FCS).
pub const IMIX_WIRE_LENS: [usize; 3] = [64, 594, 1518];
/// Bytes of the Ethernet FCS, which AF_XDP frames do not include.
pub const FCS_BYTES: usize = 4;
/// One IMIX cycle as indexes into [`IMIX_WIRE_LENS`]: 7 small, 4 medium,
/// 1 large, interleaved so no size comes in long runs.
const IMIX_ORDER: [usize; 12] = [0, 1, 0, 0, 1, 0, 2, 0, 1, 0, 0, 1];

/// Frame lengths a generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrameSizes {
    /// Every frame this long, without FCS (60 = a 64-byte frame on the wire).
    Fixed(usize),
    /// The classic simple IMIX, 7:4:1 of 64, 594 and 1518 bytes on the wire
    /// (60, 590, 1514 without FCS), each capped to `max_len` without FCS:
    /// 1514 is the largest untagged frame of a 1500-byte MTU, the veths of
    /// the lab.
    Imix { max_len: usize },
}

impl FrameSizes {
    /// IMIX for a 1500-byte MTU.
    pub fn imix() -> FrameSizes {
        FrameSizes::Imix { max_len: MAX_FRAME }
    }

    /// One cycle of lengths without FCS, in sending order.
    pub fn lengths(&self) -> Vec<usize> {
        match *self {
            FrameSizes::Fixed(len) => vec![len],
            FrameSizes::Imix { max_len } => IMIX_ORDER
                .iter()
                .map(|&i| (IMIX_WIRE_LENS[i] - FCS_BYTES).min(max_len))
                .collect(),
        }
    }

    /// Mean length without FCS.
    pub fn mean_len(&self) -> f64 {
        let l = self.lengths();
        l.iter().sum::<usize>() as f64 / l.len() as f64
    }

    /// For reports: `60` or `imix`, with lengths on the wire.
    pub fn describe(&self) -> String {
        match *self {
            FrameSizes::Fixed(len) => format!("{len} bytes ({} on the wire)", len + FCS_BYTES),
            FrameSizes::Imix { .. } => {
                let mut l = self.lengths();
                l.sort_unstable();
                l.dedup();
                let wire: Vec<String> = l.iter().map(|x| (x + FCS_BYTES).to_string()).collect();
                format!("IMIX 7:4:1 of {} bytes on the wire", wire.join("/"))
            }
        }
    }
}
