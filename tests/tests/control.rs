//! The control sidecar against a real dataplane. Both processes run for
//! real: `tapline-dataplane` in the lab's dut namespace, `tapline-control`
//! in the root namespace (it only reads the stats segment in the shared
//! `state_dir`), both given the same configuration text, with the control
//! listeners on 127.0.0.1 ports unique to each test. Clients are a real
//! tonic client and the `taplinectl` binary.
//!
//! - counters served by `GetStats` and `taplinectl stats --json` equal the
//!   frames sent, in packets and bytes, on every port;
//! - `WatchStats` delivers snapshots at the asked interval, with rates that
//!   are non-negative and agree with the counters they come from;
//! - health follows the dataplane (NOT_SERVING before it starts, SERVING
//!   once it runs, NOT_SERVING within 1 s of its SIGKILL, SERVING after a
//!   restart), identically on the gRPC and the health-only port;
//! - with `observer_token_file`, Observer wants the token (UNAUTHENTICATED
//!   and `taplinectl` exit 77 without it or with a wrong one) and health
//!   does not;
//! - killing the sidecar under traffic costs the bridge nothing, and the
//!   restarted sidecar serves counters that include every frame;
//! - `/metrics` carries the port counters and `tapline_dataplane_up 1`;
//! - the chain of this build is empty, and chain changes are rejected.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use tapline_bench::lab::{ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::{lab_config, DataplaneProcess, StartOptions, STATE_DIR_PLACEHOLDER};
use tapline_proto::v1 as pb;
use tapline_tests::sidecar::{spawn_ctl, wait_ctl, Ports, Sidecar};
use tapline_tests::{
    assert_delivered_in_order, open_raw, passive_frames, privileged, run_concurrently, send_paced,
    stop_ok, total_bytes, Flow,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Health service names of the contract.
const HEALTH_NAMES: [&str; 3] = ["", "passive-1", "inline"];
/// How long a counter, a health status or a metric may take to show a
/// change (the sidecar polls the segment every 100 ms).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of one `taplinectl` run.
const CTL_TIMEOUT: Duration = Duration::from_secs(20);
/// `taplinectl` exit codes.
const EXIT_UNAUTHENTICATED: i32 = 77;
const EXIT_SERVER: i32 = 1;
/// Heartbeat staleness for the health test: NOT_SERVING must come within
/// 1 s of a SIGKILL; the dataplane beats every 100 ms.
const STALE_MS: u32 = 500;

// ---------------------------------------------------------------------------
// Set-up: ports, configuration, processes.

/// One test's world: the lab (if any), a private directory holding the
/// configuration and the shared state directory, and the sidecar's ports.
/// The directory is removed on drop.
#[derive(Debug)]
struct Rig {
    lab: Option<Lab>,
    workdir: PathBuf,
    /// The configuration text both processes get.
    config: String,
    config_path: PathBuf,
    ports: Ports,
}

impl Rig {
    /// A full lab (passive and inline) with `control_keys` added to the
    /// `[control]` table.
    fn full(control_keys: &str) -> Result<Rig> {
        let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
        Rig::new(Some(lab), control_keys)
    }

    /// No lab: for checks of the sidecar alone.
    fn new(lab: Option<Lab>, control_keys: &str) -> Result<Rig> {
        let workdir = std::env::temp_dir().join(format!("{}-ctl", unique_prefix()));
        std::fs::create_dir_all(&workdir)?;
        // One explicit state directory for both processes, writable by
        // whoever runs the dataplane.
        let state_dir = workdir.join("state");
        std::fs::create_dir_all(&state_dir)?;
        std::fs::set_permissions(
            &state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let ports = Ports::unique()?;
        let config = lab_config(
            Some(ifs::PASSIVE_1),
            Some((ifs::INLINE_1, ifs::INLINE_2)),
            "kernel_stats_interval_ms = 100\n",
            &format!(
                "[control]\ngrpc_listen = \"127.0.0.1:{}\"\nhealth_listen = \"127.0.0.1:{}\"\n\
                 metrics_listen = \"127.0.0.1:{}\"\n{control_keys}",
                ports.grpc, ports.health, ports.metrics
            ),
        )
        .replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy());
        let config_path = workdir.join("tapline.toml");
        std::fs::write(&config_path, &config)?;
        Ok(Rig {
            lab,
            workdir,
            config,
            config_path,
            ports,
        })
    }

    fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("a rig with a lab")
    }

    /// Starts the dataplane in the dut namespace and waits until it runs.
    fn start_dataplane(&self) -> Result<DataplaneProcess> {
        DataplaneProcess::start(
            &self.lab().dut,
            &self.config,
            &StartOptions {
                expect_ready: true,
                ..StartOptions::default()
            },
        )
    }

    fn start_sidecar(&self) -> Result<Sidecar> {
        let p = self.ports;
        Sidecar::start(&self.config_path, &[p.grpc, p.health, p.metrics])
    }

    /// Runs `taplinectl --endpoint <grpc> ARGS`.
    fn ctl(&self, args: &[&str]) -> Result<Output> {
        ctl(&self.ports.grpc_url(), args)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Runs `taplinectl --endpoint URL ARGS`, bounded by [`CTL_TIMEOUT`].
fn ctl(url: &str, args: &[&str]) -> Result<Output> {
    wait_ctl(spawn_ctl(url, None, args)?, args, CTL_TIMEOUT)
}

/// `taplinectl` succeeded; its stdout.
fn ctl_ok(out: &Output, what: &str) -> Result<String> {
    ensure!(
        out.status.success(),
        "taplinectl {what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout.clone())?)
}

/// `taplinectl` exited with `code` (4: answered, not SERVING); its stdout.
fn ctl_exit(out: &Output, code: i32, what: &str) -> Result<String> {
    ensure!(
        out.status.code() == Some(code),
        "taplinectl {what}: expected exit {code}, got {} ({})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout.clone())?)
}

/// taplinectl's exit code for a health that is not SERVING.
const EXIT_NOT_SERVING: i32 = 4;

/// `taplinectl --json` succeeded; its stdout as JSON.
fn ctl_json(out: &Output, what: &str) -> Result<serde_json::Value> {
    let text = ctl_ok(out, what)?;
    serde_json::from_str(&text).with_context(|| format!("taplinectl {what}: not JSON: {text}"))
}

/// `taplinectl` failed with `code` and exactly one line on stderr; the line.
fn ctl_fails(out: &Output, code: i32, what: &str) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        out.status.code() == Some(code),
        "taplinectl {what}: expected exit {code}, got {} (stderr: {stderr})",
        out.status
    );
    ensure!(
        stderr.lines().count() == 1,
        "taplinectl {what}: expected one line on stderr, got:\n{stderr}"
    );
    Ok(stderr.trim_end().to_string())
}

// ---------------------------------------------------------------------------
// gRPC clients.

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

fn observer(ch: &Channel) -> pb::observer_client::ObserverClient<Channel> {
    pb::observer_client::ObserverClient::new(ch.clone())
}

/// The status of every health name, by name.
async fn health_of(ch: &Channel) -> Result<BTreeMap<&'static str, ServingStatus>> {
    let mut client = HealthClient::new(ch.clone());
    let mut out = BTreeMap::new();
    for name in HEALTH_NAMES {
        let resp = client
            .check(HealthCheckRequest {
                service: name.to_string(),
            })
            .await
            .with_context(|| format!("health check of {name:?}"))?
            .into_inner();
        out.insert(name, resp.status());
    }
    Ok(out)
}

/// Polls the health of every name on every channel until all are `want`.
async fn wait_health(chans: &[&Channel], want: ServingStatus, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = true;
        let mut seen = Vec::new();
        for ch in chans {
            let h = health_of(ch).await?;
            all &= h.values().all(|s| *s == want);
            seen.push(h);
        }
        if all {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "health not all {want:?} after {timeout:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_stats(ch: &Channel) -> Result<pb::Stats, tonic::Status> {
    observer(ch)
        .get_stats(pb::GetStatsRequest { selector: None })
        .await
        .map(|r| r.into_inner().stats.unwrap_or_default())
}

fn port<'a>(s: &'a pb::Stats, role: &str) -> Result<&'a pb::PortStats> {
    s.ports
        .iter()
        .find(|p| p.role == role)
        .with_context(|| format!("no {role} port in {s:#?}"))
}

fn totals(s: &pb::Stats, role: &str) -> Result<pb::PacketCounters> {
    Ok(port(s, role)?.totals.clone().unwrap_or_default())
}

/// Polls `GetStats` until `done` holds (errors count as "not yet").
async fn wait_stats(
    ch: &Channel,
    what: &str,
    done: impl Fn(&pb::Stats) -> bool,
) -> Result<pb::Stats> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match get_stats(ch).await {
            Ok(s) if done(&s) => return Ok(s),
            Ok(s) => format!("{s:#?}"),
            Err(e) => format!("error {e}"),
        };
        ensure!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last GetStats: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rx_is(s: &pb::Stats, role: &str, n: usize) -> bool {
    totals(s, role).is_ok_and(|t| t.rx_packets == n as u64)
}

/// A request carrying `authorization: <value>`.
fn with_auth<T>(msg: T, value: Option<&str>) -> Result<Request<T>> {
    let mut r = Request::new(msg);
    if let Some(v) = value {
        r.metadata_mut().insert("authorization", v.parse()?);
    }
    Ok(r)
}

/// A uint64 of taplinectl's `--json`: the proto3 JSON mapping writes
/// 64-bit integers as decimal strings.
fn json_u64(v: &serde_json::Value) -> Option<u64> {
    v.as_str()?.parse().ok()
}

/// The value of one counter (`rxPackets`...) of a `taplinectl stats
/// --json` port (`{"stats": {"ports": [...]}}`).
fn json_counter(v: &serde_json::Value, role: &str, field: &str) -> Result<u64> {
    let ports = v["stats"]["ports"]
        .as_array()
        .context("stats.ports is an array")?;
    let p = ports
        .iter()
        .find(|p| p["role"] == role)
        .with_context(|| format!("no {role} in {v}"))?;
    json_u64(&p["totals"][field]).with_context(|| format!("{role}.totals.{field} in {p}"))
}

// ---------------------------------------------------------------------------
// Tests.

const BRIDGE_FRAMES: usize = 2_000;
/// The interval the `WatchStats` test asks for, and how long it watches.
const INTERVAL_MS: u32 = 200;
const WINDOW: Duration = Duration::from_millis(2_100);
const PASSIVE_FRAMES: usize = 1_500;

#[test]
fn counters_equal_the_frames_sent() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = Rig::full("")?;
    let lab = rig.lab();
    let flows = [
        Flow::gen_to_sink(lab, BRIDGE_FRAMES)?,
        Flow::sink_to_gen(lab, BRIDGE_FRAMES / 2)?,
    ];
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    let captured = passive_frames(PASSIVE_FRAMES);
    let _sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;

    let results = run_concurrently(&flows)?;
    for (f, r) in flows.iter().zip(&results) {
        assert_delivered_in_order(f, r)?;
    }
    let [flow, back] = &flows;
    send_paced(&tap, &captured, Instant::now() + Duration::from_secs(20))?;

    let (n, m, k) = (BRIDGE_FRAMES, PASSIVE_FRAMES, BRIDGE_FRAMES / 2);
    let (nb, mb, kb) = (
        total_bytes(&flow.frames),
        total_bytes(&captured),
        total_bytes(&back.frames),
    );
    let rt = runtime()?;
    let s = rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        wait_stats(&ch, "every frame counted", |s| {
            rx_is(s, "inline-1", n) && rx_is(s, "inline-2", k) && rx_is(s, "passive-1", m)
        })
        .await
    })?;
    ensure!(
        s.dataplane_state() == pb::DataplaneState::Running,
        "state {:?}",
        s.dataplane_state()
    );
    let expect = [
        ("inline-1", ifs::INLINE_1, n, nb, k, kb),
        ("inline-2", ifs::INLINE_2, k, kb, n, nb),
        ("passive-1", ifs::PASSIVE_1, m, mb, 0, 0),
    ];
    ensure!(s.ports.len() == 3, "three ports expected: {s:#?}");
    for (role, ifname, rx, rx_bytes, tx, tx_bytes) in expect {
        let p = port(&s, role)?;
        let t = p.totals.clone().unwrap_or_default();
        ensure!(p.ifname == ifname, "{role} is on {}", p.ifname);
        ensure!(
            (t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes)
                == (rx as u64, rx_bytes, tx as u64, tx_bytes),
            "{role}: GetStats says rx {} / {} B, tx {} / {} B; sent rx {rx} / {rx_bytes} B, tx {tx} / {tx_bytes} B",
            t.rx_packets,
            t.rx_bytes,
            t.tx_packets,
            t.tx_bytes
        );
        ensure!(t.dropped_packets == 0, "{role} dropped {t:?}");
        // The queues add up to the totals.
        let q_rx: u64 = p
            .queues
            .iter()
            .map(|q| q.counters.as_ref().map_or(0, |c| c.rx_packets))
            .sum();
        ensure!(q_rx == t.rx_packets, "{role}: queues sum {q_rx} != totals");
        ensure!(p.rates.is_none(), "GetStats carries no rates");
    }

    // The CLI shows the same numbers, in JSON and in its table.
    let v = ctl_json(&rig.ctl(&["--json", "stats"])?, "stats --json")?;
    for (role, _, rx, rx_bytes, tx, tx_bytes) in expect {
        let got = [
            json_counter(&v, role, "rxPackets")?,
            json_counter(&v, role, "rxBytes")?,
            json_counter(&v, role, "txPackets")?,
            json_counter(&v, role, "txBytes")?,
            json_counter(&v, role, "droppedPackets")?,
        ];
        ensure!(
            got == [rx as u64, rx_bytes, tx as u64, tx_bytes, 0],
            "{role}: taplinectl stats --json says {got:?}, sent rx {rx} / {rx_bytes} B, tx {tx} / {tx_bytes} B"
        );
    }
    ensure!(
        v["stats"]["dataplaneState"] == "DATAPLANE_STATE_RUNNING",
        "{v}"
    );
    let table = ctl_ok(&rig.ctl(&["stats"])?, "stats")?;
    let row = table
        .lines()
        .find(|l| l.starts_with("inline-1 "))
        .with_context(|| format!("no inline-1 row in:\n{table}"))?;
    // PORT IFNAME QUEUE MODE RX-PACKETS RX-BYTES TX-PACKETS TX-BYTES ...
    let cells: Vec<String> = row.split_whitespace().map(str::to_string).collect();
    ensure!(
        cells.get(4..8)
            == Some(&[n.to_string(), nb.to_string(), k.to_string(), kb.to_string()][..]),
        "inline-1 row {row:?} of:\n{table}"
    );

    // status: the dataplane, its interfaces and health.
    let st = ctl_json(&rig.ctl(&["--json", "status"])?, "status --json")?;
    ensure!(st["dataplaneState"] == "DATAPLANE_STATE_RUNNING", "{st}");
    for name in HEALTH_NAMES {
        ensure!(st["health"][name] == "SERVING", "health of {name:?}: {st}");
    }
    let ifnames: Vec<&str> = st["interfaces"]
        .as_array()
        .context("interfaces")?
        .iter()
        .filter_map(|i| i["ifname"].as_str())
        .collect();
    ensure!(
        ifnames == [ifs::PASSIVE_1, ifs::INLINE_1, ifs::INLINE_2],
        "interfaces {ifnames:?}"
    );
    let human = ctl_ok(&rig.ctl(&["status"])?, "status")?;
    ensure!(human.contains("dataplane: running"), "{human}");

    // The dataplane's own final count agrees.
    let fin = stop_ok(dp)?;
    ensure!(fin.counter("inline-1", "rx_packets") == n as u64);
    Ok(())
}

#[test]
fn watch_stats_comes_at_the_asked_interval_with_sound_rates() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = Rig::full("")?;
    let lab = rig.lab();
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    let frames = passive_frames(20_000);
    let _sidecar = rig.start_sidecar()?;
    let _dp = rig.start_dataplane()?;
    let rt = runtime()?;
    let ch = rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        wait_stats(&ch, "a running dataplane", |s| {
            s.dataplane_state() == pb::DataplaneState::Running
        })
        .await?;
        anyhow::Ok(ch)
    })?;

    // Traffic into passive-1 while the watch runs.
    let sender = std::thread::spawn(move || {
        send_paced(&tap, &frames, Instant::now() + Duration::from_secs(20))
    });
    let msgs = rt.block_on(async {
        let start = Instant::now();
        let mut stream = observer(&ch)
            .watch_stats(pb::WatchStatsRequest {
                interval_ms: INTERVAL_MS,
                selector: None,
            })
            .await?
            .into_inner();
        let mut msgs = Vec::new();
        while start.elapsed() < WINDOW {
            let left = WINDOW.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, stream.message()).await {
                Ok(m) => msgs.push((start.elapsed(), m?.context("the watch ended")?)),
                Err(_) => break,
            }
        }
        anyhow::Ok(msgs)
    })?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;

    let arrivals: Vec<u128> = msgs.iter().map(|(t, _)| t.as_millis()).collect();
    watch_updates_are_sound(&msgs, &arrivals)?;
    let took = cli_watch_prints_a_json_line_per_update(&rig)?;
    eprintln!(
        "{} updates at {arrivals:?} ms; taplinectl --watch --count 3 took {took:?}",
        msgs.len()
    );
    Ok(())
}

/// The updates of a `WatchStats` at [`INTERVAL_MS`] over [`WINDOW`] (with
/// their arrival times): as many as the interval makes, the first at once
/// without rates, then rates over about one interval that are finite,
/// non-negative and agree with the counters' growth, and traffic seen on
/// passive-1.
fn watch_updates_are_sound(
    msgs: &[(Duration, pb::WatchStatsResponse)],
    arrivals: &[u128],
) -> Result<()> {
    // First at once, then one every 200 ms: 11 in 2.1 s.
    ensure!(
        (9..=13).contains(&msgs.len()),
        "{} updates in {WINDOW:?} at {INTERVAL_MS} ms (arrivals at {arrivals:?} ms)",
        msgs.len()
    );
    ensure!(
        arrivals[0] < 1000,
        "the first update must come at once: {arrivals:?}"
    );
    let mut saw_traffic = false;
    for (i, (_, m)) in msgs.iter().enumerate() {
        ensure!(
            m.interval_ms == INTERVAL_MS,
            "interval in force {}",
            m.interval_ms
        );
        let s = m.stats.as_ref().context("stats")?;
        if i == 0 {
            ensure!(s.rates_window_ms == 0, "first update has no rates: {s:#?}");
            continue;
        }
        let prev = msgs[i - 1].1.stats.as_ref().context("stats")?;
        ensure!(s.stats_epoch == prev.stats_epoch, "epoch changed mid-test");
        let w = s.rates_window_ms;
        ensure!(
            (100..=600).contains(&w),
            "update {i}: rates over {w} ms for a {INTERVAL_MS} ms interval"
        );
        for p in &s.ports {
            let r = p
                .rates
                .clone()
                .with_context(|| format!("no rates for {}", p.role))?;
            for (name, v) in [
                ("rx_packets_per_second", r.rx_packets_per_second),
                ("rx_bytes_per_second", r.rx_bytes_per_second),
                ("tx_packets_per_second", r.tx_packets_per_second),
                ("tx_bytes_per_second", r.tx_bytes_per_second),
                ("dropped_packets_per_second", r.dropped_packets_per_second),
            ] {
                ensure!(v.is_finite() && v >= 0.0, "{}.{name} = {v}", p.role);
            }
            // The rate is the counter's growth over the window.
            let now = totals(s, &p.role)?.rx_packets;
            let before = totals(prev, &p.role)?.rx_packets;
            let expected = (now - before) as f64 * 1000.0 / w as f64;
            ensure!(
                (r.rx_packets_per_second - expected).abs() <= 0.02 * expected + 5.0,
                "update {i}: {} rx rate {} but {} packets in {w} ms make {expected}",
                p.role,
                r.rx_packets_per_second,
                now - before
            );
            saw_traffic |= p.role == "passive-1" && r.rx_packets_per_second > 0.0;
        }
        for wk in &s.workers {
            let r = wk.rates.context("worker rates")?;
            ensure!(
                r.batches_per_second >= 0.0
                    && r.idle_waits_per_second >= 0.0
                    && (0.0..=1.0).contains(&r.busy_loop_ratio),
                "worker {} rates {r:?}",
                wk.worker_id
            );
        }
    }
    ensure!(
        saw_traffic,
        "no passive-1 rx rate > 0 while frames were sent"
    );
    Ok(())
}

/// The CLI's watch: one JSON object per line, per update; returns how
/// long `--count 3` took.
fn cli_watch_prints_a_json_line_per_update(rig: &Rig) -> Result<Duration> {
    let start = Instant::now();
    let out = rig.ctl(&[
        "--json",
        "stats",
        "--watch",
        "--interval-ms",
        "200",
        "--count",
        "3",
    ])?;
    let took = start.elapsed();
    let text = ctl_ok(&out, "stats --watch")?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("not JSON lines: {text}"))?;
    ensure!(lines.len() == 3, "3 updates asked, got:\n{text}");
    ensure!(
        took >= Duration::from_millis(350),
        "3 updates 200 ms apart took {took:?}"
    );
    for (i, l) in lines.iter().enumerate() {
        ensure!(l["intervalMs"] == 200, "{l}");
        let rates = &l["stats"]["ports"][0]["rates"];
        if i == 0 {
            // No rates yet: the window is "0" and the message is unset.
            ensure!(l["stats"]["ratesWindowMs"] == "0" && rates.is_null(), "{l}");
        } else {
            ensure!(
                rates["rxPacketsPerSecond"]
                    .as_f64()
                    .is_some_and(|r| r >= 0.0),
                "{l}"
            );
        }
    }
    Ok(took)
}

#[test]
fn health_follows_the_dataplane_on_both_ports() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = Rig::full(&format!("dataplane_stale_ms = {STALE_MS}\n"))?;
    let _sidecar = rig.start_sidecar()?;
    let rt = runtime()?;
    let (grpc, health) = rt.block_on(async {
        anyhow::Ok((
            channel(&rig.ports.grpc_url()).await?,
            channel(&rig.ports.health_url()).await?,
        ))
    })?;
    let chans = [&grpc, &health];
    // Like grpc_health_probe: exit 0 only when SERVING, 4 otherwise.
    let ctl_health = |url: &str, code: i32| -> Result<serde_json::Value> {
        let text = ctl_exit(&ctl(url, &["--json", "health"])?, code, "health --json")?;
        Ok(serde_json::from_str(&text)?)
    };
    let assert_ctl = |want: &str| -> Result<()> {
        let code = if want == "SERVING" {
            0
        } else {
            EXIT_NOT_SERVING
        };
        for url in [rig.ports.grpc_url(), rig.ports.health_url()] {
            let v = ctl_health(&url, code)?;
            for name in HEALTH_NAMES {
                ensure!(
                    v["services"][name] == want,
                    "taplinectl health at {url}: {name:?} is {}, expected {want}",
                    v["services"][name]
                );
            }
        }
        Ok(())
    };

    // Before any dataplane: every name NOT_SERVING, on both ports.
    rt.block_on(async {
        for ch in chans {
            let h = health_of(ch).await?;
            ensure!(
                h.values().all(|s| *s == ServingStatus::NotServing),
                "before the dataplane: {h:?}"
            );
        }
        anyhow::Ok(())
    })?;
    assert_ctl("NOT_SERVING")?;
    let human = ctl_exit(&rig.ctl(&["health"])?, EXIT_NOT_SERVING, "health")?;
    ensure!(
        human.lines().filter(|l| l.ends_with("NOT_SERVING")).count() == 3,
        "{human}"
    );

    // The health-only port serves nothing else.
    let e = rt
        .block_on(observer(&health).get_info(pb::GetInfoRequest {}))
        .expect_err("Observer on the health-only port");
    ensure!(e.code() == Code::Unimplemented, "{e:?}");

    let dp = rig.start_dataplane()?;
    rt.block_on(wait_health(&chans, ServingStatus::Serving, SETTLE_TIMEOUT))?;
    assert_ctl("SERVING")?;

    // inline-1 loses carrier (its far end goes down): `inline` only is
    // NOT_SERVING, and SERVING again once the carrier is back.
    let lab = rig.lab.as_ref().context("the full rig has a lab")?;
    let inline_only_down = |h: &BTreeMap<&'static str, ServingStatus>| {
        h.iter().all(|(name, s)| {
            *s == if *name == "inline" {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            }
        })
    };
    lab.gen().set_link(ifs::GEN, false)?;
    rt.block_on(async {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let mut all = true;
            let mut seen = Vec::new();
            for ch in chans {
                let h = health_of(ch).await?;
                all &= inline_only_down(&h);
                seen.push(h);
            }
            if all {
                return anyhow::Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "inline-1 without carrier: health {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })?;
    lab.gen().set_link(ifs::GEN, true)?;
    rt.block_on(wait_health(&chans, ServingStatus::Serving, SETTLE_TIMEOUT))?;

    // SIGKILL: no goodbye; the heartbeat goes stale.
    dp.signal(Signal::SIGKILL)?;
    let killed_at = Instant::now();
    let took = rt.block_on(async {
        loop {
            let h = HealthClient::new(grpc.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner();
            if h.status() == ServingStatus::NotServing {
                return anyhow::Ok(killed_at.elapsed());
            }
            ensure!(
                killed_at.elapsed() < Duration::from_secs(3),
                "still SERVING 3 s after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })?;
    eprintln!("NOT_SERVING {took:?} after SIGKILL (dataplane_stale_ms = {STALE_MS})");
    ensure!(
        took <= Duration::from_secs(1),
        "NOT_SERVING came {took:?} after SIGKILL, more than 1 s"
    );
    rt.block_on(wait_health(
        &chans,
        ServingStatus::NotServing,
        Duration::from_millis(500),
    ))?;
    drop(dp.wait(Duration::from_secs(5)));
    assert_ctl("NOT_SERVING")?;

    // A new dataplane: SERVING again.
    let dp = rig.start_dataplane()?;
    rt.block_on(wait_health(&chans, ServingStatus::Serving, SETTLE_TIMEOUT))?;
    assert_ctl("SERVING")?;
    stop_ok(dp)?;
    // A clean stop is NOT_SERVING too.
    rt.block_on(wait_health(
        &chans,
        ServingStatus::NotServing,
        SETTLE_TIMEOUT,
    ))?;
    Ok(())
}

#[test]
fn observer_wants_the_token_and_health_does_not() -> Result<()> {
    // The sidecar alone: no namespace, no root needed.
    let token = "s3cret-0bserver";
    let mut rig = Rig::new(None, "")?;
    let token_path = rig.workdir.join("observer-token");
    // Surrounding whitespace is not part of the token.
    std::fs::write(&token_path, format!("  {token}\n"))?;
    let wrong_path = rig.workdir.join("wrong-token");
    std::fs::write(&wrong_path, "not-the-token\n")?;
    rig.config += &format!("observer_token_file = \"{}\"\n", token_path.display());
    std::fs::write(&rig.config_path, &rig.config)?;
    let _sidecar = rig.start_sidecar()?;

    let rt = runtime()?;
    rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        let right = format!("Bearer {token}");
        for auth in [None, Some("Bearer not-the-token"), Some(token)] {
            let e = observer(&ch)
                .get_info(with_auth(pb::GetInfoRequest {}, auth)?)
                .await
                .expect_err("GetInfo without the right token");
            ensure!(e.code() == Code::Unauthenticated, "{auth:?}: {e:?}");
            ensure!(!e.message().contains('\n'), "{e:?}");
            let e = observer(&ch)
                .watch_stats(with_auth(pb::WatchStatsRequest::default(), auth)?)
                .await
                .expect_err("WatchStats without the right token");
            ensure!(e.code() == Code::Unauthenticated, "watch {auth:?}: {e:?}");
        }
        let info = observer(&ch)
            .get_info(with_auth(pb::GetInfoRequest {}, Some(&right))?)
            .await
            .context("GetInfo with the right token")?
            .into_inner();
        ensure!(!info.version.is_empty(), "{info:?}");
        // Past the token check, GetChain needs the dataplane, which is not
        // running here.
        let e = observer(&ch)
            .get_chain(with_auth(pb::GetChainRequest {}, Some(&right))?)
            .await
            .expect_err("GetChain without a dataplane");
        ensure!(e.code() == Code::Unavailable, "{e:?}");
        // Health needs no token, on either port.
        for url in [rig.ports.grpc_url(), rig.ports.health_url()] {
            let h = health_of(&channel(&url).await?).await?;
            ensure!(h.len() == 3, "{h:?}");
        }
        anyhow::Ok(())
    })?;

    let no_token = ctl_fails(&rig.ctl(&["status"])?, EXIT_UNAUTHENTICATED, "status")?;
    ensure!(no_token.contains("--token-file"), "{no_token}");
    let wrong = rig.ctl(&["--token-file", &wrong_path.to_string_lossy(), "status"])?;
    let wrong = ctl_fails(&wrong, EXIT_UNAUTHENTICATED, "status --token-file wrong")?;
    ensure!(
        wrong.contains("the token was rejected: check --token-file"),
        "{wrong}"
    );
    ensure!(
        !wrong.contains("not-the-token"),
        "the token is not echoed: {wrong}"
    );
    let out = rig.ctl(&[
        "--json",
        "--token-file",
        &token_path.to_string_lossy(),
        "status",
    ])?;
    // No dataplane: printed, then exit 4 (not SERVING).
    let v: serde_json::Value =
        serde_json::from_str(&ctl_exit(&out, EXIT_NOT_SERVING, "status with the token")?)?;
    ensure!(v["version"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    ensure!(
        v["dataplaneState"] == "DATAPLANE_STATE_UNSPECIFIED",
        "no dataplane here: {v}"
    );
    ctl_exit(
        &rig.ctl(&["health"])?,
        EXIT_NOT_SERVING,
        "health without a token",
    )?;
    Ok(())
}

#[test]
fn admin_needs_its_token_and_bad_chain_updates_change_nothing() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let token = "adm1n-t0ken";
    let mut rig = Rig::full("")?;
    let token_path = rig.workdir.join("admin-token");
    std::fs::write(&token_path, format!("{token}\n"))?;
    rig.config += &format!("admin_token_file = \"{}\"\n", token_path.display());
    std::fs::write(&rig.config_path, &rig.config)?;
    // A tool that is a wire: a veth pair in the dut namespace, each end
    // receiving what the other sends.
    let dut = rig.lab().dut.name().to_string();
    tapline_bench::lab::ip(&[
        "-n", &dut, "link", "add", "t1a", "type", "veth", "peer", "name", "t1b",
    ])?;
    for i in ["t1a", "t1b"] {
        tapline_bench::lab::ip(&["-n", &dut, "link", "set", i, "up"])?;
    }
    let _dp = rig.start_dataplane()?;
    let _sidecar = rig.start_sidecar()?;
    let rt = runtime()?;
    let bearer = format!("Bearer {token}");
    rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        let mut admin = pb::admin_client::AdminClient::new(ch.clone());
        let before = get_chain(&ch).await?;
        ensure!(before.generation == 1, "{before:?}");
        let good = pb::ChainSpec {
            hops: vec![hop("wire", "t1a", "t1b")],
            default_on_failure: 0,
        };
        refused_without_the_token(&mut admin, &good, token).await?;
        invalid_updates_change_nothing(&ch, &mut admin, &bearer, &before, &good).await?;
        the_good_update_applies(&ch, &mut admin, &bearer, &good).await?;
        bypass_then_an_unknown_hop(&mut admin, &bearer).await?;
        anyhow::Ok(())
    })?;
    cli_shows_the_hop_and_refuses_a_bad_file(&rig, &token_path)
}

/// A hop of the chain spec, with the default failure action.
fn hop(name: &str, a: &str, b: &str) -> pb::HopSpec {
    pb::HopSpec {
        name: name.into(),
        a: a.into(),
        b: b.into(),
        on_failure: 0,
    }
}

/// The chain the dataplane holds (through Observer, without a token).
async fn get_chain(ch: &Channel) -> Result<pb::Chain, tonic::Status> {
    observer(ch)
        .get_chain(pb::GetChainRequest {})
        .await
        .map(|r| r.into_inner().chain.unwrap_or_default())
}

type AdminClient = pb::admin_client::AdminClient<Channel>;

/// Without the token, or with a wrong one (`token` is the admin token
/// without its `Bearer` scheme, which is wrong too): UNAUTHENTICATED.
async fn refused_without_the_token(
    admin: &mut AdminClient,
    good: &pb::ChainSpec,
    token: &str,
) -> Result<()> {
    for auth in [None, Some("Bearer wrong"), Some(token)] {
        let e = admin
            .set_chain(with_auth(
                pb::SetChainRequest {
                    spec: Some(good.clone()),
                    expected_generation: None,
                    dry_run: false,
                },
                auth,
            )?)
            .await
            .expect_err("SetChain without the token");
        ensure!(e.code() == Code::Unauthenticated, "{auth:?}: {e:?}");
        let e = admin
            .set_hop_bypass(with_auth(
                pb::SetHopBypassRequest {
                    hop: "wire".into(),
                    bypass: true,
                    reason: String::new(),
                },
                auth,
            )?)
            .await
            .expect_err("SetHopBypass without the token");
        ensure!(e.code() == Code::Unauthenticated, "{auth:?}: {e:?}");
    }
    Ok(())
}

/// Invalid updates, with the token: refused, and nothing changes.
async fn invalid_updates_change_nothing(
    ch: &Channel,
    admin: &mut AdminClient,
    bearer: &str,
    before: &pb::Chain,
    good: &pb::ChainSpec,
) -> Result<()> {
    let bad: [(pb::ChainSpec, Option<u64>, Code, &str); 4] = [
        (
            pb::ChainSpec {
                hops: vec![hop("wire", "nope0", "t1b")],
                default_on_failure: 0,
            },
            None,
            Code::InvalidArgument,
            "hops[0].a",
        ),
        (
            pb::ChainSpec {
                hops: vec![hop("wire", "t1a", "t1b"), hop("wire", "t1b", "t1a")],
                default_on_failure: 0,
            },
            None,
            Code::InvalidArgument,
            "duplicate hop name",
        ),
        (
            pb::ChainSpec {
                hops: vec![hop("wire", ifs::INLINE_1, "t1b")],
                default_on_failure: 0,
            },
            None,
            Code::InvalidArgument,
            "inline-1",
        ),
        (
            good.clone(),
            Some(7),
            Code::FailedPrecondition,
            "generation 1, not 7",
        ),
    ];
    for (spec, expected_generation, code, text) in bad {
        let e = admin
            .set_chain(with_auth(
                pb::SetChainRequest {
                    spec: Some(spec),
                    expected_generation,
                    dry_run: false,
                },
                Some(bearer),
            )?)
            .await
            .expect_err("an invalid SetChain");
        ensure!(
            e.code() == code && e.message().contains(text),
            "{text}: {e:?}"
        );
        let now = get_chain(ch).await?;
        ensure!(
            now.spec == before.spec && now.generation == before.generation,
            "{text}: the chain changed: {now:?}"
        );
    }
    Ok(())
}

/// A dry run validates and changes nothing.
/// Then the good one, compare-and-set: applied, and the wire comes UP.
async fn the_good_update_applies(
    ch: &Channel,
    admin: &mut AdminClient,
    bearer: &str,
    good: &pb::ChainSpec,
) -> Result<()> {
    let dry = admin
        .set_chain(with_auth(
            pb::SetChainRequest {
                spec: Some(good.clone()),
                expected_generation: Some(1),
                dry_run: true,
            },
            Some(bearer),
        )?)
        .await?
        .into_inner();
    ensure!(
        !dry.accepted && dry.validation.as_ref().is_some_and(|v| v.valid),
        "{dry:?}"
    );
    ensure!(get_chain(ch).await?.generation == 1);
    // The good one, compare-and-set: applied, and the wire comes UP.
    let r = admin
        .set_chain(with_auth(
            pb::SetChainRequest {
                spec: Some(good.clone()),
                expected_generation: Some(1),
                dry_run: false,
            },
            Some(bearer),
        )?)
        .await?
        .into_inner();
    ensure!(r.accepted && r.generation == 2, "{r:?}");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let c = get_chain(ch).await?;
        let st = c.status.clone().unwrap_or_default();
        if st.observed_generation == 2
            && st
                .hops
                .first()
                .is_some_and(|h| h.state() == pb::HopState::Up)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the wire hop never came UP: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A manual bypass, then an unknown hop.
async fn bypass_then_an_unknown_hop(admin: &mut AdminClient, bearer: &str) -> Result<()> {
    let h = admin
        .set_hop_bypass(with_auth(
            pb::SetHopBypassRequest {
                hop: "wire".into(),
                bypass: true,
                reason: "maintenance".into(),
            },
            Some(bearer),
        )?)
        .await?
        .into_inner()
        .hop
        .unwrap_or_default();
    ensure!(
        h.state() == pb::HopState::BypassedManual && h.message == "maintenance",
        "{h:?}"
    );
    let e = admin
        .set_hop_bypass(with_auth(
            pb::SetHopBypassRequest {
                hop: "nope".into(),
                bypass: true,
                reason: String::new(),
            },
            Some(bearer),
        )?)
        .await
        .expect_err("an unknown hop");
    ensure!(e.code() == Code::NotFound, "{e:?}");
    Ok(())
}

/// taplinectl shows the hop; a bad file is refused with the problem named.
fn cli_shows_the_hop_and_refuses_a_bad_file(rig: &Rig, token_path: &Path) -> Result<()> {
    let human = ctl_ok(&rig.ctl(&["chain", "get"])?, "chain get")?;
    ensure!(human.contains("wire"), "{human}");
    let file = rig.workdir.join("bad-chain.json");
    std::fs::write(
        &file,
        r#"{"hops": [{"name": "x", "a": "nope1", "b": "t1b"}]}"#,
    )?;
    let out = rig.ctl(&[
        "--token-file",
        &token_path.to_string_lossy(),
        "chain",
        "set",
        "-f",
        &file.to_string_lossy(),
    ])?;
    ensure!(
        out.status.code() == Some(EXIT_SERVER),
        "chain set of a bad spec: {:?}",
        out.status
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(text.contains("hops[0].a"), "{text}");
    Ok(())
}

#[test]
fn killing_the_sidecar_under_traffic_costs_the_bridge_nothing() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    const BEFORE: usize = 1_000;
    /// About 1 s of traffic on this machine class (debug build): longer
    /// than the sidecar's outage below.
    const DURING: usize = 100_000;
    /// How long the bridge runs with no sidecar at all.
    const OUTAGE: Duration = Duration::from_millis(200);
    let rig = Rig::full("")?;
    let lab = rig.lab();
    let sidecar = rig.start_sidecar()?;
    let _dp = rig.start_dataplane()?;
    let rt = runtime()?;

    let first = Flow::gen_to_sink(lab, BEFORE)?;
    let r = run_concurrently(std::slice::from_ref(&first))?;
    assert_delivered_in_order(&first, &r[0])?;
    let epoch = rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        let s = wait_stats(&ch, "the first frames", |s| rx_is(s, "inline-1", BEFORE)).await?;
        anyhow::Ok(s.stats_epoch)
    })?;

    // A second flow with frames distinct from the first (another sender
    // would do too: the sequence numbers restart, the check is per flow).
    let during = Flow::gen_to_sink(lab, DURING)?;
    let (result, _sidecar) = std::thread::scope(|s| -> Result<_> {
        let traffic = s.spawn(|| during.run(Instant::now() + Duration::from_secs(60)));
        // Kill only once traffic flows through the dataplane.
        rt.block_on(async {
            let ch = channel(&rig.ports.grpc_url()).await?;
            wait_stats(&ch, "traffic of the second flow", |s| {
                totals(s, "inline-1").is_ok_and(|t| t.rx_packets > BEFORE as u64)
            })
            .await
        })?;
        ensure!(
            !traffic.is_finished(),
            "the flow ended before the kill: make it longer"
        );
        let killed_at = Instant::now();
        sidecar.kill()?;
        std::thread::sleep(OUTAGE);
        let sidecar = rig.start_sidecar()?;
        let down_for = killed_at.elapsed();
        ensure!(
            !traffic.is_finished(),
            "the flow ended before the sidecar was back ({down_for:?}): make it longer"
        );
        let result = traffic
            .join()
            .map_err(|_| anyhow::anyhow!("flow thread panicked"))??;
        eprintln!(
            "sidecar down for {down_for:?} while the flow ran; the flow took {:?}",
            result.elapsed
        );
        Ok((result, sidecar))
    })?;
    assert_delivered_in_order(&during, &result)?;

    // The new sidecar reads the same run's counters: all frames, before and
    // during the outage.
    let total = BEFORE + DURING;
    let bytes = total_bytes(&first.frames) + total_bytes(&during.frames);
    let s = rt.block_on(async {
        let ch = channel(&rig.ports.grpc_url()).await?;
        wait_stats(&ch, "every frame counted after the restart", |s| {
            rx_is(s, "inline-1", total)
        })
        .await
    })?;
    ensure!(s.stats_epoch == epoch, "the dataplane run changed");
    let i1 = totals(&s, "inline-1")?;
    let i2 = totals(&s, "inline-2")?;
    ensure!(
        i1.rx_bytes == bytes && i2.tx_packets == total as u64 && i2.tx_bytes == bytes,
        "after the restart: inline-1 rx {} B, inline-2 tx {} / {} B; sent {total} / {bytes} B",
        i1.rx_bytes,
        i2.tx_packets,
        i2.tx_bytes
    );
    ensure!(
        i1.dropped_packets == 0 && i2.dropped_packets == 0,
        "drops: {i1:?} {i2:?}"
    );
    Ok(())
}

/// Samples of one metric family from a Prometheus text exposition: the
/// label set (as written) and the value.
fn samples<'a>(body: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = match series.split_once('{') {
                Some((n, rest)) if n == name => rest.strip_suffix('}')?,
                None if series == name => "",
                _ => return None,
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// `GET /metrics` over a plain TCP connection (HTTP/1.0: the body ends at
/// the close, never chunked).
fn scrape(port: u16) -> Result<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header end in {raw:?}"))?;
    ensure!(
        head.starts_with("HTTP/1.") && head.lines().next().is_some_and(|l| l.contains(" 200")),
        "GET /metrics: {head}"
    );
    ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "not the Prometheus text format: {head}"
    );
    Ok(body.to_string())
}

/// The sum of `name` over the series of port `role` (counters are
/// exported per queue, labelled `port="ROLE"`).
fn metric_for_role(body: &str, name: &str, role: &str) -> Option<f64> {
    let found: Vec<f64> = samples(body, name)
        .into_iter()
        .filter(|(labels, _)| labels.split(',').any(|l| l == format!("port=\"{role}\"")))
        .map(|(_, v)| v)
        .collect();
    (!found.is_empty()).then(|| found.iter().sum())
}

#[test]
fn metrics_carry_port_counters_and_dataplane_up() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let rig = Rig::full("")?;
    let lab = rig.lab();
    let _sidecar = rig.start_sidecar()?;
    let dp = rig.start_dataplane()?;
    let flow = Flow::gen_to_sink(lab, BRIDGE_FRAMES)?;
    let r = run_concurrently(std::slice::from_ref(&flow))?;
    assert_delivered_in_order(&flow, &r[0])?;

    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let body = loop {
        let body = scrape(rig.ports.metrics)?;
        let rx = metric_for_role(&body, "tapline_port_rx_packets_total", "inline-1");
        if rx == Some(BRIDGE_FRAMES as f64) {
            break body;
        }
        ensure!(
            Instant::now() < deadline,
            "tapline_port_rx_packets_total for inline-1 is {rx:?}, expected {BRIDGE_FRAMES}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let up = samples(&body, "tapline_dataplane_up");
    ensure!(
        up.len() == 1 && up[0].1 == 1.0,
        "tapline_dataplane_up: {up:?}\n{body}"
    );
    let bytes = total_bytes(&flow.frames) as f64;
    for (name, role, want) in [
        ("tapline_port_rx_bytes_total", "inline-1", bytes),
        (
            "tapline_port_tx_packets_total",
            "inline-2",
            BRIDGE_FRAMES as f64,
        ),
        ("tapline_port_tx_bytes_total", "inline-2", bytes),
        ("tapline_port_rx_packets_total", "passive-1", 0.0),
    ] {
        let got = metric_for_role(&body, name, role);
        ensure!(
            got == Some(want),
            "{name} of {role} is {got:?}, expected {want}:\n{body}"
        );
    }
    ensure!(
        body.contains("# TYPE tapline_port_rx_packets_total counter"),
        "no TYPE line for the counter:\n{body}"
    );

    // A dataplane that stopped is not up.
    stop_ok(dp)?;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let body = scrape(rig.ports.metrics)?;
        let up = samples(&body, "tapline_dataplane_up");
        if up.len() == 1 && up[0].1 == 0.0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "tapline_dataplane_up after stop: {up:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
