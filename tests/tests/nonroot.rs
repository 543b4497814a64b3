//! The dataplane runs without root: as uid/gid 65534 with only
//! CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and CAP_IPC_LOCK, granted either as
//! ambient capabilities (`setpriv`) or as file capabilities (`setcap` on a
//! copy of the binary), it forwards frames byte for byte and captures them
//! with exact counts, and releases the interfaces on SIGTERM. Without
//! CAP_BPF it exits 77 naming CAP_BPF, before touching any interface.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use tapline_bench::lab::{self, ifs, unique_prefix, Lab, Scenario};
use tapline_bench::runner::{workspace_binary, DataplaneProcess, StartOptions};
use tapline_tests::{
    assert_bridge_counters, assert_delivered_in_order, assert_passive_counters, assert_released,
    assert_untouched, config_for, open_raw, passive_frames, privileged, run_concurrently,
    send_paced, stop_ok, wait_bounded, Flow, EXCHANGE_TIMEOUT, EXIT_TIMEOUT,
};

/// The unprivileged identity (`nobody`/`nogroup`).
const UID: u32 = 65534;
const ALL_CAPS: &str = "+net_raw,+net_admin,+bpf,+ipc_lock";
const NO_BPF_CAPS: &str = "+net_raw,+net_admin,+ipc_lock";
const FILE_CAPS: &str = "cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock=ep";
const FRAMES_EACH_WAY: usize = 1_000;
const PASSIVE_FRAMES: usize = 1_000;
/// Exit code for a missing capability (EX_NOPERM).
const EXIT_NOPERM: i32 = 77;

/// `setpriv` switching to [`UID`] with no supplementary groups.
fn setpriv_base() -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
    ]
}

/// `setpriv` as [`UID`] with `caps` inheritable and ambient.
fn ambient_wrapper(caps: &str) -> Vec<String> {
    let mut w = setpriv_base();
    w.push(format!("--inh-caps={caps}"));
    w.push(format!("--ambient-caps={caps}"));
    w
}

/// Reads `Uid:` and `CapEff:` of a running process.
fn identity(pid: u32) -> Result<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("Uid:")?, field("CapEff:")?))
}

/// Forwards and captures traffic through a dataplane started with
/// `wrapper`, and checks it ran as [`UID`] with `cap_eff` effective.
fn forwards_and_captures_as_nobody(wrapper: Vec<String>, cap_eff: &str) -> Result<()> {
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let flows = [
        Flow::gen_to_sink(&lab, FRAMES_EACH_WAY)?,
        Flow::sink_to_gen(&lab, FRAMES_EACH_WAY)?,
    ];
    let tap = open_raw(lab.tap(), ifs::TAP)?;
    let captured = passive_frames(PASSIVE_FRAMES);
    let dp = DataplaneProcess::start(
        &lab.dut,
        &config_for(&lab, "auto"),
        &StartOptions {
            wrapper,
            expect_ready: true,
            ..StartOptions::default()
        },
    )?;
    let (uid, eff) = identity(dp.pid())?;
    ensure!(
        uid == format!("{UID} {UID} {UID} {UID}"),
        "the dataplane should run as uid {UID}, /proc says Uid: {uid}"
    );
    ensure!(
        eff == cap_eff,
        "effective capabilities should be exactly {cap_eff}, /proc says CapEff: {eff}"
    );
    let (results, sent) = std::thread::scope(|s| {
        let passive = s.spawn(|| send_paced(&tap, &captured, Instant::now() + EXCHANGE_TIMEOUT));
        (run_concurrently(&flows), passive.join())
    });
    let fin = stop_ok(dp)?;
    sent.map_err(|_| anyhow::anyhow!("passive sender panicked"))??;
    for (flow, result) in flows.iter().zip(&results?) {
        assert_delivered_in_order(flow, result)?;
    }
    assert_bridge_counters(&fin, &flows[0].frames, &flows[1].frames)?;
    assert_passive_counters(&fin, &captured)?;
    assert_released(&lab)?;
    Ok(())
}

/// CapEff of net_admin (12), net_raw (13), ipc_lock (14) and bpf (39).
const ALL_CAPS_EFF: &str = "0000008000007000";

#[test]
fn ambient_capabilities_suffice_to_forward_and_capture() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    forwards_and_captures_as_nobody(ambient_wrapper(ALL_CAPS), ALL_CAPS_EFF)
}

/// A private directory holding a copy of the dataplane binary with file
/// capabilities; removed on drop.
struct CapsBinary {
    dir: PathBuf,
    bin: PathBuf,
}

impl CapsBinary {
    fn create() -> Result<CapsBinary> {
        let dir = std::env::temp_dir().join(format!("{}-caps", unique_prefix()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let guard = CapsBinary {
            bin: dir.join("tapline-dataplane"),
            dir,
        };
        std::fs::copy(workspace_binary("tapline-dataplane")?, &guard.bin)?;
        std::fs::set_permissions(&guard.bin, std::fs::Permissions::from_mode(0o755))?;
        lab::run(
            std::process::Command::new("setcap")
                .arg(FILE_CAPS)
                .arg(&guard.bin),
        )
        .context("setcap (package libcap2-bin) on the copied binary")?;
        Ok(guard)
    }
}

impl Drop for CapsBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn file_capabilities_suffice_to_forward_and_capture() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let caps_bin = CapsBinary::create()?;
    // The runner appends the workspace binary and its arguments to the
    // wrapper; this shell drops the former and execs the copy carrying the
    // file capabilities as nobody, with no ambient or inheritable caps.
    let wrapper = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "shift; exec {} {} \"$@\"",
            setpriv_base().join(" "),
            caps_bin.bin.display()
        ),
        "sh".to_string(),
    ];
    forwards_and_captures_as_nobody(wrapper, ALL_CAPS_EFF)
}

#[test]
fn without_cap_bpf_it_exits_77_naming_cap_bpf_before_touching_interfaces() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let dp = DataplaneProcess::start(
        &lab.dut,
        &config_for(&lab, "auto"),
        &StartOptions {
            wrapper: ambient_wrapper(NO_BPF_CAPS),
            expect_ready: false,
            ..StartOptions::default()
        },
    )?;
    let fin = wait_bounded(dp, EXIT_TIMEOUT)?;
    ensure!(
        fin.status.code() == Some(EXIT_NOPERM),
        "expected exit {EXIT_NOPERM} without CAP_BPF, got {}:\n{}",
        fin.status,
        fin.lines.join("\n")
    );
    let naming: Vec<&String> = fin.lines.iter().filter(|l| l.contains("CAP_BPF")).collect();
    ensure!(
        naming.len() == 1 && naming[0].contains("missing capabilities: CAP_BPF"),
        "expected one line saying CAP_BPF is missing:\n{}",
        fin.lines.join("\n")
    );
    ensure!(
        !naming[0].contains("CAP_NET_RAW (") && !naming[0].contains("CAP_NET_ADMIN ("),
        "only CAP_BPF is missing, the message lists more: {}",
        naming[0]
    );
    assert_untouched(&lab)?;
    Ok(())
}
