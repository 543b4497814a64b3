//! tapline's dataplane: AF_XDP capture on passive-1 and an inline L2 bridge
//! between inline-1 and inline-2, driven by busy-polling worker threads.
//!
//! All `unsafe` code lives in two modules: [`sys`], the one door to the
//! kernel (every syscall goes through `sys::syscall`, with a fake under
//! `cfg(test)` so the set-up logic is tested without root), and [`xdp`],
//! the AF_XDP mechanism (memory shared with the kernel, the BPF ABI) in safe
//! types. The rest of the crate (configuration, pipeline tasks, workers,
//! stats) is safe Rust over those types and over `&[u8]`, and is tested
//! without a kernel. The compiler enforces the boundary: `unsafe` is denied
//! everywhere but in `sys` and `xdp`.
//!
//! Imports point one way: `pipeline` uses `chain`'s types (never the
//! reverse), `xdp` knows nothing of policy (heartbeats, fail-closed hops,
//! taps are the pipeline's); `.ci/module-cycles.py` checks that no import
//! cycle exists between the modules.

#![deny(unsafe_code)]

pub mod caps;
pub mod chain;
pub mod command;
pub mod engine;
pub mod error;
pub mod links;
pub mod logfields;
pub mod memlimit;
pub mod pipeline;
pub mod preflight;
pub mod record;
pub mod stats;
pub mod status;
pub mod survive;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod worker;
#[allow(unsafe_code)]
pub mod xdp;

pub use engine::{Dataplane, StartError};
