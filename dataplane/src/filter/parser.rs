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
//! atom      := "(" expr ")" | primitive | id        -- a bare id reuses the
//!                                                     -- previous qualifiers
//! primitive := [proto] [dir] [kind] id [("/" len) | ("mask" netmask)]
//!            | proto                                -- ip, tcp, ...
//!            | [proto] "proto" id | "vlan" [id] | ("less" | "greater") id
//!            | [proto] ("broadcast" | "multicast")
//! ```
//!
//! Recursion happens only for parentheses, bounded by [`MAX_NESTING`]; long
//! `and`/`or` chains and runs of `not` are parsed in loops, and the code
//! generator walks the tree with an explicit stack, so no expression can
//! overflow the stack.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::eval::{Dir, Insn, IpVersion, PortProto, Prim, V4Layers, ACCEPT, REJECT};
use super::lexer::{lex, TokKind, Token};
use super::Error;
use crate::packet::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_RARP, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

/// Deepest nesting of parentheses accepted.
pub(super) const MAX_NESTING: usize = 100;
const MAX_VLAN_ID: u64 = 4095;

/// Compiles `src` (not blank) into a program and its entry point.
pub(super) fn compile(src: &str) -> Result<(Vec<Insn>, u32), Error> {
    let tokens = lex(src)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end_col: src.chars().count() + 1,
        nodes: Vec::new(),
        last: None,
        depth: 0,
    };
    let root = parser.expr(None)?;
    if let Some(t) = parser.peek() {
        // `expr` stops only at the end or at a ')'.
        return Err(Error::new(t.col, "unmatched ')'".into()));
    }
    codegen(&parser.nodes, root)
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
}

impl ProtoQ {
    const ALL: [ProtoQ; 10] = [
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
        }
    }

    fn of(t: &Token<'_>) -> Option<ProtoQ> {
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
}

/// Keywords other than the qualifiers; none can be an id.
const OTHER_KEYWORDS: [&str; 7] = [
    "src",
    "dst",
    "vlan",
    "less",
    "greater",
    "broadcast",
    "multicast",
];

/// pcap-filter keywords this implementation rejects, with a hint.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("gateway", "it needs host name resolution"),
    ("protochain", "use 'proto N'"),
    ("len", "use 'less N' or 'greater N'"),
    ("igmp", "use 'ip proto 2'"),
    ("pim", "use 'proto 103'"),
    ("vrrp", "use 'proto 112'"),
    ("carp", "use 'proto 112'"),
    ("igrp", "use 'ip proto 9'"),
    ("ah", "use 'ip proto 51'"),
    ("esp", "use 'proto 50'"),
    ("mpls", ""),
    ("pppoes", ""),
    ("pppoed", ""),
    ("geneve", ""),
    ("vxlan", ""),
    ("inbound", "a mirror port has no direction"),
    ("outbound", "a mirror port has no direction"),
    ("ifname", ""),
    ("on", ""),
    ("rnr", ""),
    ("rulenum", ""),
    ("reason", ""),
    ("rset", ""),
    ("ruleset", ""),
    ("srnr", ""),
    ("subrulenum", ""),
    ("action", ""),
    ("link", "use 'ether'"),
    ("ppp", ""),
    ("slip", ""),
    ("fddi", ""),
    ("tr", ""),
    ("wlan", ""),
    ("radio", ""),
    ("type", ""),
    ("subtype", ""),
    ("dir", ""),
    ("ra", ""),
    ("ta", ""),
    ("addr1", ""),
    ("addr2", ""),
    ("addr3", ""),
    ("addr4", ""),
    ("llc", ""),
    ("stp", ""),
    ("ipx", ""),
    ("netbeui", ""),
    ("atalk", ""),
    ("aarp", ""),
    ("decnet", ""),
    ("iso", ""),
    ("clnp", ""),
    ("esis", ""),
    ("isis", ""),
    ("lat", ""),
    ("sca", ""),
    ("moprc", ""),
    ("mopdl", ""),
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
    Prim(Prim),
    And(usize, usize),
    Or(usize, usize),
    Not(usize),
}

struct Parser<'s> {
    tokens: Vec<Token<'s>>,
    pos: usize,
    /// One past the last character: where "end of expression" points.
    end_col: usize,
    nodes: Vec<Node>,
    /// Qualifiers of the last address/port primitive, for bare ids.
    last: Option<Quals>,
    /// Open parentheses.
    depth: usize,
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

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn prim(&mut self, prim: Prim) -> usize {
        self.push(Node::Prim(prim))
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

    fn atom(&mut self, after: Option<Token<'s>>) -> Result<usize, Error> {
        let found = self.peek();
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
                    let id = parse_number(n.text)
                        .filter(|&id| id <= MAX_VLAN_ID)
                        .ok_or_else(|| {
                            Error::new(n.col, format!("bad VLAN ID '{}' (0 to 4095)", n.text))
                        })?;
                    Some(id as u16)
                }
                _ => None,
            };
            return Ok(self.prim(Prim::Vlan(id)));
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
            let len = parse_number(n.text)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| Error::new(n.col, format!("bad length '{}'", n.text)))?;
            let prim = if t.is_word("less") {
                Prim::LenAtMost(len)
            } else {
                Prim::LenAtLeast(len)
            };
            return Ok(self.prim(prim));
        }
        if t.is_word("broadcast") || t.is_word("multicast") {
            self.pos += 1;
            self.last = None;
            return self.cast(None, t);
        }
        if let Some((k, hint)) = UNSUPPORTED.iter().find(|(k, _)| t.is_word(k)) {
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(" ({hint})")
            };
            return Err(Error::new(
                t.col,
                format!("'{k}' is a pcap-filter keyword tapline does not support{hint}"),
            ));
        }
        if t.is_word("mask") {
            return Err(Error::new(t.col, "'mask' must follow 'net ADDRESS'".into()));
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
        let prim = self.build(&q, t)?;
        Ok(self.prim(prim))
    }

    /// `[proto] [dir] [kind] id`, or a protocol alone.
    fn qualified(&mut self) -> Result<usize, Error> {
        let mut q = Quals {
            proto: None,
            proto_col: 0,
            dir: None,
            dir_col: 0,
            kind: Kind::Host,
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

        let mut kind_given = false;
        if let Some(t) = self.peek() {
            if let Some(kind) = Kind::of(&t) {
                self.pos += 1;
                q.kind = kind;
                kind_given = true;
                prev = Some(t);
            }
        }
        // Without a kind, a direction implies `host` (`src 10.0.0.1`).

        self.check_quals(&q, kind_given)?;

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
        let prim = self.build(&q, id)?;
        self.last = Some(q);
        Ok(self.prim(prim))
    }

    /// Rejects qualifier combinations that mean nothing.
    fn check_quals(&self, q: &Quals, kind_given: bool) -> Result<(), Error> {
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
        let message = if !kind_given && proto.transport().is_some() {
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
        let prim = match pq {
            ProtoQ::Ether => {
                return Err(Error::new(
                    self.col_of(next),
                    format!(
                        "expected 'host', 'src', 'dst', 'proto', 'broadcast' or 'multicast' \
                         after '{}', found {}",
                        t.text,
                        describe(next)
                    ),
                ))
            }
            ProtoQ::Ip => Prim::EtherType(ETHERTYPE_IPV4),
            ProtoQ::Ip6 => Prim::EtherType(ETHERTYPE_IPV6),
            ProtoQ::Arp => Prim::EtherType(ETHERTYPE_ARP),
            ProtoQ::Rarp => Prim::EtherType(ETHERTYPE_RARP),
            ProtoQ::Tcp | ProtoQ::Udp | ProtoQ::Sctp => Prim::IpProto {
                version: IpVersion::Any,
                proto: pq.transport().unwrap_or_default(),
            },
            ProtoQ::Icmp => Prim::IpProto {
                version: IpVersion::V4,
                proto: IPPROTO_ICMP,
            },
            ProtoQ::Icmp6 => Prim::IpProto {
                version: IpVersion::V6,
                proto: IPPROTO_ICMPV6,
            },
        };
        Ok(self.prim(prim))
    }

    /// `[ether|ip|ip6] broadcast|multicast`.
    fn cast(&mut self, proto: Option<(ProtoQ, Token<'s>)>, t: Token<'s>) -> Result<usize, Error> {
        let broadcast = t.is_word("broadcast");
        let prim = match (proto.map(|(p, _)| p), broadcast) {
            (None | Some(ProtoQ::Ether), true) => Prim::EtherAddr {
                dir: Dir::Dst,
                mac: [0xff; 6],
            },
            (None | Some(ProtoQ::Ether), false) => Prim::EtherMulticast,
            (Some(ProtoQ::Ip), false) => Prim::V4Net {
                dir: Dir::Dst,
                net: 0xe000_0000,
                mask: 0xf000_0000,
                layers: V4Layers {
                    ip: true,
                    arp: false,
                    rarp: false,
                },
            },
            (Some(ProtoQ::Ip6), false) => Prim::V6Net {
                dir: Dir::Dst,
                net: 0xff << 120,
                mask: 0xff << 120,
            },
            (Some(ProtoQ::Ip), true) => {
                return Err(Error::new(
                    t.col,
                    "'ip broadcast' needs the interface netmask, which a mirror port \
                     does not have (use 'ether broadcast' or 'ip dst host 255.255.255.255')"
                        .into(),
                ))
            }
            (Some(p), _) => {
                let col = proto.map_or(t.col, |(_, pt)| pt.col);
                return Err(Error::new(
                    col,
                    format!("'{}' cannot qualify '{}'", p.name(), t.text),
                ));
            }
        };
        Ok(self.prim(prim))
    }

    /// The primitive for qualifiers `q` and the id token `id` (and, for a
    /// network, the `/len` or `mask M` that follows).
    fn build(&mut self, q: &Quals, id: Token<'s>) -> Result<Prim, Error> {
        let dir = q.dir.unwrap_or(Dir::SrcOrDst);
        match q.kind {
            Kind::Host if q.proto == Some(ProtoQ::Ether) => {
                let mac = parse_mac(id.text)
                    .ok_or_else(|| Error::new(id.col, format!("bad MAC address '{}'", id.text)))?;
                Ok(Prim::EtherAddr { dir, mac })
            }
            Kind::Host => {
                if let Some(t) = self
                    .peek()
                    .filter(|t| t.kind == TokKind::Slash || t.is_word("mask"))
                {
                    return Err(Error::new(
                        t.col,
                        "a host has no prefix length or mask; use 'net'".into(),
                    ));
                }
                if id.text.contains(':') {
                    let a: Ipv6Addr = id.text.parse().map_err(|_| {
                        Error::new(id.col, format!("bad IPv6 address '{}'", id.text))
                    })?;
                    self.v6_net(q, id, dir, u128::from(a), 128)
                } else {
                    let a: Ipv4Addr = id.text.parse().map_err(|_| {
                        // Letters cannot be in an IPv4 address: a name.
                        let is_name = id.text.contains(|c: char| c.is_ascii_alphabetic());
                        let hint = if is_name {
                            " (host names are not resolved; use an IPv4 or IPv6 address)"
                        } else {
                            ""
                        };
                        Error::new(id.col, format!("bad address '{}'{hint}", id.text))
                    })?;
                    self.v4_net(q, id, dir, u32::from(a), u32::MAX)
                }
            }
            Kind::Net => self.net(q, id, dir),
            Kind::Port => {
                let port = parse_port(id.text, id.col, true)?;
                Ok(port_prim(q, dir, port, port))
            }
            Kind::Portrange => {
                let (lo, hi) = parse_portrange(id)?;
                Ok(port_prim(q, dir, lo, hi))
            }
            Kind::Proto => {
                if q.proto == Some(ProtoQ::Ether) {
                    let t = parse_number(id.text)
                        .and_then(|n| u16::try_from(n).ok())
                        .or_else(|| ethertype_name(id.text))
                        .ok_or_else(|| {
                            Error::new(id.col, format!("bad ethertype '{}'", id.text))
                        })?;
                    return Ok(Prim::EtherType(t));
                }
                let proto = match parse_number(id.text) {
                    Some(n) => u8::try_from(n).map_err(|_| {
                        Error::new(
                            id.col,
                            format!("bad protocol number '{}' (0 to 255)", id.text),
                        )
                    })?,
                    None => ip_proto_name(id.text).ok_or_else(|| {
                        Error::new(id.col, format!("unknown protocol name '{}'", id.text))
                    })?,
                };
                let version = match q.proto {
                    Some(ProtoQ::Ip) => IpVersion::V4,
                    Some(ProtoQ::Ip6) => IpVersion::V6,
                    _ => IpVersion::Any,
                };
                Ok(Prim::IpProto { version, proto })
            }
        }
    }

    fn v4_net(
        &self,
        q: &Quals,
        id: Token<'_>,
        dir: Dir,
        net: u32,
        mask: u32,
    ) -> Result<Prim, Error> {
        let layers = match q.proto {
            None => V4Layers {
                ip: true,
                arp: true,
                rarp: true,
            },
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
        };
        Ok(Prim::V4Net {
            dir,
            net,
            mask,
            layers,
        })
    }

    fn v6_net(
        &self,
        q: &Quals,
        id: Token<'_>,
        dir: Dir,
        net: u128,
        len: u32,
    ) -> Result<Prim, Error> {
        match q.proto {
            None | Some(ProtoQ::Ip6) => Ok(Prim::V6Net {
                dir,
                net,
                mask: prefix_mask_128(len),
            }),
            Some(p) => Err(Error::new(
                id.col,
                format!(
                    "'{}' is an IPv6 address; '{}' needs an IPv4 one",
                    id.text,
                    p.name()
                ),
            )),
        }
    }

    /// `net ADDR`, `net ADDR/LEN`, `net ADDR mask MASK`; IPv4 networks may
    /// be written short (`net 10`, `net 192.168`).
    fn net(&mut self, q: &Quals, id: Token<'s>, dir: Dir) -> Result<Prim, Error> {
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
            let a: Ipv6Addr = id
                .text
                .parse()
                .map_err(|_| Error::new(id.col, format!("bad IPv6 network '{}'", id.text)))?;
            let len = match suffix {
                Suffix::None => 128,
                Suffix::Len(t) => parse_number(t.text)
                    .filter(|&n| n <= 128)
                    .ok_or_else(|| bad_len(t, 128))? as u32,
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
            return self.v6_net(q, id, dir, a, len);
        }
        let (a, implied_len) = parse_v4_partial(id.text)
            .ok_or_else(|| Error::new(id.col, format!("bad IPv4 network '{}'", id.text)))?;
        let (mask, shown) = match suffix {
            Suffix::None => (prefix_mask_32(implied_len), format!("/{implied_len}")),
            Suffix::Len(t) => {
                let len = parse_number(t.text)
                    .filter(|&n| n <= 32)
                    .ok_or_else(|| bad_len(t, 32))? as u32;
                (prefix_mask_32(len), format!("/{len}"))
            }
            Suffix::Mask(_, m) => {
                let mask: Ipv4Addr = m
                    .text
                    .parse()
                    .map_err(|_| Error::new(m.col, format!("bad netmask '{}'", m.text)))?;
                (u32::from(mask), format!(" mask {mask}"))
            }
        };
        if a & !mask != 0 {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}{shown}' has bits set outside the mask (the network is {}{shown})",
                    id.text,
                    Ipv4Addr::from(a & mask)
                ),
            ));
        }
        self.v4_net(q, id, dir, a, mask)
    }
}

fn port_prim(q: &Quals, dir: Dir, lo: u16, hi: u16) -> Prim {
    let proto = match q.proto.and_then(ProtoQ::transport) {
        Some(p) => PortProto::Only(p),
        None => PortProto::Any,
    };
    Prim::Port { dir, proto, lo, hi }
}

fn prefix_mask_32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0)
}

fn prefix_mask_128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0)
}

/// Decimal, or hexadecimal with `0x`.
fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
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

/// Well-known ports (a subset of /etc/services; the same number for TCP,
/// UDP and SCTP).
const PORT_NAMES: &[(&str, u16)] = &[
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("time", 37),
    ("whois", 43),
    ("tacacs", 49),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("imap", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("isakmp", 500),
    ("syslog", 514),
    ("submission", 587),
    ("ldaps", 636),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("radius", 1812),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("ipsec-nat-t", 4500),
    ("vxlan", 4789),
    ("sip", 5060),
    ("postgresql", 5432),
    ("amqp", 5672),
    ("geneve", 6081),
    ("redis", 6379),
    ("http-alt", 8080),
];

/// A port number (0 to 65535) or name. `range_hint`: say "use portrange"
/// for an `A-B` given to `port`.
fn parse_port(s: &str, col: usize, range_hint: bool) -> Result<u16, Error> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        if let Some(n) = parse_number(s) {
            return u16::try_from(n)
                .map_err(|_| Error::new(col, format!("bad port '{s}' (0 to 65535)")));
        }
        if range_hint && s.contains('-') {
            return Err(Error::new(
                col,
                format!("'{s}' is a range; use 'portrange {s}'"),
            ));
        }
        return Err(Error::new(col, format!("bad port '{s}'")));
    }
    PORT_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|&(_, p)| p)
        .ok_or_else(|| Error::new(col, format!("unknown port name '{s}'")))
}

/// `A-B` with A <= B (numbers or names).
fn parse_portrange(id: Token<'_>) -> Result<(u16, u16), Error> {
    let s = id.text;
    let splits: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
    // Names may contain '-' (ftp-data): take the first split where both
    // sides are ports.
    let parsed = splits.iter().find_map(|&i| {
        let lo = parse_port(&s[..i], id.col, false).ok()?;
        let hi = parse_port(&s[i + 1..], id.col, false).ok()?;
        Some((lo, hi))
    });
    let (lo, hi) = match (parsed, splits.as_slice()) {
        (Some(r), _) => r,
        (None, []) => {
            return Err(Error::new(
                id.col,
                format!("expected a port range such as '6000-6010', found '{s}'"),
            ))
        }
        (None, &[i]) => {
            // One of the sides is wrong: point at it.
            let hi_col = id.col + s[..=i].chars().count();
            (
                parse_port(&s[..i], id.col, false)?,
                parse_port(&s[i + 1..], hi_col, false)?,
            )
        }
        (None, _) => return Err(Error::new(id.col, format!("bad port range '{s}'"))),
    };
    if lo > hi {
        return Err(Error::new(
            id.col,
            format!("bad port range '{s}': {lo} is greater than {hi}"),
        ));
    }
    Ok((lo, hi))
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
                Some(&Node::Prim(prim)) => {
                    entry = u32::try_from(insns.len())
                        .ok()
                        .filter(|&i| i < REJECT)
                        .ok_or_else(|| Error::new(1, "expression too long".into()))?;
                    insns.push(Insn {
                        prim,
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
