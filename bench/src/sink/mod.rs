//! The sink: counts what a generator's test frames became on the way
//! (received, lost, reordered, duplicated) and their one-way latency.
//!
//! Two layers:
//!
//! - [`SeqTracker`], pure accounting over parsed [`TestHeader`]s: per stream
//!   a sliding bitmap of the last [`SEQ_WINDOW`] sequence numbers, and one
//!   hdrhistogram of one-way latency (receive time minus the send timestamp,
//!   both CLOCK_MONOTONIC on the same host). Unit-tested without a kernel.
//! - [`xdp_sink`], an AF_XDP receive loop on the dataplane's own engine
//!   (`Interface::open` + `QueueGroup::open` RX-only + `consume_into_fill`)
//!   that feeds the tracker.
//!
//! Attaching XDP to the sink interface changes the lab it measures: on a
//! veth with an XDP program, frames from the peer no longer go straight to
//! the receiving stack (`veth_xmit` -> `netif_rx`) but through the sink
//! veth's NAPI ring (256 entries, `VETH_RING_SIZE`) and the program, which
//! redirects them to the socket in copy mode. Loss at the sink's own ring
//! shows up as the kernel counters in [`SinkReport::kernel`] and as the
//! peer's TX drops; a DUT's own transmit path is unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use tapline_config::xdp::{Geometry, RingSizes, XdpMode};
use tapline_dataplane::xdp::{FramePool, Interface, Member, QueueGroup, XskSocket};

use crate::traffic::{monotonic_ns, parse_test_header, TestHeader, WireSeq};

/// Sequence numbers each stream remembers behind its highest one. A frame
/// within the window is classified exactly (new, reordered or duplicate);
/// one further behind is counted as [`StreamReport::late`] only, because
/// whether it is a duplicate can no longer be known: it stays counted as
/// lost. 65,536 sequences are 65 ms at 1 Mpps, 8 KiB per stream.
pub const SEQ_WINDOW: u64 = 1 << 16;
const WINDOW_WORDS: usize = (SEQ_WINDOW / 64) as usize;
/// Streams tracked at most; frames of further streams are only counted
/// ([`SinkReport::untracked`]), so garbage cannot grow the sink's memory.
pub const MAX_STREAMS: usize = 1024;
/// Largest latency the histogram resolves; larger values are recorded as
/// this (the exact maximum is kept separately).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Significant digits of the latency histogram (0.1% resolution).
const LATENCY_SIGFIGS: u8 = 3;
/// The percentiles of [`LatencyReport::cdf`]: even steps through the body
/// of the distribution and ever finer ones into the tail, where latency
/// curves bend, so a line through them draws a smooth CDF from a few dozen
/// points (a JSON result stays small however many frames were measured).
pub const CDF_PERCENTILES: [f64; 32] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0,
    70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95, 99.99,
    100.0,
];

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Above every sequence seen so far (possibly after a gap).
    InOrder,
    /// Below the highest sequence seen, and not seen before: fills a gap.
    Reordered,
    /// Seen before.
    Duplicate,
    /// More than [`SEQ_WINDOW`] behind the highest sequence.
    Late,
    /// Its stream is beyond [`MAX_STREAMS`].
    Untracked,
}

/// One stream's sequence accounting.
#[derive(Debug)]
struct StreamState {
    id: u32,
    /// Highest sequence seen; `None` before the first frame.
    highest: Option<u64>,
    /// Bit `s % SEQ_WINDOW` is set when sequence `s` in
    /// `(highest - SEQ_WINDOW, highest]` has arrived.
    window: Vec<u64>,
    /// Distinct sequences received (duplicates and late frames excluded).
    received: u64,
    reordered: u64,
    duplicated: u64,
    late: u64,
}

impl StreamState {
    fn new(id: u32) -> StreamState {
        StreamState {
            id,
            highest: None,
            window: vec![0; WINDOW_WORDS],
            received: 0,
            reordered: 0,
            duplicated: 0,
            late: 0,
        }
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = (seq % SEQ_WINDOW) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (w, m) = Self::bit(seq);
        self.window[w] |= m;
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::bit(seq);
        self.window[w] &= !m;
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, m) = Self::bit(seq);
        self.window[w] & m != 0
    }

    /// The full sequence of a wire sequence: compact headers carry the low
    /// 32 bits, taken as the value nearest the highest sequence seen.
    fn extend(&self, seq: WireSeq) -> u64 {
        match (seq, self.highest) {
            (WireSeq::Full(s), _) => s,
            (WireSeq::Low32(lo), None) => u64::from(lo),
            (WireSeq::Low32(lo), Some(h)) => {
                let delta = i64::from(lo.wrapping_sub(h as u32) as i32);
                if delta >= 0 {
                    h.saturating_add(delta as u64)
                } else {
                    // Below 0 only if `lo` is in fact far ahead of a small
                    // `h`: take it as it is.
                    h.checked_sub(delta.unsigned_abs()).unwrap_or(u64::from(lo))
                }
            }
        }
    }

    fn observe(&mut self, seq: u64) -> Arrival {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.set(seq);
            self.received += 1;
            return Arrival::InOrder;
        };
        if seq > h {
            // The window slides: the slots of h+1..seq now stand for those
            // sequences (nothing of them arrived yet but `seq`).
            if seq - h >= SEQ_WINDOW {
                self.window.fill(0);
            } else {
                for s in h + 1..seq {
                    self.clear(s);
                }
            }
            self.set(seq);
            self.highest = Some(seq);
            self.received += 1;
            Arrival::InOrder
        } else if h - seq < SEQ_WINDOW {
            if self.is_set(seq) {
                self.duplicated += 1;
                Arrival::Duplicate
            } else {
                self.set(seq);
                self.received += 1;
                self.reordered += 1;
                Arrival::Reordered
            }
        } else {
            self.late += 1;
            Arrival::Late
        }
    }

    /// Sequences below the highest that never arrived (within the window,
    /// or too late to tell).
    fn lost(&self) -> u64 {
        // `received` counts distinct sequences in 0..=highest, at least one.
        self.highest.map_or(0, |h| h - (self.received - 1))
    }

    fn report(&self) -> StreamReport {
        StreamReport {
            stream: self.id,
            received: self.received,
            lost: self.lost(),
            reordered: self.reordered,
            duplicated: self.duplicated,
            late: self.late,
            highest_seq: self.highest,
        }
    }
}

/// Per-stream sequence accounting and one-way latency of test frames.
#[derive(Debug)]
pub struct SeqTracker {
    streams: Vec<StreamState>,
    /// Index of the stream of the previous frame (the usual next one).
    last: usize,
    latency: Histogram<u64>,
    latency_min_ns: u64,
    latency_max_ns: u64,
    /// Frames whose timestamp lies in the future (another clock, garbage).
    future_timestamps: u64,
    untracked: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    pub fn new() -> SeqTracker {
        SeqTracker {
            streams: Vec::new(),
            last: 0,
            latency: Histogram::new_with_max(MAX_LATENCY_NS, LATENCY_SIGFIGS)
                .expect("constant histogram bounds are valid"),
            latency_min_ns: u64::MAX,
            latency_max_ns: 0,
            future_timestamps: 0,
            untracked: 0,
        }
    }

    fn stream_index(&mut self, id: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.id == id) {
            return Some(self.last);
        }
        let i = match self.streams.iter().position(|s| s.id == id) {
            Some(i) => i,
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(StreamState::new(id));
                self.streams.len() - 1
            }
            None => return None,
        };
        self.last = i;
        Some(i)
    }

    /// Accounts one received frame whose header is `h`, received at
    /// `now_ns` (CLOCK_MONOTONIC). Latency is recorded for every arrival
    /// except duplicates and untracked streams.
    pub fn record(&mut self, h: &TestHeader, now_ns: u64) -> Arrival {
        let Some(i) = self.stream_index(h.stream) else {
            self.untracked += 1;
            return Arrival::Untracked;
        };
        let s = &mut self.streams[i];
        let seq = s.extend(h.seq);
        let arrival = s.observe(seq);
        if arrival != Arrival::Duplicate {
            match now_ns.checked_sub(h.timestamp_ns) {
                Some(ns) => {
                    self.latency.saturating_record(ns);
                    self.latency_min_ns = self.latency_min_ns.min(ns);
                    self.latency_max_ns = self.latency_max_ns.max(ns);
                }
                None => self.future_timestamps += 1,
            }
        }
        arrival
    }

    /// Totals, per-stream counts and latency percentiles so far.
    pub fn report(&self) -> SinkReport {
        let mut streams: Vec<StreamReport> = self.streams.iter().map(StreamState::report).collect();
        streams.sort_by_key(|s| s.stream);
        let n = self.latency.len();
        // A percentile is the top of its histogram bucket, which can lie
        // above the exact maximum: cap it there.
        let q = |quantile: f64| {
            if n == 0 {
                0
            } else {
                self.latency
                    .value_at_quantile(quantile)
                    .min(self.latency_max_ns)
            }
        };
        let min_ns = if n == 0 { 0 } else { self.latency_min_ns };
        // The ends are the exact extremes; in between, bucket tops capped
        // at the maximum (never below the minimum: a bucket's top is at
        // least every value recorded in it).
        let cdf = if n == 0 {
            Vec::new()
        } else {
            CDF_PERCENTILES
                .iter()
                .map(|&p| {
                    let ns = if p <= 0.0 {
                        min_ns
                    } else if p >= 100.0 {
                        self.latency_max_ns
                    } else {
                        // 99.9 / 100 is 0.9990000000000001 in binary, a
                        // hair above 0.999, which moves the rank to the
                        // next sample: round to the nearest
                        // billionth (a correctly rounded division gives
                        // exactly the quantile written in decimal).
                        q((p * 1e7).round() / 1e9)
                    };
                    (p, ns)
                })
                .collect()
        };
        let mut r = SinkReport {
            streams,
            latency: LatencyReport {
                count: n,
                min_ns,
                mean_ns: if n == 0 { 0.0 } else { self.latency.mean() },
                p50_ns: q(0.50),
                p90_ns: q(0.90),
                p99_ns: q(0.99),
                p999_ns: q(0.999),
                max_ns: self.latency_max_ns,
                cdf,
            },
            untracked: self.untracked,
            future_timestamps: self.future_timestamps,
            ..SinkReport::default()
        };
        r.total();
        r
    }
}

/// One stream's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub stream: u32,
    /// Distinct sequences received.
    pub received: u64,
    /// Sequences that never arrived: gaps below the highest sequence seen,
    /// plus, once [`SinkReport::account_sent`] was told how many were sent,
    /// the missing tail.
    pub lost: u64,
    /// Frames that arrived after a higher sequence and filled a gap.
    pub reordered: u64,
    /// Frames whose sequence had already arrived.
    pub duplicated: u64,
    /// Frames more than [`SEQ_WINDOW`] behind the highest sequence: not
    /// classified, not in `received` (so their sequences count as lost).
    pub late: u64,
    pub highest_seq: Option<u64>,
}

/// One-way latency, nanoseconds. Percentiles come from the hdrhistogram
/// (0.1% resolution); min and max are exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyReport {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// The distribution as `(percentile, latency_ns)` at
    /// [`CDF_PERCENTILES`], ascending in both; empty without samples. The
    /// ends are the exact minimum and maximum.
    pub cdf: Vec<(f64, u64)>,
}

/// The kernel's drop counters of the sink's sockets, summed over queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkKernelDrops {
    pub rx_dropped: u64,
    /// The RX ring was full: the sink did not keep up.
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
}

/// What a sink saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkReport {
    /// Sums over `streams`.
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub late: u64,
    pub streams: Vec<StreamReport>,
    pub latency: LatencyReport,
    /// Frames without a test header (anything else on the link).
    pub other_frames: u64,
    /// Test frames of streams beyond [`MAX_STREAMS`].
    pub untracked: u64,
    /// Test frames stamped later than they were received (not in latency).
    pub future_timestamps: u64,
    /// The XDP mode the sink interface obtained (`native-copy`, ...).
    pub xdp_mode: String,
    pub kernel: SinkKernelDrops,
    pub elapsed_s: f64,
}

impl SinkReport {
    fn total(&mut self) {
        let sum = |f: fn(&StreamReport) -> u64| self.streams.iter().map(f).sum::<u64>();
        self.received = sum(|s| s.received);
        self.lost = sum(|s| s.lost);
        self.reordered = sum(|s| s.reordered);
        self.duplicated = sum(|s| s.duplicated);
        self.late = sum(|s| s.late);
    }

    /// Tells the report that sequences `0..sent` of `stream` were sent, so
    /// a missing tail (frames after the last one that arrived) counts as
    /// lost too; gaps alone cannot show it.
    pub fn account_sent(&mut self, stream: u32, sent: u64) {
        let i = match self.streams.iter().position(|s| s.stream == stream) {
            Some(i) => i,
            None => {
                self.streams.push(StreamReport {
                    stream,
                    ..StreamReport::default()
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[i];
        let expected = s.highest_seq.map_or(0, |h| h.saturating_add(1));
        s.lost += sent.saturating_sub(expected);
        self.streams.sort_by_key(|s| s.stream);
        self.total();
    }
}

/// Settings of [`xdp_sink`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub ifname: String,
    /// Upper bound of the run; it normally ends by the stop flag.
    pub max_duration: Duration,
}

const SINK_FRAME_SIZE: u32 = 2048;
/// RX and fill ring size. The sink thread shares the CPUs with the
/// generator and the DUT and can be held up for tens of milliseconds on a
/// busy host; what the kernel can receive meanwhile is the fill ring's
/// worth of frames (82 ms at 100k fps), after which it drops and counts
/// `rx_fill_ring_empty`.
const SINK_RING: u32 = 8192;
/// UMEM frames per receive queue: the fill ring's worth twice over (32 MiB).
const SINK_FRAMES_PER_QUEUE: u32 = 2 * SINK_RING;
const SINK_TX_RING: u32 = 64;
const SINK_BATCH: u32 = 64;
/// How long the loop sleeps in poll(2) when nothing arrives, which also
/// bounds how late it notices the stop flag.
const SINK_POLL_MS: u16 = 10;

/// Sleeps in poll(2) until one of `sockets` has frames to read, at most
/// [`SINK_POLL_MS`]. Errors (EINTR and friends) end the sleep early: the
/// loop polls again.
fn wait_readable(sockets: &[XskSocket]) {
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .filter_map(XskSocket::fd)
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    let _ = poll(&mut fds, PollTimeout::from(SINK_POLL_MS));
}

/// Receives on every queue of `cfg.ifname` (in the caller's network
/// namespace) with tapline's XDP program attached (mode `auto`, promiscuous)
/// and AF_XDP sockets bound RX-only, until `stop` or `cfg.max_duration`.
/// `ready` is called once the sockets are bound and their fill rings full,
/// i.e. when a generator may start. The clock is read once per batch.
pub fn xdp_sink(cfg: &SinkConfig, stop: &AtomicBool, ready: impl FnOnce()) -> Result<SinkReport> {
    let iface = Interface::open(&cfg.ifname, XdpMode::Auto, true)
        .with_context(|| format!("attaching the sink to {}", cfg.ifname))?;
    let members: Vec<Member<'_>> = (0..iface.queues)
        .map(|queue| Member {
            iface: &iface,
            queue,
            rx: true,
            tx: false,
        })
        .collect();
    let geo = Geometry {
        frame_size: SINK_FRAME_SIZE,
        frame_count: SINK_FRAMES_PER_QUEUE * iface.queues,
        rings: RingSizes {
            rx: SINK_RING,
            // No TX: the kernel still wants a completion ring (and a TX
            // size that is a power of two).
            tx: SINK_TX_RING,
            fill: SINK_RING,
            completion: SINK_TX_RING,
        },
    };
    let group = QueueGroup::open(&members, &geo, XdpMode::Auto)
        .with_context(|| format!("binding the sink's sockets on {}", cfg.ifname))?;
    let QueueGroup {
        umem,
        mut sockets,
        mode,
    } = group;
    let mut pool = FramePool::for_umem(&umem);
    for s in &mut sockets {
        s.fill.refill(&mut pool, u32::MAX);
    }
    let mut tracker = SeqTracker::new();
    let mut other_frames = 0u64;
    ready();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < cfg.max_duration {
        let mut got = 0;
        for s in &mut sockets {
            let rx = s.rx.as_mut().expect("sink sockets have RX");
            // The clock is read at the first frame of a batch, after the
            // ring was peeked: every frame of the batch was received by
            // then, so none looks stamped in the future.
            let mut now_ns = None;
            let (n, _) = rx.consume_into_fill(SINK_BATCH, &umem, &mut s.fill, &mut pool, |frame| {
                let now = *now_ns.get_or_insert_with(monotonic_ns);
                match parse_test_header(frame) {
                    Some(h) => {
                        tracker.record(&h, now);
                    }
                    None => other_frames += 1,
                }
            });
            got += n;
            if pool.available() > 0 {
                s.fill.refill(&mut pool, u32::MAX);
            }
            if s.is_zerocopy() && s.fill.needs_wakeup() {
                s.kick_rx();
            }
        }
        if got == 0 {
            wait_readable(&sockets);
        }
    }
    let mut kernel = SinkKernelDrops::default();
    for s in &sockets {
        if let Ok(k) = s.statistics() {
            kernel.rx_dropped += k.rx_dropped;
            kernel.rx_ring_full += k.rx_ring_full;
            kernel.rx_fill_ring_empty += k.rx_fill_ring_empty;
        }
    }
    let mut report = tracker.report();
    report.other_frames = other_frames;
    report.xdp_mode = mode.to_string();
    report.kernel = kernel;
    report.elapsed_s = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests;
