//! Hand-built frames for the tests of the parser, of the filter and of the
//! dataplane's pipeline.

use super::*;

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Ethernet header, then one 802.1Q tag per entry of `vlans` (outer
/// first, the outer one 802.1ad when there are two), then `payload`.
pub fn eth(dst: [u8; 6], src: [u8; 6], vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
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

pub fn v4(vlans: &[u16], proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
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
