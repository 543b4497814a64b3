//! The few raw syscalls the AF_XDP module needs, each behind one function.
//!
//! Everything above this file is written against these wrappers, so the
//! `unsafe` that talks to the kernel is in one place and each call states the
//! invariant that makes it sound.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

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
pub fn zeroed<T: Pod>() -> T {
    // SAFETY: `Pod` guarantees the all-zero bit pattern is a valid `T`.
    unsafe { MaybeUninit::<T>::zeroed().assume_init() }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `socket(2)`, close-on-exec.
pub fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` with a POD value.
pub fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
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
    // SAFETY: `val` is a valid, writable `T` of `len` bytes; `Pod` makes any
    // bytes the kernel writes a valid `T`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok((val, len as usize))
}

/// `bind(2)` of an AF_XDP socket.
pub fn bind_xdp(fd: BorrowedFd<'_>, addr: &libc::sockaddr_xdp) -> io::Result<()> {
    // SAFETY: `addr` is a valid `sockaddr_xdp` for the duration of the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_xdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })?;
    Ok(())
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
    /// Maps `len` bytes of a socket's ring at `offset` (`XDP_PGOFF_*`).
    pub fn socket_ring(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<Mmap> {
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // validates `offset`/`len` against the ring it created.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        Self::from_result(p, len)
    }

    /// Maps `len` bytes of a file shared with other processes (the stats
    /// segment): read-write for its writer, read-only for readers.
    pub fn shared_file(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Mmap> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a file we opened; the kernel
        // checks `len` against nothing (pages past EOF fault, which callers
        // avoid by sizing the file first or checking its length).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        Self::from_result(p, len)
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
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Anonymous private memory, populated (used for the UMEM area).
    pub fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_result(p, len)
    }

    fn from_result(p: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL without MAP_FIXED"),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
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
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
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
    // SAFETY: forwarded to the caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            size_of::<A>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as libc::c_int)
    }
}

/// Takes ownership of an fd returned by `bpf(2)`.
pub fn own_fd(fd: libc::c_int) -> OwnedFd {
    // SAFETY: the caller passes an fd the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Kicks the kernel to process the TX ring (`sendto` with no data). In copy
/// mode this is what actually transmits; with zero-copy it wakes the driver.
pub fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with null buffers is the documented AF_XDP
    // wakeup; no memory is read.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wakes the driver to refill from the fill ring (`recvfrom` with no buffer).
pub fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: as in `kick_tx`: zero-length, null buffers.
    let ret = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `poll(2)` for readability on up to 16 fds. Returns how many are ready.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
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
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(ret as usize)
}

/// A zeroed `ifreq` naming `ifname`.
fn ifreq_for(ifname: &str) -> io::Result<libc::ifreq> {
    let mut ifr: libc::ifreq = {
        // SAFETY: `ifreq` is a C struct of integers/arrays/unions of such;
        // all-zero is a valid value.
        unsafe { MaybeUninit::zeroed().assume_init() }
    };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    Ok(ifr)
}

/// `SIOCGIFFLAGS`: the interface's flags (`IFF_UP`, `IFF_RUNNING`, ...).
pub fn if_flags(ifname: &str) -> io::Result<u32> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel writes
    // the flags into its union.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`, a plain integer.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(u32::from(flags as u16))
}

/// `SIOCSIFFLAGS`: sets (`up`) or clears the interface's `IFF_UP` (the
/// administrative state, what `ip link set IF up|down` changes).
pub fn set_if_up(ifname: &str, up: bool) -> io::Result<()> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: as in `if_flags`: the kernel fills the flags of the named
    // interface into the union.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`, a plain integer.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    let want = if up {
        flags | libc::IFF_UP as libc::c_short
    } else {
        flags & !(libc::IFF_UP as libc::c_short)
    };
    if want == flags {
        return Ok(());
    }
    ifr.ifr_ifru.ifru_flags = want;
    // SAFETY: `ifr` names the interface and carries the new flags.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) })?;
    Ok(())
}

/// `SIOCGIFMTU`: the interface's MTU (bytes above the Ethernet header).
pub fn if_mtu(ifname: &str) -> io::Result<u32> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel writes
    // the MTU into its union.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) })?;
    // SAFETY: SIOCGIFMTU filled `ifru_mtu`, a plain integer.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// `SIOCETHTOOL` `ETHTOOL_GCHANNELS`: (combined, rx) queue counts.
pub fn ethtool_channels(ifname: &str) -> io::Result<(u32, u32)> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to a writable
    // `ethtool_channels` that outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    Ok((ch.combined_count, ch.rx_count))
}

/// `SIOCETHTOOL` `ETHTOOL_GDRVINFO`: the interface's driver name (`veth`,
/// `i40e`, `mlx5_core`, ...).
pub fn ethtool_driver(ifname: &str) -> io::Result<String> {
    #[repr(C)]
    struct EthtoolDrvinfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x03;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to a writable
    // `ethtool_drvinfo` that outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// `ETH_FLAG_TXVLAN` / `ETH_FLAG_RXVLAN` of the legacy ethtool flags.
pub const ETH_FLAG_TXVLAN: u32 = 1 << 7;
pub const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// `SIOCETHTOOL` with an `ethtool_value` (`ETHTOOL_GFLAGS`,
/// `ETHTOOL_SFLAGS`): returns the value the kernel leaves in it.
fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_for(ifname)?;
    let mut v = EthtoolValue { cmd, data };
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to a writable
    // `ethtool_value` that outlives the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    Ok(v.data)
}

const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;

/// `ETHTOOL_GFLAGS`: the interface's legacy offload flags (`ETH_FLAG_*`).
pub fn ethtool_flags(ifname: &str) -> io::Result<u32> {
    ethtool_value(ifname, ETHTOOL_GFLAGS, 0)
}

/// Sets the flags in `mask` to their values in `value`, leaving the other
/// legacy offload flags as they are; no call when nothing changes.
pub fn ethtool_set_flags(ifname: &str, mask: u32, value: u32) -> io::Result<()> {
    let old = ethtool_flags(ifname)?;
    let new = (old & !mask) | (value & mask);
    if new != old {
        ethtool_value(ifname, ETHTOOL_SFLAGS, new)?;
    }
    Ok(())
}

/// Clears `clear` in the interface's legacy offload flags (e.g. VLAN tag
/// offload).
pub fn ethtool_clear_flags(ifname: &str, clear: u32) -> io::Result<()> {
    ethtool_set_flags(ifname, clear, 0)
}

/// `SIOCETHTOOL` with a command buffer of whole words (any ethtool struct
/// with a trailing array); the kernel reads and writes it in place.
fn ethtool_buf(ifname: &str, buf: &mut [u64]) -> io::Result<()> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to `buf`,
    // writable for its whole length during the call; every command sent
    // here sizes its trailing array to fit in `buf`.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    Ok(())
}

/// Little-endian halves of the words: ethtool structs are arrays of u32.
fn u32_at(buf: &[u64], i: usize) -> u32 {
    let w = buf[i / 2];
    if i.is_multiple_of(2) {
        w as u32
    } else {
        (w >> 32) as u32
    }
}

fn set_u32(buf: &mut [u64], i: usize, v: u32) {
    let w = &mut buf[i / 2];
    if i.is_multiple_of(2) {
        *w = (*w & !0xffff_ffff) | u64::from(v);
    } else {
        *w = (*w & 0xffff_ffff) | (u64::from(v) << 32);
    }
}

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The bit of the netdev feature called `name` (as `ethtool -k` lists it,
/// e.g. `tx-vlan-stag-hw-insert`), and the number of feature bits.
fn ethtool_feature_bit(ifname: &str, name: &str) -> io::Result<(Option<usize>, usize)> {
    // ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
    let mut info = [0u64; 3];
    set_u32(&mut info, 0, ETHTOOL_GSSET_INFO);
    info[1] = 1 << ETH_SS_FEATURES;
    ethtool_buf(ifname, &mut info)?;
    let count = if info[1] & (1 << ETH_SS_FEATURES) != 0 {
        u32_at(&info, 4) as usize
    } else {
        0
    };
    // ethtool_gstrings: cmd, string_set, len, then len x 32 bytes.
    let mut strings = vec![0u64; 2 + count * ETH_GSTRING_LEN / 8];
    set_u32(&mut strings, 0, ETHTOOL_GSTRINGS);
    set_u32(&mut strings, 1, ETH_SS_FEATURES);
    set_u32(&mut strings, 2, count as u32);
    ethtool_buf(ifname, &mut strings)?;
    let bytes: Vec<u8> = strings.iter().flat_map(|w| w.to_le_bytes()).collect();
    let table = &bytes[12..12 + count * ETH_GSTRING_LEN];
    let bit = table.chunks(ETH_GSTRING_LEN).position(|s| {
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end] == name.as_bytes()
    });
    Ok((bit, count))
}

/// Whether feature `name` is active on `ifname`; `None` when the
/// interface does not know the feature.
pub fn ethtool_feature(ifname: &str, name: &str) -> io::Result<Option<bool>> {
    let (Some(bit), count) = ethtool_feature_bit(ifname, name)? else {
        return Ok(None);
    };
    let blocks = count.div_ceil(32);
    // ethtool_gfeatures: cmd, size, then blocks of (available, requested,
    // active, never_changed).
    let mut buf = vec![0u64; 1 + blocks * 2];
    set_u32(&mut buf, 0, ETHTOOL_GFEATURES);
    set_u32(&mut buf, 1, blocks as u32);
    ethtool_buf(ifname, &mut buf)?;
    let active = u32_at(&buf, 2 + (bit / 32) * 4 + 2);
    Ok(Some(active & (1 << (bit % 32)) != 0))
}

/// Requests feature `name` on or off (`ethtool -K IF NAME on|off`). An
/// interface without the feature is left alone.
pub fn ethtool_set_feature(ifname: &str, name: &str, on: bool) -> io::Result<()> {
    let (Some(bit), count) = ethtool_feature_bit(ifname, name)? else {
        return Ok(());
    };
    let blocks = count.div_ceil(32);
    // ethtool_sfeatures: cmd, size, then blocks of (valid, requested).
    let mut buf = vec![0u64; 1 + blocks];
    set_u32(&mut buf, 0, ETHTOOL_SFEATURES);
    set_u32(&mut buf, 1, blocks as u32);
    let mask = 1u32 << (bit % 32);
    set_u32(&mut buf, 2 + (bit / 32) * 2, mask);
    set_u32(&mut buf, 3 + (bit / 32) * 2, if on { mask } else { 0 });
    ethtool_buf(ifname, &mut buf)?;
    Ok(())
}

/// `sendto(2)` on a bound AF_PACKET socket (no address).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length during the call.
    let ret = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
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
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
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
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    let mut len = ret as usize;
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
