//! `[[recorder]]`: recorders of passive-1's traffic, as the recorder's
//! own settings ([`RecordSettings`], which the dataplane's `record` module
//! runs) behind a filter stage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deployment::Deployment;
use crate::error::{err, ConfigError};
use crate::output::{check_filter, check_output_name, check_snaplen, OUTPUT_NAME_BYTES};
use crate::raw::{RawRecorder, RawSize};
use tapline_packet::filter::Filter;

/// The snap length of "whole packets" (`snaplen = 0`), written in the file
/// header, and the largest snap length accepted.
pub const MAX_SNAPLEN: u32 = tapline_packet::pcap::MAX_RECORD_LEN;
/// Smallest `rotate_bytes`.
pub const MIN_ROTATE_BYTES: u64 = 1024;
/// Smallest and largest `queue_bytes`.
pub const MIN_QUEUE_BYTES: usize = 1 << 20;
pub const MAX_QUEUE_BYTES: usize = 16 << 30;
/// Smallest `rotate_interval` and retention ages.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Defaults of [`RecordSettings::new`] (recommended config defaults).
pub const DEFAULT_ROTATE_BYTES: u64 = 1 << 30;
pub const DEFAULT_ROTATE_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// One recorder's settings (validated config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// Name (stats, logs, file names).
    pub name: String,
    /// The fast directory (`local-fast`): files are written here.
    pub dir: PathBuf,
    /// The bulk directory (`local-bulk`): completed files move here.
    pub bulk_dir: Option<PathBuf>,
    /// Start a new file when the current one reaches this size.
    pub rotate_bytes: u64,
    /// Start a new file when the current one is this old; `None`: never by
    /// time.
    pub rotate_interval: Option<Duration>,
    /// Retention in the fast directory: total bytes (`None`: unlimited).
    pub retain_bytes: Option<u64>,
    /// Retention in the fast directory: age (`None`: unlimited).
    pub retain_age: Option<Duration>,
    pub bulk_retain_bytes: Option<u64>,
    pub bulk_retain_age: Option<Duration>,
    /// Memory of the queue between the workers and the writer thread.
    pub queue_bytes: usize,
    /// Bytes kept of each packet; 0: whole packets.
    pub snaplen: u32,
    /// fsync each file before it is renamed to its final name.
    pub fsync: bool,
}

/// A setting that makes no sense: the field (as named in
/// [`RecordSettings`]) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> Result<(), SettingsError> {
    Err(SettingsError {
        field,
        message: message.into(),
    })
}

impl RecordSettings {
    /// Settings with the defaults: 1 GiB or 5 minute files, no retention,
    /// no bulk directory, a 64 MiB queue, whole packets, no fsync.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> RecordSettings {
        RecordSettings {
            name: name.into(),
            dir: dir.into(),
            bulk_dir: None,
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            rotate_interval: Some(DEFAULT_ROTATE_INTERVAL),
            retain_bytes: None,
            retain_age: None,
            bulk_retain_bytes: None,
            bulk_retain_age: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            snaplen: 0,
            fsync: false,
        }
    }

    /// The snap length written in file headers and applied to packets.
    pub fn effective_snaplen(&self) -> u32 {
        if self.snaplen == 0 {
            MAX_SNAPLEN
        } else {
            self.snaplen
        }
    }

    /// Checks the settings; the error names the first bad field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let n = &self.name;
        if n.is_empty() || n.len() > OUTPUT_NAME_BYTES {
            return bad(
                "name",
                format!(
                    "must be 1 to {OUTPUT_NAME_BYTES} bytes long, not {}",
                    n.len()
                ),
            );
        }
        if !n.as_bytes()[0].is_ascii_alphanumeric()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return bad(
                "name",
                format!(
                    "{n:?}: only letters, digits, '-', '_' and '.' (starting with a letter or digit), as it is part of file names"
                ),
            );
        }
        if self.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty");
        }
        match &self.bulk_dir {
            Some(b) if b.as_os_str().is_empty() => return bad("bulk_dir", "must not be empty"),
            Some(b) if same_dir(b, &self.dir) => {
                return bad("bulk_dir", "must differ from dir");
            }
            Some(_) => {}
            None => {
                if self.bulk_retain_bytes.is_some() {
                    return bad("bulk_retain_bytes", "set without a bulk_dir");
                }
                if self.bulk_retain_age.is_some() {
                    return bad("bulk_retain_age", "set without a bulk_dir");
                }
            }
        }
        if self.rotate_bytes < MIN_ROTATE_BYTES {
            return bad(
                "rotate_bytes",
                format!(
                    "{} is less than the minimum of {MIN_ROTATE_BYTES}",
                    self.rotate_bytes
                ),
            );
        }
        for (field, v) in [
            ("rotate_interval", self.rotate_interval),
            ("retain_age", self.retain_age),
            ("bulk_retain_age", self.bulk_retain_age),
        ] {
            if let Some(v) = v {
                if v < MIN_INTERVAL {
                    return bad(
                        field,
                        format!("{v:?} is less than the minimum of {MIN_INTERVAL:?}"),
                    );
                }
            }
        }
        for (field, v) in [
            ("retain_bytes", self.retain_bytes),
            ("bulk_retain_bytes", self.bulk_retain_bytes),
        ] {
            if let Some(v) = v {
                if v < self.rotate_bytes {
                    return bad(
                        field,
                        format!(
                            "{v} is less than rotate_bytes ({}): not even one file would be kept",
                            self.rotate_bytes
                        ),
                    );
                }
            }
        }
        if !(MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES).contains(&self.queue_bytes) {
            return bad(
                "queue_bytes",
                format!(
                    "{} is outside {MIN_QUEUE_BYTES}..={MAX_QUEUE_BYTES}",
                    self.queue_bytes
                ),
            );
        }
        if self.snaplen > MAX_SNAPLEN {
            return bad(
                "snaplen",
                format!(
                    "{} is more than the maximum of {MAX_SNAPLEN} (0: whole packets)",
                    self.snaplen
                ),
            );
        }
        Ok(())
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| p.components().collect::<PathBuf>();
    norm(a) == norm(b)
}

/// Most recorders.
pub const MAX_RECORDERS: usize = 4;
/// Smallest rotation size the configuration accepts (a recorder's own
/// minimum, [`MIN_ROTATE_BYTES`], is lower, for tests).
const CONFIG_MIN_ROTATE_BYTES: u64 = 64 << 10;

/// A recorder: its filter stage and its disk side.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// `None`: every frame.
    pub filter: Option<Filter>,
    pub settings: RecordSettings,
}

/// Parses "64MiB", "1G", "512k", "1048576" (binary units: k = KiB).
pub(crate) fn parse_size(field: &str, v: &RawSize) -> Result<u64, ConfigError> {
    let text = match v {
        RawSize::Bytes(b) => return Ok(*b),
        RawSize::Text(t) => t.trim(),
    };
    let bad = || {
        err(
            field,
            format!("{text:?} is not a size: use bytes (1048576) or a number with K, M, G or T (binary: \"64MiB\", \"1G\")"),
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// The directories: absolute, distinct, bulk retention only with a bulk
/// directory.
fn check_dirs(r: &RawRecorder, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    for (k, d) in [("dir", Some(&r.dir)), ("bulk_dir", r.bulk_dir.as_ref())] {
        if let Some(d) = d {
            if !d.is_absolute() {
                return Err(err(
                    &at(k),
                    format!("{d:?} must be an absolute path (a mounted volume)"),
                ));
            }
        }
    }
    if r.bulk_dir.as_ref() == Some(&r.dir) {
        return Err(err(
            &at("bulk_dir"),
            "is the same directory as dir: use a separate bulk volume, or leave bulk_dir out",
        ));
    }
    if r.bulk_dir.is_none() && (r.bulk_retain_size.is_some() || r.bulk_retain_age_s > 0) {
        return Err(err(
            &at("bulk_retain_size"),
            "bulk retention needs bulk_dir: set bulk_dir or remove the bulk_retain_* keys",
        ));
    }
    Ok(())
}

/// One `[[recorder]]` into its [`RecordSettings`], named by the
/// configuration's keys when [`RecordSettings::validate`] refuses them.
fn recorder_settings(
    r: &RawRecorder,
    at: &dyn Fn(&str) -> String,
) -> Result<RecordSettings, ConfigError> {
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let retain = |k: &str, v: &Option<RawSize>| -> Result<Option<u64>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => Ok(Some(parse_size(&at(k), v)?).filter(|&b| b > 0)),
        }
    };
    let settings = RecordSettings {
        name: r.name.clone(),
        dir: r.dir.clone(),
        bulk_dir: r.bulk_dir.clone(),
        rotate_bytes: parse_size(&at("rotate_size"), &r.rotate_size)?,
        rotate_interval: secs(r.rotate_interval_s),
        retain_bytes: retain("retain_size", &r.retain_size)?,
        retain_age: secs(r.retain_age_s),
        bulk_retain_bytes: retain("bulk_retain_size", &r.bulk_retain_size)?,
        bulk_retain_age: secs(r.bulk_retain_age_s),
        queue_bytes: parse_size(&at("queue_size"), &r.queue_size)?
            .try_into()
            .map_err(|_| err(&at("queue_size"), "too large"))?,
        snaplen: check_snaplen(&at("snaplen"), r.snaplen)?,
        fsync: r.fsync,
    };
    if let Err(e) = settings.validate() {
        let key = match e.field {
            "rotate_bytes" => "rotate_size",
            "rotate_interval" => "rotate_interval_s",
            "retain_bytes" => "retain_size",
            "retain_age" => "retain_age_s",
            "bulk_retain_bytes" => "bulk_retain_size",
            "bulk_retain_age" => "bulk_retain_age_s",
            "queue_bytes" => "queue_size",
            other => other,
        };
        return Err(err(&at(key), e.message));
    }
    if settings.rotate_bytes < CONFIG_MIN_ROTATE_BYTES {
        return Err(err(
            &at("rotate_size"),
            format!(
                "{} bytes is too small: at least {CONFIG_MIN_ROTATE_BYTES} (64KiB)",
                settings.rotate_bytes
            ),
        ));
    }
    if settings.queue_bytes < MIN_QUEUE_BYTES {
        return Err(err(
            &at("queue_size"),
            format!(
                "{} bytes is too small: at least {MIN_QUEUE_BYTES} (1MiB)",
                settings.queue_bytes
            ),
        ));
    }
    Ok(settings)
}

/// `[[recorder]]` tables into [`RecorderConfig`]s, in order.
pub(crate) fn validate_recorders(
    raw: &[RawRecorder],
    deployment: &Deployment,
) -> Result<Vec<RecorderConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if deployment.passive().is_none() {
        return Err(err(
            "recorder",
            "recorders record passive-1's traffic: set [interfaces] passive-1, or remove the recorders",
        ));
    }
    if raw.len() > MAX_RECORDERS {
        return Err(err(
            "recorder",
            format!("{} recorders: at most {MAX_RECORDERS}", raw.len()),
        ));
    }
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = |k: &str| format!("recorder[{i}].{k}");
        check_output_name(&at("name"), &r.name, &mut names)?;
        check_dirs(r, &at)?;
        let settings = recorder_settings(r, &at)?;
        out.push(RecorderConfig {
            filter: check_filter(&at("filter"), &r.filter)?,
            settings,
        });
    }
    Ok(out)
}
