//! Process-level calls through `nix`: file locks, rlimits, CPU affinity,
//! signal masks, peer credentials, interface addresses. They carry no logic
//! worth a fake (each is one call whose error the caller logs), but they
//! live here so that `sys` stays the only module that talks to the kernel.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

/// An exclusive `flock(2)` held on a file until dropped.
pub(crate) type FileLock = nix::fcntl::Flock<File>;

/// Why [`lock_exclusive`] did not take the lock.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another process holds it (`EWOULDBLOCK`); the file is given back.
    Held(File),
    /// `flock` failed otherwise.
    Failed(io::Error),
}

/// `flock(LOCK_EX | LOCK_NB)` on `file`.
pub(crate) fn lock_exclusive(file: File) -> Result<FileLock, LockError> {
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held(f)),
        Err((_, e)) => Err(LockError::Failed(e.into())),
    }
}

/// `setrlimit(RLIMIT_MEMLOCK, infinity)`.
pub(crate) fn raise_memlock_limit() -> io::Result<()> {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).map_err(io::Error::from)
}

/// `sched_setaffinity(0, {cpu})`: pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
        .map_err(io::Error::from)
}

/// Unblocks SIGTERM and SIGINT in the calling thread (a parent may have
/// left them blocked: the mask is inherited across exec).
pub fn unblock_stop_signals() -> io::Result<()> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.add(nix::sys::signal::Signal::SIGINT);
    set.thread_unblock().map_err(io::Error::from)
}

/// The uid of the peer of a Unix stream (`SO_PEERCRED`).
pub(crate) fn peer_uid(stream: &impl AsFd) -> io::Result<u32> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.uid())
        .map_err(io::Error::from)
}

/// The effective uid of this process.
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether the peer of a stream socket closed it: a non-blocking peek
/// (`recv(MSG_DONTWAIT)`) sees EOF or an error; data the peer sends is read
/// and ignored, EAGAIN and EINTR mean open.
pub(crate) fn stream_closed(stream: &impl std::os::fd::AsRawFd) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut buf = [0u8; 64];
    match recv(stream.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

/// The IPv4 and IPv6 addresses of `ifname` (`getifaddrs(3)`), in the
/// kernel's order; empty when they cannot be read.
pub(crate) fn interface_addresses(ifname: &str) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.interface_name == ifname)
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::from(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::from(v6.ip()))
            }
        })
        .collect()
}
