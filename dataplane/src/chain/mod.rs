//! The inline tool chain: its spec ([`spec`]), the state the workers share
//! ([`runtime`]), heartbeats and the health judge ([`heartbeat`]), and the
//! control thread that validates, persists and applies changes and serves
//! the command socket ([`control`]).
//!
//! The forwarding itself is [`crate::pipeline::chain::ChainTask`].

pub mod command;
pub mod control;
pub mod heartbeat;
pub mod runtime;
pub mod spec;
