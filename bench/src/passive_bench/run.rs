//! The whole run: every measurement, repetitions interleaved in a rotating
//! order, then the summaries.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

use crate::lab::{self, Lab, Scenario};
use crate::report::Machine;

use super::capture::{capture_ratio, capture_summary, measure_capture, reader_version};
use super::dut::member_name;
use super::fanout::{fanout_summary, measure_fanout};
use super::results::{CaptureSample, FanoutSample, PassiveResult, ZeroDropSample, ZeroDropTrial};
use super::zero_drop::{measure_zero_drop, zero_drop_ratio, zero_drop_summary};
use super::{dut_version, CaptureDut, PassiveConfig, ZeroDropDut, SKIPPED};

/// One measurement of a repetition.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    Capture(CaptureDut),
    Fanout(u8),
    ZeroDrop(ZeroDropDut),
}

/// The measurements of repetition `rep`: the capture DUTs, the group
/// counts, then the zero-drop searches, each list rotated by `rep` so no
/// DUT always runs first.
pub(crate) fn schedule(
    duts: &[CaptureDut],
    groups: &[u8],
    zero_drop: &[ZeroDropDut],
    rep: u32,
) -> Vec<Job> {
    let rotated = |n: usize| (0..n).map(move |k| (k + rep as usize) % n);
    rotated(duts.len())
        .map(|i| Job::Capture(duts[i]))
        .chain(rotated(groups.len()).map(|i| Job::Fanout(groups[i])))
        .chain(rotated(zero_drop.len()).map(|i| Job::ZeroDrop(zero_drop[i])))
        .collect()
}

/// What a measurement produced, for progress lines.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Capture(&'a CaptureSample),
    Fanout(&'a FanoutSample),
    /// A zero-drop trial. Its search is still running, so the index is
    /// the number of measurements finished before it (one less than the
    /// search's own index).
    ZeroDropTrial(&'a ZeroDropTrial),
    /// A finished zero-drop search.
    ZeroDrop(&'a ZeroDropSample),
    Skipped(CaptureDut),
}

/// The version line of every program the run uses (`None`: not
/// installed), and of the AF_PACKET reader when a zero-drop search uses it.
struct Versions {
    programs: BTreeMap<CaptureDut, Option<String>>,
    reader: Option<String>,
}

impl Versions {
    /// Asks every program the run needs for its version; a peer that is
    /// not installed is reported as [`Progress::Skipped`], tapline must be.
    fn find(
        cfg: &PassiveConfig,
        progress: &mut impl FnMut(Progress, usize, usize),
    ) -> Result<Versions> {
        let programs: BTreeSet<CaptureDut> = std::iter::once(CaptureDut::Tapline)
            .chain(cfg.duts.iter().copied())
            .chain(cfg.zero_drop.duts.iter().filter_map(|d| d.program()))
            .collect();
        let mut versions = BTreeMap::new();
        for d in programs {
            let v = dut_version(d)?;
            match v {
                None if d == CaptureDut::Tapline => {
                    bail!("tapline-dataplane did not run: build it first")
                }
                None => progress(Progress::Skipped(d), 0, 0),
                Some(_) => {}
            }
            versions.insert(d, v);
        }
        let reader = if cfg.zero_drop.duts.contains(&ZeroDropDut::AfPacketRead) {
            Some(reader_version()?)
        } else {
            None
        };
        Ok(Versions {
            programs: versions,
            reader,
        })
    }

    fn capture(&self, d: CaptureDut) -> Option<String> {
        self.programs[&d].clone()
    }

    fn zero_drop(&self, d: ZeroDropDut) -> Option<String> {
        match d.program() {
            Some(p) => self.programs[&p].clone(),
            None => self.reader.clone(),
        }
    }

    /// Version lines by DUT name, [`SKIPPED`] for a program not installed.
    fn names(&self) -> BTreeMap<String, String> {
        let mut names: BTreeMap<String, String> = self
            .programs
            .iter()
            .map(|(d, v)| (d.name().to_string(), v.clone().unwrap_or(SKIPPED.into())))
            .collect();
        if let Some(r) = &self.reader {
            names.insert(ZeroDropDut::AfPacketRead.name().to_string(), r.clone());
        }
        names
    }
}

/// Every measurement of a run.
#[derive(Default)]
struct Samples {
    capture: Vec<CaptureSample>,
    fanout: Vec<FanoutSample>,
    zero_drop: Vec<ZeroDropSample>,
}

/// Runs the benchmark. `progress` hears of each measurement as it lands,
/// with its index and the total.
pub fn run(
    cfg: &PassiveConfig,
    mut progress: impl FnMut(Progress, usize, usize),
) -> Result<PassiveResult> {
    cfg.validate()?;
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    let versions = Versions::find(cfg, &mut progress)?;
    let measured: Vec<CaptureDut> = cfg
        .duts
        .iter()
        .copied()
        .filter(|&d| versions.capture(d).is_some())
        .collect();
    let zero_drop_measured: Vec<ZeroDropDut> = cfg
        .zero_drop
        .duts
        .iter()
        .copied()
        .filter(|&d| versions.zero_drop(d).is_some())
        .collect();
    let mut lab = Lab::build(&lab::unique_prefix(), Scenario::Passive)?;
    let max_groups = cfg.groups.iter().copied().max().unwrap_or(0);
    let members: Vec<String> = (0..max_groups).map(member_name).collect();
    lab.add_sensors(&members.iter().map(String::as_str).collect::<Vec<_>>())?;
    let run_dir = cfg.dir.join(&lab.prefix);
    let total = cfg.reps as usize * (measured.len() + cfg.groups.len() + zero_drop_measured.len());
    let mut samples = Samples::default();
    let result = (|| -> Result<()> {
        for rep in 0..cfg.reps {
            for job in schedule(&measured, &cfg.groups, &zero_drop_measured, rep) {
                let done =
                    samples.capture.len() + samples.fanout.len() + samples.zero_drop.len() + 1;
                match job {
                    Job::Capture(d) => {
                        let s = measure_capture(&lab, d, rep, cfg, &run_dir)?;
                        progress(Progress::Capture(&s), done, total);
                        samples.capture.push(s);
                    }
                    Job::Fanout(g) => {
                        let s = measure_fanout(&lab, g, rep, cfg)?;
                        progress(Progress::Fanout(&s), done, total);
                        samples.fanout.push(s);
                    }
                    Job::ZeroDrop(d) => {
                        let s = measure_zero_drop(&lab, cfg, d, rep, &run_dir, &mut |t| {
                            progress(Progress::ZeroDropTrial(t), done - 1, total)
                        })
                        .with_context(|| format!("zero-drop search of {} rep {rep}", d.name()))?;
                        progress(Progress::ZeroDrop(&s), done, total);
                        samples.zero_drop.push(s);
                    }
                }
            }
        }
        Ok(())
    })();
    if !cfg.keep_files {
        // Empty by now unless a capture failed half-way.
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result?;
    drop(lab);
    Ok(summarize(cfg, &versions, samples))
}

/// The result of a run: its samples, summaries and ratios.
fn summarize(cfg: &PassiveConfig, versions: &Versions, samples: Samples) -> PassiveResult {
    let capture_summary = cfg
        .duts
        .iter()
        .map(|&d| capture_summary(d, versions.capture(d), &samples.capture))
        .collect();
    let capture_ratios = if cfg.duts.contains(&CaptureDut::Tapline) {
        cfg.duts
            .iter()
            .filter(|&&d| d != CaptureDut::Tapline)
            .map(|&peer| capture_ratio(peer, versions.capture(peer).is_some(), &samples.capture))
            .collect()
    } else {
        Vec::new()
    };
    let fanout_summary = cfg
        .groups
        .iter()
        .map(|&g| fanout_summary(g, &samples.fanout))
        .collect();
    let zero_drop_summary = cfg
        .zero_drop
        .duts
        .iter()
        .map(|&d| zero_drop_summary(d, versions.zero_drop(d), &samples.zero_drop))
        .collect();
    let zero_drop_ratios = ZeroDropDut::RATIOS
        .iter()
        .filter(|(ours, peer)| {
            cfg.zero_drop.duts.contains(ours) && cfg.zero_drop.duts.contains(peer)
        })
        .flat_map(|&(ours, peer)| {
            let installed =
                versions.zero_drop(ours).is_some() && versions.zero_drop(peer).is_some();
            [false, true]
                .map(|offered| zero_drop_ratio(ours, peer, offered, installed, &samples.zero_drop))
        })
        .collect();
    PassiveResult {
        benchmark: "passive-capture-fanout-zero-drop",
        machine: Machine::describe(),
        config: cfg.clone(),
        generator: format!(
            "tapline-bench AF_XDP TX (copy mode), one thread, {}",
            cfg.rate_pps
                .map_or("unpaced".to_string(), |r| format!("paced at {r} frames/s"))
        ),
        versions: versions.names(),
        capture_samples: samples.capture,
        capture_summary,
        capture_ratios,
        fanout_samples: samples.fanout,
        fanout_summary,
        zero_drop_samples: samples.zero_drop,
        zero_drop_summary,
        zero_drop_ratios,
    }
}
