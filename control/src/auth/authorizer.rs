//! The decision: who the caller of a call is (token, certificate or
//! anonymous) and whether its role suffices; refusals are audited.

use std::sync::Arc;

use tonic::Status;
use tracing::warn;

use super::{required_role, AuthMethod, CertSubject, Credentials, Identity, Role};
use crate::audit::{AuditLog, AuditRecord};
use crate::tls::PeerInfo;

/// Decides who a caller is and whether it may call a method.
#[derive(Debug)]
pub struct Authorizer {
    creds: Arc<Credentials>,
    anonymous: Option<Role>,
    /// Certificate subject -> role.
    cert_roles: Vec<(String, Role)>,
    audit: AuditLog,
}

impl Authorizer {
    pub fn new(
        creds: Arc<Credentials>,
        anonymous: Option<Role>,
        cert_roles: Vec<(String, Role)>,
        audit: AuditLog,
    ) -> Authorizer {
        Authorizer {
            creds,
            anonymous,
            cert_roles,
            audit,
        }
    }

    /// Whether any credential could grant `role`.
    fn grantable(&self, role: Role) -> bool {
        self.anonymous.is_some_and(|r| r >= role)
            || self.creds.table().highest_role().is_some_and(|r| r >= role)
            || self.cert_roles.iter().any(|(_, r)| *r >= role)
    }

    /// The role of a certificate subject: the first SAN URI mapped, else
    /// the CN.
    fn cert_identity(&self, subject: &CertSubject) -> Identity {
        let mapped = subject.uris.iter().chain(subject.cn.iter()).find_map(|s| {
            self.cert_roles
                .iter()
                .find(|(k, _)| k == s)
                .map(|(k, r)| (k.clone(), *r))
        });
        match mapped {
            Some((name, role)) => Identity {
                name,
                role: Some(role),
                method: AuthMethod::ClientCert,
            },
            None => Identity {
                name: subject.display_name(),
                role: None,
                method: AuthMethod::ClientCert,
            },
        }
    }

    /// Identifies the caller of a call that needs `needed`.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        cert: Option<&CertSubject>,
        needed: Role,
    ) -> Result<Identity, (Identity, Status)> {
        let anonymous = Identity {
            name: "anonymous".into(),
            role: self.anonymous,
            method: AuthMethod::Anonymous,
        };
        if let Some(value) = authorization {
            // RFC 6750 section 2.1 / RFC 7235 section 2.1: the scheme is
            // case-insensitive, followed by one or more spaces.
            let credentials = match value.split_first_chunk::<7>() {
                Some((scheme, rest))
                    if scheme.eq_ignore_ascii_case(b"bearer ") && !rest.trim_ascii().is_empty() =>
                {
                    rest.trim_ascii()
                }
                _ => {
                    return Err((
                        anonymous,
                        Status::unauthenticated("the authorization header is not `Bearer <token>`"),
                    ))
                }
            };
            return match self.creds.table().lookup(credentials) {
                Some(id) => Ok(id),
                None if !self.grantable(needed) => Err((
                    Identity {
                        name: "unknown-token".into(),
                        role: None,
                        method: AuthMethod::BearerToken,
                    },
                    self.disabled(needed),
                )),
                None => Err((
                    Identity {
                        name: "unknown-token".into(),
                        role: None,
                        method: AuthMethod::BearerToken,
                    },
                    Status::unauthenticated("invalid bearer token"),
                )),
            };
        }
        if let Some(subject) = cert {
            return Ok(self.cert_identity(subject));
        }
        if self.anonymous.is_some_and(|r| r >= needed) {
            return Ok(anonymous);
        }
        if !self.grantable(needed) {
            return Err((anonymous, self.disabled(needed)));
        }
        Err((
            anonymous,
            Status::unauthenticated(format!(
                "this call needs role {needed}: send the header `authorization: Bearer <token>` \
                 (or connect with a client certificate mapped to a role)"
            )),
        ))
    }

    /// The refusal of a call that no configured credential could make.
    fn disabled(&self, needed: Role) -> Status {
        Status::unauthenticated(format!(
            "no credential grants role {needed}, so these calls are disabled; {}",
            Self::enable_hint(needed)
        ))
    }

    fn enable_hint(needed: Role) -> String {
        format!(
            "set control.token_file (a token with group {needed}), control.admin_token_file or \
             control.client_roles in tapline-control's configuration"
        )
    }

    /// Whether `id` may call `path`, which needs `needed`.
    pub fn authorize(&self, id: &Identity, path: &str, needed: Role) -> Result<(), Status> {
        match id.role {
            Some(r) if r >= needed => Ok(()),
            Some(r) if !self.grantable(needed) => Err(Status::permission_denied(format!(
                "{} (role {r}) may not call {path}: it needs role {needed}, which no \
                 credential grants; {}",
                id.name,
                Self::enable_hint(needed)
            ))),
            Some(r) => Err(Status::permission_denied(format!(
                "{} (role {r}) may not call {path}: it needs role {needed}",
                id.name
            ))),
            None => Err(Status::permission_denied(format!(
                "{} has no role: map its certificate subject in control.client_roles",
                id.name
            ))),
        }
    }

    /// Authenticates and authorizes one call; a refusal is audited.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Identity>, Status> {
        let Some(needed) = required_role(path) else {
            return Ok(None);
        };
        let cert = peer.and_then(|p| p.cert.as_deref());
        let result = self
            .authenticate(authorization, cert, needed)
            .and_then(|id| match self.authorize(&id, path, needed) {
                Ok(()) => Ok(id),
                Err(s) => Err((id, s)),
            });
        match result {
            Ok(id) => Ok(Some(id)),
            Err((id, status)) => {
                let peer_addr = peer.and_then(|p| p.tcp.remote_addr);
                if needed > Role::View {
                    warn!(
                        peer = %peer_addr.map_or_else(|| "unknown".into(), |a| a.to_string()),
                        method = path,
                        identity = %id.name,
                        reason = status.message(),
                        "call refused"
                    );
                }
                self.audit.write(&AuditRecord::denied(
                    path,
                    &id,
                    peer_addr,
                    peer.is_some_and(|p| p.tls),
                    &status,
                ));
                Err(status)
            }
        }
    }
}
