use super::eval::{ACCEPT, REJECT};
use super::*;
use crate::packet::test_frames::*;
use crate::packet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

const C: [u8; 4] = [10, 0, 0, 1]; // client
const S: [u8; 4] = [192, 168, 1, 10]; // server

/// These tests describe the lenient mode (the `lenient:` prefix); the
/// libpcap mode is proven against tcpdump in `tests/filter_tcpdump.rs`.
fn f(expr: &str) -> Filter {
    let expr = &format!("lenient: {expr}");
    match Filter::compile(expr) {
        Ok(f) => f,
        Err(e) => panic!("{expr:?} does not compile: {e}\n{}", e.caret()),
    }
}

/// Asserts `expr` matches exactly the frames marked true.
fn check(expr: &str, cases: &[(&[u8], bool)]) {
    let filter = f(expr);
    for (i, (frame, want)) in cases.iter().enumerate() {
        assert_eq!(filter.matches(frame), *want, "{expr:?}, frame #{i}");
    }
}

fn tcp4(sport: u16, dport: u16) -> Vec<u8> {
    v4(&[], TCP, C, sport, S, dport)
}

fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    v4(&[], UDP, C, sport, S, dport)
}

fn err(expr: &str) -> FilterError {
    match Filter::compile(expr) {
        Ok(f) => panic!("{expr:?} compiled: {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn filter_is_clone_send_sync_debug() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    assert_traits::<Filter>();
    assert_traits::<FilterError>();
}

#[test]
fn empty_matches_everything() {
    for e in ["", "   ", "\t\n"] {
        let filter = f(e);
        assert!(filter.is_match_all());
        assert!(filter.expr().ends_with(e));
        assert!(filter.matches(&[]));
        assert!(filter.matches(&tcp4(1, 2)));
    }
    assert!(Filter::default().is_match_all());
    assert!(!f("tcp").is_match_all());
    assert_eq!(Filter::compile("  tcp ").unwrap().expr(), "  tcp ");
    let parsed: Filter = "lenient: udp".parse().unwrap();
    assert_eq!(parsed, f("udp"));
    assert_eq!(parsed.mode(), Mode::Lenient);
    assert_eq!(Filter::compile("udp").unwrap().mode(), Mode::Libpcap);
    assert_eq!(
        Filter::compile("LIBPCAP: udp").unwrap().mode(),
        Mode::Libpcap
    );
}

#[test]
fn protocols_alone() {
    let icmp4 = v4(&[], IPPROTO_ICMP, C, 0, S, 0);
    let tcp6 = v6(&[], TCP, "2001:db8::1", 1, "2001:db8::2", 2);
    let icmp6 = v6(&[], IPPROTO_ICMPV6, "::1", 0, "::2", 0);
    let sctp4 = v4(&[], SCTP, C, 1, S, 2);
    let arp = arp(C, S);
    let frames: [&[u8]; 7] = [
        &tcp4(1, 2),
        &udp4(1, 2),
        &icmp4,
        &tcp6,
        &icmp6,
        &sctp4,
        &arp,
    ];
    let table: [(&str, [bool; 7]); 9] = [
        ("tcp", [true, false, false, true, false, false, false]),
        ("udp", [false, true, false, false, false, false, false]),
        ("icmp", [false, false, true, false, false, false, false]),
        ("icmp6", [false, false, false, false, true, false, false]),
        ("sctp", [false, false, false, false, false, true, false]),
        ("ip", [true, true, true, false, false, true, false]),
        ("ip6", [false, false, false, true, true, false, false]),
        ("arp", [false, false, false, false, false, false, true]),
        ("rarp", [false; 7]),
    ];
    for (expr, want) in table {
        let cases: Vec<(&[u8], bool)> = frames.iter().copied().zip(want).collect();
        check(expr, &cases);
    }
}

#[test]
fn hosts_and_directions() {
    let fwd = tcp4(40000, 80);
    let rev = v4(&[], TCP, S, 80, C, 40000);
    let other = v4(&[], TCP, [10, 0, 0, 2], 1, [10, 0, 0, 3], 2);
    let to_self = v4(&[], TCP, C, 1, C, 2);
    check(
        "host 10.0.0.1",
        &[(&fwd, true), (&rev, true), (&other, false)],
    );
    check("src host 10.0.0.1", &[(&fwd, true), (&rev, false)]);
    check("dst host 10.0.0.1", &[(&fwd, false), (&rev, true)]);
    check("src 10.0.0.1", &[(&fwd, true), (&rev, false)]);
    check("ip dst 10.0.0.1", &[(&fwd, false), (&rev, true)]);
    check("src or dst host 10.0.0.1", &[(&fwd, true), (&rev, true)]);
    check("dst or src host 10.0.0.1", &[(&fwd, true), (&rev, true)]);
    check(
        "src and dst host 10.0.0.1",
        &[(&fwd, false), (&to_self, true)],
    );
    check("ip host 192.168.1.10", &[(&fwd, true), (&other, false)]);
    // An IPv4 host never matches IPv6, and the other way round.
    let v6f = v6(&[], UDP, "2001:db8::1", 5, "2001:db8::2", 6);
    check("host 10.0.0.1", &[(&v6f, false)]);
    check("host 2001:db8::2", &[(&v6f, true), (&fwd, false)]);
    check("ip6 src host 2001:db8::1", &[(&v6f, true)]);
    check("ip6 dst host 2001:db8::1", &[(&v6f, false)]);
}

#[test]
fn host_matches_arp_like_tcpdump() {
    let a = arp([10, 9, 9, 1], [10, 9, 9, 254]);
    check("host 10.9.9.1", &[(&a, true)]);
    check("host 10.9.9.254", &[(&a, true)]);
    check("src host 10.9.9.254", &[(&a, false)]);
    check("arp dst host 10.9.9.254", &[(&a, true)]);
    check("arp host 10.9.9.1", &[(&a, true), (&tcp4(1, 2), false)]);
    check("ip host 10.9.9.1", &[(&a, false)]);
    check("rarp host 10.9.9.1", &[(&a, false)]);
    check("net 10.9.0.0/16", &[(&a, true)]);
}

#[test]
fn networks() {
    let fwd = tcp4(40000, 80); // 10.0.0.1 -> 192.168.1.10
    check("net 10.0.0.0/8", &[(&fwd, true)]);
    check("net 10.0.0.0 / 8", &[(&fwd, true)]);
    check("src net 192.168.0.0/16", &[(&fwd, false)]);
    check("dst net 192.168.0.0/16", &[(&fwd, true)]);
    check("net 192.168.1.0 mask 255.255.255.0", &[(&fwd, true)]);
    check("net 192.168.2.0 mask 255.255.255.0", &[(&fwd, false)]);
    check("net 10", &[(&fwd, true)]);
    check("net 192.168", &[(&fwd, true)]);
    check("net 192.168.1", &[(&fwd, true)]);
    check("net 192.169", &[(&fwd, false)]);
    check("net 10/8", &[(&fwd, true)]);
    check("net 0.0.0.0/0", &[(&fwd, true), (&arp(C, S), true)]);
    check("net 10.0.0.1", &[(&fwd, true)]);
    check("ip net 10.0.0.0/31", &[(&fwd, true)]);
    let v6f = v6(&[], TCP, "2001:db8:1::5", 5, "fd00::1", 6);
    check("ip6 net 2001:db8::/32", &[(&v6f, true), (&fwd, false)]);
    check("net 2001:db9::/32", &[(&v6f, false)]);
    check("dst net fd00::/8", &[(&v6f, true)]);
    check("src net fd00::/8", &[(&v6f, false)]);
    check("net ::/0", &[(&v6f, true), (&fwd, false)]);
}

#[test]
fn ports() {
    let t = tcp4(40000, 80);
    let u = udp4(5353, 53);
    let s = v4(&[], SCTP, C, 2905, S, 80);
    let icmp = v4(&[], IPPROTO_ICMP, C, 0, S, 0);
    check(
        "port 80",
        &[(&t, true), (&u, false), (&s, true), (&icmp, false)],
    );
    check("tcp port 80", &[(&t, true), (&s, false)]);
    check("sctp port 80", &[(&t, false), (&s, true)]);
    check("udp port 53", &[(&u, true), (&t, false)]);
    check("udp dst port 53", &[(&u, true)]);
    check("udp src port 53", &[(&u, false)]);
    check("src port 5353", &[(&u, true), (&t, false)]);
    check("src or dst port 53", &[(&u, true)]);
    check("src and dst port 53", &[(&u, false), (&udp4(53, 53), true)]);
    check("port domain", &[(&u, true)]);
    check("tcp port HTTP", &[(&t, true)]);
    check("port 0x50", &[(&t, true)]);
    check("portrange 79-81", &[(&t, true), (&u, false)]);
    check("tcp portrange 81-90", &[(&t, false)]);
    check("portrange 53-53", &[(&u, true)]);
    check("portrange ftp-data-http", &[(&t, true)]);
    check("tcp dst portrange 1-1024", &[(&t, true)]);
    check("tcp src portrange 1-1024", &[(&t, false)]);
    let t6 = v6(&[], TCP, "2001:db8::1", 1234, "2001:db8::2", 443);
    check("tcp port https", &[(&t6, true)]);
    check(
        "ip6 and tcp dst port 443",
        &[(&t6, true), (&tcp4(1, 443), false)],
    );
}

#[test]
fn fragments_keep_protocol_but_not_ports() {
    let l4 = l4(TCP, 5555, 80);
    let first = eth(
        MAC_B,
        MAC_A,
        &[],
        ETHERTYPE_IPV4,
        &ipv4(C, S, TCP, 0x2000, &l4),
    );
    let later = eth(
        MAC_B,
        MAC_A,
        &[],
        ETHERTYPE_IPV4,
        &ipv4(C, S, TCP, 185, &[0; 32]),
    );
    check("tcp", &[(&first, true), (&later, true)]);
    check("tcp port 80", &[(&first, true), (&later, false)]);
    check("host 10.0.0.1 and tcp", &[(&first, true), (&later, true)]);
}

#[test]
fn vlans_are_looked_through() {
    let untagged = tcp4(1000, 80);
    let tagged = v4(&[100], TCP, C, 1000, S, 80);
    let qinq = v4(&[200, 100], TCP, C, 1000, S, 80);
    let all = [
        (&untagged[..], true),
        (&tagged[..], true),
        (&qinq[..], true),
    ];
    check("tcp port 80", &all);
    check("host 192.168.1.10 and tcp", &all);
    check(
        "vlan",
        &[(&untagged, false), (&tagged, true), (&qinq, true)],
    );
    check(
        "vlan 100",
        &[(&untagged, false), (&tagged, true), (&qinq, true)],
    );
    check("vlan 200", &[(&tagged, false), (&qinq, true)]);
    check("vlan 100 and vlan 200", &[(&tagged, false), (&qinq, true)]);
    check("vlan 0x64", &[(&tagged, true)]);
    check("not vlan", &[(&untagged, true), (&tagged, false)]);
    check("vlan and tcp port 80", &[(&untagged, false), (&qinq, true)]);
    let v6q = v6(&[5, 6], UDP, "::1", 1, "::2", 53);
    check("vlan 6 and ip6 and udp port 53", &[(&v6q, true)]);
}

#[test]
fn ether_primitives() {
    let t = tcp4(1, 2); // MAC_A -> MAC_B
    check("ether host 02:00:00:00:00:0a", &[(&t, true)]);
    check("ether src 02:00:00:00:00:0a", &[(&t, true)]);
    check("ether dst 02:00:00:00:00:0a", &[(&t, false)]);
    check("ether dst 2:0:0:0:0:b", &[(&t, true)]);
    check("ether dst 02-00-00-00-00-0B", &[(&t, true)]);
    check("ether dst 0200.0000.000b", &[(&t, true)]);
    check("ether src host 02000000000a", &[(&t, true)]);
    check(
        "ether host 02:00:00:00:00:0a or 02:00:00:00:00:0c",
        &[(&t, true)],
    );
    let a = arp(C, S); // to ff:ff:..
    check("broadcast", &[(&a, true), (&t, false)]);
    check("ether broadcast", &[(&a, true)]);
    check("multicast", &[(&a, true), (&t, false)]);
    check("ether proto 0x0806", &[(&a, true), (&t, false)]);
    check("ether proto \\arp", &[(&a, true)]);
    check("ether proto ip", &[(&t, true)]);
    let mcast4 = v4(&[], UDP, C, 1, [239, 1, 2, 3], 2);
    check("ip multicast", &[(&mcast4, true), (&t, false)]);
    let mcast6 = v6(&[], UDP, "fe80::1", 1, "ff02::fb", 5353);
    check("ip6 multicast", &[(&mcast6, true)]);
}

#[test]
fn lengths_and_proto_numbers() {
    let t = tcp4(1, 2); // 14 + 20 + 20 = 54 bytes
    assert_eq!(t.len(), 54);
    check("less 54", &[(&t, true)]);
    check("less 53", &[(&t, false)]);
    check("greater 54", &[(&t, true)]);
    check("greater 55", &[(&t, false)]);
    check("proto 6", &[(&t, true)]);
    check("ip proto 6", &[(&t, true)]);
    check("ip proto tcp", &[(&t, true)]);
    check("ip proto \\tcp", &[(&t, true)]);
    check("ip6 proto 6", &[(&t, false)]);
    check("proto 17", &[(&t, false)]);
    let u6 = v6(&[], UDP, "::1", 1, "::2", 2);
    check("ip6 proto udp", &[(&u6, true)]);
    check("ip6 proto 0", &[(&u6, false)]);
}

#[test]
fn boolean_operators() {
    let t = tcp4(1, 80);
    let u = udp4(1, 53);
    check("tcp and port 80", &[(&t, true), (&u, false)]);
    check("tcp && port 80", &[(&t, true)]);
    check("tcp or udp", &[(&t, true), (&u, true)]);
    check("tcp || icmp", &[(&t, true), (&u, false)]);
    check("not tcp", &[(&t, false), (&u, true)]);
    check("!tcp", &[(&t, false), (&u, true)]);
    check("not not tcp", &[(&t, true), (&u, false)]);
    check("! ! ! tcp", &[(&t, false)]);
    check("not (tcp or udp)", &[(&t, false), (&u, false)]);
    check("(((tcp)))", &[(&t, true)]);
    check("TCP AND PORT 80", &[(&t, true)]);
}

#[test]
fn and_or_have_equal_precedence_left_to_right() {
    // a = tcp (true), b = udp (false), c = port 53 (false) on `t`.
    let t = tcp4(1, 80);
    // tcpdump: (tcp or udp) and port 53 = false; C precedence would say true.
    check("tcp or udp and port 53", &[(&t, false)]);
    check("(tcp or udp) and port 53", &[(&t, false)]);
    check("tcp or (udp and port 53)", &[(&t, true)]);
    // a and b or c = (a and b) or c: udp and port 80 (false) or tcp (true).
    check("udp and port 80 or tcp", &[(&t, true)]);
    // `not` binds tighter than both.
    check("not udp and tcp", &[(&t, true)]);
    check("not tcp or tcp", &[(&t, true)]);
    check("not (tcp or udp) and tcp", &[(&t, false)]);
    // Same programs as the parenthesised forms, on more frames.
    let frames = [tcp4(1, 80), tcp4(1, 53), udp4(1, 53), udp4(1, 80)];
    for (a, b) in [
        ("tcp or udp and port 53", "(tcp or udp) and port 53"),
        ("port 53 and udp or tcp", "(port 53 and udp) or tcp"),
        (
            "tcp or udp and port 53 or icmp",
            "((tcp or udp) and port 53) or icmp",
        ),
    ] {
        for fr in &frames {
            assert_eq!(f(a).matches(fr), f(b).matches(fr), "{a} vs {b}");
        }
    }
}

#[test]
fn bare_ids_reuse_the_previous_qualifiers() {
    let t80 = tcp4(1, 80);
    let t443 = tcp4(1, 443);
    let u443 = udp4(1, 443);
    let t22 = tcp4(1, 22);
    check(
        "port 80 or 443",
        &[(&t80, true), (&t443, true), (&u443, true), (&t22, false)],
    );
    check(
        "tcp port 80 or 443",
        &[(&t80, true), (&t443, true), (&u443, false)],
    );
    check(
        "tcp dst port http or https or ssh",
        &[(&t80, true), (&t443, true), (&t22, true), (&u443, false)],
    );
    let other = v4(&[], TCP, [10, 0, 0, 2], 1, [10, 0, 0, 3], 2);
    let third = v4(&[], TCP, [10, 0, 0, 4], 1, [10, 0, 0, 5], 2);
    check(
        "host 10.0.0.2 or 10.0.0.4",
        &[(&other, true), (&third, true), (&t80, false)],
    );
    // `not host a and b` is `(not host a) and host b`.
    check(
        "not host 10.0.0.2 and 10.0.0.5",
        &[(&third, true), (&other, false)],
    );
    check("src host 10.0.0.4 and 10.0.0.2", &[(&third, false)]);
    check("net 10.0.0.0/24 or 192.168.0.0/16", &[(&t80, true)]);
    check("ip proto 17 or 6", &[(&t80, true)]);
    check("udp port 53 or tcp", &[(&t80, true)]);
    check("host 10.0.0.2 or (10.0.0.4)", &[(&third, true)]);
    check(
        "host 10.0.0.9 or not 10.0.0.4",
        &[(&third, false), (&t80, true)],
    );
}

#[test]
fn ipv6_extension_headers_then_ports() {
    // Hop-by-hop, then a first fragment, then UDP.
    let mut pl = vec![44, 0, 1, 4, 0, 0, 0, 0];
    pl.extend_from_slice(&[UDP, 0, 0, 1, 0, 0, 0, 9]);
    pl.extend_from_slice(&l4(UDP, 1000, 53));
    let s = "2001:db8::1".parse().unwrap();
    let d = "2001:db8::2".parse().unwrap();
    let fr = eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV6, &ipv6(s, d, 0, &pl));
    check("udp dst port 53", &[(&fr, true)]);
    check("ip6 proto 17", &[(&fr, true)]);
    check("ip6 proto 44", &[(&fr, false)]);
}

#[test]
fn truncated_and_garbage_frames_do_not_match_ports() {
    let t = tcp4(1, 80);
    let filter = f("tcp port 80 or host 192.168.1.10 or vlan 1 or ether host 1:2:3:4:5:6");
    assert!(filter.matches(&t));
    for len in 0..t.len() {
        let _ = filter.matches(&t[..len]);
    }
    assert!(!f("tcp port 80").matches(&t[..t.len() - 1]));
    assert!(!f("host 192.168.1.10").matches(&t[..14 + 19]));
    assert!(f("host 192.168.1.10").matches(&t[..14 + 20]));
    assert!(!f("ether host 02:00:00:00:00:0a").matches(&t[..13]));
}

#[test]
fn program_jumps_only_backwards() {
    for e in [
        "tcp",
        "tcp or udp and port 53",
        "not (host 1.2.3.4 or net 10/8) and (tcp port 80 or 443 or udp)",
        "!(!(!(tcp)))",
        "vlan and (ip or ip6) and not (icmp or icmp6)",
    ] {
        let filter = f(e);
        assert!((filter.entry as usize) < filter.insns.len(), "{e}");
        for (i, insn) in filter.insns.iter().enumerate() {
            for target in [insn.on_true, insn.on_false] {
                assert!(
                    target == ACCEPT || target == REJECT || (target as usize) < i,
                    "{e}: insn {i} jumps to {target}"
                );
            }
        }
    }
    // One instruction per primitive.
    assert_eq!(f("tcp port 80 or 443 and not udp").insns.len(), 3);
}

#[test]
fn huge_expressions_do_not_overflow_the_stack() {
    let t = tcp4(1, 80);
    let chain = format!("{}tcp", "udp or ".repeat(50_000));
    assert!(f(&chain).matches(&t));
    let chain = format!("{}port 80", "tcp and ".repeat(50_000));
    assert!(f(&chain).matches(&t));
    let nots = format!("{}tcp", "not ".repeat(100_001));
    assert!(!f(&nots).matches(&t));
    let deep = format!("{}tcp{}", "(".repeat(100), ")".repeat(100));
    assert!(f(&deep).matches(&t));
    let too_deep = format!("{}tcp{}", "(".repeat(101), ")".repeat(101));
    assert_eq!(err(&too_deep).column, 101);
}

/// (expression, column, message) for every kind of error.
const ERRORS: &[(&str, usize, &str)] = &[
    ("tcp and prot 6", 9, "unknown keyword 'prot'"),
    ("host 1.1.1.1 or prot 6", 17, "unknown keyword 'prot'"),
    ("tcpp", 1, "unknown keyword 'tcpp'"),
    ("gateway 1.2.3.4", 1, "'gateway' is a pcap-filter keyword tapline does not support (it needs host name resolution)"),
    ("(tcp or udp", 1, "unmatched '(': it is never closed"),
    ("tcp and (udp or (icmp)", 9, "unmatched '(': it is never closed"),
    ("tcp)", 4, "unmatched ')'"),
    ("(tcp)) or udp", 6, "unmatched ')'"),
    ("tcp port 8 and", 15, "expected a primitive after 'and', found end of expression"),
    ("tcp or not", 11, "expected a primitive after 'not', found end of expression"),
    ("()", 2, "expected a primitive after '(', found ')'"),
    ("tcp and or udp", 9, "expected a primitive after 'and', found 'or'"),
    ("and tcp", 1, "expected a primitive, found 'and'"),
    ("tcp udp", 5, "expected 'and' or 'or' before keyword 'udp'"),
    ("(tcp udp)", 6, "expected 'and', 'or' or ')' before keyword 'udp'"),
    ("host", 5, "expected an address after 'host', found end of expression"),
    ("src port tcp", 10, "expected a port after 'port', found keyword 'tcp'"),
    ("ether src", 10, "expected a MAC address after 'src', found end of expression"),
    ("ether", 6, "expected 'host', 'src', 'dst', 'proto', 'broadcast', 'multicast' or '[' after 'ether', found end of expression"),
    ("80", 1, "'80' needs a qualifier such as 'host', 'net' or 'port' in front"),
    ("tcp and 80", 9, "'80' needs a qualifier such as 'host', 'net' or 'port' in front"),
    ("host 1.2.3.256", 6, "bad IPv4 address '1.2.3.256'"),
    ("host example", 6, "'example' is a name: tapline does not resolve host or network names; use an IPv4 or IPv6 address"),
    ("host 1.2.3.4 or foo.example.com", 17, "'foo.example.com' is a name: tapline does not resolve host or network names; use an IPv4 or IPv6 address"),
    ("host 2001:db8:::1", 6, "bad IPv6 address '2001:db8:::1'"),
    ("ip6 host 1.2.3.4", 10, "'1.2.3.4' is an IPv4 address; 'ip6' needs an IPv6 one"),
    ("ip net 2001:db8::/32", 8, "'2001:db8::' is an IPv6 address; 'ip' needs an IPv4 one"),
    ("ether host 1:2:3", 12, "bad MAC address '1:2:3'"),
    ("host 10.0.0.0/8", 14, "a host has no prefix length or mask; use 'net'"),
    ("net 10.0.0.0/33", 14, "bad prefix length '33' (0 to 32 for IPv4)"),
    ("net 2001:db8::/129", 16, "bad prefix length '129' (0 to 128 for IPv6)"),
    ("net 10.1.2.3/8", 5, "'10.1.2.3/8' has bits set outside the mask (the network is 10.0.0.0/8)"),
    ("net 2001:db8::1/32", 5, "'2001:db8::1/32' has bits set outside the prefix (the network is 2001:db8::/32)"),
    ("net 10.0.0.0/", 14, "expected a prefix length after '/', found end of expression"),
    ("net 10.0.0.300", 5, "bad IPv4 address '10.0.0.300'"),
    ("port 70000", 6, "bad port '70000' (0 to 65535)"),
    ("port htp", 6, "unknown port name 'htp'"),
    ("port 80-90", 6, "'80-90' is a range; use 'portrange 80-90'"),
    ("portrange 1-70000", 13, "bad port '70000' (0 to 65535)"),
    ("portrange 80", 11, "expected a port range such as '6000-6010', found '80'"),
    ("tcp host 1.2.3.4", 1, "'tcp' cannot qualify 'host'"),
    ("udp src 1.2.3.4", 1, "'udp' with a direction needs 'port' or 'portrange' (e.g. 'udp src port 80')"),
    ("ip port 80", 1, "'ip' cannot qualify 'port'"),
    ("ether net 10/8", 1, "'ether' cannot qualify 'net'"),
    ("src proto 6", 1, "a direction cannot qualify 'proto'"),
    ("tcp multicast", 1, "'tcp' cannot qualify 'multicast'"),
    ("vlan 5000", 6, "bad VLAN ID '5000' (0 to 4095)"),
    ("less 1x", 6, "bad length '1x'"),
    ("ip proto 256", 10, "bad protocol number '256' (0 to 255)"),
    ("ip proto foo", 10, "unknown protocol name 'foo'"),
    ("tcp & udp", 5, "expected 'and' or 'or' before '&'"),
    ("host 1.2.3.4 % 2", 14, "expected 'and' or 'or' before '%'"),
];

#[test]
fn libpcap_syntax_people_paste() {
    let syn = eth(MAC_B, MAC_A, &[], ETHERTYPE_IPV4, &{
        let mut l4 = l4(TCP, 1, 80);
        l4[13] = 0x02;
        ipv4(C, S, TCP, 0, &l4)
    });
    let g = |e: &str| Filter::compile(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert!(g("tcp[tcpflags] & tcp-syn != 0").matches(&syn));
    assert!(!g("tcp[tcpflags] & tcp-ack != 0").matches(&syn));
    assert!(g("portrange 90-80").matches(&syn));
    assert!(g("tcp port 0120").matches(&syn)); // octal 80
    assert!(g("port http").matches(&syn));
    assert!(!g("port http").matches(&udp4(1, 80)));
    assert!(g("ether proto \\ip and len >= 54").matches(&syn));
    let e = err("host example.com");
    assert_eq!(e.column, 6);
    assert!(e.message.contains("does not resolve"), "{}", e.message);
    assert_eq!(err("udp port http").message, "port 'http' is tcp");
    // libpcap: a tag moves what follows; without `vlan` no looking through.
    let tagged = v4(&[100], TCP, C, 1, S, 80);
    assert!(!g("tcp port 80").matches(&tagged));
    assert!(g("vlan 100 and tcp port 80").matches(&tagged));
    assert!(g("lenient: tcp port 80").matches(&tagged));
    // A load beyond the frame rejects it, even under `not`.
    assert!(!g("not tcp[100] = 1").matches(&syn));
}

#[test]
fn errors_point_at_the_offending_token() {
    for &(expr, column, message) in ERRORS {
        let e = err(expr);
        assert_eq!(
            (e.column, e.message.as_str()),
            (column, message),
            "{expr:?}\n{}",
            e.caret()
        );
        assert_eq!(e.expr, expr);
        assert_eq!(e.to_string(), format!("column {column}: {message}"));
        assert!(
            column >= 1 && column <= expr.chars().count() + 1,
            "{expr:?}"
        );
    }
}

#[test]
fn caret_draws_under_the_column() {
    let e = err("tcp and prot 6");
    assert_eq!(e.caret(), "  tcp and prot 6\n          ^");
    let e = err("tcp and");
    assert_eq!(e.caret(), "  tcp and\n         ^");
    // A tab counts as one column and is drawn as a space.
    let e = err("tcp\tudp");
    assert_eq!(e.column, 5);
    assert_eq!(e.caret(), "  tcp udp\n      ^");
}

/// The defects of issue 19, each against libpcap's behaviour (the default
/// mode); `tests/filter_tcpdump.rs` checks the same against tcpdump itself.
#[test]
fn libpcap_behaviour_for_the_defects_of_issue_19() {
    let g = |e: &str| Filter::compile(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    // Named ports check their protocol.
    assert!(!g("port ntp").matches(&tcp4(1, 123)));
    assert!(g("port ntp").matches(&udp4(1, 123)));
    assert!(!g("port http").matches(&v4(&[], SCTP, C, 1, S, 80)));
    assert!(g("port domain").matches(&v4(&[], SCTP, C, 1, S, 53)));
    // A tiny first fragment keeps its ports when the 4 port bytes are
    // there; a later fragment never matches ports.
    let tiny = eth(
        MAC_B,
        MAC_A,
        &[],
        ETHERTYPE_IPV4,
        &ipv4(C, S, TCP, 0x2000, &l4(TCP, 1, 80)[..4]),
    );
    assert!(g("tcp port 80").matches(&tiny));
    assert!(g("tcp").matches(&tiny));
    let later = eth(
        MAC_B,
        MAC_A,
        &[],
        ETHERTYPE_IPV4,
        &ipv4(C, S, TCP, 185, &l4(TCP, 1, 80)),
    );
    assert!(!g("tcp port 80").matches(&later));
    assert!(g("tcp and host 10.0.0.1").matches(&later));
    // `ip multicast` is destination >= 224.0.0.0.
    let bcast = v4(&[], UDP, C, 1, [255, 255, 255, 255], 2);
    assert!(g("ip multicast").matches(&bcast));
    assert!(g("ip broadcast").matches(&bcast));
    assert!(!g("ip broadcast").matches(&udp4(1, 2)));
    // IHL < 5 or a wrong version: libpcap's fixed offsets still apply.
    let mut ihl4 = udp4(1, 2);
    ihl4[14] = 0x44;
    assert!(g("ip and host 10.0.0.1").matches(&ihl4));
    let mut v6_in_v4 = udp4(1, 2);
    v6_in_v4[14] = 0x65;
    assert!(g("udp").matches(&v6_in_v4));
    // ARP that is not Ethernet/IPv4: the addresses at their fixed offsets.
    let mut arp_other = arp(C, S);
    arp_other[15] = 6; // hardware type 6
    assert!(g("arp host 10.0.0.1").matches(&arp_other));
    // A load beyond the frame rejects it.
    let whole = tcp4(1, 80);
    assert!(g("tcp port 80").matches(&whole));
    assert!(!g("tcp port 80").matches(&whole[..37]));
    assert!(!g("not tcp port 80").matches(&whole[..37]));
    // Refused before, accepted now.
    for e in [
        "tcp[tcpflags] & tcp-syn != 0",
        "igmp",
        "ip broadcast",
        "portrange 90-80",
        "ether proto \\ip",
        "ip6 multicast",
        "len > 100",
    ] {
        g(e);
    }
    // `021` is octal, as in libpcap.
    assert!(g("tcp port 021").matches(&tcp4(1, 17)));
    assert!(!g("tcp port 021").matches(&tcp4(1, 21)));
}
