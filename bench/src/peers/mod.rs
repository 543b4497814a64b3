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

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use nix::sys::signal::Signal;

use crate::child::CapturedChild;

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
    child: CapturedChild,
    stop_timeout: Duration,
}

/// How long a peer may take to start and to stop.
#[derive(Debug, Clone, Copy)]
pub struct PeerTimeouts {
    /// Until it says it is ready.
    pub start: Duration,
    /// From the stop signal until it exited (it is killed then).
    pub stop: Duration,
}

impl Default for PeerTimeouts {
    fn default() -> PeerTimeouts {
        PeerTimeouts {
            start: START_TIMEOUT,
            stop: STOP_TIMEOUT,
        }
    }
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
        cmd: Command,
        ready: impl Fn(&[String]) -> bool,
    ) -> Result<PeerProcess> {
        PeerProcess::start_within(name, cmd, PeerTimeouts::default(), ready)
    }

    /// Like [`PeerProcess::start_when`], with its own timeouts.
    pub fn start_within(
        name: &str,
        mut cmd: Command,
        timeouts: PeerTimeouts,
        ready: impl Fn(&[String]) -> bool,
    ) -> Result<PeerProcess> {
        let child =
            CapturedChild::spawn(&mut cmd).with_context(|| format!("starting {name}: {cmd:?}"))?;
        let mut p = PeerProcess {
            name: name.to_string(),
            child,
            stop_timeout: timeouts.stop,
        };
        p.wait_ready(timeouts.start, ready)?;
        Ok(p)
    }

    fn wait_ready(&mut self, timeout: Duration, ready: impl Fn(&[String]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.lines_satisfy(&ready) {
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
                    "{} not ready after {timeout:?}:\n{}",
                    self.name,
                    tail(&self.lines())
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.child.lines()
    }

    /// SIGTERM, then waits up to its stop timeout ([`STOP_TIMEOUT`] unless
    /// started with others); a peer still running then is killed and the
    /// stop fails.
    pub fn stop(self) -> Result<PeerExit> {
        self.stop_with(Signal::SIGTERM)
    }

    /// Like [`PeerProcess::stop`], with `signal` (SIGINT, as ^C, makes
    /// tcpdump and netsniff-ng flush their file and print statistics).
    pub fn stop_with(mut self, signal: Signal) -> Result<PeerExit> {
        if self.child.try_wait()?.is_none() {
            self.child
                .signal(signal)
                .with_context(|| format!("sending {signal} to {}", self.name))?;
        }
        let (status, killed) = self.child.wait_or_kill(self.stop_timeout)?;
        let exit = self.finish(status);
        if killed {
            bail!(
                "{} did not exit within {:?} of {signal} (killed):\n{}",
                self.name,
                self.stop_timeout,
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
        PeerExit {
            status,
            lines: self.child.finish(),
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

/// The number after `key` in `line` (`RX-packets: 12  RX-dropped: 0 ...`,
/// `packets: 12, drops: 0 ...`).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

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
