//! `[interfaces]`: what the dataplane runs, as one of three deployments
//! (a passive tap, an inline bridge, or both), never a pair of `Option`s
//! that could hold neither.

use crate::error::{err, ConfigError};
use crate::raw::RawInterfaces;

/// Linux interface names are at most 15 bytes (`IFNAMSIZ - 1`).
pub(crate) const IFNAME_MAX: usize = 15;

/// The inline pair, always complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePair {
    pub side1: String,
    pub side2: String,
}

/// What the dataplane runs. A chain of tools (`[chain] hops`) needs the
/// inline pair; output groups and recorders need passive-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// passive-1 only: capture, output groups, recorders.
    Passive { passive: String },
    /// inline-1 and inline-2 only: the bridge (and its chain of tools).
    Inline { inline: InlinePair },
    /// Both, on three different interfaces.
    PassiveAndInline { passive: String, inline: InlinePair },
}

impl Deployment {
    /// passive-1, if this deployment has it.
    pub fn passive(&self) -> Option<&String> {
        match self {
            Deployment::Passive { passive } | Deployment::PassiveAndInline { passive, .. } => {
                Some(passive)
            }
            Deployment::Inline { .. } => None,
        }
    }

    /// The inline pair, if this deployment has it.
    pub fn inline(&self) -> Option<&InlinePair> {
        match self {
            Deployment::Inline { inline } | Deployment::PassiveAndInline { inline, .. } => {
                Some(inline)
            }
            Deployment::Passive { .. } => None,
        }
    }

    /// Interfaces the deployment uses, with their role (`passive-1`,
    /// `inline-1`, `inline-2`), in `[interfaces]` order.
    pub fn ports(&self) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        if let Some(p) = self.passive() {
            v.push(("passive-1", p.as_str()));
        }
        if let Some(pair) = self.inline() {
            v.push(("inline-1", pair.side1.as_str()));
            v.push(("inline-2", pair.side2.as_str()));
        }
        v
    }
}

/// A Linux interface name: 1 to 15 bytes, no '/', ':', spaces or control
/// characters, not `.` or `..`.
pub(crate) fn check_ifname(field: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(err(
            field,
            format!("{name:?} is not a valid interface name (1 to {IFNAME_MAX} bytes)"),
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(err(
            field,
            format!("{name:?} is not a valid interface name (no '/', ':', spaces or control characters; not . or ..)"),
        ));
    }
    Ok(name.to_string())
}

/// An `allowed_interfaces` list: valid interface names.
pub(crate) fn check_allowed(field: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for (i, n) in names.iter().enumerate() {
        check_ifname(&format!("{field}[{i}]"), n)?;
    }
    Ok(names)
}

fn validate_inline(i: &RawInterfaces) -> Result<Option<InlinePair>, ConfigError> {
    const PAIR: &str = "missing: inline-1 and inline-2 come as a pair; set both or neither";
    match (i.inline_1.as_deref(), i.inline_2.as_deref()) {
        (Some(a), Some(b)) => {
            let side1 = check_ifname("interfaces.inline-1", a)?;
            let side2 = check_ifname("interfaces.inline-2", b)?;
            if side1 == side2 {
                return Err(err(
                    "interfaces.inline-2",
                    format!("{side2:?} is also inline-1: the two inline sides must be different interfaces"),
                ));
            }
            Ok(Some(InlinePair { side1, side2 }))
        }
        (Some(_), None) => Err(err("interfaces.inline-2", PAIR)),
        (None, Some(_)) => Err(err("interfaces.inline-1", PAIR)),
        (None, None) => Ok(None),
    }
}

/// `[interfaces]` into a [`Deployment`].
pub(crate) fn validate_interfaces(i: &RawInterfaces) -> Result<Deployment, ConfigError> {
    let passive = i
        .passive_1
        .as_deref()
        .map(|n| check_ifname("interfaces.passive-1", n))
        .transpose()?;
    let inline = validate_inline(i)?;
    match (passive, inline) {
        (None, None) => Err(err(
            "interfaces",
            "no interface configured: set passive-1, or inline-1 and inline-2, or all three",
        )),
        (Some(passive), None) => Ok(Deployment::Passive { passive }),
        (None, Some(inline)) => Ok(Deployment::Inline { inline }),
        (Some(p), Some(pair)) => {
            if p == pair.side1 || p == pair.side2 {
                return Err(err(
                    "interfaces.passive-1",
                    format!("{p:?} is also an inline side: passive-1 needs its own interface"),
                ));
            }
            Ok(Deployment::PassiveAndInline {
                passive: p,
                inline: pair,
            })
        }
    }
}
