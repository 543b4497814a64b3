//! Interface lookups: index, queue count, link state.

use std::io;

use super::sys;

/// The interface index of `ifname` in the current network namespace.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    let idx = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
    Ok(idx)
}

/// Number of RX queues that can carry traffic to AF_XDP sockets.
///
/// Asks the driver for its channels (`ETHTOOL_GCHANNELS`: combined plus
/// RX-only channels, what `ethtool -l` shows) and falls back to counting
/// `/sys/class/net/IF/queues/rx-*` for drivers without that operation.
pub fn rx_queue_count(ifname: &str) -> io::Result<u32> {
    if let Ok((combined, rx)) = sys::ethtool_channels(ifname) {
        let n = combined + rx;
        if n > 0 {
            return Ok(n);
        }
    }
    let dir = format!("/sys/class/net/{ifname}/queues");
    let n = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32;
    Ok(n.max(1))
}

/// True when `ifname` is administratively up and has carrier
/// (`IFF_UP` and `IFF_RUNNING`): a veth whose peer is down, or a VF whose
/// link is down, is not.
pub fn link_up(ifname: &str) -> io::Result<bool> {
    let f = sys::if_flags(ifname)?;
    let want = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
    Ok(f & want == want)
}

/// Whether `ifname` has carrier (`IFF_RUNNING`; admin state aside).
pub fn carrier(ifname: &str) -> io::Result<bool> {
    Ok(sys::if_flags(ifname)? & libc::IFF_RUNNING as u32 != 0)
}

/// Whether `ifname` is administratively up (`IFF_UP`).
pub fn admin_up(ifname: &str) -> io::Result<bool> {
    Ok(sys::if_flags(ifname)? & libc::IFF_UP as u32 != 0)
}

/// Sets `ifname` administratively up or down.
pub fn set_admin_up(ifname: &str, up: bool) -> io::Result<()> {
    sys::set_if_up(ifname, up)
}
