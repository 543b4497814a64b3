//! Recursive-descent parser for the pcap-filter grammar (the subset
//! described in the module doc of [`super`]), and the code generator that
//! turns its tree into the flat program of [`super::eval`].
//!
//! Grammar, as tcpdump has it: `and` and `or` have the same precedence and
//! associate to the left; `not` binds tighter than both.
//!
//! ```text
//! expr      := term (("and" | "or") term)*
//! term      := "not"* atom
//! atom      := "(" expr ")" | arith relop arith | primitive | id
//!                                     -- a bare id reuses the previous qualifiers
//! primitive := [proto] [dir] [kind] id [("/" len) | ("mask" netmask)]
//!            | proto                                -- ip, tcp, ...
//!            | [proto] "proto" id | "vlan" [id] | ("less" | "greater") id
//!            | [proto] ("broadcast" | "multicast")
//! arith     := number | "len" | proto "[" arith [":" size] "]" | "(" arith ")"
//!            | "-" arith | arith op arith
//! ```
//!
//! In the libpcap mode every primitive becomes the tree of field tests
//! libpcap's `gencode.c` generates for Ethernet (DLT_EN10MB), with its
//! offsets, evaluated left to right with short circuits like its
//! unoptimized BPF program, so a load beyond the frame rejects the packet
//! exactly when libpcap's does. `vlan` moves the offsets of everything
//! parsed after it by 4 bytes, as in libpcap. In the lenient mode the
//! primitives are tests over the parsed [`crate::packet::Packet`] instead
//! (see the module doc of [`super`]).
//!
//! Recursion happens only for parentheses (boolean and arithmetic), bounded
//! by [`MAX_NESTING`]; long `and`/`or` chains and runs of `not` are parsed
//! in loops, and the code generator walks the tree with an explicit stack,
//! so no expression can overflow the stack.

use std::net::Ipv6Addr;

use super::eval::{
    AOp, Alu, Cmp, Dir, Field, Insn, IpVersion, Load, PortProto, Prim, Rel, Src, Test, V4Layers,
    ACCEPT, MAX_ARITH_STACK, REJECT,
};
use super::lexer::{lex, TokKind, Token};
use super::{Error, Mode};
use crate::packet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_RARP, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

/// Deepest nesting of parentheses accepted.
pub(super) const MAX_NESTING: usize = 100;
const MAX_VLAN_ID: u64 = 4095;
/// Most `vlan` primitives in one expression (each moves the offsets by 4).
const MAX_VLANS: u32 = 64;

const ETHERMTU: u32 = 1500;
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_IGRP: u8 = 9;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_PIM: u8 = 103;
const IPPROTO_VRRP: u8 = 112;
const IPPROTO_FRAGMENT: u32 = 44;

/// A compiled program: instructions, arithmetic code, entry point.
pub(super) type Program = (Vec<Insn>, Vec<AOp>, u32);

/// Compiles `src` (not blank) into a program.
pub(super) fn compile(src: &str, mode: Mode) -> Result<Program, Error> {
    let tokens = lex(src)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end_col: src.chars().count() + 1,
        nodes: Vec::new(),
        code: Vec::new(),
        last: None,
        depth: 0,
        mode,
        shift: 0,
        vlans: 0,
    };
    let root = parser.expr(None)?;
    if let Some(t) = parser.peek() {
        // `expr` stops only at the end or at a ')'.
        return Err(Error::new(t.col, "unmatched ')'".into()));
    }
    let (mut insns, entry) = codegen(&parser.nodes, root)?;
    thread_jumps(&mut insns, entry);
    Ok((insns, parser.code, entry))
}

/// Protocol qualifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtoQ {
    Ether,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
}

impl ProtoQ {
    const ALL: [ProtoQ; 17] = [
        ProtoQ::Ether,
        ProtoQ::Ip,
        ProtoQ::Ip6,
        ProtoQ::Arp,
        ProtoQ::Rarp,
        ProtoQ::Tcp,
        ProtoQ::Udp,
        ProtoQ::Sctp,
        ProtoQ::Icmp,
        ProtoQ::Icmp6,
        ProtoQ::Igmp,
        ProtoQ::Igrp,
        ProtoQ::Pim,
        ProtoQ::Vrrp,
        ProtoQ::Carp,
        ProtoQ::Ah,
        ProtoQ::Esp,
    ];

    fn name(self) -> &'static str {
        match self {
            ProtoQ::Ether => "ether",
            ProtoQ::Ip => "ip",
            ProtoQ::Ip6 => "ip6",
            ProtoQ::Arp => "arp",
            ProtoQ::Rarp => "rarp",
            ProtoQ::Tcp => "tcp",
            ProtoQ::Udp => "udp",
            ProtoQ::Sctp => "sctp",
            ProtoQ::Icmp => "icmp",
            ProtoQ::Icmp6 => "icmp6",
            ProtoQ::Igmp => "igmp",
            ProtoQ::Igrp => "igrp",
            ProtoQ::Pim => "pim",
            ProtoQ::Vrrp => "vrrp",
            ProtoQ::Carp => "carp",
            ProtoQ::Ah => "ah",
            ProtoQ::Esp => "esp",
        }
    }

    fn of(t: &Token<'_>) -> Option<ProtoQ> {
        if t.is_word("link") {
            return Some(ProtoQ::Ether);
        }
        ProtoQ::ALL.into_iter().find(|q| t.is_word(q.name()))
    }

    fn transport(self) -> Option<u8> {
        match self {
            ProtoQ::Tcp => Some(IPPROTO_TCP),
            ProtoQ::Udp => Some(IPPROTO_UDP),
            ProtoQ::Sctp => Some(IPPROTO_SCTP),
            _ => None,
        }
    }

    /// The IP protocol of an abbreviation over IP, and whether it is
    /// IPv4 only (libpcap's `gen_proto_abbrev`).
    fn ip_abbrev(self) -> Option<(u8, IpVersion)> {
        Some(match self {
            ProtoQ::Tcp => (IPPROTO_TCP, IpVersion::Any),
            ProtoQ::Udp => (IPPROTO_UDP, IpVersion::Any),
            ProtoQ::Sctp => (IPPROTO_SCTP, IpVersion::Any),
            ProtoQ::Icmp => (IPPROTO_ICMP, IpVersion::V4),
            ProtoQ::Icmp6 => (IPPROTO_ICMPV6, IpVersion::V6),
            ProtoQ::Igmp => (IPPROTO_IGMP, IpVersion::V4),
            ProtoQ::Igrp => (IPPROTO_IGRP, IpVersion::V4),
            ProtoQ::Pim => (IPPROTO_PIM, IpVersion::Any),
            ProtoQ::Vrrp | ProtoQ::Carp => (IPPROTO_VRRP, IpVersion::V4),
            ProtoQ::Ah => (IPPROTO_AH, IpVersion::Any),
            ProtoQ::Esp => (IPPROTO_ESP, IpVersion::Any),
            _ => return None,
        })
    }
}

/// Address/port kinds (libpcap's "type" qualifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    Portrange,
    Proto,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Host,
        Kind::Net,
        Kind::Port,
        Kind::Portrange,
        Kind::Proto,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Net => "net",
            Kind::Port => "port",
            Kind::Portrange => "portrange",
            Kind::Proto => "proto",
        }
    }

    fn of(t: &Token<'_>) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| t.is_word(k.name()))
    }
}

/// The qualifiers of a primitive, kept so that a bare id after `and`/`or`
/// reuses them (`port 80 or 443`).
#[derive(Debug, Clone, Copy)]
struct Quals {
    proto: Option<ProtoQ>,
    proto_col: usize,
    dir: Option<Dir>,
    dir_col: usize,
    kind: Kind,
    /// The kind was written (not implied by a direction).
    kind_given: bool,
}

/// Keywords other than the qualifiers; none can be an id.
const OTHER_KEYWORDS: [&str; 8] = [
    "src",
    "dst",
    "vlan",
    "less",
    "greater",
    "broadcast",
    "multicast",
    "len",
];

/// pcap-filter keywords this implementation rejects, with a hint.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("gateway", "it needs host name resolution"),
    (
        "protochain",
        "it walks header chains with a backward loop; use 'proto N'",
    ),
    ("mpls", "not supported"),
    ("pppoes", "not supported"),
    ("pppoed", "not supported"),
    ("geneve", "not supported"),
    ("inbound", "a mirror port has no direction"),
    ("outbound", "a mirror port has no direction"),
    ("ifindex", "not a link-layer field of Ethernet"),
    ("ifname", "pflog only"),
    ("on", "pflog only"),
    ("rnr", "pflog only"),
    ("rulenum", "pflog only"),
    ("reason", "pflog only"),
    ("rset", "pflog only"),
    ("ruleset", "pflog only"),
    ("srnr", "pflog only"),
    ("subrulenum", "pflog only"),
    ("action", "pflog only"),
    ("ppp", "not Ethernet"),
    ("slip", "not Ethernet"),
    ("fddi", "not Ethernet"),
    ("tr", "not Ethernet"),
    ("wlan", "802.11 only"),
    ("radio", "802.11 only"),
    ("type", "802.11 only"),
    ("subtype", "802.11 only"),
    ("dir", "802.11 only"),
    ("ra", "802.11 only"),
    ("ta", "802.11 only"),
    ("addr1", "802.11 only"),
    ("addr2", "802.11 only"),
    ("addr3", "802.11 only"),
    ("addr4", "802.11 only"),
    ("llc", "LLC frames are not supported"),
    ("stp", "LLC frames are not supported"),
    ("ipx", "LLC frames are not supported"),
    ("netbeui", "LLC frames are not supported"),
    ("iso", "LLC frames are not supported"),
    ("clnp", "LLC frames are not supported"),
    ("esis", "LLC frames are not supported"),
    ("isis", "LLC frames are not supported"),
    ("atalk", "use 'ether proto 0x809b'"),
    ("aarp", "use 'ether proto 0x80f3'"),
    ("decnet", "use 'ether proto 0x6003'"),
    ("lat", "use 'ether proto 0x6004'"),
    ("sca", "use 'ether proto 0x6007'"),
    ("moprc", "use 'ether proto 0x6002'"),
    ("mopdl", "use 'ether proto 0x6001'"),
    ("byte", "use 'ether[N] = V'"),
];

fn is_keyword(t: &Token<'_>) -> bool {
    t.kind == TokKind::Word
        && (ProtoQ::of(t).is_some()
            || Kind::of(t).is_some()
            || t.is_word("mask")
            || OTHER_KEYWORDS.iter().any(|k| t.is_word(k))
            || UNSUPPORTED.iter().any(|(k, _)| t.is_word(k)))
}

/// A word that reads like a keyword (or a host name) rather than a number
/// or an address: a letter, then letters, digits, '-' or '_'.
fn looks_like_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// How a token is quoted in messages.
fn describe(t: Option<Token<'_>>) -> String {
    match t {
        None => "end of expression".into(),
        Some(t) if is_keyword(&t) => format!("keyword '{}'", t.text),
        Some(t) => format!("'{}'", t.text),
    }
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Test(Test),
    And(usize, usize),
    Or(usize, usize),
    Not(usize),
}

/// An arithmetic expression being parsed: its postfix code, the
/// protocol checks its loads need (libpcap's `inst->b`), and its column.
#[derive(Debug, Clone)]
struct Arith {
    code: Vec<AOp>,
    guard: Option<usize>,
    col: usize,
}

impl Arith {
    fn imm(k: u32, col: usize) -> Arith {
        Arith {
            code: vec![AOp::Imm(k)],
            guard: None,
            col,
        }
    }

    /// The constant that starts the code (libpcap checks the first
    /// statement of the right operand for division by zero and big shifts).
    fn first_imm(&self) -> Option<u32> {
        match self.code.first() {
            Some(AOp::Imm(k)) => Some(*k),
            _ => None,
        }
    }
}

/// Stack depth an arithmetic code needs.
fn stack_depth(code: &[AOp]) -> usize {
    let (mut sp, mut max) = (0usize, 0usize);
    for op in code {
        match op {
            AOp::Imm(_) | AOp::Len => sp += 1,
            AOp::Bin(_) => sp = sp.saturating_sub(1),
            AOp::Load(_) | AOp::Neg => {}
        }
        max = max.max(sp);
    }
    max
}

struct Parser<'s> {
    tokens: Vec<Token<'s>>,
    pos: usize,
    /// One past the last character: where "end of expression" points.
    end_col: usize,
    nodes: Vec<Node>,
    /// Arithmetic code of the relations.
    code: Vec<AOp>,
    /// Qualifiers of the last address/port primitive, for bare ids.
    last: Option<Quals>,
    /// Open parentheses.
    depth: usize,
    mode: Mode,
    /// libpcap mode: bytes added to the link-layer payload and ethertype
    /// offsets by the `vlan` primitives parsed so far (4 each).
    shift: u32,
    vlans: u32,
}

/// Node builders: libpcap's `gen_*` for Ethernet.
impl Parser<'_> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn test(&mut self, test: Test) -> usize {
        self.push(Node::Test(test))
    }

    fn prim(&mut self, prim: Prim) -> usize {
        self.test(Test::Prim(prim))
    }

    fn lenient(&self) -> bool {
        self.mode == Mode::Lenient
    }

    /// `a` then `b`, both true (libpcap's `gen_and(a, b)`).
    fn and(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::And(a, b))
    }

    /// `a` or else `b` (libpcap's `gen_or(a, b)`: `a` is tested first).
    fn or(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Or(a, b))
    }

    fn not(&mut self, a: usize) -> usize {
        self.push(Node::Not(a))
    }

    /// Offset of the ethertype (OR_LINKTYPE).
    fn lt(&self) -> u32 {
        12 + self.shift
    }

    /// Offset of the link-layer payload (OR_LINKPL).
    fn pl(&self) -> u32 {
        14 + self.shift
    }

    fn at(&self, k: u32, size: u8) -> Load {
        Load {
            k,
            size,
            shifted: self.lenient(),
            iphdr: None,
        }
    }

    /// `(frame[k:size] & mask) cmp v`.
    fn ncmp(&mut self, k: u32, size: u8, mask: u32, cmp: Cmp, v: u32) -> usize {
        let load = self.at(k, size);
        self.test(Test::Field(Field {
            src: Src::Frame(load),
            mask,
            cmp,
            k: v,
        }))
    }

    fn cmp(&mut self, k: u32, size: u8, v: u32) -> usize {
        self.ncmp(k, size, u32::MAX, Cmp::Eq, v)
    }

    /// A field of the transport header after an IPv4 header of any length
    /// (OR_TRAN_IPV4).
    fn tran4(&mut self, off: u32, cmp: Cmp, v: u32) -> usize {
        let pl = self.pl();
        let load = Load {
            k: pl + off,
            size: 2,
            shifted: self.lenient(),
            iphdr: Some(pl),
        };
        self.test(Test::Field(Field {
            src: Src::Frame(load),
            mask: u32::MAX,
            cmp,
            k: v,
        }))
    }

    /// Bytes `v` at `k` (libpcap's `gen_bcmp`: words from the end, then a
    /// half word, then a byte).
    fn bcmp(&mut self, k: u32, v: &[u8]) -> usize {
        let mut size = v.len();
        let mut b: Option<usize> = None;
        let mut chain = |this: &mut Self, t: usize| match b {
            Some(prev) => b = Some(this.and(prev, t)),
            None => b = Some(t),
        };
        while size >= 4 {
            let w = u32::from_be_bytes([v[size - 4], v[size - 3], v[size - 2], v[size - 1]]);
            let t = self.cmp(k + size as u32 - 4, 4, w);
            chain(self, t);
            size -= 4;
        }
        while size >= 2 {
            let h = u32::from(u16::from_be_bytes([v[size - 2], v[size - 1]]));
            let t = self.cmp(k + size as u32 - 2, 2, h);
            chain(self, t);
            size -= 2;
        }
        if size > 0 {
            let t = self.cmp(k, 1, u32::from(v[0]));
            chain(self, t);
        }
        b.unwrap_or_else(|| self.cmp(0, 1, 0))
    }

    /// `frame[lt] <= 1500` (an 802.3 length, so an LLC frame).
    fn is_llc(&mut self) -> usize {
        let lt = self.lt();
        let gt = self.ncmp(lt, 2, u32::MAX, Cmp::Gt, ETHERMTU);
        self.not(gt)
    }

    fn snap(&mut self, org: u32, ptype: u32) -> usize {
        let pl = self.pl();
        let v = [
            0xaa,
            0xaa,
            0x03,
            (org >> 16) as u8,
            (org >> 8) as u8,
            org as u8,
            (ptype >> 8) as u8,
            ptype as u8,
        ];
        self.bcmp(pl, &v)
    }

    /// libpcap's `gen_linktype` for Ethernet (`ether proto v`).
    fn linktype(&mut self, v: u32) -> usize {
        let common = [
            ETHERTYPE_IPV4,
            ETHERTYPE_IPV6,
            ETHERTYPE_ARP,
            ETHERTYPE_RARP,
        ];
        if self.lenient() && common.iter().any(|&t| u32::from(t) == v) {
            return self.prim(Prim::EtherType(v as u16));
        }
        let (lt, pl) = (self.lt(), self.pl());
        match v {
            0xfe | 0x06 | 0xf0 => {
                let b0 = self.is_llc();
                let b1 = self.cmp(pl, 2, (v << 8) | v);
                self.and(b0, b1)
            }
            0xe0 => {
                let b0 = self.cmp(pl, 1, 0xe0);
                let b1 = self.cmp(pl, 2, 0xffff);
                let b1 = self.or(b0, b1);
                let b0 = self.snap(0, 0x8137);
                let b1 = self.or(b0, b1);
                let b0 = self.is_llc();
                let b1 = self.and(b0, b1);
                let b0 = self.cmp(lt, 2, 0x8137);
                self.or(b0, b1)
            }
            0x809b | 0x80f3 => {
                let b0 = self.is_llc();
                let org = if v == 0x809b { 0x080007 } else { 0 };
                let b1 = self.snap(org, v);
                let b1 = self.and(b0, b1);
                let b0 = self.cmp(lt, 2, v);
                self.or(b0, b1)
            }
            v if v <= ETHERMTU => {
                let b0 = self.is_llc();
                let b1 = self.cmp(lt + 2, 1, v);
                self.and(b0, b1)
            }
            v => self.cmp(lt, 2, v),
        }
    }

    /// libpcap's `gen_ipfrag`: not a later fragment (offset 0).
    fn ipfrag(&mut self) -> usize {
        let pl = self.pl();
        let t = self.ncmp(pl + 6, 2, u32::MAX, Cmp::Set, 0x1fff);
        self.not(t)
    }

    /// `ip proto v` / `ip6 proto v` / `proto v` (libpcap's `gen_proto`).
    fn ip_proto(&mut self, v: u8, version: IpVersion) -> usize {
        if self.lenient() {
            return self.prim(Prim::IpProto { version, proto: v });
        }
        let pl = self.pl();
        let v = u32::from(v);
        match version {
            IpVersion::V4 => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.cmp(pl + 9, 1, v);
                self.and(b0, b1)
            }
            IpVersion::V6 => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV6));
                let b2 = self.cmp(pl + 6, 1, IPPROTO_FRAGMENT);
                let b1 = self.cmp(pl + 40, 1, v);
                let b1 = self.and(b2, b1);
                let b2 = self.cmp(pl + 6, 1, v);
                let b1 = self.or(b2, b1);
                self.and(b0, b1)
            }
            IpVersion::Any => {
                let b0 = self.ip_proto(v as u8, IpVersion::V4);
                let b1 = self.ip_proto(v as u8, IpVersion::V6);
                self.or(b0, b1)
            }
        }
    }

    /// A protocol alone (libpcap's `gen_proto_abbrev`).
    fn proto_abbrev(&mut self, pq: ProtoQ) -> usize {
        match pq {
            ProtoQ::Ip => self.linktype(u32::from(ETHERTYPE_IPV4)),
            ProtoQ::Ip6 => self.linktype(u32::from(ETHERTYPE_IPV6)),
            ProtoQ::Arp => self.linktype(u32::from(ETHERTYPE_ARP)),
            ProtoQ::Rarp => self.linktype(u32::from(ETHERTYPE_RARP)),
            _ => {
                let (v, version) = pq.ip_abbrev().unwrap_or((0, IpVersion::Any));
                self.ip_proto(v, version)
            }
        }
    }

    /// libpcap's `gen_hostop`: IPv4 address `addr/mask` at `src_off` /
    /// `dst_off` of a payload of ethertype `ethertype`.
    fn hostop(
        &mut self,
        addr: u32,
        mask: u32,
        dir: Dir,
        ethertype: u16,
        offs: (u32, u32),
    ) -> usize {
        let one = |this: &mut Self, off: u32| {
            let b0 = this.linktype(u32::from(ethertype));
            let pl = this.pl();
            let b1 = this.ncmp(pl + off, 4, mask, Cmp::Eq, addr);
            this.and(b0, b1)
        };
        match dir {
            Dir::Src => one(self, offs.0),
            Dir::Dst => one(self, offs.1),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = one(self, offs.0);
                let b1 = one(self, offs.1);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// libpcap's `gen_hostop6`.
    fn hostop6(&mut self, addr: u128, mask: u128, dir: Dir) -> usize {
        let one = |this: &mut Self, off: u32| {
            let pl = this.pl();
            let word = |x: u128, i: u32| (x >> (96 - 32 * i)) as u32;
            let mut b1 = this.ncmp(pl + off + 12, 4, word(mask, 3), Cmp::Eq, word(addr, 3));
            for i in (0..3).rev() {
                let b0 = this.ncmp(pl + off + 4 * i, 4, word(mask, i), Cmp::Eq, word(addr, i));
                b1 = this.and(b0, b1);
            }
            let b0 = this.linktype(u32::from(ETHERTYPE_IPV6));
            this.and(b0, b1)
        };
        match dir {
            Dir::Src => one(self, 8),
            Dir::Dst => one(self, 24),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = one(self, 8);
                let b1 = one(self, 24);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// libpcap's `gen_ehostop`.
    fn ehostop(&mut self, mac: [u8; 6], dir: Dir) -> usize {
        match dir {
            Dir::Src => self.bcmp_abs(6, &mac),
            Dir::Dst => self.bcmp_abs(0, &mac),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = self.bcmp_abs(6, &mac);
                let b1 = self.bcmp_abs(0, &mac);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// `bcmp` on the link header: never moved by VLAN tags.
    fn bcmp_abs(&mut self, k: u32, v: &[u8]) -> usize {
        let mode = self.mode;
        self.mode = Mode::Libpcap;
        let b = self.bcmp(k, v);
        self.mode = mode;
        b
    }

    /// libpcap's `gen_port` + `gen_port6` (and the range versions): the
    /// IPv6 test first, then IPv4. `proto` None: TCP, UDP or SCTP.
    fn port(&mut self, lo: u16, hi: u16, proto: Option<u8>, dir: Dir) -> usize {
        let (lo, hi) = (u32::from(lo.min(hi)), u32::from(lo.max(hi)));
        let range = lo != hi;
        let pl = self.pl();
        // One port field: `== lo`, or `>= lo and <= hi`.
        let atom = |this: &mut Self, v6: bool, off: u32| {
            let t = |this: &mut Self, cmp: Cmp, v: u32| {
                if v6 {
                    this.ncmp(pl + 40 + off, 2, u32::MAX, cmp, v)
                } else {
                    this.tran4(off, cmp, v)
                }
            };
            if range {
                let b1 = t(this, Cmp::Ge, lo);
                let gt = t(this, Cmp::Gt, hi);
                let b2 = this.not(gt);
                this.and(b1, b2)
            } else {
                t(this, Cmp::Eq, lo)
            }
        };
        let dirs = |this: &mut Self, v6: bool| match dir {
            Dir::Src => atom(this, v6, 0),
            Dir::Dst => atom(this, v6, 2),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let a = atom(this, v6, 0);
                let b = atom(this, v6, 2);
                if dir == Dir::SrcOrDst {
                    this.or(a, b)
                } else {
                    this.and(a, b)
                }
            }
        };
        let op = |this: &mut Self, v6: bool, p: u8| {
            let b0 = if v6 {
                this.cmp(pl + 6, 1, u32::from(p))
            } else {
                let tmp = this.cmp(pl + 9, 1, u32::from(p));
                let frag = this.ipfrag();
                this.and(tmp, frag)
            };
            let b1 = dirs(this, v6);
            this.and(b0, b1)
        };
        let family = |this: &mut Self, v6: bool| {
            let b0 = this.linktype(u32::from(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 }));
            let b1 = match proto {
                Some(p) => op(this, v6, p),
                None => {
                    let tcp = op(this, v6, IPPROTO_TCP);
                    let udp = op(this, v6, IPPROTO_UDP);
                    let b1 = this.or(tcp, udp);
                    let sctp = op(this, v6, IPPROTO_SCTP);
                    this.or(sctp, b1)
                }
            };
            this.and(b0, b1)
        };
        let v6 = family(self, true);
        let v4 = family(self, false);
        self.or(v6, v4)
    }

    /// `[proto] host/net` for IPv4 (libpcap's `gen_host`).
    fn host4(&mut self, addr: u32, mask: u32, proto: Option<ProtoQ>, dir: Dir) -> usize {
        let ip = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_IPV4, (12, 16));
        let arp = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_ARP, (14, 24));
        let rarp = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_RARP, (14, 24));
        match proto {
            Some(ProtoQ::Ip) => ip(self),
            Some(ProtoQ::Arp) => arp(self),
            Some(ProtoQ::Rarp) => rarp(self),
            _ => {
                let b0 = ip(self);
                let b1 = arp(self);
                let b1 = self.or(b0, b1);
                let b0 = rarp(self);
                self.or(b1, b0)
            }
        }
    }

    /// `vlan [id]` in the libpcap mode: the TPID test, the ID test, then
    /// every later offset moves by one tag.
    fn vlan(&mut self, id: Option<u16>, col: usize) -> Result<usize, Error> {
        if self.vlans >= MAX_VLANS {
            return Err(Error::new(
                col,
                format!("more than {MAX_VLANS} 'vlan' primitives"),
            ));
        }
        let b0 = self.linktype(0x8100);
        let b1 = self.linktype(0x88a8);
        let b0 = self.or(b0, b1);
        let b1 = self.linktype(0x9100);
        let mut b = self.or(b0, b1);
        if let Some(id) = id {
            let pl = self.pl();
            let vid = self.ncmp(pl, 2, 0x0fff, Cmp::Eq, u32::from(id));
            b = self.and(b, vid);
        }
        self.shift += 4;
        self.vlans += 1;
        Ok(b)
    }
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Option<Token<'s>> {
        self.tokens.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<Token<'s>> {
        self.tokens.get(self.pos + ahead).copied()
    }

    fn col_of(&self, t: Option<Token<'_>>) -> usize {
        t.map_or(self.end_col, |t| t.col)
    }

    /// `after` is the token before the expression ('(' or none), for
    /// messages.
    fn expr(&mut self, after: Option<Token<'s>>) -> Result<usize, Error> {
        let mut lhs = self.term(after)?;
        while let Some(t) = self.peek() {
            let node = match t.kind {
                TokKind::And | TokKind::Or => {
                    self.pos += 1;
                    let rhs = self.term(Some(t))?;
                    if t.kind == TokKind::And {
                        Node::And(lhs, rhs)
                    } else {
                        Node::Or(lhs, rhs)
                    }
                }
                TokKind::RParen => break,
                _ => {
                    let ops = if self.depth > 0 {
                        "'and', 'or' or ')'"
                    } else {
                        "'and' or 'or'"
                    };
                    return Err(Error::new(
                        t.col,
                        format!("expected {ops} before {}", describe(Some(t))),
                    ));
                }
            };
            lhs = self.push(node);
        }
        Ok(lhs)
    }

    fn term(&mut self, mut after: Option<Token<'s>>) -> Result<usize, Error> {
        // Runs of `not` collapse to their parity.
        let mut negate = false;
        while let Some(t) = self.peek().filter(|t| t.kind == TokKind::Not) {
            self.pos += 1;
            negate = !negate;
            after = Some(t);
        }
        let atom = self.atom(after)?;
        Ok(if negate {
            self.push(Node::Not(atom))
        } else {
            atom
        })
    }

    /// Whether `t` can start an arithmetic expression.
    fn starts_arith(&self, t: Token<'_>) -> bool {
        match t.kind {
            TokKind::LParen | TokKind::Minus => true,
            TokKind::Word => {
                t.is_word("len")
                    || (!t.escaped && named_constant(t.text).is_some())
                    || (!t.escaped && !matches!(parse_number(t.text), Ok(None)))
                    || (ProtoQ::of(&t).is_some()
                        && self.peek_at(1).is_some_and(|n| n.kind == TokKind::LBracket))
            }
            _ => false,
        }
    }

    /// `arith relop arith`, if the tokens at the cursor are one. `Ok(None)`
    /// (cursor unmoved) when they are not: a '(' that opens a boolean
    /// expression, a bare number that is an id (`port 80 or 443`).
    fn try_relation(&mut self) -> Result<Option<usize>, Error> {
        let start = self.pos;
        let depth = self.depth;
        let lhs = match self.arith(0) {
            Ok(a) => a,
            Err(e) => {
                // Committed once a '[' or `len` was read, unless a '('
                // came first: `(ip[9] = 6)` is a parenthesized relation,
                // parsed again as a boolean expression.
                let committed = self.tokens[start].kind != TokKind::LParen
                    && self.tokens[start..self.pos.max(start)]
                        .iter()
                        .any(|t| t.kind == TokKind::LBracket || t.is_word("len"));
                if committed {
                    return Err(e);
                }
                self.pos = start;
                self.depth = depth;
                return Ok(None);
            }
        };
        let Some(op) = self.peek() else {
            return self.not_a_relation(start, &lhs);
        };
        let (cmp, negate) = match op.kind {
            TokKind::Gt => (Cmp::Gt, false),
            TokKind::Ge => (Cmp::Ge, false),
            TokKind::Eq => (Cmp::Eq, false),
            TokKind::Le => (Cmp::Gt, true),
            TokKind::Lt => (Cmp::Ge, true),
            TokKind::Ne => (Cmp::Eq, true),
            _ => return self.not_a_relation(start, &lhs),
        };
        self.pos += 1;
        let rhs = self.arith(0)?;
        for a in [&lhs, &rhs] {
            if stack_depth(&a.code) > MAX_ARITH_STACK {
                return Err(Error::new(a.col, "arithmetic expression too deep".into()));
            }
        }
        let rel_start = self.code.len();
        self.code.extend_from_slice(&lhs.code);
        let mid = self.code.len();
        self.code.extend_from_slice(&rhs.code);
        let end = self.code.len();
        let too_long = |_| Error::new(1, "expression too long".into());
        let rel = Rel {
            start: u32::try_from(rel_start).map_err(too_long)?,
            mid: u32::try_from(mid).map_err(too_long)?,
            end: u32::try_from(end).map_err(too_long)?,
            cmp,
        };
        let mut b = self.test(Test::Rel(rel));
        if negate {
            b = self.not(b);
        }
        let guard = match (lhs.guard, rhs.guard) {
            (Some(a), Some(c)) => Some(self.and(a, c)),
            (a, c) => a.or(c),
        };
        if let Some(g) = guard {
            b = self.and(g, b);
        }
        self.last = None;
        Ok(Some(b))
    }

    fn not_a_relation(&mut self, start: usize, lhs: &Arith) -> Result<Option<usize>, Error> {
        let committed = self.tokens[start].kind != TokKind::LParen
            && self.tokens[start..self.pos]
                .iter()
                .any(|t| t.kind == TokKind::LBracket || t.is_word("len"));
        if committed {
            let found = self.peek();
            return Err(Error::new(
                self.col_of(found),
                format!(
                    "expected a comparison ('=', '!=', '<', '<=', '>', '>=') after the \
                     expression at column {}, found {}",
                    lhs.col,
                    describe(found)
                ),
            ));
        }
        self.pos = start;
        Ok(None)
    }

    /// Binary operators by precedence (libpcap's grammar): `|` < `&` <
    /// shifts < `+ -` < `* /`. `%` and `^` have no precedence there, so
    /// bison shifts: they take everything to their right (see `unary`).
    fn binop(t: Token<'_>) -> Option<(Alu, u8)> {
        Some(match t.kind {
            TokKind::Pipe => (Alu::Or, 1),
            TokKind::Amp => (Alu::And, 2),
            TokKind::Shl => (Alu::Lsh, 3),
            TokKind::Shr => (Alu::Rsh, 3),
            TokKind::Plus => (Alu::Add, 4),
            TokKind::Minus => (Alu::Sub, 4),
            TokKind::Star => (Alu::Mul, 5),
            TokKind::Slash => (Alu::Div, 5),
            _ => return None,
        })
    }

    fn arith(&mut self, min_prec: u8) -> Result<Arith, Error> {
        let mut lhs = self.unary()?;
        while let Some(t) = self.peek() {
            let Some((alu, prec)) = Self::binop(t).filter(|&(_, p)| p >= min_prec) else {
                break;
            };
            self.pos += 1;
            let rhs = self.arith(prec + 1)?;
            lhs = combine(lhs, alu, rhs, t)?;
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Arith, Error> {
        if let Some(t) = self.peek().filter(|t| t.kind == TokKind::Minus) {
            self.pos += 1;
            let mut a = self.unary()?;
            a.code.push(AOp::Neg);
            a.col = t.col;
            return Ok(a);
        }
        let a = self.primary()?;
        if let Some(t) = self
            .peek()
            .filter(|t| matches!(t.kind, TokKind::Percent | TokKind::Caret))
        {
            self.pos += 1;
            let rhs = self.arith(0)?;
            let alu = if t.kind == TokKind::Percent {
                Alu::Mod
            } else {
                Alu::Xor
            };
            return combine(a, alu, rhs, t);
        }
        Ok(a)
    }

    fn primary(&mut self) -> Result<Arith, Error> {
        let found = self.peek();
        let Some(t) = found else {
            return Err(Error::new(
                self.end_col,
                "expected a number, 'len' or 'proto[offset]', found end of expression".into(),
            ));
        };
        match t.kind {
            TokKind::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(Error::new(
                        t.col,
                        format!("parentheses nested more than {MAX_NESTING} deep"),
                    ));
                }
                self.pos += 1;
                self.depth += 1;
                let a = self.arith(0)?;
                self.depth -= 1;
                match self.peek() {
                    Some(c) if c.kind == TokKind::RParen => {
                        self.pos += 1;
                        Ok(a)
                    }
                    found => Err(Error::new(
                        self.col_of(found),
                        format!("expected ')' or an operator, found {}", describe(found)),
                    )),
                }
            }
            TokKind::Word if t.is_word("len") => {
                self.pos += 1;
                Ok(Arith {
                    code: vec![AOp::Len],
                    guard: None,
                    col: t.col,
                })
            }
            TokKind::Word if ProtoQ::of(&t).is_some() && !t.escaped => {
                let pq = ProtoQ::of(&t).unwrap_or(ProtoQ::Ether);
                match self.peek_at(1) {
                    Some(b) if b.kind == TokKind::LBracket => {}
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!("expected '[' after '{}', found {}", t.text, describe(found)),
                        ))
                    }
                }
                self.pos += 2;
                let index = self.arith(0)?;
                let mut size = 1u8;
                if let Some(c) = self.peek().filter(|c| c.kind == TokKind::Colon) {
                    self.pos += 1;
                    let n = self.peek();
                    size = match n.and_then(|n| parse_number(n.text).ok().flatten()) {
                        Some(1) => 1,
                        Some(2) => 2,
                        Some(4) => 4,
                        _ => {
                            return Err(Error::new(
                                self.col_of(n).max(c.col + 1),
                                "data size must be 1, 2, or 4".into(),
                            ))
                        }
                    };
                    self.pos += 1;
                }
                match self.peek() {
                    Some(c) if c.kind == TokKind::RBracket => self.pos += 1,
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!("expected ']' or ':size', found {}", describe(found)),
                        ))
                    }
                }
                self.load_at(pq, index, size, t.col)
            }
            TokKind::Word => {
                let v = if t.escaped {
                    None
                } else {
                    named_constant(t.text)
                };
                let v = match v {
                    Some(v) => v,
                    None => parse_number(t.text)
                        .map_err(|m| Error::new(t.col, m))?
                        .ok_or_else(|| {
                            Error::new(
                                t.col,
                                format!(
                                    "expected a number, 'len' or 'proto[offset]', found {}",
                                    describe(found)
                                ),
                            )
                        })?,
                };
                self.pos += 1;
                Ok(Arith::imm(v, t.col))
            }
            _ => Err(Error::new(
                t.col,
                format!(
                    "expected a number, 'len' or 'proto[offset]', found {}",
                    describe(found)
                ),
            )),
        }
    }

    /// `proto[index:size]` (libpcap's `gen_load`).
    fn load_at(&mut self, pq: ProtoQ, index: Arith, size: u8, col: usize) -> Result<Arith, Error> {
        let mut index = index;
        let pl = self.pl();
        let shifted = self.lenient();
        let (load, guard) = match pq {
            ProtoQ::Ether => (
                Load {
                    k: 0,
                    size,
                    shifted: false,
                    iphdr: None,
                },
                index.guard,
            ),
            ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp => {
                let b = self.proto_abbrev(pq);
                let guard = match index.guard {
                    Some(g) => self.and(g, b),
                    None => b,
                };
                (
                    Load {
                        k: pl,
                        size,
                        shifted,
                        iphdr: None,
                    },
                    Some(guard),
                )
            }
            ProtoQ::Icmp6 => {
                let b = self.proto_abbrev(ProtoQ::Ip6);
                let b = match index.guard {
                    Some(g) => self.and(g, b),
                    None => b,
                };
                let nh = self.cmp(pl + 6, 1, u32::from(IPPROTO_ICMPV6));
                let guard = self.and(b, nh);
                (
                    Load {
                        k: pl + 40,
                        size,
                        shifted,
                        iphdr: None,
                    },
                    Some(guard),
                )
            }
            ProtoQ::Ah | ProtoQ::Esp => {
                return Err(Error::new(
                    col,
                    format!("'{}[...]' is not supported by libpcap either", pq.name()),
                ))
            }
            _ => {
                let abbrev = self.proto_abbrev(pq);
                let frag = self.ipfrag();
                let mut b = self.and(abbrev, frag);
                if let Some(g) = index.guard {
                    b = self.and(g, b);
                }
                let ip = self.proto_abbrev(ProtoQ::Ip);
                let guard = self.and(ip, b);
                (
                    Load {
                        k: pl,
                        size,
                        shifted,
                        iphdr: Some(pl),
                    },
                    Some(guard),
                )
            }
        };
        index.code.push(AOp::Load(load));
        index.guard = guard;
        index.col = col;
        Ok(index)
    }

    fn atom(&mut self, after: Option<Token<'s>>) -> Result<usize, Error> {
        let found = self.peek();
        if let Some(t) = found.filter(|&t| self.starts_arith(t)) {
            let _ = t;
            if let Some(rel) = self.try_relation()? {
                return Ok(rel);
            }
        }
        match found {
            Some(t) if t.kind == TokKind::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(Error::new(
                        t.col,
                        format!("parentheses nested more than {MAX_NESTING} deep"),
                    ));
                }
                self.pos += 1;
                self.depth += 1;
                let inner = self.expr(Some(t))?;
                match self.peek() {
                    Some(close) if close.kind == TokKind::RParen => {
                        self.pos += 1;
                        self.depth -= 1;
                        Ok(inner)
                    }
                    _ => Err(Error::new(
                        t.col,
                        "unmatched '(': it is never closed".into(),
                    )),
                }
            }
            Some(t) if t.kind == TokKind::Word => self.primitive(t),
            _ => {
                let what = match after {
                    Some(a) => format!("expected a primitive after '{}'", a.text),
                    None => "expected a primitive".into(),
                };
                Err(Error::new(
                    self.col_of(found),
                    format!("{what}, found {}", describe(found)),
                ))
            }
        }
    }

    /// A number of the expression language: decimal, `0x` hexadecimal or
    /// `0` octal, as in libpcap.
    fn number(&self, t: Token<'_>, what: &str) -> Result<u32, Error> {
        match parse_number(t.text) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::new(t.col, format!("bad {what} '{}'", t.text))),
            Err(m) => Err(Error::new(t.col, m)),
        }
    }

    fn primitive(&mut self, t: Token<'s>) -> Result<usize, Error> {
        if ProtoQ::of(&t).is_some()
            || Kind::of(&t).is_some()
            || t.is_word("src")
            || t.is_word("dst")
        {
            return self.qualified();
        }
        if t.is_word("vlan") {
            self.pos += 1;
            self.last = None;
            let id = match self.peek() {
                Some(n) if n.kind == TokKind::Word && !is_keyword(&n) => {
                    self.pos += 1;
                    let id = self.number(n, "VLAN ID")?;
                    if u64::from(id) > MAX_VLAN_ID {
                        return Err(Error::new(
                            n.col,
                            format!("bad VLAN ID '{}' (0 to 4095)", n.text),
                        ));
                    }
                    Some(id as u16)
                }
                _ => None,
            };
            if self.lenient() {
                return Ok(self.prim(Prim::Vlan(id)));
            }
            return self.vlan(id, t.col);
        }
        if t.is_word("less") || t.is_word("greater") {
            self.pos += 1;
            self.last = None;
            let n = match self.peek() {
                Some(n) if n.kind == TokKind::Word && !is_keyword(&n) => n,
                found => {
                    return Err(Error::new(
                        self.col_of(found),
                        format!(
                            "expected a length after '{}', found {}",
                            t.text,
                            describe(found)
                        ),
                    ))
                }
            };
            self.pos += 1;
            let len = self.number(n, "length")?;
            let (cmp, negate) = if t.is_word("less") {
                (Cmp::Gt, true)
            } else {
                (Cmp::Ge, false)
            };
            let b = self.test(Test::Field(Field {
                src: Src::Len,
                mask: u32::MAX,
                cmp,
                k: len,
            }));
            return Ok(if negate { self.not(b) } else { b });
        }
        if t.is_word("broadcast") || t.is_word("multicast") {
            self.pos += 1;
            self.last = None;
            return self.cast(None, t);
        }
        if let Some((k, hint)) = UNSUPPORTED.iter().find(|(k, _)| t.is_word(k)) {
            return Err(Error::new(
                t.col,
                format!("'{k}' is a pcap-filter keyword tapline does not support ({hint})"),
            ));
        }
        if t.is_word("mask") {
            return Err(Error::new(t.col, "'mask' must follow 'net ADDRESS'".into()));
        }
        if t.is_word("len") {
            return Err(Error::new(
                t.col,
                "'len' must be compared ('len > 100'); or use 'less N' / 'greater N'".into(),
            ));
        }
        self.continuation(t)
    }

    /// A bare id: reuses the qualifiers of the previous primitive.
    fn continuation(&mut self, t: Token<'s>) -> Result<usize, Error> {
        let Some(q) = self.last else {
            let message = if looks_like_name(t.text) {
                format!("unknown keyword '{}'", t.text)
            } else {
                format!(
                    "'{}' needs a qualifier such as 'host', 'net' or 'port' in front",
                    t.text
                )
            };
            return Err(Error::new(t.col, message));
        };
        let addressy = matches!(q.kind, Kind::Host | Kind::Net) && q.proto != Some(ProtoQ::Ether);
        if addressy && looks_like_name(t.text) {
            return Err(Error::new(t.col, format!("unknown keyword '{}'", t.text)));
        }
        self.pos += 1;
        self.build(&q, t)
    }

    /// `[proto] [dir] [kind] id`, or a protocol alone.
    fn qualified(&mut self) -> Result<usize, Error> {
        let mut q = Quals {
            proto: None,
            proto_col: 0,
            dir: None,
            dir_col: 0,
            kind: Kind::Host,
            kind_given: false,
        };
        // The last qualifier read, for "expected ... after 'X'".
        let mut prev = None;

        if let Some(t) = self.peek() {
            if let Some(pq) = ProtoQ::of(&t) {
                self.pos += 1;
                q.proto = Some(pq);
                q.proto_col = t.col;
                prev = Some(t);
                let next = self.peek();
                let qualifies = next.is_some_and(|n| {
                    Kind::of(&n).is_some() || n.is_word("src") || n.is_word("dst")
                });
                if let Some(n) = next.filter(|n| n.is_word("broadcast") || n.is_word("multicast")) {
                    self.pos += 1;
                    self.last = None;
                    return self.cast(Some((pq, t)), n);
                }
                if !qualifies {
                    self.last = None;
                    return self.proto_alone(pq, t, next);
                }
            }
        }

        if let Some(t) = self.peek().filter(|t| t.is_word("src") || t.is_word("dst")) {
            self.pos += 1;
            let is_src = t.is_word("src");
            let mut dir = if is_src { Dir::Src } else { Dir::Dst };
            prev = Some(t);
            // `src or dst`, `dst and src`, ...: only when the other
            // direction follows the operator at once.
            if let (Some(op), Some(other)) = (self.peek(), self.peek_at(1)) {
                let opposite = if is_src { "dst" } else { "src" };
                if matches!(op.kind, TokKind::And | TokKind::Or) && other.is_word(opposite) {
                    self.pos += 2;
                    dir = if op.kind == TokKind::Or {
                        Dir::SrcOrDst
                    } else {
                        Dir::SrcAndDst
                    };
                    prev = Some(other);
                }
            }
            q.dir = Some(dir);
            q.dir_col = t.col;
        }

        if let Some(t) = self.peek() {
            if let Some(kind) = Kind::of(&t) {
                self.pos += 1;
                q.kind = kind;
                q.kind_given = true;
                prev = Some(t);
            }
        }
        // Without a kind, a direction implies `host` (`src 10.0.0.1`).

        self.check_quals(&q)?;

        let prev_text = prev.map_or("", |p| p.text);
        let id = match self.peek() {
            Some(t) if t.kind == TokKind::Word && (q.kind == Kind::Proto || !is_keyword(&t)) => t,
            found => {
                let what = match (q.kind, q.proto) {
                    (Kind::Host, Some(ProtoQ::Ether)) => "a MAC address",
                    (Kind::Host, _) => "an address",
                    (Kind::Net, _) => "a network",
                    (Kind::Port, _) => "a port",
                    (Kind::Portrange, _) => "a port range",
                    (Kind::Proto, _) => "a protocol",
                };
                return Err(Error::new(
                    self.col_of(found),
                    format!(
                        "expected {what} after '{prev_text}', found {}",
                        describe(found)
                    ),
                ));
            }
        };
        self.pos += 1;
        let node = self.build(&q, id)?;
        self.last = Some(q);
        Ok(node)
    }

    /// Rejects qualifier combinations that mean nothing.
    fn check_quals(&self, q: &Quals) -> Result<(), Error> {
        let Some(proto) = q.proto else {
            if q.kind == Kind::Proto && q.dir.is_some() {
                return Err(Error::new(
                    q.dir_col,
                    "a direction cannot qualify 'proto'".into(),
                ));
            }
            return Ok(());
        };
        let ok = match q.kind {
            Kind::Host => matches!(
                proto,
                ProtoQ::Ether | ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp
            ),
            Kind::Net => matches!(proto, ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp),
            Kind::Port | Kind::Portrange => proto.transport().is_some(),
            Kind::Proto => matches!(proto, ProtoQ::Ether | ProtoQ::Ip | ProtoQ::Ip6),
        };
        if ok {
            if q.kind == Kind::Proto && q.dir.is_some() {
                return Err(Error::new(
                    q.dir_col,
                    "a direction cannot qualify 'proto'".into(),
                ));
            }
            return Ok(());
        }
        let message = if !q.kind_given && proto.transport().is_some() {
            format!(
                "'{}' with a direction needs 'port' or 'portrange' (e.g. '{} src port 80')",
                proto.name(),
                proto.name()
            )
        } else {
            format!("'{}' cannot qualify '{}'", proto.name(), q.kind.name())
        };
        Err(Error::new(q.proto_col, message))
    }

    /// `ip`, `tcp`, ...: a protocol alone.
    fn proto_alone(
        &mut self,
        pq: ProtoQ,
        t: Token<'s>,
        next: Option<Token<'s>>,
    ) -> Result<usize, Error> {
        if pq == ProtoQ::Ether {
            return Err(Error::new(
                self.col_of(next),
                format!(
                    "expected 'host', 'src', 'dst', 'proto', 'broadcast', 'multicast' or \
                     '[' after '{}', found {}",
                    t.text,
                    describe(next)
                ),
            ));
        }
        Ok(self.proto_abbrev(pq))
    }

    /// `[ether|ip|ip6] broadcast|multicast`.
    fn cast(&mut self, proto: Option<(ProtoQ, Token<'s>)>, t: Token<'s>) -> Result<usize, Error> {
        let broadcast = t.is_word("broadcast");
        let lenient = self.lenient();
        let pl = self.pl();
        Ok(match (proto.map(|(p, _)| p), broadcast) {
            (None | Some(ProtoQ::Ether), true) => self.ehostop([0xff; 6], Dir::Dst),
            (None | Some(ProtoQ::Ether), false) => {
                if lenient {
                    self.prim(Prim::EtherMulticast)
                } else {
                    self.ncmp(0, 1, u32::MAX, Cmp::Set, 1)
                }
            }
            (Some(ProtoQ::Ip), false) => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.ncmp(pl + 16, 1, u32::MAX, Cmp::Ge, 224);
                self.and(b0, b1)
            }
            (Some(ProtoQ::Ip6), false) if lenient => self.prim(Prim::V6Net {
                dir: Dir::Dst,
                net: 0xff << 120,
                mask: 0xff << 120,
            }),
            (Some(ProtoQ::Ip6), false) => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV6));
                let b1 = self.cmp(pl + 24, 1, 255);
                self.and(b0, b1)
            }
            (Some(ProtoQ::Ip), true) => {
                // tcpdump reading a file uses netmask 0: the host part is
                // the whole address, so 0.0.0.0 or 255.255.255.255.
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.ncmp(pl + 16, 4, u32::MAX, Cmp::Eq, 0);
                let b2 = self.ncmp(pl + 16, 4, u32::MAX, Cmp::Eq, u32::MAX);
                let b2 = self.or(b1, b2);
                self.and(b0, b2)
            }
            (Some(p), _) => {
                let col = proto.map_or(t.col, |(_, pt)| pt.col);
                return Err(Error::new(
                    col,
                    format!("'{}' cannot qualify '{}'", p.name(), t.text),
                ));
            }
        })
    }

    /// The test for qualifiers `q` and the id token `id` (and, for a
    /// network, the `/len` or `mask M` that follows).
    fn build(&mut self, q: &Quals, id: Token<'s>) -> Result<usize, Error> {
        let dir = q.dir.unwrap_or(Dir::SrcOrDst);
        let lenient = self.lenient();
        match q.kind {
            Kind::Host if q.proto == Some(ProtoQ::Ether) => {
                let mac = parse_mac(id.text)
                    .ok_or_else(|| Error::new(id.col, format!("bad MAC address '{}'", id.text)))?;
                if lenient {
                    return Ok(self.prim(Prim::EtherAddr { dir, mac }));
                }
                Ok(self.ehostop(mac, dir))
            }
            Kind::Host | Kind::Net => {
                if q.kind == Kind::Host {
                    if let Some(t) = self
                        .peek()
                        .filter(|t| t.kind == TokKind::Slash || t.is_word("mask"))
                    {
                        return Err(Error::new(
                            t.col,
                            "a host has no prefix length or mask; use 'net'".into(),
                        ));
                    }
                }
                self.net(q, id, dir)
            }
            Kind::Port => {
                let (port, proto) = self.port_id(q, id)?;
                Ok(self.port_test(q, dir, port, port, proto))
            }
            Kind::Portrange => {
                let (lo, hi, proto) = self.portrange_id(q, id)?;
                Ok(self.port_test(q, dir, lo, hi, proto))
            }
            Kind::Proto => {
                if q.proto == Some(ProtoQ::Ether) {
                    let t = match parse_number(id.text) {
                        Ok(Some(n)) => n,
                        Err(m) => return Err(Error::new(id.col, m)),
                        Ok(None) => ethertype_name(id.text).map(u32::from).ok_or_else(|| {
                            Error::new(id.col, format!("unknown ethertype name '{}'", id.text))
                        })?,
                    };
                    if t > 0xffff {
                        return Err(Error::new(id.col, format!("bad ethertype '{}'", id.text)));
                    }
                    return Ok(self.linktype(t));
                }
                let proto = match parse_number(id.text) {
                    Ok(Some(n)) => u8::try_from(n).map_err(|_| {
                        Error::new(
                            id.col,
                            format!("bad protocol number '{}' (0 to 255)", id.text),
                        )
                    })?,
                    Err(m) => return Err(Error::new(id.col, m)),
                    Ok(None) => ip_proto_name(id.text).ok_or_else(|| {
                        Error::new(id.col, format!("unknown protocol name '{}'", id.text))
                    })?,
                };
                let version = match q.proto {
                    Some(ProtoQ::Ip) => IpVersion::V4,
                    Some(ProtoQ::Ip6) => IpVersion::V6,
                    _ => IpVersion::Any,
                };
                Ok(self.ip_proto(proto, version))
            }
        }
    }

    /// A port number or name, and the protocol a name implies (libpcap
    /// checks the protocol of a named port: `port http` is TCP only).
    fn port_id(&self, q: &Quals, id: Token<'_>) -> Result<(u16, Option<u8>), Error> {
        let want = q.proto.and_then(ProtoQ::transport);
        if id.text.starts_with(|c: char| c.is_ascii_digit()) && !id.text.contains('-') {
            let n = self.number(id, "port")?;
            let port = u16::try_from(n)
                .map_err(|_| Error::new(id.col, format!("bad port '{}' (0 to 65535)", id.text)))?;
            return Ok((port, want));
        }
        if id.text.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::new(
                id.col,
                format!("'{}' is a range; use 'portrange {}'", id.text, id.text),
            ));
        }
        let (port, protos) = port_name(id.text)
            .ok_or_else(|| Error::new(id.col, format!("unknown port name '{}'", id.text)))?;
        Ok((port, name_proto(protos, want, id)?))
    }

    /// `A-B` (numbers or names; A > B is swapped, as in libpcap).
    fn portrange_id(&self, q: &Quals, id: Token<'_>) -> Result<(u16, u16, Option<u8>), Error> {
        let want = q.proto.and_then(ProtoQ::transport);
        let s = id.text;
        let Some(i) = s.find('-') else {
            return Err(Error::new(
                id.col,
                format!("expected a port range such as '6000-6010', found '{s}'"),
            ));
        };
        // Names may contain '-' (ftp-data): take the first split where
        // both sides are ports.
        let i = s
            .match_indices('-')
            .map(|(j, _)| j)
            .find(|&j| {
                let ok = |t: &str| {
                    (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
                        || port_name(t).is_some()
                };
                ok(&s[..j]) && ok(&s[j + 1..])
            })
            .unwrap_or(i);
        let (a, b) = (&s[..i], &s[i + 1..]);
        let hi_col = id.col + a.chars().count() + 1;
        let decimal = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
        if decimal(a) && decimal(b) {
            let num = |t: &str, col| {
                t.parse::<u16>()
                    .map_err(|_| Error::new(col, format!("bad port '{t}' (0 to 65535)")))
            };
            return Ok((num(a, id.col)?, num(b, hi_col)?, want));
        }
        let named = |t: &str, col| {
            port_name(t).ok_or_else(|| Error::new(col, format!("unknown port name '{t}'")))
        };
        let (lo, pa) = named(a, id.col)?;
        let (hi, pb) = named(b, hi_col)?;
        let protos = if pa == pb { pa } else { PortProtos::Any };
        Ok((lo, hi, name_proto(protos, want, id)?))
    }

    fn port_test(&mut self, q: &Quals, dir: Dir, lo: u16, hi: u16, proto: Option<u8>) -> usize {
        let _ = q;
        if self.lenient() {
            let proto = match proto {
                Some(p) => PortProto::Only(p),
                None => PortProto::Any,
            };
            return self.prim(Prim::Port {
                dir,
                proto,
                lo: lo.min(hi),
                hi: lo.max(hi),
            });
        }
        self.port(lo, hi, proto, dir)
    }

    /// `host ADDR`, `net ADDR`, `net ADDR/LEN`, `net ADDR mask MASK`; IPv4
    /// networks may be written short (`net 10`, `net 192.168`).
    fn net(&mut self, q: &Quals, id: Token<'s>, dir: Dir) -> Result<usize, Error> {
        enum Suffix<'t> {
            None,
            Len(Token<'t>),
            Mask(Token<'t>, Token<'t>),
        }
        let suffix = match self.peek() {
            Some(s) if s.kind == TokKind::Slash || s.is_word("mask") => {
                self.pos += 1;
                let what = if s.kind == TokKind::Slash {
                    "a prefix length"
                } else {
                    "a netmask"
                };
                let arg = match self.peek() {
                    Some(a) if a.kind == TokKind::Word && !is_keyword(&a) => a,
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!(
                                "expected {what} after '{}', found {}",
                                s.text,
                                describe(found)
                            ),
                        ))
                    }
                };
                self.pos += 1;
                if s.kind == TokKind::Slash {
                    Suffix::Len(arg)
                } else {
                    Suffix::Mask(s, arg)
                }
            }
            _ => Suffix::None,
        };
        let is_name = !id.text.contains(':')
            && id.text.contains(|c: char| c.is_ascii_alphabetic())
            && matches!(parse_number(id.text), Ok(None))
            && parse_mac(id.text).is_none();
        if is_name {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}' is a name: tapline does not resolve host or network names; \
                     use an IPv4 or IPv6 address",
                    id.text
                ),
            ));
        }
        let bad_len = |t: Token<'_>, max: u32| {
            Error::new(
                t.col,
                format!(
                    "bad prefix length '{}' (0 to {max} for IPv{})",
                    t.text,
                    if max == 32 { 4 } else { 6 }
                ),
            )
        };
        if id.text.contains(':') {
            if parse_mac(id.text).is_some() && !id.text.contains("::") {
                return Err(Error::new(
                    id.col,
                    format!("'{}' is a MAC address: use 'ether host'", id.text),
                ));
            }
            let a: Ipv6Addr = id
                .text
                .parse()
                .map_err(|_| Error::new(id.col, format!("bad IPv6 address '{}'", id.text)))?;
            let len = match suffix {
                Suffix::None => 128,
                Suffix::Len(t) => match parse_number(t.text) {
                    Ok(Some(n)) if n <= 128 => n,
                    _ => return Err(bad_len(t, 128)),
                },
                Suffix::Mask(m, _) => {
                    return Err(Error::new(
                        m.col,
                        "'mask' is for IPv4 networks; write 'net ADDRESS/LENGTH'".into(),
                    ))
                }
            };
            let mask = prefix_mask_128(len);
            let a = u128::from(a);
            if a & !mask != 0 {
                return Err(Error::new(
                    id.col,
                    format!(
                        "'{}/{len}' has bits set outside the prefix (the network is {}/{len})",
                        id.text,
                        Ipv6Addr::from(a & mask)
                    ),
                ));
            }
            return match q.proto {
                None | Some(ProtoQ::Ip6) => Ok(if self.lenient() {
                    self.prim(Prim::V6Net { dir, net: a, mask })
                } else {
                    self.hostop6(a, mask, dir)
                }),
                Some(p) => Err(Error::new(
                    id.col,
                    format!(
                        "'{}' is an IPv6 address; '{}' needs an IPv4 one",
                        id.text,
                        p.name()
                    ),
                )),
            };
        }
        // A plain number: libpcap's NUM (octal and hex too); `host 10` is
        // 0.0.0.10, `net 10` 10.0.0.0/8.
        let (a, mask) = if !id.text.contains('.') {
            let v = self.number(id, "address")?;
            if q.kind == Kind::Net {
                let (mut v, mut m) = (v, u32::MAX);
                while v != 0 && v & 0xff00_0000 == 0 {
                    v <<= 8;
                    m <<= 8;
                }
                (v, m)
            } else {
                (v, u32::MAX)
            }
        } else {
            let (a, implied) = parse_v4_partial(id.text)
                .ok_or_else(|| Error::new(id.col, format!("bad IPv4 address '{}'", id.text)))?;
            (a, prefix_mask_32(implied))
        };
        let (mask, shown) = match suffix {
            Suffix::None => (mask, String::new()),
            Suffix::Len(t) => {
                let len = match parse_number(t.text) {
                    Ok(Some(n)) if n <= 32 => n,
                    _ => return Err(bad_len(t, 32)),
                };
                (prefix_mask_32(len), format!("/{len}"))
            }
            Suffix::Mask(_, m) => {
                let (mask, _) = parse_v4_partial(m.text)
                    .ok_or_else(|| Error::new(m.col, format!("bad netmask '{}'", m.text)))?;
                (mask, format!(" mask {}", m.text))
            }
        };
        if a & !mask != 0 {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}{shown}' has bits set outside the mask (the network is {}{shown})",
                    id.text,
                    std::net::Ipv4Addr::from(a & mask)
                ),
            ));
        }
        match q.proto {
            None | Some(ProtoQ::Ip) | Some(ProtoQ::Arp) | Some(ProtoQ::Rarp) => {}
            Some(p) => {
                return Err(Error::new(
                    id.col,
                    format!(
                        "'{}' is an IPv4 address; '{}' needs an IPv6 one",
                        id.text,
                        p.name()
                    ),
                ))
            }
        }
        if self.lenient() {
            let layers = match q.proto {
                Some(ProtoQ::Ip) => V4Layers {
                    ip: true,
                    arp: false,
                    rarp: false,
                },
                Some(ProtoQ::Arp) => V4Layers {
                    ip: false,
                    arp: true,
                    rarp: false,
                },
                Some(ProtoQ::Rarp) => V4Layers {
                    ip: false,
                    arp: false,
                    rarp: true,
                },
                _ => V4Layers {
                    ip: true,
                    arp: true,
                    rarp: true,
                },
            };
            return Ok(self.prim(Prim::V4Net {
                dir,
                net: a,
                mask,
                layers,
            }));
        }
        Ok(self.host4(a, mask, q.proto, dir))
    }
}

/// `a op b` (libpcap's `gen_arth`: the result keeps the protocol checks of
/// `a` only, and a constant 0 divisor or a shift by more than 31 is an
/// error when the right side starts with that constant).
fn combine(mut a: Arith, alu: Alu, b: Arith, op: Token<'_>) -> Result<Arith, Error> {
    let k = b.first_imm();
    match alu {
        Alu::Div if k == Some(0) => return Err(Error::new(op.col, "division by zero".into())),
        Alu::Mod if k == Some(0) => return Err(Error::new(op.col, "modulus by zero".into())),
        Alu::Lsh | Alu::Rsh if k.is_some_and(|k| k > 31) => {
            return Err(Error::new(op.col, "shift by more than 31 bits".into()))
        }
        _ => {}
    }
    a.code.extend_from_slice(&b.code);
    a.code.push(AOp::Bin(alu));
    Ok(a)
}

fn prefix_mask_32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0)
}

fn prefix_mask_128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0)
}

/// 1 to 4 dotted decimal bytes, left-aligned: `10` is 10.0.0.0 with an
/// implied /8, `192.168` 192.168.0.0/16, a full address /32 (libpcap).
fn parse_v4_partial(s: &str) -> Option<(u32, u32)> {
    let mut addr = 0u32;
    let mut n = 0u32;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let byte: u8 = part.parse().ok()?;
        addr |= u32::from(byte) << (24 - 8 * n);
        n += 1;
    }
    Some((addr, 8 * n))
}

/// `aa:bb:cc:dd:ee:ff` (':' '-' or '.' between 1-2 hex digits),
/// `aabb.ccdd.eeff`, or `aabbccddeeff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex_byte = |p: &str| {
        (!p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten()
    };
    let mut mac = [0u8; 6];
    let groups: Vec<&str> = s.split([':', '-', '.']).collect();
    match groups.len() {
        6 => {
            for (m, g) in mac.iter_mut().zip(&groups) {
                *m = hex_byte(g)?;
            }
        }
        1 | 3 => {
            let digits: String = groups.concat();
            let sizes_ok = groups.iter().all(|g| g.len() == 12 / groups.len());
            if !sizes_ok || !digits.chars().all(|c| c.is_ascii_hexdigit()) || digits.len() != 12 {
                return None;
            }
            for (i, m) in mac.iter_mut().enumerate() {
                *m = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
        }
        _ => return None,
    }
    Some(mac)
}

/// A number as libpcap reads one: decimal, `0x` hexadecimal, or octal
/// with a leading `0`. `Ok(None)`: not a number at all.
fn parse_number(s: &str) -> Result<Option<u32>, String> {
    let too_big = || format!("number {s} does not fit in 32 bits");
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        return u32::from_str_radix(hex, 16)
            .map(Some)
            .map_err(|_| too_big());
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    if s.len() > 1 && s.starts_with('0') {
        if s.contains(['8', '9']) {
            return Err(format!("number {s} contains non-octal digit"));
        }
        return u32::from_str_radix(&s[1..], 8)
            .map(Some)
            .map_err(|_| too_big());
    }
    s.parse::<u32>().map(Some).map_err(|_| too_big())
}

/// libpcap's named offsets and values (`tcp[tcpflags] & tcp-syn`).
fn named_constant(s: &str) -> Option<u32> {
    const NAMES: &[(&str, u32)] = &[
        ("tcpflags", 13),
        ("tcp-fin", 0x01),
        ("tcp-syn", 0x02),
        ("tcp-rst", 0x04),
        ("tcp-push", 0x08),
        ("tcp-ack", 0x10),
        ("tcp-urg", 0x20),
        ("tcp-ece", 0x40),
        ("tcp-cwr", 0x80),
        ("icmptype", 0),
        ("icmpcode", 1),
        ("icmp-echoreply", 0),
        ("icmp-unreach", 3),
        ("icmp-sourcequench", 4),
        ("icmp-redirect", 5),
        ("icmp-echo", 8),
        ("icmp-routeradvert", 9),
        ("icmp-routersolicit", 10),
        ("icmp-timxceed", 11),
        ("icmp-paramprob", 12),
        ("icmp-tstamp", 13),
        ("icmp-tstampreply", 14),
        ("icmp-ireq", 15),
        ("icmp-ireqreply", 16),
        ("icmp-maskreq", 17),
        ("icmp-maskreply", 18),
        ("icmp6type", 0),
        ("icmp6code", 1),
        ("icmp6-destinationunreach", 1),
        ("icmp6-packettoobig", 2),
        ("icmp6-timeexceeded", 3),
        ("icmp6-parameterproblem", 4),
        ("icmp6-echo", 128),
        ("icmp6-echoreply", 129),
        ("icmp6-multicastlistenerquery", 130),
        ("icmp6-multicastlistenerreportv1", 131),
        ("icmp6-multicastlistenerdone", 132),
        ("icmp6-routersolicit", 133),
        ("icmp6-routeradvert", 134),
        ("icmp6-neighborsolicit", 135),
        ("icmp6-neighboradvert", 136),
        ("icmp6-redirect", 137),
        ("icmp6-routerrenum", 138),
        ("icmp6-nodeinformationquery", 139),
        ("icmp6-nodeinformationresponse", 140),
        ("icmp6-ineighbordiscoverysolicit", 141),
        ("icmp6-ineighbordiscoveryadvert", 142),
        ("icmp6-multicastlistenerreportv2", 143),
        ("icmp6-homeagentdiscoveryrequest", 144),
        ("icmp6-homeagentdiscoveryreply", 145),
        ("icmp6-mobileprefixsolicit", 146),
        ("icmp6-mobileprefixadvert", 147),
        ("icmp6-certpathsolicit", 148),
        ("icmp6-certpathadvert", 149),
        ("icmp6-multicastrouteradvert", 151),
        ("icmp6-multicastroutersolicit", 152),
        ("icmp6-multicastrouterterm", 153),
    ];
    NAMES.iter().find(|(n, _)| *n == s).map(|&(_, v)| v)
}

/// The transports a port name is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortProtos {
    Tcp,
    Udp,
    /// TCP and UDP with the same number: libpcap then matches TCP, UDP and
    /// SCTP.
    Any,
}

/// Well-known ports with their protocols, as in Debian's /etc/services
/// (netbase), which is what tcpdump resolves them with; tapline reads no
/// /etc/services. vxlan and geneve are not there; tapline knows them as UDP.
const PORT_NAMES: &[(&str, u16, PortProtos)] = &[
    ("echo", 7, PortProtos::Any),
    ("discard", 9, PortProtos::Any),
    ("daytime", 13, PortProtos::Any),
    ("ftp-data", 20, PortProtos::Tcp),
    ("ftp", 21, PortProtos::Tcp),
    ("ssh", 22, PortProtos::Tcp),
    ("telnet", 23, PortProtos::Tcp),
    ("smtp", 25, PortProtos::Tcp),
    ("time", 37, PortProtos::Any),
    ("whois", 43, PortProtos::Tcp),
    ("tacacs", 49, PortProtos::Any),
    ("domain", 53, PortProtos::Any),
    ("bootps", 67, PortProtos::Udp),
    ("bootpc", 68, PortProtos::Udp),
    ("tftp", 69, PortProtos::Udp),
    ("gopher", 70, PortProtos::Tcp),
    ("finger", 79, PortProtos::Tcp),
    ("http", 80, PortProtos::Tcp),
    ("www", 80, PortProtos::Tcp),
    ("kerberos", 88, PortProtos::Any),
    ("pop3", 110, PortProtos::Tcp),
    ("sunrpc", 111, PortProtos::Any),
    ("auth", 113, PortProtos::Tcp),
    ("nntp", 119, PortProtos::Tcp),
    ("ntp", 123, PortProtos::Udp),
    ("netbios-ns", 137, PortProtos::Udp),
    ("netbios-dgm", 138, PortProtos::Udp),
    ("netbios-ssn", 139, PortProtos::Tcp),
    ("imap", 143, PortProtos::Tcp),
    ("snmp", 161, PortProtos::Any),
    ("snmp-trap", 162, PortProtos::Any),
    ("bgp", 179, PortProtos::Tcp),
    ("ldap", 389, PortProtos::Any),
    ("https", 443, PortProtos::Any),
    ("microsoft-ds", 445, PortProtos::Tcp),
    ("isakmp", 500, PortProtos::Udp),
    ("syslog", 514, PortProtos::Udp),
    ("submission", 587, PortProtos::Tcp),
    ("ldaps", 636, PortProtos::Any),
    ("rsync", 873, PortProtos::Tcp),
    ("imaps", 993, PortProtos::Tcp),
    ("pop3s", 995, PortProtos::Tcp),
    ("openvpn", 1194, PortProtos::Any),
    ("radius", 1812, PortProtos::Any),
    ("nfs", 2049, PortProtos::Any),
    ("mysql", 3306, PortProtos::Tcp),
    ("ms-wbt-server", 3389, PortProtos::Tcp),
    ("ipsec-nat-t", 4500, PortProtos::Udp),
    ("vxlan", 4789, PortProtos::Udp),
    ("sip", 5060, PortProtos::Any),
    ("postgresql", 5432, PortProtos::Tcp),
    ("amqp", 5672, PortProtos::Tcp),
    ("geneve", 6081, PortProtos::Udp),
    ("redis", 6379, PortProtos::Tcp),
    ("http-alt", 8080, PortProtos::Tcp),
];

fn port_name(s: &str) -> Option<(u16, PortProtos)> {
    PORT_NAMES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p, k)| (p, k))
}

/// The protocol to check for a named port under qualifier `want` (libpcap's
/// `gen_scode`: `udp port http` is an error, `port http` is TCP only).
fn name_proto(protos: PortProtos, want: Option<u8>, id: Token<'_>) -> Result<Option<u8>, Error> {
    let is = |what: &str| Err(Error::new(id.col, format!("port '{}' is {what}", id.text)));
    match (want, protos) {
        (None, PortProtos::Tcp) => Ok(Some(IPPROTO_TCP)),
        (None, PortProtos::Udp) => Ok(Some(IPPROTO_UDP)),
        (None, PortProtos::Any) => Ok(None),
        (Some(IPPROTO_TCP), PortProtos::Udp) => is("udp"),
        (Some(IPPROTO_UDP) | Some(IPPROTO_SCTP), PortProtos::Tcp) => is("tcp"),
        (Some(IPPROTO_SCTP), PortProtos::Udp) => is("udp"),
        (Some(p), _) => Ok(Some(p)),
    }
}

fn ip_proto_name(s: &str) -> Option<u8> {
    const NAMES: &[(&str, u8)] = &[
        ("icmp", 1),
        ("igmp", 2),
        ("ipip", 4),
        ("tcp", 6),
        ("egp", 8),
        ("igrp", 9),
        ("udp", 17),
        ("ipv6", 41),
        ("rsvp", 46),
        ("gre", 47),
        ("esp", 50),
        ("ah", 51),
        ("icmp6", 58),
        ("ipv6-icmp", 58),
        ("ospf", 89),
        ("pim", 103),
        ("vrrp", 112),
        ("l2tp", 115),
        ("sctp", 132),
        ("udplite", 136),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p)| p)
}

fn ethertype_name(s: &str) -> Option<u16> {
    const NAMES: &[(&str, u16)] = &[
        ("ip", ETHERTYPE_IPV4),
        ("ip6", ETHERTYPE_IPV6),
        ("arp", ETHERTYPE_ARP),
        ("rarp", ETHERTYPE_RARP),
        ("aarp", 0x80f3),
        ("atalk", 0x809b),
        ("decnet", 0x6003),
        ("lat", 0x6004),
        ("loopback", 0x9000),
        ("mopdl", 0x6001),
        ("moprc", 0x6002),
        ("sca", 0x6007),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, t)| t)
}

/// Lays the tree out as a program: each primitive becomes one instruction
/// whose jumps encode `and`, `or` and `not` (short-circuit, like BPF).
/// Children are generated before their parents, so every jump goes to a
/// lower index (or ACCEPT/REJECT). The walk uses an explicit stack: a long
/// `a or b or c ...` chain is a deep tree.
fn codegen(nodes: &[Node], root: usize) -> Result<(Vec<Insn>, u32), Error> {
    enum Task {
        /// Generate `node`, jumping to `on_true` / `on_false`.
        Gen(usize, u32, u32),
        /// Generate the left side of an `and` whose right side was just
        /// generated: true goes to the right side's entry.
        AndLeft(usize, u32),
        /// Likewise for `or`: false goes to the right side's entry.
        OrLeft(usize, u32),
    }
    let mut insns: Vec<Insn> = Vec::new();
    let mut entry = ACCEPT;
    let mut stack = vec![Task::Gen(root, ACCEPT, REJECT)];
    while let Some(task) = stack.pop() {
        match task {
            Task::Gen(n, on_true, on_false) => match nodes.get(n) {
                Some(&Node::Test(test)) => {
                    entry = u32::try_from(insns.len())
                        .ok()
                        .filter(|&i| i < REJECT)
                        .ok_or_else(|| Error::new(1, "expression too long".into()))?;
                    insns.push(Insn {
                        test,
                        on_true,
                        on_false,
                    });
                }
                Some(&Node::Not(a)) => stack.push(Task::Gen(a, on_false, on_true)),
                Some(&Node::And(a, b)) => {
                    stack.push(Task::AndLeft(a, on_false));
                    stack.push(Task::Gen(b, on_true, on_false));
                }
                Some(&Node::Or(a, b)) => {
                    stack.push(Task::OrLeft(a, on_true));
                    stack.push(Task::Gen(b, on_true, on_false));
                }
                None => return Err(Error::new(1, "internal error: bad node".into())),
            },
            Task::AndLeft(a, on_false) => stack.push(Task::Gen(a, entry, on_false)),
            Task::OrLeft(a, on_true) => stack.push(Task::Gen(a, on_true, entry)),
        }
    }
    Ok((insns, entry))
}

/// What a field test's outcome tells about another field test on the same
/// bytes: `Some(result)` when `test` is decided by `fact` having been
/// `outcome`.
fn implied(fact: &Field, outcome: bool, test: &Field) -> Option<bool> {
    if fact.src != test.src || fact.mask != test.mask {
        return None;
    }
    if fact.cmp == test.cmp && fact.k == test.k {
        return Some(outcome);
    }
    // `(x & mask) == v` known: every other comparison of `x & mask` is.
    (fact.cmp == Cmp::Eq && outcome).then(|| test.cmp.test(fact.k, test.k))
}

/// Most facts remembered per instruction (the rest are forgotten, which
/// only threads fewer jumps).
const MAX_FACTS: usize = 32;

/// Jump threading, as libpcap's optimizer does for the same fields: an
/// edge that reaches a field test whose outcome is already decided by the
/// tests on every path to it (`ether[12:2] = 0x86dd` true, then
/// `ether[12:2] = 0x800`) jumps straight to that test's successor. The
/// skipped test reads bytes an earlier test has read, so skipping it never
/// hides a load beyond the frame: the results are the same, with fewer
/// tests per frame. Jumps still only go to lower indices.
fn thread_jumps(insns: &mut [Insn], entry: u32) {
    if (entry as usize) >= insns.len() {
        return;
    }
    // Facts true on every path into each instruction; `None`: not reached
    // yet.
    let mut facts: Vec<Option<Vec<(Field, bool)>>> = vec![None; insns.len()];
    facts[entry as usize] = Some(Vec::new());
    // Predecessors have higher indices: walk down from the entry.
    for i in (0..=entry as usize).rev() {
        let Some(here) = facts[i].take() else {
            continue;
        };
        for outcome in [true, false] {
            let mut edge = here.clone();
            if let Test::Field(f) = insns[i].test {
                edge.retain(|(g, _)| *g != f);
                edge.push((f, outcome));
                if edge.len() > MAX_FACTS {
                    edge.remove(0);
                }
            }
            let mut target = if outcome {
                insns[i].on_true
            } else {
                insns[i].on_false
            };
            while let Some(t) = insns.get(target as usize) {
                let Test::Field(tf) = t.test else {
                    break;
                };
                let Some(result) = edge.iter().find_map(|(f, o)| implied(f, *o, &tf)) else {
                    break;
                };
                target = if result { t.on_true } else { t.on_false };
            }
            if outcome {
                insns[i].on_true = target;
            } else {
                insns[i].on_false = target;
            }
            if let Some(slot) = facts.get_mut(target as usize) {
                *slot = Some(match slot.take() {
                    None => edge,
                    Some(prev) => prev.into_iter().filter(|x| edge.contains(x)).collect(),
                });
            }
        }
    }
}
