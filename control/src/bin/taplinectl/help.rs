//! The long help of each verb (`taplinectl VERB --help`), with the shape of
//! its `--json` output. The man page (`taplinectl man`) carries them too.

pub const EXIT_CODES_HELP: &str = "\
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

Errors are one line on stderr. --json prints the RPC's response message in
the proto3 JSON mapping, as grpcurl and buf curl print it: lowerCamelCase
keys, 64-bit integers as strings (\"rxPackets\": \"12\", exact in jq and
JavaScript; jq: .rxPackets | tonumber), enum values by their proto name
(\"DATAPLANE_STATE_RUNNING\"), instants as RFC 3339 strings, bytes in
base64. Fields at their default value are printed (0 as \"0\", false, \"\",
[], {}); a message field the server left unset is absent. Keys are only
ever added: scripts must ignore keys they do not know. The fields are
documented in the .proto files (tapline/v1/*.proto).

Shell completion: taplinectl completion bash|zsh|fish|elvish|powershell.
Man page: taplinectl man > taplinectl.1.";

pub const STATUS_HELP: &str = "\
Shows the versions, the dataplane's state and uptime, the health of the
three health service names, the interfaces with the XDP mode each obtained,
and the workers.

--json prints GetInfoResponse with two keys added, endpoint and health:
  {\"endpoint\": URL, \"health\": {\"\": STATUS, \"inline\": STATUS,
     \"passive-1\": STATUS},
   \"version\", \"dataplaneVersion\", \"hostname\",
   \"dataplaneState\": \"DATAPLANE_STATE_UNSPECIFIED\"|\"DATAPLANE_STATE_STARTING\"|
     \"DATAPLANE_STATE_RUNNING\"|\"DATAPLANE_STATE_STOPPED\"|
     \"DATAPLANE_STATE_UNRESPONSIVE\",
   \"dataplaneStartedAt\": time (absent until a dataplane was seen),
   \"dataplaneUptimeMs\": \"n\", \"controlUptimeMs\": \"n\", \"statsEpoch\": \"n\",
   \"interfaces\": [{\"role\", \"ifname\", \"hop\", \"ifindex\", \"macAddress\",
     \"driver\", \"mtuBytes\", \"linkUp\", \"xdpMode\", \"requestedXdpMode\",
     \"xdpModeReason\", \"queues\": [{\"queueId\", \"xdpMode\", \"workerId\"}]}],
   \"workers\": [{\"workerId\", \"cpu\" (absent when not pinned),
     \"queues\": [{\"role\", \"ifname\", \"queueId\"}]}],
   \"kernelFallback\": {\"linksHeld\", \"carrying\", \"kernelQueues\", \"queues\",
     \"action\", \"leaseExpiries\", \"takeovers\", \"dataplaneConnected\",
     \"countersReadable\", \"ports\": [{\"role\", \"ifname\", \"attach\",
     \"forwarded\", \"dropped\"}]} (absent without inline links)}
STATUS as in `health`.";

pub const STATS_HELP: &str = "\
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
cumulative since the dataplane start named by the epoch; counts are exact,
rates use SI prefixes (k, M, G; byte rates through bytesize).

With --watch, the server sends a snapshot every --interval-ms with rates
computed between consecutive snapshots; the table is redrawn in place when
stdout is a terminal and appended otherwise. Stop with Ctrl-C or --count.

--json prints GetStatsResponse, {\"stats\": STATS}; with --watch one
WatchStatsResponse per line, {\"stats\": STATS, \"intervalMs\": n}:
  STATS = {\"statsEpoch\": \"n\", \"sampledAt\": time, \"dataplaneStartedAt\": time,
   \"dataplaneState\": enum, \"ratesWindowMs\": \"n\",
   \"ports\": [{\"role\", \"ifname\", \"hop\", \"xdpMode\", \"totals\": COUNTERS,
     \"kernelTotals\": KERNEL, \"rates\": RATES,
     \"queues\": [{\"queueId\", \"xdpMode\", \"workerId\", \"counters\": COUNTERS,
       \"kernel\": KERNEL, \"rates\": RATES}]}],
   \"workers\": [{\"workerId\", \"cpu\", \"batches\", \"busyLoops\", \"idleLoops\",
     \"idleWaits\", \"batchLatency\": LATENCY, \"rates\": {\"batchesPerSecond\",
     \"busyLoopRatio\", \"idleWaitsPerSecond\"}}],
   \"hops\": [{\"name\", \"toToolPackets\", \"toToolBytes\", \"fromToolPackets\",
     \"fromToolBytes\", \"bypassedPackets\", \"bypassedBytes\", \"droppedPackets\",
     \"droppedPacketsByReason\": {reason: \"n\"}, \"heartbeatsSent\",
     \"heartbeatsReturned\", \"heartbeatsLate\", \"heartbeatsLost\",
     \"roundTripLatency\": LATENCY, \"roundTripLatencyHistogram\": {\"count\",
       \"sumNs\", \"buckets\": [{\"upperBoundNs\", \"count\"}]},
     \"rates\": {\"toToolPacketsPerSecond\", ...}}],
   \"outputGroups\": [{\"name\", \"filter\", \"snapLengthBytes\", \"counters\": OUTPUT,
     \"rates\": OUTPUT_RATES, \"members\": [{\"name\", \"ifname\", \"recorder\",
       \"counters\": OUTPUT, \"rates\": OUTPUT_RATES}]}],
   \"recorders\": [{\"name\", \"directory\", \"currentFile\", \"filter\",
     \"snapLengthBytes\", \"filesCreated\", \"filesCompleted\", \"filesMigrated\",
     \"filesDeleted\", \"bytesWritten\", \"packetsWritten\",
     \"queueDroppedPackets\", \"queueDroppedBytes\", \"diskDroppedPackets\",
     \"diskErrors\", \"lastDiskError\", \"lastDiskErrorAt\": time,
     \"rates\": {...}, \"filterStage\": OUTPUT, \"filterStageRates\": OUTPUT_RATES}],
   \"taps\": [{\"id\", \"point\", \"filter\", \"startedAt\": time,
     \"matchedPackets\", \"sentPackets\", \"lostPackets\", \"rates\": {...}}],
   \"kernelFallback\": {\"ports\": [{\"role\", \"forwarded\", \"dropped\",
     \"leaseExpiries\"}], \"leaseExpiries\", \"takeovers\"}}
  COUNTERS = {\"rxPackets\", \"rxBytes\", \"txPackets\", \"txBytes\",
    \"droppedPackets\", \"droppedPacketsByReason\": {reason: \"n\"}}
  OUTPUT = {\"packets\", \"bytes\", \"filteredOutPackets\", \"droppedPackets\",
    \"droppedPacketsByReason\": {reason: \"n\"}}
  OUTPUT_RATES = {\"packetsPerSecond\", \"bytesPerSecond\",
    \"filteredOutPacketsPerSecond\", \"droppedPacketsPerSecond\"}
  KERNEL = {\"rxDropped\", \"rxInvalidDescs\", \"txInvalidDescs\", \"rxRingFull\",
    \"rxFillRingEmpty\", \"txRingEmpty\"}
  RATES = {\"rxPacketsPerSecond\", \"rxBytesPerSecond\", \"txPacketsPerSecond\",
    \"txBytesPerSecond\", \"droppedPacketsPerSecond\",
    \"droppedPacketsPerSecondByReason\"}
  LATENCY = {\"count\", \"windowNs\", \"p50Ns\", \"p90Ns\", \"p99Ns\", \"p999Ns\",
    \"maxNs\"}
Counters (uint64) are strings; rates are JSON numbers.
Histogram buckets are cumulative (each counts the samples at most its
upper bound); the +Inf bucket is \"count\".
Rates are absent in a one-shot snapshot, in the first snapshot of a watch
and after the epoch changed (ratesWindowMs is \"0\" then).
kernelFallback holds the inline ports' kernel fallback counters as the
dataplane copies them into the stats segment (absent without an inline
pair); they outlive a restart. While the dataplane is down, stats is
unavailable: `status` shows the link keeper's figures.";

pub const CHAIN_HELP: &str = "\
The inline chain, as the dataplane reports it: the desired spec and its
generation, the generation the dataplane applied (smaller while an update
is being applied or after one failed to apply), the state of each hop
(state, where its traffic goes, failure action, manual bypass, whether the
tool passes heartbeats, and the last transition with its reason) and the
last rejected update. An empty chain bridges inline-1 and inline-2
directly. When the dataplane does not answer, the server fails the call
with UNAVAILABLE (exit 1).

--json prints GetChainResponse (chain watch: one WatchChainResponse per
line, per change), both {\"chain\": CHAIN}:
  CHAIN = {\"generation\": \"n\", \"updatedAt\": time, \"spec\": SPEC,
   \"status\": {\"observedGeneration\": \"n\", \"appliedSpec\": SPEC,
     \"appliedAt\": time,
     \"hops\": [{\"name\", \"state\": \"HOP_STATE_UNSPECIFIED\"|\"HOP_STATE_UP\"|
       \"HOP_STATE_DOWN\"|\"HOP_STATE_BYPASSED_MANUAL\",
       \"traffic\": \"HOP_TRAFFIC_UNSPECIFIED\"|\"HOP_TRAFFIC_THROUGH_TOOL\"|
       \"HOP_TRAFFIC_BYPASSED\"|\"HOP_TRAFFIC_DROPPED\",
       \"onFailure\", \"manualBypass\", \"toolHealthy\",
       \"lastTransitionAt\": time, \"reason\", \"message\"}],
     \"lastRejected\": {\"spec\": SPEC, \"generation\": \"n\",
       \"rejectedAt\": time, \"reason\", \"message\",
       \"errors\": [{\"field\", \"message\"}]}}}
  SPEC = {\"hops\": [{\"name\", \"a\", \"b\", \"onFailure\":
    \"FAILURE_ACTION_UNSPECIFIED\"|\"FAILURE_ACTION_BYPASS\"|\"FAILURE_ACTION_DROP\"}],
    \"defaultOnFailure\": same values}
Unset messages (status, appliedSpec, lastRejected, instants) are absent.";

pub const CHAIN_SET_HELP: &str = "\
Replaces the desired chain (Admin.SetChain; needs the edit role,
--token-file). FILE (\"-\" for stdin) is JSON: either a SPEC in the proto3
JSON mapping,
{\"hops\": [{\"name\": \"ids\", \"a\": \"tool1a\", \"b\": \"tool1b\",
\"onFailure\": \"FAILURE_ACTION_BYPASS\"}], \"defaultOnFailure\":
\"FAILURE_ACTION_DROP\"} (the .proto names on_failure and default_on_failure
and the short values \"bypass\", \"drop\" and \"unspecified\" are accepted too;
both may be left out), or the output of `chain get --json`, whose
chain.spec is used.

The dataplane validates the spec, and unless --dry-run, persists it as the
next generation and applies it before answering. --expected-generation N
makes the change only if the chain is still at generation N (read it with
`chain get`); otherwise the server answers FAILED_PRECONDITION (exit 1)
and nothing changes.

Prints the outcome, the generation after the call and one line per
validation error or warning (\"error: FIELD: MESSAGE\"). Exits 1 when the
spec is invalid (dry run or not: nothing changes), when the expected
generation is stale, and when the dataplane accepted the spec but could not
apply it (the chain in force stays the previous one; see lastRejected in
`chain get`).

--json prints SetChainResponse with \"applied\" added:
  {\"accepted\": bool, \"generation\": \"n\"|null,
   \"validation\": {\"valid\": bool, \"errors\": [{\"field\", \"message\"}],
     \"warnings\": [{\"field\", \"message\"}]},
   \"applied\": bool, \"chain\": CHAIN|null}
(CHAIN as in `chain get --json`; generation and chain are null when the
server refused an invalid spec, which leaves the chain unchanged; applied
is true when the dataplane applies the generation after the call).";

pub const CHAIN_BYPASS_HELP: &str = "\
Sets (or with --clear, clears) the manual bypass of one hop
(Admin.SetHopBypass; needs the edit role, --token-file). While it is set,
traffic goes around the tool whatever its health. The bypass is runtime
state: it does not change the chain's generation, and it goes away when
the hop leaves the chain. An unknown hop fails with NOT_FOUND (exit 1).

Prints the hop's status after the change. --json prints
SetHopBypassResponse:
  {\"hop\": {\"name\", \"state\", \"traffic\", \"onFailure\", \"manualBypass\",
   \"toolHealthy\", \"lastTransitionAt\": time, \"reason\", \"message\"}}
(values as in `chain get --json`).";

pub const HEALTH_HELP: &str = "\
Checks grpc.health.v1.Health for the service names \"\" (overall),
\"passive-1\" and \"inline\". Works without a token, and against the
health-only port (--endpoint http://HOST:8086) as well. Exits 0 when the
overall status (service name \"\") is SERVING, 4 when the server answered
with another status (like grpc_health_probe), and with the usual codes when
it could not be asked. `status` exits 4 in the same case, after printing.

--json prints {\"endpoint\": URL, \"services\": {\"\": STATUS, \"inline\": STATUS,
  \"passive-1\": STATUS}}, STATUS being the grpc.health.v1 enum name:
\"SERVING\", \"NOT_SERVING\", \"UNKNOWN\", or \"SERVICE_UNKNOWN\" (also when the
server does not know the name).";

pub const TAP_HELP: &str = "\
Streams copies of the packets seen at one point of the dataplane
(Admin.Tap; needs the admin role, --token-file) until -c packets were
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
TapPacket per line instead (proto3 JSON):
  {\"timestampUnixNs\": \"n\", \"direction\": \"TAP_DIRECTION_RX\"|
   \"TAP_DIRECTION_TX\", \"queueId\", \"originalLengthBytes\",
   \"data\": the captured bytes in base64}

At the end, stderr says how many packets were captured, how many were lost
because the client (or the path to it) was too slow, and why the tap
ended. Exits 0 when the tap ended or was interrupted, 1 when the server
refused it (an unknown hop, a port that is not configured, too many
taps).";
