//! Helpers shared by the integration tests of this package.

#![allow(dead_code)] // Each test file uses a part.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tapline_proto::v1;
use tapline_proto::wire;

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
