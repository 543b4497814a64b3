//! The `tapline.v1.Admin` service: changes to the inline chain, forwarded
//! to the dataplane, which owns the chain (see [`crate::dataplane`]), and
//! live packet taps.
//!
//! A tap is checked here first (a point is given, the filter compiles),
//! then started on a connection of its own to the dataplane, whose batches
//! are relayed into the gRPC stream through a bounded channel
//! ([`TAP_CHANNEL_MESSAGES`]). The relay never stops reading the
//! dataplane: when the client is slow and the channel is full, a batch is
//! dropped and its packets are reported in the next message's
//! `lost_packets` (and in `TapEnded`). A client that cancels drops the
//! channel, the relay drops the connection, and the dataplane ends the
//! tap. When the sidecar stops, open taps end with `SERVER_SHUTDOWN`.
//!
//! The service is always behind its bearer token (`control.admin_token_file`;
//! without one it refuses every call, see [`crate::auth`]), so by the time a
//! call gets here its caller is authenticated. Each change, accepted or
//! refused, is logged at info with the caller's address.

use std::net::SocketAddr;

use tapline_packet::filter::Filter;
use tapline_packet::logging::json;
use tapline_proto::v1::admin_server::Admin;
use tapline_proto::{limits, v1};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, info, warn};

use crate::dataplane::{DataplaneClient, TapConnection};
use crate::details;

/// Messages a tap's gRPC stream buffers for a slow client before batches
/// are dropped (and counted as lost).
pub const TAP_CHANNEL_MESSAGES: usize = 16;
/// How long a stopping sidecar waits for a slow client to take a tap's
/// `ended` message.
const SHUTDOWN_SEND: std::time::Duration = std::time::Duration::from_secs(1);

/// The service.
#[derive(Debug, Clone)]
pub struct AdminService {
    dataplane: DataplaneClient,
    /// Turns true when the sidecar stops (taps then end with
    /// `SERVER_SHUTDOWN`).
    shutdown: Option<watch::Receiver<bool>>,
}

impl AdminService {
    pub fn new(dataplane: DataplaneClient) -> AdminService {
        AdminService {
            dataplane,
            shutdown: None,
        }
    }

    /// Ends open taps with `SERVER_SHUTDOWN` when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> AdminService {
        self.shutdown = Some(shutdown);
        self
    }
}

/// The INVALID_ARGUMENT of requests over the bounds of
/// [`tapline_proto::limits`], with the fields in the status details as the
/// dataplane's validation reports them.
fn over_bounds(violations: &[limits::Violation]) -> Status {
    let validation = v1::ValidationResult {
        valid: false,
        errors: violations
            .iter()
            .map(|v| v1::ValidationIssue {
                field: v.field.clone(),
                message: v.message.clone(),
            })
            .collect(),
        warnings: Vec::new(),
    };
    let msg = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    details::with_validation(Code::InvalidArgument, msg, &validation)
}

/// Checks what the sidecar can check without the dataplane.
fn check_tap(req: &v1::TapRequest) -> Result<(), Status> {
    limits::check_tap(req).map_err(|v| over_bounds(&[v]))?;
    if req.point.as_ref().is_none_or(|p| p.location.is_none()) {
        return Err(Status::invalid_argument(
            "point is required: a port (\"passive-1\", \"inline-1\", \"inline-2\") or a hop side",
        ));
    }
    if !req.filter.trim().is_empty() {
        Filter::compile(&req.filter)
            .map_err(|e| Status::invalid_argument(format!("filter: {e}")))?;
    }
    Ok(())
}

/// What the relay has seen of a tap, for the totals it adjusts.
#[derive(Debug, Default)]
struct Relayed {
    /// Packets received from the dataplane.
    received: u64,
    /// Packets the dataplane reported lost.
    dataplane_lost: u64,
    /// Packets dropped here because the client was slow.
    dropped: u64,
    /// Lost packets not yet reported to the client.
    pending_lost: u64,
}

/// Moves a tap's messages from the dataplane to the client until the tap
/// ends, the client cancels or the sidecar stops.
async fn relay(
    mut conn: TapConnection,
    tx: mpsc::Sender<Result<v1::TapResponse, Status>>,
    mut shutdown: Option<watch::Receiver<bool>>,
    peer: String,
) {
    let mut seen = Relayed::default();
    let stopping = async move {
        match shutdown.as_mut() {
            Some(rx) => crate::state::stopping(rx).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopping);
    loop {
        let next = tokio::select! {
            m = conn.next() => m,
            () = tx.closed() => {
                debug!(%peer, "tap cancelled by the client");
                return;
            }
            () = &mut stopping => {
                let lost = seen.dataplane_lost + seen.dropped;
                let ended = v1::TapResponse {
                    lost_packets: seen.pending_lost,
                    ended: Some(v1::TapEnded {
                        reason: v1::TapEndReason::ServerShutdown.into(),
                        message: "tapline-control is shutting down".into(),
                        matched_packets: seen.received + seen.dataplane_lost,
                        sent_packets: seen.received - seen.dropped,
                        lost_packets: lost,
                    }),
                    ..Default::default()
                };
                // Bounded: the server's grace period is running.
                let _ = tokio::time::timeout(SHUTDOWN_SEND, tx.send(Ok(ended))).await;
                return;
            }
        };
        let mut msg = match next {
            Ok(Some(m)) => m,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::unavailable(
                        "the dataplane closed the tap without ending it (it stopped or restarted)",
                    )))
                    .await;
                return;
            }
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        };
        let n = msg.packets.len() as u64;
        seen.received += n;
        seen.dataplane_lost += msg.lost_packets;
        msg.lost_packets += seen.pending_lost;
        if let Some(ended) = msg.ended.as_mut() {
            // The client's view: what this sidecar dropped was not sent.
            ended.sent_packets = ended.sent_packets.saturating_sub(seen.dropped);
            ended.lost_packets += seen.dropped;
            info!(
                %peer,
                reason = ended.reason().as_str_name(),
                matched = ended.matched_packets,
                sent = ended.sent_packets,
                lost = ended.lost_packets,
                "tap ended"
            );
            // The last message waits for room: nothing else is read now.
            let _ = tx.send(Ok(msg)).await;
            return;
        }
        match tx.try_send(Ok(msg)) {
            Ok(()) => seen.pending_lost = 0,
            Err(mpsc::error::TrySendError::Full(Ok(m))) => {
                // The client is slow: this batch is dropped, its packets
                // are reported lost in the next message.
                seen.dropped += n;
                seen.pending_lost = m.lost_packets + n;
            }
            Err(_) => {
                debug!(%peer, "tap cancelled by the client");
                return;
            }
        }
    }
}

/// The caller's address for the log, or "unknown" (no TCP connection info,
/// as in tests that call the service directly).
fn peer(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// The status's message without line breaks or control characters, and
/// bounded, for a log field.
fn refusal(s: &Status) -> String {
    let one_line = s.message().split_whitespace().collect::<Vec<_>>().join(" ");
    limits::escape(&limits::truncate(
        &one_line,
        limits::MAX_STORED_MESSAGE_BYTES,
    ))
    .into_owned()
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn set_chain(
        &self,
        request: Request<v1::SetChainRequest>,
    ) -> Result<Response<v1::SetChainResponse>, Status> {
        let peer = peer(request.remote_addr());
        let req = request.into_inner();
        let dry_run = req.dry_run;
        let expected_generation = req.expected_generation;
        let Some(hops) = req.spec.as_ref().map(|s| s.hops.len()) else {
            let s = Status::invalid_argument(
                "spec is required: send the whole desired chain (a spec without hops bridges \
                 inline-1 and inline-2 directly)",
            );
            info!(%peer, dry_run, code = ?s.code(), "chain change refused: no spec");
            return Err(s);
        };
        if let Some(spec) = req.spec.as_ref() {
            let over = limits::check_spec(spec);
            if !over.is_empty() {
                let s = over_bounds(&over);
                info!(%peer, dry_run, hops, code = ?s.code(), reason = %refusal(&s), "chain change refused");
                return Err(s);
            }
        }
        match self.dataplane.set_chain(req).await {
            Ok(r) => {
                let valid = r.validation.as_ref().is_some_and(|v| v.valid);
                let observed = r
                    .chain
                    .as_ref()
                    .and_then(|c| c.status.as_ref())
                    .map_or(0, |s| s.observed_generation);
                if r.accepted {
                    info!(
                        %peer,
                        generation = r.generation,
                        observed_generation = observed,
                        hops,
                        expected_generation = %json(&expected_generation),
                        "chain change accepted"
                    );
                } else {
                    info!(
                        %peer,
                        dry_run,
                        valid,
                        generation = r.generation,
                        hops,
                        "chain spec checked (dry run), nothing changed"
                    );
                }
                Ok(Response::new(r))
            }
            Err(s) if crate::dataplane::outcome_unknown(&s) => {
                warn!(
                    %peer,
                    dry_run,
                    expected_generation = %json(&expected_generation),
                    hops,
                    code = ?s.code(),
                    reason = %refusal(&s),
                    "chain change sent, but its answer was lost: it may have been applied"
                );
                Err(s)
            }
            Err(s) => {
                info!(
                    %peer,
                    dry_run,
                    expected_generation = %json(&expected_generation),
                    hops,
                    code = ?s.code(),
                    reason = %refusal(&s),
                    "chain change refused"
                );
                Err(s)
            }
        }
    }

    async fn set_hop_bypass(
        &self,
        request: Request<v1::SetHopBypassRequest>,
    ) -> Result<Response<v1::SetHopBypassResponse>, Status> {
        let peer = peer(request.remote_addr());
        let req = request.into_inner();
        if let Err(v) = limits::check_set_hop_bypass(&req) {
            let s = over_bounds(&[v]);
            info!(%peer, bypass = req.bypass, code = ?s.code(), reason = %refusal(&s), "manual bypass change refused");
            return Err(s);
        }
        let (hop, bypass) = (req.hop.clone(), req.bypass);
        match self.dataplane.set_hop_bypass(req).await {
            Ok(r) => {
                info!(%peer, hop, bypass, "manual bypass {}", if bypass { "set" } else { "cleared" });
                Ok(Response::new(r))
            }
            Err(s) => {
                info!(
                    %peer,
                    hop,
                    bypass,
                    code = ?s.code(),
                    reason = %refusal(&s),
                    "manual bypass change refused"
                );
                Err(s)
            }
        }
    }

    type TapStream = ReceiverStream<Result<v1::TapResponse, Status>>;

    async fn tap(
        &self,
        request: Request<v1::TapRequest>,
    ) -> Result<Response<Self::TapStream>, Status> {
        let peer = peer(request.remote_addr());
        let req = request.into_inner();
        let filter = req.filter.clone();
        if let Err(s) = check_tap(&req) {
            info!(%peer, code = ?s.code(), reason = %refusal(&s), "tap refused");
            return Err(s);
        }
        let conn = match self.dataplane.tap(req).await {
            Ok(c) => c,
            Err(s) => {
                info!(%peer, code = ?s.code(), reason = %refusal(&s), "tap refused");
                return Err(s);
            }
        };
        info!(%peer, filter = %limits::escape(&filter), "tap started");
        let (tx, rx) = mpsc::channel(TAP_CHANNEL_MESSAGES);
        tokio::spawn(relay(conn, tx, self.shutdown.clone(), peer));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{chain, tmpdir, FakeDataplane, Reply};
    use crate::details;
    use tapline_proto::v1::dataplane_request::Request as DpRequest;
    use tapline_proto::v1::dataplane_response::Response as DpResponse;
    use tonic::Code;

    fn answer(r: DpResponse) -> Reply {
        Reply::message(v1::DataplaneResponse { response: Some(r) })
    }

    fn spec(hops: &[&str]) -> v1::ChainSpec {
        chain(1, hops).spec.unwrap()
    }

    /// A dataplane at generation 7 that accepts valid specs (those whose
    /// hops all have an `a`) and keeps nothing.
    fn dataplane() -> FakeDataplane {
        FakeDataplane::start("admin", |req| match &req.request {
            Some(DpRequest::SetChain(r)) => {
                let spec = r.spec.clone().unwrap_or_default();
                let errors: Vec<v1::ValidationIssue> = spec
                    .hops
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.a.is_empty())
                    .map(|(i, _)| v1::ValidationIssue {
                        field: format!("hops[{i}].a"),
                        message: "is empty".into(),
                    })
                    .collect();
                let validation = v1::ValidationResult {
                    valid: errors.is_empty(),
                    errors,
                    warnings: vec![],
                };
                if !validation.valid && !r.dry_run {
                    return answer(DpResponse::Error(v1::DataplaneError {
                        code: Code::InvalidArgument as i32,
                        message: "the spec is invalid: hops[0].a is empty".into(),
                        validation: Some(validation),
                    }));
                }
                let accepted = validation.valid && !r.dry_run;
                let generation = if accepted { 8 } else { 7 };
                answer(DpResponse::SetChain(v1::SetChainResponse {
                    validation: Some(validation),
                    accepted,
                    generation,
                    chain: Some(chain(generation, &[])),
                }))
            }
            Some(DpRequest::SetHopBypass(r)) if r.hop == "ids" => {
                answer(DpResponse::SetHopBypass(v1::SetHopBypassResponse {
                    hop: Some(v1::HopStatus {
                        name: r.hop.clone(),
                        manual_bypass: r.bypass,
                        state: v1::HopState::BypassedManual.into(),
                        ..Default::default()
                    }),
                }))
            }
            Some(DpRequest::SetHopBypass(r)) => answer(DpResponse::Error(v1::DataplaneError {
                code: Code::NotFound as i32,
                message: format!("no hop {:?} in the chain", r.hop),
                validation: None,
            })),
            _ => Reply::Close,
        })
    }

    #[tokio::test]
    async fn set_chain_forwards_and_returns_the_dataplanes_answer() {
        let dp = dataplane();
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let req = v1::SetChainRequest {
            spec: Some(spec(&["ids", "fw"])),
            expected_generation: Some(7),
            dry_run: false,
        };
        let r = svc
            .set_chain(Request::new(req.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(r.accepted);
        assert_eq!(r.generation, 8);
        assert_eq!(
            dp.requests.lock().unwrap().last().unwrap().request,
            Some(DpRequest::SetChain(req))
        );

        // Dry run of an invalid spec: OK, with the validation.
        let mut bad = spec(&["ids"]);
        bad.hops[0].a.clear();
        let r = svc
            .set_chain(Request::new(v1::SetChainRequest {
                spec: Some(bad.clone()),
                expected_generation: None,
                dry_run: true,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(!r.accepted);
        assert_eq!(r.generation, 7);
        assert_eq!(r.validation.unwrap().errors[0].field, "hops[0].a");

        // For real: INVALID_ARGUMENT with the validation in the details.
        let e = svc
            .set_chain(Request::new(v1::SetChainRequest {
                spec: Some(bad),
                expected_generation: None,
                dry_run: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let v = details::validation(&e).expect("validation in the details");
        assert!(!v.valid);
        assert_eq!(v.errors.len(), 1);
        assert_eq!(v.errors[0].field, "hops[0].a");
    }

    #[tokio::test]
    async fn a_request_without_spec_is_refused_before_forwarding() {
        let dp = dataplane();
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let e = svc
            .set_chain(Request::new(v1::SetChainRequest {
                spec: None,
                expected_generation: None,
                dry_run: true,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("spec is required"),
            "{}",
            e.message()
        );
        assert!(dp.requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn set_hop_bypass_forwards_and_unknown_hops_are_not_found() {
        let dp = dataplane();
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let hop = svc
            .set_hop_bypass(Request::new(v1::SetHopBypassRequest {
                hop: "ids".into(),
                bypass: true,
                reason: "upgrade".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .hop
            .unwrap();
        assert!(hop.manual_bypass);
        assert_eq!(hop.state(), v1::HopState::BypassedManual);
        let e = svc
            .set_hop_bypass(Request::new(v1::SetHopBypassRequest {
                hop: "nope".into(),
                bypass: false,
                reason: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }

    #[tokio::test]
    async fn without_a_dataplane_changes_and_taps_are_unavailable() {
        let dir = tmpdir("admin-none");
        let svc = AdminService::new(DataplaneClient::new(&dir));
        let e = svc
            .set_hop_bypass(Request::new(v1::SetHopBypassRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("control.sock"), "{}", e.message());
        let e = svc
            .tap(Request::new(tap_request("passive-1", "")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("control.sock"), "{}", e.message());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tap_request(port: &str, filter: &str) -> v1::TapRequest {
        v1::TapRequest {
            point: Some(v1::TapPoint {
                location: Some(v1::tap_point::Location::Port(port.into())),
                direction: v1::TapDirection::Rx.into(),
            }),
            filter: filter.into(),
            ..Default::default()
        }
    }

    fn tap_msg(r: v1::TapResponse) -> v1::DataplaneResponse {
        v1::DataplaneResponse {
            response: Some(DpResponse::Tap(r)),
        }
    }

    fn started() -> v1::TapResponse {
        v1::TapResponse {
            started: Some(v1::TapStarted {
                ifname: "p1".into(),
                snap_length_bytes: 65535,
                sample_one_in: 1,
                link_type: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn batch(first: u8, n: u8, lost: u64) -> v1::TapResponse {
        v1::TapResponse {
            packets: (first..first + n)
                .map(|i| v1::TapPacket {
                    timestamp_unix_ns: u64::from(i),
                    original_length_bytes: 60,
                    data: vec![i; 60].into(),
                    direction: v1::TapDirection::Rx.into(),
                    queue_id: 0,
                })
                .collect(),
            lost_packets: lost,
            ..Default::default()
        }
    }

    fn ended(matched: u64, sent: u64, lost: u64) -> v1::TapResponse {
        v1::TapResponse {
            ended: Some(v1::TapEnded {
                reason: v1::TapEndReason::PacketLimit.into(),
                message: String::new(),
                matched_packets: matched,
                sent_packets: sent,
                lost_packets: lost,
            }),
            ..Default::default()
        }
    }

    async fn collect(
        mut s: ReceiverStream<Result<v1::TapResponse, Status>>,
    ) -> Vec<Result<v1::TapResponse, Status>> {
        use tokio_stream::StreamExt;
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn taps_without_a_point_are_refused_before_the_dataplane_is_asked() {
        let dp = dataplane();
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let e = svc
            .tap(Request::new(v1::TapRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("point is required"),
            "{}",
            e.message()
        );
        assert!(dp.requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_filters_are_refused_naming_the_column() {
        let dp = dataplane();
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let e = svc
            .tap(Request::new(tap_request("passive-1", "udp and prot 5")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("filter: column 9: "),
            "{}",
            e.message()
        );
        assert!(dp.requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_tap_relays_the_dataplanes_batches_and_its_end() {
        let msgs = vec![
            tap_msg(started()),
            tap_msg(batch(0, 3, 0)),
            tap_msg(batch(3, 2, 1)),
            tap_msg(ended(6, 5, 1)),
        ];
        let dp = FakeDataplane::start("tap-relay", move |req| match &req.request {
            Some(DpRequest::Tap(_)) => Reply::Stream(msgs.clone()),
            _ => Reply::Close,
        });
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let req = tap_request("passive-1", "");
        let stream = svc
            .tap(Request::new(req.clone()))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<v1::TapResponse> = collect(stream)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![started(), batch(0, 3, 0), batch(3, 2, 1), ended(6, 5, 1)]
        );
        assert_eq!(
            dp.requests.lock().unwrap()[0].request,
            Some(DpRequest::Tap(req))
        );
    }

    #[tokio::test]
    async fn a_slow_client_loses_batches_and_the_totals_still_add_up() {
        let mut msgs = vec![tap_msg(started())];
        for i in 0..100u8 {
            msgs.push(tap_msg(batch(i, 1, u64::from(i % 2))));
        }
        // The dataplane itself lost 50 and sent 100.
        msgs.push(tap_msg(ended(150, 100, 50)));
        let dp = FakeDataplane::start("tap-slow", move |_| Reply::Stream(msgs.clone()));
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir()));
        let stream = svc
            .tap(Request::new(tap_request("inline-1", "")))
            .await
            .unwrap()
            .into_inner();
        // The client reads nothing for a while: the relay keeps reading
        // the dataplane and drops what does not fit.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let got: Vec<v1::TapResponse> = collect(stream)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(got.len() <= TAP_CHANNEL_MESSAGES + 1, "{}", got.len());
        let end = got.last().unwrap().ended.clone().expect("ended last");
        let packets: u64 = got.iter().map(|m| m.packets.len() as u64).sum();
        let lost: u64 = got.iter().map(|m| m.lost_packets).sum();
        assert!(packets < 100);
        assert_eq!(end.sent_packets, packets);
        assert_eq!(end.lost_packets, lost);
        assert_eq!(end.matched_packets, 150);
        assert_eq!(end.sent_packets + end.lost_packets, end.matched_packets);
    }

    #[tokio::test]
    async fn refusals_keep_the_dataplanes_status_and_shutdown_ends_open_taps() {
        let dp = FakeDataplane::start("tap-refused", |req| match &req.request {
            Some(DpRequest::Tap(t)) if t.filter == "hang" => {
                Reply::Stream(vec![tap_msg(started())])
            }
            _ => answer(DpResponse::Error(v1::DataplaneError {
                code: Code::NotFound as i32,
                message: "no hop \"x\" in the applied chain (hops: none)".into(),
                validation: None,
            })),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let svc = AdminService::new(DataplaneClient::new(dp.state_dir())).with_shutdown(stop_rx);
        let e = svc
            .tap(Request::new(tap_request("inline-1", "")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("no hop"), "{}", e.message());

        let mut req = tap_request("inline-1", "");
        req.filter = "hang".into();
        // (The skeleton filter takes anything; the fake only looks at it.)
        let stream = match svc.tap(Request::new(req)).await {
            Ok(s) => s.into_inner(),
            Err(e) if e.code() == Code::InvalidArgument => return,
            Err(e) => panic!("{e:?}"),
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop_tx.send_replace(true);
        let got: Vec<v1::TapResponse> = collect(stream)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got.len(), 2);
        let end = got[1].ended.clone().unwrap();
        assert_eq!(end.reason(), v1::TapEndReason::ServerShutdown);
    }
}
