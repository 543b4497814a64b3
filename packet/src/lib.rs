//! What tapline's engine (`tapline-dataplane`), its sidecar and its CLI
//! (`tapline-control`) share about packets, with no kernel interface and
//! no `unsafe`:
//!
//! - [`filter`]: the pcap-filter (tcpdump language) compiler and its
//!   evaluator;
//! - [`packet`]: the frame parser and the symmetric flow hash;
//! - [`pcap`]: the pcap writer (recorder, tap) and the fuzzed reader;
//! - [`logging`]: the `--log-format` / `--log-level` setup every binary
//!   shares.

#![forbid(unsafe_code)]

pub mod filter;
pub mod logging;
pub mod packet;
pub mod pcap;

pub use filter::Filter;
pub use packet::Packet;
