//! The API as operators' tools see it, with clients this project did not
//! write: server reflection listed by Python's grpcio-reflection (PyPI)
//! over v1alpha and v1; `taplinectl health` and `status` exit 4 while the
//! server answers NOT_SERVING (no dataplane here), 0 only when SERVING.
//!
//! The Python client comes from the virtual environment `.ci/run` creates
//! (`target/ci-venv`); `TAPLINE_PYTHON` names another interpreter that has
//! `grpcio-reflection`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{sidecar_config, tmpdir, Sidecar};
use tapline_config::Config;
use tapline_control::audit::AuditLog;

const TAPLINECTL: &str = env!("CARGO_BIN_EXE_taplinectl");

fn config(state: &Path) -> Config {
    sidecar_config("passive-1 = \"p1\"\n", state, "")
}

/// The interpreter with grpcio-reflection: `TAPLINE_PYTHON`, else the
/// virtual environment of `.ci/run`. Fails loudly when there is none.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TAPLINE_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with grpcio-reflection: run `python3 -m venv target/ci-venv && \
         target/ci-venv/bin/pip install grpcio-reflection` (as .ci/run does), or set TAPLINE_PYTHON"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_reflection_lists_services_over_v1alpha_and_v1() {
    let dir = tmpdir("reflection");
    let sidecar = Sidecar::start_with_audit(config(&dir), AuditLog::discard()).await;
    let grpc = sidecar.grpc;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/reflection_list.py");
    let py = python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .arg(grpc.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = serde_json::json!([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "tapline.v1.Admin",
        "tapline.v1.Observer"
    ]);
    assert_eq!(v["v1alpha"], want, "{v}");
    assert_eq!(v["v1alpha_stub"], want, "{v}");
    assert_eq!(v["v1"], want, "{v}");
    assert_eq!(
        v["admin_methods"],
        serde_json::json!(["SetChain", "SetHopBypass", "Tap"])
    );
    sidecar.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_status_exit_4_while_not_serving() {
    let dir = tmpdir("notserving");
    let sidecar = Sidecar::start_with_audit(config(&dir), AuditLog::discard()).await;
    let (grpc, health) = (sidecar.grpc, sidecar.health);
    for (url, args) in [
        (format!("http://{grpc}"), &["--json", "health"][..]),
        (format!("http://{health}"), &["health"][..]),
        (format!("http://{grpc}"), &["--json", "status"][..]),
        (format!("http://{grpc}"), &["status"][..]),
    ] {
        let (url2, args2): (String, Vec<String>) =
            (url.clone(), args.iter().map(|s| s.to_string()).collect());
        let o = tokio::task::spawn_blocking(move || {
            Command::new(TAPLINECTL)
                .env_remove("TAPLINE_TOKEN_FILE")
                .arg("--endpoint")
                .arg(url2)
                .args(args2)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(
            o.status.code(),
            Some(4),
            "{url} {args:?}: {stdout} {stderr}"
        );
        assert!(stdout.contains("NOT_SERVING"), "printed first: {stdout}");
        assert_eq!(
            stderr.trim(),
            "error: tapline-control's overall health is NOT_SERVING",
            "{url} {args:?}"
        );
        if args[0] == "--json" {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let overall = if args[1] == "health" {
                &v["services"][""]
            } else {
                &v["health"][""]
            };
            assert_eq!(overall, "NOT_SERVING", "{v}");
        }
    }
    sidecar.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real binary: `--log-format json` lines carry `target` and typed
/// fields, and audit lines reach stdout, one JSON object per line, without
/// the token that was sent.
#[test]
fn the_binary_logs_json_with_targets_and_audits_on_stdout() {
    use std::io::{BufRead, BufReader};
    let dir = tmpdir("binary-audit");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "viewer-secret-0123,grafana,1,view\n").unwrap();
    let cfg = dir.join("tapline.toml");
    // A free port: bind, read, close (the sidecar binds it right after).
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (g, h, m) = (port(), port(), port());
    std::fs::write(
        &cfg,
        format!(
            "[interfaces]\npassive-1 = \"p1\"\n[dataplane]\nstate_dir = \"{}\"\n[control]\n\
             grpc_listen = \"127.0.0.1:{g}\"\nhealth_listen = \"127.0.0.1:{h}\"\n\
             metrics_listen = \"127.0.0.1:{m}\"\ntoken_file = \"{}\"\n",
            dir.display(),
            tokens.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapline-control"))
        .args(["--config", cfg.to_str().unwrap(), "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails half-way.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut child = Reap(child);
    let mut lines = BufReader::new(stdout).lines();
    let serving: serde_json::Value = loop {
        let l = lines.next().expect("a log line").unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).expect("JSON");
        if v["message"] == "tapline-control serving" {
            break v;
        }
    };
    assert_eq!(serving["target"], "tapline_control", "{serving}");
    assert_eq!(serving["token_identities"], 1, "{serving}");
    assert_eq!(serving["grpc_tls"], false, "{serving}");
    assert_eq!(serving["grpc"], format!("127.0.0.1:{g}"), "{serving}");
    let token = dir.join("view.token");
    std::fs::write(&token, "viewer-secret-0123\n").unwrap();
    let spec = dir.join("spec.json");
    std::fs::write(&spec, r#"{"hops": []}"#).unwrap();
    let o = Command::new(TAPLINECTL)
        .args([
            "--endpoint",
            &format!("http://127.0.0.1:{g}"),
            "--token-file",
            token.to_str().unwrap(),
            "chain",
            "set",
            "-f",
            spec.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{o:?}");
    let audit: serde_json::Value = loop {
        let l = lines.next().expect("the audit line").unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).expect("JSON");
        if v["log_type"] == "audit" {
            assert!(!l.contains("viewer-secret"), "{l}");
            break v;
        }
    };
    assert_eq!(audit["method"], "/tapline.v1.Admin/SetChain");
    assert_eq!(
        audit["identity"],
        serde_json::json!({"name": "grafana", "role": "view", "auth": "bearer_token"})
    );
    assert_eq!(audit["code"], "PERMISSION_DENIED");
    assert_eq!(audit["request"], serde_json::Value::Null);
    assert_eq!(audit["generation"], serde_json::Value::Null);
    // SIGTERM: exits 0.
    nix_kill(pid);
    assert!(child.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn nix_kill(pid: u32) {
    let s = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}
