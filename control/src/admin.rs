//! The `tapline.v1.Admin` service: changes to the inline chain, forwarded
//! to the dataplane, which owns the chain (see [`crate::dataplane`]).
//!
//! The service is always behind its bearer token (`control.admin_token_file`;
//! without one it refuses every call, see [`crate::auth`]), so by the time a
//! call gets here its caller is authenticated. Each change, accepted or
//! refused, is logged at info with the caller's address.

use std::net::SocketAddr;

use tapline_proto::v1;
use tapline_proto::v1::admin_server::Admin;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::dataplane::DataplaneClient;

/// The service.
#[derive(Debug, Clone)]
pub struct AdminService {
    dataplane: DataplaneClient,
}

impl AdminService {
    pub fn new(dataplane: DataplaneClient) -> AdminService {
        AdminService { dataplane }
    }
}

/// The caller's address for the log, or "unknown" (no TCP connection info,
/// as in tests that call the service directly).
fn peer(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// The status's message without line breaks, for a log field.
fn refusal(s: &Status) -> String {
    s.message().split_whitespace().collect::<Vec<_>>().join(" ")
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
                        ?expected_generation,
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
            Err(s) => {
                info!(
                    %peer,
                    dry_run,
                    ?expected_generation,
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
        _request: Request<v1::TapRequest>,
    ) -> Result<Response<Self::TapStream>, Status> {
        Err(Status::unimplemented(
            "packet taps are not available in this build",
        ))
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
    async fn without_a_dataplane_changes_are_unavailable_and_taps_unimplemented() {
        let dir = tmpdir("admin-none");
        let svc = AdminService::new(DataplaneClient::new(&dir));
        let e = svc
            .set_hop_bypass(Request::new(v1::SetHopBypassRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("control.sock"), "{}", e.message());
        let e = svc
            .tap(Request::new(v1::TapRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        assert_eq!(e.message(), "packet taps are not available in this build");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
