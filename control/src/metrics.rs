//! Prometheus metrics: the text exposition format (version 0.0.4), served
//! on `GET /metrics` by a minimal HTTP/1.1 responder.
//!
//! Counters are exported per queue with the labels `port` (the role),
//! `ifname` and `queue`, plus `hop` on tool ports (an absent label and an
//! empty one are the same to Prometheus, so the family has one label set);
//! sum over `queue` for a port's totals. The XDP mode a queue obtained is an
//! attribute, not an identity: it is the `mode` label of
//! `tapline_port_queue_info` (value 1), so a mode change does not start new
//! counter series (join with `* on (port, ifname, queue) group_left(mode)`).
//! `tapline_build_info` names the versions of both processes. Chain hops have their own
//! families, labelled `hop`, with the heartbeat round-trip time as a
//! histogram. Passive output groups are labelled `group`, their members
//! `group`, `member` and `ifname`; recorders `recorder`; live taps `tap_id`
//! and `point`, with `tapline_taps_active` counting them. Families without
//! series (no hops, no groups, no taps) keep their HELP and TYPE lines.
//! While the dataplane is not live only `tapline_dataplane_up 0` is
//! exported: no stale counters (Prometheus sees the series end, and a
//! restarted dataplane starts them again from zero, which `rate()` treats as
//! a counter reset).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tapline_segment::{
    HopSnapshot, OutputKind, OutputSnapshot, QueueSnapshot, RecorderSnapshot, Snapshot,
    TapSnapshot, HOP_RTT_BOUNDS_NS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::state::{stopping, Monitor};
use crate::stats::{
    api_mode, drop_reason_name, drops_by_reason, group_members, output_drop_reason_name,
    output_drops_by_reason, recorder_stage,
};
use tapline_segment::custody::Keeper;

/// `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family at a time, HELP and TYPE first.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes backslash and line feed.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn label_refs<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// An instant in nanoseconds since the Unix epoch, in seconds. Whole
/// seconds and the fraction are converted apart: today's ~1.8e18 ns have
/// more digits than an f64 holds, and dividing them at once would blur the
/// fraction (1800000050.25 s would print as 1800000050.2499998).
fn unix_seconds(ns: u64) -> f64 {
    const NS_PER_S: u64 = 1_000_000_000;
    (ns / NS_PER_S) as f64 + seconds(ns % NS_PER_S)
}

/// A per-queue counter family: its name, help, and how to read it.
type QueueCounter = (&'static str, &'static str, fn(&QueueSnapshot) -> u64);

/// A per-hop counter family: its name, help, and how to read it.
type HopCounter = (&'static str, &'static str, fn(&HopSnapshot) -> u64);

const HOP_COUNTERS: [HopCounter; 6] = [
    (
        "tapline_hop_to_tool_packets_total",
        "Packets the dataplane sent to the hop's tool (both directions together).",
        |h| h.to_tool_packets,
    ),
    (
        "tapline_hop_to_tool_bytes_total",
        "Bytes of the packets sent to the hop's tool.",
        |h| h.to_tool_bytes,
    ),
    (
        "tapline_hop_from_tool_packets_total",
        "Packets the dataplane received back from the hop's tool (heartbeats excluded).",
        |h| h.from_tool_packets,
    ),
    (
        "tapline_hop_from_tool_bytes_total",
        "Bytes of the packets received back from the hop's tool.",
        |h| h.from_tool_bytes,
    ),
    (
        "tapline_hop_bypassed_packets_total",
        "Packets that went around the hop's tool while the hop was bypassed (automatically or manually).",
        |h| h.bypassed_packets,
    ),
    (
        "tapline_hop_bypassed_bytes_total",
        "Bytes of the packets that went around the hop's tool.",
        |h| h.bypassed_bytes,
    ),
];

/// A per-output-slot counter family (groups, members, recorder stages).
type OutputCounter = (&'static str, &'static str, fn(&OutputSnapshot) -> u64);

const GROUP_COUNTERS: [OutputCounter; 3] = [
    (
        "tapline_output_group_packets_total",
        "Packets of the passive port that the output group's filter accepted, each counted once whatever member it was sent to (delivered to a member or dropped there).",
        |o| o.packets,
    ),
    (
        "tapline_output_group_bytes_total",
        "Bytes of the packets the output group's filter accepted (whole packets, before the snap length).",
        |o| o.bytes,
    ),
    (
        "tapline_output_group_filtered_out_packets_total",
        "Packets of the passive port that the output group's filter rejected.",
        |o| o.filtered_out,
    ),
];

const MEMBER_COUNTERS: [OutputCounter; 2] = [
    (
        "tapline_output_member_packets_total",
        "Packets handed to the output group member's TX ring.",
        |o| o.packets,
    ),
    (
        "tapline_output_member_bytes_total",
        "Bytes of the packets handed to the output group member (after the group's snap length).",
        |o| o.bytes,
    ),
];

const RECORDER_STAGE_COUNTERS: [OutputCounter; 3] = [
    (
        "tapline_recorder_accepted_packets_total",
        "Packets of the passive port that the recorder's filter accepted and its queue took (the ones its queue could not take are in tapline_recorder_queue_dropped_packets_total).",
        |o| o.packets,
    ),
    (
        "tapline_recorder_accepted_bytes_total",
        "Bytes of the packets the recorder's queue took (whole packets, before the snap length).",
        |o| o.bytes,
    ),
    (
        "tapline_recorder_filtered_out_packets_total",
        "Packets of the passive port that the recorder's filter rejected.",
        |o| o.filtered_out,
    ),
];

/// A per-recorder counter family (the recorder's disk side).
type RecorderCounter = (&'static str, &'static str, fn(&RecorderSnapshot) -> u64);

const RECORDER_COUNTERS: [RecorderCounter; 10] = [
    (
        "tapline_recorder_files_created_total",
        "Files the recorder created.",
        |r| r.files_created,
    ),
    (
        "tapline_recorder_files_completed_total",
        "Files the recorder completed (closed and renamed to their final name).",
        |r| r.files_completed,
    ),
    (
        "tapline_recorder_files_migrated_total",
        "Completed files the recorder moved to its bulk directory.",
        |r| r.files_migrated,
    ),
    (
        "tapline_recorder_files_deleted_total",
        "Files the recorder's retention deleted.",
        |r| r.files_deleted,
    ),
    (
        "tapline_recorder_bytes_written_total",
        "Bytes the recorder wrote to files (pcap headers included).",
        |r| r.bytes_written,
    ),
    (
        "tapline_recorder_packets_written_total",
        "Packets the recorder wrote to files.",
        |r| r.packets_written,
    ),
    (
        "tapline_recorder_disk_errors_total",
        "Failed file operations of the recorder (create, write, sync, rename, migrate, delete); the last error's text is in the API (RecorderStats.last_disk_error) and taplinectl stats.",
        |r| r.disk_errors,
    ),
    (
        "tapline_recorder_queue_dropped_packets_total",
        "Packets the recorder's filter accepted that its queue could not take: the disk is slower than the traffic.",
        |r| r.queue_dropped_packets,
    ),
    (
        "tapline_recorder_queue_dropped_bytes_total",
        "Bytes of the packets dropped at the recorder's queue.",
        |r| r.queue_dropped_bytes,
    ),
    (
        "tapline_recorder_disk_dropped_packets_total",
        "Packets the recorder lost because its directory failed (dropped while recording was suspended by a disk error).",
        |r| r.disk_dropped_packets,
    ),
];

/// A per-tap counter family.
type TapCounter = (&'static str, &'static str, fn(&TapSnapshot) -> u64);

const TAP_COUNTERS: [TapCounter; 3] = [
    (
        "tapline_tap_matched_packets_total",
        "Packets at the live tap's point that passed its filter.",
        |t| t.matched,
    ),
    (
        "tapline_tap_sent_packets_total",
        "Packets the live tap sent to its client.",
        |t| t.sent,
    ),
    (
        "tapline_tap_lost_packets_total",
        "Matching packets the live tap discarded because its client (or the stream to it) was slow.",
        |t| t.lost,
    ),
];

/// The `le` label of a histogram bound given in nanoseconds.
fn le_seconds(ns: u64) -> String {
    seconds(ns).to_string()
}

const PORT_COUNTERS: [QueueCounter; 4] = [
    (
        "tapline_port_rx_packets_total",
        "Packets received on the port's queue.",
        |q| q.rx_packets,
    ),
    (
        "tapline_port_rx_bytes_total",
        "Bytes of the packets received on the port's queue (Ethernet header included, FCS excluded).",
        |q| q.rx_bytes,
    ),
    (
        "tapline_port_tx_packets_total",
        "Packets transmitted on the port's queue.",
        |q| q.tx_packets,
    ),
    (
        "tapline_port_tx_bytes_total",
        "Bytes of the packets transmitted on the port's queue.",
        |q| q.tx_bytes,
    ),
];

const KERNEL_COUNTERS: [QueueCounter; 6] = [
    (
        "tapline_xdp_kernel_rx_dropped_total",
        "Packets the kernel dropped on the AF_XDP socket for reasons other than the ones below (XDP_STATISTICS rx_dropped).",
        |q| q.kernel_rx_dropped,
    ),
    (
        "tapline_xdp_kernel_rx_invalid_descs_total",
        "Invalid descriptors the kernel found on the fill or RX side (XDP_STATISTICS rx_invalid_descs).",
        |q| q.kernel_rx_invalid_descs,
    ),
    (
        "tapline_xdp_kernel_tx_invalid_descs_total",
        "Invalid descriptors the kernel found on the TX ring (XDP_STATISTICS tx_invalid_descs).",
        |q| q.kernel_tx_invalid_descs,
    ),
    (
        "tapline_xdp_kernel_rx_ring_full_total",
        "Packets the kernel dropped because the socket's RX ring was full: the worker is too slow (XDP_STATISTICS rx_ring_full).",
        |q| q.kernel_rx_ring_full,
    ),
    (
        "tapline_xdp_kernel_rx_fill_ring_empty_total",
        "Times the fill ring was empty when the kernel needed a buffer (XDP_STATISTICS rx_fill_ring_empty_descs).",
        |q| q.kernel_rx_fill_ring_empty,
    ),
    (
        "tapline_xdp_kernel_tx_ring_empty_total",
        "Times the kernel found the TX ring empty when woken to transmit (XDP_STATISTICS tx_ring_empty_descs).",
        |q| q.kernel_tx_ring_empty,
    ),
];

/// Renders the exposition. `live` is the dataplane's snapshot while it is
/// live, `None` otherwise.
pub fn render(live: Option<&Snapshot>) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "tapline_build_info",
        "gauge",
        "Always 1; labels: the version of tapline-control and of the running dataplane (empty while none is live).",
    );
    w.sample(
        "tapline_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "dataplane_version",
                live.map_or("", |s| s.dataplane_version.as_str()),
            ),
        ],
        1,
    );
    w.family(
        "tapline_dataplane_up",
        "gauge",
        "1 while the dataplane runs with a fresh heartbeat, else 0 (and no other tapline_ series are exported).",
    );
    w.sample("tapline_dataplane_up", &[], u8::from(live.is_some()));
    let Some(snap) = live else {
        return w.out;
    };

    w.family(
        "tapline_dataplane_start_time_seconds",
        "gauge",
        "When the running dataplane process started, in seconds since the Unix epoch.",
    );
    w.sample(
        "tapline_dataplane_start_time_seconds",
        &[],
        unix_seconds(snap.started_unix_ns),
    );

    // Labels of each queue, in slot order; `hop` only on tool ports.
    let queue_labels: Vec<Vec<(&str, String)>> = snap
        .queues
        .iter()
        .map(|q| {
            let mut l = vec![
                ("port", q.info.role.clone()),
                ("ifname", q.info.ifname.clone()),
                ("queue", q.info.queue.to_string()),
            ];
            if !q.info.hop.is_empty() {
                l.push(("hop", q.info.hop.clone()));
            }
            l
        })
        .collect();

    let name = "tapline_port_queue_info";
    w.family(
        name,
        "gauge",
        "Always 1 for each queue of each port; label mode: the XDP attach and bind mode the queue obtained (native-zerocopy, native-copy, generic-copy).",
    );
    for (q, l) in snap.queues.iter().zip(&queue_labels) {
        let mode = api_mode(&q.info.mode);
        let mut labels = label_refs(l);
        labels.push(("mode", &mode));
        w.sample(name, &labels, 1);
    }

    for (name, help, get) in PORT_COUNTERS {
        w.family(name, "counter", help);
        for (q, l) in snap.queues.iter().zip(&queue_labels) {
            w.sample(name, &label_refs(l), get(q));
        }
    }

    let name = "tapline_port_dropped_packets_total";
    w.family(
        name,
        "counter",
        "Packets received on the port's queue that the dataplane dropped, by reason (tx_ring_full: the egress port's TX ring was full; hop_down: the hop is down and its failure action is drop; heartbeat_from_wire: a heartbeat-shaped frame arrived on inline-1 or inline-2; heartbeat_invalid: a heartbeat frame came back from a tool with a wrong tag or hop id).",
    );
    for (q, l) in snap.queues.iter().zip(&queue_labels) {
        // Every reason this build knows, zero included; unknown slots only
        // when they counted.
        for (i, n) in drops_by_reason(&q.drops) {
            let reason = drop_reason_name(i);
            let mut labels = label_refs(l);
            labels.push(("reason", &reason));
            w.sample(name, &labels, n);
        }
    }

    for (name, help, get) in KERNEL_COUNTERS {
        w.family(name, "counter", help);
        for (q, l) in snap.queues.iter().zip(&queue_labels) {
            w.sample(name, &label_refs(l), get(q));
        }
    }

    let ids: Vec<String> = (0..snap.workers.len()).map(|i| i.to_string()).collect();

    let name = "tapline_worker_batches_total";
    w.family(
        name,
        "counter",
        "Polls of the worker that moved at least one packet.",
    );
    for (wk, id) in snap.workers.iter().zip(&ids) {
        w.sample(name, &[("worker", id)], wk.batches);
    }
    let name = "tapline_worker_loops_total";
    w.family(
        name,
        "counter",
        "Iterations of the worker's loop: kind=\"busy\" found work, kind=\"idle\" found none.",
    );
    for (wk, id) in snap.workers.iter().zip(&ids) {
        w.sample(name, &[("worker", id), ("kind", "busy")], wk.busy_loops);
        w.sample(name, &[("worker", id), ("kind", "idle")], wk.idle_loops);
    }
    let name = "tapline_worker_idle_waits_total";
    w.family(
        name,
        "counter",
        "Times the worker blocked in poll(2) waiting for work (idle backoff).",
    );
    for (wk, id) in snap.workers.iter().zip(&ids) {
        w.sample(name, &[("worker", id)], wk.idle_waits);
    }

    // Percentiles over the dataplane's latest window (not cumulative), hence
    // gauges, labelled `percentile` (a `quantile` label is reserved for
    // summaries); a window without batches exports nothing.
    let name = "tapline_worker_batch_duration_seconds";
    w.family(
        name,
        "gauge",
        "Time to process one batch, percentiles (label percentile: 0.5, 0.9, 0.99, 0.999) over the dataplane's latest window.",
    );
    let windows: Vec<_> = snap
        .workers
        .iter()
        .zip(&ids)
        .filter_map(|(wk, id)| wk.latency.filter(|l| l.count > 0).map(|l| (l, id)))
        .collect();
    for (l, id) in &windows {
        for (q, ns) in [
            ("0.5", l.p50_ns),
            ("0.9", l.p90_ns),
            ("0.99", l.p99_ns),
            ("0.999", l.p999_ns),
        ] {
            w.sample(name, &[("worker", id), ("percentile", q)], seconds(ns));
        }
    }
    let name = "tapline_worker_batch_duration_seconds_max";
    w.family(
        name,
        "gauge",
        "Longest batch of the dataplane's latest window.",
    );
    for (l, id) in &windows {
        w.sample(name, &[("worker", id)], seconds(l.max_ns));
    }

    render_hops(&mut w, &snap.hops);
    render_outputs(&mut w, snap);
    render_recorders(&mut w, snap);
    render_taps(&mut w, &snap.taps);
    w.out
}

/// The chain's hop families (headers included when there are no hops, like
/// the worker families without workers).
fn render_hops(w: &mut Writer, hops: &[HopSnapshot]) {
    for (name, help, get) in HOP_COUNTERS {
        w.family(name, "counter", help);
        for h in hops {
            w.sample(name, &[("hop", &h.name)], get(h));
        }
    }

    let name = "tapline_hop_dropped_packets_total";
    w.family(
        name,
        "counter",
        "Packets of the hop that the dataplane dropped, by reason (hop_down: the hop is down and its failure action is drop; tx_ring_full: a TX ring toward or back from the tool was full; heartbeat_invalid: a heartbeat frame came back with a wrong tag or hop id).",
    );
    for h in hops {
        for (i, n) in drops_by_reason(&h.drops) {
            let reason = drop_reason_name(i);
            w.sample(name, &[("hop", &h.name), ("reason", &reason)], n);
        }
    }

    let name = "tapline_hop_heartbeats_sent_total";
    w.family(
        name,
        "counter",
        "Heartbeat frames sent through the hop's tool.",
    );
    for h in hops {
        w.sample(name, &[("hop", &h.name)], h.heartbeats_sent);
    }
    // Outcomes only, so that sum by (hop) counts every ended heartbeat
    // once: sent = sum(results) + the ones in flight.
    let name = "tapline_hop_heartbeat_results_total";
    w.family(
        name,
        "counter",
        "How the hop's heartbeat frames ended: result=\"returned\" within their deadline, \"late\" after it, \"lost\" never. tapline_hop_heartbeats_sent_total = the sum over result + the ones in flight.",
    );
    for h in hops {
        for (result, n) in [
            ("returned", h.heartbeats_returned),
            ("late", h.heartbeats_late),
            ("lost", h.heartbeats_lost),
        ] {
            w.sample(name, &[("hop", &h.name), ("result", result)], n);
        }
    }

    // Cumulative since the hop (or the dataplane) started: a true
    // Prometheus histogram. A hop whose histogram could not be read
    // consistently this time (the judge kept it busy) is left out of this
    // scrape rather than exported torn.
    let name = "tapline_hop_round_trip_seconds";
    w.family(
        name,
        "histogram",
        "Round-trip time of heartbeat frames through the hop's tool, since the hop was added.",
    );
    let bucket = format!("{name}_bucket");
    let les: Vec<String> = HOP_RTT_BOUNDS_NS.iter().map(|&b| le_seconds(b)).collect();
    for h in hops {
        let Some(hist) = &h.round_trip_histogram else {
            continue;
        };
        for (le, n) in les.iter().zip(hist.cumulative()) {
            w.sample(&bucket, &[("hop", &h.name), ("le", le)], n);
        }
        w.sample(&bucket, &[("hop", &h.name), ("le", "+Inf")], hist.count);
        w.sample(
            &format!("{name}_sum"),
            &[("hop", &h.name)],
            seconds(hist.sum_ns),
        );
        w.sample(&format!("{name}_count"), &[("hop", &h.name)], hist.count);
    }
}

/// The output group and member families (headers only without groups).
/// A group's drops are not a family of their own: they are its members'
/// (`sum by (group)` of the member family).
fn render_outputs(w: &mut Writer, snap: &Snapshot) {
    let groups: Vec<&OutputSnapshot> = snap
        .outputs
        .iter()
        .filter(|o| o.info.kind == OutputKind::Group)
        .collect();
    for (name, help, get) in GROUP_COUNTERS {
        w.family(name, "counter", help);
        for g in &groups {
            w.sample(name, &[("group", &g.info.name)], get(g));
        }
    }

    // Members group by group, each with the labels of its group.
    let members: Vec<(&OutputSnapshot, [(&str, &str); 3])> = groups
        .iter()
        .flat_map(|g| {
            group_members(snap, g.slot).map(move |m| {
                (
                    m,
                    [
                        ("group", g.info.name.as_str()),
                        ("member", m.info.name.as_str()),
                        ("ifname", m.info.ifname.as_str()),
                    ],
                )
            })
        })
        .collect();
    for (name, help, get) in MEMBER_COUNTERS {
        w.family(name, "counter", help);
        for (m, labels) in &members {
            w.sample(name, labels, get(m));
        }
    }
    let name = "tapline_output_member_dropped_packets_total";
    w.family(
        name,
        "counter",
        "Packets the output group picked for the member that it could not take, by reason (tx_ring_full: the member's TX ring was full or its share of buffers in flight, the member is slower than the capture; member_down: the member's link was down; tx_error: the kernel refused to transmit on it).",
    );
    for (m, labels) in &members {
        // The reasons that apply to members, zero included; any other slot
        // only when it counted.
        for (i, n) in output_drops_by_reason(OutputKind::Member, &m.drops) {
            let reason = output_drop_reason_name(i);
            let mut l = labels.to_vec();
            l.push(("reason", &reason));
            w.sample(name, &l, n);
        }
    }
}

/// The recorder families (headers only without recorders): the filter
/// stage's counters (from its output slot) and the disk side.
fn render_recorders(w: &mut Writer, snap: &Snapshot) {
    for (name, help, get) in RECORDER_STAGE_COUNTERS {
        w.family(name, "counter", help);
        for r in &snap.recorders {
            if let Some(stage) = recorder_stage(snap, r.index) {
                w.sample(name, &[("recorder", &r.name)], get(stage));
            }
        }
    }
    for (name, help, get) in RECORDER_COUNTERS {
        w.family(name, "counter", help);
        for r in &snap.recorders {
            w.sample(name, &[("recorder", &r.name)], get(r));
        }
    }
    let name = "tapline_recorder_last_disk_error_timestamp_seconds";
    w.family(
        name,
        "gauge",
        "When the recorder's last disk error happened, in seconds since the Unix epoch; no series for a recorder without errors.",
    );
    for r in snap.recorders.iter().filter(|r| r.last_error_unix_ns != 0) {
        w.sample(
            name,
            &[("recorder", &r.name)],
            unix_seconds(r.last_error_unix_ns),
        );
    }
}

/// The live tap families: a gauge of running taps, and per tap counters
/// (series come and go with the taps).
fn render_taps(w: &mut Writer, taps: &[TapSnapshot]) {
    let name = "tapline_taps_active";
    w.family(name, "gauge", "Live taps (Admin.Tap) running now.");
    w.sample(name, &[], taps.len());
    let mut taps: Vec<&TapSnapshot> = taps.iter().collect();
    taps.sort_by_key(|t| t.id);
    let ids: Vec<String> = taps.iter().map(|t| t.id.to_string()).collect();
    for (name, help, get) in TAP_COUNTERS {
        w.family(name, "counter", help);
        for (t, id) in taps.iter().zip(&ids) {
            w.sample(name, &[("tap_id", id), ("point", &t.point)], get(t));
        }
    }
}

/// Largest request head read before answering 431.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client has this long to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// The response to a request head (`None` while it is incomplete).
fn respond(
    head: &[u8],
    monitor: &Monitor,
    keeper: Option<&Keeper>,
) -> Option<(u16, &'static str, String, bool)> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&head[..end]);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Some((400, "Bad Request", "bad request line\n".into(), false));
    };
    if !version.starts_with("HTTP/1.") {
        return Some((400, "Bad Request", "HTTP/1.x only\n".into(), false));
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Some((405, "Method Not Allowed", "use GET\n".into(), head_only));
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Some((
            404,
            "Not Found",
            "not found; metrics are at /metrics\n".into(),
            head_only,
        ));
    }
    let live = monitor.sample().ok();
    let mut body = render(live.as_ref().map(|s| &s.snapshot));
    // The kernel fallback counts while the dataplane is down too.
    if let Some(k) = keeper {
        body.push_str(&crate::fallback::render_metrics(&k.status()));
    }
    Some((200, "OK", body, head_only))
}

async fn handle(
    mut stream: TcpStream,
    monitor: Monitor,
    keeper: Option<Arc<Keeper>>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            if let Some(a) = respond(&head, &monitor, keeper.as_deref()) {
                return Ok(a);
            }
            if head.len() >= MAX_REQUEST_BYTES {
                return Ok((431, "Request Header Fields Too Large", String::new(), false));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let (code, reason, body, head_only) = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(e),
        Err(_) => (408, "Request Timeout", String::new(), false),
    };
    let content_type = if code == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Serves `/metrics` on `listener` until `shutdown` turns true. One request
/// per connection (`Connection: close`), which is what Prometheus expects
/// of a simple exporter.
pub async fn serve(
    listener: TcpListener,
    monitor: Monitor,
    keeper: Option<Arc<Keeper>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = stopping(&mut shutdown) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping(&mut shutdown) => return,
        };
        let monitor = monitor.clone();
        let keeper = keeper.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, monitor, keeper).await {
                debug!(%peer, error = %e, "metrics: connection ended with an error");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{chain_snapshot, outputs_snapshot, snapshot};
    use std::collections::BTreeSet;

    /// Metric names of the sample lines, and every family's HELP and TYPE.
    fn check_format(text: &str) -> BTreeSet<String> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeSet::new();
        let mut histograms = BTreeSet::new();
        let mut names = BTreeSet::new();
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let name = it.next().unwrap().to_string();
                let kind = it.next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                } else {
                    assert!(!name.ends_with("_total"), "{name}");
                }
                if kind == "histogram" {
                    histograms.insert(name.clone());
                }
                assert!(helped.contains(&name), "TYPE before HELP: {line}");
                typed.insert(name);
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let name: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // A histogram's samples carry a suffix of its family name.
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| histograms.contains(*f))
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| name.clone());
                assert!(typed.contains(&family), "sample without TYPE: {line}");
                assert!(name.starts_with("tapline_"), "{line}");
                let (id, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                // One sample per series: a name and label set appear once.
                assert!(series.insert(id.to_string()), "duplicate series: {line}");
                names.insert(name);
            }
        }
        assert_eq!(helped, typed);
        names
    }

    #[test]
    fn down_exports_only_up_zero() {
        let text = render(None);
        assert_eq!(
            check_format(&text),
            BTreeSet::from([
                "tapline_build_info".to_string(),
                "tapline_dataplane_up".to_string()
            ])
        );
        assert!(text.lines().any(|l| l
            == format!(
                "tapline_build_info{{version=\"{}\",dataplane_version=\"\"}} 1",
                env!("CARGO_PKG_VERSION")
            )));
        assert!(
            text.lines().any(|l| l == "tapline_dataplane_up 0"),
            "{text}"
        );
    }

    #[test]
    fn live_exports_every_family_with_labels() {
        let text = render(Some(&snapshot(1, 10)));
        let names = check_format(&text);
        for family in [
            "tapline_dataplane_up",
            "tapline_dataplane_start_time_seconds",
            "tapline_port_rx_packets_total",
            "tapline_port_rx_bytes_total",
            "tapline_port_tx_packets_total",
            "tapline_port_tx_bytes_total",
            "tapline_port_dropped_packets_total",
            "tapline_xdp_kernel_rx_dropped_total",
            "tapline_xdp_kernel_rx_invalid_descs_total",
            "tapline_xdp_kernel_tx_invalid_descs_total",
            "tapline_xdp_kernel_rx_ring_full_total",
            "tapline_xdp_kernel_rx_fill_ring_empty_total",
            "tapline_xdp_kernel_tx_ring_empty_total",
            "tapline_worker_batches_total",
            "tapline_worker_loops_total",
            "tapline_worker_idle_waits_total",
            "tapline_worker_batch_duration_seconds",
            "tapline_worker_batch_duration_seconds_max",
        ] {
            assert!(names.contains(family), "{family} missing:\n{text}");
        }
        // Without hops the hop families have headers only, and so have the
        // output, recorder and tap families without them.
        assert!(text.contains("# TYPE tapline_hop_round_trip_seconds histogram"));
        for family in [
            "tapline_output_group_packets_total",
            "tapline_output_member_dropped_packets_total",
            "tapline_recorder_accepted_packets_total",
            "tapline_recorder_disk_errors_total",
            "tapline_recorder_last_disk_error_timestamp_seconds",
            "tapline_tap_matched_packets_total",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
        for prefix in [
            "tapline_hop_",
            "tapline_output_",
            "tapline_recorder_",
            "tapline_tap_",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(prefix)),
                "{prefix}: {text}"
            );
        }
        assert!(text.lines().any(|l| l == "tapline_taps_active 0"), "{text}");
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("tapline_dataplane_up 1"));
        assert!(
            has("tapline_dataplane_start_time_seconds 1800000000.5"),
            "{text}"
        );
        assert!(has(
            "tapline_port_rx_packets_total{port=\"inline-1\",ifname=\"i1\",queue=\"1\"} 30"
        ));
        assert!(has(
            "tapline_port_rx_bytes_total{port=\"passive-1\",ifname=\"p1\",queue=\"0\"} 5000"
        ));
        assert!(has(
            "tapline_port_dropped_packets_total{port=\"inline-2\",ifname=\"i2\",queue=\"0\",reason=\"tx_ring_full\"} 2"
        ));
        assert!(has(
            "tapline_xdp_kernel_rx_ring_full_total{port=\"inline-1\",ifname=\"i1\",queue=\"0\"} 4"
        ));
        assert!(has("tapline_worker_batches_total{worker=\"1\"} 20"));
        assert!(has(
            "tapline_worker_loops_total{worker=\"0\",kind=\"busy\"} 10"
        ));
        assert!(has(
            "tapline_worker_loops_total{worker=\"0\",kind=\"idle\"} 30"
        ));
        assert!(has("tapline_worker_idle_waits_total{worker=\"0\"} 5"));
        assert!(
            has("tapline_worker_batch_duration_seconds{worker=\"0\",percentile=\"0.5\"} 0.0000015"),
            "{text}"
        );
        assert!(has(
            "tapline_worker_batch_duration_seconds{worker=\"1\",percentile=\"0.999\"} 0.000009"
        ));
        assert!(has(
            "tapline_worker_batch_duration_seconds_max{worker=\"1\"} 0.000012"
        ));
        // One sample per queue for each port counter.
        let rx_lines = text
            .lines()
            .filter(|l| l.starts_with("tapline_port_rx_packets_total{"))
            .count();
        assert_eq!(rx_lines, 5);
    }

    #[test]
    fn empty_latency_windows_and_odd_labels() {
        let mut s = snapshot(1, 10);
        s.workers[0].latency = None;
        s.workers[1].latency.as_mut().unwrap().count = 0;
        s.queues[0].info.ifname = "a\"b\\c".into();
        let text = render(Some(&s));
        check_format(&text);
        assert!(!text
            .lines()
            .any(|l| l.starts_with("tapline_worker_batch_duration_seconds{")));
        assert!(text.contains("ifname=\"a\\\"b\\\\c\""), "{text}");
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn http_paths_and_methods() {
        use crate::state::{DataplaneStatus, Observation};
        let (m, _tx) = Monitor::manual(
            Observation {
                status: DataplaneStatus::Stopped,
                reader: None,
                snapshot: None,
            },
            Duration::from_secs(1),
        );
        assert!(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", &m, None).is_none());
        let (code, _, body, head_only) =
            respond(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &m, None).unwrap();
        assert_eq!((code, head_only), (200, false));
        assert!(body.contains("tapline_dataplane_up 0"));
        assert!(
            respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", &m, None)
                .unwrap()
                .3
        );
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", &m, None).unwrap().0, 404);
        assert_eq!(
            respond(b"GET /metricsx HTTP/1.1\r\n\r\n", &m, None)
                .unwrap()
                .0,
            404
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m, None)
                .unwrap()
                .0,
            405
        );
        assert_eq!(respond(b"garbage\r\n\r\n", &m, None).unwrap().0, 400);
        assert_eq!(
            respond(b"GET /metrics SPDY/3\r\n\r\n", &m, None).unwrap().0,
            400
        );
    }

    #[test]
    fn hops_and_tool_ports_are_exported() {
        let text = render(Some(&chain_snapshot(1, 10)));
        let names = check_format(&text);
        for family in [
            "tapline_hop_to_tool_packets_total",
            "tapline_hop_to_tool_bytes_total",
            "tapline_hop_from_tool_packets_total",
            "tapline_hop_from_tool_bytes_total",
            "tapline_hop_bypassed_packets_total",
            "tapline_hop_bypassed_bytes_total",
            "tapline_hop_dropped_packets_total",
            "tapline_hop_heartbeats_sent_total",
            "tapline_hop_heartbeat_results_total",
            "tapline_hop_round_trip_seconds_bucket",
            "tapline_hop_round_trip_seconds_sum",
            "tapline_hop_round_trip_seconds_count",
        ] {
            assert!(names.contains(family), "{family} missing:\n{text}");
        }
        let has = |line: &str| text.lines().any(|l| l == line);
        for line in [
            "tapline_hop_to_tool_packets_total{hop=\"ids\"} 100",
            "tapline_hop_to_tool_bytes_total{hop=\"waf\"} 20000",
            "tapline_hop_from_tool_packets_total{hop=\"ids\"} 90",
            "tapline_hop_from_tool_bytes_total{hop=\"ids\"} 9000",
            "tapline_hop_bypassed_packets_total{hop=\"waf\"} 20",
            "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"hop_down\"} 10",
            "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"heartbeat_invalid\"} 2",
            "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"tx_ring_full\"} 0",
            "tapline_hop_heartbeats_sent_total{hop=\"ids\"} 40",
            "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"returned\"} 30",
            "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"late\"} 10",
            "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"lost\"} 1",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.00001\"} 10",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.00005\"} 10",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.0001\"} 20",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.001\"} 20",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"1\"} 20",
            "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"+Inf\"} 21",
            "tapline_hop_round_trip_seconds_sum{hop=\"ids\"} 2.0006",
            "tapline_hop_round_trip_seconds_count{hop=\"ids\"} 21",
            "tapline_port_rx_packets_total{port=\"tool-a\",ifname=\"t1a\",queue=\"0\",hop=\"ids\"} 70",
            "tapline_port_dropped_packets_total{port=\"tool-b\",ifname=\"t2b\",queue=\"0\",hop=\"waf\",reason=\"hop_down\"} 0",
            // Other ports keep their labels.
            "tapline_port_rx_packets_total{port=\"inline-1\",ifname=\"i1\",queue=\"1\"} 30",
        ] {
            assert!(has(line), "{line} missing:\n{text}");
        }
        // Buckets: every bound and +Inf, in increasing order, per hop.
        let ids_buckets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tapline_hop_round_trip_seconds_bucket{hop=\"ids\""))
            .collect();
        assert_eq!(ids_buckets.len(), HOP_RTT_BOUNDS_NS.len() + 1);
        let counts: Vec<u64> = ids_buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        // A hop whose histogram could not be read is left out of it only.
        let mut s = chain_snapshot(1, 10);
        s.hops[1].round_trip_histogram = None;
        let text = render(Some(&s));
        check_format(&text);
        assert!(!text.contains("_bucket{hop=\"waf\""));
        assert!(text.contains("tapline_hop_to_tool_packets_total{hop=\"waf\"} 200"));
    }

    #[test]
    fn histogram_bounds_are_plain_seconds() {
        let les: Vec<String> = HOP_RTT_BOUNDS_NS.iter().map(|&b| le_seconds(b)).collect();
        assert_eq!(
            les,
            [
                "0.00001", "0.00002", "0.00005", "0.0001", "0.0002", "0.0005", "0.001", "0.002",
                "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"
            ]
        );
    }

    #[test]
    fn outputs_recorders_and_taps_are_exported() {
        let text = render(Some(&outputs_snapshot(1, 10)));
        let names = check_format(&text);
        for family in [
            "tapline_output_group_packets_total",
            "tapline_output_group_bytes_total",
            "tapline_output_group_filtered_out_packets_total",
            "tapline_output_member_packets_total",
            "tapline_output_member_bytes_total",
            "tapline_output_member_dropped_packets_total",
            "tapline_recorder_accepted_packets_total",
            "tapline_recorder_accepted_bytes_total",
            "tapline_recorder_filtered_out_packets_total",
            "tapline_recorder_files_created_total",
            "tapline_recorder_files_completed_total",
            "tapline_recorder_files_migrated_total",
            "tapline_recorder_files_deleted_total",
            "tapline_recorder_bytes_written_total",
            "tapline_recorder_packets_written_total",
            "tapline_recorder_disk_errors_total",
            "tapline_recorder_queue_dropped_packets_total",
            "tapline_recorder_queue_dropped_bytes_total",
            "tapline_recorder_disk_dropped_packets_total",
            "tapline_recorder_last_disk_error_timestamp_seconds",
            "tapline_taps_active",
            "tapline_tap_matched_packets_total",
            "tapline_tap_sent_packets_total",
            "tapline_tap_lost_packets_total",
        ] {
            assert!(names.contains(family), "{family} missing:\n{text}");
        }
        let has = |line: &str| text.lines().any(|l| l == line);
        for line in [
            "tapline_output_group_packets_total{group=\"ids\"} 100",
            "tapline_output_group_bytes_total{group=\"zeek\"} 5000",
            "tapline_output_group_filtered_out_packets_total{group=\"ids\"} 20",
            "tapline_output_member_packets_total{group=\"ids\",member=\"o1\",ifname=\"o1\"} 50",
            "tapline_output_member_bytes_total{group=\"zeek\",member=\"o3\",ifname=\"o3\"} 5000",
            "tapline_output_member_dropped_packets_total{group=\"ids\",member=\"o1\",ifname=\"o1\",reason=\"tx_ring_full\"} 10",
            "tapline_output_member_dropped_packets_total{group=\"ids\",member=\"o2\",ifname=\"o2\",reason=\"member_down\"} 10",
            "tapline_output_member_dropped_packets_total{group=\"zeek\",member=\"o3\",ifname=\"o3\",reason=\"tx_error\"} 0",
            "tapline_recorder_accepted_packets_total{recorder=\"disk\"} 40",
            "tapline_recorder_accepted_bytes_total{recorder=\"disk\"} 4000",
            "tapline_recorder_filtered_out_packets_total{recorder=\"disk\"} 80",
            "tapline_recorder_files_created_total{recorder=\"disk\"} 30",
            "tapline_recorder_files_completed_total{recorder=\"disk\"} 20",
            "tapline_recorder_files_migrated_total{recorder=\"disk\"} 10",
            "tapline_recorder_files_deleted_total{recorder=\"disk\"} 10",
            "tapline_recorder_bytes_written_total{recorder=\"disk\"} 10000",
            "tapline_recorder_packets_written_total{recorder=\"disk\"} 40",
            "tapline_recorder_disk_errors_total{recorder=\"disk\"} 2",
            "tapline_recorder_queue_dropped_packets_total{recorder=\"disk\"} 10",
            "tapline_recorder_queue_dropped_bytes_total{recorder=\"disk\"} 1000",
            "tapline_recorder_disk_dropped_packets_total{recorder=\"disk\"} 20",
            "tapline_recorder_last_disk_error_timestamp_seconds{recorder=\"disk\"} 1800000050.25",
            "tapline_taps_active 2",
            "tapline_tap_matched_packets_total{tap_id=\"9\",point=\"passive-1 rx\"} 109",
            "tapline_tap_sent_packets_total{tap_id=\"4\",point=\"ids/a both\"} 90",
            "tapline_tap_lost_packets_total{tap_id=\"9\",point=\"passive-1 rx\"} 10",
        ] {
            assert!(has(line), "{line} missing:\n{text}");
        }
        // Members: the reasons that apply to them, three per member.
        let member_drops = text
            .lines()
            .filter(|l| l.starts_with("tapline_output_member_dropped_packets_total{"))
            .count();
        assert_eq!(member_drops, 3 * 3);
        assert!(!text.contains("reason=\"queue_full\""), "{text}");
        // Groups and recorder stages are not members; members are not groups.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("tapline_output_group_packets_total{"))
                .count(),
            2
        );
        assert!(!text.contains("member=\"disk\""), "{text}");
        // Taps in id order.
        let taps: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tapline_tap_sent_packets_total{"))
            .collect();
        assert!(taps[0].contains("tap_id=\"4\"") && taps[1].contains("tap_id=\"9\""));

        // A recorder without errors has no error time; one whose stage was
        // not read has its disk side only.
        let mut s = outputs_snapshot(1, 10);
        s.recorders[0].last_error_unix_ns = 0;
        s.outputs.pop();
        let text = render(Some(&s));
        check_format(&text);
        assert!(!text.contains("tapline_recorder_last_disk_error_timestamp_seconds{"));
        assert!(!text.contains("tapline_recorder_accepted_packets_total{"));
        assert!(text.contains("tapline_recorder_packets_written_total{recorder=\"disk\"} 40"));
    }

    /// `promtool check metrics` (Prometheus's own linter, Debian package
    /// `prometheus`) finds nothing in any sample exposition; and a mode
    /// change leaves every counter series as it was.
    #[test]
    fn promtool_finds_nothing_and_modes_are_attributes() {
        let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
        let snaps = [
            snapshot(1, 10),
            chain_snapshot(1, 10),
            outputs_snapshot(1, 10),
        ];
        // The page as served with the link keeper: the fallback families
        // follow the dataplane's.
        let keeper = crate::fallback::render_metrics(&tapline_segment::custody::KeeperStatus {
            holding: true,
            ports: vec![tapline_segment::custody::PortRecord {
                role: "inline-1".into(),
                ifname: "i1".into(),
                ifindex: 3,
                attach: "generic".into(),
            }],
            dataplane_connected: false,
            kernel_queues: 1,
            queues: 1,
            action: "forward".into(),
            counters: vec![tapline_segment::PortFallbackCounters {
                forwarded: 7,
                dropped: 0,
                lease_expiries: 2,
            }],
            takeovers: 3,
        });
        for (i, s) in snaps.iter().enumerate() {
            let text = render(Some(s)) + &keeper;
            let mut child = std::process::Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("running {promtool}: {e}; install Debian's prometheus package (.ci/run does)")
                });
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "snapshot {i}: promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Same counters, another mode: only the _info series differ.
        let a = snapshot(1, 10);
        let mut b = a.clone();
        for q in &mut b.queues {
            q.info.mode = "generic-copy".into();
        }
        let counters = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("tapline_port_queue_info"))
                .map(str::to_string)
                .collect()
        };
        let (ta, tb) = (render(Some(&a)), render(Some(&b)));
        assert_eq!(counters(&ta), counters(&tb));
        assert_ne!(ta, tb);
        assert!(ta.contains("tapline_port_queue_info{port=\"inline-1\",ifname=\"i1\",queue=\"1\",mode=\"native-zerocopy\"} 1"), "{ta}");
    }
}
