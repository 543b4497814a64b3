//! A fake dataplane command server for the sidecar's unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tapline_proto::v1;
use tapline_proto::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Answers with this message.
    Message(Box<v1::DataplaneResponse>),
    /// Writes these messages (a tap's stream), then waits until the
    /// client closes the connection.
    Stream(Vec<v1::DataplaneResponse>),
    /// Writes these bytes as they are, then closes.
    Raw(Vec<u8>),
    /// Closes without answering.
    Close,
    /// Never answers (until the client goes away).
    Hang,
}

impl Reply {
    pub(crate) fn message(m: v1::DataplaneResponse) -> Reply {
        Reply::Message(Box::new(m))
    }
}

type Answer = dyn Fn(&v1::DataplaneRequest) -> Reply + Send + Sync;

/// Serves `dir/control.sock` on the current runtime until dropped.
pub(crate) struct FakeDataplane {
    pub(crate) dir: PathBuf,
    /// Every request received, in order.
    pub(crate) requests: Arc<Mutex<Vec<v1::DataplaneRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A fresh, empty directory under the system's temporary directory.
pub(crate) fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "tapline-dp-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl FakeDataplane {
    pub(crate) fn start(
        name: &str,
        answer: impl Fn(&v1::DataplaneRequest) -> Reply + Send + Sync + 'static,
    ) -> FakeDataplane {
        let dir = tmpdir(name);
        let listener = UnixListener::bind(dir.join(wire::SOCKET_NAME)).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let task = {
            let requests = requests.clone();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(serve(conn, answer.clone(), requests.clone()));
                }
            })
        };
        FakeDataplane {
            dir,
            requests,
            task,
        }
    }

    pub(crate) fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Stops listening; the socket file stays, so connections are
    /// refused, as after a crash.
    pub(crate) fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for FakeDataplane {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve(
    mut conn: tokio::net::UnixStream,
    answer: Arc<Answer>,
    requests: Arc<Mutex<Vec<v1::DataplaneRequest>>>,
) {
    loop {
        let mut prefix = [0u8; 4];
        if conn.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let len = wire::decode_len(prefix).unwrap();
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await.unwrap();
        let req = <v1::DataplaneRequest as prost::Message>::decode(body.as_slice()).unwrap();
        requests.lock().unwrap().push(req.clone());
        match answer(&req) {
            Reply::Message(m) => {
                if conn.write_all(&wire::encode_frame(&*m)).await.is_err() {
                    return;
                }
            }
            Reply::Raw(bytes) => {
                let _ = conn.write_all(&bytes).await;
                return;
            }
            Reply::Stream(msgs) => {
                for m in msgs {
                    if conn.write_all(&wire::encode_frame(&m)).await.is_err() {
                        return;
                    }
                }
                let _ = conn.read(&mut [0u8; 1]).await;
                return;
            }
            Reply::Close => return,
            Reply::Hang => {
                // Until the client closes its side.
                let _ = conn.read(&mut [0u8; 1]).await;
                return;
            }
        }
    }
}

/// A chain of generation `generation` with one hop per name.
pub(crate) fn chain(generation: u64, hops: &[&str]) -> v1::Chain {
    let spec = v1::ChainSpec {
        hops: hops
            .iter()
            .enumerate()
            .map(|(i, name)| v1::HopSpec {
                name: name.to_string(),
                a: format!("tool{i}a"),
                b: format!("tool{i}b"),
                on_failure: v1::FailureAction::Bypass.into(),
            })
            .collect(),
        default_on_failure: v1::FailureAction::Unspecified.into(),
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
                    tool_healthy: true,
                    ..Default::default()
                })
                .collect(),
            last_rejected: None,
        }),
    }
}

/// The answer to `get_chain` with `chain`.
pub(crate) fn get_chain_answer(chain: v1::Chain) -> Reply {
    Reply::message(v1::DataplaneResponse {
        response: Some(v1::dataplane_response::Response::GetChain(
            v1::GetChainResponse { chain: Some(chain) },
        )),
    })
}
