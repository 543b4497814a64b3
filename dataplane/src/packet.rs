//! The frame parser, now in `tapline-packet` ([`tapline_packet::packet`]);
//! this path stays while the dataplane's imports move to the new crate.

pub use tapline_packet::packet::*;
