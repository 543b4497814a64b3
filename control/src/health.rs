//! `grpc.health.v1.Health`: which service names report SERVING, from the
//! dataplane's state.
//!
//! | name | SERVING when |
//! |---|---|
//! | `""` (overall) | the dataplane is live: segment state running and heartbeat younger than `control.dataplane_stale_ms` |
//! | `passive-1` | live, `passive-1` configured, the dataplane has bound it, and its link is up (carrier) |
//! | `inline` | live, the inline pair configured, the dataplane has bound both sides, both links are up (carrier), and the link keeper has not seen the dataplane's connection close (the kernel fallback carries the link then) |
//!
//! Every name starts NOT_SERVING, before the first look at the segment. The
//! same reporter backs the health service on both listeners.

use std::sync::Arc;
use tapline_segment::{Snapshot, LINK_DOWN_INLINE_1, LINK_DOWN_INLINE_2, LINK_DOWN_PASSIVE_1};

use tapline_segment::custody::Keeper;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::state::DataplaneStatus;

/// Service name of the overall health.
pub const OVERALL: &str = "";
/// Service name of the passive capture.
pub const PASSIVE: &str = "passive-1";
/// Service name of the inline bridge.
pub const INLINE: &str = "inline";
/// Every name the health service answers for.
pub const SERVICE_NAMES: [&str; 3] = [OVERALL, PASSIVE, INLINE];

/// The serving state of each health name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub overall: bool,
    pub passive: bool,
    pub inline: bool,
}

impl HealthView {
    pub const DOWN: HealthView = HealthView {
        overall: false,
        passive: false,
        inline: false,
    };

    fn statuses(self) -> [(&'static str, bool); 3] {
        [
            (OVERALL, self.overall),
            (PASSIVE, self.passive),
            (INLINE, self.inline),
        ]
    }
}

/// Which roles are configured (from the shared configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    pub passive: bool,
    pub inline: bool,
}

/// Maps the dataplane's state to health.
pub fn health_view(
    status: &DataplaneStatus,
    snapshot: Option<&Snapshot>,
    configured: Configured,
) -> HealthView {
    if !status.is_live() {
        return HealthView::DOWN;
    }
    let has = |role: &str| snapshot.is_some_and(|s| s.queues.iter().any(|q| q.info.role == role));
    // A port without carrier forwards nothing: inline traffic is cut.
    let up = |bits: u64| snapshot.is_some_and(|s| s.links_down & bits == 0);
    HealthView {
        overall: true,
        passive: configured.passive && has("passive-1") && up(LINK_DOWN_PASSIVE_1),
        inline: configured.inline
            && has("inline-1")
            && has("inline-2")
            && up(LINK_DOWN_INLINE_1 | LINK_DOWN_INLINE_2),
    }
}

/// `view`, with `inline` down when the link keeper saw the dataplane's
/// connection close (`gone`): the kernel fallback carries the link and the
/// chain is not inspecting, although the heartbeat is not stale yet.
pub fn without_dataplane(view: HealthView, gone: bool) -> HealthView {
    HealthView {
        inline: view.inline && !gone,
        ..view
    }
}

fn serving(up: bool) -> ServingStatus {
    if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Owns the reporter; pushes a status only when it changes (every push wakes
/// the `Watch` streams of health clients).
#[derive(Debug)]
pub struct HealthDriver {
    reporter: HealthReporter,
    configured: Configured,
    last: HealthView,
    /// The link keeper: `inline` goes NOT_SERVING as soon as it sees the
    /// dataplane's connection close, before the heartbeat goes stale.
    keeper: Option<Arc<Keeper>>,
}

impl HealthDriver {
    /// A reporter with every name NOT_SERVING. (tonic-health's own
    /// constructor starts `""` SERVING.)
    pub async fn new(configured: Configured) -> HealthDriver {
        let reporter = HealthReporter::new();
        for name in SERVICE_NAMES {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        HealthDriver {
            reporter,
            configured,
            last: HealthView::DOWN,
            keeper: None,
        }
    }

    /// Consults `keeper` too (see [`without_dataplane`]).
    pub fn with_keeper(mut self, keeper: Option<Arc<Keeper>>) -> HealthDriver {
        self.keeper = keeper;
        self
    }

    /// A health service backed by this driver's reporter (one per listener).
    pub fn service(&self) -> HealthService {
        HealthService::from_health_reporter(self.reporter.clone())
    }

    /// A handle to clear the statuses at shutdown.
    pub fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    pub async fn update(&mut self, status: &DataplaneStatus, snapshot: Option<&Snapshot>) {
        let gone = self.keeper.as_ref().is_some_and(|k| k.dataplane_gone());
        let view = without_dataplane(health_view(status, snapshot, self.configured), gone);
        for ((name, up), (_, was)) in view.statuses().into_iter().zip(self.last.statuses()) {
            if up != was {
                self.reporter.set_service_status(name, serving(up)).await;
            }
        }
        self.last = view;
    }
}

/// Removes every name, which ends the `Watch` streams of health clients (a
/// graceful shutdown would otherwise wait for them forever).
pub async fn clear(mut reporter: HealthReporter) {
    for name in SERVICE_NAMES {
        reporter.clear_service_status(name).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapline_segment::counters::{KernelCounts, PortCounts};
    use tapline_segment::{QueueInfo, QueueSnapshot, SegmentState, DROP_SLOTS};
    use tonic::Request;
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::HealthCheckRequest;

    fn queue(role: &str) -> QueueSnapshot {
        QueueSnapshot {
            info: QueueInfo {
                role: role.into(),
                ifname: "x".into(),
                queue: 0,
                mode: "generic-copy".into(),
                worker: 0,
                hop: String::new(),
            },
            counts: PortCounts {
                rx_packets: 0,
                rx_bytes: 0,
                tx_packets: 0,
                tx_bytes: 0,
                drops: [0; DROP_SLOTS],
                kernel: KernelCounts {
                    kernel_rx_dropped: 0,
                    kernel_rx_invalid_descs: 0,
                    kernel_tx_invalid_descs: 0,
                    kernel_rx_ring_full: 0,
                    kernel_rx_fill_ring_empty: 0,
                    kernel_tx_ring_empty: 0,
                },
            },
        }
    }

    fn snap(roles: &[&str]) -> Snapshot {
        Snapshot {
            dataplane_version: "0.1.0".into(),
            dataplane_pid: 1,
            epoch: 1,
            started_unix_ns: 0,
            heartbeat_unix_ns: 0,
            state: SegmentState::Running as u64,
            links_down: 0,
            queues: roles.iter().map(|r| queue(r)).collect(),
            workers: vec![],
            hops: vec![],
            outputs: vec![],
            recorders: vec![],
            taps: vec![],
            fallback: None,
        }
    }

    const ALL: Configured = Configured {
        passive: true,
        inline: true,
    };

    #[test]
    fn a_dataplane_gone_from_the_keeper_takes_inline_down_only() {
        let up = HealthView {
            overall: true,
            passive: true,
            inline: true,
        };
        assert_eq!(without_dataplane(up, false), up);
        assert_eq!(
            without_dataplane(up, true),
            HealthView {
                inline: false,
                ..up
            }
        );
        assert_eq!(without_dataplane(HealthView::DOWN, true), HealthView::DOWN);
    }

    #[test]
    fn health_follows_liveness_and_configuration() {
        let s = snap(&["inline-1", "inline-2", "passive-1"]);
        let up = health_view(&DataplaneStatus::Running, Some(&s), ALL);
        assert_eq!(
            up,
            HealthView {
                overall: true,
                passive: true,
                inline: true
            }
        );
        for down in [
            DataplaneStatus::Absent {
                reason: "none".into(),
            },
            DataplaneStatus::Starting,
            DataplaneStatus::Stopped,
            DataplaneStatus::Unresponsive {
                heartbeat_age_ms: 1500,
            },
        ] {
            assert_eq!(
                health_view(&down, Some(&s), ALL),
                HealthView::DOWN,
                "{down:?}"
            );
        }
        // Only what is configured (and bound) serves.
        let passive_only = Configured {
            passive: true,
            inline: false,
        };
        let v = health_view(&DataplaneStatus::Running, Some(&s), passive_only);
        assert!(v.overall && v.passive && !v.inline);
        let s = snap(&["passive-1"]);
        let v = health_view(&DataplaneStatus::Running, Some(&s), ALL);
        assert!(v.overall && v.passive && !v.inline);
        let s = snap(&["inline-1"]);
        assert!(!health_view(&DataplaneStatus::Running, Some(&s), ALL).inline);
        // A port without carrier takes its role down, not the rest.
        let mut s = snap(&["inline-1", "inline-2", "passive-1"]);
        s.links_down = LINK_DOWN_INLINE_2;
        let v = health_view(&DataplaneStatus::Running, Some(&s), ALL);
        assert!(v.overall && v.passive && !v.inline);
        s.links_down = LINK_DOWN_PASSIVE_1;
        let v = health_view(&DataplaneStatus::Running, Some(&s), ALL);
        assert!(v.overall && !v.passive && v.inline);
    }

    async fn check(svc: &HealthService, name: &str) -> Result<i32, tonic::Code> {
        svc.check(Request::new(HealthCheckRequest {
            service: name.into(),
        }))
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code())
    }

    #[tokio::test]
    async fn driver_starts_not_serving_and_follows_updates() {
        use tonic_health::pb::health_check_response::ServingStatus as Wire;
        let mut d = HealthDriver::new(ALL).await;
        let svc = d.service();
        for name in SERVICE_NAMES {
            assert_eq!(check(&svc, name).await, Ok(Wire::NotServing as i32));
        }
        assert_eq!(
            check(&svc, "tapline.v1.Admin").await,
            Err(tonic::Code::NotFound)
        );
        let s = snap(&["inline-1", "inline-2"]);
        d.update(&DataplaneStatus::Running, Some(&s)).await;
        assert_eq!(check(&svc, "").await, Ok(Wire::Serving as i32));
        assert_eq!(check(&svc, "inline").await, Ok(Wire::Serving as i32));
        assert_eq!(check(&svc, "passive-1").await, Ok(Wire::NotServing as i32));
        d.update(&DataplaneStatus::Stopped, Some(&s)).await;
        assert_eq!(check(&svc, "").await, Ok(Wire::NotServing as i32));
        assert_eq!(check(&svc, "inline").await, Ok(Wire::NotServing as i32));
        clear(d.reporter()).await;
        assert_eq!(check(&svc, "").await, Err(tonic::Code::NotFound));
    }
}
