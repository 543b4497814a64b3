//! The configuration file (TOML), shared by `tapline-dataplane` and
//! `tapline-control`, and its validation into types that cannot hold an
//! invalid state.
//!
//! Every key, its default and its meaning is listed in `docs/config.md`; a
//! test checks that the example in `containers/tapline.toml` parses.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::chain::heartbeat::Timing;
use crate::chain::spec::{ChainSpec, FailureAction, HopSpec};
use crate::filter::Filter;
use crate::record::RecordSettings;
use crate::tap::TapSettings;
use crate::xdp::{Geometry, RingSizes, XdpMode};

/// Largest batch a worker handles in one go (bounds on-stack arrays).
pub const MAX_BATCH: u32 = 256;
/// Linux interface names are at most 15 bytes (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;
const MIN_RING: u32 = 64;
const MAX_RING: u32 = 16384;
const MAX_FRAMES: u32 = 1 << 20;

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    interfaces: RawInterfaces,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    xdp: RawXdp,
    #[serde(default)]
    chain: RawChain,
    #[serde(default)]
    heartbeat: RawHeartbeat,
    #[serde(default)]
    tap: RawTap,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    fallback: RawFallback,
    #[serde(default)]
    output_group: Vec<RawOutputGroup>,
    #[serde(default)]
    recorder: Vec<RawRecorder>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterfaces {
    #[serde(rename = "passive-1")]
    passive_1: Option<String>,
    #[serde(rename = "inline-1")]
    inline_1: Option<String>,
    #[serde(rename = "inline-2")]
    inline_2: Option<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/run/tapline")
}
fn default_batch() -> u32 {
    64
}
fn default_idle() -> String {
    "backoff".into()
}
fn default_idle_spins() -> u32 {
    1000
}
fn default_idle_wait_ms() -> u32 {
    10
}
fn default_stats_refresh_ms() -> u32 {
    1000
}
fn default_log_stats_s() -> u32 {
    60
}
fn default_true() -> bool {
    true
}
/// Upper bound of `idle_spins` (about a second of spinning).
const MAX_IDLE_SPINS: u32 = 10_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    cpus: Vec<usize>,
    #[serde(default = "default_batch")]
    batch_size: u32,
    #[serde(default = "default_idle")]
    idle: String,
    #[serde(default = "default_idle_spins")]
    idle_spins: u32,
    #[serde(default = "default_idle_wait_ms")]
    idle_wait_ms: u32,
    #[serde(default = "default_stats_refresh_ms")]
    kernel_stats_interval_ms: u32,
    #[serde(default = "default_log_stats_s")]
    log_stats_interval_s: u32,
    #[serde(default = "default_true")]
    promiscuous: bool,
    #[serde(default)]
    command_uids: Vec<u32>,
}

impl Default for RawDataplane {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_mode() -> String {
    "auto".into()
}
fn default_frame_size() -> u32 {
    2048
}
/// 16 MiB of 2048-byte frames per queue group: both fill rings of a bridge
/// full (2 x 2048) plus as many frames again in flight, so a worker that is
/// descheduled for a few milliseconds does not starve the fill ring.
fn default_frame_count() -> u32 {
    8192
}
fn default_ring_size() -> u32 {
    2048
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXdp {
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_frame_size")]
    frame_size: u32,
    #[serde(default = "default_frame_count")]
    frame_count: u32,
    #[serde(default = "default_ring_size")]
    ring_size: u32,
}

impl Default for RawXdp {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_grpc_listen() -> String {
    "0.0.0.0:50051".into()
}
fn default_health_listen() -> String {
    "0.0.0.0:8086".into()
}
fn default_metrics_listen() -> String {
    "0.0.0.0:9090".into()
}
fn default_stale_ms() -> u32 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default = "default_grpc_listen")]
    grpc_listen: String,
    #[serde(default = "default_health_listen")]
    health_listen: String,
    #[serde(default = "default_metrics_listen")]
    metrics_listen: String,
    #[serde(default)]
    admin_token_file: Option<PathBuf>,
    #[serde(default)]
    observer_token_file: Option<PathBuf>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    anonymous_role: Option<String>,
    #[serde(default)]
    tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    tls_key_file: Option<PathBuf>,
    #[serde(default)]
    tls_client_ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_client_auth: Option<String>,
    #[serde(default)]
    client_roles: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_stale_ms")]
    dataplane_stale_ms: u32,
}

impl Default for RawControl {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_drain_ms() -> u32 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    #[serde(default)]
    hops: Vec<RawHop>,
    #[serde(default = "default_action")]
    default_on_failure: String,
    #[serde(default = "default_drain_ms")]
    drain_ms: u32,
    #[serde(default)]
    allowed_interfaces: Vec<String>,
}

impl Default for RawChain {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_action() -> String {
    "bypass".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHop {
    name: String,
    a: String,
    b: String,
    on_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputGroup {
    name: String,
    members: Vec<String>,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    snaplen: u32,
    #[serde(default)]
    allowed_interfaces: Vec<String>,
}

/// A size: bytes as an integer, or a string with a unit ("512MiB", "1G").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

fn default_rotate_size() -> RawSize {
    RawSize::Bytes(1 << 30)
}
fn default_rotate_interval_s() -> u64 {
    300
}
fn default_queue_size() -> RawSize {
    RawSize::Bytes(64 << 20)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecorder {
    name: String,
    dir: PathBuf,
    #[serde(default)]
    bulk_dir: Option<PathBuf>,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    snaplen: u32,
    #[serde(default = "default_rotate_size")]
    rotate_size: RawSize,
    #[serde(default = "default_rotate_interval_s")]
    rotate_interval_s: u64,
    #[serde(default)]
    retain_size: Option<RawSize>,
    #[serde(default)]
    retain_age_s: u64,
    #[serde(default)]
    bulk_retain_size: Option<RawSize>,
    #[serde(default)]
    bulk_retain_age_s: u64,
    #[serde(default = "default_queue_size")]
    queue_size: RawSize,
    #[serde(default)]
    fsync: bool,
}

fn default_hb_interval() -> u32 {
    10
}
fn default_hb_timeout() -> u32 {
    15
}
fn default_hb_misses() -> u32 {
    3
}
fn default_hb_hold() -> u32 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    #[serde(default = "default_hb_interval")]
    interval_ms: u32,
    #[serde(default = "default_hb_timeout")]
    timeout_ms: u32,
    #[serde(default = "default_hb_misses")]
    misses: u32,
    #[serde(default = "default_hb_hold")]
    hold_ms: u32,
}

impl Default for RawHeartbeat {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_tap_max_concurrent() -> usize {
    crate::tap::DEFAULT_MAX_CONCURRENT
}
fn default_tap_max_snaplen() -> u32 {
    crate::tap::DEFAULT_MAX_SNAPLEN
}
fn default_tap_max_duration_s() -> u64 {
    crate::tap::DEFAULT_MAX_DURATION_S
}
fn default_tap_queue_packets() -> usize {
    crate::tap::DEFAULT_QUEUE_PACKETS
}

fn default_stall_ms() -> u32 {
    DEFAULT_STALL_MS
}
fn default_on_exit() -> String {
    "keep".into()
}

/// `[fallback]`: the inline pair's kernel fallback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    #[serde(default = "default_stall_ms")]
    stall_ms: u32,
    #[serde(default = "default_on_exit")]
    on_exit: String,
    #[serde(default)]
    link_state: bool,
}

impl Default for RawFallback {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// Default `fallback.stall_ms` (see docs/config.md for how it was chosen).
pub const DEFAULT_STALL_MS: u32 = 50;
/// Bounds of `fallback.stall_ms`.
const STALL_MS_MIN: u32 = 5;
const STALL_MS_MAX: u32 = 1000;

/// What happens to the inline ports' programs when the dataplane exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// The sidecar keeps the links: the kernel fallback carries the wire.
    Keep,
    /// The programs go with the process (the link goes dark).
    Detach,
}

impl OnExit {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExit::Keep => "keep",
            OnExit::Detach => "detach",
        }
    }
}

/// The inline pair's kernel fallback (`[fallback]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackConfig {
    /// A worker that has not polled for this long loses its queues to the
    /// kernel fallback.
    pub stall_ms: u32,
    pub on_exit: OnExit,
    /// inline-1 losing carrier sets inline-2 down, and back.
    pub link_state: bool,
}

fn validate_fallback(f: RawFallback) -> Result<FallbackConfig, ConfigError> {
    if !(STALL_MS_MIN..=STALL_MS_MAX).contains(&f.stall_ms) {
        return Err(err(
            "fallback.stall_ms",
            format!(
                "{} must be from {STALL_MS_MIN} to {STALL_MS_MAX}",
                f.stall_ms
            ),
        ));
    }
    let on_exit = match f.on_exit.as_str() {
        "keep" => OnExit::Keep,
        "detach" => OnExit::Detach,
        other => {
            return Err(err(
                "fallback.on_exit",
                format!("{other:?} is not one of \"keep\" (the sidecar keeps the kernel fallback forwarding) or \"detach\""),
            ))
        }
    };
    Ok(FallbackConfig {
        stall_ms: f.stall_ms,
        on_exit,
        link_state: f.link_state,
    })
}

/// `[tap]`: caps of live taps (`Admin.Tap`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTap {
    #[serde(default = "default_tap_max_concurrent")]
    max_concurrent: usize,
    #[serde(default = "default_tap_max_snaplen")]
    max_snaplen: u32,
    /// Default: `max_snaplen`.
    #[serde(default)]
    default_snaplen: Option<u32>,
    #[serde(default = "default_tap_max_duration_s")]
    max_duration_s: u64,
    #[serde(default = "default_tap_queue_packets")]
    queue_packets: usize,
}

impl Default for RawTap {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

// ---------------------------------------------------------------------------
// Validated configuration.

/// What a worker does when it finds no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleMode {
    /// Spin forever: lowest latency, one CPU per worker at 100%.
    Busy,
    /// After `spins` empty polls, block in poll(2) for up to `wait_ms`
    /// (woken at once by the next frame).
    Backoff { spins: u32, wait_ms: u32 },
}

/// The inline pair, always complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePair {
    pub side1: String,
    pub side2: String,
}

/// Worker-thread settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// CPUs to pin one worker each to; empty: one unpinned worker per task.
    pub cpus: Vec<usize>,
    pub batch_size: u32,
    pub idle: IdleMode,
    /// How often workers refresh the kernel's `XDP_STATISTICS`.
    pub kernel_stats_interval_ms: u32,
}

/// A role of the control API; a higher role includes the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: info, stats, chain, watches.
    View,
    /// Chain changes: `SetChain`, `SetHopBypass`.
    Edit,
    /// Everything, including `Tap` (packet contents).
    Admin,
}

impl Role {
    /// The role's name as written in configuration and token files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
        }
    }

    /// Parses `view`, `edit` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "view" => Some(Role::View),
            "edit" => Some(Role::Edit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub grpc_listen: std::net::SocketAddr,
    /// Plaintext gRPC with only `grpc.health.v1.Health` (kubelet probes).
    pub health_listen: std::net::SocketAddr,
    /// HTTP `/metrics` (Prometheus text format).
    pub metrics_listen: std::net::SocketAddr,
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

/// A passive output group: the instances of one sensor. Every captured
/// frame its filter accepts goes to exactly one member, chosen by the
/// symmetric flow hash.
#[derive(Debug, Clone)]
pub struct OutputGroup {
    pub name: String,
    /// Interfaces, in order; a flow's member is `hash % members.len()`.
    pub members: Vec<String>,
    /// `None`: every frame.
    pub filter: Option<Filter>,
    /// Bytes transmitted of each frame; 0: whole frames.
    pub snaplen: u32,
    /// Members fit despite a default route or a routable address
    /// (`allowed_interfaces`; see [`crate::xdp::netdev::unfit_reason`]).
    pub allowed: Vec<String>,
}

/// A recorder: its filter stage and its disk side.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// `None`: every frame.
    pub filter: Option<Filter>,
    pub settings: RecordSettings,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub passive: Option<String>,
    pub inline: Option<InlinePair>,
    pub state_dir: PathBuf,
    pub workers: WorkerConfig,
    pub xdp_mode: XdpMode,
    pub geometry: Geometry,
    /// Hold every configured interface in promiscuous mode while running.
    pub promiscuous: bool,
    /// Uids besides the dataplane's own allowed on the command socket.
    pub command_uids: Vec<u32>,
    /// Seconds between counter summaries in the log; 0 disables them.
    pub log_stats_interval_s: u32,
    /// The initial chain (a chain persisted in `state_dir` takes precedence).
    pub chain: ChainSpec,
    /// How long a removed hop's tool is given to return the frames inside it
    /// before its ports are closed.
    pub chain_drain_ms: u32,
    /// `[chain] allowed_interfaces`: tool ports allowed despite a default
    /// route or a routable address.
    pub chain_allowed: Vec<String>,
    pub heartbeat: Timing,
    /// Caps of live taps (`[tap]`).
    pub tap: TapSettings,
    pub control: ControlConfig,
    /// The inline pair's kernel fallback (`[fallback]`).
    pub fallback: FallbackConfig,
    /// Passive output groups (`[[output_group]]`), in order.
    pub output_groups: Vec<OutputGroup>,
    /// Recorders (`[[recorder]]`), in order.
    pub recorders: Vec<RecorderConfig>,
}

/// A configuration problem, rendered as one line naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending key (`xdp.frame_size`), or `config` for the file itself.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates `path`: a regular file of at most
    /// [`MAX_CONFIG_BYTES`], opened without blocking (a FIFO or a device
    /// is refused, never read).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::parse(&read_bounded(path)?)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        validate(raw)
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
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
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

fn check_ifname(field: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(err(
            field,
            format!("{name:?} is not a valid interface name (1 to {IFNAME_MAX} bytes)"),
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(err(
            field,
            format!("{name:?} is not a valid interface name (no '/', ':', spaces or control characters; not . or ..)"),
        ));
    }
    Ok(name.to_string())
}

/// CPUs in this process's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

fn check_ring(field: &str, v: u32) -> Result<u32, ConfigError> {
    if !v.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&v) {
        return Err(err(
            field,
            format!("{v} must be a power of two from {MIN_RING} to {MAX_RING}"),
        ));
    }
    Ok(v)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let i = raw.interfaces;
    let passive = i
        .passive_1
        .as_deref()
        .map(|n| check_ifname("interfaces.passive-1", n))
        .transpose()?;
    let inline = match (i.inline_1.as_deref(), i.inline_2.as_deref()) {
        (Some(a), Some(b)) => {
            let side1 = check_ifname("interfaces.inline-1", a)?;
            let side2 = check_ifname("interfaces.inline-2", b)?;
            if side1 == side2 {
                return Err(err(
                    "interfaces.inline-2",
                    format!("{side2:?} is also inline-1: the two inline sides must be different interfaces"),
                ));
            }
            Some(InlinePair { side1, side2 })
        }
        (Some(_), None) => {
            return Err(err(
                "interfaces.inline-2",
                "missing: inline-1 and inline-2 come as a pair; set both or neither",
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "interfaces.inline-1",
                "missing: inline-1 and inline-2 come as a pair; set both or neither",
            ))
        }
        (None, None) => None,
    };
    if passive.is_none() && inline.is_none() {
        return Err(err(
            "interfaces",
            "no interface configured: set passive-1, or inline-1 and inline-2, or all three",
        ));
    }
    if let (Some(p), Some(pair)) = (&passive, &inline) {
        if *p == pair.side1 || *p == pair.side2 {
            return Err(err(
                "interfaces.passive-1",
                format!("{p:?} is also an inline side: passive-1 needs its own interface"),
            ));
        }
    }

    let d = raw.dataplane;
    if d.state_dir.as_os_str().is_empty() || !d.state_dir.is_absolute() {
        return Err(err(
            "dataplane.state_dir",
            format!(
                "{:?} must be an absolute path (the pod's shared emptyDir)",
                d.state_dir
            ),
        ));
    }
    if !d.cpus.is_empty() {
        // Check against the CPUs this process may run on (its affinity
        // mask: a Kubernetes cpuset, taskset), not just the CPU count.
        let allowed = allowed_cpus();
        for &c in &d.cpus {
            if !allowed.contains(&c) {
                return Err(err(
                    "dataplane.cpus",
                    format!("CPU {c} is not available to this process (allowed: {allowed:?}); list only allowed CPUs or leave cpus empty"),
                ));
            }
        }
    }
    let mut sorted = d.cpus.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != d.cpus.len() {
        return Err(err(
            "dataplane.cpus",
            "a CPU is listed twice: list each CPU once",
        ));
    }
    if !(1..=MAX_BATCH).contains(&d.batch_size) {
        return Err(err(
            "dataplane.batch_size",
            format!("{} must be from 1 to {MAX_BATCH}", d.batch_size),
        ));
    }
    if d.idle_wait_ms == 0 || d.idle_wait_ms > 1000 {
        return Err(err(
            "dataplane.idle_wait_ms",
            format!("{} must be from 1 to 1000", d.idle_wait_ms),
        ));
    }
    if d.idle_spins > MAX_IDLE_SPINS {
        return Err(err(
            "dataplane.idle_spins",
            format!("{} must be at most {MAX_IDLE_SPINS}", d.idle_spins),
        ));
    }
    let idle = match d.idle.as_str() {
        "busy" => IdleMode::Busy,
        "backoff" => IdleMode::Backoff {
            spins: d.idle_spins,
            wait_ms: d.idle_wait_ms,
        },
        other => {
            return Err(err(
                "dataplane.idle",
                format!("{other:?} is not an idle mode: use \"busy\" or \"backoff\""),
            ))
        }
    };
    if !(10..=60_000).contains(&d.kernel_stats_interval_ms) {
        return Err(err(
            "dataplane.kernel_stats_interval_ms",
            format!("{} must be from 10 to 60000", d.kernel_stats_interval_ms),
        ));
    }

    let x = raw.xdp;
    let xdp_mode = match x.mode.as_str() {
        "auto" => XdpMode::Auto,
        "native-zerocopy" => XdpMode::NativeZeroCopy,
        "native-copy" => XdpMode::NativeCopy,
        "generic" => XdpMode::Generic,
        other => {
            return Err(err(
                "xdp.mode",
                format!("{other:?} is not a mode: use \"auto\", \"native-zerocopy\", \"native-copy\" or \"generic\""),
            ))
        }
    };
    if !crate::xdp::umem::FRAME_SIZES.contains(&x.frame_size) {
        return Err(err(
            "xdp.frame_size",
            format!("{} must be 2048 or 4096", x.frame_size),
        ));
    }
    let ring = check_ring("xdp.ring_size", x.ring_size)?;
    if d.batch_size > ring {
        return Err(err(
            "dataplane.batch_size",
            format!("{} is larger than xdp.ring_size {ring}", d.batch_size),
        ));
    }
    if x.frame_count < 2 * ring || x.frame_count > MAX_FRAMES {
        return Err(err(
            "xdp.frame_count",
            format!(
                "{} must be from 2 x ring_size ({}) to {MAX_FRAMES}, so both fill rings of a bridge can be full",
                x.frame_count,
                2 * ring
            ),
        ));
    }

    let c = raw.control;
    let addr = |field: &str, v: &str| -> Result<std::net::SocketAddr, ConfigError> {
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
    if !(100..=60_000).contains(&c.dataplane_stale_ms) {
        return Err(err(
            "control.dataplane_stale_ms",
            format!("{} must be from 100 to 60000", c.dataplane_stale_ms),
        ));
    }
    // Unset: reads stay open as long as no reading credential is
    // configured (the behaviour before roles existed, where only
    // observer_token_file closed the Observer).
    let read_credentials =
        c.token_file.is_some() || c.observer_token_file.is_some() || c.tls_client_ca_file.is_some();
    let anonymous_role = match c.anonymous_role.as_deref() {
        None => (!read_credentials).then_some(Role::View),
        Some("none") => None,
        Some(v) => match Role::parse(v) {
            Some(Role::View) => Some(Role::View),
            _ => {
                return Err(err(
                    "control.anonymous_role",
                    format!(
                        "{v:?} is not allowed: use \"none\" or \"view\" (changes and taps always need credentials)"
                    ),
                ))
            }
        },
    };
    let tls = match (c.tls_cert_file, c.tls_key_file) {
        (None, None) => {
            for (field, set) in [
                ("control.tls_client_ca_file", c.tls_client_ca_file.is_some()),
                ("control.tls_client_auth", c.tls_client_auth.is_some()),
                ("control.client_roles", !c.client_roles.is_empty()),
            ] {
                if set {
                    return Err(err(
                        field,
                        "needs TLS: set control.tls_cert_file and control.tls_key_file too",
                    ));
                }
            }
            None
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
        (Some(cert_file), Some(key_file)) => {
            let client_auth_required = match c.tls_client_auth.as_deref() {
                None | Some("require") => true,
                Some("optional") => false,
                Some(v) => {
                    return Err(err(
                        "control.tls_client_auth",
                        format!("{v:?} is not \"require\" or \"optional\""),
                    ))
                }
            };
            if c.tls_client_ca_file.is_none() {
                for (field, set) in [
                    ("control.tls_client_auth", c.tls_client_auth.is_some()),
                    ("control.client_roles", !c.client_roles.is_empty()),
                ] {
                    if set {
                        return Err(err(
                            field,
                            "needs client certificates: set control.tls_client_ca_file too",
                        ));
                    }
                }
            }
            let mut client_roles = Vec::new();
            for (subject, role) in c.client_roles {
                if subject.is_empty() || subject.chars().any(char::is_control) {
                    return Err(err(
                        "control.client_roles",
                        format!("{subject:?} is not a subject (a CN or a SAN URI)"),
                    ));
                }
                let Some(r) = Role::parse(&role) else {
                    return Err(err(
                        &format!("control.client_roles.{subject:?}"),
                        format!("{role:?} is not a role: use \"view\", \"edit\" or \"admin\""),
                    ));
                };
                client_roles.push((subject, r));
            }
            Some(TlsSettings {
                cert_file,
                key_file,
                client_ca_file: c.tls_client_ca_file,
                client_auth_required,
                client_roles,
            })
        }
    };
    let control = ControlConfig {
        grpc_listen,
        health_listen,
        metrics_listen,
        admin_token_file: c.admin_token_file,
        observer_token_file: c.observer_token_file,
        token_file: c.token_file,
        anonymous_role,
        tls,
        dataplane_stale_ms: c.dataplane_stale_ms,
    };

    let action = |field: &str, v: &str| {
        match v {
        "bypass" => Ok(FailureAction::Bypass),
        "drop" => Ok(FailureAction::Drop),
        other => Err(err(
            field,
            format!("{other:?} is not a failure action: use \"bypass\" (fail open) or \"drop\" (fail closed)"),
        )),
    }
    };
    let ch = raw.chain;
    let mut hops = Vec::new();
    for (i, h) in ch.hops.into_iter().enumerate() {
        let on_failure = match &h.on_failure {
            Some(v) => Some(action(&format!("chain.hops[{i}].on_failure"), v)?),
            None => None,
        };
        hops.push(HopSpec {
            name: h.name,
            a: h.a,
            b: h.b,
            on_failure,
        });
    }
    let chain = ChainSpec {
        hops,
        default_on_failure: action("chain.default_on_failure", &ch.default_on_failure)?,
    };
    if !chain.hops.is_empty() && inline.is_none() {
        return Err(err(
            "chain.hops",
            "a chain needs the inline pair: set [interfaces] inline-1 and inline-2, or remove the hops",
        ));
    }
    // Names and interfaces are checked like an API update (validate() in
    // chain::spec) when the dataplane starts; here only what needs no
    // machine.
    if chain.hops.len() > crate::chain::spec::MAX_HOPS {
        return Err(err(
            "chain.hops",
            format!(
                "{} hops: a chain has at most {}",
                chain.hops.len(),
                crate::chain::spec::MAX_HOPS
            ),
        ));
    }
    if !(10..=60_000).contains(&ch.drain_ms) {
        return Err(err(
            "chain.drain_ms",
            format!("{} must be from 10 to 60000", ch.drain_ms),
        ));
    }
    let hb = raw.heartbeat;
    if !(1..=10_000).contains(&hb.interval_ms) {
        return Err(err(
            "heartbeat.interval_ms",
            format!("{} must be from 1 to 10000", hb.interval_ms),
        ));
    }
    if !(1..=60_000).contains(&hb.timeout_ms) {
        return Err(err(
            "heartbeat.timeout_ms",
            format!("{} must be from 1 to 60000", hb.timeout_ms),
        ));
    }
    if !(1..=60).contains(&hb.misses) {
        return Err(err(
            "heartbeat.misses",
            format!("{} must be from 1 to 60", hb.misses),
        ));
    }
    if hb.hold_ms > 3_600_000 {
        return Err(err(
            "heartbeat.hold_ms",
            format!("{} must be at most 3600000 (an hour)", hb.hold_ms),
        ));
    }
    const MS: u64 = 1_000_000;
    let heartbeat = Timing {
        interval_ns: u64::from(hb.interval_ms) * MS,
        timeout_ns: u64::from(hb.timeout_ms) * MS,
        misses: hb.misses,
        hold_ns: u64::from(hb.hold_ms) * MS,
    };

    let tap = validate_tap(raw.tap)?;

    let reserved: Vec<(&str, &str)> = passive
        .iter()
        .map(|p| (p.as_str(), "passive-1"))
        .chain(inline.iter().flat_map(|pair| {
            [
                (pair.side1.as_str(), "inline-1"),
                (pair.side2.as_str(), "inline-2"),
            ]
        }))
        .chain(
            chain
                .hops
                .iter()
                .flat_map(|h| [(h.a.as_str(), "a chain hop"), (h.b.as_str(), "a chain hop")]),
        )
        .collect();
    let output_groups = validate_groups(raw.output_group, passive.is_some(), &reserved)?;
    let recorders = validate_recorders(raw.recorder, passive.is_some())?;
    let fallback = validate_fallback(raw.fallback)?;

    Ok(Config {
        passive,
        inline,
        state_dir: d.state_dir,
        workers: WorkerConfig {
            cpus: d.cpus,
            batch_size: d.batch_size,
            idle,
            kernel_stats_interval_ms: d.kernel_stats_interval_ms,
        },
        xdp_mode,
        geometry: Geometry {
            frame_size: x.frame_size,
            frame_count: x.frame_count,
            rings: RingSizes {
                rx: ring,
                tx: ring,
                fill: ring,
                completion: ring,
            },
        },
        promiscuous: d.promiscuous,
        command_uids: d.command_uids,
        log_stats_interval_s: d.log_stats_interval_s,
        chain,
        chain_drain_ms: ch.drain_ms,
        chain_allowed: check_allowed("chain.allowed_interfaces", ch.allowed_interfaces)?,
        heartbeat,
        tap,
        control,
        fallback,
        output_groups,
        recorders,
    })
}

/// Most taps `tap.max_concurrent` allows.
const MAX_TAPS: usize = 64;
/// Bounds of the tap snap lengths (pcap's usual maximum).
const TAP_SNAPLEN_MIN: u32 = 64;
const TAP_SNAPLEN_MAX: u32 = 262_144;
/// Longest `tap.max_duration_s`: a day.
const TAP_DURATION_MAX_S: u64 = 86_400;
/// Bounds of `tap.queue_packets`.
const TAP_QUEUE_MIN: usize = 16;
const TAP_QUEUE_MAX: usize = 1 << 20;

fn validate_tap(t: RawTap) -> Result<TapSettings, ConfigError> {
    if t.max_concurrent > MAX_TAPS {
        return Err(err(
            "tap.max_concurrent",
            format!(
                "{} must be from 0 (taps disabled) to {MAX_TAPS}",
                t.max_concurrent
            ),
        ));
    }
    if !(TAP_SNAPLEN_MIN..=TAP_SNAPLEN_MAX).contains(&t.max_snaplen) {
        return Err(err(
            "tap.max_snaplen",
            format!(
                "{} must be from {TAP_SNAPLEN_MIN} to {TAP_SNAPLEN_MAX} bytes",
                t.max_snaplen
            ),
        ));
    }
    let default_snaplen = t.default_snaplen.unwrap_or(t.max_snaplen);
    if !(TAP_SNAPLEN_MIN..=t.max_snaplen).contains(&default_snaplen) {
        return Err(err(
            "tap.default_snaplen",
            format!(
                "{default_snaplen} must be from {TAP_SNAPLEN_MIN} to tap.max_snaplen ({})",
                t.max_snaplen
            ),
        ));
    }
    if !(1..=TAP_DURATION_MAX_S).contains(&t.max_duration_s) {
        return Err(err(
            "tap.max_duration_s",
            format!(
                "{} must be from 1 to {TAP_DURATION_MAX_S} (a day)",
                t.max_duration_s
            ),
        ));
    }
    if !(TAP_QUEUE_MIN..=TAP_QUEUE_MAX).contains(&t.queue_packets) {
        return Err(err(
            "tap.queue_packets",
            format!(
                "{} must be from {TAP_QUEUE_MIN} to {TAP_QUEUE_MAX}",
                t.queue_packets
            ),
        ));
    }
    Ok(TapSettings {
        max_concurrent: t.max_concurrent,
        max_snaplen: t.max_snaplen,
        default_snaplen,
        max_duration: std::time::Duration::from_secs(t.max_duration_s),
        queue_packets: t.queue_packets,
    })
}

/// Most members in one output group.
pub const MAX_GROUP_MEMBERS: usize = 64;
/// Most output groups.
pub const MAX_OUTPUT_GROUPS: usize = 16;
/// Most recorders.
pub const MAX_RECORDERS: usize = 4;
/// Largest snap length (pcap's usual maximum).
pub const MAX_SNAPLEN: u32 = 262_144;
/// Smallest rotation size of a recorder.
const MIN_ROTATE_BYTES: u64 = 64 << 10;
/// Smallest recorder queue.
const MIN_QUEUE_BYTES: usize = 1 << 20;
/// Smallest non-zero snap length: an Ethernet header and an IP header.
const MIN_SNAPLEN: u32 = 64;

/// Output and recorder names: they appear in metrics labels and file names.
fn check_output_name(field: &str, name: &str, seen: &mut Vec<String>) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= crate::xdp::shm::OUTPUT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(err(
            field,
            format!(
                "{name:?} is not a valid name: 1 to {} letters, digits, '-' or '_', starting with a letter or digit",
                crate::xdp::shm::OUTPUT_NAME_BYTES
            ),
        ));
    }
    if seen.iter().any(|n| n == name) {
        return Err(err(
            field,
            format!("{name:?} is used twice: names must be unique"),
        ));
    }
    seen.push(name.to_string());
    Ok(())
}

fn check_filter(field: &str, expr: &str) -> Result<Option<Filter>, ConfigError> {
    if expr.trim().is_empty() {
        return Ok(None);
    }
    match Filter::compile(expr) {
        Ok(f) => Ok(Some(f)),
        Err(e) => Err(err(field, format!("{e} in {expr:?}"))),
    }
}

fn check_snaplen(field: &str, v: u32) -> Result<u32, ConfigError> {
    if v != 0 && !(MIN_SNAPLEN..=MAX_SNAPLEN).contains(&v) {
        return Err(err(
            field,
            format!("{v} must be 0 (whole frames) or from {MIN_SNAPLEN} to {MAX_SNAPLEN}"),
        ));
    }
    Ok(v)
}

fn validate_groups(
    raw: Vec<RawOutputGroup>,
    have_passive: bool,
    reserved: &[(&str, &str)],
) -> Result<Vec<OutputGroup>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if !have_passive {
        return Err(err(
            "output_group",
            "output groups fan out passive-1's traffic: set [interfaces] passive-1, or remove the groups",
        ));
    }
    if raw.len() > MAX_OUTPUT_GROUPS {
        return Err(err(
            "output_group",
            format!("{} groups: at most {MAX_OUTPUT_GROUPS}", raw.len()),
        ));
    }
    let mut names = Vec::new();
    let mut used: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, g) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("output_group[{i}].{k}");
        check_output_name(&at("name"), &g.name, &mut names)?;
        if g.members.is_empty() || g.members.len() > MAX_GROUP_MEMBERS {
            return Err(err(
                &at("members"),
                format!(
                    "{} members: a group has 1 to {MAX_GROUP_MEMBERS} interfaces",
                    g.members.len()
                ),
            ));
        }
        for (j, m) in g.members.iter().enumerate() {
            let field = format!("output_group[{i}].members[{j}]");
            check_ifname(&field, m)?;
            if let Some((_, role)) = reserved.iter().find(|(n, _)| n == m) {
                return Err(err(
                    &field,
                    format!("{m:?} is already {role}: a member needs its own interface"),
                ));
            }
            if let Some((_, other)) = used.iter().find(|(n, _)| n == m) {
                return Err(err(
                    &field,
                    format!("{m:?} is already a member of group {other:?}: an interface belongs to one group"),
                ));
            }
            used.push((m.clone(), g.name.clone()));
        }
        out.push(OutputGroup {
            filter: check_filter(&at("filter"), &g.filter)?,
            snaplen: check_snaplen(&at("snaplen"), g.snaplen)?,
            allowed: check_allowed(&at("allowed_interfaces"), g.allowed_interfaces)?,
            name: g.name,
            members: g.members,
        });
    }
    Ok(out)
}

/// An `allowed_interfaces` list: valid interface names.
fn check_allowed(field: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for (i, n) in names.iter().enumerate() {
        check_ifname(&format!("{field}[{i}]"), n)?;
    }
    Ok(names)
}

/// Parses "64MiB", "1G", "512k", "1048576" (binary units: k = KiB).
fn parse_size(field: &str, v: &RawSize) -> Result<u64, ConfigError> {
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

fn validate_recorders(
    raw: Vec<RawRecorder>,
    have_passive: bool,
) -> Result<Vec<RecorderConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if !have_passive {
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
    let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
    for (i, r) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("recorder[{i}].{k}");
        check_output_name(&at("name"), &r.name, &mut names)?;
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
        let retain = |k: &str, v: &Option<RawSize>| -> Result<Option<u64>, ConfigError> {
            match v {
                None => Ok(None),
                Some(v) => Ok(Some(parse_size(&at(k), v)?).filter(|&b| b > 0)),
            }
        };
        let settings = RecordSettings {
            name: r.name,
            dir: r.dir,
            bulk_dir: r.bulk_dir,
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
        if settings.rotate_bytes < MIN_ROTATE_BYTES {
            return Err(err(
                &at("rotate_size"),
                format!(
                    "{} bytes is too small: at least {MIN_ROTATE_BYTES} (64KiB)",
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
        out.push(RecorderConfig {
            filter: check_filter(&at("filter"), &r.filter)?,
            settings,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        Config::parse(text).unwrap_err().field
    }

    #[test]
    fn minimal_configs_get_documented_defaults() {
        let c = Config::parse("[interfaces]\npassive-1 = \"net1\"\n").unwrap();
        assert_eq!(c.passive.as_deref(), Some("net1"));
        assert!(c.inline.is_none());
        assert_eq!(c.state_dir, PathBuf::from("/run/tapline"));
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert_eq!(c.geometry.frame_size, 2048);
        assert_eq!(c.geometry.frame_count, 8192);
        assert_eq!(c.geometry.rings.rx, 2048);
        assert_eq!(c.workers.batch_size, 64);
        assert_eq!(
            c.workers.idle,
            IdleMode::Backoff {
                spins: 1000,
                wait_ms: 10
            }
        );
        assert!(c.promiscuous);
        assert_eq!(c.control.grpc_listen.port(), 50051);
        assert_eq!(c.control.health_listen.port(), 8086);
        assert_eq!(c.control.metrics_listen.port(), 9090);
        assert_eq!(c.control.admin_token_file, None);
        assert_eq!(c.control.dataplane_stale_ms, 1000);
        assert_eq!(c.control.anonymous_role, Some(Role::View));
        assert_eq!(c.control.tls, None);
    }

    #[test]
    fn control_identities_and_tls_keys() {
        let parse = |control: &str| {
            Config::parse(&format!(
                "[interfaces]\npassive-1 = \"p1\"\n[control]\n{control}"
            ))
        };
        // As before roles: admin_token_file alone leaves reads open; any
        // reading credential closes them unless said otherwise.
        let anon = |control: &str| parse(control).unwrap().control.anonymous_role;
        assert_eq!(anon("admin_token_file = \"/a\"\n"), Some(Role::View));
        assert_eq!(anon("observer_token_file = \"/o\"\n"), None);
        assert_eq!(anon("token_file = \"/t\"\n"), None);
        assert_eq!(
            anon("token_file = \"/t\"\nanonymous_role = \"view\"\n"),
            Some(Role::View)
        );
        assert_eq!(anon("anonymous_role = \"none\"\n"), None);
        let c = parse(
            "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
             tls_client_auth = \"optional\"\n[control.client_roles]\n\"spiffe://x/y\" = \"edit\"\n",
        )
        .unwrap();
        let tls = c.control.tls.unwrap();
        assert!(!tls.client_auth_required);
        assert_eq!(
            tls.client_roles,
            vec![("spiffe://x/y".to_string(), Role::Edit)]
        );
        assert_eq!(c.control.anonymous_role, None, "a client CA closes reads");
        for (control, field) in [
            ("anonymous_role = \"edit\"\n", "control.anonymous_role"),
            ("tls_cert_file = \"/c\"\n", "control.tls_key_file"),
            ("tls_key_file = \"/k\"\n", "control.tls_cert_file"),
            (
                "tls_client_ca_file = \"/ca\"\n",
                "control.tls_client_ca_file",
            ),
            ("token_file = \"tokens.csv\"\n", "control.token_file"),
            (
                "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_auth = \"require\"\n",
                "control.tls_client_auth",
            ),
            (
                "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
                 tls_client_auth = \"maybe\"\n",
                "control.tls_client_auth",
            ),
            (
                "tls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_client_ca_file = \"/ca\"\n\
                 [control.client_roles]\nops = \"root\"\n",
                "control.client_roles.\"ops\"",
            ),
        ] {
            let e = parse(control).unwrap_err();
            assert_eq!(e.field, field, "{control}: {e}");
        }
    }

    #[test]
    fn shipped_example_is_valid_and_documented_verbatim() {
        let text = include_str!("../../containers/tapline.toml");
        let c = Config::parse(text).unwrap();
        assert!(c.passive.is_some() && c.inline.is_some());
        let body = &text[text.find("[interfaces]").unwrap()..];
        assert!(
            include_str!("../../docs/config.md").contains(body),
            "docs/config.md must quote containers/tapline.toml from [interfaces] on"
        );
    }

    #[test]
    fn inline_sides_come_as_a_pair() {
        assert_eq!(
            field_of("[interfaces]\ninline-1 = \"a\"\n"),
            "interfaces.inline-2"
        );
        assert_eq!(
            field_of("[interfaces]\ninline-2 = \"a\"\n"),
            "interfaces.inline-1"
        );
        assert_eq!(
            field_of("[interfaces]\ninline-1 = \"a\"\ninline-2 = \"a\"\n"),
            "interfaces.inline-2"
        );
        assert_eq!(
            field_of("[interfaces]\npassive-1 = \"a\"\ninline-1 = \"a\"\ninline-2 = \"b\"\n"),
            "interfaces.passive-1"
        );
        assert_eq!(field_of(""), "interfaces");
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = "[interfaces]\npassive-1 = \"n1\"\n";
        let cases = [
            ("[xdp]\nframe_size = 1000\n", "xdp.frame_size"),
            ("[xdp]\nring_size = 1000\n", "xdp.ring_size"),
            ("[xdp]\nframe_count = 100\n", "xdp.frame_count"),
            ("[xdp]\nmode = \"turbo\"\n", "xdp.mode"),
            ("[dataplane]\nbatch_size = 0\n", "dataplane.batch_size"),
            ("[dataplane]\nbatch_size = 512\n", "dataplane.batch_size"),
            ("[dataplane]\nidle = \"sleepy\"\n", "dataplane.idle"),
            ("[dataplane]\ncpus = [9999]\n", "dataplane.cpus"),
            ("[dataplane]\ncpus = [0, 0]\n", "dataplane.cpus"),
            (
                "[dataplane]\nstate_dir = \"relative\"\n",
                "dataplane.state_dir",
            ),
            ("[dataplane]\nidle_wait_ms = 0\n", "dataplane.idle_wait_ms"),
            (
                "[dataplane]\nidle = \"busy\"\nidle_wait_ms = 0\n",
                "dataplane.idle_wait_ms",
            ),
            (
                "[dataplane]\nidle_spins = 4000000000\n",
                "dataplane.idle_spins",
            ),
            ("[capture]\npromiscuous = true\n", "config"),
            (
                "[control]\ngrpc_listen = \"localhost\"\n",
                "control.grpc_listen",
            ),
            (
                "[control]\nmetrics_listen = \"0.0.0.0:50051\"\n",
                "control.metrics_listen",
            ),
            (
                "[control]\nadmin_token_file = \"token\"\n",
                "control.admin_token_file",
            ),
            (
                "[control]\ndataplane_stale_ms = 5\n",
                "control.dataplane_stale_ms",
            ),
            (
                "[chain]\nhops = [{ name = \"s\", a = \"t1a\", b = \"t1b\", on_failure = \"open\" }]\n",
                "chain.hops[0].on_failure",
            ),
            (
                "[chain]\ndefault_on_failure = \"fail\"\n",
                "chain.default_on_failure",
            ),
            ("[chain]\ndrain_ms = 0\n", "chain.drain_ms"),
            ("[heartbeat]\ninterval_ms = 0\n", "heartbeat.interval_ms"),
            ("[heartbeat]\ntimeout_ms = 0\n", "heartbeat.timeout_ms"),
            ("[heartbeat]\nmisses = 0\n", "heartbeat.misses"),
            ("[heartbeat]\nhold_ms = 4000000\n", "heartbeat.hold_ms"),
        ];
        for (extra, field) in cases {
            let text = format!("{base}{extra}");
            assert_eq!(field_of(&text), field, "for {extra:?}");
        }
        for bad in ["much-too-long-name0", "..", "a\\u0000b", "a\\tb"] {
            assert_eq!(
                field_of(&format!("[interfaces]\npassive-1 = \"{bad}\"\n")),
                "interfaces.passive-1",
                "for {bad:?}"
            );
        }
    }

    #[test]
    fn tap_caps_have_defaults_and_bounds() {
        let base = "[interfaces]\npassive-1 = \"n1\"\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.tap, TapSettings::default());
        assert_eq!(c.tap.max_concurrent, 4);
        assert_eq!((c.tap.max_snaplen, c.tap.default_snaplen), (65_535, 65_535));
        assert_eq!(c.tap.max_duration, std::time::Duration::from_secs(3600));
        assert_eq!(c.tap.queue_packets, 8192);
        let c = Config::parse(&format!(
            "{base}[tap]\nmax_snaplen = 2000\nmax_concurrent = 0\n"
        ))
        .unwrap();
        assert_eq!((c.tap.max_snaplen, c.tap.default_snaplen), (2000, 2000));
        assert_eq!(c.tap.max_concurrent, 0);
        let cases = [
            ("[tap]\nmax_concurrent = 65\n", "tap.max_concurrent"),
            ("[tap]\nmax_snaplen = 10\n", "tap.max_snaplen"),
            ("[tap]\nmax_snaplen = 300000\n", "tap.max_snaplen"),
            (
                "[tap]\nmax_snaplen = 1000\ndefault_snaplen = 2000\n",
                "tap.default_snaplen",
            ),
            ("[tap]\nmax_duration_s = 0\n", "tap.max_duration_s"),
            ("[tap]\nqueue_packets = 1\n", "tap.queue_packets"),
            ("[tap]\nqueue = 1\n", "config"),
        ];
        for (extra, field) in cases {
            assert_eq!(field_of(&format!("{base}{extra}")), field, "for {extra:?}");
        }
    }

    #[test]
    fn output_groups_and_recorders_are_validated() {
        let ok = Config::parse(
            "[interfaces]\npassive-1 = \"p1\"\n\
             [[output_group]]\nname = \"zeek\"\nmembers = [\"z0\", \"z1\"]\nfilter = \"not port 22\"\nsnaplen = 128\n\
             [[recorder]]\nname = \"disk\"\ndir = \"/data/fast\"\nbulk_dir = \"/data/bulk\"\n\
             rotate_size = \"512MiB\"\nretain_size = \"1G\"\nbulk_retain_age_s = 86400\nqueue_size = 16777216\n",
        )
        .unwrap();
        let g = &ok.output_groups[0];
        assert_eq!(
            (g.name.as_str(), g.members.len(), g.snaplen),
            ("zeek", 2, 128)
        );
        assert_eq!(g.filter.as_ref().unwrap().expr(), "not port 22");
        let r = &ok.recorders[0].settings;
        assert_eq!(r.rotate_bytes, 512 << 20);
        assert_eq!(r.retain_bytes, Some(1 << 30));
        assert_eq!(
            r.bulk_retain_age,
            Some(std::time::Duration::from_secs(86400))
        );
        assert_eq!(r.rotate_interval, Some(std::time::Duration::from_secs(300)));
        assert_eq!(r.queue_bytes, 16 << 20);
        assert_eq!((r.retain_age, r.bulk_retain_bytes), (None, None));

        let base = "[interfaces]\npassive-1 = \"p1\"\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n";
        let group = |body: &str| format!("{base}[[output_group]]\nname = \"g\"\n{body}");
        let rec = |body: &str| format!("{base}[[recorder]]\nname = \"r\"\n{body}");
        let cases = [
            (group("members = []\n"), "output_group[0].members"),
            (group("members = [\"p1\"]\n"), "output_group[0].members[0]"),
            (group("members = [\"i2\"]\n"), "output_group[0].members[0]"),
            (group("members = [\"a/b\"]\n"), "output_group[0].members[0]"),
            (group("members = [\"m\"]\nfilter = \"udp and prot 53\"\n"), "output_group[0].filter"),
            (group("members = [\"m\"]\nsnaplen = 10\n"), "output_group[0].snaplen"),
            (group("members = [\"m\"]\ncolour = 1\n"), "config"),
            (
                format!("{base}[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n[[output_group]]\nname = \"h\"\nmembers = [\"m\"]\n"),
                "output_group[1].members[0]",
            ),
            (
                format!("{base}[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n[[output_group]]\nname = \"g\"\nmembers = [\"n\"]\n"),
                "output_group[1].name",
            ),
            (group("name2 = 1\n"), "config"),
            (rec("dir = \"relative\"\n"), "recorder[0].dir"),
            (rec("dir = \"/a\"\nbulk_dir = \"/a\"\n"), "recorder[0].bulk_dir"),
            (rec("dir = \"/a\"\nbulk_retain_age_s = 5\n"), "recorder[0].bulk_retain_size"),
            (rec("dir = \"/a\"\nrotate_size = \"12 parsecs\"\n"), "recorder[0].rotate_size"),
            (rec("dir = \"/a\"\nrotate_size = 100\n"), "recorder[0].rotate_size"),
            (rec("dir = \"/a\"\nqueue_size = \"1k\"\n"), "recorder[0].queue_size"),
            (rec("dir = \"/a\"\nfilter = \"(tcp\"\n"), "recorder[0].filter"),
            ("[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n[[recorder]]\nname = \"r\"\ndir = \"/a\"\n".to_string(), "recorder"),
            ("[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n[[output_group]]\nname = \"g\"\nmembers = [\"m\"]\n".to_string(), "output_group"),
        ];
        for (text, field) in &cases {
            assert_eq!(field_of(text), *field, "for {text:?}");
        }
        // The filter error names the column.
        let e =
            Config::parse(&group("members = [\"m\"]\nfilter = \"udp and prot 53\"\n")).unwrap_err();
        assert!(e.message.contains("column 9"), "{e}");
        // A chain hop's interface cannot be a member.
        let e = field_of(&format!(
            "{base}[chain]\nhops = [{{ name = \"ids\", a = \"t1\", b = \"t2\" }}]\n[[output_group]]\nname = \"g\"\nmembers = [\"t2\"]\n"
        ));
        assert_eq!(e, "output_group[0].members[0]");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_one_line_with_position() {
        let e = Config::parse("[interfaces]\npassive-1 = \"n1\"\n[xdp]\nframesize = 2048\n")
            .unwrap_err();
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("line 4"), "{line}");
        assert!(line.contains("framesize"), "{line}");
        let e = Config::parse("[interfaces\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        // Found by the fuzzer: a carriage return inside a quoted key.
        let e = Config::parse("\"a\rb\" = 1\n").unwrap_err().to_string();
        assert!(!e.contains(['\r', '\n']), "{e:?}");
    }
}
