//! Live taps end to end: a real `tapline-dataplane` in the lab's dut
//! namespace, a real `tapline-control` (root namespace, same `state_dir`,
//! an Admin token), and as clients the `taplinectl` binary and a tonic
//! client.
//!
//! - `taplinectl tap --point passive-1 --filter 'udp and dst port 5001' -c
//!   N -w -` writes a pcap stream holding exactly the matching frames of a
//!   mix, byte for byte and in order (read back with `PcapReader`, and by
//!   `tcpdump -r -` when it is installed); the passive-only dataplane
//!   serves the command socket and refuses chain requests;
//! - a tap on inline-1 RX and one on the TX of a hop's side A (one-hop
//!   chain), through gRPC, see exactly the frames sent through the chain;
//! - a client that does not read while traffic flows loses packets
//!   (`lost_packets` > 0), `sent + lost == matched` in `TapEnded`, and the
//!   bridge forwarded every frame meanwhile;
//! - bad requests: a filter syntax error is INVALID_ARGUMENT naming the
//!   column (and `taplinectl` exits 2 with a caret), an unknown hop
//!   NOT_FOUND, passive-1 with TX INVALID_ARGUMENT, no token
//!   UNAUTHENTICATED.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario, ToolKind};
use tapline_bench::runner::{lab_config, DataplaneProcess, StartOptions, STATE_DIR_PLACEHOLDER};
use tapline_bench::traffic::{build_frame, FrameKind, MAX_FRAME};
use tapline_packet::pcap::PcapReader;
use tapline_proto::v1 as pb;
use tapline_tests::chain::{
    chain_config, chain_spec, code, hop_name, wait_hops_up, Control, UP_TIMEOUT,
};
use tapline_tests::sidecar::{spawn_ctl, wait_ctl, Ports, Sidecar};
use tapline_tests::{
    assert_counter, check_delivery, open_raw, privileged, run_concurrently, send_paced, stop_ok,
    Flow, FlowResult, SENDER_GEN, SENDER_TAP,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

const ADMIN_TOKEN: &str = "t4p-adm1n";
/// Bound of one `taplinectl` run or of one tap's stream.
const TAP_TIMEOUT: Duration = Duration::from_secs(30);
/// UDP destination port the passive test's filter selects.
const TAPPED_PORT: u16 = 5001;
/// Offset of the UDP destination port in an untagged IPv4/UDP frame.
const UDP_DST_PORT_OFFSET: usize = 14 + 20 + 2;

// ---------------------------------------------------------------------------
// Set-up: ports, configuration, processes.

/// One test's world: a lab, a work directory with the configuration both
/// processes read (state directory filled in, `[control]` added) and the
/// Admin token file. The directory is removed on drop.
struct Rig {
    lab: Lab,
    workdir: PathBuf,
    state_dir: PathBuf,
    config: String,
    config_path: PathBuf,
    token_path: PathBuf,
    grpc: u16,
}

impl Rig {
    /// `base` is a lab configuration (with the state directory
    /// placeholder) without a `[control]` table.
    fn new(lab: Lab, base: &str) -> Result<Rig> {
        let workdir = std::env::temp_dir().join(format!("{}-tap", unique_prefix()));
        std::fs::create_dir_all(&workdir)?;
        let state_dir = workdir.join("state");
        std::fs::create_dir_all(&state_dir)?;
        std::fs::set_permissions(
            &state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let token_path = workdir.join("admin-token");
        std::fs::write(&token_path, format!("{ADMIN_TOKEN}\n"))?;
        let Ports {
            grpc,
            health,
            metrics,
        } = Ports::unique()?;
        let config = format!(
            "{}\n[control]\ngrpc_listen = \"127.0.0.1:{grpc}\"\nhealth_listen = \"127.0.0.1:{health}\"\n\
             metrics_listen = \"127.0.0.1:{metrics}\"\nadmin_token_file = \"{}\"\n",
            base.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy()),
            token_path.display()
        );
        let config_path = workdir.join("tapline.toml");
        std::fs::write(&config_path, &config)?;
        Ok(Rig {
            lab,
            workdir,
            state_dir,
            config,
            config_path,
            token_path,
            grpc,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    fn start_dataplane(&self) -> Result<DataplaneProcess> {
        DataplaneProcess::start(
            &self.lab.dut,
            &self.config,
            &StartOptions {
                expect_ready: true,
                ..StartOptions::default()
            },
        )
    }

    fn start_sidecar(&self) -> Result<Sidecar> {
        Sidecar::start(&self.config_path, &[self.grpc])
    }

    /// `taplinectl --endpoint URL --token-file F ARGS`, started.
    fn ctl(&self, args: &[&str]) -> Result<Child> {
        spawn_ctl(&self.url(), Some(&self.token_path), args)
    }

    /// Runs `taplinectl` to its end (bounded by [`TAP_TIMEOUT`]).
    fn ctl_output(&self, args: &[&str]) -> Result<Output> {
        wait_ctl(self.ctl(args)?, args, TAP_TIMEOUT)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

// ---------------------------------------------------------------------------
// gRPC.

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn admin(url: &str) -> Result<pb::admin_client::AdminClient<Channel>> {
    let ch = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(pb::admin_client::AdminClient::new(ch))
}

/// `req` with the Admin token, or without any.
fn authed<T>(req: T, token: bool) -> Request<T> {
    let mut r = Request::new(req);
    if token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().expect("ASCII"),
        );
    }
    r
}

fn port_point(role: &str, direction: pb::TapDirection) -> pb::TapPoint {
    pb::TapPoint {
        location: Some(pb::tap_point::Location::Port(role.into())),
        direction: direction.into(),
    }
}

fn hop_point(hop: &str, side: pb::HopSide, direction: pb::TapDirection) -> pb::TapPoint {
    pb::TapPoint {
        location: Some(pb::tap_point::Location::Hop(pb::HopTapPoint {
            hop: hop.into(),
            side: side.into(),
        })),
        direction: direction.into(),
    }
}

/// Starts a tap and returns its stream once `started` arrived.
async fn start_tap(
    client: &mut pb::admin_client::AdminClient<Channel>,
    req: pb::TapRequest,
) -> Result<(pb::TapStarted, tonic::Streaming<pb::TapResponse>)> {
    let what = format!("{:?}", req.point);
    let mut stream = client
        .tap(authed(req, true))
        .await
        .with_context(|| format!("starting the tap at {what}"))?
        .into_inner();
    let first = tokio::time::timeout(TAP_TIMEOUT, stream.message())
        .await
        .context("no first tap message")??
        .context("the tap stream ended at once")?;
    let started = first
        .started
        .context("the first message has no `started`")?;
    ensure!(first.packets.is_empty() || started.link_type == 1);
    Ok((started, stream))
}

/// Everything a tap stream delivered until its end.
#[derive(Debug, Default)]
struct Tapped {
    packets: Vec<pb::TapPacket>,
    lost: u64,
    ended: Option<pb::TapEnded>,
}

async fn read_to_end(mut stream: tonic::Streaming<pb::TapResponse>) -> Result<Tapped> {
    let mut t = Tapped::default();
    let deadline = Instant::now() + TAP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .context("the tap did not end in time")??;
        let Some(msg) = msg else {
            bail!("the tap stream closed without `ended`");
        };
        t.packets.extend(msg.packets);
        t.lost += msg.lost_packets;
        if let Some(e) = msg.ended {
            t.ended = Some(e);
            return Ok(t);
        }
    }
}

/// Asserts that `t` holds exactly `frames`, in order, each whole, seen in
/// `direction`.
fn assert_tapped(
    name: &str,
    t: &Tapped,
    frames: &[Vec<u8>],
    direction: pb::TapDirection,
) -> Result<()> {
    let got = FlowResult {
        name: name.into(),
        sent: frames.len(),
        received: t.packets.iter().map(|p| p.data.to_vec()).collect(),
        elapsed: Duration::ZERO,
    };
    check_delivery(name, frames, &got)?;
    for (p, f) in t.packets.iter().zip(frames) {
        ensure!(
            p.original_length_bytes as usize == f.len(),
            "{name}: original length {} of a {}-byte frame",
            p.original_length_bytes,
            f.len()
        );
        ensure!(
            p.direction() == direction,
            "{name}: direction {:?}",
            p.direction()
        );
        ensure!(p.timestamp_unix_ns > 0, "{name}: no timestamp");
    }
    let e = t.ended.as_ref().context("no `ended`")?;
    ensure!(
        e.reason() == pb::TapEndReason::PacketLimit,
        "{name}: ended {e:?}"
    );
    ensure!(
        e.sent_packets == frames.len() as u64 && e.lost_packets == 0 && t.lost == 0,
        "{name}: {e:?}, {} lost in batches",
        t.lost
    );
    eprintln!(
        "{name}: {} frames tapped, identical and in order",
        frames.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Frames.

/// An untagged IPv4/UDP frame from `sender` with UDP destination port
/// `dst_port`.
fn udp_frame(len: usize, sender: u8, seq: u32, dst_port: u16) -> Vec<u8> {
    let mut f = build_frame(FrameKind::Udp4, len, sender, seq, (seq % 8) as u16);
    f[UDP_DST_PORT_OFFSET..UDP_DST_PORT_OFFSET + 2].copy_from_slice(&dst_port.to_be_bytes());
    f
}

/// The passive mix: UDP to port 5001 (tapped), UDP to port 5002 and 9,
/// VLAN-tagged and non-IP frames, lengths spread over the range.
fn passive_mix(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let seq = i as u32;
            let len = 60 + (i * 97) % (MAX_FRAME - 64);
            match i % 5 {
                0 | 3 => udp_frame(len, SENDER_TAP, seq, TAPPED_PORT),
                1 => udp_frame(len, SENDER_TAP, seq, TAPPED_PORT + 1),
                2 => build_frame(FrameKind::Raw, len, SENDER_TAP, seq, 0),
                _ => build_frame(FrameKind::Udp4, len, SENDER_TAP, seq, 1),
            }
        })
        .collect()
}

fn is_tapped_port(f: &[u8]) -> bool {
    f.len() > UDP_DST_PORT_OFFSET + 1
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && f[UDP_DST_PORT_OFFSET..UDP_DST_PORT_OFFSET + 2] == TAPPED_PORT.to_be_bytes()
}

/// Filter selecting the gen side's frames (source address 198.18.0.1).
const GEN_FILTER: &str = "udp and src host 198.18.0.1";

// ---------------------------------------------------------------------------
// Tests.

const PASSIVE_FRAMES: usize = 500;

#[test]
fn passive_tap_writes_exactly_the_matching_frames_as_a_pcap_stream() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    let rig = Rig::new(lab, &lab_config(Some(ifs::PASSIVE_1), None, "", ""))?;
    let frames = passive_mix(PASSIVE_FRAMES);
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| is_tapped_port(f))
        .cloned()
        .collect();
    ensure!(expected.len() == PASSIVE_FRAMES * 2 / 5);
    let tx = open_raw(rig.lab.tap(), ifs::TAP)?;
    let _sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;

    // The command socket runs without an inline pair, and says so to chain
    // requests.
    let err = Control::new(&rig.state_dir).call(pb::dataplane_request::Request::GetChain(
        pb::GetChainRequest {},
    ))?;
    match err {
        pb::dataplane_response::Response::Error(e) => ensure!(
            e.code == code::FAILED_PRECONDITION && e.message.contains("no inline pair"),
            "{e:?}"
        ),
        other => bail!("GetChain on a passive-only dataplane answered {other:?}"),
    }

    let count = expected.len().to_string();
    let mut child = rig.ctl(&[
        "tap",
        "--point",
        "passive-1",
        "--filter",
        "udp and dst port 5001",
        "-c",
        &count,
        "-w",
        "-",
    ])?;
    // Traffic starts once the tap runs (taplinectl says so on stderr).
    let stderr = child.stderr.take().expect("piped");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let mut err_lines = Vec::new();
    let deadline = Instant::now() + TAP_TIMEOUT;
    while !err_lines
        .iter()
        .any(|l: &String| l.starts_with("tapping passive-1 rx"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(l) => err_lines.push(l),
            Err(_) => bail!("taplinectl did not start the tap: {err_lines:?}"),
        }
    }
    send_paced(&tx, &frames, Instant::now() + TAP_TIMEOUT)?;
    let out = wait_ctl(child, &["tap"], TAP_TIMEOUT)?;
    reader.join().ok();
    err_lines.extend(line_rx.try_iter());
    ensure!(
        out.status.success(),
        "taplinectl tap failed ({}): {err_lines:?}",
        out.status
    );
    let fin = stop_ok(dp)?;
    assert_counter(&fin, "passive-1", "rx_packets", frames.len() as u64)?;

    // The pcap stream: nanosecond magic, Ethernet, exactly the frames.
    let mut reader = PcapReader::new(out.stdout.as_slice()).context("pcap header")?;
    ensure!(reader.nanos && reader.linktype == 1, "{reader:?}");
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().context("pcap record")? {
        ensure!(
            r.orig_len as usize == r.data.len(),
            "a frame was cut: {r:?}"
        );
        ensure!(r.ts_unix_ns > 0);
        records.push(r.data);
    }
    let got = FlowResult {
        name: "pcap".into(),
        sent: expected.len(),
        received: records,
        elapsed: Duration::ZERO,
    };
    check_delivery("passive-1 tap pcap", &expected, &got)?;
    let summary = format!(
        "{} packets captured, 0 lost (client too slow)",
        expected.len()
    );
    ensure!(
        err_lines.iter().any(|l| l == &summary),
        "no {summary:?} on stderr: {err_lines:?}"
    );
    ensure!(
        err_lines.iter().any(|l| l.starts_with("tap ended: ")),
        "{err_lines:?}"
    );

    // tcpdump reads the same stream, when it is installed.
    let which = Command::new("which").arg("tcpdump").output();
    if which.is_ok_and(|o| o.status.success()) {
        let mut td = Command::new("tcpdump")
            .args(["-r", "-", "-n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump")?;
        td.stdin
            .take()
            .expect("piped")
            .write_all(&out.stdout)
            .context("feeding tcpdump")?;
        let td = td.wait_with_output()?;
        let text = String::from_utf8_lossy(&td.stdout);
        ensure!(
            td.status.success(),
            "tcpdump -r - failed: {}",
            String::from_utf8_lossy(&td.stderr)
        );
        ensure!(
            text.lines().count() == expected.len()
                && text.lines().all(|l| l.contains(".5001: UDP")),
            "tcpdump read {} lines:\n{text}",
            text.lines().count()
        );
        eprintln!("tcpdump -r - read {} packets", expected.len());
    } else {
        eprintln!("tcpdump is not installed: only the Rust pcap reader checked the stream");
    }
    Ok(())
}

const INLINE_FRAMES: usize = 400;

#[test]
fn inline_and_hop_side_taps_see_exactly_the_frames_sent() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let rig = Rig::new(lab, &chain_config(&[1], None, ""))?;
    let _sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;
    wait_hops_up(&Control::new(&rig.state_dir), &[1], UP_TIMEOUT)?;
    let flow = Flow {
        frames: (0..INLINE_FRAMES)
            .map(|i| udp_frame(60 + (i * 37) % (MAX_FRAME - 60), SENDER_GEN, i as u32, 7000))
            .collect(),
        ..Flow::gen_to_sink(&rig.lab, 0)?
    };
    let n = flow.frames.len() as u64;
    let rt = runtime()?;
    let (inline, hop, delivered) = rt.block_on(async {
        let mut client = admin(&rig.url()).await?;
        let tap = |point| pb::TapRequest {
            point: Some(point),
            filter: GEN_FILTER.into(),
            max_packets: n,
            max_duration_ms: 25_000,
            ..Default::default()
        };
        let (s1, inline) = start_tap(
            &mut client,
            tap(port_point("inline-1", pb::TapDirection::Rx)),
        )
        .await?;
        ensure!(s1.ifname == ifs::INLINE_1, "{s1:?}");
        let (s2, hop) = start_tap(
            &mut client,
            tap(hop_point(
                &hop_name(1),
                pb::HopSide::A,
                pb::TapDirection::Tx,
            )),
        )
        .await?;
        ensure!(s2.ifname == ifs::hop_a(1), "{s2:?}");
        ensure!(
            s2.snap_length_bytes == 65_535 && s2.sample_one_in == 1,
            "{s2:?}"
        );
        let sender = std::thread::spawn(move || {
            run_concurrently(std::slice::from_ref(&flow)).map(|r| (flow, r))
        });
        let (inline, hop) = tokio::try_join!(read_to_end(inline), read_to_end(hop))?;
        let delivered = sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        Ok::<_, anyhow::Error>((inline, hop, delivered))
    })?;
    let (flow, results) = delivered;
    check_delivery(&flow.name, &flow.frames, &results[0])?;
    assert_tapped("inline-1 rx", &inline, &flow.frames, pb::TapDirection::Rx)?;
    assert_tapped("tool1/a tx", &hop, &flow.frames, pb::TapDirection::Tx)?;

    // A tap on a hop ends when the hop leaves the chain.
    let ended = rt
        .block_on(async {
            let mut client = admin(&rig.url()).await?;
            let (_, stream) = start_tap(
                &mut client,
                pb::TapRequest {
                    point: Some(hop_point(
                        &hop_name(1),
                        pb::HopSide::B,
                        pb::TapDirection::Both,
                    )),
                    ..Default::default()
                },
            )
            .await?;
            let ctl = Control::new(&rig.state_dir);
            tokio::task::spawn_blocking(move || ctl.apply_chain(chain_spec(&[]))).await??;
            Ok::<_, anyhow::Error>(read_to_end(stream).await?.ended)
        })?
        .context("no `ended`")?;
    ensure!(
        ended.reason() == pb::TapEndReason::PointRemoved && ended.message.contains("tool1"),
        "{ended:?}"
    );
    stop_ok(dp)?;
    Ok(())
}

const SLOW_FRAMES: usize = 20_000;
/// Duration of the slow client's tap: well past the end of its traffic.
const SLOW_TAP_MS: u64 = 10_000;

#[test]
fn a_slow_client_loses_packets_and_the_counts_still_add_up() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Inline)?;
    let rig = Rig::new(
        lab,
        &lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", ""),
    )?;
    let _sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;
    // Full-size frames, so that the path to the client fills quickly.
    let flow = Flow {
        frames: (0..SLOW_FRAMES)
            .map(|i| udp_frame(MAX_FRAME, SENDER_GEN, i as u32, 7000))
            .collect(),
        ..Flow::gen_to_sink(&rig.lab, 0)?
    };
    let n = flow.frames.len() as u64;
    let rt = runtime()?;
    let (tapped, results) = rt.block_on(async {
        let mut client = admin(&rig.url()).await?;
        let (_, stream) = start_tap(
            &mut client,
            pb::TapRequest {
                point: Some(port_point("inline-1", pb::TapDirection::Rx)),
                filter: GEN_FILTER.into(),
                // Ends by time: packets lost in the dataplane would keep a
                // packet limit from being reached.
                max_duration_ms: SLOW_TAP_MS,
                ..Default::default()
            },
        )
        .await?;
        // The client reads nothing while every frame goes through: this
        // (only) thread of the runtime is busy sending, so not even the
        // HTTP/2 connection is read.
        let results = run_concurrently(std::slice::from_ref(&flow))?;
        let tapped = read_to_end(stream).await?;
        Ok::<_, anyhow::Error>((tapped, results))
    })?;
    check_delivery(&flow.name, &flow.frames, &results[0])?;
    let e = tapped.ended.clone().context("no `ended`")?;
    eprintln!(
        "slow client: {} packets received, {} lost in batches; ended {e:?}",
        tapped.packets.len(),
        tapped.lost
    );
    ensure!(tapped.lost > 0, "nothing was lost: {e:?}");
    ensure!(
        e.lost_packets == tapped.lost,
        "{e:?} vs {} lost",
        tapped.lost
    );
    ensure!(
        e.sent_packets == tapped.packets.len() as u64,
        "{e:?} vs {} received",
        tapped.packets.len()
    );
    ensure!(
        e.sent_packets + e.lost_packets == e.matched_packets,
        "{e:?}"
    );
    ensure!(e.reason() == pb::TapEndReason::TimeLimit, "{e:?}");
    ensure!(e.matched_packets == n, "{e:?}: {n} frames were sent");
    // What the client got is a subsequence of what was sent, in order.
    let mut it = flow.frames.iter();
    for p in &tapped.packets {
        ensure!(
            it.any(|f| f.as_slice() == p.data.as_ref()),
            "a tapped packet is not one sent, or out of order"
        );
    }
    // The bridge forwarded everything meanwhile.
    let fin = stop_ok(dp)?;
    assert_counter(&fin, "inline-1", "rx_packets", n)?;
    assert_counter(&fin, "inline-2", "tx_packets", n)?;
    assert_counter(&fin, "inline-2", "drop_tx_ring_full", 0)?;
    Ok(())
}

#[test]
fn bad_tap_requests_are_refused_with_precise_statuses() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let rig = Rig::new(
        lab,
        &lab_config(
            Some(ifs::PASSIVE_1),
            Some((ifs::INLINE_1, ifs::INLINE_2)),
            "",
            "",
        ),
    )?;
    let sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut client = admin(&rig.url()).await?;
        let refused = |s: Result<tonic::Response<tonic::Streaming<pb::TapResponse>>, Status>| {
            s.map(|_| ()).expect_err("the tap should be refused")
        };
        let req = |point, filter: &str| pb::TapRequest {
            point: Some(point),
            filter: filter.into(),
            ..Default::default()
        };

        let e = refused(
            client
                .tap(authed(
                    req(
                        port_point("inline-1", pb::TapDirection::Rx),
                        "udp and prot 5",
                    ),
                    true,
                ))
                .await,
        );
        ensure!(e.code() == Code::InvalidArgument, "{e:?}");
        ensure!(
            e.message().starts_with("filter: column 9: "),
            "{}",
            e.message()
        );

        let e = refused(
            client
                .tap(authed(
                    req(hop_point("nope", pb::HopSide::A, pb::TapDirection::Rx), ""),
                    true,
                ))
                .await,
        );
        ensure!(e.code() == Code::NotFound, "{e:?}");
        ensure!(e.message().contains("no hop \"nope\""), "{}", e.message());

        for dir in [pb::TapDirection::Tx, pb::TapDirection::Both] {
            let e = refused(
                client
                    .tap(authed(req(port_point("passive-1", dir), ""), true))
                    .await,
            );
            ensure!(e.code() == Code::InvalidArgument, "{dir:?}: {e:?}");
            ensure!(
                e.message().contains("passive-1 only receives"),
                "{}",
                e.message()
            );
        }

        let e = refused(
            client
                .tap(authed(
                    req(port_point("passive-1", pb::TapDirection::Rx), ""),
                    false,
                ))
                .await,
        );
        ensure!(e.code() == Code::Unauthenticated, "{e:?}");
        Ok::<_, anyhow::Error>(())
    })?;

    // taplinectl: a filter error is a usage error with a caret; an unknown
    // hop is the server's refusal.
    let out = rig.ctl_output(&["tap", "--point", "inline-1", "udp", "and", "prot", "5"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "{}: {stderr}", out.status);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(
        lines.len() == 3
            && lines[0].starts_with("error: filter: column 9: ")
            && lines[1] == "  udp and prot 5"
            && lines[2] == "          ^",
        "{stderr}"
    );
    let out = rig.ctl_output(&["tap", "--hop", "nope", "--side", "a"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{}: {stderr}", out.status);
    ensure!(
        stderr.contains("NotFound") && stderr.contains("nope"),
        "{stderr}"
    );
    ensure!(out.stdout.is_empty());
    stop_ok(dp)?;
    drop(sidecar);
    Ok(())
}
