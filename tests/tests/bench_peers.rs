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
use tapline_bench::inline_bench::Dut;
use tapline_bench::lab::{self, ifs, unique_prefix, Lab, Scenario};
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
/// How long frames sent into `p1` may take to show in its counter.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the reader gets to read what arrived before it is stopped.
const READ_GRACE: Duration = Duration::from_millis(200);

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
    let last_cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    let testpmd = Testpmd::start(&lab.dut, ifs::INLINE_1, ifs::INLINE_2, 0, last_cpu)?;
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
    let exchanged = exchange(&flows);
    let interfaces = suricata.stop()?;
    let sent = exchanged?;
    let packets: u64 = interfaces.iter().map(|i| i.packets).sum();
    let drops: u64 = interfaces.iter().map(|i| i.drops).sum();
    ensure!(
        interfaces.len() == 2 && packets == sent && drops == 0,
        "Suricata counters {interfaces:?}, {sent} frames sent"
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
    let before = lab::link_state(&lab.dut, ifs::PASSIVE_1)?.rx_packets;
    let reader = AfPacketReader::start(&lab.dut, ifs::PASSIVE_1, DEFAULT_BATCH)?;
    send_paced(&tx, &frames, Instant::now() + EXCHANGE_TIMEOUT)?;
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while lab::link_state(&lab.dut, ifs::PASSIVE_1)?.rx_packets - before < frames.len() as u64 {
        ensure!(
            Instant::now() < deadline,
            "{} frames sent, not all reached {} within {ARRIVAL_TIMEOUT:?}",
            frames.len(),
            ifs::PASSIVE_1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(READ_GRACE);
    let counts = reader.stop()?;
    // Tags reach the socket as metadata, not as bytes of the frame.
    let bytes = total_bytes(&frames) - tagged * VLAN_TAG_BYTES;
    ensure!(
        counts.received == frames.len() as u64 && counts.bytes == bytes && counts.kernel_drops == 0,
        "reader counters {counts:?}: {} frames of {bytes} bytes (tags excluded) sent",
        frames.len()
    );
    assert_released(&lab)
}
