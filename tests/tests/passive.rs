//! Passive capture counts everything: 10,000 frames of mixed kinds and
//! sizes with a foreign destination MAC, sent from `t0` into `p1` (xdp mode
//! `auto`), are counted on passive-1 exactly (final `rx_packets` and
//! `rx_bytes` equal what was sent), nothing is transmitted, the port is
//! promiscuous while captured and released after SIGTERM.

use std::time::Instant;

use anyhow::{ensure, Result};
use tapline_bench::lab::{ifs, link_state, unique_prefix, Lab, Scenario};
use tapline_bench::traffic::FOREIGN_DST_MAC;
use tapline_tests::{
    assert_passive_counters, assert_released, config_for, open_raw, passive_frames, privileged,
    send_paced, start_dataplane, stop_ok, EXCHANGE_TIMEOUT,
};

const FRAMES: usize = 10_000;

#[test]
fn foreign_frames_are_counted_exactly_on_passive_1() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let frames = passive_frames(FRAMES);
    ensure!(
        frames.iter().all(|f| f[..6] == FOREIGN_DST_MAC),
        "every frame must be addressed to a foreign MAC"
    );
    let tx = open_raw(lab.tap(), ifs::TAP)?;
    let dp = start_dataplane(&lab, &config_for(&lab, "auto"))?;
    let running = link_state(&lab.dut, ifs::PASSIVE_1)?;
    let sent = send_paced(&tx, &frames, Instant::now() + EXCHANGE_TIMEOUT);
    let fin = stop_ok(dp)?;
    sent?;
    ensure!(
        running.xdp_attached && running.promiscuity >= 1,
        "while running, p1 should have XDP attached and be promiscuous: {running:?}"
    );
    assert_passive_counters(&fin, &frames)?;
    assert_released(&lab)?;
    Ok(())
}
