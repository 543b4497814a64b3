//! Frame parsing for the passive side: Ethernet, up to two VLAN tags, IPv4
//! and IPv6 (with the fragment header), TCP/UDP/SCTP ports, ICMP; and the
//! symmetric flow hash used to spread flows over the members of an output
//! group.
//!
//! [`Packet::parse`] runs once per received frame, so it allocates nothing,
//! reads every header through bounds-checked slices (`get`, `first_chunk`)
//! and never fails: a truncated or garbage frame simply yields fewer fields.
//! Lengths that headers claim (IPv4 total length, IPv6 payload length) only
//! ever shorten what is looked at, never lengthen it past the frame.
//!
//! # VLAN tags
//!
//! Up to [`MAX_VLAN_TAGS`] tags are looked through (TPIDs 0x8100, 0x88a8 and
//! the pre-standard 0x9100), their 12-bit IDs recorded outer first, and the
//! rest of the frame is parsed as if untagged. A third tag stops the parse:
//! `ethertype` is then that tag's TPID and no IP fields are filled in.
//!
//! # Fragments
//!
//! `fragment` is set for IPv4 when MF is set or the fragment offset is not
//! zero, and for IPv6 when a fragment header is present. Ports are read only
//! from the first fragment (offset 0), and only when the whole fixed
//! transport header (TCP 20, UDP 8, SCTP 12 bytes) is in the datagram. The
//! [flow hash](Packet::flow_hash) ignores ports (and the protocol) of every
//! fragment so that all fragments of a datagram hash alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of an Ethernet II header (two MACs and the ethertype).
pub const ETH_HEADER_LEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag (TPID is the previous ethertype; TCI
/// plus the inner ethertype).
pub const VLAN_TAG_LEN: usize = 4;
/// How many VLAN tags the parser looks through.
pub const MAX_VLAN_TAGS: usize = 2;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_RARP: u16 = 0x8035;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad service tag (QinQ outer tag).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag still sent by some switches.
pub const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

// IPv6 extension headers the parser walks past.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Bound on the extension-header walk: a legitimate chain has at most one of
/// each kind (destination options twice), so anything longer is garbage
/// (or an attempt to make the parser spin) and the transport is "unknown".
const MAX_IPV6_EXT_HEADERS: usize = 8;

const VLAN_ID_MASK: u16 = 0x0fff;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_VERSION: u8 = 4;
const IPV4_FLAG_MF: u16 = 0x2000;
const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
const IPV6_HEADER_LEN: usize = 40;
const IPV6_VERSION: u8 = 6;
const IPV6_FRAG_HEADER_LEN: usize = 8;
const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const SCTP_COMMON_HEADER_LEN: usize = 12;
/// ARP for Ethernet/IPv4: 8 bytes of header, then sha(6) spa(4) tha(6) tpa(4).
const ARP_ETH_IPV4_LEN: usize = 28;
const ARP_HTYPE_ETHERNET: u16 = 1;

/// What the passive side needs to know of one frame. Parsing never fails:
/// a truncated or unknown frame yields fewer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub frame: &'a [u8],
    /// VLAN IDs of the (up to two) 802.1Q/802.1ad tags, outer first.
    pub vlans: [u16; 2],
    pub n_vlans: u8,
    /// Ethertype after the VLAN tags.
    pub ethertype: u16,
    /// Source and destination addresses (IPv4 or IPv6), if an IP header was
    /// found.
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol / IPv6 next header of the transport (after extension
    /// headers); 0 when unknown.
    pub proto: u8,
    /// The datagram is a fragment (IPv4 MF or offset != 0; IPv6 fragment
    /// header).
    pub fragment: bool,
    /// TCP/UDP/SCTP source and destination ports, if present (never for
    /// fragments other than the first; see `flow_hash` for how fragments
    /// are hashed).
    pub ports: Option<(u16, u16)>,
}

impl<'a> Packet<'a> {
    /// Parses the headers of `frame` (an Ethernet frame without FCS).
    ///
    /// - Frames shorter than an Ethernet header: `ethertype` 0, nothing else.
    /// - VLAN tags: see the [module doc](self#vlan-tags).
    /// - IPv4: the version must be 4 and the IHL at least 5 with the whole
    ///   header in the frame, else no IP fields are set.
    /// - IPv6: hop-by-hop, routing, destination options, fragment and AH
    ///   headers are walked (at most 8); `proto` is the first other next
    ///   header, or, for a non-first fragment, the fragment header's next
    ///   header; 0 if the chain is truncated or too long.
    /// - Ports: TCP, UDP and SCTP only, first fragments only, and only when
    ///   the fixed transport header is complete.
    pub fn parse(frame: &'a [u8]) -> Packet<'a> {
        let mut p = Packet {
            frame,
            vlans: [0; 2],
            n_vlans: 0,
            ethertype: 0,
            src: None,
            dst: None,
            proto: 0,
            fragment: false,
            ports: None,
        };
        let Some(mut ethertype) = be16(frame, 12) else {
            return p;
        };
        let mut l3 = ETH_HEADER_LEN;
        while usize::from(p.n_vlans) < MAX_VLAN_TAGS && is_vlan_tpid(ethertype) {
            let (Some(tci), Some(inner)) = (be16(frame, l3), be16(frame, l3 + 2)) else {
                // Truncated tag: leave `ethertype` at the TPID.
                break;
            };
            p.vlans[usize::from(p.n_vlans)] = tci & VLAN_ID_MASK;
            p.n_vlans += 1;
            ethertype = inner;
            l3 += VLAN_TAG_LEN;
        }
        p.ethertype = ethertype;
        match ethertype {
            ETHERTYPE_IPV4 => p.parse_ipv4(l3),
            ETHERTYPE_IPV6 => p.parse_ipv6(l3),
            _ => {}
        }
        p
    }

    fn parse_ipv4(&mut self, l3: usize) {
        let Some(ip) = self.frame.get(l3..) else {
            return;
        };
        let Some(h) = ip.first_chunk::<IPV4_MIN_HEADER_LEN>() else {
            return;
        };
        if h[0] >> 4 != IPV4_VERSION {
            return;
        }
        let header_len = usize::from(h[0] & 0x0f) * 4;
        if header_len < IPV4_MIN_HEADER_LEN || ip.len() < header_len {
            return;
        }
        // Ethernet pads short frames to 60 bytes: the datagram ends at the
        // total length when that is plausible. A total length shorter than
        // the header is garbage (or 0 from a TSO capture); use the frame.
        let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let end = if total_len >= header_len {
            total_len.min(ip.len())
        } else {
            ip.len()
        };
        let frag = u16::from_be_bytes([h[6], h[7]]);
        let offset = frag & IPV4_FRAG_OFFSET_MASK;
        self.fragment = frag & IPV4_FLAG_MF != 0 || offset != 0;
        self.proto = h[9];
        self.src = Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])));
        self.dst = Some(IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])));
        if offset == 0 {
            self.ports = ip
                .get(header_len..end)
                .and_then(|l4| l4_ports(l4, self.proto));
        }
    }

    fn parse_ipv6(&mut self, l3: usize) {
        let Some(ip) = self.frame.get(l3..) else {
            return;
        };
        let Some(h) = ip.first_chunk::<IPV6_HEADER_LEN>() else {
            return;
        };
        if h[0] >> 4 != IPV6_VERSION {
            return;
        }
        // Payload length 0 means a jumbogram (or a TSO capture): use the frame.
        let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let end = if payload_len != 0 {
            (IPV6_HEADER_LEN + payload_len).min(ip.len())
        } else {
            ip.len()
        };
        let datagram = ip.get(..end).unwrap_or(ip);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        self.src = Some(IpAddr::V6(Ipv6Addr::from(src)));
        self.dst = Some(IpAddr::V6(Ipv6Addr::from(dst)));

        let mut next = h[6];
        let mut off = IPV6_HEADER_LEN;
        for _ in 0..=MAX_IPV6_EXT_HEADERS {
            let rest = datagram.get(off..).unwrap_or(&[]);
            match next {
                IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                    let Some(e) = rest.first_chunk::<2>() else {
                        return;
                    };
                    next = e[0];
                    off += (usize::from(e[1]) + 1) * 8;
                }
                IPV6_AUTH => {
                    let Some(e) = rest.first_chunk::<2>() else {
                        return;
                    };
                    next = e[0];
                    off += (usize::from(e[1]) + 2) * 4;
                }
                IPV6_FRAGMENT => {
                    let Some(e) = rest.first_chunk::<IPV6_FRAG_HEADER_LEN>() else {
                        return;
                    };
                    self.fragment = true;
                    next = e[0];
                    off += IPV6_FRAG_HEADER_LEN;
                    if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                        // A later fragment: what follows is the middle of
                        // the payload, not a header.
                        self.proto = next;
                        return;
                    }
                }
                transport => {
                    self.proto = transport;
                    self.ports = l4_ports(rest, transport);
                    return;
                }
            }
        }
        // Too many extension headers: the transport stays unknown (0).
    }

    /// Offset of the L3 header: after the Ethernet header and the VLAN tags
    /// that were looked through.
    pub fn l3_offset(&self) -> usize {
        ETH_HEADER_LEN + VLAN_TAG_LEN * usize::from(self.n_vlans)
    }

    /// Destination MAC, if the frame holds a whole Ethernet header.
    pub fn eth_dst(&self) -> Option<[u8; 6]> {
        self.frame
            .first_chunk::<ETH_HEADER_LEN>()
            .map(|h| [h[0], h[1], h[2], h[3], h[4], h[5]])
    }

    /// Source MAC, if the frame holds a whole Ethernet header.
    pub fn eth_src(&self) -> Option<[u8; 6]> {
        self.frame
            .first_chunk::<ETH_HEADER_LEN>()
            .map(|h| [h[6], h[7], h[8], h[9], h[10], h[11]])
    }

    /// Sender and target protocol addresses of an ARP or RARP frame for
    /// Ethernet/IPv4 (what `host X` also matches in tcpdump). Computed on
    /// demand: ARP is rare, so `parse` does not pay for it.
    pub fn arp_addrs(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if self.ethertype != ETHERTYPE_ARP && self.ethertype != ETHERTYPE_RARP {
            return None;
        }
        let a = self
            .frame
            .get(self.l3_offset()..)?
            .first_chunk::<ARP_ETH_IPV4_LEN>()?;
        let ethernet_ipv4 = u16::from_be_bytes([a[0], a[1]]) == ARP_HTYPE_ETHERNET
            && u16::from_be_bytes([a[2], a[3]]) == ETHERTYPE_IPV4
            && a[4] == 6
            && a[5] == 4;
        ethernet_ipv4.then(|| {
            (
                Ipv4Addr::new(a[14], a[15], a[16], a[17]),
                Ipv4Addr::new(a[24], a[25], a[26], a[27]),
            )
        })
    }

    /// Symmetric flow hash: equal for both directions of a flow.
    ///
    /// - IP, not a fragment: the two endpoints (address, port) are put in
    ///   a canonical order, then hashed with the transport protocol and the
    ///   address family. Packets without ports (ICMP, truncated transport)
    ///   hash as port 0.
    /// - IP fragment (`fragment == true`, first fragment included): the two
    ///   addresses only, in canonical order, with the family. Later
    ///   fragments carry no ports, so hashing the addresses alone keeps all
    ///   fragments of one datagram on the same member. The price: a flow
    ///   whose packets are sometimes fragmented may send its fragments to a
    ///   different member than its unfragmented packets.
    /// - Anything else (ARP, unknown ethertypes, IP with an unreadable
    ///   header): the two MAC addresses in canonical order. Frames shorter
    ///   than 12 bytes all hash alike.
    ///
    /// VLAN IDs are not hashed: a flow seen on two VLANs (a router on a
    /// stick, SPAN of both sides) goes to one member.
    ///
    /// The mix is a 64x64->128-bit folded multiply per 64-bit word (two
    /// words for IPv4, five for IPv6) and a final avalanche; the low bits
    /// are well spread, so `hash % n_members` is fine for any small `n`. It
    /// is not keyed: it balances load, it does not resist an attacker who
    /// crafts flows to collide.
    pub fn flow_hash(&self) -> u32 {
        let (src_port, dst_port) = match self.ports {
            Some(ports) if !self.fragment => ports,
            _ => (0, 0),
        };
        let proto = if self.fragment { 0 } else { self.proto };
        // Domain separation: family, proto and the fragment rule.
        let tag = |family: u64| family << 40 | u64::from(proto) << 32;
        match (self.src, self.dst) {
            (Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) => {
                let (a, b) = canonical((u32::from(s), src_port), (u32::from(d), dst_port));
                let addrs = u64::from(a.0) << 32 | u64::from(b.0);
                let ports = u64::from(a.1) << 16 | u64::from(b.1);
                let h = mix(HASH_SEED, addrs, HASH_K1);
                finish(mix(h, ports | tag(4), HASH_K2))
            }
            (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
                let (a, b) = canonical((u128::from(s), src_port), (u128::from(d), dst_port));
                let ports = u64::from(a.1) << 16 | u64::from(b.1);
                let mut h = mix(HASH_SEED, (a.0 >> 64) as u64, HASH_K1);
                h = mix(h, a.0 as u64, HASH_K2);
                h = mix(h, (b.0 >> 64) as u64, HASH_K1);
                h = mix(h, b.0 as u64, HASH_K2);
                finish(mix(h, ports | tag(6), HASH_K1))
            }
            _ => {
                let mac = |m: Option<[u8; 6]>| {
                    m.map_or(0, |m| {
                        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
                    })
                };
                let (a, b) = canonical(mac(self.eth_src()), mac(self.eth_dst()));
                let h = mix(HASH_SEED ^ 0xe7, a, HASH_K1);
                finish(mix(h, b, HASH_K2))
            }
        }
    }
}

// wyhash's constants: odd, with a balanced mix of bits.
const HASH_SEED: u64 = 0xa076_1d64_78bd_642f;
const HASH_K1: u64 = 0xe703_7ed1_a0b4_28db;
const HASH_K2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// One step: xor the word in, then a folded 64x64->128 multiply (both
/// halves of the product xored), which spreads every input bit over the
/// whole result in one `mul` on x86-64 and aarch64.
fn mix(h: u64, word: u64, k: u64) -> u64 {
    let product = u128::from(h ^ word) * u128::from(k);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Final avalanche (the murmur3/splitmix shape), folded to 32 bits.
fn finish(mut h: u64) -> u32 {
    h ^= h >> 29;
    h = h.wrapping_mul(HASH_K2);
    h ^= h >> 32;
    h as u32
}

/// The two endpoints in a fixed order, so both directions hash alike.
fn canonical<T: Ord>(a: T, b: T) -> (T, T) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY
    )
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*s))
}

/// Ports of a TCP/UDP/SCTP header at the start of `l4`, if the whole fixed
/// header is there.
fn l4_ports(l4: &[u8], proto: u8) -> Option<(u16, u16)> {
    let header_len = match proto {
        IPPROTO_TCP => TCP_HEADER_LEN,
        IPPROTO_UDP => UDP_HEADER_LEN,
        IPPROTO_SCTP => SCTP_COMMON_HEADER_LEN,
        _ => return None,
    };
    if l4.len() < header_len {
        return None;
    }
    let p = l4.first_chunk::<4>()?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Hand-built frames for the tests of this module, of the filter and of
/// the dataplane's pipeline (feature `test-frames`, for dev-dependencies).
#[cfg(any(test, feature = "test-frames"))]
pub mod test_frames {
    use super::*;

    pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// Ethernet header, then one 802.1Q tag per entry of `vlans` (outer
    /// first, the outer one 802.1ad when there are two), then `payload`.
    pub fn eth(
        dst: [u8; 6],
        src: [u8; 6],
        vlans: &[u16],
        ethertype: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        for (i, id) in vlans.iter().enumerate() {
            let tpid = if i == 0 && vlans.len() > 1 {
                ETHERTYPE_QINQ
            } else {
                ETHERTYPE_VLAN
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            // PCP 5 in the TCI, to check it is masked off.
            f.extend_from_slice(&(0xa000 | id).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// IPv4 header (IHL 5, correct total length) with `frag` as the
    /// flags/fragment-offset field, then `l4`.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).expect("test datagram fits");
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(l4);
        h
    }

    /// IPv6 header with `next` as next header, then `payload`.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len()).expect("test datagram fits");
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(payload);
        h
    }

    /// A TCP (20 bytes), UDP (8) or SCTP (12) header; anything else gives
    /// an 8-byte ICMP-like header.
    pub fn l4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let len = match proto {
            IPPROTO_TCP => TCP_HEADER_LEN,
            IPPROTO_SCTP => SCTP_COMMON_HEADER_LEN,
            _ => UDP_HEADER_LEN,
        };
        let mut h = vec![0u8; len];
        if matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
            h[..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
        } else {
            h[0] = 8; // echo request
        }
        h
    }

    pub fn v4(
        vlans: &[u16],
        proto: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
    ) -> Vec<u8> {
        let ip = ipv4(src, dst, proto, 0, &l4(proto, sport, dport));
        eth(MAC_B, MAC_A, vlans, ETHERTYPE_IPV4, &ip)
    }

    pub fn v6(vlans: &[u16], proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let (s, d) = (src.parse().expect("v6"), dst.parse().expect("v6"));
        let ip = ipv6(s, d, proto, &l4(proto, sport, dport));
        eth(MAC_B, MAC_A, vlans, ETHERTYPE_IPV6, &ip)
    }

    /// ARP request (op 1) for Ethernet/IPv4.
    pub fn arp(spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        a.extend_from_slice(&MAC_A);
        a.extend_from_slice(&spa);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&tpa);
        eth([0xff; 6], MAC_A, &[], ETHERTYPE_ARP, &a)
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::*;
    use super::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [192, 168, 7, 9];

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("address"))
    }

    #[test]
    fn ipv4_tcp() {
        let f = v4(&[], IPPROTO_TCP, A, 40000, B, 80);
        let p = Packet::parse(&f);
        assert_eq!(p.ethertype, ETHERTYPE_IPV4);
        assert_eq!(p.n_vlans, 0);
        assert_eq!(p.src, ip("10.0.0.1"));
        assert_eq!(p.dst, ip("192.168.7.9"));
        assert_eq!(p.proto, IPPROTO_TCP);
        assert!(!p.fragment);
        assert_eq!(p.ports, Some((40000, 80)));
        assert_eq!(p.l3_offset(), 14);
        assert_eq!(p.eth_src(), Some(MAC_A));
        assert_eq!(p.eth_dst(), Some(MAC_B));
    }

    #[test]
    fn ipv4_udp_sctp_icmp() {
        let p = Packet::parse(&v4(&[], IPPROTO_UDP, A, 53, B, 3333)).ports;
        assert_eq!(p, Some((53, 3333)));
        let p = Packet::parse(&v4(&[], IPPROTO_SCTP, A, 2905, B, 2906)).ports;
        assert_eq!(p, Some((2905, 2906)));
        let f = v4(&[], IPPROTO_ICMP, A, 0, B, 0);
        let p = Packet::parse(&f);
        assert_eq!((p.proto, p.ports), (IPPROTO_ICMP, None));
    }

    #[test]
    fn ipv4_options_honour_ihl() {
        // IHL 6: 4 bytes of options (NOPs) between header and TCP.
        let mut ip = ipv4(A, B, IPPROTO_TCP, 0, &[1, 1, 1, 1]);
        ip[0] = 0x46;
        ip.extend_from_slice(&l4(IPPROTO_TCP, 1234, 443));
        let total = u16::try_from(ip.len()).unwrap();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let f = eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV4, &ip);
        assert_eq!(Packet::parse(&f).ports, Some((1234, 443)));
    }

    #[test]
    fn ipv4_bad_version_or_ihl_yields_no_addresses() {
        let mut f = v4(&[], IPPROTO_TCP, A, 1, B, 2);
        f[14] = 0x65; // version 6 in an IPv4 ethertype
        let p = Packet::parse(&f);
        assert_eq!((p.ethertype, p.src, p.ports), (ETHERTYPE_IPV4, None, None));
        f[14] = 0x44; // IHL 4 < 5
        assert_eq!(Packet::parse(&f).src, None);
        f[14] = 0x4f; // IHL 15: a 60-byte header in a 40-byte datagram
        assert_eq!(Packet::parse(&f).src, None);
    }

    #[test]
    fn ipv4_total_length_excludes_ethernet_padding() {
        // UDP header cut to 6 bytes by the total length, then padding to 60.
        let mut ip = ipv4(A, B, IPPROTO_UDP, 0, &l4(IPPROTO_UDP, 7, 9)[..6]);
        ip.resize(46, 0);
        let f = eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV4, &ip);
        assert_eq!(f.len(), 60);
        let p = Packet::parse(&f);
        assert_eq!(p.src, ip_v4(A));
        assert_eq!(p.ports, None);
    }

    fn ip_v4(a: [u8; 4]) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    }

    #[test]
    fn ipv4_fragments() {
        let tcp = l4(IPPROTO_TCP, 5555, 80);
        // First fragment: MF set, offset 0, ports present.
        let first = eth(
            MAC_B,
            MAC_A,
            &[],
            ETHERTYPE_IPV4,
            &ipv4(A, B, 6, 0x2000, &tcp),
        );
        let p = Packet::parse(&first);
        assert!(p.fragment);
        assert_eq!(p.ports, Some((5555, 80)));
        // Later fragment: offset 185 (1480 bytes), payload is not a header.
        let later = eth(
            MAC_B,
            MAC_A,
            &[],
            ETHERTYPE_IPV4,
            &ipv4(A, B, 6, 185, &[0xde; 40]),
        );
        let q = Packet::parse(&later);
        assert!(q.fragment);
        assert_eq!((q.proto, q.ports), (IPPROTO_TCP, None));
        // DF alone is not a fragment.
        let df = eth(
            MAC_B,
            MAC_A,
            &[],
            ETHERTYPE_IPV4,
            &ipv4(A, B, 6, 0x4000, &tcp),
        );
        assert!(!Packet::parse(&df).fragment);
    }

    #[test]
    fn vlan_and_qinq_are_skipped() {
        let f = v4(&[100], IPPROTO_UDP, A, 1, B, 2);
        let p = Packet::parse(&f);
        assert_eq!((p.n_vlans, p.vlans), (1, [100, 0]));
        assert_eq!((p.ethertype, p.ports), (ETHERTYPE_IPV4, Some((1, 2))));
        assert_eq!(p.l3_offset(), 18);

        let f = v6(&[4000, 7], IPPROTO_TCP, "2001:db8::1", 1, "2001:db8::2", 2);
        let p = Packet::parse(&f);
        assert_eq!((p.n_vlans, p.vlans), (2, [4000, 7]));
        assert_eq!(p.dst, ip("2001:db8::2"));
        assert_eq!(p.ports, Some((1, 2)));

        // The legacy 0x9100 TPID too.
        let mut f = v4(&[5, 6], IPPROTO_UDP, A, 1, B, 2);
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ_LEGACY.to_be_bytes());
        let p = Packet::parse(&f);
        assert_eq!((p.n_vlans, p.vlans, p.ports), (2, [5, 6], Some((1, 2))));
    }

    #[test]
    fn a_third_tag_stops_the_parse() {
        let f = v4(&[1, 2, 3], IPPROTO_UDP, A, 1, B, 2);
        let p = Packet::parse(&f);
        assert_eq!((p.n_vlans, p.vlans), (2, [1, 2]));
        assert_eq!(p.ethertype, ETHERTYPE_VLAN);
        assert_eq!((p.src, p.ports), (None, None));
    }

    #[test]
    fn ipv6_tcp_udp() {
        let f = v6(&[], IPPROTO_UDP, "fe80::1", 546, "ff02::1:2", 547);
        let p = Packet::parse(&f);
        assert_eq!(p.ethertype, ETHERTYPE_IPV6);
        assert_eq!((p.src, p.dst), (ip("fe80::1"), ip("ff02::1:2")));
        assert_eq!(
            (p.proto, p.ports, p.fragment),
            (17, Some((546, 547)), false)
        );
        let f = v6(&[], IPPROTO_ICMPV6, "::1", 0, "::2", 0);
        let p = Packet::parse(&f);
        assert_eq!((p.proto, p.ports), (IPPROTO_ICMPV6, None));
    }

    /// Hop-by-hop (8 bytes), routing (24), destination options (16), AH
    /// (16), then a fragment header, then `inner` with next header `next`.
    fn v6_ext_chain(frag_field: u16, next: u8, inner: &[u8]) -> Vec<u8> {
        let mut pl = Vec::new();
        pl.extend_from_slice(&[IPV6_ROUTING, 0, 1, 4, 0, 0, 0, 0]);
        let mut rh = vec![IPV6_DEST_OPTS, 2, 0, 0];
        rh.resize(24, 0);
        pl.extend_from_slice(&rh);
        let mut dh = vec![IPV6_AUTH, 1];
        dh.resize(16, 1);
        pl.extend_from_slice(&dh);
        let mut ah = vec![IPV6_FRAGMENT, 2]; // (2 + 2) * 4 = 16
        ah.resize(16, 0);
        pl.extend_from_slice(&ah);
        pl.extend_from_slice(&[next, 0]);
        pl.extend_from_slice(&frag_field.to_be_bytes());
        pl.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        pl.extend_from_slice(inner);
        let s = "2001:db8::a".parse().unwrap();
        let d = "2001:db8::b".parse().unwrap();
        eth(
            MAC_B,
            MAC_A,
            &[],
            ETHERTYPE_IPV6,
            &ipv6(s, d, IPV6_HOP_BY_HOP, &pl),
        )
    }

    #[test]
    fn ipv6_extension_headers_then_fragment() {
        // First fragment (offset 0, M set): the walk reaches UDP and its ports.
        let first = v6_ext_chain(1, IPPROTO_UDP, &l4(IPPROTO_UDP, 4000, 53));
        let p = Packet::parse(&first);
        assert!(p.fragment);
        assert_eq!((p.proto, p.ports), (IPPROTO_UDP, Some((4000, 53))));
        // A later fragment (offset 1480 bytes = 185 units): proto from the
        // fragment header, no ports, even though the payload looks like UDP.
        let later = v6_ext_chain(185 << 3, IPPROTO_UDP, &l4(IPPROTO_UDP, 4000, 53));
        let q = Packet::parse(&later);
        assert!(q.fragment);
        assert_eq!((q.proto, q.ports), (IPPROTO_UDP, None));
        assert_eq!(p.flow_hash(), q.flow_hash());
        // Truncated inside the chain: addresses but no transport.
        let cut = &first[..14 + 40 + 20];
        let r = Packet::parse(cut);
        assert_eq!((r.src.is_some(), r.proto, r.ports), (true, 0, None));
    }

    #[test]
    fn ipv6_unknown_next_header_and_endless_chain() {
        let s = "::1".parse().unwrap();
        // ESP (50): the walk stops, proto 50, no ports.
        let f = eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV6, &ipv6(s, s, 50, &[0; 16]));
        let p = Packet::parse(&f);
        assert_eq!((p.proto, p.ports), (50, None));
        // 20 destination-options headers, each pointing at the next.
        let mut pl = Vec::new();
        for _ in 0..20 {
            pl.extend_from_slice(&[IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        pl.extend_from_slice(&l4(IPPROTO_TCP, 1, 2));
        let f = eth(
            MAC_B,
            MAC_A,
            &[],
            ETHERTYPE_IPV6,
            &ipv6(s, s, IPV6_DEST_OPTS, &pl),
        );
        let p = Packet::parse(&f);
        assert_eq!((p.proto, p.ports, p.src.is_some()), (0, None, true));
    }

    #[test]
    fn arp_addresses() {
        let f = arp([10, 1, 1, 1], [10, 1, 1, 254]);
        let p = Packet::parse(&f);
        assert_eq!(p.ethertype, ETHERTYPE_ARP);
        assert_eq!(p.src, None);
        assert_eq!(
            p.arp_addrs(),
            Some((Ipv4Addr::new(10, 1, 1, 1), Ipv4Addr::new(10, 1, 1, 254)))
        );
        assert_eq!(Packet::parse(&f[..41]).arp_addrs(), None);
        assert_eq!(Packet::parse(&v4(&[], 6, A, 1, B, 2)).arp_addrs(), None);
    }

    #[test]
    fn every_truncation_is_safe_and_monotone() {
        let frames = [
            v4(&[10, 20], IPPROTO_TCP, A, 1000, B, 80),
            v6(&[30], IPPROTO_UDP, "2001:db8::1", 1, "2001:db8::2", 2),
            v6_ext_chain(0, IPPROTO_TCP, &l4(IPPROTO_TCP, 9, 10)),
            arp(A, B),
        ];
        for f in &frames {
            let full = Packet::parse(f);
            for len in 0..f.len() {
                let p = Packet::parse(&f[..len]);
                let _ = (p.flow_hash(), p.arp_addrs(), p.eth_src());
                assert!(p.n_vlans <= full.n_vlans, "len {len}");
                if p.ports.is_some() {
                    assert_eq!(p.ports, full.ports, "len {len}");
                }
                if p.src.is_some() {
                    assert_eq!((p.src, p.dst), (full.src, full.dst), "len {len}");
                }
            }
            assert_eq!(Packet::parse(&f[..13]).ethertype, 0);
        }
        // The shortest frame that still has ports: exactly the TCP header.
        let f = &frames[0];
        assert_eq!(Packet::parse(&f[..f.len() - 1]).ports, None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut buf = [0u8; 128];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                *b = splitmix(&mut x) as u8;
            }
            let len = (splitmix(&mut x) % 129) as usize;
            // Bias towards interesting ethertypes and versions.
            let et = [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806][(x % 5) as usize];
            buf[12..14].copy_from_slice(&et.to_be_bytes());
            buf[14] = [0x45, 0x60, 0x4f, 0x41][(x >> 8) as usize % 4];
            let p = Packet::parse(&buf[..len]);
            let _ = (p.flow_hash(), p.arp_addrs());
            assert!(p.n_vlans <= 2);
            assert_eq!(p.src.is_some(), p.dst.is_some());
            if p.ports.is_some() {
                assert!(matches!(p.proto, 6 | 17 | 132));
            }
        }
    }

    fn splitmix(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Swaps MACs, addresses and ports: the reply of `f`.
    fn reversed_v4(proto: u8, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let ip = ipv4(dst, src, proto, 0, &l4(proto, dp, sp));
        eth(MAC_A, MAC_B, &[], ETHERTYPE_IPV4, &ip)
    }

    #[test]
    fn hash_is_symmetric_v4_and_v6() {
        for proto in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP] {
            let fwd = Packet::parse(&v4(&[], proto, A, 40000, B, 443)).flow_hash();
            let rev = Packet::parse(&reversed_v4(proto, A, 40000, B, 443)).flow_hash();
            assert_eq!(fwd, rev, "proto {proto}");
        }
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            let fwd = v6(&[], proto, "2001:db8::1", 5000, "2001:db8:ff::2", 80);
            let rev = v6(&[], proto, "2001:db8:ff::2", 80, "2001:db8::1", 5000);
            assert_eq!(
                Packet::parse(&fwd).flow_hash(),
                Packet::parse(&rev).flow_hash()
            );
        }
        // Same address both ways, ports decide the order.
        let fwd = Packet::parse(&v4(&[], 6, A, 1, A, 2)).flow_hash();
        let rev = Packet::parse(&v4(&[], 6, A, 2, A, 1)).flow_hash();
        assert_eq!(fwd, rev);
        // Non-IP: the MAC pair.
        let arp_req = arp(A, B);
        let mut arp_rep = arp_req.clone();
        arp_rep[..6].copy_from_slice(&MAC_A);
        arp_rep[6..12].copy_from_slice(&[0xff; 6]);
        assert_eq!(
            Packet::parse(&arp_req).flow_hash(),
            Packet::parse(&arp_rep).flow_hash()
        );
    }

    #[test]
    fn hash_ignores_vlans() {
        let a = Packet::parse(&v4(&[], 6, A, 1, B, 2)).flow_hash();
        let b = Packet::parse(&v4(&[10], 6, A, 1, B, 2)).flow_hash();
        let c = Packet::parse(&v4(&[10, 20], 6, A, 1, B, 2)).flow_hash();
        assert_eq!((a, a), (b, c));
    }

    #[test]
    fn different_flows_differ() {
        let base = Packet::parse(&v4(&[], 6, A, 40000, B, 443)).flow_hash();
        let others = [
            v4(&[], 6, A, 40001, B, 443),
            v4(&[], 6, A, 40000, B, 444),
            v4(&[], 6, [10, 0, 0, 2], 40000, B, 443),
            v4(&[], 6, A, 40000, [192, 168, 7, 8], 443),
            v4(&[], 17, A, 40000, B, 443),
            v6(&[], 6, "::a00:1", 40000, "::c0a8:709", 443),
        ];
        for (i, f) in others.iter().enumerate() {
            assert_ne!(Packet::parse(f).flow_hash(), base, "flow {i}");
        }
    }

    #[test]
    fn fragments_of_one_datagram_hash_alike() {
        let first = ipv4(A, B, IPPROTO_UDP, 0x2000, &l4(IPPROTO_UDP, 5353, 9999));
        let middle = ipv4(A, B, IPPROTO_UDP, 0x2000 | 185, &[0x55; 64]);
        let last = ipv4(A, B, IPPROTO_UDP, 370, &[0x66; 10]);
        let hashes: Vec<u32> = [first, middle, last]
            .iter()
            .map(|ip| Packet::parse(&eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV4, ip)).flow_hash())
            .collect();
        assert_eq!(hashes[0], hashes[1]);
        assert_eq!(hashes[1], hashes[2]);
        // Fragments of the reverse direction hash alike too.
        let rev = ipv4(B, A, IPPROTO_UDP, 185, &[0; 8]);
        let rev = Packet::parse(&eth(MAC_A, MAC_B, &[], ETHERTYPE_IPV4, &rev)).flow_hash();
        assert_eq!(rev, hashes[0]);
    }

    /// Counts per member of `hash % n` for `flows` flows; asserts each is
    /// within `tolerance` (a fraction) of even.
    fn assert_even(hashes: &[u32], n: u32, tolerance: f64) {
        let mut counts = vec![0u32; n as usize];
        for h in hashes {
            counts[(h % n) as usize] += 1;
        }
        let even = hashes.len() as f64 / f64::from(n);
        for (m, &c) in counts.iter().enumerate() {
            let dev = (f64::from(c) - even).abs() / even;
            assert!(dev <= tolerance, "n {n} member {m}: {counts:?}");
        }
    }

    #[test]
    fn hash_spreads_random_flows_over_three_members() {
        let mut x = 42;
        let hashes: Vec<u32> = (0..1000)
            .map(|_| {
                let r = splitmix(&mut x);
                let s = (r as u32).to_be_bytes();
                let d = ((r >> 32) as u32).to_be_bytes();
                let ports = splitmix(&mut x);
                Packet::parse(&v4(&[], 6, s, ports as u16, d, (ports >> 16) as u16)).flow_hash()
            })
            .collect();
        assert_even(&hashes, 3, 0.20);
    }

    #[test]
    fn hash_spreads_structured_flows() {
        // The realistic worst case: one client, sequential source ports, one
        // server; and one server port, sequential client addresses.
        let by_port: Vec<u32> = (0..4096u16)
            .map(|p| Packet::parse(&v4(&[], 6, A, 32768 + p, B, 443)).flow_hash())
            .collect();
        let by_addr: Vec<u32> = (0..4096u32)
            .map(|i| {
                let s = (0x0a00_0000 | i).to_be_bytes();
                Packet::parse(&v4(&[], 6, s, 50000, B, 443)).flow_hash()
            })
            .collect();
        let v6_by_port: Vec<u32> = (0..4096u16)
            .map(|p| {
                let f = v6(&[], 17, "2001:db8::1", 1024 + p, "2001:db8::53", 53);
                Packet::parse(&f).flow_hash()
            })
            .collect();
        for n in 2..=16 {
            assert_even(&by_port, n, 0.25);
            assert_even(&by_addr, n, 0.25);
            assert_even(&v6_by_port, n, 0.25);
        }
    }
}
