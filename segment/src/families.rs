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
