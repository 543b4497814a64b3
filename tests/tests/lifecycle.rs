//! The dataplane releases the interfaces however it ends. While it runs,
//! i1, i2 and p1 have its XDP program attached and are promiscuous; after
//! SIGTERM (exit 0, final counters logged) and after SIGKILL (no cleanup
//! code runs: the BPF link and the AF_PACKET membership die with the
//! process) no XDP program is attached and promiscuity is back to 0, and a
//! new dataplane can take the same interfaces over and forward again.

use std::os::unix::process::ExitStatusExt;

use anyhow::{ensure, Result};
use nix::sys::signal::Signal;
use tapline_bench::lab::{link_state, unique_prefix, Lab, Scenario};
use tapline_tests::{
    assert_bridge_counters, assert_delivered_in_order, assert_released, config_for, dut_interfaces,
    privileged, run_concurrently, start_dataplane, stop_ok, wait_bounded, Flow, EXIT_TIMEOUT,
};

const FRAMES_EACH_WAY: usize = 500;

/// Asserts every dut interface has XDP attached and is promiscuous.
fn assert_held(lab: &Lab) -> Result<()> {
    for ifname in dut_interfaces(lab) {
        let st = link_state(&lab.dut, ifname)?;
        ensure!(
            st.xdp_attached && st.promiscuity == 1,
            "while the dataplane runs, {ifname} should have XDP attached and promiscuity 1: {st:?}"
        );
    }
    Ok(())
}

/// Forwards a few frames each way and checks them (proves the run was live).
fn forward_and_check(lab: &Lab) -> Result<[Flow; 2]> {
    let flows = [
        Flow::gen_to_sink(lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(lab, FRAMES_EACH_WAY)?,
    ];
    let results = run_concurrently(&flows)?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    Ok(flows)
}

#[test]
fn sigterm_exits_zero_and_releases_every_interface() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let dp = start_dataplane(&lab, &config_for(&lab, "auto"))?;
    assert_held(&lab)?;
    let flows = forward_and_check(&lab)?;
    let fin = stop_ok(dp)?;
    let counters = fin.final_counters();
    ensure!(
        counters.keys().map(String::as_str).collect::<Vec<_>>()
            == ["inline-1", "inline-2", "passive-1"],
        "final counters for every port expected, got {:?}",
        counters.keys()
    );
    assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)?;
    assert_released(&lab)?;
    Ok(())
}

#[test]
fn sigkill_releases_every_interface_and_a_restart_forwards() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let config = config_for(&lab, "auto");
    let dp = start_dataplane(&lab, &config)?;
    assert_held(&lab)?;
    forward_and_check(&lab)?;
    dp.signal(Signal::SIGKILL)?;
    let fin = wait_bounded(dp, EXIT_TIMEOUT)?;
    ensure!(
        fin.status.signal() == Some(Signal::SIGKILL as i32),
        "expected death by SIGKILL, got {}",
        fin.status
    );
    ensure!(
        fin.final_counters().is_empty(),
        "a killed dataplane cannot log final counters"
    );
    assert_released(&lab)?;

    // The same interfaces are free for the next process.
    let dp = start_dataplane(&lab, &config)?;
    assert_held(&lab)?;
    let flows = forward_and_check(&lab)?;
    let fin = stop_ok(dp)?;
    assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)?;
    assert_released(&lab)?;
    Ok(())
}
