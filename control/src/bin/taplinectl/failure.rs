//! Why a command failed: exit codes, one line for stderr, and making a
//! server's text inert for a terminal.

use crate::exit;

/// Why the command failed: one line for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    /// stdout was closed by its reader (`taplinectl ... | head`): not an
    /// error worth a message.
    pub fn quiet() -> Failure {
        Failure::new(0, "")
    }
}

/// The innermost cause of an error, as text: "connection refused" rather
/// than tonic's "transport error".
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        let s = match io.kind() {
            K::ConnectionRefused => "connection refused",
            K::ConnectionReset => "connection reset",
            K::TimedOut => "connection timed out",
            K::HostUnreachable => "host unreachable",
            K::NetworkUnreachable => "network unreachable",
            K::AddrNotAvailable => "address not available",
            _ => return one_line(&io.to_string()),
        };
        return s.to_string();
    }
    let s = one_line(&cur.to_string());
    if s.is_empty() {
        one_line(&e.to_string())
    } else {
        s
    }
}

/// Makes `s` fit on one line.
pub fn one_line(s: &str) -> String {
    esc(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A server's text made inert for a terminal: control characters (ESC
/// included), line separators and bidirectional overrides are printed as
/// escapes (`\n`, `\u{1b}`), so a hop's reason or a message can neither
/// forge a line nor repaint the screen. Every text from the server goes
/// through this (or through a [`crate::output::Table`], which applies it to every cell).
pub fn esc(s: &str) -> String {
    tapline_proto::limits::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_names_a_refused_connection() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(root_cause(&e), "connection refused");
    }
}
