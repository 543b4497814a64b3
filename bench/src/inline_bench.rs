//! Inline forwarding throughput: tapline's bridge against the Linux bridge,
//! a tc mirred redirect and the peers of [`crate::peers`] (tapline-bench's
//! AF_PACKET forwarder, DPDK testpmd with `net_af_xdp`, Suricata in
//! af-packet IPS mode) on the same veth topology, in the same run,
//! interleaved, with medians over repetitions. A peer that is not installed
//! is listed as skipped, never measured or estimated.
//!
//! ```text
//! [gen] g0 --veth--> i1 [dut: tapline | br0 | tc mirred | peer] i2 --veth--> s0 [sink]
//! ```
//!
//! The generator is tapline's AF_XDP TX path (copy mode on veth) sending
//! frames of one length as fast as it can (64 bytes on the wire by default;
//! a sweep measures every DUT at each length of a list); throughput is what
//! arrives at `s0` (its rx_packets counter) per second of generation.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::observe::{ObserveRates, Observers};
use crate::peers::{self, AfPacketForwarder, Suricata, Testpmd};
use crate::plot;
use crate::report::{self, Machine};
use crate::runner::{lab_config, DataplaneProcess, StartOptions};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig, FCS_BYTES, MAX_FRAME, MIN_FRAME};

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
    /// The same over TLS with client certificates: the sidecar serves
    /// mTLS and `taplinectl stats --watch` holds an mTLS connection (the
    /// cost of encrypted observation, against `Tapline` in the same run).
    TaplineObservedMtls,
    /// Linux bridge, `bridge-nf-call-iptables = 0`.
    LinuxBridge,
    /// `tc` ingress u32 match-all + `mirred egress redirect`.
    TcMirred,
    /// tapline-bench's AF_PACKET forwarder (`tapline-bench peer
    /// af-packet-fwd`: recvmmsg/sendmmsg, one thread per direction).
    AfPacket,
    /// DPDK testpmd, io forwarding between two `net_af_xdp` ports, no
    /// hugepages.
    Testpmd,
    /// Suricata in af-packet IPS copy-mode (workers, one thread per
    /// interface) with one rule that never matches.
    Suricata,
}

impl Dut {
    /// Every DUT, in the order the CLI lists them.
    pub const ALL: [Dut; 9] = [
        Dut::Tapline,
        Dut::TaplineGeneric,
        Dut::TaplineObserved,
        Dut::TaplineObservedMtls,
        Dut::LinuxBridge,
        Dut::TcMirred,
        Dut::AfPacket,
        Dut::Testpmd,
        Dut::Suricata,
    ];

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Dut::Tapline => "tapline",
            Dut::TaplineGeneric => "tapline-generic",
            Dut::TaplineObserved => "tapline-observed",
            Dut::TaplineObservedMtls => "tapline-observed-mtls",
            Dut::LinuxBridge => "linux-bridge",
            Dut::TcMirred => "tc-mirred",
            Dut::AfPacket => "af-packet",
            Dut::Testpmd => "testpmd",
            Dut::Suricata => "suricata",
        }
    }

    /// Parses a CLI spelling.
    pub fn parse(s: &str) -> Result<Dut> {
        match Dut::ALL.into_iter().find(|d| d.name() == s) {
            Some(d) => Ok(d),
            None => bail!(
                "unknown DUT {s:?}: use {}",
                Dut::ALL.map(Dut::name).join(", ")
            ),
        }
    }

    /// Why the DUT cannot run on this machine (its software is not
    /// installed), or `None` when it can. A missing DUT is reported as
    /// skipped, never measured or estimated.
    pub fn missing(self) -> Option<String> {
        let program = match self {
            Dut::Testpmd => peers::TESTPMD,
            Dut::Suricata => peers::SURICATA,
            Dut::Tapline
            | Dut::TaplineGeneric
            | Dut::TaplineObserved
            | Dut::TaplineObservedMtls
            | Dut::LinuxBridge
            | Dut::TcMirred
            | Dut::AfPacket => return None,
        };
        match peers::find_program(program) {
            Some(_) => None,
            None => Some(format!("not installed ({program} not found in PATH)")),
        }
    }

    /// Whether it is one of tapline's own configurations (not a peer).
    pub fn is_tapline(self) -> bool {
        matches!(
            self,
            Dut::Tapline | Dut::TaplineGeneric | Dut::TaplineObserved | Dut::TaplineObservedMtls
        )
    }
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub duts: Vec<Dut>,
    pub reps: u32,
    pub seconds: f64,
    /// Frame lengths without FCS (60 = 64 bytes on the wire), measured in
    /// this order within each repetition.
    pub frame_lens: Vec<usize>,
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
    /// Frame length without FCS.
    pub frame_len: usize,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub loss_ratio: f64,
    /// The XDP mode tapline reported, or the XDP attach mode of a peer that
    /// loads an XDP program (testpmd's `net_af_xdp`, from `ip link`); empty
    /// otherwise.
    pub mode: String,
    /// Share of CPU time stolen by the hypervisor during the measurement:
    /// high values mean the sample says more about the host than the DUT.
    pub steal_ratio: f64,
    /// tapline's final counters for the run (where frames were lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tapline_counters: Option<serde_json::Value>,
    /// A peer's counters as it reported them on exit (af-packet: forwarded,
    /// dropped, kernel drops; testpmd: its accumulated forward statistics;
    /// Suricata: packets and drops per interface).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_counters: Option<serde_json::Value>,
}

/// Medians per DUT and frame length.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dut: Dut,
    /// Frame length without FCS.
    pub frame_len: usize,
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
    /// `tapline / peer` for each peer and frame length.
    pub ratios: Vec<Ratio>,
    /// DUTs asked for but not run because their software is not installed:
    /// listed, never measured or estimated.
    pub skipped: Vec<Skipped>,
}

/// A DUT that was not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub dut: Dut,
    /// From [`Dut::missing`].
    pub reason: String,
}

/// Splits `duts` into those that can run here and those whose software is
/// missing ([`Dut::missing`]).
pub fn split_missing(duts: &[Dut]) -> (Vec<Dut>, Vec<Skipped>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for &dut in duts {
        match dut.missing() {
            Some(reason) => skipped.push(Skipped { dut, reason }),
            None => run.push(dut),
        }
    }
    (run, skipped)
}

/// Delivered rate of one DUT over another's at one frame length.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// `"ours / peer"`, e.g. `"tapline / linux-bridge"`.
    pub name: String,
    /// Frame length without FCS.
    pub frame_len: usize,
    /// Ratio of the two medians.
    pub of_medians: f64,
    /// Median over repetitions of the ratio within each repetition (the DUTs
    /// of one repetition and frame length run back to back, so slow drift of
    /// the host cancels out).
    pub median_per_rep: f64,
}

const WARMUP: Duration = Duration::from_millis(500);
const SETTLE: Duration = Duration::from_millis(200);
/// Loopback ports of the sidecar in observed runs (three from here).
const OBSERVE_PORT_BASE: u16 = 31000;

pub(crate) enum Running {
    Tapline(DataplaneProcess, String, Option<Box<Observers>>),
    LinuxBridge,
    TcMirred,
    AfPacket(AfPacketForwarder),
    Testpmd(Testpmd),
    Suricata(Suricata),
}

impl Running {
    /// The XDP mode the DUT obtained, if it loads an XDP program and says.
    pub(crate) fn mode(&self) -> String {
        match self {
            Running::Tapline(_, mode, _) => mode.clone(),
            Running::Testpmd(t) => t.xdp_mode.clone(),
            Running::LinuxBridge
            | Running::TcMirred
            | Running::AfPacket(_)
            | Running::Suricata(_) => String::new(),
        }
    }
}

/// testpmd's (main, forwarding) CPUs among those this process may run on:
/// forwarding on `dut_cpu` like tapline's worker (default: the highest
/// allowed CPU), the mostly idle main lcore on another allowed CPU when
/// there is one.
pub fn testpmd_cpus(dut_cpu: Option<usize>) -> Result<(usize, usize)> {
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .context("reading this process's CPU affinity")?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    Ok(pick_testpmd_cpus(&cpus, dut_cpu))
}

/// [`testpmd_cpus`] over the allowed CPU ids `cpus` (ascending).
fn pick_testpmd_cpus(cpus: &[usize], dut_cpu: Option<usize>) -> (usize, usize) {
    let fwd = dut_cpu.or(cpus.last().copied()).unwrap_or(0);
    let main = cpus.iter().copied().find(|&c| c != fwd).unwrap_or(fwd);
    (main, fwd)
}

pub(crate) fn set_up(dut: Dut, ns: &Netns, cfg: &BenchConfig) -> Result<Running> {
    if let Some(reason) = dut.missing() {
        bail!("{}: {reason}", dut.name());
    }
    match dut {
        Dut::Tapline | Dut::TaplineGeneric | Dut::TaplineObserved | Dut::TaplineObservedMtls => {
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
            let observers = if matches!(dut, Dut::TaplineObserved | Dut::TaplineObservedMtls) {
                let base = OBSERVE_PORT_BASE + (std::process::id() % 1000) as u16 * 3;
                Some(Box::new(Observers::start(
                    &config,
                    p.state_dir(),
                    base,
                    ObserveRates {
                        mtls: dut == Dut::TaplineObservedMtls,
                        ..ObserveRates::default()
                    },
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
        Dut::AfPacket => Ok(Running::AfPacket(AfPacketForwarder::start(
            ns,
            ifs::INLINE_1,
            ifs::INLINE_2,
            crate::afpacket::DEFAULT_BATCH,
        )?)),
        Dut::Testpmd => {
            let (main_cpu, fwd_cpu) = testpmd_cpus(cfg.dut_cpu)?;
            Ok(Running::Testpmd(Testpmd::start(
                ns,
                ifs::INLINE_1,
                ifs::INLINE_2,
                main_cpu,
                fwd_cpu,
            )?))
        }
        Dut::Suricata => Ok(Running::Suricata(Suricata::start(
            ns,
            ifs::INLINE_1,
            ifs::INLINE_2,
        )?)),
    }
}

/// Tears the DUT down and returns its final counters: tapline's by port, a
/// peer's as it reported them on exit. Fails if the DUT did not exit
/// cleanly or left an XDP program or promiscuity behind.
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
                        for k in ["timestamp", "level", "target", "message", "port"] {
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
        Running::AfPacket(p) => Ok(Some(serde_json::to_value(p.stop()?)?)),
        Running::Testpmd(t) => Ok(Some(serde_json::to_value(t.stop()?)?)),
        Running::Suricata(p) => Ok(Some(serde_json::json!({ "interfaces": p.stop()? }))),
    }
}

fn generate(
    gen: &Netns,
    cfg: &BenchConfig,
    frame_len: usize,
    duration: Duration,
) -> Result<crate::traffic::GenReport> {
    let gc = GenConfig {
        ifname: ifs::GEN.into(),
        sizes: FrameSizes::Fixed(frame_len),
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

fn measure(lab: &Lab, dut: Dut, rep: u32, frame_len: usize, cfg: &BenchConfig) -> Result<Sample> {
    let running =
        set_up(dut, &lab.dut, cfg).with_context(|| format!("setting up {}", dut.name()))?;
    let mode = running.mode();
    let result = (|| -> Result<Sample> {
        generate(lab.gen(), cfg, frame_len, WARMUP)?;
        std::thread::sleep(SETTLE);
        let before = lab::rx_packets(lab.sink(), ifs::SINK)?;
        let cpu_before = report::CpuTimes::now();
        let g = generate(
            lab.gen(),
            cfg,
            frame_len,
            Duration::from_secs_f64(cfg.seconds),
        )?;
        let steal_ratio = report::CpuTimes::now().steal_since(&cpu_before);
        std::thread::sleep(SETTLE);
        let after = lab::rx_packets(lab.sink(), ifs::SINK)?;
        let delivered = after.saturating_sub(before);
        let secs = g.elapsed.as_secs_f64();
        Ok(Sample {
            dut,
            rep,
            frame_len,
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
            peer_counters: None,
        })
    })();
    let counters = match (tear_down(running, &lab.dut), result.as_ref()) {
        (Ok(c), _) => c,
        // The measurement's failure is the likelier cause of the teardown's:
        // both are reported, the measurement's first.
        (Err(e), Err(measured)) => {
            return Err(e.context(format!(
                "tearing down {} after the measurement failed: {measured:#}",
                dut.name()
            )))
        }
        (Err(e), Ok(_)) => return Err(e.context(format!("tearing down {}", dut.name()))),
    };
    let mut sample = result?;
    if dut.is_tapline() {
        sample.tapline_counters = counters;
    } else {
        sample.peer_counters = counters;
    }
    Ok(sample)
}

/// Runs the benchmark. `progress` is told about each sample as it lands.
pub fn run(
    cfg: &BenchConfig,
    mut progress: impl FnMut(&Sample, usize, usize),
) -> Result<BenchResult> {
    validate_frame_lens(&cfg.frame_lens)?;
    if !lab::privileged()? {
        bail!("the benchmark needs root");
    }
    // DUTs whose software is missing are listed, never run.
    let (runnable, skipped) = split_missing(&cfg.duts);
    let requested = cfg;
    let cfg = &BenchConfig {
        duts: runnable,
        ..requested.clone()
    };
    // A prefix of its own, so concurrent runs never share (or tear down)
    // each other's lab.
    let lab = Lab::build(&lab::unique_prefix(), Scenario::Inline)?;
    let total = cfg.reps as usize * cfg.frame_lens.len() * cfg.duts.len();
    let mut samples = Vec::with_capacity(total);
    for rep in 0..cfg.reps {
        // All DUTs back to back at each frame length, so drift of the host
        // hits them alike; the order rotates with every (rep, length) so no
        // DUT always runs first.
        for (i, &frame_len) in cfg.frame_lens.iter().enumerate() {
            let n = cfg.duts.len();
            for k in 0..n {
                let dut = cfg.duts[(k + rep as usize + i) % n];
                let s = measure(&lab, dut, rep, frame_len, cfg)?;
                progress(&s, samples.len() + 1, total);
                samples.push(s);
            }
        }
    }
    let (summary, ratios) = summarize(cfg, &samples);
    Ok(BenchResult {
        benchmark: "inline-bridge-throughput",
        machine: Machine::describe(),
        config: requested.clone(),
        generator: "tapline-bench AF_XDP TX (copy mode), one thread, unpaced",
        samples,
        summary,
        ratios,
        skipped,
    })
}

/// Medians per DUT and frame length, and `ours / peer` ratios per frame
/// length for the pairs that were both measured.
fn summarize(cfg: &BenchConfig, samples: &[Sample]) -> (Vec<Summary>, Vec<Ratio>) {
    let summary: Vec<Summary> = cfg
        .frame_lens
        .iter()
        .flat_map(|&len| cfg.duts.iter().map(move |&d| (d, len)))
        .map(|(d, len)| {
            let of = |s: &&Sample| s.dut == d && s.frame_len == len;
            let del: Vec<f64> = samples
                .iter()
                .filter(of)
                .map(|s| s.delivered_pps / 1e6)
                .collect();
            let off: Vec<f64> = samples
                .iter()
                .filter(of)
                .map(|s| s.offered_pps / 1e6)
                .collect();
            Summary {
                dut: d,
                frame_len: len,
                median_delivered_mpps: report::median(&del),
                median_offered_mpps: report::median(&off),
                samples: del,
            }
        })
        .collect();
    let get = |d: Dut, len: usize| {
        summary
            .iter()
            .find(|s| s.dut == d && s.frame_len == len)
            .map(|s| s.median_delivered_mpps)
    };
    let mut ratios = Vec::new();
    // tapline's configurations against every peer that ran (a pair with a
    // DUT that did not run has no medians and is left out).
    let pairs = Dut::ALL
        .into_iter()
        .filter(|d| d.is_tapline())
        .flat_map(|ours| {
            Dut::ALL
                .into_iter()
                .filter(|d| !d.is_tapline())
                .map(move |peer| (ours, peer))
        })
        .chain([
            (Dut::TaplineObserved, Dut::Tapline),
            (Dut::TaplineObservedMtls, Dut::Tapline),
        ]);
    for (ours, peer) in pairs {
        for &frame_len in &cfg.frame_lens {
            if let (Some(a), Some(b)) = (get(ours, frame_len), get(peer, frame_len)) {
                let at = |d: Dut, rep: u32| {
                    samples
                        .iter()
                        .find(|s| s.dut == d && s.rep == rep && s.frame_len == frame_len)
                        .map(|s| s.delivered_pps)
                };
                let each: Vec<f64> = (0..cfg.reps)
                    .filter_map(|rep| Some(at(ours, rep)? / at(peer, rep)?))
                    .collect();
                ratios.push(Ratio {
                    name: format!("{} / {}", ours.name(), peer.name()),
                    frame_len,
                    of_medians: a / b,
                    median_per_rep: report::median(&each),
                });
            }
        }
    }
    (summary, ratios)
}

/// Checks the frame lengths of a sweep: at least one, none twice, each a
/// frame the lab carries ([`MIN_FRAME`]..=[`MAX_FRAME`] without FCS).
pub fn validate_frame_lens(frame_lens: &[usize]) -> Result<()> {
    if frame_lens.is_empty() {
        bail!("no frame length to measure");
    }
    for (i, &len) in frame_lens.iter().enumerate() {
        if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
            bail!(
                "frame length {len} is outside {MIN_FRAME}..={MAX_FRAME} bytes (without FCS; \
                 {} to {} on the wire)",
                MIN_FRAME + FCS_BYTES,
                MAX_FRAME + FCS_BYTES
            );
        }
        if frame_lens[..i].contains(&len) {
            bail!("frame length {len} is listed twice");
        }
    }
    Ok(())
}

/// Throughput against frame size on the wire (length + FCS), one line per
/// DUT through its medians, as SVG text; `None` when only one frame length
/// was measured (a table says it better).
pub fn throughput_plot(r: &BenchResult) -> Result<Option<String>> {
    if r.config.frame_lens.len() < 2 {
        return Ok(None);
    }
    let series: Vec<plot::Series> = r
        .config
        .duts
        .iter()
        .map(|&d| {
            let mut points: Vec<(f64, f64)> = r
                .summary
                .iter()
                .filter(|s| s.dut == d && s.median_delivered_mpps.is_finite())
                .map(|s| ((s.frame_len + FCS_BYTES) as f64, s.median_delivered_mpps))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            plot::Series {
                name: d.name().to_string(),
                points,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let reps = match r.config.reps {
        1 => "1 rep".to_string(),
        n => format!("medians of {n} reps"),
    };
    let title = format!(
        "Inline forwarding throughput against frame size ({reps} x {} s)",
        r.config.seconds
    );
    plot::throughput_vs_frame_size(&title, &series).map(Some)
}

/// Delivered Mpps (medians), one row per DUT and a column per frame length.
fn sweep_table(r: &BenchResult) -> String {
    let lens = &r.config.frame_lens;
    let header: Vec<String> = std::iter::once("DUT".to_string())
        .chain(lens.iter().map(|l| format!("{} B", l + FCS_BYTES)))
        .collect();
    let rows: Vec<Vec<String>> = r
        .config
        .duts
        .iter()
        .filter(|&&d| r.summary.iter().any(|s| s.dut == d))
        .map(|&d| {
            std::iter::once(d.name().to_string())
                .chain(lens.iter().map(|&len| {
                    r.summary
                        .iter()
                        .find(|s| s.dut == d && s.frame_len == len)
                        .map_or("-".to_string(), |s| {
                            format!("{:.3}", s.median_delivered_mpps)
                        })
                }))
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    format!(
        "Delivered Mpps (medians) by frame size on the wire:\n\n{}",
        report::markdown_table(&header, &rows)
    )
}

/// The DUT and ratio tables of one frame length.
fn size_tables(r: &BenchResult, frame_len: usize) -> String {
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .filter(|s| s.frame_len == frame_len)
        .map(|s| {
            let steal: Vec<f64> = r
                .samples
                .iter()
                .filter(|x| x.dut == s.dut && x.frame_len == frame_len)
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
    let mut out = report::markdown_table(
        &[
            "DUT",
            "delivered Mpps",
            "offered Mpps",
            "steal %",
            "samples (Mpps)",
        ],
        &rows,
    );
    let ratio_rows: Vec<Vec<String>> = r
        .ratios
        .iter()
        .filter(|x| x.frame_len == frame_len)
        .map(|x| {
            vec![
                x.name.clone(),
                format!("{:.2}x", x.of_medians),
                format!("{:.2}x", x.median_per_rep),
            ]
        })
        .collect();
    if !ratio_rows.is_empty() {
        out += "\n";
        out += &report::markdown_table(
            &["ratio", "of medians", "median of per-rep ratios"],
            &ratio_rows,
        );
    }
    out
}

/// The result as Markdown.
pub fn markdown(r: &BenchResult) -> String {
    let lens = &r.config.frame_lens;
    let sizes = match lens.as_slice() {
        [len] => format!("{len}-byte frames ({} on the wire)", len + FCS_BYTES),
        _ => format!(
            "frames of {} bytes on the wire",
            lens.iter()
                .map(|l| (l + FCS_BYTES).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut out = format!(
        "Inline forwarding, {sizes}, {} reps x {} s, medians. Machine: {} ({} CPUs), kernel {}, {}.\n\n",
        r.config.reps,
        r.config.seconds,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel,
        r.machine.links()
    );
    if lens.len() > 1 {
        out += &sweep_table(r);
        out += "\n";
    }
    for (i, &len) in lens.iter().enumerate() {
        if lens.len() > 1 {
            if i > 0 {
                out += "\n";
            }
            out += &format!(
                "### {len}-byte frames ({} on the wire)\n\n",
                len + FCS_BYTES
            );
        }
        out += &size_tables(r, len);
    }
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
    if !r.skipped.is_empty() {
        out += "\nSkipped (not run, nothing estimated):\n";
        for s in &r.skipped {
            out += &format!("- {}: {}\n", s.dut.name(), s.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dut_names_round_trip_and_errors_list_every_name() {
        for d in Dut::ALL {
            assert_eq!(Dut::parse(d.name()).unwrap(), d);
            assert_eq!(
                serde_json::to_value(d).unwrap(),
                serde_json::Value::from(d.name())
            );
        }
        let err = Dut::parse("ovs").unwrap_err().to_string();
        for d in Dut::ALL {
            assert!(err.contains(d.name()), "{err}");
        }
        // Ours and the Linux peers never miss anything.
        for d in [Dut::Tapline, Dut::LinuxBridge, Dut::TcMirred, Dut::AfPacket] {
            assert_eq!(d.missing(), None, "{}", d.name());
        }
        assert_eq!(Dut::ALL.into_iter().filter(|d| d.is_tapline()).count(), 4);
    }

    #[test]
    fn ratios_cover_every_peer_that_ran_and_skipped_duts_are_listed() {
        let mut cfg = config(&[60]);
        cfg.duts = vec![Dut::Tapline, Dut::AfPacket, Dut::Suricata];
        let samples = vec![
            sample(Dut::Tapline, 0, 60, 0.9),
            sample(Dut::AfPacket, 0, 60, 0.6),
            sample(Dut::Suricata, 0, 60, 0.3),
        ];
        let (summary, ratios) = summarize(&cfg, &samples);
        let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["tapline / af-packet", "tapline / suricata"]);
        assert!((ratios[1].of_medians - 3.0).abs() < 1e-9);
        let mut r = sweep();
        r.config.frame_lens = vec![60];
        (r.summary, r.ratios, r.samples) = (summary, ratios, samples);
        r.skipped = vec![Skipped {
            dut: Dut::Testpmd,
            reason: "not installed (dpdk-testpmd not found in PATH)".into(),
        }];
        let md = markdown(&r);
        assert!(
            md.contains("| tapline / af-packet | 1.50x | 1.50x |"),
            "{md}"
        );
        assert!(
            md.contains(
                "Skipped (not run, nothing estimated):\n- testpmd: not installed (dpdk-testpmd not found in PATH)"
            ),
            "{md}"
        );
        assert!(!md.contains("| testpmd |"), "{md}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["skipped"][0]["dut"], "testpmd");
        assert!(json["summary"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["dut"] != "testpmd"));
    }

    fn config(frame_lens: &[usize]) -> BenchConfig {
        BenchConfig {
            duts: vec![Dut::Tapline, Dut::LinuxBridge],
            reps: 2,
            seconds: 1.0,
            frame_lens: frame_lens.to_vec(),
            flows: 64,
            gen_cpu: None,
            dut_cpu: None,
            dataplane_keys: String::new(),
            xdp_keys: String::new(),
        }
    }

    fn sample(dut: Dut, rep: u32, frame_len: usize, delivered_mpps: f64) -> Sample {
        Sample {
            dut,
            rep,
            frame_len,
            offered_pps: 1e6,
            delivered_pps: delivered_mpps * 1e6,
            loss_ratio: 0.0,
            mode: String::new(),
            steal_ratio: 0.0,
            tapline_counters: None,
            peer_counters: None,
        }
    }

    /// tapline at 0.8 and 0.6 Mpps for 60 bytes, 0.5 and 0.3 for 1514; the
    /// bridge at half of that in every repetition.
    fn sweep() -> BenchResult {
        let cfg = config(&[60, 1514]);
        let mut samples = Vec::new();
        for (rep, (short, long)) in [(0.8, 0.5), (0.6, 0.3)].into_iter().enumerate() {
            for (len, mpps) in [(60, short), (1514, long)] {
                samples.push(sample(Dut::Tapline, rep as u32, len, mpps));
                samples.push(sample(Dut::LinuxBridge, rep as u32, len, mpps / 2.0));
            }
        }
        let (summary, ratios) = summarize(&cfg, &samples);
        BenchResult {
            benchmark: "inline-bridge-throughput",
            machine: Machine {
                cpu_model: "test cpu".into(),
                cpus: 2,
                kernel: "6.18".into(),
                memory_gib: 24,
                nics: Vec::new(),
            },
            config: cfg,
            generator: "test",
            samples,
            summary,
            ratios,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn medians_and_ratios_are_per_dut_and_frame_length() {
        let r = sweep();
        let median = |d: Dut, len: usize| {
            r.summary
                .iter()
                .find(|s| s.dut == d && s.frame_len == len)
                .unwrap()
                .median_delivered_mpps
        };
        assert!((median(Dut::Tapline, 60) - 0.7).abs() < 1e-9);
        assert!((median(Dut::Tapline, 1514) - 0.4).abs() < 1e-9);
        assert!((median(Dut::LinuxBridge, 1514) - 0.2).abs() < 1e-9);
        assert_eq!(r.summary.len(), 4);
        let ratios: Vec<(&str, usize)> = r
            .ratios
            .iter()
            .map(|x| (x.name.as_str(), x.frame_len))
            .collect();
        assert_eq!(
            ratios,
            [
                ("tapline / linux-bridge", 60),
                ("tapline / linux-bridge", 1514)
            ]
        );
        for x in &r.ratios {
            assert!((x.of_medians - 2.0).abs() < 1e-9);
            assert!((x.median_per_rep - 2.0).abs() < 1e-9);
        }
    }

    #[test]
    fn sweep_markdown_has_a_column_and_a_section_per_size() {
        let md = markdown(&sweep());
        assert!(md.contains("| DUT | 64 B | 1518 B |"), "{md}");
        assert!(md.contains("| tapline | 0.700 | 0.400 |"), "{md}");
        assert!(md.contains("### 60-byte frames (64 on the wire)"), "{md}");
        assert!(
            md.contains("### 1514-byte frames (1518 on the wire)"),
            "{md}"
        );
        assert_eq!(
            md.matches("| tapline / linux-bridge | 2.00x | 2.00x |")
                .count(),
            2
        );
    }

    #[test]
    fn sweep_plot_has_a_series_per_dut_at_wire_sizes() {
        let svg = throughput_plot(&sweep()).unwrap().expect("two sizes plot");
        assert!(svg.contains("tapline") && svg.contains("linux-bridge"));
        assert!(svg.contains("frame size on the wire (bytes)"));
    }

    #[test]
    fn one_size_has_no_plot_and_the_old_layout() {
        let mut r = sweep();
        r.config.frame_lens = vec![60];
        r.samples.retain(|s| s.frame_len == 60);
        (r.summary, r.ratios) = summarize(&r.config, &r.samples);
        assert!(throughput_plot(&r).unwrap().is_none());
        let md = markdown(&r);
        assert!(
            md.starts_with("Inline forwarding, 60-byte frames (64 on the wire),"),
            "{md}"
        );
        assert!(!md.contains("###"), "{md}");
    }

    #[test]
    fn testpmd_cpus_are_allowed_cpu_ids() {
        // Allowed CPUs need not be 0..n: 2 and 5 of a larger machine.
        assert_eq!(pick_testpmd_cpus(&[2, 5], None), (2, 5));
        assert_eq!(pick_testpmd_cpus(&[2, 5], Some(2)), (5, 2));
        // One CPU: both lcores on it.
        assert_eq!(pick_testpmd_cpus(&[3], None), (3, 3));
        let (main, fwd) = testpmd_cpus(None).unwrap();
        let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        assert!(allowed.is_set(main).unwrap() && allowed.is_set(fwd).unwrap());
    }

    #[test]
    fn frame_lengths_are_checked() {
        validate_frame_lens(&[60, 124, 252, 508, 1020, 1514]).unwrap();
        for (lens, expected) in [
            (&[][..], "no frame length"),
            (&[59][..], "outside"),
            (&[1515][..], "outside"),
            (&[60, 124, 60][..], "listed twice"),
        ] {
            let err = validate_frame_lens(lens).unwrap_err().to_string();
            assert!(err.contains(expected), "{lens:?}: {err}");
        }
    }
}
