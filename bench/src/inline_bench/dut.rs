//! One DUT on the inline lab: set up, measured, torn down.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{BenchConfig, Dut, Sample};
use crate::lab::{self, ifs, Lab, Netns};
use crate::observe::{ObserveRates, Observers};
use crate::peers::{AfPacketForwarder, Suricata, Testpmd};
use crate::report;
use crate::runner::{lab_config, DataplaneProcess};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig};

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
pub(super) fn pick_testpmd_cpus(cpus: &[usize], dut_cpu: Option<usize>) -> (usize, usize) {
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
            let p = DataplaneProcess::start_ready(ns, &config)?;
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
            let f = p.stop_ok()?;
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

pub(super) fn measure(
    lab: &Lab,
    dut: Dut,
    rep: u32,
    frame_len: usize,
    cfg: &BenchConfig,
) -> Result<Sample> {
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
