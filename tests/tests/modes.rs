//! The bridge and passive checks hold in every XDP mode veth offers:
//! `generic`, `native-copy` and `auto`. Each run forwards 2,000 frames each
//! way byte for byte and in order while 2,000 frames are captured on
//! passive-1, the final counters equal what was sent, and the log reports
//! the copy mode obtained on veth (`generic-copy` / `native-copy`); `auto`
//! must log its fall back from zero-copy (EOPNOTSUPP, os error 95) to copy.
//! The kernel confirms the attach mode (`ip -d link`: SKB or DRV).

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::Finished;
use tapline_tests::{
    assert_bridge_counters, assert_delivered_in_order, assert_kernel_xdp_mode,
    assert_passive_counters, assert_ports_mode, assert_released, config_for, kernel_xdp_mode,
    open_raw, passive_frames, privileged, ready_ports, run_concurrently, send_paced,
    start_dataplane, stop_ok, Flow, EXCHANGE_TIMEOUT,
};

const FRAMES_EACH_WAY: usize = 2_000;
const PASSIVE_FRAMES: usize = 2_000;
/// The warning `QueueGroup::open` logs when a bind mode is unavailable.
const BIND_FALLBACK_MESSAGE: &str = "AF_XDP bind mode unavailable, falling back";

/// Runs the full lab in `mode` and checks traffic, counters and the mode
/// reported (`port_mode`, e.g. `native-copy`). Returns the finished run.
fn bridge_and_passive_in_mode(mode: &str, port_mode: &str) -> Result<Finished> {
    bridge_and_passive_in_modes(mode, port_mode, port_mode)
}

/// As [`bridge_and_passive_in_mode`], with the inline ports expected in
/// `inline_mode` and passive-1 in `port_mode`.
fn bridge_and_passive_in_modes(mode: &str, inline_mode: &str, port_mode: &str) -> Result<Finished> {
    let attach = port_mode
        .strip_suffix("-copy")
        .context("veth only has copy modes")?;
    let inline_attach = inline_mode
        .strip_suffix("-copy")
        .context("veth only has copy modes")?;
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let flows = [
        Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
    ];
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    let captured = passive_frames(PASSIVE_FRAMES);
    let dp = start_dataplane(&lab, &config_for(&lab, mode))?;
    // What the kernel says, not only what the dataplane logs.
    let kernel_mode = if inline_attach == attach {
        assert_kernel_xdp_mode(&lab, attach)
    } else {
        kernel_modes(&lab, inline_attach, attach)
    };
    let (results, sent) = std::thread::scope(|s| {
        let passive = s.spawn(|| send_paced(&tap, &captured, Instant::now() + EXCHANGE_TIMEOUT));
        let results = run_concurrently(&flows);
        (results, passive.join())
    });
    let fin = stop_ok(dp)?;
    kernel_mode?;
    sent.map_err(|_| anyhow::anyhow!("passive sender panicked"))??;
    let results = results?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result).with_context(|| format!("mode {mode}"))?;
    }
    assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)
        .with_context(|| format!("mode {mode}"))?;
    assert_passive_counters(&fin, &captured).with_context(|| format!("mode {mode}"))?;
    if inline_mode == port_mode {
        assert_ports_mode(&lab, &fin.lines, port_mode)?;
    } else {
        let ports = ready_ports(&fin.lines)?;
        for want in [
            format!("inline-1={}:q0:{inline_mode}", ifs::INLINE_1),
            format!("inline-2={}:q0:{inline_mode}", ifs::INLINE_2),
            format!("passive-1={}:q0:{port_mode}", ifs::PASSIVE_1),
        ] {
            ensure!(ports.contains(&want), "expected {want:?} in {ports}");
        }
    }
    assert_released(&lab)?;
    Ok(fin)
}

/// The kernel reports the inline ports in `inline` mode, passive-1 in
/// `passive` mode.
fn kernel_modes(lab: &Lab, inline: &str, passive: &str) -> Result<()> {
    for (ifname, want) in [
        (ifs::INLINE_1, inline),
        (ifs::INLINE_2, inline),
        (ifs::PASSIVE_1, passive),
    ] {
        let got = kernel_xdp_mode(&lab.dut, ifname)?;
        ensure!(
            got == Some(want),
            "the kernel reports XDP on {ifname} as {got:?}, expected {want}"
        );
    }
    Ok(())
}

/// Bind-mode fallback warnings in the log.
fn bind_fallbacks(fin: &Finished) -> Vec<serde_json::Value> {
    fin.records()
        .into_iter()
        .filter(|r| r["message"] == BIND_FALLBACK_MESSAGE)
        .collect()
}

#[test]
fn generic_mode_bridges_and_captures_in_copy_mode() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let fin = bridge_and_passive_in_mode("generic", "generic-copy")?;
    ensure!(
        bind_fallbacks(&fin).is_empty(),
        "generic mode asks for copy directly; no fallback expected: {:?}",
        bind_fallbacks(&fin)
    );
    Ok(())
}

#[test]
fn native_copy_mode_bridges_and_captures() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let fin = bridge_and_passive_in_mode("native-copy", "native-copy")?;
    ensure!(
        bind_fallbacks(&fin).is_empty(),
        "native-copy asks for copy directly; no fallback expected: {:?}",
        bind_fallbacks(&fin)
    );
    Ok(())
}

/// `auto` on veth: the inline ports get their fallback program in generic
/// mode (a native redirect into a plain veth delivers nothing), so the
/// bridge binds copy directly; passive-1 is native and falls back from
/// zero-copy to copy.
#[test]
fn auto_mode_falls_back_from_zero_copy_to_native_copy() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let fin = bridge_and_passive_in_modes("auto", "generic-copy", "native-copy")?;
    ensure!(
        fin.records()
            .iter()
            .any(|r| r["message"] == "inline fallback program attached"
                && r["attach"] == "generic"
                && r["reason"].as_str().is_some_and(|s| s.contains("veth"))),
        "the inline ports' generic attach and its reason are not logged:\n{}",
        fin.lines.join("\n")
    );
    let fallbacks = bind_fallbacks(&fin);
    // One queue group for passive-1 (the bridge's is generic: copy only).
    ensure!(
        fallbacks.len() == 1,
        "expected one zero-copy fallback (passive-1), got {}:\n{}",
        fallbacks.len(),
        fin.lines.join("\n")
    );
    for w in &fallbacks {
        let error = w["error"].as_str().unwrap_or_default();
        ensure!(
            w["level"] == "WARN"
                && w["next"] == "copy"
                && error.contains("zero-copy")
                && error.contains("os error 95"),
            "the fallback must be a warning naming zero-copy, EOPNOTSUPP (os error 95) and the next mode: {w}"
        );
    }
    Ok(())
}
