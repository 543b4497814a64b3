//! Microbenchmark of the pcap-filter: nanoseconds per frame of
//! `Filter::matches_packet` (the frame already parsed, as the workers do)
//! and of `Packet::parse` + `matches_packet` together, for a set of typical
//! filters over a fixed mix of frames (IPv4 and IPv6 TCP/UDP, 802.1Q and
//! QinQ tagged, ARP, ICMP). No I/O: one thread, the frames in memory.
//!
//! Each filter is timed over `frames` frames per repetition (the mix
//! repeated), `reps` times; the median is reported. A filter that does not
//! compile is reported as refused, so the same binary measures any version
//! of the filter.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use tapline_packet::filter::Filter;
use tapline_packet::packet::Packet;

/// The filters measured: what operators typically configure.
pub const FILTERS: &[&str] = &[
    "",
    "tcp port 80",
    "udp and dst port 53",
    "host 10.0.0.1",
    "net 10.0.0.0/8 and not port 22",
    "ip6 and tcp",
    "vlan 100 and tcp port 443",
    "not arp and not (port 22 or port 53)",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "lenient: tcp port 80",
    "lenient: host 10.0.0.1",
];

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn eth(vlans: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(0x0b));
    f.extend_from_slice(&mac(0x0a));
    for &(tpid, id) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

fn l4(proto: u8, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; if proto == 6 { 20 } else { 8 }];
    h[..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        h[12] = 0x50;
        h[13] = flags;
    } else if proto == 1 {
        h[0] = 8;
        h[1] = 0;
    }
    h
}

fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

fn v6(next: u8, last_src: u8, last_dst: u8, l4: &[u8]) -> Vec<u8> {
    let len = u16::try_from(l4.len()).unwrap_or(u16::MAX);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[15] = last_src;
    h.extend_from_slice(&a);
    a[15] = last_dst;
    h.extend_from_slice(&a);
    h.extend_from_slice(l4);
    h
}

/// The frame mix (16 frames).
pub fn frames() -> Vec<Vec<u8>> {
    let q = |id| (0x8100u16, id);
    let ad = |id| (0x88a8u16, id);
    vec![
        eth(
            &[],
            0x0800,
            &v4(6, [10, 0, 0, 1], [10, 0, 0, 2], &l4(6, 40000, 80, 0x10)),
        ),
        eth(
            &[],
            0x0800,
            &v4(6, [10, 0, 0, 2], [10, 0, 0, 1], &l4(6, 80, 40000, 0x12)),
        ),
        eth(
            &[],
            0x0800,
            &v4(17, [10, 1, 0, 1], [8, 8, 8, 8], &l4(17, 5353, 53, 0)),
        ),
        eth(
            &[],
            0x0800,
            &v4(6, [192, 168, 1, 5], [10, 0, 0, 9], &l4(6, 50000, 22, 0x18)),
        ),
        eth(
            &[],
            0x0800,
            &v4(6, [172, 16, 0, 1], [172, 16, 0, 2], &l4(6, 1234, 443, 0x02)),
        ),
        eth(
            &[],
            0x0800,
            &v4(1, [10, 0, 0, 1], [10, 0, 0, 3], &l4(1, 0, 0, 0)),
        ),
        eth(&[], 0x86dd, &v6(6, 1, 2, &l4(6, 40000, 443, 0x10))),
        eth(&[], 0x86dd, &v6(17, 3, 4, &l4(17, 40000, 53, 0))),
        eth(
            &[q(100)],
            0x0800,
            &v4(6, [10, 0, 0, 1], [10, 0, 0, 5], &l4(6, 1, 443, 0x10)),
        ),
        eth(
            &[q(100)],
            0x0800,
            &v4(17, [10, 0, 0, 7], [10, 0, 0, 8], &l4(17, 9, 53, 0)),
        ),
        eth(
            &[ad(10), q(20)],
            0x0800,
            &v4(6, [10, 2, 0, 1], [10, 2, 0, 2], &l4(6, 5, 80, 0x11)),
        ),
        eth(&[q(200)], 0x86dd, &v6(6, 5, 6, &l4(6, 40000, 80, 0x10))),
        eth(
            &[],
            0x0806,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xa, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0,
                0, 2,
            ],
        ),
        eth(
            &[],
            0x0800,
            &v4(6, [10, 0, 0, 1], [1, 1, 1, 1], &l4(6, 40001, 8080, 0x10)),
        ),
        eth(
            &[],
            0x0800,
            &v4(17, [10, 9, 0, 1], [10, 9, 0, 2], &l4(17, 123, 123, 0)),
        ),
        eth(&[], 0x86dd, &v6(58, 7, 8, &[128, 0, 0, 0, 0, 0, 0, 0])),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterCost {
    pub filter: String,
    /// Frames of the mix the filter selects (`None`: refused).
    pub selected: Option<usize>,
    /// Median ns per frame of `matches_packet` alone.
    pub match_ns: Option<f64>,
    /// Median ns per frame of `Packet::parse` + `matches_packet`.
    pub parse_match_ns: Option<f64>,
    /// Why the filter was refused.
    pub error: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times every filter of [`FILTERS`].
pub fn run(frames_per_rep: u64, reps: u32) -> Result<Vec<FilterCost>> {
    let mix = frames();
    let parsed: Vec<Packet<'_>> = mix.iter().map(|f| Packet::parse(f)).collect();
    let rounds = (frames_per_rep / mix.len() as u64).max(1);
    let n = (rounds * mix.len() as u64) as f64;
    let mut out = Vec::new();
    for &expr in FILTERS {
        let f = match Filter::compile(expr) {
            Ok(f) => f,
            Err(e) => {
                out.push(FilterCost {
                    filter: expr.into(),
                    selected: None,
                    match_ns: None,
                    parse_match_ns: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let selected = parsed.iter().filter(|p| f.matches_packet(p)).count();
        let mut m = Vec::new();
        let mut pm = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let mut hits = 0u64;
            for _ in 0..rounds {
                for p in &parsed {
                    hits += u64::from(f.matches_packet(black_box(p)));
                }
            }
            black_box(hits);
            m.push(t.elapsed().as_secs_f64() * 1e9 / n);
            let t = Instant::now();
            let mut hits = 0u64;
            for _ in 0..rounds {
                for frame in &mix {
                    let p = Packet::parse(black_box(frame));
                    hits += u64::from(f.matches_packet(&p));
                }
            }
            black_box(hits);
            pm.push(t.elapsed().as_secs_f64() * 1e9 / n);
        }
        out.push(FilterCost {
            filter: expr.into(),
            selected: Some(selected),
            match_ns: Some(median(m)),
            parse_match_ns: Some(median(pm)),
            error: None,
        });
    }
    Ok(out)
}

/// The result as a Markdown table.
pub fn markdown(r: &[FilterCost]) -> String {
    let mut s = String::from(
        "| filter | frames selected of 16 | ns/frame match | ns/frame parse + match |\n\
         |---|---|---|---|\n",
    );
    for c in r {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let sel = match (&c.selected, &c.error) {
            (Some(n), _) => n.to_string(),
            (None, Some(e)) => format!("refused ({e})"),
            (None, None) => "-".into(),
        };
        let name = if c.filter.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{}`", c.filter.replace('|', "\\|"))
        };
        s.push_str(&format!(
            "| {name} | {sel} | {} | {} |\n",
            f(c.match_ns),
            f(c.parse_match_ns)
        ));
    }
    s
}
