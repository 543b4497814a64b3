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
