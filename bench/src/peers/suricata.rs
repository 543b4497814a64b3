//! Suricata in af-packet IPS copy-mode.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{number_after, tail, PeerProcess};
use crate::lab::{self, Netns};

/// The Suricata binary.
pub const SURICATA: &str = "suricata";

/// Suricata's line once its threads run. Its capture threads open their
/// sockets only after that, so it is not enough on its own: see
/// [`suricata_ready`].
const SURICATA_ENGINE_STARTED: &str = "Engine started";
/// What follows `af-packet: <interface>: ` in the line a capture thread
/// logs (at the `perf` level) once its socket is open and bound, as it sets
/// up the socket's receive ring.
const SURICATA_RING_READY: &str = "rx ring:";
/// The rule Suricata inspects every frame against: it never matches the
/// generator's frames (their payload is a sequence number and zeros).
const SURICATA_RULE: &str = "alert udp any any -> any any (msg:\"tapline-bench: never matches\"; \
     content:\"tapline-bench-no-match\"; sid:9000001; rev:1;)";
/// af-packet fanout group ids of Suricata's two interfaces.
const SURICATA_CLUSTER_IDS: [u32; 2] = [97, 98];

/// Suricata's capture counters of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuricataInterface {
    pub ifname: String,
    /// Frames its af-packet socket received.
    pub packets: u64,
    /// Frames the kernel dropped before Suricata read them.
    pub drops: u64,
}

/// Reads the per-interface lines Suricata prints on exit:
/// `i: device: i1: packets: 1000, drops: 0 (0.00%), invalid chksum: 0`.
pub fn parse_suricata_stats(lines: &[String]) -> Vec<SuricataInterface> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("device: ")? + "device: ".len()..];
            let (ifname, counters) = rest.split_once(": ")?;
            Some(SuricataInterface {
                ifname: ifname.to_string(),
                packets: number_after(counters, "packets:")?,
                drops: number_after(counters, "drops:")?,
            })
        })
        .collect()
}

/// Suricata in af-packet IPS copy-mode between two interfaces (workers run
/// mode, one thread per interface, one rule that never matches), running
/// in a namespace.
#[derive(Debug)]
pub struct Suricata {
    /// Dropped (killed) before `_dir` is removed.
    process: PeerProcess,
    /// The two interfaces it bridges.
    ifaces: [String; 2],
    /// Config, rule and log directory.
    _dir: SuricataDir,
}

/// Suricata's config for IPS copy-mode `a <-> b`, everything under `dir`.
fn suricata_config(dir: &Path, a: &str, b: &str) -> String {
    let dir = dir.display();
    let iface = |from: &str, to: &str, cluster: u32| {
        format!(
            "  - interface: {from}\n    threads: 1\n    cluster-id: {cluster}\n    \
             cluster-type: cluster_flow\n    defrag: no\n    copy-mode: ips\n    \
             copy-iface: {to}\n    use-mmap: yes\n    tpacket-v3: no\n"
        )
    };
    format!(
        "%YAML 1.1\n---\n\
         vars:\n  address-groups:\n    HOME_NET: \"any\"\n    EXTERNAL_NET: \"any\"\n\
         default-log-dir: {dir}\n\
         default-rule-path: {dir}\n\
         rule-files:\n  - tapline-bench.rules\n\
         classification-file: {dir}/classification.config\n\
         reference-config-file: {dir}/reference.config\n\
         outputs:\n  - eve-log:\n      enabled: no\n\
         logging:\n  default-log-level: perf\n  outputs:\n    - console:\n        enabled: yes\n    \
         - file:\n        enabled: no\n\
         stats:\n  enabled: no\n\
         unix-command:\n  enabled: no\n\
         af-packet:\n{}{}",
        iface(a, b, SURICATA_CLUSTER_IDS[0]),
        iface(b, a, SURICATA_CLUSTER_IDS[1]),
    )
}

/// Whether Suricata's output so far says it is ready: the engine started
/// and the capture sockets of both `ifaces` are bound. Suricata prints
/// "Engine started" once its threads are initialised, but each capture
/// thread opens its socket only afterwards, in its receive loop.
fn suricata_ready(lines: &[String], ifaces: &[String; 2]) -> bool {
    let ring_ready = |ifname: &str| {
        let prefix = format!("af-packet: {ifname}: {SURICATA_RING_READY}");
        lines.iter().any(|l| l.contains(&prefix))
    };
    lines.iter().any(|l| l.contains(SURICATA_ENGINE_STARTED))
        && ifaces.iter().all(|i| ring_ready(i))
}

/// The counters Suricata printed for exactly `ifaces`, in that order; an
/// error (quoting its output) when either is missing or another shows up.
fn suricata_counters(lines: &[String], ifaces: &[String; 2]) -> Result<Vec<SuricataInterface>> {
    let found = parse_suricata_stats(lines);
    let names: Vec<&str> = found.iter().map(|i| i.ifname.as_str()).collect();
    let mut ordered = Vec::with_capacity(ifaces.len());
    for ifname in ifaces {
        let mut of_iface = found.iter().filter(|i| &i.ifname == ifname);
        match (of_iface.next(), of_iface.next()) {
            (Some(i), None) => ordered.push(i.clone()),
            _ => bail!(
                "{SURICATA} printed counters for {names:?}, expected exactly one line each for \
                 {ifaces:?}:\n{}",
                tail(lines)
            ),
        }
    }
    if found.len() != ifaces.len() {
        bail!(
            "{SURICATA} printed counters for {names:?}, expected exactly {ifaces:?}:\n{}",
            tail(lines)
        );
    }
    Ok(ordered)
}

impl Suricata {
    /// Writes the config and rule to a fresh directory and starts Suricata
    /// bridging `a <-> b` in `ns`; waits until its engine runs and both
    /// capture sockets are bound.
    ///
    /// Suricata then still discards what arrives until its capture threads
    /// have synchronised (each one's first frame after that, or 100 ms
    /// without one): the benchmark's warm-up covers that, and a caller that
    /// counts every frame sends probes until one gets through each way
    /// first.
    pub fn start(ns: &Netns, a: &str, b: &str) -> Result<Suricata> {
        let dir = std::env::temp_dir().join(format!("{}-suricata", lab::unique_prefix()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = SuricataDir(dir.clone());
        let config = dir.join("suricata.yaml");
        std::fs::write(&config, suricata_config(&dir, a, b))?;
        std::fs::write(
            dir.join("tapline-bench.rules"),
            format!("{SURICATA_RULE}\n"),
        )?;
        // Empty: the rule uses no classtype or reference.
        std::fs::write(dir.join("classification.config"), "")?;
        std::fs::write(dir.join("reference.config"), "")?;
        let mut cmd = ns.command(SURICATA);
        cmd.arg("-c")
            .arg(&config)
            .args(["--af-packet", "--runmode", "workers", "-l"])
            .arg(&dir);
        let ifaces = [a.to_string(), b.to_string()];
        let process =
            PeerProcess::start_when(SURICATA, cmd, |lines| suricata_ready(lines, &ifaces))?;
        Ok(Suricata {
            process,
            ifaces,
            _dir: guard,
        })
    }

    /// Stops Suricata (SIGTERM), checks that it exited cleanly and returns
    /// its capture counters: one entry per interface, in the order of
    /// [`Suricata::start`]'s `a` and `b`.
    pub fn stop(self) -> Result<Vec<SuricataInterface>> {
        let exit = self.process.stop_ok()?;
        suricata_counters(&exit.lines, &self.ifaces)
    }
}

/// Removes Suricata's directory on drop.
#[derive(Debug)]
struct SuricataDir(PathBuf);

impl Drop for SuricataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
#[cfg(test)]
mod tests {
    use super::super::tests::lines;
    use super::*;

    #[test]
    fn suricata_device_lines_give_packets_and_drops() {
        let out = lines(
            "i: suricata: Signal Received.  Stopping engine.\n\
             i: device: i1: packets: 123456, drops: 78 (0.06%), invalid chksum: 0\n\
             i: device: i2: packets: 0, drops: 0 (0.00%), invalid chksum: 0\n",
        );
        assert_eq!(
            parse_suricata_stats(&out),
            vec![
                SuricataInterface {
                    ifname: "i1".into(),
                    packets: 123_456,
                    drops: 78
                },
                SuricataInterface {
                    ifname: "i2".into(),
                    packets: 0,
                    drops: 0
                },
            ]
        );
    }

    #[test]
    fn suricata_is_ready_once_both_capture_sockets_are_bound() {
        let ifaces = ["i1".to_string(), "i2".to_string()];
        let mut out = lines(
            "Perf: af-packet: i1: rx ring: block_size=131072 block_nr=26 frame_size=1600 frame_nr=2106\n\
             Notice: threads: Threads created -> W: 2 FM: 1 FR: 1   Engine started.",
        );
        // The engine started, i2's socket is not open yet.
        assert!(!suricata_ready(&out, &ifaces));
        out.push("Perf: af-packet: i2: rx ring: block_size=131072 block_nr=26".into());
        assert!(suricata_ready(&out, &ifaces));
        // Both sockets, but not the engine.
        assert!(!suricata_ready(&out[..1], &ifaces));
        assert!(!suricata_ready(&[out[0].clone(), out[2].clone()], &ifaces));
    }

    #[test]
    fn suricata_counters_need_exactly_both_interfaces() -> Result<()> {
        let ifaces = ["i1".to_string(), "i2".to_string()];
        let both = lines(
            "Notice: device: i2: packets: 7, drops: 1 (0.00%), invalid chksum: 0\n\
             Notice: device: i1: packets: 5, drops: 0 (0.00%), invalid chksum: 0",
        );
        let c = suricata_counters(&both, &ifaces)?;
        assert_eq!(
            c.iter()
                .map(|i| (i.ifname.as_str(), i.packets))
                .collect::<Vec<_>>(),
            [("i1", 5), ("i2", 7)]
        );
        let err = suricata_counters(&both[..1], &ifaces)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[\"i2\"]") && err.contains("device: i2"),
            "{err}"
        );
        assert!(suricata_counters(&[], &ifaces).is_err());
        let mut extra = both.clone();
        extra.push("Notice: device: i3: packets: 1, drops: 0 (0.00%), invalid chksum: 0".into());
        assert!(suricata_counters(&extra, &ifaces).is_err());
        let mut twice = both;
        twice.push("Notice: device: i1: packets: 1, drops: 0 (0.00%), invalid chksum: 0".into());
        assert!(suricata_counters(&twice, &ifaces).is_err());
        Ok(())
    }

    #[test]
    fn suricata_config_bridges_both_ways_in_ips_copy_mode() {
        let c = suricata_config(Path::new("/tmp/x"), "i1", "i2");
        assert!(c.starts_with("%YAML 1.1\n---\n"));
        assert!(c.contains("  - interface: i1\n"));
        assert!(c.contains("    copy-iface: i2\n"));
        assert!(c.contains("  - interface: i2\n"));
        assert!(c.contains("    copy-iface: i1\n"));
        assert_eq!(c.matches("copy-mode: ips").count(), 2);
        assert!(c.contains("default-rule-path: /tmp/x\n"));
        // IPS copy-mode needs TPACKET_V2.
        assert_eq!(c.matches("tpacket-v3: no").count(), 2);
    }
}
