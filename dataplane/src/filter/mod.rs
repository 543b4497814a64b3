//! The pcap-filter compiler, now in `tapline-packet` ([`tapline_packet::filter`]);
//! this path stays while the dataplane's imports move to the new crate.

pub use tapline_packet::filter::*;
