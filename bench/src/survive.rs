//! `tapline-bench survive`: what a dataplane crash and a restart cost the
//! wire. Under a paced stream gen -> i1 [dut] i2 -> sink, the dataplane is
//! SIGKILLed, restarted a second later, and so on, `events` times; each
//! kill and each restart is measured (largest gap between two arrivals at
//! the sink, frames lost among those sent around it). Two modes in the
//! same run: `keep` (the sidecar keeps the kernel fallback forwarding) and
//! `detach` (`fallback.on_exit = "detach"`, what tapline did before: the
//! programs go with the process and the link is dark until the restart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::chain_bench::{distribution, Distribution};
use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::report::{markdown_table, Machine};
use crate::runner::{lab_config, workspace_binary, DataplaneProcess};
use crate::traffic::{build_frame, is_ours, FrameKind};
use tapline_dataplane::xdp::RawSocket;

const PREFIX: &str = "tlsv";
const SENDER: u8 = 7;
/// Frame length without FCS.
const FRAME_LEN: usize = 60;
/// The stream runs this long before the first event and after the last.
const LEAD: Duration = Duration::from_millis(500);
/// Time between a kill and the restart, and between a restart and the
/// next kill.
const DOWN_FOR: Duration = Duration::from_secs(1);
const UP_FOR: Duration = Duration::from_millis(800);
/// Margin before an event within which a lost frame counts for it.
const BEFORE: Duration = Duration::from_millis(50);
const KEEPER_TIMEOUT: Duration = Duration::from_secs(10);
const SOCKET_BUFFER_BYTES: usize = 32 << 20;

/// Settings of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SurviveConfig {
    /// Kills (and as many restarts) per mode.
    pub events: u32,
    pub rate_pps: u64,
    /// `fallback.stall_ms` of the keep mode.
    pub stall_ms: u32,
}

/// One kill or restart.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub index: u32,
    pub largest_gap_ms: f64,
    pub lost_frames: u64,
}

/// One mode's events and their distributions.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: &'static str,
    pub events: Vec<Event>,
    pub kill_gap_ms: Distribution,
    pub kill_lost: Distribution,
    pub restart_gap_ms: Distribution,
    pub restart_lost: Distribution,
    pub sent: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurviveResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: SurviveConfig,
    pub modes: Vec<ModeResult>,
}

fn open_raw(ns: &Netns, ifname: &str) -> Result<RawSocket> {
    let s = ns
        .enter(|| RawSocket::open(ifname))?
        .with_context(|| format!("raw socket on {ifname}"))?;
    s.set_recv_buffer(SOCKET_BUFFER_BYTES)?;
    s.set_send_buffer(SOCKET_BUFFER_BYTES)?;
    Ok(s)
}

fn seq_of(frame: &[u8]) -> Option<u32> {
    // IPv4/UDP frames of `build_frame`: the sequence number after the
    // Ethernet, IP and UDP headers.
    let off = 14 + 28;
    Some(u32::from_be_bytes(
        frame.get(off..off + 4)?.try_into().ok()?,
    ))
}

/// A paced stream: `sent_at[seq]`, `arrived_at[seq]` (first arrival).
struct Stream {
    sent_at: Vec<Instant>,
    arrived_at: Vec<Option<Instant>>,
}

fn stream(lab: &Lab, rate: u64, stop: &AtomicBool) -> Result<Stream> {
    let tx = open_raw(lab.gen(), ifs::GEN)?;
    let rx = open_raw(lab.sink(), ifs::SINK)?;
    let gap = Duration::from_secs(1) / rate as u32;
    let arrivals: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let sent_at = std::thread::scope(|s| -> Result<Vec<Instant>> {
        let r = s.spawn(|| -> Result<()> {
            let mut buf = vec![0u8; 2048];
            let mut linger: Option<Instant> = None;
            loop {
                while let Some(m) = rx.recv(&mut buf)? {
                    let f = &buf[..m.len];
                    if is_ours(f, SENDER) {
                        if let Some(seq) = seq_of(f) {
                            arrivals
                                .lock()
                                .expect("arrivals")
                                .push((seq, Instant::now()));
                        }
                    }
                }
                if done.load(Ordering::Acquire) {
                    let at = *linger.get_or_insert_with(Instant::now);
                    if at.elapsed() > Duration::from_millis(300) {
                        return Ok(());
                    }
                }
                rx.wait_readable(2)?;
            }
        });
        let start = Instant::now();
        let mut sent_at = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_nanos() / gap.as_nanos()) as usize + 1;
            while sent_at.len() < due {
                let seq = sent_at.len() as u32;
                if !tx.send(&build_frame(FrameKind::Udp4, FRAME_LEN, SENDER, seq, 0))? {
                    break;
                }
                sent_at.push(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        done.store(true, Ordering::Release);
        r.join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        Ok(sent_at)
    })?;
    let mut arrived_at = vec![None; sent_at.len()];
    for (seq, t) in arrivals.into_inner().expect("arrivals") {
        if let Some(a) = arrived_at.get_mut(seq as usize) {
            a.get_or_insert(t);
        }
    }
    Ok(Stream {
        sent_at,
        arrived_at,
    })
}

impl Stream {
    /// Frames sent in `[from, to)` that never arrived.
    fn lost(&self, from: Instant, to: Instant) -> u64 {
        self.sent_at
            .iter()
            .zip(&self.arrived_at)
            .filter(|(s, a)| **s >= from && **s < to && a.is_none())
            .count() as u64
    }

    /// The largest gap between consecutive arrivals in `[from, to]`.
    fn largest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut at: Vec<Instant> = self
            .arrived_at
            .iter()
            .flatten()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        at.sort();
        // The window's edges count too: from its start to the first
        // arrival, from the last arrival to its end.
        let first = at.first().map_or(to - from, |f| *f - from);
        let last = at.last().map_or(to - from, |l| to - *l);
        at.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
            .max(first)
            .max(last)
    }
}

/// When a kill happened, when the restart began, when the cycle ended.
type Marks = (Instant, Instant, Instant);

fn wait_log(dp: &DataplaneProcess, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if dp.lines().iter().any(|l| l.contains(needle)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("no {needle:?} in the dataplane's log within {timeout:?}")
}

fn run_mode(
    lab: &Lab,
    cfg: &SurviveConfig,
    mode: &'static str,
    progress: &mut impl FnMut(&str, &Event),
) -> Result<ModeResult> {
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let extra = format!(
        "[fallback]\nstall_ms = {}\non_exit = \"{mode}\"\n[control]\ngrpc_listen = \"127.0.0.1:0\"\nhealth_listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n",
        cfg.stall_ms
    );
    let config = lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", &extra).replace(
        crate::runner::STATE_DIR_PLACEHOLDER,
        &state.to_string_lossy(),
    );
    let cfg_path = dir.join("tapline.toml");
    std::fs::write(&cfg_path, &config)?;
    let mut sidecar = std::process::Command::new(workspace_binary("tapline-control")?)
        .arg("--config")
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tapline-control")?;
    let start = || -> Result<DataplaneProcess> {
        let dp = DataplaneProcess::start_ready(&lab.dut, &config)?;
        if mode == "keep" {
            wait_log(
                &dp,
                "the link keeper holds the inline links",
                KEEPER_TIMEOUT,
            )?;
        }
        Ok(dp)
    };
    let stop = AtomicBool::new(false);
    let res = std::thread::scope(|s| -> Result<(Vec<Marks>, Stream)> {
        let h = s.spawn(|| stream(lab, cfg.rate_pps, &stop));
        let out = (|| -> Result<Vec<Marks>> {
            let mut dp = start()?;
            std::thread::sleep(LEAD);
            let mut marks = Vec::new();
            for _ in 0..cfg.events {
                let kill = Instant::now();
                dp.signal(Signal::SIGKILL)?;
                drop(dp);
                std::thread::sleep(DOWN_FOR);
                let restart = Instant::now();
                dp = start()?;
                std::thread::sleep(UP_FOR);
                marks.push((kill, restart, Instant::now()));
            }
            std::thread::sleep(LEAD);
            let _ = dp.stop();
            Ok(marks)
        })();
        stop.store(true, Ordering::Relaxed);
        let st = h.join().map_err(|_| anyhow::anyhow!("stream panicked"))??;
        Ok((out?, st))
    });
    let _ = sidecar.kill();
    let _ = sidecar.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (marks, st) = res?;
    let mut events = Vec::new();
    for (i, &(kill, restart, end)) in marks.iter().enumerate() {
        let e = Event {
            kind: "kill",
            index: i as u32,
            largest_gap_ms: st.largest_gap(kill - BEFORE, restart).as_secs_f64() * 1e3,
            lost_frames: st.lost(kill - BEFORE, restart),
        };
        progress(mode, &e);
        events.push(e);
        let e = Event {
            kind: "restart",
            index: i as u32,
            largest_gap_ms: st.largest_gap(restart, end).as_secs_f64() * 1e3,
            lost_frames: st.lost(restart, end - BEFORE),
        };
        progress(mode, &e);
        events.push(e);
    }
    let col = |kind: &str, f: fn(&Event) -> f64| {
        distribution(
            &events
                .iter()
                .filter(|e| e.kind == kind)
                .map(f)
                .collect::<Vec<_>>(),
        )
    };
    Ok(ModeResult {
        mode,
        kill_gap_ms: col("kill", |e| e.largest_gap_ms),
        kill_lost: col("kill", |e| e.lost_frames as f64),
        restart_gap_ms: col("restart", |e| e.largest_gap_ms),
        restart_lost: col("restart", |e| e.lost_frames as f64),
        sent: st.sent_at.len() as u64,
        lost: st.arrived_at.iter().filter(|a| a.is_none()).count() as u64,
        events,
    })
}

/// Runs both modes (keep first, then detach) on one lab.
pub fn survive(
    cfg: &SurviveConfig,
    mut progress: impl FnMut(&str, &Event),
) -> Result<SurviveResult> {
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    ensure!(cfg.events >= 1, "--events must be at least 1");
    ensure!(cfg.rate_pps >= 10, "--rate must be at least 10");
    let _ = lab::teardown(PREFIX);
    let lab = Lab::build(PREFIX, Scenario::Inline)?;
    let mut modes = Vec::new();
    for mode in ["keep", "detach"] {
        modes.push(run_mode(&lab, cfg, mode, &mut progress)?);
    }
    Ok(SurviveResult {
        benchmark: "survive",
        machine: Machine::describe(),
        config: cfg.clone(),
        modes,
    })
}

pub fn survive_markdown(r: &SurviveResult) -> String {
    let row = |m: &ModeResult, what: &str, d: &Distribution, unit: &str| {
        vec![
            m.mode.to_string(),
            what.to_string(),
            format!("{:.1}{unit}", d.min),
            format!("{:.1}{unit}", d.p50),
            format!("{:.1}{unit}", d.p90),
            format!("{:.1}{unit}", d.max),
        ]
    };
    let mut rows = Vec::new();
    for m in &r.modes {
        rows.push(row(m, "largest gap at a SIGKILL", &m.kill_gap_ms, " ms"));
        rows.push(row(m, "frames lost per SIGKILL", &m.kill_lost, ""));
        rows.push(row(m, "largest gap at a restart", &m.restart_gap_ms, " ms"));
        rows.push(row(m, "frames lost per restart", &m.restart_lost, ""));
    }
    let totals: Vec<String> = r
        .modes
        .iter()
        .map(|m| format!("{}: {} of {} frames lost", m.mode, m.lost, m.sent))
        .collect();
    format!(
        "Survive: {} SIGKILLs and {} restarts of tapline-dataplane per mode under a paced {} frames/s stream of {}-byte frames (gen -> i1 [dut] i2 -> sink, plain veths), restart {} s after each kill; `keep`: the sidecar keeps the kernel fallback (stall_ms {}); `detach`: fallback.on_exit = \"detach\" (the behaviour before the fallback). {}. {}\n\n{}",
        r.config.events,
        r.config.events,
        r.config.rate_pps,
        FRAME_LEN + 4,
        DOWN_FOR.as_secs(),
        r.config.stall_ms,
        totals.join("; "),
        r.machine.sentence(),
        markdown_table(&["mode", "", "min", "p50", "p90", "max"], &rows)
    )
}
