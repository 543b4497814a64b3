//! tapline as the DUT of a passive benchmark: its configuration sections,
//! the traffic of one trial, and what one DUT run reports.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use tapline_segment::{SegmentReader, Snapshot};

use crate::lab::{self, ifs, Lab};
use crate::report::CpuTimes;
use crate::runner::{lab_config, obtained_mode, DataplaneProcess};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig, GenReport};

use super::{
    PassiveConfig, PASSIVE_ROLE, RECORDER_NAME, RECORDER_QUEUE_SIZE, RECORDER_ROTATE_SIZE, SENDER,
    SETTLE,
};

/// The generator's load in one measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Paced rate; `None`: as fast as the generator can.
    pub(crate) rate_pps: Option<u64>,
    pub(crate) seconds: f64,
}

impl Load {
    /// The capture and fan-out parts' load (`--rate`, `--seconds`).
    pub(crate) fn of(cfg: &PassiveConfig) -> Load {
        Load {
            rate_pps: cfg.rate_pps,
            seconds: cfg.seconds,
        }
    }
}

/// The traffic of one measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Traffic {
    pub(crate) gen: GenReport,
    pub(crate) p1_rx_packets: u64,
    pub(crate) steal_ratio: f64,
}

/// Sends `load` from t0 and reads p1's counter around it.
pub(crate) fn run_traffic(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<Traffic> {
    let gc = GenConfig {
        ifname: ifs::TAP.into(),
        sizes: FrameSizes::Fixed(cfg.frame_len),
        flows: cfg.flows,
        rate_pps: load.rate_pps,
        duration: Duration::from_secs_f64(load.seconds),
        count: None,
        sender: SENDER,
        stream: 0,
    };
    let before = lab::rx_packets(&lab.dut, ifs::PASSIVE_1)?;
    let cpu = CpuTimes::now();
    let gen = lab
        .tap()
        .enter(move || xdp_generate(&gc, &AtomicBool::new(false)))??;
    let steal_ratio = CpuTimes::now().steal_since(&cpu);
    std::thread::sleep(SETTLE);
    let after = lab::rx_packets(&lab.dut, ifs::PASSIVE_1)?;
    Ok(Traffic {
        gen,
        p1_rx_packets: after.saturating_sub(before),
        steal_ratio,
    })
}

/// `[xdp]` with the extra keys, or nothing.
pub(crate) fn xdp_section(cfg: &PassiveConfig) -> String {
    if cfg.xdp_keys.trim().is_empty() {
        String::new()
    } else {
        format!("[xdp]\n{}\n\n", cfg.xdp_keys)
    }
}

/// The tapline DUT's recorder, writing into `dir`.
pub fn recorder_section(dir: &Path) -> String {
    format!(
        "[[recorder]]\nname = \"{RECORDER_NAME}\"\ndir = \"{}\"\nrotate_size = \"{RECORDER_ROTATE_SIZE}\"\n\
         rotate_interval_s = 0\nqueue_size = \"{RECORDER_QUEUE_SIZE}\"\n",
        dir.display()
    )
}

/// The member interface of output group `k` (in the dut namespace).
pub fn member_name(k: u8) -> String {
    format!("m{k}")
}

/// `groups` output groups: group `g{k}` has one member, `m{k}`, no filter.
pub fn fanout_section(groups: u8) -> String {
    (0..groups)
        .map(|k| {
            format!(
                "[[output_group]]\nname = \"g{k}\"\nmembers = [\"{}\"]\n\n",
                member_name(k)
            )
        })
        .collect()
}

/// passive-1's queues in a snapshot, summed: (rx_packets, rx_dropped,
/// rx_ring_full, fill_ring_empty).
pub(crate) fn passive_totals(s: &Snapshot) -> (u64, u64, u64, u64) {
    s.queues
        .iter()
        .filter(|q| q.info.role == PASSIVE_ROLE)
        .fold((0, 0, 0, 0), |(a, b, c, d), q| {
            (
                a + q.rx_packets,
                b + q.kernel_rx_dropped,
                c + q.kernel_rx_ring_full,
                d + q.kernel_rx_fill_ring_empty,
            )
        })
}

/// tapline running in the lab's dut namespace.
pub(crate) struct TaplineRun {
    pub(crate) process: DataplaneProcess,
    /// Its stats segment, mapped: the mapping outlives the run's files, so
    /// the final counters can be read after the stop.
    pub(crate) segment: SegmentReader,
    /// passive-1's XDP mode from its ready line.
    pub(crate) xdp_mode: Option<String>,
}

/// Starts tapline in the dut namespace with `extra` config sections and
/// maps its stats segment.
pub(crate) fn start_tapline(lab: &Lab, cfg: &PassiveConfig, extra: &str) -> Result<TaplineRun> {
    let config = lab_config(
        Some(ifs::PASSIVE_1),
        None,
        &cfg.dataplane_keys,
        &format!("{}{extra}", xdp_section(cfg)),
    );
    let process = DataplaneProcess::start_ready(&lab.dut, &config)?;
    let segment =
        SegmentReader::open(process.state_dir()).context("opening tapline's stats segment")?;
    let xdp_mode = obtained_mode(&process.lines(), PASSIVE_ROLE);
    Ok(TaplineRun {
        process,
        segment,
        xdp_mode,
    })
}

impl TaplineRun {
    /// Stops tapline and returns the final snapshot of its segment.
    pub(crate) fn stop(self) -> Result<Snapshot> {
        self.process.stop_ok()?;
        Ok(self.segment.snapshot())
    }
}

/// What a capture DUT reported about itself.
pub(crate) struct DutReport {
    pub(crate) traffic: Traffic,
    pub(crate) captured: Option<u64>,
    /// Frames the kernel dropped for the DUT's socket, as the DUT reports
    /// them (0 where it says nothing).
    pub(crate) kernel_drops: u64,
    pub(crate) drop_detail: BTreeMap<String, u64>,
    /// Counters in `drop_detail` that are not drops.
    pub(crate) not_drops: &'static [&'static str],
    pub(crate) xdp_mode: Option<String>,
}

impl DutReport {
    /// The sum of the drop counters in `drop_detail`.
    pub(crate) fn dut_drops(&self) -> u64 {
        self.drop_detail
            .iter()
            .filter(|(k, _)| !self.not_drops.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Runs `load` through a DUT and, unless the traffic failed, gives it
/// `grace_s` to drain before the caller stops it.
pub(crate) fn traffic_then_grace(lab: &Lab, cfg: &PassiveConfig, load: Load) -> Result<Traffic> {
    let traffic = run_traffic(lab, cfg, load);
    if traffic.is_ok() {
        std::thread::sleep(Duration::from_secs_f64(cfg.grace_s));
    }
    traffic
}
