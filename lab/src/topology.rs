//! A built lab ([`Lab`]): its namespaces, the links between them (veth
//! pairs or NICs given with `--iface`) and the sensors added to it.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::custody::{inspect_nic, state_path, HeldNic, HeldNics};
use crate::ethtool;
use crate::netns::{has_carrier, veth, Netns, LINK_POLL};
use crate::nics::{
    external, half_link_error, links, sensor_link, sensor_link_of, NicInfo, Nics, Role,
    NIC_CARRIER_TIMEOUT,
};
use crate::scenario::{ifs, tool_ns, Scenario, NS_DUT, NS_GEN, NS_SINK, NS_TAP};
use crate::tools::install_tool;

/// A built lab. Dropping it returns the NICs it holds and removes every
/// namespace (and so every veth); when a NIC cannot be returned, the
/// namespaces and the lab's record stay for [`teardown`](crate::teardown).
#[derive(Debug)]
pub struct Lab {
    pub prefix: String,
    pub scenario: Scenario,
    /// The NICs the lab took (see [`Nics`]), returned by the lab's drop
    /// before its namespaces drop.
    pub(crate) held: HeldNics,
    /// What `--iface` gave; links whose two ends it names get NICs.
    pub(crate) external: Nics,
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
    /// [`set_external`](crate::set_external) (none: veth pairs only). A chain's tools forward
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
    /// dropped; [`teardown`](crate::teardown) removes them (and returns the NICs) later.
    pub fn persist(mut self) {
        self.held.persist();
        self.keep_namespaces();
    }

    /// Keeps every namespace of the lab after drop.
    pub(crate) fn keep_namespaces(&mut self) {
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
    pub(crate) fn link(&mut self, a: &Role, b: &Role) -> Result<()> {
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
    pub(crate) fn vlan_offload_off(&self, role: &Role) -> Result<()> {
        let ns = Netns::existing(&role.netns_name(&self.prefix));
        let result = ns.enter(|| ethtool::vlan_offload_off(&role.ifname))?;
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
    pub(crate) fn announce_nics(&self, from: usize) {
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
    pub(crate) fn warn_unused_nics(&self) {
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
    pub(crate) fn warn_without_carrier(&self, from: usize) {
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
