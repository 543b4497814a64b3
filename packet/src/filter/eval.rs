//! The compiled form of a filter and its evaluation over a parsed
//! [`Packet`]: a flat vector of primitive tests with a jump for each
//! outcome, like classic BPF. Evaluation is a loop without recursion or
//! allocation, and every primitive is evaluated at most once per frame.

use std::net::IpAddr;

use crate::packet::{
    Packet, ETHERTYPE_ARP, ETHERTYPE_RARP, ETH_HEADER_LEN, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
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
        }
    }
}

/// A jump target: an instruction index, or one of these two.
pub(super) const ACCEPT: u32 = u32::MAX;
pub(super) const REJECT: u32 = u32::MAX - 1;

/// Deepest stack an arithmetic expression may need (checked when
/// compiling).
pub(super) const MAX_ARITH_STACK: usize = 32;

/// A comparison of classic BPF: `A == k`, `A > k`, `A >= k`, `A & k != 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Gt,
    Ge,
    Set,
}

impl Cmp {
    #[inline]
    pub(super) fn test(self, a: u32, k: u32) -> bool {
        match self {
            Cmp::Eq => a == k,
            Cmp::Gt => a > k,
            Cmp::Ge => a >= k,
            Cmp::Set => a & k != 0,
        }
    }
}

/// A load from the frame, as classic BPF does it: `size` (1, 2 or 4)
/// bytes, big-endian, at `index + k`, where `index` is 0 for a fixed
/// field. With `iphdr`, the IPv4 header length `4 * (frame[iphdr] & 0xf)`
/// is added first (BPF's `ldx 4*([k]&0xf)`). With `shifted`, `k` and
/// `iphdr` move by the VLAN tags the packet parser looked through (the
/// lenient mode); otherwise they are absolute. A load that does not fit
/// in the frame rejects the packet, as in BPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Load {
    pub k: u32,
    pub size: u8,
    pub shifted: bool,
    pub iphdr: Option<u32>,
}

impl Load {
    #[inline]
    fn read(&self, p: &Packet<'_>, index: u32) -> Option<u32> {
        let f = p.frame;
        if !self.shifted && self.iphdr.is_none() && index == 0 {
            // The common case: a field at a fixed offset.
            let at = self.k as usize;
            return match self.size {
                1 => f.get(at).map(|&b| u32::from(b)),
                2 => f
                    .get(at..at + 2)
                    .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
                _ => f
                    .get(at..at + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            };
        }
        let shift = if self.shifted {
            (p.l3_offset() - ETH_HEADER_LEN) as u64
        } else {
            0
        };
        let mut x = index;
        if let Some(m) = self.iphdr {
            let b = *f.get(usize::try_from(u64::from(m) + shift).ok()?)?;
            x = x.wrapping_add(u32::from(b & 0x0f) << 2);
        }
        let at = u64::from(x) + u64::from(self.k) + shift;
        let end = at + u64::from(self.size);
        if end > f.len() as u64 {
            return None;
        }
        let at = at as usize;
        Some(match self.size {
            1 => u32::from(f[at]),
            2 => u32::from(u16::from_be_bytes([f[at], f[at + 1]])),
            _ => u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]),
        })
    }
}

/// What a field test reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Src {
    Frame(Load),
    /// The frame length (BPF's `len`).
    Len,
}

/// `(src & mask) cmp k`: one classic BPF load, `and` and jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    pub src: Src,
    pub mask: u32,
    pub cmp: Cmp,
    pub k: u32,
}

/// An ALU operation of classic BPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alu {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Lsh,
    Rsh,
}

/// One step of an arithmetic expression in postfix order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AOp {
    Imm(u32),
    Len,
    /// Pops the index, pushes the loaded value.
    Load(Load),
    Bin(Alu),
    Neg,
}

/// `lhs cmp rhs` over two arithmetic expressions: `code[start..mid]` and
/// `code[mid..end]` of the filter's arithmetic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rel {
    pub start: u32,
    pub mid: u32,
    pub end: u32,
    pub cmp: Cmp,
}

/// Evaluates one arithmetic expression; `None` when a load is outside the
/// frame or a division by zero happens (BPF rejects the packet).
fn arith(code: &[AOp], p: &Packet<'_>) -> Option<u32> {
    let mut stack = [0u32; MAX_ARITH_STACK];
    let mut sp = 0usize;
    for op in code {
        match *op {
            AOp::Imm(k) => {
                *stack.get_mut(sp)? = k;
                sp += 1;
            }
            AOp::Len => {
                *stack.get_mut(sp)? = u32::try_from(p.frame.len()).unwrap_or(u32::MAX);
                sp += 1;
            }
            AOp::Load(l) => {
                let idx = stack.get_mut(sp.checked_sub(1)?)?;
                *idx = l.read(p, *idx)?;
            }
            AOp::Neg => {
                let a = stack.get_mut(sp.checked_sub(1)?)?;
                *a = a.wrapping_neg();
            }
            AOp::Bin(alu) => {
                sp = sp.checked_sub(1)?;
                let x = *stack.get(sp)?;
                let a = stack.get_mut(sp.checked_sub(1)?)?;
                *a = match alu {
                    Alu::Add => a.wrapping_add(x),
                    Alu::Sub => a.wrapping_sub(x),
                    Alu::Mul => a.wrapping_mul(x),
                    Alu::Div => a.checked_div(x)?,
                    Alu::Mod => a.checked_rem(x)?,
                    Alu::And => *a & x,
                    Alu::Or => *a | x,
                    Alu::Xor => *a ^ x,
                    Alu::Lsh => a.checked_shl(x).unwrap_or(0),
                    Alu::Rsh => a.checked_shr(x).unwrap_or(0),
                };
            }
        }
    }
    (sp == 1).then_some(stack[0])
}

/// One test of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Test {
    /// A primitive over the parsed packet (the lenient mode).
    Prim(Prim),
    /// A field of the frame at a fixed place (libpcap's code).
    Field(Field),
    /// A comparison of two arithmetic expressions.
    Rel(Rel),
}

impl Test {
    /// `None`: the packet is rejected outright (a load beyond the frame).
    #[inline]
    fn eval(&self, p: &Packet<'_>, code: &[AOp]) -> Option<bool> {
        match self {
            Test::Prim(prim) => Some(prim.matches(p)),
            Test::Field(f) => {
                let a = match f.src {
                    Src::Frame(l) => l.read(p, 0)?,
                    Src::Len => u32::try_from(p.frame.len()).unwrap_or(u32::MAX),
                };
                Some(f.cmp.test(a & f.mask, f.k))
            }
            Test::Rel(r) => {
                let lhs = arith(code.get(r.start as usize..r.mid as usize)?, p)?;
                let rhs = arith(code.get(r.mid as usize..r.end as usize)?, p)?;
                Some(r.cmp.test(lhs, rhs))
            }
        }
    }
}

/// Test `test`; go to `on_true` or `on_false`. The code generator only
/// ever jumps to instructions it emitted earlier (lower indices) or to
/// ACCEPT/REJECT, so every run ends within `insns.len()` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    pub test: Test,
    pub on_true: u32,
    pub on_false: u32,
}

/// Runs the program from `entry`.
pub(super) fn run(insns: &[Insn], code: &[AOp], entry: u32, p: &Packet<'_>) -> bool {
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
        let outcome = match &insn.test {
            // The libpcap mode's common case first.
            Test::Field(f) => match f.src {
                Src::Frame(l) => l.read(p, 0).map(|a| f.cmp.test(a & f.mask, f.k)),
                Src::Len => insn.test.eval(p, code),
            },
            other => other.eval(p, code),
        };
        pc = match outcome {
            Some(true) => insn.on_true,
            Some(false) => insn.on_false,
            None => return false,
        };
    }
}
