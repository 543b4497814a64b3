//! Shared output: stdout that a closed pipe ends quietly, `--json` in the
//! proto3 JSON mapping, text tables (comfy-table), and the formatting of
//! numbers, sizes, durations, instants and enum names for people.

use std::io::Write as _;

use comfy_table::{presets, CellAlignment, ColumnConstraint, ContentArrangement};
use serde::Serialize;
use tapline_proto::v1 as pb;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::exit;
use crate::failure::{esc, Failure};

/// Writes to stdout; a closed pipe ends the command quietly.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::quiet()
            } else {
                Failure::new(exit::SERVER, format!("writing to stdout: {e}"))
            }
        })
}

/// `v` as JSON text. Messages of `tapline.v1` serialize in the proto3 JSON
/// mapping (their serde impls come from pbjson). The value goes through
/// `serde_json::Value` so that object keys come out sorted: pbjson builds
/// proto maps as hash maps, and `--json` output must not change order
/// from one run to the next.
pub fn json_text<T: Serialize>(v: &T, pretty: bool) -> Result<String, Failure> {
    let encode = |e: serde_json::Error| Failure::new(exit::SERVER, format!("encoding JSON: {e}"));
    let value = serde_json::to_value(v).map_err(encode)?;
    if pretty {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    }
    .map_err(encode)
}

/// Prints `v` as JSON (pretty, or one line for streams), then a newline.
pub fn emit_json<T: Serialize>(v: &T, pretty: bool) -> Result<(), Failure> {
    emit(&format!("{}\n", json_text(v, pretty)?))
}

/// A text table without borders: columns separated by two spaces, numbers
/// right-aligned, trailing blanks trimmed. Every cell is escaped (see
/// [`esc`]): a server's text can neither forge a line nor repaint the
/// screen.
#[derive(Debug)]
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// Columns named in `headers`; a name starting with `>` is
    /// right-aligned (the `>` is not shown).
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(headers.iter().map(|h| h.as_ref().trim_start_matches('>')));
        for (i, (col, h)) in inner.column_iter_mut().zip(headers).enumerate() {
            // One blank each side, none before the first column: two
            // between columns.
            col.set_padding((u16::from(i > 0), 1));
            col.set_constraint(ColumnConstraint::ContentWidth);
            if h.as_ref().starts_with('>') {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        Table { inner }
    }

    /// Adds a row; every cell is escaped (see [`esc`]).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.inner.column_count());
        self.inner.add_row(cells.iter().map(|c| esc(c)));
    }

    /// The table, one line per row after the header line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.inner.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567.0` -> `1.23M`: rates with an SI prefix.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (d, p) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if p.is_empty() {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}{p}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}{p}")
    } else {
        format!("{x:.2}{p}")
    }
}

/// A rate of bytes, `2_500_000.0` -> `2.5MB` (bytesize, SI units, whole
/// bytes).
pub fn bytes_rate(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return si(v);
    }
    // Saturates above u64::MAX; rates are far below.
    bytesize::ByteSize::b(v.round() as u64)
        .display()
        .si_short()
        .to_string()
}

/// `3_723_000` ms -> `1h2m3s`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{}.{}s", s, ms % 1000 / 100)
    }
}

/// `1234` ns -> `1.2us`.
pub fn nanos(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else {
        format!("{ns}ns")
    }
}

/// An instant in RFC 3339 (UTC, `Z`), as tables show it.
pub fn time(t: Option<&tapline_proto::Timestamp>) -> Option<String> {
    t.map(|t| {
        prost_types::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        }
        .to_string()
    })
}

/// "-" for an empty cell, else the text escaped.
pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        esc(s)
    }
}

/// `DATAPLANE_STATE_RUNNING` with prefix `DATAPLANE_STATE_` -> `running`.
pub fn lower_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

pub fn dataplane_state_name(v: i32) -> String {
    match pb::DataplaneState::try_from(v) {
        Ok(pb::DataplaneState::Unspecified) => "unknown".into(),
        Ok(s) => lower_name(s.as_str_name(), "DATAPLANE_STATE_"),
        Err(_) => format!("unknown({v})"),
    }
}

pub fn failure_action_name(v: i32) -> String {
    pb::FailureAction::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "FAILURE_ACTION_"),
    )
}

pub fn hop_state_name(v: i32) -> String {
    pb::HopState::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "HOP_STATE_"),
    )
}

pub fn hop_traffic_name(v: i32) -> String {
    pb::HopTraffic::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "HOP_TRAFFIC_"),
    )
}

pub fn serving_status_name(v: i32) -> String {
    ServingStatus::try_from(v)
        .map_or_else(|_| format!("UNKNOWN({v})"), |s| s.as_str_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::one_line;

    #[test]
    fn server_text_is_escaped_in_tables_and_messages() {
        let mut t = Table::new(&["HOP", "REASON"]);
        t.row(vec![
            "ids".into(),
            "ok\n{\"level\":\"ERROR\"}\x1b[2J\x1b[31mred".into(),
        ]);
        let out = t.render();
        assert!(!out.contains('\x1b'), "{out:?}");
        assert_eq!(out.lines().count(), 2, "{out:?}");
        assert!(out.contains("ok\\n{"), "{out:?}");
        assert_eq!(one_line("a\u{202e}b\n c"), "a\\u{202e}b c");
        assert_eq!(dash("\x07"), "\\u{7}");
        assert_eq!(dash(""), "-");
    }

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["A", ">NUM", "LAST"]);
        t.row(vec!["xx".into(), "1".into(), "".into()]);
        t.row(vec!["y".into(), "1000".into(), "z".into()]);
        assert_eq!(t.render(), "A    NUM  LAST\nxx     1\ny   1000  z\n");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(14_880_952.0), "14.9M");
        assert_eq!(si(123_456_789_000.0), "123G");
        assert_eq!(bytes_rate(0.0), "0B");
        assert_eq!(bytes_rate(2_500_000.0), "2.5M");
        assert_eq!(duration_ms(1_500), "1.5s");
        assert_eq!(duration_ms(3_723_000), "1h2m3s");
        assert_eq!(duration_ms(90_061_000), "1d1h1m");
        assert_eq!(nanos(999), "999ns");
        assert_eq!(nanos(1_500), "1.5us");
        let t = tapline_proto::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        };
        assert_eq!(time(Some(&t)).as_deref(), Some("2027-01-15T08:00:00Z"));
    }

    #[test]
    fn enum_names_are_lower_case_and_tolerate_unknown_values() {
        assert_eq!(
            dataplane_state_name(pb::DataplaneState::Running.into()),
            "running"
        );
        assert_eq!(dataplane_state_name(0), "unknown");
        assert_eq!(dataplane_state_name(42), "unknown(42)");
        assert_eq!(
            failure_action_name(pb::FailureAction::Bypass.into()),
            "bypass"
        );
        assert_eq!(
            hop_state_name(pb::HopState::BypassedManual.into()),
            "bypassed_manual"
        );
        assert_eq!(
            hop_traffic_name(pb::HopTraffic::ThroughTool.into()),
            "through_tool"
        );
        assert_eq!(
            serving_status_name(ServingStatus::NotServing.into()),
            "NOT_SERVING"
        );
    }
}
