//! The self-contained demo: builds a lab, runs the dataplane on it, sends
//! traffic through the inline bridge (both ways) and into passive-1, prints
//! the counters, and removes everything again.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::lab::{self, ifs, Lab, Netns, Scenario};
use crate::report::markdown_table;
use crate::runner::{lab_config, DataplaneProcess};
use crate::traffic::{xdp_generate, FrameSizes, GenConfig, GenReport};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seconds: f64,
    /// Offered rate of each generator, frames per second.
    pub rate_pps: u64,
    pub frame_len: usize,
}

fn gen_in(ns: &Netns, ifname: &str, sender: u8, cfg: &DemoConfig) -> Result<GenReport> {
    let gc = GenConfig {
        ifname: ifname.to_string(),
        sizes: FrameSizes::Fixed(cfg.frame_len),
        flows: 64,
        rate_pps: Some(cfg.rate_pps),
        duration: Duration::from_secs_f64(cfg.seconds),
        count: None,
        sender,
        stream: u32::from(sender),
    };
    ns.enter(move || xdp_generate(&gc, &AtomicBool::new(false)))?
}

/// Runs the demo, printing as it goes. Fails if any frame went missing.
pub fn run(cfg: &DemoConfig) -> Result<()> {
    if !lab::privileged()? {
        bail!("the demo builds network namespaces and needs root");
    }
    let prefix = lab::unique_prefix();
    println!("==> building the lab (namespaces {prefix}-*)");
    println!("    [gen] g0 <-> i1 [dut] i2 <-> s0 [sink]      [tap] t0 <-> p1 [dut]");
    let lab = Lab::build(&prefix, Scenario::Full)?;
    let config = lab_config(
        Some(ifs::PASSIVE_1),
        Some((ifs::INLINE_1, ifs::INLINE_2)),
        "",
        "",
    );
    println!("==> starting tapline-dataplane in {}", lab.dut.name());
    let dp = DataplaneProcess::start_ready(&lab.dut, &config)?;
    for l in dp.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
            if v["message"] == crate::runner::READY_MESSAGE {
                // The log field is the Debug rendering of a list of strings.
                let ports = v["ports"]
                    .as_str()
                    .map_or_else(|| v["ports"].to_string(), str::to_string);
                println!("    ports: {}", ports.replace('"', ""));
            }
        }
    }
    let before = [
        lab::rx_packets(lab.sink(), ifs::SINK)?,
        lab::rx_packets(lab.gen(), ifs::GEN)?,
    ];
    println!(
        "==> sending {:.1} s of {}-byte frames at {} fps each: gen->inline-1, sink->inline-2, tap->passive-1",
        cfg.seconds, cfg.frame_len, cfg.rate_pps
    );
    let (fwd, rev, tap) = std::thread::scope(|s| {
        let a = s.spawn(|| gen_in(lab.gen(), ifs::GEN, 1, cfg));
        let b = s.spawn(|| gen_in(lab.sink(), ifs::SINK, 2, cfg));
        let c = s.spawn(|| gen_in(lab.tap(), ifs::TAP, 3, cfg));
        (a.join(), b.join(), c.join())
    });
    let (fwd, rev, tap) = (
        fwd.map_err(|_| anyhow::anyhow!("generator panicked"))??,
        rev.map_err(|_| anyhow::anyhow!("generator panicked"))??,
        tap.map_err(|_| anyhow::anyhow!("generator panicked"))??,
    );
    std::thread::sleep(Duration::from_millis(300));
    let at_sink = lab::rx_packets(lab.sink(), ifs::SINK)? - before[0];
    let at_gen = lab::rx_packets(lab.gen(), ifs::GEN)? - before[1];
    println!("==> stopping the dataplane (SIGTERM)");
    let fin = dp.stop_ok()?;
    let mut rows = Vec::new();
    for port in ["inline-1", "inline-2", "passive-1"] {
        rows.push(vec![
            port.to_string(),
            fin.counter(port, "rx_packets").to_string(),
            fin.counter(port, "tx_packets").to_string(),
            fin.counter(port, "drop_tx_ring_full").to_string(),
            (fin.counter(port, "kernel_rx_dropped") + fin.counter(port, "kernel_rx_ring_full"))
                .to_string(),
        ]);
    }
    println!("\ntapline counters\n");
    print!(
        "{}",
        markdown_table(
            &[
                "port",
                "rx packets",
                "tx packets",
                "dropped: tx ring full",
                "kernel drops"
            ],
            &rows
        )
    );
    let checks = [
        ("gen -> inline-1 -> inline-2 -> sink", fwd.sent, at_sink),
        ("sink -> inline-2 -> inline-1 -> gen", rev.sent, at_gen),
        (
            "tap -> passive-1 (captured)",
            tap.sent,
            fin.counter("passive-1", "rx_packets"),
        ),
    ];
    println!("\nend to end\n");
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|(what, sent, got)| vec![what.to_string(), sent.to_string(), got.to_string()])
        .collect();
    print!("{}", markdown_table(&["path", "sent", "arrived"], &rows));
    println!("\n==> removing the lab");
    drop(lab);
    let lost: Vec<&str> = checks
        .iter()
        .filter(|(_, s, g)| g < s)
        .map(|(w, _, _)| *w)
        .collect();
    if !lost.is_empty() {
        bail!("frames went missing on: {}", lost.join("; "));
    }
    println!("demo OK: every frame sent arrived");
    Ok(())
}
