//! Instructions per frame from `valgrind --tool=callgrind` runs of the
//! measured `poll` at two frame counts.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use super::{LoopRun, MicroPath, CALLGRIND_FRAMES};

/// Instruction count of one callgrind run, and what its loop did.
pub(crate) fn callgrind_ir(
    path: MicroPath,
    frames: u64,
    batch: u32,
    toggle: &str,
    out_file: &Path,
) -> Result<(u64, LoopRun)> {
    let exe = std::env::current_exe().context("finding tapline-bench's own executable")?;
    let res = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={toggle}"))
        .arg(&exe)
        .args(["micro", "--inner", "--path", path.name()])
        .arg(format!("--frames={frames}"))
        .arg(format!("--batch={batch}"))
        .stdin(Stdio::null())
        .output()
        .context("running valgrind")?;
    if !res.status.success() {
        bail!(
            "valgrind --tool=callgrind on {} micro --path {} failed ({}):\n{}",
            exe.display(),
            path.name(),
            res.status,
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let text = std::fs::read_to_string(out_file)
        .with_context(|| format!("reading {}", out_file.display()))?;
    let ir = parse_callgrind_total(&text)
        .with_context(|| format!("no totals line in {}", out_file.display()))?;
    ensure!(
        ir > 0,
        "callgrind counted no instructions in {toggle}: the symbol was not found \
         (renamed, or inlined into its caller)"
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let run: LoopRun = serde_json::from_str(line)
        .with_context(|| format!("reading the loop's summary from {line:?}"))?;
    ensure!(
        run.frames == frames,
        "the loop under callgrind handled {} frames, expected {frames}",
        run.frames
    );
    Ok((ir, run))
}

/// The `totals:` (or older `summary:`) line of a callgrind output file.
pub(crate) fn parse_callgrind_total(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Instructions per frame inside `toggle`, from two runs (difference
/// method), and the most heartbeats either run sent.
pub(crate) fn ir_per_frame(
    path: MicroPath,
    batch: u32,
    toggle: &str,
    what: &str,
    dir: &Path,
) -> Result<(f64, u64)> {
    let [f1, f2] = CALLGRIND_FRAMES;
    let file = |f: u64| dir.join(format!("callgrind.{}.{what}.{f}.out", path.name()));
    let (i1, r1) = callgrind_ir(path, f1, batch, toggle, &file(f1))?;
    let (i2, r2) = callgrind_ir(path, f2, batch, toggle, &file(f2))?;
    let heartbeats = match path.hops() {
        Some(_) => format!(" ({} and {} heartbeats sent)", r1.heartbeats, r2.heartbeats),
        None => String::new(),
    };
    eprintln!(
        "callgrind {} {what}: {i1} Ir at {f1} frames, {i2} Ir at {f2} frames{heartbeats}",
        path.name()
    );
    Ok((
        (i2 as f64 - i1 as f64) / (f2 - f1) as f64,
        r1.heartbeats.max(r2.heartbeats),
    ))
}

pub(crate) fn check_valgrind() -> Result<()> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "`valgrind --version` failed ({}): --callgrind needs a working valgrind",
            o.status
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("--callgrind needs valgrind, which is not on PATH (apt-get install valgrind)")
        }
        Err(e) => Err(e).context("running `valgrind --version`"),
    }
}
