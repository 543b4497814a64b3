//! The link keeper: how the inline ports' XDP programs outlive the
//! dataplane process but never the pod.
//!
//! An XDP program attached through a BPF link stays attached as long as
//! any fd of the link is open, in any process. The dataplane hands
//! duplicates of the inline ports' link fds, and of the fallback maps
//! ([`super::fallback`]), to the sidecar (`tapline-control`) over a Unix
//! socket in `state_dir` (`SCM_RIGHTS`). Holding an fd needs no capability,
//! so the sidecar stays unprivileged. Then:
//!
//! - the dataplane dies or stops: the sidecar's fds keep the programs
//!   attached, and the kernel fallback carries the link;
//! - a new dataplane starts: it borrows the fds back ([`KeeperClient::lend`]),
//!   swaps its own program into the surviving links (`BPF_LINK_UPDATE`)
//!   over the same maps and hands the fds over again;
//! - the pod goes: both processes exit, the last fd closes, and the kernel
//!   detaches the programs. No bpffs pin, nothing left behind.
//!
//! The protocol: `SOCK_SEQPACKET`, one JSON object per message, fds as
//! `SCM_RIGHTS` ancillary data. Requests `hold` (header + fds: leases,
//! actions, counters, then one link per port), `lend` (answered with the
//! held header and fds), `release` (drop everything held). The dataplane
//! keeps its connection open; the keeper sees the dataplane's death as
//! the connection closing.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::fallback::{FallbackMaps, PortFallbackCounters};

/// The keeper's socket in `state_dir`.
pub const SOCKET_NAME: &str = "keeper.sock";
/// Version of the bundle layout.
const VERSION: u32 = 1;
/// Largest message (a header is a few hundred bytes).
const MAX_MESSAGE: usize = 16 * 1024;
/// Most fds in one message: three maps and two links.
const MAX_FDS: usize = 8;
/// How long the dataplane waits for an answer from the keeper.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// One inline port of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// `inline-1` or `inline-2`.
    pub role: String,
    pub ifname: String,
    pub ifindex: u32,
    /// `native` or `generic`: the link's attach mode.
    pub attach: String,
}

/// What the fds of a bundle are: leases, actions, counters, then one link
/// per entry of `ports`, in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// Entries of the lease map.
    pub queues: u32,
    pub ports: Vec<PortRecord>,
    /// The dataplane that deposited it.
    pub pid: u32,
}

impl Header {
    fn fd_count(&self) -> usize {
        3 + self.ports.len()
    }
}

/// A header with its fds.
#[derive(Debug)]
pub struct Bundle {
    pub header: Header,
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Hold { header: Header },
    Lend,
    Release,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    held: Option<Header>,
    #[serde(default)]
    error: Option<String>,
}

fn send(fd: BorrowedFd<'_>, msg: &impl Serialize, fds: &[RawFd]) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let iov = [IoSlice::new(&body)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    socket::sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message and its fds. `Ok(None)`: the peer closed.
fn recv<T: for<'de> Deserialize<'de>>(fd: BorrowedFd<'_>) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cspace = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, raw) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = socket::recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cspace),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw: Vec<RawFd> = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, raw)
    };
    let fds: Vec<OwnedFd> = raw
        .into_iter()
        // SAFETY: SCM_RIGHTS installed these fds in this process for us
        // alone; nobody else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if len == 0 {
        return Ok(None);
    }
    let v = serde_json::from_slice(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((v, fds)))
}

fn seqpacket() -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The dataplane's connection to the keeper.
#[derive(Debug)]
pub struct KeeperClient {
    conn: OwnedFd,
}

impl KeeperClient {
    /// Connects to the keeper in `state_dir`. Fails (ENOENT, ECONNREFUSED)
    /// when no sidecar runs.
    pub fn connect(state_dir: &Path) -> io::Result<KeeperClient> {
        let conn = seqpacket()?;
        let addr = UnixAddr::new(&state_dir.join(SOCKET_NAME))?;
        socket::connect(conn.as_raw_fd(), &addr)?;
        let tv = nix::sys::time::TimeVal::new(CLIENT_TIMEOUT.as_secs() as i64, 0);
        socket::setsockopt(&conn, socket::sockopt::ReceiveTimeout, &tv)?;
        socket::setsockopt(&conn, socket::sockopt::SendTimeout, &tv)?;
        Ok(KeeperClient { conn })
    }

    fn call(&self, req: &Request, fds: &[RawFd]) -> io::Result<(Response, Vec<OwnedFd>)> {
        send(self.conn.as_fd(), req, fds)?;
        let (resp, fds): (Response, _) = recv(self.conn.as_fd())?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the keeper closed the connection",
            )
        })?;
        if !resp.ok {
            return Err(io::Error::other(
                resp.error.clone().unwrap_or_else(|| "refused".into()),
            ));
        }
        Ok((resp, fds))
    }

    /// Borrows what the keeper holds (duplicates: the keeper keeps its own
    /// until a new `hold` replaces them). `None`: it holds nothing.
    pub fn lend(&self) -> io::Result<Option<Bundle>> {
        let (resp, fds) = self.call(&Request::Lend, &[])?;
        match resp.held {
            Some(header) if fds.len() == header.fd_count() && header.version == VERSION => {
                Ok(Some(Bundle { header, fds }))
            }
            Some(header) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the keeper lent {} fds for a bundle of {} (version {})",
                    fds.len(),
                    header.fd_count(),
                    header.version
                ),
            )),
            None => Ok(None),
        }
    }

    /// Hands `fds` (described by `header`) to the keeper, replacing what
    /// it held.
    pub fn hold(&self, mut header: Header, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        header.version = VERSION;
        if fds.len() != header.fd_count() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.call(&Request::Hold { header }, &raw).map(drop)
    }

    /// Asks the keeper to drop everything it holds (detach on exit).
    pub fn release(&self) -> io::Result<()> {
        self.call(&Request::Release, &[]).map(drop)
    }

    /// Whether the keeper is still there (its end not closed).
    pub fn is_alive(&self) -> bool {
        let mut b = [0u8; 1];
        match socket::recv(
            self.conn.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => false,
            Ok(_) => true,
            Err(nix::errno::Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }
}

/// What the keeper holds.
#[derive(Debug)]
struct Held {
    header: Header,
    maps: FallbackMaps,
    links: Vec<OwnedFd>,
}

/// What the keeper shows the sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperStatus {
    /// Whether links are held (the inline ports stay attached without the
    /// dataplane).
    pub holding: bool,
    /// The held ports (`role`, `ifname`, attach mode).
    pub ports: Vec<PortRecord>,
    /// A dataplane is connected.
    pub dataplane_connected: bool,
    /// Queues the kernel carries now (no valid lease).
    pub kernel_queues: u32,
    /// Queues of the lease map.
    pub queues: u32,
    /// The fallback action in force (`forward` or `drop`).
    pub action: String,
    /// Per port, the kernel's counters; empty when they cannot be read
    /// (reading a map needs `bpf(2)`, which a seccomp profile may refuse).
    pub counters: Vec<PortFallbackCounters>,
    /// Takeovers counted by the workers (a worker took its queue back from
    /// the kernel).
    pub takeovers: u64,
}

#[derive(Debug, Default)]
struct Shared {
    held: Option<Held>,
    connected: usize,
}

/// The keeper, run by the sidecar: a thread serving `state_dir/keeper.sock`.
#[derive(Debug)]
pub struct Keeper {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

/// How often the keeper's loop looks at its stop flag.
const KEEPER_POLL_MS: u16 = 100;

impl Keeper {
    /// Binds the socket (replacing a stale one) and starts the thread.
    /// Connections from uids other than ours and `allowed_uids` are refused.
    pub fn spawn(state_dir: &Path, allowed_uids: Vec<u32>) -> io::Result<Keeper> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = seqpacket()?;
        socket::bind(listener.as_raw_fd(), &UnixAddr::new(&path)?)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        }
        socket::listen(&listener, Backlog::new(8)?)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tapline-keeper".into())
                .spawn(move || serve(listener, &shared, &stop, &allowed_uids))?
        };
        info!(path = %path.display(), "link keeper listening");
        Ok(Keeper {
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
            path,
        })
    }

    /// What is held now, with the kernel's counters.
    pub fn status(&self) -> KeeperStatus {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = KeeperStatus {
            dataplane_connected: s.connected > 0,
            ..Default::default()
        };
        if let Some(h) = &s.held {
            st.holding = true;
            st.ports = h.header.ports.clone();
            st.queues = h.maps.queues;
            let now = super::fallback::monotonic_now_ns();
            st.kernel_queues = h.maps.deadlines().iter().filter(|&&d| d < now).count() as u32;
            st.action = h
                .maps
                .action()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            st.counters = (0..h.header.ports.len() as u32)
                .map(|p| h.maps.port_counters(p))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_default();
            st.takeovers = h.maps.takeovers();
        }
        st
    }

    /// Stops the thread; the held fds close with it (and with them, if the
    /// dataplane is gone too, the XDP programs).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
        if let Ok(mut s) = self.shared.lock() {
            s.held = None;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn peer_allowed(conn: &OwnedFd, allowed: &[u32]) -> bool {
    match socket::getsockopt(conn, socket::sockopt::PeerCredentials) {
        Ok(c) => {
            let me = nix::unistd::geteuid().as_raw();
            c.uid() == me || allowed.contains(&c.uid())
        }
        Err(_) => false,
    }
}

fn serve(listener: OwnedFd, shared: &Mutex<Shared>, stop: &AtomicBool, allowed: &[u32]) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut conns: Vec<OwnedFd> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (listen_ready, ready): (bool, Vec<bool>) = {
            let mut pfds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            pfds.extend(
                conns
                    .iter()
                    .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
            );
            if poll(&mut pfds, PollTimeout::from(KEEPER_POLL_MS)).is_err() {
                continue;
            }
            let r = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            (r(&pfds[0]), pfds[1..].iter().map(r).collect())
        };
        let mut closed = Vec::new();
        for (i, c) in conns.iter().enumerate() {
            if ready[i] && !handle(c, shared) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            conns.remove(i);
            info!("dataplane disconnected from the link keeper");
        }
        if listen_ready {
            if let Ok(fd) = socket::accept(listener.as_raw_fd()) {
                // SAFETY: accept(2) just returned this fd to us alone.
                let c = unsafe { OwnedFd::from_raw_fd(fd) };
                if peer_allowed(&c, allowed) {
                    conns.push(c);
                } else {
                    warn!("link keeper connection from another uid refused (see dataplane.command_uids)");
                }
            }
        }
        if let Ok(mut s) = shared.lock() {
            s.connected = conns.len();
        }
    }
}

/// Serves one message; false when the connection is done.
fn handle(conn: &OwnedFd, shared: &Mutex<Shared>) -> bool {
    let (req, fds): (Request, Vec<OwnedFd>) = match recv(conn.as_fd()) {
        Ok(Some(m)) => m,
        Ok(None) => return false,
        Err(e) => {
            warn!(error = %e, "bad message on the link keeper socket; closing the connection");
            return false;
        }
    };
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let reply = |resp: &Response, fds: &[RawFd]| send(conn.as_fd(), resp, fds).is_ok();
    match req {
        Request::Hold { header } => {
            if fds.len() != header.fd_count() {
                let msg = format!("{} fds for a bundle of {}", fds.len(), header.fd_count());
                return reply(
                    &Response {
                        error: Some(msg),
                        ..Default::default()
                    },
                    &[],
                );
            }
            let mut it = fds.into_iter();
            let (l, a, c) = (
                it.next().expect("counted"),
                it.next().expect("counted"),
                it.next().expect("counted"),
            );
            // No bpf(2) here: the sidecar's seccomp profile may refuse it,
            // and holding the fds is what matters.
            match FallbackMaps::adopt_unchecked(l, a, c, header.queues) {
                Ok(maps) => {
                    info!(
                        pid = header.pid,
                        ports = ?header.ports.iter().map(|p| p.ifname.as_str()).collect::<Vec<_>>(),
                        "link keeper holds the inline links"
                    );
                    s.held = Some(Held {
                        header,
                        maps,
                        links: it.collect(),
                    });
                    reply(
                        &Response {
                            ok: true,
                            ..Default::default()
                        },
                        &[],
                    )
                }
                Err(e) => reply(
                    &Response {
                        error: Some(format!("not fallback maps: {e}")),
                        ..Default::default()
                    },
                    &[],
                ),
            }
        }
        Request::Lend => match &s.held {
            Some(h) => {
                let mut raw = vec![
                    h.maps.leases.as_raw_fd(),
                    h.maps.actions.as_raw_fd(),
                    h.maps.counters.as_raw_fd(),
                ];
                raw.extend(h.links.iter().map(|l| l.as_raw_fd()));
                info!("link keeper lends the inline links to a starting dataplane");
                reply(
                    &Response {
                        ok: true,
                        held: Some(h.header.clone()),
                        error: None,
                    },
                    &raw,
                )
            }
            None => reply(
                &Response {
                    ok: true,
                    ..Default::default()
                },
                &[],
            ),
        },
        Request::Release => {
            if s.held.take().is_some() {
                info!("link keeper released the inline links (detach on exit)");
            }
            reply(
                &Response {
                    ok: true,
                    ..Default::default()
                },
                &[],
            )
        }
    }
}
