//! Bearer-token authentication, one tonic interceptor per service.
//!
//! A service's token is read once at start from the file named in
//! `[control]` (`observer_token_file`, `admin_token_file`); the file holds
//! the token, surrounding whitespace is trimmed. A client sends
//! `authorization: Bearer <token>`. Without a token file, Observer is open
//! and Admin refuses every call ([`WithoutToken`]): changes to the chain
//! are never open to anyone who reaches the port. Health and reflection
//! are never wrapped in an interceptor, so they need no token.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tapline_dataplane::config::ConfigError;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::info;

/// A secret token. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl Token {
    /// A token from its text (surrounding whitespace trimmed); `None` when
    /// nothing is left.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(Arc::from(t.as_bytes())))
    }

    /// Reads the token file of config key `field` (for example
    /// `control.observer_token_file`). An unreadable or empty file is a
    /// configuration error naming the field.
    pub fn load(field: &str, path: &Path) -> Result<Token, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            field: field.to_string(),
            message: format!(
                "cannot read {}: {e}; mount the Secret there or remove the key",
                path.display()
            ),
        })?;
        Token::new(&text).ok_or_else(|| ConfigError {
            field: field.to_string(),
            message: format!(
                "{} is empty: write the token into it, or remove the key to leave the service open",
                path.display()
            ),
        })
    }

    /// Whether `candidate` is this token, in time that depends only on the
    /// lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.0, candidate)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes, redacted>)", self.0.len())
    }
}

/// Compares two byte strings without an early exit on the first difference,
/// so the time taken does not tell an attacker how many leading bytes of a
/// guess were right. Only the length is not hidden (a token's length is not
/// the secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into a
    // short-circuiting comparison.
    std::hint::black_box(diff) == 0
}

/// What a service whose token file is not configured does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutToken {
    /// Serves every caller (Observer: reads only).
    Open,
    /// Refuses every call with UNAUTHENTICATED, naming the configuration
    /// key that enables the service (Admin).
    Refuse {
        /// The key, e.g. `control.admin_token_file`.
        field: &'static str,
    },
}

/// The interceptor of one service: with a token, every call must carry it;
/// without one, the service is open or refuses everything (see
/// [`WithoutToken`]). A privileged service ([`BearerAuth::privileged`])
/// also logs every refused call at info, with the caller's address.
#[derive(Debug, Clone)]
pub struct BearerAuth {
    token: Option<Token>,
    /// The service's name, for the error message.
    service: &'static str,
    without_token: WithoutToken,
    /// Log refused calls.
    audit: bool,
}

impl BearerAuth {
    /// A service that is open when `token` is `None`.
    pub fn new(service: &'static str, token: Option<Token>) -> BearerAuth {
        BearerAuth {
            token,
            service,
            without_token: WithoutToken::Open,
            audit: false,
        }
    }

    /// A privileged service: it refuses every call when `token` is `None`
    /// (telling the caller to set `field`), and refused calls are logged.
    pub fn privileged(
        service: &'static str,
        token: Option<Token>,
        field: &'static str,
    ) -> BearerAuth {
        BearerAuth {
            token,
            service,
            without_token: WithoutToken::Refuse { field },
            audit: true,
        }
    }

    /// Checks the `authorization` metadata of a call.
    fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return match self.without_token {
                WithoutToken::Open => Ok(()),
                WithoutToken::Refuse { field } => Err(Status::unauthenticated(format!(
                    "{} is disabled: no token is configured; set {field} in tapline-control's \
                     configuration and restart it",
                    self.service
                ))),
            };
        };
        let Some(value) = header else {
            return Err(Status::unauthenticated(format!(
                "{} requires a token: send the header `authorization: Bearer <token>`",
                self.service
            )));
        };
        // RFC 6750 section 2.1 / RFC 7235 section 2.1: the scheme is
        // case-insensitive, followed by one or more spaces.
        let credentials = match value.split_first_chunk::<7>() {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case(b"bearer ") && !rest.trim_ascii().is_empty() =>
            {
                rest.trim_ascii()
            }
            _ => {
                return Err(Status::unauthenticated(format!(
                    "{}: the authorization header is not `Bearer <token>`",
                    self.service
                )))
            }
        };
        if token.matches(credentials) {
            Ok(())
        } else {
            Err(Status::unauthenticated(format!(
                "{}: invalid bearer token",
                self.service
            )))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let checked = self.check(
            request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes()),
        );
        if let Err(s) = &checked {
            if self.audit {
                // The header is never logged: it may hold a real token.
                info!(
                    peer = %request
                        .remote_addr()
                        .map_or_else(|| "unknown".to_string(), |a| a.to_string()),
                    service = self.service,
                    reason = s.message(),
                    "call refused: not authenticated"
                );
            }
        }
        checked.map(|()| request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token", b"s3cret-tokeN"));
        assert!(!constant_time_eq(b"s3cret-token", b"S3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token", b"s3cret-toke"));
        assert!(!constant_time_eq(b"s3cret-token", b"s3cret-token "));
        assert!(!constant_time_eq(b"a", b""));
        // Every single-bit difference at every position is seen.
        let t = b"0123456789abcdef";
        for i in 0..t.len() {
            for bit in 0..8 {
                let mut g = *t;
                g[i] ^= 1 << bit;
                assert!(!constant_time_eq(t, &g), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn tokens_are_trimmed_and_never_printed() {
        let t = Token::new("  abc\n").unwrap();
        assert!(t.matches(b"abc"));
        assert!(Token::new(" \n\t").is_none());
        assert!(!format!("{t:?}").contains("abc"));
    }

    #[test]
    fn token_files_name_their_field() {
        let dir = std::env::temp_dir().join(format!("tapline-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Token::load("control.observer_token_file", &empty).unwrap_err();
        assert_eq!(e.field, "control.observer_token_file");
        assert!(e.message.contains("empty"), "{e}");
        let e = Token::load("control.admin_token_file", &dir.join("missing")).unwrap_err();
        assert_eq!(e.field, "control.admin_token_file");
        assert!(e
            .to_string()
            .starts_with("config error: control.admin_token_file: cannot read"));
        let good = dir.join("good");
        std::fs::write(&good, "tok\n").unwrap();
        assert!(Token::load("x", &good).unwrap().matches(b"tok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interceptor_checks_the_bearer_token() {
        let auth = BearerAuth::new("tapline.v1.Observer", Token::new("tok"));
        assert!(auth.check(Some(b"Bearer tok")).is_ok());
        assert!(auth.check(Some(b"bearer  tok")).is_ok());
        for bad in [
            None,
            Some(&b"Bearer nope"[..]),
            Some(b"Bearer "),
            Some(b"Basic dG9rOg=="),
            Some(b"tok"),
            Some(b"Bearer tok2"),
        ] {
            let e = auth.check(bad).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
            assert!(!e.message().contains('\n'));
            assert!(!e.message().contains("tok2"), "the guess is not echoed");
        }
        // Without a token the service is open.
        let open = BearerAuth::new("tapline.v1.Observer", None);
        assert!(open.check(None).is_ok());
        assert!(open.check(Some(b"Bearer whatever")).is_ok());
    }

    #[test]
    fn a_privileged_service_without_a_token_refuses_everything() {
        let closed = BearerAuth::privileged("tapline.v1.Admin", None, "control.admin_token_file");
        for header in [None, Some(&b"Bearer anything"[..]), Some(b"")] {
            let e = closed.check(header).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{header:?}");
            assert!(
                e.message().contains("set control.admin_token_file"),
                "{}",
                e.message()
            );
        }
        // With a token it checks it like any service.
        let auth = BearerAuth::privileged(
            "tapline.v1.Admin",
            Token::new("adm"),
            "control.admin_token_file",
        );
        assert!(auth.check(Some(b"Bearer adm")).is_ok());
        assert_eq!(
            auth.check(Some(b"Bearer tok")).unwrap_err().code(),
            Code::Unauthenticated
        );
        assert_eq!(auth.check(None).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn interceptor_reads_request_metadata() {
        let mut auth = BearerAuth::new("tapline.v1.Observer", Token::new("tok"));
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", "Bearer tok".parse().unwrap());
        assert!(auth.call(req).is_ok());
        let e = auth.call(Request::new(())).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
}
