//! The command socket, `state_dir/control.sock`, through which the sidecar
//! reads and changes the chain and starts taps.
//!
//! Connections are served concurrently: the control thread accepts them
//! and gives each one a thread of its own (`tapline-cmd-N`), which reads
//! requests under a deadline ([`REQUEST_DEADLINE`] for a whole request, so
//! a client that sends half a request or nothing at all is dropped and
//! never holds up anyone else), hands each decoded request to the control
//! thread, and writes the answer back (under [`REPLY_WRITE_TIMEOUT`]). The
//! control thread alone touches the chain, one request at a time, and never
//! does I/O with a client. At most [`MAX_CONNECTIONS`] connections may be
//! waiting for or sending a request at once; one more is answered
//! RESOURCE_EXHAUSTED and closed.
//!
//! A request frame is limited to [`limits::MAX_REQUEST_FRAME`]; a larger
//! one is answered INVALID_ARGUMENT and the connection closed. Every answer
//! is checked against the frame limit before it is written ([`fit`]).
//!
//! A tap request is checked and started by the control thread; the
//! connection's thread then streams the tap ([`crate::tap::stream`]), so a
//! running tap never holds up chain commands. A tap on a hop side ends when
//! a chain change removes that hop.

use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use prost::Message;
use tapline_proto::v1::dataplane_response::Response;
use tapline_proto::{limits, v1, wire};
use tracing::{debug, error, info, warn};

use crate::chain::control::ChainControl;
use crate::status::{self as code, error};
use crate::tap::{self, PortNames, TapPlan, TapRegistry};

/// How long a client has to send one whole request (or to send the next
/// one on a connection it keeps open).
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing one answer may block on a client that does not read.
pub(crate) const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections waiting for or sending a request at once (running taps are
/// not counted: `tap.max_concurrent` bounds them).
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// How long the control thread waits for work before it looks at hop
/// events, retries and new connections again.
const POLL: Duration = Duration::from_millis(10);
/// How long a stopping dataplane waits for its tap threads to send their
/// `ended` message (they notice within a few milliseconds unless their
/// client stopped reading).
const TAP_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stopping dataplane waits for the other connection threads
/// once their sockets are shut down.
const CONN_STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// What the command socket needs besides the chain.
#[derive(Debug, Clone)]
pub(crate) struct CommandSettings {
    pub state_dir: PathBuf,
    /// Uids besides our own allowed on the command socket.
    pub allowed_uids: Vec<u32>,
    /// The configured ports (tap points by role).
    pub ports: PortNames,
    pub taps: Arc<TapRegistry>,
}

/// The running control thread.
#[derive(Debug)]
pub(crate) struct ControlThread {
    stop: Arc<AtomicBool>,
    /// Asks the thread to bind the command socket again and re-persist the
    /// chain (the state directory was re-created).
    republish: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<ChainControl>>>,
    socket: PathBuf,
}

/// Binds the command socket in `state_dir` (replacing a stale one) and
/// restricts it to its owner and group.
fn listen(state_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = state_dir.join(wire::SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok((l, path))
}

impl ControlThread {
    /// Starts the thread: command socket, and with a chain (`control`, when
    /// an inline pair is configured) hop events and retries. If the socket
    /// cannot be created the dataplane still runs (the error is logged):
    /// the sidecar then cannot change the chain or tap.
    pub fn spawn(
        control: Option<ChainControl>,
        cmd: CommandSettings,
    ) -> std::io::Result<ControlThread> {
        let listener = match listen(&cmd.state_dir) {
            Ok((l, path)) => {
                info!(path = %path.display(), "command socket listening");
                Some(l)
            }
            Err(e) => {
                error!(state_dir = %cmd.state_dir.display(), error = %e, "cannot create the command socket: the chain cannot be read or changed and nothing can be tapped through the API; make dataplane.state_dir writable");
                None
            }
        };
        let socket = cmd.state_dir.join(wire::SOCKET_NAME);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let republish = Arc::new(AtomicBool::new(false));
        let again = republish.clone();
        let (jobs_tx, jobs) = crossbeam::channel::unbounded();
        let mut server = Server {
            control,
            cmd,
            listener,
            jobs_tx,
            jobs,
            conns: Vec::new(),
            next_conn: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tapline-ctl".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if again.swap(false, Ordering::Relaxed) {
                        match listen(&server.cmd.state_dir) {
                            Ok((l, path)) => {
                                info!(path = %path.display(), "command socket listening again");
                                server.listener = Some(l);
                            }
                            Err(e) => error!(error = %e, "cannot re-create the command socket"),
                        }
                        if let Some(c) = server.control.as_ref() {
                            c.persist_again();
                        }
                    }
                    if let Some(c) = server.control.as_mut() {
                        c.tick();
                    }
                    server.reap();
                    server.accept();
                    match server.jobs.recv_timeout(POLL) {
                        Ok(job) => server.run(job),
                        Err(_) if server.listener.is_none() => {
                            std::thread::sleep(Duration::from_millis(40))
                        }
                        Err(_) => {}
                    }
                }
                server.stop_connections();
                server.control
            })?;
        Ok(ControlThread {
            stop,
            republish,
            handle: Some(handle),
            socket,
        })
    }

    /// Asks the thread to bind the command socket again and to persist the
    /// chain again (after the state directory was re-created).
    pub(crate) fn republish(&self) {
        self.republish.store(true, Ordering::Relaxed);
    }

    /// Stops the thread (ending every tap with `DATAPLANE_STOPPED`) and
    /// returns the chain's owner, if any (whose drop closes the tool
    /// interfaces, after the workers are stopped).
    pub fn stop(mut self) -> Option<ChainControl> {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.handle.take().and_then(|h| h.join().ok()).flatten();
        let _ = std::fs::remove_file(&self.socket);
        c
    }
}

/// A request handed from a connection's thread to the control thread.
struct Job {
    request: v1::DataplaneRequest,
    reply: Sender<Outcome>,
}

/// The control thread's answer to a [`Job`].
enum Outcome {
    Reply(Box<v1::DataplaneResponse>),
    /// A tap that started: the connection's thread streams it.
    Tap(Arc<tap::Tap>, Box<TapPlan>),
}

/// One connection's thread.
#[derive(Debug)]
struct Conn {
    handle: std::thread::JoinHandle<()>,
    /// A handle on its socket, to shut it down when the dataplane stops.
    stream: Option<UnixStream>,
    /// It streams a tap (and no longer counts against
    /// [`MAX_CONNECTIONS`]).
    tapping: Arc<AtomicBool>,
}

/// The command socket's side of the control thread.
#[derive(Debug)]
struct Server {
    control: Option<ChainControl>,
    cmd: CommandSettings,
    listener: Option<UnixListener>,
    jobs_tx: Sender<Job>,
    jobs: Receiver<Job>,
    conns: Vec<Conn>,
    next_conn: u64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Server {
    /// Accepts every pending connection and starts its thread.
    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!(error = %e, "command socket accept failed");
                    return;
                }
            };
            let busy = self
                .conns
                .iter()
                .filter(|c| !c.tapping.load(Ordering::Acquire))
                .count();
            if busy >= MAX_CONNECTIONS {
                warn!(
                    connections = busy,
                    "command socket: too many connections at once; refusing one"
                );
                refuse_busy(stream);
                continue;
            }
            let n = self.next_conn;
            self.next_conn += 1;
            let tapping = Arc::new(AtomicBool::new(false));
            let ctx = ConnContext {
                jobs: self.jobs_tx.clone(),
                allowed_uids: self.cmd.allowed_uids.clone(),
                taps: self.cmd.taps.clone(),
                tapping: tapping.clone(),
            };
            let handle_stream = stream.try_clone().ok();
            match std::thread::Builder::new()
                .name(format!("tapline-cmd-{n}"))
                .spawn(move || ctx.serve(stream))
            {
                Ok(handle) => self.conns.push(Conn {
                    handle,
                    stream: handle_stream,
                    tapping,
                }),
                Err(e) => {
                    error!(error = %e, "cannot start a command connection thread; closing it")
                }
            }
        }
    }

    /// Joins the connection threads that are done.
    fn reap(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.conns)
            .into_iter()
            .partition(|c| c.handle.is_finished());
        self.conns = running;
        for c in done {
            let _ = c.handle.join();
        }
    }

    /// Answers one request.
    fn run(&mut self, job: Job) {
        let outcome = match job.request.request {
            Some(v1::dataplane_request::Request::Tap(ref t)) => self.start_tap(t),
            _ => Outcome::Reply(Box::new(match self.control.as_mut() {
                Some(c) => c.handle(job.request),
                None => v1::DataplaneResponse {
                    response: Some(error(
                        code::FAILED_PRECONDITION,
                        "no inline pair is configured ([interfaces] inline-1 and \
                         inline-2): this dataplane has no chain",
                    )),
                },
            })),
        };
        if let Err(e) = job.reply.send(outcome) {
            // The connection's thread is gone (it cannot be: it waits for
            // this answer without a deadline); a started tap is undone.
            if let Outcome::Tap(tap, _) = e.0 {
                self.cmd.taps.remove(&tap);
                self.cmd.taps.release(&tap);
            }
        }
        if let Some(c) = self.control.as_mut() {
            c.tick();
        }
    }

    fn start_tap(&self, req: &v1::TapRequest) -> Outcome {
        if let Err(v) = limits::check_tap(req) {
            info!(error = %v, "tap refused");
            return Outcome::Reply(Box::new(v1::DataplaneResponse {
                response: Some(error(code::INVALID_ARGUMENT, v.to_string())),
            }));
        }
        let hops = self
            .control
            .as_ref()
            .map(ChainControl::hop_ports)
            .unwrap_or_default();
        let plan = match TapPlan::new(req, self.cmd.taps.settings(), &self.cmd.ports, &hops) {
            Ok(p) => p,
            Err(e) => return Outcome::Reply(Box::new(tap_refused("", &e))),
        };
        match self.cmd.taps.start(&plan) {
            Ok(tap) => Outcome::Tap(tap, Box::new(plan)),
            Err(e) => Outcome::Reply(Box::new(tap_refused(&plan.point.label, &e))),
        }
    }

    /// Ends every tap, waits (a bounded time) for their threads, then shuts
    /// down the other connections.
    fn stop_connections(&mut self) {
        self.cmd.taps.shutdown();
        let deadline = Instant::now() + TAP_STOP_TIMEOUT;
        while self
            .conns
            .iter()
            .any(|c| c.tapping.load(Ordering::Acquire) && !c.handle.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let taps_left = self
            .conns
            .iter()
            .filter(|c| c.tapping.load(Ordering::Acquire) && !c.handle.is_finished())
            .count();
        if taps_left > 0 {
            warn!(
                taps = taps_left,
                "tap threads still writing to their clients at shutdown; leaving them"
            );
        }
        // Requests not answered yet fail: their reply channels close.
        while let Ok(job) = self.jobs.try_recv() {
            drop(job);
        }
        for c in self
            .conns
            .iter()
            .filter(|c| !c.tapping.load(Ordering::Acquire))
        {
            if let Some(s) = c.stream.as_ref() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let deadline = Instant::now() + CONN_STOP_TIMEOUT;
        while self
            .conns
            .iter()
            .any(|c| !c.tapping.load(Ordering::Acquire) && !c.handle.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.reap();
    }
}

/// Answers a connection over [`MAX_CONNECTIONS`] with RESOURCE_EXHAUSTED,
/// without waiting for it, and closes it.
fn refuse_busy(stream: UnixStream) {
    let resp = v1::DataplaneResponse {
        response: Some(error(
            code::RESOURCE_EXHAUSTED,
            format!(
                "the dataplane's command socket serves {MAX_CONNECTIONS} connections at once; \
                 retry"
            ),
        )),
    };
    let mut stream = stream;
    if stream.set_nonblocking(true).is_ok() {
        let _ = wire::write_frame(&mut stream, &resp);
    }
}

/// What a connection's thread holds.
struct ConnContext {
    jobs: Sender<Job>,
    allowed_uids: Vec<u32>,
    taps: Arc<TapRegistry>,
    tapping: Arc<AtomicBool>,
}

/// Reads from a stream until a deadline: each read waits at most what is
/// left, so a whole request must arrive before `until`.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "request deadline passed",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl ConnContext {
    /// Serves one connection: requests until the peer closes it, errs or
    /// misses a deadline, or until a tap takes it over.
    fn serve(self, stream: UnixStream) {
        let uid = match crate::sys::process::peer_uid(&stream) {
            Ok(uid) => uid,
            Err(e) => {
                warn!(error = %e, "command connection without peer credentials; closing it");
                return;
            }
        };
        let me = crate::sys::process::effective_uid();
        if uid != me && !self.allowed_uids.contains(&uid) {
            warn!(
                peer_uid = uid,
                own_uid = me,
                "command connection from another uid refused (see dataplane.command_uids)"
            );
            return;
        }
        if stream.set_nonblocking(false).is_err()
            || stream.set_write_timeout(Some(REPLY_WRITE_TIMEOUT)).is_err()
        {
            return;
        }
        let mut stream = stream;
        loop {
            let mut r = DeadlineReader {
                stream: &stream,
                until: Instant::now() + REQUEST_DEADLINE,
            };
            let req: v1::DataplaneRequest =
                match wire::read_frame_max(&mut r, limits::MAX_REQUEST_FRAME) {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) if e.kind() == ErrorKind::InvalidData => {
                        // Too large, or not a request: say so, then close
                        // (the stream is out of step).
                        info!(error = %e, "command request refused");
                        let resp = v1::DataplaneResponse {
                            response: Some(error(code::INVALID_ARGUMENT, e.to_string())),
                        };
                        let _ = wire::write_frame(&mut stream, &resp);
                        return;
                    }
                    Err(e) => {
                        if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                            debug!(error = %e, "command connection closed");
                        } else {
                            debug!(
                                "command connection dropped: no whole request within the deadline"
                            );
                        }
                        return;
                    }
                };
            let (tx, rx) = crossbeam::channel::bounded(1);
            if self
                .jobs
                .send(Job {
                    request: req,
                    reply: tx,
                })
                .is_err()
            {
                return;
            }
            // The control thread answers every request it takes (or drops
            // it when the dataplane stops).
            let Ok(outcome) = rx.recv() else { return };
            match outcome {
                Outcome::Reply(resp) => {
                    if let Err(e) = wire::write_frame(&mut stream, &fit(*resp)) {
                        debug!(error = %e, "command reply not delivered");
                        return;
                    }
                }
                Outcome::Tap(tap, plan) => {
                    self.tapping.store(true, Ordering::Release);
                    run_tap(&self.taps, stream, &tap, &plan);
                    return;
                }
            }
        }
    }
}

/// Streams a started tap to its connection (on the connection's thread).
fn run_tap(registry: &TapRegistry, mut stream: UnixStream, tap: &Arc<tap::Tap>, plan: &TapPlan) {
    info!(
        tap = tap.id(),
        point = %plan.point.label,
        ifname = %plan.point.ifname,
        filter = %limits::escape(&plan.filter_expr),
        snaplen = plan.snaplen,
        sample_one_in = plan.sample_one_in,
        max_packets = plan.max_packets,
        max_duration_ms = plan.max_duration.as_millis() as u64,
        "tap started"
    );
    // Writes may wait for the client; nothing is read but its close
    // (checked without waiting).
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(tap::WRITE_TIMEOUT));
    let out = tap::stream(registry, tap, plan, &mut stream);
    info!(
        tap = tap.id(),
        point = %plan.point.label,
        reason = out.reason.map_or("client closed the stream", |r| r.as_str_name()),
        matched = out.matched,
        sent = out.sent,
        lost = out.lost,
        "tap ended"
    );
}

/// The answer to a tap request that does not start.
fn tap_refused(point: &str, e: &tap::TapError) -> v1::DataplaneResponse {
    info!(point, error = %e, "tap refused");
    v1::DataplaneResponse {
        response: Some(error(e.code(), e.to_string())),
    }
}

/// Makes an answer fit in a command frame ([`wire::MAX_FRAME`]). The
/// dataplane bounds everything it stores, so this only acts on a bug; it
/// then drops the least important part first (the last rejected update,
/// then the chain carried along a change's answer), keeping what says
/// whether a change was applied, and as a last resort answers INTERNAL.
pub fn fit(mut resp: v1::DataplaneResponse) -> v1::DataplaneResponse {
    let fits = |r: &v1::DataplaneResponse| r.encoded_len() <= wire::MAX_FRAME;
    if fits(&resp) {
        return resp;
    }
    let len = resp.encoded_len();
    error!(
        bytes = len,
        limit = wire::MAX_FRAME,
        "a command answer is larger than a frame (a dataplane bug): trimming it"
    );
    let chain = match resp.response.as_mut() {
        Some(Response::GetChain(g)) => g.chain.as_mut(),
        Some(Response::SetChain(s)) => s.chain.as_mut(),
        _ => None,
    };
    if let Some(st) = chain.and_then(|c| c.status.as_mut()) {
        st.last_rejected = None;
    }
    if fits(&resp) {
        return resp;
    }
    if let Some(Response::SetChain(s)) = resp.response.as_mut() {
        s.chain = None;
        if let Some(v) = s.validation.as_mut() {
            v.errors.truncate(limits::MAX_HOPS * 3 + 1);
            v.warnings.truncate(limits::MAX_HOPS * 3 + 1);
        }
        if fits(&resp) {
            return resp;
        }
    }
    v1::DataplaneResponse {
        response: Some(error(
            code::INTERNAL,
            format!(
                "the answer of {len} bytes is larger than the command frame limit of {} bytes \
                 (a dataplane bug); read the chain to see its state",
                wire::MAX_FRAME
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_answer_keeps_what_says_whether_a_change_was_applied() {
        let big = "x".repeat(wire::MAX_FRAME);
        let chain = v1::Chain {
            generation: 5,
            status: Some(v1::ChainStatus {
                last_rejected: Some(v1::RejectedUpdate {
                    message: big,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = fit(v1::DataplaneResponse {
            response: Some(Response::SetChain(v1::SetChainResponse {
                accepted: true,
                generation: 5,
                chain: Some(chain),
                validation: None,
            })),
        });
        let Some(Response::SetChain(s)) = resp.response else {
            panic!("{resp:?}")
        };
        assert!(s.accepted);
        assert_eq!(s.generation, 5);
        assert_eq!(s.chain.unwrap().status.unwrap().last_rejected, None);
    }
}
