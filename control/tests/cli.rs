//! The two binaries of this package from the outside, without root, a
//! dataplane or a network namespace: `taplinectl` documents its verbs, JSON
//! shapes and exit codes, and fails with one line and the documented code
//! (usage 2, unreachable 69); `tapline-control` rejects a bad configuration
//! with exit 64 and one line naming the field.
//!
//! Being an integration test of this package, it also makes `cargo test`
//! build both binaries, which the lab tests in `tests/` run.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TAPLINECTL: &str = env!("CARGO_BIN_EXE_taplinectl");
const TAPLINE_CONTROL: &str = env!("CARGO_BIN_EXE_tapline-control");

/// Runs a binary with `args`, killing it if it runs for more than 20 s.
fn run(bin: &str, args: &[&str]) -> Output {
    let child = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("waiting for the child"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{bin} {args:?} did not finish within 20 s");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit `code` and exactly one line on stderr; returns the line.
fn one_error_line(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line expected on stderr: {err}");
    assert!(stdout(o).is_empty(), "nothing on stdout: {}", stdout(o));
    err.trim_end().to_string()
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding an ephemeral port");
    l.local_addr().expect("local address").port()
}

#[test]
fn taplinectl_help_documents_verbs_json_and_exit_codes() {
    let o = run(TAPLINECTL, &["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    for needle in [
        "status",
        "stats",
        "chain",
        "health",
        "--endpoint",
        "--token-file",
        "--json",
        "http://127.0.0.1:50051",
        "69",
        "77",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    // Each verb documents the shape of its --json output.
    for (verb, keys) in [
        (&["status"][..], &["\"dataplaneState\"", "\"health\""][..]),
        (&["stats"], &["\"ports\"", "\"rxPackets\"", "\"rates\""]),
        (&["chain", "get"], &["\"generation\"", "\"hops\""]),
        (&["chain", "watch"], &["\"generation\"", "\"hops\""]),
        (
            &["chain", "set"],
            &[
                "\"accepted\"",
                "\"applied\"",
                "--expected-generation",
                "FAILED_PRECONDITION",
            ],
        ),
        (
            &["chain", "bypass"],
            &["\"hop\"", "\"manualBypass\"", "--clear", "--reason"],
        ),
        (&["health"], &["\"services\"", "SERVING"]),
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let o = run(TAPLINECTL, &args);
        assert!(o.status.success(), "{verb:?} --help: {}", stderr(&o));
        let help = stdout(&o);
        for k in keys {
            assert!(help.contains(k), "{verb:?} --help lacks {k}:\n{help}");
        }
    }
}

#[test]
fn taplinectl_usage_errors_exit_2() {
    let o = run(TAPLINECTL, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(TAPLINECTL, &["stats", "--interval-ms", "100"]);
    assert_eq!(o.status.code(), Some(2), "--interval-ms needs --watch");
    let line = one_error_line(
        &run(
            TAPLINECTL,
            &["--token-file", "/nonexistent/token", "health"],
        ),
        2,
    );
    assert!(
        line.contains("cannot read --token-file /nonexistent/token"),
        "{line}"
    );
    let line = one_error_line(
        &run(TAPLINECTL, &["--endpoint", "https://127.0.0.1:1", "health"]),
        2,
    );
    assert!(line.contains("needs --ca"), "{line}");
    let line = one_error_line(
        &run(TAPLINECTL, &["--endpoint", "ftp://127.0.0.1:1", "health"]),
        2,
    );
    assert!(line.contains("use http://HOST:PORT or https://"), "{line}");
    let line = one_error_line(
        &run(
            TAPLINECTL,
            &["--endpoint", "http://127.0.0.1:1", "--ca", "/x", "health"],
        ),
        2,
    );
    assert!(line.contains("need an https:// endpoint"), "{line}");
    let line = one_error_line(
        &run(
            TAPLINECTL,
            &[
                "--endpoint",
                "https://127.0.0.1:1",
                "--ca",
                "/nonexistent/ca",
                "health",
            ],
        ),
        2,
    );
    assert!(line.contains("cannot read --ca /nonexistent/ca"), "{line}");
    let dir = std::env::temp_dir().join(format!("taplinectl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("spec.json");
    std::fs::write(&spec, r#"{"hops": [{"name": "ids", "a": "t1a"}]}"#).unwrap();
    let line = one_error_line(
        &run(TAPLINECTL, &["chain", "set", "-f", &spec.to_string_lossy()]),
        2,
    );
    assert!(line.contains("missing field `b`"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn taplinectl_unreachable_exits_69_with_one_line() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for verb in [
        &["status"][..],
        &["stats"],
        &["stats", "--watch"],
        &["chain", "get"],
        &["health"],
    ] {
        let mut args = vec!["--endpoint", url.as_str()];
        args.extend_from_slice(verb);
        let line = one_error_line(&run(TAPLINECTL, &args), 69);
        assert_eq!(
            line,
            format!("error: cannot reach tapline-control at {url}: connection refused"),
            "{verb:?}"
        );
    }
    // A bare HOST:PORT is taken as http.
    let bare = url.trim_start_matches("http://");
    let line = one_error_line(&run(TAPLINECTL, &["--endpoint", bare, "health"]), 69);
    assert!(line.contains(&url), "{line}");
}

#[test]
fn tapline_control_rejects_a_bad_config_with_exit_64_and_one_line() {
    let dir = std::env::temp_dir().join(format!("tapline-control-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[interfaces]\npassive-1 = \"p1\"\n[control]\ngrpc_listen = \"localhost\"\n",
    )
    .unwrap();
    let o = run(
        TAPLINE_CONTROL,
        &["--config", &path.to_string_lossy(), "--log-format", "json"],
    );
    assert_eq!(o.status.code(), Some(64), "{}{}", stdout(&o), stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(all.lines().count(), 1, "one line expected: {all}");
    assert!(all.contains("control.grpc_listen"), "{all}");

    let o = run(
        TAPLINE_CONTROL,
        &["--config", &dir.join("missing.toml").to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(64), "{}{}", stdout(&o), stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();

    let o = run(TAPLINE_CONTROL, &["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--config"));
}

#[test]
fn taplinectl_prints_completion_scripts_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "_taplinectl()"),
        ("zsh", "#compdef taplinectl"),
        ("fish", "complete -c taplinectl"),
    ] {
        let o = run(TAPLINECTL, &["completion", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: no {marker:?}:\n{script}");
        // The verbs and global options complete.
        for word in ["chain", "stats", "endpoint", "token-file"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let o = run(TAPLINECTL, &["completion", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = run(TAPLINECTL, &["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.starts_with(".ie"), "{page}");
    for needle in [
        ".TH taplinectl",
        ".SH NAME",
        "\\-\\-endpoint",
        "TAPLINE_TOKEN_FILE",
        // One section per verb with its long help (--json shape included).
        ".SH \"TAPLINECTL STATS\"",
        ".SH \"TAPLINECTL CHAIN SET\"",
        "rxPackets",
        "expected-generation",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}:\n{page}");
    }
}
