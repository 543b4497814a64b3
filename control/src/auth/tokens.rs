//! The token table: parsing a Kubernetes-style static token file, and
//! looking a bearer token up in constant time.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;

use super::{AuthMethod, Identity, Role};

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

    pub(super) fn extend(&mut self, other: TokenTable) {
        self.entries.extend(other.entries);
    }

    /// A table of one token (a legacy one-token file).
    pub(super) fn single(token: &[u8], name: &str, role: Role) -> TokenTable {
        TokenTable {
            entries: vec![TokenEntry {
                token: token.into(),
                name: name.into(),
                role,
            }],
        }
    }

    /// The user of the first entry whose token an earlier entry has too
    /// (compared in constant time).
    pub(super) fn reused_token_owner(&self) -> Option<&str> {
        self.entries.iter().enumerate().find_map(|(i, e)| {
            self.entries[..i]
                .iter()
                .any(|o| bool::from(o.token.ct_eq(&e.token)))
                .then_some(e.name.as_str())
        })
    }
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
