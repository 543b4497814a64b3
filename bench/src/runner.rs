//! Runs `tapline-dataplane` as a child process inside a lab namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::child::CapturedChild;
use crate::lab::Netns;

/// Stands for the run's private state directory in configs given to
/// [`DataplaneProcess::start`].
pub const STATE_DIR_PLACEHOLDER: &str = "@STATE_DIR@";

/// The log line the dataplane prints once every port is bound.
pub const READY_MESSAGE: &str = "dataplane running";
/// How long a start may take before it counts as hung.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds a workspace binary: `$TAPLINE_BIN_DIR/NAME`, else next to the
/// running executable (or its parent, for test executables in `deps/`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("TAPLINE_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        if let Some(d) = &dir {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    bail!("cannot find the {name} binary next to {}: build it first (`cargo build --workspace`) or set TAPLINE_BIN_DIR", exe.display())
}

/// How to start the dataplane.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Program and arguments to run the dataplane under inside the
    /// namespace (e.g. `setpriv --reuid=65534 ...`); empty: run it directly.
    pub wrapper: Vec<String>,
    /// Extra arguments to the dataplane.
    pub extra_args: Vec<String>,
    /// Wait for [`READY_MESSAGE`] (false for runs expected to fail).
    pub expect_ready: bool,
}

/// A running (or finished) dataplane child.
#[derive(Debug)]
pub struct DataplaneProcess {
    child: CapturedChild,
    state_dir: PathBuf,
    workdir: PathBuf,
}

/// How the child ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr lines, in arrival order per stream.
    pub lines: Vec<String>,
}

impl Finished {
    /// JSON log records (lines that parse as objects).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// `final counters` records by port role.
    pub fn final_counters(&self) -> BTreeMap<String, serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["message"] == "final counters")
            .filter_map(|r| Some((r["port"].as_str()?.to_string(), r)))
            .collect()
    }

    /// One counter of one port from the final counters (0 if absent).
    pub fn counter(&self, port: &str, name: &str) -> u64 {
        self.final_counters()
            .get(port)
            .and_then(|r| r[name].as_u64())
            .unwrap_or(0)
    }
}

impl DataplaneProcess {
    /// Writes `config` to a private work directory and starts the dataplane
    /// in `ns` with `--log-format json`.
    pub fn start(ns: &Netns, config: &str, opts: &StartOptions) -> Result<DataplaneProcess> {
        let bin = workspace_binary("tapline-dataplane")?;
        let workdir = std::env::temp_dir().join(format!("{}-dp", crate::lab::unique_prefix()));
        std::fs::create_dir_all(&workdir)?;
        // World-readable so a dataplane run as an unprivileged user can read it.
        let cfg_path = workdir.join("tapline.toml");
        // Each run gets its own state directory (stats segment), writable by
        // the unprivileged users some tests run the dataplane as.
        let state_dir = workdir.join("state");
        std::fs::create_dir_all(&state_dir)?;
        std::fs::set_permissions(
            &state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let config = config.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy());
        std::fs::write(&cfg_path, config)?;
        let mut cmd = if opts.wrapper.is_empty() {
            ns.command(&bin)
        } else {
            let mut c = ns.command(&opts.wrapper[0]);
            c.args(&opts.wrapper[1..]).arg(&bin);
            c
        };
        cmd.arg("--config")
            .arg(&cfg_path)
            .args(["--log-format", "json"])
            .args(&opts.extra_args);
        let child = CapturedChild::spawn(&mut cmd)
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut p = DataplaneProcess {
            child,
            state_dir,
            workdir,
        };
        if opts.expect_ready {
            p.wait_ready()?;
        }
        Ok(p)
    }

    /// [`DataplaneProcess::start`] with the default options: waits until
    /// the dataplane is ready.
    pub fn start_ready(ns: &Netns, config: &str) -> Result<DataplaneProcess> {
        DataplaneProcess::start(
            ns,
            config,
            &StartOptions {
                expect_ready: true,
                ..Default::default()
            },
        )
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self
                .child
                .lines_satisfy(|lines| lines.iter().any(|l| l.contains(READY_MESSAGE)))
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the readers catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "tapline-dataplane exited ({status}) before it was ready:\n{}",
                    self.lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "tapline-dataplane not ready after {START_TIMEOUT:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.child.lines()
    }

    /// JSON log records so far (lines that parse as objects).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// The run's `dataplane.state_dir` (where the stats segment is).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the dataplane process (not to the `ip netns exec`
    /// wrapper, which execs it: same pid).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        self.child.signal(signal)?;
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit by itself; kills it (and
    /// fails) if it does not.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished> {
        let (status, killed) = self.child.wait_or_kill(timeout)?;
        if killed {
            bail!(
                "tapline-dataplane did not exit within {timeout:?}:\n{}",
                self.lines().join("\n")
            );
        }
        Ok(self.finish(status))
    }

    /// SIGTERM, then waits (SIGKILL after a timeout).
    pub fn stop(mut self) -> Result<Finished> {
        self.signal(nix::sys::signal::Signal::SIGTERM)?;
        let (status, _) = self.child.wait_or_kill(STOP_TIMEOUT)?;
        Ok(self.finish(status))
    }

    /// Stops it (SIGTERM) and requires a clean exit.
    pub fn stop_ok(self) -> Result<Finished> {
        let f = self.stop()?;
        if !f.status.success() {
            bail!(
                "tapline-dataplane exited with {}:\n{}",
                f.status,
                f.lines.join("\n")
            );
        }
        Ok(f)
    }

    fn finish(&mut self, status: ExitStatus) -> Finished {
        Finished {
            status,
            lines: self.child.finish(),
        }
    }
}

impl Drop for DataplaneProcess {
    fn drop(&mut self) {
        // The child first: it may still use its work directory.
        self.child.kill();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A dataplane config for a lab: the given roles, `dataplane_keys` added to
/// the `[dataplane]` table, and whatever `extra` sections the caller adds.
pub fn lab_config(
    passive: Option<&str>,
    inline: Option<(&str, &str)>,
    dataplane_keys: &str,
    extra: &str,
) -> String {
    let mut s = String::from("[interfaces]\n");
    if let Some(p) = passive {
        s += &format!("passive-1 = \"{p}\"\n");
    }
    if let Some((a, b)) = inline {
        s += &format!("inline-1 = \"{a}\"\ninline-2 = \"{b}\"\n");
    }
    s += &format!(
        "\n[dataplane]\nstate_dir = \"{STATE_DIR_PLACEHOLDER}\"\nlog_stats_interval_s = 0\n"
    );
    s += dataplane_keys;
    s += "\n";
    // Before `extra`, so a caller may still append keys to the last table
    // of `extra`; `extra` starts with a table header (or is empty).
    let headed = extra.trim().is_empty() || extra.trim_start().starts_with('[');
    if inline.is_some() && !extra.contains("[fallback]") && headed {
        s += &format!("[fallback]\nstall_ms = {LAB_STALL_MS}\n\n");
    }
    s += extra;
    s
}

/// `fallback.stall_ms` of lab runs that do not set `[fallback]` themselves.
/// Labs run on shared, often oversubscribed machines, where a healthy
/// worker can wait for a CPU longer than the default lease (measured here:
/// up to ~370 ms at a load of 11 on 2 vCPUs); its traffic would then take
/// the kernel fallback now and then, which is right in production but
/// would make every test and benchmark that counts what crossed the
/// worker (or a tool) depend on the machine's load. Runs about the
/// fallback set their own lease.
pub const LAB_STALL_MS: u32 = 1000;

/// The XDP mode the dataplane reported for `role` in its ready line
/// (`ports: ["inline-1=i1:q0:native-copy", ...]`).
pub fn obtained_mode(lines: &[String], role: &str) -> Option<String> {
    let v: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == READY_MESSAGE)?;
    let ports = v["ports"]
        .as_str()
        .map(str::to_string)
        .or_else(|| Some(v["ports"].to_string()))?;
    let start = ports.find(&format!("{role}="))?;
    let rest = &ports[start..];
    let entry = rest.split(['"', ',', ']']).next()?;
    entry.rsplit(':').next().map(str::to_string)
}
