//! Fuzzes the dataplane's command socket input: any bytes, as a stream from
//! a client, through the framing (`wire::read_frame_max` with the request
//! limit), the request bounds (`limits`), and for a chain update the spec's
//! conversion and validation. Asserts what keeps the chain API alive: a
//! frame over the limit is an error, never an allocation of its announced
//! size; a request that passes the bounds yields validation messages of
//! bounded length; an escaped text has no control character; and any
//! answer carrying the request's spec fits in a command frame after `fit`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tapline_config::chain::{ChainSpec, Environment};
use tapline_dataplane::command::fit;
use tapline_proto::v1::dataplane_request::Request;
use tapline_proto::v1::dataplane_response::Response;
use tapline_proto::{limits, v1, wire};

/// A machine whose three-letter interfaces starting with `t` exist, with
/// one queue each (`t0a` carries the default route).
struct FakeEnv;

impl Environment for FakeEnv {
    fn queues(&self, name: &str) -> Option<u32> {
        (name.len() == 3 && name.starts_with('t')).then_some(1)
    }
    fn reserved(&self) -> Vec<(String, &'static str)> {
        vec![("i1".into(), "inline-1"), ("i2".into(), "inline-2")]
    }
    fn inline_queues(&self) -> u32 {
        1
    }
    fn unfit(&self, name: &str) -> Option<String> {
        (name == "t0a").then(|| "it carries the default route".to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    // Every frame the stream holds, as a connection's thread reads them.
    for _ in 0..8 {
        let req: v1::DataplaneRequest =
            match wire::read_frame_max(&mut r, limits::MAX_REQUEST_FRAME) {
                Ok(Some(req)) => req,
                Ok(None) | Err(_) => return,
            };
        assert!(req.encoded_len() <= limits::MAX_REQUEST_FRAME);
        match req.request {
            Some(Request::SetChain(s)) => {
                let Some(p) = s.spec else { continue };
                let over = limits::check_spec(&p);
                for v in &over {
                    assert!(v.to_string().len() < 512, "{v}");
                    assert!(!v.to_string().chars().any(limits::forbidden_char));
                }
                if over.is_empty() {
                    if let Ok(c) = ChainSpec::from_proto(&p) {
                        let (errors, _) = tapline_config::chain::validate(&c, &FakeEnv);
                        for e in errors {
                            assert!(e.to_string().len() < 1024, "{e}");
                        }
                    }
                }
                // The request's spec carried back in an answer fits.
                let resp = fit(v1::DataplaneResponse {
                    response: Some(Response::SetChain(v1::SetChainResponse {
                        chain: Some(v1::Chain {
                            spec: Some(p),
                            ..Default::default()
                        }),
                        accepted: true,
                        generation: 2,
                        validation: None,
                    })),
                });
                assert!(resp.encoded_len() <= wire::MAX_FRAME);
            }
            Some(Request::SetHopBypass(b)) => {
                if let Err(v) = limits::check_set_hop_bypass(&b) {
                    assert!(!v.to_string().chars().any(limits::forbidden_char));
                }
                let e = limits::escape(&b.reason);
                assert!(!e.chars().any(limits::forbidden_char));
            }
            Some(Request::Tap(t)) => {
                let _ = limits::check_tap(&t);
            }
            Some(Request::GetChain(_)) | None => {}
        }
    }
});
