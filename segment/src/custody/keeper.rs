//! The keeper, run by the sidecar: a thread serving `state_dir/keeper.sock`
//! that holds the inline ports' links and fallback maps for whichever
//! dataplane hands them over (see the parent module for the protocol).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{self, Backlog, UnixAddr};
use tracing::{info, warn};

use super::{recv, send, seqpacket, Header, PortRecord, Request, Response, SOCKET_NAME};
use crate::fallback::{monotonic_now_ns, HeldMaps, PortFallbackCounters};
use crate::sys;

/// What the keeper holds.
#[derive(Debug)]
struct Held {
    header: Header,
    maps: HeldMaps,
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
            let now = monotonic_now_ns();
            st.kernel_queues = h.maps.deadlines().iter().filter(|&&d| d < now).count() as u32;
            st.action = h.maps.action().map(str::to_string).unwrap_or_default();
            st.counters = (0..h.header.ports.len() as u32)
                .map(|p| h.maps.port_counters(p))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_default();
            st.takeovers = h.maps.takeovers();
        }
        st
    }

    /// Links are held but no dataplane is connected: the one that handed
    /// them over closed its connection (it exited, crashed or was killed),
    /// so the kernel carries the link and nothing inspects it. Cheap (no
    /// `bpf(2)`): the sidecar asks with every health poll.
    pub fn dataplane_gone(&self) -> bool {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.held.is_some() && s.connected == 0
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
                // accept(2) just returned this fd to us alone.
                let c = sys::own_fds([fd]).pop().expect("one fd");
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
            match HeldMaps::adopt(l, a, c, header.queues) {
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
