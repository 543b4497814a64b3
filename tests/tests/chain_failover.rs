//! The chain when a tool fails, on namespace labs whose tools bridge their
//! two interfaces:
//! - fail open: a tool whose link goes down under continuous paced traffic
//!   is DOWN and bypassed within interval x misses + timeout; the frames
//!   lost meanwhile span less than a generous bound, every other frame
//!   arrives intact and once; when the link returns the hop is UP after the
//!   hold time and the traffic goes through the tool again;
//! - fail closed: with the tool down (and during the hold time after it
//!   returns) no frame crosses, every one counted as a `hop_down` drop;
//!   after the hold time traffic flows through the tool again;
//! - forged heartbeats sent into inline-1 and inline-2 (replays of real
//!   ones captured on a tool, and ones with random tags) are dropped and
//!   counted, reach neither the tool nor the far side, and do not keep a
//!   dead hop UP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, rx_packets, unique_prefix, Lab, Scenario, ToolKind};
use tapline_bench::traffic::is_ours;
use tapline_proto::v1::{HopState, HopTraffic};
use tapline_segment::DropReason;
use tapline_tests::chain::{
    chain_config, drop_report, heartbeat_frames, hop_drops, hop_name, hop_state, hop_status,
    port_drops, stats, wait_hop_state, wait_hops_up, while_streaming, Control, Delivery,
    PacedStream, StreamResult, ToolTap, HEARTBEAT_HOLD_MS, HEARTBEAT_INTERVAL_MS, HEARTBEAT_MISSES,
    HEARTBEAT_TIMEOUT_MS, UP_TIMEOUT,
};
use tapline_tests::{
    assert_delivered_in_order, frame_plan, open_raw, privileged, run_concurrently, send_paced,
    start_dataplane, stop_ok, Flow, EXCHANGE_TIMEOUT,
};

/// Rate of the continuous gen -> sink stream of the failover test.
const STREAM_RATE_FPS: u32 = 4_000;
/// The generous bound on the loss window of a failover (the design figure
/// is interval x misses + timeout = 50 ms).
const MAX_LOSS_WINDOW: Duration = Duration::from_millis(500);
/// How long a hop may take to be judged DOWN, as the test observes it.
const MAX_DETECTION: Duration = Duration::from_millis(500);
/// Slack on either side of the failover window within which the lost
/// frames must have been sent (clock reads of two threads, frames queued
/// in the tool when its link went down).
const WINDOW_SLACK: Duration = Duration::from_millis(50);
/// Frames each way of the discrete checks.
const FRAMES: usize = 500;
/// After a blocked send, how long a frame would have had to arrive.
const BLOCKED_LINGER: Duration = Duration::from_millis(300);
/// Forged heartbeats per millisecond on each inline port.
const FORGED_PER_MS: usize = 2;
const RECV_BUF_BYTES: usize = 2048;

fn hold() -> Duration {
    Duration::from_millis(HEARTBEAT_HOLD_MS)
}

/// Rx packets of tool `k`'s side a.
fn tool_rx(lab: &Lab, k: u8) -> Result<u64> {
    rx_packets(lab.tool(k)?, ifs::TOOL_A)
}

/// What the failover test saw, and when: the instants around the failure
/// of tool 1's link and its return, and tool 1's side-a rx counter.
struct Marks {
    down_at: Instant,
    detected_at: Instant,
    link_up_at: Instant,
    forwarding_at: Instant,
    up_at: Instant,
    rx_up_at: Instant,
    end_at: Instant,
    rx_before_down: (Instant, u64, u64),
    rx_link_up: u64,
    rx_up: u64,
    rx_end: u64,
}

/// Takes tool 1's link down and up again while the stream runs (after
/// 500 ms of it), waiting for the hop to go DOWN and come back UP, and
/// notes the instants and tool 1's counter along the way.
fn fail_and_restore_tool_1(lab: &Lab, ctl: &Control, tool1: &str) -> Result<Marks> {
    std::thread::sleep(Duration::from_millis(300));
    let c0 = tool_rx(lab, 1)?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let rx_before_down = (t, c0, tool_rx(lab, 1)?);
    let down_at = Instant::now();
    lab.tool_link(1, false)?;
    wait_hop_state(ctl, tool1, HopState::Down, Duration::from_secs(5))?;
    let detected_at = Instant::now();
    // Bypassed: the stream keeps flowing through tool 2 alone.
    std::thread::sleep(Duration::from_millis(300));
    let link_up_at = Instant::now();
    lab.tool_link(1, true)?;
    let forwarding_at = Instant::now();
    let rx_link_up = tool_rx(lab, 1)?;
    wait_hop_state(ctl, tool1, HopState::Up, hold() + Duration::from_secs(5))?;
    let up_at = Instant::now();
    let rx_up = tool_rx(lab, 1)?;
    let rx_up_at = Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    let end_at = Instant::now();
    let rx_end = tool_rx(lab, 1)?;
    Ok(Marks {
        down_at,
        detected_at,
        link_up_at,
        forwarding_at,
        up_at,
        rx_up_at,
        end_at,
        rx_before_down,
        rx_link_up,
        rx_up,
        rx_end,
    })
}

/// The failover: every frame went through tool 1 before it, the hop went
/// DOWN within the detection bound, the frames lost were all sent within
/// the failover window and span less than the loss bound, and traffic kept
/// flowing around the tool.
fn check_failover(r: &StreamResult, d: &Delivery, m: &Marks) -> Result<()> {
    // Before the failure every frame went through tool 1.
    let (t0, c0, c1) = m.rx_before_down;
    let through = r.sent_between(t0, m.down_at - Duration::from_millis(150));
    ensure!(
        c1 - c0 >= through as u64,
        "before the failure tool 1 received {} frames while {through} were sent through it",
        c1 - c0
    );

    let detection = m.detected_at - m.down_at;
    let loss_window = r.gap * d.lost.len() as u32;
    let span = match (d.lost.first(), d.lost.last()) {
        (Some(&a), Some(&b)) => r.sent_at[b as usize] - r.sent_at[a as usize],
        _ => Duration::ZERO,
    };
    eprintln!(
        "failover: hop DOWN observed {detection:?} after the link went down (design: {} ms); \
         {} of {} frames lost at {} frames/s: loss window {loss_window:?} (lost frames x gap), \
         sent over {span:?}; {} out of order",
        HEARTBEAT_INTERVAL_MS * HEARTBEAT_MISSES + HEARTBEAT_TIMEOUT_MS,
        d.lost.len(),
        d.sent,
        STREAM_RATE_FPS,
        d.out_of_order
    );
    ensure!(
        detection < MAX_DETECTION,
        "the hop took {detection:?} to go DOWN"
    );
    ensure!(
        loss_window < MAX_LOSS_WINDOW,
        "{} frames lost: a loss window of {loss_window:?}",
        d.lost.len()
    );
    // Every lost frame was sent between the link going down and the hop
    // being bypassed: traffic kept flowing around the tool, and nothing was
    // lost when it came back.
    let (from, to) = (m.down_at - WINDOW_SLACK, m.detected_at + WINDOW_SLACK);
    if let Some(&seq) = d
        .lost
        .iter()
        .find(|&&s| !(from..to).contains(&r.sent_at[s as usize]))
    {
        let at = r.sent_at[seq as usize];
        bail!(
            "frame {seq} was lost though sent {} the failover window ({} lost in all)",
            if at < from {
                format!("{:?} before", from - at)
            } else {
                format!("{:?} after", at - to)
            },
            d.lost.len()
        );
    }
    let bypassed = r.sent_between(m.detected_at, m.link_up_at);
    ensure!(bypassed > 0, "no frame was sent while the hop was bypassed");

    Ok(())
}

/// The recovery: the hop came back UP only after the hold time, traffic
/// went around tool 1 until then and through it afterwards.
fn check_recovery(r: &StreamResult, m: &Marks) -> Result<()> {
    let (_, c0, c1) = m.rx_before_down;
    // Back UP only after the hold time, with the traffic around the tool
    // until then and through it afterwards.
    let to_up = m.up_at - m.link_up_at;
    eprintln!(
        "recovery: hop UP observed {to_up:?} after the link came back (hold {HEARTBEAT_HOLD_MS} ms)"
    );
    ensure!(
        to_up >= hold(),
        "the hop came UP {to_up:?} after its link, before the hold time"
    );
    let held = r.sent_between(m.forwarding_at, m.up_at);
    ensure!(
        (m.rx_up - m.rx_link_up) < held as u64 / 4,
        "during the hold time tool 1 received {} frames of the {held} sent: traffic went through a DOWN hop",
        m.rx_up - m.rx_link_up
    );
    let resumed = r.sent_between(m.rx_up_at, m.end_at - Duration::from_millis(50));
    ensure!(
        m.rx_end - m.rx_up >= resumed as u64,
        "after the hop came UP tool 1 received {} frames while {resumed} were sent",
        m.rx_end - m.rx_up
    );
    eprintln!(
        "tool 1 side a received {} frames before the failure, {} during the hold time ({held} sent), {} after UP ({resumed} sent)",
        c1 - c0,
        m.rx_up - m.rx_link_up,
        m.rx_end - m.rx_up
    );
    Ok(())
}

#[test]
fn a_tool_whose_link_goes_down_is_bypassed_within_the_detection_window_and_resumes_after_hold(
) -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1, 2], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    wait_hops_up(&ctl, &[1, 2], UP_TIMEOUT)?;
    let tool1 = hop_name(1);
    let stream = PacedStream::gen_to_sink(&lab, STREAM_RATE_FPS)?;
    let (m, results) = while_streaming(std::slice::from_ref(&stream), || {
        fail_and_restore_tool_1(&lab, &ctl, &tool1)
    })?;
    let drops = drop_report(&lab, dp.state_dir());
    let lines = stop_ok(dp)?.lines;
    let r = &results[0];
    let d = r.delivery();
    eprintln!(
        "lost: {:?}; drops on the dut: {drops}",
        r.lost_runs(&d.lost, m.down_at)
    );
    ensure!(
        d.corrupted.is_empty() && d.duplicates == 0,
        "{}: {} corrupted ({:?}), {} duplicates",
        r.name,
        d.corrupted.len(),
        d.corrupted.first(),
        d.duplicates
    );

    check_failover(r, &d, &m)?;
    check_recovery(r, &m)?;
    let logged = |msg: &str| {
        lines
            .iter()
            .any(|l| l.contains(msg) && l.contains(&format!("\"hop\":\"{tool1}\"")))
    };
    ensure!(
        logged("hop DOWN") && logged("HeartbeatsLost"),
        "no `hop DOWN` record for {tool1}"
    );
    Ok(())
}

/// Sends `FRAMES` frames each way (not flow-controlled) and asserts none
/// arrives.
fn assert_nothing_crosses(lab: &Lab) -> Result<()> {
    let flows = [Flow::gen_to_sink(lab, 0)?, Flow::sink_to_gen(lab, 0)?];
    for f in &flows {
        send_paced(
            &f.tx,
            &frame_plan(FRAMES, f.sender),
            Instant::now() + EXCHANGE_TIMEOUT,
        )?;
    }
    std::thread::sleep(BLOCKED_LINGER);
    let mut buf = vec![0u8; RECV_BUF_BYTES];
    for f in &flows {
        let mut got = 0;
        while let Some(meta) = f.rx.recv(&mut buf)? {
            if is_ours(&buf[..meta.len], f.sender) {
                got += 1;
            }
        }
        ensure!(
            got == 0,
            "{}: {got} of {FRAMES} frames crossed a DOWN fail-closed hop",
            f.name
        );
    }
    Ok(())
}

/// Runs `FRAMES` frames each way and asserts they arrive in order and
/// that every one crossed tool `k`.
fn assert_through_tool(lab: &Lab, k: u8) -> Result<()> {
    let tap = ToolTap::open(lab, k)?;
    let flows = [
        Flow::gen_to_sink(lab, FRAMES)?,
        Flow::sink_to_gen(lab, FRAMES)?,
    ];
    let results = run_concurrently(&flows)?;
    for (flow, result) in flows.iter().zip(&results) {
        assert_delivered_in_order(flow, result)?;
    }
    let seen = tap.take()?;
    ensure!(
        seen == (FRAMES, FRAMES),
        "tool {k} saw {seen:?} of ({FRAMES}, {FRAMES}) frames (gen->sink on a, sink->gen on b)"
    );
    Ok(())
}

#[test]
fn a_fail_closed_hop_drops_everything_while_down_and_through_the_hold_time() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1], Some("drop"), ""))?;
    let ctl = Control::new(dp.state_dir());
    let tool1 = hop_name(1);
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    assert_through_tool(&lab, 1).context("before the failure")?;

    let down_at = Instant::now();
    lab.tool_link(1, false)?;
    wait_hop_state(&ctl, &tool1, HopState::Down, Duration::from_secs(5))?;
    eprintln!(
        "fail-closed hop DOWN observed {:?} after the link went down",
        down_at.elapsed()
    );
    let hop = ctl.get_chain()?;
    let status = hop_status(&hop, &tool1).context("hop status")?;
    ensure!(
        status.traffic() == HopTraffic::Dropped && !status.tool_healthy,
        "a DOWN fail-closed hop: {status:?}"
    );
    let before = stats(dp.state_dir())?;
    assert_nothing_crosses(&lab).context("while the tool is down")?;
    let after = stats(dp.state_dir())?;
    let dropped = |s| hop_drops(s, &tool1, DropReason::HopDown);
    let n = FRAMES as u64;
    ensure!(
        dropped(&after) - dropped(&before) == 2 * n,
        "hop {tool1} counted {} hop_down drops for 2 x {n} frames",
        dropped(&after) - dropped(&before)
    );
    for role in ["inline-1", "inline-2"] {
        let got = port_drops(&after, role, DropReason::HopDown)
            - port_drops(&before, role, DropReason::HopDown);
        ensure!(
            got == n,
            "{role} counted {got} hop_down drops for {n} frames"
        );
    }
    eprintln!(
        "while DOWN: 0 of 2 x {n} frames crossed; {} hop_down drops counted",
        dropped(&after) - dropped(&before)
    );

    let link_up_at = Instant::now();
    lab.tool_link(1, true)?;
    // The tool forwards again, but the hop stays DOWN for the hold time,
    // and so closed.
    assert_nothing_crosses(&lab).context("during the hold time")?;
    let state = hop_state(&ctl.get_chain()?, &tool1);
    let checked_after = link_up_at.elapsed();
    ensure!(
        checked_after < hold(),
        "the check within the hold time ended {checked_after:?} after the link came back: too late"
    );
    ensure!(
        state == Some(HopState::Down),
        "the hop is {state:?} {checked_after:?} after its link came back, within the hold time"
    );
    wait_hop_state(&ctl, &tool1, HopState::Up, hold() + Duration::from_secs(5))?;
    let to_up = link_up_at.elapsed();
    eprintln!(
        "fail-closed hop UP {to_up:?} after the link came back (hold {HEARTBEAT_HOLD_MS} ms)"
    );
    ensure!(
        to_up >= hold(),
        "UP {to_up:?} after the link came back: before the hold time"
    );
    assert_through_tool(&lab, 1).context("after the hold time")?;
    stop_ok(dp)?;
    Ok(())
}

/// Heartbeat field offsets (see the dataplane's `chain::heartbeat`).
const HB_SEQ: usize = 26;
const HB_TAG: usize = 42;

/// A deterministic pseudo-random byte stream.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

/// Forgeries of the captured heartbeats: each replayed as is, with a
/// random tag, with later sequence numbers (and random tags), and frames
/// with the heartbeat ethertype and random contents, short and long.
fn forgeries(captured: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut out = Vec::new();
    for c in captured {
        out.push(c.clone());
        let mut f = c.clone();
        rng.fill(&mut f[HB_TAG..HB_TAG + 8]);
        out.push(f);
        let seq = u64::from_le_bytes(c[HB_SEQ..HB_SEQ + 8].try_into().expect("8 bytes"));
        for ahead in [1u64, 2, 5, 30, 1000] {
            let mut f = c.clone();
            f[HB_SEQ..HB_SEQ + 8].copy_from_slice(&(seq + ahead).to_le_bytes());
            rng.fill(&mut f[HB_TAG..HB_TAG + 8]);
            out.push(f);
        }
    }
    for len in [60usize, 64, 1514] {
        let mut f = vec![0u8; len];
        rng.fill(&mut f);
        f[0..6].copy_from_slice(&captured[0][0..6]);
        f[6..12].copy_from_slice(&captured[0][6..12]);
        f[12..14].copy_from_slice(&0x88B6u16.to_be_bytes());
        f[14..18].copy_from_slice(b"TLHB");
        out.push(f);
    }
    out
}

/// Waits for `n` heartbeats arriving on `ifname` of tool 1.
fn capture_heartbeats(lab: &Lab, ifname: &str, n: usize) -> Result<Vec<Vec<u8>>> {
    let sock = open_raw(lab.tool(1)?, ifname)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        ensure!(
            Instant::now() < deadline,
            "only {} heartbeats captured on tool 1's {ifname}",
            got.len()
        );
        sock.wait_readable(10)?;
        got.extend(heartbeat_frames(&sock)?);
    }
    got.truncate(n);
    Ok(got)
}

#[test]
fn forged_heartbeats_from_the_wire_are_dropped_and_do_not_keep_a_dead_hop_up() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    let tool1 = hop_name(1);
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;

    // Real heartbeats, both directions, as the tool receives them.
    let mut captured = capture_heartbeats(&lab, ifs::TOOL_A, 3)?;
    captured.extend(capture_heartbeats(&lab, ifs::TOOL_B, 3)?);
    let forged = forgeries(&captured);
    eprintln!(
        "captured {} real heartbeats; {} forgeries",
        captured.len(),
        forged.len()
    );

    // Watch everywhere a forgery must not arrive.
    let watch = [
        ("gen", open_raw(lab.gen(), ifs::GEN)?),
        ("sink", open_raw(lab.sink(), ifs::SINK)?),
        ("tool1 a", open_raw(lab.tool(1)?, ifs::TOOL_A)?),
        ("tool1 b", open_raw(lab.tool(1)?, ifs::TOOL_B)?),
    ];
    let inject = [
        ("inline-1", open_raw(lab.gen(), ifs::GEN)?),
        ("inline-2", open_raw(lab.sink(), ifs::SINK)?),
    ];
    let before = stats(dp.state_dir())?;
    let stop = AtomicBool::new(false);
    let (timeline, sent) = std::thread::scope(|s| -> Result<_> {
        let senders: Vec<_> = inject
            .iter()
            .map(|(_, sock)| {
                let (stop, forged) = (&stop, &forged);
                s.spawn(move || -> Result<u64> {
                    let mut sent = 0u64;
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..FORGED_PER_MS {
                            if sock.send(&forged[i % forged.len()])? {
                                sent += 1;
                            }
                            i += 1;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(sent)
                })
            })
            .collect();
        let timeline = (|| -> Result<(Duration, Duration)> {
            // Forgeries flow while the hop is UP...
            std::thread::sleep(Duration::from_millis(300));
            // ...and while its tool dies: they must not keep it UP.
            let down_at = Instant::now();
            lab.tool_link(1, false)?;
            wait_hop_state(&ctl, &tool1, HopState::Down, Duration::from_secs(5))?;
            let detection = down_at.elapsed();
            // Nor bring it back: longer than the hold time.
            std::thread::sleep(hold() + Duration::from_millis(300));
            Ok((detection, down_at.elapsed()))
        })();
        stop.store(true, Ordering::Relaxed);
        let sent = senders
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("sender panicked"))?)
            .collect::<Result<Vec<u64>>>()?;
        Ok((timeline?, sent))
    })?;
    let (detection, replayed_for) = timeline;
    let state = hop_state(&ctl.get_chain()?, &tool1);
    ensure!(
        state == Some(HopState::Down),
        "after {replayed_for:?} of forged heartbeats with its tool down, the hop is {state:?}"
    );
    eprintln!(
        "with forged heartbeats flowing, the hop went DOWN {detection:?} after its link and stayed DOWN for {:?}",
        replayed_for - detection
    );

    // Every forgery was dropped at the port it arrived on, and counted.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let after = stats(dp.state_dir())?;
        let counted: Vec<u64> = inject
            .iter()
            .map(|(role, _)| {
                port_drops(&after, role, DropReason::HeartbeatFromWire)
                    - port_drops(&before, role, DropReason::HeartbeatFromWire)
            })
            .collect();
        if counted == sent {
            eprintln!("forged heartbeats sent {sent:?}, heartbeat_from_wire drops {counted:?} (inline-1, inline-2)");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "forged heartbeats sent {sent:?} (inline-1, inline-2), heartbeat_from_wire drops counted {counted:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (name, sock) in &watch {
        let seen = heartbeat_frames(sock)?;
        let leaked = seen.iter().filter(|f| forged.contains(f)).count();
        ensure!(leaked == 0, "{leaked} forged heartbeats arrived at {name}");
        if matches!(*name, "gen" | "sink") {
            ensure!(
                seen.is_empty(),
                "{} heartbeat-ethertype frames arrived at {name}",
                seen.len()
            );
        }
    }
    let lines = stop_ok(dp)?.lines;
    let down = lines
        .iter()
        .rposition(|l| l.contains("hop DOWN"))
        .context("no `hop DOWN` record")?;
    ensure!(
        !lines[down..].iter().any(|l| l.contains("hop UP")),
        "the hop came UP again after its tool died: {:?}",
        &lines[down..]
    );
    Ok(())
}
