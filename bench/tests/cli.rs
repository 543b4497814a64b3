//! The `tapline-bench` command line without privileges: help lists every
//! subcommand, and bad arguments are refused before anything is built.
//! (Also makes `cargo test` build the binary that the lab tests in `tests/`
//! run.)

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tapline-bench"))
}

#[test]
fn help_lists_the_subcommands() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for verb in ["lab", "demo", "bridge", "micro", "run"] {
        assert!(text.contains(verb), "{verb} missing from --help:\n{text}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["lab", "up", "nosuchscenario"][..],
        &["lab", "up", "chain", "--hops", "0"][..],
        &["bridge", "--duts", "nosuchdut"][..],
    ] {
        let out = bench().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?} gave no message");
    }
}
