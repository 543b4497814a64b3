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

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
