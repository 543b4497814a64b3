//! The chain of tools: what an operator declares (in `[chain]` or through
//! `Admin.SetChain`), its conversion from and to the API, and its
//! validation against the machine (through [`Environment`]); the dataplane
//! provides the real machine and persists the spec.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tapline_proto::v1;

use crate::deployment::Deployment;
use crate::error::{err, ConfigError};
use crate::names::Named;
use crate::raw::RawChain;

/// Most hops a chain may have.
pub const MAX_HOPS: usize = tapline_proto::limits::MAX_HOPS;
/// Longest hop name, in bytes (it is stored in the stats segment).
pub const MAX_NAME_LEN: usize = tapline_proto::limits::MAX_HOP_NAME_BYTES;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = tapline_proto::limits::MAX_IFNAME_BYTES;
/// Bounds of `chain.drain_ms`.
const DRAIN_MS: std::ops::RangeInclusive<u32> = 10..=60_000;

named_enum! {
    /// What happens to a hop's traffic while the hop is down. The API's
    /// `FailureAction` values are these names, upper-cased, after
    /// `FAILURE_ACTION_` (a test checks both directions).
    #[derive(Default)]
    #[repr(u8)]
    pub enum FailureAction: "a failure action" {
        /// Fail open: the traffic goes around the tool.
        #[default]
        Bypass = "bypass" ("fail open"),
        /// Fail closed: the traffic is dropped.
        Drop = "drop" ("fail closed"),
    }
}

/// Prefix of the API's names of [`FailureAction`] values.
const PROTO_PREFIX: &str = "FAILURE_ACTION_";

impl FailureAction {
    /// The API's value: `FAILURE_ACTION_` and the name, upper-cased.
    pub fn to_proto(self) -> v1::FailureAction {
        let name = format!("{PROTO_PREFIX}{}", self.as_str().to_ascii_uppercase());
        v1::FailureAction::from_str_name(&name).unwrap_or(v1::FailureAction::Unspecified)
    }

    /// The action of an API value: `Ok(None)` for `FAILURE_ACTION_UNSPECIFIED`
    /// (the chain's default), `Err` with a message for a number the API
    /// does not define or that names no action.
    pub fn from_proto(v: i32) -> Result<Option<FailureAction>, String> {
        let unknown = || {
            let names: Vec<String> = FailureAction::ALL
                .iter()
                .map(|a| a.to_proto().as_str_name().to_string())
                .collect();
            format!("unknown failure action {v}: use {}", names.join(" or "))
        };
        match v1::FailureAction::try_from(v) {
            Ok(v1::FailureAction::Unspecified) => Ok(None),
            Ok(p) => p
                .as_str_name()
                .strip_prefix(PROTO_PREFIX)
                .and_then(|n| FailureAction::from_name(&n.to_ascii_lowercase()).ok())
                .map(Some)
                .ok_or_else(unknown),
            Err(_) => Err(unknown()),
        }
    }
}

/// One hop: a tool reached through interface `a` (facing inline-1) and `b`
/// (facing inline-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopSpec {
    pub name: String,
    pub a: String,
    pub b: String,
    /// `None`: the chain's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailureAction>,
}

/// The whole chain, in order from inline-1 to inline-2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    #[serde(default)]
    pub hops: Vec<HopSpec>,
    #[serde(default)]
    pub default_on_failure: FailureAction,
}

impl ChainSpec {
    /// The failure action in force for hop `i`.
    pub fn action_of(&self, i: usize) -> FailureAction {
        self.hops[i].on_failure.unwrap_or(self.default_on_failure)
    }

    pub fn to_proto(&self) -> v1::ChainSpec {
        v1::ChainSpec {
            hops: self
                .hops
                .iter()
                .map(|h| v1::HopSpec {
                    name: h.name.clone(),
                    a: h.a.clone(),
                    b: h.b.clone(),
                    on_failure: h
                        .on_failure
                        .map_or(v1::FailureAction::Unspecified, FailureAction::to_proto)
                        .into(),
                })
                .collect(),
            default_on_failure: self.default_on_failure.to_proto().into(),
        }
    }

    /// Converts an API spec; unknown enum numbers are validation issues.
    pub fn from_proto(p: &v1::ChainSpec) -> Result<ChainSpec, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut action = |field: String, v: i32| -> Option<FailureAction> {
            FailureAction::from_proto(v).unwrap_or_else(|message| {
                issues.push(Issue::new(field, message));
                None
            })
        };
        let default_on_failure =
            action("default_on_failure".into(), p.default_on_failure).unwrap_or_default();
        let hops = p
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| HopSpec {
                name: h.name.clone(),
                a: h.a.clone(),
                b: h.b.clone(),
                on_failure: action(format!("hops[{i}].on_failure"), h.on_failure),
            })
            .collect();
        if issues.is_empty() {
            Ok(ChainSpec {
                hops,
                default_on_failure,
            })
        } else {
            Err(issues)
        }
    }
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Path of the field, e.g. `hops[1].a`.
    pub field: String,
    pub message: String,
}

impl Issue {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn to_proto(&self) -> v1::ValidationIssue {
        v1::ValidationIssue {
            field: self.field.clone(),
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// What validation needs to know about the machine.
pub trait Environment {
    /// Number of RX queues of interface `name`, `None` if it does not exist
    /// in the dataplane's network namespace.
    fn queues(&self, name: &str) -> Option<u32>;
    /// Interfaces the dataplane already uses in another role (passive-1,
    /// inline-1, inline-2), with that role.
    fn reserved(&self) -> Vec<(String, &'static str)>;
    /// Queues of inline-1 (and inline-2): every tool port needs as many.
    fn inline_queues(&self) -> u32;
    /// Why interface `name` (which exists) is not fit to be a tool port
    /// (loopback, the default route's interface, a routable address),
    /// `None` when it is.
    fn unfit(&self, name: &str) -> Option<String>;
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks `spec` against the machine. Returns the errors (the spec cannot be
/// applied) and the warnings.
pub fn validate(spec: &ChainSpec, env: &dyn Environment) -> (Vec<Issue>, Vec<Issue>) {
    let mut errors = Vec::new();
    let warnings = Vec::new();
    if spec.hops.len() > MAX_HOPS {
        errors.push(Issue::new(
            "hops",
            format!("{} hops: a chain has at most {MAX_HOPS}", spec.hops.len()),
        ));
    }
    let reserved = env.reserved();
    let want_queues = env.inline_queues();
    let mut names = HashSet::new();
    let mut ifaces: Vec<(String, String)> = Vec::new();
    for (i, h) in spec.hops.iter().enumerate() {
        if !valid_name(&h.name) {
            errors.push(Issue::new(
                format!("hops[{i}].name"),
                format!(
                    "{:?} is not a valid hop name: use 1 to {MAX_NAME_LEN} lowercase letters, digits and '-', not starting or ending with '-'",
                    h.name
                ),
            ));
        } else if !names.insert(h.name.as_str()) {
            errors.push(Issue::new(
                format!("hops[{i}].name"),
                format!("duplicate hop name {:?}: hop names must be unique", h.name),
            ));
        }
        for (side, ifname) in [("a", &h.a), ("b", &h.b)] {
            let field = format!("hops[{i}].{side}");
            if ifname.is_empty() || ifname.len() > MAX_IFNAME_LEN || ifname.contains('/') {
                errors.push(Issue::new(
                    field,
                    format!("{ifname:?} is not a valid interface name"),
                ));
                continue;
            }
            if let Some((_, role)) = reserved.iter().find(|(n, _)| n == ifname) {
                errors.push(Issue::new(
                    field,
                    format!("interface {ifname:?} is already the dataplane's {role}: a tool needs interfaces of its own"),
                ));
                continue;
            }
            if let Some((other, _)) = ifaces.iter().find(|(_, n)| n == ifname) {
                errors.push(Issue::new(
                    field,
                    format!("interface {ifname:?} is already used by {other}: each tool interface belongs to one hop side"),
                ));
                continue;
            }
            ifaces.push((format!("hops[{i}].{side}"), ifname.clone()));
            match env.queues(ifname) {
                None => errors.push(Issue::new(
                    field,
                    format!("interface {ifname:?} not found in the dataplane's network namespace: check the tool's network attachment"),
                )),
                Some(_) if env.unfit(ifname).is_some() => errors.push(Issue::new(
                    field,
                    env.unfit(ifname).unwrap_or_default(),
                )),
                Some(q) if q != want_queues => errors.push(Issue::new(
                    field,
                    format!("interface {ifname:?} has {q} queues but inline-1 has {want_queues}: tool queues are paired one to one with inline queues; set equal channel counts (ethtool -L {ifname} combined {want_queues})"),
                )),
                Some(_) => {}
            }
        }
    }
    (errors, warnings)
}

/// `[chain]` into the initial chain and the drain time (the allowed tool
/// interfaces are checked last, as they always were). Names and interfaces are checked like an API update
/// ([`validate`]) when the dataplane starts; here only what needs no
/// machine.
pub(crate) fn validate_chain(
    ch: &RawChain,
    deployment: &Deployment,
) -> Result<(ChainSpec, u32), ConfigError> {
    let action = |field: &str, v: &str| {
        v.parse::<FailureAction>()
            .map_err(|e| err(field, e.to_string()))
    };
    let mut hops = Vec::new();
    for (i, h) in ch.hops.iter().enumerate() {
        let on_failure = match &h.on_failure {
            Some(v) => Some(action(&format!("chain.hops[{i}].on_failure"), v)?),
            None => None,
        };
        hops.push(HopSpec {
            name: h.name.clone(),
            a: h.a.clone(),
            b: h.b.clone(),
            on_failure,
        });
    }
    let chain = ChainSpec {
        hops,
        default_on_failure: action("chain.default_on_failure", &ch.default_on_failure)?,
    };
    if !chain.hops.is_empty() && deployment.inline().is_none() {
        return Err(err(
            "chain.hops",
            "a chain needs the inline pair: set [interfaces] inline-1 and inline-2, or remove the hops",
        ));
    }
    if chain.hops.len() > MAX_HOPS {
        return Err(err(
            "chain.hops",
            format!(
                "{} hops: a chain has at most {}",
                chain.hops.len(),
                MAX_HOPS
            ),
        ));
    }
    if !DRAIN_MS.contains(&ch.drain_ms) {
        return Err(err(
            "chain.drain_ms",
            format!("{} must be from 10 to 60000", ch.drain_ms),
        ));
    }
    Ok((chain, ch.drain_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeEnv;
    impl Environment for FakeEnv {
        fn queues(&self, name: &str) -> Option<u32> {
            match name {
                "t1a" | "t1b" | "t2a" | "t2b" | "lo" => Some(1),
                "mq" => Some(4),
                _ => None,
            }
        }
        fn reserved(&self) -> Vec<(String, &'static str)> {
            vec![("i1".into(), "inline-1"), ("i2".into(), "inline-2")]
        }
        fn inline_queues(&self) -> u32 {
            1
        }
        fn unfit(&self, name: &str) -> Option<String> {
            (name == "lo").then(|| format!("interface {name:?} is a loopback interface"))
        }
    }

    fn hop(name: &str, a: &str, b: &str) -> HopSpec {
        HopSpec {
            name: name.into(),
            a: a.into(),
            b: b.into(),
            on_failure: None,
        }
    }

    fn errors(spec: &ChainSpec) -> Vec<String> {
        validate(spec, &FakeEnv)
            .0
            .iter()
            .map(|i| i.to_string())
            .collect()
    }

    #[test]
    fn a_good_chain_validates() {
        let spec = ChainSpec {
            hops: vec![hop("ids", "t1a", "t1b"), hop("fw-2", "t2a", "t2b")],
            default_on_failure: FailureAction::Drop,
        };
        assert!(errors(&spec).is_empty());
        assert_eq!(spec.action_of(0), FailureAction::Drop);
        let back = ChainSpec::from_proto(&spec.to_proto()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn each_problem_names_its_field() {
        let spec = ChainSpec {
            hops: vec![
                hop("ids", "t1a", "nope"),
                hop("ids", "t2a", "t1a"),
                hop("Bad_Name", "i1", "mq"),
            ],
            default_on_failure: FailureAction::Bypass,
        };
        let e = errors(&spec);
        assert!(
            e[0].starts_with("hops[0].b: interface \"nope\" not found"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("hops[1].name: duplicate hop name"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("hops[1].b: interface \"t1a\" is already used by hops[0].a"),
            "{e:?}"
        );
        assert!(e[3].starts_with("hops[2].name: \"Bad_Name\""), "{e:?}");
        assert!(e[4].contains("already the dataplane's inline-1"), "{e:?}");
        assert!(e[5].contains("has 4 queues but inline-1 has 1"), "{e:?}");
        assert_eq!(e.len(), 6);
    }

    #[test]
    fn unfit_interfaces_are_refused() {
        let spec = ChainSpec {
            hops: vec![hop("ids", "lo", "t1b")],
            default_on_failure: FailureAction::Drop,
        };
        let e = errors(&spec);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("hops[0].a: interface \"lo\" is a loopback"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_enum_values_are_issues() {
        let mut p = ChainSpec::default().to_proto();
        p.default_on_failure = 9;
        let e = ChainSpec::from_proto(&p).unwrap_err();
        assert_eq!(e[0].field, "default_on_failure");
    }

    #[test]
    fn failure_actions_map_to_the_api_both_ways() {
        for &a in FailureAction::ALL {
            assert_ne!(a.to_proto(), v1::FailureAction::Unspecified, "{a}");
            assert_eq!(FailureAction::from_proto(a.to_proto().into()), Ok(Some(a)));
        }
        assert_eq!(
            FailureAction::from_proto(v1::FailureAction::Unspecified.into()),
            Ok(None)
        );
        assert_eq!(
            FailureAction::from_proto(9).unwrap_err(),
            "unknown failure action 9: use FAILURE_ACTION_BYPASS or FAILURE_ACTION_DROP"
        );
        assert_eq!(FailureAction::default(), FailureAction::Bypass);
        for &a in FailureAction::ALL {
            assert_eq!(FailureAction::from_index(usize::from(a as u8)), Some(a));
        }
    }
}
