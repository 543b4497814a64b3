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
//! # Modes
//!
//! By default a filter has libpcap's semantics on Ethernet (DLT_EN10MB):
//! every primitive becomes the tree of field tests libpcap's `gencode.c`
//! generates, with its fixed offsets (`vlan` moves those that follow by 4
//! bytes), evaluated like its unoptimized BPF program: a load beyond the
//! frame rejects the packet. `tests/filter_tcpdump.rs` proves the same
//! frames as `tcpdump -r` over a generated corpus. An expression starting
//! with `lenient:` selects the lenient mode: primitives look through up to
//! two VLAN tags and walk IPv6 extension headers (tests over the parsed
//! [`Packet`]). The language and the differences are described in
//! docs/config.md ("Filters").
//!
//! Precedence is tcpdump's, which is not C's: `not` binds tightest, and
//! `and` and `or` have the **same** precedence and associate to the left,
//! so `a or b and c` means `(a or b) and c`. An id standing alone after
//! `and` / `or` reuses the qualifiers of the previous primitive
//! (`port 80 or 443`).
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
