//! The inline bridge is transparent: 10,000 frames each way between `g0` and
//! `s0`, sent concurrently through `i1 <-> i2` (xdp mode `auto`), arrive
//! byte for byte identical, in order, exactly once, including 802.1Q-tagged
//! frames, a non-IP ethertype, 60-byte and 1514-byte frames; the final
//! counters equal what was sent in frames and bytes, and after SIGTERM the
//! dataplane leaves no XDP program and no promiscuity behind.

use anyhow::Result;
use tapline_bench::lab::{unique_prefix, Lab, Scenario};
use tapline_tests::{
    assert_bridge_counters, assert_delivered_in_order, assert_released, config_for, privileged,
    run_concurrently, start_dataplane, stop_ok, Flow,
};

const FRAMES_EACH_WAY: usize = 10_000;

#[test]
fn ten_thousand_frames_each_way_arrive_identical_and_in_order() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Inline)?;
    let flows = [
        Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
    ];
    let dp = start_dataplane(&lab, &config_for(&lab, "auto"))?;
    let results = run_concurrently(&flows);
    let fin = stop_ok(dp)?;
    let results = results?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)?;
    assert_released(&lab)?;
    Ok(())
}
