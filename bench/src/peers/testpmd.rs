//! DPDK testpmd forwarding between two `net_af_xdp` ports.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{number_after, PeerProcess};
use crate::lab::{self, Netns};

/// The DPDK test application.
pub const TESTPMD: &str = "dpdk-testpmd";

/// testpmd's line once forwarding started (`io packet forwarding - ports=2
/// - cores=1 - streams=2 ...`).
const TESTPMD_READY: &str = "packet forwarding - ports=";
/// Where testpmd's final counters start.
const TESTPMD_TOTALS: &str = "Accumulated forward statistics for all ports";
/// Memory testpmd takes from the heap with `--no-huge` (MiB): its mbuf pool
/// of [`TESTPMD_MBUFS`] 2176-byte buffers and the rings of two ports.
const TESTPMD_MEMORY_MB: u32 = 256;
/// mbufs in testpmd's pool (its default, sized for many ports and
/// hugepages, does not fit in [`TESTPMD_MEMORY_MB`]).
const TESTPMD_MBUFS: u32 = 16_384;
/// Where DPDK keeps a process's runtime files, one directory per file
/// prefix.
const DPDK_RUNTIME_DIR: &str = "/var/run/dpdk";

/// testpmd's accumulated forward statistics over all ports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TestpmdStats {
    /// Frames its ports received.
    pub rx_packets: u64,
    /// Frames its ports missed (the AF_XDP rings were full).
    pub rx_dropped: u64,
    /// Frames it transmitted.
    pub tx_packets: u64,
    /// Frames a full TX ring refused (freed, not sent).
    pub tx_dropped: u64,
}

/// Reads testpmd's "Accumulated forward statistics for all ports" block:
///
/// ```text
///   +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
///   RX-packets: 1000           RX-dropped: 3             RX-total: 1003
///   TX-packets: 1000           TX-dropped: 0             TX-total: 1000
/// ```
pub fn parse_testpmd_stats(lines: &[String]) -> Option<TestpmdStats> {
    let start = lines.iter().rposition(|l| l.contains(TESTPMD_TOTALS))?;
    let block = &lines[start + 1..];
    let rx = block.iter().find(|l| l.contains("RX-packets:"))?;
    let tx = block.iter().find(|l| l.contains("TX-packets:"))?;
    Some(TestpmdStats {
        rx_packets: number_after(rx, "RX-packets:")?,
        rx_dropped: number_after(rx, "RX-dropped:")?,
        tx_packets: number_after(tx, "TX-packets:")?,
        tx_dropped: number_after(tx, "TX-dropped:")?,
    })
}

/// The XDP attach mode `ip -d link` reports for `ifname` (`native`,
/// `generic`, `offload`, `multi`), `None` without a program.
pub fn xdp_attach_mode(ns: &Netns, ifname: &str) -> Result<Option<&'static str>> {
    let out = lab::ip(&["-n", ns.name(), "-j", "-d", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    // XDP_ATTACHED_* of linux/if_link.h.
    Ok(match v[0]["xdp"]["mode"].as_u64() {
        None => None,
        Some(1) => Some("native"),
        Some(2) => Some("generic"),
        Some(3) => Some("offload"),
        Some(_) => Some("multi"),
    })
}

/// DPDK testpmd forwarding between two `net_af_xdp` ports (io mode, no
/// hugepages, no PCI), running in a namespace.
#[derive(Debug)]
pub struct Testpmd {
    /// Dropped (killed) before `cleanup` runs.
    process: PeerProcess,
    cleanup: TestpmdCleanup,
    /// XDP attach mode of the first port while testpmd ran.
    pub xdp_mode: String,
}

impl Testpmd {
    /// Starts testpmd forwarding `a <-> b` in `ns`: its main lcore on
    /// `main_cpu`, the forwarding lcore on `fwd_cpu` (they may be the same
    /// CPU).
    pub fn start(ns: &Netns, a: &str, b: &str, main_cpu: usize, fwd_cpu: usize) -> Result<Testpmd> {
        let ifaces = [a.to_string(), b.to_string()];
        let mut promiscuity_before = [0; 2];
        for (p, i) in promiscuity_before.iter_mut().zip(&ifaces) {
            *p = lab::link_state(ns, i)?.promiscuity;
        }
        // From here on, whatever happens, the interfaces are restored.
        let cleanup = TestpmdCleanup {
            ns: ns.name().to_string(),
            ifaces,
            promiscuity_before,
            file_prefix: lab::unique_prefix(),
            done: false,
        };
        let mut cmd = ns.command(TESTPMD);
        cmd.args(["--no-huge", "--no-pci", "--no-shconf", "--file-prefix"])
            .arg(&cleanup.file_prefix)
            .arg("-m")
            .arg(TESTPMD_MEMORY_MB.to_string())
            // lcore 0 (main) and 1 (forwarding), each pinned to its CPU.
            .arg("--lcores")
            .arg(format!("0@{main_cpu},1@{fwd_cpu}"))
            .arg("--vdev")
            .arg(format!("net_af_xdp0,iface={a}"))
            .arg("--vdev")
            .arg(format!("net_af_xdp1,iface={b}"))
            .arg("--")
            .args(["--forward-mode=io", "--auto-start"])
            // With a stats period testpmd runs until a signal; without one
            // it reads commands and exits at the end of stdin.
            .args(["--stats-period", "1"])
            .arg(format!("--total-num-mbufs={TESTPMD_MBUFS}"));
        let process = PeerProcess::start(TESTPMD, cmd, |l| l.contains(TESTPMD_READY))?;
        let xdp_mode = xdp_attach_mode(ns, a)?.unwrap_or("none").to_string();
        Ok(Testpmd {
            process,
            cleanup,
            xdp_mode,
        })
    }

    /// Stops testpmd, checks that it exited cleanly, and leaves the
    /// interfaces as they were: no XDP program, promiscuity as before, no
    /// runtime directory. Returns its final counters.
    pub fn stop(self) -> Result<TestpmdStats> {
        let Testpmd {
            process,
            mut cleanup,
            ..
        } = self;
        let exit = process.stop();
        let cleaned = cleanup.run();
        let exit = exit?;
        cleaned?;
        if !exit.status.success() {
            bail!("{TESTPMD} exited with {}:\n{}", exit.status, exit.tail());
        }
        parse_testpmd_stats(&exit.lines).with_context(|| {
            format!(
                "{TESTPMD} printed no accumulated forward statistics:\n{}",
                exit.tail()
            )
        })
    }
}

/// Undoes what testpmd may leave behind: an XDP program attached through
/// netlink (when it dies), promiscuous mode set with `SIOCSIFFLAGS`
/// (always), and its runtime directory. Runs on drop unless it ran.
#[derive(Debug)]
struct TestpmdCleanup {
    ns: String,
    ifaces: [String; 2],
    /// Promiscuity of each interface before testpmd started.
    promiscuity_before: [u64; 2],
    /// DPDK `--file-prefix`: names the runtime directory.
    file_prefix: String,
    done: bool,
}

impl TestpmdCleanup {
    /// Restores both interfaces and removes the runtime directory. Every
    /// step runs whatever failed before it, so one failure never leaves the
    /// other interface or the directory behind; the failures are reported
    /// together.
    fn run(&mut self) -> Result<()> {
        self.done = true;
        let ns = Netns::existing(&self.ns);
        let mut errors = Vec::new();
        for (ifname, &before) in self.ifaces.iter().zip(&self.promiscuity_before) {
            restore_interface(&ns, ifname, before, &mut errors);
        }
        let dir = Path::new(DPDK_RUNTIME_DIR).join(&self.file_prefix);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                errors.push(anyhow::Error::new(e).context(format!("removing {}", dir.display())))
            }
        }
        // Only if empty: other DPDK processes may keep theirs there.
        let _ = std::fs::remove_dir(DPDK_RUNTIME_DIR);
        combine_errors(&format!("cleaning up after {TESTPMD}"), errors)
    }
}

/// Detaches an XDP program from `ifname` and turns promiscuous mode off if
/// testpmd raised it above `before`, then checks both. Each failure is
/// pushed to `errors` and the following steps still run.
fn restore_interface(ns: &Netns, ifname: &str, before: u64, errors: &mut Vec<anyhow::Error>) {
    let state = match lab::link_state(ns, ifname) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e.context(format!("reading {ifname}'s state after {TESTPMD}")));
            return;
        }
    };
    if state.xdp_attached {
        if let Err(e) = lab::ip(&["-n", ns.name(), "link", "set", "dev", ifname, "xdp", "off"]) {
            errors.push(e.context(format!("detaching {TESTPMD}'s XDP program from {ifname}")));
        }
    }
    if state.promiscuity > before {
        if let Err(e) = lab::ip(&[
            "-n",
            ns.name(),
            "link",
            "set",
            "dev",
            ifname,
            "promisc",
            "off",
        ]) {
            errors.push(e.context(format!("turning {ifname}'s promiscuous mode off")));
        }
    }
    match lab::link_state(ns, ifname) {
        Ok(after) if after.xdp_attached || after.promiscuity > before => {
            errors.push(anyhow::anyhow!(
                "{ifname} after {TESTPMD}: XDP attached {}, promiscuity {} (was {before})",
                after.xdp_attached,
                after.promiscuity
            ));
        }
        Ok(_) => {}
        Err(e) => errors.push(e.context(format!("checking {ifname}'s state after {TESTPMD}"))),
    }
}

/// `Ok` without errors, the error itself when there is one, and one error
/// listing them all (`what` first) when there are several.
fn combine_errors(what: &str, mut errors: Vec<anyhow::Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let list: Vec<String> = errors.iter().map(|e| format!("- {e:#}")).collect();
            bail!("{what}: {n} steps failed:\n{}", list.join("\n"))
        }
    }
}

impl Drop for TestpmdCleanup {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::lines;
    use super::*;

    #[test]
    fn testpmd_totals_are_read_from_the_accumulated_block() {
        let out = lines(
            "  ---------------------- Forward statistics for port 0  ----------------------\n\
             \x20 RX-packets: 7              RX-dropped: 1             RX-total: 8\n\
             \x20 TX-packets: 5              TX-dropped: 0             TX-total: 5\n\
             \x20 +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++\n\
             \x20 RX-packets: 1000           RX-dropped: 3             RX-total: 1003\n\
             \x20 TX-packets: 998            TX-dropped: 2             TX-total: 1000\n\
             \x20 ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++\n\
             Done.\nBye...",
        );
        assert_eq!(
            parse_testpmd_stats(&out),
            Some(TestpmdStats {
                rx_packets: 1000,
                rx_dropped: 3,
                tx_packets: 998,
                tx_dropped: 2,
            })
        );
        // The periodic port statistics are not the totals.
        let periodic = lines(
            "Port statistics ====================================\n\
             \x20 RX-packets: 0          RX-missed: 0          RX-bytes:  0\n",
        );
        assert_eq!(parse_testpmd_stats(&periodic), None);
    }

    #[test]
    fn testpmd_readiness_is_the_forwarding_line() {
        let line =
            "io packet forwarding - ports=2 - cores=1 - streams=2 - NUMA support enabled, MP allocation mode: native";
        assert!(line.contains(TESTPMD_READY));
        assert!(!"Set io packet forwarding mode".contains(TESTPMD_READY));
    }
}
