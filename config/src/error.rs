//! Errors, and reading the file: a configuration problem is one line
//! naming the field and the fix.

use std::path::Path;

/// A configuration problem, rendered as one line naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error: {field}: {message}")]
pub struct ConfigError {
    /// The offending key (`xdp.frame_size`), or `config` for the file itself.
    pub field: String,
    pub message: String,
}

/// A [`ConfigError`] for `field`.
pub(crate) fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Largest configuration file read (far above any real one).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a configuration file, refusing anything but a regular file of at
/// most [`MAX_CONFIG_BYTES`]. `O_NONBLOCK` keeps the open of a FIFO from
/// waiting for a writer; the size is checked both on the inode and while
/// reading (a file that grows meanwhile).
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let cannot = |e: std::io::Error| err("config", format!("cannot read {}: {e}", path.display()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(err(
            "config",
            format!(
                "{} is not a regular file (a {kind}): pass the path of a TOML file",
                path.display()
            ),
        ));
    }
    let too_big = || {
        err(
            "config",
            format!(
                "{} is larger than {MAX_CONFIG_BYTES} bytes: pass the tapline TOML file, not something else",
                path.display()
            ),
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        err(
            "config",
            format!(
                "{} is not UTF-8 text (invalid byte at offset {}): pass a TOML file",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Folds a TOML error into one line with its position.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // One line, whatever the input: control characters (a `\r` in a quoted
    // key ends up in the message) are escaped.
    let msg: String = e
        .message()
        .chars()
        .flat_map(|c| {
            if c == '\n' {
                " ".chars().collect::<Vec<_>>()
            } else if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            }
        })
        .collect();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            err(
                "config",
                format!("line {line}, column {col}: {}", msg.trim()),
            )
        }
        None => err("config", msg.trim().to_string()),
    }
}
