//! Starting and stopping the dataplane: preflight, interfaces, queue groups,
//! tasks and worker threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::chain::control::{ChainControl, ControlSettings, QueueHandle, ToolSlots};
use crate::chain::heartbeat::TagKey;
use crate::chain::runtime::ChainShared;
use crate::chain::spec::MAX_HOPS;
use crate::command::{CommandSettings, ControlThread};
use crate::config::Config;
use crate::pipeline::capture::{GroupOutput, RecorderOutput};
use crate::pipeline::chain::{Heartbeats, TaskUpdate};
use crate::pipeline::{CaptureTask, ChainTask, Task};
use crate::record::Recorder;
use crate::stats::{OutputInfo, OutputKind, QueueStats, Role, StatsRegistry, StatsSegment};
use crate::survive::{InlineFallback, LinkState};
use crate::tap::{PortNames, TapPort, TapRegistry};
use crate::worker::{Worker, WorkerSlots};
use crate::xdp::shm::{self, QueueInfo, SegmentState};
use crate::xdp::{Interface, Member, PortMode, QueueGroup, XdpError};

use crate::links::{LinkMonitor, LinkThread};
use crate::preflight::{chain_host, lock_state_dir};
pub use crate::preflight::{max_mtu, preflight, InitialChain, Preflight, LOCK_FILE};

pub use crate::error::{exit, StartError};

/// A running dataplane. [`Dataplane::stop`] shuts it down in order.
#[derive(Debug)]
pub struct Dataplane {
    /// The inline pair's kernel fallback and its hand-off to the keeper.
    fallback: Option<InlineFallback>,
    /// Link-state propagation across the inline pair (`fallback.link_state`).
    link_state: Option<LinkState>,
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
    lock: std::sync::Mutex<Option<crate::sys::process::FileLock>>,
    /// Heartbeats so far (the state directory is looked at every
    /// [`STATE_DIR_CHECK_BEATS`]).
    beats: std::sync::atomic::AtomicU64,
    /// Set once the state directory was taken by another dataplane while
    /// it was gone: then it is left alone.
    state_dir_lost: AtomicBool,
}

/// Heartbeats between two looks at the state directory (about a second).
const STATE_DIR_CHECK_BEATS: u64 = 10;

/// Raises RLIMIT_MEMLOCK where allowed. Failing is normal without
/// CAP_SYS_RESOURCE (EPERM) and not fatal: with CAP_IPC_LOCK the UMEM is not
/// charged against the limit anyway.
fn raise_memlock() {
    if let Err(e) = crate::sys::process::raise_memlock_limit() {
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
        // The inline ports carry the kernel fallback (taken over from the
        // link keeper when a previous dataplane left it running).
        let mut fallback = None;
        let inline = match &cfg.inline {
            Some(pair) => {
                let (fb, [i1, i2]) = InlineFallback::open(cfg, pair)?;
                fallback = Some(fb);
                Some((i1, i2))
            }
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
                    let lease = fallback.as_ref().and_then(|f| f.lease(q));
                    tasks.push((
                        format!("chain-q{q}"),
                        Task::Chain(
                            ChainTask::new(
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
                            )
                            .with_lease(lease),
                        ),
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
                if let Some(fb) = &fallback {
                    control.set_fallback(fb.maps.clone());
                }
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
        let link_state = match &cfg.inline {
            Some(pair) if cfg.fallback.link_state => Some(
                LinkState::spawn([pair.side1.clone(), pair.side2.clone()]).map_err(|source| {
                    StartError::Thread {
                        name: "tapline-linkstate".into(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        segment.set_state(SegmentState::Running);
        Ok(Dataplane {
            fallback,
            link_state,
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

    /// The inline pair's kernel fallback, if an inline pair is configured.
    pub fn fallback(&self) -> Option<&InlineFallback> {
        self.fallback.as_ref()
    }

    /// Refreshes the segment's heartbeat and keeps the link keeper holding
    /// the inline links; call a few times a second. About once a second it
    /// also checks that the state directory still holds this dataplane's
    /// segment, and re-creates it otherwise.
    pub fn heartbeat(&mut self) {
        self.segment.beat();
        if let Some(f) = self.fallback.as_mut() {
            f.maintain();
            self.segment.set_fallback(&f.snapshot());
        }
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
        if let Some(l) = self.link_state {
            let n = l.stop();
            info!(propagations = n, "link-state propagation stopped");
        }
        // The kernel takes the inline traffic before the workers stop, so
        // nothing is left in their rings (fallback.on_exit = "keep").
        if let Some(f) = &self.fallback {
            f.hand_over();
        }
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
        if let Some(f) = self.fallback {
            let c = f.counters();
            info!(
                inline_1_forwarded = c[0].forwarded,
                inline_1_dropped = c[0].dropped,
                inline_2_forwarded = c[1].forwarded,
                inline_2_dropped = c[1].dropped,
                lease_expiries = c[0].lease_expiries + c[1].lease_expiries,
                takeovers = f.maps.takeovers(),
                "kernel fallback counters"
            );
            self.segment.set_fallback(&f.snapshot());
            f.finish();
        }
        for i in self.interfaces {
            info!(ifname = %i.name, "closing XDP program (the link keeper may keep it attached)");
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
