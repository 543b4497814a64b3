//! Why the dataplane could not start ([`StartError`]), and the process exit
//! code each reason maps to ([`exit`]). Its own module so that the
//! preflight checks and the engine both use it without importing each
//! other.

use crate::stats::Role;
use crate::xdp::XdpError;

/// Exit codes of `tapline-dataplane` (sysexits.h).
pub mod exit {
    /// Bad configuration or a configured interface that does not exist.
    pub const CONFIG: u8 = 64;
    /// A required capability is missing.
    pub(crate) const NOPERM: u8 = 77;
    /// The kernel refused an operation for another reason.
    pub const OSERR: u8 = 71;
}

/// Why the dataplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("interface {ifname:?} ({role}) not found in this network namespace: check [interfaces] {role} and the pod's network attachments")]
    MissingInterface { role: Role, ifname: String },
    #[error("inline-1 {side1:?} has {q1} queues but inline-2 {side2:?} has {q2}: bridged queues are paired one to one; set equal channel counts (ethtool -L IF combined N)")]
    QueueMismatch {
        side1: String,
        q1: u32,
        side2: String,
        q2: u32,
    },
    #[error("interface {ifname:?} (member of output group {group:?}) not found in this network namespace: check output_group members and the pod's network attachments")]
    MissingMember { group: String, ifname: String },
    #[error("output group {group:?} member {ifname:?} has {queues} queues but passive-1 has {needed}: each capture queue transmits on the member queue of the same number; give the member at least as many channels (ethtool -L IF combined N) or passive-1 fewer")]
    MemberQueues {
        group: String,
        ifname: String,
        queues: u32,
        needed: u32,
    },
    #[error("xdp.frame_count {frames} leaves each of the {members} output group members only {share} frames in flight (at least {min} are needed): raise xdp.frame_count")]
    MemberShare {
        frames: u32,
        members: usize,
        share: u32,
        min: u32,
    },
    #[error("output_group[{group_index}].members[{member_index}]: {reason} (group {group:?})")]
    UnfitMember {
        group: String,
        group_index: usize,
        member_index: usize,
        reason: String,
    },
    #[error("{0}")]
    InvalidChain(String),
    #[error("{0}")]
    Memory(String),
    #[error("interface {ifname:?} ({role}) has MTU {mtu}, but an xdp.frame_size of {frame_size} holds frames of at most {max_mtu} bytes of MTU (with two VLAN tags): lower the MTU of {ifname} to {max_mtu} or less, or raise xdp.frame_size (4096 holds an MTU of {max_mtu_4k})")]
    Mtu {
        ifname: String,
        role: String,
        mtu: u32,
        frame_size: u32,
        max_mtu: u32,
        max_mtu_4k: u32,
    },
    #[error("{0}")]
    StateDirLocked(String),
    #[error("{0}")]
    Capabilities(String),
    #[error("{0}")]
    Recorder(String),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("starting worker thread {name} failed: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::MissingInterface { .. }
            | StartError::QueueMismatch { .. }
            | StartError::MissingMember { .. }
            | StartError::MemberQueues { .. }
            | StartError::MemberShare { .. }
            | StartError::UnfitMember { .. }
            | StartError::InvalidChain(_)
            | StartError::Memory(_)
            | StartError::Mtu { .. } => exit::CONFIG,
            StartError::StateDirLocked(_) => exit::OSERR,
            StartError::Xdp(XdpError::NoSuchInterface { .. }) => exit::CONFIG,
            StartError::Capabilities(_) => exit::NOPERM,
            StartError::Xdp(e) if e.is_permission() => exit::NOPERM,
            StartError::Xdp(_) | StartError::Thread { .. } | StartError::Recorder(_) => exit::OSERR,
        }
    }
}
