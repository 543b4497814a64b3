//! Live taps: copies of the packets seen at one point of the dataplane,
//! streamed to a client of the command socket (the sidecar's `Admin.Tap`).
//!
//! Three parties, none of which ever waits for another:
//!
//! ```text
//!   control thread            worker threads                 tap thread (tapline-tap-N)
//!   --------------            --------------                 ----------------------------
//!   TapPlan::new: point ->    TapPort::refresh() per batch:  pops records, batches them
//!   ifname, filter, caps      one Relaxed load of the        (256 packets / 256 KiB /
//!   TapRegistry::start() ---> generation; on a change, the   50 ms), writes them to the
//!     (generation + 1)        taps of its interface          connection; ends the tap on
//!                             offer_rx/offer_tx: filter,     a limit, a removed point, a
//!                             sampling, limit, copy into a   stopping dataplane or a
//!                             recycled buffer, push -------> closed connection
//!                             (queue full: count `lost`)     TapRegistry::remove/release
//! ```
//!
//! The worker side is lossy and bounded: every tap owns `tap.queue_packets`
//! buffers, allocated when it starts; a worker takes a free buffer, copies
//! at most the snap length into it and queues it; the tap thread hands the
//! buffer back once the packet is encoded. When no buffer is free the
//! packet is counted in `lost` and dropped: a slow client costs the data
//! path one failed queue pop, never a wait and never memory.
//!
//! The worker never blocks on the registry either: the list of taps sits
//! behind a lock that workers only `try_read` (a worker that finds it taken
//! tries again at its next batch), and the generation counter tells them
//! when to look at all.
//!
//! Counting, per tap (in the stats segment's tap block): `matched` counts
//! packets that passed the filter and the sampling while the tap admitted
//! packets (the packet limit not yet reached); each of them is either
//! `sent` to the client or `lost`. At the end the tap thread reports
//! `lost = matched - sent`, so a client always sees
//! `sent + lost == matched`.
//!
//! Direction at a port: RX is what the dataplane received on that
//! interface, TX what it queued for transmission on it (after the chain's
//! routing, so a frame dropped for a full TX ring is not in TX). The
//! dataplane's own heartbeats are not shown: returning heartbeats are taken
//! out of the stream before RX taps see it, and heartbeats the dataplane
//! sends do not go through the forwarding path.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use prost::bytes::{Bytes, BytesMut};
use tapline_proto::v1;
use tapline_proto::wire;

use tapline_config::tap::TapSettings;
use tapline_packet::filter::{Filter, FilterError};
use tapline_packet::packet::Packet;
use tapline_segment::{Slot, StatsSegment, TapCounters};

/// `google.rpc.Code` numbers of the errors a tap request can get (the
/// crate's one table, [`crate::status`]).
pub use crate::status as code;

/// pcap's LINKTYPE_ETHERNET: what `TapPacket.data` holds.
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;

/// A batch is written when it holds this many packets...
pub(crate) const BATCH_PACKETS: usize = 256;
/// ... or this many bytes of packet data...
pub(crate) const BATCH_BYTES: usize = 256 << 10;
/// ... or when its first packet has waited this long.
pub(crate) const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How long the tap thread sleeps when its queue is empty.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// How often the tap thread checks whether the client closed the
/// connection (a cancelled tap is freed within this).
const CLOSE_CHECK: Duration = Duration::from_millis(10);
/// A client (the sidecar) that takes no data for this long is gone: the tap
/// ends. The sidecar reads continuously, whatever its own clients do.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest buffer preallocated per queued packet; longer packets (at most
/// a UMEM frame) grow their buffer once, which then stays grown.
const MAX_PREALLOC_BYTES: usize = 4096;

/// Why a tap cannot start: each variant is one gRPC status ([`TapError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("point is required: a port (\"passive-1\", \"inline-1\", \"inline-2\") or a hop side")]
    NoPoint,
    #[error("point.port {0:?} is not a port role: use \"passive-1\", \"inline-1\" or \"inline-2\" (or point.hop for a tool)")]
    UnknownRole(String),
    #[error("{role} is not configured ([interfaces] {role}): nothing to tap there")]
    NotConfigured { role: &'static str },
    #[error("point.hop.hop is empty: name a hop of the applied chain")]
    NoHopName,
    #[error("no hop {hop:?} in the applied chain (hops: {known})")]
    UnknownHop { hop: String, known: String },
    #[error("point.hop.side is required: HOP_SIDE_A (the side facing inline-1) or HOP_SIDE_B")]
    NoSide,
    #[error("point.direction {0} is not a direction: use RX, TX or BOTH")]
    BadDirection(i32),
    #[error("passive-1 only receives: tap it with direction RX (or leave the direction unset)")]
    PassiveTx,
    #[error("filter: {0}")]
    Filter(FilterError),
    #[error("taps are disabled (tap.max_concurrent = 0)")]
    Disabled,
    #[error("{running} taps are running, the most tap.max_concurrent allows: wait for one to end")]
    TooMany { running: usize },
}

impl TapError {
    /// The `google.rpc.Code` the caller gets.
    pub fn code(&self) -> i32 {
        match self {
            TapError::NotConfigured { .. } | TapError::UnknownHop { .. } => code::NOT_FOUND,
            TapError::TooMany { .. } => code::RESOURCE_EXHAUSTED,
            TapError::Disabled => code::FAILED_PRECONDITION,
            _ => code::INVALID_ARGUMENT,
        }
    }
}

/// Received or transmitted at the tap point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Rx,
    Tx,
}

impl Direction {
    fn to_proto(self) -> v1::TapDirection {
        match self {
            Direction::Rx => v1::TapDirection::Rx,
            Direction::Tx => v1::TapDirection::Tx,
        }
    }
}

/// The configured ports, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortNames {
    pub passive: Option<String>,
    /// inline-1, inline-2.
    pub inline: Option<(String, String)>,
}

/// A hop of the applied chain, as a tap point sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopPorts {
    pub name: String,
    pub a: String,
    pub b: String,
}

/// A tap point resolved to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPoint {
    /// For people and the stats segment: `inline-1 rx`, `ids/a tx`.
    pub label: String,
    pub ifname: String,
    pub rx: bool,
    pub tx: bool,
    /// The hop, when the point is one of its sides: the tap ends when the
    /// hop leaves the chain (or moves to other interfaces).
    pub hop: Option<String>,
    /// The point as the client asked for it, the direction made explicit.
    pub proto: v1::TapPoint,
}

/// Resolves `point` against the configured ports and the applied chain.
pub(crate) fn resolve(
    point: Option<&v1::TapPoint>,
    ports: &PortNames,
    hops: &[HopPorts],
) -> Result<ResolvedPoint, TapError> {
    use v1::tap_point::Location;
    let point = point.ok_or(TapError::NoPoint)?;
    let location = point.location.as_ref().ok_or(TapError::NoPoint)?;
    let unset = point.direction == v1::TapDirection::Unspecified as i32;
    let passive = matches!(location, Location::Port(r) if r == "passive-1");
    let (rx, tx) = match v1::TapDirection::try_from(point.direction) {
        // Unset means "both", which at passive-1 is what it receives.
        Ok(v1::TapDirection::Unspecified) if passive => (true, false),
        Ok(v1::TapDirection::Unspecified | v1::TapDirection::Both) => (true, true),
        Ok(v1::TapDirection::Rx) => (true, false),
        Ok(v1::TapDirection::Tx) => (false, true),
        Err(_) => return Err(TapError::BadDirection(point.direction)),
    };
    let (dir, explicit) = match (rx, tx) {
        (true, true) => ("both", v1::TapDirection::Both),
        (true, false) => ("rx", v1::TapDirection::Rx),
        _ => ("tx", v1::TapDirection::Tx),
    };
    let mut proto = point.clone();
    if unset {
        proto.direction = explicit.into();
    }
    match location {
        Location::Port(role) => {
            let (role, ifname): (&'static str, Option<&String>) = match role.as_str() {
                "passive-1" => ("passive-1", ports.passive.as_ref()),
                "inline-1" => ("inline-1", ports.inline.as_ref().map(|p| &p.0)),
                "inline-2" => ("inline-2", ports.inline.as_ref().map(|p| &p.1)),
                other => return Err(TapError::UnknownRole(other.to_string())),
            };
            if role == "passive-1" && tx {
                return Err(TapError::PassiveTx);
            }
            let ifname = ifname.ok_or(TapError::NotConfigured { role })?;
            Ok(ResolvedPoint {
                label: format!("{role} {dir}"),
                ifname: ifname.clone(),
                rx,
                tx,
                hop: None,
                proto,
            })
        }
        Location::Hop(h) => {
            if h.hop.is_empty() {
                return Err(TapError::NoHopName);
            }
            let side_b = match v1::HopSide::try_from(h.side) {
                Ok(v1::HopSide::A) => false,
                Ok(v1::HopSide::B) => true,
                _ => return Err(TapError::NoSide),
            };
            let Some(hop) = hops.iter().find(|x| x.name == h.hop) else {
                let known: Vec<&str> = hops.iter().map(|x| x.name.as_str()).collect();
                return Err(TapError::UnknownHop {
                    hop: h.hop.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            };
            Ok(ResolvedPoint {
                label: format!("{}/{} {dir}", hop.name, if side_b { "b" } else { "a" }),
                ifname: if side_b { hop.b.clone() } else { hop.a.clone() },
                rx,
                tx,
                hop: Some(hop.name.clone()),
                proto,
            })
        }
    }
}

/// A request checked and capped: what a tap will do.
#[derive(Debug, Clone)]
pub struct TapPlan {
    pub point: ResolvedPoint,
    /// `None`: every packet.
    pub filter: Option<Filter>,
    /// The expression as given (empty: every packet).
    pub filter_expr: String,
    pub snaplen: u32,
    /// 1: every matching packet.
    pub sample_one_in: u32,
    /// 0: no limit.
    pub max_packets: u64,
    pub max_duration: Duration,
}

impl TapPlan {
    /// Checks `req` and applies the caps of `settings`.
    pub fn new(
        req: &v1::TapRequest,
        settings: &TapSettings,
        ports: &PortNames,
        hops: &[HopPorts],
    ) -> Result<TapPlan, TapError> {
        let point = resolve(req.point.as_ref(), ports, hops)?;
        let filter = if req.filter.trim().is_empty() {
            None
        } else {
            let f = Filter::compile(&req.filter).map_err(TapError::Filter)?;
            (!f.is_match_all()).then_some(f)
        };
        let snaplen = match req.snap_length_bytes {
            0 => settings.default_snaplen,
            n => n.min(settings.max_snaplen),
        };
        let cap_ms = settings.max_duration.as_millis() as u64;
        let duration_ms = match req.max_duration_ms {
            0 => cap_ms,
            n => n.min(cap_ms),
        };
        Ok(TapPlan {
            point,
            filter,
            filter_expr: req.filter.clone(),
            snaplen,
            sample_one_in: req.sample_one_in.max(1),
            max_packets: req.max_packets,
            max_duration: Duration::from_millis(duration_ms),
        })
    }

    /// The `started` message of this plan.
    pub fn started(&self) -> v1::TapStarted {
        v1::TapStarted {
            point: Some(self.point.proto.clone()),
            ifname: self.point.ifname.clone(),
            filter: self.filter_expr.clone(),
            snap_length_bytes: self.snaplen,
            sample_one_in: self.sample_one_in,
            max_packets: self.max_packets,
            max_duration_ms: self.max_duration.as_millis() as u64,
            link_type: LINKTYPE_ETHERNET,
        }
    }
}

/// One copied packet, on its way from a worker to the tap thread.
#[derive(Debug)]
pub struct TapRecord {
    pub ts_unix_ns: u64,
    /// Length of the whole frame.
    pub orig_len: u32,
    pub direction: Direction,
    pub queue: u32,
    /// The first `min(orig_len, snaplen)` bytes.
    pub data: Vec<u8>,
}

/// Why the control side wants a tap to end (`Tap::end_request`).
const END_NONE: u8 = 0;
const END_POINT_REMOVED: u8 = 1;
const END_DATAPLANE_STOPPED: u8 = 2;

/// A running tap, shared by the workers that feed it and its tap thread.
#[derive(Debug)]
pub struct Tap {
    id: u64,
    slot: usize,
    ifname: String,
    rx: bool,
    tx: bool,
    hop: Option<String>,
    filter: Option<Filter>,
    snaplen: usize,
    sample_one_in: u32,
    max_packets: u64,
    /// Packets queued so far (the packet limit counts these): a worker
    /// reserves one before it queues and gives it back if it cannot.
    admitted: AtomicU64,
    /// Set when the tap stops taking packets (its tap thread is ending).
    closed: AtomicBool,
    /// `END_*`: set by the control thread, read by the tap thread.
    end_request: AtomicU8,
    records: ArrayQueue<TapRecord>,
    free: ArrayQueue<Vec<u8>>,
    counters: Slot<TapCounters>,
}

impl Tap {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn counters(&self) -> &TapCounters {
        &self.counters
    }

    /// Takes one packet that passed the filter and the sampling.
    fn admit(&self, dir: Direction, queue: u32, frame: &[u8], ts_unix_ns: u64) {
        if self.max_packets > 0
            && self
                .admitted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.max_packets).then_some(n + 1)
                })
                .is_err()
        {
            // The limit is reached: the tap thread ends the tap once the
            // last of these packets is sent.
            return;
        }
        self.counters.matched.add_shared(1);
        let Some(mut data) = self.free.pop() else {
            self.lose();
            return;
        };
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(self.snaplen)]);
        let rec = TapRecord {
            ts_unix_ns,
            orig_len: frame.len() as u32,
            direction: dir,
            queue,
            data,
        };
        if let Err(rec) = self.records.push(rec) {
            // Cannot happen while every buffer is either free or queued
            // (the queue holds them all); kept lossy all the same.
            let _ = self.free.push(rec.data);
            self.lose();
        }
    }

    fn lose(&self) {
        self.counters.lost.add_shared(1);
        if self.max_packets > 0 {
            self.admitted.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes the oldest queued packet (tap thread).
    pub fn pop(&self) -> Option<TapRecord> {
        self.records.pop()
    }

    /// Hands a packet's buffer back for reuse (tap thread).
    pub(crate) fn recycle(&self, data: Vec<u8>) {
        let _ = self.free.push(data);
    }
}

/// The taps of interest to workers, and the generation that tells them
/// when it changed.
#[derive(Debug, Default)]
struct Running {
    taps: Vec<Arc<Tap>>,
    /// By slot: taken (from start to release).
    used: Vec<bool>,
}

/// Every running tap. Shared (`Arc`) by the control thread, the tap threads
/// and the workers' [`TapPort`]s.
#[derive(Debug)]
pub struct TapRegistry {
    /// Bumped (under the write lock) on every start and removal.
    generation: AtomicU64,
    running: RwLock<Running>,
    slots: Vec<Slot<TapCounters>>,
    settings: TapSettings,
    prealloc_bytes: usize,
    next_id: AtomicU64,
}

impl TapRegistry {
    /// A registry with at most `settings.max_concurrent` taps, each counted
    /// in one of `segment`'s tap blocks (its layout's `max_taps` bounds the
    /// count too). `frame_bytes` (the UMEM frame size) sizes the buffers.
    pub fn new(
        settings: TapSettings,
        segment: &Arc<StatsSegment>,
        frame_bytes: u32,
    ) -> Arc<TapRegistry> {
        let n = settings.max_concurrent.min(segment.layout().max_taps);
        let slots: Vec<Slot<TapCounters>> = (0..n).map(|i| segment.tap_slot(i)).collect();
        Arc::new(TapRegistry {
            generation: AtomicU64::new(0),
            running: RwLock::new(Running {
                taps: Vec::new(),
                used: vec![false; n],
            }),
            slots,
            prealloc_bytes: (frame_bytes as usize).min(MAX_PREALLOC_BYTES),
            settings,
            next_id: AtomicU64::new(1),
        })
    }

    /// A registry that runs no tap (tests and benchmarks of the data path).
    pub fn disabled() -> Arc<TapRegistry> {
        let settings = TapSettings {
            max_concurrent: 0,
            ..TapSettings::default()
        };
        TapRegistry::new(settings, &StatsSegment::in_memory(0, 0), 0)
    }

    pub fn settings(&self) -> &TapSettings {
        &self.settings
    }

    /// The generation: changes whenever a tap starts or is removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Taps holding a slot (running, or ending).
    pub fn count(&self) -> usize {
        self.read().used.iter().filter(|u| **u).count()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Running> {
        self.running.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Running> {
        self.running.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a tap: allocates its buffers, takes a stats block and makes it
    /// visible to the workers (from their next batch on).
    pub fn start(&self, plan: &TapPlan) -> Result<Arc<Tap>, TapError> {
        if self.slots.is_empty() {
            return Err(TapError::Disabled);
        }
        let slot = {
            let r = self.read();
            let Some(i) = r.used.iter().position(|u| !*u) else {
                return Err(TapError::TooMany {
                    running: r.used.len(),
                });
            };
            i
        };
        // Buffers are allocated here, outside the lock.
        let queue = self.settings.queue_packets.max(1);
        let free = ArrayQueue::new(queue);
        let cap = (plan.snaplen as usize).min(self.prealloc_bytes);
        for _ in 0..queue {
            let _ = free.push(Vec::with_capacity(cap));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tap = Arc::new(Tap {
            id,
            slot,
            ifname: plan.point.ifname.clone(),
            rx: plan.point.rx,
            tx: plan.point.tx,
            hop: plan.point.hop.clone(),
            filter: plan.filter.clone(),
            snaplen: plan.snaplen as usize,
            sample_one_in: plan.sample_one_in.max(1),
            max_packets: plan.max_packets,
            admitted: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            end_request: AtomicU8::new(END_NONE),
            records: ArrayQueue::new(queue),
            free,
            counters: self.slots[slot].clone(),
        });
        let mut w = self.write();
        if w.used[slot] {
            // Taken meanwhile by another start (only the control thread
            // starts taps, so this is a guard, not a path).
            return Err(TapError::TooMany {
                running: w.used.len(),
            });
        }
        w.used[slot] = true;
        tap.counters
            .start(id, &plan.point.label, plan.filter_expr.trim());
        w.taps.push(tap.clone());
        // Under the lock: a worker that reads the list under its read lock
        // sees exactly the generation of that list.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(tap)
    }

    /// Stops feeding `tap`: workers drop it at their next batch. Idempotent.
    pub fn remove(&self, tap: &Arc<Tap>) {
        tap.closed.store(true, Ordering::Relaxed);
        let mut w = self.write();
        let before = w.taps.len();
        w.taps.retain(|t| !Arc::ptr_eq(t, tap));
        if w.taps.len() != before {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Frees `tap`'s stats block and slot (after its last message).
    pub fn release(&self, tap: &Tap) {
        tap.counters.end();
        let mut w = self.write();
        if let Some(u) = w.used.get_mut(tap.slot) {
            *u = false;
        }
    }

    /// Asks the taps on hop sides for which `still_there(hop, ifname)` is
    /// false to end with `POINT_REMOVED` (after a chain change).
    pub(crate) fn end_removed_points(&self, still_there: impl Fn(&str, &str) -> bool) {
        for t in self.read().taps.iter() {
            if let Some(hop) = &t.hop {
                if !still_there(hop, &t.ifname) {
                    let _ = t.end_request.compare_exchange(
                        END_NONE,
                        END_POINT_REMOVED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
        }
    }

    /// Asks every tap to end with `DATAPLANE_STOPPED`.
    pub fn shutdown(&self) {
        for t in self.read().taps.iter() {
            t.end_request
                .store(END_DATAPLANE_STOPPED, Ordering::Relaxed);
        }
    }
}

mod port;
pub use port::TapPort;
mod stream;
pub use stream::{stream, TapOutcome, TapSink};

#[cfg(test)]
mod tests;
