//! Interface lookups: index, queue count, link state, MTU, and whether an
//! interface is fit to be a tool port (not loopback, no default route, no
//! routable address).

use std::io;

use crate::sys;

/// The interface index of `ifname` in the current network namespace.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    sys::if_nametoindex(ifname)
}

/// Number of RX queues that can carry traffic to AF_XDP sockets.
///
/// Asks the driver for its channels (`ETHTOOL_GCHANNELS`: combined plus
/// RX-only channels, what `ethtool -l` shows) and falls back to counting
/// `/sys/class/net/IF/queues/rx-*` for drivers without that operation.
pub(crate) fn rx_queue_count(ifname: &str) -> io::Result<u32> {
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
pub(crate) fn link_up(ifname: &str) -> io::Result<bool> {
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
pub(crate) fn set_admin_up(ifname: &str, up: bool) -> io::Result<()> {
    sys::set_if_up(ifname, up)
}

/// True when `ifname` is administratively up (`IFF_UP`) and has carrier
/// as its driver reports it (`/sys/class/net/IF/carrier`, which follows
/// `netif_carrier_ok` at once). `IFF_RUNNING` (the operational state) is
/// the fallback where sysfs is not this namespace's: it is updated by the
/// kernel's link watch, later, and flickers when XDP is attached to a veth.
pub fn has_carrier(ifname: &str) -> io::Result<bool> {
    let f = sys::if_flags(ifname)?;
    if f & libc::IFF_UP as u32 == 0 {
        return Ok(false);
    }
    if ifname.contains(['/', '.']) {
        return link_up(ifname);
    }
    match std::fs::read_to_string(format!("/sys/class/net/{ifname}/carrier")) {
        Ok(t) => Ok(t.trim() == "1"),
        Err(_) => link_up(ifname),
    }
}

/// The interface's MTU.
pub fn mtu(ifname: &str) -> io::Result<u32> {
    sys::if_mtu(ifname)
}

/// True for a loopback interface (`IFF_LOOPBACK`).
pub(crate) fn is_loopback(ifname: &str) -> io::Result<bool> {
    Ok(sys::if_flags(ifname)? & libc::IFF_LOOPBACK as u32 != 0)
}

/// Interfaces that carry a default route of the main table (IPv4 from
/// `/proc/net/route`, IPv6 from `/proc/net/ipv6_route`; both list this
/// network namespace's routes). Unreadable files count as no route.
pub(crate) fn default_route_interfaces() -> Vec<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    parse_default_routes(&v4, &v6)
}

/// The devices of the default routes in the text of `/proc/net/route` and
/// `/proc/net/ipv6_route`.
fn parse_default_routes(v4: &str, v6: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    for l in v4.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            out.push(f[0].to_string());
        }
    }
    // dest prefix_len src src_len next_hop metric refcnt use flags device
    /// `RTF_REJECT`: the unreachable default routes the kernel keeps on
    /// `lo` are no way out.
    const RTF_REJECT: u32 = 0x0200;
    for l in v6.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let flags = f.get(8).and_then(|v| u32::from_str_radix(v, 16).ok());
        if f.len() > 9
            && f[0].bytes().all(|b| b == b'0')
            && f[1] == "00"
            && flags.is_some_and(|v| v & RTF_REJECT == 0)
        {
            out.push(f[9].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The first routable (not link-local, not loopback) address of `ifname`:
/// IPv4 outside 169.254.0.0/16, IPv6 outside fe80::/10.
pub(crate) fn routable_address(ifname: &str) -> Option<std::net::IpAddr> {
    sys::process::interface_addresses(ifname)
        .into_iter()
        .find(|ip| match ip {
            std::net::IpAddr::V4(ip) => {
                !ip.is_link_local() && !ip.is_loopback() && !ip.is_unspecified()
            }
            std::net::IpAddr::V6(ip) => {
                let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                !link_local && !ip.is_loopback() && !ip.is_unspecified()
            }
        })
}

/// Why `ifname` must not be a tool port or an output member, or `None`
/// when it is fit. Loopback is never fit; the interface of a default route
/// and one with a routable address (the pod's own network) are fit only
/// when `allowed` (the configuration's `allowed_interfaces`) names them.
pub(crate) fn unfit_reason(ifname: &str, allowed: &[String]) -> Option<String> {
    if is_loopback(ifname).unwrap_or(false) {
        return Some(format!(
            "interface {ifname:?} is a loopback interface: a tool port needs an interface of its own"
        ));
    }
    if allowed.iter().any(|a| a == ifname) {
        return None;
    }
    if default_route_interfaces().iter().any(|r| r == ifname) {
        return Some(format!(
            "interface {ifname:?} carries the default route (the pod's own network): use an interface of the tool's attachment, or list it in allowed_interfaces if it really is one"
        ));
    }
    if let Some(ip) = routable_address(ifname) {
        return Some(format!(
            "interface {ifname:?} has the routable address {ip} (not link-local): use an interface of the tool's attachment, or list it in allowed_interfaces if it really is one"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_of_both_families_are_found_and_reject_routes_ignored() {
        let v4 = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
net1\t00000A0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";
        let v6 = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     net2
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        assert_eq!(parse_default_routes(v4, v6), vec!["eth0", "eth1"]);
        assert!(parse_default_routes("", "").is_empty());
    }

    #[test]
    fn loopback_is_never_fit() {
        let reason = unfit_reason("lo", &["lo".to_string()]).unwrap_or_default();
        assert!(reason.contains("loopback"), "{reason:?}");
    }
}
