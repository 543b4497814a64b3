//! tapline-bench's own AF_PACKET peers ([`crate::afpacket`]), run as
//! `tapline-bench peer ...` in a lab namespace.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{is_event, parse_done, PeerProcess, POLL};
use crate::afpacket::{ForwardCounts, ReadCounts};
use crate::lab::Netns;
use crate::runner::workspace_binary;

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

#[cfg(test)]
mod tests {
    use super::super::tests::lines;
    use super::*;

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
}
