//! tapline-bench as a library: traffic tools, the runner that starts
//! `tapline-dataplane` in a lab (the lab itself is the `tapline-lab`
//! crate), benchmarks and the demo. Used by the `tapline-bench` binary and by the integration
//! tests in `tests/`.
//!
//! No `unsafe` here: raw sockets and AF_XDP come from the dataplane's `xdp`
//! module.

#![forbid(unsafe_code)]

pub mod afpacket;
pub mod chain_bench;
mod child;
pub mod demo;
pub mod filter_micro;
pub mod inline_bench;
pub mod measure;
pub mod micro;
pub mod observe;
pub mod passive_bench;
pub mod peers;
pub mod plot;
pub mod progress;
pub mod report;
pub mod runner;
pub mod search;
pub mod sink;
pub mod survive;
pub mod traffic;

/// The lab moved to its own crate, `tapline-lab`; `tapline_bench::lab`
/// stays as its name here so callers written against it keep compiling.
pub use tapline_lab as lab;
