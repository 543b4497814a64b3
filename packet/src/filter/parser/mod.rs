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

mod build;
mod codegen;
mod expr;
mod names;
mod primitive;

use codegen::{codegen, thread_jumps};
use names::*;
