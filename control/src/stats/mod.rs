//! From the segment's plain snapshot to `tapline.v1.Stats`: queues grouped
//! into ports, totals, drops by reason, worker counters, chain hops, passive
//! output groups with their members, recorders, live taps, and rates between
//! two samples of the same dataplane run.

use std::collections::BTreeMap;
use std::time::Duration;

use tapline_proto::v1;
use tapline_segment::{DropReason, OutputDropReason};
use tapline_segment::{
    FallbackSnapshot, HistogramValues, HopSnapshot, OutputKind, QueueSnapshot, Snapshot,
    WorkerSnapshot, DROP_SLOTS, HOP_RTT_BOUNDS_NS,
};
use tonic::Status;

use crate::state::Sample;

mod outputs;
pub use outputs::{group_members, recorder_stage};
use outputs::{output_groups, recorders, taps};

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
        let q = &q.kernel;
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

fn latency(l: &tapline_segment::LatencyValues) -> v1::LatencySummary {
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

/// Builds `v1::HopStats` from the hop family's declaration
/// ([`tapline_segment::hop_counter_fields!`]): every counter of the family
/// is copied to the proto field of the same name (a counter without a proto
/// field, or a proto field without a counter, does not compile); counters
/// by reason (`[Counter; N]`) are mapped by the caller.
macro_rules! hop_stats_proto {
    (@fields $h:ident [$($done:tt)*] { $($rest:tt)* }) => {
        v1::HopStats { $($done)* $($rest)* }
    };
    (@fields $h:ident [$($done:tt)*] { $($rest:tt)* }
        $(#[$m:meta])* $f:ident : [$($t:tt)*] = metrics [$($x:tt)*], column $c:tt;
        $($more:tt)*
    ) => {
        hop_stats_proto!(@fields $h [$($done)*] { $($rest)* } $($more)*)
    };
    (@fields $h:ident [$($done:tt)*] { $($rest:tt)* }
        $(#[$m:meta])* $f:ident : $t:path = metrics [$($x:tt)*], column $c:tt;
        $($more:tt)*
    ) => {
        hop_stats_proto!(@fields $h [$($done)* $f: $h.$f,] { $($rest)* } $($more)*)
    };
    ($h:ident, { $($rest:tt)* } $($fields:tt)*) => {
        hop_stats_proto!(@fields $h [] { $($rest)* } $($fields)*)
    };
}

fn hop_stats(h: &HopSnapshot, prev: Option<&HopSnapshot>, secs: f64) -> v1::HopStats {
    tapline_segment::hop_counter_fields!(hop_stats_proto! { h, {
        name: h.name.clone(),
        dropped_packets: sum(&h.drops),
        dropped_packets_by_reason: drops_by_reason(&h.drops)
            .map(|(i, n)| (drop_reason_name(i), n))
            .collect(),
        round_trip_latency: h.round_trip.as_ref().map(latency),
        round_trip_latency_histogram: h.round_trip_histogram.as_ref().map(histogram),
        rates: prev.map(|p| hop_rates(h, p, secs)),
    } })
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
mod fixtures;
#[cfg(test)]
pub(crate) mod tests;
