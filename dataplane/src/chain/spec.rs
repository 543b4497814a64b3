//! The chain spec: what an operator declares (in `[chain]` or through
//! `Admin.SetChain`), its validation, and its persistence in `state_dir`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tapline_proto::v1;

/// Most hops a chain may have.
pub const MAX_HOPS: usize = tapline_proto::limits::MAX_HOPS;
/// Longest hop name, in bytes (it is stored in the stats segment).
pub const MAX_NAME_LEN: usize = tapline_proto::limits::MAX_HOP_NAME_BYTES;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = tapline_proto::limits::MAX_IFNAME_BYTES;
/// File of the persisted chain inside `state_dir`.
pub const FILE_NAME: &str = "chain.json";
/// Mode of the file: only the dataplane reads it.
pub const FILE_MODE: u32 = 0o600;
/// Largest persisted chain read (a chain of `MAX_HOPS` hops is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// What happens to a hop's traffic while the hop is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum FailureAction {
    /// Fail open: the traffic goes around the tool.
    #[default]
    Bypass,
    /// Fail closed: the traffic is dropped.
    Drop,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Bypass => "bypass",
            FailureAction::Drop => "drop",
        }
    }

    pub fn to_proto(self) -> v1::FailureAction {
        match self {
            FailureAction::Bypass => v1::FailureAction::Bypass,
            FailureAction::Drop => v1::FailureAction::Drop,
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
            match v1::FailureAction::try_from(v) {
                Ok(v1::FailureAction::Unspecified) => None,
                Ok(v1::FailureAction::Bypass) => Some(FailureAction::Bypass),
                Ok(v1::FailureAction::Drop) => Some(FailureAction::Drop),
                Err(_) => {
                    issues.push(Issue::new(
                        field,
                        format!("unknown failure action {v}: use FAILURE_ACTION_BYPASS or FAILURE_ACTION_DROP"),
                    ));
                    None
                }
            }
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
    /// (loopback, the default route's interface, a routable address;
    /// see [`crate::xdp::netdev::unfit_reason`]), `None` when it is.
    fn unfit(&self, name: &str) -> Option<String>;
}

/// The real machine: interfaces of this network namespace.
#[derive(Debug, Clone)]
pub struct Host {
    pub reserved: Vec<(String, &'static str)>,
    pub inline_queues: u32,
    /// `[chain] allowed_interfaces`: fit as tool ports despite a default
    /// route or a routable address.
    pub allowed: Vec<String>,
}

impl Environment for Host {
    fn queues(&self, name: &str) -> Option<u32> {
        crate::xdp::netdev::ifindex(name).ok()?;
        Some(crate::xdp::netdev::rx_queue_count(name).unwrap_or(1))
    }

    fn reserved(&self) -> Vec<(String, &'static str)> {
        self.reserved.clone()
    }

    fn inline_queues(&self) -> u32 {
        self.inline_queues
    }

    fn unfit(&self, name: &str) -> Option<String> {
        crate::xdp::netdev::unfit_reason(name, &self.allowed)
    }
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

/// The chain as persisted in `state_dir/chain.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// Format of this file.
    pub format: u32,
    /// `Chain.generation` of `spec`.
    pub generation: u64,
    /// When `spec` was accepted (Unix ns).
    pub updated_at_unix_ns: u64,
    pub spec: ChainSpec,
}

const FORMAT: u32 = 1;

impl Persisted {
    pub fn new(generation: u64, updated_at_unix_ns: u64, spec: ChainSpec) -> Persisted {
        Persisted {
            format: FORMAT,
            generation,
            updated_at_unix_ns,
            spec,
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the persisted chain; `Ok(None)` when there is none.
pub fn load(state_dir: &Path) -> Result<Option<Persisted>, String> {
    use std::io::Read;
    let p = path(state_dir);
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is not a regular file of at most {MAX_FILE_BYTES} bytes",
            p.display()
        ));
    }
    let mut text = String::new();
    f.take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let v: Persisted = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a valid chain file: {e}", p.display()))?;
    if v.format != FORMAT {
        return Err(format!(
            "{} has format {}, this build reads {FORMAT}",
            p.display(),
            v.format
        ));
    }
    Ok(Some(v))
}

/// Writes the chain atomically: a temporary file, fsync, rename over the
/// old one, fsync of the directory. A crash leaves the old or the new file,
/// never a mix.
pub fn save(state_dir: &Path, v: &Persisted) -> std::io::Result<()> {
    let p = path(state_dir);
    let tmp = state_dir.join(format!(".{FILE_NAME}.tmp"));
    let mut text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    text.push('\n');
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // A temporary file left by an older build may be more open.
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)?;
    std::fs::File::open(state_dir)?.sync_all()
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
    fn persistence_round_trips_atomically() {
        let dir = std::env::temp_dir().join(format!("tapline-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        let v = Persisted::new(
            7,
            1_800_000_000_000_000_000,
            ChainSpec {
                hops: vec![hop("ids", "t1a", "t1b")],
                default_on_failure: FailureAction::Drop,
            },
        );
        save(&dir, &v).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(v));
        assert!(!dir.join(format!(".{FILE_NAME}.tmp")).exists());
        std::fs::write(path(&dir), "{ not json").unwrap();
        assert!(load(&dir).unwrap_err().contains("not a valid chain file"));
        std::fs::write(path(&dir), vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(load(&dir)
            .unwrap_err()
            .contains("not a regular file of at most"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
