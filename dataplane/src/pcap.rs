//! The pcap writer and reader, now in `tapline-packet` ([`tapline_packet::pcap`]);
//! this path stays while the dataplane's imports move to the new crate.

pub use tapline_packet::pcap::*;
