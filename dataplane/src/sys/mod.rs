//! The one door to the kernel: every syscall the dataplane makes goes
//! through [`syscall`], one function taking a [`Syscall`] value, with thin
//! typed wrappers on top (as aya's `sys` module).
//!
//! Under `cfg(test)` a thread-local fake ([`fake`]) sees each call before
//! the kernel does and may answer it instead, so the logic above this
//! module (bind retries, XDP mode fallback, program attach, the ethtool
//! paths) is unit-tested without root. Release builds have no fake: the
//! dispatcher inlines to the plain `libc` call.
//!
//! Everything above this module is written against these wrappers, so the
//! `unsafe` that talks to the kernel is in one place and each call states
//! the invariant that makes it sound. Process-level calls that carry no
//! logic worth faking (signal masks, CPU affinity, file locks, rlimits, peer
//! credentials, interface addresses) are in [`process`], still here.

mod ethtool;
#[cfg(test)]
pub(crate) mod fake;
mod packet;
pub mod process;
#[cfg(test)]
mod tests;

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

pub use ethtool::{
    ethtool_channels, ethtool_clear_flags, ethtool_driver, ethtool_feature, ethtool_flags,
    ethtool_set_feature, ethtool_set_flags, if_flags, if_mtu, set_if_up, ETH_FLAG_RXVLAN,
    ETH_FLAG_TXVLAN,
};
pub use packet::{bind_packet, recv_packet, send, PacketMeta};

/// Plain-old-data accepted by `setsockopt`/`getsockopt`/`bpf`: every bit
/// pattern is a valid value and the type has no padding the kernel could
/// misread. Sealed: only the kernel ABI structs below implement it.
///
/// # Safety
///
/// Implementors must be `repr(C)` kernel ABI structs (or integers) for which
/// an all-zero value and any bytes the kernel writes are valid.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: integers and the `libc` mirrors of `linux/if_xdp.h`,
// `linux/if_packet.h` and `linux/ethtool.h` structs are repr(C) POD.
unsafe impl Pod for libc::c_int {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_umem_reg {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_statistics {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_options {}
// SAFETY: as above.
unsafe impl Pod for libc::packet_mreq {}
// SAFETY: plain integers: every bit pattern is valid.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}

/// Zero value of a POD type.
pub(crate) fn zeroed<T: Pod>() -> T {
    // SAFETY: `Pod` guarantees the all-zero bit pattern is a valid `T`.
    unsafe { MaybeUninit::<T>::zeroed().assume_init() }
}

/// One call into the kernel, as [`syscall`] receives it. Pointers are the
/// caller's and valid for the duration of the call (the typed wrappers
/// below guarantee it); the fake reads and writes through them as the
/// kernel would.
#[derive(Debug, Clone, Copy)]
pub enum Syscall {
    /// `socket(domain, ty | SOCK_CLOEXEC, protocol)`.
    Socket {
        domain: libc::c_int,
        ty: libc::c_int,
        protocol: libc::c_int,
    },
    /// `setsockopt(fd, level, name, value, len)`.
    SetSockOpt {
        fd: RawFd,
        level: libc::c_int,
        name: libc::c_int,
        value: *const libc::c_void,
        len: libc::socklen_t,
    },
    /// `getsockopt(fd, level, name, value, len)`: `len` in and out.
    GetSockOpt {
        fd: RawFd,
        level: libc::c_int,
        name: libc::c_int,
        value: *mut libc::c_void,
        len: *mut libc::socklen_t,
    },
    /// `bind(fd, addr, len)` (AF_XDP or AF_PACKET address).
    Bind {
        fd: RawFd,
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    },
    /// `bpf(cmd, attr, size)`.
    Bpf {
        cmd: libc::c_int,
        attr: *mut libc::c_void,
        size: libc::c_uint,
    },
    /// `ioctl(fd, request, ifr)` on an `ifreq` (SIOCGIFFLAGS, SIOCETHTOOL...).
    Ioctl {
        fd: RawFd,
        request: libc::Ioctl,
        ifr: *mut libc::ifreq,
    },
    /// `mmap(addr, len, prot, flags, fd, offset)`: returns the address.
    Mmap {
        addr: *mut libc::c_void,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: RawFd,
        offset: libc::off_t,
    },
    /// `munmap(addr, len)`.
    Munmap { addr: *mut libc::c_void, len: usize },
    /// `sendto(fd, buf, len, flags, NULL, 0)`.
    Send {
        fd: RawFd,
        buf: *const libc::c_void,
        len: usize,
        flags: libc::c_int,
    },
    /// `recvfrom(fd, buf, len, flags, NULL, NULL)`.
    Recv {
        fd: RawFd,
        buf: *mut libc::c_void,
        len: usize,
        flags: libc::c_int,
    },
    /// `recvmsg(fd, msg, flags)`.
    RecvMsg {
        fd: RawFd,
        msg: *mut libc::msghdr,
        flags: libc::c_int,
    },
    /// `poll(fds, nfds, timeout_ms)`.
    Poll {
        fds: *mut libc::pollfd,
        nfds: libc::nfds_t,
        timeout_ms: libc::c_int,
    },
    /// `if_nametoindex(name)`: 0 (with errno) when there is none.
    IfNameToIndex { name: *const libc::c_char },
}

/// Makes `call`: under `cfg(test)` the thread's fake answers first if it
/// wants to ([`fake::install`]); otherwise the kernel does. Returns the
/// call's non-negative result (an fd, a length, a count or an address).
///
/// # Safety
///
/// Every pointer in `call` must be valid for the kernel to read (and, for
/// the out-parameters, write) for the stated length during the call, and a
/// `MAP_FIXED` mapping may only replace memory the caller owns.
// Always inlined, as `real`: each typed wrapper then compiles to its one
// libc call (the `Syscall` value is folded away), so the door costs the
// hot path's kicks nothing.
#[inline(always)]
pub unsafe fn syscall(call: Syscall) -> io::Result<i64> {
    #[cfg(test)]
    if let Some(answer) = fake::intercept(&call) {
        return answer;
    }
    // SAFETY: forwarded to the caller.
    unsafe { real(call) }
}

/// The kernel's answer to `call`.
///
/// # Safety
///
/// As [`syscall`].
#[inline(always)]
unsafe fn real(call: Syscall) -> io::Result<i64> {
    // SAFETY: every arm is one libc call with the pointers of `call`, valid
    // as the caller guarantees; integer arguments the kernel validates.
    let ret: i64 = unsafe {
        match call {
            Syscall::Socket {
                domain,
                ty,
                protocol,
            } => i64::from(libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol)),
            Syscall::SetSockOpt {
                fd,
                level,
                name,
                value,
                len,
            } => i64::from(libc::setsockopt(fd, level, name, value, len)),
            Syscall::GetSockOpt {
                fd,
                level,
                name,
                value,
                len,
            } => i64::from(libc::getsockopt(fd, level, name, value, len)),
            Syscall::Bind { fd, addr, len } => i64::from(libc::bind(fd, addr, len)),
            Syscall::Bpf { cmd, attr, size } => libc::syscall(libc::SYS_bpf, cmd, attr, size),
            Syscall::Ioctl { fd, request, ifr } => i64::from(libc::ioctl(fd, request, ifr)),
            Syscall::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
            } => {
                let p = libc::mmap(addr, len, prot, flags, fd, offset);
                if p == libc::MAP_FAILED {
                    -1
                } else {
                    p as i64
                }
            }
            Syscall::Munmap { addr, len } => i64::from(libc::munmap(addr, len)),
            Syscall::Send {
                fd,
                buf,
                len,
                flags,
            } => libc::sendto(fd, buf, len, flags, std::ptr::null(), 0) as i64,
            Syscall::Recv {
                fd,
                buf,
                len,
                flags,
            } => libc::recvfrom(
                fd,
                buf,
                len,
                flags,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) as i64,
            Syscall::RecvMsg { fd, msg, flags } => libc::recvmsg(fd, msg, flags) as i64,
            Syscall::Poll {
                fds,
                nfds,
                timeout_ms,
            } => i64::from(libc::poll(fds, nfds, timeout_ms)),
            Syscall::IfNameToIndex { name } => match libc::if_nametoindex(name) {
                0 => -1,
                i => i64::from(i),
            },
        }
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`syscall`] for the calls whose result fits a C int (fds, counts).
///
/// # Safety
///
/// As [`syscall`].
unsafe fn syscall_int(call: Syscall) -> io::Result<libc::c_int> {
    // SAFETY: forwarded to the caller.
    unsafe { syscall(call) }.map(|r| r as libc::c_int)
}

/// `socket(2)`, close-on-exec.
pub fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = unsafe {
        syscall_int(Syscall::Socket {
            domain,
            ty,
            protocol: proto,
        })
    }?;
    Ok(own_fd(fd))
}

/// `setsockopt(2)` with a POD value.
pub fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the call.
    unsafe {
        syscall(Syscall::SetSockOpt {
            fd: fd.as_raw_fd(),
            level,
            name,
            value: (val as *const T).cast(),
            len: size_of::<T>() as libc::socklen_t,
        })
    }
    .map(drop)
}

/// `getsockopt(2)` into a POD value. Returns the value and the length the
/// kernel wrote (older kernels write shorter versions of some structs).
pub fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut val: T = zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a valid, writable `T` of `len` bytes; `Pod` makes
    // any bytes the kernel writes a valid `T`.
    unsafe {
        syscall(Syscall::GetSockOpt {
            fd: fd.as_raw_fd(),
            level,
            name,
            value: (&mut val as *mut T).cast(),
            len: &mut len,
        })
    }?;
    Ok((val, len as usize))
}

/// `bind(2)` of an AF_XDP socket.
pub(crate) fn bind_xdp(fd: BorrowedFd<'_>, addr: &libc::sockaddr_xdp) -> io::Result<()> {
    // SAFETY: `addr` is a valid `sockaddr_xdp` for the duration of the call.
    unsafe {
        syscall(Syscall::Bind {
            fd: fd.as_raw_fd(),
            addr: (addr as *const libc::sockaddr_xdp).cast(),
            len: size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        })
    }
    .map(drop)
}

/// `if_nametoindex(3)`: the interface index of `ifname` in this network
/// namespace.
pub fn if_nametoindex(ifname: &str) -> io::Result<u32> {
    let name =
        std::ffi::CString::new(ifname).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    unsafe {
        syscall(Syscall::IfNameToIndex {
            name: name.as_ptr(),
        })
    }
    .map(|i| i as u32)
}

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; concurrent access is governed by the
// ring protocol (atomics) or by frame ownership (one owner per frame).
unsafe impl Send for Mmap {}
// SAFETY: as above.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of a socket's ring at `offset` (`XDP_PGOFF_*`): a
    /// fresh shared mapping; the kernel validates `offset`/`len` against
    /// the ring it created.
    pub(crate) fn socket_ring(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<Mmap> {
        Self::map(Syscall::Mmap {
            addr: std::ptr::null_mut(),
            len,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            flags: libc::MAP_SHARED | libc::MAP_POPULATE,
            fd: fd.as_raw_fd(),
            offset: offset as libc::off_t,
        })
    }

    /// Maps `len` bytes of a file shared with other processes (the stats
    /// segment): read-write for its writer, read-only for readers. Pages
    /// past EOF fault, which callers avoid by sizing the file first or
    /// checking its length.
    pub(crate) fn shared_file(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Mmap> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        Self::map(Syscall::Mmap {
            addr: std::ptr::null_mut(),
            len,
            prot,
            flags: libc::MAP_SHARED,
            fd: fd.as_raw_fd(),
            offset: 0,
        })
    }

    /// Maps `fd` (a file at least as long as this mapping) over this shared
    /// file mapping, in place (`MAP_FIXED`): the address range stays
    /// mapped throughout, so every reference into it stays valid and from
    /// then on reads and writes the new file's pages. Used to re-publish
    /// the stats segment under a new file when the old one was deleted.
    pub fn remap_shared_file(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: MAP_FIXED over exactly our own mapping (same address,
        // length and protection), never over anything else: the range is
        // replaced atomically by the kernel and never unmapped in between,
        // so concurrent users (atomic loads and stores only, see
        // `shm::Counter`) keep valid memory; `fd` is a file the caller sized.
        unsafe {
            syscall(Syscall::Mmap {
                addr: self.ptr.as_ptr().cast(),
                len: self.len,
                prot: libc::PROT_READ | libc::PROT_WRITE,
                flags: libc::MAP_SHARED | libc::MAP_FIXED,
                fd: fd.as_raw_fd(),
                offset: 0,
            })
        }
        .map(drop)
    }

    /// Anonymous private memory, populated (used for the UMEM area); a
    /// fresh anonymous mapping touches no existing memory.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        Self::map(Syscall::Mmap {
            addr: std::ptr::null_mut(),
            len,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            flags: libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            fd: -1,
            offset: 0,
        })
    }

    /// A fresh mapping (`addr` null, never `MAP_FIXED`).
    fn map(call: Syscall) -> io::Result<Mmap> {
        let Syscall::Mmap {
            len, addr, flags, ..
        } = call
        else {
            unreachable!("Mmap::map takes an mmap call")
        };
        assert!(addr.is_null() && flags & libc::MAP_FIXED == 0);
        // SAFETY: a fresh mapping at an address the kernel picks touches no
        // existing memory; the kernel checks the fd, offset and length.
        let p = unsafe { syscall(call) }?;
        Ok(Mmap {
            ptr: NonNull::new(p as *mut u8).expect("mmap returned NULL without MAP_FIXED"),
            len,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping; every user holds an `Arc` to it (ring
        // ends, the UMEM), so none is left when this runs.
        let _ = unsafe {
            syscall(Syscall::Munmap {
                addr: self.ptr.as_ptr().cast(),
                len: self.len,
            })
        };
    }
}

/// `bpf(2)` with an attribute struct prefix of the kernel's `union bpf_attr`.
/// The kernel zero-extends what we pass, so each command passes exactly the
/// fields it uses.
///
/// # Safety
///
/// `attr` must be the repr(C) layout the kernel expects for `cmd`, and every
/// pointer stored inside it (as a `u64`) must be valid for the kernel to read
/// or write for the duration of the call.
pub unsafe fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<libc::c_int> {
    // SAFETY: forwarded to the caller; `attr` is `size_of::<A>()` bytes.
    unsafe {
        syscall_int(Syscall::Bpf {
            cmd,
            attr: (attr as *mut A).cast(),
            size: size_of::<A>() as libc::c_uint,
        })
    }
}

/// Takes ownership of an fd returned by the kernel.
pub(crate) fn own_fd(fd: libc::c_int) -> OwnedFd {
    // SAFETY: the caller passes an fd the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Kicks the kernel to process the TX ring (`sendto` with no data). In copy
/// mode this is what actually transmits; with zero-copy it wakes the driver.
/// A zero-length send with null buffers is the documented AF_XDP wakeup;
/// no memory is read.
#[inline]
pub fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: zero-length, null buffer: no memory is read.
    unsafe {
        syscall(Syscall::Send {
            fd: fd.as_raw_fd(),
            buf: std::ptr::null(),
            len: 0,
            flags: libc::MSG_DONTWAIT,
        })
    }
    .map(drop)
}

/// Wakes the driver to refill from the fill ring (`recvfrom` with no buffer).
#[inline]
pub fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: as in `kick_tx`: zero-length, null buffer.
    unsafe {
        syscall(Syscall::Recv {
            fd: fd.as_raw_fd(),
            buf: std::ptr::null_mut(),
            len: 0,
            flags: libc::MSG_DONTWAIT,
        })
    }
    .map(drop)
}

/// `poll(2)` for readability on up to 16 fds. Returns how many are ready.
pub(crate) fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
    const MAX_POLL_FDS: usize = 16;
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_POLL_FDS];
    let n = fds.len().min(MAX_POLL_FDS);
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds[..n]` is a valid, writable array of pollfd.
    let ret = unsafe {
        syscall(Syscall::Poll {
            fds: pfds.as_mut_ptr(),
            nfds: n as libc::nfds_t,
            timeout_ms,
        })
    };
    match ret {
        Ok(ready) => Ok(ready as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (`bpf_ktime_get_ns`'s clock, and the
/// clock of heartbeat timestamps): a vDSO read, no syscall, so it is not
/// routed through [`syscall`] and has no fake.
#[inline]
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}
