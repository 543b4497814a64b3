//! `taplinectl`: the operator CLI of tapline, a gRPC client of
//! `tapline-control` (the `tapline.v1.Observer` and `tapline.v1.Admin`
//! services and `grpc.health.v1.Health`).
//!
//! Output is a human-readable table by default; `--json` prints JSON whose
//! shape is documented in the `--help` of each verb and is stable: keys are
//! only ever added. Failures print one line on stderr and exit with a code
//! that tells scripts what went wrong (see [`exit`]).
//!
//! No `unsafe` here.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tapline_proto::v1 as pb;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Exit codes (sysexits.h where one fits).
mod exit {
    /// The server answered with an error (or refused a change).
    pub const SERVER: u8 = 1;
    /// Bad command line, endpoint, token file or input file.
    pub const USAGE: u8 = 2;
    /// EX_UNAVAILABLE: `tapline-control` cannot be reached.
    pub const UNREACHABLE: u8 = 69;
    /// EX_NOPERM: the server wants a token, or rejected the one given.
    pub const UNAUTHENTICATED: u8 = 77;
    /// `health` and `status`: the server answered, but its overall health
    /// is not SERVING (grpc_health_probe's "unhealthy" code).
    pub const NOT_SERVING: u8 = 4;
}

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The shortest deadline of `chain set`: tapline-control waits up to 15 s
/// for the dataplane to apply a chain before it answers.
const SET_CHAIN_MIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Health service names of the contract, in display order.
const HEALTH_SERVICES: [&str; 3] = ["", "passive-1", "inline"];

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success
  1   the server answered with an error (including UNIMPLEMENTED: a verb this
      build of tapline-control does not serve) or refused a change
  2   usage: bad arguments, endpoint, token file, TLS file or input file
  4   health and status: the server answered, but the overall health (service
      name \"\") is not SERVING
  69  tapline-control cannot be reached (connection refused, timeout, lost
      connection)
  77  UNAUTHENTICATED or PERMISSION_DENIED: no credentials, credentials that
      were rejected, or an identity whose role is too low for the verb

Identity: one for every verb. --token-file (a file holding the bearer token)
and/or, over https://, a client certificate (--cert, --key) for mTLS; --ca
is the CA bundle that verifies the server. Every option can come from the
environment instead: TAPLINE_ENDPOINT, TAPLINE_TOKEN_FILE, TAPLINE_CA,
TAPLINE_CERT, TAPLINE_KEY, TAPLINE_TLS_SERVER_NAME (the command line wins).

Errors are one line on stderr. --json output only ever gains keys: scripts
must ignore keys they do not know. Enum values are lower-case snake_case
names (\"running\", \"bypass\"), except health statuses, which keep the names
of grpc.health.v1 (\"SERVING\", \"NOT_SERVING\", \"SERVICE_UNKNOWN\"...).
Instants are RFC 3339 strings in UTC, or null when unset.";

const STATUS_HELP: &str = "\
Shows the versions, the dataplane's state and uptime, the health of the
three health service names, the interfaces with the XDP mode each obtained,
and the workers.

--json prints one object:
  {\"endpoint\": URL, \"control_version\": str, \"dataplane_version\": str,
   \"hostname\": str, \"dataplane_state\": \"unknown\"|\"starting\"|\"running\"|
   \"stopped\"|\"unresponsive\", \"dataplane_started_at\": time|null,
   \"dataplane_uptime_ms\": n, \"control_uptime_ms\": n, \"stats_epoch\": n,
   \"health\": {\"\": STATUS, \"inline\": STATUS, \"passive-1\": STATUS},
   \"interfaces\": [{\"role\", \"ifname\", \"hop\", \"ifindex\", \"mac_address\",
     \"driver\", \"mtu_bytes\", \"link_up\", \"xdp_mode\", \"requested_xdp_mode\",
     \"xdp_mode_reason\", \"queues\": [{\"queue_id\", \"xdp_mode\", \"worker_id\"}]}],
   \"workers\": [{\"worker_id\", \"cpu\": n|null,
     \"queues\": [{\"role\", \"ifname\", \"queue_id\"}]}]}";

const STATS_HELP: &str = "\
Prints the counters of every port, one row per queue (plus an \"all\" row for
ports with several queues): packets and bytes received and transmitted,
packets the dataplane dropped (all reasons), and kernel drops (the AF_XDP
socket's rx_dropped + rx_ring_full + rx_invalid_descs + tx_invalid_descs).
Then one row per worker, and, when the inline chain has hops, one row per
hop in chain order: packets sent to and received back from the tool,
packets bypassed around it, drops, heartbeats sent/returned/lost and the
heartbeat round-trip time (p50/p99 over the dataplane's latest window).
Tool ports are listed with the other ports, with their hop in the HOP
column. With passive output groups, one row per group (packets its filter
accepted and rejected, and its members' drops), then one per member
(packets and bytes handed to it, drops, and the reasons that dropped the
most). With recorders, one row per recorder (packets its filter accepted
and rejected, packets and bytes written, files created, packets dropped at
its queue and lost to disk failures, disk errors, the file being
written), then each recorder's last disk error. Then one row per live tap
(id, point, start, packets matched, sent and lost, filter). Counters are
cumulative since the dataplane start named by the epoch.

With --watch, the server sends a snapshot every --interval-ms with rates
computed between consecutive snapshots; the table is redrawn in place when
stdout is a terminal and appended otherwise. Stop with Ctrl-C or --count.

--json prints one object (with --watch, one object per line, per snapshot):
  {\"stats_epoch\": n, \"sampled_at\": time|null, \"dataplane_started_at\": time|null,
   \"dataplane_state\": str, \"rates_window_ms\": n,
   \"interval_ms\": n (--watch only),
   \"ports\": [{\"role\", \"ifname\", \"hop\", \"xdp_mode\", \"totals\": COUNTERS,
     \"kernel\": KERNEL, \"rates\": RATES|null,
     \"queues\": [{\"queue_id\", \"xdp_mode\", \"worker_id\", \"counters\": COUNTERS,
       \"kernel\": KERNEL, \"rates\": RATES|null}]}],
   \"workers\": [{\"worker_id\", \"cpu\": n|null, \"batches\", \"busy_loops\",
     \"idle_loops\", \"idle_waits\", \"batch_latency\": {\"count\", \"window_ns\",
     \"p50_ns\", \"p90_ns\", \"p99_ns\", \"p999_ns\", \"max_ns\"}|null,
     \"rates\": {\"batches_per_second\", \"busy_loop_ratio\",
       \"idle_waits_per_second\"}|null}],
   \"hops\": [{\"name\", \"to_tool_packets\", \"to_tool_bytes\",
     \"from_tool_packets\", \"from_tool_bytes\", \"bypassed_packets\",
     \"bypassed_bytes\", \"dropped_packets\", \"dropped_packets_by_reason\": {reason: n},
     \"heartbeats_sent\", \"heartbeats_returned\", \"heartbeats_late\",
     \"heartbeats_lost\", \"round_trip_latency\": LATENCY|null,
     \"round_trip_latency_histogram\": {\"count\", \"sum_ns\",
       \"buckets\": [{\"upper_bound_ns\", \"count\"}]}|null,
     \"rates\": {\"to_tool_packets_per_second\", \"to_tool_bytes_per_second\",
       \"from_tool_packets_per_second\", \"from_tool_bytes_per_second\",
       \"bypassed_packets_per_second\", \"dropped_packets_per_second\",
       \"heartbeats_lost_per_second\"}|null}],
   \"output_groups\": [{\"name\", \"filter\", \"snap_length_bytes\",
     \"counters\": OUTPUT, \"rates\": OUTPUT_RATES|null,
     \"members\": [{\"name\", \"ifname\", \"recorder\", \"counters\": OUTPUT,
       \"rates\": OUTPUT_RATES|null}]}],
   \"recorders\": [{\"name\", \"directory\", \"current_file\", \"filter\",
     \"snap_length_bytes\", \"files_created\", \"files_completed\",
     \"files_migrated\", \"files_deleted\", \"bytes_written\", \"packets_written\",
     \"queue_dropped_packets\", \"queue_dropped_bytes\", \"disk_dropped_packets\",
     \"disk_errors\", \"last_disk_error\", \"last_disk_error_at\": time|null,
     \"rates\": {\"bytes_written_per_second\", \"packets_written_per_second\",
       \"queue_dropped_packets_per_second\",
       \"disk_dropped_packets_per_second\"}|null,
     \"filter_stage\": OUTPUT|null, \"filter_stage_rates\": OUTPUT_RATES|null}],
   \"taps\": [{\"id\", \"point\", \"filter\", \"started_at\": time|null,
     \"matched_packets\", \"sent_packets\", \"lost_packets\",
     \"rates\": {\"matched_packets_per_second\", \"sent_packets_per_second\",
       \"lost_packets_per_second\"}|null}],
   \"kernel_fallback\": {\"ports\": [{\"role\", \"forwarded\", \"dropped\",
     \"lease_expiries\"}], \"lease_expiries\", \"takeovers\"}|null}
  COUNTERS = {\"rx_packets\", \"rx_bytes\", \"tx_packets\", \"tx_bytes\",
    \"dropped_packets\", \"dropped_packets_by_reason\": {reason: n}}
  OUTPUT = {\"packets\", \"bytes\", \"filtered_out_packets\", \"dropped_packets\",
    \"dropped_packets_by_reason\": {reason: n}}
  OUTPUT_RATES = {\"packets_per_second\", \"bytes_per_second\",
    \"filtered_out_packets_per_second\", \"dropped_packets_per_second\"}
  KERNEL = {\"rx_dropped\", \"rx_invalid_descs\", \"tx_invalid_descs\",
    \"rx_ring_full\", \"rx_fill_ring_empty\", \"tx_ring_empty\"}
  RATES = {\"rx_packets_per_second\", \"rx_bytes_per_second\",
    \"tx_packets_per_second\", \"tx_bytes_per_second\",
    \"dropped_packets_per_second\"}
  LATENCY = {\"count\", \"window_ns\", \"p50_ns\", \"p90_ns\", \"p99_ns\",
    \"p999_ns\", \"max_ns\"}
Histogram buckets are cumulative (each counts the samples at most its
upper bound); the +Inf bucket is \"count\".
Rates are null in a one-shot snapshot, in the first snapshot of a watch and
after the epoch changed (rates_window_ms is 0 then).
kernel_fallback holds the inline ports' kernel fallback counters as the
dataplane copies them into the stats segment (null without an inline pair);
they outlive a restart. While the dataplane is down, stats is unavailable:
`status` shows the link keeper's figures.";

const CHAIN_HELP: &str = "\
The inline chain, as the dataplane reports it: the desired spec and its
generation, the generation the dataplane applied (smaller while an update
is being applied or after one failed to apply), the state of each hop
(state, where its traffic goes, failure action, manual bypass, whether the
tool passes heartbeats, and the last transition with its reason) and the
last rejected update. An empty chain bridges inline-1 and inline-2
directly. When the dataplane does not answer, the server fails the call
with UNAVAILABLE (exit 1).

--json prints one object (chain watch: one per line, per change):
  {\"generation\": n, \"updated_at\": time|null, \"spec\": SPEC,
   \"status\": {\"observed_generation\": n, \"applied_spec\": SPEC|null,
     \"applied_at\": time|null,
     \"hops\": [{\"name\", \"state\": \"unspecified\"|\"up\"|\"down\"|\"bypassed_manual\",
       \"traffic\": \"unspecified\"|\"through_tool\"|\"bypassed\"|\"dropped\",
       \"on_failure\", \"manual_bypass\", \"tool_healthy\",
       \"last_transition_at\": time|null, \"reason\", \"message\"}],
     \"last_rejected\": {\"spec\": SPEC|null, \"generation\": n|null,
       \"rejected_at\": time|null, \"reason\", \"message\",
       \"errors\": [{\"field\", \"message\"}]}|null}|null}
  SPEC = {\"hops\": [{\"name\", \"a\", \"b\", \"on_failure\": \"unspecified\"|\"bypass\"|
    \"drop\"}], \"default_on_failure\": same values}";

const CHAIN_SET_HELP: &str = "\
Replaces the desired chain (Admin.SetChain; needs the Admin token,
--token-file). FILE (\"-\" for stdin) is JSON: either a SPEC,
{\"hops\": [{\"name\": \"ids\", \"a\": \"tool1a\", \"b\": \"tool1b\",
\"on_failure\": \"bypass\"}], \"default_on_failure\": \"drop\"} (on_failure and
default_on_failure may be left out), or the output of `chain get --json`,
whose \"spec\" is used.

The dataplane validates the spec, and unless --dry-run, persists it as the
next generation and applies it before answering. --expected-generation N
makes the change only if the chain is still at generation N (read it with
`chain get`); otherwise the server answers FAILED_PRECONDITION (exit 1)
and nothing changes.

Prints the outcome, the generation after the call and one line per
validation error or warning (\"error: FIELD: MESSAGE\"). Exits 1 when the
spec is invalid (dry run or not: nothing changes), when the expected
generation is stale, and when the dataplane accepted the spec but could not
apply it (the chain in force stays the previous one; see last_rejected in
`chain get`).

--json prints {\"accepted\": bool, \"generation\": n|null, \"valid\": bool,
  \"errors\": [{\"field\", \"message\"}], \"warnings\": [{\"field\", \"message\"}],
  \"applied\": bool, \"chain\": CHAIN|null}
(CHAIN as in `chain get --json`; generation and chain are null when the
server refused an invalid spec, which leaves the chain unchanged; applied
is true when the dataplane applies the generation after the call).";

const CHAIN_BYPASS_HELP: &str = "\
Sets (or with --clear, clears) the manual bypass of one hop
(Admin.SetHopBypass; needs the Admin token, --token-file). While it is set,
traffic goes around the tool whatever its health. The bypass is runtime
state: it does not change the chain's generation, and it goes away when
the hop leaves the chain. An unknown hop fails with NOT_FOUND (exit 1).

Prints the hop's status after the change. --json prints
  {\"hop\": {\"name\", \"state\", \"traffic\", \"on_failure\", \"manual_bypass\",
   \"tool_healthy\", \"last_transition_at\": time|null, \"reason\", \"message\"}}";

const HEALTH_HELP: &str = "\
Checks grpc.health.v1.Health for the service names \"\" (overall),
\"passive-1\" and \"inline\". Works without a token, and against the
health-only port (--endpoint http://HOST:8086) as well. Exits 0 when the
overall status (service name \"\") is SERVING, 4 when the server answered
with another status (like grpc_health_probe), and with the usual codes when
it could not be asked. `status` exits 4 in the same case, after printing.

--json prints {\"endpoint\": URL, \"services\": {\"\": STATUS, \"inline\": STATUS,
  \"passive-1\": STATUS}}, STATUS being \"SERVING\", \"NOT_SERVING\", \"UNKNOWN\"
or \"SERVICE_UNKNOWN\" (the server does not know the name).";

/// The operator CLI of tapline: reads the dataplane's state, counters,
/// health and inline chain from tapline-control.
#[derive(Debug, Parser)]
#[command(name = "taplinectl", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// gRPC endpoint of tapline-control (http://HOST:PORT, or
    /// https://HOST:PORT with --ca; "HOST:PORT" is taken as http).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = DEFAULT_ENDPOINT,
        env = "TAPLINE_ENDPOINT"
    )]
    endpoint: String,
    /// File holding the bearer token of your identity, used for every
    /// verb (its content, trimmed, is sent as `authorization: Bearer
    /// TOKEN`).
    #[arg(long, global = true, value_name = "FILE", env = "TAPLINE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA bundle that verifies tapline-control's certificate (https://).
    #[arg(long, global = true, value_name = "FILE", env = "TAPLINE_CA")]
    ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --key).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TAPLINE_CERT",
        requires = "key"
    )]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TAPLINE_KEY",
        requires = "cert"
    )]
    key: Option<PathBuf>,
    /// The name to verify in the server's certificate, when it differs from
    /// the endpoint's host (e.g. connecting by IP).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "TAPLINE_TLS_SERVER_NAME"
    )]
    tls_server_name: Option<String>,
    /// Print JSON instead of tables (shape in each verb's --help).
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call (not of watches), in milliseconds; `chain set`
    /// waits at least 20000 (the dataplane applies the chain before it
    /// answers).
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Dataplane information and a health summary.
    #[command(after_long_help = STATUS_HELP)]
    Status,
    /// Counters per port and queue, worker, hop, output group, recorder and
    /// live tap (--watch: refreshed, with rates).
    #[command(after_long_help = STATS_HELP)]
    Stats(StatsArgs),
    /// The inline chain: get, watch, set, bypass.
    #[command(subcommand)]
    Chain(ChainVerb),
    /// Health of the service names "", "passive-1" and "inline".
    #[command(after_long_help = HEALTH_HELP)]
    Health,
    /// Live packet tap: copies of the packets at one point, as lines or
    /// pcap (-w).
    #[command(after_long_help = TAP_HELP)]
    Tap(TapArgs),
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Keep printing snapshots, with rates.
    #[arg(long)]
    watch: bool,
    /// Time between snapshots of --watch, in milliseconds (the server may
    /// clamp it).
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "watch")]
    interval_ms: u32,
    /// Stop after this many snapshots (--watch).
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// Only ports in this role (repeatable), e.g. --role inline-1.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum ChainVerb {
    /// Print the chain.
    #[command(after_long_help = CHAIN_HELP)]
    Get,
    /// Print the chain, then again at each change (Ctrl-C to stop).
    #[command(after_long_help = CHAIN_HELP)]
    Watch {
        /// Stop after this many messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Replace the desired chain with the spec in FILE.
    #[command(after_long_help = CHAIN_SET_HELP)]
    Set {
        /// JSON chain spec ("-" for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Only validate the spec; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply only if the current generation is this (compare-and-set).
        #[arg(long, value_name = "N")]
        expected_generation: Option<u64>,
    },
    /// Set or clear the manual bypass of a hop.
    #[command(after_long_help = CHAIN_BYPASS_HELP)]
    Bypass {
        /// Name of the hop.
        hop: String,
        /// Clear the bypass: the hop's health decides again.
        #[arg(long)]
        clear: bool,
        /// Why, for people (shown in the hop's message).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

// ---------------------------------------------------------------------------
// Failures.

/// Why the command failed: one line for stderr and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    /// stdout was closed by its reader (`taplinectl ... | head`): not an
    /// error worth a message.
    fn quiet() -> Failure {
        Failure::new(0, "")
    }
}

/// The innermost cause of an error, as text: "connection refused" rather
/// than tonic's "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        let s = match io.kind() {
            K::ConnectionRefused => "connection refused",
            K::ConnectionReset => "connection reset",
            K::TimedOut => "connection timed out",
            K::HostUnreachable => "host unreachable",
            K::NetworkUnreachable => "network unreachable",
            K::AddrNotAvailable => "address not available",
            _ => return one_line(&io.to_string()),
        };
        return s.to_string();
    }
    let s = one_line(&cur.to_string());
    if s.is_empty() {
        one_line(&e.to_string())
    } else {
        s
    }
}

/// Makes `s` fit on one line.
fn one_line(s: &str) -> String {
    esc(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A server's text made inert for a terminal: control characters (ESC
/// included), line separators and bidirectional overrides are printed as
/// escapes (`\n`, `\u{1b}`), so a hop's reason or a message can neither
/// forge a line nor repaint the screen. Every text from the server goes
/// through this (or through a [`Table`], which applies it to every cell).
fn esc(s: &str) -> String {
    tapline_proto::limits::escape(s).into_owned()
}

/// Where the CLI talks to, and with which token.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    token: Option<MetadataValue<Ascii>>,
    timeout: Duration,
}

impl Target {
    /// Turns a failed call of `what` (e.g. "Observer.GetInfo") into a
    /// [`Failure`] with the exit code of its class.
    fn failure(&self, what: &str, s: &Status) -> Failure {
        let msg = one_line(s.message());
        let detail = if msg.is_empty() {
            String::new()
        } else {
            format!(" (server: {msg})")
        };
        match s.code() {
            Code::PermissionDenied => Failure::new(
                exit::UNAUTHENTICATED,
                format!("permission denied: your identity's role does not allow {what}{detail}"),
            ),
            Code::Unauthenticated => {
                let text = if self.token.is_some() {
                    "the token was rejected: check --token-file"
                } else {
                    "tapline-control requires credentials: pass --token-file (or a client certificate)"
                };
                Failure::new(exit::UNAUTHENTICATED, format!("{text}{detail}"))
            }
            // Only a transport failure carries a cause; an UNAVAILABLE sent
            // by the server (for example: no live dataplane) is its answer.
            Code::Unavailable if std::error::Error::source(s).is_some() => {
                let cause = std::error::Error::source(s)
                    .map(root_cause)
                    .unwrap_or_default();
                Failure::new(
                    exit::UNREACHABLE,
                    format!("cannot reach tapline-control at {}: {cause}", self.url),
                )
            }
            Code::DeadlineExceeded => Failure::new(
                exit::UNREACHABLE,
                format!(
                    "tapline-control at {} did not answer {what} within {} ms",
                    self.url,
                    self.timeout.as_millis()
                ),
            ),
            Code::Unimplemented => Failure::new(
                exit::SERVER,
                format!(
                    "tapline-control at {} does not serve {what} in this build{detail}{}",
                    self.url,
                    if what.starts_with("tapline.v1.") {
                        " (the health-only port serves nothing else: is --endpoint the gRPC port?)"
                    } else {
                        ""
                    }
                ),
            ),
            // A stream cut by the server going away surfaces as UNKNOWN
            // with an h2/io cause.
            Code::Unknown if std::error::Error::source(s).is_some() => Failure::new(
                exit::UNREACHABLE,
                format!(
                    "lost the connection to tapline-control at {}: {}",
                    self.url,
                    std::error::Error::source(s)
                        .map(root_cause)
                        .unwrap_or_default()
                ),
            ),
            code => Failure::new(
                exit::SERVER,
                format!(
                    "{what} failed: {code:?}{}",
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {msg}")
                    }
                ),
            ),
        }
    }

    /// A unary request carrying the call deadline.
    fn unary<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }
}

/// Adds `authorization: Bearer TOKEN` to calls of the tapline.v1 services.
#[derive(Debug, Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Observer = pb::observer_client::ObserverClient<InterceptedService<Channel, Bearer>>;
type Admin = pb::admin_client::AdminClient<InterceptedService<Channel, Bearer>>;

/// Normalises the endpoint: a bare HOST:PORT is taken as http.
fn endpoint_url(raw: &str) -> Result<String, Failure> {
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::usage(format!(
            "--endpoint {raw}: use http://HOST:PORT or https://HOST:PORT"
        )));
    }
    Ok(url)
}

/// Reads a PEM file named by option `opt`.
fn read_pem(opt: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read {opt} {}: {}",
            path.display(),
            root_cause(&e)
        ))
    })
}

/// The TLS settings of an https:// endpoint; `None` for http://.
fn client_tls(cli: &Cli, url: &str) -> Result<Option<ClientTlsConfig>, Failure> {
    let tls_opts = cli.ca.is_some() || cli.cert.is_some() || cli.tls_server_name.is_some();
    if url.starts_with("http://") {
        if tls_opts {
            return Err(Failure::usage(format!(
                "--ca, --cert and --tls-server-name need an https:// endpoint, not {url}"
            )));
        }
        return Ok(None);
    }
    let Some(ca) = &cli.ca else {
        return Err(Failure::usage(
            "an https:// endpoint needs --ca (the CA bundle that signed tapline-control's certificate)",
        ));
    };
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("--ca", ca)?));
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        tls = tls.identity(Identity::from_pem(
            read_pem("--cert", cert)?,
            read_pem("--key", key)?,
        ));
    }
    if let Some(name) = &cli.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

/// Reads and trims the token file.
fn read_token(path: &Path) -> Result<MetadataValue<Ascii>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read --token-file {}: {}",
            path.display(),
            root_cause(&e)
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::usage(format!(
            "--token-file {} is empty",
            path.display()
        )));
    }
    format!("Bearer {token}").parse().map_err(|_| {
        Failure::usage(format!(
            "--token-file {}: the token must be printable ASCII without line breaks",
            path.display()
        ))
    })
}

/// A connected client session.
#[derive(Debug)]
struct Session {
    target: Target,
    channel: Channel,
}

impl Session {
    async fn connect(cli: &Cli) -> Result<Session, Failure> {
        let url = endpoint_url(&cli.endpoint)?;
        let token = cli.token_file.as_deref().map(read_token).transpose()?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Failure::usage(format!("--endpoint {url}: {}", root_cause(&e))))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = client_tls(cli, &url)? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Failure::usage(format!("TLS options: {}", root_cause(&e))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!("cannot reach tapline-control at {url}: {}", root_cause(&e)),
            )
        })?;
        Ok(Session {
            target: Target {
                url,
                token,
                timeout: Duration::from_millis(cli.timeout_ms.max(1)),
            },
            channel,
        })
    }

    fn observer(&self) -> Observer {
        pb::observer_client::ObserverClient::with_interceptor(
            self.channel.clone(),
            Bearer(self.target.token.clone()),
        )
    }

    fn admin(&self) -> Admin {
        pb::admin_client::AdminClient::with_interceptor(
            self.channel.clone(),
            Bearer(self.target.token.clone()),
        )
    }

    /// Checks every health service name; a name the server does not know
    /// is `SERVICE_UNKNOWN`, not a failure.
    async fn health(&self) -> Result<BTreeMap<String, String>, Failure> {
        let mut client = HealthClient::new(self.channel.clone());
        let mut out = BTreeMap::new();
        for service in HEALTH_SERVICES {
            let req = self.target.unary(HealthCheckRequest {
                service: service.to_string(),
            });
            let status = match client.check(req).await {
                Ok(r) => serving_status_name(r.into_inner().status),
                Err(s) if s.code() == Code::NotFound => "SERVICE_UNKNOWN".to_string(),
                Err(s) => return Err(self.target.failure("grpc.health.v1.Health/Check", &s)),
            };
            out.insert(service.to_string(), status);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Output.

/// Writes to stdout; a closed pipe ends the command quietly.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::quiet()
            } else {
                Failure::new(exit::SERVER, format!("writing to stdout: {e}"))
            }
        })
}

fn emit_json<T: Serialize>(v: &T, pretty: bool) -> Result<(), Failure> {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .map_err(|e| Failure::new(exit::SERVER, format!("encoding JSON: {e}")))?;
    emit(&format!("{s}\n"))
}

/// A text table: columns separated by two spaces, numbers right-aligned.
#[derive(Debug)]
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named in `headers`; a name starting with `>` is
    /// right-aligned (the `>` is not shown).
    fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.trim_start_matches('>')).collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is escaped (see [`esc`]).
    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells.iter().map(|c| esc(c)).collect());
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for cells in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(c.chars().count());
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < cells.len() {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567.0` -> `1.23M`: rates with an SI prefix.
fn si(v: f64) -> String {
    let a = v.abs();
    let (d, p) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if p.is_empty() {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}{p}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}{p}")
    } else {
        format!("{x:.2}{p}")
    }
}

/// `3_723_000` ms -> `1h2m3s`.
fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{}.{}s", s, ms % 1000 / 100)
    }
}

/// `1234` ns -> `1.2us`.
fn nanos(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else {
        format!("{ns}ns")
    }
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
}

/// `DATAPLANE_STATE_RUNNING` with prefix `DATAPLANE_STATE_` -> `running`.
fn lower_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

fn dataplane_state_name(v: i32) -> String {
    match pb::DataplaneState::try_from(v) {
        Ok(pb::DataplaneState::Unspecified) => "unknown".into(),
        Ok(s) => lower_name(s.as_str_name(), "DATAPLANE_STATE_"),
        Err(_) => format!("unknown({v})"),
    }
}

fn failure_action_name(v: i32) -> String {
    pb::FailureAction::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "FAILURE_ACTION_"),
    )
}

fn hop_state_name(v: i32) -> String {
    pb::HopState::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "HOP_STATE_"),
    )
}

fn hop_traffic_name(v: i32) -> String {
    pb::HopTraffic::try_from(v).map_or_else(
        |_| format!("unknown({v})"),
        |a| lower_name(a.as_str_name(), "HOP_TRAFFIC_"),
    )
}

fn serving_status_name(v: i32) -> String {
    ServingStatus::try_from(v)
        .map_or_else(|_| format!("UNKNOWN({v})"), |s| s.as_str_name().to_string())
}

// ---------------------------------------------------------------------------
// JSON shapes (stable: keys are only added).

#[derive(Debug, Serialize)]
struct StatusJson {
    endpoint: String,
    control_version: String,
    dataplane_version: String,
    hostname: String,
    dataplane_state: String,
    dataplane_started_at: Option<String>,
    dataplane_uptime_ms: u64,
    control_uptime_ms: u64,
    stats_epoch: u64,
    health: BTreeMap<String, String>,
    interfaces: Vec<InterfaceJson>,
    workers: Vec<WorkerInfoJson>,
    /// The inline pair's kernel fallback; absent when the sidecar holds no
    /// inline links.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_fallback: Option<KernelFallbackJson>,
}

#[derive(Debug, Serialize)]
struct KernelFallbackJson {
    links_held: bool,
    carrying: bool,
    kernel_queues: u32,
    queues: u32,
    action: String,
    lease_expiries: u64,
    takeovers: u64,
    dataplane_connected: bool,
    counters_readable: bool,
    ports: Vec<FallbackPortJson>,
}

#[derive(Debug, Serialize)]
struct FallbackPortJson {
    role: String,
    ifname: String,
    attach: String,
    forwarded: u64,
    dropped: u64,
}

#[derive(Debug, Serialize)]
struct InterfaceJson {
    role: String,
    ifname: String,
    hop: String,
    ifindex: u32,
    mac_address: String,
    driver: String,
    mtu_bytes: u32,
    link_up: bool,
    xdp_mode: String,
    requested_xdp_mode: String,
    xdp_mode_reason: String,
    queues: Vec<QueueInfoJson>,
}

#[derive(Debug, Serialize)]
struct QueueInfoJson {
    queue_id: u32,
    xdp_mode: String,
    worker_id: u32,
}

#[derive(Debug, Serialize)]
struct WorkerInfoJson {
    worker_id: u32,
    cpu: Option<u32>,
    queues: Vec<QueueRefJson>,
}

#[derive(Debug, Serialize)]
struct QueueRefJson {
    role: String,
    ifname: String,
    queue_id: u32,
}

fn status_json(
    url: &str,
    info: pb::GetInfoResponse,
    health: BTreeMap<String, String>,
) -> StatusJson {
    StatusJson {
        endpoint: url.to_string(),
        control_version: info.version,
        dataplane_version: info.dataplane_version,
        hostname: info.hostname,
        dataplane_state: dataplane_state_name(info.dataplane_state),
        dataplane_started_at: time(&info.dataplane_started_at),
        dataplane_uptime_ms: info.dataplane_uptime_ms,
        control_uptime_ms: info.control_uptime_ms,
        stats_epoch: info.stats_epoch,
        health,
        kernel_fallback: info.kernel_fallback.map(|k| KernelFallbackJson {
            links_held: k.links_held,
            carrying: k.carrying,
            kernel_queues: k.kernel_queues,
            queues: k.queues,
            action: k.action,
            lease_expiries: k.lease_expiries,
            takeovers: k.takeovers,
            dataplane_connected: k.dataplane_connected,
            counters_readable: k.counters_readable,
            ports: k
                .ports
                .into_iter()
                .map(|p| FallbackPortJson {
                    role: p.role,
                    ifname: p.ifname,
                    attach: p.attach,
                    forwarded: p.forwarded,
                    dropped: p.dropped,
                })
                .collect(),
        }),
        interfaces: info
            .interfaces
            .into_iter()
            .map(|i| InterfaceJson {
                role: i.role,
                ifname: i.ifname,
                hop: i.hop,
                ifindex: i.ifindex,
                mac_address: i.mac_address,
                driver: i.driver,
                mtu_bytes: i.mtu_bytes,
                link_up: i.link_up,
                xdp_mode: i.xdp_mode,
                requested_xdp_mode: i.requested_xdp_mode,
                xdp_mode_reason: i.xdp_mode_reason,
                queues: i
                    .queues
                    .into_iter()
                    .map(|q| QueueInfoJson {
                        queue_id: q.queue_id,
                        xdp_mode: q.xdp_mode,
                        worker_id: q.worker_id,
                    })
                    .collect(),
            })
            .collect(),
        workers: info
            .workers
            .into_iter()
            .map(|w| WorkerInfoJson {
                worker_id: w.worker_id,
                cpu: w.cpu,
                queues: w
                    .queues
                    .into_iter()
                    .map(|q| QueueRefJson {
                        role: q.role,
                        ifname: q.ifname,
                        queue_id: q.queue_id,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct StatsJson {
    stats_epoch: u64,
    sampled_at: Option<String>,
    dataplane_started_at: Option<String>,
    dataplane_state: String,
    rates_window_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u32>,
    ports: Vec<PortJson>,
    workers: Vec<WorkerJson>,
    hops: Vec<HopJson>,
    output_groups: Vec<OutputGroupJson>,
    recorders: Vec<RecorderJson>,
    taps: Vec<TapStatsJson>,
    kernel_fallback: Option<FallbackStatsJson>,
}

#[derive(Debug, Serialize)]
struct FallbackStatsJson {
    ports: Vec<FallbackPortStatsJson>,
    lease_expiries: u64,
    takeovers: u64,
}

#[derive(Debug, Serialize)]
struct FallbackPortStatsJson {
    role: String,
    forwarded: u64,
    dropped: u64,
    lease_expiries: u64,
}

#[derive(Debug, Serialize)]
struct PortJson {
    role: String,
    ifname: String,
    hop: String,
    xdp_mode: String,
    totals: CountersJson,
    kernel: KernelJson,
    rates: Option<RatesJson>,
    queues: Vec<QueueJson>,
}

#[derive(Debug, Serialize)]
struct QueueJson {
    queue_id: u32,
    xdp_mode: String,
    worker_id: u32,
    counters: CountersJson,
    kernel: KernelJson,
    rates: Option<RatesJson>,
}

#[derive(Debug, Serialize, Default, Clone, PartialEq)]
struct CountersJson {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    dropped_packets: u64,
    dropped_packets_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq)]
struct KernelJson {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty: u64,
    tx_ring_empty: u64,
}

impl KernelJson {
    /// Packets or descriptors the kernel lost (the "KERNEL DROPS" column).
    fn drops(&self) -> u64 {
        self.rx_dropped
            .saturating_add(self.rx_ring_full)
            .saturating_add(self.rx_invalid_descs)
            .saturating_add(self.tx_invalid_descs)
    }
}

#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq)]
struct RatesJson {
    rx_packets_per_second: f64,
    rx_bytes_per_second: f64,
    tx_packets_per_second: f64,
    tx_bytes_per_second: f64,
    dropped_packets_per_second: f64,
}

#[derive(Debug, Serialize)]
struct WorkerJson {
    worker_id: u32,
    cpu: Option<u32>,
    batches: u64,
    busy_loops: u64,
    idle_loops: u64,
    idle_waits: u64,
    batch_latency: Option<LatencyJson>,
    rates: Option<WorkerRatesJson>,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct LatencyJson {
    count: u64,
    window_ns: u64,
    p50_ns: u64,
    p90_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct WorkerRatesJson {
    batches_per_second: f64,
    busy_loop_ratio: f64,
    idle_waits_per_second: f64,
}

#[derive(Debug, Serialize)]
struct HopJson {
    name: String,
    to_tool_packets: u64,
    to_tool_bytes: u64,
    from_tool_packets: u64,
    from_tool_bytes: u64,
    bypassed_packets: u64,
    bypassed_bytes: u64,
    dropped_packets: u64,
    dropped_packets_by_reason: BTreeMap<String, u64>,
    heartbeats_sent: u64,
    heartbeats_returned: u64,
    heartbeats_late: u64,
    heartbeats_lost: u64,
    round_trip_latency: Option<LatencyJson>,
    round_trip_latency_histogram: Option<HistogramJson>,
    rates: Option<HopRatesJson>,
}

#[derive(Debug, Serialize)]
struct HistogramJson {
    count: u64,
    sum_ns: u64,
    buckets: Vec<BucketJson>,
}

#[derive(Debug, Serialize)]
struct BucketJson {
    upper_bound_ns: u64,
    count: u64,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct HopRatesJson {
    to_tool_packets_per_second: f64,
    to_tool_bytes_per_second: f64,
    from_tool_packets_per_second: f64,
    from_tool_bytes_per_second: f64,
    bypassed_packets_per_second: f64,
    dropped_packets_per_second: f64,
    heartbeats_lost_per_second: f64,
}

fn latency_json(l: pb::LatencySummary) -> LatencyJson {
    LatencyJson {
        count: l.count,
        window_ns: l.window_ns,
        p50_ns: l.p50_ns,
        p90_ns: l.p90_ns,
        p99_ns: l.p99_ns,
        p999_ns: l.p999_ns,
        max_ns: l.max_ns,
    }
}

fn hop_json(h: pb::HopStats) -> HopJson {
    HopJson {
        name: h.name,
        to_tool_packets: h.to_tool_packets,
        to_tool_bytes: h.to_tool_bytes,
        from_tool_packets: h.from_tool_packets,
        from_tool_bytes: h.from_tool_bytes,
        bypassed_packets: h.bypassed_packets,
        bypassed_bytes: h.bypassed_bytes,
        dropped_packets: h.dropped_packets,
        dropped_packets_by_reason: h.dropped_packets_by_reason.into_iter().collect(),
        heartbeats_sent: h.heartbeats_sent,
        heartbeats_returned: h.heartbeats_returned,
        heartbeats_late: h.heartbeats_late,
        heartbeats_lost: h.heartbeats_lost,
        round_trip_latency: h.round_trip_latency.map(latency_json),
        round_trip_latency_histogram: h.round_trip_latency_histogram.map(|x| HistogramJson {
            count: x.count,
            sum_ns: x.sum_ns,
            buckets: x
                .buckets
                .into_iter()
                .map(|b| BucketJson {
                    upper_bound_ns: b.upper_bound_ns,
                    count: b.count,
                })
                .collect(),
        }),
        rates: h.rates.map(|r| HopRatesJson {
            to_tool_packets_per_second: r.to_tool_packets_per_second,
            to_tool_bytes_per_second: r.to_tool_bytes_per_second,
            from_tool_packets_per_second: r.from_tool_packets_per_second,
            from_tool_bytes_per_second: r.from_tool_bytes_per_second,
            bypassed_packets_per_second: r.bypassed_packets_per_second,
            dropped_packets_per_second: r.dropped_packets_per_second,
            heartbeats_lost_per_second: r.heartbeats_lost_per_second,
        }),
    }
}

#[derive(Debug, Serialize)]
struct OutputGroupJson {
    name: String,
    filter: String,
    snap_length_bytes: u32,
    counters: OutputCountersJson,
    rates: Option<OutputRatesJson>,
    members: Vec<OutputMemberJson>,
}

#[derive(Debug, Serialize)]
struct OutputMemberJson {
    name: String,
    ifname: String,
    recorder: String,
    counters: OutputCountersJson,
    rates: Option<OutputRatesJson>,
}

#[derive(Debug, Serialize, Default)]
struct OutputCountersJson {
    packets: u64,
    bytes: u64,
    filtered_out_packets: u64,
    dropped_packets: u64,
    dropped_packets_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct OutputRatesJson {
    packets_per_second: f64,
    bytes_per_second: f64,
    filtered_out_packets_per_second: f64,
    dropped_packets_per_second: f64,
}

#[derive(Debug, Serialize)]
struct RecorderJson {
    name: String,
    directory: String,
    current_file: String,
    filter: String,
    snap_length_bytes: u32,
    files_created: u64,
    files_completed: u64,
    files_migrated: u64,
    files_deleted: u64,
    bytes_written: u64,
    packets_written: u64,
    queue_dropped_packets: u64,
    queue_dropped_bytes: u64,
    disk_dropped_packets: u64,
    disk_errors: u64,
    last_disk_error: String,
    last_disk_error_at: Option<String>,
    rates: Option<RecorderRatesJson>,
    filter_stage: Option<OutputCountersJson>,
    filter_stage_rates: Option<OutputRatesJson>,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct RecorderRatesJson {
    bytes_written_per_second: f64,
    packets_written_per_second: f64,
    queue_dropped_packets_per_second: f64,
    disk_dropped_packets_per_second: f64,
}

#[derive(Debug, Serialize)]
struct TapStatsJson {
    id: u64,
    point: String,
    filter: String,
    started_at: Option<String>,
    matched_packets: u64,
    sent_packets: u64,
    lost_packets: u64,
    rates: Option<TapStatsRatesJson>,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct TapStatsRatesJson {
    matched_packets_per_second: f64,
    sent_packets_per_second: f64,
    lost_packets_per_second: f64,
}

fn output_counters_json(c: pb::OutputCounters) -> OutputCountersJson {
    OutputCountersJson {
        packets: c.packets,
        bytes: c.bytes,
        filtered_out_packets: c.filtered_out_packets,
        dropped_packets: c.dropped_packets,
        dropped_packets_by_reason: c.dropped_packets_by_reason.into_iter().collect(),
    }
}

fn output_rates_json(r: pb::OutputRates) -> OutputRatesJson {
    OutputRatesJson {
        packets_per_second: r.packets_per_second,
        bytes_per_second: r.bytes_per_second,
        filtered_out_packets_per_second: r.filtered_out_packets_per_second,
        dropped_packets_per_second: r.dropped_packets_per_second,
    }
}

fn output_group_json(g: pb::OutputGroupStats) -> OutputGroupJson {
    OutputGroupJson {
        name: g.name,
        filter: g.filter,
        snap_length_bytes: g.snap_length_bytes,
        counters: output_counters_json(g.counters.unwrap_or_default()),
        rates: g.rates.map(output_rates_json),
        members: g
            .members
            .into_iter()
            .map(|m| OutputMemberJson {
                name: m.name,
                ifname: m.ifname,
                recorder: m.recorder,
                counters: output_counters_json(m.counters.unwrap_or_default()),
                rates: m.rates.map(output_rates_json),
            })
            .collect(),
    }
}

fn recorder_json(r: pb::RecorderStats) -> RecorderJson {
    RecorderJson {
        last_disk_error_at: time(&r.last_disk_error_at),
        name: r.name,
        directory: r.directory,
        current_file: r.current_file,
        filter: r.filter,
        snap_length_bytes: r.snap_length_bytes,
        files_created: r.files_created,
        files_completed: r.files_completed,
        files_migrated: r.files_migrated,
        files_deleted: r.files_deleted,
        bytes_written: r.bytes_written,
        packets_written: r.packets_written,
        queue_dropped_packets: r.queue_dropped_packets,
        queue_dropped_bytes: r.queue_dropped_bytes,
        disk_dropped_packets: r.disk_dropped_packets,
        disk_errors: r.disk_errors,
        last_disk_error: r.last_disk_error,
        rates: r.rates.map(|x| RecorderRatesJson {
            bytes_written_per_second: x.bytes_written_per_second,
            packets_written_per_second: x.packets_written_per_second,
            queue_dropped_packets_per_second: x.queue_dropped_packets_per_second,
            disk_dropped_packets_per_second: x.disk_dropped_packets_per_second,
        }),
        filter_stage: r.filter_stage.map(output_counters_json),
        filter_stage_rates: r.filter_stage_rates.map(output_rates_json),
    }
}

fn tap_stats_json(t: pb::TapStats) -> TapStatsJson {
    TapStatsJson {
        started_at: time(&t.started_at),
        id: t.id,
        point: t.point,
        filter: t.filter,
        matched_packets: t.matched_packets,
        sent_packets: t.sent_packets,
        lost_packets: t.lost_packets,
        rates: t.rates.map(|r| TapStatsRatesJson {
            matched_packets_per_second: r.matched_packets_per_second,
            sent_packets_per_second: r.sent_packets_per_second,
            lost_packets_per_second: r.lost_packets_per_second,
        }),
    }
}

fn counters_json(c: Option<pb::PacketCounters>) -> CountersJson {
    let c = c.unwrap_or_default();
    CountersJson {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        dropped_packets: c.dropped_packets,
        dropped_packets_by_reason: c.dropped_packets_by_reason.into_iter().collect(),
    }
}

fn kernel_json(k: Option<pb::KernelXdpCounters>) -> KernelJson {
    let k = k.unwrap_or_default();
    KernelJson {
        rx_dropped: k.rx_dropped,
        rx_invalid_descs: k.rx_invalid_descs,
        tx_invalid_descs: k.tx_invalid_descs,
        rx_ring_full: k.rx_ring_full,
        rx_fill_ring_empty: k.rx_fill_ring_empty,
        tx_ring_empty: k.tx_ring_empty,
    }
}

fn rates_json(r: Option<pb::PacketRates>) -> Option<RatesJson> {
    r.map(|r| RatesJson {
        rx_packets_per_second: r.rx_packets_per_second,
        rx_bytes_per_second: r.rx_bytes_per_second,
        tx_packets_per_second: r.tx_packets_per_second,
        tx_bytes_per_second: r.tx_bytes_per_second,
        dropped_packets_per_second: r.dropped_packets_per_second,
    })
}

fn stats_json(s: pb::Stats, interval_ms: Option<u32>) -> StatsJson {
    StatsJson {
        stats_epoch: s.stats_epoch,
        sampled_at: time(&s.sampled_at),
        dataplane_started_at: time(&s.dataplane_started_at),
        dataplane_state: dataplane_state_name(s.dataplane_state),
        rates_window_ms: s.rates_window_ms,
        interval_ms,
        ports: s
            .ports
            .into_iter()
            .map(|p| PortJson {
                role: p.role,
                ifname: p.ifname,
                hop: p.hop,
                xdp_mode: p.xdp_mode,
                totals: counters_json(p.totals),
                kernel: kernel_json(p.kernel_totals),
                rates: rates_json(p.rates),
                queues: p
                    .queues
                    .into_iter()
                    .map(|q| QueueJson {
                        queue_id: q.queue_id,
                        xdp_mode: q.xdp_mode,
                        worker_id: q.worker_id,
                        counters: counters_json(q.counters),
                        kernel: kernel_json(q.kernel),
                        rates: rates_json(q.rates),
                    })
                    .collect(),
            })
            .collect(),
        workers: s
            .workers
            .into_iter()
            .map(|w| WorkerJson {
                worker_id: w.worker_id,
                cpu: w.cpu,
                batches: w.batches,
                busy_loops: w.busy_loops,
                idle_loops: w.idle_loops,
                idle_waits: w.idle_waits,
                batch_latency: w.batch_latency.map(latency_json),
                rates: w.rates.map(|r| WorkerRatesJson {
                    batches_per_second: r.batches_per_second,
                    busy_loop_ratio: r.busy_loop_ratio,
                    idle_waits_per_second: r.idle_waits_per_second,
                }),
            })
            .collect(),
        hops: s.hops.into_iter().map(hop_json).collect(),
        output_groups: s.output_groups.into_iter().map(output_group_json).collect(),
        recorders: s.recorders.into_iter().map(recorder_json).collect(),
        taps: s.taps.into_iter().map(tap_stats_json).collect(),
        kernel_fallback: s.kernel_fallback.map(|f| FallbackStatsJson {
            ports: f
                .ports
                .into_iter()
                .map(|p| FallbackPortStatsJson {
                    role: p.role,
                    forwarded: p.forwarded,
                    dropped: p.dropped,
                    lease_expiries: p.lease_expiries,
                })
                .collect(),
            lease_expiries: f.lease_expiries,
            takeovers: f.takeovers,
        }),
    }
}

/// A chain spec, in and out. `on_failure` and `default_on_failure` may be
/// left out of an input file.
#[derive(Debug, Serialize, Deserialize, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct SpecJson {
    hops: Vec<HopSpecJson>,
    #[serde(default = "unspecified")]
    default_on_failure: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct HopSpecJson {
    name: String,
    a: String,
    b: String,
    #[serde(default = "unspecified")]
    on_failure: String,
}

fn unspecified() -> String {
    "unspecified".into()
}

#[derive(Debug, Serialize)]
struct ChainJson {
    generation: u64,
    updated_at: Option<String>,
    spec: SpecJson,
    status: Option<ChainStatusJson>,
}

#[derive(Debug, Serialize)]
struct ChainStatusJson {
    observed_generation: u64,
    applied_spec: Option<SpecJson>,
    applied_at: Option<String>,
    hops: Vec<HopStatusJson>,
    last_rejected: Option<RejectedJson>,
}

#[derive(Debug, Serialize)]
struct HopStatusJson {
    name: String,
    state: String,
    traffic: String,
    on_failure: String,
    manual_bypass: bool,
    tool_healthy: bool,
    last_transition_at: Option<String>,
    reason: String,
    message: String,
}

#[derive(Debug, Serialize)]
struct RejectedJson {
    spec: Option<SpecJson>,
    generation: Option<u64>,
    rejected_at: Option<String>,
    reason: String,
    message: String,
    errors: Vec<IssueJson>,
}

#[derive(Debug, Serialize)]
struct IssueJson {
    field: String,
    message: String,
}

fn spec_json(s: pb::ChainSpec) -> SpecJson {
    SpecJson {
        default_on_failure: failure_action_name(s.default_on_failure),
        hops: s
            .hops
            .into_iter()
            .map(|h| HopSpecJson {
                on_failure: failure_action_name(h.on_failure),
                name: h.name,
                a: h.a,
                b: h.b,
            })
            .collect(),
    }
}

fn issues_json(v: Vec<pb::ValidationIssue>) -> Vec<IssueJson> {
    v.into_iter()
        .map(|i| IssueJson {
            field: i.field,
            message: i.message,
        })
        .collect()
}

fn hop_status_json(h: pb::HopStatus) -> HopStatusJson {
    HopStatusJson {
        state: hop_state_name(h.state),
        traffic: hop_traffic_name(h.traffic),
        on_failure: failure_action_name(h.on_failure),
        last_transition_at: time(&h.last_transition_at),
        name: h.name,
        manual_bypass: h.manual_bypass,
        tool_healthy: h.tool_healthy,
        reason: h.reason,
        message: h.message,
    }
}

fn chain_json(c: pb::Chain) -> ChainJson {
    ChainJson {
        generation: c.generation,
        updated_at: time(&c.updated_at),
        spec: spec_json(c.spec.unwrap_or_default()),
        status: c.status.map(|s| ChainStatusJson {
            observed_generation: s.observed_generation,
            applied_spec: s.applied_spec.map(spec_json),
            applied_at: time(&s.applied_at),
            hops: s.hops.into_iter().map(hop_status_json).collect(),
            last_rejected: s.last_rejected.map(|r| RejectedJson {
                spec: r.spec.map(spec_json),
                generation: r.generation,
                rejected_at: time(&r.rejected_at),
                reason: r.reason,
                message: r.message,
                errors: issues_json(r.errors),
            }),
        }),
    }
}

#[derive(Debug, Serialize)]
struct SetChainJson {
    accepted: bool,
    /// `None` when the server refused the spec with INVALID_ARGUMENT.
    generation: Option<u64>,
    valid: bool,
    errors: Vec<IssueJson>,
    warnings: Vec<IssueJson>,
    /// The dataplane applies `generation` after the call.
    applied: bool,
    chain: Option<ChainJson>,
}

impl SetChainJson {
    fn from_response(r: pb::SetChainResponse) -> SetChainJson {
        let validation = r.validation.unwrap_or_default();
        let chain = r.chain.map(chain_json);
        SetChainJson {
            accepted: r.accepted,
            generation: Some(r.generation),
            valid: validation.valid,
            errors: issues_json(validation.errors),
            warnings: issues_json(validation.warnings),
            applied: chain
                .as_ref()
                .and_then(|c| c.status.as_ref())
                .is_some_and(|s| s.observed_generation == r.generation),
            chain,
        }
    }

    /// The outcome of a spec the server refused (INVALID_ARGUMENT with the
    /// validation result in the status details).
    fn refused(v: pb::ValidationResult) -> SetChainJson {
        SetChainJson {
            accepted: false,
            generation: None,
            valid: v.valid,
            errors: issues_json(v.errors),
            warnings: issues_json(v.warnings),
            applied: false,
            chain: None,
        }
    }

    /// The update that refused to apply `generation`, if the chain says so.
    fn apply_failure(&self) -> Option<&RejectedJson> {
        let generation = self.generation?;
        self.chain
            .as_ref()?
            .status
            .as_ref()?
            .last_rejected
            .as_ref()
            .filter(|r| r.generation == Some(generation))
    }
}

#[derive(Debug, Serialize)]
struct BypassJson {
    hop: Option<HopStatusJson>,
}

#[derive(Debug, Serialize)]
struct HealthJson {
    endpoint: String,
    services: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// Human renderings.

fn health_label(service: &str) -> &str {
    if service.is_empty() {
        "(overall)"
    } else {
        service
    }
}

fn render_health(h: &HealthJson) -> String {
    let mut t = Table::new(&["SERVICE", "STATUS"]);
    for service in HEALTH_SERVICES {
        let status = h.services.get(service).map_or("?", String::as_str);
        t.row(vec![health_label(service).to_string(), status.to_string()]);
    }
    t.render()
}

fn render_status(s: &StatusJson) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tapline-control {} at {} (up {})",
        s.control_version,
        s.endpoint,
        duration_ms(s.control_uptime_ms)
    );
    let dp = if s.dataplane_started_at.is_some() {
        format!(
            "{}, version {}, up {} (since {}), epoch {:#x}",
            s.dataplane_state,
            if s.dataplane_version.is_empty() {
                "?"
            } else {
                &s.dataplane_version
            },
            duration_ms(s.dataplane_uptime_ms),
            s.dataplane_started_at.as_deref().unwrap_or("?"),
            s.stats_epoch
        )
    } else {
        format!("{} (no dataplane seen yet)", s.dataplane_state)
    };
    let _ = writeln!(out, "dataplane: {dp}");
    if !s.hostname.is_empty() {
        let _ = writeln!(out, "host: {}", s.hostname);
    }
    let health: Vec<String> = HEALTH_SERVICES
        .iter()
        .map(|svc| {
            format!(
                "{} {}",
                health_label(svc),
                s.health.get(*svc).map_or("?", String::as_str)
            )
        })
        .collect();
    let _ = writeln!(out, "health: {}", health.join(", "));
    if let Some(k) = &s.kernel_fallback {
        let state = if k.carrying {
            format!(
                "CARRYING the inline link ({} of {} queues, action {}): the chain is not inspecting",
                k.kernel_queues, k.queues, k.action
            )
        } else {
            format!("standby (action {})", k.action)
        };
        let ports: Vec<String> = k
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} forwarded {} dropped {}",
                    p.role, p.ifname, p.attach, p.forwarded, p.dropped
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "kernel fallback: {state}; lease expiries {}, takeovers {}; {}",
            k.lease_expiries,
            k.takeovers,
            ports.join("; ")
        );
    }
    if !s.interfaces.is_empty() {
        out.push('\n');
        let mut t = Table::new(&[
            "ROLE", "IFNAME", "HOP", "XDP MODE", "LINK", ">MTU", "DRIVER", "MAC", "QUEUES",
        ]);
        for i in &s.interfaces {
            let queues: Vec<String> = i
                .queues
                .iter()
                .map(|q| format!("{}@w{}", q.queue_id, q.worker_id))
                .collect();
            let mode = if i.xdp_mode_reason.is_empty() {
                i.xdp_mode.clone()
            } else {
                format!("{} ({})", i.xdp_mode, i.xdp_mode_reason)
            };
            t.row(vec![
                i.role.clone(),
                i.ifname.clone(),
                dash(&i.hop),
                dash(&mode),
                if i.link_up { "up" } else { "down" }.to_string(),
                i.mtu_bytes.to_string(),
                dash(&i.driver),
                dash(&i.mac_address),
                queues.join(","),
            ]);
        }
        out.push_str(&t.render());
    }
    if !s.workers.is_empty() {
        out.push('\n');
        let mut t = Table::new(&[">WORKER", ">CPU", "QUEUES"]);
        for w in &s.workers {
            let queues: Vec<String> = w
                .queues
                .iter()
                .map(|q| format!("{}/{}:{}", q.role, q.ifname, q.queue_id))
                .collect();
            t.row(vec![
                w.worker_id.to_string(),
                w.cpu.map_or("-".to_string(), |c| c.to_string()),
                queues.join(", "),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        esc(s)
    }
}

fn render_stats(s: &StatsJson) -> String {
    let watch = s.interval_ms.is_some();
    let mut out = String::new();
    let _ = write!(
        out,
        "dataplane {}, epoch {:#x}, sampled {}",
        s.dataplane_state,
        s.stats_epoch,
        s.sampled_at.as_deref().unwrap_or("?")
    );
    if watch {
        if s.rates_window_ms > 0 {
            let _ = write!(out, ", rates over {} ms", s.rates_window_ms);
        } else {
            out.push_str(", no rates yet");
        }
    }
    out.push('\n');
    if s.ports.is_empty() {
        out.push_str("no ports: the dataplane has not published its counters\n");
    } else {
        let mut headers = vec![
            "PORT",
            "IFNAME",
            ">QUEUE",
            "MODE",
            ">RX PACKETS",
            ">RX BYTES",
            ">TX PACKETS",
            ">TX BYTES",
            ">DROPS",
            ">KERNEL DROPS",
        ];
        // Tool ports name their hop; the column is there only with a chain.
        let hop_column = s.ports.iter().any(|p| !p.hop.is_empty());
        if hop_column {
            headers.insert(2, "HOP");
        }
        if watch {
            headers.extend([">RX PKT/S", ">RX B/S", ">TX PKT/S", ">TX B/S", ">DROP/S"]);
        }
        let mut t = Table::new(&headers);
        let row = |t: &mut Table,
                   p: &PortJson,
                   queue: String,
                   mode: &str,
                   c: &CountersJson,
                   k: &KernelJson,
                   r: &Option<RatesJson>| {
            let mut cells = vec![p.role.clone(), p.ifname.clone()];
            if hop_column {
                cells.push(dash(&p.hop));
            }
            cells.extend([
                queue,
                dash(mode),
                c.rx_packets.to_string(),
                c.rx_bytes.to_string(),
                c.tx_packets.to_string(),
                c.tx_bytes.to_string(),
                c.dropped_packets.to_string(),
                k.drops().to_string(),
            ]);
            if watch {
                match r {
                    Some(r) => cells.extend([
                        si(r.rx_packets_per_second),
                        si(r.rx_bytes_per_second),
                        si(r.tx_packets_per_second),
                        si(r.tx_bytes_per_second),
                        si(r.dropped_packets_per_second),
                    ]),
                    None => cells.extend(std::iter::repeat_n("-".to_string(), 5)),
                }
            }
            t.row(cells);
        };
        for p in &s.ports {
            if p.queues.len() != 1 {
                let q = if p.queues.is_empty() { "-" } else { "all" };
                row(
                    &mut t,
                    p,
                    q.into(),
                    &p.xdp_mode,
                    &p.totals,
                    &p.kernel,
                    &p.rates,
                );
            }
            for q in &p.queues {
                row(
                    &mut t,
                    p,
                    q.queue_id.to_string(),
                    &q.xdp_mode,
                    &q.counters,
                    &q.kernel,
                    &q.rates,
                );
            }
        }
        out.push_str(&t.render());
    }
    if !s.workers.is_empty() {
        out.push('\n');
        let mut headers = vec![
            ">WORKER",
            ">CPU",
            ">BATCHES",
            ">IDLE WAITS",
            ">BATCH P50",
            ">P99",
            ">MAX",
        ];
        if watch {
            headers.extend([">BATCH/S", ">BUSY"]);
        }
        let mut t = Table::new(&headers);
        for w in &s.workers {
            let lat = |f: fn(&LatencyJson) -> u64| {
                w.batch_latency
                    .filter(|l| l.count > 0)
                    .map_or("-".to_string(), |l| nanos(f(&l)))
            };
            let mut cells = vec![
                w.worker_id.to_string(),
                w.cpu.map_or("-".to_string(), |c| c.to_string()),
                w.batches.to_string(),
                w.idle_waits.to_string(),
                lat(|l| l.p50_ns),
                lat(|l| l.p99_ns),
                lat(|l| l.max_ns),
            ];
            if watch {
                match w.rates {
                    Some(r) => cells.extend([
                        si(r.batches_per_second),
                        format!("{:.0}%", r.busy_loop_ratio * 100.0),
                    ]),
                    None => cells.extend(["-".to_string(), "-".to_string()]),
                }
            }
            t.row(cells);
        }
        out.push_str(&t.render());
    }
    if !s.hops.is_empty() {
        out.push('\n');
        out.push_str(&render_hops(&s.hops, watch));
    }
    if !s.output_groups.is_empty() {
        out.push('\n');
        out.push_str(&render_output_groups(&s.output_groups, watch));
    }
    if !s.recorders.is_empty() {
        out.push('\n');
        out.push_str(&render_recorders(&s.recorders, watch));
    }
    if !s.taps.is_empty() {
        out.push('\n');
        out.push_str(&render_tap_stats(&s.taps, watch));
    }
    if let Some(f) = &s.kernel_fallback {
        out.push('\n');
        out.push_str(&render_fallback_stats(f));
    }
    out
}

/// The kernel fallback's counters of `stats`, per inline port.
fn render_fallback_stats(f: &FallbackStatsJson) -> String {
    let mut t = Table::new(&[
        "KERNEL FALLBACK",
        ">FORWARDED",
        ">DROPPED",
        ">LEASE EXPIRIES",
    ]);
    for p in &f.ports {
        t.row(vec![
            p.role.clone(),
            p.forwarded.to_string(),
            p.dropped.to_string(),
            p.lease_expiries.to_string(),
        ]);
    }
    format!("{}takeovers: {}\n", t.render(), f.takeovers)
}

/// Drop reasons shown in the TOP DROP REASONS column.
const TOP_DROP_REASONS: usize = 2;

/// The reasons that dropped the most, `reason count` comma separated
/// (ties by name); "-" when nothing was dropped.
fn top_drop_reasons(by_reason: &BTreeMap<String, u64>) -> String {
    let mut counted: Vec<(&String, u64)> = by_reason
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(r, &n)| (r, n))
        .collect();
    // Stable: equal counts stay in name order.
    counted.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    if counted.is_empty() {
        return "-".into();
    }
    counted
        .iter()
        .take(TOP_DROP_REASONS)
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The output groups table of `stats`: one row per group (what its filter
/// accepted, and its members' drops), then one per member.
fn render_output_groups(groups: &[OutputGroupJson], watch: bool) -> String {
    let mut headers = vec![
        "GROUP",
        "MEMBER",
        "IFNAME",
        ">PACKETS",
        ">BYTES",
        ">FILTERED OUT",
        ">DROPS",
    ];
    if watch {
        headers.extend([">PKT/S", ">B/S", ">DROP/S"]);
    }
    headers.push("TOP DROP REASONS");
    let mut t = Table::new(&headers);
    let mut row = |group: &str,
                   member: &str,
                   ifname: &str,
                   c: &OutputCountersJson,
                   filtered_out: String,
                   r: &Option<OutputRatesJson>| {
        let mut cells = vec![
            group.to_string(),
            dash(member),
            dash(ifname),
            c.packets.to_string(),
            c.bytes.to_string(),
            filtered_out,
            c.dropped_packets.to_string(),
        ];
        if watch {
            match r {
                Some(r) => cells.extend([
                    si(r.packets_per_second),
                    si(r.bytes_per_second),
                    si(r.dropped_packets_per_second),
                ]),
                None => cells.extend(std::iter::repeat_n("-".to_string(), 3)),
            }
        }
        cells.push(top_drop_reasons(&c.dropped_packets_by_reason));
        t.row(cells);
    };
    for g in groups {
        let filtered_out = g.counters.filtered_out_packets.to_string();
        row(&g.name, "", "", &g.counters, filtered_out, &g.rates);
        for m in &g.members {
            // Members have no filter of their own.
            row(
                &g.name,
                &m.name,
                &m.ifname,
                &m.counters,
                "-".into(),
                &m.rates,
            );
        }
    }
    t.render()
}

/// The recorders table of `stats`, then the last disk error of each
/// recorder that had one.
fn render_recorders(recorders: &[RecorderJson], watch: bool) -> String {
    let mut headers = vec![
        "RECORDER",
        ">ACCEPTED",
        ">FILTERED OUT",
        ">WRITTEN",
        ">BYTES WRITTEN",
        ">FILES",
        ">QUEUE DROPS",
        ">DISK DROPS",
        ">DISK ERRORS",
    ];
    if watch {
        headers.extend([">WRITE PKT/S", ">WRITE B/S", ">QDROP/S"]);
    }
    headers.push("CURRENT FILE");
    let mut t = Table::new(&headers);
    for r in recorders {
        let stage = |f: fn(&OutputCountersJson) -> u64| {
            r.filter_stage
                .as_ref()
                .map_or("-".to_string(), |c| f(c).to_string())
        };
        let mut cells = vec![
            r.name.clone(),
            stage(|c| c.packets),
            stage(|c| c.filtered_out_packets),
            r.packets_written.to_string(),
            r.bytes_written.to_string(),
            r.files_created.to_string(),
            r.queue_dropped_packets.to_string(),
            r.disk_dropped_packets.to_string(),
            r.disk_errors.to_string(),
        ];
        if watch {
            match r.rates {
                Some(x) => cells.extend([
                    si(x.packets_written_per_second),
                    si(x.bytes_written_per_second),
                    si(x.queue_dropped_packets_per_second),
                ]),
                None => cells.extend(std::iter::repeat_n("-".to_string(), 3)),
            }
        }
        cells.push(dash(&r.current_file));
        t.row(cells);
    }
    let mut out = t.render();
    for r in recorders.iter().filter(|r| !r.last_disk_error.is_empty()) {
        let _ = writeln!(
            out,
            "recorder {}: last disk error at {}: {}",
            r.name,
            r.last_disk_error_at.as_deref().unwrap_or("?"),
            one_line(&r.last_disk_error)
        );
    }
    out
}

/// The live taps table of `stats`, by id.
fn render_tap_stats(taps: &[TapStatsJson], watch: bool) -> String {
    let mut headers = vec![">TAP", "POINT", "STARTED", ">MATCHED", ">SENT", ">LOST"];
    if watch {
        headers.extend([">MATCH/S", ">SENT/S", ">LOST/S"]);
    }
    headers.push("FILTER");
    let mut t = Table::new(&headers);
    for tap in taps {
        let mut cells = vec![
            tap.id.to_string(),
            dash(&tap.point),
            tap.started_at.clone().unwrap_or_else(|| "-".into()),
            tap.matched_packets.to_string(),
            tap.sent_packets.to_string(),
            tap.lost_packets.to_string(),
        ];
        if watch {
            match tap.rates {
                Some(r) => cells.extend([
                    si(r.matched_packets_per_second),
                    si(r.sent_packets_per_second),
                    si(r.lost_packets_per_second),
                ]),
                None => cells.extend(std::iter::repeat_n("-".to_string(), 3)),
            }
        }
        // Empty: every packet.
        cells.push(dash(&tap.filter));
        t.row(cells);
    }
    t.render()
}

/// The hops table of `stats`, in chain order.
fn render_hops(hops: &[HopJson], watch: bool) -> String {
    let mut headers = vec![
        "HOP",
        ">TO TOOL",
        ">FROM TOOL",
        ">BYPASSED",
        ">DROPS",
        ">HB SENT",
        ">HB RETURNED",
        ">HB LOST",
        ">RTT P50",
        ">RTT P99",
    ];
    if watch {
        headers.extend([">TO PKT/S", ">FROM PKT/S", ">BYPASS/S", ">DROP/S"]);
    }
    let mut t = Table::new(&headers);
    for h in hops {
        let rtt = |f: fn(&LatencyJson) -> u64| {
            h.round_trip_latency
                .filter(|l| l.count > 0)
                .map_or("-".to_string(), |l| nanos(f(&l)))
        };
        let mut cells = vec![
            h.name.clone(),
            h.to_tool_packets.to_string(),
            h.from_tool_packets.to_string(),
            h.bypassed_packets.to_string(),
            h.dropped_packets.to_string(),
            h.heartbeats_sent.to_string(),
            h.heartbeats_returned.to_string(),
            h.heartbeats_lost.to_string(),
            rtt(|l| l.p50_ns),
            rtt(|l| l.p99_ns),
        ];
        if watch {
            match h.rates {
                Some(r) => cells.extend([
                    si(r.to_tool_packets_per_second),
                    si(r.from_tool_packets_per_second),
                    si(r.bypassed_packets_per_second),
                    si(r.dropped_packets_per_second),
                ]),
                None => cells.extend(std::iter::repeat_n("-".to_string(), 4)),
            }
        }
        t.row(cells);
    }
    t.render()
}

fn render_spec_hops(spec: &SpecJson) -> String {
    let mut t = Table::new(&["HOP", "A", "B", "ON FAILURE"]);
    for h in &spec.hops {
        let on_failure = if h.on_failure == "unspecified" {
            format!("{} (default)", spec.default_on_failure)
        } else {
            h.on_failure.clone()
        };
        t.row(vec![h.name.clone(), h.a.clone(), h.b.clone(), on_failure]);
    }
    t.render()
}

/// The hop status table of `chain get`, `chain watch` and `chain bypass`.
fn render_hop_status(hops: &[HopStatusJson]) -> String {
    let mut t = Table::new(&[
        "HOP",
        "STATE",
        "TRAFFIC",
        "ON FAILURE",
        "MANUAL BYPASS",
        "TOOL",
        "SINCE",
        "REASON",
        "MESSAGE",
    ]);
    for h in hops {
        t.row(vec![
            h.name.clone(),
            h.state.clone(),
            h.traffic.clone(),
            h.on_failure.clone(),
            if h.manual_bypass { "yes" } else { "no" }.to_string(),
            if h.tool_healthy {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_string(),
            h.last_transition_at.clone().unwrap_or_else(|| "-".into()),
            dash(&h.reason),
            dash(&h.message),
        ]);
    }
    t.render()
}

fn render_chain(c: &ChainJson) -> String {
    let mut out = String::new();
    let _ = write!(out, "chain generation {}", c.generation);
    if let Some(t) = &c.updated_at {
        let _ = write!(out, " (updated {t})");
    }
    match &c.status {
        Some(s) if s.observed_generation == 0 => out.push_str(", nothing applied yet"),
        Some(s) => {
            let _ = write!(out, ", applied generation {}", s.observed_generation);
            if let Some(t) = &s.applied_at {
                let _ = write!(out, " (at {t})");
            }
        }
        None => out.push_str(", applied generation unknown"),
    }
    out.push('\n');
    if c.spec.hops.is_empty() {
        out.push_str("the chain is empty: inline-1 and inline-2 are bridged directly\n");
    } else {
        out.push_str(&render_spec_hops(&c.spec));
    }
    let Some(s) = &c.status else {
        return out;
    };
    if s.observed_generation != c.generation {
        let refused = s
            .last_rejected
            .as_ref()
            .is_some_and(|r| r.generation == Some(c.generation));
        let _ = writeln!(
            out,
            "\ngeneration {} is not in force: {}",
            c.generation,
            if refused {
                "the dataplane could not apply it (see the last rejected update)"
            } else {
                "it is being applied"
            }
        );
        match &s.applied_spec {
            Some(applied) if s.observed_generation > 0 => {
                let _ = writeln!(out, "in force, generation {}:", s.observed_generation);
                if applied.hops.is_empty() {
                    out.push_str(
                        "the chain is empty: inline-1 and inline-2 are bridged directly\n",
                    );
                } else {
                    out.push_str(&render_spec_hops(applied));
                }
            }
            _ => {}
        }
    }
    if !s.hops.is_empty() {
        out.push('\n');
        out.push_str(&render_hop_status(&s.hops));
    }
    if let Some(r) = &s.last_rejected {
        let _ = writeln!(
            out,
            "\nlast rejected update{}{}: {} {}",
            r.generation
                .map_or(String::new(), |g| format!(" (generation {g})")),
            r.rejected_at
                .as_deref()
                .map_or(String::new(), |t| format!(" at {t}")),
            esc(&r.reason),
            esc(&r.message)
        );
        for e in &r.errors {
            let _ = writeln!(out, "  {}: {}", dash(&e.field), esc(&e.message));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Verbs.

async fn status(cli: &Cli) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let info = s
        .observer()
        .get_info(s.target.unary(pb::GetInfoRequest {}))
        .await
        .map_err(|e| s.target.failure("tapline.v1.Observer/GetInfo", &e))?
        .into_inner();
    let health = s.health().await?;
    let overall = health.get("").cloned();
    let st = status_json(&s.target.url, info, health);
    if cli.json {
        emit_json(&st, true)?;
    } else {
        emit(&render_status(&st))?;
    }
    serving(overall.as_deref())
}

/// Exit 4 unless the overall health is SERVING.
fn serving(overall: Option<&str>) -> Result<(), Failure> {
    match overall {
        Some("SERVING") => Ok(()),
        other => Err(Failure::new(
            exit::NOT_SERVING,
            format!(
                "tapline-control's overall health is {}",
                other.unwrap_or("SERVICE_UNKNOWN")
            ),
        )),
    }
}

fn selector(args: &StatsArgs) -> Option<pb::StatsSelector> {
    if args.roles.is_empty() {
        None
    } else {
        Some(pb::StatsSelector {
            roles: args.roles.clone(),
            omit_queues: false,
        })
    }
}

async fn stats(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let mut client = s.observer();
    if !args.watch {
        let resp = client
            .get_stats(s.target.unary(pb::GetStatsRequest {
                selector: selector(args),
            }))
            .await
            .map_err(|e| s.target.failure("tapline.v1.Observer/GetStats", &e))?
            .into_inner();
        let st = stats_json(resp.stats.unwrap_or_default(), None);
        return if cli.json {
            emit_json(&st, true)
        } else {
            emit(&render_stats(&st))
        };
    }
    const WHAT: &str = "tapline.v1.Observer/WatchStats";
    let mut stream = client
        .watch_stats(pb::WatchStatsRequest {
            interval_ms: args.interval_ms,
            selector: selector(args),
        })
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    let terminal = std::io::stdout().is_terminal();
    follow(&s, &mut stream, args.count, WHAT, "stats", |msg, seen| {
        let st = stats_json(msg.stats.unwrap_or_default(), Some(msg.interval_ms));
        if cli.json {
            emit_json(&st, false)
        } else if terminal {
            // Home the cursor and clear the screen: the table is redrawn in
            // place, whatever its height.
            emit(&format!("\x1b[H\x1b[2J{}", render_stats(&st)))
        } else {
            emit(&format!(
                "{}{}",
                if seen > 1 { "\n" } else { "" },
                render_stats(&st)
            ))
        }
    })
    .await
}

/// Follows a server stream: hands each message to `show` (with how many
/// have been seen, from 1) until `count` messages or Ctrl-C (both a normal
/// end), or until the server ends the stream (an error: watches do not end
/// by themselves).
async fn follow<T>(
    s: &Session,
    stream: &mut tonic::Streaming<T>,
    count: Option<u64>,
    what: &str,
    name: &str,
    mut show: impl FnMut(T, u64) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let msg = tokio::select! {
            m = stream.message() => m.map_err(|e| s.target.failure(what, &e))?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(msg) = msg else {
            return Err(Failure::new(
                exit::SERVER,
                format!("tapline-control at {} ended the {name} watch", s.target.url),
            ));
        };
        seen += 1;
        show(msg, seen)?;
    }
}

async fn chain_get(cli: &Cli) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let resp = s
        .observer()
        .get_chain(s.target.unary(pb::GetChainRequest {}))
        .await
        .map_err(|e| s.target.failure("tapline.v1.Observer/GetChain", &e))?
        .into_inner();
    let c = chain_json(resp.chain.unwrap_or_default());
    if cli.json {
        emit_json(&c, true)
    } else {
        emit(&render_chain(&c))
    }
}

async fn chain_watch(cli: &Cli, count: Option<u64>) -> Result<(), Failure> {
    const WHAT: &str = "tapline.v1.Observer/WatchChain";
    let s = Session::connect(cli).await?;
    let mut stream = s
        .observer()
        .watch_chain(pb::WatchChainRequest {})
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    follow(&s, &mut stream, count, WHAT, "chain", |msg, seen| {
        let c = chain_json(msg.chain.unwrap_or_default());
        if cli.json {
            emit_json(&c, false)
        } else {
            emit(&format!(
                "{}{}",
                if seen > 1 { "\n" } else { "" },
                render_chain(&c)
            ))
        }
    })
    .await
}

/// Parses a spec file: a SPEC, or `chain get --json` output.
fn parse_spec(text: &str, source: &str) -> Result<pb::ChainSpec, Failure> {
    let bad = |e: String| Failure::usage(format!("{source}: {e}"));
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if let Some(spec) = v.get_mut("spec") {
        v = spec.take();
    }
    let spec: SpecJson = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
    let action = |field: String, name: &str| -> Result<i32, Failure> {
        match name {
            "unspecified" | "" => Ok(pb::FailureAction::Unspecified.into()),
            "bypass" => Ok(pb::FailureAction::Bypass.into()),
            "drop" => Ok(pb::FailureAction::Drop.into()),
            other => Err(bad(format!(
                "{field}: {other:?} is not a failure action (use \"bypass\" or \"drop\")"
            ))),
        }
    };
    Ok(pb::ChainSpec {
        default_on_failure: action("default_on_failure".into(), &spec.default_on_failure)?,
        hops: spec
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Ok(pb::HopSpec {
                    name: h.name.clone(),
                    a: h.a.clone(),
                    b: h.b.clone(),
                    on_failure: action(format!("hops[{i}].on_failure"), &h.on_failure)?,
                })
            })
            .collect::<Result<_, Failure>>()?,
    })
}

async fn chain_set(
    cli: &Cli,
    file: &Path,
    dry_run: bool,
    expected_generation: Option<u64>,
) -> Result<(), Failure> {
    let (text, source) = if file == Path::new("-") {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .map_err(|e| Failure::usage(format!("reading the spec from stdin: {e}")))?;
        (t, "stdin".to_string())
    } else {
        let t = std::fs::read_to_string(file).map_err(|e| {
            Failure::usage(format!(
                "cannot read {}: {}",
                file.display(),
                root_cause(&e)
            ))
        })?;
        (t, file.display().to_string())
    };
    let spec = parse_spec(&text, &source)?;
    let s = Session::connect(cli).await?;
    // The dataplane applies the spec before answering and the server waits
    // up to 15 s for it: a shorter deadline would give up first.
    let target = Target {
        timeout: s.target.timeout.max(SET_CHAIN_MIN_TIMEOUT),
        ..s.target.clone()
    };
    const WHAT: &str = "tapline.v1.Admin/SetChain";
    let out = match s
        .admin()
        .set_chain(target.unary(pb::SetChainRequest {
            spec: Some(spec),
            expected_generation,
            dry_run,
        }))
        .await
    {
        Ok(r) => SetChainJson::from_response(r.into_inner()),
        // An invalid spec: the problems are in the status details.
        Err(e) if e.code() == Code::InvalidArgument => {
            match tapline_control::details::validation(&e) {
                Some(v) => SetChainJson::refused(v),
                None => return Err(target.failure(WHAT, &e)),
            }
        }
        Err(e) if e.code() == Code::Unimplemented => {
            let msg = one_line(e.message());
            return Err(Failure::new(
                exit::SERVER,
                format!(
                    "tapline-control at {} rejects chain changes in this build: {}",
                    target.url,
                    if msg.is_empty() {
                        "UNIMPLEMENTED (no Admin service)".to_string()
                    } else {
                        format!("UNIMPLEMENTED: {msg}")
                    }
                ),
            ));
        }
        Err(e) => return Err(target.failure(WHAT, &e)),
    };
    if cli.json {
        emit_json(&out, true)?;
    } else {
        emit(&render_set_chain(&out, dry_run))?;
    }
    set_chain_verdict(&out, dry_run)
}

/// The human output of `chain set`: the outcome, then one line per
/// validation error and warning.
fn render_set_chain(out: &SetChainJson, dry_run: bool) -> String {
    let mut text = String::new();
    let generation = out.generation.unwrap_or_default();
    if out.accepted {
        if out.applied {
            let _ = writeln!(text, "accepted: chain generation {generation}, applied");
        } else if let Some(r) = out.apply_failure() {
            let _ = writeln!(
                text,
                "accepted as chain generation {generation}, but the dataplane could not apply \
                 it ({}: {}); the previous chain stays in force",
                r.reason,
                one_line(&r.message)
            );
        } else {
            let _ = writeln!(
                text,
                "accepted: chain generation {generation}, being applied (follow with `chain watch`)"
            );
        }
    } else if out.generation.is_none() {
        text.push_str("rejected: the chain spec is invalid; the chain in force does not change\n");
    } else if dry_run {
        let _ = writeln!(
            text,
            "{} (dry run): nothing changed, chain generation {generation}",
            if out.valid { "valid" } else { "invalid" }
        );
    } else {
        let _ = writeln!(text, "rejected: chain generation stays {generation}");
    }
    for (kind, list) in [("error", &out.errors), ("warning", &out.warnings)] {
        for i in list {
            let _ = writeln!(text, "{kind}: {}: {}", dash(&i.field), one_line(&i.message));
        }
    }
    text
}

/// Whether `chain set` succeeded (see CHAIN_SET_HELP for the exit codes).
fn set_chain_verdict(out: &SetChainJson, dry_run: bool) -> Result<(), Failure> {
    if !out.valid {
        return Err(Failure::new(
            exit::SERVER,
            format!(
                "the chain spec is invalid ({} error(s)){}",
                out.errors.len(),
                if out.generation.is_none() || dry_run {
                    "; nothing changed"
                } else {
                    ""
                }
            ),
        ));
    }
    if out.accepted {
        if let Some(r) = out.apply_failure() {
            return Err(Failure::new(
                exit::SERVER,
                format!(
                    "the dataplane accepted chain generation {} but could not apply it: {}",
                    out.generation.unwrap_or_default(),
                    one_line(&r.message)
                ),
            ));
        }
    } else if !dry_run {
        return Err(Failure::new(
            exit::SERVER,
            "the server did not accept the chain spec",
        ));
    }
    Ok(())
}

async fn chain_bypass(
    cli: &Cli,
    hop: &str,
    clear: bool,
    reason: Option<&str>,
) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let resp = s
        .admin()
        .set_hop_bypass(s.target.unary(pb::SetHopBypassRequest {
            hop: hop.to_string(),
            bypass: !clear,
            reason: reason.unwrap_or_default().to_string(),
        }))
        .await
        .map_err(|e| s.target.failure("tapline.v1.Admin/SetHopBypass", &e))?
        .into_inner();
    let out = BypassJson {
        hop: resp.hop.map(hop_status_json),
    };
    if cli.json {
        return emit_json(&out, true);
    }
    let mut text = format!(
        "manual bypass of hop {hop} {}\n",
        if clear { "cleared" } else { "set" }
    );
    if let Some(h) = &out.hop {
        text.push_str(&render_hop_status(std::slice::from_ref(h)));
    }
    emit(&text)
}

async fn health(cli: &Cli) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let h = HealthJson {
        endpoint: s.target.url.clone(),
        services: s.health().await?,
    };
    if cli.json {
        emit_json(&h, true)?;
    } else {
        emit(&render_health(&h))?;
    }
    serving(h.services.get("").map(String::as_str))
}

// ---------------------------------------------------------------------------
// Live taps.

const TAP_HELP: &str = "\
Streams copies of the packets seen at one point of the dataplane
(Admin.Tap; needs the Admin token, --token-file) until -c packets were
captured, --duration elapsed, the point went away (its hop left the
chain), the dataplane or tapline-control stopped, or Ctrl-C.

Points: --point passive-1 (what passive-1 receives); --point inline-1 or
inline-2 (rx: received from the wire on that side, tx: transmitted to the
wire on that side); --hop NAME --side a|b (rx: what the tool returned on
that side, tx: what was sent to the tool on that side). --direction
defaults to both (rx for passive-1). tapline's own heartbeats are not
shown.

The filter is a pcap-filter expression (tcpdump's language), given with
--filter or as the trailing words, as with tcpdump:
  taplinectl tap --point inline-1 tcp port 443 and host 10.0.0.1
A filter that does not compile exits 2, with a caret under the column at
fault. --snaplen keeps at most that many bytes of each packet and --sample
N one matching packet in N; the server caps both the snap length and the
duration (tap.max_snaplen, tap.max_duration_s).

-w FILE writes a pcap file (nanosecond timestamps, LINKTYPE_ETHERNET);
-w - writes the pcap stream to stdout, flushed after every batch, so that
  taplinectl tap --point passive-1 --filter 'tcp port 80' -w - | tcpdump -r -
works (nothing else goes to stdout then). Otherwise one line per packet:
time of day (UTC), direction, length and a summary; with --json, one
object per line instead:
  {\"timestamp_unix_ns\", \"direction\": \"rx\"|\"tx\", \"queue_id\",
   \"original_length_bytes\", \"data\": HEX of the captured bytes}

At the end, stderr says how many packets were captured, how many were lost
because the client (or the path to it) was too slow, and why the tap
ended. Exits 0 when the tap ended or was interrupted, 1 when the server
refused it (an unknown hop, a port that is not configured, too many
taps).";

/// Where to tap and what to keep.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("tap_point").required(true).args(["point", "hop"])))]
struct TapArgs {
    /// A port: passive-1, inline-1 or inline-2.
    #[arg(long, value_name = "PORT", value_parser = ["passive-1", "inline-1", "inline-2"])]
    point: Option<String>,
    /// A hop of the applied chain (with --side).
    #[arg(long, value_name = "NAME", requires = "side")]
    hop: Option<String>,
    /// The hop's side: a (facing inline-1) or b (facing inline-2).
    #[arg(long, value_name = "SIDE", value_parser = ["a", "b"], requires = "hop")]
    side: Option<String>,
    /// rx, tx or both (default: both; rx for passive-1).
    #[arg(long, value_name = "DIR", value_parser = ["rx", "tx", "both"])]
    direction: Option<String>,
    /// pcap-filter expression (or give it as the trailing words).
    #[arg(long, value_name = "EXPR", conflicts_with = "expression")]
    filter: Option<String>,
    /// Bytes kept of each packet (default: the server's).
    #[arg(long, value_name = "BYTES")]
    snaplen: Option<u32>,
    /// Keep one matching packet in N.
    #[arg(long, value_name = "N")]
    sample: Option<u32>,
    /// Stop after N packets.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write a pcap file ("-": stdout).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// The filter, as trailing words.
    #[arg(value_name = "EXPR")]
    expression: Vec<String>,
}

/// The request `args` stand for; a filter that does not compile is a
/// usage error showing where.
fn tap_request(args: &TapArgs) -> Result<pb::TapRequest, Failure> {
    use pb::tap_point::Location;
    let filter = match &args.filter {
        Some(f) => f.clone(),
        None => args.expression.join(" "),
    };
    if let Err(e) = tapline_dataplane::filter::Filter::compile(&filter) {
        return Err(Failure::usage(format!("filter: {e}\n{}", e.caret())));
    }
    let location = match (&args.point, &args.hop, args.side.as_deref()) {
        (Some(p), None, _) => Location::Port(p.clone()),
        (None, Some(h), Some(side)) => Location::Hop(pb::HopTapPoint {
            hop: h.clone(),
            side: if side == "a" {
                pb::HopSide::A
            } else {
                pb::HopSide::B
            }
            .into(),
        }),
        _ => {
            return Err(Failure::usage(
                "tap: give --point PORT, or --hop NAME --side a|b",
            ))
        }
    };
    let direction = match args.direction.as_deref() {
        None => pb::TapDirection::Unspecified,
        Some("rx") => pb::TapDirection::Rx,
        Some("tx") => pb::TapDirection::Tx,
        Some(_) => pb::TapDirection::Both,
    };
    let max_duration_ms = match args.duration {
        None => 0,
        Some(s) if s.is_finite() && s > 0.0 => ((s * 1000.0).ceil() as u64).max(1),
        Some(s) => {
            return Err(Failure::usage(format!(
                "--duration {s}: give a number of seconds above 0"
            )))
        }
    };
    Ok(pb::TapRequest {
        point: Some(pb::TapPoint {
            location: Some(location),
            direction: direction.into(),
        }),
        filter,
        snap_length_bytes: args.snaplen.unwrap_or(0),
        sample_one_in: args.sample.unwrap_or(0),
        max_packets: args.count.unwrap_or(0),
        max_duration_ms,
    })
}

/// Where tapped packets go.
enum TapOutput {
    /// A pcap stream; the writer is made when the snap length is known
    /// (`started`).
    Pcap {
        pending: Option<Box<dyn std::io::Write>>,
        writer: Option<tapline_dataplane::pcap::PcapWriter<Box<dyn std::io::Write>>>,
        what: String,
    },
    Text,
    Json,
}

impl std::fmt::Debug for TapOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TapOutput::Pcap { .. } => "Pcap",
            TapOutput::Text => "Text",
            TapOutput::Json => "Json",
        })
    }
}

/// A write error: a closed stdout ends the tap quietly.
fn output_failure(what: &str, e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::quiet()
    } else {
        Failure::new(exit::SERVER, format!("writing {what}: {e}"))
    }
}

impl TapOutput {
    fn open(args: &TapArgs, json: bool) -> Result<TapOutput, Failure> {
        let Some(path) = &args.write else {
            return Ok(if json {
                TapOutput::Json
            } else {
                TapOutput::Text
            });
        };
        let (sink, what): (Box<dyn std::io::Write>, String) = if path.as_os_str() == "-" {
            (
                Box::new(std::io::BufWriter::new(std::io::stdout())),
                "the pcap stream to stdout".to_string(),
            )
        } else {
            let f = std::fs::File::create(path).map_err(|e| {
                Failure::usage(format!("-w {}: {}", path.display(), root_cause(&e)))
            })?;
            (
                Box::new(std::io::BufWriter::new(f)),
                path.display().to_string(),
            )
        };
        Ok(TapOutput::Pcap {
            pending: Some(sink),
            writer: None,
            what,
        })
    }

    fn start(&mut self, started: &pb::TapStarted) -> Result<(), Failure> {
        if let TapOutput::Pcap {
            pending,
            writer,
            what,
        } = self
        {
            if let Some(sink) = pending.take() {
                let w = tapline_dataplane::pcap::PcapWriter::new(sink, started.snap_length_bytes)
                    .map_err(|e| output_failure(what, &e))?;
                *writer = Some(w);
            }
        }
        Ok(())
    }

    fn packet(&mut self, p: &pb::TapPacket) -> Result<(), Failure> {
        match self {
            TapOutput::Pcap { writer, what, .. } => match writer {
                Some(w) => w
                    .write(p.timestamp_unix_ns, p.original_length_bytes, &p.data)
                    .map_err(|e| output_failure(what, &e)),
                None => Ok(()),
            },
            TapOutput::Text => emit(&format!("{}\n", packet_line(p))),
            TapOutput::Json => emit_json(&packet_json(p), false),
        }
    }

    /// After each batch.
    fn flush(&mut self) -> Result<(), Failure> {
        if let TapOutput::Pcap {
            writer: Some(w),
            what,
            ..
        } = self
        {
            w.flush().map_err(|e| output_failure(what, &e))?;
        }
        Ok(())
    }
}

fn direction_name(v: i32) -> &'static str {
    match pb::TapDirection::try_from(v) {
        Ok(pb::TapDirection::Rx) => "rx",
        Ok(pb::TapDirection::Tx) => "tx",
        Ok(pb::TapDirection::Both) => "both",
        _ => "unspecified",
    }
}

/// `HH:MM:SS.uuuuuu` (UTC) of a Unix time in nanoseconds.
fn time_of_day(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let micros = (unix_ns % 1_000_000_000) / 1000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

/// A short description of a frame: VLANs, addresses, ports, protocol.
fn packet_summary(frame: &[u8]) -> String {
    let p = tapline_dataplane::packet::Packet::parse(frame);
    let mut s = String::new();
    for v in &p.vlans[..usize::from(p.n_vlans).min(2)] {
        let _ = write!(s, "vlan {v}, ");
    }
    let endpoint = |a: std::net::IpAddr, port: Option<u16>| match (a, port) {
        (std::net::IpAddr::V6(a), Some(port)) => format!("[{a}]:{port}"),
        (a, Some(port)) => format!("{a}:{port}"),
        (a, None) => a.to_string(),
    };
    match (p.src, p.dst) {
        (Some(src), Some(dst)) => {
            let proto = match p.proto {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                58 => "icmp6".to_string(),
                132 => "sctp".to_string(),
                n => format!("proto {n}"),
            };
            let _ = write!(
                s,
                "{} > {} {proto}",
                endpoint(src, p.ports.map(|x| x.0)),
                endpoint(dst, p.ports.map(|x| x.1))
            );
            if p.fragment {
                s.push_str(" (fragment)");
            }
        }
        _ => {
            let _ = write!(s, "ethertype {:#06x}", p.ethertype);
        }
    }
    s
}

/// One line per packet (the default output).
fn packet_line(p: &pb::TapPacket) -> String {
    let mut line = format!(
        "{} {} {} bytes",
        time_of_day(p.timestamp_unix_ns),
        direction_name(p.direction),
        p.original_length_bytes
    );
    if (p.data.len() as u64) < u64::from(p.original_length_bytes) {
        let _ = write!(line, " (captured {})", p.data.len());
    }
    let _ = write!(line, " {}", packet_summary(&p.data));
    line
}

#[derive(Debug, Serialize)]
struct TapPacketJson {
    timestamp_unix_ns: u64,
    direction: &'static str,
    queue_id: u32,
    original_length_bytes: u32,
    data: String,
}

fn packet_json(p: &pb::TapPacket) -> TapPacketJson {
    let mut data = String::with_capacity(p.data.len() * 2);
    for b in p.data.iter() {
        let _ = write!(data, "{b:02x}");
    }
    TapPacketJson {
        timestamp_unix_ns: p.timestamp_unix_ns,
        direction: direction_name(p.direction),
        queue_id: p.queue_id,
        original_length_bytes: p.original_length_bytes,
        data,
    }
}

/// The point as people read it.
fn point_name(p: Option<&pb::TapPoint>) -> String {
    let Some(p) = p else {
        return "?".to_string();
    };
    let at = match &p.location {
        Some(pb::tap_point::Location::Port(r)) => r.clone(),
        Some(pb::tap_point::Location::Hop(h)) => format!(
            "hop {} side {}",
            h.hop,
            if h.side == pb::HopSide::B as i32 {
                "b"
            } else {
                "a"
            }
        ),
        None => "?".to_string(),
    };
    format!("{at} {}", direction_name(p.direction))
}

/// Why a tap stopped, from the client's side.
#[derive(Debug)]
enum TapStop {
    Ended(pb::TapEnded),
    /// `-c` packets arrived.
    Count,
    Interrupted,
}

async fn tap(cli: &Cli, args: &TapArgs) -> Result<(), Failure> {
    const WHAT: &str = "tapline.v1.Admin/Tap";
    let req = tap_request(args)?;
    let mut out = TapOutput::open(args, cli.json)?;
    let s = Session::connect(cli).await?;
    let mut stream = s
        .admin()
        .tap(req)
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    let (mut captured, mut lost) = (0u64, 0u64);
    let summary = |captured: u64, lost: u64| {
        eprintln!("{captured} packets captured, {lost} lost (client too slow)");
    };
    let stop = loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = tokio::signal::ctrl_c() => break TapStop::Interrupted,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                summary(captured, lost);
                return Err(Failure::new(
                    exit::SERVER,
                    format!(
                        "tapline-control at {} ended the tap stream without saying why",
                        s.target.url
                    ),
                ));
            }
            Err(e) => {
                summary(captured, lost);
                return Err(s.target.failure(WHAT, &e));
            }
        };
        if let Some(st) = &msg.started {
            out.start(st)?;
            eprintln!(
                "tapping {} on {}{}, snap length {} bytes{}",
                point_name(st.point.as_ref()),
                st.ifname,
                if st.filter.trim().is_empty() {
                    String::new()
                } else {
                    format!(", filter {:?}", st.filter)
                },
                st.snap_length_bytes,
                if st.sample_one_in > 1 {
                    format!(", 1 packet in {}", st.sample_one_in)
                } else {
                    String::new()
                }
            );
        }
        for p in &msg.packets {
            if args.count.is_some_and(|n| captured >= n) {
                break;
            }
            out.packet(p)?;
            captured += 1;
        }
        lost += msg.lost_packets;
        out.flush()?;
        if let Some(e) = msg.ended {
            break TapStop::Ended(e);
        }
        if args.count.is_some_and(|n| captured >= n) {
            break TapStop::Count;
        }
    };
    // Dropping the stream cancels the tap (if it still runs).
    drop(stream);
    summary(captured, lost);
    match stop {
        TapStop::Ended(e) => {
            let reason = lower_name(e.reason().as_str_name(), "TAP_END_REASON_");
            if e.message.is_empty() {
                eprintln!("tap ended: {reason}");
            } else {
                eprintln!("tap ended: {reason}: {}", esc(&e.message));
            }
        }
        TapStop::Count => eprintln!("tap ended: {captured} packets captured (-c)"),
        TapStop::Interrupted => eprintln!("tap ended: interrupted"),
    }
    Ok(())
}

#[cfg(test)]
mod tap_tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<TapArgs, clap::Error> {
        let mut v = vec!["taplinectl", "tap"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        match cli.verb {
            Verb::Tap(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tap_takes_a_point_or_a_hop_side_and_a_filter_either_way() {
        let a = parse(&[
            "--point",
            "passive-1",
            "--filter",
            "udp and dst port 5001",
            "-c",
            "10",
            "-w",
            "-",
        ])
        .unwrap();
        let r = tap_request(&a).unwrap();
        assert_eq!(r.filter, "udp and dst port 5001");
        assert_eq!(r.max_packets, 10);
        assert_eq!(a.write.as_deref(), Some(Path::new("-")));
        let p = r.point.unwrap();
        assert_eq!(
            p.location,
            Some(pb::tap_point::Location::Port("passive-1".into()))
        );
        assert_eq!(p.direction(), pb::TapDirection::Unspecified);

        let a = parse(&[
            "--hop",
            "ids",
            "--side",
            "b",
            "--direction",
            "tx",
            "--duration",
            "1.5",
            "--sample",
            "4",
            "--snaplen",
            "96",
            "tcp",
            "port",
            "443",
        ])
        .unwrap();
        let r = tap_request(&a).unwrap();
        assert_eq!(r.filter, "tcp port 443");
        assert_eq!(
            (r.max_duration_ms, r.sample_one_in, r.snap_length_bytes),
            (1500, 4, 96)
        );
        let p = r.point.unwrap();
        assert_eq!(p.direction(), pb::TapDirection::Tx);
        assert_eq!(
            p.location,
            Some(pb::tap_point::Location::Hop(pb::HopTapPoint {
                hop: "ids".into(),
                side: pb::HopSide::B.into()
            }))
        );

        // A point is required, and only one; a hop needs its side.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--point", "passive-1", "--hop", "ids", "--side", "a"]).is_err());
        assert!(parse(&["--hop", "ids"]).is_err());
        assert!(parse(&["--point", "inline-3"]).is_err());
        assert!(parse(&["--point", "inline-1", "--filter", "udp", "tcp"]).is_err());
    }

    #[test]
    fn a_bad_filter_is_a_usage_error_with_a_caret() {
        let a = parse(&["--point", "inline-1", "tcp", "and", "prot", "6"]).unwrap();
        let f = tap_request(&a).unwrap_err();
        assert_eq!(f.code, exit::USAGE);
        let lines: Vec<&str> = f.message.lines().collect();
        assert!(lines[0].starts_with("filter: column 9: "), "{}", f.message);
        assert_eq!(lines[1], "  tcp and prot 6");
        assert_eq!(lines[2], "          ^");
        let a = parse(&["--point", "inline-1", "--duration", "0"]).unwrap();
        assert_eq!(tap_request(&a).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn packets_print_as_lines_and_json() {
        let frame = {
            let mut f = vec![0u8; 60];
            f[12] = 0x08;
            f[14] = 0x45;
            f[16..18].copy_from_slice(&46u16.to_be_bytes());
            f[22] = 64;
            f[23] = 17;
            f[26..30].copy_from_slice(&[10, 0, 0, 1]);
            f[30..34].copy_from_slice(&[10, 0, 0, 2]);
            f[34..36].copy_from_slice(&1234u16.to_be_bytes());
            f[36..38].copy_from_slice(&5001u16.to_be_bytes());
            f[38..40].copy_from_slice(&26u16.to_be_bytes());
            f
        };
        let p = pb::TapPacket {
            timestamp_unix_ns: 3_723_000_456_789,
            original_length_bytes: 100,
            data: frame.into(),
            direction: pb::TapDirection::Rx.into(),
            queue_id: 2,
        };
        assert_eq!(
            packet_line(&p),
            "01:02:03.000456 rx 100 bytes (captured 60) 10.0.0.1:1234 > 10.0.0.2:5001 udp"
        );
        let j = serde_json::to_value(packet_json(&p)).unwrap();
        assert_eq!(j["direction"], "rx");
        assert_eq!(j["queue_id"], 2);
        assert_eq!(j["original_length_bytes"], 100);
        assert!(j["data"].as_str().unwrap().starts_with("000000000000"));
        assert_eq!(j["data"].as_str().unwrap().len(), 120);
        assert_eq!(packet_summary(&[0u8; 20]), "ethertype 0x0000");
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.verb {
        Verb::Status => status(&cli).await,
        Verb::Stats(args) => stats(&cli, args).await,
        Verb::Chain(ChainVerb::Get) => chain_get(&cli).await,
        Verb::Chain(ChainVerb::Watch { count }) => chain_watch(&cli, *count).await,
        Verb::Chain(ChainVerb::Set {
            file,
            dry_run,
            expected_generation,
        }) => chain_set(&cli, file, *dry_run, *expected_generation).await,
        Verb::Chain(ChainVerb::Bypass { hop, clear, reason }) => {
            chain_bypass(&cli, hop, *clear, reason.as_deref()).await
        }
        Verb::Health => health(&cli).await,
        Verb::Tap(args) => tap(&cli, args).await,
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits 2, --help and --version exit 0.
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::SERVER);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                // Line by line: some messages (a filter's caret) span lines.
                let lines: Vec<String> = f.message.lines().map(esc).collect();
                eprintln!("error: {}", lines.join("\n"));
            }
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn server_text_is_escaped_in_tables_and_messages() {
        let mut t = Table::new(&["HOP", "REASON"]);
        t.row(vec![
            "ids".into(),
            "ok\n{\"level\":\"ERROR\"}\x1b[2J\x1b[31mred".into(),
        ]);
        let out = t.render();
        assert!(!out.contains('\x1b'), "{out:?}");
        assert_eq!(out.lines().count(), 2, "{out:?}");
        assert!(out.contains("ok\\n{"), "{out:?}");
        assert_eq!(one_line("a\u{202e}b\n c"), "a\\u{202e}b c");
        assert_eq!(dash("\x07"), "\\u{7}");
        assert_eq!(dash(""), "-");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_verb() {
        let a = Cli::try_parse_from(["taplinectl", "--json", "--endpoint", "h:1", "health"])
            .expect("parses");
        let b = Cli::try_parse_from(["taplinectl", "health", "--json", "--endpoint", "h:1"])
            .expect("parses");
        assert!(a.json && b.json);
        assert_eq!(a.endpoint, b.endpoint);
        let d = Cli::try_parse_from(["taplinectl", "status"]).expect("parses");
        assert_eq!(d.endpoint, DEFAULT_ENDPOINT);
        assert!(!d.json && d.token_file.is_none());
    }

    #[test]
    fn watch_options_require_watch() {
        assert!(Cli::try_parse_from(["taplinectl", "stats", "--interval-ms", "200"]).is_err());
        let c = Cli::try_parse_from([
            "taplinectl",
            "stats",
            "--watch",
            "--interval-ms",
            "200",
            "--count",
            "3",
        ])
        .expect("parses");
        let Verb::Stats(a) = c.verb else {
            panic!("stats")
        };
        assert!(a.watch && a.interval_ms == 200 && a.count == Some(3));
        let e = Cli::try_parse_from(["taplinectl", "bogus"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(exit::USAGE));
    }

    #[test]
    fn chain_set_takes_a_file() {
        let c = Cli::try_parse_from(["taplinectl", "chain", "set", "-f", "x.json", "--dry-run"])
            .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Set { dry_run: true, .. })
        ));
        assert!(Cli::try_parse_from(["taplinectl", "chain", "set"]).is_err());
        let c = Cli::try_parse_from([
            "taplinectl",
            "chain",
            "set",
            "-f",
            "x.json",
            "--expected-generation",
            "4",
        ])
        .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Set {
                expected_generation: Some(4),
                dry_run: false,
                ..
            })
        ));
    }

    #[test]
    fn chain_bypass_takes_a_hop() {
        let c = Cli::try_parse_from([
            "taplinectl",
            "chain",
            "bypass",
            "ids",
            "--reason",
            "upgrade, OPS-1",
        ])
        .expect("parses");
        let Verb::Chain(ChainVerb::Bypass { hop, clear, reason }) = c.verb else {
            panic!("bypass")
        };
        assert_eq!(hop, "ids");
        assert!(!clear);
        assert_eq!(reason.as_deref(), Some("upgrade, OPS-1"));
        let c = Cli::try_parse_from(["taplinectl", "chain", "bypass", "ids", "--clear"])
            .expect("parses");
        assert!(matches!(
            c.verb,
            Verb::Chain(ChainVerb::Bypass { clear: true, .. })
        ));
        assert!(Cli::try_parse_from(["taplinectl", "chain", "bypass"]).is_err());
    }

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            endpoint_url("10.0.0.1:50051").unwrap(),
            "http://10.0.0.1:50051"
        );
        assert_eq!(endpoint_url("http://h:1").unwrap(), "http://h:1");
        assert_eq!(endpoint_url("https://h:1").unwrap(), "https://h:1");
        let e = endpoint_url("ftp://h:1").unwrap_err();
        assert_eq!(e.code, exit::USAGE);
    }

    #[test]
    fn token_file_is_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("taplinectl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tok");
        std::fs::write(&p, "  s3cret \n").unwrap();
        assert_eq!(read_token(&p).unwrap().to_str().unwrap(), "Bearer s3cret");
        std::fs::write(&p, " \n").unwrap();
        assert!(read_token(&p).unwrap_err().message.contains("is empty"));
        std::fs::write(&p, "a\nb").unwrap();
        assert!(read_token(&p).is_err());
        let missing = read_token(&dir.join("nope")).unwrap_err();
        assert_eq!(missing.code, exit::USAGE);
        assert!(missing.message.contains("cannot read --token-file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn target(token: bool) -> Target {
        Target {
            url: "http://127.0.0.1:1".into(),
            token: token.then(|| "Bearer x".parse().unwrap()),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn statuses_map_to_exit_codes_and_one_line() {
        let t = target(true);
        let f = t.failure("X", &Status::unauthenticated("bad\ntoken"));
        assert_eq!(f.code, exit::UNAUTHENTICATED);
        assert!(f
            .message
            .starts_with("the token was rejected: check --token-file"));
        assert!(!f.message.contains('\n'));
        let f = target(false).failure("X", &Status::unauthenticated(""));
        assert_eq!(f.code, exit::UNAUTHENTICATED);
        assert!(f.message.contains("pass --token-file"), "{}", f.message);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut transport = Status::unavailable("tcp connect error");
        transport.set_source(std::sync::Arc::new(refused));
        let f = t.failure("X", &transport);
        assert_eq!(f.code, exit::UNREACHABLE);
        assert_eq!(
            f.message,
            "cannot reach tapline-control at http://127.0.0.1:1: connection refused"
        );
        // The server's own UNAVAILABLE is an answer, not a lost connection.
        let f = t.failure("X", &Status::unavailable("the dataplane is not running"));
        assert_eq!(f.code, exit::SERVER);
        assert!(
            f.message.contains("the dataplane is not running"),
            "{}",
            f.message
        );
        let f = t.failure("Admin/SetChain", &Status::unimplemented("nope"));
        assert_eq!(f.code, exit::SERVER);
        assert!(f.message.contains("does not serve Admin/SetChain"));
        assert!(f.message.contains("nope"));
        let f = t.failure("X", &Status::internal("boom"));
        assert_eq!(f.code, exit::SERVER);
        assert!(f.message.contains("boom"));
    }

    #[test]
    fn root_cause_names_a_refused_connection() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(root_cause(&e), "connection refused");
    }

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["A", ">NUM", "LAST"]);
        t.row(vec!["xx".into(), "1".into(), "".into()]);
        t.row(vec!["y".into(), "1000".into(), "z".into()]);
        assert_eq!(t.render(), "A    NUM  LAST\nxx     1\ny   1000  z\n");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(14_880_952.0), "14.9M");
        assert_eq!(si(123_456_789_000.0), "123G");
        assert_eq!(duration_ms(1_500), "1.5s");
        assert_eq!(duration_ms(3_723_000), "1h2m3s");
        assert_eq!(duration_ms(90_061_000), "1d1h1m");
        assert_eq!(nanos(999), "999ns");
        assert_eq!(nanos(1_500), "1.5us");
    }

    #[test]
    fn enum_names_are_lower_case_and_tolerate_unknown_values() {
        assert_eq!(
            dataplane_state_name(pb::DataplaneState::Running.into()),
            "running"
        );
        assert_eq!(dataplane_state_name(0), "unknown");
        assert_eq!(dataplane_state_name(42), "unknown(42)");
        assert_eq!(
            failure_action_name(pb::FailureAction::Bypass.into()),
            "bypass"
        );
        assert_eq!(
            hop_state_name(pb::HopState::BypassedManual.into()),
            "bypassed_manual"
        );
        assert_eq!(
            hop_traffic_name(pb::HopTraffic::ThroughTool.into()),
            "through_tool"
        );
        assert_eq!(
            serving_status_name(ServingStatus::NotServing.into()),
            "NOT_SERVING"
        );
    }

    fn counters(rx: u64) -> pb::PacketCounters {
        pb::PacketCounters {
            rx_packets: rx,
            rx_bytes: rx * 100,
            ..Default::default()
        }
    }

    fn sample_stats() -> pb::Stats {
        pb::Stats {
            stats_epoch: 7,
            dataplane_state: pb::DataplaneState::Running.into(),
            ports: vec![pb::PortStats {
                role: "inline-1".into(),
                ifname: "i1".into(),
                xdp_mode: "native-copy".into(),
                totals: Some(counters(5)),
                kernel_totals: Some(pb::KernelXdpCounters {
                    rx_dropped: 1,
                    rx_ring_full: 2,
                    rx_fill_ring_empty: 100,
                    ..Default::default()
                }),
                queues: vec![pb::QueueStats {
                    queue_id: 0,
                    xdp_mode: "native-copy".into(),
                    counters: Some(counters(5)),
                    kernel: Some(pb::KernelXdpCounters {
                        rx_dropped: 1,
                        rx_ring_full: 2,
                        rx_fill_ring_empty: 100,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            workers: vec![pb::WorkerStats {
                worker_id: 0,
                batches: 3,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn stats_json_has_the_documented_shape() {
        let v = serde_json::to_value(stats_json(sample_stats(), None)).unwrap();
        assert_eq!(v["stats_epoch"], 7);
        assert_eq!(v["dataplane_state"], "running");
        assert!(v.get("interval_ms").is_none(), "only in watches");
        let p = &v["ports"][0];
        assert_eq!(p["role"], "inline-1");
        assert_eq!(p["totals"]["rx_packets"], 5);
        assert_eq!(p["totals"]["rx_bytes"], 500);
        assert_eq!(p["kernel"]["rx_ring_full"], 2);
        assert!(p["rates"].is_null());
        assert_eq!(p["queues"][0]["counters"]["rx_packets"], 5);
        assert_eq!(v["workers"][0]["batches"], 3);
        assert!(v["sampled_at"].is_null());
        let w = serde_json::to_value(stats_json(sample_stats(), Some(200))).unwrap();
        assert_eq!(w["interval_ms"], 200);
    }

    #[test]
    fn stats_json_and_table_show_the_kernel_fallback() {
        let none = serde_json::to_value(stats_json(sample_stats(), None)).unwrap();
        assert!(none["kernel_fallback"].is_null(), "{none}");
        assert!(!render_stats(&stats_json(sample_stats(), None)).contains("KERNEL FALLBACK"));
        let mut s = sample_stats();
        s.kernel_fallback = Some(pb::FallbackStats {
            ports: vec![
                pb::FallbackPortStats {
                    role: "inline-1".into(),
                    forwarded: 4000,
                    dropped: 2,
                    lease_expiries: 1,
                },
                pb::FallbackPortStats {
                    role: "inline-2".into(),
                    forwarded: 0,
                    dropped: 0,
                    lease_expiries: 0,
                },
            ],
            lease_expiries: 1,
            takeovers: 3,
        });
        let v = serde_json::to_value(stats_json(s.clone(), None)).unwrap();
        let f = &v["kernel_fallback"];
        assert_eq!(f["takeovers"], 3);
        assert_eq!(f["lease_expiries"], 1);
        assert_eq!(f["ports"][0]["role"], "inline-1");
        assert_eq!(f["ports"][0]["forwarded"], 4000);
        assert_eq!(f["ports"][0]["dropped"], 2);
        assert_eq!(f["ports"][0]["lease_expiries"], 1);
        assert_eq!(f["ports"][1]["forwarded"], 0);
        let text = render_stats(&stats_json(s, None));
        let at = text
            .lines()
            .position(|l| l.starts_with("KERNEL FALLBACK"))
            .expect(&text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[at + 1].split_whitespace().collect::<Vec<_>>(),
            ["inline-1", "4000", "2", "1"],
            "{text}"
        );
        assert_eq!(lines[at + 3], "takeovers: 3", "{text}");
    }

    #[test]
    fn stats_table_shows_counters_and_kernel_drops() {
        let text = render_stats(&stats_json(sample_stats(), None));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("dataplane running, epoch 0x7"),
            "{text}"
        );
        assert!(lines[1].starts_with("PORT"), "{text}");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        // PORT IFNAME QUEUE MODE RX_PKTS RX_BYTES TX_PKTS TX_BYTES DROPS KDROPS
        assert_eq!(
            row,
            [
                "inline-1",
                "i1",
                "0",
                "native-copy",
                "5",
                "500",
                "0",
                "0",
                "0",
                "3"
            ]
        );
        let watch = render_stats(&stats_json(sample_stats(), Some(200)));
        assert!(
            watch.contains("RX PKT/S") && watch.contains("no rates yet"),
            "{watch}"
        );
    }

    fn chain_stats() -> pb::Stats {
        let mut s = sample_stats();
        s.ports.push(pb::PortStats {
            role: "tool-a".into(),
            ifname: "t1a".into(),
            hop: "ids".into(),
            xdp_mode: "native-copy".into(),
            totals: Some(counters(9)),
            kernel_totals: Some(pb::KernelXdpCounters::default()),
            ..Default::default()
        });
        s.hops = vec![pb::HopStats {
            name: "ids".into(),
            to_tool_packets: 100,
            from_tool_packets: 98,
            bypassed_packets: 7,
            dropped_packets: 2,
            dropped_packets_by_reason: [("hop_down".to_string(), 2)].into(),
            heartbeats_sent: 50,
            heartbeats_returned: 48,
            heartbeats_late: 1,
            heartbeats_lost: 1,
            round_trip_latency: Some(pb::LatencySummary {
                count: 10,
                p50_ns: 45_000,
                p99_ns: 1_200_000,
                ..Default::default()
            }),
            round_trip_latency_histogram: Some(pb::LatencyHistogram {
                count: 49,
                sum_ns: 3_000_000,
                buckets: vec![pb::LatencyBucket {
                    upper_bound_ns: 10_000,
                    count: 4,
                }],
            }),
            rates: Some(pb::HopRates {
                to_tool_packets_per_second: 1500.0,
                from_tool_packets_per_second: 1490.0,
                ..Default::default()
            }),
            ..Default::default()
        }];
        s
    }

    #[test]
    fn stats_json_and_table_show_hops() {
        let v = serde_json::to_value(stats_json(chain_stats(), None)).unwrap();
        let h = &v["hops"][0];
        assert_eq!(h["name"], "ids");
        assert_eq!(h["to_tool_packets"], 100);
        assert_eq!(h["dropped_packets_by_reason"]["hop_down"], 2);
        assert_eq!(h["heartbeats_late"], 1);
        assert_eq!(h["round_trip_latency"]["p99_ns"], 1_200_000);
        assert_eq!(
            h["round_trip_latency_histogram"]["buckets"][0]["upper_bound_ns"],
            10_000
        );
        assert_eq!(h["rates"]["to_tool_packets_per_second"], 1500.0);
        assert_eq!(v["ports"][1]["hop"], "ids");
        // Without a chain: an empty list, and no hops table.
        let v = serde_json::to_value(stats_json(sample_stats(), None)).unwrap();
        assert_eq!(v["hops"], serde_json::json!([]));
        let plain = render_stats(&stats_json(sample_stats(), None));
        assert!(!plain.contains("HOP"), "{plain}");

        let text = render_stats(&stats_json(chain_stats(), None));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("PORT"), "{text}");
        let header: Vec<&str> = lines[1].split_whitespace().take(3).collect();
        assert_eq!(header, ["PORT", "IFNAME", "HOP"], "{text}");
        let i1: Vec<&str> = lines[2].split_whitespace().take(4).collect();
        assert_eq!(i1, ["inline-1", "i1", "-", "0"], "{text}");
        let t1a: Vec<&str> = lines[3].split_whitespace().take(5).collect();
        assert_eq!(t1a, ["tool-a", "t1a", "ids", "-", "native-copy"], "{text}");
        let hop_header = lines
            .iter()
            .position(|l| l.starts_with("HOP"))
            .expect("hops table");
        let row: Vec<&str> = lines[hop_header + 1].split_whitespace().collect();
        // HOP TO FROM BYPASSED DROPS HB_SENT HB_RETURNED HB_LOST P50 P99
        assert_eq!(
            row,
            ["ids", "100", "98", "7", "2", "50", "48", "1", "45.0us", "1.2ms"],
            "{text}"
        );
        let watch = render_stats(&stats_json(chain_stats(), Some(1000)));
        let row = watch
            .lines()
            .find(|l| l.starts_with("ids"))
            .expect("hop row");
        let rates: Vec<&str> = row.split_whitespace().skip(10).collect();
        assert_eq!(rates, ["1.50k", "1.49k", "0", "0"], "{watch}");
    }

    fn output_counters(packets: u64, by_reason: &[(&str, u64)]) -> pb::OutputCounters {
        pb::OutputCounters {
            packets,
            bytes: packets * 100,
            dropped_packets: by_reason.iter().map(|(_, n)| n).sum(),
            dropped_packets_by_reason: by_reason.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            ..Default::default()
        }
    }

    fn outputs_stats() -> pb::Stats {
        let mut s = sample_stats();
        let mut ids = output_counters(
            100,
            &[("tx_ring_full", 10), ("member_down", 30), ("tx_error", 0)],
        );
        ids.filtered_out_packets = 20;
        s.output_groups = vec![pb::OutputGroupStats {
            name: "ids".into(),
            filter: "tcp port 80".into(),
            counters: Some(ids),
            rates: Some(pb::OutputRates {
                packets_per_second: 2500.0,
                ..Default::default()
            }),
            members: vec![
                pb::OutputMemberStats {
                    name: "o1".into(),
                    ifname: "veth1".into(),
                    counters: Some(output_counters(
                        50,
                        &[("tx_ring_full", 10), ("member_down", 0)],
                    )),
                    ..Default::default()
                },
                pb::OutputMemberStats {
                    name: "o2".into(),
                    ifname: "veth2".into(),
                    counters: Some(output_counters(10, &[("member_down", 30)])),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
        let mut stage = output_counters(40, &[("queue_full", 5), ("disk_error", 0)]);
        stage.filtered_out_packets = 80;
        s.recorders = vec![pb::RecorderStats {
            name: "disk".into(),
            directory: "/data/pcap".into(),
            current_file: "/data/pcap/disk-1.pcap.part".into(),
            filter: "udp".into(),
            files_created: 3,
            files_completed: 2,
            bytes_written: 4_000,
            packets_written: 35,
            queue_dropped_packets: 5,
            disk_dropped_packets: 7,
            disk_errors: 1,
            last_disk_error: "writing /data/pcap/disk-1.pcap.part:\nNo space left on device".into(),
            last_disk_error_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            filter_stage: Some(stage),
            ..Default::default()
        }];
        s.taps = vec![pb::TapStats {
            id: 4,
            point: "passive-1 rx".into(),
            filter: "icmp or arp".into(),
            started_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            matched_packets: 12,
            sent_packets: 11,
            lost_packets: 1,
            rates: Some(pb::TapRates {
                matched_packets_per_second: 3.0,
                ..Default::default()
            }),
        }];
        s
    }

    #[test]
    fn stats_json_and_tables_show_outputs_recorders_and_taps() {
        let v = serde_json::to_value(stats_json(outputs_stats(), None)).unwrap();
        let g = &v["output_groups"][0];
        assert_eq!(g["name"], "ids");
        assert_eq!(g["filter"], "tcp port 80");
        assert_eq!(g["snap_length_bytes"], 0);
        assert_eq!(g["counters"]["filtered_out_packets"], 20);
        assert_eq!(
            g["counters"]["dropped_packets_by_reason"]["member_down"],
            30
        );
        assert_eq!(g["rates"]["packets_per_second"], 2500.0);
        assert_eq!(g["members"][1]["ifname"], "veth2");
        assert_eq!(g["members"][1]["recorder"], "");
        assert!(g["members"][1]["rates"].is_null());
        let r = &v["recorders"][0];
        assert_eq!(r["current_file"], "/data/pcap/disk-1.pcap.part");
        assert_eq!(r["files_completed"], 2);
        assert_eq!(r["disk_dropped_packets"], 7);
        assert_eq!(r["last_disk_error_at"], "2027-01-15T08:00:00Z");
        assert_eq!(
            r["filter_stage"]["dropped_packets_by_reason"]["queue_full"],
            5
        );
        assert!(r["rates"].is_null() && r["filter_stage_rates"].is_null());
        let t = &v["taps"][0];
        assert_eq!(
            (t["id"].as_u64(), t["point"].as_str()),
            (Some(4), Some("passive-1 rx"))
        );
        assert_eq!(t["lost_packets"], 1);
        assert_eq!(t["rates"]["matched_packets_per_second"], 3.0);
        // Without them: empty lists, and no tables.
        let v = serde_json::to_value(stats_json(sample_stats(), None)).unwrap();
        for key in ["output_groups", "recorders", "taps"] {
            assert_eq!(v[key], serde_json::json!([]), "{key}");
        }
        let plain = render_stats(&stats_json(sample_stats(), None));
        for header in ["GROUP", "RECORDER", "TAP"] {
            assert!(
                !plain.lines().any(|l| l.starts_with(header)),
                "{header}: {plain}"
            );
        }

        let text = render_stats(&stats_json(outputs_stats(), None));
        let lines: Vec<&str> = text.lines().collect();
        let at = |header: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(header))
                .unwrap_or_else(|| panic!("no {header} table:\n{text}"))
        };
        let g = at("GROUP");
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        // GROUP MEMBER IFNAME PACKETS BYTES FILTERED_OUT DROPS TOP_REASONS
        assert_eq!(
            cols(lines[g + 1]),
            [
                "ids",
                "-",
                "-",
                "100",
                "10000",
                "20",
                "40",
                "member_down",
                "30,",
                "tx_ring_full",
                "10"
            ],
            "{text}"
        );
        assert_eq!(
            cols(lines[g + 2]),
            [
                "ids",
                "o1",
                "veth1",
                "50",
                "5000",
                "-",
                "10",
                "tx_ring_full",
                "10"
            ],
            "{text}"
        );
        assert_eq!(
            cols(lines[g + 3])[..7],
            ["ids", "o2", "veth2", "10", "1000", "-", "30"]
        );
        let r = at("RECORDER");
        // RECORDER ACCEPTED FILTERED_OUT WRITTEN BYTES FILES QDROPS DISKDROPS ERRORS FILE
        assert_eq!(
            cols(lines[r + 1]),
            [
                "disk",
                "40",
                "80",
                "35",
                "4000",
                "3",
                "5",
                "7",
                "1",
                "/data/pcap/disk-1.pcap.part"
            ],
            "{text}"
        );
        assert_eq!(
            lines[r + 2],
            "recorder disk: last disk error at 2027-01-15T08:00:00Z: writing /data/pcap/disk-1.pcap.part: No space left on device",
            "{text}"
        );
        let t = at("TAP");
        // TAP POINT (two words) STARTED MATCHED SENT LOST FILTER
        assert_eq!(
            cols(lines[t + 1]),
            [
                "4",
                "passive-1",
                "rx",
                "2027-01-15T08:00:00Z",
                "12",
                "11",
                "1",
                "icmp",
                "or",
                "arp"
            ],
            "{text}"
        );

        let watch = render_stats(&stats_json(outputs_stats(), Some(1000)));
        let row = watch
            .lines()
            .find(|l| l.starts_with("ids  "))
            .expect("group row");
        // The rates come after DROPS, before the reasons.
        assert_eq!(cols(row)[7..10], ["2.50k", "0", "0"], "{watch}");
        let member = watch.lines().find(|l| l.contains("veth1")).unwrap();
        assert_eq!(cols(member)[7..10], ["-", "-", "-"], "{watch}");
        let tap = watch
            .lines()
            .find(|l| l.contains("passive-1 rx  2027"))
            .unwrap();
        assert_eq!(cols(tap)[7..10], ["3", "0", "0"], "{watch}");
        assert!(watch.contains("WRITE PKT/S"), "{watch}");
    }

    #[test]
    fn top_drop_reasons_are_the_largest_first() {
        let m = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|(r, n)| (r.to_string(), *n)).collect()
        };
        assert_eq!(top_drop_reasons(&m(&[])), "-");
        assert_eq!(top_drop_reasons(&m(&[("tx_error", 0)])), "-");
        assert_eq!(
            top_drop_reasons(&m(&[("a", 1), ("b", 5), ("c", 3)])),
            "b 5, c 3"
        );
        // Ties by name.
        assert_eq!(
            top_drop_reasons(&m(&[("tx_ring_full", 2), ("member_down", 2)])),
            "member_down 2, tx_ring_full 2"
        );
    }

    #[test]
    fn empty_chain_says_so() {
        let c = chain_json(pb::Chain {
            generation: 1,
            status: Some(pb::ChainStatus {
                observed_generation: 1,
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = render_chain(&c);
        assert!(text.contains("the chain is empty"), "{text}");
        assert!(text.contains("generation 1"), "{text}");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["spec"]["hops"], serde_json::json!([]));
        assert_eq!(v["spec"]["default_on_failure"], "unspecified");
        assert_eq!(v["status"]["observed_generation"], 1);
        assert!(v["status"]["last_rejected"].is_null());
    }

    fn hop_status(name: &str) -> pb::HopStatus {
        pb::HopStatus {
            name: name.into(),
            state: pb::HopState::BypassedManual.into(),
            traffic: pb::HopTraffic::Bypassed.into(),
            on_failure: pb::FailureAction::Drop.into(),
            manual_bypass: true,
            tool_healthy: true,
            last_transition_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            reason: "ManualBypass".into(),
            message: "tool upgrade, OPS-123".into(),
        }
    }

    fn two_hop_spec() -> pb::ChainSpec {
        parse_spec(
            r#"{"hops":[{"name":"ids","a":"t1a","b":"t1b"},{"name":"fw","a":"t2a","b":"t2b","on_failure":"drop"}],"default_on_failure":"bypass"}"#,
            "f",
        )
        .unwrap()
    }

    #[test]
    fn chain_shows_hops_generations_and_the_last_rejection() {
        let spec = two_hop_spec();
        let mut fw = hop_status("fw");
        fw.state = pb::HopState::Down.into();
        fw.traffic = pb::HopTraffic::Dropped.into();
        fw.manual_bypass = false;
        fw.tool_healthy = false;
        fw.reason = "HeartbeatsLost".into();
        fw.message = "3 heartbeats lost in 300 ms".into();
        let c = chain_json(pb::Chain {
            spec: Some(spec.clone()),
            generation: 3,
            status: Some(pb::ChainStatus {
                observed_generation: 2,
                applied_spec: Some(pb::ChainSpec {
                    hops: spec.hops[..1].to_vec(),
                    ..spec.clone()
                }),
                hops: vec![hop_status("ids"), fw],
                last_rejected: Some(pb::RejectedUpdate {
                    spec: Some(spec),
                    generation: Some(3),
                    rejected_at: None,
                    reason: "ApplyFailed".into(),
                    message: "tool2a: no such interface".into(),
                    errors: vec![],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = render_chain(&c);
        assert!(
            text.starts_with("chain generation 3, applied generation 2\n"),
            "{text}"
        );
        assert!(
            text.contains("generation 3 is not in force: the dataplane could not apply it"),
            "{text}"
        );
        assert!(text.contains("in force, generation 2:"), "{text}");
        assert!(text.contains("bypass (default)"), "{text}");
        let row = |name: &str| -> Vec<String> {
            let header = text
                .lines()
                .position(|l| l.starts_with("HOP") && l.contains("STATE"))
                .expect("hop status table");
            text.lines()
                .skip(header + 1)
                .find(|l| l.starts_with(name))
                .expect("hop row")
                .split("  ")
                .filter(|c| !c.is_empty())
                .map(|c| c.trim().to_string())
                .collect()
        };
        assert_eq!(
            row("ids"),
            [
                "ids",
                "bypassed_manual",
                "bypassed",
                "drop",
                "yes",
                "healthy",
                "2027-01-15T08:00:00Z",
                "ManualBypass",
                "tool upgrade, OPS-123"
            ]
        );
        assert_eq!(
            row("fw"),
            [
                "fw",
                "down",
                "dropped",
                "drop",
                "no",
                "unhealthy",
                "2027-01-15T08:00:00Z",
                "HeartbeatsLost",
                "3 heartbeats lost in 300 ms"
            ]
        );
        assert!(
            text.contains(
                "last rejected update (generation 3): ApplyFailed tool2a: no such interface"
            ),
            "{text}"
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"]["hops"][0]["manual_bypass"], true);
        assert_eq!(v["status"]["hops"][1]["state"], "down");
        assert_eq!(v["status"]["last_rejected"]["generation"], 3);
    }

    fn issue(field: &str, message: &str) -> pb::ValidationIssue {
        pb::ValidationIssue {
            field: field.into(),
            message: message.into(),
        }
    }

    #[test]
    fn chain_set_outcomes_and_exit_codes() {
        let applied = |generation: u64, observed: u64| {
            let mut chain = pb::Chain {
                spec: Some(two_hop_spec()),
                generation,
                status: Some(pb::ChainStatus {
                    observed_generation: observed,
                    ..Default::default()
                }),
                ..Default::default()
            };
            if observed != generation {
                chain.status.as_mut().unwrap().last_rejected = Some(pb::RejectedUpdate {
                    generation: Some(generation),
                    reason: "ApplyFailed".into(),
                    message: "tool2a is down".into(),
                    ..Default::default()
                });
            }
            chain
        };
        let ok = SetChainJson::from_response(pb::SetChainResponse {
            validation: Some(pb::ValidationResult {
                valid: true,
                errors: vec![],
                warnings: vec![issue("hops[0].a", "generic XDP only")],
            }),
            accepted: true,
            generation: 5,
            chain: Some(applied(5, 5)),
        });
        assert!(ok.applied);
        let text = render_set_chain(&ok, false);
        assert_eq!(
            text,
            "accepted: chain generation 5, applied\nwarning: hops[0].a: generic XDP only\n"
        );
        assert!(set_chain_verdict(&ok, false).is_ok());
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(v["generation"], 5);
        assert_eq!(v["applied"], true);
        assert_eq!(v["chain"]["generation"], 5);

        // Accepted, but the dataplane could not apply it: exit 1.
        let failed = SetChainJson::from_response(pb::SetChainResponse {
            validation: Some(pb::ValidationResult {
                valid: true,
                ..Default::default()
            }),
            accepted: true,
            generation: 6,
            chain: Some(applied(6, 5)),
        });
        assert!(!failed.applied);
        assert!(render_set_chain(&failed, false).contains("could not apply it"));
        let f = set_chain_verdict(&failed, false).unwrap_err();
        assert_eq!(f.code, exit::SERVER);
        assert!(f.message.contains("tool2a is down"), "{}", f.message);

        // Dry runs: valid exits 0, invalid 1.
        let dry = |valid: bool| {
            SetChainJson::from_response(pb::SetChainResponse {
                validation: Some(pb::ValidationResult {
                    valid,
                    errors: if valid {
                        vec![]
                    } else {
                        vec![issue("hops[1].name", "duplicate\nname")]
                    },
                    warnings: vec![],
                }),
                accepted: false,
                generation: 4,
                chain: Some(applied(4, 4)),
            })
        };
        assert_eq!(
            render_set_chain(&dry(true), true),
            "valid (dry run): nothing changed, chain generation 4\n"
        );
        assert!(set_chain_verdict(&dry(true), true).is_ok());
        assert_eq!(
            render_set_chain(&dry(false), true),
            "invalid (dry run): nothing changed, chain generation 4\n\
             error: hops[1].name: duplicate name\n"
        );
        assert_eq!(
            set_chain_verdict(&dry(false), true).unwrap_err().code,
            exit::SERVER
        );

        // Refused by the server: the details carry the problems.
        let status = tapline_control::details::with_validation(
            Code::InvalidArgument,
            "the spec is invalid".into(),
            &pb::ValidationResult {
                valid: false,
                errors: vec![
                    issue("hops[0].a", "no such interface"),
                    issue("", "too many hops"),
                ],
                warnings: vec![],
            },
        );
        let refused = SetChainJson::refused(tapline_control::details::validation(&status).unwrap());
        assert_eq!(
            render_set_chain(&refused, false),
            "rejected: the chain spec is invalid; the chain in force does not change\n\
             error: hops[0].a: no such interface\n\
             error: -: too many hops\n"
        );
        let f = set_chain_verdict(&refused, false).unwrap_err();
        assert_eq!(f.code, exit::SERVER);
        assert_eq!(
            f.message,
            "the chain spec is invalid (2 error(s)); nothing changed"
        );
        let v = serde_json::to_value(&refused).unwrap();
        assert!(v["generation"].is_null() && v["chain"].is_null());
        assert_eq!(v["errors"][1]["message"], "too many hops");
    }

    #[test]
    fn spec_files_parse_in_both_shapes() {
        let spec = parse_spec(
            r#"{"hops":[{"name":"ids","a":"t1a","b":"t1b","on_failure":"drop"}],"default_on_failure":"bypass"}"#,
            "f",
        )
        .unwrap();
        assert_eq!(spec.hops[0].on_failure(), pb::FailureAction::Drop);
        assert_eq!(spec.default_on_failure(), pb::FailureAction::Bypass);
        // `chain get --json` output round-trips.
        let got = serde_json::to_string(&chain_json(pb::Chain {
            spec: Some(spec.clone()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(parse_spec(&got, "f").unwrap(), spec);
        let e = parse_spec(
            r#"{"hops":[{"name":"x","a":"a","b":"b","on_failure":"maybe"}]}"#,
            "f",
        )
        .unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("hops[0].on_failure"), "{}", e.message);
        assert!(parse_spec(r#"{"hops":[],"bogus":1}"#, "f").is_err());
        assert!(parse_spec("not json", "f").is_err());
    }
}
