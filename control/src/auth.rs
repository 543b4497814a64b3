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

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tapline_config::{Config, ConfigError, Role};
use tonic::transport::server::TcpConnectInfo;
use tonic::Status;
use tracing::{error, info, warn};

use crate::audit::{AuditLog, AuditRecord};
use crate::tls::PeerInfo;

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

/// One token and whom it identifies. `Debug` never shows the token.
#[derive(Clone)]
struct TokenEntry {
    token: Box<[u8]>,
    name: String,
    role: Role,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenEntry {{ token: <{} bytes, redacted>, name: {:?}, role: {} }}",
            self.token.len(),
            self.name,
            self.role
        )
    }
}

/// Tokens and their identities.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<TokenEntry>,
}

/// Splits one CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(if was_quoted {
                    std::mem::take(&mut cur)
                } else {
                    std::mem::take(&mut cur).trim().to_string()
                });
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".into())
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    out.push(if was_quoted {
        cur
    } else {
        cur.trim().to_string()
    });
    Ok(out)
}

impl TokenTable {
    /// Parses a token file: one `token,user,uid,"group1,group2"` line per
    /// identity, as Kubernetes' `--token-auth-file`. Blank lines and lines
    /// starting with `#` are skipped. The role is the highest group named
    /// `view`, `edit` or `admin` (also accepted as `tapline:view`, ...).
    /// Errors name the line, never the token.
    pub fn parse(text: &str) -> Result<TokenTable, String> {
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line).map_err(|e| format!("line {n}: {e}"))?;
            if f.len() < 3 || f.len() > 4 {
                return Err(format!(
                    "line {n}: {} columns; write token,user,uid,\"groups\" (groups name the role: view, edit or admin)",
                    f.len()
                ));
            }
            let token = f[0].as_bytes();
            if token.is_empty() || !token.iter().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {n}: the token is empty or not printable ASCII without spaces"
                ));
            }
            let name = &f[1];
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(format!(
                    "line {n}: the user (column 2) is empty or has control characters"
                ));
            }
            let role = f
                .get(3)
                .into_iter()
                .flat_map(|g| g.split(','))
                .filter_map(|g| {
                    let g = g.trim();
                    Role::parse(g.strip_prefix("tapline:").unwrap_or(g))
                })
                .max();
            let Some(role) = role else {
                return Err(format!(
                    "line {n} (user {name:?}): no role: add a group view, edit or admin in column 4"
                ));
            };
            if entries.iter().any(|e| bool::from(e.token.ct_eq(token))) {
                return Err(format!("line {n} (user {name:?}): the token is used twice"));
            }
            entries.push(TokenEntry {
                token: token.into(),
                name: name.clone(),
                role,
            });
        }
        Ok(TokenTable { entries })
    }

    /// The identity of `candidate`: compared with every entry in constant
    /// time (no early exit: the time tells nothing about which entry or how
    /// many leading bytes matched; only lengths are not hidden).
    pub fn lookup(&self, candidate: &[u8]) -> Option<Identity> {
        let mut found: Option<&TokenEntry> = None;
        for e in &self.entries {
            let hit = e.token.ct_eq(candidate);
            if bool::from(hit) {
                found = Some(e);
            }
        }
        found.map(|e| Identity {
            name: e.name.clone(),
            role: Some(e.role),
            method: AuthMethod::BearerToken,
        })
    }

    /// How many identities the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest role any token grants.
    pub fn highest_role(&self) -> Option<Role> {
        self.entries.iter().map(|e| e.role).max()
    }

    fn extend(&mut self, other: TokenTable) {
        self.entries.extend(other.entries);
    }
}

/// Where tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// `control.token_file`.
    Table,
    /// A legacy one-token file: the whole (trimmed) content is the token.
    Single { name: &'static str, role: Role },
}

#[derive(Debug)]
struct Source {
    field: &'static str,
    path: PathBuf,
    kind: SourceKind,
    /// The content last read (to notice a change), and what it gave.
    last: Option<(Vec<u8>, TokenTable)>,
}

impl Source {
    fn parse(&self, bytes: &[u8]) -> Result<TokenTable, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
        match self.kind {
            SourceKind::Table => TokenTable::parse(text),
            SourceKind::Single { name, role } => {
                let t = text.trim();
                if t.is_empty() {
                    return Err("is empty: write the token into it, or remove the key".into());
                }
                if !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("the token must be printable ASCII without spaces".into());
                }
                Ok(TokenTable {
                    entries: vec![TokenEntry {
                        token: t.as_bytes().into(),
                        name: name.into(),
                        role,
                    }],
                })
            }
        }
    }

    /// Reads the file; `Ok(true)` when its tokens changed.
    fn refresh(&mut self) -> Result<bool, String> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if self.last.as_ref().is_some_and(|(b, _)| *b == bytes) {
            return Ok(false);
        }
        let table = self
            .parse(&bytes)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.last = Some((bytes, table));
        Ok(true)
    }
}

/// The tokens of every configured source, reloadable.
#[derive(Debug)]
pub struct Credentials {
    sources: std::sync::Mutex<Vec<Source>>,
    table: RwLock<Arc<TokenTable>>,
}

impl Credentials {
    /// Reads every configured token source; an unreadable or invalid one is
    /// a configuration error naming its key.
    pub fn load(cfg: &Config) -> Result<Credentials, ConfigError> {
        let c = &cfg.control;
        let mut sources = Vec::new();
        for (field, path, kind) in [
            ("control.token_file", &c.token_file, SourceKind::Table),
            (
                "control.observer_token_file",
                &c.observer_token_file,
                SourceKind::Single {
                    name: "observer-token",
                    role: Role::View,
                },
            ),
            (
                "control.admin_token_file",
                &c.admin_token_file,
                SourceKind::Single {
                    name: "admin-token",
                    role: Role::Admin,
                },
            ),
        ] {
            let Some(path) = path else { continue };
            let mut s = Source {
                field,
                path: path.clone(),
                kind,
                last: None,
            };
            s.refresh().map_err(|message| ConfigError {
                field: field.to_string(),
                message: format!("{message}; mount the Secret there or remove the key"),
            })?;
            sources.push(s);
        }
        let creds = Credentials {
            sources: std::sync::Mutex::new(sources),
            table: RwLock::new(Arc::new(TokenTable::default())),
        };
        creds.rebuild()?;
        Ok(creds)
    }

    /// Credentials from one token table, for tests and embedding.
    pub fn from_table(table: TokenTable) -> Credentials {
        Credentials {
            sources: std::sync::Mutex::new(Vec::new()),
            table: RwLock::new(Arc::new(table)),
        }
    }

    fn rebuild(&self) -> Result<(), ConfigError> {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = TokenTable::default();
        for s in sources.iter() {
            if let Some((_, t)) = &s.last {
                all.extend(t.clone());
            }
        }
        // The same token in two sources would make its identity depend on
        // the order of the sources.
        for (i, e) in all.entries.iter().enumerate() {
            if all.entries[..i]
                .iter()
                .any(|o| bool::from(o.token.ct_eq(&e.token)))
            {
                return Err(ConfigError {
                    field: "control.token_file".into(),
                    message: format!(
                        "the token of {:?} is also configured in another token file; give every identity its own token",
                        e.name
                    ),
                });
            }
        }
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(all);
        Ok(())
    }

    /// Re-reads every source whose content changed. A source that is now
    /// unreadable or invalid keeps its previous tokens (logged at error,
    /// without the content). Returns whether the tokens changed.
    pub fn reload(&self) -> bool {
        let mut changed = false;
        {
            let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            for s in sources.iter_mut() {
                match s.refresh() {
                    Ok(true) => {
                        changed = true;
                        info!(
                            field = s.field,
                            path = %s.path.display(),
                            identities = s.last.as_ref().map_or(0, |(_, t)| t.len()),
                            "token file reloaded"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => error!(
                        field = s.field,
                        path = %s.path.display(),
                        reason = %e,
                        "token file not reloaded, the previous tokens stay in force"
                    ),
                }
            }
        }
        if changed {
            if let Err(e) = self.rebuild() {
                error!(reason = %e, "token files not reloaded, the previous tokens stay in force");
                return false;
            }
        }
        changed
    }

    /// The tokens in force.
    pub fn table(&self) -> Arc<TokenTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many identities the token files hold, for the start-up log.
    pub fn count(&self) -> usize {
        self.table().len()
    }
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

/// The tower layer that authorizes every call of the API port (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authz: Arc<Authorizer>,
}

impl AuthLayer {
    pub fn new(authz: Arc<Authorizer>) -> AuthLayer {
        AuthLayer { authz }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            authz: self.authz.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authz: Arc<Authorizer>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req.extensions().get::<PeerInfo>().cloned();
        if let Some(p) = &peer {
            // So that `Request::remote_addr` works in the services.
            req.extensions_mut().insert(p.tcp.clone());
        }
        let checked = self.authz.check(
            req.uri().path(),
            req.headers().get("authorization").map(|v| v.as_bytes()),
            peer.as_ref(),
        );
        match checked {
            Ok(id) => {
                if let Some(id) = id {
                    req.extensions_mut().insert(id);
                }
                // The clone that was made ready is the one to call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                let resp = status.into_http::<tonic::body::Body>();
                Box::pin(async move { Ok(resp) })
            }
        }
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

/// Reads a one-token file (the legacy keys; taplinectl's `--token-file`
/// uses its own reader).
pub fn read_single_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty".into());
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const FILE: &str = "# tokens\n\
        view-tok-0123,vera,1001,\"tapline:view\"\n\
        edit-tok-0123,eddie,1002,\"system:authenticated,edit\"\n\
        \n\
        admin-tok-0123, ada ,1003,\"view,admin\"\n";

    #[test]
    fn token_files_parse_like_kubernetes_static_tokens() {
        let t = TokenTable::parse(FILE).unwrap();
        assert_eq!(t.len(), 3);
        let id = t.lookup(b"view-tok-0123").unwrap();
        assert_eq!((id.name.as_str(), id.role), ("vera", Some(Role::View)));
        assert_eq!(t.lookup(b"edit-tok-0123").unwrap().role, Some(Role::Edit));
        let ada = t.lookup(b"admin-tok-0123").unwrap();
        assert_eq!((ada.name.as_str(), ada.role), ("ada", Some(Role::Admin)));
        assert_eq!(ada.method, AuthMethod::BearerToken);
        assert!(t.lookup(b"admin-tok-012").is_none());
        assert!(t.lookup(b"admin-tok-01234").is_none());
        assert!(t.lookup(b"").is_none());
        assert_eq!(t.highest_role(), Some(Role::Admin));
    }

    #[test]
    fn bad_token_files_name_the_line_never_the_token() {
        for (text, want) in [
            ("s3cr3t-a,u", "line 1: 2 columns"),
            ("s3cr3t-a,u,1", "line 1 (user \"u\"): no role"),
            ("s3cr3t-a,u,1,\"viewer\"", "no role"),
            ("s3cr3t-a,u,1,\"view\nx", "line 1: an unterminated quote"),
            (
                "s3cr3t-a,u,1,view\ns3cr3t-a,w,2,edit",
                "line 2 (user \"w\"): the token is used twice",
            ),
            ("s3cr et,u,1,view", "not printable ASCII"),
            ("s3cr3t-a,,1,view", "the user (column 2) is empty"),
            ("s3cr3t-a,u,1,\"view\"x", "text after a closing quote"),
        ] {
            let e = TokenTable::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("s3cr"), "{e}");
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let t = TokenTable::parse(FILE).unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("tok-0123"), "{d}");
        assert!(d.contains("vera"));
    }

    #[test]
    fn methods_need_their_roles() {
        assert_eq!(
            required_role("/tapline.v1.Observer/GetStats"),
            Some(Role::View)
        );
        assert_eq!(
            required_role("/tapline.v1.Admin/SetChain"),
            Some(Role::Edit)
        );
        assert_eq!(
            required_role("/tapline.v1.Admin/SetHopBypass"),
            Some(Role::Edit)
        );
        assert_eq!(required_role("/tapline.v1.Admin/Tap"), Some(Role::Admin));
        assert_eq!(required_role("/tapline.v1.Admin/Future"), Some(Role::Admin));
        assert_eq!(required_role("/tapline.v2.Other/X"), Some(Role::Admin));
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            None
        );
    }

    fn authz(anonymous: Option<Role>, certs: Vec<(String, Role)>) -> Authorizer {
        Authorizer::new(
            Arc::new(Credentials::from_table(TokenTable::parse(FILE).unwrap())),
            anonymous,
            certs,
            AuditLog::discard(),
        )
    }

    #[test]
    fn roles_include_the_lower_ones() {
        let a = authz(None, vec![]);
        let call = |tok: &str, path: &str| {
            let h = format!("Bearer {tok}");
            a.check(path, Some(h.as_bytes()), None)
        };
        let get = "/tapline.v1.Observer/GetStats";
        let set = "/tapline.v1.Admin/SetChain";
        let tap = "/tapline.v1.Admin/Tap";
        for tok in ["view-tok-0123", "edit-tok-0123", "admin-tok-0123"] {
            assert!(call(tok, get).is_ok(), "{tok}");
        }
        assert_eq!(
            call("view-tok-0123", set).unwrap_err().code(),
            Code::PermissionDenied
        );
        assert!(call("edit-tok-0123", set).is_ok());
        assert_eq!(
            call("edit-tok-0123", tap).unwrap_err().code(),
            Code::PermissionDenied
        );
        let id = call("admin-tok-0123", tap).unwrap().unwrap();
        assert_eq!(id.name, "ada");
        assert_eq!(call("nope", get).unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(
            a.check(get, None, None).unwrap_err().code(),
            Code::Unauthenticated
        );
        assert_eq!(
            a.check(get, Some(b"Basic eDp5"), None).unwrap_err().code(),
            Code::Unauthenticated
        );
        // Health is open.
        assert_eq!(
            a.check("/grpc.health.v1.Health/Check", None, None).unwrap(),
            None
        );
    }

    #[test]
    fn anonymous_gets_its_role_and_nothing_more() {
        let a = authz(Some(Role::View), vec![]);
        let id = a
            .check("/tapline.v1.Observer/GetInfo", None, None)
            .unwrap()
            .unwrap();
        assert_eq!(id.method, AuthMethod::Anonymous);
        let e = a
            .check("/tapline.v1.Admin/SetChain", None, None)
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(e.message().contains("needs role edit"), "{}", e.message());
        // Nothing grants admin when no token has it.
        let none = Authorizer::new(
            Arc::new(Credentials::from_table(TokenTable::default())),
            Some(Role::View),
            vec![],
            AuditLog::discard(),
        );
        let e = none.check("/tapline.v1.Admin/Tap", None, None).unwrap_err();
        assert!(
            e.message().contains("set control.token_file"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn certificates_map_by_uri_then_cn() {
        let a = authz(
            None,
            vec![
                ("spiffe://cluster.local/ns/sec/sa/ops".into(), Role::Edit),
                ("alice".into(), Role::View),
            ],
        );
        let by_uri = CertSubject {
            cn: Some("alice".into()),
            uris: vec!["spiffe://cluster.local/ns/sec/sa/ops".into()],
        };
        let id = a.authenticate(None, Some(&by_uri), Role::Edit).unwrap();
        assert_eq!(id.name, "spiffe://cluster.local/ns/sec/sa/ops");
        assert_eq!(id.role, Some(Role::Edit));
        let by_cn = CertSubject {
            cn: Some("alice".into()),
            uris: vec![],
        };
        assert_eq!(
            a.authenticate(None, Some(&by_cn), Role::View).unwrap().role,
            Some(Role::View)
        );
        let stranger = CertSubject {
            cn: Some("mallory".into()),
            uris: vec![],
        };
        let id = a.authenticate(None, Some(&stranger), Role::View).unwrap();
        assert_eq!(id.role, None);
        let e = a
            .authorize(&id, "/tapline.v1.Observer/GetInfo", Role::View)
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("mallory"), "{}", e.message());
        // A token wins over the certificate, and a bad token is not
        // rescued by it.
        let id = a
            .authenticate(Some(b"Bearer admin-tok-0123"), Some(&stranger), Role::Admin)
            .unwrap();
        assert_eq!(id.role, Some(Role::Admin));
        assert!(a
            .authenticate(Some(b"Bearer bad"), Some(&by_uri), Role::View)
            .is_err());
    }

    #[test]
    fn legacy_files_and_the_table_reload_when_they_change() {
        let dir = std::env::temp_dir().join(format!("tapline-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let table = dir.join("tokens.csv");
        let admin = dir.join("admin");
        std::fs::write(&table, "t1-aaaa,one,1,view\n").unwrap();
        std::fs::write(&admin, "adm-aaaa\n").unwrap();
        let cfg = Config::parse(&format!(
            "[interfaces]\npassive-1 = \"p1\"\n[control]\ntoken_file = \"{}\"\nadmin_token_file = \"{}\"\n",
            table.display(),
            admin.display()
        ))
        .unwrap();
        let c = Credentials::load(&cfg).unwrap();
        assert_eq!(c.count(), 2);
        assert_eq!(c.table().lookup(b"adm-aaaa").unwrap().name, "admin-token");
        assert!(!c.reload());
        std::fs::write(&table, "t2-bbbb,two,2,edit\n").unwrap();
        assert!(c.reload());
        assert!(c.table().lookup(b"t1-aaaa").is_none());
        assert_eq!(c.table().lookup(b"t2-bbbb").unwrap().role, Some(Role::Edit));
        // Broken: the previous tokens stay.
        std::fs::write(&table, "t3,three\n").unwrap();
        assert!(!c.reload());
        assert!(c.table().lookup(b"t2-bbbb").is_some());
        std::fs::remove_file(&table).unwrap();
        assert!(!c.reload());
        assert!(c.table().lookup(b"t2-bbbb").is_some());
        // A duplicate across files is refused at start.
        std::fs::write(&table, "adm-aaaa,dup,1,view\n").unwrap();
        let e = Credentials::load(&cfg).unwrap_err();
        assert!(e.message.contains("also configured"), "{e}");
        assert!(!e.to_string().contains("adm-aaaa"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_files_name_their_field() {
        let dir = std::env::temp_dir().join(format!("tapline-auth-f-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let cfg = Config::parse(&format!(
            "[interfaces]\npassive-1 = \"p1\"\n[control]\nobserver_token_file = \"{}\"\n",
            empty.display()
        ))
        .unwrap();
        let e = Credentials::load(&cfg).unwrap_err();
        assert_eq!(e.field, "control.observer_token_file");
        assert!(e.message.contains("is empty"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
