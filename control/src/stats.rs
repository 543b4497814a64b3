//! From the segment's plain snapshot to `tapline.v1.Stats`: queues grouped
//! into ports, totals, drops by reason, worker counters, and rates between
//! two samples of the same dataplane run.

use std::collections::BTreeMap;
use std::time::Duration;

use tapline_dataplane::stats::DropReason;
use tapline_dataplane::xdp::shm::{QueueSnapshot, Snapshot, WorkerSnapshot, DROP_SLOTS};
use tapline_proto::v1;
use tonic::Status;

use crate::state::Sample;

/// Port roles in `GetInfo` order: the ports of `[interfaces]` first.
pub const ROLE_ORDER: [&str; 3] = ["passive-1", "inline-1", "inline-2"];
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
        for (i, role) in sel.roles.iter().enumerate() {
            if !KNOWN_ROLES.contains(&role.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "{field}.roles[{i}]: {role:?} is not a port role; use one of {}",
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

/// One port of a snapshot: the slots of one (role, interface), by queue id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port<'a> {
    pub role: &'a str,
    pub ifname: &'a str,
    /// Indexes into `Snapshot::queues`.
    pub slots: Vec<usize>,
}

/// The ports of a snapshot: passive-1, inline-1, inline-2, then any other
/// role in order of appearance.
pub fn ports(snap: &Snapshot) -> Vec<Port<'_>> {
    let mut out: Vec<Port<'_>> = Vec::new();
    for (i, q) in snap.queues.iter().enumerate() {
        let (role, ifname) = (q.info.role.as_str(), q.info.ifname.as_str());
        match out
            .iter_mut()
            .find(|p| p.role == role && p.ifname == ifname)
        {
            Some(p) => p.slots.push(i),
            None => out.push(Port {
                role,
                ifname,
                slots: vec![i],
            }),
        }
    }
    let rank = |role: &str| {
        ROLE_ORDER
            .iter()
            .position(|r| *r == role)
            .unwrap_or(ROLE_ORDER.len())
    };
    // Stable: other roles keep their order of appearance.
    out.sort_by_key(|p| rank(p.role));
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

    /// Drop slots reported by name: every reason this build knows (zero
    /// included, so the series exist), and unknown slots that counted.
    fn drops_by_reason(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.drops
            .iter()
            .enumerate()
            .filter(|&(i, &n)| i < DropReason::COUNT || n > 0)
            .map(|(i, &n)| (i, n))
    }

    fn counters(&self) -> v1::PacketCounters {
        let by_reason: BTreeMap<String, u64> = self
            .drops_by_reason()
            .map(|(i, n)| (drop_reason_name(i), n))
            .collect();
        v1::PacketCounters {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            dropped_packets: self.drops.iter().fold(0u64, |a, &d| a.wrapping_add(d)),
            dropped_packets_by_reason: by_reason,
        }
    }

    /// Per-second rates from `prev` to `self` over `secs`. Counters never go
    /// back within one run; should one anyway, its rate is 0, never
    /// negative.
    fn rates(&self, prev: &Totals, secs: f64) -> v1::PacketRates {
        let r = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        let by_reason: BTreeMap<String, f64> = self
            .drops_by_reason()
            .map(|(i, n)| (drop_reason_name(i), r(n, prev.drops[i])))
            .collect();
        let dropped = |t: &Totals| t.drops.iter().fold(0u64, |a, &d| a.wrapping_add(d));
        v1::PacketRates {
            rx_packets_per_second: r(self.rx_packets, prev.rx_packets),
            rx_bytes_per_second: r(self.rx_bytes, prev.rx_bytes),
            tx_packets_per_second: r(self.tx_packets, prev.tx_packets),
            tx_bytes_per_second: r(self.tx_bytes, prev.tx_bytes),
            dropped_packets_per_second: r(dropped(self), dropped(prev)),
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

fn timestamp(unix_ns: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (unix_ns / 1_000_000_000) as i64,
        nanos: (unix_ns % 1_000_000_000) as i32,
    }
}

/// A `google.protobuf.Timestamp` from nanoseconds since the Unix epoch;
/// `None` for 0 (never set).
pub fn timestamp_opt(unix_ns: u64) -> Option<prost_types::Timestamp> {
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
    // index.
    let prev_queue = |q: &QueueSnapshot| {
        prev_snap.and_then(|p| {
            p.queues.iter().find(|o| {
                o.info.role == q.info.role
                    && o.info.ifname == q.info.ifname
                    && o.info.queue == q.info.queue
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
            let prev_totals: Option<Vec<&QueueSnapshot>> =
                queues.iter().map(|q| prev_queue(q)).collect();
            let port_rates = prev_totals.map(|pq| totals.rates(&Totals::of(pq), secs));
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
                            rates: prev_queue(q).map(|o| t.rates(&Totals::of([o]), secs)),
                        }
                    })
                    .collect()
            };
            v1::PortStats {
                role: p.role.to_string(),
                ifname: p.ifname.to_string(),
                hop: String::new(),
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
        hops: Vec::new(),
        output_groups: Vec::new(),
        recorders: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Instant;
    use tapline_dataplane::xdp::shm::{LatencyValues, QueueInfo, SegmentState};
    use tonic::Code;

    pub(crate) fn queue(role: &str, ifname: &str, queue: u32, rx: u64) -> QueueSnapshot {
        QueueSnapshot {
            info: QueueInfo {
                role: role.into(),
                ifname: ifname.into(),
                queue,
                mode: "native-zero-copy".into(),
                worker: 0,
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
            queues: vec![
                queue("inline-1", "i1", 0, rx),
                queue("inline-2", "i2", 0, rx * 2),
                queue("inline-1", "i1", 1, rx * 3),
                queue("inline-2", "i2", 1, rx * 4),
                queue("passive-1", "p1", 0, rx * 5),
            ],
            workers: vec![worker(rx), worker(rx * 2)],
        };
        for (q, w) in s.queues.iter_mut().zip([0, 0, 1, 1, 0]) {
            q.info.worker = w;
        }
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
    fn stats_sum_queues_and_name_drop_reasons() {
        let cur = sample(snapshot(9, 10), Instant::now());
        let st = build_stats(&cur, None, &Selector::default(), &[3]);
        assert_eq!(st.stats_epoch, 9);
        assert_eq!(st.rates_window_ms, 0);
        assert_eq!(st.dataplane_state(), v1::DataplaneState::Running);
        assert_eq!(
            st.sampled_at,
            Some(prost_types::Timestamp {
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
        assert_eq!(
            t.dropped_packets_by_reason,
            BTreeMap::from([("tx_ring_full".to_string(), 4)])
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
        let prev = sample(snapshot(5, 300), t0);
        let cur = sample(snapshot(5, 100), t0 + Duration::from_secs(1));
        let st = build_stats(&cur, Some(&prev), &Selector::default(), &[]);
        for p in &st.ports {
            let r = p.rates.as_ref().unwrap();
            assert_eq!(r.rx_packets_per_second, 0.0);
            assert_eq!(r.dropped_packets_per_second, 0.0);
        }
        // No time passed: no rates rather than a division by zero.
        let same = sample(snapshot(5, 300), t0);
        assert!(rate_window(Some(&same), &same).is_none());
    }
}
