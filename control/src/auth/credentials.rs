//! Where tokens come from: `control.token_file` and the two legacy
//! one-token files, read at start and re-read by [`Credentials::reload`].

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tracing::{error, info};

use super::{Config, ConfigError, Role, TokenTable};

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
                Ok(TokenTable::single(t.as_bytes(), name, role))
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
        if let Some(name) = all.reused_token_owner() {
            return Err(ConfigError {
                field: "control.token_file".into(),
                message: format!(
                    "the token of {name:?} is also configured in another token file; give every identity its own token"
                ),
            });
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
