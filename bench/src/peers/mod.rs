//! Peers of the benchmarks that run as processes inside a lab namespace:
//! tapline-bench's own AF_PACKET forwarder and reader ([`crate::afpacket`]),
//! DPDK testpmd forwarding between two `net_af_xdp` ports, and Suricata in
//! af-packet IPS copy-mode.
//!
//! Each is started with [`Netns::command`](crate::lab::Netns::command), its stdout and stderr captured
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
//!
//! One module per peer: [`afpacket`] (tapline-bench's own), [`testpmd`],
//! [`suricata`].

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::runner::wait_or_kill;

mod afpacket;
mod suricata;
mod testpmd;

pub use afpacket::{AfPacketForwarder, AfPacketReader};
pub use suricata::{parse_suricata_stats, Suricata, SuricataInterface, SURICATA};
pub use testpmd::{parse_testpmd_stats, xdp_attach_mode, Testpmd, TestpmdStats, TESTPMD};

/// How long a peer may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);
/// Lines of a peer's output quoted in an error.
const ERROR_TAIL_LINES: usize = 60;

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
    /// Starts `cmd` (built with [`Netns::command`](crate::lab::Netns::command)) with stdin closed and
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as a peer's output lines.
    pub(super) fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn programs_are_looked_up_in_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("tapline-bench-no-such-program").is_none());
    }
}
