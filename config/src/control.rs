//! `[control]`: the sidecar's listeners, credentials and TLS (the
//! dataplane ignores them).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{err, ConfigError};
use crate::raw::RawControl;

/// Bounds of `control.dataplane_stale_ms`.
const STALE_MS: std::ops::RangeInclusive<u32> = 100..=60_000;

named_enum! {
    /// A role of the control API; a higher role includes the lower ones.
    #[derive(PartialOrd, Ord)]
    pub enum Role: "a role" {
        /// Reads: info, stats, chain, watches.
        View = "view",
        /// Chain changes: `SetChain`, `SetHopBypass`.
        Edit = "edit",
        /// Everything, including `Tap` (packet contents).
        Admin = "admin",
    }
}

impl Role {
    /// Parses `view`, `edit` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        s.parse().ok()
    }
}

named_enum! {
    /// `control.tls_client_auth`: whether a client certificate is required
    /// (with `control.tls_client_ca_file`).
    pub enum ClientAuth: "a client certificate policy" {
        /// Refuse handshakes without a client certificate.
        Require = "require",
        /// Accept them; such calls carry no certificate identity.
        Optional = "optional",
    }
}

/// TLS of the gRPC API port (`control.tls_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain of the server (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key of the server (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates are verified against; `None`:
    /// no client certificates (server-side TLS only).
    pub client_ca_file: Option<PathBuf>,
    /// With a CA: refuse handshakes without a client certificate.
    pub client_auth_required: bool,
    /// Client certificate subject (a SAN URI such as a SPIFFE ID, or the
    /// subject CN) -> role.
    pub client_roles: Vec<(String, Role)>,
}

/// Settings of the control sidecar (`[control]`; the dataplane ignores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// gRPC: `tapline.v1` services, health, reflection.
    pub grpc_listen: SocketAddr,
    /// Plaintext gRPC with only `grpc.health.v1.Health` (kubelet probes).
    pub health_listen: SocketAddr,
    /// HTTP `/metrics` (Prometheus text format).
    pub metrics_listen: SocketAddr,
    /// Bearer token required by the `Admin` service (file content, trimmed).
    pub admin_token_file: Option<PathBuf>,
    /// Legacy: a file holding one bearer token with role `view`.
    pub observer_token_file: Option<PathBuf>,
    /// Static token file (Kubernetes style: `token,user,uid,"groups"`; the
    /// role is a group named `view`, `edit` or `admin`).
    pub token_file: Option<PathBuf>,
    /// The role of a call without credentials (`None`: no role).
    pub anonymous_role: Option<Role>,
    /// TLS on `grpc_listen`; `None`: plaintext.
    pub tls: Option<TlsSettings>,
    /// A dataplane heartbeat older than this counts as down.
    pub dataplane_stale_ms: u32,
}

/// The three listeners, each on its own port.
fn check_listeners(c: &RawControl) -> Result<[SocketAddr; 3], ConfigError> {
    let addr = |field: &str, v: &str| -> Result<SocketAddr, ConfigError> {
        v.parse().map_err(|_| {
            err(
                field,
                format!("{v:?} is not an address:port (e.g. \"0.0.0.0:50051\" or \"[::]:50051\")"),
            )
        })
    };
    let grpc_listen = addr("control.grpc_listen", &c.grpc_listen)?;
    let health_listen = addr("control.health_listen", &c.health_listen)?;
    let metrics_listen = addr("control.metrics_listen", &c.metrics_listen)?;
    let ports = [
        ("control.health_listen", health_listen),
        ("control.metrics_listen", metrics_listen),
    ];
    for (i, (field, a)) in ports.iter().enumerate() {
        let earlier = std::iter::once(grpc_listen).chain(ports[..i].iter().map(|p| p.1));
        if a.port() != 0 && earlier.into_iter().any(|b| b.port() == a.port()) {
            return Err(err(
                field,
                format!(
                    "port {} is already used by another control endpoint",
                    a.port()
                ),
            ));
        }
    }
    Ok([grpc_listen, health_listen, metrics_listen])
}

/// Credential and TLS files are mounted Secrets: absolute paths.
fn check_paths(c: &RawControl) -> Result<(), ConfigError> {
    for (field, f) in [
        ("control.admin_token_file", &c.admin_token_file),
        ("control.observer_token_file", &c.observer_token_file),
        ("control.token_file", &c.token_file),
        ("control.tls_cert_file", &c.tls_cert_file),
        ("control.tls_key_file", &c.tls_key_file),
        ("control.tls_client_ca_file", &c.tls_client_ca_file),
    ] {
        if let Some(p) = f {
            if !p.is_absolute() {
                return Err(err(
                    field,
                    format!("{p:?} must be an absolute path (a mounted Secret)"),
                ));
            }
        }
    }
    Ok(())
}

/// `control.anonymous_role`: unset, reads stay open as long as no reading
/// credential is configured (the behaviour before roles existed, where
/// only observer_token_file closed the Observer).
fn anonymous_role(c: &RawControl) -> Result<Option<Role>, ConfigError> {
    let read_credentials =
        c.token_file.is_some() || c.observer_token_file.is_some() || c.tls_client_ca_file.is_some();
    match c.anonymous_role.as_deref() {
        None => Ok((!read_credentials).then_some(Role::View)),
        Some("none") => Ok(None),
        Some(v) => match Role::parse(v) {
            Some(Role::View) => Ok(Some(Role::View)),
            _ => Err(err(
                "control.anonymous_role",
                format!(
                    "{v:?} is not allowed: use \"none\" or \"view\" (changes and taps always need credentials)"
                ),
            )),
        },
    }
}

/// Keys that mean nothing without TLS (or without client certificates).
fn refuse_set(keys: &[(&str, bool)], message: &str) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(err(field, message)),
        None => Ok(()),
    }
}

/// `control.client_roles`: certificate subject -> role.
fn client_roles(
    roles: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, Role)>, ConfigError> {
    let mut out = Vec::new();
    for (subject, role) in roles {
        if subject.is_empty() || subject.chars().any(char::is_control) {
            return Err(err(
                "control.client_roles",
                format!("{subject:?} is not a subject (a CN or a SAN URI)"),
            ));
        }
        let r: Role = role.parse().map_err(|e: crate::UnknownName| {
            err(&format!("control.client_roles.{subject:?}"), e.to_string())
        })?;
        out.push((subject.clone(), r));
    }
    Ok(out)
}

/// `control.tls_*` and `control.client_roles`.
fn tls(c: &RawControl) -> Result<Option<TlsSettings>, ConfigError> {
    let (cert_file, key_file) = match (&c.tls_cert_file, &c.tls_key_file) {
        (None, None) => {
            refuse_set(
                &[
                    ("control.tls_client_ca_file", c.tls_client_ca_file.is_some()),
                    ("control.tls_client_auth", c.tls_client_auth.is_some()),
                    ("control.client_roles", !c.client_roles.is_empty()),
                ],
                "needs TLS: set control.tls_cert_file and control.tls_key_file too",
            )?;
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(err(
                "control.tls_key_file",
                "is required with control.tls_cert_file",
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "control.tls_cert_file",
                "is required with control.tls_key_file",
            ))
        }
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
    };
    let client_auth = match c.tls_client_auth.as_deref() {
        None => ClientAuth::Require,
        Some(v) => v
            .parse()
            .map_err(|e: crate::UnknownName| err("control.tls_client_auth", e.to_string()))?,
    };
    if c.tls_client_ca_file.is_none() {
        refuse_set(
            &[
                ("control.tls_client_auth", c.tls_client_auth.is_some()),
                ("control.client_roles", !c.client_roles.is_empty()),
            ],
            "needs client certificates: set control.tls_client_ca_file too",
        )?;
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_ca_file: c.tls_client_ca_file.clone(),
        client_auth_required: client_auth == ClientAuth::Require,
        client_roles: client_roles(&c.client_roles)?,
    }))
}

/// `[control]` into [`ControlConfig`].
pub(crate) fn validate_control(c: &RawControl) -> Result<ControlConfig, ConfigError> {
    let [grpc_listen, health_listen, metrics_listen] = check_listeners(c)?;
    check_paths(c)?;
    if !STALE_MS.contains(&c.dataplane_stale_ms) {
        return Err(err(
            "control.dataplane_stale_ms",
            format!("{} must be from 100 to 60000", c.dataplane_stale_ms),
        ));
    }
    Ok(ControlConfig {
        grpc_listen,
        health_listen,
        metrics_listen,
        admin_token_file: c.admin_token_file.clone(),
        observer_token_file: c.observer_token_file.clone(),
        token_file: c.token_file.clone(),
        anonymous_role: anonymous_role(c)?,
        tls: tls(c)?,
        dataplane_stale_ms: c.dataplane_stale_ms,
    })
}
