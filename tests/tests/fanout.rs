//! Passive fan-out on a namespace lab: passive-1 feeds a three-member output
//! group (every frame reaches exactly one member, both directions of every
//! flow and every fragment of a datagram the same one, about a third of
//! 1,000 flows each) and a one-member group with a filter (exactly the
//! matching frames, byte for byte and in order), with the stats segment's
//! group and member counters equal to what was sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::lab_config;
use tapline_tests::passive::{
    collect, flow_frame, flows, fragments, output, outputs, sensor_sockets,
};
use tapline_tests::{open_raw, privileged, send_paced, start_dataplane, stop_ok, EXCHANGE_TIMEOUT};

const FLOWS: usize = 1000;
/// Every 20th flow is DNS (UDP port 53): what the filtered group takes.
const DNS_EVERY: usize = 20;
/// Datagrams sent as two IPv4 fragments each.
const FRAGMENTED: usize = 20;
const ZEEK: [&str; 3] = ["z0", "z1", "z2"];
const DNS: &str = "d0";
const LINGER: Duration = Duration::from_millis(300);

#[test]
fn a_three_member_group_splits_flows_symmetrically_and_a_filtered_group_gets_its_frames(
) -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let mut lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let mut members: Vec<&str> = ZEEK.to_vec();
    members.push(DNS);
    lab.add_sensors(&members)?;
    let extra = format!(
        "[[output_group]]\nname = \"zeek\"\nmembers = [\"z0\", \"z1\", \"z2\"]\n\n\
         [[output_group]]\nname = \"dns\"\nmembers = [\"{DNS}\"]\nfilter = \"udp port 53\"\n"
    );
    let dp = start_dataplane(&lab, &lab_config(Some(ifs::PASSIVE_1), None, "", &extra))?;

    // Both directions of every flow, then the fragments.
    let specs = flows(FLOWS, DNS_EVERY);
    let mut frames = Vec::new();
    let mut flow_of = HashMap::new();
    for (i, f) in specs.iter().enumerate() {
        for forward in [true, false] {
            let frame = flow_frame(f, forward, frames.len() as u32, 60 + (i % 9) * 150);
            flow_of.insert(frame.clone(), i);
            frames.push(frame);
        }
    }
    let mut datagram_of = HashMap::new();
    for d in 0..FRAGMENTED {
        // IPv4 flows without tags: flow 0, 2, 4... (every fifth is IPv6).
        let f = &specs[d * 10 + 2];
        for frag in fragments(f, 7000 + d as u16) {
            datagram_of.insert(frag.clone(), d);
            frames.push(frag);
        }
    }
    let is_dns = |i: usize| i.is_multiple_of(DNS_EVERY);
    let dns_expected: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| flow_of.get(*f).is_some_and(|&i| is_dns(i)))
        .cloned()
        .collect();

    let mut socks = sensor_sockets(&lab, &ZEEK)?;
    socks.extend(sensor_sockets(&lab, &[DNS])?);
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    send_paced(&tap, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    let got = collect(&socks, frames.len() + dns_expected.len(), LINGER)?;
    let segment = outputs(dp.state_dir())?;
    stop_ok(dp)?;

    // Every frame reached exactly one zeek member, unchanged.
    let mut member_of: HashMap<&Vec<u8>, usize> = HashMap::new();
    for (m, frames_m) in got[..3].iter().enumerate() {
        for f in frames_m {
            ensure!(
                member_of.insert(f, m).is_none(),
                "a frame reached two zeek members (or one twice)"
            );
        }
    }
    let missing = frames.iter().filter(|f| !member_of.contains_key(f)).count();
    ensure!(
        missing == 0,
        "{missing} of {} frames reached no zeek member (or arrived altered)",
        frames.len()
    );
    ensure!(member_of.len() == frames.len());

    // Both directions of a flow, all fragments of a datagram: one member.
    let mut flow_member: HashMap<usize, usize> = HashMap::new();
    let mut flows_per_member = [0usize; 3];
    for (f, &m) in &member_of {
        if let Some(&i) = flow_of.get(*f) {
            match flow_member.insert(i, m) {
                None => flows_per_member[m] += 1,
                Some(other) => ensure!(other == m, "flow {i} split over members {other} and {m}"),
            }
        }
    }
    let mut datagram_member: HashMap<usize, usize> = HashMap::new();
    for (f, &m) in &member_of {
        if let Some(&d) = datagram_of.get(*f) {
            if let Some(other) = datagram_member.insert(d, m) {
                ensure!(
                    other == m,
                    "datagram {d}'s fragments on members {other} and {m}"
                );
            }
        }
    }
    ensure!(datagram_member.len() == FRAGMENTED);
    // Roughly even: each member within 25% of a third of the flows.
    let third = FLOWS as f64 / 3.0;
    for (m, &n) in flows_per_member.iter().enumerate() {
        ensure!(
            (n as f64 - third).abs() <= 0.25 * third,
            "member z{m} got {n} of {FLOWS} flows: {flows_per_member:?}"
        );
    }
    eprintln!("flows per member: {flows_per_member:?}");

    // The filtered group: exactly the DNS frames, in order.
    ensure!(
        got[3] == dns_expected,
        "the dns group got {} frames, {} expected (or different bytes / order)",
        got[3].len(),
        dns_expected.len()
    );

    // Counters: the groups accepted / filtered what was sent; the members
    // delivered every accepted frame.
    let n = frames.len() as u64;
    let zeek = output(&segment, "zeek")?;
    ensure!(
        (zeek.packets, zeek.filtered_out) == (n, 0),
        "zeek group: {zeek:?}"
    );
    let dns = output(&segment, "dns")?;
    let nd = dns_expected.len() as u64;
    ensure!(
        (dns.packets, dns.filtered_out) == (nd, n - nd),
        "dns group: {dns:?}"
    );
    for (m, name) in ZEEK.iter().enumerate() {
        let o = output(&segment, name)?;
        ensure!(
            o.packets == got[m].len() as u64 && o.drops.iter().all(|&d| d == 0),
            "member {name}: {o:?}, {} received",
            got[m].len()
        );
    }
    Ok(())
}
