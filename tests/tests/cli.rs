//! Startup errors are precise and harmless. A bad configuration (an unknown
//! key, `frame_size = 1000`) exits 64 with exactly one log line naming the
//! field; a configured interface that does not exist exits 64 naming it;
//! `--check` validates without attaching. None of these touches an
//! interface: afterwards no XDP program is attached and promiscuity is 0.

use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tapline_bench::lab::{ifs, unique_prefix, Lab, Netns, Scenario};
use tapline_bench::runner::{
    lab_config, workspace_binary, DataplaneProcess, Finished, StartOptions, STATE_DIR_PLACEHOLDER,
};
use tapline_tests::{assert_untouched, privileged, wait_bounded, EXIT_TIMEOUT};

/// EX_USAGE: bad configuration or missing interface.
const EXIT_CONFIG: i32 = 64;

/// Runs the dataplane (JSON logs) with `config` and extra arguments, expecting
/// it to exit by itself.
fn run_json(lab: &Lab, config: &str, extra_args: &[&str]) -> Result<Finished> {
    let dp = DataplaneProcess::start(
        &lab.dut,
        config,
        &StartOptions {
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            expect_ready: false,
            ..StartOptions::default()
        },
    )?;
    wait_bounded(dp, EXIT_TIMEOUT)
}

/// Runs the dataplane with default (text) logs; returns its status and
/// output lines (stdout, then stderr).
fn run_text(ns: &Netns, config: &str) -> Result<(ExitStatus, Vec<String>)> {
    let dir = std::env::temp_dir().join(format!("{}-cli", unique_prefix()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tapline.toml");
    let state_dir = dir.join("state");
    std::fs::write(
        &path,
        config.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy()),
    )?;
    let mut child = ns
        .command(workspace_binary("tapline-dataplane")?)
        .arg("--config")
        .arg(&path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tapline-dataplane")?;
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            bail!("tapline-dataplane did not exit within {EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut out)?;
    Ok((status, out.lines().map(str::to_string).collect()))
}

/// A full-lab config with `xdp_keys` in its `[xdp]` table.
fn full_config(xdp_keys: &str) -> String {
    lab_config(
        Some(ifs::PASSIVE_1),
        Some((ifs::INLINE_1, ifs::INLINE_2)),
        "",
        &format!("[xdp]\n{xdp_keys}"),
    )
}

/// Asserts exit 64 and exactly one output line, an error containing every
/// one of `needles`.
fn assert_one_error_line(status: ExitStatus, lines: &[String], needles: &[&str]) -> Result<()> {
    ensure!(
        status.code() == Some(EXIT_CONFIG),
        "expected exit {EXIT_CONFIG}, got {status}:\n{}",
        lines.join("\n")
    );
    ensure!(
        lines.len() == 1,
        "expected exactly one output line, got {}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // JSON records are checked on their level and message (unescaped).
    let line = match serde_json::from_str::<serde_json::Value>(&lines[0]) {
        Ok(r) if r.is_object() => format!(
            "{} {}",
            r["level"].as_str().unwrap_or_default(),
            r["message"].as_str().unwrap_or_default()
        ),
        _ => lines[0].clone(),
    };
    ensure!(line.contains("ERROR"), "the line is not an error: {line}");
    for n in needles {
        ensure!(
            line.contains(n),
            "the error line does not name {n:?}: {line}"
        );
    }
    Ok(())
}

#[test]
fn unknown_key_exits_64_with_one_line_naming_it() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let config = full_config("mode = \"auto\"\nframesize = 2048\n");
    let fin = run_json(&lab, &config, &[])?;
    assert_one_error_line(
        fin.status,
        &fin.lines,
        &["config error", "framesize", "line "],
    )?;
    let (status, lines) = run_text(&lab.dut, &config)?;
    assert_one_error_line(status, &lines, &["config error", "framesize"])?;
    assert_untouched(&lab)?;
    Ok(())
}

#[test]
fn frame_size_1000_exits_64_with_one_line_naming_xdp_frame_size() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let config = full_config("frame_size = 1000\n");
    let fin = run_json(&lab, &config, &[])?;
    assert_one_error_line(fin.status, &fin.lines, &["xdp.frame_size", "1000"])?;
    let (status, lines) = run_text(&lab.dut, &config)?;
    assert_one_error_line(status, &lines, &["xdp.frame_size", "1000"])?;
    assert_untouched(&lab)?;
    Ok(())
}

#[test]
fn missing_interface_exits_64_naming_it_before_touching_the_others() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    // inline-2 is looked up last; p1 and i1 exist and must stay untouched.
    let missing = "nope0";
    let config = lab_config(Some(ifs::PASSIVE_1), Some((ifs::INLINE_1, missing)), "", "");
    let fin = run_json(&lab, &config, &[])?;
    assert_one_error_line(
        fin.status,
        &fin.lines,
        &[&format!("{missing:?}"), "inline-2"],
    )?;
    let fin = run_json(&lab, &config, &["--check"])?;
    assert_one_error_line(
        fin.status,
        &fin.lines,
        &[&format!("{missing:?}"), "inline-2"],
    )?;
    assert_untouched(&lab)?;
    Ok(())
}

#[test]
fn check_validates_a_good_config_without_attaching() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let lab = Lab::build(&unique_prefix(), Scenario::Full)?;
    let fin = run_json(&lab, &full_config("mode = \"auto\"\n"), &["--check"])?;
    ensure!(
        fin.status.success(),
        "--check of a valid config should exit 0, got {}:\n{}",
        fin.status,
        fin.lines.join("\n")
    );
    ensure!(
        fin.records()
            .iter()
            .any(|r| r["message"] == "configuration is valid"),
        "--check should say the configuration is valid:\n{}",
        fin.lines.join("\n")
    );
    assert_untouched(&lab)?;
    Ok(())
}
