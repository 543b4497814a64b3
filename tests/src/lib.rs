//! Shared helpers for tapline's integration tests: frame plans that mix
//! kinds and sizes, flow-controlled exchanges through the inline bridge with
//! AF_PACKET sockets at both ends, paced sends into the passive port, and
//! checks on the dataplane's logs and on the interfaces it leaves behind;
//! [`chain`] has what the inline chain tests add (the command socket, hop
//! states, paced streams, taps on the tools).
//!
//! Everything here runs as root inside the namespaces of a
//! [`tapline_bench::lab::Lab`]; the tests call [`lab::privileged`] first.

#![forbid(unsafe_code)]

pub mod api;
pub mod chain;
pub mod passive;
pub mod sidecar;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::runner::{lab_config, DataplaneProcess, Finished, StartOptions};
use tapline_bench::traffic::{build_frame, is_ours, FrameKind, MAX_FRAME, MIN_FRAME};
use tapline_dataplane::xdp::RawSocket;
use tapline_lab::{self as lab, ifs, Lab, Netns};

/// Sender id (in the source MAC) of frames sent from `g0` (gen namespace).
pub const SENDER_GEN: u8 = 1;
/// Sender id of frames sent from `s0` (sink namespace).
pub const SENDER_SINK: u8 = 2;
/// Sender id of frames sent from `t0` (tap namespace).
pub const SENDER_TAP: u8 = 3;

/// Frames a flow keeps in flight at most: far below every ring and socket
/// buffer on the path, so no frame is lost for reasons unrelated to the
/// dataplane.
pub const WINDOW_FRAMES: usize = 128;
/// Socket buffers of the test endpoints (forced past rmem_max/wmem_max).
pub const SOCKET_BUFFER_BYTES: usize = 32 << 20;
/// A flow gives up when nothing arrived for this long.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of one exchange (a test must finish within ~30 s).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the kernel may take to detach XDP and drop promiscuity after
/// the dataplane exited (closing the last fd of a dead process).
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);
/// After the last expected frame, how long a receiver keeps listening for
/// duplicates.
const LINGER: Duration = Duration::from_millis(100);
/// Passive sends: frames per burst, then a pause (about 32k frames/s, well
/// below what even a debug build of the dataplane captures, and a burst is
/// far below the 2048-entry RX ring).
const PASSIVE_BURST_FRAMES: usize = 32;
const PASSIVE_PAUSE: Duration = Duration::from_millis(1);
/// `recv` needs 4 spare bytes for a restored VLAN tag.
const RECV_BUF_BYTES: usize = MAX_FRAME + 64;
/// 802.1Q tag length.
const VLAN_TAG_BYTES: usize = 4;

/// Returns `Ok(true)` when the privileged test should run (see
/// [`lab::privileged`]); an error without root unless opted out.
pub fn privileged() -> Result<bool> {
    lab::privileged()
}

/// Builds `count` frames from `sender`: the first six cover the edge cases
/// (60- and 1514-byte IPv4/UDP, 60- and 1514-byte non-IP ethertype, 64- and
/// 1514-byte VLAN-tagged), the rest cycle through the three kinds with
/// lengths spread over the whole range, every tenth one at an edge. Each
/// frame carries its index as sequence number.
pub fn frame_plan(count: usize, sender: u8) -> Vec<Vec<u8>> {
    let min_tagged = MIN_FRAME + VLAN_TAG_BYTES;
    let edges = [
        (FrameKind::Udp4, MIN_FRAME),
        (FrameKind::Udp4, MAX_FRAME),
        (FrameKind::Raw, MIN_FRAME),
        (FrameKind::Raw, MAX_FRAME),
        (FrameKind::VlanUdp4 { vid: 100 }, min_tagged),
        (FrameKind::VlanUdp4 { vid: 4094 }, MAX_FRAME),
    ];
    // xorshift32: deterministic, so a failure reproduces.
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(sender);
    (0..count)
        .map(|i| {
            let seq = i as u32;
            let flow = (i % 16) as u16;
            if let Some(&(kind, len)) = edges.get(i) {
                return build_frame(kind, len, sender, seq, flow);
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let kind = match i % 3 {
                0 => FrameKind::Udp4,
                1 => FrameKind::Raw,
                _ => FrameKind::VlanUdp4 {
                    vid: 1 + (i % 4094) as u16,
                },
            };
            let min = if matches!(kind, FrameKind::VlanUdp4 { .. }) {
                min_tagged
            } else {
                MIN_FRAME
            };
            let len = match i % 10 {
                0 => min,
                5 => MAX_FRAME,
                _ => min + (x as usize) % (MAX_FRAME - min + 1),
            };
            build_frame(kind, len, sender, seq, flow)
        })
        .collect()
}

/// Total bytes of `frames`.
pub fn total_bytes(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// Opens a raw socket on `ifname` inside `ns`, with large buffers.
pub fn open_raw(ns: &Netns, ifname: &str) -> Result<RawSocket> {
    let sock = ns
        .enter(|| RawSocket::open(ifname))?
        .with_context(|| format!("opening a raw socket on {ifname} in {}", ns.name()))?;
    sock.set_recv_buffer(SOCKET_BUFFER_BYTES)
        .context("setting SO_RCVBUF")?;
    sock.set_send_buffer(SOCKET_BUFFER_BYTES)
        .context("setting SO_SNDBUF")?;
    Ok(sock)
}

/// One direction through the bridge: frames sent on `tx`, expected on `rx`.
#[derive(Debug)]
pub struct Flow {
    /// For messages (`g0->s0`).
    pub name: String,
    pub tx: RawSocket,
    pub rx: RawSocket,
    /// Sender id the frames carry; `rx` keeps only those.
    pub sender: u8,
    pub frames: Vec<Vec<u8>>,
}

/// What a flow delivered.
#[derive(Debug)]
pub struct FlowResult {
    pub name: String,
    /// Frames handed to the kernel on the sending side.
    pub sent: usize,
    /// Our frames received, in arrival order (duplicates included).
    pub received: Vec<Vec<u8>>,
    pub elapsed: Duration,
}

impl Flow {
    /// The gen -> sink direction (`g0` -> i1 -> i2 -> `s0`).
    pub fn gen_to_sink(lab: &Lab, count: usize) -> Result<Flow> {
        Ok(Flow {
            name: format!("{}->{}", ifs::GEN, ifs::SINK),
            tx: open_raw(lab.gen(), ifs::GEN)?,
            rx: open_raw(lab.sink(), ifs::SINK)?,
            sender: SENDER_GEN,
            frames: frame_plan(count, SENDER_GEN),
        })
    }

    /// The sink -> gen direction (`s0` -> i2 -> i1 -> `g0`).
    pub fn sink_to_gen(lab: &Lab, count: usize) -> Result<Flow> {
        Ok(Flow {
            name: format!("{}->{}", ifs::SINK, ifs::GEN),
            tx: open_raw(lab.sink(), ifs::SINK)?,
            rx: open_raw(lab.gen(), ifs::GEN)?,
            sender: SENDER_SINK,
            frames: frame_plan(count, SENDER_SINK),
        })
    }

    /// Sends every frame, never more than [`WINDOW_FRAMES`] ahead of what
    /// arrived, and collects what arrives. Stops when all arrived (plus a
    /// short linger for duplicates), when nothing arrived for
    /// [`STALL_TIMEOUT`], or at `deadline`.
    pub fn run(&self, deadline: Instant) -> Result<FlowResult> {
        let n = self.frames.len();
        let start = Instant::now();
        let mut sent = 0usize;
        let mut received: Vec<Vec<u8>> = Vec::with_capacity(n);
        let mut buf = vec![0u8; RECV_BUF_BYTES];
        let mut last_progress = Instant::now();
        let mut done_at: Option<Instant> = None;
        loop {
            while sent < n && sent < received.len() + WINDOW_FRAMES {
                if self
                    .tx
                    .send(&self.frames[sent])
                    .with_context(|| format!("{}: sending frame {sent}", self.name))?
                {
                    sent += 1;
                } else {
                    // Send buffer full: let the receiver drain first.
                    break;
                }
            }
            let before = received.len();
            while let Some(meta) = self
                .rx
                .recv(&mut buf)
                .with_context(|| format!("{}: receiving", self.name))?
            {
                let frame = &buf[..meta.len];
                if is_ours(frame, self.sender) {
                    received.push(frame.to_vec());
                }
            }
            let now = Instant::now();
            if received.len() > before {
                last_progress = now;
            }
            if received.len() >= n && done_at.is_none() {
                done_at = Some(now);
            }
            if done_at.is_some_and(|t| now >= t + LINGER)
                || now >= deadline
                || now >= last_progress + STALL_TIMEOUT
            {
                break;
            }
            if received.len() == before {
                self.rx.wait_readable(2)?;
            }
        }
        Ok(FlowResult {
            name: self.name.clone(),
            sent,
            received,
            elapsed: start.elapsed(),
        })
    }
}

/// Runs `flows` concurrently (one thread each) and returns their results in
/// the same order.
pub fn run_concurrently(flows: &[Flow]) -> Result<Vec<FlowResult>> {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    std::thread::scope(|s| {
        let handles: Vec<_> = flows
            .iter()
            .map(|f| s.spawn(move || f.run(deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("flow thread panicked"))?
            })
            .collect()
    })
}

/// A short description of a frame for failure messages.
fn describe(frame: &[u8]) -> String {
    let seq = seq_of(frame).map_or("?".to_string(), |s| s.to_string());
    let head: Vec<String> = frame.iter().take(18).map(|b| format!("{b:02x}")).collect();
    format!("{} bytes, seq {seq}, head {}", frame.len(), head.join(""))
}

/// The sequence number `build_frame` wrote after the headers, if the frame
/// looks like one of ours.
pub fn seq_of(frame: &[u8]) -> Option<u32> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let off = match ethertype {
        0x0800 => 14 + 28,
        0x8100 => 18 + 28,
        _ => 14,
    };
    Some(u32::from_be_bytes(
        frame.get(off..off + 4)?.try_into().ok()?,
    ))
}

/// Asserts that the flow delivered every frame it was given, byte for byte,
/// in order, exactly once.
pub fn assert_delivered_in_order(flow: &Flow, result: &FlowResult) -> Result<()> {
    check_delivery(&flow.name, &flow.frames, result)?;
    eprintln!(
        "{}: {} frames ({} bytes) identical and in order in {:?}",
        flow.name,
        result.received.len(),
        total_bytes(&result.received),
        result.elapsed
    );
    Ok(())
}

/// The check behind [`assert_delivered_in_order`]: `result.received` must
/// equal `sent`, frame for frame.
pub fn check_delivery(name: &str, sent: &[Vec<u8>], result: &FlowResult) -> Result<()> {
    let got = &result.received;
    for (i, (s, r)) in sent.iter().zip(got).enumerate() {
        if s != r {
            let position = sent.iter().position(|f| f == r);
            bail!(
                "{name}: frame #{i} differs: sent [{}], received [{}] ({}); {} of {} frames received",
                describe(s),
                describe(r),
                match position {
                    Some(j) => format!("identical to sent frame #{j}: out of order"),
                    None => "matches no sent frame: corrupted".to_string(),
                },
                got.len(),
                sent.len()
            );
        }
    }
    ensure!(
        got.len() == sent.len(),
        "{name}: {} frames sent ({} handed to the kernel), {} received in {:?}{}",
        sent.len(),
        result.sent,
        got.len(),
        result.elapsed,
        match got.len().checked_sub(sent.len()) {
            Some(extra) => format!(": {extra} duplicates after the last frame"),
            None => format!(": first missing is [{}]", describe(&sent[got.len()])),
        }
    );
    Ok(())
}

/// Sends `frames` on `tx` in short paced bursts (no receiver to pace
/// against: the passive port only counts). Retries while the socket buffer
/// is full, up to `deadline`.
pub fn send_paced(tx: &RawSocket, frames: &[Vec<u8>], deadline: Instant) -> Result<()> {
    for (i, chunk) in frames.chunks(PASSIVE_BURST_FRAMES).enumerate() {
        for (j, f) in chunk.iter().enumerate() {
            while !tx
                .send(f)
                .with_context(|| format!("sending frame {}", i * PASSIVE_BURST_FRAMES + j))?
            {
                ensure!(
                    Instant::now() < deadline,
                    "send buffer stayed full until the deadline"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        std::thread::sleep(PASSIVE_PAUSE);
    }
    Ok(())
}

/// The tap -> passive-1 frames of the passive checks: foreign destination
/// MAC, mixed kinds and sizes.
pub fn passive_frames(count: usize) -> Vec<Vec<u8>> {
    frame_plan(count, SENDER_TAP)
}

/// A config for `lab`'s scenario with `[xdp] mode = MODE`.
pub fn config_for(lab: &Lab, mode: &str) -> String {
    let passive = lab.tap.as_ref().map(|_| ifs::PASSIVE_1);
    let inline = lab.gen.as_ref().map(|_| (ifs::INLINE_1, ifs::INLINE_2));
    lab_config(passive, inline, "", &format!("[xdp]\nmode = \"{mode}\"\n"))
}

/// Starts the dataplane in `lab`'s dut namespace and waits until it is ready.
pub fn start_dataplane(lab: &Lab, config: &str) -> Result<DataplaneProcess> {
    DataplaneProcess::start(
        &lab.dut,
        config,
        &StartOptions {
            expect_ready: true,
            ..StartOptions::default()
        },
    )
}

/// Waits for a dataplane expected to exit by itself, killing it (and
/// failing) if it is still running after `timeout`.
pub fn wait_bounded(dp: DataplaneProcess, timeout: Duration) -> Result<Finished> {
    dp.wait(timeout)
}

/// How long a run that must fail at startup may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops the dataplane with SIGTERM and checks that it exited 0.
pub fn stop_ok(dp: DataplaneProcess) -> Result<Finished> {
    let fin = dp.stop()?;
    ensure!(
        fin.status.success(),
        "tapline-dataplane exited with {} after SIGTERM:\n{}",
        fin.status,
        fin.lines.join("\n")
    );
    ensure!(
        !fin.final_counters().is_empty(),
        "no `final counters` in the log:\n{}",
        fin.lines.join("\n")
    );
    Ok(fin)
}

/// Asserts one final counter of one port.
pub fn assert_counter(fin: &Finished, port: &str, name: &str, expected: u64) -> Result<()> {
    let got = fin.counter(port, name);
    ensure!(
        got == expected,
        "final counter {port}.{name} = {got}, expected {expected}; final counters: {:?}",
        fin.final_counters().get(port)
    );
    Ok(())
}

/// Asserts the final counters of a bridge that carried `a_to_b` frames
/// inline-1 -> inline-2 and `b_to_a` frames the other way, with no drop.
pub fn assert_bridge_counters(
    fin: &Finished,
    a_to_b: &[Vec<u8>],
    b_to_a: &[Vec<u8>],
) -> Result<()> {
    let (n1, b1) = (a_to_b.len() as u64, total_bytes(a_to_b));
    let (n2, b2) = (b_to_a.len() as u64, total_bytes(b_to_a));
    assert_counter(fin, "inline-1", "rx_packets", n1)?;
    assert_counter(fin, "inline-1", "rx_bytes", b1)?;
    assert_counter(fin, "inline-2", "tx_packets", n1)?;
    assert_counter(fin, "inline-2", "tx_bytes", b1)?;
    assert_counter(fin, "inline-2", "rx_packets", n2)?;
    assert_counter(fin, "inline-2", "rx_bytes", b2)?;
    assert_counter(fin, "inline-1", "tx_packets", n2)?;
    assert_counter(fin, "inline-1", "tx_bytes", b2)?;
    for port in ["inline-1", "inline-2"] {
        assert_counter(fin, port, "drop_tx_ring_full", 0)?;
        assert_counter(fin, port, "kernel_rx_dropped", 0)?;
    }
    Ok(())
}

/// Asserts the passive port counted exactly `frames`.
pub fn assert_passive_counters(fin: &Finished, frames: &[Vec<u8>]) -> Result<()> {
    assert_counter(fin, "passive-1", "rx_packets", frames.len() as u64)?;
    assert_counter(fin, "passive-1", "rx_bytes", total_bytes(frames))?;
    assert_counter(fin, "passive-1", "tx_packets", 0)?;
    Ok(())
}

/// The dut interfaces `lab` has.
pub fn dut_interfaces(lab: &Lab) -> Vec<&'static str> {
    let mut v = Vec::new();
    if lab.gen.is_some() {
        v.extend([ifs::INLINE_1, ifs::INLINE_2]);
    }
    if lab.tap.is_some() {
        v.push(ifs::PASSIVE_1);
    }
    v
}

/// Waits (at most [`RELEASE_TIMEOUT`]) until no dut interface of `lab` has
/// an XDP program attached and every promiscuity count is back to 0, and
/// fails naming the interface otherwise.
pub fn assert_released(lab: &Lab) -> Result<()> {
    let start = Instant::now();
    let deadline = start + RELEASE_TIMEOUT;
    loop {
        let mut dirty = Vec::new();
        for ifname in dut_interfaces(lab) {
            let st = lab::link_state(&lab.dut, ifname)?;
            if st.xdp_attached || st.promiscuity != 0 {
                dirty.push(format!(
                    "{ifname}: xdp_attached={} promiscuity={}",
                    st.xdp_attached, st.promiscuity
                ));
            }
        }
        if dirty.is_empty() {
            eprintln!("interfaces released {:?} after exit", start.elapsed());
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{RELEASE_TIMEOUT:?} after the dataplane exited, interfaces are not released: {}",
                dirty.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that no dut interface of `lab` has XDP attached or promiscuity
/// raised right now (for runs that must not touch any interface).
pub fn assert_untouched(lab: &Lab) -> Result<()> {
    for ifname in dut_interfaces(lab) {
        let st = lab::link_state(&lab.dut, ifname)?;
        ensure!(
            !st.xdp_attached && st.promiscuity == 0,
            "{ifname} was touched: xdp_attached={} promiscuity={}",
            st.xdp_attached,
            st.promiscuity
        );
    }
    Ok(())
}

/// How the kernel says XDP is attached to `ifname`: `Some("native")`
/// (`XDP_ATTACHED_DRV`, 1), `Some("generic")` (`XDP_ATTACHED_SKB`, 2),
/// `Some("other")` for any other mode, `None` when nothing is attached.
pub fn kernel_xdp_mode(ns: &Netns, ifname: &str) -> Result<Option<&'static str>> {
    /// `enum { XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, ... }`.
    const XDP_ATTACHED_DRV: u64 = 1;
    const XDP_ATTACHED_SKB: u64 = 2;
    let out = lab::ip(&["-n", ns.name(), "-j", "-d", "link", "show", "dev", ifname])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    let xdp = &v[0]["xdp"];
    if xdp.is_null() {
        return Ok(None);
    }
    Ok(Some(match xdp["mode"].as_u64() {
        Some(XDP_ATTACHED_DRV) => "native",
        Some(XDP_ATTACHED_SKB) => "generic",
        _ => "other",
    }))
}

/// Asserts the kernel reports XDP attached to every dut interface of `lab`
/// in `attach` mode (`native` or `generic`).
pub fn assert_kernel_xdp_mode(lab: &Lab, attach: &str) -> Result<()> {
    for ifname in dut_interfaces(lab) {
        let got = kernel_xdp_mode(&lab.dut, ifname)?;
        ensure!(
            got == Some(attach),
            "the kernel reports XDP on {ifname} as {got:?}, expected {attach}"
        );
    }
    Ok(())
}

/// The `ports` field of the `dataplane running` record (a JSON array of
/// `role=ifname:qN:mode` strings), its entries joined by spaces.
pub fn ready_ports(lines: &[String]) -> Result<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["message"] == tapline_bench::runner::READY_MESSAGE)
        .and_then(|r| {
            let ports = r["ports"].as_array()?.iter().map(|p| p.as_str());
            ports.collect::<Option<Vec<_>>>().map(|p| p.join(" "))
        })
        .with_context(|| {
            format!(
                "no `dataplane running` record with ports:\n{}",
                lines.join("\n")
            )
        })
}

/// Asserts every configured port of `lab` reports `mode` (e.g.
/// `native-copy`) in the `dataplane running` record.
pub fn assert_ports_mode(lab: &Lab, lines: &[String], mode: &str) -> Result<()> {
    let ports = ready_ports(lines)?;
    for (role, ifname) in [
        ("inline-1", ifs::INLINE_1),
        ("inline-2", ifs::INLINE_2),
        ("passive-1", ifs::PASSIVE_1),
    ] {
        if !dut_interfaces(lab).contains(&ifname) {
            continue;
        }
        let want = format!("{role}={ifname}:q0:{mode}");
        ensure!(
            ports.contains(&want),
            "expected {want:?} in the ports of `dataplane running`, got {ports}"
        );
    }
    Ok(())
}

/// `count` IPv4/UDP frames of `flows` flows in turn (flow `i % flows`),
/// of varied lengths from 60 to 1514 bytes.
pub fn udp_flow_frames(count: usize, flows: u16, sender: u8) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let flow = i as u16 % flows;
            let len = 60 + (i * 37) % 1455;
            build_frame(FrameKind::Udp4, len, sender, i as u32, flow)
        })
        .collect()
}

/// Offset of the UDP source port in an untagged IPv4/UDP frame.
const UDP_SRC_PORT_OFFSET: usize = 14 + 20;

/// The UDP source port `build_frame` wrote into an untagged UDP frame.
pub fn udp_src_port(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[UDP_SRC_PORT_OFFSET], frame[UDP_SRC_PORT_OFFSET + 1]])
}

/// Sends `frames` (paced, not flow-controlled: some are expected to be
/// dropped) and collects our frames on `rx` until `expected` arrived, or
/// nothing arrived for [`STALL_TIMEOUT`], plus `linger` for extras.
pub fn send_and_collect(
    name: &str,
    tx: &RawSocket,
    rx: &RawSocket,
    sender: u8,
    frames: &[Vec<u8>],
    expected: usize,
    linger: Duration,
) -> Result<FlowResult> {
    let start = Instant::now();
    send_paced(tx, frames, start + EXCHANGE_TIMEOUT).with_context(|| format!("{name}: sending"))?;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut last_progress = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        let before = received.len();
        while let Some(meta) = rx.recv(&mut buf).context("receiving")? {
            if is_ours(&buf[..meta.len], sender) {
                received.push(buf[..meta.len].to_vec());
            }
        }
        let now = Instant::now();
        if received.len() > before {
            last_progress = now;
        }
        if received.len() >= expected && done_at.is_none() {
            done_at = Some(now);
        }
        if done_at.is_some_and(|t| now >= t + linger) || now >= last_progress + STALL_TIMEOUT {
            break;
        }
        rx.wait_readable(2)?;
    }
    Ok(FlowResult {
        name: name.to_string(),
        sent: frames.len(),
        received,
        elapsed: start.elapsed(),
    })
}

/// Sends `frames` on `flow` and asserts that exactly the frames `passes`
/// keeps arrive, byte for byte and in order.
pub fn assert_filtered_delivery(
    flow: &Flow,
    frames: &[Vec<u8>],
    passes: impl Fn(&[u8]) -> bool,
    linger: Duration,
) -> Result<()> {
    let expected: Vec<Vec<u8>> = frames.iter().filter(|f| passes(f)).cloned().collect();
    let result = send_and_collect(
        &flow.name,
        &flow.tx,
        &flow.rx,
        flow.sender,
        frames,
        expected.len(),
        linger,
    )?;
    check_delivery(&flow.name, &expected, &result)?;
    eprintln!(
        "{}: {} of {} frames arrived, identical and in order",
        flow.name,
        result.received.len(),
        frames.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(received: Vec<Vec<u8>>) -> FlowResult {
        FlowResult {
            name: "t".into(),
            sent: received.len(),
            received,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn plan_covers_the_edge_cases_and_valid_lengths() {
        let plan = frame_plan(1000, SENDER_GEN);
        assert_eq!(plan.len(), 1000);
        let ethertype = |f: &Vec<u8>| u16::from_be_bytes([f[12], f[13]]);
        for (kind, len) in [(0x0800, 60), (0x0800, 1514), (0x88b5, 60), (0x88b5, 1514)] {
            assert!(
                plan.iter().any(|f| ethertype(f) == kind && f.len() == len),
                "{kind:#x} {len}"
            );
        }
        assert!(plan.iter().any(|f| ethertype(f) == 0x8100 && f.len() == 64));
        assert!(plan
            .iter()
            .any(|f| ethertype(f) == 0x8100 && f.len() == 1514));
        for (i, f) in plan.iter().enumerate() {
            assert!((MIN_FRAME..=MAX_FRAME).contains(&f.len()));
            assert!(is_ours(f, SENDER_GEN) && !is_ours(f, SENDER_SINK));
            assert_eq!(seq_of(f), Some(i as u32));
        }
        let distinct: std::collections::BTreeSet<usize> = plan.iter().map(Vec::len).collect();
        assert!(distinct.len() > 500, "sizes are spread: {}", distinct.len());
    }

    #[test]
    fn delivery_check_catches_loss_reorder_corruption_and_duplicates() {
        let sent = frame_plan(10, SENDER_GEN);
        assert!(check_delivery("t", &sent, &result(sent.clone())).is_ok());

        let lost = check_delivery("t", &sent, &result(sent[..9].to_vec())).unwrap_err();
        assert!(lost.to_string().contains("first missing"), "{lost}");

        let mut swapped = sent.clone();
        swapped.swap(3, 4);
        let e = check_delivery("t", &sent, &result(swapped)).unwrap_err();
        assert!(e.to_string().contains("frame #3 differs"), "{e}");
        assert!(e.to_string().contains("out of order"), "{e}");

        let mut corrupted = sent.clone();
        corrupted[5][40] ^= 1;
        let e = check_delivery("t", &sent, &result(corrupted)).unwrap_err();
        assert!(e.to_string().contains("corrupted"), "{e}");

        let mut duplicated = sent.clone();
        duplicated.push(sent[9].clone());
        let e = check_delivery("t", &sent, &result(duplicated)).unwrap_err();
        assert!(e.to_string().contains("1 duplicates"), "{e}");
    }
}
