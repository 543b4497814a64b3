//! The counter columns of the `stats` tables, as data: per counter family,
//! a list of (field, header). A field is the proto field name in the
//! family's message (a dotted path into nested messages, `rates.` for the
//! watch-only rate columns); the cell is read from the message's proto3
//! JSON, so a column needs no code of its own. How a cell is formatted
//! follows from the unit the field's name carries (see [`format_cell`]).
//!
//! Adding a counter column is one line here; the identity columns of each
//! table (names, ids, queues, the current file) and the derived ones
//! (kernel drops, top drop reasons) are in the table's code.

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::Value;

use crate::output::{bytes_rate, nanos, si};

/// (proto field path in the family's message, column header). Counter
/// columns are right-aligned.
pub type Column = (&'static str, &'static str);

/// Port and queue counters (`PacketCounters`).
pub const PORT: &[Column] = &[
    ("rx_packets", "RX PACKETS"),
    ("rx_bytes", "RX BYTES"),
    ("tx_packets", "TX PACKETS"),
    ("tx_bytes", "TX BYTES"),
    ("dropped_packets", "DROPS"),
];
/// Port and queue rates (`PacketRates`), with --watch.
pub const PORT_RATES: &[Column] = &[
    ("rx_packets_per_second", "RX PKT/S"),
    ("rx_bytes_per_second", "RX B/S"),
    ("tx_packets_per_second", "TX PKT/S"),
    ("tx_bytes_per_second", "TX B/S"),
    ("dropped_packets_per_second", "DROP/S"),
];
/// The kernel's AF_XDP counters summed into the KERNEL DROPS column
/// (`KernelXdpCounters`): packets or descriptors the kernel lost.
pub const KERNEL_DROPS: &[&str] = &[
    "rx_dropped",
    "rx_ring_full",
    "rx_invalid_descs",
    "tx_invalid_descs",
];

/// Workers (`WorkerStats`).
pub const WORKER: &[Column] = &[
    ("batches", "BATCHES"),
    ("idle_waits", "IDLE WAITS"),
    ("batch_latency.p50_ns", "BATCH P50"),
    ("batch_latency.p99_ns", "P99"),
    ("batch_latency.max_ns", "MAX"),
];
pub const WORKER_RATES: &[Column] = &[
    ("rates.batches_per_second", "BATCH/S"),
    ("rates.busy_loop_ratio", "BUSY"),
];

/// Hops of the inline chain (`HopStats`). The counter columns come from
/// the hop family's declaration in the segment crate
/// (`tapline_segment::hop_counter_fields!`), so a new hop counter with a
/// column needs no line here; the round-trip percentiles (a summary, not a
/// counter) follow them.
pub static HOP: LazyLock<Vec<Column>> = LazyLock::new(|| {
    tapline_segment::counters::HOP
        .columns()
        .map(|(field, header)| (hop_proto_field(field), header.trim_start_matches('>')))
        .chain(HOP_LATENCY.iter().copied())
        .collect()
});
/// The hop columns after the counters.
const HOP_LATENCY: &[Column] = &[
    ("round_trip_latency.p50_ns", "RTT P50"),
    ("round_trip_latency.p99_ns", "RTT P99"),
];

/// The `HopStats` field of a hop counter: its own name, but for the
/// counters by drop reason, whose sum is `dropped_packets`.
fn hop_proto_field(counter: &'static str) -> &'static str {
    match counter {
        "drops" => "dropped_packets",
        other => other,
    }
}
pub const HOP_RATES: &[Column] = &[
    ("rates.to_tool_packets_per_second", "TO PKT/S"),
    ("rates.from_tool_packets_per_second", "FROM PKT/S"),
    ("rates.bypassed_packets_per_second", "BYPASS/S"),
    ("rates.dropped_packets_per_second", "DROP/S"),
];

/// Output groups and their members (`OutputGroupStats`,
/// `OutputMemberStats`). Members have no filter: FILTERED OUT is "-".
pub const OUTPUT: &[Column] = &[
    ("counters.packets", "PACKETS"),
    ("counters.bytes", "BYTES"),
    ("counters.filtered_out_packets", "FILTERED OUT"),
    ("counters.dropped_packets", "DROPS"),
];
pub const OUTPUT_RATES: &[Column] = &[
    ("rates.packets_per_second", "PKT/S"),
    ("rates.bytes_per_second", "B/S"),
    ("rates.dropped_packets_per_second", "DROP/S"),
];
/// The columns of [`OUTPUT`] a member does not have.
pub const OUTPUT_GROUP_ONLY: &[&str] = &["counters.filtered_out_packets"];

/// Recorders (`RecorderStats`).
pub const RECORDER: &[Column] = &[
    ("filter_stage.packets", "ACCEPTED"),
    ("filter_stage.filtered_out_packets", "FILTERED OUT"),
    ("packets_written", "WRITTEN"),
    ("bytes_written", "BYTES WRITTEN"),
    ("files_created", "FILES"),
    ("queue_dropped_packets", "QUEUE DROPS"),
    ("disk_dropped_packets", "DISK DROPS"),
    ("disk_errors", "DISK ERRORS"),
];
pub const RECORDER_RATES: &[Column] = &[
    ("rates.packets_written_per_second", "WRITE PKT/S"),
    ("rates.bytes_written_per_second", "WRITE B/S"),
    ("rates.queue_dropped_packets_per_second", "QDROP/S"),
];

/// Live taps (`TapStats`).
pub const TAP: &[Column] = &[
    ("matched_packets", "MATCHED"),
    ("sent_packets", "SENT"),
    ("lost_packets", "LOST"),
];
pub const TAP_RATES: &[Column] = &[
    ("rates.matched_packets_per_second", "MATCH/S"),
    ("rates.sent_packets_per_second", "SENT/S"),
    ("rates.lost_packets_per_second", "LOST/S"),
];

/// The kernel fallback, per inline port (`FallbackPortStats`).
pub const FALLBACK: &[Column] = &[
    ("forwarded", "FORWARDED"),
    ("dropped", "DROPPED"),
    ("lease_expiries", "LEASE EXPIRIES"),
];

/// The right-aligned headers of `columns` (for [`crate::output::Table`]).
pub fn headers(columns: &[Column]) -> impl Iterator<Item = String> + '_ {
    columns.iter().map(|(_, h)| format!(">{h}"))
}

/// A message as its proto3 JSON, for [`cells`]. A message that cannot be
/// encoded (an enum value this build does not know) shows as "-" cells.
pub fn json<T: Serialize>(msg: &T) -> Value {
    serde_json::to_value(msg).unwrap_or(Value::Null)
}

/// The proto3 JSON name of a proto field name: `p50_ns` -> `p50Ns`.
fn json_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The cells of `columns` for one message (as [`json`] gives it); the
/// fields named in `absent` show "-".
pub fn cells(msg: &Value, columns: &[Column], absent: &[&str]) -> Vec<String> {
    columns
        .iter()
        .map(|(field, _)| {
            if absent.contains(field) {
                "-".to_string()
            } else {
                format_cell(msg, field)
            }
        })
        .collect()
}

/// The value at `path` in `msg`, formatted by the unit its name ends with:
/// `_ns` a latency (shown "-" while its summary counted nothing),
/// `_bytes_per_second` a byte rate, `_per_second` a rate, `_ratio` a
/// percentage, anything else a count as the server sent it. A field that
/// is not there (a message the server left unset) is "-".
pub fn format_cell(msg: &Value, path: &str) -> String {
    let mut parent = msg;
    let mut segments = path.split('.').peekable();
    let mut value = msg;
    while let Some(seg) = segments.next() {
        let Some(v) = value.get(json_name(seg)) else {
            return "-".into();
        };
        if segments.peek().is_some() {
            parent = v;
        }
        value = v;
    }
    let number = || match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    let leaf = path.rsplit('.').next().unwrap_or(path);
    if leaf.ends_with("_ns") {
        let counted = parent
            .get("count")
            .and_then(|c| c.as_str().map(|s| s != "0").or(c.as_u64().map(|n| n > 0)))
            .unwrap_or(true);
        let ns = match value {
            Value::String(s) => s.parse::<u64>().ok(),
            v => v.as_u64(),
        };
        return match ns {
            Some(ns) if counted => nanos(ns),
            _ => "-".into(),
        };
    }
    if leaf == "bytes_per_second" || leaf.ends_with("_bytes_per_second") {
        return number().map_or("-".into(), bytes_rate);
    }
    if leaf.ends_with("_per_second") {
        return number().map_or("-".into(), si);
    }
    if leaf.ends_with("_ratio") {
        return number().map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "-".into(),
    }
}

/// The sum of the u64 fields `fields` of `msg` (missing ones count 0).
pub fn sum(msg: &Value, fields: &[&str]) -> u64 {
    fields
        .iter()
        .filter_map(|f| msg.get(json_name(f)))
        .filter_map(|v| match v {
            Value::String(s) => s.parse::<u64>().ok(),
            v => v.as_u64(),
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_columns_follow_the_segment_declaration() {
        assert_eq!(
            HOP.as_slice(),
            [
                ("to_tool_packets", "TO TOOL"),
                ("from_tool_packets", "FROM TOOL"),
                ("bypassed_packets", "BYPASSED"),
                ("dropped_packets", "DROPS"),
                ("heartbeats_sent", "HB SENT"),
                ("heartbeats_returned", "HB RETURNED"),
                ("heartbeats_lost", "HB LOST"),
                ("round_trip_latency.p50_ns", "RTT P50"),
                ("round_trip_latency.p99_ns", "RTT P99"),
            ]
        );
    }
    use tapline_proto::v1 as pb;

    #[test]
    fn json_names_follow_the_proto3_rule() {
        assert_eq!(json_name("p999_ns"), "p999Ns");
        assert_eq!(json_name("rx_packets"), "rxPackets");
        assert_eq!(json_name("name"), "name");
    }

    #[test]
    fn cells_are_formatted_by_the_unit_in_the_field_name() {
        let h = json(&pb::HopStats {
            to_tool_packets: u64::MAX,
            round_trip_latency: Some(pb::LatencySummary {
                count: 0,
                p50_ns: 5,
                ..Default::default()
            }),
            rates: Some(pb::HopRates {
                to_tool_bytes_per_second: 2_500_000.0,
                to_tool_packets_per_second: 1500.0,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(format_cell(&h, "to_tool_packets"), u64::MAX.to_string());
        // A latency summary that counted nothing shows no latency.
        assert_eq!(format_cell(&h, "round_trip_latency.p50_ns"), "-");
        assert_eq!(format_cell(&h, "rates.to_tool_packets_per_second"), "1.50k");
        assert_eq!(format_cell(&h, "rates.to_tool_bytes_per_second"), "2.5M");
        assert_eq!(format_cell(&h, "round_trip_latency_histogram.count"), "-");
        let w = json(&pb::WorkerStats {
            rates: Some(pb::WorkerRates {
                busy_loop_ratio: 0.25,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(format_cell(&w, "rates.busy_loop_ratio"), "25%");
        let k = json(&pb::KernelXdpCounters {
            rx_dropped: 1,
            rx_ring_full: 2,
            rx_fill_ring_empty: 100,
            ..Default::default()
        });
        assert_eq!(sum(&k, KERNEL_DROPS), 3);
    }

    /// Every column names a field its message has: a renamed proto field
    /// cannot leave a column of dashes behind.
    #[test]
    fn every_column_names_a_field_of_its_message() {
        let full = |v: Value| v;
        let all_set = [
            (
                full(json(&pb::PacketCounters::default())),
                PORT,
                "PacketCounters",
            ),
            (json(&pb::PacketRates::default()), PORT_RATES, "PacketRates"),
            (
                json(&pb::WorkerStats {
                    batch_latency: Some(Default::default()),
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                WORKER,
                "WorkerStats",
            ),
            (
                json(&pb::WorkerStats {
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                WORKER_RATES,
                "WorkerRates",
            ),
            (
                json(&pb::HopStats {
                    round_trip_latency: Some(Default::default()),
                    ..Default::default()
                }),
                HOP.as_slice(),
                "HopStats",
            ),
            (
                json(&pb::HopStats {
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                HOP_RATES,
                "HopRates",
            ),
            (
                json(&pb::OutputGroupStats {
                    counters: Some(Default::default()),
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                OUTPUT,
                "OutputGroupStats",
            ),
            (
                json(&pb::OutputGroupStats {
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                OUTPUT_RATES,
                "OutputRates",
            ),
            (
                json(&pb::RecorderStats {
                    filter_stage: Some(Default::default()),
                    ..Default::default()
                }),
                RECORDER,
                "RecorderStats",
            ),
            (
                json(&pb::RecorderStats {
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                RECORDER_RATES,
                "RecorderRates",
            ),
            (json(&pb::TapStats::default()), TAP, "TapStats"),
            (
                json(&pb::TapStats {
                    rates: Some(Default::default()),
                    ..Default::default()
                }),
                TAP_RATES,
                "TapRates",
            ),
            (
                json(&pb::FallbackPortStats::default()),
                FALLBACK,
                "FallbackPortStats",
            ),
        ];
        for (msg, columns, name) in all_set {
            for (field, header) in columns {
                let mut v = &msg;
                for seg in field.split('.') {
                    v = v
                        .get(json_name(seg))
                        .unwrap_or_else(|| panic!("{name}: no field {field} ({header})"));
                }
            }
        }
        let k = json(&pb::KernelXdpCounters::default());
        for f in KERNEL_DROPS {
            assert!(k.get(json_name(f)).is_some(), "KernelXdpCounters: {f}");
        }
    }
}
