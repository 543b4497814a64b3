//! The lab's one door to the kernel's ethtool interface: the VLAN offload
//! flags and features the lab turns off on the interfaces it builds, and
//! reads and restores on the NICs it takes and returns. Every call of the
//! lab into the dataplane's system-call layer is here, so only this module
//! changes when that layer moves. All of them act on an interface of the
//! calling thread's network namespace.

use std::io;

use tapline_dataplane::sys;

/// 802.1ad (S-tag) offloads, by their `ethtool -k` names.
pub const STAG_OFFLOADS: [&str; 2] = ["tx-vlan-stag-hw-insert", "rx-vlan-stag-hw-parse"];

/// The 802.1Q offload flags (`ethtool -k`'s `rx-vlan-offload` and
/// `tx-vlan-offload`).
const VLAN_FLAGS: u32 = sys::ETH_FLAG_RXVLAN | sys::ETH_FLAG_TXVLAN;

/// `ifname`'s 802.1Q offload flags: (`rx-vlan-offload`, `tx-vlan-offload`).
pub(crate) fn vlan_offload(ifname: &str) -> io::Result<(bool, bool)> {
    let flags = sys::ethtool_flags(ifname)?;
    Ok((
        flags & sys::ETH_FLAG_RXVLAN != 0,
        flags & sys::ETH_FLAG_TXVLAN != 0,
    ))
}

/// Sets `ifname`'s 802.1Q offload flags (a no-op when they are already so).
pub(crate) fn set_vlan_offload(ifname: &str, rx: bool, tx: bool) -> io::Result<()> {
    let value =
        if rx { sys::ETH_FLAG_RXVLAN } else { 0 } | if tx { sys::ETH_FLAG_TXVLAN } else { 0 };
    sys::ethtool_set_flags(ifname, VLAN_FLAGS, value)
}

/// Turns every VLAN tag offload of `ifname` off: the 802.1Q flags and the
/// 802.1ad features of [`STAG_OFFLOADS`] (a feature the device does not
/// have is left alone).
pub(crate) fn vlan_offload_off(ifname: &str) -> io::Result<()> {
    sys::ethtool_clear_flags(ifname, VLAN_FLAGS)?;
    for feature in STAG_OFFLOADS {
        sys::ethtool_set_feature(ifname, feature, false)?;
    }
    Ok(())
}
