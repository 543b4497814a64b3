//! Passive outputs in `tapline.v1.Stats`: output groups with their
//! members, recorders (filter stage and disk side) and live taps.

use tapline_proto::v1;
use tapline_segment::{OutputKind, OutputSnapshot, RecorderSnapshot, Snapshot, TapSnapshot};

use super::{
    increase, output_drop_reason_name, output_drops_by_reason, sum, timestamp_opt, DROP_SLOTS,
};

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
pub(super) fn output_groups(
    snap: &Snapshot,
    prev: Option<&Snapshot>,
    secs: f64,
) -> Vec<v1::OutputGroupStats> {
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
pub(super) fn recorders(
    snap: &Snapshot,
    prev: Option<&Snapshot>,
    secs: f64,
) -> Vec<v1::RecorderStats> {
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
pub(super) fn taps(snap: &Snapshot, prev: Option<&Snapshot>, secs: f64) -> Vec<v1::TapStats> {
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
