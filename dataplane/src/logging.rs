//! The logging setup, now in `tapline-packet` ([`tapline_packet::logging`]);
//! this path stays while the dataplane's imports move to the new crate.

pub use tapline_packet::logging::*;
