//! Real NICs instead of veth pairs (`--iface ROLE=IFNAME`): the roles of a
//! lab's interfaces, which links a set of NICs cables, and the NICs in use.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::{ifs, tool_ns, Scenario, NS_DUT, NS_GEN, NS_SINK, NS_TAP, SENSOR_NS_PREFIX};
use crate::tools::MAX_HOPS;

/// Where labs record the NICs they hold: `PREFIX.json`, one per lab.
pub const NIC_STATE_DIR: &str = "/run/tapline-bench";
/// How long a NIC moved into a lab may take to report carrier after it
/// came up (autonegotiation on a real port takes a few seconds).
pub(crate) const NIC_CARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest interface name the kernel takes (`IFNAMSIZ` - 1).
pub(crate) const IFNAME_MAX_BYTES: usize = 15;

/// One end of a link of a lab: interface `ifname` in namespace
/// `{prefix}-{ns}`. Written as the bare name where it names one interface
/// (`g0`, `i1`, `i2`, `s0`, `t0`, `p1`, `hKa`, `hKb`), otherwise as
/// `NS:IFNAME` (`tool1:a`, `dut:m0`, `sen-m0:e0`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Role {
    pub(crate) ns: String,
    pub(crate) ifname: String,
}

impl Role {
    pub(crate) fn new(ns: &str, ifname: &str) -> Role {
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
pub(crate) fn home_of(ifname: &str) -> Option<&'static str> {
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
pub(crate) fn check_ifname(name: &str) -> Result<()> {
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
/// order [`Lab::build_with`](crate::Lab::build_with) makes them.
pub(crate) fn links(scenario: Scenario) -> Vec<[Role; 2]> {
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
pub(crate) fn sensor_link(member: &str) -> [Role; 2] {
    [
        Role::new(NS_DUT, member),
        Role::new(&format!("{SENSOR_NS_PREFIX}{member}"), ifs::SENSOR),
    ]
}

/// The sensor link `role` is an end of, if it is one.
pub(crate) fn sensor_link_of(role: &Role) -> Option<[Role; 2]> {
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
    pub(crate) by_role: BTreeMap<Role, String>,
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
    /// [`Lab::add_sensors`](crate::Lab::add_sensors) adds it), and every link must have both ends
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
pub(crate) fn half_link_error(nics: &Nics, link: &[Role; 2]) -> anyhow::Error {
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

/// The NICs [`Lab::build`](crate::Lab::build) uses (`tapline-bench --iface`).
pub(crate) static EXTERNAL: Mutex<Nics> = Mutex::new(Nics {
    by_role: BTreeMap::new(),
});
/// Every NIC a lab of this process took, for result files.
pub(crate) static NICS_USED: Mutex<Vec<NicInfo>> = Mutex::new(Vec::new());

/// Sets the NICs every later [`Lab::build`](crate::Lab::build) of this process cables its
/// links with (the global `--iface` options). [`Lab::build_with`](crate::Lab::build_with) takes
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scenario, ToolKind};

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
}
