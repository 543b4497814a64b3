//! Network namespaces and the commands run in them: the [`Netns`] guard,
//! veth pairs, `ip`/`tc` runners and what `ip` reports about a link.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Environment variable that lets privileged tests be skipped explicitly on
/// machines without root (they fail loudly otherwise).
pub const SKIP_PRIVILEGED_VAR: &str = "TAPLINE_SKIP_PRIVILEGED";

/// Returns `Ok(true)` when privileged work can run, `Ok(false)` when the
/// operator opted out with `TAPLINE_SKIP_PRIVILEGED=1`, and an error naming
/// the fix otherwise.
pub fn privileged() -> Result<bool> {
    if nix::unistd::geteuid().is_root() {
        return Ok(true);
    }
    if std::env::var(SKIP_PRIVILEGED_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: not root and {SKIP_PRIVILEGED_VAR}=1: privileged lab test not run");
        return Ok(false);
    }
    bail!(
        "this test builds network namespaces and needs root (run the suite as root, e.g. `sudo -E cargo test`); \
         set {SKIP_PRIVILEGED_VAR}=1 to skip privileged tests explicitly"
    )
}

pub(crate) static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A unique, short name prefix for this process (`tl<pid>x<n>`).
pub fn unique_prefix() -> String {
    format!(
        "tl{}x{}",
        std::process::id(),
        NEXT_LAB.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, failing with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub(crate) name: String,
    /// Whether drop deletes it (false for `lab down`-managed persistent labs).
    pub(crate) owned: bool,
}

impl Netns {
    /// Creates namespace `name` with IPv6 off (so the kernel sends no
    /// router or neighbour solicitations into test traffic) and `lo` up.
    pub fn create(name: &str) -> Result<Netns> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Refers to an existing namespace without owning it.
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the namespace after drop (for `tapline-bench lab up`).
    pub fn persist(mut self) -> Netns {
        self.keep();
        self
    }

    /// Keeps the namespace after drop, in place.
    pub(crate) fn keep(&mut self) {
        self.owned = false;
    }

    /// Writes a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| std::fs::write(&path, value).with_context(|| format!("writing {path}")))?
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has joined this namespace, and returns its
    /// result. Sockets opened inside `f` stay in the namespace afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = Path::new("/var/run/netns").join(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                let file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {}", self.name))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
        })
    }

    /// Sets an interface in this namespace up.
    pub fn up(&self, ifname: &str) -> Result<()> {
        self.set_link(ifname, true)
    }

    /// Sets an interface in this namespace up or down. The name follows
    /// `dev`: `ip` would read a bare `a` as `address` and `b` as `broadcast`.
    pub fn set_link(&self, ifname: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", "dev", ifname, state]).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Creates a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up, with
/// locally administered MAC addresses.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    ip(&[
        "-n",
        a.name(),
        "link",
        "add",
        "name",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.up(a_if)?;
    b.up(b_if)?;
    Ok(())
}

pub(crate) const LINK_POLL: Duration = Duration::from_millis(20);

/// Whether `ifname` in `ns` has carrier (`LOWER_UP`, which `ip` reads from
/// the device at once; `operstate` follows only after link watch runs).
pub(crate) fn has_carrier(ns: &Netns, ifname: &str) -> Result<bool> {
    let out = ip(&["-n", ns.name(), "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    Ok(v[0]["flags"]
        .as_array()
        .is_some_and(|flags| flags.iter().any(|f| f == "LOWER_UP")))
}

/// Polls `check` (which lists what is still missing) until it lists
/// nothing, failing with its last list after `timeout`.
pub(crate) fn wait_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<Vec<String>>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let waiting = check()?;
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("still not ready after {timeout:?}: {}", waiting.join("; "));
        }
        std::thread::sleep(LINK_POLL);
    }
}

/// The names of the namespaces that start with `prefix-`.
pub fn namespaces(prefix: &str) -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    let start = format!("{prefix}-");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&start))
        .map(str::to_string)
        .collect())
}

/// What `ip -d link` says about an interface that tests care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// An XDP program is attached (any mode).
    pub xdp_attached: bool,
    pub promiscuity: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
}

/// Reads [`LinkState`] of `ifname` in `ns` (`ip -j -d -s link show`).
pub fn link_state(ns: &Netns, ifname: &str) -> Result<LinkState> {
    let out = ip(&[
        "-n",
        ns.name(),
        "-j",
        "-d",
        "-s",
        "link",
        "show",
        "dev",
        ifname,
    ])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    let l = &v[0];
    let stats = &l["stats64"];
    Ok(LinkState {
        xdp_attached: !l["xdp"].is_null(),
        promiscuity: l["promiscuity"].as_u64().unwrap_or(0),
        rx_packets: stats["rx"]["packets"].as_u64().unwrap_or(0),
        tx_packets: stats["tx"]["packets"].as_u64().unwrap_or(0),
        rx_dropped: stats["rx"]["dropped"].as_u64().unwrap_or(0),
    })
}

/// Packets received by `ifname` in `ns`, from sysfs read inside the
/// namespace (cheaper than `ip` when sampling rates).
pub fn rx_packets(ns: &Netns, ifname: &str) -> Result<u64> {
    let path = format!("/sys/class/net/{ifname}/statistics/rx_packets");
    let out = run(ns.command("cat").arg(&path))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("parsing {path}"))
}
