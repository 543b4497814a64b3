//! The chain lab's tools behave like wires and fail on demand. For a chain
//! of two hops, with each tool kind (Linux bridge, tc mirred): frames sent
//! from the dut on `h{k}a` arrive on `h{k}b` byte for byte and in order,
//! and the reverse; `tool_link(1, false)` stops hop 1 both ways while hop 2
//! still forwards, and `tool_link(1, true)` restores it; a drop filter for
//! one UDP flow drops exactly that flow's frames, only in the direction
//! side a -> side b and only in its tool, until cleared. `tapline-bench lab
//! up chain` is idempotent and `lab down` removes every namespace; no
//! namespace with the lab's prefix remains after any of these tests.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{self, ifs, unique_prefix, Lab, Scenario, ToolKind, UdpPort};
use tapline_bench::runner::workspace_binary;
use tapline_bench::traffic::{build_frame, is_ours, FrameKind};
use tapline_dataplane::xdp::RawSocket;
use tapline_tests::{
    assert_delivered_in_order, assert_filtered_delivery, frame_plan, open_raw, privileged,
    run_concurrently, udp_flow_frames, udp_src_port, Flow,
};

/// Tools in every lab of this file.
const HOPS: u8 = 2;
/// Frames each way through each hop in the forwarding checks.
const FRAMES_EACH_WAY: usize = 300;
/// Frames each way while a tool's link is down.
const BLOCKED_FRAMES: usize = 50;
/// How long a stopped hop must stay silent after the last frame sent.
const BLOCKED_LINGER: Duration = Duration::from_millis(300);
/// After the last expected frame, how long to keep listening for extras.
const LINGER: Duration = Duration::from_millis(100);
/// UDP flows in the drop check, and the one the filter drops.
const DROP_FLOWS: u16 = 4;
const DROPPED_FLOW: u16 = 2;
const DROP_FRAMES: usize = 200;
/// Sender ids (in the source MAC) of frames sent from the dut's `h{k}a`
/// (towards side a) and `h{k}b` (towards side b).
const SENDER_SIDE_A: u8 = 4;
const SENDER_SIDE_B: u8 = 5;
/// 802.1Q-free Ethernet + 20-byte IPv4 header: the UDP source port of a
/// `build_frame` UDP frame starts here.
const RECV_BUF_BYTES: usize = 2048;

/// Builds a chain of [`HOPS`] tools of `tool`, runs `body`, drops the lab
/// and checks that no namespace with its prefix remains.
fn with_chain_lab(tool: ToolKind, body: impl FnOnce(&Lab) -> Result<()>) -> Result<()> {
    let prefix = unique_prefix();
    let result = (|| {
        let lab = Lab::build(&prefix, Scenario::chain(HOPS, tool)?)?;
        let mut expected: Vec<String> = ["dut", "gen", "sink", "tool1", "tool2"]
            .iter()
            .map(|n| format!("{prefix}-{n}"))
            .collect();
        ensure!(
            lab.namespace_names() == expected,
            "namespaces of the lab: {:?}",
            lab.namespace_names()
        );
        let mut listed = lab::namespaces(&prefix)?;
        listed.sort();
        expected.sort();
        ensure!(listed == expected, "ip netns list shows {listed:?}");
        body(&lab)
    })();
    let left = lab::namespaces(&prefix)?;
    result.with_context(|| format!("chain lab of {} tools", tool.name()))?;
    ensure!(left.is_empty(), "namespaces left after drop: {left:?}");
    Ok(())
}

/// Frames of the mixed plan sent from the dut through hop `k`, side a ->
/// side b (`h{k}a` -> `h{k}b`) or the reverse.
fn hop_flow(lab: &Lab, k: u8, a_to_b: bool, count: usize) -> Result<Flow> {
    let (from, to, sender) = if a_to_b {
        (ifs::hop_a(k), ifs::hop_b(k), SENDER_SIDE_A)
    } else {
        (ifs::hop_b(k), ifs::hop_a(k), SENDER_SIDE_B)
    };
    Ok(Flow {
        name: format!("{from}->{to}"),
        tx: open_raw(&lab.dut, &from)?,
        rx: open_raw(&lab.dut, &to)?,
        sender,
        frames: frame_plan(count, sender),
    })
}

/// Runs both directions of every hop in `hops` concurrently and asserts
/// exact, in-order delivery.
fn assert_hops_forward(lab: &Lab, hops: &[u8], count: usize) -> Result<()> {
    let mut flows = Vec::new();
    for &k in hops {
        flows.push(hop_flow(lab, k, true, count)?);
        flows.push(hop_flow(lab, k, false, count)?);
    }
    let results = run_concurrently(&flows)?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    Ok(())
}

/// Our frames waiting on `rx`, in arrival order.
fn drain(rx: &RawSocket, sender: u8, into: &mut Vec<Vec<u8>>) -> Result<()> {
    let mut buf = vec![0u8; RECV_BUF_BYTES];
    while let Some(meta) = rx.recv(&mut buf).context("receiving")? {
        let frame = &buf[..meta.len];
        if is_ours(frame, sender) {
            into.push(frame.to_vec());
        }
    }
    Ok(())
}

/// Sends each frame of `flow` once and asserts none arrives within
/// [`BLOCKED_LINGER`]. The kernel may refuse a frame at once (ENOBUFS: the
/// veth dropped it because its peer is down); that counts as not arrived.
fn assert_blocked(flow: &Flow) -> Result<()> {
    let mut refused = 0usize;
    for f in &flow.frames {
        if !flow
            .tx
            .send(f)
            .with_context(|| format!("{}: sending", flow.name))?
        {
            refused += 1;
        }
    }
    std::thread::sleep(BLOCKED_LINGER);
    let mut got = Vec::new();
    drain(&flow.rx, flow.sender, &mut got)?;
    ensure!(
        got.is_empty(),
        "{}: {} of {} frames arrived through a tool whose link is down",
        flow.name,
        got.len(),
        flow.frames.len()
    );
    eprintln!(
        "{}: 0 of {} frames arrived while the link was down ({refused} refused by the kernel)",
        flow.name,
        flow.frames.len()
    );
    Ok(())
}

/// Sends the drop check's UDP frames through hop `k` and asserts that exactly the
/// frames `passes` keeps arrive, byte for byte and in order.
fn assert_udp_delivery(
    lab: &Lab,
    k: u8,
    a_to_b: bool,
    passes: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    let flow = hop_flow(lab, k, a_to_b, 0)?;
    let frames = udp_flow_frames(DROP_FRAMES, DROP_FLOWS, flow.sender);
    assert_filtered_delivery(&flow, &frames, passes, LINGER)
}

fn forwards_both_ways(tool: ToolKind) -> Result<()> {
    with_chain_lab(tool, |lab| {
        assert_hops_forward(lab, &[1, 2], FRAMES_EACH_WAY)
    })
}

fn link_down_stops_and_up_restores(tool: ToolKind) -> Result<()> {
    with_chain_lab(tool, |lab| {
        lab.tool_link(1, false)?;
        assert_blocked(&hop_flow(lab, 1, true, BLOCKED_FRAMES)?)?;
        assert_blocked(&hop_flow(lab, 1, false, BLOCKED_FRAMES)?)?;
        assert_hops_forward(lab, &[2], FRAMES_EACH_WAY).context("hop 2 while hop 1 is down")?;
        lab.tool_link(1, true)?;
        assert_hops_forward(lab, &[1], FRAMES_EACH_WAY).context("hop 1 after its link is up")
    })
}

fn drop_filter_drops_one_flow(tool: ToolKind) -> Result<()> {
    with_chain_lab(tool, |lab| {
        let dropped_port = udp_src_port(&build_frame(
            FrameKind::Udp4,
            60,
            SENDER_SIDE_A,
            0,
            DROPPED_FLOW,
        ));
        lab.tool_drop_udp_port(1, UdpPort::Src(dropped_port))?;
        assert_udp_delivery(lab, 1, true, |f| udp_src_port(f) != dropped_port)
            .context("hop 1, side a -> b, with the drop filter")?;
        // The filter sits on ingress of side a: the other direction and the
        // other tool carry the flow.
        assert_udp_delivery(lab, 1, false, |_| true).context("hop 1, side b -> a")?;
        assert_udp_delivery(lab, 2, true, |_| true).context("hop 2, side a -> b")?;
        lab.tool_clear_drops(1)?;
        lab.tool_clear_drops(1)?;
        assert_udp_delivery(lab, 1, true, |_| true).context("hop 1 after clearing the filter")
    })
}

#[test]
fn bridge_tools_forward_both_ways_identical_and_in_order() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    forwards_both_ways(ToolKind::Bridge)
}

#[test]
fn mirred_tools_forward_both_ways_identical_and_in_order() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    forwards_both_ways(ToolKind::Mirred)
}

#[test]
fn bridge_tool_link_down_stops_the_hop_and_up_restores_it() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    link_down_stops_and_up_restores(ToolKind::Bridge)
}

#[test]
fn mirred_tool_link_down_stops_the_hop_and_up_restores_it() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    link_down_stops_and_up_restores(ToolKind::Mirred)
}

#[test]
fn bridge_tool_drop_filter_drops_only_one_flow() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    drop_filter_drops_one_flow(ToolKind::Bridge)
}

#[test]
fn mirred_tool_drop_filter_drops_only_one_flow() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    drop_filter_drops_one_flow(ToolKind::Mirred)
}

/// Runs `tapline-bench ARGS...` and returns its stdout, failing on a
/// non-zero exit.
fn bench(args: &[&str]) -> Result<String> {
    let out = lab::run(Command::new(workspace_binary("tapline-bench")?).args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn lab_up_chain_is_idempotent_and_lab_down_removes_every_namespace() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let prefix = unique_prefix();
    let result = (|| {
        for _ in 0..2 {
            let out = bench(&[
                "lab", "up", "chain", "--hops", "3", "--tool", "mirred", "--prefix", &prefix,
            ])?;
            ensure!(
                out.contains(&format!("{prefix}-tool3")) && out.contains("mirred"),
                "lab up output: {out}"
            );
            let mut names = lab::namespaces(&prefix)?;
            names.sort();
            let mut expected: Vec<String> = ["dut", "gen", "sink", "tool1", "tool2", "tool3"]
                .iter()
                .map(|n| format!("{prefix}-{n}"))
                .collect();
            expected.sort();
            ensure!(names == expected, "after lab up: {names:?}");
        }
        for bad in [
            &["lab", "up", "chain", "--hops", "9", "--prefix", &prefix][..],
            &["lab", "up", "inline", "--hops", "2", "--prefix", &prefix][..],
        ] {
            ensure!(bench(bad).is_err(), "{bad:?} should fail");
        }
        ensure!(
            lab::namespaces(&prefix)?.len() == 6,
            "a rejected lab up must not touch the running lab"
        );
        let out = bench(&["lab", "down", "--prefix", &prefix])?;
        ensure!(
            out.contains("6 namespaces removed"),
            "lab down output: {out}"
        );
        Ok(())
    })();
    let left = lab::namespaces(&prefix)?;
    let _ = lab::teardown(&prefix);
    result?;
    ensure!(left.is_empty(), "namespaces left after lab down: {left:?}");
    Ok(())
}

#[test]
fn tool_interfaces_have_every_vlan_tag_offload_off() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let tool = lab.tool(1)?;
    for side in [ifs::TOOL_A, ifs::TOOL_B] {
        let (flags, features) = tool.enter(|| {
            let flags = tapline_dataplane::sys::ethtool_flags(side)?;
            let features = lab::STAG_OFFLOADS
                .iter()
                .map(|f| tapline_dataplane::sys::ethtool_feature(side, f))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok::<_, std::io::Error>((flags, features))
        })??;
        let tags =
            tapline_dataplane::sys::ETH_FLAG_TXVLAN | tapline_dataplane::sys::ETH_FLAG_RXVLAN;
        ensure!(
            flags & tags == 0,
            "tool side {side}: 802.1Q offload on ({flags:#x})"
        );
        for (name, on) in lab::STAG_OFFLOADS.iter().zip(features) {
            ensure!(
                on == Some(false),
                "tool side {side}: {name} is {on:?}, expected off"
            );
        }
    }
    Ok(())
}
