//! What tapline-control knows about the dataplane: a background task polls
//! the stats segment in `state_dir`, reopens it when a restarted dataplane
//! replaced it (or when it appears), classifies the dataplane's state, and
//! drives health. Readers ([`Monitor`]) take fresh counters from the mapped
//! segment whenever they need them.
//!
//! The sidecar holds no capabilities and never writes to the segment; the
//! dataplane can start, stop, crash or restart at any time and the sidecar
//! keeps running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tapline_segment::{unix_ns, SegmentReader, SegmentState, Snapshot};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::health::HealthDriver;

/// How often the poller looks at the segment. Health also changes at the
/// exact moment a heartbeat turns stale (see [`next_poll_in`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The dataplane's state as the sidecar sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneStatus {
    /// No usable stats segment (not created yet, removed, or unreadable);
    /// `reason` says which.
    Absent { reason: String },
    /// The dataplane is binding its sockets.
    Starting,
    /// Running with a fresh heartbeat: the only state in which counters are
    /// served.
    Running,
    /// The dataplane exited cleanly.
    Stopped,
    /// The heartbeat is older than `control.dataplane_stale_ms` (crashed,
    /// killed or hung).
    Unresponsive { heartbeat_age_ms: u64 },
}

impl DataplaneStatus {
    /// Whether the dataplane counts as live (health SERVING, counters
    /// served).
    pub fn is_live(&self) -> bool {
        matches!(self, DataplaneStatus::Running)
    }

    /// A short word, for logs and for noticing transitions.
    pub fn kind(&self) -> &'static str {
        match self {
            DataplaneStatus::Absent { .. } => "absent",
            DataplaneStatus::Starting => "starting",
            DataplaneStatus::Running => "running",
            DataplaneStatus::Stopped => "stopped",
            DataplaneStatus::Unresponsive { .. } => "unresponsive",
        }
    }

    /// The `tapline.v1.DataplaneState` value.
    pub fn to_proto(&self) -> tapline_proto::v1::DataplaneState {
        use tapline_proto::v1::DataplaneState as S;
        match self {
            DataplaneStatus::Absent { .. } => S::Unspecified,
            DataplaneStatus::Starting => S::Starting,
            DataplaneStatus::Running => S::Running,
            DataplaneStatus::Stopped => S::Stopped,
            DataplaneStatus::Unresponsive { .. } => S::Unresponsive,
        }
    }

    /// One sentence for people: what is wrong, when the dataplane is not
    /// running.
    pub fn describe(&self, stale: Duration) -> String {
        match self {
            DataplaneStatus::Absent { reason } => format!("no dataplane found: {reason}"),
            DataplaneStatus::Starting => {
                "the dataplane is starting (binding its sockets)".to_string()
            }
            DataplaneStatus::Running => "the dataplane is running".to_string(),
            DataplaneStatus::Stopped => "the dataplane has stopped".to_string(),
            DataplaneStatus::Unresponsive { heartbeat_age_ms } => format!(
                "the dataplane is unresponsive: its last heartbeat is {heartbeat_age_ms} ms old (control.dataplane_stale_ms = {})",
                stale.as_millis()
            ),
        }
    }
}

/// Classifies a snapshot taken at `now_unix_ns`. A stale heartbeat wins over
/// the published state (a dataplane killed with SIGKILL still says
/// "running"); a clean stop wins over staleness (the stopped process no
/// longer beats).
pub fn classify(snapshot: &Snapshot, now_unix_ns: u64, stale: Duration) -> DataplaneStatus {
    if snapshot.state == SegmentState::Stopped as u64 {
        return DataplaneStatus::Stopped;
    }
    let age_ns = now_unix_ns.saturating_sub(snapshot.heartbeat_unix_ns);
    if u128::from(age_ns) > stale.as_nanos() {
        return DataplaneStatus::Unresponsive {
            heartbeat_age_ms: age_ns / 1_000_000,
        };
    }
    match snapshot.state {
        s if s == SegmentState::Running as u64 => DataplaneStatus::Running,
        s if s == SegmentState::Starting as u64 => DataplaneStatus::Starting,
        other => DataplaneStatus::Absent {
            reason: format!("the stats segment has an unknown state {other}"),
        },
    }
}

/// When the poller should look again: at the usual interval, or earlier at
/// the instant the heartbeat of a running dataplane turns stale, so health
/// goes NOT_SERVING no later than `stale` after the last heartbeat.
pub fn next_poll_in(
    status: &DataplaneStatus,
    snapshot: Option<&Snapshot>,
    now_unix_ns: u64,
    stale: Duration,
) -> Duration {
    match (status, snapshot) {
        (DataplaneStatus::Running | DataplaneStatus::Starting, Some(s)) => {
            let stale_at = u128::from(s.heartbeat_unix_ns) + stale.as_nanos();
            let left_ns = stale_at.saturating_sub(u128::from(now_unix_ns));
            // One millisecond past the limit, so the next look sees it stale.
            let left = Duration::from_nanos(u64::try_from(left_ns).unwrap_or(u64::MAX))
                + Duration::from_millis(1);
            left.min(POLL_INTERVAL)
        }
        _ => POLL_INTERVAL,
    }
}

/// Counters read at one instant from a live dataplane.
#[derive(Debug, Clone)]
pub struct Sample {
    pub snapshot: Snapshot,
    /// When they were read (wall clock, for `sampled_at`).
    pub sampled_unix_ns: u64,
    /// When they were read (monotonic, for rate windows).
    pub at: Instant,
}

/// Why counters cannot be served now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unavailable {
    pub status: DataplaneStatus,
    pub message: String,
}

/// The poller's latest view.
#[derive(Debug, Clone)]
pub struct Observation {
    pub status: DataplaneStatus,
    /// The segment of the current (or last) dataplane run; `None` while
    /// there is none.
    pub reader: Option<Arc<SegmentReader>>,
    /// The snapshot the status was derived from.
    pub snapshot: Option<Snapshot>,
}

impl Observation {
    fn absent(reason: String) -> Observation {
        Observation {
            status: DataplaneStatus::Absent { reason },
            reader: None,
            snapshot: None,
        }
    }
}

/// A cheap, cloneable handle on the poller's view.
#[derive(Debug, Clone)]
pub struct Monitor {
    rx: watch::Receiver<Arc<Observation>>,
    stale: Duration,
}

impl Monitor {
    /// The latest observation.
    pub fn current(&self) -> Arc<Observation> {
        self.rx.borrow().clone()
    }

    /// The heartbeat age beyond which the dataplane counts as down.
    pub fn stale(&self) -> Duration {
        self.stale
    }

    /// Fresh counters, read now from the mapped segment, if the dataplane is
    /// live now (its state and heartbeat are judged on the fresh read).
    pub fn sample(&self) -> Result<Sample, Unavailable> {
        let obs = self.current();
        let unavailable = |status: DataplaneStatus| Unavailable {
            message: format!(
                "{}; counters are served only while the dataplane runs",
                status.describe(self.stale)
            ),
            status,
        };
        let Some(reader) = &obs.reader else {
            return Err(unavailable(obs.status.clone()));
        };
        let snapshot = reader.snapshot();
        let sampled_unix_ns = unix_ns();
        let at = Instant::now();
        match classify(&snapshot, sampled_unix_ns, self.stale) {
            DataplaneStatus::Running => Ok(Sample {
                snapshot,
                sampled_unix_ns,
                at,
            }),
            other => Err(unavailable(other)),
        }
    }

    /// A monitor fed by hand, for tests: the returned sender replaces the
    /// observation.
    pub fn manual(
        initial: Observation,
        stale: Duration,
    ) -> (Monitor, watch::Sender<Arc<Observation>>) {
        let (tx, rx) = watch::channel(Arc::new(initial));
        (Monitor { rx, stale }, tx)
    }
}

/// Completes once `shutdown` turns true (or its sender is gone). Returns
/// nothing, so no borrow of the channel is held across later awaits.
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&s| s).await;
}

/// Starts the poller. It ends when `shutdown` turns true.
pub fn spawn_poller(
    state_dir: PathBuf,
    stale: Duration,
    health: HealthDriver,
    shutdown: watch::Receiver<bool>,
) -> (Monitor, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(Observation::absent(
        "not looked for yet".to_string(),
    )));
    let poller = Poller {
        state_dir,
        stale,
        health,
        tx,
        reader: None,
        last_open_error: None,
        last_kind: "",
        last_epoch: None,
    };
    let task = tokio::spawn(poller.run(shutdown));
    (Monitor { rx, stale }, task)
}

struct Poller {
    state_dir: PathBuf,
    stale: Duration,
    health: HealthDriver,
    tx: watch::Sender<Arc<Observation>>,
    reader: Option<Arc<SegmentReader>>,
    /// The last error opening the segment, logged once until it changes.
    last_open_error: Option<String>,
    last_kind: &'static str,
    last_epoch: Option<u64>,
}

impl Poller {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            // Plain file-system calls (stat, and open + mmap when the file
            // changed) on the pod's emptyDir: microseconds, so they run on
            // the runtime's thread.
            let obs = self.observe();
            let now = unix_ns();
            let wait = next_poll_in(&obs.status, obs.snapshot.as_ref(), now, self.stale);
            self.health.update(&obs.status, obs.snapshot.as_ref()).await;
            self.log_transition(&obs);
            self.tx.send_replace(Arc::new(obs));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                () = stopping(&mut shutdown) => return,
            }
        }
    }

    /// Reopens the segment when needed and classifies it.
    fn observe(&mut self) -> Observation {
        if self.reader.as_ref().is_some_and(|r| !r.is_current()) {
            // A restarted dataplane renamed a new file into place (or the
            // file was removed): the old mapping shows the old run forever.
            self.reader = None;
        }
        if self.reader.is_none() {
            match SegmentReader::open(&self.state_dir) {
                Ok(r) => {
                    self.reader = Some(Arc::new(r));
                    self.last_open_error = None;
                }
                Err(e) => {
                    let reason = e.to_string();
                    if self.last_open_error.as_deref() != Some(&reason) {
                        warn!(error = %reason, "stats segment not readable; still looking");
                        self.last_open_error = Some(reason.clone());
                    }
                    return Observation::absent(reason);
                }
            }
        }
        let reader = self.reader.clone().expect("opened above");
        let snapshot = reader.snapshot();
        Observation {
            status: classify(&snapshot, unix_ns(), self.stale),
            reader: Some(reader),
            snapshot: Some(snapshot),
        }
    }

    fn log_transition(&mut self, obs: &Observation) {
        let epoch = obs.snapshot.as_ref().map(|s| s.epoch);
        let restarted = epoch.is_some() && self.last_epoch.is_some() && epoch != self.last_epoch;
        if obs.status.kind() == self.last_kind && !restarted {
            return;
        }
        // Hexadecimal, as taplinectl shows it.
        let epoch_hex = epoch.map(|e| format!("{e:#018x}")).unwrap_or_default();
        if restarted {
            info!(epoch = %epoch_hex, "a new dataplane run replaced the stats segment");
        }
        let message = obs.status.describe(self.stale);
        match &obs.status {
            DataplaneStatus::Running => {
                let queues = obs.snapshot.as_ref().map_or(0, |s| s.queues.len());
                info!(epoch = %epoch_hex, queues, "dataplane attached: {message}");
            }
            DataplaneStatus::Starting => info!(epoch = %epoch_hex, "{message}"),
            // The first look finding nothing was logged by `observe`.
            DataplaneStatus::Absent { .. } if self.last_kind.is_empty() => {}
            _ => warn!(state = obs.status.kind(), "{message}"),
        }
        self.last_kind = obs.status.kind();
        if epoch.is_some() {
            self.last_epoch = epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn snapshot(state: SegmentState, heartbeat_unix_ns: u64) -> Snapshot {
        Snapshot {
            dataplane_version: "0.1.0".into(),
            dataplane_pid: 1,
            epoch: 7,
            started_unix_ns: 1,
            heartbeat_unix_ns,
            state: state as u64,
            links_down: 0,
            queues: vec![],
            workers: vec![],
            hops: vec![],
            outputs: vec![],
            recorders: vec![],
            taps: vec![],
            fallback: None,
        }
    }

    const STALE: Duration = Duration::from_millis(1000);
    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn classification_follows_state_and_heartbeat() {
        let fresh = NOW - 50_000_000;
        let old = NOW - 1_500_000_000;
        assert_eq!(
            classify(&snapshot(SegmentState::Running, fresh), NOW, STALE),
            DataplaneStatus::Running
        );
        assert_eq!(
            classify(&snapshot(SegmentState::Starting, fresh), NOW, STALE),
            DataplaneStatus::Starting
        );
        assert_eq!(
            classify(&snapshot(SegmentState::Running, old), NOW, STALE),
            DataplaneStatus::Unresponsive {
                heartbeat_age_ms: 1500
            }
        );
        // Died while starting.
        assert!(matches!(
            classify(&snapshot(SegmentState::Starting, old), NOW, STALE),
            DataplaneStatus::Unresponsive { .. }
        ));
        // A clean stop is reported as such, fresh or not.
        assert_eq!(
            classify(&snapshot(SegmentState::Stopped, fresh), NOW, STALE),
            DataplaneStatus::Stopped
        );
        assert_eq!(
            classify(&snapshot(SegmentState::Stopped, old), NOW, STALE),
            DataplaneStatus::Stopped
        );
        // Exactly at the limit is still live; a heartbeat from the future
        // (clock stepped back) too.
        assert!(classify(
            &snapshot(SegmentState::Running, NOW - 1_000_000_000),
            NOW,
            STALE
        )
        .is_live());
        assert!(classify(&snapshot(SegmentState::Running, NOW + 5), NOW, STALE).is_live());
        let mut s = snapshot(SegmentState::Running, fresh);
        s.state = 9;
        assert!(matches!(
            classify(&s, NOW, STALE),
            DataplaneStatus::Absent { .. }
        ));
    }

    #[test]
    fn poller_wakes_when_the_heartbeat_turns_stale() {
        let s = snapshot(SegmentState::Running, NOW - 950_000_000);
        let status = classify(&s, NOW, STALE);
        assert_eq!(
            next_poll_in(&status, Some(&s), NOW, STALE),
            Duration::from_millis(51)
        );
        let s = snapshot(SegmentState::Running, NOW);
        assert_eq!(next_poll_in(&status, Some(&s), NOW, STALE), POLL_INTERVAL);
        assert_eq!(
            next_poll_in(&DataplaneStatus::Stopped, Some(&s), NOW, STALE),
            POLL_INTERVAL
        );
    }

    #[test]
    fn monitor_serves_samples_only_while_live() {
        let (m, _tx) = Monitor::manual(Observation::absent("x.shm: not found".into()), STALE);
        let e = m.sample().unwrap_err();
        assert!(matches!(e.status, DataplaneStatus::Absent { .. }));
        assert!(e.message.contains("no dataplane found: x.shm: not found"));
        assert!(e.message.contains("only while the dataplane runs"));
    }
}
