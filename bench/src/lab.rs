//! Lab topologies: network namespaces joined by veth pairs.
//!
//! Every namespace is owned by a [`Netns`] guard that deletes it on drop,
//! also when a test panics; deleting a namespace destroys the veths in it
//! (and so their peers). Names carry a per-process prefix so labs of
//! parallel tests and of several processes never collide.
//!
//! ```text
//! inline:   [gen] g0 ==veth== i1 [dut] i2 ==veth== s0 [sink]
//! passive:  [tap] t0 ==veth== p1 [dut]
//! chain:    inline, plus one namespace per inline tool k = 1..=N, joined
//!           to the dut by two veths, h{k}a ==veth== a, h{k}b ==veth== b:
//!
//!           [gen] g0 ==veth== i1 [dut] i2 ==veth== s0 [sink]
//!                            h1a h1b ... hNa hNb
//!                             ||  ||      ||  ||
//!                             a   b       a   b
//!                            [tool1] ... [toolN]    each: a <-> b through
//!                                                   br0 or tc mirred
//! ```
//!
//! A hop is a tool reached through two interfaces: side `a` faces
//! inline-1, side `b` faces inline-2, and the tool bridges `a <-> b` (as
//! Suricata or Snort do in inline af-packet mode). The lab emulates a tool
//! with a [`ToolKind`]: a Linux bridge made into a wire, or two `tc mirred`
//! redirects. [`Lab::tool_link`] and [`Lab::tool_drop_udp_port`] make a
//! tool fail or drop one flow, for the chain's failure tests.
//!
//! # Real NICs instead of veth pairs
//!
//! [`Nics`] (`tapline-bench --iface ROLE=IFNAME`, set process-wide with
//! [`set_external`]) cables links of the lab with test NICs: a link whose
//! two ends are both given gets no veth pair; each NIC is moved from this
//! process's network namespace into its lab namespace under the lab's
//! name (`ip link set dev ens1f0 netns PREFIX-gen name g0`) and set up, so
//! everything a benchmark does on the interfaces (XDP, AF_XDP, tc) works
//! unchanged. A role is the lab's interface name (`g0`, `i1`, `i2`, `s0`,
//! `t0`, `p1`, `hKa`, `hKb`), qualified by its namespace where the name
//! alone is ambiguous: `toolK:a`, `toolK:b`, and for a sensor `M` the pair
//! `dut:M`, `sen-M:e0`. The cabling must be explicit: a link with one end
//! given is refused, as are unknown roles, NICs that are missing, held by
//! another lab, bridge or bond ports, or carry global addresses (a
//! management interface); a NIC without carrier after it came up gets a
//! warning.
//!
//! Before moving a NIC the lab records it in
//! `/run/tapline-bench/PREFIX.json` ([`NIC_STATE_DIR`]). Dropping the lab,
//! and [`teardown`] (`tapline-bench lab down`, also from a later process),
//! move every recorded NIC back under its original name, and up again if it
//! was, before the namespaces are deleted: deleting a namespace would
//! return a physical NIC under the lab's name and destroy a veth. The
//! record also keeps what the lab and the benchmarks may change on a NIC,
//! and a returned NIC gets it back: its XDP programs are detached (one a
//! killed DUT left behind), its promiscuous mode and VLAN offload flags are
//! restored. When a NIC cannot be moved back, the namespaces and the record
//! stay, so `tapline-bench lab down --prefix PREFIX` can try again.
//!
//! A process whose drops will not run (killed by a signal) returns the NICs
//! of its labs with [`return_all_nics`]; `tapline-bench` does so on SIGINT
//! and SIGTERM.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tapline_dataplane::xdp::sys;

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

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

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
    name: String,
    /// Whether drop deletes it (false for `lab down`-managed persistent labs).
    owned: bool,
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
    fn keep(&mut self) {
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

/// Most inline tools a chain lab builds (`--hops 1..=8`).
pub const MAX_HOPS: u8 = 8;
/// Tools of `lab up chain` without `--hops`.
pub const DEFAULT_HOPS: u8 = 1;

/// How a lab emulates an inline tool that bridges its sides `a <-> b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// A Linux bridge `br0` enslaving `a` and `b`, made into a wire.
    ///
    /// Learning is off on both ports: a learning bridge drops a frame whose
    /// destination it learned on the port the frame came in on, and keeps
    /// that belief for `ageing_time` (300 s) after a MAC moves, which
    /// happens whenever the chain around a tool changes (a hop bypassed,
    /// the dut restarted). Without learning every unicast frame floods to
    /// the only other port, as on a wire. `ageing_time 0` would not do:
    /// entries are still learned and live until the periodic garbage
    /// collection. Multicast snooping is off so multicast floods too (no
    /// IGMP/MLD state), STP is off (no BPDUs of its own, no listening
    /// delay), netfilter is not called for bridged frames, and link-local
    /// group addresses are forwarded as far as the kernel allows (see
    /// `BRIDGE_GROUP_FWD_MASK`).
    Bridge,
    /// `tc` on clsact ingress of each side: u32 match-all +
    /// `mirred egress redirect` to the other side, `a -> b` and `b -> a`.
    Mirred,
}

impl ToolKind {
    /// The CLI spelling (`bridge`, `mirred`).
    pub fn name(self) -> &'static str {
        match self {
            ToolKind::Bridge => "bridge",
            ToolKind::Mirred => "mirred",
        }
    }
}

impl std::str::FromStr for ToolKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bridge" => Ok(ToolKind::Bridge),
            "mirred" => Ok(ToolKind::Mirred),
            other => bail!("unknown tool kind {other:?}: use bridge or mirred"),
        }
    }
}

/// 802.1ad (S-tag) offloads, by their `ethtool -k` names.
pub const STAG_OFFLOADS: [&str; 2] = ["tx-vlan-stag-hw-insert", "rx-vlan-stag-hw-parse"];

/// What a scenario builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// gen -> i1 [dut] i2 -> sink.
    Inline,
    /// tap -> p1 [dut].
    Passive,
    /// Both of the above, sharing the dut namespace.
    Full,
    /// Inline, plus `hops` tools (1..=[`MAX_HOPS`]): tool `k` lives in
    /// namespace `{prefix}-tool{k}`, reached from the dut through `h{k}a`
    /// (its side `a`) and `h{k}b` (its side `b`).
    Chain { hops: u8, tool: ToolKind },
}

impl Scenario {
    /// A chain of `hops` tools of kind `tool`; `hops` must be in
    /// 1..=[`MAX_HOPS`].
    pub fn chain(hops: u8, tool: ToolKind) -> Result<Scenario> {
        if !(1..=MAX_HOPS).contains(&hops) {
            bail!("hops = {hops}: a chain lab has 1 to {MAX_HOPS} tools");
        }
        Ok(Scenario::Chain { hops, tool })
    }

    /// Applies the CLI's `--hops` and `--tool`, which only `chain` takes.
    pub fn with_chain_options(self, hops: Option<u8>, tool: Option<ToolKind>) -> Result<Scenario> {
        match self {
            Scenario::Chain {
                hops: default_hops,
                tool: default_tool,
            } => Scenario::chain(hops.unwrap_or(default_hops), tool.unwrap_or(default_tool)),
            _ if hops.is_some() || tool.is_some() => {
                bail!("--hops and --tool only apply to the chain scenario")
            }
            other => Ok(other),
        }
    }

    /// Whether it builds gen, i1, i2 and sink.
    pub fn has_inline(self) -> bool {
        matches!(
            self,
            Scenario::Inline | Scenario::Full | Scenario::Chain { .. }
        )
    }

    /// Whether it builds tap and p1.
    pub fn has_passive(self) -> bool {
        matches!(self, Scenario::Passive | Scenario::Full)
    }

    /// For messages: `inline`, `passive`, `full`, `chain of 2 mirred tools`.
    fn label(self) -> String {
        match self {
            Scenario::Inline => "inline".into(),
            Scenario::Passive => "passive".into(),
            Scenario::Full => "full".into(),
            Scenario::Chain { hops, tool } => format!("chain of {hops} {} tools", tool.name()),
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = anyhow::Error;
    /// `chain` means [`DEFAULT_HOPS`] bridge tools until
    /// [`Scenario::with_chain_options`] says otherwise.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "inline" => Ok(Scenario::Inline),
            "passive" => Ok(Scenario::Passive),
            "full" => Ok(Scenario::Full),
            "chain" => Ok(Scenario::Chain {
                hops: DEFAULT_HOPS,
                tool: ToolKind::Bridge,
            }),
            other => bail!("unknown scenario {other:?}: use inline, passive, full or chain"),
        }
    }
}

/// Interface names inside the lab (fixed: each lives in its own namespace).
pub mod ifs {
    pub const GEN: &str = "g0";
    pub const INLINE_1: &str = "i1";
    pub const INLINE_2: &str = "i2";
    pub const SINK: &str = "s0";
    pub const TAP: &str = "t0";
    pub const PASSIVE_1: &str = "p1";
    /// A sensor's end of its veth (in its own namespace).
    pub const SENSOR: &str = "e0";
    /// A tool's side facing inline-1 (in each tool namespace).
    pub const TOOL_A: &str = "a";
    /// A tool's side facing inline-2.
    pub const TOOL_B: &str = "b";
    /// The bridge of a [`super::ToolKind::Bridge`] tool.
    pub const TOOL_BRIDGE: &str = "br0";

    /// The dut's interface to side `a` of tool `k` (1-based): `h{k}a`.
    pub fn hop_a(k: u8) -> String {
        format!("h{k}a")
    }

    /// The dut's interface to side `b` of tool `k` (1-based): `h{k}b`.
    pub fn hop_b(k: u8) -> String {
        format!("h{k}b")
    }
}

/// tc priority of [`Lab::tool_drop_udp_port`] filters: below (before) the
/// mirred redirect, so a drop wins.
const DROP_FILTER_PRIO: &str = "1";
/// tc priority of a [`ToolKind::Mirred`] tool's redirect.
const MIRRED_FILTER_PRIO: &str = "10";

/// Redirects every frame arriving on `from` out of `to`: a `tc` u32
/// match-all filter with `mirred egress redirect` on the clsact ingress
/// hook, which `from` must already have.
pub fn mirred_redirect(ns: &Netns, from: &str, to: &str) -> Result<()> {
    tc(
        ns,
        &[
            "filter",
            "add",
            "dev",
            from,
            "ingress",
            "prio",
            MIRRED_FILTER_PRIO,
            "protocol",
            "all",
            "u32",
            "match",
            "u32",
            "0",
            "0",
            "action",
            "mirred",
            "egress",
            "redirect",
            "dev",
            to,
        ],
    )
    .map(drop)
}
/// Bridge `group_fwd_mask`: forward every IEEE 802.1D link-local group
/// address (01:80:c2:00:00:0X) a wire would carry (LLDP, 802.1X, ...).
/// Bits 0-2 are refused by the kernel (EINVAL): with STP off the bridge
/// forwards :00 anyway, and pause (:01) and slow-protocol (:02, LACP)
/// frames stay on their link.
const BRIDGE_GROUP_FWD_MASK: &str = "0xfff8";
/// How long a tool's links may take to carry traffic after `up`.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
const LINK_POLL: Duration = Duration::from_millis(20);

/// `tc -n NS ARGS...`
pub fn tc(ns: &Netns, args: &[&str]) -> Result<Output> {
    run(Command::new("tc").args(["-n", ns.name()]).args(args))
}

/// Namespaces of a lab, after `{prefix}-`.
const NS_DUT: &str = "dut";
const NS_GEN: &str = "gen";
const NS_SINK: &str = "sink";
const NS_TAP: &str = "tap";
/// Tool `k`'s namespace suffix (`tool{k}`).
fn tool_ns(k: u8) -> String {
    format!("tool{k}")
}
/// Prefix of a sensor's namespace suffix (`sen-{member}`).
const SENSOR_NS_PREFIX: &str = "sen-";

/// A built lab. Dropping it returns the NICs it holds and removes every
/// namespace (and so every veth); when a NIC cannot be returned, the
/// namespaces and the lab's record stay for [`teardown`].
#[derive(Debug)]
pub struct Lab {
    pub prefix: String,
    pub scenario: Scenario,
    /// The NICs the lab took (see [`Nics`]), returned by the lab's drop
    /// before its namespaces drop.
    held: HeldNics,
    /// What `--iface` gave; links whose two ends it names get NICs.
    external: Nics,
    pub dut: Netns,
    /// Sends into inline-1 (inline scenarios).
    pub gen: Option<Netns>,
    /// Receives from inline-2 (inline scenarios).
    pub sink: Option<Netns>,
    /// Sends into passive-1 (passive scenarios).
    pub tap: Option<Netns>,
    /// The inline tools of a chain: tool `k` (1-based) is `tools[k - 1]`,
    /// namespace `{prefix}-tool{k}`.
    pub tools: Vec<Netns>,
    /// Passive sensors (output group members), added with
    /// [`Lab::add_sensors`]: (dut-side interface, namespace
    /// `{prefix}-sen-{ifname}` whose end is [`ifs::SENSOR`]).
    pub sensors: Vec<(String, Netns)>,
}

impl Lab {
    /// Builds `scenario` under `prefix`, on the NICs set with
    /// [`set_external`] (none: veth pairs only). A chain's tools forward
    /// when this returns.
    pub fn build(prefix: &str, scenario: Scenario) -> Result<Lab> {
        Lab::build_with(prefix, scenario, &external())
    }

    /// Builds `scenario` under `prefix`, cabling every link whose two ends
    /// `nics` names with those NICs instead of a veth pair. Everything is
    /// checked before anything is built; on a later failure whatever was
    /// built is removed again and the NICs taken are returned.
    pub fn build_with(prefix: &str, scenario: Scenario, nics: &Nics) -> Result<Lab> {
        if let Scenario::Chain { hops, tool } = scenario {
            // The fields are public: check what `Scenario::chain` checks.
            Scenario::chain(hops, tool)?;
        }
        nics.plan(scenario)?;
        for (role, nic) in nics.iter() {
            inspect_nic(role, nic)?;
        }
        let state = state_path(prefix);
        if state.exists() {
            bail!(
                "lab {prefix} still holds NICs (recorded in {}): run `tapline-bench lab down --prefix {prefix}` first",
                state.display()
            );
        }
        let dut = Netns::create(&format!("{prefix}-{NS_DUT}"))?;
        let mut lab = Lab {
            prefix: prefix.to_string(),
            scenario,
            held: HeldNics::new(prefix),
            external: nics.clone(),
            dut,
            gen: None,
            sink: None,
            tap: None,
            tools: Vec::new(),
            sensors: Vec::new(),
        };
        if scenario.has_inline() {
            lab.gen = Some(Netns::create(&format!("{prefix}-{NS_GEN}"))?);
            lab.sink = Some(Netns::create(&format!("{prefix}-{NS_SINK}"))?);
        }
        if scenario.has_passive() {
            lab.tap = Some(Netns::create(&format!("{prefix}-{NS_TAP}"))?);
        }
        if let Scenario::Chain { hops, .. } = scenario {
            for k in 1..=hops {
                lab.tools
                    .push(Netns::create(&format!("{prefix}-{}", tool_ns(k)))?);
            }
        }
        for [a, b] in links(scenario) {
            lab.link(&a, &b)?;
        }
        lab.announce_nics(0);
        lab.warn_without_carrier(0);
        if let Scenario::Chain { hops, tool } = scenario {
            for k in 1..=hops {
                // A tool that forwards an 802.1Q frame with the tag in skb
                // metadata (veth's VLAN offload) would hand the dut's XDP
                // program the frame without its tag: native XDP on veth
                // never sees offloaded tags. Real tools (Suricata, Snort
                // in af-packet inline mode) reinsert the tag themselves.
                let tool_ns_name = tool_ns(k);
                for side in [ifs::TOOL_A, ifs::TOOL_B] {
                    lab.vlan_offload_off(&Role::new(&tool_ns_name, side))?;
                }
                install_tool(lab.tool(k)?, tool)
                    .with_context(|| format!("installing tool {k} ({})", tool.name()))?;
            }
            for k in 1..=hops {
                lab.wait_tool_forwarding(k)?;
            }
        }
        Ok(lab)
    }

    /// Keeps the namespaces, and the NICs in them, after this value is
    /// dropped; [`teardown`] removes them (and returns the NICs) later.
    pub fn persist(mut self) {
        self.held.persist();
        self.keep_namespaces();
    }

    /// Keeps every namespace of the lab after drop.
    fn keep_namespaces(&mut self) {
        for ns in [Some(&mut self.dut), self.gen.as_mut(), self.sink.as_mut()]
            .into_iter()
            .chain([self.tap.as_mut()])
            .flatten()
            .chain(&mut self.tools)
            .chain(self.sensors.iter_mut().map(|(_, ns)| ns))
        {
            ns.keep();
        }
    }

    /// The names of every namespace of the lab.
    pub fn namespace_names(&self) -> Vec<&str> {
        [Some(&self.dut), self.gen.as_ref(), self.sink.as_ref()]
            .into_iter()
            .chain([self.tap.as_ref()])
            .flatten()
            .chain(&self.tools)
            .chain(self.sensors.iter().map(|(_, ns)| ns))
            .map(Netns::name)
            .collect()
    }

    /// The NICs this lab holds, in the order it took them (empty for a
    /// lab of veth pairs only).
    pub fn nics(&self) -> &[NicInfo] {
        &self.held.info
    }

    /// Adds one sensor namespace per name: a link whose dut end is called
    /// `name` (an output group member) and whose other end, [`ifs::SENSOR`],
    /// is in namespace `{prefix}-sen-{name}`, with VLAN offload off (so a
    /// capture there sees tags in the frame, as sent). The link is a veth
    /// pair, or the NICs given for `dut:{name}` and `sen-{name}:e0`.
    pub fn add_sensors(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            let [dut_end, sensor_end] = sensor_link(name);
            let ns = Netns::create(&format!("{}-{}", self.prefix, sensor_end.ns))?;
            self.sensors.push((name.to_string(), ns));
            let held_before = self.held.held.len();
            self.link(&dut_end, &sensor_end)?;
            self.announce_nics(held_before);
            self.warn_without_carrier(held_before);
            self.vlan_offload_off(&sensor_end)?;
        }
        Ok(())
    }

    /// Joins two interfaces of the lab: with the two NICs `--iface` gave
    /// for them, or else with a veth pair. [`Nics::plan`] refused links
    /// with one end given before anything was built.
    fn link(&mut self, a: &Role, b: &Role) -> Result<()> {
        let a_ns = Netns::existing(&a.netns_name(&self.prefix));
        let b_ns = Netns::existing(&b.netns_name(&self.prefix));
        match (self.external.nic(a), self.external.nic(b)) {
            (Some(a_nic), Some(b_nic)) => {
                self.held.take(a, a_nic, a_ns.name())?;
                self.held.take(b, b_nic, b_ns.name())
            }
            (None, None) => veth(&a_ns, &a.ifname, &b_ns, &b.ifname),
            _ => Err(half_link_error(&self.external, &[a.clone(), b.clone()])),
        }
    }

    /// Turns VLAN tag offload off on `role`: 802.1Q (`txvlan`, `rxvlan`)
    /// and 802.1ad S-tags (`tx-vlan-stag-hw-insert`,
    /// `rx-vlan-stag-hw-parse`), or the tool strips outer S-tags of QinQ
    /// frames into metadata that XDP never sees. A veth always allows it; a
    /// NIC whose driver does not (`EOPNOTSUPP`, fixed offloads) only gets a
    /// warning: the benchmarks still run, tagged frames just arrive with
    /// the tag in metadata there.
    fn vlan_offload_off(&self, role: &Role) -> Result<()> {
        let ns = Netns::existing(&role.netns_name(&self.prefix));
        let result = ns.enter(|| {
            sys::ethtool_clear_flags(&role.ifname, sys::ETH_FLAG_TXVLAN | sys::ETH_FLAG_RXVLAN)?;
            for feature in STAG_OFFLOADS {
                sys::ethtool_set_feature(&role.ifname, feature, false)?;
            }
            Ok::<(), std::io::Error>(())
        })?;
        match (result, self.external.nic(role)) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(nic)) => {
                eprintln!(
                    "warning: lab {}: cannot turn VLAN offload off on NIC {nic} ({role}): {e}",
                    self.prefix
                );
                Ok(())
            }
            (Err(e), None) => Err(e)
                .with_context(|| format!("turning VLAN offload off on {role} in {}", ns.name())),
        }
    }

    /// Says on stderr which NICs the lab holds, and how to get them back
    /// should this process die without returning them, when it took some
    /// from index `from` on.
    fn announce_nics(&self, from: usize) {
        if self.held.held.len() <= from {
            return;
        }
        let nics: Vec<&str> = self.held.held.iter().map(|h| h.nic.as_str()).collect();
        eprintln!(
            "lab {p} holds NICs {}; `tapline-bench lab down --prefix {p}` returns them if this run is killed",
            nics.join(", "),
            p = self.prefix
        );
    }

    /// Warns about the sensor NICs `--iface` assigned that the lab never
    /// took (no sensor of that name was added): they stayed unused.
    fn warn_unused_nics(&self) {
        let unused: Vec<String> = self
            .external
            .iter()
            .filter(|(role, _)| sensor_link_of(role).is_some())
            .filter(|(role, _)| !self.held.held.iter().any(|h| h.role == **role))
            .map(|(role, nic)| format!("{role}={nic}"))
            .collect();
        if !unused.is_empty() {
            eprintln!(
                "warning: lab {}: --iface {} never used: the lab added no such sensor",
                self.prefix,
                unused.join(", ")
            );
        }
    }

    /// Waits up to [`NIC_CARRIER_TIMEOUT`] for carrier on the NICs taken
    /// from index `from` on, and warns about each that has none (a cable or
    /// a peer port down): the benchmarks would measure nothing through it.
    fn warn_without_carrier(&self, from: usize) {
        let held = &self.held.held[from.min(self.held.held.len())..];
        let carrierless = |held: &[HeldNic]| -> Vec<String> {
            held.iter()
                .filter(|h| {
                    !has_carrier(&Netns::existing(&h.netns), &h.role.ifname).unwrap_or(false)
                })
                .map(|h| format!("{} ({})", h.nic, h.role))
                .collect()
        };
        let deadline = Instant::now() + NIC_CARRIER_TIMEOUT;
        let mut missing = carrierless(held);
        while !missing.is_empty() && Instant::now() < deadline {
            std::thread::sleep(LINK_POLL);
            missing = carrierless(held);
        }
        for nic in missing {
            eprintln!(
                "warning: lab {}: NIC {nic} has no carrier {NIC_CARRIER_TIMEOUT:?} after coming up: check the cable and the port at the other end",
                self.prefix
            );
        }
    }

    /// The sensor namespace behind member interface `name`.
    pub fn sensor(&self, name: &str) -> Result<&Netns> {
        self.sensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| ns)
            .with_context(|| format!("no sensor {name:?} in this lab"))
    }

    pub fn gen(&self) -> &Netns {
        self.gen.as_ref().expect("inline scenario")
    }

    pub fn sink(&self) -> &Netns {
        self.sink.as_ref().expect("inline scenario")
    }

    pub fn tap(&self) -> &Netns {
        self.tap.as_ref().expect("passive scenario")
    }

    /// Tool `k` (1-based) of a chain lab.
    pub fn tool(&self, k: u8) -> Result<&Netns> {
        usize::from(k)
            .checked_sub(1)
            .and_then(|i| self.tools.get(i))
            .with_context(|| {
                format!(
                    "tool {k}: this lab has tools 1..={} (scenario {:?})",
                    self.tools.len(),
                    self.scenario
                )
            })
    }

    /// Sets the link of tool `k`'s side `a` down or up, as a tool that
    /// dies or comes back would: the dut's `h{k}a` loses or regains carrier
    /// and the tool forwards nothing either way while down. Returns when
    /// the change is in effect: down at once (the veth drops its peer's
    /// carrier and the bridge disables the port in the same call), up once
    /// every link of the tool has carrier and, for a bridge, both ports are
    /// forwarding again (the bridge learns of the carrier from link watch,
    /// up to a second later).
    pub fn tool_link(&self, k: u8, up: bool) -> Result<()> {
        let tool = self.tool(k)?;
        tool.set_link(ifs::TOOL_A, up)?;
        if up {
            return self.wait_tool_forwarding(k);
        }
        let hop_a = ifs::hop_a(k);
        wait_until(LINK_TIMEOUT, || {
            Ok(if has_carrier(&self.dut, &hop_a)? {
                vec![format!("{hop_a} still has carrier")]
            } else {
                Vec::new()
            })
        })
        .with_context(|| format!("setting tool {k}'s link {} down", ifs::TOOL_A))
    }

    /// Drops, on ingress of tool `k`'s side `a` (so in the inline-1 ->
    /// inline-2 direction only), every IPv4/UDP frame whose `port` matches;
    /// everything else passes as before. Filters add up until
    /// [`Lab::tool_clear_drops`].
    ///
    /// The filter is a classic BPF program in direct-action mode
    /// (`cls_bpf`) on clsact ingress, which runs before the bridge and
    /// before the mirred filter. u32 + `action drop` would be simpler, but
    /// the lab kernel has no `gact` action (CONFIG_NET_ACT_GACT is off;
    /// only u32, bpf, mirred and the qdiscs are built in).
    pub fn tool_drop_udp_port(&self, k: u8, port: UdpPort) -> Result<()> {
        let tool = self.tool(k)?;
        let bytecode = sock_filter_bytecode(&udp_port_drop_program(port));
        tc(
            tool,
            &[
                "filter",
                "add",
                "dev",
                ifs::TOOL_A,
                "ingress",
                "prio",
                DROP_FILTER_PRIO,
                "protocol",
                "all",
                "bpf",
                "direct-action",
                "bytecode",
                &bytecode,
            ],
        )
        .with_context(|| format!("tool {k}: installing the drop filter for {port:?}"))
        .map(drop)
    }

    /// Removes every [`Lab::tool_drop_udp_port`] filter of tool `k`.
    /// Idempotent.
    pub fn tool_clear_drops(&self, k: u8) -> Result<()> {
        let tool = self.tool(k)?;
        let show = tc(
            tool,
            &[
                "filter",
                "show",
                "dev",
                ifs::TOOL_A,
                "ingress",
                "prio",
                DROP_FILTER_PRIO,
            ],
        )?;
        if show.stdout.is_empty() {
            return Ok(());
        }
        tc(
            tool,
            &[
                "filter",
                "del",
                "dev",
                ifs::TOOL_A,
                "ingress",
                "prio",
                DROP_FILTER_PRIO,
            ],
        )
        .map(drop)
    }

    /// Waits until tool `k` forwards: every link between it and the dut has
    /// carrier and, for a bridge, both ports are in state forwarding.
    fn wait_tool_forwarding(&self, k: u8) -> Result<()> {
        let tool = self.tool(k)?;
        let is_bridge = matches!(
            self.scenario,
            Scenario::Chain {
                tool: ToolKind::Bridge,
                ..
            }
        );
        let (hop_a, hop_b) = (ifs::hop_a(k), ifs::hop_b(k));
        wait_until(LINK_TIMEOUT, || {
            let mut waiting = Vec::new();
            for (ns, ifname) in [
                (&self.dut, hop_a.as_str()),
                (&self.dut, hop_b.as_str()),
                (tool, ifs::TOOL_A),
                (tool, ifs::TOOL_B),
            ] {
                if !has_carrier(ns, ifname)? {
                    waiting.push(format!("{ifname} in {} has no carrier", ns.name()));
                }
            }
            if is_bridge && waiting.is_empty() {
                for port in [ifs::TOOL_A, ifs::TOOL_B] {
                    let state = bridge_port_state(tool, port)?;
                    if state != "forwarding" {
                        waiting.push(format!("bridge port {port} is {state}"));
                    }
                }
            }
            Ok(waiting)
        })
        .with_context(|| format!("waiting for tool {k} to forward"))
    }
}

impl Drop for Lab {
    /// Returns the NICs, then lets the namespaces go; when a NIC cannot be
    /// returned the namespaces are kept with the record, which still
    /// points at them: deleting a namespace would bring a physical NIC
    /// back under the lab's name.
    fn drop(&mut self) {
        self.warn_unused_nics();
        if let Err(e) = self.held.release() {
            self.keep_namespaces();
            eprintln!(
                "warning: lab {p}: {e:#}; its namespaces and {} are kept: `tapline-bench lab down --prefix {p}` tries again",
                state_path(&self.prefix).display(),
                p = self.prefix
            );
        }
    }
}

/// Makes `ns` (with its veths `a` and `b` up) bridge `a <-> b` like `kind`.
///
/// Every tool gets a clsact qdisc on `a`, where [`Lab::tool_drop_udp_port`]
/// hangs its filters: tc ingress runs before the bridge's rx handler. Why
/// the bridge is set up as it is: see [`ToolKind::Bridge`].
fn install_tool(ns: &Netns, kind: ToolKind) -> Result<()> {
    tc(ns, &["qdisc", "add", "dev", ifs::TOOL_A, "clsact"])?;
    match kind {
        ToolKind::Bridge => {
            // Without br_netfilter loaded these keys do not exist and the
            // bridge does not call netfilter anyway; the nf_call_* options
            // below turn it off for this bridge in any case.
            for key in [
                "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables",
                "net.bridge.bridge-nf-call-arptables",
            ] {
                let _ = ns.sysctl(key, "0");
            }
            ip(&[
                "-n",
                ns.name(),
                "link",
                "add",
                "name",
                ifs::TOOL_BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
                "group_fwd_mask",
                BRIDGE_GROUP_FWD_MASK,
                "nf_call_iptables",
                "0",
                "nf_call_ip6tables",
                "0",
                "nf_call_arptables",
                "0",
            ])?;
            for port in [ifs::TOOL_A, ifs::TOOL_B] {
                ip(&[
                    "-n",
                    ns.name(),
                    "link",
                    "set",
                    "dev",
                    port,
                    "master",
                    ifs::TOOL_BRIDGE,
                ])?;
                ip(&[
                    "-n",
                    ns.name(),
                    "link",
                    "set",
                    "dev",
                    port,
                    "type",
                    "bridge_slave",
                    "learning",
                    "off",
                ])?;
            }
            ns.up(ifs::TOOL_BRIDGE)
        }
        ToolKind::Mirred => {
            tc(ns, &["qdisc", "add", "dev", ifs::TOOL_B, "clsact"])?;
            for (from, to) in [(ifs::TOOL_A, ifs::TOOL_B), (ifs::TOOL_B, ifs::TOOL_A)] {
                mirred_redirect(ns, from, to)?;
            }
            Ok(())
        }
    }
}

/// Whether `ifname` in `ns` has carrier (`LOWER_UP`, which `ip` reads from
/// the device at once; `operstate` follows only after link watch runs).
fn has_carrier(ns: &Netns, ifname: &str) -> Result<bool> {
    let out = ip(&["-n", ns.name(), "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    Ok(v[0]["flags"]
        .as_array()
        .is_some_and(|flags| flags.iter().any(|f| f == "LOWER_UP")))
}

/// The STP state of bridge port `port` in `ns` (`forwarding`, `disabled`, ...).
fn bridge_port_state(ns: &Netns, port: &str) -> Result<String> {
    let out =
        run(Command::new("bridge").args(["-n", ns.name(), "-j", "link", "show", "dev", port]))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing bridge -j output")?;
    Ok(v[0]["state"].as_str().unwrap_or("unknown").to_string())
}

/// Polls `check` (which lists what is still missing) until it lists
/// nothing, failing with its last list after `timeout`.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> Result<Vec<String>>) -> Result<()> {
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

/// Which UDP port a [`Lab::tool_drop_udp_port`] filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPort {
    /// The source port. [`crate::traffic::build_frame`] gives each flow its
    /// own source port, so this selects one flow.
    Src(u16),
    /// The destination port (`build_frame` uses the same one for every
    /// flow).
    Dst(u16),
}

/// One classic BPF instruction (`struct sock_filter`, linux/filter.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_H | BPF_ABS`: A = 16 bits at k.
const BPF_LDH_ABS: u16 = 0x28;
/// `BPF_LD | BPF_B | BPF_ABS`: A = the byte at k.
const BPF_LDB_ABS: u16 = 0x30;
/// `BPF_LD | BPF_H | BPF_IND`: A = 16 bits at X + k.
const BPF_LDH_IND: u16 = 0x48;
/// `BPF_LDX | BPF_B | BPF_MSH`: X = 4 * (byte at k & 0xf), an IPv4 header length.
const BPF_LDX_MSH: u16 = 0xb1;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JSET | BPF_K`: jump if A & k.
const BPF_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
/// Verdicts of a direct-action classifier (linux/pkt_cls.h): drop.
const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_UNSPEC` (-1): no verdict, the next filter (mirred) runs.
const TC_ACT_UNSPEC: u32 = u32::MAX;

// Offsets from the start of the Ethernet header: cls_bpf pushes the MAC
// header back before running a program at ingress. A VLAN tag is not in
// the bytes any more (the kernel moves it to skb metadata before tc), so
// tagged frames match like untagged ones.
const ETH_TYPE_OFFSET: u32 = 12;
const ETH_HEADER_BYTES: u32 = 14;
const IPV4_FRAGMENT_OFFSET: u32 = ETH_HEADER_BYTES + 6;
const IPV4_PROTOCOL_OFFSET: u32 = ETH_HEADER_BYTES + 9;
const ETHERTYPE_IPV4: u32 = 0x0800;
const IPPROTO_UDP: u32 = 17;
/// Fragment offset bits of the IPv4 flags/fragment field: non-zero on
/// every fragment but the first, which alone carries the UDP header.
const IPV4_FRAGMENT_MASK: u32 = 0x1fff;

/// The program behind [`Lab::tool_drop_udp_port`]: `TC_ACT_SHOT` for
/// IPv4/UDP frames (first fragments) whose `port` matches, `TC_ACT_UNSPEC`
/// for everything else. A malformed frame too short for the UDP header its
/// IPv4 header announces ends the program with 0 (`TC_ACT_OK`): a bridge
/// tool still forwards it, a mirred tool does not (no later filter runs);
/// no frame `build_frame` makes is that short.
fn udp_port_drop_program(port: UdpPort) -> Vec<SockFilter> {
    let (port_offset, value) = match port {
        UdpPort::Src(p) => (0, p),
        UdpPort::Dst(p) => (2, p),
    };
    let op = |code, jt, jf, k| SockFilter { code, jt, jf, k };
    // Jump offsets count instructions after the next one; 10 is "pass".
    vec![
        /* 0 */ op(BPF_LDH_ABS, 0, 0, ETH_TYPE_OFFSET),
        /* 1 */ op(BPF_JEQ_K, 0, 8, ETHERTYPE_IPV4),
        /* 2 */ op(BPF_LDB_ABS, 0, 0, IPV4_PROTOCOL_OFFSET),
        /* 3 */ op(BPF_JEQ_K, 0, 6, IPPROTO_UDP),
        /* 4 */ op(BPF_LDH_ABS, 0, 0, IPV4_FRAGMENT_OFFSET),
        /* 5 */ op(BPF_JSET_K, 4, 0, IPV4_FRAGMENT_MASK),
        /* 6 */ op(BPF_LDX_MSH, 0, 0, ETH_HEADER_BYTES),
        /* 7 */ op(BPF_LDH_IND, 0, 0, ETH_HEADER_BYTES + port_offset),
        /* 8 */ op(BPF_JEQ_K, 0, 1, u32::from(value)),
        /* 9 */ op(BPF_RET_K, 0, 0, TC_ACT_SHOT),
        /* 10 */ op(BPF_RET_K, 0, 0, TC_ACT_UNSPEC),
    ]
}

/// `tc ... bpf bytecode` syntax: `N,code jt jf k,...` (as `tcpdump -ddd`).
fn sock_filter_bytecode(program: &[SockFilter]) -> String {
    let mut s = program.len().to_string();
    for i in program {
        s += &format!(",{} {} {} {}", i.code, i.jt, i.jf, i.k);
    }
    s
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

/// What [`teardown`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Namespaces deleted.
    pub namespaces: usize,
    /// NICs moved back, as `ORIGINAL (ROLE)`.
    pub nics: Vec<String>,
}

/// Removes the lab under `prefix`: moves every NIC its record in
/// [`NIC_STATE_DIR`] lists back under its original name, then deletes
/// every namespace whose name starts with `prefix-` (a chain's tool
/// namespaces included). Idempotent. When a NIC cannot be moved back, the
/// namespaces and the record stay, and the error says why.
pub fn teardown(prefix: &str) -> Result<Teardown> {
    let nics = match read_state(prefix)? {
        Some(held) => {
            let returned = return_nics(&held).with_context(|| {
                format!(
                    "lab {prefix}: namespaces and {} kept",
                    state_path(prefix).display()
                )
            })?;
            remove_state(prefix)?;
            returned
        }
        None => Vec::new(),
    };
    let names = namespaces(prefix)?;
    for name in &names {
        ip(&["netns", "del", name])?;
    }
    Ok(Teardown {
        namespaces: names.len(),
        nics,
    })
}

/// Where labs record the NICs they hold: `PREFIX.json`, one per lab.
pub const NIC_STATE_DIR: &str = "/run/tapline-bench";
/// How long a NIC moved into a lab may take to report carrier after it
/// came up (autonegotiation on a real port takes a few seconds).
const NIC_CARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest interface name the kernel takes (`IFNAMSIZ` - 1).
const IFNAME_MAX_BYTES: usize = 15;

/// One end of a link of a lab: interface `ifname` in namespace
/// `{prefix}-{ns}`. Written as the bare name where it names one interface
/// (`g0`, `i1`, `i2`, `s0`, `t0`, `p1`, `hKa`, `hKb`), otherwise as
/// `NS:IFNAME` (`tool1:a`, `dut:m0`, `sen-m0:e0`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Role {
    ns: String,
    ifname: String,
}

impl Role {
    fn new(ns: &str, ifname: &str) -> Role {
        Role {
            ns: ns.to_string(),
            ifname: ifname.to_string(),
        }
    }

    /// The namespace, without the lab's prefix (`gen`, `dut`, `tool1`, ...).
    pub fn namespace_suffix(&self) -> &str {
        &self.ns
    }

    /// The interface's name inside its namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The namespace in the lab under `prefix`.
    pub fn netns_name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.ns)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if home_of(&self.ifname) == Some(self.ns.as_str()) {
            f.write_str(&self.ifname)
        } else {
            write!(f, "{}:{}", self.ns, self.ifname)
        }
    }
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Role> {
        let Some((ns, ifname)) = s.split_once(':') else {
            return match home_of(s) {
                Some(ns) => Ok(Role::new(ns, s)),
                None => bail!(
                    "unknown lab interface {s:?}: the bare names are g0, i1, i2, s0, t0, p1 and hKa, hKb \
                     (K = 1 to {MAX_HOPS}); tool sides and sensors are written NS:IFNAME \
                     (tool1:a, tool1:b, dut:m0 with sen-m0:e0)"
                ),
            };
        };
        check_ifname(ifname).with_context(|| format!("lab interface {s:?}"))?;
        let known_ns = [NS_DUT, NS_GEN, NS_SINK, NS_TAP].contains(&ns)
            || (1..=MAX_HOPS).any(|k| tool_ns(k) == ns)
            || ns
                .strip_prefix(SENSOR_NS_PREFIX)
                .is_some_and(|member| check_ifname(member).is_ok());
        ensure!(
            known_ns,
            "lab interface {s:?}: unknown namespace {ns:?} (dut, gen, sink, tap, tool1 to tool{MAX_HOPS}, sen-MEMBER)"
        );
        Ok(Role::new(ns, ifname))
    }
}

/// The namespace of a lab interface whose name alone says where it is.
fn home_of(ifname: &str) -> Option<&'static str> {
    match ifname {
        ifs::GEN => Some(NS_GEN),
        ifs::SINK => Some(NS_SINK),
        ifs::TAP => Some(NS_TAP),
        ifs::INLINE_1 | ifs::INLINE_2 | ifs::PASSIVE_1 => Some(NS_DUT),
        hop if (1..=MAX_HOPS).any(|k| hop == ifs::hop_a(k) || hop == ifs::hop_b(k)) => Some(NS_DUT),
        _ => None,
    }
}

/// Refuses what the kernel would not take as an interface name.
fn check_ifname(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= IFNAME_MAX_BYTES
            && name != "."
            && name != ".."
            && !name.contains(|c: char| c == '/' || c == ':' || c == '=' || c.is_whitespace()),
        "{name:?} is not an interface name (1 to {IFNAME_MAX_BYTES} bytes, no '/', ':', '=' or spaces)"
    );
    Ok(())
}

/// The links of `scenario` (sensors aside), each as its two ends, in the
/// order [`Lab::build_with`] makes them.
fn links(scenario: Scenario) -> Vec<[Role; 2]> {
    let mut links = Vec::new();
    if scenario.has_inline() {
        links.push([
            Role::new(NS_GEN, ifs::GEN),
            Role::new(NS_DUT, ifs::INLINE_1),
        ]);
        links.push([
            Role::new(NS_SINK, ifs::SINK),
            Role::new(NS_DUT, ifs::INLINE_2),
        ]);
    }
    if scenario.has_passive() {
        links.push([
            Role::new(NS_TAP, ifs::TAP),
            Role::new(NS_DUT, ifs::PASSIVE_1),
        ]);
    }
    if let Scenario::Chain { hops, .. } = scenario {
        for k in 1..=hops {
            let tool = tool_ns(k);
            links.push([
                Role::new(NS_DUT, &ifs::hop_a(k)),
                Role::new(&tool, ifs::TOOL_A),
            ]);
            links.push([
                Role::new(NS_DUT, &ifs::hop_b(k)),
                Role::new(&tool, ifs::TOOL_B),
            ]);
        }
    }
    links
}

/// The link to sensor `member`: the dut's `member` and the sensor's `e0`.
fn sensor_link(member: &str) -> [Role; 2] {
    [
        Role::new(NS_DUT, member),
        Role::new(&format!("{SENSOR_NS_PREFIX}{member}"), ifs::SENSOR),
    ]
}

/// The sensor link `role` is an end of, if it is one.
fn sensor_link_of(role: &Role) -> Option<[Role; 2]> {
    match role.ns.strip_prefix(SENSOR_NS_PREFIX) {
        Some(member) => (role.ifname == ifs::SENSOR).then(|| sensor_link(member)),
        None => (role.ns == NS_DUT && home_of(&role.ifname).is_none())
            .then(|| sensor_link(&role.ifname)),
    }
}

/// `--iface ROLE=IFNAME`: lab interface `ROLE` is NIC `IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicAssignment {
    pub role: Role,
    pub nic: String,
}

impl std::str::FromStr for NicAssignment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<NicAssignment> {
        let (role, nic) = s
            .split_once('=')
            .with_context(|| format!("{s:?}: expected ROLE=IFNAME, e.g. g0=ens1f0"))?;
        check_ifname(nic).with_context(|| format!("NIC of {s:?}"))?;
        Ok(NicAssignment {
            role: role.parse()?,
            nic: nic.to_string(),
        })
    }
}

/// Which lab interfaces are NICs: no role and no NIC given twice. Empty:
/// every link is a veth pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nics {
    by_role: BTreeMap<Role, String>,
}

impl Nics {
    /// Collects `assignments`, refusing a role or a NIC given twice.
    pub fn new(assignments: impl IntoIterator<Item = NicAssignment>) -> Result<Nics> {
        let mut by_role = BTreeMap::new();
        for NicAssignment { role, nic } in assignments {
            if let Some((other, _)) = by_role.iter().find(|(_, n)| **n == nic) {
                bail!("--iface: NIC {nic} given for both {other} and {role}");
            }
            if let Some(first) = by_role.insert(role.clone(), nic.clone()) {
                bail!("--iface: {role} given twice ({first} and {nic})");
            }
        }
        Ok(Nics { by_role })
    }

    pub fn is_empty(&self) -> bool {
        self.by_role.is_empty()
    }

    /// Every (role, NIC), in role order.
    pub fn iter(&self) -> impl Iterator<Item = (&Role, &str)> {
        self.by_role.iter().map(|(r, n)| (r, n.as_str()))
    }

    /// The NIC given for `role`.
    pub fn nic(&self, role: &Role) -> Option<&str> {
        self.by_role.get(role).map(String::as_str)
    }

    /// Checks the roles against `scenario` and returns its links that get
    /// NICs: every role must be an end of one of its links, or of a
    /// sensor's in a scenario with a passive side (taken when
    /// [`Lab::add_sensors`] adds it), and every link must have both ends
    /// given or neither.
    pub fn plan(&self, scenario: Scenario) -> Result<Vec<[Role; 2]>> {
        let fixed = links(scenario);
        let mut cabled = Vec::new();
        for link in &fixed {
            match (self.nic(&link[0]), self.nic(&link[1])) {
                (Some(_), Some(_)) => cabled.push(link.clone()),
                (None, None) => {}
                _ => return Err(half_link_error(self, link)),
            }
        }
        for role in self.by_role.keys() {
            if fixed.iter().any(|link| link.contains(role)) {
                continue;
            }
            match sensor_link_of(role) {
                Some(_) if !scenario.has_passive() => bail!(
                    "--iface {role}={}: sensors (dut:M <-> sen-M:e0) belong to the passive and full labs; the {} lab has none",
                    self.by_role[role],
                    scenario.label()
                ),
                Some(link) if link.iter().all(|end| self.nic(end).is_some()) => {}
                Some(link) => return Err(half_link_error(self, &link)),
                None => bail!(
                    "--iface {role}={}: the {} lab has no interface {role}; its links are {}, and per sensor M dut:M <-> sen-M:e0",
                    self.by_role[role],
                    scenario.label(),
                    fixed
                        .iter()
                        .map(|[a, b]| format!("{a} <-> {b}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Ok(cabled)
    }
}

/// The error for `link` with one end given.
fn half_link_error(nics: &Nics, link: &[Role; 2]) -> anyhow::Error {
    let (given, missing) = if nics.nic(&link[0]).is_some() {
        (&link[0], &link[1])
    } else {
        (&link[1], &link[0])
    };
    anyhow::anyhow!(
        "--iface {given}={} without {missing}: the link {} <-> {} takes two cabled NICs (give both ends) or none (a veth pair)",
        nics.nic(given).unwrap_or_default(),
        link[0],
        link[1]
    )
}

/// The NICs [`Lab::build`] uses (`tapline-bench --iface`).
static EXTERNAL: Mutex<Nics> = Mutex::new(Nics {
    by_role: BTreeMap::new(),
});
/// Every NIC a lab of this process took, for result files.
static NICS_USED: Mutex<Vec<NicInfo>> = Mutex::new(Vec::new());

/// Sets the NICs every later [`Lab::build`] of this process cables its
/// links with (the global `--iface` options). [`Lab::build_with`] takes
/// them explicitly instead.
pub fn set_external(nics: Nics) {
    *EXTERNAL.lock().unwrap_or_else(|e| e.into_inner()) = nics;
}

/// The NICs set with [`set_external`].
pub fn external() -> Nics {
    EXTERNAL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Every NIC a lab of this process took, once each (for the machine
/// description of result files; empty when every link was a veth).
pub fn nics_used() -> Vec<NicInfo> {
    NICS_USED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A NIC a lab took, as reported with results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicInfo {
    /// The lab interface it stands for (`g0`, `tool1:a`, ...).
    pub role: String,
    /// Its name outside the lab.
    pub nic: String,
    /// Its driver (`/sys/class/net/X/device/driver`), or for a virtual
    /// interface its kind (`veth`).
    pub driver: String,
    pub rx_queues: usize,
    pub tx_queues: usize,
}

impl std::fmt::Display for NicInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} (driver {}, {} rx / {} tx queues)",
            self.role, self.nic, self.driver, self.rx_queues, self.tx_queues
        )
    }
}

/// A NIC in this process's namespace, checked for use in a lab.
#[derive(Debug)]
struct NicCheck {
    info: NicInfo,
    /// Administratively up before the lab took it.
    was_up: bool,
    /// In promiscuous mode (set by a user, not by a packet socket) before
    /// the lab took it.
    promisc: bool,
}

/// Checks that `nic` is here and free for `role`: not held by a lab, not a
/// port of a bridge or bond, not the loopback, without upper devices
/// (VLAN, macvlan, ipvlan: one may carry the management address), and
/// without global addresses (a test NIC is unconfigured; one with
/// addresses is likely the management interface, and moving it would cut
/// the machine off).
fn inspect_nic(role: &Role, nic: &str) -> Result<NicCheck> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", nic])
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        let held = held_by_lab(nic)?
            .map(|(prefix, r)| {
                format!(
                    ": lab {prefix} holds it as {r} (`tapline-bench lab down --prefix {prefix}` returns it)"
                )
            })
            .unwrap_or_default();
        bail!(
            "--iface {role}={nic}: there is no interface {nic} in this network namespace{held} ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    let link = &v[0];
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    ensure!(
        !flags.contains(&"LOOPBACK"),
        "--iface {role}={nic}: {nic} is a loopback interface"
    );
    if let Some(master) = link["master"].as_str() {
        bail!("--iface {role}={nic}: {nic} is in use, as a port of {master}");
    }
    let sys = Path::new("/sys/class/net").join(nic);
    let mut uppers: Vec<String> = std::fs::read_dir(&sys)
        .with_context(|| format!("reading {}", sys.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("upper_"))
                .map(str::to_string)
        })
        .collect();
    uppers.sort();
    ensure!(
        uppers.is_empty(),
        "--iface {role}={nic}: {nic} is in use, under upper devices {} (VLAN, macvlan, ipvlan, ...; one may carry the management address): a test NIC has none",
        uppers.join(", ")
    );
    let out = ip(&["-j", "addr", "show", "dev", nic])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    if let Some(addr) = v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["scope"] == "global")
    {
        bail!(
            "--iface {role}={nic}: {nic} carries address {}/{}; a test NIC must be unconfigured (is it a management interface?)",
            addr["local"].as_str().unwrap_or("?"),
            addr["prefixlen"]
        );
    }
    let driver = std::fs::read_link(sys.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| link["linkinfo"]["info_kind"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    let queues = |kind: &str| {
        std::fs::read_dir(sys.join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(kind))
                    .count()
            })
            .unwrap_or(0)
    };
    Ok(NicCheck {
        info: NicInfo {
            role: role.to_string(),
            nic: nic.to_string(),
            driver,
            rx_queues: queues("rx-"),
            tx_queues: queues("tx-"),
        },
        was_up: flags.contains(&"UP"),
        promisc: flags.contains(&"PROMISC"),
    })
}

/// A NIC a lab holds, as recorded in its state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HeldNic {
    role: Role,
    /// Its original name, here.
    nic: String,
    /// The namespace it is in, as `role.ifname`.
    netns: String,
    /// Whether to set it up again once back.
    was_up: bool,
    /// Its promiscuous mode before the lab took it (None in records of
    /// older versions: left as it is).
    #[serde(default)]
    promisc: Option<bool>,
    /// Its VLAN offload flags before the lab took it (None when they could
    /// not be read: left as they are).
    #[serde(default)]
    vlan_offload: Option<VlanOffload>,
}

/// VLAN tag offload of a NIC (`ethtool -k`'s `rx-vlan-offload` and
/// `tx-vlan-offload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct VlanOffload {
    /// `rx-vlan-offload`: received tags are stripped into metadata.
    rx: bool,
    /// `tx-vlan-offload`: tags in metadata are inserted by the NIC.
    tx: bool,
}

impl VlanOffload {
    const MASK: u32 = sys::ETH_FLAG_RXVLAN | sys::ETH_FLAG_TXVLAN;

    /// Reads the flags of `nic` in this thread's namespace.
    fn read(nic: &str) -> Result<VlanOffload> {
        let flags = sys::ethtool_flags(nic)
            .with_context(|| format!("reading the offload flags of {nic}"))?;
        Ok(VlanOffload {
            rx: flags & sys::ETH_FLAG_RXVLAN != 0,
            tx: flags & sys::ETH_FLAG_TXVLAN != 0,
        })
    }

    /// Sets these flags on `nic` in this thread's namespace, if they differ.
    fn restore(self, nic: &str) -> Result<()> {
        let value = if self.rx { sys::ETH_FLAG_RXVLAN } else { 0 }
            | if self.tx { sys::ETH_FLAG_TXVLAN } else { 0 };
        sys::ethtool_set_flags(nic, Self::MASK, value)
            .with_context(|| format!("setting the VLAN offload of {nic}"))
    }
}

/// The record of a lab's NICs.
#[derive(Debug, Serialize, Deserialize)]
struct NicState {
    prefix: String,
    nics: Vec<HeldNic>,
}

/// `NIC_STATE_DIR/PREFIX.json`.
fn state_path(prefix: &str) -> PathBuf {
    Path::new(NIC_STATE_DIR).join(format!("{prefix}.json"))
}

/// The NICs the lab under `prefix` recorded, if it recorded any.
fn read_state(prefix: &str) -> Result<Option<Vec<HeldNic>>> {
    let path = state_path(prefix);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let state: NicState = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            Ok(Some(state.nics))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the record of `prefix` (through a rename, so a reader never
/// sees half a file).
fn write_state(prefix: &str, nics: &[HeldNic]) -> Result<()> {
    std::fs::create_dir_all(NIC_STATE_DIR).with_context(|| format!("creating {NIC_STATE_DIR}"))?;
    let path = state_path(prefix);
    let tmp = path.with_extension("json.tmp");
    let state = NicState {
        prefix: prefix.to_string(),
        nics: nics.to_vec(),
    };
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

fn remove_state(prefix: &str) -> Result<()> {
    let path = state_path(prefix);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The lab (prefix) and role under which a record lists `nic`.
fn held_by_lab(nic: &str) -> Result<Option<(String, Role)>> {
    let dir = match std::fs::read_dir(NIC_STATE_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {NIC_STATE_DIR}")),
    };
    for entry in dir.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(state) = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<NicState>(&b)?))
        else {
            continue;
        };
        if let Some(h) = state.nics.iter().find(|h| h.nic == nic) {
            return Ok(Some((state.prefix.clone(), h.role.clone())));
        }
    }
    Ok(None)
}

/// Whether interface `ifname` exists in namespace `netns` (None: this
/// process's).
fn link_exists(netns: Option<&str>, ifname: &str) -> Result<bool> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "link", "show"]);
    let out = ip(&args)?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .any(|l| l["ifname"] == ifname))
}

/// Moves `h` back to this process's namespace under its original name,
/// with its XDP programs detached, its promiscuous mode and VLAN offload
/// flags as they were, and up if it was. Returns `ORIGINAL (ROLE)`, or None
/// when the NIC is nowhere to be found (a veth whose namespace was deleted
/// is gone). Only a failed move is an error: the NIC is still in the lab.
fn return_nic(h: &HeldNic) -> Result<Option<String>> {
    let in_lab = Path::new("/var/run/netns").join(&h.netns).exists()
        && link_exists(Some(&h.netns), &h.role.ifname)?;
    if in_lab {
        // The kernel moves a NIC under its current name and renames it
        // afterwards: with the original name taken here, the move would
        // succeed and the rename fail, leaving the NIC here under the
        // lab's name.
        ensure!(
            !link_exists(None, &h.nic)?,
            "cannot move {} in {} back as {}: an interface of that name exists here (rename or delete it)",
            h.role.ifname,
            h.netns,
            h.nic
        );
        detach_xdp(h);
        // `netns PID`: the namespace of this process, which is where the
        // NIC came from (ip itself runs in the lab namespace with -n).
        let pid = std::process::id().to_string();
        ip(&[
            "-n",
            &h.netns,
            "link",
            "set",
            "dev",
            &h.role.ifname,
            "netns",
            &pid,
            "name",
            &h.nic,
        ])
        .with_context(|| format!("moving {} in {} back as {}", h.role.ifname, h.netns, h.nic))?;
    } else if !link_exists(None, &h.nic)? {
        eprintln!(
            "warning: NIC {} ({}) is neither in {} nor here: a physical NIC whose namespace was deleted comes back as {} \
             (rename it with `ip link set dev {} name {}`); a veth is gone",
            h.nic, h.role, h.netns, h.role.ifname, h.role.ifname, h.nic
        );
        return Ok(None);
    }
    if let Some(promisc) = h.promisc {
        let state = if promisc { "on" } else { "off" };
        if let Err(e) = ip(&["link", "set", "dev", &h.nic, "promisc", state]) {
            eprintln!(
                "warning: NIC {}: restoring promiscuous mode {state}: {e:#}",
                h.nic
            );
        }
    }
    if let Some(offload) = h.vlan_offload {
        if let Err(e) = offload.restore(&h.nic) {
            eprintln!(
                "warning: NIC {}: restoring VLAN offload to {offload:?}: {e:#}",
                h.nic
            );
        }
    }
    if h.was_up {
        ip(&["link", "set", "dev", &h.nic, "up"])?;
    }
    Ok(Some(format!("{} ({})", h.nic, h.role)))
}

/// Detaches the XDP programs of `h` in its lab namespace, native and
/// generic (a DUT killed before it cleaned up leaves its program behind),
/// and warns when one stays: a program held by a BPF link lives as long as
/// the process (or pin) holding the link.
fn detach_xdp(h: &HeldNic) {
    for mode in ["xdpdrv", "xdpgeneric"] {
        // Fails where the mode is not supported, with nothing to detach.
        let _ = Command::new("ip")
            .args([
                "-n",
                &h.netns,
                "link",
                "set",
                "dev",
                &h.role.ifname,
                mode,
                "off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if link_state(&Netns::existing(&h.netns), &h.role.ifname).is_ok_and(|s| s.xdp_attached) {
        eprintln!(
            "warning: NIC {} ({}): an XDP program stays attached until the process holding its BPF link exits",
            h.nic, h.role
        );
    }
}

/// Returns every NIC of `held` (the last taken first), and fails with the
/// reasons when some could not be moved.
fn return_nics(held: &[HeldNic]) -> Result<Vec<String>> {
    let mut returned = Vec::new();
    let mut failed = Vec::new();
    for h in held.iter().rev() {
        match return_nic(h) {
            Ok(Some(nic)) => returned.push(nic),
            Ok(None) => {}
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    returned.reverse();
    if !failed.is_empty() {
        bail!("NICs not returned: {}", failed.join("; "));
    }
    Ok(returned)
}

/// The labs of this process that hold NICs their drop returns.
#[derive(Debug)]
struct Holders {
    /// Their prefixes, in the order they took their first NIC.
    prefixes: Vec<String>,
    /// Set by [`return_all_nics`]: the process is exiting, no lab takes a
    /// NIC any more.
    closed: bool,
}

/// Its lock also makes taking or returning a lab's NICs one step for
/// [`return_all_nics`], which may run on a signal thread at any time.
static HOLDERS: Mutex<Holders> = Mutex::new(Holders {
    prefixes: Vec::new(),
    closed: false,
});

fn holders() -> MutexGuard<'static, Holders> {
    HOLDERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Returns the NICs of every lab of this process that holds some and was
/// not persisted, with [`teardown`] (which also deletes the lab's
/// namespaces), for a process about to exit without running the labs'
/// drops (on a signal). Labs of this process take no NIC afterwards, and
/// their drops leave the namespaces alone. Returns each lab's prefix and
/// outcome.
pub fn return_all_nics() -> Vec<(String, Result<Teardown>)> {
    let mut holders = holders();
    holders.closed = true;
    std::mem::take(&mut holders.prefixes)
        .into_iter()
        .map(|prefix| {
            let result = teardown(&prefix);
            (prefix, result)
        })
        .collect()
}

/// The NICs a lab took. [`HeldNics::release`] returns them, unless
/// persisted, and then removes the lab's record.
#[derive(Debug)]
struct HeldNics {
    prefix: String,
    held: Vec<HeldNic>,
    info: Vec<NicInfo>,
    /// Whether release returns the NICs (false once persisted or released).
    owned: bool,
}

impl HeldNics {
    fn new(prefix: &str) -> HeldNics {
        HeldNics {
            prefix: prefix.to_string(),
            held: Vec::new(),
            info: Vec::new(),
            owned: true,
        }
    }

    /// Moves `nic` into namespace `netns` as `role` and sets it up. The
    /// record, with what returning the NIC restores, is written first: a
    /// crash in between leaves a record whose NIC [`return_nic`] finds
    /// still here, which is harmless.
    fn take(&mut self, role: &Role, nic: &str, netns: &str) -> Result<()> {
        let check = inspect_nic(role, nic)?;
        let vlan_offload = match VlanOffload::read(nic) {
            Ok(offload) => Some(offload),
            Err(e) => {
                eprintln!(
                    "warning: lab {}: NIC {nic}: cannot read its VLAN offload flags, so they are not restored on return: {e:#}",
                    self.prefix
                );
                None
            }
        };
        let mut holders = holders();
        ensure!(
            !holders.closed,
            "lab {}: not taking NIC {nic}: this process is returning its NICs and exiting",
            self.prefix
        );
        self.held.push(HeldNic {
            role: role.clone(),
            nic: nic.to_string(),
            netns: netns.to_string(),
            was_up: check.was_up,
            promisc: Some(check.promisc),
            vlan_offload,
        });
        write_state(&self.prefix, &self.held)?;
        if !holders.prefixes.contains(&self.prefix) {
            holders.prefixes.push(self.prefix.clone());
        }
        ip(&[
            "link",
            "set",
            "dev",
            nic,
            "netns",
            netns,
            "name",
            &role.ifname,
        ])
        .with_context(|| format!("moving NIC {nic} into {netns} as {}", role.ifname))?;
        ip(&["-n", netns, "link", "set", "dev", &role.ifname, "up"])?;
        drop(holders);
        let mut used = NICS_USED.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(&check.info) {
            used.push(check.info.clone());
        }
        self.info.push(check.info);
        Ok(())
    }

    /// Leaves the NICs, and the record, to [`teardown`].
    fn persist(&mut self) {
        self.owned = false;
        holders().prefixes.retain(|p| *p != self.prefix);
    }

    /// Returns the NICs and removes the record, once. Fails when a NIC
    /// could not be moved back (the record stays, listing every NIC), or
    /// when [`return_all_nics`] took the lab over.
    fn release(&mut self) -> Result<()> {
        if !self.owned || self.held.is_empty() {
            return Ok(());
        }
        self.owned = false;
        let mut holders = holders();
        let Some(i) = holders.prefixes.iter().position(|p| *p == self.prefix) else {
            bail!("the NICs were left to the exit handler");
        };
        return_nics(&self.held)?;
        remove_state(&self.prefix)?;
        holders.prefixes.remove(i);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{build_frame, FrameKind};

    /// Runs a classic BPF program over `frame` with the subset of opcodes
    /// `udp_port_drop_program` uses; out-of-bounds loads end the program
    /// with 0, as the kernel does.
    fn run_program(program: &[SockFilter], frame: &[u8]) -> u32 {
        let byte = |off: u32| frame.get(off as usize).copied().map(u32::from);
        let half = |off: u32| Some(byte(off)? << 8 | byte(off + 1)?);
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                BPF_LDH_ABS => match half(i.k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LDB_ABS => match byte(i.k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LDH_IND => match half(x + i.k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                BPF_LDX_MSH => match byte(i.k) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                BPF_JEQ_K => pc += jump(a == i.k),
                BPF_JSET_K => pc += jump(a & i.k != 0),
                BPF_RET_K => return i.k,
                other => panic!("opcode {other:#x} not interpreted"),
            }
        }
    }

    fn udp_flow_frame(flow: u16) -> Vec<u8> {
        build_frame(FrameKind::Udp4, 128, 1, u32::from(flow), flow)
    }

    fn src_port(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[34], frame[35]])
    }

    #[test]
    fn drop_program_matches_one_source_port_only() {
        let dropped = udp_flow_frame(2);
        let program = udp_port_drop_program(UdpPort::Src(src_port(&dropped)));
        assert_eq!(run_program(&program, &dropped), TC_ACT_SHOT);
        for flow in [0, 1, 3, 500] {
            assert_eq!(
                run_program(&program, &udp_flow_frame(flow)),
                TC_ACT_UNSPEC,
                "flow {flow}"
            );
        }
        // The same bytes behind a non-IP ethertype pass.
        let mut raw = dropped.clone();
        raw[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        assert_eq!(run_program(&program, &raw), TC_ACT_UNSPEC);
        // A later fragment carries no UDP header: it passes.
        let mut fragment = dropped.clone();
        fragment[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
        assert_eq!(run_program(&program, &fragment), TC_ACT_UNSPEC);
        // TCP with the same port passes.
        let mut tcp = dropped;
        tcp[23] = 6;
        assert_eq!(run_program(&program, &tcp), TC_ACT_UNSPEC);
    }

    #[test]
    fn drop_program_follows_the_ip_header_length_and_matches_destination_ports() {
        let frame = udp_flow_frame(7);
        let dst = u16::from_be_bytes([frame[36], frame[37]]);
        let program = udp_port_drop_program(UdpPort::Dst(dst));
        assert_eq!(run_program(&program, &frame), TC_ACT_SHOT);
        assert_eq!(
            run_program(&udp_port_drop_program(UdpPort::Dst(dst + 1)), &frame),
            TC_ACT_UNSPEC
        );
        // Four bytes of IP options move the UDP header.
        let mut with_options = frame[..34].to_vec();
        with_options[14] = 0x46;
        with_options.extend_from_slice(&[1, 1, 1, 0]);
        with_options.extend_from_slice(&frame[34..]);
        assert_eq!(run_program(&program, &with_options), TC_ACT_SHOT);
        // A frame cut inside the UDP header ends the program with 0.
        assert_eq!(run_program(&program, &frame[..36]), 0);
    }

    #[test]
    fn bytecode_is_in_tc_syntax() {
        let bytecode = sock_filter_bytecode(&udp_port_drop_program(UdpPort::Src(10_002)));
        assert_eq!(
            bytecode,
            "11,40 0 0 12,21 0 8 2048,48 0 0 23,21 0 6 17,40 0 0 20,69 4 0 8191,\
             177 0 0 14,72 0 0 14,21 0 1 10002,6 0 0 2,6 0 0 4294967295"
        );
    }

    fn nics(pairs: &[(&str, &str)]) -> Result<Nics> {
        Nics::new(
            pairs
                .iter()
                .map(|(role, nic)| format!("{role}={nic}").parse())
                .collect::<Result<Vec<NicAssignment>>>()?,
        )
    }

    #[test]
    fn roles_parse_bare_where_unambiguous_and_qualified_otherwise() -> Result<()> {
        for (text, ns, ifname) in [
            ("g0", NS_GEN, ifs::GEN),
            ("i1", NS_DUT, ifs::INLINE_1),
            ("s0", NS_SINK, ifs::SINK),
            ("t0", NS_TAP, ifs::TAP),
            ("h8b", NS_DUT, "h8b"),
            ("tool2:a", "tool2", ifs::TOOL_A),
            ("dut:m0", NS_DUT, "m0"),
            ("sen-m0:e0", "sen-m0", ifs::SENSOR),
        ] {
            let role: Role = text.parse()?;
            assert_eq!(role, Role::new(ns, ifname), "{text}");
            assert_eq!(role.to_string(), text);
        }
        // The qualified spelling of a bare name prints bare.
        assert_eq!("gen:g0".parse::<Role>()?.to_string(), "g0");
        for bad in [
            "a", "h9a", "e0", "g1", "tool9:a", "lab:x", "dut:", "dut:x/y",
        ] {
            assert!(bad.parse::<Role>().is_err(), "{bad} parsed");
        }
        let a: NicAssignment = "tool1:b=ens1f0".parse()?;
        assert_eq!(
            (a.role.to_string(), a.nic.as_str()),
            ("tool1:b".into(), "ens1f0")
        );
        for bad in ["g0", "g0=", "=ens1f0", "g0=ens1f0ens1f0ens1f0", "g0=a b"] {
            assert!(bad.parse::<NicAssignment>().is_err(), "{bad} parsed");
        }
        Ok(())
    }

    #[test]
    fn a_role_or_a_nic_given_twice_is_refused() {
        let e = nics(&[("g0", "x0"), ("i1", "x0")]).unwrap_err();
        assert!(e.to_string().contains("x0 given for both"), "{e}");
        let e = nics(&[("g0", "x0"), ("gen:g0", "x1")]).unwrap_err();
        assert!(e.to_string().contains("g0 given twice"), "{e}");
    }

    #[test]
    fn plan_takes_whole_links_of_the_scenario_only() -> Result<()> {
        let inline = nics(&[("g0", "x0"), ("i1", "x1"), ("s0", "x2"), ("i2", "x3")])?;
        assert_eq!(inline.plan(Scenario::Inline)?, links(Scenario::Inline));
        assert_eq!(inline.plan(Scenario::Full)?.len(), 2);
        let e = inline.plan(Scenario::Passive).unwrap_err().to_string();
        assert!(e.contains("the passive lab has no interface"), "{e}");
        assert!(e.contains("t0 <-> p1"), "{e}");

        let e = nics(&[("g0", "x0"), ("s0", "x2"), ("i2", "x3")])?
            .plan(Scenario::Inline)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--iface g0=x0 without i1: the link g0 <-> i1"),
            "{e}"
        );

        let chain = Scenario::chain(2, ToolKind::Mirred)?;
        let hop = nics(&[("h2a", "x0"), ("tool2:a", "x1")])?;
        assert_eq!(
            hop.plan(chain)?,
            vec![[Role::new(NS_DUT, "h2a"), Role::new("tool2", ifs::TOOL_A)]]
        );
        let e = nics(&[("tool2:b", "x1")])?
            .plan(chain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without h2b"), "{e}");
        assert!(nics(&[("h3a", "x0"), ("tool3:a", "x1")])?
            .plan(chain)
            .is_err());

        // Sensors are taken by `add_sensors`; both ends must be given.
        let sensor = nics(&[("dut:m0", "x0"), ("sen-m0:e0", "x1")])?;
        assert!(sensor.plan(Scenario::Passive)?.is_empty());
        let e = nics(&[("dut:m0", "x0")])?
            .plan(Scenario::Passive)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without sen-m0:e0"), "{e}");
        assert!(sensor.plan(Scenario::Full)?.is_empty());
        for scenario in [Scenario::Inline, chain] {
            let e = sensor.plan(scenario).unwrap_err().to_string();
            assert!(
                e.contains("sensors (dut:M <-> sen-M:e0) belong to the passive and full labs"),
                "{e}"
            );
        }
        assert!(nics(&[])?.plan(Scenario::Full)?.is_empty());
        Ok(())
    }

    #[test]
    fn chain_scenario_parses_and_validates_hops_and_tool() -> Result<()> {
        let chain: Scenario = "chain".parse()?;
        assert_eq!(
            chain.with_chain_options(None, None)?,
            Scenario::Chain {
                hops: DEFAULT_HOPS,
                tool: ToolKind::Bridge
            }
        );
        assert_eq!(
            chain.with_chain_options(Some(MAX_HOPS), Some("mirred".parse()?))?,
            Scenario::Chain {
                hops: MAX_HOPS,
                tool: ToolKind::Mirred
            }
        );
        for hops in [0, MAX_HOPS + 1] {
            let e = chain.with_chain_options(Some(hops), None).unwrap_err();
            assert!(e.to_string().contains("1 to 8"), "{e}");
        }
        let e = Scenario::Inline
            .with_chain_options(Some(2), None)
            .unwrap_err();
        assert!(e.to_string().contains("only apply to the chain"), "{e}");
        assert_eq!(
            Scenario::Full.with_chain_options(None, None)?,
            Scenario::Full
        );
        assert!("hub".parse::<ToolKind>().is_err());
        assert!(Scenario::Chain {
            hops: 2,
            tool: ToolKind::Mirred
        }
        .has_inline());
        assert!(!Scenario::Chain {
            hops: 2,
            tool: ToolKind::Mirred
        }
        .has_passive());
        Ok(())
    }
}
