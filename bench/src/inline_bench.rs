//! Inline forwarding throughput: tapline's bridge against the Linux bridge
//! and a tc mirred redirect on the same veth topology, in the same run,
//! interleaved, with medians over repetitions.
//!
//! ```text
//! [gen] g0 --veth--> i1 [dut: tapline | br0 | tc mirred] i2 --veth--> s0 [sink]
//! ```
//!
//! The generator is tapline's AF_XDP TX path (copy mode on veth) sending
//! 64-byte frames as fast as it can; throughput is what arrives at `s0`
//! (its rx_packets counter) per second of generation.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::observe::{ObserveRates, Observers};
use crate::report::{self, Machine};
use crate::runner::{lab_config, DataplaneProcess, StartOptions};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig};

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dut {
    /// tapline with `xdp.mode = "auto"` (native attach, copy mode on veth).
    Tapline,
    /// tapline with `xdp.mode = "generic"`.
    TaplineGeneric,
    /// tapline (auto) with the sidecar running, `taplinectl stats --watch`
    /// at 100 ms and `/metrics` scraped every second: the cost of
    /// observation, against `Tapline` in the same run.
    TaplineObserved,
    /// Linux bridge, `bridge-nf-call-iptables = 0`.
    LinuxBridge,
    /// `tc` ingress u32 match-all + `mirred egress redirect`.
    TcMirred,
}

impl Dut {
    pub fn name(self) -> &'static str {
        match self {
            Dut::Tapline => "tapline",
            Dut::TaplineGeneric => "tapline-generic",
            Dut::TaplineObserved => "tapline-observed",
            Dut::LinuxBridge => "linux-bridge",
            Dut::TcMirred => "tc-mirred",
        }
    }

    pub fn parse(s: &str) -> Result<Dut> {
        Ok(match s {
            "tapline" => Dut::Tapline,
            "tapline-generic" => Dut::TaplineGeneric,
            "tapline-observed" => Dut::TaplineObserved,
            "linux-bridge" => Dut::LinuxBridge,
            "tc-mirred" => Dut::TcMirred,
            other => bail!(
                "unknown DUT {other:?}: use tapline, tapline-generic, linux-bridge or tc-mirred"
            ),
        })
    }
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub duts: Vec<Dut>,
    pub reps: u32,
    pub seconds: f64,
    pub frame_len: usize,
    pub flows: u16,
    /// CPU the generator thread is pinned to.
    pub gen_cpu: Option<usize>,
    /// CPU tapline's worker is pinned to.
    pub dut_cpu: Option<usize>,
    /// Extra keys for tapline's `[dataplane]` table (e.g. `idle = "busy"`).
    pub dataplane_keys: String,
    /// Extra keys for tapline's `[xdp]` table (e.g. `frame_count = 8192`).
    pub xdp_keys: String,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub dut: Dut,
    pub rep: u32,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub loss_ratio: f64,
    /// The XDP mode tapline reported (empty for peers).
    pub mode: String,
    /// Share of CPU time stolen by the hypervisor during the measurement:
    /// high values mean the sample says more about the host than the DUT.
    pub steal_ratio: f64,
    /// tapline's final counters for the run (where frames were lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tapline_counters: Option<serde_json::Value>,
}

/// Median per DUT.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dut: Dut,
    pub median_delivered_mpps: f64,
    pub median_offered_mpps: f64,
    pub samples: Vec<f64>,
}

/// A complete result, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub config: BenchConfig,
    pub generator: &'static str,
    pub samples: Vec<Sample>,
    pub summary: Vec<Summary>,
    /// `tapline / peer` for each peer, from the medians.
    pub ratios: Vec<(String, f64)>,
    /// Median over repetitions of `tapline / peer` within each repetition
    /// (the DUTs of one repetition run back to back, so slow drift of the
    /// host cancels out).
    pub per_rep_ratios: Vec<(String, f64)>,
}

const WARMUP: Duration = Duration::from_millis(500);
const SETTLE: Duration = Duration::from_millis(200);
const BENCH_PREFIX: &str = "tlbench";
/// Loopback ports of the sidecar in observed runs (three from here).
const OBSERVE_PORT_BASE: u16 = 31000;

pub(crate) enum Running {
    Tapline(DataplaneProcess, String, Option<Box<Observers>>),
    LinuxBridge,
    TcMirred,
}

pub(crate) fn set_up(dut: Dut, ns: &Netns, cfg: &BenchConfig) -> Result<Running> {
    match dut {
        Dut::Tapline | Dut::TaplineGeneric | Dut::TaplineObserved => {
            let mode = if dut == Dut::TaplineGeneric {
                "generic"
            } else {
                "auto"
            };
            let mut dataplane_keys = cfg
                .dut_cpu
                .map(|c| format!("cpus = [{c}]\n"))
                .unwrap_or_default();
            dataplane_keys += &cfg.dataplane_keys;
            let config = lab_config(
                None,
                Some((ifs::INLINE_1, ifs::INLINE_2)),
                &dataplane_keys,
                &format!("[xdp]\nmode = \"{mode}\"\n{}\n", cfg.xdp_keys),
            );
            let p = DataplaneProcess::start(
                ns,
                &config,
                &StartOptions {
                    expect_ready: true,
                    ..Default::default()
                },
            )?;
            let obtained = crate::runner::obtained_mode(&p.lines(), "inline-1").unwrap_or_default();
            let observers = if dut == Dut::TaplineObserved {
                let base = OBSERVE_PORT_BASE + (std::process::id() % 1000) as u16 * 3;
                Some(Box::new(Observers::start(
                    &config,
                    p.state_dir(),
                    base,
                    ObserveRates::default(),
                )?))
            } else {
                None
            };
            Ok(Running::Tapline(p, obtained, observers))
        }
        Dut::LinuxBridge => {
            lab::ip(&["-n", ns.name(), "link", "add", "br0", "type", "bridge"])?;
            // Without br_netfilter loaded these keys do not exist and the
            // bridge does not call iptables anyway.
            let _ = ns.sysctl("net.bridge.bridge-nf-call-iptables", "0");
            let _ = ns.sysctl("net.bridge.bridge-nf-call-ip6tables", "0");
            let _ = ns.sysctl("net.bridge.bridge-nf-call-arptables", "0");
            for i in [ifs::INLINE_1, ifs::INLINE_2] {
                lab::ip(&["-n", ns.name(), "link", "set", i, "master", "br0"])?;
            }
            lab::ip(&["-n", ns.name(), "link", "set", "br0", "up"])?;
            Ok(Running::LinuxBridge)
        }
        Dut::TcMirred => {
            lab::tc(ns, &["qdisc", "add", "dev", ifs::INLINE_1, "clsact"])?;
            lab::mirred_redirect(ns, ifs::INLINE_1, ifs::INLINE_2)?;
            Ok(Running::TcMirred)
        }
    }
}

/// Tears the DUT down; for tapline, returns its final counters by port.
pub(crate) fn tear_down(r: Running, ns: &Netns) -> Result<Option<serde_json::Value>> {
    match r {
        Running::Tapline(p, _, observers) => {
            if let Some(o) = observers {
                let scrapes = o.stop()?;
                if scrapes == 0 {
                    bail!("no /metrics scrape succeeded during the observed run");
                }
            }
            let f = p.stop()?;
            if !f.status.success() {
                bail!(
                    "tapline-dataplane exited with {}:\n{}",
                    f.status,
                    f.lines.join("\n")
                );
            }
            let c: serde_json::Map<String, serde_json::Value> = f
                .final_counters()
                .into_iter()
                .map(|(port, mut v)| {
                    if let Some(o) = v.as_object_mut() {
                        for k in ["timestamp", "level", "message", "port"] {
                            o.remove(k);
                        }
                    }
                    (port, v)
                })
                .collect();
            Ok(Some(serde_json::Value::Object(c)))
        }
        Running::LinuxBridge => {
            lab::ip(&["-n", ns.name(), "link", "del", "br0"])?;
            Ok(None)
        }
        Running::TcMirred => {
            lab::tc(ns, &["qdisc", "del", "dev", ifs::INLINE_1, "clsact"])?;
            Ok(None)
        }
    }
}

fn generate(
    gen: &Netns,
    cfg: &BenchConfig,
    duration: Duration,
) -> Result<crate::traffic::GenReport> {
    let gc = GenConfig {
        ifname: ifs::GEN.into(),
        sizes: FrameSizes::Fixed(cfg.frame_len),
        flows: cfg.flows,
        rate_pps: None,
        duration,
        count: None,
        sender: 1,
        stream: 0,
    };
    let cpu = cfg.gen_cpu;
    gen.enter(move || {
        if let Some(c) = cpu {
            let mut set = nix::sched::CpuSet::new();
            let _ = set.set(c);
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
        xdp_generate(&gc, &AtomicBool::new(false))
    })?
}

fn measure(lab: &Lab, dut: Dut, rep: u32, cfg: &BenchConfig) -> Result<Sample> {
    let running =
        set_up(dut, &lab.dut, cfg).with_context(|| format!("setting up {}", dut.name()))?;
    let mode = match &running {
        Running::Tapline(_, m, _) => m.clone(),
        _ => String::new(),
    };
    let result = (|| -> Result<Sample> {
        generate(lab.gen(), cfg, WARMUP)?;
        std::thread::sleep(SETTLE);
        let before = lab::rx_packets(lab.sink(), ifs::SINK)?;
        let cpu_before = report::CpuTimes::now();
        let g = generate(lab.gen(), cfg, Duration::from_secs_f64(cfg.seconds))?;
        let steal_ratio = report::CpuTimes::now().steal_since(&cpu_before);
        std::thread::sleep(SETTLE);
        let after = lab::rx_packets(lab.sink(), ifs::SINK)?;
        let delivered = after.saturating_sub(before);
        let secs = g.elapsed.as_secs_f64();
        Ok(Sample {
            dut,
            rep,
            offered_pps: g.sent as f64 / secs,
            delivered_pps: delivered as f64 / secs,
            loss_ratio: if g.sent > 0 {
                1.0 - (delivered as f64 / g.sent as f64).min(1.0)
            } else {
                0.0
            },
            mode: mode.clone(),
            steal_ratio,
            tapline_counters: None,
        })
    })();
    let counters = tear_down(running, &lab.dut)?;
    let mut sample = result?;
    sample.tapline_counters = counters;
    Ok(sample)
}

/// Runs the benchmark. `progress` is told about each sample as it lands.
pub fn run(
    cfg: &BenchConfig,
    mut progress: impl FnMut(&Sample, usize, usize),
) -> Result<BenchResult> {
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    let _ = lab::teardown(BENCH_PREFIX);
    let lab = Lab::build(BENCH_PREFIX, Scenario::Inline)?;
    let total = cfg.reps as usize * cfg.duts.len();
    let mut samples = Vec::with_capacity(total);
    for rep in 0..cfg.reps {
        // Rotate the order each repetition so no DUT always runs first.
        let n = cfg.duts.len();
        for k in 0..n {
            let dut = cfg.duts[(k + rep as usize) % n];
            let s = measure(&lab, dut, rep, cfg)?;
            progress(&s, samples.len() + 1, total);
            samples.push(s);
        }
    }
    let summary: Vec<Summary> = cfg
        .duts
        .iter()
        .map(|&d| {
            let del: Vec<f64> = samples
                .iter()
                .filter(|s| s.dut == d)
                .map(|s| s.delivered_pps / 1e6)
                .collect();
            let off: Vec<f64> = samples
                .iter()
                .filter(|s| s.dut == d)
                .map(|s| s.offered_pps / 1e6)
                .collect();
            Summary {
                dut: d,
                median_delivered_mpps: report::median(&del),
                median_offered_mpps: report::median(&off),
                samples: del,
            }
        })
        .collect();
    let get = |d: Dut| {
        summary
            .iter()
            .find(|s| s.dut == d)
            .map(|s| s.median_delivered_mpps)
    };
    let mut ratios = Vec::new();
    let mut per_rep_ratios = Vec::new();
    let pairs = [Dut::Tapline, Dut::TaplineGeneric, Dut::TaplineObserved]
        .into_iter()
        .flat_map(|ours| [(ours, Dut::LinuxBridge), (ours, Dut::TcMirred)])
        .chain([(Dut::TaplineObserved, Dut::Tapline)]);
    for (ours, peer) in pairs {
        {
            if let (Some(a), Some(b)) = (get(ours), get(peer)) {
                let name = format!("{} / {}", ours.name(), peer.name());
                ratios.push((name.clone(), a / b));
                let at = |d: Dut, rep: u32| {
                    samples
                        .iter()
                        .find(|s| s.dut == d && s.rep == rep)
                        .map(|s| s.delivered_pps)
                };
                let each: Vec<f64> = (0..cfg.reps)
                    .filter_map(|rep| Some(at(ours, rep)? / at(peer, rep)?))
                    .collect();
                per_rep_ratios.push((name, report::median(&each)));
            }
        }
    }
    Ok(BenchResult {
        benchmark: "inline-bridge-throughput",
        machine: Machine::describe(),
        config: cfg.clone(),
        generator: "tapline-bench AF_XDP TX (copy mode), one thread, unpaced",
        samples,
        summary,
        ratios,
        per_rep_ratios,
    })
}

/// The result as Markdown.
pub fn markdown(r: &BenchResult) -> String {
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .map(|s| {
            let steal: Vec<f64> = r
                .samples
                .iter()
                .filter(|x| x.dut == s.dut)
                .map(|x| x.steal_ratio * 100.0)
                .collect();
            vec![
                s.dut.name().to_string(),
                format!("{:.3}", s.median_delivered_mpps),
                format!("{:.3}", s.median_offered_mpps),
                format!("{:.1}", report::median(&steal)),
                s.samples
                    .iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let mut out = format!(
        "Inline forwarding, {}-byte frames ({} on the wire), {} reps x {} s, medians. Machine: {} ({} CPUs), kernel {}.\n\n",
        r.config.frame_len,
        r.config.frame_len + 4,
        r.config.reps,
        r.config.seconds,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel
    );
    out += &report::markdown_table(
        &[
            "DUT",
            "delivered Mpps",
            "offered Mpps",
            "steal %",
            "samples (Mpps)",
        ],
        &rows,
    );
    out += "\n";
    let ratio_rows: Vec<Vec<String>> = r
        .ratios
        .iter()
        .map(|(k, v)| {
            let per_rep = r
                .per_rep_ratios
                .iter()
                .find(|(name, _)| name == k)
                .map_or(f64::NAN, |(_, x)| *x);
            vec![k.clone(), format!("{v:.2}x"), format!("{per_rep:.2}x")]
        })
        .collect();
    out += &report::markdown_table(
        &["ratio", "of medians", "median of per-rep ratios"],
        &ratio_rows,
    );
    out += &format!(
        "\ntapline settings: [dataplane] {} [xdp] {}; generator: {}.\n",
        r.config.dataplane_keys.replace('\n', "; "),
        if r.config.xdp_keys.is_empty() {
            "defaults".to_string()
        } else {
            r.config.xdp_keys.replace('\n', "; ")
        },
        r.generator
    );
    let modes: Vec<String> = r
        .samples
        .iter()
        .filter(|s| !s.mode.is_empty())
        .map(|s| format!("{}={}", s.dut.name(), s.mode))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !modes.is_empty() {
        out += &format!("\nXDP mode obtained: {}\n", modes.join(", "));
    }
    out
}
