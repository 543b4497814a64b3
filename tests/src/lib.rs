//! Shared helpers for tapline's integration tests.

#![forbid(unsafe_code)]
