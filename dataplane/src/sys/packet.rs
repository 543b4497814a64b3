//! AF_PACKET sockets: bind to an interface, send a frame, receive one
//! with its VLAN tag re-inserted.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{syscall, Syscall};

/// `sendto(2)` on a bound AF_PACKET socket (no address).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length during the call.
    unsafe {
        syscall(Syscall::Send {
            fd: fd.as_raw_fd(),
            buf: buf.as_ptr().cast(),
            len: buf.len(),
            flags: libc::MSG_DONTWAIT,
        })
    }
    .map(|n| n as usize)
}

/// `bind(2)` of an AF_PACKET socket to an interface, all protocols.
pub fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32, protocol_be: u16) -> io::Result<()> {
    let mut sll: libc::sockaddr_ll = {
        // SAFETY: `sockaddr_ll` is integers and a byte array: zero is valid.
        unsafe { MaybeUninit::zeroed().assume_init() }
    };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll for the duration of the call.
    unsafe {
        syscall(Syscall::Bind {
            fd: fd.as_raw_fd(),
            addr: (&sll as *const libc::sockaddr_ll).cast(),
            len: size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        })
    }
    .map(drop)
}

/// Result of [`recv_packet`].
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta {
    /// Bytes written into the buffer (after VLAN re-insertion).
    pub len: usize,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OTHERHOST`, `PACKET_OUTGOING`...).
    pub pkttype: u8,
}

/// Receives one frame from an AF_PACKET socket that has `PACKET_AUXDATA`
/// enabled, re-inserting the 802.1Q tag the kernel stripped into metadata (as
/// libpcap does), so the caller sees the frame as it was on the wire.
/// `Ok(None)` when nothing is ready (non-blocking).
pub fn recv_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<PacketMeta>> {
    const VLAN_TAG_LEN: usize = 4;
    const MAC_ADDRS_LEN: usize = 12;
    if buf.len() < VLAN_TAG_LEN + MAC_ADDRS_LEN {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Receive past the first 4 bytes so a tag can be inserted without a copy
    // of the whole frame, then shift the MAC addresses forward if none is.
    let mut iov = libc::iovec {
        iov_base: buf[VLAN_TAG_LEN..].as_mut_ptr().cast(),
        iov_len: buf.len() - VLAN_TAG_LEN,
    };
    let mut sll: libc::sockaddr_ll = {
        // SAFETY: integers and a byte array: zero is valid.
        unsafe { MaybeUninit::zeroed().assume_init() }
    };
    // u64 array: aligned for cmsghdr.
    let mut cbuf = [0u64; 16];
    let mut msg: libc::msghdr = {
        // SAFETY: msghdr is pointers and integers: zero is valid.
        unsafe { MaybeUninit::zeroed().assume_init() }
    };
    msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: every pointer in `msg` points to live, writable memory of the
    // stated length for the duration of the call.
    let ret = unsafe {
        syscall(Syscall::RecvMsg {
            fd: fd.as_raw_fd(),
            msg: &mut msg,
            flags: libc::MSG_DONTWAIT,
        })
    };
    let mut len = match ret {
        Ok(n) => n as usize,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut tag: Option<(u16, u16)> = None;
    // SAFETY: `msg` was filled by the kernel; the CMSG_* macros walk the
    // control buffer within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux = libc::CMSG_DATA(c)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned();
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    match tag {
        Some((tpid, tci)) if len >= MAC_ADDRS_LEN => {
            // Move the MAC addresses 4 bytes forward and put the tag after them.
            buf.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + MAC_ADDRS_LEN, 0);
            buf[MAC_ADDRS_LEN..MAC_ADDRS_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
            buf[MAC_ADDRS_LEN + 2..MAC_ADDRS_LEN + 4].copy_from_slice(&tci.to_be_bytes());
            len += VLAN_TAG_LEN;
        }
        _ => buf.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + len, 0),
    }
    Ok(Some(PacketMeta {
        len,
        pkttype: sll.sll_pkttype,
    }))
}
