//! The inline tool chain: its spec ([`spec`]), the state the workers share
//! ([`runtime`]), heartbeats and the health judge ([`heartbeat`]), and the
//! control thread that validates, persists and applies changes
//! ([`control`]; the command socket that feeds it requests is
//! [`crate::command`]).
//!
//! The messages between the control thread and the forwarding tasks are in
//! [`messages`]; the forwarding itself is the pipeline's chain task, which
//! uses this module's types (never the reverse).

pub mod control;
pub mod heartbeat;
pub mod messages;
pub mod runtime;
pub mod spec;
