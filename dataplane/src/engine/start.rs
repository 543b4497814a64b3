//! The executing half of starting: open the interfaces, plan
//! ([`super::plan`]), then create the segment, bind the queues, build the
//! tasks and start the threads, in that order. On error everything
//! attached so far is released again (by drop).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};
use tracing::info;

use super::plan::{Discovered, PlannedTask, StartPlan};
use super::{create_segment, describe_outputs, raise_memlock, Dataplane, StartError};
use crate::chain::control::{ChainControl, ControlSettings, QueueHandle};
use crate::chain::heartbeat::TagKey;
use crate::chain::messages::{HopEvent, TaskUpdate};
use crate::chain::runtime::ChainShared;
use crate::command::{CommandSettings, ControlThread};
use crate::links::LinkMonitor;
use crate::logfields::json;
use crate::pipeline::capture::{GroupOutput, RecorderOutput};
use crate::pipeline::chain::Heartbeats;
use crate::pipeline::{CaptureTask, ChainTask, Task};
use crate::preflight::{chain_host, lock_state_dir, preflight, Preflight};
use crate::record::Recorder;
use crate::stats::{QueueStats, Role, StatsRegistry};
use crate::survive::{InlineFallback, LinkState};
use crate::tap::{PortNames, TapPort, TapRegistry};
use crate::worker::{Worker, WorkerSlots};
use crate::xdp::{Interface, Member, PortMode, QueueGroup, XdpError};
use tapline_config::Config;
use tapline_segment::{QueueCounters, Slot, StatsSegment};
use tapline_segment::{QueueInfo, SegmentState};

/// The interfaces, opened with tapline's program attached.
struct Opened {
    /// The inline pair's kernel fallback (taken over from the link keeper
    /// when a previous dataplane left it running).
    fallback: Option<InlineFallback>,
    inline: Option<(Interface, Interface)>,
    passive: Option<Interface>,
    /// Output group members, in configuration order (group by group), with
    /// their group's index.
    members: Vec<(usize, Interface)>,
}

impl Opened {
    fn open(cfg: &Config) -> Result<Opened, StartError> {
        let mut fallback = None;
        let inline = match cfg.inline() {
            Some(pair) => {
                let (fb, [i1, i2]) = InlineFallback::open(cfg, pair)?;
                fallback = Some(fb);
                Some((i1, i2))
            }
            None => None,
        };
        let passive = match cfg.passive() {
            Some(p) => Some(Interface::open(p, cfg.xdp_mode, cfg.promiscuous)?),
            None => None,
        };
        // Members are TX only, each capture queue on the member queue of
        // its number.
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
        Ok(Opened {
            fallback,
            inline,
            passive,
            members,
        })
    }

    fn discovered(&self) -> Discovered {
        Discovered {
            inline_queues: self.inline.as_ref().map(|(i1, _)| i1.queues),
            passive_queues: self.passive.as_ref().map(|p| p.queues),
            members: self.members.len(),
        }
    }

    /// The interfaces, for the dataplane to hold (and drop last).
    fn into_interfaces(self) -> (Option<InlineFallback>, Vec<Interface>) {
        let mut interfaces = Vec::new();
        if let Some((i1, i2)) = self.inline {
            interfaces.push(i1);
            interfaces.push(i2);
        }
        interfaces.extend(self.passive);
        interfaces.extend(self.members.into_iter().map(|(_, m)| m));
        (self.fallback, interfaces)
    }
}

/// What the tasks are built from, and what building them collects.
struct TaskBuilder<'a> {
    cfg: &'a Config,
    segment: &'a Arc<StatsSegment>,
    taps: &'a Arc<TapRegistry>,
    links: &'a LinkMonitor,
    recorders: &'a [Recorder],
    chain_shared: &'a Arc<ChainShared>,
    key: TagKey,
    events: Sender<HopEvent>,
    next_slot: usize,
    stats: StatsRegistry,
    queue_handles: Vec<QueueHandle>,
}

impl TaskBuilder<'_> {
    /// The next queue slot of the segment, described and registered.
    fn slot_for(
        &mut self,
        role: Role,
        iface: &Interface,
        queue: u32,
        mode: PortMode,
        worker: usize,
    ) -> Slot<QueueCounters> {
        let i = self.next_slot;
        self.next_slot += 1;
        self.segment.describe_queue(
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
        let slot = self.segment.queue_slot(i);
        self.stats.queues.push(QueueStats {
            role,
            ifname: iface.name.clone(),
            queue,
            mode,
            counters: slot.clone(),
        });
        slot
    }

    /// Binds inline queue `q` on both ports and builds its chain task.
    fn chain_task(
        &mut self,
        opened: &Opened,
        q: u32,
        worker: usize,
    ) -> Result<(String, Task), StartError> {
        let cfg = self.cfg;
        let (i1, i2) = opened.inline.as_ref().expect("planned with inline");
        let members = [i1, i2].map(|iface| Member {
            iface,
            queue: q,
            rx: true,
            tx: true,
        });
        let group = QueueGroup::open(&members, &cfg.geometry, cfg.xdp_mode)?;
        info!(queue = q, inline_1 = %i1.name, inline_2 = %i2.name, mode = %group.mode, "inline bridge queue bound");
        let c1 = self.slot_for(Role::Inline1, i1, q, group.mode, worker);
        let c2 = self.slot_for(Role::Inline2, i2, q, group.mode, worker);
        let owner = group.sockets[0]
            .fd()
            .expect("kernel socket")
            .try_clone_to_owned()
            .map_err(|e| XdpError::from_os("dup(AF_XDP socket)", &i1.name, e, None))?;
        let (utx, urx) = crossbeam::channel::bounded::<TaskUpdate>(4);
        self.queue_handles.push(QueueHandle {
            queue: q,
            umem: group.umem.clone(),
            owner,
            mode: group.mode,
            worker: worker as u32,
            updates: utx,
        });
        let heartbeats =
            (q == 0).then(|| Heartbeats::new(cfg.heartbeat, self.key.clone(), self.events.clone()));
        let lease = opened.fallback.as_ref().and_then(|f| f.lease(q));
        let task = ChainTask::new(
            q,
            group,
            [c1, c2],
            [
                TapPort::new(self.taps.clone(), &i1.name, q),
                TapPort::new(self.taps.clone(), &i2.name, q),
            ],
            self.segment.clone(),
            self.chain_shared.clone(),
            self.key.clone(),
            Some(urx),
            heartbeats,
        )
        .with_lease(lease);
        Ok((format!("chain-q{q}"), Task::Chain(task)))
    }

    /// Binds capture queue `q` (passive-1 and every member) and builds its
    /// capture task.
    fn capture_task(
        &mut self,
        opened: &Opened,
        q: u32,
        worker: usize,
    ) -> Result<(String, Task), StartError> {
        let cfg = self.cfg;
        let members = &opened.members;
        let n_groups = cfg.output_groups.len();
        let iface = opened.passive.as_ref().expect("planned with passive");
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
        let c = self.slot_for(Role::Passive1, iface, q, group.mode, worker);
        let writer = q as usize;
        let segment = self.segment;
        let member_slots = (0..members.len())
            .map(|k| {
                (
                    self.links.flags[k].clone(),
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
            .zip(self.recorders)
            .enumerate()
            .map(|(ri, (r, rec))| RecorderOutput {
                filter: r.filter.clone(),
                producer: rec.producer(),
                counters: segment.output_slot(n_groups + members.len() + ri, writer),
            })
            .collect();
        let mut task = CaptureTask::new(group, c, member_slots, groups, recs);
        task.set_tap(TapPort::new(self.taps.clone(), &iface.name, q));
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
        Ok((format!("capture-q{q}"), Task::Capture(task)))
    }
}

/// Starts the recorders' writer threads, one per `[[recorder]]`.
fn start_recorders(cfg: &Config, segment: &Arc<StatsSegment>) -> Result<Vec<Recorder>, StartError> {
    let mut recorders = Vec::new();
    for (i, r) in cfg.recorders.iter().enumerate() {
        let slot = segment.recorder_slot(i);
        slot.describe(&r.settings.name, &r.settings.dir.display().to_string());
        let rec = Recorder::start(r.settings.clone(), slot)
            .map_err(|e| StartError::Recorder(e.to_string()))?;
        info!(recorder = %r.settings.name, dir = %r.settings.dir.display(), "recorder started");
        recorders.push(rec);
    }
    Ok(recorders)
}

/// Deals the tasks to the plan's threads and starts them; on a failure the
/// threads started so far are stopped again.
fn spawn_workers(
    cfg: &Config,
    plan: &StartPlan,
    tasks: Vec<(String, Task)>,
    segment: &Arc<StatsSegment>,
    stats: &mut StatsRegistry,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<Worker>, StartError> {
    let mut per_thread: Vec<(Vec<String>, Vec<Task>)> = (0..plan.threads)
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    for (i, (name, task)) in tasks.into_iter().enumerate() {
        let slot = &mut per_thread[plan.worker_of(i)];
        slot.0.push(name);
        slot.1.push(task);
    }
    let mut workers = Vec::new();
    for (i, (names, tasks)) in per_thread.into_iter().enumerate() {
        let cpu = plan.cpu_of(cfg, i);
        let name = format!("tapline-w{i}");
        let slots = WorkerSlots {
            counters: segment.worker_slot(i),
            latency: segment.latency_slot(i),
        };
        stats.workers.push(slots.counters.clone());
        log_worker_start(&name, &names, cpu);
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
                stop_all(stop, workers);
                return Err(StartError::Thread { name, source });
            }
        }
    }
    Ok(workers)
}

/// The `starting worker` record: the task names as a JSON array and the
/// CPU as a JSON number (or `null`: unpinned).
fn log_worker_start(name: &str, tasks: &[String], cpu: Option<usize>) {
    info!(
        worker = name,
        tasks = %json(tasks),
        cpu = %json(&cpu),
        "starting worker"
    );
}

fn stop_all(stop: &AtomicBool, workers: Vec<Worker>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join();
    }
}

/// The chain's control (with an inline pair): the initial chain is applied
/// before `start` returns, so traffic never passes a configured
/// fail-closed tool unchecked.
#[allow(clippy::too_many_arguments)]
fn chain_control(
    cfg: &Config,
    pre: &Preflight,
    plan: &StartPlan,
    queue_handles: Vec<QueueHandle>,
    segment: &Arc<StatsSegment>,
    chain_shared: Arc<ChainShared>,
    events: Receiver<HopEvent>,
    taps: &Arc<TapRegistry>,
    fallback: Option<&InlineFallback>,
) -> Option<ChainControl> {
    cfg.inline()?;
    let settings = ControlSettings {
        state_dir: cfg.state_dir.clone(),
        xdp_mode: cfg.xdp_mode,
        promiscuous: cfg.promiscuous,
        geometry: cfg.geometry,
        drain: std::time::Duration::from_millis(u64::from(cfg.chain_drain_ms)),
        allowed_uids: cfg.command_uids.clone(),
    };
    let env = chain_host(cfg, plan.tool_slots.queues as u32);
    let mut control = ChainControl::new(
        settings,
        env,
        queue_handles,
        segment.clone(),
        plan.tool_slots,
        chain_shared,
        events,
        taps.clone(),
        plan.max_hops,
    );
    if let Some(fb) = fallback {
        control.set_fallback(fb.maps.clone());
    }
    let initial = pre.chain.clone().expect("validated with the inline pair");
    control.start(initial.source, initial.persisted);
    Some(control)
}

/// The command socket's settings (it runs in every mode).
fn command_settings(cfg: &Config, taps: &Arc<TapRegistry>) -> CommandSettings {
    CommandSettings {
        state_dir: cfg.state_dir.clone(),
        allowed_uids: cfg.command_uids.clone(),
        ports: PortNames {
            passive: cfg.passive().cloned(),
            inline: cfg.inline().map(|p| (p.side1.clone(), p.side2.clone())),
        },
        taps: taps.clone(),
    }
}

fn thread_error(name: &str) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Thread {
        name: name.into(),
        source,
    }
}

impl Dataplane {
    /// Preflights, attaches to every configured interface, plans
    /// ([`StartPlan`]), binds every queue and starts the workers. On error
    /// everything attached so far is released again.
    pub fn start(cfg: &Config) -> Result<Dataplane, StartError> {
        let pre = preflight(cfg)?;
        // Before anything visible changes: the state directory of another
        // running dataplane is left alone.
        let lock = lock_state_dir(&cfg.state_dir)?;
        raise_memlock();
        let opened = Opened::open(cfg)?;
        let plan = StartPlan::new(cfg, opened.discovered());
        let segment = create_segment(cfg, &plan.segment);
        // Live taps: every task's ports get a `TapPort` of this registry.
        let taps = TapRegistry::new(cfg.tap.clone(), &segment, cfg.geometry.frame_size);
        describe_outputs(&segment, cfg, &opened.members);
        let links = LinkMonitor::new(&opened.members, cfg, segment.clone());
        let recorders = start_recorders(cfg, &segment)?;
        let chain_shared = Arc::new(ChainShared::default());
        let (events_tx, events_rx) = crossbeam::channel::bounded(1024);
        let mut builder = TaskBuilder {
            cfg,
            segment: &segment,
            taps: &taps,
            links: &links,
            recorders: &recorders,
            chain_shared: &chain_shared,
            key: TagKey::random(),
            events: events_tx,
            next_slot: 0,
            stats: StatsRegistry::default(),
            queue_handles: Vec::new(),
        };
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        for (i, t) in plan.tasks.iter().enumerate() {
            tasks.push(match *t {
                PlannedTask::Bridge(q) => builder.chain_task(&opened, q, plan.worker_of(i))?,
                PlannedTask::Capture(q) => builder.capture_task(&opened, q, plan.worker_of(i))?,
            });
        }
        let (mut stats, queue_handles) = (builder.stats, builder.queue_handles);
        let (fallback, interfaces) = opened.into_interfaces();
        let stop = Arc::new(AtomicBool::new(false));
        let workers = spawn_workers(cfg, &plan, tasks, &segment, &mut stats, &stop)?;
        let chain = chain_control(
            cfg,
            &pre,
            &plan,
            queue_handles,
            &segment,
            chain_shared,
            events_rx,
            &taps,
            fallback.as_ref(),
        );
        let control = match ControlThread::spawn(chain, command_settings(cfg, &taps)) {
            Ok(t) => Some(t),
            Err(source) => {
                stop_all(&stop, workers);
                return Err(thread_error("tapline-ctl")(source));
            }
        };
        let links = links
            .spawn(stop.clone())
            .map_err(thread_error("tapline-links"))?;
        let link_state = match cfg.inline() {
            Some(pair) if cfg.fallback.link_state => Some(
                LinkState::spawn([pair.side1.clone(), pair.side2.clone()])
                    .map_err(thread_error("tapline-linkstate"))?,
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
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `starting worker` record, written by the JSON formatter as
    /// `--log-format json` sets it up: `tasks` is a JSON array (not a string
    /// holding one) and `cpu` a JSON number or null (not Rust's `Some(1)`),
    /// under its target.
    #[test]
    fn worker_start_record_carries_json_values() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tapline_packet::logging::subscriber(
            tapline_packet::logging::LogFormat::Json,
            tracing_subscriber::EnvFilter::new("info"),
            move || sink.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            super::log_worker_start(
                "tapline-w0",
                &["chain-q0".to_string(), "capture-q0".to_string()],
                Some(1),
            );
            super::log_worker_start("tapline-w1", &["chain-q1".to_string()], None);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "{text}");
        let r = &records[0];
        assert_eq!(r["target"], "tapline_dataplane::engine::start");
        assert_eq!(r["message"], "starting worker");
        // Real JSON values, not strings holding JSON.
        assert_eq!(r["tasks"], serde_json::json!(["chain-q0", "capture-q0"]));
        assert!(r["tasks"].is_array(), "{r}");
        assert_eq!(r["cpu"], serde_json::json!(1));
        assert_eq!(r["worker"], "tapline-w0");
        assert_eq!(r["level"], "INFO");
        assert!(records[1]["cpu"].is_null(), "{}", records[1]);
        assert_eq!(records[1]["tasks"], serde_json::json!(["chain-q1"]));
        assert!(!text.contains('\u{1}'), "{text:?}");
    }
}
