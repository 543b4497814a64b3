//! Fail safe under bad input, on namespace labs with real processes:
//! - an invalid `[chain]` (a = b, duplicate names, an inline port, a missing
//!   interface, loopback) makes `--check` and the dataplane exit 64 with one
//!   line naming the field, and touches no interface: never an open wire;
//! - an invalid or corrupt persisted `chain.json` is refused the same way,
//!   naming the file, and left as it was;
//! - tool ports must be fit to be one: SetChain with loopback, the interface
//!   of the default route or one with a routable address is
//!   INVALID_ARGUMENT and changes nothing (no XDP, no promiscuity); at start
//!   the same exits 64, unless `[chain] allowed_interfaces` lists it;
//! - a second dataplane sharing the state_dir exits 71 and leaves the first
//!   one (segment, command socket, forwarding) untouched;
//! - files in the state_dir are not world-readable.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, link_state, unique_prefix, Lab, Netns, Scenario, ToolKind};
use tapline_bench::runner::{
    lab_config, DataplaneProcess, Finished, StartOptions, STATE_DIR_PLACEHOLDER,
};
use tapline_proto::v1;
use tapline_proto::v1::dataplane_response::Response;
use tapline_segment::SegmentReader;
use tapline_tests::chain::{
    chain_config, chain_spec, code, hop_spec, wait_hops_up, Control, TempDir, UP_TIMEOUT,
};
use tapline_tests::{
    assert_delivered_in_order, assert_untouched, privileged, run_concurrently, start_dataplane,
    stop_ok, wait_bounded, Flow, EXIT_TIMEOUT,
};

/// Frames each way of the forwarding checks.
const FRAMES: usize = 300;

/// Runs the dataplane (or `--check`) with `config`, expecting it to exit by
/// itself.
fn run_to_exit(lab: &Lab, config: &str, check: bool) -> Result<Finished> {
    let dp = DataplaneProcess::start(
        &lab.dut,
        config,
        &StartOptions {
            extra_args: if check {
                vec!["--check".into()]
            } else {
                Vec::new()
            },
            ..StartOptions::default()
        },
    )?;
    wait_bounded(dp, EXIT_TIMEOUT)
}

/// Asserts `fin` exited `want` with exactly one ERROR record, which
/// contains every one of `says`; returns that message.
fn assert_refused(fin: &Finished, want: i32, says: &[&str]) -> Result<String> {
    let log = fin.lines.join("\n");
    ensure!(
        fin.status.code() == Some(want),
        "expected exit {want}, got {}:\n{log}",
        fin.status
    );
    let errors: Vec<String> = fin
        .records()
        .iter()
        .filter(|r| r["level"] == "ERROR")
        .map(|r| r["message"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(errors.len() == 1, "expected one ERROR line:\n{log}");
    for s in says {
        ensure!(
            errors[0].contains(s),
            "the error does not say {s:?}: {}",
            errors[0]
        );
    }
    Ok(errors[0].clone())
}

/// Asserts no XDP program and no promiscuity on `ifnames` in `ns`.
fn assert_free(ns: &Netns, ifnames: &[&str]) -> Result<()> {
    for ifname in ifnames {
        let st = link_state(ns, ifname)?;
        ensure!(
            !st.xdp_attached && st.promiscuity == 0,
            "{ifname} was touched: {st:?}"
        );
    }
    Ok(())
}

/// The tool-side interfaces of a chain lab of `hops` tools, in the dut.
fn tool_ports(hops: u8) -> Vec<String> {
    (1..=hops)
        .flat_map(|k| [ifs::hop_a(k), ifs::hop_b(k)])
        .collect()
}

/// Forwards `FRAMES` frames each way and checks them byte for byte.
fn forward(lab: &Lab) -> Result<()> {
    let flows = [
        Flow::gen_to_sink(lab, FRAMES)?,
        Flow::sink_to_gen(lab, FRAMES)?,
    ];
    for (flow, result) in flows.iter().zip(run_concurrently(&flows)?) {
        assert_delivered_in_order(flow, &result)?;
    }
    Ok(())
}

/// A hop as written in `[chain]`: name, a, b.
type Hop<'a> = (&'a str, &'a str, &'a str);

/// A chain config with `hops` written verbatim (`{ name, a, b }` tables).
fn raw_chain_config(hops: &[Hop], chain_keys: &str) -> String {
    let mut s = String::from("[chain]\ndefault_on_failure = \"drop\"\nhops = [\n");
    for (name, a, b) in hops {
        s += &format!("  {{ name = \"{name}\", a = \"{a}\", b = \"{b}\" }},\n");
    }
    s += "]\n";
    s += chain_keys;
    lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", &s)
}

#[test]
fn an_invalid_initial_chain_fails_check_and_start_with_64_and_touches_nothing() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let (h1a, h1b, h2a, h2b) = (ifs::hop_a(1), ifs::hop_b(1), ifs::hop_a(2), ifs::hop_b(2));
    let cases: Vec<(&str, Vec<Hop>, &str, &str)> = vec![
        (
            "a = b",
            vec![("t1", &h1a, &h1a)],
            "chain.hops[0].b",
            "already used by",
        ),
        (
            "duplicate names",
            vec![("t1", &h1a, &h1b), ("t1", &h2a, &h2b)],
            "chain.hops[1].name",
            "duplicate hop name",
        ),
        (
            "an inline port",
            vec![("t1", ifs::INLINE_1, &h1b)],
            "chain.hops[0].a",
            "inline-1",
        ),
        (
            "a missing interface",
            vec![("t1", &h1a, &h1b), ("t2", "tlnosuch0", &h2b)],
            "chain.hops[1].a",
            "not found",
        ),
        (
            "loopback",
            vec![("t1", "lo", &h1b)],
            "chain.hops[0].a",
            "loopback",
        ),
    ];
    let tools = tool_ports(2);
    let mut watched: Vec<&str> = tools.iter().map(String::as_str).collect();
    watched.push("lo");
    for (what, hops, field, says) in &cases {
        let config = raw_chain_config(hops, "");
        for check in [true, false] {
            let fin = run_to_exit(&lab, &config, check)?;
            let msg = assert_refused(&fin, 64, &[field, says])
                .with_context(|| format!("{what} (check: {check})"))?;
            ensure!(
                !fin.lines.iter().any(|l| l.contains("dataplane running")),
                "{what}: the dataplane started"
            );
            assert_untouched(&lab)?;
            assert_free(&lab.dut, &watched)?;
            eprintln!("{what} (check: {check}): exit 64: {msg}");
        }
    }
    Ok(())
}

/// Writes a `chain.json` of format 1 into `dir`.
fn write_persisted(dir: &Path, generation: u64, hops: &[v1::HopSpec]) -> Result<String> {
    let hops: Vec<serde_json::Value> = hops
        .iter()
        .map(|h| serde_json::json!({ "name": h.name, "a": h.a, "b": h.b }))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "format": 1,
        "generation": generation,
        "updated_at_unix_ns": 1_800_000_000_000_000_000u64,
        "spec": { "hops": hops, "default_on_failure": "drop" },
    }))?;
    std::fs::write(dir.join("chain.json"), &text)?;
    Ok(text)
}

#[test]
fn an_invalid_or_corrupt_persisted_chain_is_refused_naming_the_file() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let prefix = unique_prefix();
    let lab = Lab::build(&prefix, Scenario::chain(1, ToolKind::Bridge)?)?;
    let state = TempDir::new(&format!("{prefix}-state"))?;
    let file = state.0.join("chain.json");
    let config = chain_config(&[1], Some("drop"), "")
        .replace(STATE_DIR_PLACEHOLDER, &state.0.to_string_lossy());
    let file_name = file.to_string_lossy().into_owned();

    let invalid = write_persisted(
        &state.0,
        5,
        &[hop_spec("t1", ifs::INLINE_1, &ifs::hop_b(1))],
    )?;
    let corrupt = "{ \"format\": 1, \"generation\": 9, \"spec\": ";
    for (what, text, says) in [
        ("invalid", invalid.as_str(), "hops[0].a"),
        ("corrupt", corrupt, "not a valid chain file"),
    ] {
        std::fs::write(&file, text)?;
        for check in [true, false] {
            let fin = run_to_exit(&lab, &config, check)?;
            let msg = assert_refused(&fin, 64, &[&file_name, says])
                .with_context(|| format!("{what} chain.json (check: {check})"))?;
            assert_untouched(&lab)?;
            assert_free(&lab.dut, &[&ifs::hop_a(1), &ifs::hop_b(1)])?;
            ensure!(
                std::fs::read_to_string(&file)? == text,
                "{what}: chain.json was changed"
            );
            eprintln!("{what} chain.json (check: {check}): exit 64: {msg}");
        }
    }
    // A valid one is resumed at its generation.
    write_persisted(&state.0, 5, &chain_spec(&[1]).hops)?;
    let dp = start_dataplane(&lab, &config)?;
    let ctl = Control::new(&state.0);
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let generation = ctl.get_chain()?.generation;
    ensure!(generation == 5, "resumed at generation {generation}, not 5");
    forward(&lab)?;
    stop_ok(dp)?;
    Ok(())
}

/// Asserts `response` is INVALID_ARGUMENT naming `field` and saying `says`.
fn assert_invalid(response: Response, field: &str, says: &str) -> Result<String> {
    match response {
        Response::Error(e)
            if e.code == code::INVALID_ARGUMENT
                && e.message.contains(says)
                && e.validation
                    .as_ref()
                    .is_some_and(|v| v.errors.iter().any(|i| i.field == field)) =>
        {
            Ok(e.message)
        }
        other => bail!("expected INVALID_ARGUMENT on {field} saying {says:?}, got {other:?}"),
    }
}

/// The chain without its record of the last rejected update.
fn comparable(mut chain: v1::Chain) -> v1::Chain {
    if let Some(s) = chain.status.as_mut() {
        s.last_rejected = None;
    }
    chain
}

#[test]
fn unfit_tool_ports_are_refused_unless_allowed() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(2, ToolKind::Bridge)?)?;
    let ns = lab.dut.name();
    // The pod's management interface: an address and the default route.
    let mgmt = "tlmgmt0";
    tapline_bench::lab::ip(&[
        "-n", ns, "link", "add", mgmt, "type", "veth", "peer", "name", "tlmgmt1",
    ])?;
    tapline_bench::lab::ip(&["-n", ns, "addr", "add", "192.0.2.1/24", "dev", mgmt])?;
    tapline_bench::lab::ip(&["-n", ns, "link", "set", mgmt, "up"])?;
    tapline_bench::lab::ip(&["-n", ns, "route", "add", "default", "via", "192.0.2.254"])?;
    // A tool port that carries a routable address (no default route).
    let h2a = ifs::hop_a(2);
    tapline_bench::lab::ip(&["-n", ns, "addr", "add", "198.51.100.1/24", "dev", &h2a])?;

    let dp = start_dataplane(&lab, &chain_config(&[1], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let before = ctl.get_chain()?;
    for (what, a, says) in [
        ("loopback", "lo", "loopback"),
        ("the default route's interface", mgmt, "default route"),
        (
            "an interface with a routable address",
            h2a.as_str(),
            "198.51.100.1",
        ),
    ] {
        let mut spec = chain_spec(&[1]);
        spec.hops.push(hop_spec("t2", a, &ifs::hop_b(2)));
        let msg = assert_invalid(
            ctl.set_chain(spec, Some(before.generation), false)?,
            "hops[1].a",
            says,
        )
        .with_context(|| format!("SetChain with {what}"))?;
        ensure!(
            comparable(ctl.get_chain()?) == comparable(before.clone()),
            "{what}: the chain changed"
        );
        assert_free(&lab.dut, &[a, &ifs::hop_b(2)])?;
        eprintln!("SetChain with {what}: INVALID_ARGUMENT ({msg})");
    }
    forward(&lab)?;
    stop_ok(dp)?;

    // At start the same refusal, unless the config allows the interface.
    let config = chain_config(&[1, 2], None, "");
    let fin = run_to_exit(&lab, &config, false)?;
    assert_refused(
        &fin,
        64,
        &["chain.hops[1].a", "198.51.100.1", "allowed_interfaces"],
    )?;
    assert_untouched(&lab)?;
    let allowed = chain_config(
        &[1, 2],
        None,
        &format!("allowed_interfaces = [\"{h2a}\"]\n"),
    );
    let dp = start_dataplane(&lab, &allowed)?;
    wait_hops_up(&Control::new(dp.state_dir()), &[1, 2], UP_TIMEOUT)?;
    forward(&lab)?;
    stop_ok(dp)?;
    Ok(())
}

#[test]
fn a_second_dataplane_sharing_the_state_dir_exits_71_and_leaves_the_first_untouched() -> Result<()>
{
    if !privileged()? {
        return Ok(());
    }
    let prefix = unique_prefix();
    let lab1 = Lab::build(&format!("{prefix}a"), Scenario::Inline)?;
    let lab2 = Lab::build(&format!("{prefix}b"), Scenario::Inline)?;
    let state = TempDir::new(&format!("{prefix}-state"))?;
    let config = lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", "")
        .replace(STATE_DIR_PLACEHOLDER, &state.0.to_string_lossy());
    let dp1 = start_dataplane(&lab1, &config)?;
    let ctl = Control::new(&state.0);
    let chain_before = ctl.get_chain()?;
    let seg = state.0.join("stats.shm");
    let sock = state.0.join("control.sock");
    let (seg_ino, sock_ino) = (
        std::fs::metadata(&seg)?.ino(),
        std::fs::metadata(&sock)?.ino(),
    );

    let fin = run_to_exit(&lab2, &config, false)?;
    let msg = assert_refused(&fin, 71, &[&state.0.to_string_lossy(), "lock"])?;
    assert_untouched(&lab2)?;
    eprintln!("second dataplane: exit 71: {msg}");

    ensure!(
        std::fs::metadata(&seg)?.ino() == seg_ino && std::fs::metadata(&sock)?.ino() == sock_ino,
        "the second dataplane replaced stats.shm or control.sock"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let snap = SegmentReader::open(&state.0)?.snapshot();
    ensure!(
        snap.dataplane_pid == dp1.pid() && snap.is_live(std::time::Duration::from_secs(3)),
        "the segment is not the first dataplane's live one: pid {} (first: {}), state {}",
        snap.dataplane_pid,
        dp1.pid(),
        snap.state
    );
    ensure!(
        ctl.get_chain()? == chain_before,
        "the first dataplane's chain API changed"
    );
    forward(&lab1)?;
    stop_ok(dp1)?;
    Ok(())
}

#[test]
fn state_files_are_not_world_readable() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1], None, ""))?;
    let ctl = Control::new(dp.state_dir());
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    for (file, want) in [
        ("stats.shm", 0o640),
        ("chain.json", 0o600),
        ("control.sock", 0o660),
        ("lock", 0o600),
    ] {
        let mode = std::fs::metadata(dp.state_dir().join(file))?
            .permissions()
            .mode()
            & 0o777;
        ensure!(mode == want, "{file} has mode {mode:o}, expected {want:o}");
    }
    stop_ok(dp)?;
    Ok(())
}

/// A memory cgroup with a limit, removed on drop; the dataplane runs in it
/// through [`MemCgroup::wrapper`]. cgroup v1 (the memory hierarchy of this
/// process) or v2 (a child of the cgroup2 root).
struct MemCgroup {
    dir: std::path::PathBuf,
    /// The directory relative to the hierarchy's root.
    rel: String,
    v2: bool,
}

impl MemCgroup {
    fn new(name: &str, limit_bytes: u64) -> Result<MemCgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let v1 = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.trim_start_matches('/').to_string())
        });
        let (dir, rel, limit_file, v2) = match v1 {
            Some(path) if Path::new("/sys/fs/cgroup/memory").is_dir() => (
                Path::new("/sys/fs/cgroup/memory").join(&path).join(name),
                format!("{path}/{name}"),
                "memory.limit_in_bytes",
                false,
            ),
            _ => {
                let root = Path::new("/sys/fs/cgroup");
                let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                    .context(
                    "no memory cgroup: neither a v1 memory hierarchy nor cgroup2 at /sys/fs/cgroup",
                )?;
                ensure!(
                    controllers.split_whitespace().any(|c| c == "memory"),
                    "cgroup2 at /sys/fs/cgroup has no memory controller"
                );
                std::fs::write(root.join("cgroup.subtree_control"), "+memory")
                    .context("enabling the memory controller for children of the cgroup2 root")?;
                (root.join(name), name.to_string(), "memory.max", true)
            }
        };
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cg = MemCgroup { dir, rel, v2 };
        std::fs::write(cg.dir.join(limit_file), limit_bytes.to_string())
            .with_context(|| format!("setting {limit_file} of {}", cg.dir.display()))?;
        Ok(cg)
    }

    /// Runs the program in this cgroup: `sh` joins it, then execs. `ip
    /// netns exec` mounts a fresh /sys without the cgroup filesystems, so
    /// the wrapper mounts the memory hierarchy again in its private mount
    /// namespace first, as a container runtime does.
    fn wrapper(&self) -> Vec<String> {
        let mount = if self.v2 {
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup && cd /sys/fs/cgroup".to_string()
        } else {
            "mount -t tmpfs tapline-cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && \
             mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory && cd /sys/fs/cgroup/memory"
                .to_string()
        };
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "{mount} && echo $$ > {}/cgroup.procs && cd / && exec \"$@\"",
                self.rel.trim_start_matches('/')
            ),
            "sh".into(),
        ]
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: cannot remove cgroup {}", self.dir.display());
    }
}

#[test]
fn umem_beyond_the_cgroup_memory_limit_is_refused_before_attaching() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let prefix = unique_prefix();
    let lab = Lab::build(&prefix, Scenario::Inline)?;
    const LIMIT: u64 = 96 << 20;
    let cg = MemCgroup::new(&format!("{prefix}-mem"), LIMIT)?;
    // 65536 frames of 2048 bytes: a 128 MiB UMEM for the one queue group.
    let config = lab_config(
        None,
        Some((ifs::INLINE_1, ifs::INLINE_2)),
        "",
        "[xdp]\nframe_count = 65536\n",
    );
    for check in [true, false] {
        let mut extra_args = Vec::new();
        if check {
            extra_args.push("--check".to_string());
        }
        let dp = DataplaneProcess::start(
            &lab.dut,
            &config,
            &StartOptions {
                wrapper: cg.wrapper(),
                extra_args,
                ..StartOptions::default()
            },
        )?;
        let fin = wait_bounded(dp, EXIT_TIMEOUT)?;
        let msg = assert_refused(&fin, 64, &["xdp.frame_count", "128 MiB", "memory"])
            .with_context(|| format!("check: {check}"))?;
        assert_untouched(&lab)?;
        eprintln!("UMEM over the cgroup limit (check: {check}): exit 64: {msg}");
    }
    Ok(())
}

#[test]
fn an_mtu_above_what_a_umem_frame_holds_is_refused_at_start_and_logged_at_run_time() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Inline)?;
    let ns = lab.dut.name();
    let config = lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", "");
    tapline_bench::lab::ip(&["-n", ns, "link", "set", ifs::INLINE_2, "mtu", "3000"])?;
    let fin = run_to_exit(&lab, &config, false)?;
    assert_refused(&fin, 64, &["\"i2\"", "MTU 3000", "xdp.frame_size", "1770"])?;
    assert_untouched(&lab)?;
    tapline_bench::lab::ip(&["-n", ns, "link", "set", ifs::INLINE_2, "mtu", "1500"])?;

    let dp = start_dataplane(&lab, &config)?;
    tapline_bench::lab::ip(&["-n", ns, "link", "set", ifs::INLINE_1, "mtu", "3000"])?;
    let warned = |dp: &DataplaneProcess| {
        dp.records()
            .iter()
            .filter(|r| r["level"] == "WARN" && r["ifname"] == ifs::INLINE_1 && r["mtu"] == 3000)
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while warned(&dp) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    ensure!(
        warned(&dp) == 1,
        "expected one warning about i1's MTU 3000:\n{}",
        dp.lines().join("\n")
    );
    tapline_bench::lab::ip(&["-n", ns, "link", "set", ifs::INLINE_1, "mtu", "1500"])?;
    forward(&lab)?;
    stop_ok(dp)?;
    Ok(())
}

#[test]
fn carrier_loss_on_an_inline_port_is_logged_once_and_published() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Inline)?;
    let config = lab_config(None, Some((ifs::INLINE_1, ifs::INLINE_2)), "", "");
    let dp = start_dataplane(&lab, &config)?;
    let down = |dp: &DataplaneProcess| -> Result<u64> {
        Ok(SegmentReader::open(dp.state_dir())?.snapshot().links_down)
    };
    let records = |dp: &DataplaneProcess, message: &str| {
        dp.records()
            .iter()
            .filter(|r| {
                r["ifname"] == ifs::INLINE_1
                    && r["message"].as_str().is_some_and(|m| m.contains(message))
            })
            .count()
    };
    let at_start = down(&dp)?;
    ensure!(
        at_start == 0,
        "links down at start: {at_start:#x}:\n{}",
        dp.lines().join("\n")
    );
    // The far end of i1 goes down: i1 has no carrier.
    lab.gen().set_link(ifs::GEN, false)?;
    let wait = |what: &str, f: &dyn Fn() -> Result<bool>| -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !f()? {
            ensure!(
                std::time::Instant::now() < deadline,
                "{what}: not within 5 s:\n{}",
                dp.lines().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    };
    wait("links_down shows inline-1", &|| Ok(down(&dp)? == 1))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    ensure!(
        records(&dp, "carrier lost") == 1,
        "expected one `carrier lost` record:\n{}",
        dp.lines().join("\n")
    );
    lab.gen().set_link(ifs::GEN, true)?;
    wait("links_down clear again", &|| Ok(down(&dp)? == 0))?;
    ensure!(
        records(&dp, "carrier restored") == 1,
        "expected one `carrier restored` record:\n{}",
        dp.lines().join("\n")
    );
    forward(&lab)?;
    stop_ok(dp)?;
    Ok(())
}

#[test]
fn a_deleted_state_dir_is_recreated_with_segment_socket_and_chain() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::chain(1, ToolKind::Bridge)?)?;
    let dp = start_dataplane(&lab, &chain_config(&[1], Some("drop"), ""))?;
    let ctl = Control::new(dp.state_dir());
    wait_hops_up(&ctl, &[1], UP_TIMEOUT)?;
    let generation = ctl.apply_chain(chain_spec(&[1]))?;
    let before = SegmentReader::open(dp.state_dir())?.snapshot();
    std::fs::remove_dir_all(dp.state_dir())?;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let snap = loop {
        let back = SegmentReader::open(dp.state_dir())
            .ok()
            .map(|r| r.snapshot())
            .filter(|s| s.is_live(std::time::Duration::from_secs(3)));
        if let Some(s) = back {
            if ctl.get_chain().is_ok() {
                break s;
            }
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the state_dir was not re-created within 10 s:\n{}",
            dp.lines().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    ensure!(
        snap.dataplane_pid == dp.pid() && snap.epoch == before.epoch,
        "the re-published segment is not the running dataplane's: pid {} epoch {:#x} (before: pid {} epoch {:#x})",
        snap.dataplane_pid,
        snap.epoch,
        before.dataplane_pid,
        before.epoch
    );
    // Counters continue from where they were.
    let rx = |s: &tapline_segment::Snapshot| -> u64 { s.queues.iter().map(|q| q.rx_packets).sum() };
    ensure!(rx(&snap) >= rx(&before), "counters went backwards");
    let chain = ctl.get_chain()?;
    ensure!(
        chain.generation == generation,
        "GetChain after the re-creation: generation {} (was {generation})",
        chain.generation
    );
    let persisted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dp.state_dir().join("chain.json"))?)?;
    ensure!(
        persisted["generation"] == generation,
        "chain.json re-written with generation {}, not {generation}",
        persisted["generation"]
    );
    for (file, want) in [("stats.shm", 0o640), ("chain.json", 0o600), ("lock", 0o600)] {
        let mode = std::fs::metadata(dp.state_dir().join(file))?
            .permissions()
            .mode()
            & 0o777;
        ensure!(
            mode == want,
            "re-created {file} has mode {mode:o}, expected {want:o}"
        );
    }
    forward(&lab)?;
    // The counters of that traffic reach the new file.
    let after = SegmentReader::open(dp.state_dir())?.snapshot();
    ensure!(
        rx(&after) >= rx(&snap) + 2 * FRAMES as u64,
        "the re-published segment did not count the traffic: {} -> {}",
        rx(&snap),
        rx(&after)
    );
    stop_ok(dp)?;
    Ok(())
}

#[test]
fn an_unfit_output_member_is_refused_unless_allowed() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let mut lab = Lab::build(&unique_prefix(), Scenario::Passive)?;
    lab.add_sensors(&["z0"])?;
    tapline_bench::lab::ip(&[
        "-n",
        lab.dut.name(),
        "addr",
        "add",
        "203.0.113.1/24",
        "dev",
        "z0",
    ])?;
    let group = "[[output_group]]\nname = \"zeek\"\nmembers = [\"z0\"]\n";
    let config = lab_config(Some(ifs::PASSIVE_1), None, "", group);
    for check in [true, false] {
        let fin = run_to_exit(&lab, &config, check)?;
        let msg = assert_refused(
            &fin,
            64,
            &[
                "output_group[0].members[0]",
                "203.0.113.1",
                "allowed_interfaces",
            ],
        )?;
        assert_untouched(&lab)?;
        assert_free(&lab.dut, &["z0"])?;
        eprintln!("unfit member (check: {check}): exit 64: {msg}");
    }
    let allowed = lab_config(
        Some(ifs::PASSIVE_1),
        None,
        "",
        &format!("{group}allowed_interfaces = [\"z0\"]\n"),
    );
    let dp = start_dataplane(&lab, &allowed)?;
    stop_ok(dp)?;
    Ok(())
}
