//! Structured log fields as JSON values instead of Rust `Debug` strings.
//!
//! `tracing` hands a formatter a list or a map only as text. Wrapped in
//! [`json`], the value reaches tapline's JSON log format
//! (`tapline_packet::logging`) marked as JSON, and the line holds it as a
//! JSON value: `"tasks":["chain-q0","capture-q0"]`, `"cpu":null`, not a
//! string holding JSON and not Rust's `Some(1)`. The text format shows the
//! JSON text. Use: `tasks = %json(&names)`. Serialization happens only
//! when the event is written.

use serde::Serialize;

/// `value` as a JSON value in the log line. See
/// [`tapline_packet::logging::json`].
pub fn json<T: Serialize + ?Sized>(value: &T) -> tapline_packet::logging::Json<'_, T> {
    tapline_packet::logging::json(value)
}
