//! Counter families, each declared once.
//!
//! A family is a block of counters with one writer per block (a queue's
//! worker, a hop's chain task, a recorder's writer thread...). Its
//! declaration in [`crate::counters`] (a [`counter_family!`] invocation)
//! is the only place that lists its counters; from it follow:
//!
//! - the block in the segment (`repr(C)`, field order = layout order),
//! - `clear` (zeroes every counter: none can be forgotten),
//! - the plain values (`*Counts`) a snapshot carries, read or summed over
//!   writers,
//! - [`Family::fields`]: per counter its Prometheus families (name, help,
//!   type, an extra label) and the CLI column header, as data the sidecar's
//!   `/metrics` and taplinectl render from,
//! - for the hop family, the proto mapping: [`crate::hop_counter_fields!`]
//!   hands the field list to a macro of the sidecar's, which builds
//!   `v1::HopStats` from it (a counter missing from the `.proto`, or a proto
//!   field missing from the family, does not compile).
//!
//! To add a hop counter: add a line to `hop_counter_fields!` (name, doc,
//! metric, column), the field to `HopStats` in `stats.proto`, and count it
//! where it happens. The layout version stays while the block has room
//! (blocks are whole cache lines; the layout tests say when it grows).

use crate::counter::Counter;
use crate::counters::DROP_SLOTS;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    /// The word of the text format's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// Which slots of a family a metric describes (the output family's slots
/// are groups, members and recorder stages, with metrics of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every slot of the family.
    All,
    /// Output group slots.
    Group,
    /// Output group member slots.
    Member,
    /// Recorder filter stage slots.
    RecorderStage,
}

/// One Prometheus family a counter feeds. Consecutive counters with the
/// same `name` and a `label` make one family, one series per counter
/// (`tapline_hop_heartbeat_results_total{result=...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub scope: Scope,
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// A label (name, value) this counter's series carry besides the
    /// family's; a drop counter's `reason` label is implied by its value
    /// ([`Value::ByReason`]).
    pub label: Option<(&'static str, &'static str)>,
}

impl Metric {
    /// A counter of every slot of the family.
    pub const fn counter(name: &'static str, help: &'static str) -> Metric {
        Metric {
            scope: Scope::All,
            name,
            help,
            kind: MetricType::Counter,
            label: None,
        }
    }

    /// The same, for the slots of `scope` only.
    pub const fn scoped(self, scope: Scope) -> Metric {
        Metric { scope, ..self }
    }

    /// The same, with a label of its own.
    pub const fn labelled(self, name: &'static str, value: &'static str) -> Metric {
        Metric {
            label: Some((name, value)),
            ..self
        }
    }
}

/// A label of a family's series: its name, and whether a series leaves it
/// out when its value is empty (a tool port's `hop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub name: &'static str,
    pub optional: bool,
}

impl Label {
    pub const fn new(name: &'static str) -> Label {
        Label {
            name,
            optional: false,
        }
    }

    pub const fn optional(name: &'static str) -> Label {
        Label {
            name,
            optional: true,
        }
    }
}

/// What a counter field holds in the plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    One(u64),
    /// Counts by drop reason (`DropReason` or `OutputDropReason` as index).
    ByReason(&'a [u64; DROP_SLOTS]),
    /// A nested family (the port's kernel counters): see its own fields.
    Nested,
}

/// One counter field of a family, as data.
#[derive(Debug, Clone, Copy)]
pub struct Field<V: 'static> {
    /// The field's name (in the block, the values and the proto message).
    pub name: &'static str,
    /// The Prometheus families it feeds (none: exported otherwise or not
    /// at all, such as a timestamp).
    pub metrics: &'static [Metric],
    /// Its CLI column header (`>` first: right-aligned), if the CLI shows it.
    pub column: Option<&'static str>,
    /// Its value in a family's plain values.
    pub get: for<'a> fn(&'a V) -> Value<'a>,
}

/// A family's description: the labels of its series and its fields.
#[derive(Debug, Clone, Copy)]
pub struct Family<V: 'static> {
    pub labels: &'static [Label],
    pub fields: &'static [Field<V>],
}

impl<V> Family<V> {
    /// (field, header) of the fields the CLI shows, in column order.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.fields
            .iter()
            .filter_map(|f| f.column.map(|c| (f.name, c)))
    }
}

/// What a field of a counter block is: one counter, counters by drop
/// reason, or a nested family block. Gives its plain value, sums it over
/// writers and clears it.
pub trait CounterField {
    type Value: Copy + Default + PartialEq + Eq + std::fmt::Debug;
    fn value(&self) -> Self::Value;
    fn add_to(&self, acc: &mut Self::Value);
    fn clear(&self);
    fn view(v: &Self::Value) -> Value<'_>;
}

impl CounterField for Counter {
    type Value = u64;
    fn value(&self) -> u64 {
        self.get()
    }
    fn add_to(&self, acc: &mut u64) {
        *acc = acc.wrapping_add(self.get());
    }
    fn clear(&self) {
        self.set(0);
    }
    fn view(v: &u64) -> Value<'_> {
        Value::One(*v)
    }
}

impl CounterField for [Counter; DROP_SLOTS] {
    type Value = [u64; DROP_SLOTS];
    fn value(&self) -> [u64; DROP_SLOTS] {
        std::array::from_fn(|i| self[i].get())
    }
    fn add_to(&self, acc: &mut [u64; DROP_SLOTS]) {
        for (a, c) in acc.iter_mut().zip(self) {
            *a = a.wrapping_add(c.get());
        }
    }
    fn clear(&self) {
        for c in self {
            c.set(0);
        }
    }
    fn view(v: &[u64; DROP_SLOTS]) -> Value<'_> {
        Value::ByReason(v)
    }
}

/// Declares a counter family: the block, its plain values, `clear`, and
/// the family's description (see the module documentation).
///
/// ```text
/// counter_family! {
///     /// Block docs.
///     #[repr(C, align(64))]
///     block HopCounters => values HopCounts, family HOP, labels [Label::new("hop")];
///     /// Field docs.
///     to_tool_packets: Counter = metrics [Metric::counter("name", "help")], column ">TO TOOL";
///     to_tool_bytes: Counter = metrics [...], column none;
/// }
/// ```
#[macro_export]
macro_rules! counter_family {
    (
        $(#[$bm:meta])*
        block $block:ident => values $values:ident, family $family:ident, labels [$($label:expr),* $(,)?];
        $(
            $(#[$fm:meta])*
            $f:ident : $t:ty = metrics [$($metric:expr),* $(,)?], column $col:tt;
        )*
    ) => {
        $(#[$bm])*
        #[derive(Debug, Default)]
        pub struct $block {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl $block {
            /// Zeroes every counter of the block (only while its writer
            /// does not count).
            pub fn clear(&self) {
                $( $crate::families::CounterField::clear(&self.$f); )*
            }

            /// The block's values.
            pub fn values(&self) -> $values {
                $values { $( $f: $crate::families::CounterField::value(&self.$f), )* }
            }

            /// Adds the block's values to `acc` (summing the blocks of a
            /// slot's writers).
            pub fn add_to(&self, acc: &mut $values) {
                $( $crate::families::CounterField::add_to(&self.$f, &mut acc.$f); )*
            }
        }

        #[doc = concat!("Plain values of a [`", stringify!($block), "`] block.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $values {
            $( $(#[$fm])* pub $f: <$t as $crate::families::CounterField>::Value, )*
        }

        impl $crate::families::CounterField for $block {
            type Value = $values;
            fn value(&self) -> $values {
                $block::values(self)
            }
            fn add_to(&self, acc: &mut $values) {
                $block::add_to(self, acc)
            }
            fn clear(&self) {
                $block::clear(self)
            }
            fn view(_: &$values) -> $crate::families::Value<'_> {
                $crate::families::Value::Nested
            }
        }

        #[doc = concat!("The description of the [`", stringify!($block), "`] family.")]
        pub const $family: $crate::families::Family<$values> = $crate::families::Family {
            labels: &[$($label),*],
            fields: &[
                $(
                    $crate::families::Field {
                        name: stringify!($f),
                        metrics: &[$($metric),*],
                        column: $crate::counter_family!(@col $col),
                        get: |v: &$values| {
                            <$t as $crate::families::CounterField>::view(&v.$f)
                        },
                    },
                )*
            ],
        };
    };
    (@col none) => { None };
    (@col $c:literal) => { Some($c) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{
        HopCounts, KernelCounts, OutputCounts, PortCounts, RecorderCounts, TapCounts, HOP, KERNEL,
        OUTPUT, PORT, RECORDER, TAP,
    };
    use crate::{Layout, StatsSegment};
    use std::collections::BTreeSet;

    /// Field names of a values struct, from its `Debug` output.
    fn debug_fields(debug: &str) -> Vec<String> {
        let inner = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
        let mut names = Vec::new();
        let mut depth = 0;
        let mut token = String::new();
        for c in inner.chars() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                ':' if depth == 0 && !token.trim().is_empty() => {
                    names.push(token.trim().trim_start_matches(',').trim().to_string());
                    token.clear();
                    continue;
                }
                ',' if depth == 0 => token.clear(),
                _ => {}
            }
            if depth == 0 && c != ',' && c != '}' && c != ']' {
                token.push(c);
            } else if depth > 0 {
                token.clear();
            }
        }
        names
    }

    fn names<V>(f: &Family<V>) -> Vec<String> {
        f.fields.iter().map(|f| f.name.to_string()).collect()
    }

    #[test]
    fn descriptions_list_every_field_in_layout_order() {
        assert_eq!(
            names(&PORT),
            debug_fields(&format!("{:?}", PortCounts::default()))
        );
        assert_eq!(
            names(&KERNEL),
            debug_fields(&format!("{:?}", KernelCounts::default()))
        );
        assert_eq!(
            names(&HOP),
            debug_fields(&format!("{:?}", HopCounts::default()))
        );
        assert_eq!(
            names(&OUTPUT),
            debug_fields(&format!("{:?}", OutputCounts::default()))
        );
        assert_eq!(
            names(&RECORDER),
            debug_fields(&format!("{:?}", RecorderCounts::default()))
        );
        assert_eq!(
            names(&TAP),
            debug_fields(&format!("{:?}", TapCounts::default()))
        );
    }

    /// Every series is named once: a (family, extra label, scope) appears
    /// in one field only, counters end in `_total`, consecutive fields
    /// share a family only with a label of their own.
    #[test]
    fn metric_families_are_unique_and_well_named() {
        let mut seen = BTreeSet::new();
        let mut check = |fields: Vec<(&'static str, &'static [Metric])>| {
            let mut previous: Option<&Metric> = None;
            for (field, metrics) in fields {
                for m in metrics {
                    assert!(m.name.starts_with("tapline_"), "{field}: {}", m.name);
                    assert_eq!(m.kind, MetricType::Counter, "{field}");
                    assert!(m.name.ends_with("_total"), "{field}: {}", m.name);
                    assert!(
                        seen.insert((m.name, m.label, format!("{:?}", m.scope))),
                        "{} declared twice",
                        m.name
                    );
                    if let Some(p) = previous.filter(|p| p.name == m.name) {
                        assert!(p.label.is_some() && m.label.is_some(), "{}", m.name);
                        assert_eq!(p.help, m.help, "{}", m.name);
                    }
                    previous = Some(m);
                }
            }
        };
        check(PORT.fields.iter().map(|f| (f.name, f.metrics)).collect());
        check(KERNEL.fields.iter().map(|f| (f.name, f.metrics)).collect());
        check(HOP.fields.iter().map(|f| (f.name, f.metrics)).collect());
        check(OUTPUT.fields.iter().map(|f| (f.name, f.metrics)).collect());
        check(
            RECORDER
                .fields
                .iter()
                .map(|f| (f.name, f.metrics))
                .collect(),
        );
        check(TAP.fields.iter().map(|f| (f.name, f.metrics)).collect());
        // Every counter of every family is exported, but the recorder's
        // error time (a gauge of its own) and the port's nested kernel block.
        let unexported: Vec<&str> = [
            PORT.fields
                .iter()
                .map(|f| (f.name, f.metrics))
                .collect::<Vec<_>>(),
            KERNEL.fields.iter().map(|f| (f.name, f.metrics)).collect(),
            HOP.fields.iter().map(|f| (f.name, f.metrics)).collect(),
            RECORDER
                .fields
                .iter()
                .map(|f| (f.name, f.metrics))
                .collect(),
            TAP.fields.iter().map(|f| (f.name, f.metrics)).collect(),
        ]
        .concat()
        .into_iter()
        .filter(|(_, m)| m.is_empty())
        .map(|(n, _)| n)
        .collect();
        assert_eq!(unexported, ["kernel", "last_error_unix_ns"]);
    }

    #[test]
    fn cli_columns_are_data() {
        assert_eq!(
            HOP.columns().collect::<Vec<_>>(),
            [
                ("to_tool_packets", ">TO TOOL"),
                ("from_tool_packets", ">FROM TOOL"),
                ("bypassed_packets", ">BYPASSED"),
                ("drops", ">DROPS"),
                ("heartbeats_sent", ">HB SENT"),
                ("heartbeats_returned", ">HB RETURNED"),
                ("heartbeats_lost", ">HB LOST"),
            ]
        );
        assert_eq!(
            PORT.columns().map(|(_, h)| h).collect::<Vec<_>>(),
            [
                ">RX PACKETS",
                ">RX BYTES",
                ">TX PACKETS",
                ">TX BYTES",
                ">DROPS",
                ">KERNEL DROPS"
            ]
        );
        assert_eq!(
            TAP.columns().map(|(_, h)| h).collect::<Vec<_>>(),
            [">MATCHED", ">SENT", ">LOST"]
        );
    }

    /// With every word of a segment non-zero, `clear` (and the writer's
    /// clearing calls) leave every counter of the family at zero: no field
    /// can be forgotten.
    #[test]
    fn clear_zeroes_every_counter_of_every_family() {
        let seg = StatsSegment::in_memory_with(&Layout {
            n_queues: 1,
            n_workers: 1,
            max_hops: 1,
            n_hop_writers: 2,
            n_outputs: 1,
            n_output_writers: 1,
            max_recorders: 1,
            max_taps: 1,
        });
        // Even: the sequence words too, as a writer leaves them.
        for w in seg.m.map.words() {
            w.set(2);
        }
        let q = seg.queue_slot(0);
        let hops = [seg.hop_slot(0, 0), seg.hop_slot(0, 1)];
        let (o, r, t) = (seg.output_slot(0, 0), seg.recorder_slot(0), seg.tap_slot(0));
        assert_ne!(q.values(), PortCounts::default());
        assert_ne!(hops[1].values(), HopCounts::default());
        assert_ne!(r.disk.values(), RecorderCounts::default());
        seg.clear_queue(0);
        seg.clear_hop(0);
        o.clear();
        r.disk.clear();
        t.start(1, "passive-1 rx", "");
        assert_eq!(q.values(), PortCounts::default());
        for h in &hops {
            assert_eq!(h.values(), HopCounts::default());
        }
        assert_eq!(o.values(), OutputCounts::default());
        assert_eq!(r.disk.values(), RecorderCounts::default());
        assert_eq!(t.stream.values(), TapCounts::default());
        let lat = seg.hop_latency_slot(0);
        assert_eq!(lat.histogram().unwrap().count, 0);
    }

    #[test]
    fn values_of_writers_add_up() {
        let seg = StatsSegment::in_memory_with(&Layout {
            max_hops: 1,
            n_hop_writers: 2,
            ..Layout::default()
        });
        seg.hop_slot(0, 0).to_tool_packets.add(3);
        seg.hop_slot(0, 1).to_tool_packets.add(4);
        seg.hop_slot(0, 1).drops[2].add(5);
        let mut sum = HopCounts::default();
        seg.hop_slot(0, 0).add_to(&mut sum);
        seg.hop_slot(0, 1).add_to(&mut sum);
        assert_eq!(sum.to_tool_packets, 7);
        assert_eq!(sum.drops[2], 5);
        assert!(matches!((HOP.fields[6].get)(&sum), Value::ByReason(d) if d[2] == 5));
        assert_eq!((HOP.fields[0].get)(&sum), Value::One(7));
    }
}
