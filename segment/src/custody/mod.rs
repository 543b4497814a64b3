//! The link keeper: how the inline ports' XDP programs outlive the
//! dataplane process but never the pod.
//!
//! An XDP program attached through a BPF link stays attached as long as
//! any fd of the link is open, in any process. The dataplane hands
//! duplicates of the inline ports' link fds, and of the fallback maps
//! ([`crate::fallback`]), to the sidecar (`tapline-control`) over a Unix
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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use serde::{Deserialize, Serialize};

use crate::sys;

mod keeper;
pub use keeper::{Keeper, KeeperStatus};

/// The keeper's socket in `state_dir`.
pub const SOCKET_NAME: &str = "keeper.sock";
/// Version of the bundle layout.
pub(super) const VERSION: u32 = 1;
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
    pub(super) fn fd_count(&self) -> usize {
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
pub(super) enum Request {
    Hold { header: Header },
    Lend,
    Release,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Response {
    pub(super) ok: bool,
    #[serde(default)]
    pub(super) held: Option<Header>,
    #[serde(default)]
    pub(super) error: Option<String>,
}

pub(super) fn send(fd: BorrowedFd<'_>, msg: &impl Serialize, fds: &[RawFd]) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let iov = [IoSlice::new(&body)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    socket::sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message and its fds. `Ok(None)`: the peer closed.
pub(super) fn recv<T: for<'de> Deserialize<'de>>(
    fd: BorrowedFd<'_>,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
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
    // SCM_RIGHTS installed these fds in this process for us alone.
    let fds: Vec<OwnedFd> = sys::own_fds(raw);
    if len == 0 {
        return Ok(None);
    }
    let v = serde_json::from_slice(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((v, fds)))
}

pub(super) fn seqpacket() -> io::Result<OwnedFd> {
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
