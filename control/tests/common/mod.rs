//! Helpers shared by the integration tests of this package.

#![allow(dead_code)] // Each test file uses a part.

use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tapline_config::Config;
use tapline_control::audit::AuditLog;
use tapline_control::Bound;
use tapline_proto::v1;
use tapline_proto::wire;
use tonic::transport::Channel;
use tonic::Request;

/// A fresh directory under the system's temporary directory.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tapline-control-{}-{name}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `[interfaces]` of a sidecar that follows a dataplane with the
/// inline pair only.
pub const INLINE_PAIR: &str = "inline-1 = \"i1\"\ninline-2 = \"i2\"\n";
/// The `[interfaces]` of a sidecar with a passive port and the inline pair.
pub const PASSIVE_AND_INLINE: &str = "passive-1 = \"p1\"\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n";

/// A configuration with `interfaces`, `state_dir` = `state` and the
/// sidecar on ephemeral ports, `control` appended to `[control]`.
pub fn sidecar_config(interfaces: &str, state: &Path, control: &str) -> Config {
    Config::parse(&format!(
        r#"
[interfaces]
{interfaces}
[dataplane]
state_dir = "{}"

[control]
grpc_listen = "127.0.0.1:0"
health_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
{control}
"#,
        state.display()
    ))
    .unwrap()
}

/// The sidecar in-process, serving until [`Sidecar::stop`].
pub struct Sidecar {
    pub grpc: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
    audit: Option<Arc<Mutex<Vec<String>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tapline_control::ServeError>>>,
}

impl Sidecar {
    /// Binds and serves `cfg`, its audit trail on stdout (the default).
    pub async fn start(cfg: Config) -> Sidecar {
        Sidecar::serve(Bound::bind(cfg).await.unwrap(), None)
    }

    /// Binds and serves `cfg` with its audit trail sent to `log`.
    pub async fn start_with_audit(cfg: Config, log: AuditLog) -> Sidecar {
        Sidecar::serve(Bound::bind(cfg).await.unwrap().with_audit(log), None)
    }

    /// Binds and serves `cfg` with its audit lines in memory
    /// ([`Sidecar::take_audit`]).
    pub async fn start_audited(cfg: Config) -> Sidecar {
        let (log, audit) = AuditLog::memory();
        let bound = Bound::bind(cfg).await.unwrap().with_audit(log);
        Sidecar::serve(bound, Some(audit))
    }

    fn serve(bound: Bound, audit: Option<Arc<Mutex<Vec<String>>>>) -> Sidecar {
        let (grpc, health, metrics) =
            (bound.grpc_addr(), bound.health_addr(), bound.metrics_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async {
            let _ = rx.await;
        }));
        Sidecar {
            grpc,
            health,
            metrics,
            audit,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The audit lines so far, parsed, and forgotten (a sidecar of
    /// [`Sidecar::start_audited`]).
    pub fn take_audit(&self) -> Vec<Value> {
        let audit = self.audit.as_ref().expect("the audit trail in memory");
        std::mem::take(&mut *audit.lock().unwrap())
            .iter()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// A plaintext channel to the gRPC listener.
    pub async fn channel(&self) -> Channel {
        channel(self.grpc).await
    }

    /// Shuts the sidecar down; it must finish within 10 s, cleanly.
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(10)).await;
    }

    /// Shuts the sidecar down; it must finish within `timeout`, cleanly.
    pub async fn stop_within(mut self, timeout: Duration) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(timeout, self.task.take().unwrap())
            .await
            .expect("the sidecar stops in time")
            .unwrap()
            .unwrap();
    }
}

/// A plaintext channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `msg` with `authorization: Bearer TOKEN` when a token is given.
pub fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

/// How often the fake looks for a new connection.
const ACCEPT_POLL: std::time::Duration = std::time::Duration::from_millis(5);

type Answer = dyn Fn(&v1::DataplaneRequest) -> v1::DataplaneResponse + Send + Sync;

/// The dataplane's command socket, faked: `state_dir/control.sock` served
/// by a thread with the blocking framing of `tapline_proto::wire`, one
/// connection at a time, answering each request with `answer`.
pub struct FakeCommandSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Every request received, in order.
    pub requests: Arc<Mutex<Vec<v1::DataplaneRequest>>>,
}

impl FakeCommandSocket {
    pub fn start(
        state_dir: &Path,
        answer: impl Fn(&v1::DataplaneRequest) -> v1::DataplaneResponse + Send + Sync + 'static,
    ) -> FakeCommandSocket {
        let path = state_dir.join(wire::SOCKET_NAME);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        // Non-blocking accept, so the thread sees the stop flag even when
        // the socket's directory was removed (nothing could connect to wake
        // a blocking accept then).
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_POLL);
                            continue;
                        }
                        Err(_) => continue,
                    };
                    conn.set_nonblocking(false).unwrap();
                    while let Ok(Some(req)) = wire::read_frame::<v1::DataplaneRequest, _>(&mut conn)
                    {
                        requests.lock().unwrap().push(req.clone());
                        if wire::write_frame(&mut conn, &answer(&req)).is_err() {
                            break;
                        }
                    }
                }
            })
        };
        FakeCommandSocket {
            path,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    /// How many requests arrived.
    pub fn seen(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for FakeCommandSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A response carrying `r`.
pub fn response(r: v1::dataplane_response::Response) -> v1::DataplaneResponse {
    v1::DataplaneResponse { response: Some(r) }
}

/// A chain at `generation`, applied, with one healthy hop per name.
pub fn chain(generation: u64, hops: &[&str]) -> v1::Chain {
    let spec = v1::ChainSpec {
        hops: hops
            .iter()
            .enumerate()
            .map(|(i, name)| v1::HopSpec {
                name: name.to_string(),
                a: format!("tool{i}a"),
                b: format!("tool{i}b"),
                on_failure: v1::FailureAction::Unspecified.into(),
            })
            .collect(),
        default_on_failure: v1::FailureAction::Bypass.into(),
    };
    v1::Chain {
        spec: Some(spec.clone()),
        generation,
        updated_at: None,
        status: Some(v1::ChainStatus {
            observed_generation: generation,
            applied_spec: Some(spec),
            applied_at: None,
            hops: hops
                .iter()
                .map(|name| v1::HopStatus {
                    name: name.to_string(),
                    state: v1::HopState::Up.into(),
                    traffic: v1::HopTraffic::ThroughTool.into(),
                    on_failure: v1::FailureAction::Bypass.into(),
                    tool_healthy: true,
                    reason: "HeartbeatsReturned".into(),
                    ..Default::default()
                })
                .collect(),
            last_rejected: None,
        }),
    }
}
