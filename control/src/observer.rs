//! The `tapline.v1.Observer` service: information, counters and the chain.
//!
//! Counters are served only while the dataplane is live (see
//! [`crate::state::Monitor::sample`]): `GetStats` fails with UNAVAILABLE
//! otherwise, and so does `WatchStats` at the start; a watch whose
//! dataplane stops being live ends with UNAVAILABLE (call again to follow
//! the next run). A dataplane that restarts between two messages of a watch
//! shows up as a new `stats_epoch` with no rates in that message.
//!
//! The chain belongs to the dataplane: `GetChain` asks it over the command
//! socket (UNAVAILABLE when it does not answer), and `WatchChain` asks
//! every [`CHAIN_POLL_INTERVAL`] and sends the chain whenever it differs
//! from the last one sent, until the dataplane stops answering for longer
//! than `control.dataplane_stale_ms`, the sidecar stops or the client goes
//! away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tapline_config::Config;
use tapline_dataplane::xdp::shm::unix_ns;
use tapline_proto::v1;
use tapline_proto::v1::observer_server::Observer;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use tapline_dataplane::xdp::custody::Keeper;

use crate::dataplane::DataplaneClient;
use crate::info::{build_info, probe_netdev};
use crate::state::{stopping, Monitor, Unavailable};
use crate::stats::{build_stats, watch_interval, Selector};

/// Where sysfs shows the pod's interfaces.
const SYSFS_NET: &str = "/sys/class/net";

/// Messages a watch keeps queued for a slow client before it waits.
const WATCH_QUEUE: usize = 2;

/// How often a `WatchChain` asks the dataplane for the chain.
pub const CHAIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

fn unavailable(e: Unavailable) -> Status {
    Status::unavailable(e.message)
}

fn shutting_down() -> Status {
    Status::unavailable("tapline-control is shutting down; reconnect to the new instance")
}

/// The service. Cheap to clone parts are shared with the stream tasks.
#[derive(Debug)]
pub struct ObserverService {
    monitor: Monitor,
    cfg: Arc<Config>,
    dataplane: DataplaneClient,
    started: Instant,
    shutdown: watch::Receiver<bool>,
    keeper: Option<Arc<Keeper>>,
}

impl ObserverService {
    /// The service; the chain is read from the command socket in
    /// `cfg.state_dir`.
    pub fn new(monitor: Monitor, cfg: Arc<Config>, shutdown: watch::Receiver<bool>) -> Self {
        ObserverService {
            monitor,
            dataplane: DataplaneClient::new(&cfg.state_dir),
            cfg,
            started: Instant::now(),
            shutdown,
            keeper: None,
        }
    }

    /// The link keeper, whose view of the kernel fallback `GetInfo` shows.
    pub fn with_keeper(mut self, keeper: Option<Arc<Keeper>>) -> Self {
        self.keeper = keeper;
        self
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
        let keeper = self.keeper.clone();
        // sysfs reads and map lookups are syscalls: off the runtime's threads.
        let info = tokio::task::spawn_blocking(move || {
            let mut info = build_info(&cfg, &obs, unix_ns(), uptime, |ifname| {
                probe_netdev(std::path::Path::new(SYSFS_NET), ifname)
            });
            info.kernel_fallback = keeper.and_then(|k| crate::fallback::to_proto(&k.status()));
            info
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
        Ok(Response::new(self.dataplane.get_chain().await?))
    }

    type WatchChainStream = ReceiverStream<Result<v1::WatchChainResponse, Status>>;

    async fn watch_chain(
        &self,
        _request: Request<v1::WatchChainRequest>,
    ) -> Result<Response<Self::WatchChainStream>, Status> {
        let first = self.dataplane.get_chain().await?.chain;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(watch_chain(
            WatchChain {
                dataplane: self.dataplane.clone(),
                interval: CHAIN_POLL_INTERVAL,
                patience: Duration::from_millis(self.cfg.control.dataplane_stale_ms.into()),
                shutdown: self.shutdown.clone(),
            },
            first,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What one `WatchChain` stream needs.
struct WatchChain {
    dataplane: DataplaneClient,
    interval: Duration,
    /// How long the dataplane may fail to answer before the watch ends
    /// (`control.dataplane_stale_ms`).
    patience: Duration,
    shutdown: watch::Receiver<bool>,
}

/// Sends `first`, then asks the dataplane for the chain every
/// `w.interval` and sends it whenever it differs from the last message
/// sent. A client that reads slowly gets the latest chain, not every
/// intermediate one.
///
/// Calls that fail with UNAVAILABLE (the dataplane is not answering:
/// restarting, stopped, hung) are retried at the same pace; once the
/// dataplane has not answered for longer than `w.patience`, counted from
/// the start of the first failed call, the watch ends with UNAVAILABLE.
/// So a dataplane restart shorter than that does not end the watch, and a
/// hung dataplane ends it after the command call's own timeout (3 s). Any
/// other failure (a malformed answer) ends it at once. It also ends at
/// shutdown (UNAVAILABLE) and when the client goes away.
async fn watch_chain(
    mut w: WatchChain,
    first: Option<v1::Chain>,
    tx: mpsc::Sender<Result<v1::WatchChainResponse, Status>>,
) {
    let mut ticker = tokio::time::interval(w.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate: `first` is its chain.
    let mut sent = first.clone();
    if tx
        .send(Ok(v1::WatchChainResponse { chain: first }))
        .await
        .is_err()
    {
        return;
    }
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
            () = stopping(&mut w.shutdown) => {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
        }
        let asked_at = Instant::now();
        let polled = tokio::select! {
            r = w.dataplane.get_chain() => r,
            _ = tx.closed() => return,
            () = stopping(&mut w.shutdown) => {
                let _ = tx.send(Err(shutting_down())).await;
                return;
            }
        };
        match polled {
            Ok(r) => {
                failing_since = None;
                if r.chain != sent {
                    sent = r.chain.clone();
                    if tx
                        .send(Ok(v1::WatchChainResponse { chain: r.chain }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                let since = *failing_since.get_or_insert(asked_at);
                if since.elapsed() > w.patience {
                    let _ = tx
                        .send(Err(Status::unavailable(format!(
                            "{}; the chain watch ended after {} ms without an answer \
                             (control.dataplane_stale_ms)",
                            s.message(),
                            w.patience.as_millis()
                        ))))
                        .await;
                    return;
                }
            }
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        }
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
    use crate::dataplane::fake::{chain, get_chain_answer, tmpdir, FakeDataplane, Reply};
    use crate::state::{DataplaneStatus, Observation};
    use std::sync::Mutex;
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

    /// A service whose dataplane command socket is in `state_dir`.
    fn chain_service(state_dir: &std::path::Path) -> (ObserverService, watch::Sender<bool>) {
        let cfg = Config::parse(&format!(
            "[interfaces]\npassive-1 = \"p1\"\n[dataplane]\nstate_dir = \"{}\"\n\
             [control]\ndataplane_stale_ms = 300\n",
            state_dir.display()
        ))
        .unwrap();
        let (m, _tx) = Monitor::manual(
            Observation {
                status: DataplaneStatus::Absent {
                    reason: "not needed".into(),
                },
                reader: None,
                snapshot: None,
            },
            Duration::from_secs(1),
        );
        let (stx, srx) = watch::channel(false);
        (ObserverService::new(m, Arc::new(cfg), srx), stx)
    }

    /// A fake dataplane that answers `get_chain` with what `current` holds
    /// (`None`: closes without answering, as a dataplane going away).
    fn chain_dataplane(name: &str, current: Arc<Mutex<Option<Reply>>>) -> FakeDataplane {
        FakeDataplane::start(name, move |_| {
            current.lock().unwrap().clone().unwrap_or(Reply::Close)
        })
    }

    async fn next_chain(
        s: &mut ReceiverStream<Result<v1::WatchChainResponse, Status>>,
    ) -> Result<v1::Chain, Status> {
        tokio::time::timeout(Duration::from_secs(2), s.next())
            .await
            .expect("a message in time")
            .expect("the watch is open")
            .map(|m| m.chain.unwrap())
    }

    /// Waits `d` and asserts the watch sent nothing meanwhile.
    async fn quiet_for(
        s: &mut ReceiverStream<Result<v1::WatchChainResponse, Status>>,
        d: Duration,
    ) {
        if let Ok(m) = tokio::time::timeout(d, s.next()).await {
            panic!("nothing expected, got {m:?}");
        }
    }

    #[tokio::test]
    async fn chain_comes_from_the_dataplane_or_is_unavailable() {
        let dir = tmpdir("observer-none");
        let (svc, _s) = chain_service(&dir);
        let e = svc
            .get_chain(Request::new(v1::GetChainRequest {}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("control.sock"), "{}", e.message());
        let e = svc
            .watch_chain(Request::new(v1::WatchChainRequest {}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        std::fs::remove_dir_all(&dir).unwrap();

        let current = Arc::new(Mutex::new(Some(get_chain_answer(chain(3, &["ids"])))));
        let dp = chain_dataplane("observer-get", current);
        let (svc, _s) = chain_service(dp.state_dir());
        let got = svc
            .get_chain(Request::new(v1::GetChainRequest {}))
            .await
            .unwrap()
            .into_inner()
            .chain
            .unwrap();
        assert_eq!(got, chain(3, &["ids"]));
    }

    #[tokio::test]
    async fn chain_watch_sends_changes_and_ends_at_shutdown() {
        let current = Arc::new(Mutex::new(Some(get_chain_answer(chain(1, &[])))));
        let dp = chain_dataplane("observer-watch", current.clone());
        let (svc, stop) = chain_service(dp.state_dir());
        let mut stream = svc
            .watch_chain(Request::new(v1::WatchChainRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next_chain(&mut stream).await.unwrap(), chain(1, &[]));
        // Nothing more while the chain does not change, though it is asked.
        quiet_for(&mut stream, Duration::from_millis(350)).await;
        assert!(dp.requests.lock().unwrap().len() >= 3);
        // A change is sent once.
        *current.lock().unwrap() = Some(get_chain_answer(chain(2, &["ids"])));
        assert_eq!(next_chain(&mut stream).await.unwrap(), chain(2, &["ids"]));
        quiet_for(&mut stream, Duration::from_millis(250)).await;
        // A runtime change that keeps the generation (a manual bypass) too.
        let mut bypassed = chain(2, &["ids"]);
        bypassed.status.as_mut().unwrap().hops[0].manual_bypass = true;
        *current.lock().unwrap() = Some(get_chain_answer(bypassed.clone()));
        assert_eq!(next_chain(&mut stream).await.unwrap(), bypassed);

        stop.send_replace(true);
        let end = next_chain(&mut stream).await.unwrap_err();
        assert_eq!(end.code(), Code::Unavailable);
        assert!(end.message().contains("shutting down"), "{}", end.message());
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn chain_watch_rides_out_a_short_outage_and_ends_after_a_long_one() {
        let current = Arc::new(Mutex::new(Some(get_chain_answer(chain(1, &[])))));
        let dp = chain_dataplane("observer-outage", current.clone());
        let (svc, _stop) = chain_service(dp.state_dir());
        let mut stream = svc
            .watch_chain(Request::new(v1::WatchChainRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next_chain(&mut stream).await.unwrap().generation, 1);
        // Shorter than dataplane_stale_ms (300 ms): the watch goes on.
        *current.lock().unwrap() = None;
        quiet_for(&mut stream, Duration::from_millis(150)).await;
        *current.lock().unwrap() = Some(get_chain_answer(chain(2, &[])));
        assert_eq!(next_chain(&mut stream).await.unwrap().generation, 2);
        // Longer: it ends with UNAVAILABLE, within the limit and a poll or two.
        *current.lock().unwrap() = None;
        let gone = Instant::now();
        let end = next_chain(&mut stream).await.unwrap_err();
        let after = gone.elapsed();
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_millis(700),
            "{after:?}"
        );
        assert_eq!(end.code(), Code::Unavailable);
        assert!(
            end.message()
                .contains("the chain watch ended after 300 ms without an answer"),
            "{}",
            end.message()
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn chain_watch_ends_at_once_on_a_malformed_answer() {
        let current = Arc::new(Mutex::new(Some(get_chain_answer(chain(1, &[])))));
        let dp = chain_dataplane("observer-garbage", current.clone());
        let (svc, _stop) = chain_service(dp.state_dir());
        let mut stream = svc
            .watch_chain(Request::new(v1::WatchChainRequest {}))
            .await
            .unwrap()
            .into_inner();
        next_chain(&mut stream).await.unwrap();
        *current.lock().unwrap() = Some(Reply::Raw(vec![2, 0, 0, 0, 0xff, 0xff]));
        let end = next_chain(&mut stream).await.unwrap_err();
        assert_eq!(end.code(), Code::Internal);
        assert!(stream.next().await.is_none());
    }
}
