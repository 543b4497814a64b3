//! Prometheus metrics: the text exposition format (version 0.0.4), served
//! on `GET /metrics` over HTTP/1.1 by hyper ([`http`]). The counter
//! families (names, help, labels) come from their declarations in
//! `tapline-segment` ([`tapline_segment::families`]).
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

use tapline_segment::families::{Family, Label, Scope, Value};
use tapline_segment::{
    counters, HopSnapshot, OutputKind, OutputSnapshot, Snapshot, TapSnapshot, DROP_SLOTS,
    HOP_RTT_BOUNDS_NS,
};

use crate::stats::{
    api_mode, drop_reason_name, drops_by_reason, group_members, output_drop_reason_name,
    output_drops_by_reason, recorder_stage,
};

mod http;
pub use http::serve;

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

/// The `le` label of a histogram bound given in nanoseconds.
fn le_seconds(ns: u64) -> String {
    seconds(ns).to_string()
}

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
    render_ports(&mut w, snap);
    render_workers(&mut w, snap);
    render_hops(&mut w, &snap.hops);
    render_outputs(&mut w, snap);
    render_recorders(&mut w, snap);
    render_taps(&mut w, &snap.taps);
    w.out
}

/// One series set of a family: its label values (in the order of the
/// family's labels) and its counters.
struct Row<'a, V> {
    labels: Vec<&'a str>,
    values: &'a V,
}

/// The drop reasons of a drop counter, named, in the order exported.
type Reasons<'a> = &'a dyn Fn(&[u64; DROP_SLOTS]) -> Vec<(String, u64)>;

/// The families of `family`'s counters that describe `scope`, one sample
/// per row (per row and reason for drop counters; per row and label value
/// for consecutive counters sharing a family). A family without rows keeps
/// its HELP and TYPE lines.
fn render_family<V>(
    w: &mut Writer,
    family: &Family<V>,
    scope: Scope,
    labels: &[Label],
    rows: &[Row<'_, V>],
    reasons: Reasons<'_>,
) {
    let metrics: Vec<_> = family
        .fields
        .iter()
        .flat_map(|f| f.metrics.iter().map(move |m| (m, f)))
        .filter(|(m, _)| m.scope == scope || m.scope == Scope::All)
        .collect();
    for run in metrics.chunk_by(|a, b| a.0.name == b.0.name) {
        let (first, _) = run[0];
        w.family(first.name, first.kind.as_str(), first.help);
        for row in rows {
            let base: Vec<(&str, &str)> = labels
                .iter()
                .zip(&row.labels)
                .filter(|(l, v)| !(l.optional && v.is_empty()))
                .map(|(l, v)| (l.name, *v))
                .collect();
            for (metric, field) in run {
                let mut l = base.clone();
                l.extend(metric.label);
                match (field.get)(row.values) {
                    Value::One(n) => w.sample(first.name, &l, n),
                    Value::ByReason(drops) => {
                        for (reason, n) in reasons(drops) {
                            let mut l = l.clone();
                            l.push(("reason", &reason));
                            w.sample(first.name, &l, n);
                        }
                    }
                    Value::Nested => {}
                }
            }
        }
    }
}

/// Every reason this build knows, zero included, named; unknown slots only
/// when they counted.
fn dataplane_reasons(drops: &[u64; DROP_SLOTS]) -> Vec<(String, u64)> {
    drops_by_reason(drops)
        .map(|(i, n)| (drop_reason_name(i), n))
        .collect()
}

/// The port families, per queue: `tapline_port_queue_info`, the port
/// counters, then the kernel's.
fn render_ports(w: &mut Writer, snap: &Snapshot) {
    // Label values of each queue, in slot order (`hop` only on tool ports).
    let queue_ids: Vec<String> = snap
        .queues
        .iter()
        .map(|q| q.info.queue.to_string())
        .collect();
    let labels = |i: usize| {
        let q = &snap.queues[i].info;
        vec![
            q.role.as_str(),
            q.ifname.as_str(),
            queue_ids[i].as_str(),
            q.hop.as_str(),
        ]
    };

    let name = "tapline_port_queue_info";
    w.family(
        name,
        "gauge",
        "Always 1 for each queue of each port; label mode: the XDP attach and bind mode the queue obtained (native-zerocopy, native-copy, generic-copy).",
    );
    for (i, q) in snap.queues.iter().enumerate() {
        let mode = api_mode(&q.info.mode);
        let mut l: Vec<(&str, &str)> = counters::PORT
            .labels
            .iter()
            .zip(labels(i))
            .filter(|(l, v)| !(l.optional && v.is_empty()))
            .map(|(l, v)| (l.name, v))
            .collect();
        l.push(("mode", &mode));
        w.sample(name, &l, 1);
    }

    let ports: Vec<Row<'_, _>> = (0..snap.queues.len())
        .map(|i| Row {
            labels: labels(i),
            values: &snap.queues[i].counts,
        })
        .collect();
    let p = &counters::PORT;
    render_family(w, p, Scope::All, p.labels, &ports, &dataplane_reasons);
    let kernel: Vec<Row<'_, _>> = (0..snap.queues.len())
        .map(|i| Row {
            labels: labels(i),
            values: &snap.queues[i].kernel,
        })
        .collect();
    let k = &counters::KERNEL;
    render_family(w, k, Scope::All, k.labels, &kernel, &dataplane_reasons);
}

/// The worker families: loop counters and the batch time percentiles.
fn render_workers(w: &mut Writer, snap: &Snapshot) {
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
}

/// The chain's hop families (headers included when there are no hops, like
/// the worker families without workers).
fn render_hops(w: &mut Writer, hops: &[HopSnapshot]) {
    let rows: Vec<Row<'_, _>> = hops
        .iter()
        .map(|h| Row {
            labels: vec![h.name.as_str()],
            values: &h.counts,
        })
        .collect();
    let f = &counters::HOP;
    render_family(w, f, Scope::All, f.labels, &rows, &dataplane_reasons);

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

/// Labels of an output group's series.
const GROUP_LABELS: &[Label] = &[Label::new("group")];
/// Labels of an output group member's series.
const MEMBER_LABELS: &[Label] = &[
    Label::new("group"),
    Label::new("member"),
    Label::new("ifname"),
];

/// The output group and member families (headers only without groups).
/// A group's drops are not a family of their own: they are its members'
/// (`sum by (group)` of the member family).
fn render_outputs(w: &mut Writer, snap: &Snapshot) {
    let groups: Vec<&OutputSnapshot> = snap
        .outputs
        .iter()
        .filter(|o| o.info.kind == OutputKind::Group)
        .collect();
    let rows: Vec<Row<'_, _>> = groups
        .iter()
        .map(|g| Row {
            labels: vec![g.info.name.as_str()],
            values: &g.counts,
        })
        .collect();
    let f = &counters::OUTPUT;
    render_family(w, f, Scope::Group, GROUP_LABELS, &rows, &|_| Vec::new());

    // Members group by group, each with the labels of its group.
    let members: Vec<Row<'_, _>> = groups
        .iter()
        .flat_map(|g| {
            group_members(snap, g.slot).map(move |m| Row {
                labels: vec![
                    g.info.name.as_str(),
                    m.info.name.as_str(),
                    m.info.ifname.as_str(),
                ],
                values: &m.counts,
            })
        })
        .collect();
    // The reasons that apply to members, zero included; any other slot
    // only when it counted.
    let reasons = |drops: &[u64; DROP_SLOTS]| {
        output_drops_by_reason(OutputKind::Member, drops)
            .map(|(i, n)| (output_drop_reason_name(i), n))
            .collect()
    };
    render_family(w, f, Scope::Member, MEMBER_LABELS, &members, &reasons);
}

/// The recorder families (headers only without recorders): the filter
/// stage's counters (from its output slot) and the disk side.
fn render_recorders(w: &mut Writer, snap: &Snapshot) {
    let stages: Vec<Row<'_, _>> = snap
        .recorders
        .iter()
        .filter_map(|r| {
            recorder_stage(snap, r.index).map(|stage| Row {
                labels: vec![r.name.as_str()],
                values: &stage.counts,
            })
        })
        .collect();
    let r = &counters::RECORDER;
    let o = &counters::OUTPUT;
    render_family(w, o, Scope::RecorderStage, r.labels, &stages, &|_| {
        Vec::new()
    });
    let rows: Vec<Row<'_, _>> = snap
        .recorders
        .iter()
        .map(|rec| Row {
            labels: vec![rec.name.as_str()],
            values: &rec.counts,
        })
        .collect();
    render_family(w, r, Scope::All, r.labels, &rows, &|_| Vec::new());
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
    let rows: Vec<Row<'_, _>> = taps
        .iter()
        .zip(&ids)
        .map(|(t, id)| Row {
            labels: vec![id.as_str(), t.point.as_str()],
            values: &t.counts,
        })
        .collect();
    let f = &counters::TAP;
    render_family(w, f, Scope::All, f.labels, &rows, &|_| Vec::new());
}

#[cfg(test)]
mod tests;
