//! The benchmark peers, each run the way the benchmarks run it (a process in
//! the lab's dut namespace):
//!
//! - tapline-bench's AF_PACKET forwarder, testpmd (`net_af_xdp`) and
//!   Suricata (af-packet IPS copy-mode) are wires: frames sent each way
//!   between `g0` and `s0` (802.1Q-tagged, non-IP, 60- and 1514-byte ones
//!   among them) arrive byte for byte, in order, exactly once, and the
//!   peer's own counters equal what was sent;
//! - the AF_PACKET reader on `p1` counts every frame sent from `t0`, and its
//!   bytes;
//! - afterwards no XDP program and no promiscuity is left on the dut's
//!   interfaces (testpmd's PMD leaves both; its stop removes them).
//!
//! testpmd and Suricata are optional peers (`.ci/run` does not install
//! them), so their tests are `#[ignore]`d: run them with `cargo test -p
//! tapline-tests --test bench_peers -- --ignored` once they are installed
//! (`apt-get install dpdk-dev`; Suricata 7 from bookworm-backports). A
//! missing one then fails its test with the reason, it is never skipped.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tapline_bench::afpacket::DEFAULT_BATCH;
use tapline_bench::inline_bench::{testpmd_cpus, Dut};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::peers::{AfPacketForwarder, AfPacketReader, Suricata, Testpmd};
use tapline_tests::{
    assert_delivered_in_order, assert_released, open_raw, passive_frames, privileged,
    run_concurrently, send_paced, total_bytes, Flow, EXCHANGE_TIMEOUT,
};

/// Frames each way through a forwarding peer.
const FRAMES_EACH_WAY: usize = 3_000;
/// Frames into the passive port.
const PASSIVE_FRAMES: usize = 5_000;
/// 802.1Q tag: the kernel moves it into metadata before a packet socket
/// reads the frame.
const VLAN_TAG_BYTES: u64 = 4;
/// How long the reader may take to count every frame sent into `p1`.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a peer may take to forward a probe each way.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one probe gets to arrive before the next is sent.
const PROBE_WAIT_MS: i32 = 100;
/// Ethertype of probe frames (IEEE 802 local experimental): no flow's
/// frame, and nothing a flow's receiver takes for its own.
const PROBE_ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// Marks a probe's payload.
const PROBE_MAGIC: &[u8; 12] = b"TAPLINEPROBE";

/// An inline lab and one flow each way, not started.
fn inline_lab() -> Result<(Lab, [Flow; 2])> {
    let lab = Lab::build(&unique_prefix(), Scenario::Inline)?;
    let flows = [
        Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
    ];
    Ok((lab, flows))
}

/// Runs both flows through whatever forwards in the lab and checks that
/// every frame arrived as sent. Returns the frames sent, both ways.
fn exchange(flows: &[Flow; 2]) -> Result<u64> {
    let results = run_concurrently(flows)?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    Ok(flows.iter().map(|f| f.frames.len() as u64).sum())
}

/// A probe frame: broadcast, [`PROBE_ETHERTYPE`], then [`PROBE_MAGIC`] and
/// its sequence number, padded to the minimum frame.
fn probe_frame(seq: u32) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&PROBE_ETHERTYPE);
    f.extend_from_slice(PROBE_MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0);
    f
}

/// Whether `frame` is the probe `seq`.
fn is_probe(frame: &[u8], seq: u32) -> bool {
    frame.get(..60) == Some(&probe_frame(seq)[..])
}

/// Sends probes from `flow.tx` until one arrives on `flow.rx`, each given
/// [`PROBE_WAIT_MS`]: a peer that drops what arrives while it starts is
/// forwarding in that direction once one got through (it forwards in
/// order, so no earlier probe is still on its way). Returns the probes
/// sent.
fn probe_until_forwarded(flow: &Flow) -> Result<u64> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut buf = vec![0u8; 2048];
    for seq in 0.. {
        ensure!(
            Instant::now() < deadline,
            "{}: none of {seq} probes got through within {PROBE_TIMEOUT:?}",
            flow.name
        );
        ensure!(
            flow.tx.send(&probe_frame(seq))?,
            "{}: send buffer full",
            flow.name
        );
        let wait_until = Instant::now() + Duration::from_millis(PROBE_WAIT_MS as u64);
        while Instant::now() < wait_until {
            if !flow.rx.wait_readable(PROBE_WAIT_MS)? {
                continue;
            }
            while let Some(meta) = flow.rx.recv(&mut buf)? {
                if is_probe(&buf[..meta.len], seq) {
                    return Ok(u64::from(seq) + 1);
                }
            }
        }
    }
    unreachable!("the deadline ends the probe loop")
}

/// Fails when `dut`'s software is not installed.
fn require_installed(dut: Dut) -> Result<()> {
    if let Some(reason) = dut.missing() {
        bail!("{}: {reason}; this test needs it installed", dut.name());
    }
    Ok(())
}

#[test]
fn af_packet_forwarder_is_a_wire() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let (lab, flows) = inline_lab()?;
    let fwd = AfPacketForwarder::start(&lab.dut, ifs::INLINE_1, ifs::INLINE_2, DEFAULT_BATCH)?;
    let exchanged = exchange(&flows);
    let counts = fwd.stop()?;
    let sent = exchanged?;
    ensure!(
        counts.forwarded == sent && counts.dropped == 0 && counts.kernel_drops == 0,
        "forwarder counters {counts:?}, {sent} frames sent"
    );
    assert_released(&lab)
}

#[test]
#[ignore = "optional peer: needs dpdk-testpmd (apt-get install dpdk-dev); run with --ignored"]
fn testpmd_is_a_wire_and_leaves_nothing_behind() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    require_installed(Dut::Testpmd)?;
    let (lab, flows) = inline_lab()?;
    let (main_cpu, fwd_cpu) = testpmd_cpus(None)?;
    let testpmd = Testpmd::start(&lab.dut, ifs::INLINE_1, ifs::INLINE_2, main_cpu, fwd_cpu)?;
    ensure!(
        testpmd.xdp_mode == "native" || testpmd.xdp_mode == "generic",
        "testpmd runs without an XDP program on {}: {:?}",
        ifs::INLINE_1,
        testpmd.xdp_mode
    );
    let exchanged = exchange(&flows);
    let stats = testpmd.stop()?;
    let sent = exchanged?;
    ensure!(
        stats.rx_packets == sent
            && stats.tx_packets == sent
            && stats.rx_dropped == 0
            && stats.tx_dropped == 0,
        "testpmd counters {stats:?}, {sent} frames sent"
    );
    assert_released(&lab)
}

#[test]
#[ignore = "optional peer: needs Suricata 7 (bookworm-backports); run with --ignored"]
fn suricata_ips_is_a_wire() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    require_installed(Dut::Suricata)?;
    let (lab, flows) = inline_lab()?;
    let suricata = Suricata::start(&lab.dut, ifs::INLINE_1, ifs::INLINE_2)?;
    // Suricata discards what arrives until its capture threads synchronised:
    // probe each way until it forwards.
    let probed = flows
        .iter()
        .map(probe_until_forwarded)
        .collect::<Result<Vec<u64>>>();
    let exchanged = probed.and_then(|p| Ok((p, exchange(&flows)?)));
    let interfaces = suricata.stop()?;
    let (probes, sent) = exchanged?;
    // Its counters count the probes, forwarded or discarded, on the
    // interface they entered by.
    let expected = [0, 1].map(|i| flows[i].frames.len() as u64 + probes[i]);
    let counted: Vec<u64> = interfaces.iter().map(|i| i.packets).collect();
    let drops: u64 = interfaces.iter().map(|i| i.drops).sum();
    ensure!(
        counted == expected && drops == 0,
        "Suricata counters {interfaces:?}, expected {expected:?} packets: {sent} frames and \
         {probes:?} probes sent"
    );
    assert_released(&lab)
}

#[test]
fn af_packet_reader_counts_every_frame_and_byte() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let frames = passive_frames(PASSIVE_FRAMES);
    let tagged = frames.iter().filter(|f| f[12..14] == [0x81, 0x00]).count() as u64;
    ensure!(tagged > 0, "the frame plan has no tagged frame");
    let tx = open_raw(lab.tap(), ifs::TAP)?;
    let reader = AfPacketReader::start(&lab.dut, ifs::PASSIVE_1, DEFAULT_BATCH)?;
    send_paced(&tx, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    // Stopped once it counted them all (or the deadline passed: the
    // counters below then say what was missing).
    let waited = reader.wait_received(frames.len() as u64, ARRIVAL_TIMEOUT);
    let counts = reader.stop()?;
    waited?;
    // Tags reach the socket as metadata, not as bytes of the frame.
    let bytes = total_bytes(&frames) - tagged * VLAN_TAG_BYTES;
    ensure!(
        counts.received == frames.len() as u64 && counts.bytes == bytes && counts.kernel_drops == 0,
        "reader counters {counts:?}: {} frames of {bytes} bytes (tags excluded) sent",
        frames.len()
    );
    assert_released(&lab)
}
