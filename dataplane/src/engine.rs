//! Starting and stopping the dataplane: preflight, interfaces, queue groups,
//! tasks and worker threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::caps::{self, Cap, CapSet};
use crate::config::Config;
use crate::pipeline::{BridgeTask, CaptureTask, Task};
use crate::stats::{QueueStats, Role, StatsRegistry, StatsSegment};
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
    #[error("{0}")]
    Capabilities(String),
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
            StartError::MissingInterface { .. } | StartError::QueueMismatch { .. } => exit::CONFIG,
            StartError::Xdp(XdpError::NoSuchInterface { .. }) => exit::CONFIG,
            StartError::Capabilities(_) => exit::NOPERM,
            StartError::Xdp(e) if e.is_permission() => exit::NOPERM,
            StartError::Xdp(_) | StartError::Thread { .. } => exit::OSERR,
        }
    }
}

/// A running dataplane. [`Dataplane::stop`] shuts it down in order.
#[derive(Debug)]
pub struct Dataplane {
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    stats: StatsRegistry,
    segment: Arc<StatsSegment>,
    // Dropped last: detaches XDP and releases promiscuous mode.
    interfaces: Vec<Interface>,
}

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

/// Checks, without changing anything, that the configured interfaces exist,
/// the inline queue counts match and the process holds the capabilities.
pub fn preflight(cfg: &Config) -> Result<(), StartError> {
    for (role, ifname) in configured(cfg) {
        if xdp::netdev::ifindex(ifname).is_err() {
            return Err(StartError::MissingInterface {
                role,
                ifname: ifname.to_string(),
            });
        }
    }
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
    }
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
    Ok(())
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
fn create_segment(cfg: &Config, n_queues: usize, n_workers: usize) -> Arc<StatsSegment> {
    let dir = &cfg.state_dir;
    let res = std::fs::create_dir_all(dir)
        .and_then(|()| StatsSegment::create(dir, n_queues, n_workers, new_epoch()));
    match res {
        Ok(seg) => {
            info!(path = %dir.join(shm::FILE_NAME).display(), queues = n_queues, workers = n_workers, "stats segment created");
            seg
        }
        Err(e) => {
            error!(state_dir = %dir.display(), error = %e, "cannot create the stats segment: forwarding continues, but the sidecar cannot see counters; make dataplane.state_dir writable");
            StatsSegment::in_memory(n_queues, n_workers)
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
        preflight(cfg)?;
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
        let segment = create_segment(cfg, n_slots, nthreads);

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
                    tasks.push((
                        format!("bridge-q{q}"),
                        Task::Bridge(BridgeTask::new(group, [c1, c2])),
                    ));
                }
                Plan::Capture(q) => {
                    let iface = passive.as_ref().expect("planned with passive");
                    let members = [Member {
                        iface,
                        queue: q,
                        rx: true,
                        tx: false,
                    }];
                    let group = QueueGroup::open(&members, &cfg.geometry, cfg.xdp_mode)?;
                    info!(queue = q, passive_1 = %iface.name, mode = %group.mode, "passive capture queue bound");
                    let c = slot_for(Role::Passive1, iface, q, group.mode, worker, &mut stats);
                    tasks.push((
                        format!("capture-q{q}"),
                        Task::Capture(CaptureTask::new(group, c)),
                    ));
                }
            }
        }
        let mut interfaces = Vec::new();
        if let Some((i1, i2)) = inline {
            interfaces.push(i1);
            interfaces.push(i2);
        }
        interfaces.extend(passive);

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
        segment.set_state(SegmentState::Running);
        Ok(Dataplane {
            workers,
            stop,
            stats,
            segment,
            interfaces,
        })
    }

    /// Refreshes the segment's heartbeat; call a few times a second.
    pub fn heartbeat(&self) {
        self.segment.beat();
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
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            // Dropping the returned tasks closes their sockets.
            drop(w.join());
        }
        for i in self.interfaces {
            info!(ifname = %i.name, "detaching XDP program");
            drop(i);
        }
        // The file stays, so the sidecar can still read the final counters.
        self.segment.set_state(SegmentState::Stopped);
        self.stats
    }
}
