//! The `tapline.v1.Observer` service: information, counters and the chain.
//!
//! Counters are served only while the dataplane is live (see
//! [`crate::state::Monitor::sample`]): `GetStats` fails with UNAVAILABLE
//! otherwise, and so does `WatchStats` at the start; a watch whose
//! dataplane stops being live ends with UNAVAILABLE (call again to follow
//! the next run). A dataplane that restarts between two messages of a watch
//! shows up as a new `stats_epoch` with no rates in that message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapline_dataplane::config::Config;
use tapline_dataplane::xdp::shm::unix_ns;
use tapline_proto::v1;
use tapline_proto::v1::observer_server::Observer;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::info::{build_info, probe_netdev};
use crate::state::{stopping, Monitor, Unavailable};
use crate::stats::{build_stats, watch_interval, Selector};

/// Where sysfs shows the pod's interfaces.
const SYSFS_NET: &str = "/sys/class/net";

/// Messages a watch keeps queued for a slow client before it waits.
const WATCH_QUEUE: usize = 2;

fn unavailable(e: Unavailable) -> Status {
    Status::unavailable(e.message)
}

fn shutting_down() -> Status {
    Status::unavailable("tapline-control is shutting down; reconnect to the new instance")
}

/// The chain of this build: inline tool chaining is not available, the
/// dataplane refuses configured hops and bridges inline-1 and inline-2
/// directly. So the chain is the configuration's, which is empty: generation
/// 1 (the first spec), applied at start (observed generation 1), no hop.
pub fn current_chain() -> v1::Chain {
    v1::Chain {
        spec: Some(v1::ChainSpec::default()),
        generation: 1,
        updated_at: None,
        status: Some(v1::ChainStatus {
            observed_generation: 1,
            applied_spec: Some(v1::ChainSpec::default()),
            applied_at: None,
            hops: Vec::new(),
            last_rejected: None,
        }),
    }
}

/// The service. Cheap to clone parts are shared with the stream tasks.
#[derive(Debug)]
pub struct ObserverService {
    monitor: Monitor,
    cfg: Arc<Config>,
    started: Instant,
    shutdown: watch::Receiver<bool>,
}

impl ObserverService {
    pub fn new(monitor: Monitor, cfg: Arc<Config>, shutdown: watch::Receiver<bool>) -> Self {
        ObserverService {
            monitor,
            cfg,
            started: Instant::now(),
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    async fn get_info(
        &self,
        _request: Request<v1::GetInfoRequest>,
    ) -> Result<Response<v1::GetInfoResponse>, Status> {
        let cfg = self.cfg.clone();
        let obs = self.monitor.current();
        let uptime = self.started.elapsed();
        // sysfs reads are file I/O: off the runtime's threads.
        let info = tokio::task::spawn_blocking(move || {
            build_info(&cfg, &obs, unix_ns(), uptime, |ifname| {
                probe_netdev(std::path::Path::new(SYSFS_NET), ifname)
            })
        })
        .await
        .map_err(|e| Status::internal(format!("building the answer failed: {e}")))?;
        Ok(Response::new(info))
    }

    async fn get_stats(
        &self,
        request: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::GetStatsResponse>, Status> {
        let selector = Selector::from_proto("selector", request.get_ref().selector.as_ref())?;
        let sample = self.monitor.sample().map_err(unavailable)?;
        let stats = build_stats(&sample, None, &selector, &self.cfg.workers.cpus);
        Ok(Response::new(v1::GetStatsResponse { stats: Some(stats) }))
    }

    type WatchStatsStream = ReceiverStream<Result<v1::WatchStatsResponse, Status>>;

    async fn watch_stats(
        &self,
        request: Request<v1::WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let req = request.get_ref();
        let interval = watch_interval(req.interval_ms)?;
        let selector = Selector::from_proto("selector", req.selector.as_ref())?;
        let first = self.monitor.sample().map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(watch_stats(
            WatchStats {
                monitor: self.monitor.clone(),
                cpus: self.cfg.workers.cpus.clone(),
                selector,
                interval,
                shutdown: self.shutdown.clone(),
            },
            first,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_chain(
        &self,
        _request: Request<v1::GetChainRequest>,
    ) -> Result<Response<v1::GetChainResponse>, Status> {
        Ok(Response::new(v1::GetChainResponse {
            chain: Some(current_chain()),
        }))
    }

    type WatchChainStream = ReceiverStream<Result<v1::WatchChainResponse, Status>>;

    async fn watch_chain(
        &self,
        _request: Request<v1::WatchChainRequest>,
    ) -> Result<Response<Self::WatchChainStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let first = v1::WatchChainResponse {
                chain: Some(current_chain()),
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            // The chain cannot change in this build: hold the stream open
            // until the client goes away or the server stops.
            tokio::select! {
                _ = tx.closed() => {}
                () = stopping(&mut shutdown) => {
                    let _ = tx.send(Err(shutting_down())).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What one `WatchStats` stream needs.
struct WatchStats {
    monitor: Monitor,
    cpus: Vec<usize>,
    selector: Selector,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
}

/// Sends `first`, then a fresh sample every `interval`, with rates against
/// the previous message. Ends when the client goes away (nothing to send it
/// then), when the dataplane is no longer live (UNAVAILABLE), or at
/// shutdown (UNAVAILABLE).
async fn watch_stats(
    mut w: WatchStats,
    first: crate::state::Sample,
    tx: mpsc::Sender<Result<v1::WatchStatsResponse, Status>>,
) {
    let interval_ms = w.interval.as_millis() as u32;
    let mut ticker = tokio::time::interval(w.interval);
    // A slow client delays the next sample instead of causing a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate: `first` is its sample.
    let mut prev: Option<crate::state::Sample> = None;
    let mut cur = first;
    loop {
        let msg = v1::WatchStatsResponse {
            stats: Some(build_stats(&cur, prev.as_ref(), &w.selector, &w.cpus)),
            interval_ms,
        };
        if tx.send(Ok(msg)).await.is_err() {
            return;
        }
        prev = Some(cur);
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
            () = stopping(&mut w.shutdown) => {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
        }
        cur = match w.monitor.sample() {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(unavailable(e))).await;
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DataplaneStatus, Observation};
    use tokio_stream::StreamExt;
    use tonic::Code;

    fn service() -> (ObserverService, watch::Sender<bool>) {
        let cfg = Config::parse("[interfaces]\npassive-1 = \"p1\"\n").unwrap();
        let (m, _tx) = Monitor::manual(
            Observation {
                status: DataplaneStatus::Absent {
                    reason: "/tmp/x/stats.shm: not found".into(),
                },
                reader: None,
                snapshot: None,
            },
            Duration::from_secs(1),
        );
        let (stx, srx) = watch::channel(false);
        (ObserverService::new(m, Arc::new(cfg), srx), stx)
    }

    #[tokio::test]
    async fn watch_stats_validates_before_anything_else() {
        let (svc, _s) = service();
        for bad in [1, 9, 60_001] {
            let e = svc
                .watch_stats(Request::new(v1::WatchStatsRequest {
                    interval_ms: bad,
                    selector: None,
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        }
        let e = svc
            .watch_stats(Request::new(v1::WatchStatsRequest {
                interval_ms: 100,
                selector: Some(v1::StatsSelector {
                    roles: vec!["nope".into()],
                    omit_queues: false,
                }),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // A valid request without a dataplane: UNAVAILABLE saying why.
        let e = svc
            .watch_stats(Request::new(v1::WatchStatsRequest {
                interval_ms: 0,
                selector: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message().contains("no dataplane found"),
            "{}",
            e.message()
        );
    }

    #[tokio::test]
    async fn get_stats_is_unavailable_without_a_dataplane() {
        let (svc, _s) = service();
        let e = svc
            .get_stats(Request::new(v1::GetStatsRequest { selector: None }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("stats.shm"), "{}", e.message());
    }

    #[tokio::test]
    async fn chain_is_empty_and_its_watch_ends_at_shutdown() {
        let (svc, stop) = service();
        let chain = svc
            .get_chain(Request::new(v1::GetChainRequest {}))
            .await
            .unwrap()
            .into_inner()
            .chain
            .unwrap();
        assert_eq!(chain.generation, 1);
        assert!(chain.spec.unwrap().hops.is_empty());
        let status = chain.status.unwrap();
        assert_eq!(status.observed_generation, 1);
        assert!(status.hops.is_empty());

        let mut stream = svc
            .watch_chain(Request::new(v1::WatchChainRequest {}))
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.chain.unwrap().generation, 1);
        // Nothing more while the chain does not change.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), stream.next())
                .await
                .is_err()
        );
        stop.send_replace(true);
        let end = stream.next().await.unwrap().unwrap_err();
        assert_eq!(end.code(), Code::Unavailable);
        assert!(stream.next().await.is_none());
    }
}
