//! AF_PACKET sockets: promiscuous-mode membership for the dataplane, and a
//! plain raw socket used by tests, the traffic tools and the AF_PACKET peers
//! in the benchmarks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::XdpError;
use crate::sys::{self, PacketMeta};

/// `ETH_P_ALL` in network byte order, for binding a socket to every protocol.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// Holds an interface in promiscuous mode for as long as it lives.
///
/// Uses `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC` on an AF_PACKET
/// socket that receives nothing (protocol 0). The kernel reference-counts the
/// membership and drops it when the socket closes, including when the process
/// crashes, so a dead dataplane never leaves a port promiscuous.
/// (`SIOCSIFFLAGS IFF_PROMISC` would stick until someone cleared it.)
#[derive(Debug)]
pub struct PromiscGuard {
    _fd: OwnedFd,
}

impl PromiscGuard {
    pub(crate) fn enable(ifindex: u32, ifname: &str) -> Result<PromiscGuard, XdpError> {
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(|source| {
            XdpError::from_os("socket(AF_PACKET)", ifname, source, Some("CAP_NET_RAW"))
        })?;
        let mut mreq: libc::packet_mreq = sys::zeroed();
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        sys::setsockopt(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
        )
        .map_err(|source| {
            XdpError::from_os(
                "PACKET_ADD_MEMBERSHIP(PROMISC)",
                ifname,
                source,
                Some("CAP_NET_RAW"),
            )
        })?;
        Ok(PromiscGuard { _fd: fd })
    }
}

/// A raw AF_PACKET socket bound to one interface, non-blocking.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
}

pub use sys::PacketMeta as RawPacketMeta;

impl RawSocket {
    /// Opens a socket on `ifname` that sees every frame on the interface
    /// except its own transmissions, with VLAN tags restored on receive.
    pub fn open(ifname: &str) -> io::Result<RawSocket> {
        let ifindex = super::netdev::ifindex(ifname)?;
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(ETH_P_ALL_BE))?;
        let one: libc::c_int = 1;
        sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        sys::setsockopt(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
        )?;
        sys::bind_packet(fd.as_fd(), ifindex, ETH_P_ALL_BE)?;
        Ok(RawSocket { fd })
    }

    /// Sets the receive buffer, past `rmem_max` when allowed (CAP_NET_ADMIN).
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        let v = bytes as libc::c_int;
        sys::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v)
            .or_else(|_| sys::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &v))
    }

    /// Sets the send buffer, past `wmem_max` when allowed.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        let v = bytes as libc::c_int;
        sys::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &v)
            .or_else(|_| sys::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, &v))
    }

    /// Bypasses the qdisc on send (`PACKET_QDISC_BYPASS`), as generators do.
    pub fn bypass_qdisc(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        sys::setsockopt(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one,
        )
    }

    /// Sends one frame as is. `Ok(false)` when the socket buffer is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        match sys::send(self.fd.as_fd(), frame) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Receives one frame into `buf` (which needs 4 spare bytes for a
    /// restored VLAN tag). `Ok(None)` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<PacketMeta>> {
        sys::recv_packet(self.fd.as_fd(), buf)
    }

    /// Waits up to `timeout_ms` for a frame to be readable.
    pub fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        Ok(sys::poll_readable(&[self.fd.as_raw_fd()], timeout_ms)? > 0)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
