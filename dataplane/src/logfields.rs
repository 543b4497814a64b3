//! Structured log fields as JSON values instead of Rust `Debug` strings.
//!
//! `tracing`'s JSON formatter writes every field it is given as a string, a
//! number or a boolean; a list or a map can only reach it as text. This
//! module makes that text JSON (`["chain-q0","capture-q0"]`, not Rust's
//! `["chain-q0", "capture-q0"]` or `Some(1)`), so a collector parses the
//! field's value with a JSON parser: `tasks = %json(&names)`.
//! Serialization happens only when the event is written.

use std::fmt;

use serde::Serialize;

/// `value` as JSON text when displayed.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Json<'_, T> {
    Json(value)
}

/// See [`json`].
#[derive(Debug)]
pub struct Json<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}
