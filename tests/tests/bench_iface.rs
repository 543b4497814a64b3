//! `--iface`: labs on real NICs instead of veth pairs, with veth pairs in
//! the root namespace standing in for cabled NIC pairs (`tbn...A0 <-> A1`,
//! `B0 <-> B1`).
//!
//! - The inline lab on two cabled pairs (g0 = A0, i1 = A1, i2 = B0,
//!   s0 = B1) has each NIC in its namespace under the lab's name (same MAC
//!   address), carries a paced run through the Linux bridge with no loss
//!   and 1,000 frames each way through tapline byte for byte, and on drop
//!   puts all four back in the root namespace under their original names,
//!   down as they were, with no namespace and no record left.
//! - `tapline-bench --iface ... lab up passive` twice (idempotent) and
//!   `lab down` from later processes: the NICs are returned from the
//!   record the first process left.
//! - A NIC comes back as it was whatever the lab did to it: promiscuous
//!   mode and VLAN offload flags restored, no XDP program attached.
//! - A NIC that cannot be moved back (its name was taken meanwhile) keeps
//!   the lab's namespaces and record, and `lab::teardown` returns it once
//!   the name is free again.
//! - A link with one end given, a missing NIC, a role the scenario does
//!   not have, a sensor role outside the passive and full labs, a NIC
//!   another lab holds, a NIC with a global address and a NIC under an
//!   upper device (a macvlan) are refused with an error naming the problem,
//!   and leave nothing behind.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::inline_bench::Dut;
use tapline_bench::lab::{
    self, ifs, namespaces, unique_prefix, Lab, NicAssignment, Nics, Scenario, NIC_STATE_DIR,
};
use tapline_bench::measure::{measure_in, RunConfig};
use tapline_bench::runner::workspace_binary;
use tapline_bench::traffic::FrameSizes;
use tapline_tests::{
    assert_bridge_counters, assert_delivered_in_order, assert_released, config_for, privileged,
    run_concurrently, start_dataplane, stop_ok, Flow,
};

/// Frames each way through tapline.
const FRAMES_EACH_WAY: usize = 1_000;
/// The paced run through the Linux bridge: low enough that a busy 2-vCPU
/// host loses nothing.
const BRIDGE_RATE_PPS: u64 = 5_000;
const BRIDGE_SECONDS: f64 = 1.0;
/// How long a test waits for an interface to show up where it should.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

static NEXT_PAIRS: AtomicU32 = AtomicU32::new(0);

/// Veth pairs in the root namespace standing in for cabled NIC pairs:
/// pair `k` is `tbn{id}{L}0 <-> tbn{id}{L}1` with `L` = A, B, ... Deleted on
/// drop (deleting one end deletes both; a pair a failed test left inside a
/// lab goes with the lab's namespaces).
struct CabledPairs {
    pairs: Vec<[String; 2]>,
}

impl CabledPairs {
    fn create(count: u8) -> Result<CabledPairs> {
        let id = format!(
            "{:x}n{}",
            std::process::id(),
            NEXT_PAIRS.fetch_add(1, Ordering::Relaxed)
        );
        let mut made = CabledPairs { pairs: Vec::new() };
        for letter in (b'A'..).take(count.into()).map(char::from) {
            let ends = [format!("tbn{id}{letter}0"), format!("tbn{id}{letter}1")];
            lab::ip(&[
                "link", "add", "name", &ends[0], "type", "veth", "peer", "name", &ends[1],
            ])?;
            made.pairs.push(ends);
        }
        Ok(made)
    }

    /// Both ends of pair `k`.
    fn pair(&self, k: usize) -> [&str; 2] {
        [&self.pairs[k][0], &self.pairs[k][1]]
    }

    /// Every end, pair by pair.
    fn all(&self) -> Vec<&str> {
        self.pairs.iter().flatten().map(String::as_str).collect()
    }
}

impl Drop for CabledPairs {
    fn drop(&mut self) {
        for [a, _] in &self.pairs {
            let _ = Command::new("ip")
                .args(["link", "del", "dev", a])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Runs [`lab::teardown`] on drop, so a failed test returns its NICs.
struct TeardownOnDrop(String);

impl Drop for TeardownOnDrop {
    fn drop(&mut self) {
        if let Err(e) = lab::teardown(&self.0) {
            eprintln!("teardown of {}: {e:#}", self.0);
        }
    }
}

/// What `ip -j link` says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkSeen {
    mac: String,
    up: bool,
}

/// `ifname` in namespace `netns` (None: the root namespace), if there.
fn link_seen(netns: Option<&str>, ifname: &str) -> Result<Option<LinkSeen>> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "link", "show"]);
    let out = lab::ip(&args)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .find(|l| l["ifname"] == ifname)
        .map(|l| LinkSeen {
            mac: l["address"].as_str().unwrap_or_default().to_string(),
            up: l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
        }))
}

fn assign(role: &str, nic: &str) -> Result<NicAssignment> {
    format!("{role}={nic}").parse()
}

fn state_file(prefix: &str) -> PathBuf {
    PathBuf::from(NIC_STATE_DIR).join(format!("{prefix}.json"))
}

/// One cabled pair of stand-in NICs, what the root namespace saw of them
/// before, and a lab prefix torn down when the test ends.
struct OnePair {
    pairs: CabledPairs,
    before: Vec<LinkSeen>,
    prefix: String,
    _cleanup: TeardownOnDrop,
}

impl OnePair {
    fn create() -> Result<OnePair> {
        let pairs = CabledPairs::create(1)?;
        let before = root_view(&pairs.all())?;
        let prefix = unique_prefix();
        Ok(OnePair {
            pairs,
            before,
            _cleanup: TeardownOnDrop(prefix.clone()),
            prefix,
        })
    }
}

/// The root namespace's view of `nics`, in order (each must be there).
fn root_view(nics: &[&str]) -> Result<Vec<LinkSeen>> {
    nics.iter()
        .map(|n| link_seen(None, n)?.with_context(|| format!("{n} is not in the root namespace")))
        .collect()
}

/// Checks that every NIC is back in the root namespace as `before`
/// describes it, and that the lab under `prefix` left no namespace and no
/// record.
fn assert_nothing_left(prefix: &str, nics: &[&str], before: &[LinkSeen]) -> Result<()> {
    let now = root_view(nics)?;
    ensure!(
        now == before,
        "NICs after the lab: {now:?}, before: {before:?} ({nics:?})"
    );
    let left = namespaces(prefix)?;
    ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    ensure!(
        !state_file(prefix).exists(),
        "{} left behind",
        state_file(prefix).display()
    );
    Ok(())
}

/// Waits until `ifname` is in `netns` with MAC `mac`.
fn wait_placed(netns: &str, ifname: &str, mac: &str) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let seen = link_seen(Some(netns), ifname)?;
        if seen.as_ref().is_some_and(|s| s.mac == mac && s.up) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{ifname} in {netns}: expected up with MAC {mac}, found {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn inline_lab_on_cabled_pairs_carries_traffic_and_returns_the_nics() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let pairs = CabledPairs::create(2)?;
    let ([a0, a1], [b0, b1]) = (pairs.pair(0), pairs.pair(1));
    let before = root_view(&pairs.all())?;
    let nics = Nics::new([
        assign(ifs::GEN, a0)?,
        assign(ifs::INLINE_1, a1)?,
        assign(ifs::INLINE_2, b0)?,
        assign(ifs::SINK, b1)?,
    ])?;
    let prefix = unique_prefix();
    {
        let lab = Lab::build_with(&prefix, Scenario::Inline, &nics)?;
        let placed = [
            (lab.gen(), ifs::GEN, a0),
            (&lab.dut, ifs::INLINE_1, a1),
            (&lab.dut, ifs::INLINE_2, b0),
            (lab.sink(), ifs::SINK, b1),
        ];
        for ((ns, ifname, nic), seen) in placed.iter().zip(&before) {
            wait_placed(ns.name(), ifname, &seen.mac)?;
            ensure!(
                link_seen(None, nic)?.is_none(),
                "{nic} is still in the root namespace"
            );
        }
        let used = lab.nics();
        ensure!(
            used.iter().map(|n| n.nic.as_str()).collect::<Vec<_>>() == [a0, a1, b1, b0]
                && used.iter().map(|n| n.role.as_str()).collect::<Vec<_>>()
                    == [ifs::GEN, ifs::INLINE_1, ifs::SINK, ifs::INLINE_2]
                && used
                    .iter()
                    .all(|n| n.driver == "veth" && n.rx_queues >= 1 && n.tx_queues >= 1),
            "lab.nics(): {used:?}"
        );
        ensure!(
            state_file(&prefix).exists(),
            "no record at {}",
            state_file(&prefix).display()
        );

        let r = measure_in(
            &lab,
            &RunConfig {
                dut: Dut::LinuxBridge,
                rate_pps: BRIDGE_RATE_PPS,
                seconds: BRIDGE_SECONDS,
                sizes: FrameSizes::Fixed(60),
                flows: 16,
                dataplane_keys: String::new(),
                xdp_keys: String::new(),
            },
        )?;
        ensure!(r.sent > 0, "the generator sent nothing");
        ensure!(
            r.sink.received == r.sent && r.sink.lost == 0 && r.sink.duplicated == 0,
            "Linux bridge over the NICs: sent {}, sink {:?}, drops on the path {:?}",
            r.sent,
            r.sink,
            r.link_drops
        );

        let flows = [
            Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
            Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
        ];
        let dp = start_dataplane(&lab, &config_for(&lab, "auto"))?;
        let results = run_concurrently(&flows);
        let fin = stop_ok(dp)?;
        for (flow, result) in flows.iter().zip(&results?) {
            assert_delivered_in_order(flow, result)?;
        }
        assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)?;
        assert_released(&lab)?;
    }
    assert_nothing_left(&prefix, &pairs.all(), &before)
}

#[test]
fn lab_up_on_nics_is_idempotent_and_lab_down_returns_them() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let one = OnePair::create()?;
    let (pairs, prefix, before) = (&one.pairs, one.prefix.clone(), one.before.clone());
    let [a0, a1] = pairs.pair(0);
    let bench = workspace_binary("tapline-bench")?;
    let tap_role = format!("{}={a0}", ifs::TAP);
    let p1_role = format!("{}={a1}", ifs::PASSIVE_1);
    for _ in 0..2 {
        let out = lab::run(Command::new(&bench).args([
            "lab", "up", "passive", "--prefix", &prefix, "--iface", &tap_role, "--iface", &p1_role,
        ]))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in [
            format!("NIC {} = {a0} (driver veth, 1 rx / 1 tx queues)", ifs::TAP),
            format!(
                "NIC {} = {a1} (driver veth, 1 rx / 1 tx queues)",
                ifs::PASSIVE_1
            ),
        ] {
            ensure!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
        }
        wait_placed(&format!("{prefix}-tap"), ifs::TAP, &before[0].mac)?;
        wait_placed(&format!("{prefix}-dut"), ifs::PASSIVE_1, &before[1].mac)?;
        ensure!(
            state_file(&prefix).exists(),
            "lab up left no record at {}",
            state_file(&prefix).display()
        );
    }
    let out = lab::run(Command::new(&bench).args(["lab", "down", "--prefix", &prefix]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let returned = format!(
        "NICs returned: {a0} ({}), {a1} ({})",
        ifs::TAP,
        ifs::PASSIVE_1
    );
    ensure!(
        stdout.contains("2 namespaces removed") && stdout.contains(&returned),
        "lab down said:\n{stdout}"
    );
    assert_nothing_left(&prefix, &pairs.all(), &before)?;
    // clap would keep only one side's values of a global option given
    // before and after the subcommand: refused before anything is built.
    let split = Command::new(&bench)
        .args([
            "--iface", &tap_role, "lab", "up", "passive", "--prefix", &prefix, "--iface", &p1_role,
        ])
        .output()?;
    ensure!(
        !split.status.success()
            && String::from_utf8_lossy(&split.stderr)
                .contains("on the same side of the subcommand"),
        "--iface on both sides of the subcommand: {split:?}"
    );
    assert_nothing_left(&prefix, &pairs.all(), &before)?;
    // --iface has no meaning for lab down: the record says what to return.
    let refused = Command::new(&bench)
        .args(["--iface", &tap_role, "lab", "down", "--prefix", &prefix])
        .output()?;
    ensure!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("lab down returns"),
        "lab down with --iface: {refused:?}"
    );
    Ok(())
}

#[test]
fn refused_cabling_is_named_and_leaves_nothing_behind() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let pairs = CabledPairs::create(2)?;
    let ([a0, a1], [b0, b1]) = (pairs.pair(0), pairs.pair(1));
    let before = root_view(&pairs.all())?;
    let missing = format!("{a0}x");

    let refused: [(&str, Scenario, Vec<NicAssignment>, String); 4] = [
        (
            "half-given link",
            Scenario::Inline,
            vec![assign(ifs::GEN, a0)?],
            format!(
                "--iface {}={a0} without {}: the link {} <-> {}",
                ifs::GEN,
                ifs::INLINE_1,
                ifs::GEN,
                ifs::INLINE_1
            ),
        ),
        (
            "missing NIC",
            Scenario::Inline,
            vec![
                assign(ifs::GEN, a0)?,
                assign(ifs::INLINE_1, a1)?,
                assign(ifs::INLINE_2, b0)?,
                assign(ifs::SINK, &missing)?,
            ],
            format!("there is no interface {missing} in this network namespace"),
        ),
        (
            "role outside the scenario",
            Scenario::Inline,
            vec![assign(ifs::TAP, a0)?, assign(ifs::PASSIVE_1, a1)?],
            "the inline lab has no interface".to_string(),
        ),
        (
            "sensor role in the inline lab",
            Scenario::Inline,
            vec![assign("dut:m0", a0)?, assign("sen-m0:e0", a1)?],
            "sensors (dut:M <-> sen-M:e0) belong to the passive and full labs; the inline lab has none"
                .to_string(),
        ),
    ];
    for (what, scenario, assignments, expected) in refused {
        let prefix = unique_prefix();
        let e = match Lab::build_with(&prefix, scenario, &Nics::new(assignments)?) {
            Ok(_) => bail!("{what}: the lab was built"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(e.contains(&expected), "{what}: {e:?} lacks {expected:?}");
        assert_nothing_left(&prefix, &pairs.all(), &before).with_context(|| what.to_string())?;
    }

    // A NIC another lab holds: the error names that lab.
    let holder = unique_prefix();
    let passive_on = |tap: &str, p1: &str| -> Result<Nics> {
        Nics::new([assign(ifs::TAP, tap)?, assign(ifs::PASSIVE_1, p1)?])
    };
    let held = Lab::build_with(&holder, Scenario::Passive, &passive_on(a0, a1)?)?;
    let prefix = unique_prefix();
    match Lab::build_with(&prefix, Scenario::Passive, &passive_on(a0, a1)?) {
        Ok(_) => bail!("a NIC held by lab {holder} was taken again"),
        Err(e) => {
            let e = format!("{e:#}");
            ensure!(e.contains(&format!("lab {holder} holds it as")), "{e:?}");
        }
    }
    ensure!(namespaces(&prefix)?.is_empty() && !state_file(&prefix).exists());
    drop(held);
    assert_nothing_left(&holder, &pairs.all(), &before)?;

    // A NIC with a global address (a management interface, say).
    lab::ip(&["addr", "add", "192.0.2.1/24", "dev", b0])?;
    let prefix = unique_prefix();
    let result = Lab::build_with(&prefix, Scenario::Passive, &passive_on(b0, b1)?);
    lab::ip(&["addr", "del", "192.0.2.1/24", "dev", b0])?;
    match result {
        Ok(_) => bail!("a NIC with an address was taken"),
        Err(e) => ensure!(
            format!("{e:#}").contains(&format!("{b0} carries address 192.0.2.1/24")),
            "{e:#}"
        ),
    }
    assert_nothing_left(&prefix, &pairs.all(), &before)?;

    // A NIC under an upper device (a macvlan, as a VLAN would be, which may
    // carry the management address; the VLAN module may be missing).
    let upper = format!("{b0}v");
    lab::ip(&["link", "add", "link", b0, "name", &upper, "type", "macvlan"])?;
    let prefix = unique_prefix();
    let result = Lab::build_with(&prefix, Scenario::Passive, &passive_on(b0, b1)?);
    lab::ip(&["link", "del", "dev", &upper])?;
    match result {
        Ok(_) => bail!("a NIC under a macvlan was taken"),
        Err(e) => ensure!(
            format!("{e:#}").contains(&format!("{b0} is in use, under upper devices {upper}")),
            "{e:#}"
        ),
    }
    assert_nothing_left(&prefix, &pairs.all(), &before)
}

/// What the tests check of a NIC's settings in the root namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NicSettings {
    promisc: bool,
    xdp: bool,
    rx_vlan_offload: bool,
    tx_vlan_offload: bool,
}

/// `nic`'s settings, from `ip -j -d link show` and `ethtool -k`.
fn nic_settings(nic: &str) -> Result<NicSettings> {
    let out = lab::ip(&["-j", "-d", "link", "show", "dev", nic])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let link = &v[0];
    let out = lab::run(Command::new("ethtool").args(["-k", nic]))?;
    let features = String::from_utf8_lossy(&out.stdout).into_owned();
    let on = |name: &str| {
        features
            .lines()
            .any(|l| l.trim().starts_with(&format!("{name}: on")))
    };
    Ok(NicSettings {
        promisc: link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "PROMISC")),
        xdp: !link["xdp"].is_null(),
        rx_vlan_offload: on("rx-vlan-offload"),
        tx_vlan_offload: on("tx-vlan-offload"),
    })
}

#[test]
fn returned_nics_get_their_settings_back() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let pairs = CabledPairs::create(1)?;
    let [a0, a1] = pairs.pair(0);
    lab::ip(&["link", "set", "dev", a0, "promisc", "on"])?;
    let before = root_view(&pairs.all())?;
    let settings = [nic_settings(a0)?, nic_settings(a1)?];
    ensure!(
        settings[0].promisc && !settings[1].promisc && settings.iter().all(|s| !s.xdp),
        "stand-in NICs before the lab: {settings:?}"
    );
    let prefix = unique_prefix();
    {
        let lab = Lab::build_with(
            &prefix,
            Scenario::Passive,
            &Nics::new([assign(ifs::TAP, a0)?, assign(ifs::PASSIVE_1, a1)?])?,
        )?;
        // What a DUT or a peer may leave behind.
        let tap = lab.tap().name();
        let dut = lab.dut.name();
        lab::ip(&["-n", tap, "link", "set", "dev", ifs::TAP, "promisc", "off"])?;
        lab::ip(&[
            "-n",
            dut,
            "link",
            "set",
            "dev",
            ifs::PASSIVE_1,
            "promisc",
            "on",
        ])?;
        for (ns, ifname) in [(tap, ifs::TAP), (dut, ifs::PASSIVE_1)] {
            lab::run(
                lab::Netns::existing(ns)
                    .command("ethtool")
                    .args(["-K", ifname, "rxvlan", "off", "txvlan", "off"]),
            )?;
        }
    }
    let after = [nic_settings(a0)?, nic_settings(a1)?];
    ensure!(
        after == settings,
        "NIC settings after the lab: {after:?}, before: {settings:?}"
    );
    assert_nothing_left(&prefix, &pairs.all(), &before)
}

#[test]
fn a_nic_that_cannot_be_returned_keeps_the_lab_for_teardown() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let one = OnePair::create()?;
    let (pairs, prefix, before) = (&one.pairs, one.prefix.clone(), one.before.clone());
    let [a0, a1] = pairs.pair(0);
    let lab = Lab::build_with(
        &prefix,
        Scenario::Passive,
        &Nics::new([assign(ifs::TAP, a0)?, assign(ifs::PASSIVE_1, a1)?])?,
    )?;
    // Something takes a0's name while the NIC is in the lab.
    let squatter_peer = format!("{a0}q");
    lab::ip(&[
        "link",
        "add",
        "name",
        a0,
        "type",
        "veth",
        "peer",
        "name",
        &squatter_peer,
    ])?;
    drop(lab);
    let kept = namespaces(&prefix)?;
    let tap_ns = format!("{prefix}-tap");
    ensure!(
        kept.contains(&tap_ns) && state_file(&prefix).exists(),
        "after a failed return: namespaces {kept:?}, record there: {}",
        state_file(&prefix).exists()
    );
    ensure!(
        link_seen(Some(&tap_ns), ifs::TAP)?.is_some_and(|l| l.mac == before[0].mac),
        "{a0} is no longer in {tap_ns} as {}",
        ifs::TAP
    );
    lab::ip(&["link", "del", "dev", a0])?;
    let t = lab::teardown(&prefix)?;
    // The record lists both NICs; a1 came back with the failed drop.
    ensure!(
        t.nics
            == [
                format!("{a0} ({})", ifs::TAP),
                format!("{a1} ({})", ifs::PASSIVE_1)
            ],
        "teardown returned {:?}",
        t.nics
    );
    assert_nothing_left(&prefix, &pairs.all(), &before)
}
