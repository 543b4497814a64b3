//! tapline-bench as a library: lab topologies in network namespaces, traffic
//! tools, and the runner that starts `tapline-dataplane` in a lab. Used by
//! the `tapline-bench` binary and by the integration tests in `tests/`.
//!
//! No `unsafe` here: raw sockets and AF_XDP come from the dataplane's `xdp`
//! module.

#![forbid(unsafe_code)]

pub mod lab;
pub mod runner;
pub mod traffic;
