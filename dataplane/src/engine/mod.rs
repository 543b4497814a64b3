//! Starting and stopping the dataplane: preflight, interfaces, queue groups,
//! tasks and worker threads.
//!
//! Starting is plan-then-start: [`plan`] decides from the configuration and
//! the opened interfaces' queue counts which tasks run where and how large
//! the stats segment is (pure, unit-tested); [`start`] executes that plan
//! (binds, builds the tasks, starts the threads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, error, info, warn};

use crate::command::ControlThread;
use crate::pipeline::Task;
use crate::record::Recorder;
use crate::stats::StatsRegistry;
use crate::survive::{InlineFallback, LinkState};
use crate::worker::Worker;
use crate::xdp::Interface;
use tapline_config::Config;
use tapline_segment::SegmentState;
use tapline_segment::{OutputInfo, OutputKind, StatsSegment};

use crate::links::LinkThread;
use crate::preflight::lock_state_dir;
pub use crate::preflight::{max_mtu, preflight, InitialChain, Preflight, LOCK_FILE};

pub use crate::error::{exit, StartError};
pub use plan::{Discovered, PlannedTask, StartPlan};

pub mod plan;
mod start;

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
    tapline_segment::unix_ns() ^ (u64::from(std::process::id()) << 32)
}

/// Creates the stats segment in `state_dir`, or, if that fails, an
/// in-memory one so forwarding still starts (the sidecar then reports the
/// dataplane as not serving, and the error says why).
fn create_segment(cfg: &Config, layout: &tapline_segment::Layout) -> Arc<StatsSegment> {
    let (n_queues, n_workers) = (layout.n_queues, layout.n_workers);
    let dir = &cfg.state_dir;
    let res = std::fs::create_dir_all(dir)
        .and_then(|()| StatsSegment::create_with(dir, layout, new_epoch()));
    match res {
        Ok(seg) => {
            info!(path = %dir.join(tapline_segment::FILE_NAME).display(), queues = n_queues, workers = n_workers, "stats segment created");
            seg
        }
        Err(e) => {
            error!(state_dir = %dir.display(), error = %e, "cannot create the stats segment: forwarding continues, but the sidecar cannot see counters; make dataplane.state_dir writable");
            StatsSegment::in_memory_with(layout)
        }
    }
}

impl Dataplane {
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
        info!(path = %dir.join(tapline_segment::FILE_NAME).display(), "stats segment re-published");
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
    let expr = |f: &Option<tapline_packet::filter::Filter>| {
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
