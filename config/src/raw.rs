//! The file as written: serde types with the documented defaults
//! (docs/config.md), before validation. Values with a fixed set of names
//! stay strings here so that a wrong one is reported with its field path.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) interfaces: RawInterfaces,
    #[serde(default)]
    pub(crate) dataplane: RawDataplane,
    #[serde(default)]
    pub(crate) xdp: RawXdp,
    #[serde(default)]
    pub(crate) chain: RawChain,
    #[serde(default)]
    pub(crate) heartbeat: RawHeartbeat,
    #[serde(default)]
    pub(crate) tap: RawTap,
    #[serde(default)]
    pub(crate) control: RawControl,
    #[serde(default)]
    pub(crate) fallback: RawFallback,
    #[serde(default)]
    pub(crate) output_group: Vec<RawOutputGroup>,
    #[serde(default)]
    pub(crate) recorder: Vec<RawRecorder>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterfaces {
    #[serde(rename = "passive-1")]
    pub(crate) passive_1: Option<String>,
    #[serde(rename = "inline-1")]
    pub(crate) inline_1: Option<String>,
    #[serde(rename = "inline-2")]
    pub(crate) inline_2: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataplane {
    #[serde(default = "default_state_dir")]
    pub(crate) state_dir: PathBuf,
    #[serde(default)]
    pub(crate) cpus: Vec<usize>,
    #[serde(default = "default_batch")]
    pub(crate) batch_size: u32,
    #[serde(default = "default_idle")]
    pub(crate) idle: String,
    #[serde(default = "default_idle_spins")]
    pub(crate) idle_spins: u32,
    #[serde(default = "default_idle_wait_ms")]
    pub(crate) idle_wait_ms: u32,
    #[serde(default = "default_stats_refresh_ms")]
    pub(crate) kernel_stats_interval_ms: u32,
    #[serde(default = "default_log_stats_s")]
    pub(crate) log_stats_interval_s: u32,
    #[serde(default = "default_true")]
    pub(crate) promiscuous: bool,
    #[serde(default)]
    pub(crate) command_uids: Vec<u32>,
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
pub(crate) struct RawXdp {
    #[serde(default = "default_mode")]
    pub(crate) mode: String,
    #[serde(default = "default_frame_size")]
    pub(crate) frame_size: u32,
    #[serde(default = "default_frame_count")]
    pub(crate) frame_count: u32,
    #[serde(default = "default_ring_size")]
    pub(crate) ring_size: u32,
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
pub(crate) struct RawControl {
    #[serde(default = "default_grpc_listen")]
    pub(crate) grpc_listen: String,
    #[serde(default = "default_health_listen")]
    pub(crate) health_listen: String,
    #[serde(default = "default_metrics_listen")]
    pub(crate) metrics_listen: String,
    #[serde(default)]
    pub(crate) admin_token_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) observer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) anonymous_role: Option<String>,
    #[serde(default)]
    pub(crate) tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_key_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_client_auth: Option<String>,
    #[serde(default)]
    pub(crate) client_roles: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_stale_ms")]
    pub(crate) dataplane_stale_ms: u32,
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
pub(crate) struct RawChain {
    #[serde(default)]
    pub(crate) hops: Vec<RawHop>,
    #[serde(default = "default_action")]
    pub(crate) default_on_failure: String,
    #[serde(default = "default_drain_ms")]
    pub(crate) drain_ms: u32,
    #[serde(default)]
    pub(crate) allowed_interfaces: Vec<String>,
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
pub(crate) struct RawHop {
    pub(crate) name: String,
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) on_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutputGroup {
    pub(crate) name: String,
    pub(crate) members: Vec<String>,
    #[serde(default)]
    pub(crate) filter: String,
    #[serde(default)]
    pub(crate) snaplen: u32,
    #[serde(default)]
    pub(crate) allowed_interfaces: Vec<String>,
}

/// A size: bytes as an integer, or a string with a unit ("512MiB", "1G").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSize {
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
pub(crate) struct RawRecorder {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    #[serde(default)]
    pub(crate) bulk_dir: Option<PathBuf>,
    #[serde(default)]
    pub(crate) filter: String,
    #[serde(default)]
    pub(crate) snaplen: u32,
    #[serde(default = "default_rotate_size")]
    pub(crate) rotate_size: RawSize,
    #[serde(default = "default_rotate_interval_s")]
    pub(crate) rotate_interval_s: u64,
    #[serde(default)]
    pub(crate) retain_size: Option<RawSize>,
    #[serde(default)]
    pub(crate) retain_age_s: u64,
    #[serde(default)]
    pub(crate) bulk_retain_size: Option<RawSize>,
    #[serde(default)]
    pub(crate) bulk_retain_age_s: u64,
    #[serde(default = "default_queue_size")]
    pub(crate) queue_size: RawSize,
    #[serde(default)]
    pub(crate) fsync: bool,
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
pub(crate) struct RawHeartbeat {
    #[serde(default = "default_hb_interval")]
    pub(crate) interval_ms: u32,
    #[serde(default = "default_hb_timeout")]
    pub(crate) timeout_ms: u32,
    #[serde(default = "default_hb_misses")]
    pub(crate) misses: u32,
    #[serde(default = "default_hb_hold")]
    pub(crate) hold_ms: u32,
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
    crate::fallback::DEFAULT_STALL_MS
}
fn default_on_exit() -> String {
    "keep".into()
}

/// `[fallback]`: the inline pair's kernel fallback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFallback {
    #[serde(default = "default_stall_ms")]
    pub(crate) stall_ms: u32,
    #[serde(default = "default_on_exit")]
    pub(crate) on_exit: String,
    #[serde(default)]
    pub(crate) link_state: bool,
}

impl Default for RawFallback {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// `[tap]`: caps of live taps (`Admin.Tap`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTap {
    #[serde(default = "default_tap_max_concurrent")]
    pub(crate) max_concurrent: usize,
    #[serde(default = "default_tap_max_snaplen")]
    pub(crate) max_snaplen: u32,
    /// Default: `max_snaplen`.
    #[serde(default)]
    pub(crate) default_snaplen: Option<u32>,
    #[serde(default = "default_tap_max_duration_s")]
    pub(crate) max_duration_s: u64,
    #[serde(default = "default_tap_queue_packets")]
    pub(crate) queue_packets: usize,
}

impl Default for RawTap {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

// ---------------------------------------------------------------------------
