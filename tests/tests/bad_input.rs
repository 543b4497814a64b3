//! Bad input at run time, against both processes on a chain lab with real
//! clients (a tonic client of the sidecar, raw connections to the
//! dataplane's command socket, `taplinectl`):
//! - oversized requests (10,000 hops, a 3 MiB bypass reason, a 1 MiB hop
//!   name, a 5,000-byte tap filter, a 200 KB command frame) and control
//!   characters (a reason with `\n` and ESC codes, an interface name with
//!   ESC) are refused with INVALID_ARGUMENT naming the field, at the
//!   sidecar and at the command socket; nothing changes (generation, spec,
//!   hop state, chain.json); GetChain and WatchChain stay readable; the
//!   stored last rejected update is bounded; a valid change afterwards is
//!   answered exactly as applied and persisted; `taplinectl chain get`
//!   prints no escape sequence;
//! - half-written requests and idle connections on the command socket do
//!   not hold up other clients, over the connection bound the answer is
//!   RESOURCE_EXHAUSTED, and stalled connections are closed at their
//!   deadline;
//! - a hop whose tool interface is deleted and created again (a new
//!   ifindex) is rebound by itself, comes back UP after its hold time, and
//!   frames cross it byte-exact.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use tapline_bench::lab::{ifs, rx_packets};
use tapline_proto::v1 as pb;
use tapline_proto::v1::dataplane_request::Request as DpRequest;
use tapline_proto::v1::dataplane_response::Response as DpResponse;
use tapline_proto::wire;
use tapline_tests::api::{clients, AdminClient, ApiRig, ObserverClient};
use tapline_tests::chain::{
    hop_name, hop_spec, hop_state, wait_hop_state, wait_hops_up, Control, HEARTBEAT_HOLD_MS,
    UP_TIMEOUT,
};
use tapline_tests::sidecar::{spawn_ctl, wait_ctl};
use tapline_tests::{assert_delivered_in_order, privileged, run_concurrently, Flow};
use tonic::{Code, Status};

const FRAMES: usize = 300;
const CTL_TIMEOUT: Duration = Duration::from_secs(20);

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The status must be `code` with a message starting with `prefix`.
fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, prefix: &str) -> Result<()> {
    match r {
        Ok(v) => bail!("expected {code:?} ({prefix}...), got OK: {v:?}"),
        Err(s) => {
            ensure!(
                s.code() == code && s.message().starts_with(prefix),
                "expected {code:?} starting {prefix:?}, got {:?}: {:?}",
                s.code(),
                limited(s.message())
            );
            ensure!(
                s.message().len() < 2048,
                "the message is {} bytes long",
                s.message().len()
            );
            Ok(())
        }
    }
}

fn limited(s: &str) -> String {
    tapline_proto::limits::truncate(s, 300).into_owned()
}

/// What must not change: generation, desired spec, applied generation and
/// the hops' states and manual bypass.
type Unchanged = (u64, Option<pb::ChainSpec>, u64, Vec<(String, i32, bool)>);

fn unchanged_part(c: &pb::Chain) -> Unchanged {
    let st = c.status.clone().unwrap_or_default();
    (
        c.generation,
        c.spec.clone(),
        st.observed_generation,
        st.hops
            .iter()
            .map(|h| (h.name.clone(), h.state, h.manual_bypass))
            .collect(),
    )
}

/// Sends raw bytes on a new command connection and reads one answer.
fn raw_call(ctl_path: &std::path::Path, bytes: &[u8]) -> Result<pb::DataplaneResponse> {
    let mut s = UnixStream::connect(ctl_path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    wire::read_frame(&mut s)?.context("no answer")
}

/// Sends `request` on a new command connection and reads one answer.
fn raw_request(ctl_path: &std::path::Path, request: DpRequest) -> Result<pb::DataplaneResponse> {
    raw_call(
        ctl_path,
        &wire::encode_frame(&pb::DataplaneRequest {
            request: Some(request),
        }),
    )
}

fn error_of(r: &pb::DataplaneResponse) -> Option<(i32, &str)> {
    match &r.response {
        Some(DpResponse::Error(e)) => Some((e.code, e.message.as_str())),
        _ => None,
    }
}

fn persisted_generation(rig: &ApiRig) -> Result<u64> {
    let text = std::fs::read_to_string(rig.state_dir().join("chain.json"))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["generation"]
        .as_u64()
        .context("no generation in chain.json")
}

fn frames_cross(rig: &ApiRig) -> Result<()> {
    let flows = [
        Flow::gen_to_sink(&rig.lab, FRAMES)?,
        Flow::sink_to_gen(&rig.lab, FRAMES)?,
    ];
    let results = run_concurrently(&flows)?;
    for (f, r) in flows.iter().zip(&results) {
        assert_delivered_in_order(f, r)?;
    }
    Ok(())
}

/// A chain spec of `hops`, the default failure action unset.
fn spec(hops: Vec<pb::HopSpec>) -> pb::ChainSpec {
    pb::ChainSpec {
        hops,
        default_on_failure: 0,
    }
}

/// SetChain of `s`, unconditional.
fn set(s: pb::ChainSpec, dry_run: bool) -> pb::SetChainRequest {
    pb::SetChainRequest {
        spec: Some(s),
        expected_generation: None,
        dry_run,
    }
}

/// Bypass `hop` for `reason`.
fn bypass(hop: &str, reason: String) -> pb::SetHopBypassRequest {
    pb::SetHopBypassRequest {
        hop: hop.to_string(),
        bypass: true,
        reason,
    }
}

/// Oversized and control-character requests through the gRPC API: each
/// refused with its code and a message naming the field.
async fn grpc_requests_are_refused(
    admin: &mut AdminClient,
    good_hop: &pb::HopSpec,
    hop: &str,
) -> Result<()> {
    // 10,000 hops, for real and as a dry run.
    for dry_run in [false, true] {
        refused(
            admin
                .set_chain(set(spec(vec![good_hop.clone(); 10_000]), dry_run))
                .await,
            Code::InvalidArgument,
            "hops: 10000 hops: a chain has at most 8",
        )?;
    }
    // A 1 MiB hop name; an interface name with an escape sequence.
    let mut long = good_hop.clone();
    long.name = "n".repeat(1 << 20);
    refused(
        admin.set_chain(set(spec(vec![long]), false)).await,
        Code::InvalidArgument,
        "hops[0].name: 1048576 bytes",
    )?;
    let mut esc = good_hop.clone();
    esc.a = "t\x1b[2J".into();
    refused(
        admin.set_chain(set(spec(vec![esc]), false)).await,
        Code::InvalidArgument,
        "hops[0].a: control character U+001B at byte 1",
    )?;
    // Bypass reasons: 3 MiB, and one forging a log line and painting
    // the terminal; a 5 MiB one is over the gRPC message limit.
    refused(
        admin.set_hop_bypass(bypass(hop, "r".repeat(3 << 20))).await,
        Code::InvalidArgument,
        "reason: 3145728 bytes",
    )?;
    refused(
        admin
            .set_hop_bypass(bypass(
                hop,
                "ok\n{\"level\":\"ERROR\",\"message\":\"forged\"}\x1b[31m".into(),
            ))
            .await,
        Code::InvalidArgument,
        "reason: control character U+000A at byte 2",
    )?;
    refused(
        admin.set_hop_bypass(bypass(hop, "r".repeat(5 << 20))).await,
        Code::OutOfRange,
        "Error, decoded message length too large",
    )?;
    // A tap filter over its bound.
    let tap = pb::TapRequest {
        point: Some(pb::TapPoint {
            location: Some(pb::tap_point::Location::Port("inline-1".into())),
            direction: 0,
        }),
        filter: "tcp or ".repeat(800),
        ..Default::default()
    };
    refused(
        admin.tap(tap).await.map(|_| ()),
        Code::InvalidArgument,
        "filter: 5600 bytes",
    )?;
    Ok(())
}

/// The same straight to the command socket (any process with the
/// dataplane's uid may connect): each refused with its code and message.
fn command_socket_requests_are_refused(
    sock: &std::path::Path,
    good_hop: &pb::HopSpec,
    hop: &str,
) -> Result<()> {
    // Straight to the command socket (any process with the dataplane's
    // uid may connect): a 200 KB frame, 9 hops with 1 KiB names and a
    // reason with control characters.
    let big = wire::encode_frame(&pb::DataplaneRequest {
        request: Some(DpRequest::SetChain(set(
            spec(vec![good_hop.clone(); 10_000]),
            false,
        ))),
    });
    ensure!(big.len() > 100_000);
    let r = raw_call(sock, &big)?;
    let (code, msg) = error_of(&r).with_context(|| format!("{r:?}"))?;
    ensure!(
        code == Code::InvalidArgument as i32 && msg.contains("larger than the limit of 65536"),
        "{code} {msg}"
    );
    let mut nine = vec![good_hop.clone(); 9];
    for (i, h) in nine.iter_mut().enumerate() {
        h.name = format!("{i}\x1b]0;title\x07{}", "y".repeat(1024));
    }
    let r = raw_request(sock, DpRequest::SetChain(set(spec(nine), false)))?;
    let (code, msg) = error_of(&r).with_context(|| format!("{r:?}"))?;
    ensure!(
        code == Code::InvalidArgument as i32 && msg.starts_with("invalid chain spec: hops: 9 hops"),
        "{code} {msg}"
    );
    let mut many = vec![good_hop.clone(); 3];
    for (i, h) in many.iter_mut().enumerate() {
        h.name = format!("{i}{}", "z".repeat(40_000 / 3));
    }
    let r = raw_request(sock, DpRequest::SetChain(set(spec(many), false)))?;
    let (code, msg) = error_of(&r).with_context(|| format!("{r:?}"))?;
    ensure!(
        code == Code::InvalidArgument as i32
            && msg.starts_with("invalid chain spec: hops[0].name: 13334 bytes"),
        "{code} {}",
        limited(msg)
    );
    let r = raw_request(
        sock,
        DpRequest::SetHopBypass(bypass(hop, "a\x1b[2Jb".into())),
    )?;
    let (code, msg) = error_of(&r).with_context(|| format!("{r:?}"))?;
    ensure!(
        code == Code::InvalidArgument as i32
            && msg.starts_with("reason: control character U+001B at byte 1"),
        "{code} {msg}"
    );
    Ok(())
}

/// After the refusals: nothing changed, the chain stays readable (Get and
/// Watch), and what is kept of the rejected update is bounded and inert.
async fn nothing_changed(obs: &mut ObserverClient, rig: &ApiRig, before: &pb::Chain) -> Result<()> {
    // Nothing changed, the chain stays readable (Get and Watch), and
    // what is kept of the rejected update is bounded and inert.
    let after = obs
        .get_chain(pb::GetChainRequest {})
        .await?
        .into_inner()
        .chain
        .unwrap();
    ensure!(
        unchanged_part(&after) == unchanged_part(before),
        "before {before:?}\nafter {after:?}"
    );
    ensure!(persisted_generation(rig)? == before.generation);
    let rejected = after
        .status
        .as_ref()
        .and_then(|s| s.last_rejected.as_ref())
        .context("no last rejected update")?;
    ensure!(
        rejected.encoded_len() < 16 << 10,
        "last_rejected is {} bytes",
        rejected.encoded_len()
    );
    let mut watch = obs
        .watch_chain(pb::WatchChainRequest {})
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await??
        .context("WatchChain ended")?;
    ensure!(first.chain.map(|c| c.generation) == Some(before.generation));
    drop(watch);
    Ok(())
}

/// A valid change after the refusals is answered exactly as applied and
/// persisted.
async fn a_valid_change_applies(
    admin: &mut AdminClient,
    obs: &mut ObserverClient,
    rig: &ApiRig,
    good_hop: &pb::HopSpec,
    before: &pb::Chain,
) -> Result<()> {
    // A valid change now: answered exactly as applied and persisted.
    let mut drop_hop = good_hop.clone();
    drop_hop.on_failure = pb::FailureAction::Drop.into();
    let r = admin
        .set_chain(pb::SetChainRequest {
            spec: Some(spec(vec![drop_hop.clone()])),
            expected_generation: Some(before.generation),
            dry_run: false,
        })
        .await?
        .into_inner();
    ensure!(r.accepted && r.generation == before.generation + 1, "{r:?}");
    let now = obs
        .get_chain(pb::GetChainRequest {})
        .await?
        .into_inner()
        .chain
        .unwrap();
    ensure!(now.generation == r.generation, "{now:?}");
    ensure!(
        now.spec.as_ref().map(|s| &s.hops) == Some(&vec![drop_hop]),
        "{now:?}"
    );
    ensure!(
        now.status.as_ref().map(|s| s.observed_generation) == Some(r.generation),
        "{now:?}"
    );
    ensure!(persisted_generation(rig)? == r.generation);
    Ok(())
}

#[test]
fn oversized_and_control_character_requests_are_refused_and_change_nothing() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = ApiRig::start(1, None)?;
    let ctl = Control::new(rig.state_dir());
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let hop = hop_name(1);
    let sock = rig.state_dir().join(wire::SOCKET_NAME);
    let rt = runtime()?;
    rt.block_on(async {
        let (mut admin, mut obs) = clients(&rig.ports.grpc_url()).await?;
        let before = obs
            .get_chain(pb::GetChainRequest {})
            .await?
            .into_inner()
            .chain
            .unwrap();
        let good_hop = hop_spec(&hop, &ifs::hop_a(1), &ifs::hop_b(1));
        grpc_requests_are_refused(&mut admin, &good_hop, &hop).await?;
        command_socket_requests_are_refused(&sock, &good_hop, &hop)?;
        nothing_changed(&mut obs, &rig, &before).await?;
        a_valid_change_applies(&mut admin, &mut obs, &rig, &good_hop, &before).await
    })?;

    // The operator's terminal: no escape sequence, no forged line.
    let out = wait_ctl(
        spawn_ctl(&rig.ports.grpc_url(), None, &["chain", "get"])?,
        &["chain", "get"],
        CTL_TIMEOUT,
    )?;
    ensure!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout)?;
    ensure!(
        !text.contains('\x1b') && !text.contains('\x07') && text.contains("last rejected update"),
        "{text}"
    );
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    frames_cross(&rig)
}

#[test]
fn stalled_command_connections_hold_up_no_one_and_are_bounded() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = ApiRig::start(1, None)?;
    let ctl = Control::new(rig.state_dir());
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let sock = rig.state_dir().join(wire::SOCKET_NAME);
    let get = wire::encode_frame(&pb::DataplaneRequest {
        request: Some(DpRequest::GetChain(pb::GetChainRequest {})),
    });
    // Six connections that send half a request and hang.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = UnixStream::connect(&sock)?;
        s.write_all(&get[..3])?;
        stalled.push(s);
    }
    let t0 = Instant::now();
    for _ in 0..5 {
        ctl.get_chain()?;
    }
    let took = t0.elapsed();
    // One stalled connection used to cost 5 s each.
    ensure!(
        took < Duration::from_secs(4),
        "5 GetChain took {took:?} beside 6 stalled connections"
    );
    // Fill the bound (32 connections reading a request at once) with idle
    // ones: the next is answered RESOURCE_EXHAUSTED at once.
    let mut idle = Vec::new();
    for _ in 0..(32 - stalled.len()) {
        idle.push(UnixStream::connect(&sock)?);
    }
    std::thread::sleep(Duration::from_millis(200));
    let r = raw_call(&sock, &get)?;
    let (code, msg) = error_of(&r).with_context(|| format!("{r:?}"))?;
    ensure!(code == Code::ResourceExhausted as i32, "{code} {msg}");
    // At their deadline (5 s for a whole request) the stalled and idle
    // connections are closed, and the socket serves again.
    for s in stalled.iter_mut().chain(idle.iter_mut()) {
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut b = [0u8; 1];
        let n = s.read(&mut b)?;
        ensure!(
            n == 0,
            "a stalled connection got {n} bytes instead of being closed"
        );
    }
    ensure!(ctl.get_chain()?.generation == 1);
    frames_cross(&rig)
}

#[test]
fn a_recreated_tool_interface_is_rebound_and_its_hop_returns_up() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    for on_failure in ["drop", "bypass"] {
        let rig = ApiRig::start(1, Some(on_failure))?;
        let ctl = Control::new(rig.state_dir());
        wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
        let hop = hop_name(1);
        let before = ctl.get_chain()?;
        let t0 = Instant::now();
        rig.lab.recreate_tool_link(1)?;
        wait_hop_state(&ctl, &hop, pb::HopState::Down, Duration::from_secs(10))
            .with_context(|| format!("{on_failure}: the hop did not go DOWN"))?;
        wait_hop_state(
            &ctl,
            &hop,
            pb::HopState::Up,
            Duration::from_millis(HEARTBEAT_HOLD_MS) + Duration::from_secs(15),
        )
        .with_context(|| format!("{on_failure}: the hop did not come back UP"))?;
        eprintln!(
            "{on_failure}: UP again {:?} after the re-creation",
            t0.elapsed()
        );
        let after = ctl.get_chain()?;
        ensure!(after.generation == before.generation, "{after:?}");
        ensure!(hop_state(&after, &hop) == Some(pb::HopState::Up));
        let lines = rig.dataplane().lines().join("\n");
        ensure!(
            lines.contains("a hop's tool interface was replaced"),
            "no log line of the rebind"
        );
        // Through the new interface (the tool sees them), byte-exact, both
        // ways.
        let tool_rx = || rx_packets(rig.lab.tool(1)?, ifs::TOOL_A);
        let rx0 = tool_rx()?;
        frames_cross(&rig).with_context(|| format!("{on_failure}: frames after the rebind"))?;
        let through = tool_rx()? - rx0;
        ensure!(
            through >= FRAMES as u64,
            "{on_failure}: only {through} frames went through the tool after the rebind"
        );
    }
    Ok(())
}
