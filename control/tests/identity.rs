//! Who may do what, with real clients: tokens of the roles view, edit and
//! admin from a Kubernetes-style token file (rotated by a symlink swap,
//! like a Secret volume, without a restart); TLS and mTLS with a CA made
//! here (no client certificate, an unknown CA, a certificate mapped to
//! view, a SPIFFE ID mapped to admin, a server certificate rotated); the
//! audit trail asserted field by field; taplinectl with the same
//! identities from its options and from the environment.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    chain, channel, response, sidecar_config, tmpdir, with_token, FakeCommandSocket, Sidecar,
    PASSIVE_AND_INLINE,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use serde_json::Value;
use tapline_dataplane::config::Config;
use tapline_proto::v1;
use tapline_proto::v1::admin_client::AdminClient;
use tapline_proto::v1::dataplane_request::Request as DpRequest;
use tapline_proto::v1::dataplane_response::Response as DpResponse;
use tapline_proto::v1::observer_client::ObserverClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TAPLINECTL: &str = env!("CARGO_BIN_EXE_taplinectl");
const VIEW: &str = "view-token-0123456789";
const EDIT: &str = "edit-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
/// The operator's SPIFFE ID, mapped to admin in the mTLS test.
const SPIFFE: &str = "spiffe://cluster.local/ns/security/sa/tapline-operator";

fn config(state: &Path, control: &str) -> Config {
    sidecar_config(PASSIVE_AND_INLINE, state, control)
}

/// A dataplane that holds a chain, accepts every spec (bumping the
/// generation), knows hop "ids", and answers taps with NOT_FOUND.
fn dataplane(state: &Path) -> FakeCommandSocket {
    let current = Arc::new(Mutex::new(chain(7, &["ids"])));
    FakeCommandSocket::start(state, move |req| {
        let mut cur = current.lock().unwrap();
        response(match &req.request {
            Some(DpRequest::GetChain(_)) => DpResponse::GetChain(v1::GetChainResponse {
                chain: Some(cur.clone()),
            }),
            Some(DpRequest::SetChain(r)) => {
                let names: Vec<String> = r
                    .spec
                    .as_ref()
                    .unwrap()
                    .hops
                    .iter()
                    .map(|h| h.name.clone())
                    .collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                *cur = chain(cur.generation + 1, &names);
                DpResponse::SetChain(v1::SetChainResponse {
                    validation: Some(v1::ValidationResult {
                        valid: true,
                        ..Default::default()
                    }),
                    accepted: true,
                    generation: cur.generation,
                    chain: Some(cur.clone()),
                })
            }
            Some(DpRequest::SetHopBypass(r)) => {
                DpResponse::SetHopBypass(v1::SetHopBypassResponse {
                    hop: Some(v1::HopStatus {
                        name: r.hop.clone(),
                        manual_bypass: r.bypass,
                        ..Default::default()
                    }),
                })
            }
            _ => DpResponse::Error(v1::DataplaneError {
                code: Code::NotFound as i32,
                message: "passive-1 is not running".into(),
                validation: None,
            }),
        })
    })
}

fn set_chain(hops: &[&str]) -> v1::SetChainRequest {
    v1::SetChainRequest {
        spec: chain(1, hops).spec,
        expected_generation: Some(7),
        dry_run: false,
    }
}

fn tap_request() -> v1::TapRequest {
    v1::TapRequest {
        point: Some(v1::TapPoint {
            location: Some(v1::tap_point::Location::Port("passive-1".into())),
            direction: v1::TapDirection::Rx.into(),
        }),
        filter: "udp port 53".into(),
        max_packets: 10,
        ..Default::default()
    }
}

/// `dir/state`, created.
fn state_dir(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    state
}

/// The sidecar with `dir/secret/tokens.csv` (Secret-style, the [`VIEW`]
/// token in it) as its token file, in front of [`dataplane`]: (the secret
/// directory, the fake dataplane, the sidecar, its audit in memory).
async fn with_token_file(dir: &Path) -> (PathBuf, FakeCommandSocket, Sidecar) {
    let secret = dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    write_secret(&secret, 1, &tokens(VIEW));
    let state = state_dir(dir);
    let fake = dataplane(&state);
    let sidecar = Sidecar::start_audited(config(
        &state,
        &format!("token_file = \"{}\"", secret.join("tokens.csv").display()),
    ))
    .await;
    (secret, fake, sidecar)
}

/// Stops the sidecar, then the fake dataplane, and removes `dir`.
async fn finish(sidecar: Sidecar, fake: FakeCommandSocket, dir: &Path) {
    sidecar.stop().await;
    drop(fake);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes the token file as a Kubernetes Secret volume does: the file is a
/// symlink through `..data`, which is swapped atomically to a new
/// timestamped directory.
fn write_secret(dir: &Path, generation: u32, content: &str) {
    let ts = dir.join(format!("..2026_12_07_{generation:02}"));
    std::fs::create_dir_all(&ts).unwrap();
    std::fs::write(ts.join("tokens.csv"), content).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("tokens.csv");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/tokens.csv", &link).unwrap();
    }
}

fn tokens(view: &str) -> String {
    format!(
        "# token,user,uid,\"groups\"\n\
         {view},vera,1001,\"system:authenticated,view\"\n\
         {EDIT},eddie,1002,\"edit\"\n\
         {ADMIN},ada,1003,\"tapline:admin\"\n"
    )
}

/// Checks the fields of an audit line of a call with a bearer token (or
/// none) over plaintext.
fn assert_token_audit(line: &Value, method: &str, name: &str, role: Option<&str>, code: &str) {
    assert_audit(line, method, name, role, "bearer_token", code, false);
}

/// Checks the fields every audit line has.
fn assert_audit(
    line: &Value,
    method: &str,
    name: &str,
    role: Option<&str>,
    auth: &str,
    code: &str,
    tls: bool,
) {
    assert_eq!(line["log_type"], "audit", "{line}");
    assert_eq!(line["target"], "tapline_control::audit", "{line}");
    assert_eq!(line["method"], method, "{line}");
    assert_eq!(line["identity"]["name"], name, "{line}");
    assert_eq!(
        line["identity"]["role"],
        role.map_or(Value::Null, Value::from),
        "{line}"
    );
    assert_eq!(line["identity"]["auth"], auth, "{line}");
    assert_eq!(line["code"], code, "{line}");
    assert_eq!(line["tls"], tls, "{line}");
    let peer = line["peer"].as_str().expect("peer address");
    assert!(peer.starts_with("127.0.0.1:"), "{line}");
    let time = line["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-12-07T21:00:00.000Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_its_calls_and_every_change_is_audited() {
    let dir = tmpdir("roles");
    let (_, fake, sidecar) = with_token_file(&dir).await;
    let ch = sidecar.channel().await;
    let mut observer = ObserverClient::new(ch.clone());
    let mut admin = AdminClient::new(ch.clone());

    reads_need_a_role(&sidecar, &ch, &mut observer).await;
    view_and_unknown_tokens_change_nothing(&sidecar, &fake, &mut admin).await;
    edit_changes_the_chain_and_admin_taps(&sidecar, &mut admin).await;
    taplinectl_takes_one_identity_from_the_environment(&sidecar, &dir).await;

    finish(sidecar, fake, &dir).await;
}

/// Health needs nothing; reads need a role now that tokens exist. Only
/// the refused read is audited.
async fn reads_need_a_role(
    sidecar: &Sidecar,
    ch: &Channel,
    observer: &mut ObserverClient<Channel>,
) {
    HealthClient::new(ch.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    let e = observer
        .get_chain(v1::GetChainRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for t in [VIEW, EDIT, ADMIN] {
        let c = observer
            .get_chain(with_token(v1::GetChainRequest {}, Some(t)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.chain.unwrap().generation, 7);
    }
    let lines = sidecar.take_audit();
    assert_eq!(
        lines.len(),
        1,
        "only the refused read is audited: {lines:?}"
    );
    assert_audit(
        &lines[0],
        "/tapline.v1.Observer/GetChain",
        "anonymous",
        None,
        "anonymous",
        "UNAUTHENTICATED",
        false,
    );
    assert_eq!(lines[0]["request"], Value::Null);
}

/// view cannot change the chain, and an unknown token is not anyone;
/// nothing reaches the dataplane and the audit never shows a token.
async fn view_and_unknown_tokens_change_nothing(
    sidecar: &Sidecar,
    fake: &FakeCommandSocket,
    admin: &mut AdminClient<Channel>,
) {
    let e = admin
        .set_chain(with_token(set_chain(&["ids", "fw"]), Some(VIEW)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("needs role edit"), "{}", e.message());
    let e = admin
        .set_hop_bypass(with_token(
            v1::SetHopBypassRequest {
                hop: "ids".into(),
                bypass: true,
                reason: "x".into(),
            },
            Some(VIEW),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // An unknown token is not anyone.
    let e = admin
        .set_chain(with_token(set_chain(&["ids"]), Some("guess-0123456789")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(
        fake.seen(),
        3,
        "only the three GetChain reached the dataplane"
    );
    let lines = sidecar.take_audit();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_token_audit(
        &lines[0],
        "/tapline.v1.Admin/SetChain",
        "vera",
        Some("view"),
        "PERMISSION_DENIED",
    );
    assert!(lines[0]["message"]
        .as_str()
        .unwrap()
        .contains("needs role edit"));
    assert_token_audit(
        &lines[1],
        "/tapline.v1.Admin/SetHopBypass",
        "vera",
        Some("view"),
        "PERMISSION_DENIED",
    );
    assert_token_audit(
        &lines[2],
        "/tapline.v1.Admin/SetChain",
        "unknown-token",
        None,
        "UNAUTHENTICATED",
    );
    for l in &lines {
        let text = l.to_string();
        assert!(
            !text.contains("token-0123") && !text.contains("guess"),
            "{text}"
        );
    }
}

/// edit changes the chain and bypasses hops, but cannot tap; admin taps.
/// Every call is audited with its request.
async fn edit_changes_the_chain_and_admin_taps(
    sidecar: &Sidecar,
    admin: &mut AdminClient<Channel>,
) {
    let r = admin
        .set_chain(with_token(set_chain(&["ids", "fw"]), Some(EDIT)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 8);
    admin
        .set_hop_bypass(with_token(
            v1::SetHopBypassRequest {
                hop: "ids".into(),
                bypass: true,
                reason: "upgrade OPS-1".into(),
            },
            Some(EDIT),
        ))
        .await
        .unwrap();
    let e = admin
        .tap(with_token(tap_request(), Some(EDIT)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("needs role admin"), "{}", e.message());
    // admin taps (the fake dataplane has nothing to tap: NOT_FOUND from
    // the dataplane, past the authorization).
    let e = admin
        .tap(with_token(tap_request(), Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let lines = sidecar.take_audit();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_token_audit(
        &lines[0],
        "/tapline.v1.Admin/SetChain",
        "eddie",
        Some("edit"),
        "OK",
    );
    assert_eq!(
        lines[0]["request"],
        serde_json::json!({"hops": ["ids", "fw"], "hop_count": 2, "expected_generation": 7, "dry_run": false})
    );
    assert_eq!(lines[0]["generation"], 8);
    assert_eq!(lines[0]["message"], "");
    assert_token_audit(
        &lines[1],
        "/tapline.v1.Admin/SetHopBypass",
        "eddie",
        Some("edit"),
        "OK",
    );
    assert_eq!(
        lines[1]["request"],
        serde_json::json!({"hop": "ids", "bypass": true, "reason": "upgrade OPS-1"})
    );
    assert_token_audit(
        &lines[2],
        "/tapline.v1.Admin/Tap",
        "eddie",
        Some("edit"),
        "PERMISSION_DENIED",
    );
    assert_token_audit(
        &lines[3],
        "/tapline.v1.Admin/Tap",
        "ada",
        Some("admin"),
        "NOT_FOUND",
    );
    assert_eq!(
        lines[3]["request"]["point"],
        serde_json::json!({"port": "passive-1"})
    );
    assert_eq!(lines[3]["request"]["direction"], "TAP_DIRECTION_RX");
    assert_eq!(lines[3]["request"]["filter"], "udp port 53");
    assert_eq!(lines[3]["request"]["max_packets"], 10);
    assert_eq!(lines[3]["message"], "passive-1 is not running");
}

/// taplinectl: one identity for every verb, from the environment too.
async fn taplinectl_takes_one_identity_from_the_environment(sidecar: &Sidecar, dir: &Path) {
    let token_file = dir.join("edit.token");
    std::fs::write(&token_file, format!("{EDIT}\n")).unwrap();
    let endpoint = format!("http://{}", sidecar.grpc);
    let env = [
        ("TAPLINE_ENDPOINT", endpoint.as_str()),
        ("TAPLINE_TOKEN_FILE", token_file.to_str().unwrap()),
    ];
    let o = ctl(&env, &["--json", "chain", "get"]).await;
    assert!(o.status.success(), "{o:?}");
    let o = ctl(&env, &["chain", "bypass", "ids", "--reason", "by env"]).await;
    assert!(o.status.success(), "{o:?}");
    let o = ctl(&env, &["tap", "--point", "passive-1", "-c", "1"]).await;
    assert_eq!(o.status.code(), Some(77), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("permission denied"), "{err}");
    let lines = sidecar.take_audit();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["request"]["reason"], "by env");
    assert_eq!(lines[0]["identity"]["name"], "eddie");
    assert_eq!(lines[1]["code"], "PERMISSION_DENIED");
}

async fn ctl(env: &[(&str, &str)], args: &[&str]) -> Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(TAPLINECTL);
        for k in [
            "TAPLINE_ENDPOINT",
            "TAPLINE_TOKEN_FILE",
            "TAPLINE_CA",
            "TAPLINE_CERT",
            "TAPLINE_KEY",
            "TAPLINE_TLS_SERVER_NAME",
        ] {
            c.env_remove(k);
        }
        c.envs(env)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("running taplinectl")
    })
    .await
    .unwrap()
}

/// Polls `f` until it is true, for up to 10 s (the sidecar looks at its
/// files every second).
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_takes_effect_without_a_restart() {
    let dir = tmpdir("rotate");
    let (secret, fake, sidecar) = with_token_file(&dir).await;
    let ch = sidecar.channel().await;
    let get = |t: &'static str| {
        let ch = ch.clone();
        async move {
            ObserverClient::new(ch)
                .get_chain(with_token(v1::GetChainRequest {}, Some(t)))
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }
    };
    assert_eq!(get(VIEW).await, Ok(()));
    const NEW: &str = "rotated-view-token-987654";
    write_secret(&secret, 2, &tokens(NEW));
    eventually("the new token accepted", async || get(NEW).await.is_ok()).await;
    assert_eq!(get(VIEW).await, Err(Code::Unauthenticated));
    assert_eq!(get(EDIT).await, Ok(()));
    // A broken file keeps the tokens in force.
    write_secret(&secret, 3, "nonsense-without-columns\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(NEW).await, Ok(()));

    finish(sidecar, fake, &dir).await;
}

/// A CA, and certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate: (cert PEM, key PEM).
    fn issue(&self, cn: &str, dns: &[&str], uri: Option<&str>) -> (String, String) {
        let mut p =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(u) = uri {
            p.subject_alt_names
                .push(SanType::URI(u.try_into().unwrap()));
        }
        if dns.is_empty() {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        } else {
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((c, k)) = client {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Whether a `GetInfo` over TLS to `addr` (trusting `ca`, with `client`'s
/// certificate if any) succeeds: false when the connection or the call fails.
async fn tls_get_info(addr: SocketAddr, ca: &str, client: Option<&(String, String)>) -> bool {
    match tls_channel(addr, ca, client).await {
        Ok(ch) => ObserverClient::new(ch)
            .get_info(v1::GetInfoRequest {})
            .await
            .is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_identities_map_to_roles_and_certificates_rotate() {
    let dir = tmpdir("mtls");
    let state = state_dir(&dir);
    let fake = dataplane(&state);
    let server_ca = Ca::new("tapline test server CA");
    let client_ca = Ca::new("tapline test client CA");
    let (scert, skey) = server_ca.issue("tapline-control", &["localhost"], None);
    let cert_file = write(&dir, "tls.crt", &scert);
    let key_file = write(&dir, "tls.key", &skey);
    let ca_file = write(&dir, "client-ca.crt", &client_ca.pem());
    let sidecar = Sidecar::start_audited(config(
        &state,
        &format!(
            r#"tls_cert_file = "{}"
tls_key_file = "{}"
tls_client_ca_file = "{}"
[control.client_roles]
"viewer.example" = "view"
"{SPIFFE}" = "admin"
"#,
            cert_file.display(),
            key_file.display(),
            ca_file.display()
        ),
    ))
    .await;
    let viewer = client_ca.issue("viewer.example", &[], None);
    let operator = client_ca.issue("operator", &[], Some(SPIFFE));
    let stranger = Ca::new("someone else").issue("viewer.example", &[], None);

    no_connection_without_a_known_client_certificate(sidecar.grpc, &server_ca, &stranger).await;
    certificates_map_to_their_roles(&sidecar, &server_ca, &viewer, &operator).await;
    taplinectl_connects_with_the_same_certificate(&sidecar, &dir, &server_ca, &operator).await;

    // The health-only port stays plaintext.
    HealthClient::new(channel(sidecar.health).await)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();

    the_server_certificate_rotates(sidecar.grpc, &viewer, &key_file, &cert_file).await;

    finish(sidecar, fake, &dir).await;
}

/// No client certificate, or one from another CA: no connection (the
/// handshake is refused, or the first call fails on it). Plaintext on the
/// TLS port fails too.
async fn no_connection_without_a_known_client_certificate(
    grpc: SocketAddr,
    server_ca: &Ca,
    stranger: &(String, String),
) {
    for (what, client) in [("no certificate", None), ("unknown CA", Some(stranger))] {
        assert!(
            !tls_get_info(grpc, &server_ca.pem(), client).await,
            "{what}: the call succeeded"
        );
    }
    let plain = Channel::from_shared(format!("http://{}", grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(ObserverClient::new(ch)
            .get_info(v1::GetInfoRequest {})
            .await
            .is_err());
    }
}

/// The viewer's certificate (mapped by its CN) reads and may not change
/// anything; the operator's SPIFFE ID is admin. Both are audited.
async fn certificates_map_to_their_roles(
    sidecar: &Sidecar,
    server_ca: &Ca,
    viewer: &(String, String),
    operator: &(String, String),
) {
    let ch = tls_channel(sidecar.grpc, &server_ca.pem(), Some(viewer))
        .await
        .unwrap();
    let c = ObserverClient::new(ch.clone())
        .get_chain(v1::GetChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.chain.unwrap().generation, 7);
    let e = AdminClient::new(ch.clone())
        .set_chain(set_chain(&["ids"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The operator's SPIFFE ID is admin.
    let ch = tls_channel(sidecar.grpc, &server_ca.pem(), Some(operator))
        .await
        .unwrap();
    let r = AdminClient::new(ch.clone())
        .set_chain(set_chain(&["ids"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 8);
    let lines = sidecar.take_audit();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_audit(
        &lines[0],
        "/tapline.v1.Admin/SetChain",
        "viewer.example",
        Some("view"),
        "client_cert",
        "PERMISSION_DENIED",
        true,
    );
    assert_audit(
        &lines[1],
        "/tapline.v1.Admin/SetChain",
        SPIFFE,
        Some("admin"),
        "client_cert",
        "OK",
        true,
    );
    assert_eq!(lines[1]["generation"], 8);
}

/// taplinectl with the operator's identity, over https, from its options
/// and from the environment; without the client certificate it fails.
async fn taplinectl_connects_with_the_same_certificate(
    sidecar: &Sidecar,
    dir: &Path,
    server_ca: &Ca,
    operator: &(String, String),
) {
    let ca_pem = write(dir, "server-ca.crt", &server_ca.pem());
    let op_cert = write(dir, "op.crt", &operator.0);
    let op_key = write(dir, "op.key", &operator.1);
    let url = format!("https://{}", sidecar.grpc);
    let o = ctl(
        &[],
        &[
            "--endpoint",
            &url,
            "--ca",
            ca_pem.to_str().unwrap(),
            "--cert",
            op_cert.to_str().unwrap(),
            "--key",
            op_key.to_str().unwrap(),
            "--tls-server-name",
            "localhost",
            "chain",
            "bypass",
            "ids",
        ],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    let o = ctl(
        &[
            ("TAPLINE_ENDPOINT", &url),
            ("TAPLINE_CA", ca_pem.to_str().unwrap()),
            ("TAPLINE_CERT", op_cert.to_str().unwrap()),
            ("TAPLINE_KEY", op_key.to_str().unwrap()),
            ("TAPLINE_TLS_SERVER_NAME", "localhost"),
        ],
        &["--json", "chain", "get"],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    // Without the client certificate: no connection, exit 69.
    let o = ctl(
        &[
            ("TAPLINE_ENDPOINT", &url),
            ("TAPLINE_CA", ca_pem.to_str().unwrap()),
            ("TAPLINE_TLS_SERVER_NAME", "localhost"),
        ],
        &["chain", "get"],
    )
    .await;
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let lines = sidecar.take_audit();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["method"], "/tapline.v1.Admin/SetHopBypass");
    assert_eq!(lines[0]["identity"]["name"], SPIFFE);
}

/// Rotation: cert-manager renews the server certificate with a new CA.
/// A client trusting only the new CA fails before and works after,
/// without a restart.
async fn the_server_certificate_rotates(
    grpc: SocketAddr,
    viewer: &(String, String),
    key_file: &Path,
    cert_file: &Path,
) {
    let new_ca = Ca::new("tapline test server CA 2");
    assert!(
        !tls_get_info(grpc, &new_ca.pem(), Some(viewer)).await,
        "the new CA is not trusted yet"
    );
    let (c2, k2) = new_ca.issue("tapline-control", &["localhost"], None);
    // Key first, then the certificate: the half-written pair in between
    // does not load and the old one stays in force.
    std::fs::write(key_file, &k2).unwrap();
    std::fs::write(cert_file, &c2).unwrap();
    let new_pem = new_ca.pem();
    let viewer2 = viewer.clone();
    eventually("the new server certificate served", async || {
        tls_get_info(grpc, &new_pem, Some(&viewer2)).await
    })
    .await;
}
