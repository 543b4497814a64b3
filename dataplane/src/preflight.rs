//! Checks before the dataplane changes anything (`--check` runs them
//! alone): the interfaces exist and are fit for their roles, the inline
//! queue counts match, the initial chain (persisted or configured) is
//! valid, the MTUs fit the UMEM frames, the UMEMs fit the memory limit, the
//! capabilities are there; and the `state_dir` lock taken first at start.

use tracing::warn;

use crate::caps::{self, Cap, CapSet};
use crate::chain::spec::{self, Persisted};
use crate::error::StartError;
use crate::stats::Role;
use crate::xdp;
use tapline_config::chain::Issue;
use tapline_config::Config;

/// The configured ports with their roles.
pub(crate) fn configured(cfg: &Config) -> Vec<(Role, &str)> {
    let mut v = Vec::new();
    if let Some(p) = cfg.passive() {
        v.push((Role::Passive1, p.as_str()));
    }
    if let Some(pair) = cfg.inline() {
        v.push((Role::Inline1, pair.side1.as_str()));
        v.push((Role::Inline2, pair.side2.as_str()));
    }
    v
}

/// The chain the dataplane starts with, chosen and validated by
/// [`preflight`]: the one persisted in `state_dir` if there is one (a
/// restarted dataplane resumes where it was), else `[chain]`.
#[derive(Debug, Clone)]
pub struct InitialChain {
    /// "persisted" or "configuration" (logged).
    pub source: &'static str,
    pub persisted: Persisted,
}

/// What [`preflight`] found out.
#[derive(Debug)]
pub struct Preflight {
    /// The validated initial chain (with an inline pair).
    pub chain: Option<InitialChain>,
}

/// What chain validation needs to know about this dataplane's ports.
pub(crate) fn chain_host(cfg: &Config, inline_queues: u32) -> spec::Host {
    let mut reserved = Vec::new();
    if let Some(pair) = cfg.inline() {
        reserved.push((pair.side1.clone(), Role::Inline1.as_str()));
        reserved.push((pair.side2.clone(), Role::Inline2.as_str()));
    }
    if let Some(p) = cfg.passive() {
        reserved.push((p.clone(), Role::Passive1.as_str()));
    }
    for g in &cfg.output_groups {
        for m in &g.members {
            reserved.push((m.clone(), "an output group member"));
        }
    }
    spec::Host {
        reserved,
        inline_queues,
        allowed: cfg.chain_allowed.clone(),
    }
}

fn join_issues(issues: &[Issue], prefix: &str) -> String {
    issues
        .iter()
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Chooses the initial chain and validates it like an API update. Anything
/// wrong is fatal: a dataplane never runs with a chain other than the one
/// it was given (an empty chain would forward around every fail-closed
/// tool), and never forgets a persisted chain and its generation.
fn initial_chain(cfg: &Config, host: &spec::Host) -> Result<InitialChain, StartError> {
    let file = spec::path(&cfg.state_dir);
    let chosen = match spec::load(&cfg.state_dir) {
        Ok(Some(p)) => InitialChain {
            source: "persisted",
            persisted: p,
        },
        Ok(None) => InitialChain {
            source: "configuration",
            persisted: Persisted::new(1, tapline_segment::unix_ns(), cfg.chain.clone()),
        },
        Err(e) => {
            return Err(StartError::InvalidChain(format!(
                "{e}; the dataplane does not start rather than lose the chain and its generation: restore {f}, or remove it to start from [chain] at generation 1",
                f = file.display()
            )))
        }
    };
    let (errors, _) = tapline_config::chain::validate(&chosen.persisted.spec, host);
    if errors.is_empty() {
        return Ok(chosen);
    }
    Err(StartError::InvalidChain(match chosen.source {
        "persisted" => format!(
            "the persisted chain {f} (generation {g}) is invalid: {issues}; the dataplane does not start without its chain: fix the interfaces, or remove {f} to start from [chain] at generation 1",
            f = file.display(),
            g = chosen.persisted.generation,
            issues = join_issues(&errors, ""),
        ),
        _ => format!(
            "{}; the dataplane does not start without its chain: fix [chain]",
            join_issues(&errors, "chain.")
        ),
    }))
}

/// Checks, without changing anything, that the configured interfaces exist
/// and are fit for their roles, the inline queue counts match, the initial
/// chain is valid and the process holds the capabilities.
pub fn preflight(cfg: &Config) -> Result<Preflight, StartError> {
    for (role, ifname) in configured(cfg) {
        if xdp::netdev::ifindex(ifname).is_err() {
            return Err(StartError::MissingInterface {
                role,
                ifname: ifname.to_string(),
            });
        }
    }
    for (gi, g) in cfg.output_groups.iter().enumerate() {
        for (mi, m) in g.members.iter().enumerate() {
            if xdp::netdev::ifindex(m).is_err() {
                return Err(StartError::MissingMember {
                    group: g.name.clone(),
                    ifname: m.clone(),
                });
            }
            if let Some(reason) = xdp::netdev::unfit_reason(m, &g.allowed) {
                return Err(StartError::UnfitMember {
                    group: g.name.clone(),
                    group_index: gi,
                    member_index: mi,
                    reason,
                });
            }
        }
    }
    let mut chain = None;
    if let Some(pair) = cfg.inline() {
        let q1 = xdp::netdev::rx_queue_count(&pair.side1).unwrap_or(1);
        let q2 = xdp::netdev::rx_queue_count(&pair.side2).unwrap_or(1);
        if q1 != q2 {
            return Err(StartError::QueueMismatch {
                side1: pair.side1.clone(),
                q1,
                side2: pair.side2.clone(),
                q2,
            });
        }
        chain = Some(initial_chain(cfg, &chain_host(cfg, q1))?);
    }
    check_mtus(cfg, chain.as_ref())?;
    check_memory(cfg)?;
    match CapSet::current() {
        Ok(set) => {
            let missing = set.missing_required();
            if !missing.is_empty() {
                return Err(StartError::Capabilities(caps::describe_missing(&missing)));
            }
            if !set.has(Cap::IpcLock) {
                warn!(
                    "CAP_IPC_LOCK is missing (needed to {}): UMEM registration is limited by RLIMIT_MEMLOCK",
                    caps::ipc_lock_purpose()
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot read capabilities; continuing"),
    }
    Ok(Preflight { chain })
}

/// Bytes the kernel keeps in front of a received frame in a UMEM frame
/// (`XDP_PACKET_HEADROOM`; the UMEM's own headroom is 0).
const XDP_PACKET_HEADROOM: u32 = 256;
/// Ethernet header and two VLAN tags (QinQ) on top of the MTU.
const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// The largest MTU whose frames (with two VLAN tags) a UMEM frame of
/// `frame_size` bytes holds. A longer frame is dropped by the kernel and
/// counted in `kernel_rx_dropped` of the port.
pub fn max_mtu(frame_size: u32) -> u32 {
    frame_size.saturating_sub(XDP_PACKET_HEADROOM + L2_OVERHEAD)
}

/// Every port the dataplane receives on: configured ports and the initial
/// chain's tool ports, with their role.
fn receiving_ports(cfg: &Config, chain: Option<&InitialChain>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = configured(cfg)
        .into_iter()
        .map(|(r, n)| (n.to_string(), r.as_str().to_string()))
        .collect();
    if let Some(c) = chain {
        for h in &c.persisted.spec.hops {
            v.push((h.a.clone(), format!("tool port of hop {}", h.name)));
            v.push((h.b.clone(), format!("tool port of hop {}", h.name)));
        }
    }
    v
}

/// Refuses ports whose MTU allows frames a UMEM frame cannot hold: the
/// kernel would drop them (counted, but the operator asked for them).
fn check_mtus(cfg: &Config, chain: Option<&InitialChain>) -> Result<(), StartError> {
    let max = max_mtu(cfg.geometry.frame_size);
    for (ifname, role) in receiving_ports(cfg, chain) {
        if let Ok(mtu) = xdp::netdev::mtu(&ifname) {
            if mtu > max {
                return Err(StartError::Mtu {
                    ifname,
                    role,
                    mtu,
                    frame_size: cfg.geometry.frame_size,
                    max_mtu: max,
                    max_mtu_4k: max_mtu(4096),
                });
            }
        }
    }
    Ok(())
}

/// Memory the dataplane will take at start: one UMEM per queue group
/// (inline and passive queues) and the recorders' queues.
fn memory_request(cfg: &Config) -> (u64, u64, u64) {
    let queues = |n: &str| u64::from(xdp::netdev::rx_queue_count(n).unwrap_or(1));
    let groups = cfg.inline().map_or(0, |p| queues(&p.side1))
        + cfg.passive().map(String::as_str).map_or(0, queues);
    let umem = groups * u64::from(cfg.geometry.frame_count) * u64::from(cfg.geometry.frame_size);
    let recorders: u64 = cfg
        .recorders
        .iter()
        .map(|r| r.settings.queue_bytes as u64)
        .sum();
    (groups, umem, recorders)
}

/// Refuses a memory request the container's memory limit (or the machine)
/// cannot hold, before anything is attached: past the limit the kernel
/// would OOM-kill the dataplane while it registers its UMEMs.
fn check_memory(cfg: &Config) -> Result<(), StartError> {
    let (groups, umem, recorders) = memory_request(cfg);
    let Some(limit) = crate::memlimit::available() else {
        return Ok(());
    };
    const MIB: u64 = 1 << 20;
    if umem + recorders <= limit.available_bytes {
        return Ok(());
    }
    Err(StartError::Memory(format!(
        "xdp.frame_count: the dataplane needs {} MiB ({groups} queue group(s) x {} frames x {} bytes of UMEM{}) but only {} MiB are available under {} (limit {} MiB): lower xdp.frame_count (or the recorders' queue_size), or raise the container's memory limit",
        (umem + recorders).div_ceil(MIB),
        cfg.geometry.frame_count,
        cfg.geometry.frame_size,
        if recorders > 0 {
            format!(", plus {} MiB of recorder queues", recorders.div_ceil(MIB))
        } else {
            String::new()
        },
        limit.available_bytes / MIB,
        limit.source.display(),
        limit.limit_bytes / MIB,
    )))
}

/// Name of the lock file in `state_dir`.
pub const LOCK_FILE: &str = "lock";

/// Takes `state_dir/lock` (`flock(LOCK_EX | LOCK_NB)`), held until the
/// process exits, so two dataplanes never share a state directory (the
/// second would replace the first one's segment and command socket). A
/// lock held by another process is fatal; a state directory that cannot be
/// written is not (the segment and socket fail the same way, and the
/// dataplane still forwards, as before).
pub(crate) fn lock_state_dir(
    dir: &std::path::Path,
) -> Result<Option<crate::sys::process::FileLock>, StartError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK_FILE);
    let opened = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
    });
    let f = match opened {
        Ok(f) => f,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot create the state_dir lock; make dataplane.state_dir writable");
            return Ok(None);
        }
    };
    use crate::sys::process::{lock_exclusive, LockError};
    match lock_exclusive(f) {
        Ok(mut lock) => {
            // The holder's pid, for the message of a dataplane refused.
            let _ = lock.set_len(0);
            let _ = writeln!(&mut *lock, "{}", std::process::id());
            Ok(Some(lock))
        }
        Err(LockError::Held(mut f)) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(StartError::StateDirLocked(format!(
                "dataplane.state_dir {} is in use: another tapline-dataplane (pid {}) holds its lock {}; give each dataplane its own state_dir",
                dir.display(),
                if holder.is_empty() { "unknown" } else { holder },
                path.display()
            )))
        }
        Err(LockError::Failed(e)) => Err(StartError::StateDirLocked(format!(
            "cannot lock {} (flock): {e}",
            path.display()
        ))),
    }
}
