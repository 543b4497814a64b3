//! Differential test of the pcap-filter against tcpdump (libpcap).
//!
//! A generated corpus of Ethernet frames (untagged, 802.1Q, QinQ with
//! 0x88a8/0x8100/0x9100, three tags, IPv4 with options, IHL < 5 and a wrong
//! version, IPv4 fragments including tiny first fragments, IPv6 with
//! extension and fragment headers, ARP/RARP (Ethernet/IPv4 and other),
//! LLDP, 802.3/LLC, and every frame also cut short at several lengths) is
//! written to a pcap file, frame i with timestamp i + 1 s. For every
//! expression, `tcpdump -r corpus.pcap -tt -n EXPR` names the frames
//! libpcap selects; tapline's `Filter` must select exactly the same ones
//! whenever both accept the expression. Expressions: a hand-written list
//! (what operators paste, including the BPF examples of the Suricata,
//! Zeek, Arkime and tcpdump docs) and a seeded random combination of
//! primitives with a fixed budget.
//!
//! The lenient mode (`lenient:` prefix) is checked against its documented
//! model on the well-formed frames: a lenient filter sees a frame with up
//! to two VLAN tags as libpcap sees the same frame without its tags.
//!
//! tcpdump is required (`.ci/run` installs it); without it the test fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use tapline_packet::filter::Filter;

/// Random expressions tried (the fixed budget).
const RANDOM_EXPRESSIONS: usize = 400;
const SEED: u64 = 0x7a71_1e19;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const MACS: [[u8; 6]; 4] = [
    [0x02, 0, 0, 0, 0, 0x0a],
    [0x02, 0, 0, 0, 0, 0x0b],
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
];
const V4: [[u8; 4]; 9] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [192, 168, 1, 10],
    [172, 16, 5, 4],
    [8, 8, 8, 8],
    [224, 0, 0, 251],
    [239, 1, 2, 3],
    [255, 255, 255, 255],
    [0, 0, 0, 0],
];
const V6: [&str; 5] = [
    "2001:db8::1",
    "2001:db8::2",
    "fe80::1",
    "ff02::1",
    "2001:db8:0:1::5",
];
const PORTS: [u16; 14] = [
    80, 443, 22, 53, 123, 8080, 67, 68, 161, 25, 0, 1024, 65535, 5060,
];

/// A corpus frame and whether the lenient model applies to it.
struct Frame {
    bytes: Vec<u8>,
    /// Well-formed, at most two tags, no IPv6 extension headers, not a
    /// fragment: the lenient mode sees it as libpcap sees it untagged.
    well_formed: bool,
    /// The same frame without VLAN tags (for the lenient model).
    untagged: Vec<u8>,
    /// Not cut short and not garbage: holds the fields the expressions
    /// read (where libpcap's optimizer cannot change the outcome).
    whole: bool,
}

fn eth(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn l4(proto: u8, sport: u16, dport: u16, flags: u8, icmp_type: u8) -> Vec<u8> {
    let len = match proto {
        6 => 20,
        132 => 12,
        _ => 8,
    };
    let mut h = vec![0u8; len + 6];
    match proto {
        6 | 17 | 132 => {
            h[..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            if proto == 6 {
                h[12] = 0x50;
                h[13] = flags;
            }
        }
        _ => {
            h[0] = icmp_type;
            h[1] = flags & 3;
        }
    }
    h
}

fn ipv4(ihl_ver: u8, src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, body: &[u8]) -> Vec<u8> {
    let opts = usize::from(ihl_ver & 0x0f).saturating_sub(5) * 4;
    let total = u16::try_from(20 + opts + body.len()).unwrap();
    let mut h = vec![ihl_ver, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(1u8, opts));
    h.extend_from_slice(body);
    h
}

fn ipv6(ver: u8, src: &str, dst: &str, next: u8, body: &[u8]) -> Vec<u8> {
    let s: std::net::Ipv6Addr = src.parse().unwrap();
    let d: std::net::Ipv6Addr = dst.parse().unwrap();
    let mut h = vec![ver << 4, 0, 0, 0];
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    h.extend_from_slice(body);
    h
}

fn arp(htype: u16, ptype: u16, op: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = htype.to_be_bytes().to_vec();
    a.extend_from_slice(&ptype.to_be_bytes());
    a.extend_from_slice(&[6, 4]);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&MACS[0]);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    a
}

fn corpus() -> Vec<Frame> {
    let mut rng = Rng(SEED);
    let tag_sets: Vec<Vec<(u16, u16)>> = vec![
        vec![],
        vec![(0x8100, 100)],
        vec![(0x8100, 0xa000 | 200)],
        vec![(0x88a8, 10), (0x8100, 20)],
        vec![(0x9100, 30), (0x8100, 100)],
        vec![(0x8100, 100), (0x8100, 200)],
        vec![(0x88a8, 10), (0x8100, 20), (0x8100, 30)],
        vec![(0x9100, 4095)],
    ];
    let mut frames = Vec::new();
    let push =
        |frames: &mut Vec<Frame>, tags: &[(u16, u16)], dst, src, et, payload: &[u8], ok: bool| {
            let bytes = eth(dst, src, tags, et, payload);
            let untagged = eth(dst, src, &[], et, payload);
            let ok = ok && tags.len() <= 2;
            frames.push(Frame {
                bytes,
                well_formed: ok,
                untagged,
                whole: true,
            });
        };
    for tags in &tag_sets {
        for _ in 0..40 {
            let dst = *rng.pick(&MACS[..]);
            let src = MACS[rng.below(2)];
            let kind = rng.below(22);
            let (s4, d4) = (*rng.pick(&V4[..5]), *rng.pick(&V4[..]));
            let (sp, dp) = (*rng.pick(&PORTS[..]), *rng.pick(&PORTS[..]));
            let flags = [0x02u8, 0x12, 0x10, 0x11, 0x04, 0x18, 0xc2][rng.below(7)];
            let proto = [6u8, 17, 132, 1, 2, 47, 50, 51, 103, 112][rng.below(10)];
            let icmp_type = [0u8, 3, 8, 11][rng.below(4)];
            let body = l4(proto, sp, dp, flags, icmp_type);
            let (s6, d6) = (*rng.pick(&V6[..3]), *rng.pick(&V6[..]));
            match kind {
                0..=6 => {
                    let ip = ipv4(0x45, s4, d4, proto, 0x4000, &body);
                    push(&mut frames, tags, dst, src, 0x0800, &ip, true);
                }
                7 => {
                    // Options (IHL 6..15).
                    let ihl = 0x46 + (rng.below(10) as u8);
                    let ip = ipv4(ihl, s4, d4, proto, 0, &body);
                    push(&mut frames, tags, dst, src, 0x0800, &ip, true);
                }
                8 => {
                    // IHL < 5, or a wrong version.
                    let hv = [0x44u8, 0x40, 0x41, 0x65, 0x35][rng.below(5)];
                    let ip = ipv4(hv, s4, d4, proto, 0, &body);
                    push(&mut frames, tags, dst, src, 0x0800, &ip, false);
                }
                9 => {
                    // Fragments: first with MF (whole, tiny), later ones.
                    let which = rng.below(4);
                    let (frag, cut) = match which {
                        0 => (0x2000, body.len()),
                        1 => (0x2000, [2usize, 4, 8][rng.below(3)]),
                        2 => (0x2000 | 185, body.len()),
                        _ => (185, 8),
                    };
                    let ip = ipv4(0x45, s4, d4, proto, frag, &body[..cut.min(body.len())]);
                    push(&mut frames, tags, dst, src, 0x0800, &ip, false);
                }
                10..=13 => {
                    let p6 = [6u8, 17, 58, 132][rng.below(4)];
                    let b = l4(p6, sp, dp, flags, [128u8, 129, 135, 1][rng.below(4)]);
                    let ip = ipv6(6, s6, d6, p6, &b);
                    push(&mut frames, tags, dst, src, 0x86dd, &ip, true);
                }
                14 | 15 => {
                    // Extension headers: hop-by-hop, routing, dest opts,
                    // fragment (first or later).
                    let p6 = [6u8, 17, 58][rng.below(3)];
                    let b = l4(p6, sp, dp, flags, 128);
                    let ext = [0u8, 43, 60, 44, 44][rng.below(5)];
                    let mut payload = vec![p6, 0, 0, 0, 0, 0, 0, 0];
                    if ext == 44 && rng.below(2) == 0 {
                        payload[3] = 0x08; // offset 1: a later fragment
                    }
                    payload.extend_from_slice(&b);
                    let ip = ipv6(6, s6, d6, ext, &payload);
                    push(&mut frames, tags, dst, src, 0x86dd, &ip, false);
                }
                16 => {
                    let ip = ipv6(4, s6, d6, 6, &body);
                    push(&mut frames, tags, dst, src, 0x86dd, &ip, false);
                }
                17 => {
                    let good = rng.below(3) != 0;
                    let (ht, pt) = if good { (1, 0x0800) } else { (6, 0x86dd) };
                    let a = arp(ht, pt, 1 + rng.below(2) as u16, s4, d4);
                    push(&mut frames, tags, dst, src, 0x0806, &a, good);
                }
                18 => {
                    let a = arp(1, 0x0800, 3, s4, d4);
                    push(&mut frames, tags, dst, src, 0x8035, &a, true);
                }
                19 => {
                    // LLDP to its multicast group.
                    let lldp = [0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x0a, 0, 0];
                    let d = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
                    push(&mut frames, tags, d, src, 0x88cc, &lldp, true);
                }
                20 => {
                    // 802.3 + LLC (STP, SNAP, IPX-like): length field.
                    let llc: Vec<u8> = match rng.below(4) {
                        0 => vec![0x42, 0x42, 0x03, 0, 0, 0, 0, 0],
                        1 => vec![0xaa, 0xaa, 0x03, 0x08, 0x00, 0x07, 0x80, 0x9b, 1, 2],
                        2 => vec![0xe0, 0xe0, 0x03, 0xff, 0xff, 0, 0],
                        _ => vec![0x06, 0x06, 0x03, 0x45, 0, 0],
                    };
                    let len = u16::try_from(llc.len()).unwrap();
                    push(&mut frames, tags, dst, src, len, &llc, true);
                }
                _ => {
                    // Garbage after an IP ethertype, or an odd ethertype.
                    let et = [0x0800u16, 0x86dd, 0x9000, 0x88e5, 0x0806][rng.below(5)];
                    let junk: Vec<u8> = (0..rng.below(60)).map(|_| rng.next() as u8).collect();
                    push(&mut frames, tags, dst, src, et, &junk, false);
                    frames.last_mut().expect("pushed").whole = false;
                }
            }
        }
    }
    // Every frame also cut short: at fixed places that matter (inside the
    // Ethernet header, the tags, the IPv4 header, the ports) and at random.
    let whole = frames.len();
    for i in 0..whole {
        let len = frames[i].bytes.len();
        let mut cuts = vec![1 + rng.below(len.max(2) - 1)];
        if i % 3 == 0 {
            cuts.extend([1usize, 6, 13, 14, 16, 18, 23, 30, 34, 36, 38, 54, 56]);
        }
        for cut in cuts {
            if cut < len {
                let bytes = frames[i].bytes[..cut].to_vec();
                frames.push(Frame {
                    untagged: bytes.clone(),
                    bytes,
                    well_formed: false,
                    whole: false,
                });
            }
        }
    }
    frames
}

fn write_pcap(path: &std::path::Path, frames: &[Frame]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // DLT_EN10MB
    for (i, f) in frames.iter().enumerate() {
        let n = u32::try_from(f.bytes.len()).unwrap();
        out.extend_from_slice(&(u32::try_from(i).unwrap() + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&f.bytes);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .expect("writes the corpus");
}

/// The frames tcpdump selects, or `None` when it refuses the expression.
fn tcpdump(pcap: &std::path::Path, expr: &str, optimize: bool) -> Option<BTreeSet<usize>> {
    let mut cmd = Command::new("tcpdump");
    if !optimize {
        cmd.arg("-O");
    }
    let out = cmd
        .args(["-r"])
        .arg(pcap)
        .args(["-tt", "-n", "-q", "--", expr])
        .output()
        .expect("tcpdump runs (install it: apt-get install tcpdump)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.split('.').next()?.trim().parse::<usize>().ok())
            .map(|s| s - 1)
            .collect(),
    )
}

fn ours(filter: &Filter, frames: &[Frame]) -> BTreeSet<usize> {
    (0..frames.len())
        .filter(|&i| filter.matches(&frames[i].bytes))
        .collect()
}

const HAND_WRITTEN: &[&str] = &[
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "sctp",
    "icmp",
    "icmp6",
    "igmp",
    "igrp",
    "pim",
    "vrrp",
    "carp",
    "ah",
    "esp",
    "vlan",
    "vlan 100",
    "vlan 200",
    "vlan 10",
    "vlan 20",
    "vlan 4095",
    "vlan and ip",
    "vlan and vlan",
    "vlan and vlan and ip",
    "vlan 10 and vlan 20",
    "vlan 10 and vlan 20 and tcp",
    "vlan 100 and tcp port 80",
    "vlan and tcp port 80",
    "tcp port 80 or vlan",
    "vlan or ip",
    "not vlan",
    "vlan and not ip",
    "vlan 30 and vlan 100 and udp",
    "vlan and vlan and vlan and ip",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "host 10.0.0.1 and host 8.8.8.8",
    "src and dst host 10.0.0.1",
    "src or dst host 192.168.1.10",
    "ip host 10.0.0.1",
    "arp host 10.0.0.1",
    "rarp host 10.0.0.2",
    "host 10",
    "host 10.0",
    "net 10",
    "net 10.0",
    "net 10.0.0.0/8",
    "net 192.168.0.0/16",
    "net 172.16.0.0 mask 255.240.0.0",
    "net 0.0.0.0/0",
    "dst net 224.0.0.0/4",
    "host 2001:db8::1",
    "ip6 host 2001:db8::2",
    "net 2001:db8::/32",
    "src net fe80::/10",
    "dst host ff02::1",
    "net ::/0",
    "ether host 02:00:00:00:00:0a",
    "ether src 02:00:00:00:00:0b",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "broadcast",
    "ether multicast",
    "multicast",
    "ip multicast",
    "ip broadcast",
    "ip6 multicast",
    "not ip multicast",
    "port 80",
    "tcp port 80",
    "udp port 53",
    "sctp port 80",
    "port 53",
    "src port 443",
    "dst port 22",
    "tcp dst port 80",
    "port 80 or 443",
    "tcp port 80 or 443 or 22",
    "port 0",
    "port 65535",
    "tcp port 021",
    "port 0x50",
    "portrange 20-25",
    "portrange 90-80",
    "tcp portrange 1-1024",
    "udp portrange 60-70",
    "src portrange 1000-2000",
    "port http",
    "port https",
    "port domain",
    "port ntp",
    "port ssh",
    "tcp port http",
    "udp port domain",
    "port bootps or port bootpc",
    "not port 22",
    "proto 6",
    "ip proto 17",
    "ip6 proto 6",
    "ip6 proto 44",
    "ip6 proto 0",
    "ip6 proto 60",
    "proto \\tcp",
    "ip proto \\udp",
    "proto 47",
    "ip proto 50",
    "ether proto 0x0800",
    "ether proto \\ip",
    "ether proto \\arp",
    "ether proto 0x88cc",
    "ether proto 0x86dd",
    "ether proto 0x9100",
    "ether proto 0x8100",
    "ether proto 66",
    "ether proto 6",
    "ether proto 0x809b",
    "ether proto 224",
    "less 60",
    "greater 100",
    "less 14",
    "len > 70",
    "len <= 64",
    "len = 60",
    "len != 54",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and not src and dst net 10.0.0.0/8",
    "tcp[13] & 2 != 0",
    "tcp[13] = 18",
    "tcp[tcpflags] == tcp-rst",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp[0] = 3",
    "icmp6[icmp6type] = icmp6-echo",
    "icmp6[0] == 135",
    "ip[0] & 0xf != 5",
    "ip[0] & 0xf > 5",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    "ip[2:2] > 40",
    "ip[9] = 6",
    "ip[8] < 65",
    "ip[16] >= 224",
    "ip[12:4] = 0x0a000001",
    "ip6[6] = 58",
    "ip6[40] = 128",
    "ether[0] & 1 = 1",
    "ether[12:2] = 0x8100",
    "ether[14:2] & 0x0fff = 100",
    "arp[6:2] = 2",
    "arp[7] = 1",
    "udp[8:2] = 0",
    "udp[0:2] = 53 or udp[2:2] = 53",
    "tcp[0:2] > 1023 and tcp[2:2] > 1023",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "(tcp[12] >> 4) * 4 = 20",
    "tcp[12] >> 4 > 5",
    "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0",
    "ip[1] & 0xfc = 0xb8",
    "ip[0] >> 4 = 4",
    "ip[0] >> 4 != 4",
    "len = 2 ^ 3 + 54",
    "len % 7 = 1",
    "ip[3] % 4 = 0",
    "ether[1] ^ ether[7] = 0",
    "ether[0] + ether[1] > 10",
    "ip[2:2] / 2 > 30",
    "-ip[8] < 0",
    "ip[ip[0] & 0xf] = 0",
    "ether[100] = 0",
    "ether[59] = 0 or ip",
    "ip or ether[200] = 1",
    "not ether[70] = 1",
    "ether[0:4] = 0x02000000",
    "tcp[100:4] = 0",
    "ip and not net 10.0.0.0/8",
    "not arp and not (port 22 or port 53)",
    "(tcp or udp) and not port 53",
    "host 10.0.0.1 and (port 80 or port 443)",
    "tcp and not tcp port 80",
    "udp or icmp",
    "ip6 and tcp",
    "ip6 and not icmp6",
    "not ip and not ip6",
    "tcp or udp or sctp",
    "icmp or icmp6",
    "ip and udp and port 123",
    "(vlan and ip) or ip",
    "ip or (vlan and ip)",
    "(tcp port 80 or vlan) and ip",
    "src net 10.0.0.0/8 and dst net 10.0.0.0/8",
    "not (host 10.0.0.1 or host 10.0.0.2) and tcp",
    "tcp and (tcp[tcpflags] & tcp-push != 0)",
    "ip[6:2] & 0x3fff != 0",
    "ip[6:2] & 0x3fff = 0x2000",
    "udp and dst port 53 and ip[8] < 64",
    "tcp dst portrange 8000-8080 or udp dst portrange 5000-5100",
    "ip host 224.0.0.251",
    "host 255.255.255.255",
    "host 0.0.0.0",
    // From the tcpdump, Zeek, Suricata and Arkime documentation (those
    // without host names).
    "tcp port 80 and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",
    "ether[0] & 1 = 0 and ip[16] >= 224",
    "ip[2:2] > 576",
    "(tcp[13] & 7 != 0) or (ip[6:2] & 0x3fff != 0)",
    "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0",
    "not port 9200",
    "not (host 192.168.1.10 and port 80)",
    "tcp[13] & 8!=0",
    "tcp[13] = 6",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x504f5354",
    "udp port 53 and udp[10] & 0x80 = 0",
    "vlan and (host 10.0.0.1 or host 10.0.0.2)",
    "ip6[6] == 17 and ip6[42:2] == 53",
    "icmp6 and ip6[40] == 135",
    "ether[14] == 0x42",
    "tcp[0:2] == 22 or tcp[2:2] == 22",
    "len >= 100 and len <= 200",
    "ip and ip[8] < 5",
    "ip6 and ip6[6] = 0",
    "(vlan 100 or vlan 200) and ip",
    "vlan 100 or vlan 200",
    "not vlan 100 and ip",
    "ether src 2:0:0:0:0:b",
    "ether host 0200.0000.000a",
    "ether dst 01-00-5e-00-00-01",
    "arp or rarp or (ether proto 0x88cc)",
    "ip proto \\icmp or ip6 proto \\icmp6",
    "dst portrange 0-1023 and tcp",
    "src port 0x1bb",
    "port 020",
];

/// Building blocks of the random expressions.
const PRIMS: &[&str] = &[
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "vlan",
    "vlan 100",
    "vlan 20",
    "host 10.0.0.1",
    "src host 10.0.0.2",
    "dst host 8.8.8.8",
    "net 10.0.0.0/8",
    "net 192.168",
    "host 2001:db8::1",
    "net fe80::/10",
    "dst host ff02::1",
    "port 80",
    "port 53",
    "tcp port 443",
    "udp port 123",
    "src port 22",
    "dst port 67",
    "portrange 60-90",
    "tcp portrange 1000-65535",
    "port http",
    "port domain",
    "ip proto 47",
    "proto 17",
    "ip6 proto 58",
    "ether proto 0x88cc",
    "ether broadcast",
    "ether multicast",
    "ip multicast",
    "ip broadcast",
    "ip6 multicast",
    "ether host 02:00:00:00:00:0a",
    "less 60",
    "greater 80",
    "len > 64",
    "tcp[tcpflags] & tcp-syn != 0",
    "ip[6:2] & 0x1fff != 0",
    "icmp[icmptype] = icmp-echo",
    "udp[2:2] = 53",
    "ether[12:2] = 0x8100",
    "ip[9] = 6",
    "tcp[2:2] < 1024",
    "ip6[6] = 44",
    "arp[7] = 2",
    "ip[0] & 0xf > 5",
];

fn random_expr(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 || rng.below(3) == 0 {
        let p = (*rng.pick(PRIMS)).to_string();
        return if rng.below(5) == 0 {
            format!("not {p}")
        } else {
            p
        };
    }
    let a = random_expr(rng, depth - 1);
    let b = random_expr(rng, depth - 1);
    let op = if rng.below(2) == 0 { "and" } else { "or" };
    match rng.below(4) {
        0 => format!("({a}) {op} ({b})"),
        1 => format!("not ({a} {op} {b})"),
        _ => format!("{a} {op} {b}"),
    }
}

fn have_tcpdump() {
    let ok = Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tcpdump is needed for this test (apt-get install tcpdump)"
    );
}

#[test]
fn filter_selects_the_same_frames_as_tcpdump() {
    have_tcpdump();
    let frames = corpus();
    let dir = std::env::temp_dir().join(format!("tapline-filter-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("corpus.pcap");
    write_pcap(&pcap, &frames);

    let mut rng = Rng(SEED ^ 0x5eed);
    let mut exprs: Vec<String> = HAND_WRITTEN.iter().map(|s| s.to_string()).collect();
    let hand = exprs.len();
    for _ in 0..RANDOM_EXPRESSIONS {
        exprs.push(random_expr(&mut rng, 3));
    }

    let (mut both, mut agree, mut only_tcpdump, mut only_us) = (0, 0, Vec::new(), Vec::new());
    let mut failures = Vec::new();
    for e in &exprs {
        let theirs = tcpdump(&pcap, e, false);
        let mine = Filter::compile(e);
        match (theirs, mine) {
            (Some(t), Ok(f)) => {
                both += 1;
                let m = ours(&f, &frames);
                // The optimizer drops loads whose outcome it can prove
                // (a mask of 0, a test that cannot change the result): on
                // frames shorter than such a load, optimized tcpdump
                // accepts where the program as written rejects. On whole
                // frames the two are the same.
                // (The optimizer refuses expressions that reject every
                // packet: nothing to compare then.)
                let opt = tcpdump(&pcap, e, true).unwrap_or_default();
                let whole_agree = (0..frames.len())
                    .filter(|&i| frames[i].whole)
                    .all(|i| m.contains(&i) == opt.contains(&i));
                if !whole_agree {
                    let diff: Vec<_> = (0..frames.len())
                        .filter(|&i| frames[i].whole && m.contains(&i) != opt.contains(&i))
                        .take(5)
                        .collect();
                    failures.push(format!(
                        "{e:?}: differs from optimized tcpdump on whole frames {diff:?}"
                    ));
                }
                if m == t && whole_agree {
                    agree += 1;
                } else if m != t {
                    let extra: Vec<_> = m.difference(&t).take(5).collect();
                    let missing: Vec<_> = t.difference(&m).take(5).collect();
                    failures.push(format!(
                        "{e:?}: tapline {} frames, tcpdump {}; only tapline {extra:?}, only \
                         tcpdump {missing:?}",
                        m.len(),
                        t.len()
                    ));
                }
            }
            (Some(_), Err(err)) => only_tcpdump.push(format!("{e:?}: {err}")),
            (None, Ok(_)) => only_us.push(e.clone()),
            (None, Err(_)) => {}
        }
    }
    eprintln!(
        "{} frames ({} whole, compared with optimized tcpdump too); {} expressions ({hand} hand-written, {RANDOM_EXPRESSIONS} random); \
         accepted by both {both}; agreeing {agree}; refused by tapline only {}; by tcpdump \
         only {}",
        frames.len(),
        frames.iter().filter(|f| f.whole).count(),
        exprs.len(),
        only_tcpdump.len(),
        only_us.len()
    );
    for r in &only_tcpdump {
        eprintln!("refused by tapline, accepted by tcpdump: {r}");
    }
    for r in &only_us {
        eprintln!("accepted by tapline, refused by tcpdump: {r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {both} expressions disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(both >= 500, "only {both} expressions accepted by both");
    assert!(
        only_tcpdump.is_empty(),
        "expressions tcpdump accepts and tapline refuses"
    );
}

/// The lenient mode's documented model: on well-formed frames with up to
/// two tags, a `lenient:` filter selects a frame when libpcap (tapline's
/// default mode, proven equal to tcpdump above) selects the same frame
/// without its tags. Expressions that read the link layer itself (`vlan`,
/// `ether[...]`, lengths) are left out: the model is about what is after
/// the tags.
#[test]
fn lenient_mode_sees_tagged_frames_as_untagged() {
    let frames = corpus();
    let mut rng = Rng(SEED ^ 0x1e41);
    let mut exprs: Vec<String> = HAND_WRITTEN.iter().map(|s| s.to_string()).collect();
    for _ in 0..RANDOM_EXPRESSIONS {
        exprs.push(random_expr(&mut rng, 3));
    }
    let link_level = [
        "vlan",
        "ether[",
        "len",
        "less",
        "greater",
        "ether proto 0x8100",
    ];
    let (mut tested, mut tagged_frames) = (0, 0);
    for e in exprs
        .iter()
        .filter(|e| !link_level.iter().any(|k| e.contains(k)))
    {
        let (Ok(lenient), Ok(libpcap)) = (
            Filter::compile(&format!("lenient: {e}")),
            Filter::compile(e),
        ) else {
            continue;
        };
        tested += 1;
        for (i, f) in frames.iter().enumerate().filter(|(_, f)| f.well_formed) {
            tagged_frames += usize::from(f.bytes.len() != f.untagged.len());
            assert_eq!(
                lenient.matches(&f.bytes),
                libpcap.matches(&f.untagged),
                "lenient {e:?} on frame {i}"
            );
        }
    }
    eprintln!("lenient model: {tested} expressions over the well-formed frames");
    assert!(tested >= 200 && tagged_frames > 0);
}
