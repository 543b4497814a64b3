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
pub mod test_frames;

#[cfg(test)]
mod tests;
