//! Changing the chain through the dataplane's command socket, on namespace
//! labs whose tools bridge their two interfaces:
//! - under continuous traffic both ways, adding a hop, removing one and
//!   swapping two loses nothing: every frame sent arrives once, intact;
//! - a restarted dataplane (SIGTERM, then a config whose `[chain]`
//!   differs) resumes the persisted chain: same spec and generation, and
//!   the traffic crosses the persisted hops;
//! - invalid SetChain requests (unknown interface, duplicate hop name, an
//!   inline interface as a tool side, a stale generation) get the right
//!   error code and change nothing, dry runs validate and change nothing,
//!   SetHopBypass of an unknown hop is NOT_FOUND, and a manual bypass
//!   moves the traffic around the tool until it is cleared.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario, ToolKind};
use tapline_bench::runner::STATE_DIR_PLACEHOLDER;
use tapline_proto::v1::dataplane_response::Response;
use tapline_proto::v1::{self, HopState, HopTraffic};
use tapline_tests::chain::{
    chain_config, chain_spec, code, drop_report, hop_name, hop_spec, hop_state, hop_status,
    spec_hops, wait_hop_state, wait_hops_up, while_streaming, Control, PacedStream, TempDir,
    ToolTap, UP_TIMEOUT,
};
use tapline_tests::{
    assert_delivered_in_order, privileged, run_concurrently, start_dataplane, stop_ok, Flow,
};

/// Rate of each direction of the continuous traffic.
const STREAM_RATE_FPS: u32 = 2_500;
/// Traffic before and after each change.
const SETTLE: Duration = Duration::from_millis(300);
/// Frames each way of the discrete checks.
const FRAMES: usize = 500;

/// Runs `FRAMES` frames each way, asserts they arrive in order, and that
/// every one crossed each tool of `through` and none crossed any tool of
/// `around`.
fn assert_path(lab: &Lab, through: &[u8], around: &[u8]) -> Result<()> {
    let taps: Vec<ToolTap> = through
        .iter()
        .chain(around)
        .map(|&k| ToolTap::open(lab, k))
        .collect::<Result<_>>()?;
    let flows = [
        Flow::gen_to_sink(lab, FRAMES)?,
        Flow::sink_to_gen(lab, FRAMES)?,
    ];
    let results = run_concurrently(&flows)?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    for tap in &taps {
        let seen = tap.take()?;
        let want = if through.contains(&tap.k) {
            (FRAMES, FRAMES)
        } else {
            (0, 0)
        };
        ensure!(
            seen == want,
            "tool {} saw {seen:?} frames (gen->sink on a, sink->gen on b), expected {want:?}",
            tap.k
        );
    }
    eprintln!("{FRAMES} frames each way crossed tools {through:?} and none of {around:?}");
    Ok(())
}

/// Applies `to` under continuous traffic both ways, waits for its hops to
/// be UP, and asserts that nothing was lost or duplicated.
fn change_under_traffic(lab: &Lab, ctl: &Control, what: &str, to: &[u8]) -> Result<()> {
    let streams = [
        PacedStream::gen_to_sink(lab, STREAM_RATE_FPS)?,
        PacedStream::sink_to_gen(lab, STREAM_RATE_FPS)?,
    ];
    let (generation, results) = while_streaming(&streams, || {
        std::thread::sleep(SETTLE);
        let generation = ctl.apply_chain(chain_spec(to))?;
        wait_hops_up(ctl, to, UP_TIMEOUT)?;
        std::thread::sleep(SETTLE);
        Ok(generation)
    })
    .with_context(|| format!("{what}: changing the chain"))?;
    let chain = ctl.get_chain()?;
    let want: Vec<String> = to.iter().map(|&k| hop_name(k)).collect();
    ensure!(
        spec_hops(&chain) == want
            && chain.generation == generation
            && chain.status.as_ref().map(|s| s.observed_generation) == Some(generation),
        "{what}: the chain is {chain:#?}"
    );
    for r in &results {
        r.assert_lossless().with_context(|| {
            format!(
                "{what}: {}; drops on the dut: {}",
                r.name,
                drop_report(lab, ctl.state_dir())
            )
        })?;
    }
    eprintln!("{what}: now {want:?} at generation {generation}, nothing lost");
    Ok(())
}

#[test]
fn adding_removing_and_swapping_hops_under_traffic_loses_nothing() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(3, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1, 2], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    wait_hops_up(&ctl, &[1, 2], UP_TIMEOUT)?;
    change_under_traffic(&lab, &ctl, "add tool3", &[1, 2, 3])?;
    assert_path(&lab, &[1, 2, 3], &[])?;
    change_under_traffic(&lab, &ctl, "remove tool2", &[1, 3])?;
    assert_path(&lab, &[1, 3], &[2])?;
    change_under_traffic(&lab, &ctl, "swap tool1 and tool3", &[3, 1])?;
    assert_path(&lab, &[1, 3], &[2])?;
    change_under_traffic(&lab, &ctl, "remove every hop", &[])?;
    assert_path(&lab, &[], &[1, 2, 3])?;
    change_under_traffic(&lab, &ctl, "add back the removed hops", &[2, 1, 3])?;
    assert_path(&lab, &[1, 2, 3], &[])?;
    stop_ok(dp)?;
    Ok(())
}

#[test]
fn a_restarted_dataplane_resumes_the_persisted_chain_over_its_config() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let prefix = unique_prefix();
    let lab = Lab::build(&prefix, Scenario::chain(3, ToolKind::Bridge)?)?;
    // One state directory for both runs (each run's own is removed with it).
    let state = TempDir::new(&format!("{prefix}-state"))?;
    let config = |hops: &[u8]| {
        chain_config(hops, None, "").replace(STATE_DIR_PLACEHOLDER, &state.0.to_string_lossy())
    };
    let ctl = Control::new(&state.0);

    let dp = start_dataplane(&lab, &config(&[1]))?;
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let generation = ctl.apply_chain(chain_spec(&[3, 2]))?;
    wait_hops_up(&ctl, &[3, 2], UP_TIMEOUT)?;
    let before = ctl.get_chain()?;
    assert_path(&lab, &[2, 3], &[1])?;
    stop_ok(dp)?;

    // The config now says [tool1, tool2]; the persisted chain wins.
    let dp = start_dataplane(&lab, &config(&[1, 2]))?;
    let after = ctl.get_chain()?;
    ensure!(
        after.spec == before.spec
            && after.generation == generation
            && after.updated_at == before.updated_at,
        "after the restart GetChain shows spec {:?} generation {} (updated {:?}); before: spec {:?} generation {} (updated {:?})",
        after.spec,
        after.generation,
        after.updated_at,
        before.spec,
        before.generation,
        before.updated_at
    );
    let observed = after.status.as_ref().map(|s| s.observed_generation);
    ensure!(
        observed == Some(generation),
        "the restarted dataplane applied generation {observed:?}, not {generation}"
    );
    let resumed = dp.lines().iter().any(|l| {
        l.contains("applying the initial chain") && l.contains("\"source\":\"persisted\"")
    });
    ensure!(
        resumed,
        "no `applying the initial chain` record with source persisted:\n{}",
        dp.lines().join("\n")
    );
    wait_hops_up(&ctl, &[3, 2], UP_TIMEOUT)?;
    assert_path(&lab, &[2, 3], &[1])?;
    eprintln!(
        "restart: chain {:?} at generation {generation} resumed over the config's [tool1, tool2]",
        spec_hops(&after)
    );
    stop_ok(dp)?;
    Ok(())
}

/// The chain without what a rejected update may change (its record of the
/// last rejected update).
fn comparable(mut chain: v1::Chain) -> v1::Chain {
    if let Some(s) = chain.status.as_mut() {
        s.last_rejected = None;
    }
    chain
}

/// Asserts `response` is an error with `want` code whose message contains
/// `says`.
fn assert_error(response: Response, want: i32, says: &str) -> Result<v1::DataplaneError> {
    match response {
        Response::Error(e) if e.code == want && e.message.contains(says) => Ok(e),
        other => bail!("expected error code {want} saying {says:?}, got {other:?}"),
    }
}

#[test]
fn invalid_commands_change_nothing_and_a_manual_bypass_moves_traffic_around_the_tool() -> Result<()>
{
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    let tool1 = hop_name(1);
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let before = ctl.get_chain()?;
    let generation = before.generation;

    let good = chain_spec(&[1, 2]);
    let with_hop = |h: v1::HopSpec| {
        let mut s = chain_spec(&[1]);
        s.hops.push(h);
        s
    };
    let invalid = [
        (
            "unknown interface",
            with_hop(hop_spec("tool2", "nosuch0", &ifs::hop_b(2))),
            "hops[1].a",
            "not found",
        ),
        (
            "duplicate hop name",
            with_hop(hop_spec(&tool1, &ifs::hop_a(2), &ifs::hop_b(2))),
            "hops[1].name",
            "duplicate hop name",
        ),
        (
            "inline interface as a tool side",
            with_hop(hop_spec("tool2", ifs::INLINE_1, &ifs::hop_b(2))),
            "hops[1].a",
            "already the dataplane's inline-1",
        ),
    ];
    for (what, spec, field, says) in &invalid {
        let e = assert_error(
            ctl.set_chain(spec.clone(), Some(generation), false)?,
            code::INVALID_ARGUMENT,
            says,
        )
        .with_context(|| format!("SetChain with an {what}"))?;
        let v = e.validation.context("no validation result")?;
        ensure!(
            !v.valid && v.errors.iter().any(|i| i.field == *field),
            "{what}: validation {v:?} does not name {field}"
        );
        let rejected = ctl
            .get_chain()?
            .status
            .and_then(|s| s.last_rejected)
            .context("no last_rejected")?;
        ensure!(
            rejected.reason == "InvalidSpec" && rejected.spec.as_ref() == Some(spec),
            "{what}: last rejected {rejected:?}"
        );
        // A dry run validates the same way and changes nothing.
        match ctl.set_chain(spec.clone(), None, true)? {
            Response::SetChain(r)
                if !r.accepted
                    && r.generation == generation
                    && r.validation.as_ref().is_some_and(|v| {
                        !v.valid && v.errors.iter().any(|i| i.field == *field)
                    }) => {}
            other => bail!("{what}: dry run answered {other:?}"),
        }
        ensure!(
            comparable(ctl.get_chain()?) == comparable(before.clone()),
            "{what}: the chain changed"
        );
        eprintln!("{what}: INVALID_ARGUMENT ({})", e.message);
    }
    for stale in [generation - 1, generation + 1] {
        let e = assert_error(
            ctl.set_chain(good.clone(), Some(stale), false)?,
            code::FAILED_PRECONDITION,
            "generation",
        )
        .with_context(|| format!("SetChain expecting generation {stale} at {generation}"))?;
        eprintln!(
            "stale generation {stale}: FAILED_PRECONDITION ({})",
            e.message
        );
    }
    // A valid dry run says so and changes nothing.
    match ctl.set_chain(good.clone(), Some(generation), true)? {
        Response::SetChain(r)
            if !r.accepted
                && r.generation == generation
                && r.validation
                    .as_ref()
                    .is_some_and(|v| v.valid && v.errors.is_empty()) => {}
        other => bail!("valid dry run answered {other:?}"),
    }
    ensure!(
        comparable(ctl.get_chain()?) == comparable(before.clone()),
        "the chain changed after invalid and dry-run updates"
    );
    // The traffic still crosses the same chain.
    assert_path(&lab, &[1], &[2])?;

    assert_error(
        ctl.set_hop_bypass("nosuch", true, "test")?,
        code::NOT_FOUND,
        "nosuch",
    )
    .context("SetHopBypass of an unknown hop")?;
    ensure!(
        comparable(ctl.get_chain()?) == comparable(before.clone()),
        "the chain changed after SetHopBypass of an unknown hop"
    );

    // A manual bypass takes the traffic around the tool...
    match ctl.set_hop_bypass(&tool1, true, "maintenance")? {
        Response::SetHopBypass(r)
            if r.hop.as_ref().is_some_and(|h| {
                h.state() == HopState::BypassedManual
                    && h.traffic() == HopTraffic::Bypassed
                    && h.manual_bypass
                    && h.message == "maintenance"
            }) => {}
        other => bail!("SetHopBypass(true) answered {other:?}"),
    }
    assert_path(&lab, &[], &[1, 2])?;
    let chain = ctl.get_chain()?;
    ensure!(
        hop_state(&chain, &tool1) == Some(HopState::BypassedManual)
            && hop_status(&chain, &tool1).is_some_and(|h| h.tool_healthy),
        "a manually bypassed healthy hop: {:?}",
        hop_status(&chain, &tool1)
    );
    // ...and clearing it brings the traffic back through.
    match ctl.set_hop_bypass(&tool1, false, "")? {
        Response::SetHopBypass(r) if r.hop.as_ref().is_some_and(|h| !h.manual_bypass) => {}
        other => bail!("SetHopBypass(false) answered {other:?}"),
    }
    wait_hop_state(&ctl, &tool1, HopState::Up, UP_TIMEOUT)?;
    assert_path(&lab, &[1], &[2])?;
    let after = ctl.get_chain()?;
    ensure!(
        after.generation == generation && after.spec == before.spec,
        "a manual bypass changed the spec or generation: {after:?}"
    );
    stop_ok(dp)?;
    Ok(())
}
