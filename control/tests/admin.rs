//! `tapline.v1.Admin` served in-process, against a fake dataplane command
//! socket (no kernel, no root): it refuses every call without an admin
//! token file, checks the token before anything reaches the dataplane,
//! forwards authenticated changes and carries the validation result of an
//! invalid spec to the client; and `taplinectl chain set|bypass|get` on top
//! of it, with their exit codes.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    chain, response, sidecar_config, tmpdir, with_token, FakeCommandSocket, Sidecar, INLINE_PAIR,
};
use tapline_dataplane::config::Config;
use tapline_proto::v1;
use tapline_proto::v1::admin_client::AdminClient;
use tapline_proto::v1::dataplane_request::Request as DpRequest;
use tapline_proto::v1::dataplane_response::Response as DpResponse;
use tapline_proto::v1::observer_client::ObserverClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const TAPLINECTL: &str = env!("CARGO_BIN_EXE_taplinectl");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const OBSERVER_TOKEN: &str = "observer-token-0123456789";

/// A configuration with the sidecar on ephemeral ports and `state_dir`
/// under `dir`; token files only when given.
fn config(dir: &Path, observer: Option<&str>, admin: Option<&str>) -> (Config, PathBuf) {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut control = String::new();
    for (key, token) in [
        ("observer_token_file", observer),
        ("admin_token_file", admin),
    ] {
        if let Some(t) = token {
            let p = dir.join(key);
            std::fs::write(&p, format!("{t}\n")).unwrap();
            control += &format!("{key} = \"{}\"\n", p.display());
        }
    }
    let cfg = sidecar_config(INLINE_PAIR, &state, &control);
    (cfg, state)
}

fn set_chain(hops: &[&str]) -> v1::SetChainRequest {
    v1::SetChainRequest {
        spec: chain(1, hops).spec,
        expected_generation: None,
        dry_run: false,
    }
}

/// Runs taplinectl against `grpc` with `args`, off the runtime's threads.
async fn ctl(grpc: SocketAddr, args: &[&str]) -> Output {
    let mut all = vec!["--endpoint".to_string(), format!("http://{grpc}")];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(TAPLINECTL)
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("running taplinectl")
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit `code` with one line on stderr; returns the line.
fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        out(o),
        err(o)
    );
    let e = err(o);
    assert_eq!(e.lines().count(), 1, "one line on stderr: {e}");
    e.trim_end().to_string()
}

fn succeeds(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    );
    out(o)
}

/// A fake dataplane holding a chain: it accepts specs unless a hop is named
/// "bad", bumps the generation, and knows the hops of the chain it holds.
fn dataplane(state_dir: &Path) -> (FakeCommandSocket, Arc<Mutex<v1::Chain>>) {
    let current = Arc::new(Mutex::new(chain(1, &["ids"])));
    let held = current.clone();
    let fake = FakeCommandSocket::start(state_dir, move |req| {
        let mut cur = held.lock().unwrap();
        response(match &req.request {
            Some(DpRequest::GetChain(_)) => DpResponse::GetChain(v1::GetChainResponse {
                chain: Some(cur.clone()),
            }),
            Some(DpRequest::SetChain(r)) => {
                let spec = r.spec.clone().unwrap_or_default();
                let errors: Vec<v1::ValidationIssue> = spec
                    .hops
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.name == "bad")
                    .map(|(i, _)| v1::ValidationIssue {
                        field: format!("hops[{i}].name"),
                        message: "\"bad\" is not allowed here".into(),
                    })
                    .collect();
                let validation = v1::ValidationResult {
                    valid: errors.is_empty(),
                    errors,
                    warnings: vec![],
                };
                if r.expected_generation.is_some_and(|g| g != cur.generation) {
                    DpResponse::Error(v1::DataplaneError {
                        code: Code::FailedPrecondition as i32,
                        message: format!("the chain is at generation {}", cur.generation),
                        validation: None,
                    })
                } else if !validation.valid && !r.dry_run {
                    DpResponse::Error(v1::DataplaneError {
                        code: Code::InvalidArgument as i32,
                        message: "the chain spec is invalid: hops[0].name".into(),
                        validation: Some(validation),
                    })
                } else if r.dry_run {
                    DpResponse::SetChain(v1::SetChainResponse {
                        validation: Some(validation),
                        accepted: false,
                        generation: cur.generation,
                        chain: Some(cur.clone()),
                    })
                } else {
                    let names: Vec<&str> = spec.hops.iter().map(|h| h.name.as_str()).collect();
                    *cur = chain(cur.generation + 1, &names);
                    DpResponse::SetChain(v1::SetChainResponse {
                        validation: Some(validation),
                        accepted: true,
                        generation: cur.generation,
                        chain: Some(cur.clone()),
                    })
                }
            }
            Some(DpRequest::SetHopBypass(r)) => {
                let status = cur.status.as_mut().unwrap();
                match status.hops.iter_mut().find(|h| h.name == r.hop) {
                    Some(h) => {
                        h.manual_bypass = r.bypass;
                        h.state = if r.bypass {
                            v1::HopState::BypassedManual
                        } else {
                            v1::HopState::Up
                        }
                        .into();
                        h.message = r.reason.clone();
                        DpResponse::SetHopBypass(v1::SetHopBypassResponse {
                            hop: Some(h.clone()),
                        })
                    }
                    None => DpResponse::Error(v1::DataplaneError {
                        code: Code::NotFound as i32,
                        message: format!("no hop {:?} in the chain", r.hop),
                        validation: None,
                    }),
                }
            }
            // This fake runs no tap.
            Some(DpRequest::Tap(_)) => DpResponse::Error(v1::DataplaneError {
                code: Code::NotFound as i32,
                message: "passive-1 is not configured".into(),
                validation: None,
            }),
            None => DpResponse::Error(v1::DataplaneError {
                code: Code::InvalidArgument as i32,
                message: "empty request".into(),
                validation: None,
            }),
        })
    });
    (fake, current)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_without_a_token_file_refuses_every_call() {
    let dir = tmpdir("admin-off");
    let (cfg, state) = config(&dir, None, None);
    let (fake, _) = dataplane(&state);
    let sidecar = Sidecar::start(cfg).await;
    let mut admin = AdminClient::new(sidecar.channel().await);

    for token in [None, Some(ADMIN_TOKEN)] {
        let e = admin
            .set_chain(with_token(set_chain(&["ids"]), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
        assert!(
            e.message().contains("control.admin_token_file"),
            "{}",
            e.message()
        );
        let e = admin
            .set_hop_bypass(with_token(v1::SetHopBypassRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = admin
            .tap(with_token(v1::TapRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // Observer is open in this configuration and reads the chain.
    let c = ObserverClient::new(sidecar.channel().await)
        .get_chain(v1::GetChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.chain, Some(chain(1, &["ids"])));
    assert_eq!(fake.seen(), 1, "no Admin call reached the dataplane");

    // The CLI: exit 77, saying what to do.
    let spec = dir.join("spec.json");
    std::fs::write(
        &spec,
        r#"{"hops": [{"name": "ids", "a": "t1a", "b": "t1b"}]}"#,
    )
    .unwrap();
    let spec = spec.to_string_lossy().into_owned();
    let line = fails(&ctl(sidecar.grpc, &["chain", "set", "-f", &spec]).await, 77);
    assert!(line.contains("no credential grants role edit"), "{line}");
    assert!(line.contains("control.admin_token_file"), "{line}");
    let line = fails(&ctl(sidecar.grpc, &["chain", "bypass", "ids"]).await, 77);
    assert!(line.contains("control.admin_token_file"), "{line}");
    assert_eq!(fake.seen(), 1);

    sidecar.stop().await;
    drop(fake);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_checks_its_token_then_forwards_to_the_dataplane() {
    let dir = tmpdir("admin-on");
    let (cfg, state) = config(&dir, Some(OBSERVER_TOKEN), Some(ADMIN_TOKEN));
    let (fake, current) = dataplane(&state);
    let sidecar = Sidecar::start(cfg).await;
    let ch = sidecar.channel().await;
    let mut admin = AdminClient::new(ch.clone());

    refused_before_forwarding(&mut admin).await;
    assert_eq!(fake.seen(), 0);
    forwarded_with_the_admin_token(&mut admin, &fake).await;
    let watch = a_chain_watch_sees_the_next_change(ch, &current).await;
    let files = CliFiles::write(&dir);
    cli_sets_the_chain(sidecar.grpc, &files).await;
    cli_bypasses_and_gets_the_chain(sidecar.grpc, &files).await;

    the_dataplane_goes_away(&mut admin, fake, sidecar.grpc, &files).await;

    drop(watch);
    sidecar.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No token, a wrong one (UNAUTHENTICATED), or the Observer's (role view:
/// PERMISSION_DENIED): refused before forwarding.
async fn refused_before_forwarding(admin: &mut AdminClient<Channel>) {
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some("nope"), Code::Unauthenticated),
        (Some(OBSERVER_TOKEN), Code::PermissionDenied),
    ] {
        let e = admin
            .set_chain(with_token(set_chain(&["ids", "fw"]), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{token:?}");
        assert!(!e.message().contains("nope"), "{}", e.message());
        let e = admin
            .set_hop_bypass(with_token(
                v1::SetHopBypassRequest {
                    hop: "ids".into(),
                    bypass: true,
                    reason: String::new(),
                },
                token,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{token:?}");
    }
}

/// The right token: forwarded as sent, answered as the dataplane says
/// (the fake holds generation 1 and leaves with generation 2).
async fn forwarded_with_the_admin_token(
    admin: &mut AdminClient<Channel>,
    fake: &FakeCommandSocket,
) {
    let req = v1::SetChainRequest {
        expected_generation: Some(1),
        ..set_chain(&["ids", "fw"])
    };
    let r = admin
        .set_chain(with_token(req.clone(), Some(ADMIN_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.accepted);
    assert_eq!(r.generation, 2);
    assert_eq!(r.chain, Some(chain(2, &["ids", "fw"])));
    assert_eq!(
        fake.requests.lock().unwrap().last().unwrap().request,
        Some(DpRequest::SetChain(req))
    );
    // A stale compare-and-set.
    let e = admin
        .set_chain(with_token(
            v1::SetChainRequest {
                expected_generation: Some(1),
                ..set_chain(&["ids"])
            },
            Some(ADMIN_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // An invalid spec: INVALID_ARGUMENT, the validation in the details,
    // intact across the real transport.
    let e = admin
        .set_chain(with_token(set_chain(&["ids", "bad"]), Some(ADMIN_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let v = tapline_control::details::validation(&e).expect("the validation in the details");
    assert_eq!(v.errors.len(), 1);
    assert_eq!(v.errors[0].field, "hops[1].name");
    let hop = admin
        .set_hop_bypass(with_token(
            v1::SetHopBypassRequest {
                hop: "fw".into(),
                bypass: true,
                reason: "upgrade".into(),
            },
            Some(ADMIN_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner()
        .hop
        .unwrap();
    assert_eq!(hop.state(), v1::HopState::BypassedManual);
    let e = admin
        .set_hop_bypass(with_token(
            v1::SetHopBypassRequest {
                hop: "nope".into(),
                bypass: true,
                reason: String::new(),
            },
            Some(ADMIN_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A tap without a point is refused by the sidecar; one the dataplane
    // refuses keeps the dataplane's status.
    let e = admin
        .tap(with_token(v1::TapRequest::default(), Some(ADMIN_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = admin
        .tap(with_token(
            v1::TapRequest {
                point: Some(v1::TapPoint {
                    location: Some(v1::tap_point::Location::Port("passive-1".into())),
                    direction: v1::TapDirection::Rx.into(),
                }),
                ..Default::default()
            },
            Some(ADMIN_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "passive-1 is not configured");
}

/// A chain watch sees the next change (the chain goes to generation 3);
/// returns the watch, to be dropped at the end of the test.
async fn a_chain_watch_sees_the_next_change(
    ch: Channel,
    current: &Mutex<v1::Chain>,
) -> tonic::Streaming<v1::WatchChainResponse> {
    let mut observer = ObserverClient::new(ch);
    let mut watch = observer
        .watch_chain(with_token(v1::WatchChainRequest {}, Some(OBSERVER_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().chain.unwrap();
    assert_eq!(first.generation, 2);
    assert!(first.status.unwrap().hops[1].manual_bypass);
    *current.lock().unwrap() = chain(3, &["ids"]);
    let next = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await
        .expect("the change within 2 s")
        .unwrap()
        .unwrap();
    assert_eq!(next.chain, Some(chain(3, &["ids"])));

    watch
}

/// The token files and chain specs of the CLI runs.
struct CliFiles {
    admin: String,
    observer: String,
    /// A valid spec of two hops, ids and av.
    good: String,
    /// A spec the fake refuses (a hop named "bad").
    bad: String,
}

impl CliFiles {
    fn write(dir: &Path) -> CliFiles {
        let admin_file = dir.join("admin_token_file").to_string_lossy().into_owned();
        let observer_file = dir
            .join("observer_token_file")
            .to_string_lossy()
            .into_owned();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"hops": [{"name": "ids", "a": "t1a", "b": "t1b"}, {"name": "av", "a": "t2a", "b": "t2b", "on_failure": "drop"}]}"#,
        )
        .unwrap();
        let good = good.to_string_lossy().into_owned();
        let bad = dir.join("bad.json");
        std::fs::write(
            &bad,
            r#"{"hops": [{"name": "bad", "a": "t1a", "b": "t1b"}]}"#,
        )
        .unwrap();
        let bad = bad.to_string_lossy().into_owned();
        CliFiles {
            admin: admin_file,
            observer: observer_file,
            good,
            bad,
        }
    }
}

/// The CLI changes the chain with the admin token only: role view is
/// refused, a stale generation fails, an invalid spec is rejected with its
/// validation (text and JSON). The chain goes from generation 3 to 4.
async fn cli_sets_the_chain(grpc: SocketAddr, files: &CliFiles) {
    let line = fails(
        &ctl(
            grpc,
            &[
                "--token-file",
                &files.observer,
                "chain",
                "set",
                "-f",
                &files.good,
            ],
        )
        .await,
        77,
    );
    assert!(line.contains("permission denied"), "{line}");
    assert!(line.contains("needs role edit"), "{line}");
    let o = ctl(
        grpc,
        &[
            "--token-file",
            &files.admin,
            "chain",
            "set",
            "-f",
            &files.good,
            "--expected-generation",
            "3",
        ],
    )
    .await;
    assert_eq!(succeeds(&o), "accepted: chain generation 4, applied\n");
    let o = ctl(
        grpc,
        &[
            "--token-file",
            &files.admin,
            "chain",
            "set",
            "-f",
            &files.good,
            "--expected-generation",
            "3",
        ],
    )
    .await;
    let line = fails(&o, 1);
    assert!(line.contains("FailedPrecondition"), "{line}");
    assert!(line.contains("the chain is at generation 4"), "{line}");

    let o = ctl(
        grpc,
        &[
            "--token-file",
            &files.admin,
            "chain",
            "set",
            "-f",
            &files.bad,
        ],
    )
    .await;
    let line = fails(&o, 1);
    assert_eq!(
        line,
        "error: the chain spec is invalid (1 error(s)); nothing changed"
    );
    assert_eq!(
        out(&o),
        "rejected: the chain spec is invalid; the chain in force does not change\n\
         error: hops[0].name: \"bad\" is not allowed here\n"
    );
    let o = ctl(
        grpc,
        &[
            "--json",
            "--token-file",
            &files.admin,
            "chain",
            "set",
            "-f",
            &files.bad,
        ],
    )
    .await;
    fails(&o, 1);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["accepted"], false);
    assert_eq!(v["validation"]["valid"], false);
    assert!(v["generation"].is_null());
    assert_eq!(v["validation"]["errors"][0]["field"], "hops[0].name");
}

/// The CLI bypasses a hop (JSON answer), fails on an unknown one, and shows
/// the bypass in `chain get` with the observer token.
async fn cli_bypasses_and_gets_the_chain(grpc: SocketAddr, files: &CliFiles) {
    let o = ctl(
        grpc,
        &[
            "--json",
            "--token-file",
            &files.admin,
            "chain",
            "bypass",
            "av",
            "--reason",
            "tool upgrade",
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&succeeds(&o)).unwrap();
    assert_eq!(v["hop"]["name"], "av");
    assert_eq!(v["hop"]["state"], "HOP_STATE_BYPASSED_MANUAL");
    assert_eq!(v["hop"]["manualBypass"], true);
    assert_eq!(v["hop"]["message"], "tool upgrade");
    let o = ctl(
        grpc,
        &["--token-file", &files.admin, "chain", "bypass", "nope"],
    )
    .await;
    let line = fails(&o, 1);
    assert!(line.contains("NotFound"), "{line}");

    let got = succeeds(&ctl(grpc, &["--token-file", &files.observer, "chain", "get"]).await);
    assert!(
        got.starts_with("chain generation 4, applied generation 4\n"),
        "{got}"
    );
    let av = got
        .lines()
        .filter(|l| l.starts_with("av "))
        .nth(1)
        .expect("the hop status row of av");
    assert!(
        av.contains("bypassed_manual") && av.contains("yes") && av.contains("tool upgrade"),
        "{got}"
    );
}

/// The dataplane goes away: authenticated calls get UNAVAILABLE.
async fn the_dataplane_goes_away(
    admin: &mut AdminClient<Channel>,
    fake: FakeCommandSocket,
    grpc: SocketAddr,
    files: &CliFiles,
) {
    drop(fake);
    let e = admin
        .set_chain(with_token(set_chain(&["ids"]), Some(ADMIN_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("control.sock"), "{}", e.message());
    let line = fails(
        &ctl(grpc, &["--token-file", &files.observer, "chain", "get"]).await,
        1,
    );
    assert!(line.contains("is tapline-dataplane running"), "{line}");
}
