//! The wire fuzzer: seeded random and malformed frames into the live inline
//! bridge and the live chain, both ways.
//!
//! Frames: every ethertype (the bridge phase sends all 65,536 once),
//! lengths from a bare Ethernet header (14 bytes, a runt) to the MTU (1,514
//! bytes), stacks of up to three 802.1Q/802.1ad/0x9100 tags, broadcast,
//! multicast and unicast destinations, IPv4/IPv6/ARP headers filled with
//! garbage, and heartbeat look-alikes (the heartbeat ethertype with random
//! contents, and well-formed heartbeats under a wrong key, for live hop
//! ids).
//!
//! Invariants: the dataplane does not crash (it stops cleanly at the end);
//! every frame arrives byte-exact and once, or is one the design drops and
//! counts by reason (a heartbeat-shaped frame from the wire is dropped when
//! the chain has hops, counted as `heartbeat_from_wire` on the port it came
//! in on, and nothing else is dropped); the hops stay UP without a single
//! transition.
//!
//! `TAPLINE_FUZZ_SEED` (default 13) seeds the run and
//! `TAPLINE_FUZZ_WIRE_FRAMES` (default [`DEFAULT_FRAMES`]) sets the random
//! frames per direction and phase.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario, ToolKind};
use tapline_dataplane::chain::heartbeat::{self, Beat, Dir, TagKey};
use tapline_dataplane::xdp::RawSocket;
use tapline_proto::v1 as pb;
use tapline_segment::DropReason;
use tapline_tests::api::Rng;
use tapline_tests::chain::{
    chain_config, chain_spec, hop_name, port_drops, stats, wait_hops_up, Control, UP_TIMEOUT,
};
use tapline_tests::{open_raw, privileged, start_dataplane, stop_ok};

/// Random frames per direction and phase in a CI run.
const DEFAULT_FRAMES: u64 = 8000;
/// Frames in flight (sent, expected, not yet received) at most.
const WINDOW: usize = 128;
/// Nothing arrived for this long: the rest is lost.
const STALL: Duration = Duration::from_secs(3);
/// After the last expected frame, how long extras (duplicates) may come.
const LINGER: Duration = Duration::from_millis(200);
const ETH_HEADER: usize = 14;
const MAX_FRAME: usize = 1514;
/// 802.1Q, 802.1ad and the old QinQ TPID. Outer S-tags cross the chain's
/// tools only because the lab turns their S-tag offloads off (without
/// that, a tool strips them: this fuzzer showed it).
const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// What a phase may send: the chain's tools are Linux bridges, which drop
/// what no wire drops (IEEE link-local group destinations they may not
/// forward, invalid source addresses), so the chain phase keeps to frames
/// a wire carries; the bridge phase sends anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Bridge,
    Chain,
}

fn mac(r: &mut Rng, phase: Phase, src: bool) -> [u8; 6] {
    let mut m: [u8; 6] = r.bytes(6).try_into().expect("6 bytes");
    if src {
        // A valid source: unicast, locally administered, not zero.
        m[0] = (m[0] & 0xfc) | 0x02;
        if phase == Phase::Bridge && r.chance(20) {
            m = if r.chance(2) { [0; 6] } else { [0xff; 6] };
        }
        return m;
    }
    match r.below(8) {
        0 => [0xff; 6],
        1 => [0x01, 0x00, 0x5e, m[3] & 0x7f, m[4], m[5]],
        2 => [0x33, 0x33, m[2], m[3], m[4], m[5]],
        3 if phase == Phase::Bridge => [0x01, 0x80, 0xc2, 0, 0, m[5] & 0x0f],
        4 => heartbeat::DST_MAC,
        _ => {
            m[0] &= 0xfe;
            m
        }
    }
}

/// One random frame; `ethertype` forces the outermost type after the tags.
fn frame(r: &mut Rng, phase: Phase, ethertype: Option<u16>) -> Vec<u8> {
    let mut f = Vec::with_capacity(MAX_FRAME);
    f.extend_from_slice(&mac(r, phase, false));
    f.extend_from_slice(&mac(r, phase, true));
    let tags = match r.below(8) {
        0..=4 => 0,
        5 | 6 => 1,
        _ => 2 + r.below(2),
    };
    for _ in 0..tags {
        let tpid = *r.pick(&TPIDS);
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(r.next_u64() as u16).to_be_bytes());
    }
    let et = ethertype.unwrap_or_else(|| match r.below(8) {
        0 => 0x0800,
        1 => 0x86dd,
        2 => 0x0806,
        3 => heartbeat::ETHERTYPE,
        4 => *r.pick(&TPIDS),
        // 802.3 length fields included.
        _ => r.next_u64() as u16,
    });
    f.extend_from_slice(&et.to_be_bytes());
    let len = match r.below(6) {
        0 => f.len() + r.below(4) as usize,
        1 => 60,
        2 => MAX_FRAME,
        _ => ETH_HEADER + r.below((MAX_FRAME - ETH_HEADER + 1) as u64) as usize,
    }
    .clamp(ETH_HEADER, MAX_FRAME);
    if f.len() > len {
        // The tags ate the room: a header cut short (a malformed frame).
        f.truncate(len);
    }
    let rest = len - f.len();
    f.extend_from_slice(&r.bytes(rest));
    // The receiving kernel drops a frame whose VLAN tags (802.1Q, 802.1ad)
    // it cannot pull with the type and two bytes after each (skb_vlan_untag
    // runs before packet sockets see the frame): such a runt would be lost
    // at the sink, not in the dataplane, so it gets the bytes it needs.
    let need = receivable_len(&f);
    if f.len() < need {
        let more = need - f.len();
        f.extend_from_slice(&r.bytes(more));
    }
    if et == 0x0800 && f.len() > ETH_HEADER + tags as usize * 4 && r.chance(2) {
        // An IPv4 version nibble with a random (often impossible) IHL.
        let at = ETH_HEADER + tags as usize * 4;
        f[at] = 0x40 | (f[at] & 0x0f);
    }
    f
}

/// The shortest length at which a Linux receiver keeps `f`: with `k`
/// leading VLAN tags (TPIDs 0x8100 and 0x88a8, which the kernel untags) it
/// needs `16 + 4k` bytes.
fn receivable_len(f: &[u8]) -> usize {
    let mut k = 0;
    while f.len() >= 14 + 4 * k
        && matches!(
            u16::from_be_bytes([f[12 + 4 * k], f[13 + 4 * k]]),
            0x8100 | 0x88a8
        )
    {
        k += 1;
    }
    if k == 0 {
        ETH_HEADER
    } else {
        16 + 4 * k
    }
}

/// A well-formed heartbeat under a key the dataplane does not hold, for a
/// hop slot and nonce that may be live.
fn forged_heartbeat(r: &mut Rng) -> Vec<u8> {
    let mut f = vec![0u8; heartbeat::FRAME_LEN];
    let beat = Beat {
        dir: if r.chance(2) { Dir::AtoB } else { Dir::BtoA },
        slot: r.below(8) as u16,
        nonce: r.next_u64() as u32,
        seq: r.below(1000),
        sent_ns: r.next_u64(),
    };
    let n = heartbeat::write_frame(
        &mut f,
        &beat,
        &TagKey::from_words(r.next_u64(), r.next_u64()),
    );
    f.truncate(n);
    f
}

/// Whether the dataplane drops `f` by design in `phase` (and counts it).
fn dropped_by_design(phase: Phase, f: &[u8]) -> bool {
    phase == Phase::Chain && heartbeat::is_heartbeat(f)
}

/// Sends `frames` on `tx` (never more than [`WINDOW`] expected frames
/// ahead of what arrived) and checks that exactly the expected ones arrive
/// on `rx`, byte-exact and once each. Returns how many were dropped by
/// design.
fn exchange(
    name: &str,
    tx: &RawSocket,
    rx: &RawSocket,
    frames: &[Vec<u8>],
    phase: Phase,
) -> Result<u64> {
    let mut want: HashMap<&[u8], usize> = HashMap::new();
    let mut expected = 0usize;
    let mut by_design = 0u64;
    for f in frames {
        if dropped_by_design(phase, f) {
            by_design += 1;
        } else {
            *want.entry(f.as_slice()).or_default() += 1;
            expected += 1;
        }
    }
    let mut sent = 0usize;
    let mut sent_expected = 0usize;
    let mut got = 0usize;
    let mut unexpected: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; MAX_FRAME + 64];
    let mut last_progress = Instant::now();
    let mut done_at: Option<Instant> = None;
    let start = Instant::now();
    loop {
        while sent < frames.len() && sent_expected < got + WINDOW {
            let f = &frames[sent];
            if !tx
                .send(f)
                .with_context(|| format!("{name}: sending frame {sent}"))?
            {
                break;
            }
            if !dropped_by_design(phase, f) {
                sent_expected += 1;
            }
            sent += 1;
        }
        while let Some(meta) = rx.recv(&mut buf).context("receiving")? {
            let f = &buf[..meta.len];
            match want.get_mut(f) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    got += 1;
                    last_progress = Instant::now();
                }
                _ => unexpected.push(f.to_vec()),
            }
        }
        let now = Instant::now();
        if got == expected && sent == frames.len() && done_at.is_none() {
            done_at = Some(now);
        }
        if done_at.is_some_and(|t| now >= t + LINGER) || now >= last_progress + STALL {
            break;
        }
        rx.wait_readable(2)?;
    }
    // The frames sent that did not arrive (`want` counts down as they do;
    // the last copies of a frame sent twice are the missing ones).
    let mut left = want.clone();
    let mut missing: Vec<&[u8]> = Vec::new();
    for f in frames[..sent].iter().rev() {
        if let Some(n) = left.get_mut(f.as_slice()) {
            if *n > 0 && !dropped_by_design(phase, f) {
                *n -= 1;
                missing.push(f);
            }
        }
    }
    missing.reverse();
    let describe = |fs: &[&[u8]]| -> String {
        fs.iter()
            .take(12)
            .map(|f| format!("{}B {:02x?}", f.len(), &f[..f.len().min(22)]))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    if !missing.is_empty() {
        eprintln!("{name}: missing:\n  {}", describe(&missing));
    }
    ensure!(
        unexpected.is_empty() && missing.is_empty() && sent == frames.len(),
        "{name}: sent {sent} of {}, {got} of {expected} expected arrived byte-exact in {:?}; \
         {} unexpected (first: {:02x?}); {} missing (first: {:02x?})",
        frames.len(),
        start.elapsed(),
        unexpected.len(),
        unexpected.first().map(|f| &f[..f.len().min(40)]),
        missing.len(),
        missing.first().map(|f| &f[..f.len().min(40)])
    );
    eprintln!(
        "{name}: {} frames, {got} arrived byte-exact, {by_design} dropped by design, in {:?}",
        frames.len(),
        start.elapsed()
    );
    Ok(by_design)
}

/// Hop states and their last transitions.
fn hop_marks(ctl: &Control) -> Result<Vec<(String, i32, String)>> {
    let c = ctl.get_chain()?;
    Ok(c.status
        .unwrap_or_default()
        .hops
        .into_iter()
        .map(|h| (h.name, h.state, format!("{:?}", h.last_transition_at)))
        .collect())
}

#[test]
fn wire_fuzz_frames_cross_byte_exact_or_are_counted_and_hops_keep_their_state() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let seed = env_u64("TAPLINE_FUZZ_SEED", 13)?;
    let n = env_u64("TAPLINE_FUZZ_WIRE_FRAMES", DEFAULT_FRAMES)? as usize;
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    // The chain starts empty: the live bridge first.
    let dp = start_dataplane(&lab, &chain_config(&[], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    let g = open_raw(lab.gen(), ifs::GEN)?;
    let s = open_raw(lab.sink(), ifs::SINK)?;
    let mut r = Rng::new(seed);
    let mut total = 0usize;

    // Bridge: every ethertype once (gen -> sink), random frames back.
    let all: Vec<Vec<u8>> = (0..=u16::MAX)
        .map(|et| frame(&mut r, Phase::Bridge, Some(et)))
        .collect();
    exchange(
        "bridge g0->s0 (every ethertype)",
        &g,
        &s,
        &all,
        Phase::Bridge,
    )?;
    let back: Vec<Vec<u8>> = (0..n).map(|_| frame(&mut r, Phase::Bridge, None)).collect();
    exchange("bridge s0->g0", &s, &g, &back, Phase::Bridge)?;
    total += all.len() + back.len();

    // The chain of two tools.
    ctl.apply_chain(chain_spec(&[1, 2]))?;
    wait_hops_up(&ctl, &[1, 2], UP_TIMEOUT)?;
    let marks = hop_marks(&ctl)?;
    let before = stats(dp.state_dir())?;
    let mut by_design = [0u64; 2];
    for (i, (name, tx, rx)) in [("chain g0->s0", &g, &s), ("chain s0->g0", &s, &g)]
        .into_iter()
        .enumerate()
    {
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|k| {
                if k % 16 == 0 {
                    forged_heartbeat(&mut r)
                } else {
                    frame(&mut r, Phase::Chain, None)
                }
            })
            .collect();
        by_design[i] = exchange(name, tx, rx, &frames, Phase::Chain)?;
        total += frames.len();
    }
    let after = stats(dp.state_dir())?;
    for (i, role) in ["inline-1", "inline-2"].into_iter().enumerate() {
        let counted = port_drops(&after, role, DropReason::HeartbeatFromWire)
            - port_drops(&before, role, DropReason::HeartbeatFromWire);
        ensure!(
            counted == by_design[i],
            "{role}: {counted} heartbeat_from_wire drops counted, {} heartbeat-shaped frames sent",
            by_design[i]
        );
        for reason in [
            DropReason::TxRingFull,
            DropReason::HopDown,
            DropReason::HeartbeatInvalid,
        ] {
            let d = port_drops(&after, role, reason) - port_drops(&before, role, reason);
            ensure!(d == 0, "{role}: {d} {} drops", reason.name());
        }
    }
    let now = hop_marks(&ctl)?;
    ensure!(
        now == marks && now.iter().all(|(_, st, _)| *st == pb::HopState::Up as i32),
        "the hops changed state: before {marks:?}, after {now:?}"
    );
    eprintln!(
        "wire fuzz: seed {seed}, {total} frames; hops {} and {} stayed UP",
        hop_name(1),
        hop_name(2)
    );
    stop_ok(dp)?;
    Ok(())
}
