//! The test header every generated frame carries (sequence number and
//! send timestamp), its parser, and the frame template that writes it.

use super::{
    FrameKind, ETHERTYPE_EXPERIMENTAL, ETHERTYPE_IPV4, ETHERTYPE_VLAN, FOREIGN_DST_MAC, MAX_FRAME,
    MIN_FRAME, SRC_MAC_PREFIX,
};

/// Magic of the full test header.
pub const TEST_MAGIC: [u8; 8] = *b"TAPLSEQ1";
/// Full test header: magic (8), stream id (u32), sequence (u64), send
/// timestamp (u64, CLOCK_MONOTONIC ns), all big-endian.
pub const TEST_HEADER_LEN: usize = 28;
/// Magic of the compact test header.
pub const COMPACT_MAGIC: [u8; 4] = *b"TAPS";
/// Compact test header: magic (4), stream id (u16), low 32 bits of the
/// sequence, send timestamp (u64), all big-endian.
///
/// A 64-byte frame on the wire (60 without FCS) has 60 - 14 - 20 - 8 = 18
/// bytes of UDP payload: the 28-byte full header does not fit, so frames too
/// short for it carry this one (exactly 18 bytes). The sink extends the
/// 32-bit sequence against the highest one seen on the stream, which is
/// unambiguous while frames arrive less than 2^31 sequences out of place.
pub const COMPACT_HEADER_LEN: usize = 18;
/// Second IEEE 802 local experimental ethertype, also taken as Raw.
const ETHERTYPE_EXPERIMENTAL_2: u16 = 0x88b6;
/// 802.1ad service tag (outer tag of QinQ).
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Ethernet header without tags: two MAC addresses and the ethertype.
pub const ETH_HEADER_BYTES: usize = 14;
const VLAN_TAG_BYTES: usize = 4;
const IPV4_HEADER_BYTES: usize = 20;
const UDP_HEADER_BYTES: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// Tags [`parse_test_header`] skips at most (QinQ).
const MAX_VLAN_TAGS: usize = 2;
/// Base UDP source port; the flow number is added.
pub(super) const UDP_SRC_PORT_BASE: u16 = 10_000;
/// UDP destination port (discard).
const UDP_DST_PORT: u16 = 9;

/// A frame's sequence number as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireSeq {
    /// The whole sequence (full header).
    Full(u64),
    /// Its low 32 bits (compact header); the receiver extends it.
    Low32(u32),
}

/// What a test frame carries after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestHeader {
    /// Stream id (compact headers carry 16 bits).
    pub stream: u32,
    pub seq: WireSeq,
    /// CLOCK_MONOTONIC nanoseconds when the frame was queued for sending.
    pub timestamp_ns: u64,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the send timestamp, so
/// generator and sink on one host measure one-way latency on one clock.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux; clock_gettime fails only for an
    // invalid clock id (EINVAL).
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Finds and decodes the test header of `frame`: after up to two 802.1Q or
/// 802.1ad tags, either IPv4 (no fragment offset, protocol UDP, lengths
/// consistent with the frame) followed by the header in the UDP payload, or
/// an IEEE local experimental ethertype (Raw) followed by the header. Any
/// other or truncated input yields `None`; it never panics.
pub fn parse_test_header(frame: &[u8]) -> Option<TestHeader> {
    // Offset of the (outer) ethertype.
    let mut at = ETH_HEADER_BYTES - 2;
    let mut ethertype = be16(frame, at)?;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        at += VLAN_TAG_BYTES;
        ethertype = be16(frame, at)?;
    }
    at += 2;
    let payload = match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(at..)?;
            let version_ihl = *ip.first()?;
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let fragment_offset = be16(ip, 6)? & 0x1fff;
            if version_ihl >> 4 != 4
                || ihl < IPV4_HEADER_BYTES
                || total < ihl + UDP_HEADER_BYTES
                || total > ip.len()
                || fragment_offset != 0
                || *ip.get(9)? != IPPROTO_UDP
            {
                return None;
            }
            let udp = &ip[ihl..total];
            let udp_len = usize::from(be16(udp, 4)?);
            if udp_len < UDP_HEADER_BYTES || udp_len > udp.len() {
                return None;
            }
            &udp[UDP_HEADER_BYTES..udp_len]
        }
        ETHERTYPE_EXPERIMENTAL | ETHERTYPE_EXPERIMENTAL_2 => frame.get(at..)?,
        _ => return None,
    };
    decode_test_header(payload)
}

/// Decodes a full or compact test header at the start of `b`.
fn decode_test_header(b: &[u8]) -> Option<TestHeader> {
    if b.get(..TEST_MAGIC.len()) == Some(&TEST_MAGIC[..]) {
        return Some(TestHeader {
            stream: be32(b, 8)?,
            seq: WireSeq::Full(be64(b, 12)?),
            timestamp_ns: be64(b, 20)?,
        });
    }
    if b.get(..COMPACT_MAGIC.len()) == Some(&COMPACT_MAGIC[..]) {
        return Some(TestHeader {
            stream: u32::from(be16(b, 4)?),
            seq: WireSeq::Low32(be32(b, 6)?),
            timestamp_ns: be64(b, 10)?,
        });
    }
    None
}

/// Builds test frames in place, for generators that reuse their buffers:
/// [`fill`](Self::fill) writes the constant bytes once per buffer, then
/// [`stamp`](Self::stamp) writes only what changes from frame to frame
/// (length fields and IPv4 checksum, flow, test header): about 40 bytes.
///
/// Frames look like [`build_frame`](super::build_frame)'s (same MACs, addresses and ports, the
/// flow in the destination address and the UDP source port) but carry a
/// [`TestHeader`] right after the UDP header (after the ethertype for Raw;
/// Raw frames carry no flow), followed by a fixed byte pattern.
#[derive(Debug, Clone)]
pub struct TestFrameTemplate {
    kind: FrameKind,
    stream: u32,
    /// Offset of the IPv4 header (unused for Raw).
    l3: usize,
    /// Offset of the test header.
    header: usize,
    /// The frame at its maximum length, with zero lengths, flow and checksum.
    bytes: Vec<u8>,
    /// One's-complement sum (unfolded) of the IPv4 header words as in
    /// `bytes`: the checksum of a frame adds its total length and flow.
    ip_sum: u32,
}

impl TestFrameTemplate {
    pub fn new(kind: FrameKind, sender: u8, stream: u32) -> TestFrameTemplate {
        let max = match kind {
            FrameKind::VlanUdp4 { .. } => MAX_FRAME + VLAN_TAG_BYTES,
            _ => MAX_FRAME,
        };
        let mut f = Vec::with_capacity(max);
        f.extend_from_slice(&FOREIGN_DST_MAC);
        f.extend_from_slice(&SRC_MAC_PREFIX);
        f.extend_from_slice(&[sender, 0]);
        if let FrameKind::VlanUdp4 { vid } = kind {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        let l3 = f.len() + 2;
        let mut ip_sum = 0;
        match kind {
            FrameKind::Raw => f.extend_from_slice(&ETHERTYPE_EXPERIMENTAL.to_be_bytes()),
            FrameKind::Udp4 | FrameKind::VlanUdp4 { .. } => {
                f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let mut ip = [0u8; IPV4_HEADER_BYTES];
                ip[0] = 0x45;
                ip[8] = 64;
                ip[9] = IPPROTO_UDP;
                ip[12..16].copy_from_slice(&[198, 18, 0, sender]);
                ip[16..18].copy_from_slice(&[198, 19]);
                ip_sum = ip
                    .chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
                f.extend_from_slice(&ip);
                let mut udp = [0u8; UDP_HEADER_BYTES];
                udp[2..4].copy_from_slice(&UDP_DST_PORT.to_be_bytes());
                f.extend_from_slice(&udp);
            }
        }
        let header = f.len();
        // Payload after the header: a fixed xorshift pattern.
        let mut x: u32 = 0x7461_706c;
        while f.len() < max {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f.push(x as u8);
        }
        TestFrameTemplate {
            kind,
            stream,
            l3,
            header,
            bytes: f,
            ip_sum,
        }
    }

    /// Shortest frame this template builds: at least [`MIN_FRAME`] (plus the
    /// tag), and room for the compact header.
    pub fn min_len(&self) -> usize {
        let min = match self.kind {
            FrameKind::VlanUdp4 { .. } => MIN_FRAME + VLAN_TAG_BYTES,
            _ => MIN_FRAME,
        };
        min.max(self.header + COMPACT_HEADER_LEN)
    }

    /// Longest frame: [`MAX_FRAME`] (plus the tag).
    pub fn max_len(&self) -> usize {
        self.bytes.len()
    }

    /// Shortest frame that carries the full header; shorter ones carry the
    /// compact header (whose stream id has 16 bits).
    pub fn full_header_min_len(&self) -> usize {
        self.header + TEST_HEADER_LEN
    }

    /// Offset of the test header in the frame.
    pub fn header_offset(&self) -> usize {
        self.header
    }

    /// Writes the constant bytes into `buf` (at least [`max_len`](Self::max_len) long).
    pub fn fill(&self, buf: &mut [u8]) {
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
    }

    /// Makes the filled buffer `buf` a `len`-byte frame of `flow` carrying
    /// `seq` and `timestamp_ns`. `len` must be within
    /// [`min_len`](Self::min_len)..=[`max_len`](Self::max_len).
    pub fn stamp(&self, buf: &mut [u8], len: usize, flow: u16, seq: u64, timestamp_ns: u64) {
        debug_assert!((self.min_len()..=self.max_len()).contains(&len));
        if self.kind != FrameKind::Raw {
            let ip_len = (len - self.l3) as u16;
            let udp_len = ip_len - IPV4_HEADER_BYTES as u16;
            // RFC 1071: the words that change are the total length and the
            // last word of the destination address (the flow).
            let mut sum = self.ip_sum + u32::from(ip_len) + u32::from(flow);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let ip = &mut buf[self.l3..self.l3 + IPV4_HEADER_BYTES + UDP_HEADER_BYTES];
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            ip[18..20].copy_from_slice(&flow.to_be_bytes());
            ip[20..22].copy_from_slice(&UDP_SRC_PORT_BASE.wrapping_add(flow).to_be_bytes());
            ip[24..26].copy_from_slice(&udp_len.to_be_bytes());
        }
        let h = &mut buf[self.header..];
        if len >= self.header + TEST_HEADER_LEN {
            h[..8].copy_from_slice(&TEST_MAGIC);
            h[8..12].copy_from_slice(&self.stream.to_be_bytes());
            h[12..20].copy_from_slice(&seq.to_be_bytes());
            h[20..28].copy_from_slice(&timestamp_ns.to_be_bytes());
        } else {
            h[..4].copy_from_slice(&COMPACT_MAGIC);
            h[4..6].copy_from_slice(&(self.stream as u16).to_be_bytes());
            h[6..10].copy_from_slice(&(seq as u32).to_be_bytes());
            h[10..18].copy_from_slice(&timestamp_ns.to_be_bytes());
            // Where a full header stood before, the payload pattern again.
            let rest = self.header + COMPACT_HEADER_LEN..self.header + TEST_HEADER_LEN;
            buf[rest.clone()].copy_from_slice(&self.bytes[rest]);
        }
    }

    /// One frame as a vector (tests, non-AF_XDP senders).
    pub fn build(&self, len: usize, flow: u16, seq: u64, timestamp_ns: u64) -> Vec<u8> {
        let mut f = vec![0u8; self.max_len()];
        self.fill(&mut f);
        self.stamp(&mut f, len, flow, seq, timestamp_ns);
        f.truncate(len);
        f
    }
}
