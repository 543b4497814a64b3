//! One measured run through a DUT: paced test traffic from the generator,
//! the sink counting what arrived, loss, reordering, duplicates and one-way
//! latency. The building block of `tapline-bench run`, of the NDR search
//! and of failover measurements.
//!
//! ```text
//! [gen] g0 --veth--> i1 [dut: tapline | br0 | tc mirred] i2 --veth--> s0 [sink]
//!  xdp_generate (AF_XDP TX, copy)                         xdp_sink (XDP + AF_XDP RX)
//! ```
//!
//! The sink attaches tapline's XDP program to `s0`, which puts `s0`'s NAPI
//! ring and the program on the path (see [`crate::sink`]); every DUT is
//! measured with the same sink, so comparisons stay fair, but rates and
//! latencies differ from a lab without the sink attached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::Serialize;

use crate::inline_bench::{self, BenchConfig, Dut};
use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::report::{markdown_table, CpuTimes, Machine};
use crate::sink::{xdp_sink, SinkConfig, SinkReport};
use crate::traffic::{
    xdp_generate, FrameSizes, GenConfig, GenReport, ETH_HEADER_BYTES, FCS_BYTES, MIN_FRAME,
};

/// Settings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub dut: Dut,
    /// Offered rate, frames per second.
    pub rate_pps: u64,
    pub seconds: f64,
    pub sizes: FrameSizes,
    pub flows: u16,
    /// Extra keys for tapline's `[dataplane]` table (e.g. `idle = "busy"`);
    /// empty: the defaults.
    pub dataplane_keys: String,
    /// Extra keys for tapline's `[xdp]` table (e.g. `ring_size = 8192`).
    pub xdp_keys: String,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: RunConfig,
    /// Frames the generator sent (sequences 0..sent).
    pub sent: u64,
    /// Offered rate achieved by the generator, frames per second.
    pub offered_pps: f64,
    /// Frames the generator's pacing skipped because it was held up for
    /// longer than its bucket's depth (the shortfall from the target rate).
    pub pacing_skipped: u64,
    /// Share of CPU time stolen by the hypervisor during the traffic: high
    /// values mean the run says more about the host than about the DUT.
    pub steal_ratio: f64,
    /// What the sink saw, with the missing tail counted as lost.
    pub sink: SinkReport,
    /// Drops the lab's veths counted during the run (non-zero ones), to
    /// tell where lost frames went.
    pub link_drops: Vec<LinkDrops>,
    /// The XDP mode the DUT obtained on inline-1 (tapline: its log; testpmd:
    /// the attach mode `ip link` shows; empty for the kernel peers).
    pub dut_mode: String,
    /// The DUT's final counters: tapline's by port, or a peer's own (the
    /// AF_PACKET forwarder's, testpmd's, Suricata's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dut_counters: Option<serde_json::Value>,
}

/// Drop counters of one interface of the lab over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkDrops {
    pub ifname: &'static str,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// How long the sink may take to attach and bind.
const SINK_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the generator stopped: frames still in flight arrive.
const SETTLE: Duration = Duration::from_millis(200);
/// Margin on the sink's own time limit (it normally ends by the stop flag).
const SINK_MARGIN: Duration = Duration::from_secs(30);
/// Stream id of the run's traffic.
const STREAM: u32 = 1;
/// Sender id (source MAC) of the run's traffic.
const SENDER: u8 = 1;

/// The MTU of `ifname` in `ns`.
fn mtu(ns: &Netns, ifname: &str) -> Result<usize> {
    let out = lab::ip(&["-n", ns.name(), "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    v[0]["mtu"]
        .as_u64()
        .map(|m| m as usize)
        .with_context(|| format!("no mtu for {ifname} in {}", ns.name()))
}

/// The interfaces on the path, in order, with their namespaces.
fn path(lab: &Lab) -> [(&Netns, &'static str); 4] {
    [
        (lab.gen(), ifs::GEN),
        (&lab.dut, ifs::INLINE_1),
        (&lab.dut, ifs::INLINE_2),
        (lab.sink(), ifs::SINK),
    ]
}

/// `rx_dropped` and `tx_dropped` of `ifname` in `ns` (`ip -s -j link`).
fn link_drops(ns: &Netns, ifname: &'static str) -> Result<LinkDrops> {
    let out = lab::ip(&["-n", ns.name(), "-s", "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    let stats = &v[0]["stats64"];
    Ok(LinkDrops {
        ifname,
        rx_dropped: stats["rx"]["dropped"].as_u64().unwrap_or(0),
        tx_dropped: stats["tx"]["dropped"].as_u64().unwrap_or(0),
    })
}

/// Builds an inline lab, sets `cfg.dut` up in it, and runs
/// [`measure_in`]. Everything is removed again, also on failure.
pub fn run(cfg: &RunConfig) -> Result<RunReport> {
    if !lab::privileged()? {
        bail!("a run builds network namespaces and needs root");
    }
    let lab = Lab::build(&lab::unique_prefix(), Scenario::Inline)?;
    measure_in(&lab, cfg)
}

/// One run in an existing inline `lab` whose dut namespace has no DUT set
/// up: sets the DUT up, starts the sink on `s0`, generates from `g0`, stops
/// the sink after the traffic settled, and tears the DUT down.
pub fn measure_in(lab: &Lab, cfg: &RunConfig) -> Result<RunReport> {
    ensure!(cfg.rate_pps > 0, "the rate must be above 0");
    ensure!(
        cfg.seconds > 0.0 && cfg.seconds.is_finite(),
        "the duration must be a positive number of seconds"
    );
    let max_len = mtu(lab.gen(), ifs::GEN)?.min(mtu(lab.sink(), ifs::SINK)?) + ETH_HEADER_BYTES;
    let sizes = match cfg.sizes {
        FrameSizes::Imix { max_len: m } => FrameSizes::Imix {
            max_len: m.min(max_len),
        },
        FrameSizes::Fixed(len) => {
            ensure!(
                len >= MIN_FRAME,
                "frame length {len} is below the Ethernet minimum ({MIN_FRAME} without FCS)"
            );
            ensure!(
                len <= max_len,
                "frame length {len} is above what the lab's MTU carries ({max_len} without FCS)"
            );
            cfg.sizes
        }
    };
    let bench_cfg = BenchConfig {
        duts: vec![cfg.dut],
        reps: 1,
        seconds: cfg.seconds,
        frame_lens: vec![sizes.lengths()[0]],
        flows: cfg.flows,
        gen_cpu: None,
        dut_cpu: None,
        dataplane_keys: cfg.dataplane_keys.clone(),
        xdp_keys: cfg.xdp_keys.clone(),
    };
    let running = inline_bench::set_up(cfg.dut, &lab.dut, &bench_cfg)
        .with_context(|| format!("setting up {}", cfg.dut.name()))?;
    let dut_mode = running.mode();
    let gc = GenConfig {
        ifname: ifs::GEN.into(),
        sizes,
        flows: cfg.flows,
        rate_pps: Some(cfg.rate_pps),
        duration: Duration::from_secs_f64(cfg.seconds),
        count: None,
        sender: SENDER,
        stream: STREAM,
    };
    let sc = SinkConfig {
        ifname: ifs::SINK.into(),
        max_duration: Duration::from_secs_f64(cfg.seconds) + SINK_MARGIN,
    };
    let drops_before = path(lab)
        .iter()
        .map(|&(ns, i)| link_drops(ns, i))
        .collect::<Result<Vec<_>>>()?;
    let cpu_before = CpuTimes::now();
    let measured = traffic(lab, &gc, &sc);
    let steal_ratio = CpuTimes::now().steal_since(&cpu_before);
    let mut link_drops_run = Vec::new();
    for (&(ns, i), before) in path(lab).iter().zip(&drops_before) {
        let after = link_drops(ns, i)?;
        let d = LinkDrops {
            ifname: i,
            rx_dropped: after.rx_dropped.saturating_sub(before.rx_dropped),
            tx_dropped: after.tx_dropped.saturating_sub(before.tx_dropped),
        };
        if d.rx_dropped + d.tx_dropped > 0 {
            link_drops_run.push(d);
        }
    }
    let counters = inline_bench::tear_down(running, &lab.dut)?;
    let (gen, mut sink) = measured?;
    sink.account_sent(STREAM, gen.sent);
    Ok(RunReport {
        benchmark: "paced-run",
        machine: Machine::describe(),
        config: RunConfig {
            sizes,
            ..cfg.clone()
        },
        sent: gen.sent,
        offered_pps: gen.pps(),
        pacing_skipped: gen.pacing_skipped,
        steal_ratio,
        sink,
        link_drops: link_drops_run,
        dut_mode,
        dut_counters: counters,
    })
}

/// Runs the sink in the sink namespace and, once it is ready, the
/// generator in the gen namespace; stops the sink [`SETTLE`] after the
/// generator.
fn traffic(lab: &Lab, gc: &GenConfig, sc: &SinkConfig) -> Result<(GenReport, SinkReport)> {
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let sink = s.spawn(|| {
            lab.sink().enter(|| {
                xdp_sink(sc, &stop, move || {
                    let _ = ready_tx.send(());
                })
            })
        });
        let join_sink = |h: std::thread::ScopedJoinHandle<'_, Result<Result<SinkReport>>>| {
            h.join().map_err(|_| anyhow!("sink thread panicked"))??
        };
        if ready_rx.recv_timeout(SINK_READY_TIMEOUT).is_err() {
            // The sender is dropped when the sink fails before it is ready.
            stop.store(true, Ordering::Relaxed);
            let err = join_sink(sink).err();
            return Err(err.unwrap_or_else(|| anyhow!("the sink was not ready")));
        }
        let gen = lab
            .gen()
            .enter(|| xdp_generate(gc, &AtomicBool::new(false)))
            .and_then(|r| r);
        if gen.is_ok() {
            std::thread::sleep(SETTLE);
        }
        stop.store(true, Ordering::Relaxed);
        let sink = join_sink(sink);
        Ok((gen.context("generator")?, sink.context("sink")?))
    })
}

/// tapline's non-zero drop counters (`drop_*`, `kernel_*` drops), as
/// `port.counter n`.
/// Non-zero drop counters from the DUT's final counters: tapline's are
/// nested by port, a peer's are flat.
fn dut_drops(dut: Dut, counters: Option<&serde_json::Value>) -> Vec<String> {
    let Some(top) = counters.and_then(|c| c.as_object()) else {
        return Vec::new();
    };
    let is_drop =
        |name: &str| name.contains("drop") || name.contains("full") || name.contains("empty");
    let mut out = Vec::new();
    for (key, v) in top {
        match v.as_object() {
            Some(port) => {
                for (name, v) in port {
                    let n = v.as_u64().unwrap_or(0);
                    if is_drop(name) && n > 0 {
                        out.push(format!("{} {key}.{name} {n}", dut.name()));
                    }
                }
            }
            None => {
                let n = v.as_u64().unwrap_or(0);
                if is_drop(key) && n > 0 {
                    out.push(format!("{} {key} {n}", dut.name()));
                }
            }
        }
    }
    out
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// The report as Markdown.
pub fn markdown(r: &RunReport) -> String {
    let s = &r.sink;
    let mut out = format!(
        "Paced run through {}: {} fps offered for {} s, {}, {} flows. Machine: {} ({} CPUs), kernel {}, {}.\n\n",
        r.config.dut.name(),
        r.config.rate_pps,
        r.config.seconds,
        r.config.sizes.describe(),
        r.config.flows,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel,
        r.machine.links()
    );
    out += &markdown_table(
        &[
            "DUT",
            "offered fps",
            "pacing skipped",
            "sent",
            "received",
            "lost",
            "reordered",
            "duplicated",
            "late",
        ],
        &[vec![
            r.config.dut.name().to_string(),
            format!("{:.0}", r.offered_pps),
            r.pacing_skipped.to_string(),
            r.sent.to_string(),
            s.received.to_string(),
            s.lost.to_string(),
            s.reordered.to_string(),
            s.duplicated.to_string(),
            s.late.to_string(),
        ]],
    );
    let l = &s.latency;
    out += "\nOne-way latency (us, CLOCK_MONOTONIC, generator queue to sink read):\n\n";
    out += &markdown_table(
        &[
            "samples", "min", "p50", "p90", "p99", "p99.9", "max", "mean",
        ],
        &[vec![
            l.count.to_string(),
            us(l.min_ns),
            us(l.p50_ns),
            us(l.p90_ns),
            us(l.p99_ns),
            us(l.p999_ns),
            us(l.max_ns),
            format!("{:.1}", l.mean_ns / 1000.0),
        ]],
    );
    out += &format!(
        "\nCPU steal during the run: {:.1}%. Sink: XDP {} on {}, kernel drops: rx_dropped {}, rx_ring_full {}, fill_ring_empty {}; other frames {}.",
        r.steal_ratio * 100.0,
        s.xdp_mode,
        ifs::SINK,
        s.kernel.rx_dropped,
        s.kernel.rx_ring_full,
        s.kernel.rx_fill_ring_empty,
        s.other_frames
    );
    if !r.dut_mode.is_empty() {
        out += &format!(" {} XDP mode: {}.", r.config.dut.name(), r.dut_mode);
    }
    let drops: Vec<String> = r
        .link_drops
        .iter()
        .map(|d| format!("{} rx {} tx {}", d.ifname, d.rx_dropped, d.tx_dropped))
        .chain(dut_drops(r.config.dut, r.dut_counters.as_ref()))
        .collect();
    out += &format!(
        " Drops on the path: {}.",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    );
    out += &format!(" Frame lengths include the {FCS_BYTES}-byte FCS on the wire.\n");
    out
}
