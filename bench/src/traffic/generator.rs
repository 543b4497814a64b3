//! The AF_XDP generator: test frames from tapline's own socket types.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tapline_config::xdp::RingSizes;
use tapline_dataplane::xdp::{self, BindMode, Umem, XskParams, XskSocket};

use super::{monotonic_ns, FrameKind, FrameSizes, TestFrameTemplate};

/// Settings of [`xdp_generate`].
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub ifname: String,
    /// Frame lengths without FCS (60 = a 64-byte frame on the wire), from
    /// 60 to 1514 (the largest untagged frame of a 1500-byte MTU).
    pub sizes: FrameSizes,
    /// Distinct UDP flows to cycle through (round robin, frame by frame).
    pub flows: u16,
    /// Frames per second to aim at; `None` sends as fast as possible.
    pub rate_pps: Option<u64>,
    pub duration: Duration,
    /// Stop after this many frames, if set.
    pub count: Option<u64>,
    /// Sender id written into the source MAC.
    pub sender: u8,
    /// Stream id written into the test header; sequence numbers start at 0
    /// in each run. Below 65536 if any frame is too short for the full
    /// header (see [`COMPACT_HEADER_LEN`](super::COMPACT_HEADER_LEN)).
    pub stream: u32,
}

/// What a generator run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenReport {
    /// Frames the kernel completed (handed to the driver). The TX ring
    /// completes in order, so these are the frames of sequence 0..sent.
    pub sent: u64,
    /// Frames placed on the TX ring (sent, plus any the kernel had not
    /// completed when the bounded drain at the end gave up).
    pub queued: u64,
    /// Frames the pacing bucket skipped: the generator was held up (not
    /// scheduled, TX ring full) for longer than the bucket's depth, and
    /// the offered rate fell short of the target by this many frames.
    pub pacing_skipped: u64,
    pub stream: u32,
    pub elapsed: Duration,
}

impl GenReport {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const GEN_FRAMES: u32 = 4096;
const GEN_RING: u32 = 2048;
const GEN_BATCH: u32 = 64;
/// Sleep between pacing checks when no frame is due.
const GEN_PACING_SLEEP: Duration = Duration::from_micros(20);
/// Depth of the pacing bucket in time: after a stall (preemption, a full
/// ring) the generator catches up at most this much traffic back to back
/// and forgives the rest, so a stall never turns into a long burst.
const GEN_BUCKET_DEPTH: Duration = Duration::from_millis(1);
/// How long the end of a run waits for in-flight frames to complete.
const GEN_DRAIN: Duration = Duration::from_millis(500);

/// Sends test frames from an AF_XDP socket on `cfg.ifname` (TX only, copy
/// mode; no XDP program is needed to transmit). Runs in the caller's network
/// namespace until the duration, the count, or `stop`.
///
/// Every frame is IPv4/UDP built from a [`TestFrameTemplate`] once per UMEM
/// chunk; right before a batch is queued each frame gets its length, flow,
/// sequence number and the batch's CLOCK_MONOTONIC timestamp (one clock
/// read per batch). Pacing is a token bucket at batch granularity,
/// 1 ms of traffic deep (at least one batch), so a stall of the
/// generator never turns into a long catch-up burst (see `pacing_skipped`).
pub fn xdp_generate(cfg: &GenConfig, stop: &AtomicBool) -> Result<GenReport> {
    let template = TestFrameTemplate::new(FrameKind::Udp4, cfg.sender, cfg.stream);
    let lengths = cfg.sizes.lengths();
    for &len in &lengths {
        ensure!(
            (template.min_len()..=template.max_len()).contains(&len),
            "frame length {len} (without FCS) is outside {}..={}",
            template.min_len(),
            template.max_len()
        );
    }
    let needs_compact = lengths.iter().any(|&l| l < template.full_header_min_len());
    ensure!(
        !needs_compact || cfg.stream <= u32::from(u16::MAX),
        "stream id {} does not fit the 16 bits of the compact header that frames shorter than {} bytes carry",
        cfg.stream,
        template.full_header_min_len()
    );
    let ifindex = xdp::netdev::ifindex(&cfg.ifname)
        .with_context(|| format!("no interface {}", cfg.ifname))?;
    let umem = Umem::new(2048, GEN_FRAMES).context("allocating the generator UMEM")?;
    let params = XskParams {
        ifindex,
        queue: 0,
        rx: false,
        tx: true,
        sizes: RingSizes {
            rx: GEN_RING,
            tx: GEN_RING,
            fill: GEN_RING,
            completion: GEN_RING,
        },
        mode: BindMode::Copy,
    };
    let mut sock = XskSocket::bind(&umem, &params, None, &cfg.ifname)?;
    // Prefill every chunk once with the template; `stamp` does the rest.
    let mut pool = xdp::FramePool::for_umem(&umem);
    let mut free: Vec<xdp::Frame> = Vec::with_capacity(GEN_FRAMES as usize);
    while let Some(mut f) = pool.alloc() {
        template.fill(umem.data_mut(&mut f));
        free.push(f);
    }
    let flows = u64::from(cfg.flows.max(1));
    let cycle = lengths.len() as u64;
    let start = Instant::now();
    let mut sent_total = 0u64;
    // Also the next sequence number: every queued frame took one.
    let mut queued_total = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let bucket_frames = cfg.rate_pps.map_or(0, |r| {
        ((r as f64 * GEN_BUCKET_DEPTH.as_secs_f64()) as u64).max(u64::from(GEN_BATCH))
    });
    // Frames the bucket forgave after stalls.
    let mut skipped = 0u64;
    let mut batch_buf: Vec<xdp::Frame> = Vec::with_capacity(GEN_BATCH as usize);
    loop {
        let now = start.elapsed();
        if now >= cfg.duration || stop.load(Ordering::Relaxed) || sent_total >= limit {
            break;
        }
        // Completions: their content is stamped again before the next send.
        sent_total += u64::from(sock.comp.reap(&mut pool, GEN_RING));
        while let Some(f) = pool.alloc() {
            free.push(f);
        }
        // Pacing: how many frames may have been queued by now.
        let allowed = match cfg.rate_pps {
            Some(r) => {
                let due = ((now.as_secs_f64() * r as f64) as u64).saturating_sub(skipped);
                if due > queued_total + bucket_frames {
                    skipped += due - queued_total - bucket_frames;
                }
                (due.min(queued_total + bucket_frames)).min(limit)
            }
            None => limit,
        };
        let tx = sock.tx.as_mut().expect("tx socket");
        let want = allowed
            .saturating_sub(queued_total)
            .min(u64::from(GEN_BATCH))
            .min(free.len() as u64)
            .min(u64::from(tx.free_slots())) as usize;
        if want > 0 {
            batch_buf.extend(free.drain(free.len() - want..));
            let timestamp_ns = monotonic_ns();
            let mut flow = queued_total % flows;
            let mut size = (queued_total % cycle) as usize;
            for (seq, f) in (queued_total..).zip(batch_buf.iter_mut()) {
                let len = lengths[size];
                template.stamp(umem.data_mut(f), len, flow as u16, seq, timestamp_ns);
                f.set_len(len as u32);
                flow += 1;
                if flow == flows {
                    flow = 0;
                }
                size += 1;
                if size == lengths.len() {
                    size = 0;
                }
            }
            // All fit (free_slots above); should one not, its sequence
            // number is taken again by the next batch (`send` queues a
            // prefix, so the unsent frames hold the highest numbers).
            queued_total += u64::from(tx.send(&mut batch_buf));
            free.append(&mut batch_buf);
        }
        // In copy mode the kernel transmits inside the kick (sendto), up to
        // its budget per call; with nothing on the ring it is a wasted syscall.
        if want > 0 || tx.pending() > 0 {
            sock.kick_tx();
        }
        if want == 0 && cfg.rate_pps.is_some() {
            std::thread::sleep(GEN_PACING_SLEEP);
        }
    }
    // Drain what is still in flight (bounded).
    let deadline = Instant::now() + GEN_DRAIN;
    while sent_total < queued_total && Instant::now() < deadline {
        sock.kick_tx();
        sent_total += u64::from(sock.comp.reap(&mut pool, GEN_RING));
    }
    Ok(GenReport {
        sent: sent_total,
        queued: queued_total,
        pacing_skipped: skipped,
        stream: cfg.stream,
        elapsed: start.elapsed(),
    })
}
