//! Helpers of the inline chain tests: configs and specs of chain labs, a
//! client of the dataplane's command socket, waits on hop states, counters
//! read from the stats segment, taps on the tools' interfaces, and paced
//! streams with sequence numbers that run while a test changes the chain.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::traffic::{build_frame, is_ours, FrameKind, MAX_FRAME, MIN_FRAME};
use tapline_dataplane::xdp::RawSocket;
use tapline_lab::{ifs, Lab, Netns};
use tapline_proto::v1;
use tapline_proto::v1::dataplane_request::Request;
use tapline_proto::v1::dataplane_response::Response;
use tapline_proto::wire;
use tapline_segment::DropReason;
use tapline_segment::{SegmentReader, Snapshot};

use crate::{open_raw, seq_of, SENDER_GEN, SENDER_SINK};

/// `google.rpc.Code` numbers the command socket answers with.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const FAILED_PRECONDITION: i32 = 9;
}

/// The dataplane's default heartbeat timing (`[heartbeat]`), which the
/// chain tests keep: a hop is DOWN after `MISSES` heartbeats sent every
/// `INTERVAL_MS` are each not back within `TIMEOUT_MS`, and UP again once
/// they return for `HOLD_MS`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 10;
pub const HEARTBEAT_TIMEOUT_MS: u64 = 20;
pub const HEARTBEAT_MISSES: u64 = 3;
pub const HEARTBEAT_HOLD_MS: u64 = 1000;
/// Ethertype of heartbeat frames.
pub const HEARTBEAT_ETHERTYPE: u16 = 0x88B6;

/// How long a freshly applied hop may take to come UP (its first round
/// trip both ways; a few heartbeat intervals, far more on a loaded box).
pub const UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often waits poll the command socket (the control thread itself
/// accepts a connection every 10 ms at most).
const POLL: Duration = Duration::from_millis(5);
/// How long to keep retrying while the command socket is not there yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reply timeout of one command (SetChain drains removed hops first).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const RECV_BUF_BYTES: usize = MAX_FRAME + 64;
const VLAN_TAG_BYTES: usize = 4;

pub use tapline_bench::chain_bench::hop_name;

/// A dataplane config for a chain lab (see
/// [`tapline_bench::chain_bench::chain_config`]).
pub fn chain_config(hops: &[u8], on_failure: Option<&str>, extra: &str) -> String {
    tapline_bench::chain_bench::chain_config(hops, on_failure, "", extra)
}

/// The API spec of a chain of tools `hops`, in that order (fail open, as
/// the config's default).
pub fn chain_spec(hops: &[u8]) -> v1::ChainSpec {
    v1::ChainSpec {
        hops: hops
            .iter()
            .map(|&k| hop_spec(&hop_name(k), &ifs::hop_a(k), &ifs::hop_b(k)))
            .collect(),
        default_on_failure: v1::FailureAction::Bypass.into(),
    }
}

/// One hop of an API spec, with the chain's default failure action.
pub fn hop_spec(name: &str, a: &str, b: &str) -> v1::HopSpec {
    v1::HopSpec {
        name: name.into(),
        a: a.into(),
        b: b.into(),
        on_failure: v1::FailureAction::Unspecified.into(),
    }
}

/// A client of the dataplane's command socket (`<state_dir>/control.sock`).
///
/// Each call uses its own connection, as the sidecar does.
#[derive(Debug, Clone)]
pub struct Control {
    state_dir: PathBuf,
    path: PathBuf,
}

impl Control {
    pub fn new(state_dir: &Path) -> Control {
        Control {
            state_dir: state_dir.to_path_buf(),
            path: state_dir.join(wire::SOCKET_NAME),
        }
    }

    /// The dataplane's state directory (stats segment, persisted chain).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn connect(&self) -> Result<UnixStream> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match UnixStream::connect(&self.path) {
                Ok(s) => return Ok(s),
                // Not listening yet (ENOENT, ECONNREFUSED): retry.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("connecting to {}", self.path.display()))
                }
            }
        }
    }

    /// Sends one request and returns the response.
    pub fn call(&self, request: Request) -> Result<Response> {
        let mut s = self.connect()?;
        s.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let what = format!("{request:?}");
        wire::write_frame(
            &mut s,
            &v1::DataplaneRequest {
                request: Some(request),
            },
        )
        .with_context(|| format!("sending {what}"))?;
        let resp: v1::DataplaneResponse = wire::read_frame(&mut s)
            .with_context(|| format!("reading the reply to {what}"))?
            .with_context(|| {
                format!("the dataplane closed the connection without replying to {what}")
            })?;
        resp.response
            .with_context(|| format!("empty response to {what}"))
    }

    /// The chain (spec, generation, status).
    pub fn get_chain(&self) -> Result<v1::Chain> {
        match self.call(Request::GetChain(v1::GetChainRequest {}))? {
            Response::GetChain(r) => r.chain.context("GetChain returned no chain"),
            other => bail!("GetChain answered {other:?}"),
        }
    }

    /// SetChain, returning whatever the dataplane answers.
    pub fn set_chain(
        &self,
        spec: v1::ChainSpec,
        expected_generation: Option<u64>,
        dry_run: bool,
    ) -> Result<Response> {
        self.call(Request::SetChain(v1::SetChainRequest {
            spec: Some(spec),
            expected_generation,
            dry_run,
        }))
    }

    /// SetChain that must be accepted; returns the new generation.
    pub fn apply_chain(&self, spec: v1::ChainSpec) -> Result<u64> {
        let current = self.get_chain()?.generation;
        match self.set_chain(spec.clone(), Some(current), false)? {
            Response::SetChain(r) => {
                ensure!(
                    r.accepted && r.generation == current + 1,
                    "SetChain {spec:?} at generation {current}: accepted {}, generation {}, validation {:?}",
                    r.accepted,
                    r.generation,
                    r.validation
                );
                let status = r.chain.and_then(|c| c.status).unwrap_or_default();
                ensure!(
                    status.observed_generation == r.generation,
                    "SetChain replied before applying: observed generation {} of {}",
                    status.observed_generation,
                    r.generation
                );
                Ok(r.generation)
            }
            other => bail!("SetChain {spec:?} was refused: {other:?}"),
        }
    }

    /// SetHopBypass, returning whatever the dataplane answers.
    pub fn set_hop_bypass(&self, hop: &str, bypass: bool, reason: &str) -> Result<Response> {
        self.call(Request::SetHopBypass(v1::SetHopBypassRequest {
            hop: hop.into(),
            bypass,
            reason: reason.into(),
        }))
    }
}

/// The status of hop `name` in `chain`.
pub fn hop_status<'a>(chain: &'a v1::Chain, name: &str) -> Option<&'a v1::HopStatus> {
    chain.status.as_ref()?.hops.iter().find(|h| h.name == name)
}

/// The state of hop `name` in `chain`.
pub fn hop_state(chain: &v1::Chain, name: &str) -> Option<v1::HopState> {
    hop_status(chain, name).map(|h| h.state())
}

/// Names of the hops of `chain`'s spec, in order.
pub fn spec_hops(chain: &v1::Chain) -> Vec<String> {
    chain
        .spec
        .as_ref()
        .map(|s| s.hops.iter().map(|h| h.name.clone()).collect())
        .unwrap_or_default()
}

/// Waits until hop `name` is in `want`; returns how long that took.
pub fn wait_hop_state(
    ctl: &Control,
    name: &str,
    want: v1::HopState,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let chain = ctl.get_chain()?;
        if hop_state(&chain, name) == Some(want) {
            return Ok(start.elapsed());
        }
        ensure!(
            start.elapsed() < timeout,
            "hop {name} not {want:?} after {timeout:?}: {:#?}",
            chain.status
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until every hop of `hops` is UP.
pub fn wait_hops_up(ctl: &Control, hops: &[u8], timeout: Duration) -> Result<()> {
    for &k in hops {
        wait_hop_state(ctl, &hop_name(k), v1::HopState::Up, timeout)?;
    }
    Ok(())
}

/// The stats segment of the dataplane with `state_dir`, now.
pub fn stats(state_dir: &Path) -> Result<Snapshot> {
    Ok(SegmentReader::open(state_dir)
        .with_context(|| format!("opening the stats segment in {}", state_dir.display()))?
        .snapshot())
}

/// Frames dropped for `reason` on the port of `role` (`inline-1`, ...),
/// summed over its queues.
pub fn port_drops(snap: &Snapshot, role: &str, reason: DropReason) -> u64 {
    snap.queues
        .iter()
        .filter(|q| q.info.role == role)
        .map(|q| q.drops[reason as usize])
        .sum()
}

/// The kernel's drop counters of every port (for failure messages: a
/// frame the kernel dropped before the dataplane saw it).
pub fn kernel_drops(snap: &Snapshot) -> String {
    snap.queues
        .iter()
        .map(|q| {
            format!(
                "{} {}: rx_dropped {} rx_ring_full {} fill_ring_empty {}",
                q.info.role,
                q.info.ifname,
                q.kernel_rx_dropped,
                q.kernel_rx_ring_full,
                q.kernel_rx_fill_ring_empty
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the lab and the kernel dropped frames on the dut (for failure
/// messages): the XSK counters of every port and the inline interfaces'
/// rx_dropped (a veth ring overrun before XDP).
pub fn drop_report(lab: &Lab, state_dir: &Path) -> String {
    let xsk = stats(state_dir).map_or_else(|e| format!("{e:#}"), |s| kernel_drops(&s));
    let veth: Vec<String> = [ifs::INLINE_1, ifs::INLINE_2]
        .iter()
        .map(|i| match tapline_bench::lab::link_state(&lab.dut, i) {
            Ok(st) => format!("{i} rx_dropped {}", st.rx_dropped),
            Err(e) => format!("{i}: {e:#}"),
        })
        .collect();
    format!("{xsk}; {}", veth.join("; "))
}

/// Frames dropped for `reason` by hop `name`.
pub fn hop_drops(snap: &Snapshot, name: &str, reason: DropReason) -> u64 {
    snap.hops
        .iter()
        .filter(|h| h.name == name)
        .map(|h| h.drops[reason as usize])
        .sum()
}

/// Our test frames arriving at one tool, on both of its sides: frames from
/// the gen side (sender [`SENDER_GEN`]) arrive on side `a`, frames from the
/// sink side ([`SENDER_SINK`]) on side `b`. The sockets see received
/// frames only, so a tool's own transmissions are not counted.
#[derive(Debug)]
pub struct ToolTap {
    pub k: u8,
    a: RawSocket,
    b: RawSocket,
}

impl ToolTap {
    pub fn open(lab: &Lab, k: u8) -> Result<ToolTap> {
        let ns = lab.tool(k)?;
        Ok(ToolTap {
            k,
            a: open_raw(ns, ifs::TOOL_A)?,
            b: open_raw(ns, ifs::TOOL_B)?,
        })
    }

    /// Our frames received since the last call: (gen -> sink on side a,
    /// sink -> gen on side b).
    pub fn take(&self) -> Result<(usize, usize)> {
        Ok((
            count_ours(&self.a, SENDER_GEN)?,
            count_ours(&self.b, SENDER_SINK)?,
        ))
    }
}

/// Drains `sock` and counts the frames from `sender`.
fn count_ours(sock: &RawSocket, sender: u8) -> Result<usize> {
    let mut buf = vec![0u8; RECV_BUF_BYTES];
    let mut n = 0;
    while let Some(meta) = recv_skipping_link_errors(sock, &mut buf)? {
        if is_ours(&buf[..meta.len], sender) {
            n += 1;
        }
    }
    Ok(n)
}

/// `sock.recv`, except that ENETDOWN is not an error: an AF_PACKET socket
/// reports its interface going down once, as a pending error (a tool's
/// link the test took down), and keeps its queued frames.
fn recv_skipping_link_errors(
    sock: &RawSocket,
    buf: &mut [u8],
) -> Result<Option<tapline_dataplane::xdp::afpacket::RawPacketMeta>> {
    loop {
        match sock.recv(buf) {
            Ok(m) => return Ok(m),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENETDOWN) => continue,
            Err(e) => return Err(e).context("receiving"),
        }
    }
}

/// Drains `sock` and returns every frame with the heartbeat ethertype.
pub fn heartbeat_frames(sock: &RawSocket) -> Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; RECV_BUF_BYTES];
    let mut out = Vec::new();
    while let Some(meta) = recv_skipping_link_errors(sock, &mut buf)? {
        let f = &buf[..meta.len];
        if f.len() >= 14 && u16::from_be_bytes([f[12], f[13]]) == HEARTBEAT_ETHERTYPE {
            out.push(f.to_vec());
        }
    }
    Ok(out)
}

/// Frames a paced stream sends at most (its sender stops there).
const MAX_STREAM_FRAMES: usize = 200_000;
/// The sender wakes this often and sends the frames that are due.
const PACE_TICK: Duration = Duration::from_millis(1);
/// Most frames sent per tick. A sender that was not scheduled for a while
/// catches up at this pace instead of in one burst, which could overrun
/// the dataplane's fill ring (its frames lent to the kernel) if the
/// dataplane was not scheduled either: a loss of the lab, not of the
/// chain.
const MAX_FRAMES_PER_TICK: usize = 16;
/// After the sender stopped and everything arrived, how long the receiver
/// keeps listening for duplicates.
const STREAM_LINGER: Duration = Duration::from_millis(100);
/// After the sender stopped, the receiver gives up when nothing arrived
/// for this long (frames were lost).
const STREAM_QUIET: Duration = Duration::from_millis(800);
/// Upper bound of one stream.
const STREAM_DEADLINE: Duration = Duration::from_secs(25);

/// Frame `seq` of a stream from `sender`: IPv4/UDP, non-IP and
/// VLAN-tagged in turn, lengths spread over the whole range, the sequence
/// number inside. A pure function of its arguments, so the receiver checks
/// each frame byte for byte without keeping what was sent.
pub fn stream_frame(sender: u8, seq: u32) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9e37_79b9) ^ u32::from(sender);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    let kind = match seq % 3 {
        0 => FrameKind::Udp4,
        1 => FrameKind::Raw,
        _ => FrameKind::VlanUdp4 {
            vid: 1 + (seq % 4094) as u16,
        },
    };
    let min = match kind {
        FrameKind::VlanUdp4 { .. } => MIN_FRAME + VLAN_TAG_BYTES,
        _ => MIN_FRAME,
    };
    let len = match seq % 10 {
        0 => min,
        5 => MAX_FRAME,
        _ => min + (x as usize) % (MAX_FRAME - min + 1),
    };
    build_frame(kind, len, sender, seq, (seq % 16) as u16)
}

/// One direction of continuous traffic at a fixed rate: frame `seq` is due
/// at `seq * gap` after the start.
#[derive(Debug)]
pub struct PacedStream {
    pub name: String,
    pub tx: RawSocket,
    pub rx: RawSocket,
    pub sender: u8,
    pub gap: Duration,
}

impl PacedStream {
    /// gen -> sink at `rate_fps` frames per second.
    pub fn gen_to_sink(lab: &Lab, rate_fps: u32) -> Result<PacedStream> {
        Self::between(
            lab.gen(),
            ifs::GEN,
            lab.sink(),
            ifs::SINK,
            SENDER_GEN,
            rate_fps,
        )
    }

    /// sink -> gen at `rate_fps` frames per second.
    pub fn sink_to_gen(lab: &Lab, rate_fps: u32) -> Result<PacedStream> {
        Self::between(
            lab.sink(),
            ifs::SINK,
            lab.gen(),
            ifs::GEN,
            SENDER_SINK,
            rate_fps,
        )
    }

    fn between(
        from: &Netns,
        from_if: &str,
        to: &Netns,
        to_if: &str,
        sender: u8,
        rate_fps: u32,
    ) -> Result<PacedStream> {
        Ok(PacedStream {
            name: format!("{from_if}->{to_if}"),
            tx: open_raw(from, from_if)?,
            rx: open_raw(to, to_if)?,
            sender,
            gap: Duration::from_secs(1) / rate_fps,
        })
    }

    fn send(&self, stop: &AtomicBool, sent: &AtomicUsize) -> Result<Vec<Instant>> {
        let start = Instant::now();
        let mut sent_at = Vec::new();
        while !stop.load(Ordering::Relaxed)
            && sent_at.len() < MAX_STREAM_FRAMES
            && start.elapsed() < STREAM_DEADLINE
        {
            let due = (start.elapsed().as_nanos() / self.gap.as_nanos()) as usize + 1;
            let due = due
                .min(sent_at.len() + MAX_FRAMES_PER_TICK)
                .min(MAX_STREAM_FRAMES);
            while sent_at.len() < due {
                let seq = sent_at.len() as u32;
                if !self
                    .tx
                    .send(&stream_frame(self.sender, seq))
                    .with_context(|| format!("{}: sending frame {seq}", self.name))?
                {
                    // Socket buffer full: the rest is sent next tick.
                    break;
                }
                sent_at.push(Instant::now());
            }
            sent.store(sent_at.len(), Ordering::Release);
            std::thread::sleep(PACE_TICK);
        }
        Ok(sent_at)
    }

    fn receive(&self, done: &AtomicBool, sent: &AtomicUsize) -> Result<Vec<(Instant, Vec<u8>)>> {
        let start = Instant::now();
        let mut received = Vec::new();
        let mut buf = vec![0u8; RECV_BUF_BYTES];
        let mut last_progress = Instant::now();
        let mut complete_at: Option<Instant> = None;
        loop {
            let before = received.len();
            while let Some(meta) = self
                .rx
                .recv(&mut buf)
                .with_context(|| format!("{}: receiving", self.name))?
            {
                let frame = &buf[..meta.len];
                if is_ours(frame, self.sender) {
                    received.push((Instant::now(), frame.to_vec()));
                }
            }
            let now = Instant::now();
            if received.len() > before {
                last_progress = now;
            }
            if done.load(Ordering::Acquire) {
                if received.len() >= sent.load(Ordering::Acquire) {
                    let at = *complete_at.get_or_insert(now);
                    if now >= at + STREAM_LINGER {
                        break;
                    }
                } else if now >= last_progress + STREAM_QUIET {
                    break;
                }
            }
            if now >= start + STREAM_DEADLINE + STREAM_QUIET {
                break;
            }
            if received.len() == before {
                self.rx.wait_readable(2)?;
            }
        }
        Ok(received)
    }
}

/// What a paced stream did.
#[derive(Debug)]
pub struct StreamResult {
    pub name: String,
    pub sender: u8,
    pub gap: Duration,
    /// When frame `seq` was handed to the kernel (index = seq).
    pub sent_at: Vec<Instant>,
    /// Our frames as they arrived.
    pub received: Vec<(Instant, Vec<u8>)>,
}

/// Runs every stream (a sender and a receiver thread each) while `during`
/// runs on this thread, then stops the senders and waits for the
/// receivers. Returns what `during` returned and the streams' results.
pub fn while_streaming<T>(
    streams: &[PacedStream],
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Vec<StreamResult>)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .map(|st| {
                let stop = &stop;
                let sent = AtomicUsize::new(0);
                let done = AtomicBool::new(false);
                s.spawn(move || -> Result<StreamResult> {
                    std::thread::scope(|inner| {
                        let rx = inner.spawn(|| st.receive(&done, &sent));
                        let sent_at = st.send(stop, &sent);
                        if let Ok(v) = &sent_at {
                            sent.store(v.len(), Ordering::Release);
                        }
                        done.store(true, Ordering::Release);
                        let received = rx
                            .join()
                            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
                        Ok(StreamResult {
                            name: st.name.clone(),
                            sender: st.sender,
                            gap: st.gap,
                            sent_at: sent_at?,
                            received,
                        })
                    })
                })
            })
            .collect();
        let out = during();
        stop.store(true, Ordering::Relaxed);
        let results: Result<Vec<StreamResult>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("stream thread panicked"))?
            })
            .collect();
        let out = out?;
        Ok((out, results?))
    })
}

/// A stream's delivery, frame by frame.
#[derive(Debug, Default)]
pub struct Delivery {
    pub sent: usize,
    pub received: usize,
    /// Sequence numbers sent and never received, ascending.
    pub lost: Vec<u32>,
    /// Frames received more than once (extra copies).
    pub duplicates: usize,
    /// Frames received after a frame with a higher sequence number.
    pub out_of_order: usize,
    /// Frames that differ from every frame sent.
    pub corrupted: Vec<String>,
    pub bytes: u64,
}

impl StreamResult {
    /// Checks every received frame against the one sent with its sequence
    /// number.
    pub fn delivery(&self) -> Delivery {
        let mut d = Delivery {
            sent: self.sent_at.len(),
            received: self.received.len(),
            ..Delivery::default()
        };
        let mut count = vec![0u32; d.sent];
        let mut highest: Option<u32> = None;
        for (_, f) in &self.received {
            let Some(seq) = seq_of(f).filter(|&s| (s as usize) < d.sent) else {
                d.corrupted
                    .push(format!("{} bytes with no sequence number sent", f.len()));
                continue;
            };
            if *f != stream_frame(self.sender, seq) {
                d.corrupted.push(format!(
                    "frame {seq} ({} bytes) differs from the one sent",
                    f.len()
                ));
                continue;
            }
            d.bytes += f.len() as u64;
            count[seq as usize] += 1;
            if count[seq as usize] > 1 {
                d.duplicates += 1;
            }
            if highest.is_some_and(|h| seq < h) {
                d.out_of_order += 1;
            }
            highest = highest.max(Some(seq));
        }
        d.lost = (0..d.sent as u32)
            .filter(|&s| count[s as usize] == 0)
            .collect();
        d
    }

    /// The lost sequence numbers as runs `first..=last`, each with the
    /// time its first frame was sent, relative to `origin`.
    pub fn lost_runs(&self, lost: &[u32], origin: Instant) -> Vec<String> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &s in lost {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == s => *last = s,
                _ => runs.push((s, s)),
            }
        }
        runs.iter()
            .map(|&(a, b)| {
                let at = self.sent_at[a as usize]
                    .checked_duration_since(origin)
                    .map_or("before the origin".to_string(), |d| format!("{d:?}"));
                format!("{a}..={b} (sent from {at})")
            })
            .collect()
    }

    /// Frames sent in `[from, to)`.
    pub fn sent_between(&self, from: Instant, to: Instant) -> usize {
        self.sent_at
            .iter()
            .filter(|&&t| t >= from && t < to)
            .count()
    }

    /// Asserts every frame sent arrived exactly once, byte for byte (order
    /// not checked), and prints the figures.
    pub fn assert_lossless(&self) -> Result<Delivery> {
        let d = self.delivery();
        ensure!(
            d.corrupted.is_empty(),
            "{}: {} corrupted frames, first: {}",
            self.name,
            d.corrupted.len(),
            d.corrupted[0]
        );
        ensure!(
            d.lost.is_empty() && d.duplicates == 0,
            "{}: {} of {} frames lost (first {:?}), {} duplicates",
            self.name,
            d.lost.len(),
            d.sent,
            &d.lost[..d.lost.len().min(10)],
            d.duplicates
        );
        eprintln!(
            "{}: {} of {} frames ({} bytes) delivered exactly once and intact, {} out of order",
            self.name, d.received, d.sent, d.bytes, d.out_of_order
        );
        Ok(d)
    }
}

/// A directory outside any one dataplane run's work directory, removed on
/// drop (for state that must survive a restart).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
