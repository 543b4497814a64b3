//! From the segment's plain snapshot to `tapline.v1.Stats`: queues grouped
//! into ports, totals, drops by reason, worker counters, chain hops, passive
//! output groups with their members, recorders, live taps, and rates between
//! two samples of the same dataplane run.

use std::collections::BTreeMap;
use std::time::Duration;

use tapline_dataplane::stats::{DropReason, OutputDropReason};
use tapline_dataplane::xdp::shm::{
    FallbackSnapshot, HistogramValues, HopSnapshot, OutputKind, OutputSnapshot, QueueSnapshot,
    RecorderSnapshot, Snapshot, TapSnapshot, WorkerSnapshot, DROP_SLOTS, HOP_RTT_BOUNDS_NS,
};
use tapline_proto::v1;
use tonic::Status;

use crate::state::Sample;

/// Port roles in `GetInfo` order: the ports of `[interfaces]` first, then
/// the tool ports (by hop, in chain order).
pub const ROLE_ORDER: [&str; 5] = ["passive-1", "inline-1", "inline-2", "tool-a", "tool-b"];
/// Every role a port can have (`StatsSelector.roles` accepts these).
pub const KNOWN_ROLES: [&str; 5] = ["passive-1", "inline-1", "inline-2", "tool-a", "tool-b"];

/// `WatchStatsRequest.interval_ms` when the request leaves it 0.
pub const DEFAULT_WATCH_INTERVAL_MS: u32 = 1000;
/// Smallest watch interval.
pub const MIN_WATCH_INTERVAL_MS: u32 = 10;
/// Largest watch interval.
pub const MAX_WATCH_INTERVAL_MS: u32 = 60_000;

/// Validates `WatchStatsRequest.interval_ms`: 0 takes the default; out of
/// range is INVALID_ARGUMENT (an interval the client did not ask for would
/// silently change what its rates mean).
pub fn watch_interval(interval_ms: u32) -> Result<Duration, Status> {
    match interval_ms {
        0 => Ok(Duration::from_millis(DEFAULT_WATCH_INTERVAL_MS.into())),
        ms if (MIN_WATCH_INTERVAL_MS..=MAX_WATCH_INTERVAL_MS).contains(&ms) => {
            Ok(Duration::from_millis(ms.into()))
        }
        ms => Err(Status::invalid_argument(format!(
            "interval_ms: {ms} is out of range; use 0 (the default, {DEFAULT_WATCH_INTERVAL_MS} ms) or {MIN_WATCH_INTERVAL_MS} to {MAX_WATCH_INTERVAL_MS}"
        ))),
    }
}

/// A validated `StatsSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Empty: every port.
    pub roles: Vec<String>,
    pub omit_queues: bool,
}

impl Selector {
    /// Validates a request's selector (`field` names it in messages).
    pub fn from_proto(field: &str, sel: Option<&v1::StatsSelector>) -> Result<Selector, Status> {
        let Some(sel) = sel else {
            return Ok(Selector::default());
        };
        tapline_proto::limits::check_selector(field, sel)
            .map_err(|v| Status::invalid_argument(v.to_string()))?;
        for (i, role) in sel.roles.iter().enumerate() {
            if !KNOWN_ROLES.contains(&role.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "{field}.roles[{i}]: {} is not a port role; use one of {}",
                    tapline_proto::limits::quote(role),
                    KNOWN_ROLES.join(", ")
                )));
            }
        }
        Ok(Selector {
            roles: sel.roles.clone(),
            omit_queues: sel.omit_queues,
        })
    }

    fn wants(&self, role: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == role)
    }
}

/// The dataplane writes modes as `<attach>-<bind>` with the bind mode
/// spelled "zero-copy"; the API (and `xdp.mode` in the configuration)
/// spells it "zerocopy".
pub fn api_mode(segment_mode: &str) -> String {
    segment_mode.replace("zero-copy", "zerocopy")
}

/// How capable a mode is; the port's mode is its least capable queue's.
fn mode_rank(mode: &str) -> u8 {
    match mode {
        "native-zerocopy" => 3,
        "native-copy" => 2,
        "generic-copy" => 1,
        _ => 0,
    }
}

/// The least capable of `modes` (already in API spelling).
pub fn least_capable<'a>(modes: impl IntoIterator<Item = &'a str>) -> String {
    modes
        .into_iter()
        .min_by_key(|m| mode_rank(m))
        .unwrap_or_default()
        .to_string()
}

/// The worker servicing each queue slot of `snap`, as the dataplane
/// recorded it in the slot. `None` when there are no workers.
pub fn queue_workers(snap: &Snapshot) -> Vec<Option<u32>> {
    let n = snap.workers.len() as u32;
    snap.queues
        .iter()
        .map(|q| (q.info.worker < n).then_some(q.info.worker))
        .collect()
}

/// One port of a snapshot: the slots of one (role, interface, hop), by
/// queue id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port<'a> {
    pub role: &'a str,
    pub ifname: &'a str,
    /// The hop of a tool port; empty for other ports.
    pub hop: &'a str,
    /// Indexes into `Snapshot::queues`.
    pub slots: Vec<usize>,
}

/// The ports of a snapshot: passive-1, inline-1, inline-2, the tool ports
/// hop by hop in chain order (tool-a before tool-b), then any other role in
/// order of appearance.
pub fn ports(snap: &Snapshot) -> Vec<Port<'_>> {
    let mut out: Vec<Port<'_>> = Vec::new();
    for (i, q) in snap.queues.iter().enumerate() {
        let (role, ifname, hop) = (
            q.info.role.as_str(),
            q.info.ifname.as_str(),
            q.info.hop.as_str(),
        );
        match out
            .iter_mut()
            .find(|p| p.role == role && p.ifname == ifname && p.hop == hop)
        {
            Some(p) => p.slots.push(i),
            None => out.push(Port {
                role,
                ifname,
                hop,
                slots: vec![i],
            }),
        }
    }
    let role_rank = |role: &str| {
        ROLE_ORDER
            .iter()
            .position(|r| *r == role)
            .unwrap_or(ROLE_ORDER.len())
    };
    // Tool ports of a hop that is not (or no longer) in the chain go after
    // the ones of the chain's hops.
    let hop_rank = |hop: &str| {
        snap.hops
            .iter()
            .find(|h| h.name == hop)
            .map_or(u64::MAX, |h| u64::from(h.position))
    };
    let is_tool = |role: &str| role == "tool-a" || role == "tool-b";
    // Stable: other roles keep their order of appearance.
    out.sort_by_key(|p| {
        if is_tool(p.role) {
            (role_rank("tool-a"), hop_rank(p.hop), role_rank(p.role))
        } else {
            (role_rank(p.role), 0, 0)
        }
    });
    for p in &mut out {
        p.slots.sort_by_key(|&i| snap.queues[i].info.queue);
    }
    out
}

/// Name of drop slot `i`: the dataplane's reason name, or `unknown_<i>` for
/// a slot this build has no name for.
pub fn drop_reason_name(i: usize) -> String {
    DropReason::ALL
        .iter()
        .find(|r| **r as usize == i)
        .map_or_else(|| format!("unknown_{i}"), |r| r.name().to_string())
}

/// Increase of a counter from `before` to `now`. Within one dataplane run a
/// counter only goes back when its slot was cleared and handed out again
/// (a tool port or hop removed and added back): it then counted `now` since
/// the reset. Never negative.
fn increase(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Drop slots reported by name: every reason this build knows (zero
/// included, so the series exist), and unknown slots that counted.
pub fn drops_by_reason(drops: &[u64; DROP_SLOTS]) -> impl Iterator<Item = (usize, u64)> + '_ {
    drops
        .iter()
        .enumerate()
        .filter(|&(i, &n)| i < DropReason::COUNT || n > 0)
        .map(|(i, &n)| (i, n))
}

/// Name of output drop slot `i` (an `OutputDropReason`), or `unknown_<i>`.
pub fn output_drop_reason_name(i: usize) -> String {
    OutputDropReason::ALL
        .iter()
        .find(|r| **r as usize == i)
        .map_or_else(|| format!("unknown_{i}"), |r| r.name().to_string())
}

/// The drop reasons that can happen to an output slot of `kind`: a member
/// (and so its group) cannot have a full recorder queue, a recorder stage
/// has no TX ring.
fn output_reasons(kind: OutputKind) -> &'static [OutputDropReason] {
    match kind {
        OutputKind::Group | OutputKind::Member => &[
            OutputDropReason::TxRingFull,
            OutputDropReason::MemberDown,
            OutputDropReason::TxError,
        ],
        OutputKind::Recorder => &[OutputDropReason::QueueFull, OutputDropReason::DiskError],
    }
}

/// Output drop slots reported by name for a slot of `kind`: the reasons
/// that apply to it (zero included, so the series exist), then any other
/// slot that counted (a reason this build does not expect there, or does
/// not know).
pub fn output_drops_by_reason(
    kind: OutputKind,
    drops: &[u64; DROP_SLOTS],
) -> impl Iterator<Item = (usize, u64)> + '_ {
    let known = output_reasons(kind);
    let applies = move |i: usize| known.iter().any(|r| *r as usize == i);
    known
        .iter()
        .map(|r| (*r as usize, drops[*r as usize]))
        .chain(
            drops
                .iter()
                .enumerate()
                .filter(move |&(i, &n)| n > 0 && !applies(i))
                .map(|(i, &n)| (i, n)),
        )
}

fn sum(values: &[u64]) -> u64 {
    values.iter().fold(0u64, |a, &d| a.wrapping_add(d))
}

/// Plain sums of queue counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    drops: [u64; DROP_SLOTS],
    kernel: v1::KernelXdpCounters,
}

impl Totals {
    fn add(&mut self, q: &QueueSnapshot) {
        self.rx_packets = self.rx_packets.wrapping_add(q.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(q.rx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(q.tx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(q.tx_bytes);
        for (t, d) in self.drops.iter_mut().zip(q.drops) {
            *t = t.wrapping_add(d);
        }
        let k = &mut self.kernel;
        k.rx_dropped = k.rx_dropped.wrapping_add(q.kernel_rx_dropped);
        k.rx_invalid_descs = k.rx_invalid_descs.wrapping_add(q.kernel_rx_invalid_descs);
        k.tx_invalid_descs = k.tx_invalid_descs.wrapping_add(q.kernel_tx_invalid_descs);
        k.rx_ring_full = k.rx_ring_full.wrapping_add(q.kernel_rx_ring_full);
        k.rx_fill_ring_empty = k
            .rx_fill_ring_empty
            .wrapping_add(q.kernel_rx_fill_ring_empty);
        k.tx_ring_empty = k.tx_ring_empty.wrapping_add(q.kernel_tx_ring_empty);
    }

    fn of<'a>(queues: impl IntoIterator<Item = &'a QueueSnapshot>) -> Totals {
        let mut t = Totals::default();
        for q in queues {
            t.add(q);
        }
        t
    }

    fn counters(&self) -> v1::PacketCounters {
        let by_reason: BTreeMap<String, u64> = drops_by_reason(&self.drops)
            .map(|(i, n)| (drop_reason_name(i), n))
            .collect();
        v1::PacketCounters {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            dropped_packets: sum(&self.drops),
            dropped_packets_by_reason: by_reason,
        }
    }

    /// What each packet counter of queue `cur` counted since `prev` (see
    /// [`increase`]).
    fn increase(cur: &QueueSnapshot, prev: &QueueSnapshot) -> Totals {
        Totals {
            rx_packets: increase(cur.rx_packets, prev.rx_packets),
            rx_bytes: increase(cur.rx_bytes, prev.rx_bytes),
            tx_packets: increase(cur.tx_packets, prev.tx_packets),
            tx_bytes: increase(cur.tx_bytes, prev.tx_bytes),
            drops: std::array::from_fn(|i| increase(cur.drops[i], prev.drops[i])),
            kernel: v1::KernelXdpCounters::default(),
        }
    }

    /// The increases of several queues, summed.
    fn increase_of<'a>(
        pairs: impl IntoIterator<Item = (&'a QueueSnapshot, &'a QueueSnapshot)>,
    ) -> Totals {
        let mut t = Totals::default();
        for (cur, prev) in pairs {
            let d = Totals::increase(cur, prev);
            t.rx_packets = t.rx_packets.wrapping_add(d.rx_packets);
            t.rx_bytes = t.rx_bytes.wrapping_add(d.rx_bytes);
            t.tx_packets = t.tx_packets.wrapping_add(d.tx_packets);
            t.tx_bytes = t.tx_bytes.wrapping_add(d.tx_bytes);
            for (a, b) in t.drops.iter_mut().zip(d.drops) {
                *a = a.wrapping_add(b);
            }
        }
        t
    }

    /// Per-second rates of increases (from [`Totals::increase_of`]) over
    /// `secs`. The drop reasons are the ones `cur` reports.
    fn rates(&self, cur: &Totals, secs: f64) -> v1::PacketRates {
        let r = |n: u64| n as f64 / secs;
        let by_reason: BTreeMap<String, f64> = drops_by_reason(&cur.drops)
            .map(|(i, _)| (drop_reason_name(i), r(self.drops[i])))
            .collect();
        v1::PacketRates {
            rx_packets_per_second: r(self.rx_packets),
            rx_bytes_per_second: r(self.rx_bytes),
            tx_packets_per_second: r(self.tx_packets),
            tx_bytes_per_second: r(self.tx_bytes),
            dropped_packets_per_second: r(sum(&self.drops)),
            dropped_packets_per_second_by_reason: by_reason,
        }
    }
}

/// The window over which rates can be computed from `prev` to `cur`: `None`
/// without a previous sample, when the dataplane restarted in between (the
/// epoch changed: counters went back to zero), or when no time passed.
pub fn rate_window(prev: Option<&Sample>, cur: &Sample) -> Option<Duration> {
    let prev = prev?;
    if prev.snapshot.epoch != cur.snapshot.epoch {
        return None;
    }
    let window = cur.at.checked_duration_since(prev.at)?;
    (!window.is_zero()).then_some(window)
}

fn timestamp(unix_ns: u64) -> tapline_proto::Timestamp {
    tapline_proto::Timestamp {
        seconds: (unix_ns / 1_000_000_000) as i64,
        nanos: (unix_ns % 1_000_000_000) as i32,
    }
}

/// A `google.protobuf.Timestamp` from nanoseconds since the Unix epoch;
/// `None` for 0 (never set).
pub fn timestamp_opt(unix_ns: u64) -> Option<tapline_proto::Timestamp> {
    (unix_ns != 0).then(|| timestamp(unix_ns))
}

fn latency(l: &tapline_dataplane::xdp::shm::LatencyValues) -> v1::LatencySummary {
    v1::LatencySummary {
        count: l.count,
        window_ns: l.window_ns,
        p50_ns: l.p50_ns,
        p90_ns: l.p90_ns,
        p99_ns: l.p99_ns,
        p999_ns: l.p999_ns,
        max_ns: l.max_ns,
    }
}

fn worker_rates(cur: &WorkerSnapshot, prev: &WorkerSnapshot, secs: f64) -> v1::WorkerRates {
    let d = |now: u64, before: u64| now.saturating_sub(before);
    let busy = d(cur.busy_loops, prev.busy_loops);
    let loops = busy + d(cur.idle_loops, prev.idle_loops);
    v1::WorkerRates {
        batches_per_second: d(cur.batches, prev.batches) as f64 / secs,
        busy_loop_ratio: if loops == 0 {
            0.0
        } else {
            busy as f64 / loops as f64
        },
        idle_waits_per_second: d(cur.idle_waits, prev.idle_waits) as f64 / secs,
    }
}

/// A histogram in the API's shape: cumulative counts per finite bound, the
/// +Inf bucket being `count`.
fn histogram(h: &HistogramValues) -> v1::LatencyHistogram {
    v1::LatencyHistogram {
        count: h.count,
        sum_ns: h.sum_ns,
        buckets: HOP_RTT_BOUNDS_NS
            .iter()
            .zip(h.cumulative())
            .map(|(&upper_bound_ns, count)| v1::LatencyBucket {
                upper_bound_ns,
                count,
            })
            .collect(),
    }
}

/// Per-second rates of hop `cur` since `prev` (the same hop, by name).
fn hop_rates(cur: &HopSnapshot, prev: &HopSnapshot, secs: f64) -> v1::HopRates {
    let r = |now: u64, before: u64| increase(now, before) as f64 / secs;
    let dropped: u64 = cur
        .drops
        .iter()
        .zip(&prev.drops)
        .fold(0u64, |a, (&n, &b)| a.wrapping_add(increase(n, b)));
    v1::HopRates {
        to_tool_packets_per_second: r(cur.to_tool_packets, prev.to_tool_packets),
        to_tool_bytes_per_second: r(cur.to_tool_bytes, prev.to_tool_bytes),
        from_tool_packets_per_second: r(cur.from_tool_packets, prev.from_tool_packets),
        from_tool_bytes_per_second: r(cur.from_tool_bytes, prev.from_tool_bytes),
        bypassed_packets_per_second: r(cur.bypassed_packets, prev.bypassed_packets),
        dropped_packets_per_second: dropped as f64 / secs,
        heartbeats_lost_per_second: r(cur.heartbeats_lost, prev.heartbeats_lost),
    }
}

fn hop_stats(h: &HopSnapshot, prev: Option<&HopSnapshot>, secs: f64) -> v1::HopStats {
    v1::HopStats {
        name: h.name.clone(),
        to_tool_packets: h.to_tool_packets,
        to_tool_bytes: h.to_tool_bytes,
        from_tool_packets: h.from_tool_packets,
        from_tool_bytes: h.from_tool_bytes,
        bypassed_packets: h.bypassed_packets,
        bypassed_bytes: h.bypassed_bytes,
        dropped_packets: sum(&h.drops),
        dropped_packets_by_reason: drops_by_reason(&h.drops)
            .map(|(i, n)| (drop_reason_name(i), n))
            .collect(),
        heartbeats_sent: h.heartbeats_sent,
        heartbeats_returned: h.heartbeats_returned,
        heartbeats_late: h.heartbeats_late,
        heartbeats_lost: h.heartbeats_lost,
        round_trip_latency: h.round_trip.as_ref().map(latency),
        round_trip_latency_histogram: h.round_trip_histogram.as_ref().map(histogram),
        rates: prev.map(|p| hop_rates(h, p, secs)),
    }
}

/// Plain sums of output slot counters (a group with its members' drops, or
/// one slot), or their increases between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutputTotals {
    kind: OutputKind,
    packets: u64,
    bytes: u64,
    filtered_out: u64,
    drops: [u64; DROP_SLOTS],
}

impl OutputTotals {
    fn of(o: &OutputSnapshot) -> OutputTotals {
        OutputTotals {
            kind: o.info.kind,
            packets: o.packets,
            bytes: o.bytes,
            filtered_out: o.filtered_out,
            drops: o.drops,
        }
    }

    /// What each counter of `cur` counted since `prev` (see [`increase`]).
    fn increase(cur: &OutputSnapshot, prev: &OutputSnapshot) -> OutputTotals {
        OutputTotals {
            kind: cur.info.kind,
            packets: increase(cur.packets, prev.packets),
            bytes: increase(cur.bytes, prev.bytes),
            filtered_out: increase(cur.filtered_out, prev.filtered_out),
            drops: std::array::from_fn(|i| increase(cur.drops[i], prev.drops[i])),
        }
    }

    /// Adds `other`'s drops (a member's, to its group's).
    fn add_drops(&mut self, other: &OutputTotals) {
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a = a.wrapping_add(b);
        }
    }

    fn counters(&self) -> v1::OutputCounters {
        v1::OutputCounters {
            packets: self.packets,
            bytes: self.bytes,
            filtered_out_packets: self.filtered_out,
            dropped_packets: sum(&self.drops),
            dropped_packets_by_reason: output_drops_by_reason(self.kind, &self.drops)
                .map(|(i, n)| (output_drop_reason_name(i), n))
                .collect(),
        }
    }

    /// Per-second rates of increases (from [`OutputTotals::increase`]).
    fn rates(&self, secs: f64) -> v1::OutputRates {
        let r = |n: u64| n as f64 / secs;
        v1::OutputRates {
            packets_per_second: r(self.packets),
            bytes_per_second: r(self.bytes),
            filtered_out_packets_per_second: r(self.filtered_out),
            dropped_packets_per_second: r(sum(&self.drops)),
        }
    }
}

/// The same output slot in the previous sample: same slot, kind and name
/// (slots are described once per run, so this only fails across runs,
/// which [`rate_window`] already excludes, or for a slot the reader could
/// not read last time).
fn prev_output<'a>(prev: Option<&'a Snapshot>, o: &OutputSnapshot) -> Option<&'a OutputSnapshot> {
    prev?
        .outputs
        .iter()
        .find(|p| p.slot == o.slot && p.info.kind == o.info.kind && p.info.name == o.info.name)
}

/// The members of the group in slot `group`, in configuration (slot)
/// order.
pub fn group_members(snap: &Snapshot, group: usize) -> impl Iterator<Item = &OutputSnapshot> {
    snap.outputs
        .iter()
        .filter(move |o| o.info.kind == OutputKind::Member && o.info.parent as usize == group)
}

/// The filter stage of recorder block `index`, if the segment describes
/// one.
pub fn recorder_stage(snap: &Snapshot, index: usize) -> Option<&OutputSnapshot> {
    snap.outputs
        .iter()
        .find(|o| o.info.kind == OutputKind::Recorder && o.info.parent as usize == index)
}

/// The output groups of `snap`, in configuration order, members nested.
/// A group's drops are its members' (plus any the group slot counted
/// itself); its rates need the group and every member in `prev`.
fn output_groups(snap: &Snapshot, prev: Option<&Snapshot>, secs: f64) -> Vec<v1::OutputGroupStats> {
    snap.outputs
        .iter()
        .filter(|o| o.info.kind == OutputKind::Group)
        .map(|g| {
            let members: Vec<&OutputSnapshot> = group_members(snap, g.slot).collect();
            let mut totals = OutputTotals::of(g);
            for m in &members {
                totals.add_drops(&OutputTotals::of(m));
            }
            let rates = prev_output(prev, g).and_then(|pg| {
                let mut inc = OutputTotals::increase(g, pg);
                for m in &members {
                    inc.add_drops(&OutputTotals::increase(m, prev_output(prev, m)?));
                }
                Some(inc.rates(secs))
            });
            v1::OutputGroupStats {
                name: g.info.name.clone(),
                filter: g.info.filter.clone(),
                snap_length_bytes: g.info.snaplen,
                counters: Some(totals.counters()),
                rates,
                members: members
                    .iter()
                    .map(|m| v1::OutputMemberStats {
                        name: m.info.name.clone(),
                        ifname: m.info.ifname.clone(),
                        recorder: String::new(),
                        counters: Some(OutputTotals::of(m).counters()),
                        rates: prev_output(prev, m)
                            .map(|pm| OutputTotals::increase(m, pm).rates(secs)),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Per-second rates of recorder `cur` since `prev` (the same recorder, by
/// name).
fn recorder_rates(cur: &RecorderSnapshot, prev: &RecorderSnapshot, secs: f64) -> v1::RecorderRates {
    let r = |now: u64, before: u64| increase(now, before) as f64 / secs;
    v1::RecorderRates {
        bytes_written_per_second: r(cur.bytes_written, prev.bytes_written),
        packets_written_per_second: r(cur.packets_written, prev.packets_written),
        queue_dropped_packets_per_second: r(cur.queue_dropped_packets, prev.queue_dropped_packets),
        disk_dropped_packets_per_second: r(cur.disk_dropped_packets, prev.disk_dropped_packets),
    }
}

/// The recorders of `snap`, in configuration order, each with its filter
/// stage.
fn recorders(snap: &Snapshot, prev: Option<&Snapshot>, secs: f64) -> Vec<v1::RecorderStats> {
    snap.recorders
        .iter()
        .map(|r| {
            let stage = recorder_stage(snap, r.index);
            let prev_rec = prev.and_then(|p| p.recorders.iter().find(|o| o.name == r.name));
            v1::RecorderStats {
                name: r.name.clone(),
                directory: r.directory.clone(),
                current_file: r.current_file.clone(),
                filter: stage.map(|s| s.info.filter.clone()).unwrap_or_default(),
                snap_length_bytes: stage.map_or(0, |s| s.info.snaplen),
                files_created: r.files_created,
                files_completed: r.files_completed,
                files_migrated: r.files_migrated,
                files_deleted: r.files_deleted,
                bytes_written: r.bytes_written,
                packets_written: r.packets_written,
                queue_dropped_packets: r.queue_dropped_packets,
                queue_dropped_bytes: r.queue_dropped_bytes,
                disk_dropped_packets: r.disk_dropped_packets,
                disk_errors: r.disk_errors,
                last_disk_error: r.last_error.clone(),
                last_disk_error_at: timestamp_opt(r.last_error_unix_ns),
                rates: prev_rec.map(|p| recorder_rates(r, p, secs)),
                filter_stage: stage.map(|s| OutputTotals::of(s).counters()),
                filter_stage_rates: stage.and_then(|s| {
                    prev_output(prev, s).map(|p| OutputTotals::increase(s, p).rates(secs))
                }),
            }
        })
        .collect()
}

/// The live taps of `snap`, by id, with rates against the same tap (by id)
/// in `prev`.
fn taps(snap: &Snapshot, prev: Option<&Snapshot>, secs: f64) -> Vec<v1::TapStats> {
    let mut taps: Vec<&TapSnapshot> = snap.taps.iter().collect();
    taps.sort_by_key(|t| t.id);
    taps.into_iter()
        .map(|t| {
            let r = |now: u64, before: u64| increase(now, before) as f64 / secs;
            v1::TapStats {
                id: t.id,
                point: t.point.clone(),
                filter: t.filter.clone(),
                started_at: timestamp_opt(t.started_unix_ns),
                matched_packets: t.matched,
                sent_packets: t.sent,
                lost_packets: t.lost,
                rates: prev
                    .and_then(|p| p.taps.iter().find(|o| o.id == t.id))
                    .map(|p| v1::TapRates {
                        matched_packets_per_second: r(t.matched, p.matched),
                        sent_packets_per_second: r(t.sent, p.sent),
                        lost_packets_per_second: r(t.lost, p.lost),
                    }),
            }
        })
        .collect()
}

/// Builds `tapline.v1.Stats` from `cur`, with rates against `prev` when
/// [`rate_window`] allows. `cpus` is `dataplane.cpus` of the configuration
/// (worker `i` is pinned to `cpus[i]`).
pub fn build_stats(
    cur: &Sample,
    prev: Option<&Sample>,
    selector: &Selector,
    cpus: &[usize],
) -> v1::Stats {
    let snap = &cur.snapshot;
    let window = rate_window(prev, cur);
    let prev_snap = window.and(prev).map(|p| &p.snapshot);
    let secs = window.map_or(0.0, |w| w.as_secs_f64());
    let workers_of = queue_workers(snap);

    // The same queue in the previous sample, by identity rather than slot
    // index (slots of tool ports are handed out again as the chain
    // changes).
    let prev_queue = |q: &QueueSnapshot| {
        prev_snap.and_then(|p| {
            p.queues.iter().find(|o| {
                o.info.role == q.info.role
                    && o.info.ifname == q.info.ifname
                    && o.info.queue == q.info.queue
                    && o.info.hop == q.info.hop
            })
        })
    };

    let ports = ports(snap)
        .into_iter()
        .filter(|p| selector.wants(p.role))
        .map(|p| {
            let queues: Vec<&QueueSnapshot> = p.slots.iter().map(|&i| &snap.queues[i]).collect();
            let modes: Vec<String> = queues.iter().map(|q| api_mode(&q.info.mode)).collect();
            let totals = Totals::of(queues.iter().copied());
            // Rates of a port whose every queue was in the previous sample.
            let pairs: Option<Vec<(&QueueSnapshot, &QueueSnapshot)>> = queues
                .iter()
                .map(|&q| prev_queue(q).map(|o| (q, o)))
                .collect();
            let port_rates = pairs.map(|pairs| Totals::increase_of(pairs).rates(&totals, secs));
            let queue_stats = if selector.omit_queues {
                Vec::new()
            } else {
                p.slots
                    .iter()
                    .map(|&i| {
                        let q = &snap.queues[i];
                        let t = Totals::of([q]);
                        v1::QueueStats {
                            queue_id: q.info.queue,
                            xdp_mode: api_mode(&q.info.mode),
                            worker_id: workers_of[i].unwrap_or(0),
                            counters: Some(t.counters()),
                            kernel: Some(t.kernel),
                            rates: prev_queue(q)
                                .map(|o| Totals::increase_of([(q, o)]).rates(&t, secs)),
                        }
                    })
                    .collect()
            };
            v1::PortStats {
                role: p.role.to_string(),
                ifname: p.ifname.to_string(),
                hop: p.hop.to_string(),
                xdp_mode: least_capable(modes.iter().map(String::as_str)),
                totals: Some(totals.counters()),
                kernel_totals: Some(totals.kernel),
                rates: port_rates,
                queues: queue_stats,
            }
        })
        .collect();

    let workers = snap
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| v1::WorkerStats {
            worker_id: i as u32,
            cpu: cpus.get(i).map(|&c| c as u32),
            batches: w.batches,
            busy_loops: w.busy_loops,
            idle_loops: w.idle_loops,
            idle_waits: w.idle_waits,
            batch_latency: w.latency.as_ref().map(latency),
            rates: prev_snap
                .and_then(|p| p.workers.get(i))
                .map(|o| worker_rates(w, o, secs)),
        })
        .collect();

    v1::Stats {
        stats_epoch: snap.epoch,
        sampled_at: Some(timestamp(cur.sampled_unix_ns)),
        dataplane_started_at: timestamp_opt(snap.started_unix_ns),
        // Samples are only taken from a live dataplane.
        dataplane_state: v1::DataplaneState::Running.into(),
        rates_window_ms: window.map_or(0, |w| w.as_millis() as u64),
        ports,
        workers,
        hops: snap
            .hops
            .iter()
            .map(|h| {
                let prev = prev_snap.and_then(|p| p.hops.iter().find(|o| o.name == h.name));
                hop_stats(h, prev, secs)
            })
            .collect(),
        output_groups: output_groups(snap, prev_snap, secs),
        recorders: recorders(snap, prev_snap, secs),
        taps: taps(snap, prev_snap, secs),
        kernel_fallback: snap.fallback.as_ref().map(fallback_stats),
    }
}

/// The kernel fallback's counters of the segment.
fn fallback_stats(f: &FallbackSnapshot) -> v1::FallbackStats {
    v1::FallbackStats {
        ports: ["inline-1", "inline-2"]
            .iter()
            .enumerate()
            .map(|(p, role)| v1::FallbackPortStats {
                role: role.to_string(),
                forwarded: f.forwarded[p],
                dropped: f.dropped[p],
                lease_expiries: f.lease_expiries[p],
            })
            .collect(),
        lease_expiries: f.lease_expiries.iter().sum(),
        takeovers: f.takeovers,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Instant;
    use tapline_dataplane::xdp::shm::{
        LatencyValues, OutputInfo, QueueInfo, SegmentState, HOP_RTT_BUCKETS,
    };
    use tonic::Code;

    pub(crate) fn queue(role: &str, ifname: &str, queue: u32, rx: u64) -> QueueSnapshot {
        QueueSnapshot {
            info: QueueInfo {
                role: role.into(),
                ifname: ifname.into(),
                queue,
                mode: "native-zero-copy".into(),
                worker: 0,
                hop: String::new(),
            },
            rx_packets: rx,
            rx_bytes: rx * 100,
            tx_packets: rx / 2,
            tx_bytes: rx * 50,
            drops: [rx / 10, 0, 0, 0, 0, 0, 0, 0],
            kernel_rx_dropped: 1,
            kernel_rx_invalid_descs: 2,
            kernel_tx_invalid_descs: 3,
            kernel_rx_ring_full: 4,
            kernel_rx_fill_ring_empty: 5,
            kernel_tx_ring_empty: 6,
        }
    }

    pub(crate) fn worker(batches: u64) -> WorkerSnapshot {
        WorkerSnapshot {
            batches,
            busy_loops: batches,
            idle_loops: batches * 3,
            idle_waits: batches / 2,
            latency: Some(LatencyValues {
                count: 10,
                p50_ns: 1_500,
                p90_ns: 2_000,
                p99_ns: 5_000,
                p999_ns: 9_000,
                max_ns: 12_000,
                window_ns: 1_000_000_000,
            }),
        }
    }

    /// inline-1/inline-2 with two queues each, passive-1 with one; two
    /// workers. Slot order as the dataplane writes it.
    /// Two bridge queue pairs and one passive queue; tasks dealt to two
    /// workers as the dataplane does (bridge q0 -> 0, q1 -> 1, capture -> 0).
    pub(crate) fn snapshot(epoch: u64, rx: u64) -> Snapshot {
        let mut s = Snapshot {
            dataplane_version: "0.1.0".into(),
            dataplane_pid: 1,
            epoch,
            started_unix_ns: 1_800_000_000_500_000_000,
            heartbeat_unix_ns: 1_800_000_100_000_000_000,
            state: SegmentState::Running as u64,
            links_down: 0,
            queues: vec![
                queue("inline-1", "i1", 0, rx),
                queue("inline-2", "i2", 0, rx * 2),
                queue("inline-1", "i1", 1, rx * 3),
                queue("inline-2", "i2", 1, rx * 4),
                queue("passive-1", "p1", 0, rx * 5),
            ],
            workers: vec![worker(rx), worker(rx * 2)],
            hops: Vec::new(),
            outputs: Vec::new(),
            recorders: Vec::new(),
            taps: Vec::new(),
            fallback: None,
        };
        for (q, w) in s.queues.iter_mut().zip([0, 0, 1, 1, 0]) {
            q.info.worker = w;
        }
        s
    }

    /// A tool port queue of hop `hop`.
    pub(crate) fn tool_queue(
        role: &str,
        ifname: &str,
        queue: u32,
        hop: &str,
        rx: u64,
    ) -> QueueSnapshot {
        let mut q = self::queue(role, ifname, queue, rx);
        q.info.hop = hop.into();
        q
    }

    /// A hop of the chain, its counters scaled by `n`.
    pub(crate) fn hop(name: &str, position: u32, slot: usize, n: u64) -> HopSnapshot {
        let mut buckets = [0u64; HOP_RTT_BUCKETS];
        buckets[0] = n; // <= 10 us
        buckets[3] = n; // (50 us, 100 us]
        buckets[HOP_RTT_BUCKETS - 1] = 1; // > 1 s
        HopSnapshot {
            slot,
            name: name.into(),
            position,
            to_tool_packets: n * 10,
            to_tool_bytes: n * 1000,
            from_tool_packets: n * 9,
            from_tool_bytes: n * 900,
            bypassed_packets: n,
            bypassed_bytes: n * 100,
            drops: [0, n, 0, 2, 0, 0, 0, 0],
            heartbeats_sent: n * 4,
            heartbeats_returned: n * 3,
            heartbeats_late: n,
            heartbeats_lost: 1,
            round_trip: Some(LatencyValues {
                count: 5,
                p50_ns: 45_000,
                p90_ns: 80_000,
                p99_ns: 95_000,
                p999_ns: 99_000,
                max_ns: 99_500,
                window_ns: 1_000_000_000,
            }),
            round_trip_histogram: Some(HistogramValues {
                count: 2 * n + 1,
                sum_ns: n * 60_000 + 2_000_000_000,
                buckets,
            }),
        }
    }

    /// [`snapshot`] with a chain of two hops, "waf" (slot 0) after "ids"
    /// (slot 1); the tool ports' slots are in neither chain nor role order.
    pub(crate) fn chain_snapshot(epoch: u64, rx: u64) -> Snapshot {
        let mut s = snapshot(epoch, rx);
        s.queues.extend([
            tool_queue("tool-b", "t2b", 0, "waf", rx * 6),
            tool_queue("tool-a", "t1a", 0, "ids", rx * 7),
            tool_queue("tool-b", "t1b", 0, "ids", rx * 8),
            tool_queue("tool-a", "t2a", 0, "waf", rx * 9),
        ]);
        s.hops = vec![hop("ids", 0, 1, rx), hop("waf", 1, 0, rx * 2)];
        s
    }

    /// An output slot, its counters scaled by `n`: `packets` and
    /// `filtered_out` as given times `n`, 100 bytes a packet, and `drops`
    /// (by `OutputDropReason` slot) times `n`.
    pub(crate) fn output(
        slot: usize,
        kind: OutputKind,
        parent: u32,
        name: &str,
        n: u64,
        (packets, filtered_out): (u64, u64),
        drops: &[(OutputDropReason, u64)],
    ) -> OutputSnapshot {
        let mut d = [0u64; DROP_SLOTS];
        for &(r, k) in drops {
            d[r as usize] = k * n;
        }
        OutputSnapshot {
            slot,
            info: OutputInfo {
                kind,
                parent,
                name: name.into(),
                ifname: if kind == OutputKind::Member {
                    name.into()
                } else {
                    String::new()
                },
                filter: String::new(),
                snaplen: 0,
            },
            packets: packets * n,
            bytes: packets * n * 100,
            filtered_out: filtered_out * n,
            drops: d,
        }
    }

    /// [`snapshot`] with two output groups, "ids" (members "o1" and "o2",
    /// filter "tcp port 80") and "zeek" (member "o3", snap length 128), a
    /// recorder "disk" (filter "udp") and two live taps (ids 9 and 4, in
    /// slot order), their counters scaled by `n`. Slots as the dataplane
    /// describes them: groups, members group by group, recorder stages.
    pub(crate) fn outputs_snapshot(epoch: u64, n: u64) -> Snapshot {
        use OutputDropReason::{MemberDown, QueueFull, TxRingFull};
        use OutputKind::{Group, Member, Recorder};
        let mut s = snapshot(epoch, n);
        s.outputs = vec![
            output(0, Group, 0, "ids", n, (10, 2), &[]),
            output(1, Group, 1, "zeek", n, (5, 0), &[]),
            output(2, Member, 0, "o1", n, (5, 0), &[(TxRingFull, 1)]),
            output(3, Member, 0, "o2", n, (3, 0), &[(MemberDown, 1)]),
            output(4, Member, 1, "o3", n, (5, 0), &[]),
            output(5, Recorder, 0, "disk", n, (4, 8), &[(QueueFull, 1)]),
        ];
        s.outputs[0].info.filter = "tcp port 80".into();
        s.outputs[1].info.snaplen = 128;
        s.outputs[5].info.filter = "udp".into();
        s.outputs[5].info.snaplen = 96;
        s.recorders = vec![RecorderSnapshot {
            index: 0,
            name: "disk".into(),
            directory: "/data/pcap".into(),
            current_file: "/data/pcap/disk-000001.pcap.part".into(),
            files_created: 3 * n,
            files_completed: 2 * n,
            files_migrated: n,
            files_deleted: n,
            bytes_written: 1000 * n,
            packets_written: 4 * n,
            disk_errors: 2,
            last_error: "writing /data/pcap/disk-000001.pcap.part: No space left on device".into(),
            last_error_unix_ns: 1_800_000_050_250_000_000,
            queue_dropped_packets: n,
            queue_dropped_bytes: 100 * n,
            disk_dropped_packets: 2 * n,
        }];
        s.taps = [(9, "passive-1 rx", "icmp"), (4, "ids/a both", "")]
            .into_iter()
            .map(|(id, point, filter)| TapSnapshot {
                id,
                point: point.into(),
                filter: filter.into(),
                started_unix_ns: 1_800_000_090_000_000_000 + id,
                matched: 10 * n + id,
                sent: 9 * n,
                lost: n,
            })
            .collect();
        s
    }

    fn sample(snapshot: Snapshot, at: Instant) -> Sample {
        Sample {
            snapshot,
            sampled_unix_ns: 1_800_000_100_123_456_789,
            at,
        }
    }

    #[test]
    fn intervals_are_validated() {
        assert_eq!(watch_interval(0).unwrap(), Duration::from_millis(1000));
        assert_eq!(watch_interval(10).unwrap(), Duration::from_millis(10));
        assert_eq!(watch_interval(250).unwrap(), Duration::from_millis(250));
        assert_eq!(watch_interval(60_000).unwrap(), Duration::from_secs(60));
        for bad in [1, 9, 60_001, u32::MAX] {
            let e = watch_interval(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().starts_with("interval_ms: "), "{}", e.message());
            assert!(e.message().contains(&bad.to_string()));
        }
    }

    #[test]
    fn selectors_are_validated() {
        assert_eq!(
            Selector::from_proto("selector", None).unwrap(),
            Selector::default()
        );
        let ok = v1::StatsSelector {
            roles: vec!["passive-1".into(), "inline-2".into()],
            omit_queues: true,
        };
        let s = Selector::from_proto("selector", Some(&ok)).unwrap();
        assert!(s.wants("passive-1") && !s.wants("inline-1") && s.omit_queues);
        let bad = v1::StatsSelector {
            roles: vec!["inline-1".into(), "pasive-1".into()],
            omit_queues: false,
        };
        let e = Selector::from_proto("selector", Some(&bad)).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("selector.roles[1]: \"pasive-1\""),
            "{}",
            e.message()
        );
    }

    #[test]
    fn queues_group_into_ports_in_info_order() {
        let s = snapshot(1, 10);
        let p = ports(&s);
        let names: Vec<(&str, &str, Vec<usize>)> = p
            .iter()
            .map(|p| (p.role, p.ifname, p.slots.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("passive-1", "p1", vec![4]),
                ("inline-1", "i1", vec![0, 2]),
                ("inline-2", "i2", vec![1, 3]),
            ]
        );
        assert_eq!(
            queue_workers(&s),
            vec![Some(0), Some(0), Some(1), Some(1), Some(0)]
        );
        let mut none = s.clone();
        none.workers.clear();
        assert!(queue_workers(&none).iter().all(Option::is_none));
    }

    #[test]
    fn modes_use_the_api_spelling_and_ports_take_the_least_capable() {
        assert_eq!(api_mode("native-zero-copy"), "native-zerocopy");
        assert_eq!(api_mode("generic-copy"), "generic-copy");
        assert_eq!(
            least_capable(["native-zerocopy", "generic-copy", "native-copy"]),
            "generic-copy"
        );
        assert_eq!(least_capable(["native-zerocopy"]), "native-zerocopy");
        assert_eq!(least_capable([]), "");
    }

    #[test]
    fn stats_carry_the_kernel_fallback_counters_per_port() {
        let cur = sample(snapshot(9, 10), Instant::now());
        let st = build_stats(&cur, None, &Selector::default(), &[]);
        assert_eq!(st.kernel_fallback, None);
        let mut s = snapshot(9, 10);
        s.fallback = Some(FallbackSnapshot {
            forwarded: [500, 7],
            dropped: [1, 2],
            lease_expiries: [3, 4],
            takeovers: 5,
        });
        let st = build_stats(&sample(s, Instant::now()), None, &Selector::default(), &[]);
        let f = st.kernel_fallback.expect("kernel_fallback");
        assert_eq!(f.lease_expiries, 7);
        assert_eq!(f.takeovers, 5);
        let ports: Vec<(&str, u64, u64, u64)> = f
            .ports
            .iter()
            .map(|p| (p.role.as_str(), p.forwarded, p.dropped, p.lease_expiries))
            .collect();
        assert_eq!(ports, [("inline-1", 500, 1, 3), ("inline-2", 7, 2, 4)]);
    }

    #[test]
    fn stats_sum_queues_and_name_drop_reasons() {
        let cur = sample(snapshot(9, 10), Instant::now());
        let st = build_stats(&cur, None, &Selector::default(), &[3]);
        assert_eq!(st.stats_epoch, 9);
        assert_eq!(st.rates_window_ms, 0);
        assert_eq!(st.dataplane_state(), v1::DataplaneState::Running);
        assert_eq!(
            st.sampled_at,
            Some(tapline_proto::Timestamp {
                seconds: 1_800_000_100,
                nanos: 123_456_789
            })
        );
        assert_eq!(st.dataplane_started_at.unwrap().nanos, 500_000_000);
        let roles: Vec<&str> = st.ports.iter().map(|p| p.role.as_str()).collect();
        assert_eq!(roles, ["passive-1", "inline-1", "inline-2"]);
        let i1 = &st.ports[1];
        assert_eq!(i1.ifname, "i1");
        assert_eq!(i1.xdp_mode, "native-zerocopy");
        let t = i1.totals.as_ref().unwrap();
        assert_eq!(t.rx_packets, 10 + 30);
        assert_eq!(t.rx_bytes, 4000);
        assert_eq!(t.tx_packets, 5 + 15);
        assert_eq!(t.dropped_packets, 1 + 3);
        // Every reason this build knows, zero included.
        assert_eq!(
            t.dropped_packets_by_reason,
            BTreeMap::from([
                ("tx_ring_full".to_string(), 4),
                ("hop_down".to_string(), 0),
                ("heartbeat_from_wire".to_string(), 0),
                ("heartbeat_invalid".to_string(), 0),
            ])
        );
        let k = i1.kernel_totals.unwrap();
        assert_eq!((k.rx_dropped, k.tx_ring_empty), (2, 12));
        assert_eq!(i1.queues.len(), 2);
        assert_eq!(i1.queues[1].queue_id, 1);
        assert_eq!(i1.queues[1].worker_id, 1);
        assert_eq!(i1.queues[1].counters.as_ref().unwrap().rx_packets, 30);
        assert!(i1.rates.is_none() && i1.queues[0].rates.is_none());
        assert_eq!(st.workers.len(), 2);
        assert_eq!(st.workers[0].cpu, Some(3));
        assert_eq!(st.workers[1].cpu, None);
        assert_eq!(st.workers[1].batches, 20);
        assert_eq!(st.workers[0].batch_latency.unwrap().p999_ns, 9_000);
        assert!(st.workers[0].rates.is_none());

        // A drop slot this build has no name for still counts.
        let mut odd = snapshot(9, 10);
        odd.queues[4].drops[5] = 7;
        let st = build_stats(
            &sample(odd, Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let t = st.ports[0].totals.as_ref().unwrap();
        assert_eq!(t.dropped_packets, 5 + 7);
        assert_eq!(t.dropped_packets_by_reason["unknown_5"], 7);
    }

    #[test]
    fn selector_filters_ports_and_queues() {
        let cur = sample(snapshot(1, 10), Instant::now());
        let sel = Selector {
            roles: vec!["inline-2".into()],
            omit_queues: true,
        };
        let st = build_stats(&cur, None, &sel, &[]);
        assert_eq!(st.ports.len(), 1);
        assert_eq!(st.ports[0].role, "inline-2");
        assert!(st.ports[0].queues.is_empty());
        assert_eq!(st.ports[0].totals.as_ref().unwrap().rx_packets, 20 + 40);
        assert_eq!(st.workers.len(), 2, "workers are not filtered");
    }

    #[test]
    fn rates_between_two_samples() {
        let t0 = Instant::now();
        let prev = sample(snapshot(5, 100), t0);
        let cur = sample(snapshot(5, 300), t0 + Duration::from_millis(500));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        assert_eq!(st.rates_window_ms, 500);
        let p = &st.ports[0]; // passive-1: rx 500 -> 1500 over 0.5 s
        let r = p.rates.as_ref().unwrap();
        assert_eq!(r.rx_packets_per_second, 2000.0);
        assert_eq!(r.rx_bytes_per_second, 200_000.0);
        assert_eq!(r.tx_packets_per_second, 1000.0);
        assert_eq!(r.dropped_packets_per_second, 200.0);
        assert_eq!(
            r.dropped_packets_per_second_by_reason["tx_ring_full"],
            200.0
        );
        let q = st.ports[1].queues[1].rates.as_ref().unwrap(); // inline-1 q1: 300 -> 900
        assert_eq!(q.rx_packets_per_second, 1200.0);
        let w = st.workers[1].rates.unwrap(); // batches 200 -> 600
        assert_eq!(w.batches_per_second, 800.0);
        assert_eq!(w.busy_loop_ratio, 0.25);
        assert_eq!(w.idle_waits_per_second, 400.0);
    }

    #[test]
    fn rates_reset_when_the_epoch_changes() {
        let t0 = Instant::now();
        // The old run had counted a lot; the new one starts from zero.
        let prev = sample(snapshot(5, 1_000_000), t0);
        let cur = sample(snapshot(6, 10), t0 + Duration::from_secs(1));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        assert_eq!(st.stats_epoch, 6);
        assert_eq!(st.rates_window_ms, 0);
        assert!(st.ports.iter().all(|p| p.rates.is_none()));
        assert!(st
            .ports
            .iter()
            .flat_map(|p| &p.queues)
            .all(|q| q.rates.is_none()));
        assert!(st.workers.iter().all(|w| w.rates.is_none()));
        // The next sample of the new run has rates again.
        let next = sample(snapshot(6, 20), t0 + Duration::from_secs(2));
        let st = build_stats(&next, Some(&cur), &Selector::default(), &[]);
        assert_eq!(st.rates_window_ms, 1000);
        assert_eq!(
            st.ports[0].rates.as_ref().unwrap().rx_packets_per_second,
            50.0
        );
    }

    #[test]
    fn rates_never_go_negative() {
        let t0 = Instant::now();
        // Every counter went back (every slot was cleared and handed out
        // again): each counted its value since.
        let prev = sample(snapshot(5, 300), t0);
        let cur = sample(snapshot(5, 100), t0 + Duration::from_secs(1));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        for (p, t) in st.ports.iter().zip([500, 400, 600]) {
            let r = p.rates.as_ref().unwrap();
            assert_eq!(r.rx_packets_per_second, t as f64, "{}", p.role);
            assert_eq!(r.dropped_packets_per_second, (t / 10) as f64);
        }
        // One queue of a port reset, the other advanced: the port's rate is
        // the sum of both queues' increases, not of the sums.
        let mut cur = snapshot(5, 300);
        cur.queues[0].rx_packets = 50; // inline-1 q0: 300 -> 50 (reset)
        cur.queues[2].rx_packets = 1000; // inline-1 q1: 900 -> 1000
        let cur = sample(cur, t0 + Duration::from_secs(1));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        let i1 = &st.ports[1];
        assert_eq!(i1.rates.as_ref().unwrap().rx_packets_per_second, 150.0);
        assert_eq!(
            i1.queues[0].rates.as_ref().unwrap().rx_packets_per_second,
            50.0
        );
        assert_eq!(increase(5, 7), 5);
        assert_eq!(increase(7, 5), 2);
        // No time passed: no rates rather than a division by zero.
        let same = sample(snapshot(5, 300), t0);
        assert!(rate_window(Some(&same), &same).is_none());
    }

    #[test]
    fn tool_ports_follow_the_chain_and_name_their_hop() {
        let snap = chain_snapshot(1, 10);
        let p: Vec<(&str, &str, &str)> = ports(&snap)
            .iter()
            .map(|p| (p.role, p.ifname, p.hop))
            .collect();
        assert_eq!(
            p,
            [
                ("passive-1", "p1", ""),
                ("inline-1", "i1", ""),
                ("inline-2", "i2", ""),
                ("tool-a", "t1a", "ids"),
                ("tool-b", "t1b", "ids"),
                ("tool-a", "t2a", "waf"),
                ("tool-b", "t2b", "waf"),
            ]
        );
        let st = build_stats(
            &sample(snap, Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let t1a = &st.ports[3];
        assert_eq!((t1a.role.as_str(), t1a.hop.as_str()), ("tool-a", "ids"));
        assert_eq!(t1a.totals.as_ref().unwrap().rx_packets, 70);
        assert_eq!(t1a.queues.len(), 1);
        assert!(st.ports[..3].iter().all(|p| p.hop.is_empty()));
        // Selectable by role like any port.
        let sel = Selector::from_proto(
            "selector",
            Some(&v1::StatsSelector {
                roles: vec!["tool-b".into()],
                omit_queues: false,
            }),
        )
        .unwrap();
        let st = build_stats(
            &sample(chain_snapshot(1, 10), Instant::now()),
            None,
            &sel,
            &[],
        );
        let b: Vec<&str> = st.ports.iter().map(|p| p.ifname.as_str()).collect();
        assert_eq!(b, ["t1b", "t2b"]);
        assert_eq!(st.hops.len(), 2, "hops are not filtered");
    }

    #[test]
    fn hops_in_chain_order_with_drops_heartbeats_and_latency() {
        let st = build_stats(
            &sample(chain_snapshot(1, 10), Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let names: Vec<&str> = st.hops.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["ids", "waf"]);
        let ids = &st.hops[0];
        assert_eq!((ids.to_tool_packets, ids.to_tool_bytes), (100, 10_000));
        assert_eq!((ids.from_tool_packets, ids.from_tool_bytes), (90, 9_000));
        assert_eq!((ids.bypassed_packets, ids.bypassed_bytes), (10, 1_000));
        assert_eq!(ids.dropped_packets, 12);
        assert_eq!(
            ids.dropped_packets_by_reason,
            BTreeMap::from([
                ("tx_ring_full".to_string(), 0),
                ("hop_down".to_string(), 10),
                ("heartbeat_from_wire".to_string(), 0),
                ("heartbeat_invalid".to_string(), 2),
            ])
        );
        assert_eq!(
            (
                ids.heartbeats_sent,
                ids.heartbeats_returned,
                ids.heartbeats_late,
                ids.heartbeats_lost
            ),
            (40, 30, 10, 1)
        );
        assert_eq!(ids.round_trip_latency.unwrap().p99_ns, 95_000);
        let h = ids.round_trip_latency_histogram.as_ref().unwrap();
        assert_eq!((h.count, h.sum_ns), (21, 2_000_600_000));
        assert_eq!(h.buckets.len(), HOP_RTT_BOUNDS_NS.len());
        let b: Vec<(u64, u64)> = h
            .buckets
            .iter()
            .map(|b| (b.upper_bound_ns, b.count))
            .take(5)
            .collect();
        assert_eq!(
            b,
            [
                (10_000, 10),
                (20_000, 10),
                (50_000, 10),
                (100_000, 20),
                (200_000, 20)
            ]
        );
        // The +Inf bucket is implicit: the last finite one leaves out the
        // sample above 1 s.
        assert_eq!(h.buckets.last().unwrap().count, 20);
        assert!(ids.rates.is_none());
    }

    #[test]
    fn hop_rates_by_name_with_resets() {
        let t0 = Instant::now();
        let prev = sample(chain_snapshot(3, 10), t0);
        let mut cur = chain_snapshot(3, 30);
        // "waf" was removed and added back (its counters restarted); a new
        // hop "dlp" appeared.
        cur.hops[1] = hop("waf", 1, 0, 1);
        cur.hops.push(hop("dlp", 2, 2, 5));
        let cur = sample(cur, t0 + Duration::from_millis(500));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        let ids = st.hops[0].rates.unwrap(); // 100 -> 300 over 0.5 s
        assert_eq!(ids.to_tool_packets_per_second, 400.0);
        assert_eq!(ids.to_tool_bytes_per_second, 40_000.0);
        assert_eq!(ids.from_tool_packets_per_second, 360.0);
        assert_eq!(ids.from_tool_bytes_per_second, 36_000.0);
        assert_eq!(ids.bypassed_packets_per_second, 40.0);
        assert_eq!(ids.dropped_packets_per_second, 40.0); // hop_down 10 -> 30
        assert_eq!(ids.heartbeats_lost_per_second, 0.0);
        let waf = st.hops[1].rates.unwrap(); // 200 -> 10: reset, 10 since
        assert_eq!(waf.to_tool_packets_per_second, 20.0);
        // hop_down 20 -> 1 (reset: 1 since); heartbeat_invalid 2 -> 2 reads
        // as unchanged, as any counter that happens to be back where it was.
        assert_eq!(waf.dropped_packets_per_second, 2.0);
        assert!(st.hops[2].rates.is_none(), "no previous sample of dlp");
        // Another run: no rates at all.
        let other = sample(chain_snapshot(4, 40), t0 + Duration::from_secs(1));
        let st = build_stats(&other, Some(&cur), &Selector::default(), &[]);
        assert!(st.hops.iter().all(|h| h.rates.is_none()));
    }

    #[test]
    fn output_groups_nest_members_and_sum_their_drops() {
        let st = build_stats(
            &sample(outputs_snapshot(1, 10), Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let groups: Vec<(&str, Vec<&str>)> = st
            .output_groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.members.iter().map(|m| m.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(groups, [("ids", vec!["o1", "o2"]), ("zeek", vec!["o3"])]);
        let ids = &st.output_groups[0];
        assert_eq!(
            (ids.filter.as_str(), ids.snap_length_bytes),
            ("tcp port 80", 0)
        );
        assert_eq!(st.output_groups[1].snap_length_bytes, 128);
        let c = ids.counters.as_ref().unwrap();
        assert_eq!(
            (c.packets, c.bytes, c.filtered_out_packets),
            (100, 10_000, 20)
        );
        // The group's drops are its members': accepted = delivered + dropped.
        assert_eq!(c.dropped_packets, 10 + 10);
        assert_eq!(
            c.dropped_packets_by_reason,
            BTreeMap::from([
                ("tx_ring_full".to_string(), 10),
                ("member_down".to_string(), 10),
                ("tx_error".to_string(), 0),
            ])
        );
        let delivered: u64 = ids
            .members
            .iter()
            .map(|m| m.counters.as_ref().unwrap().packets)
            .sum();
        assert_eq!(delivered + c.dropped_packets, c.packets);
        let o2 = &ids.members[1];
        assert_eq!((o2.ifname.as_str(), o2.recorder.as_str()), ("o2", ""));
        let m = o2.counters.as_ref().unwrap();
        assert_eq!((m.packets, m.bytes, m.dropped_packets), (30, 3_000, 10));
        assert_eq!(m.dropped_packets_by_reason["member_down"], 10);
        assert_eq!(m.dropped_packets_by_reason.len(), 3, "member reasons only");
        let zeek = st.output_groups[1].counters.as_ref().unwrap();
        assert_eq!((zeek.packets, zeek.dropped_packets), (50, 0));
        assert!(st.output_groups.iter().all(|g| g.rates.is_none()));

        // A reason that does not apply to members still counts when the
        // dataplane counted it, and so does a slot this build cannot name.
        let mut odd = outputs_snapshot(1, 10);
        odd.outputs[2].drops[OutputDropReason::QueueFull as usize] = 4;
        odd.outputs[2].drops[7] = 1;
        let st = build_stats(
            &sample(odd, Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let o1 = st.output_groups[0].members[0].counters.as_ref().unwrap();
        assert_eq!(o1.dropped_packets, 10 + 4 + 1);
        assert_eq!(o1.dropped_packets_by_reason["queue_full"], 4);
        assert_eq!(o1.dropped_packets_by_reason["unknown_7"], 1);
        let ids = st.output_groups[0].counters.as_ref().unwrap();
        assert_eq!(ids.dropped_packets, 10 + 4 + 1 + 10);

        // Without outputs (an inline-only dataplane): nothing, no error.
        let st = build_stats(
            &sample(snapshot(1, 10), Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        assert!(st.output_groups.is_empty() && st.recorders.is_empty() && st.taps.is_empty());
    }

    #[test]
    fn recorders_have_their_filter_stage_and_disk_counters() {
        let st = build_stats(
            &sample(outputs_snapshot(1, 10), Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        assert_eq!(st.recorders.len(), 1);
        let r = &st.recorders[0];
        assert_eq!(
            (
                r.name.as_str(),
                r.directory.as_str(),
                r.current_file.as_str()
            ),
            ("disk", "/data/pcap", "/data/pcap/disk-000001.pcap.part")
        );
        assert_eq!((r.filter.as_str(), r.snap_length_bytes), ("udp", 96));
        assert_eq!(
            (
                r.files_created,
                r.files_completed,
                r.files_migrated,
                r.files_deleted
            ),
            (30, 20, 10, 10)
        );
        assert_eq!((r.bytes_written, r.packets_written), (10_000, 40));
        assert_eq!(
            (
                r.queue_dropped_packets,
                r.queue_dropped_bytes,
                r.disk_dropped_packets
            ),
            (10, 1_000, 20)
        );
        assert_eq!(r.disk_errors, 2);
        assert!(
            r.last_disk_error.contains("No space left"),
            "{}",
            r.last_disk_error
        );
        assert_eq!(
            r.last_disk_error_at,
            Some(tapline_proto::Timestamp {
                seconds: 1_800_000_050,
                nanos: 250_000_000
            })
        );
        let f = r.filter_stage.as_ref().unwrap();
        assert_eq!(
            (f.packets, f.bytes, f.filtered_out_packets),
            (40, 4_000, 80)
        );
        assert_eq!(f.dropped_packets, 10);
        assert_eq!(
            f.dropped_packets_by_reason,
            BTreeMap::from([
                ("queue_full".to_string(), 10),
                ("disk_error".to_string(), 0)
            ])
        );
        assert!(r.rates.is_none() && r.filter_stage_rates.is_none());
        // The recorder stages are not groups.
        assert_eq!(st.output_groups.len(), 2);

        // A recorder without an error has no error time.
        let mut fine = outputs_snapshot(1, 10);
        fine.recorders[0].last_error_unix_ns = 0;
        fine.recorders[0].last_error.clear();
        // And one whose stage the reader missed still has its disk side.
        fine.outputs.pop();
        let st = build_stats(
            &sample(fine, Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let r = &st.recorders[0];
        assert!(r.last_disk_error_at.is_none() && r.last_disk_error.is_empty());
        assert!(r.filter_stage.is_none());
        assert_eq!((r.filter.as_str(), r.packets_written), ("", 40));
    }

    #[test]
    fn taps_are_listed_by_id() {
        let st = build_stats(
            &sample(outputs_snapshot(1, 10), Instant::now()),
            None,
            &Selector::default(),
            &[],
        );
        let ids: Vec<(u64, &str, &str)> = st
            .taps
            .iter()
            .map(|t| (t.id, t.point.as_str(), t.filter.as_str()))
            .collect();
        assert_eq!(ids, [(4, "ids/a both", ""), (9, "passive-1 rx", "icmp")]);
        let t = &st.taps[1];
        assert_eq!(
            (t.matched_packets, t.sent_packets, t.lost_packets),
            (109, 90, 10)
        );
        assert_eq!(
            t.started_at,
            Some(tapline_proto::Timestamp {
                seconds: 1_800_000_090,
                nanos: 9
            })
        );
        assert!(t.rates.is_none());
    }

    #[test]
    fn output_recorder_and_tap_rates() {
        let t0 = Instant::now();
        let prev = sample(outputs_snapshot(2, 10), t0);
        let mut cur = outputs_snapshot(2, 30);
        // Tap 4 ended and tap 12 started; tap 9 goes on.
        cur.taps.retain(|t| t.id == 9);
        cur.taps.push(TapSnapshot {
            id: 12,
            matched: 5,
            ..TapSnapshot::default()
        });
        // Member o3's counters went back (counted 20 since); never negative.
        cur.outputs[4].packets = 20;
        let cur = sample(cur, t0 + Duration::from_millis(500));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        assert_eq!(st.rates_window_ms, 500);

        let ids = st.output_groups[0].rates.unwrap(); // 100 -> 300 over 0.5 s
        assert_eq!(ids.packets_per_second, 400.0);
        assert_eq!(ids.bytes_per_second, 40_000.0);
        assert_eq!(ids.filtered_out_packets_per_second, 80.0);
        // Members' drops: (10 + 10) -> (30 + 30).
        assert_eq!(ids.dropped_packets_per_second, 80.0);
        let o1 = st.output_groups[0].members[0].rates.unwrap(); // 50 -> 150
        assert_eq!(o1.packets_per_second, 200.0);
        assert_eq!(o1.dropped_packets_per_second, 40.0);
        let o3 = st.output_groups[1].members[0].rates.unwrap();
        assert_eq!(o3.packets_per_second, 40.0);

        let r = &st.recorders[0];
        let rr = r.rates.unwrap(); // 10_000 -> 30_000 bytes
        assert_eq!(rr.bytes_written_per_second, 40_000.0);
        assert_eq!(rr.packets_written_per_second, 160.0);
        assert_eq!(rr.queue_dropped_packets_per_second, 40.0);
        assert_eq!(rr.disk_dropped_packets_per_second, 80.0);
        let fr = r.filter_stage_rates.unwrap(); // accepted 40 -> 120
        assert_eq!(fr.packets_per_second, 160.0);
        assert_eq!(fr.filtered_out_packets_per_second, 320.0);
        assert_eq!(fr.dropped_packets_per_second, 40.0);

        let taps: Vec<(u64, Option<f64>)> = st
            .taps
            .iter()
            .map(|t| (t.id, t.rates.map(|r| r.matched_packets_per_second)))
            .collect();
        // Tap 9: matched 109 -> 309; tap 12 is new: no rates yet.
        assert_eq!(taps, [(9, Some(400.0)), (12, None)]);
        let t9 = st.taps[0].rates.unwrap();
        assert_eq!(
            (t9.sent_packets_per_second, t9.lost_packets_per_second),
            (360.0, 40.0)
        );

        // Outputs are matched by slot and name: a renamed slot has no rates.
        let mut renamed = outputs_snapshot(2, 30);
        renamed.outputs[3].info.name = "o9".into();
        let renamed = sample(renamed, t0 + Duration::from_secs(1));
        let st = build_stats(&renamed, Some(&prev), &Selector::default(), &[]);
        assert!(st.output_groups[0].members[1].rates.is_none());
        assert!(st.output_groups[0].members[0].rates.is_some());
        assert!(st.output_groups[0].rates.is_none(), "needs every member");

        // Another run: no rates at all.
        let other = sample(outputs_snapshot(3, 40), t0 + Duration::from_secs(1));
        let st = build_stats(&other, Some(&cur), &Selector::default(), &[]);
        assert!(st
            .output_groups
            .iter()
            .all(|g| g.rates.is_none() && g.members.iter().all(|m| m.rates.is_none())));
        assert!(st
            .recorders
            .iter()
            .all(|r| r.rates.is_none() && r.filter_stage_rates.is_none()));
        assert!(st.taps.iter().all(|t| t.rates.is_none()));
    }
}
