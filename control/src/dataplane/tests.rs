use super::fake::{chain, get_chain_answer, tmpdir, FakeDataplane, Reply};
use super::*;

fn get() -> Request {
    Request::GetChain(v1::GetChainRequest {})
}

fn error(code: i32, message: &str, validation: Option<v1::ValidationResult>) -> Reply {
    Reply::message(v1::DataplaneResponse {
        response: Some(Response::Error(v1::DataplaneError {
            code,
            message: message.into(),
            validation,
        })),
    })
}

#[tokio::test]
async fn answers_come_back_and_each_call_has_its_connection() {
    let dp = FakeDataplane::start("answers", |req| match &req.request {
        Some(Request::GetChain(_)) => get_chain_answer(chain(4, &["ids"])),
        Some(Request::SetHopBypass(r)) => Reply::message(v1::DataplaneResponse {
            response: Some(Response::SetHopBypass(v1::SetHopBypassResponse {
                hop: Some(v1::HopStatus {
                    name: r.hop.clone(),
                    manual_bypass: r.bypass,
                    message: r.reason.clone(),
                    ..Default::default()
                }),
            })),
        }),
        _ => Reply::Close,
    });
    let c = DataplaneClient::new(dp.state_dir());
    assert_eq!(c.socket_path(), dp.dir.join("control.sock"));
    for _ in 0..3 {
        let r = c.get_chain().await.unwrap();
        assert_eq!(r.chain, Some(chain(4, &["ids"])));
    }
    let req = v1::SetHopBypassRequest {
        hop: "ids".into(),
        bypass: true,
        reason: "upgrade, OPS-1".into(),
    };
    let hop = c.set_hop_bypass(req.clone()).await.unwrap().hop.unwrap();
    assert!(hop.manual_bypass);
    assert_eq!(hop.message, "upgrade, OPS-1");
    // The request arrived as sent.
    let seen = dp.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].request, Some(Request::SetHopBypass(req)));
}

#[tokio::test]
async fn a_missing_or_dead_socket_is_unavailable_and_says_where() {
    let dir = tmpdir("missing");
    let c = DataplaneClient::new(&dir);
    let e = c.get_chain().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let path = dir.join("control.sock");
    assert!(
        e.message().starts_with(&format!(
            "dataplane command socket {} unreachable: cannot connect:",
            path.display()
        )),
        "{}",
        e.message()
    );
    assert!(
        e.message()
            .ends_with("is tapline-dataplane running with the same state_dir?"),
        "{}",
        e.message()
    );

    // A socket file left by a dataplane that died: connection refused.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let e = c.get_chain().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("refused"), "{}", e.message());
    std::fs::remove_dir_all(&dir).unwrap();

    let dp = FakeDataplane::start("killed", |_| get_chain_answer(chain(1, &[])));
    let c = DataplaneClient::new(dp.state_dir());
    c.get_chain().await.unwrap();
    dp.kill();
    tokio::task::yield_now().await;
    let e = c.get_chain().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

#[tokio::test]
async fn silence_and_hangups_are_unavailable() {
    let dp = FakeDataplane::start("hang", |req| match &req.request {
        Some(Request::GetChain(_)) => Reply::Hang,
        _ => Reply::Close,
    });
    let c = DataplaneClient::new(dp.state_dir());
    let t = std::time::Instant::now();
    let e = c.call(get(), Duration::from_millis(200)).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("no answer within 200 ms"),
        "{}",
        e.message()
    );

    let e = c
        .set_hop_bypass(v1::SetHopBypassRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message()
            .contains("closed the connection without answering"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn garbage_is_internal_and_oversized_frames_are_refused() {
    let (tx, rx) = std::sync::mpsc::channel::<Reply>();
    let rx = std::sync::Mutex::new(rx);
    let dp = FakeDataplane::start("garbage", move |_| rx.lock().unwrap().recv().unwrap());
    let c = DataplaneClient::new(dp.state_dir());
    let cases: Vec<(Reply, Code, &str)> = vec![
        // A length far beyond MAX_FRAME: refused before any allocation.
        (
            Reply::Raw(u32::MAX.to_le_bytes().to_vec()),
            Code::Internal,
            "larger than the limit",
        ),
        (
            Reply::Raw(((wire::MAX_FRAME + 1) as u32).to_le_bytes().to_vec()),
            Code::Internal,
            "larger than the limit",
        ),
        // A body that is not a DataplaneResponse.
        (
            Reply::Raw(vec![3, 0, 0, 0, 0xff, 0xff, 0xff]),
            Code::Internal,
            "does not decode",
        ),
        // Cut short: the dataplane died while answering.
        (
            Reply::Raw(vec![10, 0, 0, 0, 0x0a]),
            Code::Unavailable,
            "in the middle of its answer",
        ),
        // Half a length prefix.
        (
            Reply::Raw(vec![10, 0]),
            Code::Unavailable,
            "without answering",
        ),
        // A well-formed answer of the wrong kind.
        (
            Reply::message(v1::DataplaneResponse {
                response: Some(Response::SetChain(v1::SetChainResponse::default())),
            }),
            Code::Internal,
            "answered get_chain with set_chain",
        ),
        (
            Reply::message(v1::DataplaneResponse { response: None }),
            Code::Internal,
            "empty response",
        ),
        (
            error(0, "oops", None),
            Code::Internal,
            "error without a code: oops",
        ),
    ];
    for (reply, code, needle) in cases {
        tx.send(reply.clone()).unwrap();
        let e = c.call(get(), QUERY_TIMEOUT).await.unwrap_err();
        assert_eq!(e.code(), code, "{reply:?}: {e:?}");
        assert!(e.message().contains(needle), "{reply:?}: {}", e.message());
        assert!(!e.message().contains('\n'), "{}", e.message());
    }
    // The client is not wedged by any of that.
    tx.send(get_chain_answer(chain(2, &[]))).unwrap();
    assert_eq!(c.get_chain().await.unwrap().chain.unwrap().generation, 2);
}

#[tokio::test]
async fn dataplane_errors_become_statuses_with_their_validation() {
    let validation = v1::ValidationResult {
        valid: false,
        errors: vec![
            v1::ValidationIssue {
                field: "hops[0].a".into(),
                message: "interface tool0a does not exist".into(),
            },
            v1::ValidationIssue {
                field: "hops[1].name".into(),
                message: "\"ids\" is used by hops[0] already".into(),
            },
        ],
        warnings: vec![],
    };
    let v = validation.clone();
    let dp = FakeDataplane::start("errors", move |req| match &req.request {
        Some(Request::SetChain(r)) if r.expected_generation == Some(1) => {
            error(9, "expected generation 1, the chain is at 2", None)
        }
        Some(Request::SetChain(_)) => error(3, "the spec is invalid", Some(v.clone())),
        Some(Request::SetHopBypass(_)) => error(5, "no hop \"x\"", None),
        _ => error(99, "from the future", None),
    });
    let c = DataplaneClient::new(dp.state_dir());
    let e = c
        .set_chain(v1::SetChainRequest {
            spec: Some(v1::ChainSpec::default()),
            expected_generation: None,
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "the spec is invalid");
    assert_eq!(details::validation(&e), Some(validation));

    let e = c
        .set_chain(v1::SetChainRequest {
            spec: Some(v1::ChainSpec::default()),
            expected_generation: Some(1),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.details().is_empty());

    let e = c
        .set_hop_bypass(v1::SetHopBypassRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "no hop \"x\"");

    let e = c.get_chain().await.unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
}

#[tokio::test]
async fn a_mutation_that_times_out_may_have_been_applied() {
    let dp = FakeDataplane::start("slow-set", |_| Reply::Hang);
    let c = DataplaneClient::new(dp.state_dir());
    let e = c
        .call(
            Request::SetChain(v1::SetChainRequest::default()),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("the change may have been applied"),
        "{}",
        e.message()
    );
}
