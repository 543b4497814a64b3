//! Starting and stopping the dataplane: preflight, interfaces, queue groups,
//! tasks and worker threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::caps::{self, Cap, CapSet};
use crate::chain::control::{
    ChainControl, CommandSettings, ControlSettings, ControlThread, QueueHandle, ToolSlots,
};
use crate::chain::heartbeat::TagKey;
use crate::chain::runtime::ChainShared;
use crate::chain::spec::{self, Issue, Persisted, MAX_HOPS};
use crate::config::Config;
use crate::pipeline::capture::{GroupOutput, RecorderOutput};
use crate::pipeline::chain::{Heartbeats, TaskUpdate};
use crate::pipeline::{CaptureTask, ChainTask, Task};
use crate::record::Recorder;
use crate::stats::{OutputInfo, OutputKind, QueueStats, Role, StatsRegistry, StatsSegment};
use crate::tap::{PortNames, TapPort, TapRegistry};
use crate::worker::{Worker, WorkerSlots};
use crate::xdp::shm::{self, QueueInfo, SegmentState};
use crate::xdp::{self, Interface, Member, PortMode, QueueGroup, XdpError};

/// Exit codes of `tapline-dataplane` (sysexits.h).
pub mod exit {
    /// Bad configuration or a configured interface that does not exist.
    pub const CONFIG: u8 = 64;
    /// A required capability is missing.
    pub const NOPERM: u8 = 77;
    /// The kernel refused an operation for another reason.
    pub const OSERR: u8 = 71;
}

/// Why the dataplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("interface {ifname:?} ({role}) not found in this network namespace: check [interfaces] {role} and the pod's network attachments")]
    MissingInterface { role: Role, ifname: String },
    #[error("inline-1 {side1:?} has {q1} queues but inline-2 {side2:?} has {q2}: bridged queues are paired one to one; set equal channel counts (ethtool -L IF combined N)")]
    QueueMismatch {
        side1: String,
        q1: u32,
        side2: String,
        q2: u32,
    },
    #[error("interface {ifname:?} (member of output group {group:?}) not found in this network namespace: check output_group members and the pod's network attachments")]
    MissingMember { group: String, ifname: String },
    #[error("output group {group:?} member {ifname:?} has {queues} queues but passive-1 has {needed}: each capture queue transmits on the member queue of the same number; give the member at least as many channels (ethtool -L IF combined N) or passive-1 fewer")]
    MemberQueues {
        group: String,
        ifname: String,
        queues: u32,
        needed: u32,
    },
    #[error("xdp.frame_count {frames} leaves each of the {members} output group members only {share} frames in flight (at least {min} are needed): raise xdp.frame_count")]
    MemberShare {
        frames: u32,
        members: usize,
        share: u32,
        min: u32,
    },
    #[error("output_group[{group_index}].members[{member_index}]: {reason} (group {group:?})")]
    UnfitMember {
        group: String,
        group_index: usize,
        member_index: usize,
        reason: String,
    },
    #[error("{0}")]
    InvalidChain(String),
    #[error("{0}")]
    Memory(String),
    #[error("interface {ifname:?} ({role}) has MTU {mtu}, but an xdp.frame_size of {frame_size} holds frames of at most {max_mtu} bytes of MTU (with two VLAN tags): lower the MTU of {ifname} to {max_mtu} or less, or raise xdp.frame_size (4096 holds an MTU of {max_mtu_4k})")]
    Mtu {
        ifname: String,
        role: String,
        mtu: u32,
        frame_size: u32,
        max_mtu: u32,
        max_mtu_4k: u32,
    },
    #[error("{0}")]
    StateDirLocked(String),
    #[error("{0}")]
    Capabilities(String),
    #[error("{0}")]
    Recorder(String),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("starting worker thread {name} failed: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::MissingInterface { .. }
            | StartError::QueueMismatch { .. }
            | StartError::MissingMember { .. }
            | StartError::MemberQueues { .. }
            | StartError::MemberShare { .. }
            | StartError::UnfitMember { .. }
            | StartError::InvalidChain(_)
            | StartError::Memory(_)
            | StartError::Mtu { .. } => exit::CONFIG,
            StartError::StateDirLocked(_) => exit::OSERR,
            StartError::Xdp(XdpError::NoSuchInterface { .. }) => exit::CONFIG,
            StartError::Capabilities(_) => exit::NOPERM,
            StartError::Xdp(e) if e.is_permission() => exit::NOPERM,
            StartError::Xdp(_) | StartError::Thread { .. } | StartError::Recorder(_) => exit::OSERR,
        }
    }
}

/// A running dataplane. [`Dataplane::stop`] shuts it down in order.
#[derive(Debug)]
pub struct Dataplane {
    /// The chain's control thread (command socket); stopped first.
    control: Option<ControlThread>,
    workers: Vec<Worker>,
    /// Watches the output members' links; stopped with the workers.
    links: Option<LinkThread>,
    /// Writer threads of the recorders; stopped after the workers, so
    /// everything the workers queued reaches the disk.
    recorders: Vec<Recorder>,
    stop: Arc<AtomicBool>,
    stats: StatsRegistry,
    segment: Arc<StatsSegment>,
    // Dropped last: detaches XDP and releases promiscuous mode.
    interfaces: Vec<Interface>,
    /// `state_dir/lock`, held while the dataplane runs.
    lock: std::sync::Mutex<Option<nix::fcntl::Flock<std::fs::File>>>,
    /// Heartbeats so far (the state directory is looked at every
    /// [`STATE_DIR_CHECK_BEATS`]).
    beats: std::sync::atomic::AtomicU64,
    /// Set once the state directory was taken by another dataplane while
    /// it was gone: then it is left alone.
    state_dir_lost: AtomicBool,
}

/// Heartbeats between two looks at the state directory (about a second).
const STATE_DIR_CHECK_BEATS: u64 = 10;

fn configured(cfg: &Config) -> Vec<(Role, &str)> {
    let mut v = Vec::new();
    if let Some(p) = &cfg.passive {
        v.push((Role::Passive1, p.as_str()));
    }
    if let Some(pair) = &cfg.inline {
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
fn chain_host(cfg: &Config, inline_queues: u32) -> spec::Host {
    let mut reserved = Vec::new();
    if let Some(pair) = &cfg.inline {
        reserved.push((pair.side1.clone(), Role::Inline1.as_str()));
        reserved.push((pair.side2.clone(), Role::Inline2.as_str()));
    }
    if let Some(p) = &cfg.passive {
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
            persisted: Persisted::new(1, shm::unix_ns(), cfg.chain.clone()),
        },
        Err(e) => {
            return Err(StartError::InvalidChain(format!(
                "{e}; the dataplane does not start rather than lose the chain and its generation: restore {f}, or remove it to start from [chain] at generation 1",
                f = file.display()
            )))
        }
    };
    let (errors, _) = spec::validate(&chosen.persisted.spec, host);
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
    if let Some(pair) = &cfg.inline {
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
    let groups = cfg.inline.as_ref().map_or(0, |p| queues(&p.side1))
        + cfg.passive.as_deref().map_or(0, queues);
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
fn lock_state_dir(
    dir: &std::path::Path,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, StartError> {
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
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // The holder's pid, for the message of a dataplane refused.
            let _ = lock.set_len(0);
            let _ = writeln!(&mut *lock, "{}", std::process::id());
            Ok(Some(lock))
        }
        Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
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
        Err((_, e)) => Err(StartError::StateDirLocked(format!(
            "cannot lock {} (flock): {e}",
            path.display()
        ))),
    }
}

/// Raises RLIMIT_MEMLOCK where allowed. Failing is normal without
/// CAP_SYS_RESOURCE (EPERM) and not fatal: with CAP_IPC_LOCK the UMEM is not
/// charged against the limit anyway.
fn raise_memlock() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        debug!(error = %e, "setrlimit(RLIMIT_MEMLOCK) failed; relying on CAP_IPC_LOCK");
    }
}

/// A fresh segment epoch: random, so a restarted dataplane never reuses one.
fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    shm::unix_ns() ^ (u64::from(std::process::id()) << 32)
}

/// Creates the stats segment in `state_dir`, or, if that fails, an
/// in-memory one so forwarding still starts (the sidecar then reports the
/// dataplane as not serving, and the error says why).
fn create_segment(cfg: &Config, layout: &shm::Layout) -> Arc<StatsSegment> {
    let (n_queues, n_workers) = (layout.n_queues, layout.n_workers);
    let dir = &cfg.state_dir;
    let res = std::fs::create_dir_all(dir)
        .and_then(|()| StatsSegment::create_with(dir, layout, new_epoch()));
    match res {
        Ok(seg) => {
            info!(path = %dir.join(shm::FILE_NAME).display(), queues = n_queues, workers = n_workers, "stats segment created");
            seg
        }
        Err(e) => {
            error!(state_dir = %dir.display(), error = %e, "cannot create the stats segment: forwarding continues, but the sidecar cannot see counters; make dataplane.state_dir writable");
            StatsSegment::in_memory_with(layout)
        }
    }
}

/// What one task will do, decided before anything is bound.
enum Plan {
    Bridge(u32),
    Capture(u32),
}

impl Dataplane {
    /// Preflights, attaches to every configured interface, binds every
    /// queue and starts the workers. On error everything attached so far is
    /// released again.
    pub fn start(cfg: &Config) -> Result<Dataplane, StartError> {
        let pre = preflight(cfg)?;
        // Before anything visible changes: the state directory of another
        // running dataplane is left alone.
        let lock = lock_state_dir(&cfg.state_dir)?;
        raise_memlock();
        let inline = match &cfg.inline {
            Some(pair) => Some((
                Interface::open(&pair.side1, cfg.xdp_mode, cfg.promiscuous)?,
                Interface::open(&pair.side2, cfg.xdp_mode, cfg.promiscuous)?,
            )),
            None => None,
        };
        let passive = match &cfg.passive {
            Some(p) => Some(Interface::open(p, cfg.xdp_mode, cfg.promiscuous)?),
            None => None,
        };
        // Output group members, in configuration order (group by group):
        // TX only, each capture queue on the member queue of its number.
        let mut members: Vec<(usize, Interface)> = Vec::new();
        if let Some(p) = &passive {
            for (gi, g) in cfg.output_groups.iter().enumerate() {
                for m in &g.members {
                    let iface = Interface::open(m, cfg.xdp_mode, false)?;
                    if iface.queues < p.queues {
                        return Err(StartError::MemberQueues {
                            group: g.name.clone(),
                            ifname: m.clone(),
                            queues: iface.queues,
                            needed: p.queues,
                        });
                    }
                    members.push((gi, iface));
                }
            }
        }
        let n_groups = cfg.output_groups.len();
        let n_recorders = cfg.recorders.len();
        let capture_queues = passive.as_ref().map_or(0, |p| p.queues as usize);

        let mut plan = Vec::new();
        if let Some((i1, _)) = &inline {
            plan.extend((0..i1.queues).map(Plan::Bridge));
        }
        if let Some(p) = &passive {
            plan.extend((0..p.queues).map(Plan::Capture));
        }
        let n_slots: usize = plan
            .iter()
            .map(|p| match p {
                Plan::Bridge(_) => 2,
                Plan::Capture(_) => 1,
            })
            .sum();
        // One thread per configured CPU (tasks round robin), or one
        // unpinned thread per task.
        let nthreads = if cfg.workers.cpus.is_empty() {
            plan.len()
        } else {
            cfg.workers.cpus.len().min(plan.len())
        };
        let inline_queues = inline.as_ref().map_or(0, |(i1, _)| i1.queues as usize);
        let tool_slots = ToolSlots {
            base: n_slots,
            queues: inline_queues,
        };
        let max_hops = if inline.is_some() { MAX_HOPS } else { 0 };
        let segment = create_segment(
            cfg,
            &shm::Layout {
                n_queues: n_slots + ToolSlots::count(max_hops, inline_queues),
                n_workers: nthreads,
                max_hops,
                n_hop_writers: inline_queues,
                n_outputs: n_groups + members.len() + n_recorders,
                n_output_writers: capture_queues,
                max_recorders: n_recorders,
                max_taps: cfg.tap.max_concurrent,
            },
        );
        // Live taps: every task's ports get a `TapPort` of this registry.
        let taps = TapRegistry::new(cfg.tap.clone(), &segment, cfg.geometry.frame_size);
        describe_outputs(&segment, cfg, &members);
        let links = LinkMonitor::new(&members, cfg, segment.clone());
        let mut recorders = Vec::new();
        for (i, r) in cfg.recorders.iter().enumerate() {
            let slot = segment.recorder_slot(i);
            slot.describe(&r.settings.name, &r.settings.dir.display().to_string());
            let rec = Recorder::start(r.settings.clone(), slot)
                .map_err(|e| StartError::Recorder(e.to_string()))?;
            info!(recorder = %r.settings.name, dir = %r.settings.dir.display(), "recorder started");
            recorders.push(rec);
        }
        let chain_shared = Arc::new(ChainShared::default());
        let key = TagKey::random();
        let (events_tx, events_rx) = crossbeam::channel::bounded(1024);
        let mut queue_handles: Vec<QueueHandle> = Vec::new();

        let mut tasks: Vec<(String, Task)> = Vec::new();
        let mut stats = StatsRegistry::default();
        let mut next_slot = 0usize;
        let mut slot_for = |role: Role,
                            iface: &Interface,
                            queue: u32,
                            mode: PortMode,
                            worker: usize,
                            stats: &mut StatsRegistry| {
            let i = next_slot;
            next_slot += 1;
            segment.describe_queue(
                i,
                &QueueInfo {
                    role: role.as_str().to_string(),
                    ifname: iface.name.clone(),
                    queue,
                    mode: mode.to_string(),
                    worker: worker as u32,
                    hop: String::new(),
                },
            );
            let slot = segment.queue_slot(i);
            stats.queues.push(QueueStats {
                role,
                ifname: iface.name.clone(),
                queue,
                mode,
                counters: slot.clone(),
            });
            slot
        };
        for (task_index, p) in plan.iter().enumerate() {
            // Tasks are dealt to threads round robin, below.
            let worker = task_index % nthreads;
            match *p {
                Plan::Bridge(q) => {
                    let (i1, i2) = inline.as_ref().expect("planned with inline");
                    let members = [
                        Member {
                            iface: i1,
                            queue: q,
                            rx: true,
                            tx: true,
                        },
                        Member {
                            iface: i2,
                            queue: q,
                            rx: true,
                            tx: true,
                        },
                    ];
                    let group = QueueGroup::open(&members, &cfg.geometry, cfg.xdp_mode)?;
                    info!(queue = q, inline_1 = %i1.name, inline_2 = %i2.name, mode = %group.mode, "inline bridge queue bound");
                    let c1 = slot_for(Role::Inline1, i1, q, group.mode, worker, &mut stats);
                    let c2 = slot_for(Role::Inline2, i2, q, group.mode, worker, &mut stats);
                    let owner = group.sockets[0]
                        .fd()
                        .expect("kernel socket")
                        .try_clone_to_owned()
                        .map_err(|e| XdpError::from_os("dup(AF_XDP socket)", &i1.name, e, None))?;
                    let (utx, urx) = crossbeam::channel::bounded::<TaskUpdate>(4);
                    queue_handles.push(QueueHandle {
                        queue: q,
                        umem: group.umem.clone(),
                        owner,
                        mode: group.mode,
                        worker: worker as u32,
                        updates: utx,
                    });
                    let heartbeats = (q == 0)
                        .then(|| Heartbeats::new(cfg.heartbeat, key.clone(), events_tx.clone()));
                    tasks.push((
                        format!("chain-q{q}"),
                        Task::Chain(ChainTask::new(
                            q,
                            group,
                            [c1, c2],
                            [
                                TapPort::new(taps.clone(), &i1.name, q),
                                TapPort::new(taps.clone(), &i2.name, q),
                            ],
                            segment.clone(),
                            chain_shared.clone(),
                            key.clone(),
                            Some(urx),
                            heartbeats,
                        )),
                    ));
                }
                Plan::Capture(q) => {
                    let iface = passive.as_ref().expect("planned with passive");
                    let mut ports = vec![Member {
                        iface,
                        queue: q,
                        rx: true,
                        tx: false,
                    }];
                    ports.extend(members.iter().map(|(_, m)| Member {
                        iface: m,
                        queue: q,
                        rx: false,
                        tx: true,
                    }));
                    let group = QueueGroup::open(&ports, &cfg.geometry, cfg.xdp_mode)?;
                    info!(queue = q, passive_1 = %iface.name, members = members.len(), mode = %group.mode, "passive capture queue bound");
                    let c = slot_for(Role::Passive1, iface, q, group.mode, worker, &mut stats);
                    let writer = q as usize;
                    let member_slots = (0..members.len())
                        .map(|k| {
                            (
                                links.flags[k].clone(),
                                segment.output_slot(n_groups + k, writer),
                            )
                        })
                        .collect();
                    let mut first = 0;
                    let groups = cfg
                        .output_groups
                        .iter()
                        .enumerate()
                        .map(|(gi, g)| {
                            let idx = (first..first + g.members.len()).collect();
                            first += g.members.len();
                            GroupOutput {
                                filter: g.filter.clone(),
                                snaplen: g.snaplen,
                                members: idx,
                                counters: segment.output_slot(gi, writer),
                            }
                        })
                        .collect();
                    let recs = cfg
                        .recorders
                        .iter()
                        .zip(&recorders)
                        .enumerate()
                        .map(|(ri, (r, rec))| RecorderOutput {
                            filter: r.filter.clone(),
                            producer: rec.producer(),
                            counters: segment.output_slot(n_groups + members.len() + ri, writer),
                        })
                        .collect();
                    let mut task = CaptureTask::new(group, c, member_slots, groups, recs);
                    task.set_tap(TapPort::new(taps.clone(), &iface.name, q));
                    if let Some(share) = task.member_share() {
                        if share < CaptureTask::MIN_MEMBER_FRAMES {
                            return Err(StartError::MemberShare {
                                frames: cfg.geometry.frame_count,
                                members: members.len(),
                                share,
                                min: CaptureTask::MIN_MEMBER_FRAMES,
                            });
                        }
                    }
                    tasks.push((format!("capture-q{q}"), Task::Capture(task)));
                }
            }
        }
        let mut interfaces = Vec::new();
        if let Some((i1, i2)) = inline {
            interfaces.push(i1);
            interfaces.push(i2);
        }
        interfaces.extend(passive);
        interfaces.extend(members.into_iter().map(|(_, m)| m));

        let mut per_thread: Vec<(Vec<String>, Vec<Task>)> =
            (0..nthreads).map(|_| (Vec::new(), Vec::new())).collect();
        for (i, (name, task)) in tasks.into_iter().enumerate() {
            let slot = &mut per_thread[i % nthreads];
            slot.0.push(name);
            slot.1.push(task);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for (i, (names, tasks)) in per_thread.into_iter().enumerate() {
            let cpu = cfg.workers.cpus.get(i).copied();
            let name = format!("tapline-w{i}");
            let slots = WorkerSlots {
                counters: segment.worker_slot(i),
                latency: segment.latency_slot(i),
            };
            stats.workers.push(slots.counters.clone());
            info!(worker = name, tasks = ?names, cpu = ?cpu, "starting worker");
            match Worker::spawn(
                name.clone(),
                tasks,
                cpu,
                cfg.workers.clone(),
                slots,
                stop.clone(),
            ) {
                Ok(w) => workers.push(w),
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    for w in workers {
                        w.join();
                    }
                    return Err(StartError::Thread { name, source });
                }
            }
        }
        // The chain: the initial one is applied before start() returns, so
        // traffic never passes a configured fail-closed tool unchecked.
        let chain = match &cfg.inline {
            Some(_) => {
                let settings = ControlSettings {
                    state_dir: cfg.state_dir.clone(),
                    xdp_mode: cfg.xdp_mode,
                    promiscuous: cfg.promiscuous,
                    geometry: cfg.geometry,
                    drain: std::time::Duration::from_millis(u64::from(cfg.chain_drain_ms)),
                    allowed_uids: cfg.command_uids.clone(),
                };
                let env = chain_host(cfg, inline_queues as u32);
                let mut control = ChainControl::new(
                    settings,
                    env,
                    queue_handles,
                    segment.clone(),
                    tool_slots,
                    chain_shared,
                    events_rx,
                    taps.clone(),
                    max_hops,
                );
                let initial = pre.chain.clone().expect("validated with the inline pair");
                control.start(initial.source, initial.persisted);
                Some(control)
            }
            None => None,
        };
        // The command socket (chain requests, taps) runs in every mode.
        let command = CommandSettings {
            state_dir: cfg.state_dir.clone(),
            allowed_uids: cfg.command_uids.clone(),
            ports: PortNames {
                passive: cfg.passive.clone(),
                inline: cfg
                    .inline
                    .as_ref()
                    .map(|p| (p.side1.clone(), p.side2.clone())),
            },
            taps: taps.clone(),
        };
        let control = match ControlThread::spawn(chain, command) {
            Ok(t) => Some(t),
            Err(source) => {
                stop.store(true, Ordering::Relaxed);
                for w in workers {
                    w.join();
                }
                return Err(StartError::Thread {
                    name: "tapline-ctl".into(),
                    source,
                });
            }
        };
        let links = links
            .spawn(stop.clone())
            .map_err(|source| StartError::Thread {
                name: "tapline-links".into(),
                source,
            })?;
        segment.set_state(SegmentState::Running);
        Ok(Dataplane {
            control,
            workers,
            links,
            recorders,
            stop,
            stats,
            segment,
            interfaces,
            lock: std::sync::Mutex::new(lock),
            beats: std::sync::atomic::AtomicU64::new(0),
            state_dir_lost: AtomicBool::new(false),
        })
    }

    /// Refreshes the segment's heartbeat; call a few times a second.
    /// About once a second it also checks that the state directory still
    /// holds this dataplane's segment, and re-creates it otherwise.
    pub fn heartbeat(&self) {
        self.segment.beat();
        if self
            .beats
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(STATE_DIR_CHECK_BEATS)
        {
            self.restore_state_dir();
        }
    }

    /// Re-creates a deleted (or emptied) state directory: the lock, the
    /// stats segment (same counters, same epoch), the command socket and
    /// the persisted chain, so the sidecar sees the dataplane again
    /// without a restart. Retried every second while it fails; given up
    /// (logged once) if another dataplane took the directory meanwhile.
    fn restore_state_dir(&self) {
        if self.segment.is_published() || self.state_dir_lost.load(Ordering::Relaxed) {
            return;
        }
        let Some(dir) = self
            .segment
            .path()
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf())
        else {
            return;
        };
        warn!(state_dir = %dir.display(), "the stats segment is gone from state_dir (deleted or emptied): re-creating it with the lock, the command socket and the persisted chain");
        {
            let mut lock = self.lock.lock().expect("state lock");
            let ours = lock.as_ref().and_then(|l| l.metadata().ok());
            let on_disk = std::fs::metadata(dir.join(LOCK_FILE)).ok();
            let still_ours = matches!((&ours, &on_disk), (Some(a), Some(b)) if {
                use std::os::unix::fs::MetadataExt;
                (a.dev(), a.ino()) == (b.dev(), b.ino())
            });
            if !still_ours {
                match lock_state_dir(&dir) {
                    Ok(Some(l)) => *lock = Some(l),
                    Ok(None) => return,
                    Err(e) => {
                        error!("{e}; this dataplane keeps forwarding but no longer publishes its state there");
                        self.state_dir_lost.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
        if let Err(e) = self.segment.republish() {
            warn!(state_dir = %dir.display(), error = %e, "cannot re-publish the stats segment; retrying every second");
            return;
        }
        if let Some(c) = &self.control {
            c.republish();
        }
        info!(path = %dir.join(shm::FILE_NAME).display(), "stats segment re-published");
    }

    pub fn segment(&self) -> &Arc<StatsSegment> {
        &self.segment
    }

    pub fn stats(&self) -> &StatsRegistry {
        &self.stats
    }

    /// Stops the workers, closes every socket, detaches XDP and releases
    /// promiscuous mode. Returns the final counters.
    pub fn stop(self) -> StatsRegistry {
        // The command socket first, so no chain change races the shutdown.
        let chain = self.control.and_then(ControlThread::stop);
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            // Dropping the returned tasks closes their sockets; capture
            // tasks first hand their last packets to the recorders.
            for mut t in w.join() {
                if let Task::Capture(c) = &mut t {
                    c.flush_recorders();
                }
            }
        }
        if let Some(l) = self.links {
            l.join();
        }
        for r in self.recorders {
            r.stop();
        }
        // Then the tools' interfaces (detaching their XDP programs).
        drop(chain);
        for i in self.interfaces {
            info!(ifname = %i.name, "detaching XDP program");
            drop(i);
        }
        // The file stays, so the sidecar can still read the final counters.
        self.segment.set_state(SegmentState::Stopped);
        // Last: the state directory is free for the next dataplane.
        drop(self.lock);
        self.stats
    }
}

/// Describes the output slots: groups, then every member (group by group),
/// then the recorders' filter stages.
fn describe_outputs(segment: &StatsSegment, cfg: &Config, members: &[(usize, Interface)]) {
    let n_groups = cfg.output_groups.len();
    let expr = |f: &Option<crate::filter::Filter>| {
        f.as_ref().map_or(String::new(), |f| f.expr().to_string())
    };
    for (gi, g) in cfg.output_groups.iter().enumerate() {
        segment.describe_output(
            gi,
            &OutputInfo {
                kind: OutputKind::Group,
                parent: gi as u32,
                name: g.name.clone(),
                ifname: String::new(),
                filter: expr(&g.filter),
                snaplen: g.snaplen,
            },
        );
    }
    for (k, (gi, m)) in members.iter().enumerate() {
        segment.describe_output(
            n_groups + k,
            &OutputInfo {
                kind: OutputKind::Member,
                parent: *gi as u32,
                name: m.name.clone(),
                ifname: m.name.clone(),
                filter: String::new(),
                snaplen: cfg.output_groups[*gi].snaplen,
            },
        );
    }
    for (ri, r) in cfg.recorders.iter().enumerate() {
        segment.describe_output(
            n_groups + members.len() + ri,
            &OutputInfo {
                kind: OutputKind::Recorder,
                parent: ri as u32,
                name: r.settings.name.clone(),
                ifname: String::new(),
                filter: expr(&r.filter),
                snaplen: r.settings.snaplen,
            },
        );
    }
}

/// How often the link monitor looks at the members' links.
const LINK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A configured port the link monitor watches: carrier (published in the
/// segment's `links_down`, logged once per change) and MTU (logged once
/// when it rises above what a UMEM frame holds).
#[derive(Debug)]
struct PortWatch {
    role: Role,
    ifname: String,
    bit: u64,
    up: bool,
    /// Consecutive polls that saw the opposite of `up`.
    flipped: u32,
    mtu_too_big: bool,
}

/// Polls a new link state must persist before it counts: the operational
/// state flickers for a moment when XDP is attached (veth), and a blip
/// shorter than this is not worth a log line or a health change.
const LINK_DEBOUNCE_POLLS: u32 = 3;

/// Watches links: the output members' (admin state and carrier; one flag
/// per member for the capture tasks: a member whose link is down gets no
/// frames, its share is dropped and counted, until it is up again) and the
/// configured ports' (carrier, for health, and MTU).
#[derive(Debug)]
struct LinkMonitor {
    names: Vec<String>,
    flags: Vec<Arc<AtomicBool>>,
    ports: Vec<PortWatch>,
    segment: Arc<StatsSegment>,
    max_mtu: u32,
}

/// The running monitor thread.
#[derive(Debug)]
struct LinkThread(std::thread::JoinHandle<()>);

impl LinkThread {
    fn join(self) {
        let _ = self.0.join();
    }
}

impl PortWatch {
    /// Looks at the link; logs changes. Returns whether it is up.
    fn poll(&mut self, max_mtu: u32) -> bool {
        // Gone (deleted): as good as down.
        let up = xdp::netdev::link_up(&self.ifname).unwrap_or_default();
        if up == self.up {
            self.flipped = 0;
        } else {
            self.flipped += 1;
        }
        if self.flipped >= LINK_DEBOUNCE_POLLS {
            self.flipped = 0;
            self.up = up;
            if up {
                info!(role = %self.role, ifname = %self.ifname, "carrier restored: the port forwards again");
            } else {
                warn!(role = %self.role, ifname = %self.ifname, "carrier lost (link down): nothing crosses this port until it comes back; health reports it NOT_SERVING");
            }
        }
        if let Ok(mtu) = xdp::netdev::mtu(&self.ifname) {
            let too_big = mtu > max_mtu;
            if too_big != self.mtu_too_big {
                self.mtu_too_big = too_big;
                if too_big {
                    warn!(role = %self.role, ifname = %self.ifname, mtu, max_mtu, "MTU above what a UMEM frame holds: longer frames are dropped by the kernel (counted in kernel_rx_dropped); lower the MTU or raise xdp.frame_size");
                } else {
                    info!(role = %self.role, ifname = %self.ifname, mtu, max_mtu, "MTU fits the UMEM frames again");
                }
            }
        }
        self.up
    }
}

impl LinkMonitor {
    fn new(
        members: &[(usize, Interface)],
        cfg: &Config,
        segment: Arc<StatsSegment>,
    ) -> LinkMonitor {
        let names: Vec<String> = members.iter().map(|(_, m)| m.name.clone()).collect();
        let flags = names
            .iter()
            .map(|n| Arc::new(AtomicBool::new(xdp::netdev::link_up(n).unwrap_or(true))))
            .collect();
        let bit = |role: Role| match role {
            Role::Inline1 => shm::LINK_DOWN_INLINE_1,
            Role::Inline2 => shm::LINK_DOWN_INLINE_2,
            _ => shm::LINK_DOWN_PASSIVE_1,
        };
        let ports = configured(cfg)
            .into_iter()
            .map(|(role, ifname)| PortWatch {
                role,
                ifname: ifname.to_string(),
                bit: bit(role),
                // Until seen otherwise for a few polls: a port down at
                // start is logged once it has stayed down.
                up: true,
                flipped: 0,
                mtu_too_big: false,
            })
            .collect();
        LinkMonitor {
            names,
            flags,
            ports,
            segment,
            max_mtu: max_mtu(cfg.geometry.frame_size),
        }
    }

    /// Polls the configured ports once and publishes their state.
    fn poll_ports(&mut self) {
        let mut down = 0;
        for p in &mut self.ports {
            if !p.poll(self.max_mtu) {
                down |= p.bit;
            }
        }
        self.segment.set_links_down(down);
    }

    /// Starts the thread (none without members or ports).
    fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<Option<LinkThread>> {
        if self.names.is_empty() && self.ports.is_empty() {
            return Ok(None);
        }
        for (n, f) in self.names.iter().zip(&self.flags) {
            if !f.load(Ordering::Relaxed) {
                warn!(ifname = %n, "output member link is down: its share of the traffic is dropped until it comes up");
            }
        }
        self.poll_ports();
        let h = std::thread::Builder::new()
            .name("tapline-links".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(LINK_POLL);
                    self.poll_ports();
                    for (n, f) in self.names.iter().zip(&self.flags) {
                        // Gone (deleted): as good as down.
                        let up = xdp::netdev::link_up(n).unwrap_or_default();
                        if f.swap(up, Ordering::Relaxed) != up {
                            if up {
                                info!(ifname = %n, "output member link is up");
                            } else {
                                warn!(ifname = %n, "output member link is down: its share of the traffic is dropped until it comes up");
                            }
                        }
                    }
                }
            })?;
        Ok(Some(LinkThread(h)))
    }
}
