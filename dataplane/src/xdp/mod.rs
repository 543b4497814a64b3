//! tapline's AF_XDP layer, on `libc` and `nix` only: UMEM, rings, sockets,
//! the XDP redirect program and promiscuous-mode membership.
//!
//! With [`crate::sys`] (the syscalls), this is the only module of the
//! dataplane with `unsafe` code: memory shared with the kernel ([`ring`],
//! [`umem`]) and the BPF ABI ([`bpf`]). It is mechanism only: what to do
//! with a frame (heartbeats, fail-closed hops, taps) is the pipeline's. It
//! exports safe types: rings with batch `push`/`pop`, a [`Frame`] that
//! cannot be cloned, and sockets whose queues can only move frames the
//! caller owns.
//!
//! # Frame lifecycle
//!
//! ```text
//!        FramePool (per worker, user space)
//!          |  refill                      ^  reap / tx-full drop
//!          v                              |
//!     fill ring --kernel--> RX ring --> pipeline --> TX ring --kernel--> completion ring
//!     (port A)   receives   (port A)   (bridge,      (port B)  transmits  (port B)
//!                into the              capture)
//!                frame
//! ```
//!
//! A frame address is owned by exactly one party at a time. Forwarding
//! between ports that share a UMEM moves the 16-byte descriptor from one
//! port's RX ring to the other's TX ring; the frame bytes are never copied in
//! user space. On capture-only ports a frame goes from RX straight back to
//! fill after the consumers have seen it.
//!
//! # Modes
//!
//! The program is attached in native (driver) mode if the driver supports
//! it, else in generic (skb) mode; sockets bind zero-copy if the driver
//! supports it, else copy. [`XdpMode::Auto`] walks native+zero-copy ->
//! native+copy -> generic+copy and logs every fallback with the errno that
//! caused it. veth has no zero-copy (`bind` fails with EOPNOTSUPP), so the
//! lab always ends in copy mode.

pub mod afpacket;
pub mod bpf;
pub mod fallback;
pub mod netdev;
pub mod ring;
pub mod socket;
pub mod umem;

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::sys;
use tapline_config::xdp::{Geometry, XdpMode};
use tracing::{info, warn};

pub use afpacket::{PromiscGuard, RawSocket};
pub use bpf::{XdpAttachment, XskMap};
pub use ring::XdpDesc;
pub use socket::{
    forward, forward_each, EachResult, ForwardResult, Verdict, XskParams, XskSocket, XskStats,
    MAX_BATCH_FRAMES,
};
pub use umem::{Frame, FramePool, Umem};

/// Errors of the AF_XDP layer, each with the context an operator needs.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {ifname:?} not found in this network namespace: check the [interfaces] section and the pod's Multus networks")]
    NoSuchInterface { ifname: String },
    #[error("{op} on {ifname} was refused ({source}): the process lacks {capability} (grant it as a file capability or an ambient capability), or a seccomp/LSM policy blocks the call")]
    Permission {
        op: &'static str,
        ifname: String,
        capability: &'static str,
        source: io::Error,
    },
    #[error("{op} on {ifname} failed: {source}")]
    Os {
        op: &'static str,
        ifname: String,
        source: io::Error,
    },
    #[error("registering a UMEM of {} KiB failed ({source}): above RLIMIT_MEMLOCK without CAP_IPC_LOCK? grant CAP_IPC_LOCK or lower xdp.frame_count", bytes / 1024)]
    UmemReg { bytes: usize, source: io::Error },
    #[error("setting up the {ring} ring failed: {source}")]
    Ring {
        ring: &'static str,
        source: io::Error,
    },
    #[error("binding an AF_XDP socket to {ifname} queue {queue} in {mode} mode failed: {source}")]
    Bind {
        ifname: String,
        queue: u32,
        mode: BindMode,
        source: io::Error,
    },
    #[error("the kernel rejected the XDP program ({source}): {verifier_log}")]
    ProgLoad {
        verifier_log: String,
        source: io::Error,
    },
    #[error("another XDP program is already attached to {ifname} ({source}): detach it (`ip link set dev {ifname} xdp off`) or stop the process that owns it")]
    AlreadyAttached { ifname: String, source: io::Error },
    #[error("attaching XDP to {ifname} in {mode} mode failed: {source}")]
    Attach {
        ifname: String,
        mode: AttachMode,
        source: io::Error,
    },
    #[error("registering the socket of {ifname} queue {queue} in the XSKMAP failed: {source}")]
    MapUpdate {
        ifname: String,
        queue: u32,
        source: io::Error,
    },
    #[error("allocating {bytes} bytes of UMEM failed: {source}")]
    UmemAlloc { bytes: usize, source: io::Error },
}

impl XdpError {
    /// Wraps an OS error, naming the missing capability on EPERM/EACCES.
    pub(crate) fn from_os(
        op: &'static str,
        ifname: &str,
        source: io::Error,
        capability: Option<&'static str>,
    ) -> XdpError {
        match (source.raw_os_error(), capability) {
            (Some(libc::EPERM | libc::EACCES), Some(capability)) => XdpError::Permission {
                op,
                ifname: ifname.to_string(),
                capability,
                source,
            },
            _ => XdpError::Os {
                op,
                ifname: ifname.to_string(),
                source,
            },
        }
    }

    /// True when the error is a missing privilege.
    pub(crate) fn is_permission(&self) -> bool {
        matches!(self, XdpError::Permission { .. })
    }
}

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// On the skb path (`XDP_FLAGS_SKB_MODE`), any driver.
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// How frames reach the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each frame into the UMEM.
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// The mode a port actually obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMode {
    pub attach: AttachMode,
    pub bind: BindMode,
}

impl fmt::Display for PortMode {
    /// `native-zerocopy`, `native-copy`, `generic-copy`: the spelling of
    /// `xdp.mode` in the configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bind = match self.bind {
            BindMode::ZeroCopy => "zerocopy",
            BindMode::Copy => "copy",
        };
        write!(f, "{}-{bind}", self.attach)
    }
}

/// An interface with tapline's XDP program attached (and, if asked,
/// promiscuous membership). Dropping it detaches and releases both.
#[derive(Debug)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub queues: u32,
    pub attachment: XdpAttachment,
    _promisc: Option<PromiscGuard>,
}

impl Interface {
    /// Looks `name` up, attaches the redirect program as `requested` allows,
    /// and enables promiscuous mode if `promisc`.
    pub fn open(name: &str, requested: XdpMode, promisc: bool) -> Result<Interface, XdpError> {
        let ifindex = netdev::ifindex(name).map_err(|_| XdpError::NoSuchInterface {
            ifname: name.to_string(),
        })?;
        let queues = netdev::rx_queue_count(name).unwrap_or(1);
        let map = XskMap::create(queues, name)?;
        let attachment = match requested {
            XdpMode::Generic => {
                bpf::attach(map, ifindex, name, AttachMode::Generic).map_err(|(_, e)| e)?
            }
            XdpMode::NativeCopy | XdpMode::NativeZeroCopy => {
                bpf::attach(map, ifindex, name, AttachMode::Native).map_err(|(_, e)| e)?
            }
            XdpMode::Auto => match bpf::attach(map, ifindex, name, AttachMode::Native) {
                Ok(a) => a,
                Err((_, e @ (XdpError::Permission { .. } | XdpError::AlreadyAttached { .. }))) => {
                    return Err(e)
                }
                Err((map, e)) => {
                    warn!(ifname = name, error = %e, "native XDP unavailable, falling back to generic mode");
                    bpf::attach(map, ifindex, name, AttachMode::Generic).map_err(|(_, e)| e)?
                }
            },
        };
        let promisc = if promisc {
            Some(PromiscGuard::enable(ifindex, name)?)
        } else {
            None
        };
        info!(ifname = name, ifindex, queues, attach = %attachment.mode, promisc = promisc.is_some(), "XDP program attached");
        Ok(Interface {
            name: name.to_string(),
            ifindex,
            queues,
            attachment,
            _promisc: promisc,
        })
    }
}

/// Drivers whose `ndo_xdp_xmit` takes native `XDP_REDIRECT` traffic with
/// nothing else set up. Redirecting natively into a veth delivers nothing
/// unless the veth's far end has NAPI (an XDP program or GRO), which
/// bridge-CNI and macvlan links in a pod do not have: every driver not
/// listed here gets the fallback program in generic mode.
pub(crate) const NATIVE_REDIRECT_DRIVERS: &[&str] = &[
    "i40e",
    "ice",
    "ixgbe",
    "igb",
    "igc",
    "mlx5_core",
    "mlx4_en",
    "bnxt_en",
    "ena",
    "sfc",
    "nfp",
    "qede",
];

/// The attach mode of an inline port whose fallback redirects to
/// `peer` (the other inline port): native only where the peer's driver
/// transmits natively redirected frames (see [`NATIVE_REDIRECT_DRIVERS`]),
/// unless the operator forced a mode. Returns the mode and why.
pub(crate) fn inline_attach_mode(requested: XdpMode, peer: &str) -> (AttachMode, String) {
    match requested {
        XdpMode::Generic => (AttachMode::Generic, "xdp.mode is generic".into()),
        XdpMode::NativeCopy | XdpMode::NativeZeroCopy => {
            (AttachMode::Native, "xdp.mode forces native".into())
        }
        XdpMode::Auto => {
            let driver = sys::ethtool_driver(peer).unwrap_or_default();
            if NATIVE_REDIRECT_DRIVERS.contains(&driver.as_str()) {
                (
                    AttachMode::Native,
                    format!("peer {peer} ({driver}) transmits native XDP redirects"),
                )
            } else {
                let d = if driver.is_empty() {
                    "unknown"
                } else {
                    &driver
                };
                (
                    AttachMode::Generic,
                    format!("peer {peer} ({d}) may drop native XDP redirects (veth without NAPI on its far end); generic redirect works with any driver"),
                )
            }
        }
    }
}

impl Interface {
    /// An interface whose program the caller attached (the inline ports'
    /// fallback program), with promiscuous membership if `promisc`.
    pub(crate) fn from_attachment(
        name: &str,
        ifindex: u32,
        queues: u32,
        attachment: XdpAttachment,
        promisc: bool,
    ) -> Result<Interface, XdpError> {
        let promisc = if promisc {
            Some(PromiscGuard::enable(ifindex, name)?)
        } else {
            None
        };
        Ok(Interface {
            name: name.to_string(),
            ifindex,
            queues,
            attachment,
            _promisc: promisc,
        })
    }
}

/// One member of a queue group: a queue of an interface and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub iface: &'a Interface,
    pub queue: u32,
    pub rx: bool,
    pub tx: bool,
}

/// Sockets that share one UMEM (e.g. inline-1 q0 and inline-2 q0), so frames
/// move between them by descriptor.
#[derive(Debug)]
pub struct QueueGroup {
    pub umem: Arc<Umem>,
    /// In the order of the members passed to [`QueueGroup::open`].
    pub sockets: Vec<XskSocket>,
    pub mode: PortMode,
}

impl QueueGroup {
    /// Opens one socket per member on a shared UMEM, in the best bind mode
    /// that `requested` allows and every member's driver supports, and
    /// registers the receiving sockets in their interface's XSKMAP.
    pub fn open(
        members: &[Member<'_>],
        geo: &Geometry,
        requested: XdpMode,
    ) -> Result<QueueGroup, XdpError> {
        assert!(!members.is_empty());
        let all_native = members
            .iter()
            .all(|m| m.iface.attachment.mode == AttachMode::Native);
        let candidates: &[BindMode] = match (requested, all_native) {
            (XdpMode::Auto, true) => &[BindMode::ZeroCopy, BindMode::Copy],
            (XdpMode::NativeZeroCopy, _) => &[BindMode::ZeroCopy],
            _ => &[BindMode::Copy],
        };
        let bytes = geo.frame_size as usize * geo.frame_count as usize;
        let umem = Umem::new(geo.frame_size, geo.frame_count)
            .map_err(|source| XdpError::UmemAlloc { bytes, source })?;
        let mut last_err = None;
        for (i, &bind) in candidates.iter().enumerate() {
            match Self::bind_all(&umem, members, geo, bind) {
                Ok(sockets) => {
                    let attach = if all_native {
                        AttachMode::Native
                    } else {
                        AttachMode::Generic
                    };
                    let zerocopy = sockets[0].is_zerocopy();
                    let mode = PortMode {
                        attach,
                        bind: if zerocopy {
                            BindMode::ZeroCopy
                        } else {
                            BindMode::Copy
                        },
                    };
                    for (m, s) in members.iter().zip(&sockets) {
                        if m.rx {
                            let fd = s.fd().expect("kernel socket");
                            m.iface
                                .attachment
                                .map
                                .set(m.queue, fd.as_fd())
                                .map_err(|source| XdpError::MapUpdate {
                                    ifname: m.iface.name.clone(),
                                    queue: m.queue,
                                    source,
                                })?;
                        }
                    }
                    return Ok(QueueGroup {
                        umem,
                        sockets,
                        mode,
                    });
                }
                Err(e) => {
                    let fallback = i + 1 < candidates.len();
                    if fallback && !e.is_permission() {
                        warn!(error = %e, next = %candidates[i + 1], "AF_XDP bind mode unavailable, falling back");
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.expect("at least one candidate"))
    }

    fn bind_all(
        umem: &Arc<Umem>,
        members: &[Member<'_>],
        geo: &Geometry,
        mode: BindMode,
    ) -> Result<Vec<XskSocket>, XdpError> {
        let params = |m: &Member<'_>| XskParams {
            ifindex: m.iface.ifindex,
            queue: m.queue,
            rx: m.rx,
            tx: m.tx,
            sizes: geo.rings,
            mode,
        };
        // The first socket registers the UMEM; the others share it.
        let first = XskSocket::bind(umem, &params(&members[0]), None, &members[0].iface.name)?;
        let mut rest = Vec::with_capacity(members.len() - 1);
        for m in &members[1..] {
            rest.push(XskSocket::bind(
                umem,
                &params(m),
                first.fd(),
                &m.iface.name,
            )?);
        }
        let mut sockets = Vec::with_capacity(members.len());
        sockets.push(first);
        sockets.extend(rest);
        Ok(sockets)
    }
}

#[cfg(test)]
mod tests;
