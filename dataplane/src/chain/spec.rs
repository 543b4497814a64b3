//! The chain spec: what an operator declares (in `[chain]` or through
//! `Admin.SetChain`) and its validation, from `tapline-config`
//! ([`tapline_config::chain`]); here the real machine it is validated
//! against ([`Host`]) and its persistence in `state_dir`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tapline_config::chain::{ChainSpec, Environment};

/// File of the persisted chain inside `state_dir`.
pub(crate) const FILE_NAME: &str = "chain.json";
/// Mode of the file: only the dataplane reads it.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Largest persisted chain read (a chain of `MAX_HOPS` hops is a few KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// The real machine: interfaces of this network namespace.
#[derive(Debug, Clone)]
pub(crate) struct Host {
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
pub(crate) fn save(state_dir: &Path, v: &Persisted) -> std::io::Result<()> {
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
    use tapline_config::chain::{FailureAction, HopSpec};

    fn hop(name: &str, a: &str, b: &str) -> HopSpec {
        HopSpec {
            name: name.into(),
            a: a.into(),
            b: b.into(),
            on_failure: None,
        }
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
