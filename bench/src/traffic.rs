//! Traffic: frame builders, an AF_XDP generator built on the dataplane's own
//! socket types, and helpers around AF_PACKET sockets for exact checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
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

/// Settings of [`xdp_generate`].
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub ifname: String,
    /// Frame length without FCS (60 = a 64-byte frame on the wire).
    pub frame_len: usize,
    /// Distinct UDP flows to cycle through.
    pub flows: u16,
    /// Frames per second to aim at; `None` sends as fast as possible.
    pub rate_pps: Option<u64>,
    pub duration: Duration,
    /// Stop after this many frames, if set.
    pub count: Option<u64>,
    /// Sender id written into the source MAC.
    pub sender: u8,
}

/// What a generator run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenReport {
    /// Frames the kernel completed (handed to the driver).
    pub sent: u64,
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

/// Sends frames from an AF_XDP socket on `cfg.ifname` (TX only, copy mode;
/// no XDP program is needed to transmit). Runs in the caller's network
/// namespace until the duration, the count, or `stop`.
pub fn xdp_generate(cfg: &GenConfig, stop: &AtomicBool) -> Result<GenReport> {
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
    // Prefill every frame once: the template with a per-frame flow and seq.
    let mut pool = xdp::FramePool::for_umem(&umem);
    let mut free: Vec<xdp::Frame> = Vec::with_capacity(GEN_FRAMES as usize);
    let flows = cfg.flows.max(1);
    for i in 0..GEN_FRAMES {
        let mut f = pool.alloc().expect("fresh pool");
        let bytes = build_frame(
            FrameKind::Udp4,
            cfg.frame_len,
            cfg.sender,
            i,
            (i % u32::from(flows)) as u16,
        );
        umem.data_mut(&mut f)[..bytes.len()].copy_from_slice(&bytes);
        f.set_len(bytes.len() as u32);
        free.push(f);
    }
    // Completed frames come back as addresses; their content is unchanged,
    // so they are re-sent as they are.
    let mut completed: Vec<xdp::Frame> = Vec::with_capacity(GEN_FRAMES as usize);
    let frame_len = cfg.frame_len as u32;
    let start = Instant::now();
    let mut sent_total = 0u64;
    let mut queued_total = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let mut batch_buf: Vec<xdp::Frame> = Vec::with_capacity(GEN_BATCH as usize);
    loop {
        let now = start.elapsed();
        if now >= cfg.duration || stop.load(Ordering::Relaxed) || sent_total >= limit {
            break;
        }
        // Completions.
        let n = sock.comp.reap(&mut pool, GEN_RING);
        sent_total += u64::from(n);
        while let Some(mut f) = pool.alloc() {
            f.set_len(frame_len);
            completed.push(f);
        }
        free.append(&mut completed);
        // Pacing: how many frames may have been queued by now.
        let allowed = match cfg.rate_pps {
            Some(r) => ((now.as_secs_f64() * r as f64) as u64).min(limit),
            None => limit,
        };
        let want = allowed
            .saturating_sub(queued_total)
            .min(u64::from(GEN_BATCH)) as usize;
        if want > 0 && !free.is_empty() {
            let take = want.min(free.len());
            batch_buf.extend(free.drain(free.len() - take..));
            let tx = sock.tx.as_mut().expect("tx socket");
            let q = tx.send(&mut batch_buf);
            queued_total += u64::from(q);
            free.append(&mut batch_buf);
        }
        sock.kick_tx();
        if want == 0 && cfg.rate_pps.is_some() {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    // Drain what is still in flight (bounded).
    let deadline = Instant::now() + Duration::from_millis(500);
    while sent_total < queued_total && Instant::now() < deadline {
        sock.kick_tx();
        sent_total += u64::from(sock.comp.reap(&mut pool, GEN_RING));
    }
    Ok(GenReport {
        sent: sent_total,
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
}
