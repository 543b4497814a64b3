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
