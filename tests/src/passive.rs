//! What the passive-side tests add: frames of many flows in both
//! directions (IPv4 and IPv6, TCP and UDP, zero to two VLAN tags, IPv4
//! fragments), sensors that collect what their output group member
//! transmitted, and the stats segment's output counters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tapline_bench::traffic::is_ours;
use tapline_dataplane::xdp::RawSocket;
use tapline_lab::{ifs, Lab};
use tapline_segment::{OutputSnapshot, SegmentReader};

use crate::{open_raw, SENDER_TAP, STALL_TIMEOUT};

/// Destination MAC of the passive frames (not the sensors': they are
/// mirrored traffic).
const DST_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 1];

/// One bidirectional flow: endpoints `a` and `b`.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// 802.1Q tags, outer first (0 to 2).
    pub vlans: Vec<u16>,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
}

/// `n` distinct flows: mostly IPv4 UDP, some IPv6 TCP, some behind one or
/// two VLAN tags; every `dns_every`-th flow is UDP to port 53.
pub fn flows(n: usize, dns_every: usize) -> Vec<FlowSpec> {
    (0..n)
        .map(|i| {
            let k = i as u32;
            let v6 = i % 5 == 1;
            let a: IpAddr = if v6 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    1,
                    0,
                    0,
                    (k >> 16) as u16,
                    k as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | k))
            };
            let b: IpAddr = if v6 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    2,
                    0,
                    0,
                    0,
                    (k % 7) as u16 + 1,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 168, 1, (k % 7) as u8 + 1))
            };
            let dns = dns_every > 0 && i.is_multiple_of(dns_every);
            let proto = if v6 && !dns { 6 } else { 17 };
            let vlans = match i % 10 {
                3 => vec![100 + (i % 50) as u16],
                7 => vec![200, 300 + (i % 50) as u16],
                _ => Vec::new(),
            };
            FlowSpec {
                vlans,
                proto,
                a: (a, 20_000 + (i % 40_000) as u16),
                b: (b, if dns { 53 } else { 443 }),
            }
        })
        .collect()
}

fn l2(vlans: &[u16], ethertype: u16, f: &mut Vec<u8>) {
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&tapline_bench::traffic::SRC_MAC_PREFIX);
    f.extend_from_slice(&[SENDER_TAP, 0]);
    for (i, vid) in vlans.iter().enumerate() {
        // QinQ: 802.1ad outside, 802.1Q inside.
        let tpid: u16 = if i == 0 && vlans.len() == 2 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
}

fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    len: usize,
    id: u16,
    frag: u16,
) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = tapline_bench::traffic::ipv4_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// A frame of `flow`, from `a` to `b` (`forward`) or back, carrying `seq`,
/// padded to at least `len` bytes.
pub fn flow_frame(flow: &FlowSpec, forward: bool, seq: u32, len: usize) -> Vec<u8> {
    let ((src, sport), (dst, dport)) = if forward {
        (flow.a, flow.b)
    } else {
        (flow.b, flow.a)
    };
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    if flow.proto == 6 {
        l4.extend_from_slice(&seq.to_be_bytes()); // sequence number
        l4.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&[0, 0, 0, 0]); // length, checksum (set below)
    }
    l4.extend_from_slice(b"TAPLPSV");
    l4.extend_from_slice(&seq.to_be_bytes());
    let l3_len = match src {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    };
    let head = 14 + 4 * flow.vlans.len() + l3_len;
    while head + l4.len() < len {
        l4.push((seq as u8).wrapping_add(l4.len() as u8));
    }
    if flow.proto == 17 {
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
    }
    let mut f = Vec::with_capacity(head + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            l2(&flow.vlans, 0x0800, &mut f);
            f.extend_from_slice(&ipv4_header(s, d, flow.proto, 20 + l4.len(), seq as u16, 0));
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            l2(&flow.vlans, 0x86dd, &mut f);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[flow.proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("a flow's endpoints share a family"),
    }
    f.extend_from_slice(&l4);
    f
}

/// The two fragments of one IPv4/UDP datagram of `flow` (forward): the
/// first carries the UDP header, the second only payload.
pub fn fragments(flow: &FlowSpec, id: u16) -> [Vec<u8>; 2] {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (flow.a.0, flow.b.0) else {
        panic!("IPv4 flows only");
    };
    let payload: Vec<u8> = (0..1200u32)
        .map(|i| (i * 7 + u32::from(id)) as u8)
        .collect();
    let mut udp = Vec::new();
    udp.extend_from_slice(&flow.a.1.to_be_bytes());
    udp.extend_from_slice(&flow.b.1.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let (first, rest) = udp.split_at(800);
    const MF: u16 = 0x2000;
    let mut f1 = Vec::new();
    l2(&flow.vlans, 0x0800, &mut f1);
    f1.extend_from_slice(&ipv4_header(s, d, 17, 20 + first.len(), id, MF));
    f1.extend_from_slice(first);
    let mut f2 = Vec::new();
    l2(&flow.vlans, 0x0800, &mut f2);
    f2.extend_from_slice(&ipv4_header(s, d, 17, 20 + rest.len(), id, 800 / 8));
    f2.extend_from_slice(rest);
    [f1, f2]
}

/// Raw sockets on the sensors of `members` (in that order).
pub fn sensor_sockets(lab: &Lab, members: &[&str]) -> Result<Vec<RawSocket>> {
    members
        .iter()
        .map(|m| open_raw(lab.sensor(m)?, ifs::SENSOR))
        .collect()
}

/// Collects our frames on every socket until `expected` arrived in all,
/// or nothing arrived for [`STALL_TIMEOUT`], then `linger` for extras.
pub fn collect(
    socks: &[RawSocket],
    expected: usize,
    linger: Duration,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); socks.len()];
    let mut buf = vec![0u8; 4096];
    let mut last_progress = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        let mut progress = false;
        for (s, out) in socks.iter().zip(got.iter_mut()) {
            while let Some(meta) = s.recv(&mut buf).context("receiving on a sensor")? {
                if is_ours(&buf[..meta.len], SENDER_TAP) {
                    out.push(buf[..meta.len].to_vec());
                    progress = true;
                }
            }
        }
        let now = Instant::now();
        if progress {
            last_progress = now;
        }
        let total: usize = got.iter().map(Vec::len).sum();
        if total >= expected && done_at.is_none() {
            done_at = Some(now);
        }
        if done_at.is_some_and(|t| now >= t + linger) || now >= last_progress + STALL_TIMEOUT {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The output slots of the dataplane whose state is in `state_dir`.
pub fn outputs(state_dir: &std::path::Path) -> Result<Vec<OutputSnapshot>> {
    Ok(SegmentReader::open(state_dir)
        .context("opening the stats segment")?
        .snapshot()
        .outputs)
}

/// The output slot named `name`.
pub fn output<'a>(outputs: &'a [OutputSnapshot], name: &str) -> Result<&'a OutputSnapshot> {
    outputs
        .iter()
        .find(|o| o.info.name == name)
        .with_context(|| format!("no output {name:?} in {outputs:?}"))
}
