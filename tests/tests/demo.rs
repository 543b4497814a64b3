//! The main job, as an operator runs it: `tapline-bench demo` as a process
//! (it builds a lab, starts `tapline-dataplane`, sends traffic through the
//! inline bridge both ways and into passive-1, stops the dataplane with
//! SIGTERM, checks every frame arrived and tears the lab down). This also
//! covers what a library test cannot: the signal mask and handlers the
//! `tapline-bench` binary hands its children.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use tapline_bench::runner::workspace_binary;
use tapline_tests::privileged;

#[test]
fn the_demo_runs_and_every_frame_arrives() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let bench = workspace_binary("tapline-bench")?;
    let out = Command::new(&bench)
        .args(["demo", "--seconds", "1", "--rate", "20000"])
        .output()
        .with_context(|| format!("running {}", bench.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "tapline-bench demo exited with {}:\n{stdout}\n{stderr}",
        out.status
    );
    ensure!(
        stdout.contains("demo OK: every frame sent arrived"),
        "no success line in:\n{stdout}\n{stderr}"
    );
    ensure!(
        !stdout.contains("SIGKILL") && !stderr.contains("SIGKILL"),
        "the dataplane had to be killed:\n{stdout}\n{stderr}"
    );
    Ok(())
}
