//! The hop counter family, declared once: [`hop_counter_fields!`] lists
//! the counters of [`crate::HopCounters`] (in layout order) with their
//! Prometheus families and CLI columns, and hands the list to a macro: to
//! [`crate::counter_family!`] here (the block, its values, `clear`, the
//! [`crate::counters::HOP`] description), and to the sidecar's proto
//! mapping (`v1::HopStats`).
//!
//! Adding a hop counter: a line here, its field in `HopStats`
//! (`proto/.../stats.proto`), and its increment in the dataplane.

/// Calls `$callback! { $prefix... <the hop counters> }` (see the module
/// documentation). Each counter reads
/// `name: Type = metrics [Metric, ...], column ">HEADER" | none;`.
#[macro_export]
macro_rules! hop_counter_fields {
    ($callback:ident ! { $($prefix:tt)* }) => {
        $callback! {
            $($prefix)*
            /// Frames sent to the tool (both directions together).
            to_tool_packets: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_to_tool_packets_total",
                "Packets the dataplane sent to the hop's tool (both directions together).",
            )], column ">TO TOOL";
            to_tool_bytes: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_to_tool_bytes_total",
                "Bytes of the packets sent to the hop's tool.",
            )], column none;
            /// Frames received back from the tool (heartbeats excluded).
            from_tool_packets: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_from_tool_packets_total",
                "Packets the dataplane received back from the hop's tool (heartbeats excluded).",
            )], column ">FROM TOOL";
            from_tool_bytes: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_from_tool_bytes_total",
                "Bytes of the packets received back from the hop's tool.",
            )], column none;
            /// Frames that went around the tool while the hop was bypassed.
            bypassed_packets: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_bypassed_packets_total",
                "Packets that went around the hop's tool while the hop was bypassed (automatically or manually).",
            )], column ">BYPASSED";
            bypassed_bytes: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_bypassed_bytes_total",
                "Bytes of the packets that went around the hop's tool.",
            )], column none;
            /// Indexed by `DropReason as usize`.
            drops: [$crate::Counter; $crate::DROP_SLOTS] = metrics [$crate::families::Metric::counter(
                "tapline_hop_dropped_packets_total",
                "Packets of the hop that the dataplane dropped, by reason (hop_down: the hop is down and its failure action is drop; tx_ring_full: a TX ring toward or back from the tool was full; heartbeat_invalid: a heartbeat frame came back with a wrong tag or hop id).",
            )], column ">DROPS";
            heartbeats_sent: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_heartbeats_sent_total",
                "Heartbeat frames sent through the hop's tool.",
            )], column ">HB SENT";
            /// Came back within their deadline.
            heartbeats_returned: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_heartbeat_results_total",
                "How the hop's heartbeat frames ended: result=\"returned\" within their deadline, \"late\" after it, \"lost\" never. tapline_hop_heartbeats_sent_total = the sum over result + the ones in flight.",
            ).labelled("result", "returned")], column ">HB RETURNED";
            /// Came back after their deadline.
            heartbeats_late: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_heartbeat_results_total",
                "How the hop's heartbeat frames ended: result=\"returned\" within their deadline, \"late\" after it, \"lost\" never. tapline_hop_heartbeats_sent_total = the sum over result + the ones in flight.",
            ).labelled("result", "late")], column none;
            /// Never came back.
            heartbeats_lost: $crate::Counter = metrics [$crate::families::Metric::counter(
                "tapline_hop_heartbeat_results_total",
                "How the hop's heartbeat frames ended: result=\"returned\" within their deadline, \"late\" after it, \"lost\" never. tapline_hop_heartbeats_sent_total = the sum over result + the ones in flight.",
            ).labelled("result", "lost")], column ">HB LOST";
        }
    };
}
