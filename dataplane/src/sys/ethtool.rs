//! Interface ioctls: flags and MTU (`SIOCGIFFLAGS`, `SIOCSIFFLAGS`,
//! `SIOCGIFMTU`) and the ethtool commands (`SIOCETHTOOL`): channels,
//! driver name, legacy offload flags and netdev features. Every ioctl goes
//! through [`if_ioctl`], so the fake sees (and can answer) each of them.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use super::{socket, syscall, Syscall};

/// `ioctl(2)` with `ifr` on a fresh `AF_INET` datagram socket (any socket
/// will do for these requests).
///
/// # Safety
///
/// A pointer stored in `ifr` (the ethtool command buffer) must be valid for
/// the kernel to read and write what `request` implies, during the call.
unsafe fn if_ioctl(request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: `ifr` is a valid, writable ifreq; the pointers inside it are
    // the caller's to vouch for.
    unsafe {
        syscall(Syscall::Ioctl {
            fd: sock.as_raw_fd(),
            request,
            ifr,
        })
    }
    .map(drop)
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
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel writes
    // the flags into its union.
    unsafe { if_ioctl(libc::SIOCGIFFLAGS, &mut ifr) }?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`, a plain integer.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(u32::from(flags as u16))
}

/// `SIOCSIFFLAGS`: sets (`up`) or clears the interface's `IFF_UP` (the
/// administrative state, what `ip link set IF up|down` changes).
pub fn set_if_up(ifname: &str, up: bool) -> io::Result<()> {
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: as in `if_flags`: the kernel fills the flags of the named
    // interface into the union.
    unsafe { if_ioctl(libc::SIOCGIFFLAGS, &mut ifr) }?;
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
    unsafe { if_ioctl(libc::SIOCSIFFLAGS, &mut ifr) }?;
    Ok(())
}

/// `SIOCGIFMTU`: the interface's MTU (bytes above the Ethernet header).
pub fn if_mtu(ifname: &str) -> io::Result<u32> {
    let mut ifr = ifreq_for(ifname)?;
    // SAFETY: `ifr` is a valid ifreq naming the interface; the kernel writes
    // the MTU into its union.
    unsafe { if_ioctl(libc::SIOCGIFMTU, &mut ifr) }?;
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
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to a writable
    // `ethtool_channels` that outlives the call.
    unsafe { if_ioctl(libc::SIOCETHTOOL, &mut ifr) }?;
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
    unsafe { if_ioctl(libc::SIOCETHTOOL, &mut ifr) }?;
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
    let mut ifr = ifreq_for(ifname)?;
    let mut v = EthtoolValue { cmd, data };
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to a writable
    // `ethtool_value` that outlives the call.
    unsafe { if_ioctl(libc::SIOCETHTOOL, &mut ifr) }?;
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
    let mut ifr = ifreq_for(ifname)?;
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `ifr` is a valid ifreq whose data pointer points to `buf`,
    // writable for its whole length during the call; every command sent
    // here sizes its trailing array to fit in `buf`.
    unsafe { if_ioctl(libc::SIOCETHTOOL, &mut ifr) }?;
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
