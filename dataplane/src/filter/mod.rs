//! pcap-filter expressions (the tcpdump language), parsed in Rust.
//!
//! [`Filter::compile`] parses an expression once (on the control side) into
//! a flat program of primitive tests with a true and a false jump each,
//! like classic BPF; [`Filter::matches_packet`] runs it over a
//! [`Packet`] the worker has already parsed, in a loop, without recursion
//! or allocation. The program is shared behind an `Arc`, so a `Filter` is
//! cheap to clone and `Send + Sync`. No libpcap, no BPF verifier, no
//! `unsafe`.
//!
//! # Language
//!
//! - Protocols alone: `ip`, `ip6`, `arp`, `rarp` (the ethertype after the
//!   VLAN tags); `tcp`, `udp`, `sctp` (IPv4 or IPv6); `icmp` (IPv4);
//!   `icmp6` (IPv6).
//! - Addresses: `host H`, `net N/LEN`, `net N mask M`, `net 10` / `net
//!   192.168` (short IPv4 networks, libpcap's implied /8, /16, /24), with
//!   IPv4 or IPv6 literals (no name resolution). Qualified by `ip`, `ip6`,
//!   `arp` or `rarp`; unqualified, an IPv4 `host`/`net` matches the IPv4
//!   header or the sender/target protocol address of ARP and RARP (as in
//!   tcpdump), an IPv6 one the IPv6 header.
//! - `ether host MAC`, `ether src MAC`, `ether dst MAC` (`aa:bb:cc:dd:ee:ff`,
//!   `aa-bb-..`, `aabb.ccdd.eeff`, `aabbccddeeff`); `broadcast` / `ether
//!   broadcast`, `multicast` / `ether multicast` (the group bit), `ip
//!   multicast` (224.0.0.0/4), `ip6 multicast` (ff00::/8).
//! - Ports: `port P`, `portrange A-B` (A <= B), numbers or a built-in table
//!   of common names (`http`, `https`, `domain`, `ssh`, `ntp`, ...; no
//!   /etc/services). Without a protocol a port matches TCP, UDP or SCTP;
//!   `tcp port`, `udp port`, `sctp port` restrict it.
//! - Directions for addresses and ports: `src`, `dst`, `src or dst` (the
//!   default), `src and dst`. A direction without a kind means `host`
//!   (`src 10.0.0.1`).
//! - `proto N` / `ip proto N` / `ip6 proto N` (a number or a name: `tcp`,
//!   `\tcp`, `gre`, `esp`, ...), `ether proto N` (an ethertype, `0x88cc`, or
//!   `ip`, `ip6`, `arp`, `rarp`).
//! - `vlan`, `vlan N`; `less N` (frame length <= N), `greater N` (>= N).
//! - `and` / `&&`, `or` / `||`, `not` / `!`, parentheses. Keywords are
//!   case-insensitive. Numbers are decimal or `0x` hexadecimal.
//!
//! Precedence is tcpdump's, which is not C's: `not` binds tightest, and
//! `and` and `or` have the **same** precedence and associate to the left,
//! so `a or b and c` means `(a or b) and c`. Use parentheses.
//!
//! Qualifier inheritance, as in tcpdump: an id standing alone after `and` /
//! `or` reuses the qualifiers of the previous primitive, so `host 10.0.0.1
//! or 10.0.0.2`, `port 80 or 443` and `tcp dst port http or https` mean
//! what they say. The negation is not inherited: `not host a and b` is
//! `not host a and host b`.
//!
//! # VLANs
//!
//! The packet parser looks through up to two VLAN tags (802.1Q, 802.1ad and
//! 0x9100), so every primitive sees the frame as if it were untagged:
//! `tcp port 80` matches untagged, tagged and QinQ frames alike, which is
//! what an operator watching a SPAN port wants. This is a deliberate
//! difference from libpcap, where a primitive after `vlan` looks 4 bytes
//! further and one without `vlan` only matches untagged frames. `vlan`
//! matches a frame with at least one tag. `vlan N` matches when **either**
//! of the (up to two) tags has ID N, outer or inner. So `vlan N` matches
//! every frame libpcap's would (libpcap checks the outermost tag, and after
//! one `vlan` the next one), and `vlan 10 and vlan 20` matches QinQ frames
//! with 10 and 20 in either order. Frames with a third tag are not looked
//! into. VLAN IDs are not part of the flow hash.
//!
//! # Fragments
//!
//! Protocol tests (`tcp`, `ip proto 17`, ...) match every fragment of a
//! datagram: IPv4 fragments all carry the protocol, and for IPv6 the
//! fragment header names it. Port tests match only a first fragment whose
//! transport header is complete, as in libpcap: later fragments carry no
//! ports, so `tcp port 80` does not match them (filter on hosts to keep
//! them). Address tests match all fragments.
//!
//! # Other differences from libpcap
//!
//! - IPv6 extension headers (hop-by-hop, routing, destination options,
//!   fragment, AH) are walked, so `tcp`, `ip6 proto 6` and ports match
//!   behind them. `ip6 proto N` compares the transport after them, so it
//!   never matches those header types themselves (nor 0).
//! - `portrange 90-80` is an error rather than being swapped.
//! - Not supported (a clear error names them): byte-offset expressions
//!   (`ip[9] = 6`), comparisons, `gateway`, host names, `protochain`,
//!   `mpls`, `pppoes`, `geneve`, `inbound`/`outbound`, 802.11 and pflog
//!   qualifiers, the rarely used protocol abbreviations (`igmp`, `esp`, ...:
//!   use `proto N`), and octal numbers (`010` is ten).
//!
//! # Errors
//!
//! A [`FilterError`] names the 1-based column (in characters) of the
//! offending token, or one past the end when something is missing, and
//! [`FilterError::caret`] draws it under the expression.

mod eval;
mod lexer;
mod parser;

use std::str::FromStr;
use std::sync::Arc;

use crate::packet::Packet;
use eval::{AOp, Insn, ACCEPT};

/// How a filter reads frames: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// libpcap's semantics on Ethernet: the same frames as `tcpdump -r`.
    #[default]
    Libpcap,
    /// Looks through up to two VLAN tags and walks IPv6 extension headers
    /// (the `lenient:` prefix).
    Lenient,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Libpcap => "libpcap",
            Mode::Lenient => "lenient",
        }
    }
}

/// A compiled filter. Cheap to clone, `Send + Sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    expr: Arc<str>,
    mode: Mode,
    /// The program; empty for a match-all filter.
    insns: Arc<[Insn]>,
    /// Arithmetic code of the comparisons (`tcp[13] & 2 != 0`).
    code: Arc<[AOp]>,
    entry: u32,
}

/// Splits a mode prefix (`lenient:` or `libpcap:`, case-insensitive, after
/// leading blanks) off `expr`: the mode, and the expression with the
/// prefix replaced by blanks (so that error columns still point into the
/// text as given).
fn split_mode(expr: &str) -> (Mode, String) {
    let trimmed = expr.trim_start();
    let lead = expr.len() - trimmed.len();
    for (prefix, mode) in [("lenient:", Mode::Lenient), ("libpcap:", Mode::Libpcap)] {
        if trimmed
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            let body = format!(
                "{}{}{}",
                &expr[..lead],
                " ".repeat(prefix.len()),
                &trimmed[prefix.len()..]
            );
            return (mode, body);
        }
    }
    (Mode::Libpcap, expr.to_string())
}

/// A filter that does not compile: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    pub message: String,
    /// The expression, as given.
    pub expr: String,
}

impl FilterError {
    /// Two lines for a CLI: the expression, and a caret under the column,
    /// both indented by two spaces:
    ///
    /// ```text
    ///   tcp and prot 6
    ///           ^
    /// ```
    ///
    /// Control characters (tabs, newlines) in the expression are shown as
    /// spaces so that the caret lines up.
    pub fn caret(&self) -> String {
        let line: String = self
            .expr
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let pad = " ".repeat(self.column.saturating_sub(1));
        format!("  {line}\n  {pad}^")
    }
}

/// An error inside the parser, before the expression is attached.
#[derive(Debug)]
struct Error {
    column: usize,
    message: String,
}

impl Error {
    fn new(column: usize, message: String) -> Error {
        Error { column, message }
    }
}

impl Filter {
    /// Compiles `expr`; an empty (or all-blank) expression matches every
    /// frame.
    pub fn compile(expr: &str) -> Result<Filter, FilterError> {
        let (mode, body) = split_mode(expr);
        if body.trim().is_empty() {
            return Ok(Filter {
                expr: expr.into(),
                mode,
                insns: Arc::new([]),
                code: Arc::new([]),
                entry: ACCEPT,
            });
        }
        let (insns, code, entry) = parser::compile(&body, mode).map_err(|e| FilterError {
            column: e.column,
            message: e.message,
            expr: expr.to_string(),
        })?;
        Ok(Filter {
            expr: expr.into(),
            mode,
            insns: insns.into(),
            code: code.into(),
            entry,
        })
    }

    /// A filter that matches every frame (the empty expression).
    pub fn match_all() -> Filter {
        Filter {
            expr: "".into(),
            mode: Mode::Libpcap,
            insns: Arc::new([]),
            code: Arc::new([]),
            entry: ACCEPT,
        }
    }

    /// The expression as given (with its mode prefix, if any).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The mode the expression selected (`lenient:` prefix or not).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True when the expression is empty (matches everything).
    pub fn is_match_all(&self) -> bool {
        self.insns.is_empty()
    }

    /// Parses `frame` and matches it. Prefer [`Filter::matches_packet`]
    /// when the frame is parsed anyway.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.matches_packet(&Packet::parse(frame))
    }

    /// Runs the program over an already parsed frame. No allocation; each
    /// primitive is evaluated at most once.
    pub fn matches_packet(&self, p: &Packet<'_>) -> bool {
        eval::run(&self.insns, &self.code, self.entry, p)
    }
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::match_all()
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::compile(s)
    }
}

#[cfg(test)]
mod tests;
