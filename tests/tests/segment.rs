//! The stats segment in `state_dir` is what the sidecar reads: while the
//! dataplane runs, an unprivileged read-only mapping shows per-queue counters
//! equal to the frames sent (packets and bytes), the queue descriptions
//! (role, interface, mode), worker counters and batch-latency percentiles,
//! and a fresh heartbeat; after SIGTERM the counters stay readable and the
//! state says stopped; after SIGKILL the heartbeat goes stale; a restart
//! publishes a new file with a new epoch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::{lab_config, DataplaneProcess, StartOptions, STATE_DIR_PLACEHOLDER};
use tapline_segment::{SegmentReader, SegmentState, Snapshot};
use tapline_tests::{
    open_raw, passive_frames, privileged, run_concurrently, send_paced, stop_ok, total_bytes, Flow,
};

const FRAMES: usize = 2_000;
/// How long a heartbeat may be old and still count as live.
const LIVE: Duration = Duration::from_secs(1);

fn config(state_dir: &str) -> String {
    lab_config(
        Some(ifs::PASSIVE_1),
        Some((ifs::INLINE_1, ifs::INLINE_2)),
        "kernel_stats_interval_ms = 100\n",
        "",
    )
    .replace(STATE_DIR_PLACEHOLDER, state_dir)
}

fn start(lab: &Lab, config: &str) -> Result<DataplaneProcess> {
    DataplaneProcess::start(
        &lab.dut,
        config,
        &StartOptions {
            expect_ready: true,
            ..Default::default()
        },
    )
}

/// Polls the segment until `done` holds or 5 s pass.
fn wait_for(dir: &Path, what: &str, done: impl Fn(&Snapshot) -> bool) -> Result<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = SegmentReader::open(dir)?.snapshot();
        if done(&s) {
            return Ok(s);
        }
        ensure!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last snapshot: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port<'a>(s: &'a Snapshot, role: &str) -> Result<&'a tapline_segment::QueueSnapshot> {
    s.queues
        .iter()
        .find(|q| q.info.role == role)
        .with_context(|| format!("no {role} slot in {s:#?}"))
}

#[test]
fn segment_counters_equal_frames_sent_and_outlive_the_process() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let flow = Flow::gen_to_sink(&lab, FRAMES)?;
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    let captured = passive_frames(FRAMES);
    let dp = start(&lab, &config(STATE_DIR_PLACEHOLDER))?;
    let dir = dp.state_dir().to_path_buf();

    let results = run_concurrently(std::slice::from_ref(&flow))?;
    ensure!(
        results[0].received.len() == FRAMES,
        "bridge lost frames: {}",
        results[0].received.len()
    );
    send_paced(&tap, &captured, Instant::now() + Duration::from_secs(20))?;

    let s = wait_for(&dir, "all frames counted", |s| {
        port(s, "inline-1").is_ok_and(|q| q.rx_packets == FRAMES as u64)
            && port(s, "passive-1").is_ok_and(|q| q.rx_packets == FRAMES as u64)
    })?;
    let i1 = port(&s, "inline-1")?;
    let i2 = port(&s, "inline-2")?;
    let p1 = port(&s, "passive-1")?;
    let sent_bytes = total_bytes(&flow.frames);
    ensure!(
        i1.rx_bytes == sent_bytes,
        "inline-1 rx_bytes {} != {sent_bytes}",
        i1.rx_bytes
    );
    ensure!(
        i2.tx_packets == FRAMES as u64 && i2.tx_bytes == sent_bytes,
        "inline-2 tx {} / {} bytes",
        i2.tx_packets,
        i2.tx_bytes
    );
    ensure!(
        p1.rx_bytes == total_bytes(&captured),
        "passive-1 rx_bytes {}",
        p1.rx_bytes
    );
    for (q, ifname) in [
        (i1, ifs::INLINE_1),
        (i2, ifs::INLINE_2),
        (p1, ifs::PASSIVE_1),
    ] {
        ensure!(
            q.info.ifname == ifname && q.info.queue == 0,
            "slot description {:?}",
            q.info
        );
        ensure!(
            q.info.mode.ends_with("-copy"),
            "veth runs in copy mode, slot says {:?}",
            q.info.mode
        );
        ensure!(
            q.drops.iter().all(|&d| d == 0),
            "unexpected drops {:?}",
            q.drops
        );
    }
    ensure!(s.is_live(LIVE), "heartbeat not fresh while running: {s:#?}");
    ensure!(
        s.workers.iter().map(|w| w.batches).sum::<u64>() > 0,
        "no batches counted"
    );
    let lat = wait_for(&dir, "a latency window with batches", |s| {
        s.workers
            .iter()
            .any(|w| w.latency.is_some_and(|l| l.count > 0))
    })?;
    for w in &lat.workers {
        if let Some(l) = w.latency.filter(|l| l.count > 0) {
            ensure!(
                l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns && l.max_ns > 0,
                "percentiles out of order: {l:?}"
            );
        }
    }

    let reader = SegmentReader::open(&dir)?;
    let fin = stop_ok(dp)?;
    let after = reader.snapshot();
    ensure!(
        after.state == SegmentState::Stopped as u64,
        "state after SIGTERM: {}",
        after.state
    );
    ensure!(
        port(&after, "inline-1")?.rx_packets == FRAMES as u64,
        "final counters changed after stop"
    );
    ensure!(
        fin.counter("inline-1", "rx_packets") == FRAMES as u64,
        "log and segment disagree"
    );
    Ok(())
}

#[test]
fn sigkill_stales_the_heartbeat_and_a_restart_gets_a_new_epoch() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let dir = std::env::temp_dir().join(format!("{}-state", unique_prefix()));
    std::fs::create_dir_all(&dir)?;
    let cfg = config(&dir.to_string_lossy());

    let dp = start(&lab, &cfg)?;
    let first = wait_for(&dir, "running state", |s| s.is_live(LIVE))?;
    let reader = SegmentReader::open(&dir)?;
    dp.signal(nix::sys::signal::Signal::SIGKILL)?;
    let killed = dp.wait(Duration::from_secs(5));
    ensure!(killed.is_ok(), "SIGKILLed dataplane did not exit");
    std::thread::sleep(LIVE + Duration::from_millis(300));
    let stale = reader.snapshot();
    ensure!(
        !stale.is_live(LIVE),
        "heartbeat still fresh 1.3 s after SIGKILL: {stale:#?}"
    );
    // SIGKILL leaves the state at running: only the heartbeat tells.
    ensure!(stale.state == SegmentState::Running as u64);

    let dp = start(&lab, &cfg)?;
    ensure!(
        !reader.is_current(),
        "the restarted dataplane must publish a new file"
    );
    let second = wait_for(&dir, "running again", |s| s.is_live(LIVE))?;
    ensure!(
        second.epoch != first.epoch,
        "epoch did not change across restarts"
    );
    stop_ok(dp)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
