//! Benchmarks of the inline chain: throughput against the number of hops,
//! and failover (how fast a dead tool is bypassed, and what is lost).
//!
//! Both run tapline in a chain lab whose tools are namespaces bridging their
//! two interfaces (`--tool bridge`, a Linux bridge, or `--tool mirred`, tc
//! mirred redirects).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::lab::{self, ifs, Lab, Netns, Scenario, ToolKind};
use crate::report::{self, markdown_table, median, Machine};
use crate::runner::{lab_config, DataplaneProcess};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig, GenReport};

const PREFIX: &str = "tlchain";
const WARMUP: Duration = Duration::from_millis(500);
const SETTLE: Duration = Duration::from_millis(200);
/// How long hops may take to come UP after the dataplane starts.
const UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the lab's tool `k` as a hop: `tool{k}`.
pub fn hop_name(k: u8) -> String {
    format!("tool{k}")
}

/// A dataplane config for a chain lab: inline-1/inline-2, `dataplane_keys`
/// in `[dataplane]`, and a `[chain]` with hop `tool{k}` on `h{k}a`/`h{k}b`
/// for each `k` of `hops` in order, each with `on_failure` if given; `extra`
/// is appended.
pub fn chain_config(
    hops: &[u8],
    on_failure: Option<&str>,
    dataplane_keys: &str,
    extra: &str,
) -> String {
    let mut s = String::from("[chain]\nhops = [\n");
    for &k in hops {
        let action = on_failure.map_or(String::new(), |a| format!(", on_failure = \"{a}\""));
        s += &format!(
            "  {{ name = \"{}\", a = \"{}\", b = \"{}\"{action} }},\n",
            hop_name(k),
            ifs::hop_a(k),
            ifs::hop_b(k)
        );
    }
    s += "]\n";
    s += extra;
    lab_config(
        None,
        Some((ifs::INLINE_1, ifs::INLINE_2)),
        dataplane_keys,
        &s,
    )
}

/// Times (wall clock) at which the dataplane logged `message` for `hop`.
fn log_times(dp: &DataplaneProcess, message: &str, hop: &str) -> Vec<SystemTime> {
    dp.records()
        .iter()
        .filter(|r| r["message"] == message && r["hop"] == hop)
        .filter_map(|r| r["timestamp"].as_str().and_then(parse_rfc3339))
        .collect()
}

/// Parses the `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamps of our JSON logs.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let digits = frac.len().min(9);
    let ns = frac[..digits].parse::<u64>().ok()? * 10u64.pow(9 - digits as u32);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_nanos(ns))
}

/// Waits until the dataplane has logged `hop UP` for `hop` `count` times.
fn wait_up(dp: &DataplaneProcess, hop: &str, count: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while log_times(dp, "hop UP", hop).len() < count {
        ensure!(
            Instant::now() < deadline,
            "{hop} not UP (time {count}) within {timeout:?}; the dataplane's log:\n{}",
            dp.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn generate(gen: &Netns, cfg: GenConfig) -> Result<GenReport> {
    gen.enter(move || xdp_generate(&cfg, &AtomicBool::new(false)))?
}

fn gen_config(frame_len: usize, flows: u16, rate: Option<u64>, duration: Duration) -> GenConfig {
    GenConfig {
        ifname: ifs::GEN.into(),
        sizes: FrameSizes::Fixed(frame_len),
        flows,
        rate_pps: rate,
        duration,
        count: None,
        sender: 1,
        stream: 0,
    }
}

/// Settings of the throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputConfig {
    pub max_hops: u8,
    pub reps: u32,
    pub seconds: f64,
    pub frame_len: usize,
    pub flows: u16,
    pub tool: &'static str,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputSample {
    pub hops: u8,
    pub rep: u32,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub steal_ratio: f64,
}

/// The throughput result.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: ThroughputConfig,
    pub samples: Vec<ThroughputSample>,
    /// (hops, median delivered Mpps, median / median at 0 hops).
    pub summary: Vec<(u8, f64, f64)>,
}

/// Throughput of tapline against chain length, 0 to `max_hops`, each
/// repetition going through every length (rotated).
pub fn throughput(
    cfg: &ThroughputConfig,
    tool: ToolKind,
    mut progress: impl FnMut(&ThroughputSample, usize, usize),
) -> Result<ThroughputResult> {
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    ensure!(cfg.max_hops >= 1, "--max-hops must be at least 1");
    let _ = lab::teardown(PREFIX);
    let lab = Lab::build(PREFIX, Scenario::chain(cfg.max_hops, tool)?)?;
    let lengths: Vec<u8> = (0..=cfg.max_hops).collect();
    let total = lengths.len() * cfg.reps as usize;
    let mut samples = Vec::new();
    for rep in 0..cfg.reps {
        for i in 0..lengths.len() {
            let hops = lengths[(i + rep as usize) % lengths.len()];
            let dp = DataplaneProcess::start_ready(
                &lab.dut,
                &chain_config(&(1..=hops).collect::<Vec<_>>(), None, "", ""),
            )?;
            let result = (|| -> Result<ThroughputSample> {
                for k in 1..=hops {
                    wait_up(&dp, &hop_name(k), 1, UP_TIMEOUT)?;
                }
                generate(
                    lab.gen(),
                    gen_config(cfg.frame_len, cfg.flows, None, WARMUP),
                )?;
                std::thread::sleep(SETTLE);
                let before = lab::rx_packets(lab.sink(), ifs::SINK)?;
                let cpu = report::CpuTimes::now();
                let g = generate(
                    lab.gen(),
                    gen_config(
                        cfg.frame_len,
                        cfg.flows,
                        None,
                        Duration::from_secs_f64(cfg.seconds),
                    ),
                )?;
                let steal_ratio = report::CpuTimes::now().steal_since(&cpu);
                std::thread::sleep(SETTLE);
                let delivered = lab::rx_packets(lab.sink(), ifs::SINK)?.saturating_sub(before);
                let secs = g.elapsed.as_secs_f64();
                Ok(ThroughputSample {
                    hops,
                    rep,
                    offered_pps: g.sent as f64 / secs,
                    delivered_pps: delivered as f64 / secs,
                    steal_ratio,
                })
            })();
            let fin = dp.stop()?;
            ensure!(
                fin.status.success(),
                "tapline-dataplane exited with {}",
                fin.status
            );
            let s = result?;
            progress(&s, samples.len() + 1, total);
            samples.push(s);
        }
    }
    let med = |h: u8| {
        median(
            &samples
                .iter()
                .filter(|s| s.hops == h)
                .map(|s| s.delivered_pps / 1e6)
                .collect::<Vec<_>>(),
        )
    };
    let base = med(0);
    let summary = lengths
        .iter()
        .map(|&h| (h, med(h), med(h) / base))
        .collect();
    Ok(ThroughputResult {
        benchmark: "chain-throughput",
        machine: Machine::describe(),
        config: cfg.clone(),
        samples,
        summary,
    })
}

pub fn throughput_markdown(r: &ThroughputResult) -> String {
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .map(|(h, mpps, ratio)| {
            vec![
                h.to_string(),
                format!("{mpps:.3}"),
                format!("{ratio:.2}x"),
                r.samples
                    .iter()
                    .filter(|s| s.hops == *h)
                    .map(|s| format!("{:.3}", s.delivered_pps / 1e6))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    format!(
        "Chain throughput, {}-byte frames, tools: {}, {} reps x {} s (tapline-bench AF_XDP generator, unpaced). {}\n\n{}",
        r.config.frame_len + 4,
        r.config.tool,
        r.config.reps,
        r.config.seconds,
        r.machine.sentence(),
        markdown_table(&["hops", "median Mpps", "vs 0 hops", "samples (Mpps)"], &rows)
    )
}

/// Settings of the failover run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverConfig {
    pub failures: u32,
    /// Offered rate during each failure, frames per second.
    pub rate_pps: u64,
    pub frame_len: usize,
    pub tool: &'static str,
    /// Extra `[heartbeat]` keys (empty: the defaults).
    pub heartbeat_keys: String,
}

/// One induced failure.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub index: u32,
    /// From the tool's link going down to the dataplane's `hop DOWN`.
    pub detection_ms: f64,
    /// Frames sent during the run that never reached the sink.
    pub lost_frames: u64,
    /// `lost_frames / rate`: how long traffic was black-holed.
    pub loss_window_ms: f64,
    /// From the link coming back to `hop UP` (includes the hold time).
    pub recovery_ms: f64,
    pub sent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

/// Min, median, p90 and max of `xs` (nearest rank); `xs` must not be empty.
pub(crate) fn distribution(xs: &[f64]) -> Distribution {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Distribution {
        min: v[0],
        p50: at(0.5),
        p90: at(0.9),
        max: v[v.len() - 1],
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: FailoverConfig,
    pub failures: Vec<Failure>,
    pub detection_ms: Distribution,
    pub loss_window_ms: Distribution,
    pub lost_frames: Distribution,
    pub recovery_ms: Distribution,
}

/// Induces `failures` failures of a one-hop chain's tool (its side-a link
/// goes down) under paced traffic, and measures each.
pub fn failover(
    cfg: &FailoverConfig,
    tool: ToolKind,
    mut progress: impl FnMut(&Failure),
) -> Result<FailoverResult> {
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    ensure!(cfg.failures >= 1, "--failures must be at least 1");
    let _ = lab::teardown(PREFIX);
    let lab = Lab::build(PREFIX, Scenario::chain(1, tool)?)?;
    let hb = if cfg.heartbeat_keys.is_empty() {
        String::new()
    } else {
        format!("[heartbeat]\n{}\n", cfg.heartbeat_keys)
    };
    let dp = DataplaneProcess::start_ready(&lab.dut, &chain_config(&[1], None, "", &hb))?;
    let result = (|| -> Result<Vec<Failure>> {
        wait_up(&dp, "tool1", 1, UP_TIMEOUT)?;
        let mut out = Vec::new();
        for i in 0..cfg.failures {
            // Traffic for 1.5 s; the tool fails 0.5 s in.
            let before = lab::rx_packets(lab.sink(), ifs::SINK)?;
            let gcfg = gen_config(
                cfg.frame_len,
                16,
                Some(cfg.rate_pps),
                Duration::from_millis(1500),
            );
            let downs_before = log_times(&dp, "hop DOWN", "tool1").len();
            let gen = lab.gen();
            let (report, failed_at) = std::thread::scope(|s| -> Result<(GenReport, SystemTime)> {
                let h = s.spawn(|| generate(gen, gcfg));
                std::thread::sleep(Duration::from_millis(500));
                let at = SystemTime::now();
                lab.tool_link(1, false)?;
                let r = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("generator panicked"))??;
                Ok((r, at))
            })?;
            std::thread::sleep(SETTLE);
            let delivered = lab::rx_packets(lab.sink(), ifs::SINK)?.saturating_sub(before);
            let downs = log_times(&dp, "hop DOWN", "tool1");
            ensure!(
                downs.len() > downs_before,
                "failure {i}: the hop never went DOWN"
            );
            let detection = downs[downs_before]
                .duration_since(failed_at)
                .unwrap_or_default();
            let ups_before = log_times(&dp, "hop UP", "tool1").len();
            let up_at = SystemTime::now();
            lab.tool_link(1, true)?;
            wait_up(&dp, "tool1", ups_before + 1, UP_TIMEOUT)
                .with_context(|| format!("failure {i}: recovery"))?;
            let ups = log_times(&dp, "hop UP", "tool1");
            let recovery = ups[ups_before].duration_since(up_at).unwrap_or_default();
            let lost = report.sent.saturating_sub(delivered);
            let f = Failure {
                index: i,
                detection_ms: detection.as_secs_f64() * 1e3,
                lost_frames: lost,
                loss_window_ms: lost as f64 / cfg.rate_pps as f64 * 1e3,
                recovery_ms: recovery.as_secs_f64() * 1e3,
                sent: report.sent,
            };
            progress(&f);
            out.push(f);
        }
        Ok(out)
    })();
    let fin = dp.stop()?;
    let failures = result?;
    ensure!(
        fin.status.success(),
        "tapline-dataplane exited with {}",
        fin.status
    );
    let col = |f: fn(&Failure) -> f64| distribution(&failures.iter().map(f).collect::<Vec<_>>());
    Ok(FailoverResult {
        benchmark: "chain-failover",
        machine: Machine::describe(),
        config: cfg.clone(),
        detection_ms: col(|f| f.detection_ms),
        loss_window_ms: col(|f| f.loss_window_ms),
        lost_frames: col(|f| f.lost_frames as f64),
        recovery_ms: col(|f| f.recovery_ms),
        failures,
    })
}

pub fn failover_markdown(r: &FailoverResult) -> String {
    let row = |name: &str, d: &Distribution, unit: &str| {
        vec![
            name.to_string(),
            format!("{:.1}{unit}", d.min),
            format!("{:.1}{unit}", d.p50),
            format!("{:.1}{unit}", d.p90),
            format!("{:.1}{unit}", d.max),
        ]
    };
    format!(
        "Failover of a one-hop chain (tool: {}), {} induced failures (tool side-a link down), {} frames/s of {}-byte frames, heartbeat {}. {}\n\n{}",
        r.config.tool,
        r.config.failures,
        r.config.rate_pps,
        r.config.frame_len + 4,
        if r.config.heartbeat_keys.is_empty() {
            "defaults (10 ms interval, 15 ms timeout, 3 misses, 1 s hold)".to_string()
        } else {
            r.config.heartbeat_keys.replace('\n', ", ")
        },
        r.machine.sentence(),
        markdown_table(
            &["", "min", "p50", "p90", "max"],
            &[
                row("failure to bypass (hop DOWN)", &r.detection_ms, " ms"),
                row("loss window (lost / rate)", &r.loss_window_ms, " ms"),
                row("frames lost per failure", &r.lost_frames, ""),
                row("link back to hop UP (incl. hold)", &r.recovery_ms, " ms"),
            ]
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse() {
        let t = parse_rfc3339("2026-11-22T02:01:48.749093Z").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_795_312_908);
        assert_eq!(d.subsec_micros(), 749_093);
    }
}
