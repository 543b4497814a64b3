//! The sidecar's client of the dataplane's command socket,
//! `state_dir/control.sock` (`tapline/v1/dataplane.proto`, framing in
//! [`tapline_proto::wire`]). The dataplane owns the chain; the sidecar
//! forwards chain requests here and turns the answers into gRPC results.
//!
//! Each call opens its own connection, sends one request and reads one
//! answer: nothing to reconnect or resynchronise when the dataplane
//! restarts, and a call that times out or reads garbage leaves no broken
//! connection behind for the next one. A tap ([`DataplaneClient::tap`])
//! opens a connection of its own too and keeps it for its stream; dropping
//! the [`TapConnection`] closes it, which cancels the tap in the dataplane.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use tapline_proto::v1;
use tapline_proto::v1::dataplane_request::Request;
use tapline_proto::v1::dataplane_response::Response;
use tapline_proto::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::{Code, Status};

use crate::details;

/// Deadline of a `set_chain` exchange: the dataplane validates, persists
/// and applies the spec before it answers (between two batches, after
/// giving frames inside removed tools time to come back), which can take a
/// second or two.
pub const SET_CHAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline of the other requests, which the dataplane answers from
/// memory.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of a tap's first answer (`started` or an error): the dataplane
/// checks the request and allocates the tap's buffers first.
pub const TAP_START_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an exchange with the dataplane failed before it answered.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error(
        "the dataplane closed the connection without answering (it stopped, or it \
         refuses connections from another uid: run tapline-control with the dataplane's uid)"
    )]
    Closed,
    #[error("the dataplane closed the connection in the middle of its answer")]
    Truncated,
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Malformed(String),
}

/// A handle on the command socket of the dataplane using `state_dir`.
/// Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct DataplaneClient {
    path: PathBuf,
}

impl DataplaneClient {
    /// The client of `state_dir/control.sock`.
    pub fn new(state_dir: &Path) -> DataplaneClient {
        DataplaneClient {
            path: state_dir.join(wire::SOCKET_NAME),
        }
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Sends `req` on a new connection and returns the dataplane's answer,
    /// which is of the same kind as `req`. Everything, connecting included,
    /// must be done within `timeout`.
    ///
    /// - The socket missing, refusing, closing or not answering in time:
    ///   UNAVAILABLE, naming the socket.
    /// - An answer that is too large, does not decode or is of another
    ///   kind: INTERNAL.
    /// - A `DataplaneError`: its code and message, with its validation
    ///   result in the status details (see [`details`]).
    pub async fn call(&self, req: Request, timeout: Duration) -> Result<Response, Status> {
        let asked = request_name(&req);
        let mutating = !matches!(req, Request::GetChain(_));
        let msg = v1::DataplaneRequest { request: Some(req) };
        let answer = tokio::time::timeout(timeout, self.exchange(&msg))
            .await
            .unwrap_or(Err(CallError::Timeout(timeout)))
            .map_err(|e| self.failure(&e, mutating))?;
        match answer.response {
            Some(Response::Error(e)) => Err(error_status(e)),
            Some(r) if response_name(&r) == asked => Ok(r),
            Some(r) => Err(Status::internal(format!(
                "dataplane command socket {}: the dataplane answered {asked} with {}; \
                 are tapline-control and tapline-dataplane the same version?",
                self.path.display(),
                response_name(&r)
            ))),
            None => Err(Status::internal(format!(
                "dataplane command socket {}: the dataplane answered {asked} with an empty \
                 response; are tapline-control and tapline-dataplane the same version?",
                self.path.display()
            ))),
        }
    }

    /// `GetChain`, within [`QUERY_TIMEOUT`].
    pub async fn get_chain(&self) -> Result<v1::GetChainResponse, Status> {
        match self
            .call(Request::GetChain(v1::GetChainRequest {}), QUERY_TIMEOUT)
            .await?
        {
            Response::GetChain(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    /// `SetChain`, within [`SET_CHAIN_TIMEOUT`].
    pub async fn set_chain(
        &self,
        req: v1::SetChainRequest,
    ) -> Result<v1::SetChainResponse, Status> {
        match self.call(Request::SetChain(req), SET_CHAIN_TIMEOUT).await? {
            Response::SetChain(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    /// `SetHopBypass`, within [`QUERY_TIMEOUT`].
    pub async fn set_hop_bypass(
        &self,
        req: v1::SetHopBypassRequest,
    ) -> Result<v1::SetHopBypassResponse, Status> {
        match self.call(Request::SetHopBypass(req), QUERY_TIMEOUT).await? {
            Response::SetHopBypass(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    /// Starts a tap on a new connection and returns it once the dataplane
    /// answered with `started` (within [`TAP_START_TIMEOUT`]). Errors as
    /// for [`DataplaneClient::call`]: UNAVAILABLE without a dataplane, the
    /// dataplane's own status for a request it refuses.
    pub async fn tap(&self, req: v1::TapRequest) -> Result<TapConnection, Status> {
        let msg = v1::DataplaneRequest {
            request: Some(Request::Tap(req)),
        };
        let start = async {
            let mut s = UnixStream::connect(&self.path)
                .await
                .map_err(CallError::Connect)?;
            s.write_all(&wire::encode_frame(&msg))
                .await
                .map_err(CallError::Io)?;
            let first = read_response(&mut s).await?;
            Ok::<_, CallError>((s, first))
        };
        let (stream, first) = tokio::time::timeout(TAP_START_TIMEOUT, start)
            .await
            .unwrap_or(Err(CallError::Timeout(TAP_START_TIMEOUT)))
            .map_err(|e| self.failure(&e, false))?;
        let first = match first {
            Some(first) => first,
            None => return Err(self.failure(&CallError::Closed, false)),
        };
        match first.response {
            Some(Response::Tap(t)) if t.started.is_some() => Ok(TapConnection {
                stream,
                path: self.path.clone(),
                first: Some(t),
            }),
            Some(Response::Error(e)) => Err(error_status(e)),
            other => Err(Status::internal(format!(
                "dataplane command socket {}: the dataplane answered a tap request with {}; \
                 are tapline-control and tapline-dataplane the same version?",
                self.path.display(),
                other.as_ref().map_or("an empty response", |r| match r {
                    Response::Tap(_) => "a tap message without `started`",
                    r => response_name(r),
                })
            ))),
        }
    }

    async fn exchange(
        &self,
        msg: &v1::DataplaneRequest,
    ) -> Result<v1::DataplaneResponse, CallError> {
        let mut s = UnixStream::connect(&self.path)
            .await
            .map_err(CallError::Connect)?;
        s.write_all(&wire::encode_frame(msg))
            .await
            .map_err(CallError::Io)?;
        read_response(&mut s).await?.ok_or(CallError::Closed)
    }

    /// The status of a failed exchange.
    fn failure(&self, e: &CallError, mutating: bool) -> Status {
        let path = self.path.display();
        match e {
            // The request went out: a mutation may have been applied
            // although its answer is unreadable.
            CallError::Malformed(why) if mutating => Status::internal(format!(
                "dataplane command socket {path}: {why}; {OUTCOME_UNKNOWN}"
            )),
            CallError::Malformed(why) => Status::internal(format!(
                "dataplane command socket {path}: {why}; are tapline-control and \
                 tapline-dataplane the same version?"
            )),
            // Once the request is out, a mutation may have been applied
            // although no answer came back.
            CallError::Timeout(_) | CallError::Truncated | CallError::Io(_) if mutating => {
                Status::unavailable(format!(
                    "dataplane command socket {path} unreachable: {e}; {OUTCOME_UNKNOWN}"
                ))
            }
            _ => Status::unavailable(format!(
                "dataplane command socket {path} unreachable: {e}; is tapline-dataplane \
                 running with the same state_dir?"
            )),
        }
    }
}

/// The end of the message of a change whose answer was lost: it may have
/// been applied (see [`outcome_unknown`]).
const OUTCOME_UNKNOWN: &str = "the change may have been applied: read the chain before retrying";

/// Whether `s` reports a change whose outcome is unknown (sent, but its
/// answer was lost or unreadable), as opposed to one the dataplane refused.
pub fn outcome_unknown(s: &Status) -> bool {
    s.message().ends_with(OUTCOME_UNKNOWN)
}

/// Reads one framed response; `None` when the dataplane closed the
/// connection before a new frame.
async fn read_response(s: &mut UnixStream) -> Result<Option<v1::DataplaneResponse>, CallError> {
    let mut prefix = [0u8; 4];
    match s.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(CallError::Io(e)),
    }
    let len = wire::decode_len(prefix).map_err(|e| CallError::Malformed(e.to_string()))?;
    let mut body = vec![0u8; len];
    match s.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(CallError::Truncated),
        Err(e) => return Err(CallError::Io(e)),
    }
    v1::DataplaneResponse::decode(body.as_slice())
        .map(Some)
        .map_err(|e| CallError::Malformed(format!("the answer does not decode: {e}")))
}

/// A running tap's connection to the dataplane. Dropping it closes the
/// connection, which ends the tap in the dataplane.
#[derive(Debug)]
pub struct TapConnection {
    stream: UnixStream,
    path: PathBuf,
    /// The `started` message, not handed out yet.
    first: Option<v1::TapResponse>,
}

impl TapConnection {
    /// The next message of the tap (the first carries `started`, the last
    /// `ended`). `Ok(None)`: the dataplane closed the connection (after
    /// `ended`, or because it stopped). Not cancel safe: a message being
    /// read when the future is dropped is lost (drop the connection then).
    pub async fn next(&mut self) -> Result<Option<v1::TapResponse>, Status> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let path = self.path.display();
        match read_response(&mut self.stream).await {
            Ok(None) => Ok(None),
            Ok(Some(v1::DataplaneResponse {
                response: Some(Response::Tap(t)),
            })) => Ok(Some(t)),
            Ok(Some(v1::DataplaneResponse {
                response: Some(Response::Error(e)),
            })) => Err(error_status(e)),
            Ok(Some(other)) => Err(Status::internal(format!(
                "dataplane command socket {path}: a tap stream carried {:?}",
                other.response.as_ref().map(response_name)
            ))),
            Err(e) => Err(Status::unavailable(format!(
                "dataplane command socket {path}: the tap stream broke: {e}"
            ))),
        }
    }
}

/// The status a `DataplaneError` stands for.
fn error_status(e: v1::DataplaneError) -> Status {
    // 0 is OK: an error without a code is the dataplane's bug.
    if e.code == 0 {
        return Status::internal(format!(
            "the dataplane reported an error without a code: {}",
            e.message
        ));
    }
    let code = Code::from(e.code);
    match &e.validation {
        Some(v) => details::with_validation(code, e.message, v),
        None => Status::new(code, e.message),
    }
}

fn mismatch() -> Status {
    Status::internal("the dataplane's answer is of another kind than the request")
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::GetChain(_) => "get_chain",
        Request::SetChain(_) => "set_chain",
        Request::SetHopBypass(_) => "set_hop_bypass",
        Request::Tap(_) => "tap",
    }
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::GetChain(_) => "get_chain",
        Response::SetChain(_) => "set_chain",
        Response::SetHopBypass(_) => "set_hop_bypass",
        Response::Tap(_) => "tap",
        Response::Error(_) => "error",
    }
}

/// A fake dataplane command server for the sidecar's unit tests.
#[cfg(test)]
pub(crate) mod fake {
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
}

#[cfg(test)]
mod tests {
    use super::fake::{chain, get_chain_answer, tmpdir, FakeDataplane, Reply};
    use super::*;

    fn get() -> Request {
        Request::GetChain(v1::GetChainRequest {})
    }

    fn error(code: i32, message: &str, validation: Option<v1::ValidationResult>) -> Reply {
        Reply::message(v1::DataplaneResponse {
            response: Some(Response::Error(v1::DataplaneError {
                code,
                message: message.into(),
                validation,
            })),
        })
    }

    #[tokio::test]
    async fn answers_come_back_and_each_call_has_its_connection() {
        let dp = FakeDataplane::start("answers", |req| match &req.request {
            Some(Request::GetChain(_)) => get_chain_answer(chain(4, &["ids"])),
            Some(Request::SetHopBypass(r)) => Reply::message(v1::DataplaneResponse {
                response: Some(Response::SetHopBypass(v1::SetHopBypassResponse {
                    hop: Some(v1::HopStatus {
                        name: r.hop.clone(),
                        manual_bypass: r.bypass,
                        message: r.reason.clone(),
                        ..Default::default()
                    }),
                })),
            }),
            _ => Reply::Close,
        });
        let c = DataplaneClient::new(dp.state_dir());
        assert_eq!(c.socket_path(), dp.dir.join("control.sock"));
        for _ in 0..3 {
            let r = c.get_chain().await.unwrap();
            assert_eq!(r.chain, Some(chain(4, &["ids"])));
        }
        let req = v1::SetHopBypassRequest {
            hop: "ids".into(),
            bypass: true,
            reason: "upgrade, OPS-1".into(),
        };
        let hop = c.set_hop_bypass(req.clone()).await.unwrap().hop.unwrap();
        assert!(hop.manual_bypass);
        assert_eq!(hop.message, "upgrade, OPS-1");
        // The request arrived as sent.
        let seen = dp.requests.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3].request, Some(Request::SetHopBypass(req)));
    }

    #[tokio::test]
    async fn a_missing_or_dead_socket_is_unavailable_and_says_where() {
        let dir = tmpdir("missing");
        let c = DataplaneClient::new(&dir);
        let e = c.get_chain().await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        let path = dir.join("control.sock");
        assert!(
            e.message().starts_with(&format!(
                "dataplane command socket {} unreachable: cannot connect:",
                path.display()
            )),
            "{}",
            e.message()
        );
        assert!(
            e.message()
                .ends_with("is tapline-dataplane running with the same state_dir?"),
            "{}",
            e.message()
        );

        // A socket file left by a dataplane that died: connection refused.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let e = c.get_chain().await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("refused"), "{}", e.message());
        std::fs::remove_dir_all(&dir).unwrap();

        let dp = FakeDataplane::start("killed", |_| get_chain_answer(chain(1, &[])));
        let c = DataplaneClient::new(dp.state_dir());
        c.get_chain().await.unwrap();
        dp.kill();
        tokio::task::yield_now().await;
        let e = c.get_chain().await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }

    #[tokio::test]
    async fn silence_and_hangups_are_unavailable() {
        let dp = FakeDataplane::start("hang", |req| match &req.request {
            Some(Request::GetChain(_)) => Reply::Hang,
            _ => Reply::Close,
        });
        let c = DataplaneClient::new(dp.state_dir());
        let t = std::time::Instant::now();
        let e = c.call(get(), Duration::from_millis(200)).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message().contains("no answer within 200 ms"),
            "{}",
            e.message()
        );

        let e = c
            .set_hop_bypass(v1::SetHopBypassRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message()
                .contains("closed the connection without answering"),
            "{}",
            e.message()
        );
    }

    #[tokio::test]
    async fn garbage_is_internal_and_oversized_frames_are_refused() {
        let (tx, rx) = std::sync::mpsc::channel::<Reply>();
        let rx = std::sync::Mutex::new(rx);
        let dp = FakeDataplane::start("garbage", move |_| rx.lock().unwrap().recv().unwrap());
        let c = DataplaneClient::new(dp.state_dir());
        let cases: Vec<(Reply, Code, &str)> = vec![
            // A length far beyond MAX_FRAME: refused before any allocation.
            (
                Reply::Raw(u32::MAX.to_le_bytes().to_vec()),
                Code::Internal,
                "larger than the limit",
            ),
            (
                Reply::Raw(((wire::MAX_FRAME + 1) as u32).to_le_bytes().to_vec()),
                Code::Internal,
                "larger than the limit",
            ),
            // A body that is not a DataplaneResponse.
            (
                Reply::Raw(vec![3, 0, 0, 0, 0xff, 0xff, 0xff]),
                Code::Internal,
                "does not decode",
            ),
            // Cut short: the dataplane died while answering.
            (
                Reply::Raw(vec![10, 0, 0, 0, 0x0a]),
                Code::Unavailable,
                "in the middle of its answer",
            ),
            // Half a length prefix.
            (
                Reply::Raw(vec![10, 0]),
                Code::Unavailable,
                "without answering",
            ),
            // A well-formed answer of the wrong kind.
            (
                Reply::message(v1::DataplaneResponse {
                    response: Some(Response::SetChain(v1::SetChainResponse::default())),
                }),
                Code::Internal,
                "answered get_chain with set_chain",
            ),
            (
                Reply::message(v1::DataplaneResponse { response: None }),
                Code::Internal,
                "empty response",
            ),
            (
                error(0, "oops", None),
                Code::Internal,
                "error without a code: oops",
            ),
        ];
        for (reply, code, needle) in cases {
            tx.send(reply.clone()).unwrap();
            let e = c.call(get(), QUERY_TIMEOUT).await.unwrap_err();
            assert_eq!(e.code(), code, "{reply:?}: {e:?}");
            assert!(e.message().contains(needle), "{reply:?}: {}", e.message());
            assert!(!e.message().contains('\n'), "{}", e.message());
        }
        // The client is not wedged by any of that.
        tx.send(get_chain_answer(chain(2, &[]))).unwrap();
        assert_eq!(c.get_chain().await.unwrap().chain.unwrap().generation, 2);
    }

    #[tokio::test]
    async fn dataplane_errors_become_statuses_with_their_validation() {
        let validation = v1::ValidationResult {
            valid: false,
            errors: vec![
                v1::ValidationIssue {
                    field: "hops[0].a".into(),
                    message: "interface tool0a does not exist".into(),
                },
                v1::ValidationIssue {
                    field: "hops[1].name".into(),
                    message: "\"ids\" is used by hops[0] already".into(),
                },
            ],
            warnings: vec![],
        };
        let v = validation.clone();
        let dp = FakeDataplane::start("errors", move |req| match &req.request {
            Some(Request::SetChain(r)) if r.expected_generation == Some(1) => {
                error(9, "expected generation 1, the chain is at 2", None)
            }
            Some(Request::SetChain(_)) => error(3, "the spec is invalid", Some(v.clone())),
            Some(Request::SetHopBypass(_)) => error(5, "no hop \"x\"", None),
            _ => error(99, "from the future", None),
        });
        let c = DataplaneClient::new(dp.state_dir());
        let e = c
            .set_chain(v1::SetChainRequest {
                spec: Some(v1::ChainSpec::default()),
                expected_generation: None,
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "the spec is invalid");
        assert_eq!(details::validation(&e), Some(validation));

        let e = c
            .set_chain(v1::SetChainRequest {
                spec: Some(v1::ChainSpec::default()),
                expected_generation: Some(1),
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.details().is_empty());

        let e = c
            .set_hop_bypass(v1::SetHopBypassRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), "no hop \"x\"");

        let e = c.get_chain().await.unwrap_err();
        assert_eq!(e.code(), Code::Unknown);
    }

    #[tokio::test]
    async fn a_mutation_that_times_out_may_have_been_applied() {
        let dp = FakeDataplane::start("slow-set", |_| Reply::Hang);
        let c = DataplaneClient::new(dp.state_dir());
        let e = c
            .call(
                Request::SetChain(v1::SetChainRequest::default()),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message().contains("the change may have been applied"),
            "{}",
            e.message()
        );
    }
}
