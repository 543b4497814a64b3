//! Who may do what: identities (bearer tokens, client certificates) and
//! the roles `view`, `edit` and `admin`.
//!
//! Every call on the API port passes [`AuthLayer`], which looks at the
//! method's path:
//!
//! | methods | role needed |
//! |---|---|
//! | `grpc.health.v1.Health/*`, `grpc.reflection.*` | none |
//! | `tapline.v1.Observer/*` | `view` |
//! | `tapline.v1.Admin/SetChain`, `SetHopBypass` | `edit` |
//! | `tapline.v1.Admin/Tap` and any other Admin method | `admin` |
//!
//! A higher role includes the lower ones. The caller is identified, in
//! order, by an `authorization: Bearer <token>` header (looked up in the
//! token table, [`TokenTable`]), by the client certificate of its TLS
//! connection (subject mapped by `control.client_roles`), or else is
//! anonymous with `control.anonymous_role`. A token that is sent but
//! unknown is refused (UNAUTHENTICATED), even when the connection also has
//! a certificate; a caller that is known but whose role is too low gets
//! PERMISSION_DENIED. Every refusal is written to the audit trail
//! ([`crate::audit`]); an allowed call carries its [`Identity`] in the
//! request's extensions for the services.
//!
//! Tokens come from `control.token_file` (Kubernetes static-token-file
//! style, see [`TokenTable::parse`]) and from the two legacy one-token
//! files (`observer_token_file`: role view, `admin_token_file`: role
//! admin). [`Credentials::reload`] re-reads them (the sidecar calls it
//! every [`crate::RELOAD_INTERVAL`]), so a rotated Secret takes effect
//! without a restart; a file that turns unreadable or invalid keeps the
//! previous tokens and is reported. Tokens are compared in constant time
//! (`subtle`) against every entry, and never logged.
//!
//! The parts: [`TokenTable`] (`auth/tokens.rs`: the token file's format
//! and the lookup), [`Credentials`] (`auth/credentials.rs`: the token
//! sources and their reload), [`Authorizer`] (`auth/authorizer.rs`: the
//! decision and the audit of refusals) and [`AuthLayer`]
//! (`auth/layer.rs`: the tower layer around the services).

use tapline_config::{Config, ConfigError, Role};
use tonic::transport::server::TcpConnectInfo;

use crate::tls::PeerInfo;

mod authorizer;
mod credentials;
mod layer;
mod tokens;

pub use authorizer::Authorizer;
pub use credentials::Credentials;
pub use layer::{AuthLayer, AuthService};
pub use tokens::{read_single_token, TokenTable};

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `authorization: Bearer <token>`.
    BearerToken,
    /// The client certificate of an mTLS connection.
    ClientCert,
    /// No credentials.
    Anonymous,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::BearerToken => "bearer_token",
            AuthMethod::ClientCert => "client_cert",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

/// The caller of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token file's user, the certificate's subject, or `anonymous`.
    pub name: String,
    /// `None`: known but granted nothing (an unmapped certificate).
    pub role: Option<Role>,
    pub method: AuthMethod,
}

/// The role a method needs; `None`: open to everyone (health, reflection
/// and paths that are no service of this server, which answer
/// UNIMPLEMENTED).
pub fn required_role(path: &str) -> Option<Role> {
    if let Some(m) = path.strip_prefix("/tapline.v1.Observer/") {
        let _ = m;
        return Some(Role::View);
    }
    if let Some(m) = path.strip_prefix("/tapline.v1.Admin/") {
        return Some(match m {
            "SetChain" | "SetHopBypass" => Role::Edit,
            // Tap exposes packet contents; anything new is admin until
            // it is given a lower role on purpose.
            _ => Role::Admin,
        });
    }
    if path.starts_with("/tapline.") {
        // Any future tapline service: fail safe.
        return Some(Role::Admin);
    }
    None
}

/// The subject of a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSubject {
    /// The subject's common name.
    pub cn: Option<String>,
    /// The subject alternative names of type URI (SPIFFE IDs).
    pub uris: Vec<String>,
}

impl CertSubject {
    /// A name for logs: the first SAN URI, else the CN.
    pub fn display_name(&self) -> String {
        self.uris
            .first()
            .cloned()
            .or_else(|| self.cn.clone())
            .unwrap_or_else(|| "(no CN or URI)".into())
    }
}

/// The caller's identity put into a request by [`AuthLayer`], or
/// anonymous (direct calls in tests).
pub fn identity_of<T>(req: &tonic::Request<T>) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity {
            name: "anonymous".into(),
            role: None,
            method: AuthMethod::Anonymous,
        })
}

/// Whether the call arrived over TLS.
pub fn tls_of<T>(req: &tonic::Request<T>) -> bool {
    req.extensions().get::<PeerInfo>().is_some_and(|p| p.tls)
}

/// The remote address: [`TcpConnectInfo`] when the layer or tonic put it.
pub fn peer_of<T>(req: &tonic::Request<T>) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(|c| c.remote_addr)
        .or_else(|| req.remote_addr())
}

#[cfg(test)]
mod tests;
