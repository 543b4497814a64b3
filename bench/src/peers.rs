//! Peers of the benchmarks that run as processes inside a lab namespace:
//! tapline-bench's own AF_PACKET forwarder and reader ([`crate::afpacket`]),
//! DPDK testpmd forwarding between two `net_af_xdp` ports, and Suricata in
//! af-packet IPS copy-mode.
//!
//! Each is started with [`Netns::command`], its stdout and stderr captured
//! line by line; a start waits for the line that says the peer is ready and
//! fails with everything it printed if it exits or hangs instead. Stopping
//! sends SIGTERM, waits, and reads the counters the peer printed on the way
//! out. A peer that is not installed is found out by [`find_program`]
//! before anything runs.
//!
//! Peers clean up after themselves, and where they do not, the stop does:
//! testpmd's AF_XDP PMD attaches its XDP program through netlink (it stays
//! if the process dies) and turns promiscuous mode on with `SIOCSIFFLAGS`
//! (it stays after a clean exit), so [`Testpmd::stop`] detaches the one and
//! turns the other off, and removes DPDK's runtime directory. Suricata's
//! config, rule and log directory are removed with it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::afpacket::{ForwardCounts, ReadCounts};
use crate::lab::{self, Netns};
use crate::runner::{wait_or_kill, workspace_binary};

/// The DPDK test application.
pub const TESTPMD: &str = "dpdk-testpmd";
/// The Suricata binary.
pub const SURICATA: &str = "suricata";

/// How long a peer may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);
/// Lines of a peer's output quoted in an error.
const ERROR_TAIL_LINES: usize = 60;

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

/// The path of `program` in `$PATH`, if it is installed there.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A peer process in a lab namespace, its output collected line by line.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// How a peer ended.
#[derive(Debug)]
pub struct PeerExit {
    pub status: ExitStatus,
    /// stdout and stderr lines, in arrival order per stream.
    pub lines: Vec<String>,
}

impl PeerExit {
    /// The last [`ERROR_TAIL_LINES`] lines, for an error message.
    pub fn tail(&self) -> String {
        tail(&self.lines)
    }
}

fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n")
}

impl PeerProcess {
    /// Starts `cmd` (built with [`Netns::command`]) with stdin closed and
    /// its output captured, and waits until a line satisfies `ready`.
    pub fn start(name: &str, cmd: Command, ready: impl Fn(&str) -> bool) -> Result<PeerProcess> {
        PeerProcess::start_when(name, cmd, |lines| lines.iter().any(|l| ready(l)))
    }

    /// Like [`PeerProcess::start`], but waits until the output so far (every
    /// line, in arrival order per stream) satisfies `ready`: for a peer that
    /// is ready only once several lines appeared.
    pub fn start_when(
        name: &str,
        mut cmd: Command,
        ready: impl Fn(&[String]) -> bool,
    ) -> Result<PeerProcess> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().context("stdout is piped")?),
            Box::new(child.stderr.take().context("stderr is piped")?),
        ];
        for stream in streams {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("peer lines").push(line);
                }
            }));
        }
        let mut p = PeerProcess {
            name: name.to_string(),
            child,
            lines,
            readers,
        };
        p.wait_ready(ready)?;
        Ok(p)
    }

    fn wait_ready(&mut self, ready: impl Fn(&[String]) -> bool) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready(&self.lines.lock().expect("peer lines")) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let exit = self.finish(status);
                bail!(
                    "{} exited ({}) before it was ready:\n{}",
                    self.name,
                    exit.status,
                    exit.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {START_TIMEOUT:?}:\n{}",
                    self.name,
                    tail(&self.lines())
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("peer lines").clone()
    }

    /// SIGTERM, then waits up to [`STOP_TIMEOUT`]; a peer still running
    /// then is killed and the stop fails.
    pub fn stop(mut self) -> Result<PeerExit> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if self.child.try_wait()?.is_none() {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .with_context(|| format!("signalling {}", self.name))?;
        }
        let (status, killed) = wait_or_kill(&mut self.child, STOP_TIMEOUT)?;
        let exit = self.finish(status);
        if killed {
            bail!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed):\n{}",
                self.name,
                exit.tail()
            );
        }
        Ok(exit)
    }

    /// Stops the peer and requires a clean exit.
    pub fn stop_ok(self) -> Result<PeerExit> {
        let name = self.name.clone();
        let exit = self.stop()?;
        if !exit.status.success() {
            bail!("{name} exited with {}:\n{}", exit.status, exit.tail());
        }
        Ok(exit)
    }

    fn finish(&mut self, status: ExitStatus) -> PeerExit {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        PeerExit {
            status,
            lines: self.lines(),
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `line` is the JSON event `event` of an AF_PACKET peer.
fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// The counters of the last `{"event":"done",...}` line in `lines`.
pub fn parse_done<T: DeserializeOwned>(lines: &[String]) -> Result<T> {
    let line = lines
        .iter()
        .rev()
        .find(|l| is_event(l, "done"))
        .context("no {\"event\":\"done\"} line")?;
    serde_json::from_str(line).with_context(|| format!("parsing {line}"))
}

/// The `received` count of the last `{"event":"progress",...}` line in
/// `lines`, 0 before the first.
fn last_progress(lines: &[String]) -> u64 {
    lines
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "progress")
        .and_then(|v| v["received"].as_u64())
        .unwrap_or(0)
}

/// `tapline-bench peer ARGS...` in `ns`, ready at `{"event":"ready"}`.
fn start_afpacket_peer(ns: &Netns, name: &str, args: &[&str]) -> Result<PeerProcess> {
    let mut cmd = ns.command(workspace_binary("tapline-bench")?);
    cmd.arg("peer").args(args);
    PeerProcess::start(name, cmd, |l| is_event(l, "ready"))
}

/// `tapline-bench peer af-packet-fwd` running in a namespace.
#[derive(Debug)]
pub struct AfPacketForwarder(PeerProcess);

impl AfPacketForwarder {
    /// Starts the forwarder `a <-> b` in `ns` and waits until its sockets
    /// are bound.
    pub fn start(ns: &Netns, a: &str, b: &str, batch: usize) -> Result<AfPacketForwarder> {
        let batch = batch.to_string();
        start_afpacket_peer(
            ns,
            "af-packet-fwd",
            &["af-packet-fwd", "--a", a, "--b", b, "--batch", &batch],
        )
        .map(AfPacketForwarder)
    }

    /// Stops it and returns its counters.
    pub fn stop(self) -> Result<ForwardCounts> {
        let exit = self.0.stop_ok()?;
        parse_done(&exit.lines).with_context(|| format!("af-packet-fwd:\n{}", exit.tail()))
    }
}

/// `tapline-bench peer af-packet-read` running in a namespace.
#[derive(Debug)]
pub struct AfPacketReader(PeerProcess);

impl AfPacketReader {
    /// Starts the reader on `iface` in `ns` and waits until its socket is
    /// bound.
    pub fn start(ns: &Netns, iface: &str, batch: usize) -> Result<AfPacketReader> {
        let batch = batch.to_string();
        start_afpacket_peer(
            ns,
            "af-packet-read",
            &["af-packet-read", "--iface", iface, "--batch", &batch],
        )
        .map(AfPacketReader)
    }

    /// Frames it counted so far, from its last `progress` event (it reports
    /// every 100 ms while the count grows).
    pub fn received(&self) -> u64 {
        last_progress(&self.0.lines())
    }

    /// Waits until it counted at least `frames` frames; fails after
    /// `timeout` with the count it reached.
    pub fn wait_received(&self, frames: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received >= frames {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("af-packet-read counted {received} of {frames} frames within {timeout:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops it and returns its counters.
    pub fn stop(self) -> Result<ReadCounts> {
        let exit = self.0.stop_ok()?;
        parse_done(&exit.lines).with_context(|| format!("af-packet-read:\n{}", exit.tail()))
    }
}

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

/// The number after `key` in `line` (`RX-packets: 12  RX-dropped: 0 ...`,
/// `packets: 12, drops: 0 ...`).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
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
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

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

    #[test]
    fn done_lines_parse_into_counters() -> Result<()> {
        let out = lines(
            "{\"event\":\"ready\"}\nsome warning\n\
             {\"event\":\"done\",\"forwarded\":10,\"dropped\":1,\"kernel_drops\":2}",
        );
        assert!(is_event(&out[0], "ready"));
        assert!(!is_event(&out[1], "ready"));
        let c: ForwardCounts = parse_done(&out)?;
        assert_eq!(
            c,
            ForwardCounts {
                forwarded: 10,
                dropped: 1,
                kernel_drops: 2
            }
        );
        let r: ReadCounts = parse_done(&lines(
            "{\"event\":\"done\",\"received\":5,\"bytes\":300,\"kernel_drops\":0}",
        ))?;
        assert_eq!((r.received, r.bytes, r.kernel_drops), (5, 300, 0));
        assert!(parse_done::<ReadCounts>(&out[..2]).is_err());
        let progress = lines(
            "{\"event\":\"ready\"}\n{\"event\":\"progress\",\"received\":3}\n\
             {\"event\":\"progress\",\"received\":9}\nnoise",
        );
        assert_eq!(last_progress(&progress), 9);
        assert_eq!(last_progress(&progress[..1]), 0);
        Ok(())
    }

    #[test]
    fn programs_are_looked_up_in_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("tapline-bench-no-such-program").is_none());
    }
}
