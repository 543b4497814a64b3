//! `tapline-control` served in-process against a stats segment written by
//! the test (the dataplane's own writer, no kernel and no root): health on
//! both listeners through a dataplane's start, death, restart and clean
//! stop; bearer tokens; reflection; counters and watches; metrics over
//! HTTP; shutdown with watches open.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{channel, sidecar_config, tmpdir, Sidecar, PASSIVE_AND_INLINE};
use tapline_control::Bound;
use tapline_dataplane::config::Config;
use tapline_dataplane::xdp::shm::{QueueInfo, SegmentState, StatsSegment};
use tapline_proto::v1;
use tapline_proto::v1::admin_client::AdminClient;
use tapline_proto::v1::observer_client::ObserverClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TOKEN: &str = "test-token-0123456789";
/// `control.dataplane_stale_ms` of the test configuration.
const STALE_MS: u64 = 300;
/// How often the fake dataplane beats (the real one: every 100 ms).
const BEAT: Duration = Duration::from_millis(50);

fn config(dir: &Path) -> Config {
    let token = dir.join("observer.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    sidecar_config(
        PASSIVE_AND_INLINE,
        &state,
        &format!(
            "observer_token_file = \"{}\"\ndataplane_stale_ms = {STALE_MS}\n",
            token.display()
        ),
    )
}

/// A fake dataplane run: a segment with inline-1/inline-2/passive-1 on
/// queue 0 and one worker, beating from a thread until `stop_beating`.
struct FakeDataplane {
    seg: Arc<StatsSegment>,
    beating: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeDataplane {
    fn start(state_dir: &Path, epoch: u64) -> FakeDataplane {
        let seg = StatsSegment::create(state_dir, 3, 1, epoch).unwrap();
        for (i, (role, ifname)) in [("inline-1", "i1"), ("inline-2", "i2"), ("passive-1", "p1")]
            .into_iter()
            .enumerate()
        {
            seg.describe_queue(
                i,
                &QueueInfo {
                    role: role.into(),
                    ifname: ifname.into(),
                    queue: 0,
                    mode: "native-zerocopy".into(),
                    worker: 0,
                    hop: String::new(),
                },
            );
        }
        seg.set_state(SegmentState::Running);
        let beating = Arc::new(AtomicBool::new(true));
        let thread = {
            let (seg, beating) = (seg.clone(), beating.clone());
            std::thread::spawn(move || {
                while beating.load(Ordering::Relaxed) {
                    seg.beat();
                    std::thread::sleep(BEAT);
                }
            })
        };
        FakeDataplane {
            seg,
            beating,
            thread: Some(thread),
        }
    }

    /// As if the process were killed: the heartbeat stops, the state still
    /// says running.
    fn stop_beating(&mut self) {
        self.beating.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for FakeDataplane {
    fn drop(&mut self) {
        self.stop_beating();
    }
}

fn authed<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

async fn check(h: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let status = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// Waits for the next status of a health watch, with a deadline.
async fn next_status(
    w: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    within: Duration,
) -> ServingStatus {
    let msg = tokio::time::timeout(within, w.next())
        .await
        .expect("a health update in time")
        .expect("the watch is open")
        .expect("no error");
    ServingStatus::try_from(msg.status).unwrap()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The clients of the life-cycle test: the health service on the probe
/// listener and on the gRPC listener, the Observer, and where /metrics is.
struct Clients {
    grpc_ch: Channel,
    health: HealthClient<Channel>,
    grpc_health: HealthClient<Channel>,
    observer: ObserverClient<Channel>,
    metrics: SocketAddr,
}

type HealthWatch = tonic::Streaming<tonic_health::pb::HealthCheckResponse>;
type StatsWatch = tonic::Streaming<v1::WatchStatsResponse>;

/// No dataplane yet: every name NOT_SERVING on both listeners, no
/// counters, metrics say down.
async fn without_a_dataplane(c: &mut Clients) {
    for name in ["", "passive-1", "inline"] {
        assert_eq!(check(&mut c.health, name).await, ServingStatus::NotServing);
        assert_eq!(
            check(&mut c.grpc_health, name).await,
            ServingStatus::NotServing
        );
    }
    let e = c
        .observer
        .get_stats(authed(v1::GetStatsRequest { selector: None }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("no dataplane found"),
        "{}",
        e.message()
    );
    let m = http_get(c.metrics, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
    assert!(m.contains("\ntapline_dataplane_up 0\n"), "{m}");
    assert!(!m.contains("tapline_port_"), "{m}");
    assert!(http_get(c.metrics, "/other")
        .await
        .starts_with("HTTP/1.1 404"));
}

/// The dataplane started: SERVING on the watch and for every name; the
/// probe listener serves no other service.
async fn serving(c: &mut Clients, watch: &mut HealthWatch) {
    assert_eq!(
        next_status(watch, Duration::from_secs(2)).await,
        ServingStatus::Serving
    );
    for name in ["", "passive-1", "inline"] {
        assert_eq!(
            check(&mut c.grpc_health, name).await,
            ServingStatus::Serving
        );
    }
    assert_eq!(
        c.health
            .check(HealthCheckRequest {
                service: "tapline.v1.Admin".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

/// Tokens: Observer needs one, health and reflection do not; with it,
/// GetInfo describes the dataplane.
async fn tokens_and_info(c: &mut Clients) {
    let e = c
        .observer
        .get_info(v1::GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut wrong = Request::new(v1::GetInfoRequest {});
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    let e = c.observer.get_info(wrong).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains('\n'));

    let info = c
        .observer
        .get_info(authed(v1::GetInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.dataplane_state(), v1::DataplaneState::Running);
    assert_eq!(info.stats_epoch, 0x1111);
    assert!(info.dataplane_started_at.is_some());
    let modes: Vec<(&str, &str, usize)> = info
        .interfaces
        .iter()
        .map(|i| (i.role.as_str(), i.xdp_mode.as_str(), i.queues.len()))
        .collect();
    assert_eq!(
        modes,
        [
            ("passive-1", "native-zerocopy", 1),
            ("inline-1", "native-zerocopy", 1),
            ("inline-2", "native-zerocopy", 1)
        ]
    );
}

/// Counters: exactly what the dataplane wrote, in GetStats and /metrics.
async fn counters(c: &mut Clients, dp: &FakeDataplane) {
    seg_add(&dp.seg, 0, 1000, 64_000);
    seg_add(&dp.seg, 2, 7, 700);
    let st = c
        .observer
        .get_stats(authed(v1::GetStatsRequest { selector: None }))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(st.stats_epoch, 0x1111);
    assert_eq!(st.rates_window_ms, 0);
    let rx: Vec<(&str, u64, u64)> = st
        .ports
        .iter()
        .map(|p| {
            let t = p.totals.as_ref().unwrap();
            (p.role.as_str(), t.rx_packets, t.rx_bytes)
        })
        .collect();
    assert_eq!(
        rx,
        [
            ("passive-1", 7, 700),
            ("inline-1", 1000, 64_000),
            ("inline-2", 0, 0)
        ]
    );
    let m = http_get(c.metrics, "/metrics").await;
    assert!(m.contains("\ntapline_dataplane_up 1\n"), "{m}");
    assert!(
        m.contains(
            "\ntapline_port_rx_packets_total{port=\"inline-1\",ifname=\"i1\",queue=\"0\"} 1000\n"
        ),
        "{m}"
    );
}

/// A stats watch: the first message at once without rates, then rates.
/// Returns the watch, still open.
async fn stats_watch_with_rates(c: &mut Clients, dp: &FakeDataplane) -> StatsWatch {
    let e = c
        .observer
        .watch_stats(authed(v1::WatchStatsRequest {
            interval_ms: 5,
            selector: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut stats_watch = c
        .observer
        .watch_stats(authed(v1::WatchStatsRequest {
            interval_ms: 200,
            selector: Some(v1::StatsSelector {
                roles: vec!["inline-1".into()],
                omit_queues: true,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let first = stats_watch.next().await.unwrap().unwrap();
    assert_eq!(first.interval_ms, 200);
    let first = first.stats.unwrap();
    assert_eq!(first.rates_window_ms, 0);
    assert_eq!(first.ports.len(), 1);
    assert!(first.ports[0].queues.is_empty());
    seg_add(&dp.seg, 0, 500, 32_000);
    let second = stats_watch.next().await.unwrap().unwrap().stats.unwrap();
    assert!(second.rates_window_ms >= 150, "{}", second.rates_window_ms);
    let r = second.ports[0].rates.as_ref().unwrap();
    let expected = 500.0 / (second.rates_window_ms as f64 / 1000.0);
    assert!(
        (r.rx_packets_per_second - expected).abs() / expected < 0.05,
        "{} vs {expected}",
        r.rx_packets_per_second
    );
    stats_watch
}

/// Reflection lists what is served, Admin included; without an admin
/// token file, Admin refuses every call: the Observer's token is a known
/// identity without the role (PERMISSION_DENIED, saying what to set).
async fn reflection_and_admin_without_token(c: &mut Clients) {
    let services = reflection_services(c.grpc_ch.clone()).await;
    assert!(services.contains(&"tapline.v1.Observer".to_string()));
    assert!(services.contains(&"tapline.v1.Admin".to_string()));
    assert!(services.contains(&"grpc.health.v1.Health".to_string()));
    let e = AdminClient::new(c.grpc_ch.clone())
        .set_chain(authed(v1::SetChainRequest {
            spec: Some(v1::ChainSpec::default()),
            expected_generation: None,
            dry_run: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("control.admin_token_file"),
        "{}",
        e.message()
    );
}

/// The dataplane dies: NOT_SERVING within the staleness limit (plus the
/// beat interval the test cannot see), and the stats watch ends UNAVAILABLE.
async fn dataplane_dies(
    c: &mut Clients,
    dp: &mut FakeDataplane,
    watch: &mut HealthWatch,
    mut stats_watch: StatsWatch,
) {
    let died = Instant::now();
    dp.stop_beating();
    assert_eq!(
        next_status(watch, Duration::from_millis(STALE_MS + 1000)).await,
        ServingStatus::NotServing
    );
    let after = died.elapsed();
    assert!(
        after <= Duration::from_millis(STALE_MS + 300),
        "NOT_SERVING {after:?} after the last beat"
    );
    let end = loop {
        match stats_watch
            .next()
            .await
            .expect("the watch ends with a status")
        {
            Ok(_) => continue,
            Err(s) => break s,
        }
    };
    assert_eq!(end.code(), Code::Unavailable);
    assert!(end.message().contains("unresponsive"), "{}", end.message());
    assert!(stats_watch.next().await.is_none());
    assert!(http_get(c.metrics, "/metrics")
        .await
        .contains("\ntapline_dataplane_up 0\n"));
}

/// It restarts (a new file, a new epoch): SERVING again, new counters;
/// then stops cleanly: NOT_SERVING at the next look. Returns the stopped
/// dataplane.
async fn restarts_then_stops(
    c: &mut Clients,
    dp: FakeDataplane,
    watch: &mut HealthWatch,
    state_dir: &Path,
) -> FakeDataplane {
    drop(dp);
    let dp = FakeDataplane::start(state_dir, 0x2222);
    assert_eq!(
        next_status(watch, Duration::from_secs(2)).await,
        ServingStatus::Serving
    );
    let st = c
        .observer
        .get_stats(authed(v1::GetStatsRequest { selector: None }))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(st.stats_epoch, 0x2222);
    assert_eq!(st.ports[1].totals.as_ref().unwrap().rx_packets, 0);

    let stopping = Instant::now();
    dp.seg.set_state(SegmentState::Stopped);
    assert_eq!(
        next_status(watch, Duration::from_secs(1)).await,
        ServingStatus::NotServing
    );
    assert!(stopping.elapsed() < Duration::from_millis(500));
    dp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_dataplane_and_serves_its_counters() {
    let dir = tmpdir("follow");
    let cfg = config(&dir);
    let state_dir = cfg.state_dir.clone();
    let sidecar = Sidecar::start(cfg).await;
    let (grpc, health_addr, metrics) = (sidecar.grpc, sidecar.health, sidecar.metrics);

    let grpc_ch = channel(grpc).await;
    let mut c = Clients {
        health: HealthClient::new(channel(health_addr).await),
        grpc_health: HealthClient::new(grpc_ch.clone()),
        observer: ObserverClient::new(grpc_ch.clone()),
        grpc_ch,
        metrics,
    };
    without_a_dataplane(&mut c).await;

    // Health is watched on the probe listener through the whole life.
    let mut watch = c
        .health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_status(&mut watch, Duration::from_secs(1)).await,
        ServingStatus::NotServing
    );

    // The dataplane starts.
    let mut dp = FakeDataplane::start(&state_dir, 0x1111);
    serving(&mut c, &mut watch).await;
    tokens_and_info(&mut c).await;
    counters(&mut c, &dp).await;
    let stats_watch = stats_watch_with_rates(&mut c, &dp).await;
    reflection_and_admin_without_token(&mut c).await;
    dataplane_dies(&mut c, &mut dp, &mut watch, stats_watch).await;
    let dp = restarts_then_stops(&mut c, dp, &mut watch, &state_dir).await;

    // Shutdown with a chain watch and a health watch open: both end and
    // the server returns. The chain comes from the dataplane's command
    // socket.
    let commands = common::FakeCommandSocket::start(&state_dir, |_| {
        common::response(v1::dataplane_response::Response::GetChain(
            v1::GetChainResponse {
                chain: Some(common::chain(1, &[])),
            },
        ))
    });
    let mut chain_watch = c
        .observer
        .watch_chain(authed(v1::WatchChainRequest {}))
        .await
        .unwrap()
        .into_inner();
    let chain = chain_watch.next().await.unwrap().unwrap().chain.unwrap();
    assert_eq!(chain.generation, 1);
    assert!(chain.spec.unwrap().hops.is_empty());
    let t = Instant::now();
    sidecar.stop_within(Duration::from_secs(3)).await;
    assert!(t.elapsed() < Duration::from_secs(3));
    let end = chain_watch.next().await;
    assert!(
        matches!(&end, Some(Err(s)) if s.code() == Code::Unavailable) || end.is_none(),
        "{end:?}"
    );
    drop(dp);
    drop(commands);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn seg_add(seg: &Arc<StatsSegment>, slot: usize, packets: u64, bytes: u64) {
    let q = seg.queue_slot(slot);
    q.rx_packets.add(packets);
    q.rx_bytes.add(bytes);
}

async fn reflection_services(ch: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    match msg.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn unreadable_token_file_is_a_config_error() {
    let dir = tmpdir("token");
    let mut cfg = config(&dir);
    cfg.control.observer_token_file = Some(dir.join("missing.token"));
    let e = Bound::bind(cfg).await.unwrap_err();
    assert_eq!(e.exit_code(), tapline_control::exit::CONFIG);
    assert!(
        e.to_string()
            .starts_with("config error: control.observer_token_file: cannot read"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
