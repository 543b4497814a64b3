//! Traffic: frame builders, the test header that generated frames carry
//! (sequence number and send timestamp, parsed by the sink in
//! [`crate::sink`]), and an AF_XDP generator built on the dataplane's own
//! socket types.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use tapline_dataplane::xdp::{self, BindMode, RingSizes, Umem, XskParams, XskSocket};

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

// ---------------------------------------------------------------------------
// Test header: sequence number and send timestamp in every generated frame.
// ---------------------------------------------------------------------------

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
const UDP_SRC_PORT_BASE: u16 = 10_000;
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
/// Frames look like [`build_frame`]'s (same MACs, addresses and ports, the
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

/// Settings of [`xdp_generate`].
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub ifname: String,
    /// Frame lengths without FCS (60 = a 64-byte frame on the wire), from
    /// 60 to 1514 (the largest untagged frame of a 1500-byte MTU).
    pub sizes: FrameSizes,
    /// Distinct UDP flows to cycle through (round robin, frame by frame).
    pub flows: u16,
    /// Frames per second to aim at; `None` sends as fast as possible.
    pub rate_pps: Option<u64>,
    pub duration: Duration,
    /// Stop after this many frames, if set.
    pub count: Option<u64>,
    /// Sender id written into the source MAC.
    pub sender: u8,
    /// Stream id written into the test header; sequence numbers start at 0
    /// in each run. Below 65536 if any frame is too short for the full
    /// header (see [`COMPACT_HEADER_LEN`]).
    pub stream: u32,
}

/// What a generator run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenReport {
    /// Frames the kernel completed (handed to the driver). The TX ring
    /// completes in order, so these are the frames of sequence 0..sent.
    pub sent: u64,
    /// Frames placed on the TX ring (sent, plus any the kernel had not
    /// completed when the bounded drain at the end gave up).
    pub queued: u64,
    /// Frames the pacing bucket skipped: the generator was held up (not
    /// scheduled, TX ring full) for longer than the bucket's depth, and
    /// the offered rate fell short of the target by this many frames.
    pub pacing_skipped: u64,
    pub stream: u32,
    pub elapsed: Duration,
}

impl GenReport {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const GEN_FRAMES: u32 = 4096;
const GEN_RING: u32 = 2048;
const GEN_BATCH: u32 = 64;
/// Sleep between pacing checks when no frame is due.
const GEN_PACING_SLEEP: Duration = Duration::from_micros(20);
/// Depth of the pacing bucket in time: after a stall (preemption, a full
/// ring) the generator catches up at most this much traffic back to back
/// and forgives the rest, so a stall never turns into a long burst.
const GEN_BUCKET_DEPTH: Duration = Duration::from_millis(1);
/// How long the end of a run waits for in-flight frames to complete.
const GEN_DRAIN: Duration = Duration::from_millis(500);

/// Sends test frames from an AF_XDP socket on `cfg.ifname` (TX only, copy
/// mode; no XDP program is needed to transmit). Runs in the caller's network
/// namespace until the duration, the count, or `stop`.
///
/// Every frame is IPv4/UDP built from a [`TestFrameTemplate`] once per UMEM
/// chunk; right before a batch is queued each frame gets its length, flow,
/// sequence number and the batch's CLOCK_MONOTONIC timestamp (one clock
/// read per batch). Pacing is a token bucket at batch granularity,
/// 1 ms of traffic deep (at least one batch), so a stall of the
/// generator never turns into a long catch-up burst (see `pacing_skipped`).
pub fn xdp_generate(cfg: &GenConfig, stop: &AtomicBool) -> Result<GenReport> {
    let template = TestFrameTemplate::new(FrameKind::Udp4, cfg.sender, cfg.stream);
    let lengths = cfg.sizes.lengths();
    for &len in &lengths {
        ensure!(
            (template.min_len()..=template.max_len()).contains(&len),
            "frame length {len} (without FCS) is outside {}..={}",
            template.min_len(),
            template.max_len()
        );
    }
    let needs_compact = lengths.iter().any(|&l| l < template.full_header_min_len());
    ensure!(
        !needs_compact || cfg.stream <= u32::from(u16::MAX),
        "stream id {} does not fit the 16 bits of the compact header that frames shorter than {} bytes carry",
        cfg.stream,
        template.full_header_min_len()
    );
    let ifindex = xdp::netdev::ifindex(&cfg.ifname)
        .with_context(|| format!("no interface {}", cfg.ifname))?;
    let umem = Umem::new(2048, GEN_FRAMES).context("allocating the generator UMEM")?;
    let params = XskParams {
        ifindex,
        queue: 0,
        rx: false,
        tx: true,
        sizes: RingSizes {
            rx: GEN_RING,
            tx: GEN_RING,
            fill: GEN_RING,
            completion: GEN_RING,
        },
        mode: BindMode::Copy,
    };
    let mut sock = XskSocket::bind(&umem, &params, None, &cfg.ifname)?;
    // Prefill every chunk once with the template; `stamp` does the rest.
    let mut pool = xdp::FramePool::for_umem(&umem);
    let mut free: Vec<xdp::Frame> = Vec::with_capacity(GEN_FRAMES as usize);
    while let Some(mut f) = pool.alloc() {
        template.fill(umem.data_mut(&mut f));
        free.push(f);
    }
    let flows = u64::from(cfg.flows.max(1));
    let cycle = lengths.len() as u64;
    let start = Instant::now();
    let mut sent_total = 0u64;
    // Also the next sequence number: every queued frame took one.
    let mut queued_total = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let bucket_frames = cfg.rate_pps.map_or(0, |r| {
        ((r as f64 * GEN_BUCKET_DEPTH.as_secs_f64()) as u64).max(u64::from(GEN_BATCH))
    });
    // Frames the bucket forgave after stalls.
    let mut skipped = 0u64;
    let mut batch_buf: Vec<xdp::Frame> = Vec::with_capacity(GEN_BATCH as usize);
    loop {
        let now = start.elapsed();
        if now >= cfg.duration || stop.load(Ordering::Relaxed) || sent_total >= limit {
            break;
        }
        // Completions: their content is stamped again before the next send.
        sent_total += u64::from(sock.comp.reap(&mut pool, GEN_RING));
        while let Some(f) = pool.alloc() {
            free.push(f);
        }
        // Pacing: how many frames may have been queued by now.
        let allowed = match cfg.rate_pps {
            Some(r) => {
                let due = ((now.as_secs_f64() * r as f64) as u64).saturating_sub(skipped);
                if due > queued_total + bucket_frames {
                    skipped += due - queued_total - bucket_frames;
                }
                (due.min(queued_total + bucket_frames)).min(limit)
            }
            None => limit,
        };
        let tx = sock.tx.as_mut().expect("tx socket");
        let want = allowed
            .saturating_sub(queued_total)
            .min(u64::from(GEN_BATCH))
            .min(free.len() as u64)
            .min(u64::from(tx.free_slots())) as usize;
        if want > 0 {
            batch_buf.extend(free.drain(free.len() - want..));
            let timestamp_ns = monotonic_ns();
            let mut flow = queued_total % flows;
            let mut size = (queued_total % cycle) as usize;
            for (seq, f) in (queued_total..).zip(batch_buf.iter_mut()) {
                let len = lengths[size];
                template.stamp(umem.data_mut(f), len, flow as u16, seq, timestamp_ns);
                f.set_len(len as u32);
                flow += 1;
                if flow == flows {
                    flow = 0;
                }
                size += 1;
                if size == lengths.len() {
                    size = 0;
                }
            }
            // All fit (free_slots above); should one not, its sequence
            // number is taken again by the next batch (`send` queues a
            // prefix, so the unsent frames hold the highest numbers).
            queued_total += u64::from(tx.send(&mut batch_buf));
            free.append(&mut batch_buf);
        }
        // In copy mode the kernel transmits inside the kick (sendto), up to
        // its budget per call; with nothing on the ring it is a wasted syscall.
        if want > 0 || tx.pending() > 0 {
            sock.kick_tx();
        }
        if want == 0 && cfg.rate_pps.is_some() {
            std::thread::sleep(GEN_PACING_SLEEP);
        }
    }
    // Drain what is still in flight (bounded).
    let deadline = Instant::now() + GEN_DRAIN;
    while sent_total < queued_total && Instant::now() < deadline {
        sock.kick_tx();
        sent_total += u64::from(sock.comp.reap(&mut pool, GEN_RING));
    }
    Ok(GenReport {
        sent: sent_total,
        queued: queued_total,
        pacing_skipped: skipped,
        stream: cfg.stream,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_exact_length_and_valid_ip_checksum() {
        for len in [60, 64, 128, 1514] {
            let f = build_frame(FrameKind::Udp4, len, 7, 42, 3);
            assert_eq!(f.len(), len);
            assert!(is_ours(&f, 7));
            assert_eq!(
                ipv4_checksum(&f[14..34]),
                0,
                "header checksum verifies to zero"
            );
        }
        let v = build_frame(FrameKind::VlanUdp4 { vid: 100 }, 64, 1, 1, 1);
        assert_eq!(&v[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&v[16..18], &[0x08, 0x00]);
        let r = build_frame(FrameKind::Raw, 60, 1, 1, 1);
        assert_eq!(&r[12..14], &[0x88, 0xb5]);
        assert_ne!(
            build_frame(FrameKind::Raw, 60, 1, 1, 1),
            build_frame(FrameKind::Raw, 60, 1, 2, 1)
        );
    }

    fn udp_tpl() -> TestFrameTemplate {
        TestFrameTemplate::new(FrameKind::Udp4, 7, 513)
    }

    #[test]
    fn test_frames_have_exact_length_valid_checksum_and_their_header() {
        let tpl = udp_tpl();
        assert_eq!((tpl.min_len(), tpl.max_len()), (60, 1514));
        assert_eq!(tpl.full_header_min_len(), 42 + TEST_HEADER_LEN);
        for (len, flow, seq) in [
            (60, 0, 0),
            (64, 1, 1),
            (69, 300, 1 << 40),
            (70, 65_535, 3),
            (590, 12, u64::MAX),
            (1514, 9, 77),
        ] {
            let f = tpl.build(len, flow, seq, 123_456_789);
            assert_eq!(f.len(), len);
            assert!(is_ours(&f, 7));
            assert_eq!(ipv4_checksum(&f[14..34]), 0, "len {len} flow {flow}");
            assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), len - 14);
            assert_eq!(usize::from(u16::from_be_bytes([f[38], f[39]])), len - 34);
            assert_eq!(u16::from_be_bytes([f[32], f[33]]), flow);
            assert_eq!(
                u16::from_be_bytes([f[34], f[35]]),
                UDP_SRC_PORT_BASE.wrapping_add(flow)
            );
            let h = parse_test_header(&f).expect("a test frame parses");
            assert_eq!(h.timestamp_ns, 123_456_789);
            if len >= 70 {
                assert_eq!(&f[42..50], b"TAPLSEQ1");
                assert_eq!((h.stream, h.seq), (513, WireSeq::Full(seq)));
            } else {
                assert_eq!(&f[42..46], b"TAPS");
                assert_eq!((h.stream, h.seq), (513, WireSeq::Low32(seq as u32)));
            }
        }
    }

    #[test]
    fn restamping_a_buffer_changes_only_what_it_must() {
        let tpl = udp_tpl();
        let mut buf = vec![0u8; 2048];
        tpl.fill(&mut buf);
        for (len, seq) in [(1514, 5), (60, 6), (70, 7), (590, 8), (61, 9)] {
            tpl.stamp(&mut buf, len, (seq * 3) as u16, seq, seq * 1000);
            let fresh = tpl.build(len, (seq * 3) as u16, seq, seq * 1000);
            assert_eq!(&buf[..len], &fresh[..], "len {len}");
        }
    }

    #[test]
    fn tagged_and_raw_test_frames_parse() {
        let v = TestFrameTemplate::new(FrameKind::VlanUdp4 { vid: 100 }, 1, 2);
        assert_eq!((v.min_len(), v.max_len()), (64, 1518));
        for len in [64, 73, 74, 1518] {
            let f = v.build(len, 4, 10, 20);
            assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 100]);
            assert_eq!(ipv4_checksum(&f[18..38]), 0);
            let h = parse_test_header(&f).unwrap();
            assert_eq!((h.stream, h.timestamp_ns), (2, 20));
        }
        let r = TestFrameTemplate::new(FrameKind::Raw, 1, 0xdead_beef);
        assert_eq!(r.min_len(), 60);
        assert_eq!(r.full_header_min_len(), 42);
        let f = r.build(60, 0, 99, 1);
        assert_eq!(&f[12..14], &[0x88, 0xb5]);
        assert_eq!(
            parse_test_header(&f),
            Some(TestHeader {
                stream: 0xdead_beef,
                seq: WireSeq::Full(99),
                timestamp_ns: 1
            })
        );
    }

    /// Inserts an 802.1Q/802.1ad tag after the MAC addresses.
    fn tag(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&frame[12..]);
        f
    }

    #[test]
    fn parser_skips_up_to_two_tags() {
        let f = udp_tpl().build(100, 1, 42, 7);
        let one = tag(&f, 0x8100, 5);
        let qinq = tag(&one, 0x88a8, 6);
        let three = tag(&qinq, 0x8100, 7);
        let want = parse_test_header(&f).unwrap();
        assert_eq!(want.seq, WireSeq::Full(42));
        assert_eq!(parse_test_header(&one), Some(want));
        assert_eq!(parse_test_header(&qinq), Some(want));
        assert_eq!(parse_test_header(&three), None);
        let raw = TestFrameTemplate::new(FrameKind::Raw, 1, 3).build(60, 0, 1, 2);
        assert!(parse_test_header(&tag(&tag(&raw, 0x8100, 1), 0x88a8, 2)).is_some());
    }

    #[test]
    fn parser_checks_ip_and_udp() {
        let good = udp_tpl().build(100, 1, 42, 7);
        assert!(parse_test_header(&good).is_some());
        let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = good.clone();
            edit(&mut f);
            parse_test_header(&f)
        };
        assert!(broken(&|f| f[14] = 0x65).is_none(), "IPv6 version nibble");
        assert!(broken(&|f| f[14] = 0x44).is_none(), "IHL below 5");
        assert!(broken(&|f| f[23] = 6).is_none(), "TCP");
        assert!(broken(&|f| f[20] = 0x21).is_none(), "MF flag with offset");
        assert!(broken(&|f| f[21] = 1).is_none(), "fragment offset");
        assert!(broken(&|f| f[16..18].copy_from_slice(&200u16.to_be_bytes())).is_none());
        assert!(broken(&|f| f[16..18].copy_from_slice(&27u16.to_be_bytes())).is_none());
        assert!(broken(&|f| f[38..40].copy_from_slice(&7u16.to_be_bytes())).is_none());
        assert!(broken(&|f| f[38..40].copy_from_slice(&87u16.to_be_bytes())).is_none());
        assert!(broken(&|f| f[38..40].copy_from_slice(&35u16.to_be_bytes())).is_none());
        assert!(broken(&|f| f[42] = b'X').is_none(), "magic");
        assert!(broken(&|f| f[12..14].copy_from_slice(&[0x08, 0x06])).is_none());
        // MF alone (first fragment) still has the header.
        assert!(broken(&|f| f[20] = 0x20 | (f[20] & 0x1f)).is_some());
        // Trailing padding after the IP packet is allowed.
        assert!(broken(&|f| f.extend_from_slice(&[0; 8])).is_some());
        // IPv4 options: IHL 6, everything after moved by four bytes.
        let mut opt = good[..34].to_vec();
        opt[14] = 0x46;
        opt.extend_from_slice(&[1, 1, 1, 1]);
        opt.extend_from_slice(&good[34..]);
        let total = u16::from_be_bytes([opt[16], opt[17]]) + 4;
        opt[16..18].copy_from_slice(&total.to_be_bytes());
        assert_eq!(parse_test_header(&opt), parse_test_header(&good));
    }

    #[test]
    fn parser_survives_truncation_and_garbage() {
        let frames = [
            udp_tpl().build(60, 1, 1, 1),
            udp_tpl().build(1514, 1, 1, 1),
            TestFrameTemplate::new(FrameKind::VlanUdp4 { vid: 9 }, 1, 1).build(64, 1, 1, 1),
            TestFrameTemplate::new(FrameKind::Raw, 1, 1).build(60, 1, 1, 1),
            build_frame(FrameKind::Udp4, 60, 1, 1, 1),
        ];
        for f in &frames[..4] {
            assert!(parse_test_header(f).is_some());
            for cut in 0..f.len() {
                let _ = parse_test_header(&f[..cut]);
            }
        }
        assert!(
            parse_test_header(&frames[4]).is_none(),
            "build_frame: no header"
        );
        // Truncated through the test header: never a header.
        let f = &frames[1];
        for cut in 0..42 + TEST_HEADER_LEN {
            assert!(parse_test_header(&f[..cut]).is_none(), "cut at {cut}");
        }
        // Random bytes, also with a plausible prefix, never panic.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut buf = [0u8; 128];
        for i in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let len = (x as usize) % buf.len();
            if i % 2 == 0 {
                let prefix = &frames[i % 4][..42.min(len)];
                buf[..prefix.len()].copy_from_slice(prefix);
            }
            let _ = parse_test_header(&buf[..len]);
        }
    }

    #[test]
    fn imix_is_seven_four_one_and_capped() {
        let l = FrameSizes::imix().lengths();
        assert_eq!(l.len(), 12);
        for (len, n) in [(60, 7), (590, 4), (1514, 1)] {
            assert_eq!(l.iter().filter(|&&x| x == len).count(), n);
        }
        assert!(
            (FrameSizes::imix().mean_len() - (7 * 60 + 4 * 590 + 1514) as f64 / 12.0).abs() < 1e-9
        );
        let capped = FrameSizes::Imix { max_len: 1000 }.lengths();
        assert_eq!(capped.iter().max(), Some(&1000));
        assert_eq!(FrameSizes::Fixed(128).lengths(), vec![128]);
        assert_eq!(
            FrameSizes::imix().describe(),
            "IMIX 7:4:1 of 64/594/1518 bytes on the wire"
        );
    }
}
