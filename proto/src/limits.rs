//! Bounds on what a request may carry, shared by every side of the API: the
//! sidecar checks them before it forwards a request, the dataplane checks
//! them again on its command socket (any process with its uid may connect),
//! and `taplinectl` escapes what it prints with [`escape`].
//!
//! A request over a bound is refused with INVALID_ARGUMENT and a message
//! naming the field and the bound; the message never echoes more than
//! [`QUOTE_BYTES`] of the offending value, so an error about a 4 MiB field is
//! a short line. Text fields refuse control characters (C0, DEL, C1) and the
//! Unicode line separators and bidirectional overrides: they would forge
//! lines in a text log or repaint an operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::v1;

/// Most hops a chain may have.
pub const MAX_HOPS: usize = 8;
/// Longest hop name, in bytes (it is stored in the stats segment).
pub const MAX_HOP_NAME_BYTES: usize = 32;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_BYTES: usize = 15;
/// Longest `SetHopBypassRequest.reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 256;
/// Longest tap filter expression, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Longest tap port name (`TapPoint.port`), in bytes.
pub const MAX_PORT_BYTES: usize = 32;
/// Most roles in a `StatsSelector`.
pub const MAX_SELECTOR_ROLES: usize = 16;
/// Longest role in a `StatsSelector`, in bytes.
pub const MAX_ROLE_BYTES: usize = 32;
/// Largest request frame the dataplane's command socket reads: the largest
/// valid request (a chain of [`MAX_HOPS`] hops, a tap with a filter of
/// [`MAX_FILTER_BYTES`]) is a few KiB.
pub const MAX_REQUEST_FRAME: usize = 64 << 10;
/// Longest message stored with a rejected update or a hop's status, in
/// bytes (longer ones are cut with [`truncate`]).
pub const MAX_STORED_MESSAGE_BYTES: usize = 1024;
/// Bytes of an offending value quoted in an error message.
pub const QUOTE_BYTES: usize = 40;

/// Whether `c` may not appear in a text field: control characters, the
/// Unicode line and paragraph separators, and the bidirectional embedding,
/// override and isolate characters.
pub fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` (3
/// bytes, counted in `max` when there is room) when something was cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// `s` with every forbidden character (see [`forbidden_char`]) written as
/// an escape (`\n`, `\t`, `\r`, `\u{1b}`), and backslashes doubled, so
/// what is printed is one line that cannot steer a terminal.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| forbidden_char(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if forbidden_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A value quoted for an error message: escaped and cut to
/// [`QUOTE_BYTES`].
pub fn quote(s: &str) -> String {
    format!("\"{}\"", escape(&truncate(s, QUOTE_BYTES)))
}

/// One field over its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, e.g. `spec.hops[1].name`.
    pub field: String,
    /// What is wrong, and the bound.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks one text field: at most `max_bytes`, no forbidden character.
pub fn check_text(field: &str, value: &str, max_bytes: usize) -> Result<(), Violation> {
    let v = |message: String| Violation {
        field: field.to_string(),
        message,
    };
    if value.len() > max_bytes {
        return Err(v(format!(
            "{} bytes ({}): at most {max_bytes} bytes",
            value.len(),
            quote(value)
        )));
    }
    if let Some((at, c)) = value.char_indices().find(|&(_, c)| forbidden_char(c)) {
        return Err(v(format!(
            "control character U+{:04X} at byte {at} of {}: text fields must be printable \
             (no control, line-separator or bidirectional-override characters)",
            c as u32,
            quote(value)
        )));
    }
    Ok(())
}

/// Checks the bounds of a chain spec; fields are named as in the spec
/// (`hops[1].name`), as the dataplane's validation names them. A spec
/// with too many hops yields that one violation, nothing per hop.
pub fn check_spec(spec: &v1::ChainSpec) -> Vec<Violation> {
    if spec.hops.len() > MAX_HOPS {
        return vec![Violation {
            field: "hops".to_string(),
            message: format!("{} hops: a chain has at most {MAX_HOPS}", spec.hops.len()),
        }];
    }
    let mut out = Vec::new();
    for (i, h) in spec.hops.iter().enumerate() {
        for (name, value, max) in [
            ("name", &h.name, MAX_HOP_NAME_BYTES),
            ("a", &h.a, MAX_IFNAME_BYTES),
            ("b", &h.b, MAX_IFNAME_BYTES),
        ] {
            if let Err(e) = check_text(&format!("hops[{i}].{name}"), value, max) {
                out.push(e);
            }
        }
    }
    out
}

/// Checks the bounds of a `SetHopBypassRequest`.
pub fn check_set_hop_bypass(r: &v1::SetHopBypassRequest) -> Result<(), Violation> {
    check_text("hop", &r.hop, MAX_HOP_NAME_BYTES)?;
    check_text("reason", &r.reason, MAX_REASON_BYTES)
}

/// Checks the bounds of a `TapRequest`'s text fields.
pub fn check_tap(r: &v1::TapRequest) -> Result<(), Violation> {
    if let Some(loc) = r.point.as_ref().and_then(|p| p.location.as_ref()) {
        match loc {
            v1::tap_point::Location::Port(p) => check_text("point.port", p, MAX_PORT_BYTES)?,
            v1::tap_point::Location::Hop(h) => {
                check_text("point.hop.hop", &h.hop, MAX_HOP_NAME_BYTES)?
            }
        }
    }
    // A filter may span lines (the tcpdump language ignores whitespace):
    // only tabs and line breaks are allowed among the control characters.
    let printable: String = r
        .filter
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    check_text("filter", &printable, MAX_FILTER_BYTES)
}

/// Checks the bounds of a `StatsSelector` (`field` names it).
pub fn check_selector(field: &str, s: &v1::StatsSelector) -> Result<(), Violation> {
    if s.roles.len() > MAX_SELECTOR_ROLES {
        return Err(Violation {
            field: format!("{field}.roles"),
            message: format!("{} roles: at most {MAX_SELECTOR_ROLES}", s.roles.len()),
        });
    }
    for (i, r) in s.roles.iter().enumerate() {
        check_text(&format!("{field}.roles[{i}]"), r, MAX_ROLE_BYTES)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_one_inert_line() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            escape("a\nb\x1b[31mc\\d\u{202e}"),
            "a\\nb\\u{1b}[31mc\\\\d\\u{202e}"
        );
        assert!(!escape("x\u{85}y\u{7f}").chars().any(forbidden_char));
    }

    #[test]
    fn truncate_cuts_at_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6 && t.ends_with('…'), "{t}");
        assert_eq!(truncate("abcdefgh", 5), "ab…");
    }

    #[test]
    fn text_bounds_name_the_field_without_echoing_the_value() {
        let big = "x".repeat(4 << 20);
        let e = check_text("reason", &big, MAX_REASON_BYTES).unwrap_err();
        assert_eq!(e.field, "reason");
        assert!(e.message.starts_with("4194304 bytes"), "{e}");
        assert!(e.to_string().len() < 200, "{e}");
        let e = check_text("reason", "ok\n\x1b[2Jforged", MAX_REASON_BYTES).unwrap_err();
        assert!(
            e.message.starts_with("control character U+000A at byte 2"),
            "{e}"
        );
        assert!(!e.message.chars().any(forbidden_char));
        assert!(check_text("reason", "tool upgrade, ticket OPS-123 ✓", 256).is_ok());
    }

    #[test]
    fn spec_bounds() {
        let hop = |n: &str| v1::HopSpec {
            name: n.into(),
            a: "t1a".into(),
            b: "t1b".into(),
            on_failure: 0,
        };
        let big = v1::ChainSpec {
            hops: vec![hop("h"); 10_000],
            default_on_failure: 0,
        };
        let v = check_spec(&big);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to_string(), "hops: 10000 hops: a chain has at most 8");
        let bad = v1::ChainSpec {
            hops: vec![hop("ok"), hop(&"n".repeat(33)), hop("a\u{1b}b")],
            default_on_failure: 0,
        };
        let v = check_spec(&bad);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].field, "hops[1].name");
        assert_eq!(v[1].field, "hops[2].name");
    }

    #[test]
    fn tap_filters_may_span_lines_but_not_hold_escapes() {
        let mut r = v1::TapRequest {
            filter: "tcp\n and port 80".into(),
            ..Default::default()
        };
        assert!(check_tap(&r).is_ok());
        r.filter = "tcp\x1b".into();
        assert_eq!(check_tap(&r).unwrap_err().field, "filter");
        r.filter = "a".repeat(MAX_FILTER_BYTES + 1);
        assert_eq!(check_tap(&r).unwrap_err().field, "filter");
    }
}
