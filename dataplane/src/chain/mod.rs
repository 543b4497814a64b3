//! The inline tool chain: its spec ([`spec`]), the state the workers share
//! ([`runtime`]), heartbeats and the health judge ([`heartbeat`]), and the
//! control thread that validates, persists and applies changes and serves
//! the command socket ([`control`]).
//!
//! The messages between the control thread and the forwarding tasks are in
//! [`messages`]; the forwarding itself is the pipeline's chain task, which
//! uses this module's types (never the reverse).

pub mod command;
pub mod control;
pub mod heartbeat;
pub mod messages;
pub mod runtime;
pub mod spec;
