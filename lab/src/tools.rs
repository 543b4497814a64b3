//! Emulated inline tools of a chain lab: a Linux bridge made into a wire or
//! two `tc mirred` redirects ([`ToolKind`]), and the failures a test
//! injects into them (link down, a classic-BPF drop of one UDP flow).

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::{has_carrier, ip, run, veth, wait_until, Netns};
use crate::nics::Role;
use crate::scenario::{ifs, tool_ns, Scenario, NS_DUT};
use crate::topology::Lab;

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

/// tc priority of [`Lab::tool_drop_udp_port`] filters: below (before) the
/// mirred redirect, so a drop wins.
pub(crate) const DROP_FILTER_PRIO: &str = "1";
/// tc priority of a [`ToolKind::Mirred`] tool's redirect.
pub(crate) const MIRRED_FILTER_PRIO: &str = "10";

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
pub(crate) const BRIDGE_GROUP_FWD_MASK: &str = "0xfff8";
/// How long a tool's links may take to carry traffic after `up`.
pub(crate) const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// `tc -n NS ARGS...`
pub fn tc(ns: &Netns, args: &[&str]) -> Result<Output> {
    run(Command::new("tc").args(["-n", ns.name()]).args(args))
}

impl Lab {
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

    /// Deletes the veth between the dut's `hop_a(k)` and tool `k`'s side
    /// `a`, then creates it again under the same names (as a CNI plugin does
    /// when a tool's pod is re-created): the dut's interface gets a new
    /// ifindex. The tool's side is set up as at build time (VLAN offload
    /// off, its bridge port or tc redirect, the clsact qdisc); returns once
    /// the tool forwards again. veth labs only (a NIC cannot be re-created).
    pub fn recreate_tool_link(&self, k: u8) -> Result<()> {
        let tool = self.tool(k)?;
        let hop_a = ifs::hop_a(k);
        let tool_role = Role::new(&tool_ns(k), ifs::TOOL_A);
        if self.external.nic(&tool_role).is_some()
            || self.external.nic(&Role::new(NS_DUT, &hop_a)).is_some()
        {
            bail!("tool {k}'s link is a NIC: only a veth can be re-created");
        }
        let Scenario::Chain { tool: kind, .. } = self.scenario else {
            bail!("not a chain lab");
        };
        ip(&["-n", self.dut.name(), "link", "del", "dev", &hop_a])?;
        veth(&self.dut, &hop_a, tool, ifs::TOOL_A)?;
        self.vlan_offload_off(&tool_role)?;
        tc(tool, &["qdisc", "add", "dev", ifs::TOOL_A, "clsact"])?;
        match kind {
            ToolKind::Bridge => bridge_port(tool, ifs::TOOL_A)?,
            ToolKind::Mirred => {
                // The redirect into `a` named the old device: both again.
                let _ = tc(tool, &["filter", "del", "dev", ifs::TOOL_B, "ingress"]);
                for (from, to) in [(ifs::TOOL_A, ifs::TOOL_B), (ifs::TOOL_B, ifs::TOOL_A)] {
                    mirred_redirect(tool, from, to)?;
                }
            }
        }
        self.wait_tool_forwarding(k)
    }

    /// Waits until tool `k` forwards: every link between it and the dut has
    /// carrier and, for a bridge, both ports are in state forwarding.
    pub(crate) fn wait_tool_forwarding(&self, k: u8) -> Result<()> {
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

/// Makes `ns` (with its veths `a` and `b` up) bridge `a <-> b` like `kind`.
///
/// Every tool gets a clsact qdisc on `a`, where [`Lab::tool_drop_udp_port`]
/// hangs its filters: tc ingress runs before the bridge's rx handler. Why
/// the bridge is set up as it is: see [`ToolKind::Bridge`].
pub(crate) fn install_tool(ns: &Netns, kind: ToolKind) -> Result<()> {
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
                bridge_port(ns, port)?;
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

/// Makes `port` a port of the tool's bridge, without learning (see
/// [`ToolKind::Bridge`]).
fn bridge_port(ns: &Netns, port: &str) -> Result<()> {
    let set = |args: &[&str]| {
        let mut argv = vec!["-n", ns.name(), "link", "set", "dev", port];
        argv.extend_from_slice(args);
        ip(&argv)
    };
    set(&["master", ifs::TOOL_BRIDGE])?;
    set(&["type", "bridge_slave", "learning", "off"]).map(drop)
}

/// The STP state of bridge port `port` in `ns` (`forwarding`, `disabled`, ...).
pub(crate) fn bridge_port_state(ns: &Netns, port: &str) -> Result<String> {
    let out =
        run(Command::new("bridge").args(["-n", ns.name(), "-j", "link", "show", "dev", port]))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing bridge -j output")?;
    Ok(v[0]["state"].as_str().unwrap_or("unknown").to_string())
}

/// Which UDP port a [`Lab::tool_drop_udp_port`] filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPort {
    /// The source port. `tapline_bench::traffic::build_frame` gives each flow its
    /// own source port, so this selects one flow.
    Src(u16),
    /// The destination port (`build_frame` uses the same one for every
    /// flow).
    Dst(u16),
}

/// One classic BPF instruction (`struct sock_filter`, linux/filter.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SockFilter {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_H | BPF_ABS`: A = 16 bits at k.
pub(crate) const BPF_LDH_ABS: u16 = 0x28;
/// `BPF_LD | BPF_B | BPF_ABS`: A = the byte at k.
pub(crate) const BPF_LDB_ABS: u16 = 0x30;
/// `BPF_LD | BPF_H | BPF_IND`: A = 16 bits at X + k.
pub(crate) const BPF_LDH_IND: u16 = 0x48;
/// `BPF_LDX | BPF_B | BPF_MSH`: X = 4 * (byte at k & 0xf), an IPv4 header length.
pub(crate) const BPF_LDX_MSH: u16 = 0xb1;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const BPF_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JSET | BPF_K`: jump if A & k.
pub(crate) const BPF_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`.
pub(crate) const BPF_RET_K: u16 = 0x06;
/// Verdicts of a direct-action classifier (linux/pkt_cls.h): drop.
pub(crate) const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_UNSPEC` (-1): no verdict, the next filter (mirred) runs.
pub(crate) const TC_ACT_UNSPEC: u32 = u32::MAX;

// Offsets from the start of the Ethernet header: cls_bpf pushes the MAC
// header back before running a program at ingress. A VLAN tag is not in
// the bytes any more (the kernel moves it to skb metadata before tc), so
// tagged frames match like untagged ones.
pub(crate) const ETH_TYPE_OFFSET: u32 = 12;
pub(crate) const ETH_HEADER_BYTES: u32 = 14;
pub(crate) const IPV4_FRAGMENT_OFFSET: u32 = ETH_HEADER_BYTES + 6;
pub(crate) const IPV4_PROTOCOL_OFFSET: u32 = ETH_HEADER_BYTES + 9;
pub(crate) const ETHERTYPE_IPV4: u32 = 0x0800;
pub(crate) const IPPROTO_UDP: u32 = 17;
/// Fragment offset bits of the IPv4 flags/fragment field: non-zero on
/// every fragment but the first, which alone carries the UDP header.
pub(crate) const IPV4_FRAGMENT_MASK: u32 = 0x1fff;

/// The program behind [`Lab::tool_drop_udp_port`]: `TC_ACT_SHOT` for
/// IPv4/UDP frames (first fragments) whose `port` matches, `TC_ACT_UNSPEC`
/// for everything else. A malformed frame too short for the UDP header its
/// IPv4 header announces ends the program with 0 (`TC_ACT_OK`): a bridge
/// tool still forwards it, a mirred tool does not (no later filter runs);
/// no frame `build_frame` makes is that short.
pub(crate) fn udp_port_drop_program(port: UdpPort) -> Vec<SockFilter> {
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
pub(crate) fn sock_filter_bytecode(program: &[SockFilter]) -> String {
    let mut s = program.len().to_string();
    for i in program {
        s += &format!(",{} {} {} {}", i.code, i.jt, i.jf, i.k);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapline_bench::traffic::{build_frame, FrameKind};

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
}
