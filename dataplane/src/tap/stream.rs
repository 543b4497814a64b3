//! Streaming a running tap to its client: batches of captured frames, the
//! periodic stats, and the final `ended` message, until the tap ends or the
//! client goes away.

use super::*;

/// Where a tap's stream goes: the command connection, or a test's buffer.
pub trait TapSink {
    /// Writes one message; an error ends the tap (the client is gone).
    fn send(&mut self, msg: &v1::DataplaneResponse) -> io::Result<()>;
    /// True once the client closed the connection (it cancelled the tap).
    fn closed(&mut self) -> bool;
}

impl TapSink for UnixStream {
    fn send(&mut self, msg: &v1::DataplaneResponse) -> io::Result<()> {
        wire::write_frame(self, msg)
    }

    fn closed(&mut self) -> bool {
        // The client sends nothing after its request: EOF (0) is its close;
        // anything it does send is ignored.
        crate::sys::process::stream_closed(self)
    }
}

/// How a tap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapOutcome {
    /// `None`: the client went away (closed, or stopped reading); no
    /// `ended` message was sent.
    pub reason: Option<v1::TapEndReason>,
    pub matched: u64,
    pub sent: u64,
    pub lost: u64,
}

fn tap_message(r: v1::TapResponse) -> v1::DataplaneResponse {
    v1::DataplaneResponse {
        response: Some(v1::dataplane_response::Response::Tap(r)),
    }
}

/// Packets being gathered into one message, their bytes in one buffer.
#[derive(Debug)]
struct Batch {
    packets: Vec<(u64, u32, Direction, u32, usize)>,
    data: BytesMut,
    first_at: Option<Instant>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            packets: Vec::with_capacity(BATCH_PACKETS),
            data: BytesMut::with_capacity(BATCH_BYTES),
            first_at: None,
        }
    }

    fn full(&self) -> bool {
        self.packets.len() >= BATCH_PACKETS || self.data.len() >= BATCH_BYTES
    }

    fn push(&mut self, r: &TapRecord) {
        self.first_at.get_or_insert_with(Instant::now);
        self.data.extend_from_slice(&r.data);
        self.packets
            .push((r.ts_unix_ns, r.orig_len, r.direction, r.queue, r.data.len()));
    }

    /// The packets as a message; the batch is empty again.
    fn take(&mut self) -> Vec<v1::TapPacket> {
        let data: Bytes = self.data.split().freeze();
        let mut at = 0;
        let out = self
            .packets
            .drain(..)
            .map(|(ts, orig, dir, queue, len)| {
                let p = v1::TapPacket {
                    timestamp_unix_ns: ts,
                    original_length_bytes: orig,
                    data: data.slice(at..at + len),
                    direction: dir.to_proto().into(),
                    queue_id: queue,
                };
                at += len;
                p
            })
            .collect();
        self.first_at = None;
        out
    }
}

/// Streams `tap` to `sink` until it ends: first `started`, then batches,
/// then (unless the client went away) `ended`. Removes the tap from
/// `registry` and frees its slot before returning. Runs on the tap's own
/// thread; waits only for its own client.
pub fn stream<S: TapSink>(
    registry: &TapRegistry,
    tap: &Arc<Tap>,
    plan: &TapPlan,
    sink: &mut S,
) -> TapOutcome {
    let start = Instant::now();
    let deadline = start + plan.max_duration;
    let mut sent = 0u64;
    let mut lost_reported = 0u64;
    let mut batch = Batch::new();
    let mut last_close_check = start;
    let mut last_sent = start;
    let first = v1::TapResponse {
        started: Some(plan.started()),
        ..Default::default()
    };
    let mut client_gone = sink.send(&tap_message(first)).is_err();
    let mut reason = None;
    while !client_gone {
        while !batch.full() {
            let Some(r) = tap.pop() else { break };
            batch.push(&r);
            tap.recycle(r.data);
        }
        let now = Instant::now();
        let queued = sent + batch.packets.len() as u64;
        reason = match tap.end_request.load(Ordering::Relaxed) {
            END_POINT_REMOVED => Some(v1::TapEndReason::PointRemoved),
            END_DATAPLANE_STOPPED => Some(v1::TapEndReason::DataplaneStopped),
            _ if plan.max_packets > 0 && queued >= plan.max_packets => {
                Some(v1::TapEndReason::PacketLimit)
            }
            _ if now >= deadline => Some(v1::TapEndReason::TimeLimit),
            _ => None,
        };
        if reason.is_some() {
            break;
        }
        let lost = tap.counters.lost.get();
        let due = batch.full()
            || batch.first_at.is_some_and(|t| now >= t + BATCH_WAIT)
            || (lost > lost_reported && now >= last_sent + BATCH_WAIT);
        if due {
            let n = batch.packets.len() as u64;
            let msg = v1::TapResponse {
                packets: batch.take(),
                lost_packets: lost - lost_reported,
                ..Default::default()
            };
            if sink.send(&tap_message(msg)).is_err() {
                client_gone = true;
                break;
            }
            lost_reported = lost;
            last_sent = now;
            sent += n;
            tap.counters.sent.add(n);
            continue;
        }
        if now >= last_close_check + CLOSE_CHECK {
            last_close_check = now;
            if sink.closed() {
                client_gone = true;
                break;
            }
        }
        if tap.records.is_empty() {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
    // No more packets from here: the workers drop the tap at their next
    // batch, and skip it until then.
    registry.remove(tap);
    if !client_gone {
        // What was queued before the end still goes out, in order.
        loop {
            while !batch.full() {
                let Some(r) = tap.pop() else { break };
                batch.push(&r);
                tap.recycle(r.data);
            }
            if !batch.full() {
                break;
            }
            let n = batch.packets.len() as u64;
            let msg = v1::TapResponse {
                packets: batch.take(),
                ..Default::default()
            };
            if sink.send(&tap_message(msg)).is_err() {
                client_gone = true;
                break;
            }
            sent += n;
            tap.counters.sent.add(n);
        }
    }
    let matched = tap.counters.matched.get();
    let mut outcome = TapOutcome {
        reason: None,
        matched,
        sent,
        lost: matched.saturating_sub(sent),
    };
    if !client_gone {
        let n = batch.packets.len() as u64;
        let packets = batch.take();
        outcome.sent += n;
        outcome.lost = matched.saturating_sub(outcome.sent);
        let reason = reason.unwrap_or(v1::TapEndReason::DataplaneStopped);
        let msg = v1::TapResponse {
            packets,
            lost_packets: outcome.lost.saturating_sub(lost_reported),
            started: None,
            ended: Some(v1::TapEnded {
                reason: reason.into(),
                message: end_message(reason, plan),
                matched_packets: outcome.matched,
                sent_packets: outcome.sent,
                lost_packets: outcome.lost,
            }),
        };
        if sink.send(&tap_message(msg)).is_ok() {
            tap.counters.sent.add(n);
            outcome.reason = Some(reason);
        }
    }
    // Buffers are freed here, on this thread, not on a worker.
    while let Some(r) = tap.pop() {
        drop(r);
    }
    while tap.free.pop().is_some() {}
    registry.release(tap);
    outcome
}

fn end_message(reason: v1::TapEndReason, plan: &TapPlan) -> String {
    match reason {
        v1::TapEndReason::PacketLimit => {
            format!("{} packets sent (max_packets)", plan.max_packets)
        }
        v1::TapEndReason::TimeLimit => format!(
            "{} ms elapsed (max_duration_ms, capped by tap.max_duration_s)",
            plan.max_duration.as_millis()
        ),
        v1::TapEndReason::PointRemoved => format!(
            "hop {:?} left the applied chain",
            plan.point.hop.as_deref().unwrap_or_default()
        ),
        _ => "the dataplane is stopping".to_string(),
    }
}
