//! The messages between the chain's control thread and the pipeline's chain
//! tasks: a chain change for one task ([`TaskUpdate`], carrying the new
//! ports), its acknowledgement ([`TaskAck`]) and a hop's health change from
//! the judge ([`HopEvent`]).
//!
//! They live here, with the chain, so that the pipeline imports the chain's
//! types and never the reverse.

use std::sync::Arc;

use crossbeam::channel::Sender;

use super::heartbeat::Health;
use super::runtime::{Layout, PortId};
use crate::tap::TapPort;
use crate::xdp::XskSocket;
use tapline_segment::{QueueCounters, Slot};

/// A port of one queue: an AF_XDP socket on one interface.
#[derive(Debug)]
pub struct ChainPort {
    pub id: PortId,
    pub sock: XskSocket,
    pub counters: Slot<QueueCounters>,
    /// The live taps of this interface and queue.
    pub tap: TapPort,
    pub(crate) tx_pending: bool,
    /// Frames placed on its TX ring during this poll.
    pub(crate) sent_now: bool,
}

impl ChainPort {
    pub fn new(
        id: PortId,
        sock: XskSocket,
        counters: Slot<QueueCounters>,
        tap: TapPort,
    ) -> ChainPort {
        ChainPort {
            id,
            sock,
            counters,
            tap,
            tx_pending: false,
            sent_now: false,
        }
    }
}

/// A change of the chain, for one task.
#[derive(Debug)]
pub struct TaskUpdate {
    /// Sockets bound on this task's UMEM for new tool ports.
    pub add: Vec<ChainPort>,
    pub layout: Arc<Layout>,
    /// Ports to retire (after `layout` is in force): the task reclaims their
    /// frames and hands the sockets back in the ack.
    pub remove: Vec<PortId>,
    pub ack: Sender<TaskAck>,
}

/// A task's answer to a [`TaskUpdate`].
#[derive(Debug)]
pub struct TaskAck {
    pub queue: u32,
    pub removed: Vec<XskSocket>,
    /// Frames reclaimed from the retired sockets.
    pub reclaimed: u32,
}

/// A change of a hop's health, from the judge to the control thread.
#[derive(Debug, Clone)]
pub struct HopEvent {
    pub slot: usize,
    pub nonce: u32,
    pub health: Health,
    pub at_unix_ns: u64,
    pub reason: &'static str,
    pub message: String,
}
