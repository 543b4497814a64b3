//! The compiled form of a filter and its evaluation over a parsed
//! [`Packet`]: a flat vector of primitive tests with a jump for each
//! outcome, like classic BPF. Evaluation is a loop without recursion or
//! allocation, and every primitive is evaluated at most once per frame.

use std::net::IpAddr;

use crate::packet::{
    Packet, ETHERTYPE_ARP, ETHERTYPE_RARP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

/// Which end(s) of a packet an address or port test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Src,
    Dst,
    /// The default: either end (`src or dst`).
    SrcOrDst,
    /// Both ends (`src and dst`).
    SrcAndDst,
}

impl Dir {
    fn test<T: Copy>(self, src: T, dst: T, f: impl Fn(T) -> bool) -> bool {
        match self {
            Dir::Src => f(src),
            Dir::Dst => f(dst),
            Dir::SrcOrDst => f(src) || f(dst),
            Dir::SrcAndDst => f(src) && f(dst),
        }
    }
}

/// Which IP versions a protocol test accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpVersion {
    Any,
    V4,
    V6,
}

/// Which transports a port test accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortProto {
    /// TCP, UDP or SCTP (a `port` without a protocol qualifier).
    Any,
    Only(u8),
}

/// Where an IPv4 address test looks: the IP header, and/or the sender and
/// target protocol addresses of ARP / RARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct V4Layers {
    pub ip: bool,
    pub arp: bool,
    pub rarp: bool,
}

/// One primitive test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prim {
    /// The ethertype after the VLAN tags (`ip`, `ip6`, `arp`, `rarp`,
    /// `ether proto N`).
    EtherType(u16),
    /// The transport protocol (`tcp`, `icmp`, `ip proto N`, ...).
    IpProto { version: IpVersion, proto: u8 },
    /// An IPv4 address within `net/mask` (`host`, `net`, `ip multicast`).
    V4Net {
        dir: Dir,
        net: u32,
        mask: u32,
        layers: V4Layers,
    },
    /// An IPv6 address within `net/mask`.
    V6Net { dir: Dir, net: u128, mask: u128 },
    /// A MAC address (`ether host`, `ether broadcast`).
    EtherAddr { dir: Dir, mac: [u8; 6] },
    /// The group bit of the destination MAC (`ether multicast`).
    EtherMulticast,
    /// A TCP/UDP/SCTP port in `lo..=hi`.
    Port {
        dir: Dir,
        proto: PortProto,
        lo: u16,
        hi: u16,
    },
    /// At least one VLAN tag; with an ID, any of the (up to two) tags has
    /// that ID.
    Vlan(Option<u16>),
    /// `less N`: frame length <= N.
    LenAtMost(u32),
    /// `greater N`: frame length >= N.
    LenAtLeast(u32),
}

impl Prim {
    pub(super) fn matches(&self, p: &Packet<'_>) -> bool {
        match *self {
            Prim::EtherType(t) => p.ethertype == t,
            Prim::IpProto { version, proto } => {
                let version_ok = matches!(
                    (version, p.src),
                    (IpVersion::Any, Some(_))
                        | (IpVersion::V4, Some(IpAddr::V4(_)))
                        | (IpVersion::V6, Some(IpAddr::V6(_)))
                );
                // 0 is "unknown" for IPv6 (hop-by-hop is always walked
                // past), so it never names a protocol there.
                let known = proto != 0 || matches!(p.src, Some(IpAddr::V4(_)));
                version_ok && known && p.proto == proto
            }
            Prim::V4Net {
                dir,
                net,
                mask,
                layers,
            } => {
                let in_net = |a: std::net::Ipv4Addr| u32::from(a) & mask == net;
                match (p.src, p.dst) {
                    (Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) if layers.ip => {
                        dir.test(s, d, in_net)
                    }
                    _ => {
                        let arp_ok = (layers.arp && p.ethertype == ETHERTYPE_ARP)
                            || (layers.rarp && p.ethertype == ETHERTYPE_RARP);
                        match p.arp_addrs() {
                            Some((s, d)) if arp_ok => dir.test(s, d, in_net),
                            _ => false,
                        }
                    }
                }
            }
            Prim::V6Net { dir, net, mask } => match (p.src, p.dst) {
                (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
                    dir.test(s, d, |a| u128::from(a) & mask == net)
                }
                _ => false,
            },
            Prim::EtherAddr { dir, mac } => match (p.eth_src(), p.eth_dst()) {
                (Some(s), Some(d)) => dir.test(s, d, |m| m == mac),
                _ => false,
            },
            Prim::EtherMulticast => p.eth_dst().is_some_and(|d| d[0] & 1 != 0),
            Prim::Port { dir, proto, lo, hi } => {
                let proto_ok = match proto {
                    PortProto::Any => {
                        matches!(p.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
                    }
                    PortProto::Only(want) => p.proto == want,
                };
                match p.ports {
                    Some((s, d)) if proto_ok => dir.test(s, d, |x| (lo..=hi).contains(&x)),
                    _ => false,
                }
            }
            Prim::Vlan(None) => p.n_vlans > 0,
            Prim::Vlan(Some(id)) => {
                let n = usize::from(p.n_vlans).min(p.vlans.len());
                p.vlans[..n].contains(&id)
            }
            Prim::LenAtMost(n) => u32::try_from(p.frame.len()).is_ok_and(|len| len <= n),
            Prim::LenAtLeast(n) => u32::try_from(p.frame.len()).map_or(true, |len| len >= n),
        }
    }
}

/// A jump target: an instruction index, or one of these two.
pub(super) const ACCEPT: u32 = u32::MAX;
pub(super) const REJECT: u32 = u32::MAX - 1;

/// Test `prim`; go to `on_true` or `on_false`. The code generator only
/// ever jumps to instructions it emitted earlier (lower indices) or to
/// ACCEPT/REJECT, so every run ends within `insns.len()` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    pub prim: Prim,
    pub on_true: u32,
    pub on_false: u32,
}

/// Runs the program from `entry`.
pub(super) fn run(insns: &[Insn], entry: u32, p: &Packet<'_>) -> bool {
    let mut pc = entry;
    loop {
        match pc {
            ACCEPT => return true,
            REJECT => return false,
            _ => {}
        }
        let Some(insn) = insns.get(pc as usize) else {
            // Unreachable by construction (see `Insn`); reject rather than
            // panic on the data path.
            return false;
        };
        pc = if insn.prim.matches(p) {
            insn.on_true
        } else {
            insn.on_false
        };
    }
}
