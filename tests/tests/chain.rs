//! The inline chain on a namespace lab of two tools (each a namespace that
//! bridges its two interfaces): 10,000 frames each way cross both tools
//! byte for byte and in order, and each tool's interfaces count every frame
//! (so every frame crossed every tool); a tool that drops one UDP flow
//! removes exactly that flow from what reaches the sink (so the traffic
//! really goes through the tool), in the direction it filters only.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{ifs, rx_packets, unique_prefix, Lab, Scenario, ToolKind, UdpPort};
use tapline_bench::traffic::{build_frame, FrameKind};
use tapline_tests::chain::{chain_config, wait_hops_up, Control, UP_TIMEOUT};
use tapline_tests::{
    assert_delivered_in_order, assert_filtered_delivery, privileged, run_concurrently,
    start_dataplane, stop_ok, udp_flow_frames, udp_src_port, Flow, SENDER_GEN,
};

const FRAMES_EACH_WAY: usize = 10_000;
/// UDP flows of the drop check, the one tool 1 drops, frames per run.
const UDP_FLOWS: u16 = 4;
const DROPPED_FLOW: u16 = 2;
const UDP_FRAMES: usize = 400;
/// `build_frame` gives flow `f` the UDP source port `UDP_SRC_PORT_BASE + f`.
const UDP_SRC_PORT_BASE: u16 = 10_000;
/// After the last expected frame, how long to listen for extras.
const LINGER: Duration = Duration::from_millis(200);

#[test]
fn two_hop_chain_carries_ten_thousand_frames_each_way_through_every_tool() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1, 2], None, ""))?;
    wait_hops_up(&Control::new(dp.state_dir()), &[1, 2], UP_TIMEOUT)?;
    let before: Vec<u64> = (1..=2u8)
        .map(|k| rx_packets(lab.tool(k)?, ifs::TOOL_A))
        .collect::<Result<_>>()?;
    let flows = [
        Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
    ];
    let results = run_concurrently(&flows);
    stop_ok(dp)?;
    let results = results?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    for k in 1..=2u8 {
        let n = rx_packets(lab.tool(k)?, ifs::TOOL_A)? - before[usize::from(k) - 1];
        ensure!(
            n >= FRAMES_EACH_WAY as u64,
            "tool {k} side a received {n} frames"
        );
    }
    Ok(())
}

/// Sends the UDP frames of the drop check from gen to sink (or the
/// reverse) through the dataplane and asserts that exactly the frames
/// `passes` keeps arrive, byte for byte and in order.
fn assert_udp_delivery(lab: &Lab, gen_to_sink: bool, passes: impl Fn(&[u8]) -> bool) -> Result<()> {
    let flow = if gen_to_sink {
        Flow::gen_to_sink(lab, 0)?
    } else {
        Flow::sink_to_gen(lab, 0)?
    };
    let frames = udp_flow_frames(UDP_FRAMES, UDP_FLOWS, flow.sender);
    assert_filtered_delivery(&flow, &frames, passes, LINGER)
}

#[test]
fn a_tool_that_drops_one_udp_flow_removes_exactly_that_flow_from_the_chain() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1, 2], None, ""))?;
    // Until a hop is UP its traffic goes around it (fail open).
    wait_hops_up(&Control::new(dp.state_dir()), &[1, 2], UP_TIMEOUT)?;
    let dropped = UDP_SRC_PORT_BASE + DROPPED_FLOW;
    assert_eq!(
        udp_src_port(&build_frame(
            FrameKind::Udp4,
            60,
            SENDER_GEN,
            0,
            DROPPED_FLOW
        )),
        dropped
    );
    lab.tool_drop_udp_port(1, UdpPort::Src(dropped))?;
    assert_udp_delivery(&lab, true, |f| udp_src_port(f) != dropped)
        .context("gen -> sink with tool 1 dropping one flow")?;
    // The filter is on tool 1's side a: the other direction carries it.
    assert_udp_delivery(&lab, false, |_| true).context("sink -> gen")?;
    lab.tool_clear_drops(1)?;
    assert_udp_delivery(&lab, true, |_| true).context("gen -> sink after clearing the filter")?;
    stop_ok(dp)?;
    Ok(())
}
