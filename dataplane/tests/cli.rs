//! The `tapline-dataplane` command line without privileges: configuration
//! errors exit 64 with one line naming the field, before any interface is
//! touched; `--check` validates. (Also makes `cargo test` build the binary
//! that the namespace tests in `tests/` start.)

use std::process::Command;

fn dataplane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tapline-dataplane"))
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tapline-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tapline.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs with `config` and returns (exit code, stdout+stderr).
fn run_with(name: &str, config: &str, extra: &[&str]) -> (i32, String) {
    let p = write_config(name, config);
    let out = dataplane()
        .arg("--config")
        .arg(&p)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_config_exits_64_with_one_line_naming_the_field() {
    let cases = [
        (
            "[interfaces]\npassive-1 = \"x\"\n[xdp]\nframe_size = 1000\n",
            "xdp.frame_size",
        ),
        ("[interfaces]\ninline-1 = \"x\"\n", "interfaces.inline-2"),
        (
            "[interfaces]\npassive-1 = \"x\"\n[xdp]\nbogus = 1\n",
            "bogus",
        ),
        ("not toml at all [", "line 1"),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        let (code, text) = run_with(&format!("bad{i}"), config, &[]);
        assert_eq!(code, 64, "config {config:?} gave {code}: {text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one line, got {text:?}");
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
    }
}

#[test]
fn unreadable_config_file_exits_64() {
    let out = dataplane()
        .args(["--config", "/nonexistent/tapline.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read /nonexistent/tapline.toml"));
}

#[test]
fn check_reports_a_missing_interface_with_exit_64() {
    let (code, text) = run_with(
        "missing",
        "[interfaces]\npassive-1 = \"tlnosuch0\"\n",
        &["--check", "--log-format", "json"],
    );
    assert_eq!(code, 64, "{text}");
    assert!(
        text.contains("tlnosuch0") && text.contains("passive-1"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap()).expect("json log line");
    assert_eq!(v["level"], "ERROR");
}

#[test]
fn help_lists_the_contract_flags() {
    let out = dataplane().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--log-format", "--check"] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

/// Runs the dataplane on `path` and returns (exit code, output), failing
/// the test if it has not exited within `limit` (a config read that hangs).
fn run_bounded(path: &std::path::Path, limit: std::time::Duration) -> (i32, String) {
    let mut child = dataplane()
        .arg("--config")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tapline-dataplane --config {} did not exit within {limit:?}",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn config_reads_are_bounded_and_never_hang() {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
    let dir = std::env::temp_dir().join(format!("tapline-cli-{}-bounded", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An endless character device, a FIFO nobody writes to, a directory
    // and a regular file far larger than any configuration.
    let fifo = dir.join("fifo.toml");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.join("big.toml");
    let mut text = String::from("[interfaces]\npassive-1 = \"x\"\n");
    while text.len() < 2 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, text).unwrap();
    let cases: [(&std::path::Path, &str); 4] = [
        (std::path::Path::new("/dev/zero"), "not a regular file"),
        (&fifo, "not a regular file"),
        (&dir, "not a regular file"),
        (&big, "larger than"),
    ];
    for (path, says) in cases {
        let (code, text) = run_bounded(path, LIMIT);
        assert_eq!(code, 64, "--config {}: exit {code}: {text}", path.display());
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one line, got {text:?}");
        assert!(
            lines[0].contains(says) && lines[0].contains(&*path.to_string_lossy()),
            "--config {}: {:?} does not say {says:?} and name the file",
            path.display(),
            lines[0]
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
