use super::set::{parse_spec, render as render_set_chain, verdict as set_chain_verdict, Outcome};
use super::*;
use crate::exit;
use tonic::Code;

/// `chain get --json` of `c`, parsed (the whole GetChainResponse).
fn chain_value(c: &pb::Chain) -> serde_json::Value {
    let text = crate::output::json_text(
        &pb::GetChainResponse {
            chain: Some(c.clone()),
        },
        true,
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn empty_chain_says_so() {
    let c = pb::Chain {
        generation: 1,
        spec: Some(pb::ChainSpec::default()),
        status: Some(pb::ChainStatus {
            observed_generation: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let text = render_chain(&c);
    assert!(text.contains("the chain is empty"), "{text}");
    assert!(text.contains("generation 1"), "{text}");
    let v = &chain_value(&c)["chain"];
    assert_eq!(v["spec"]["hops"], serde_json::json!([]));
    assert_eq!(v["spec"]["defaultOnFailure"], "FAILURE_ACTION_UNSPECIFIED");
    assert_eq!(v["status"]["observedGeneration"], "1");
    assert!(v["status"].get("lastRejected").is_none());
}

fn hop_status(name: &str) -> pb::HopStatus {
    pb::HopStatus {
        name: name.into(),
        state: pb::HopState::BypassedManual.into(),
        traffic: pb::HopTraffic::Bypassed.into(),
        on_failure: pb::FailureAction::Drop.into(),
        manual_bypass: true,
        tool_healthy: true,
        last_transition_at: Some(tapline_proto::Timestamp {
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
    let c = pb::Chain {
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
    };
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
        text.contains("last rejected update (generation 3): ApplyFailed tool2a: no such interface"),
        "{text}"
    );
    let v = &chain_value(&c)["chain"];
    assert_eq!(v["status"]["hops"][0]["manualBypass"], true);
    assert_eq!(v["status"]["hops"][1]["state"], "HOP_STATE_DOWN");
    assert_eq!(v["status"]["lastRejected"]["generation"], "3");
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
    let ok = Outcome::from_response(pb::SetChainResponse {
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
    let v = ok.json().unwrap();
    assert_eq!(v["generation"], "5");
    assert_eq!(v["applied"], true);
    assert_eq!(v["chain"]["generation"], "5");

    // Accepted, but the dataplane could not apply it: exit 1.
    let failed = Outcome::from_response(pb::SetChainResponse {
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
        Outcome::from_response(pb::SetChainResponse {
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
    let refused = Outcome::refused(tapline_control::details::validation(&status).unwrap());
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
    let v = refused.json().unwrap();
    assert!(v["generation"].is_null() && v["chain"].is_null());
    assert_eq!(v["validation"]["valid"], false);
    assert_eq!(v["validation"]["errors"][1]["message"], "too many hops");
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
    let got = chain_value(&pb::Chain {
        spec: Some(spec.clone()),
        ..Default::default()
    })
    .to_string();
    assert_eq!(parse_spec(&got, "f").unwrap(), spec);
    // So does its `chain` object and the shape of earlier releases, and
    // the proto3 JSON names and enum values.
    let chain = serde_json::from_str::<serde_json::Value>(&got).unwrap()["chain"].to_string();
    assert_eq!(parse_spec(&chain, "f").unwrap(), spec);
    let old = r#"{"generation":3,"spec":{"hops":[{"name":"ids","a":"t1a","b":"t1b","on_failure":"drop"}],"default_on_failure":"bypass"}}"#;
    assert_eq!(parse_spec(old, "f").unwrap(), spec);
    let proto = r#"{"hops":[{"name":"ids","a":"t1a","b":"t1b","onFailure":"FAILURE_ACTION_DROP"}],"defaultOnFailure":"FAILURE_ACTION_BYPASS"}"#;
    assert_eq!(parse_spec(proto, "f").unwrap(), spec);
    let e = parse_spec(
        r#"{"hops":[{"name":"x","a":"a","b":"b","on_failure":"maybe"}]}"#,
        "f",
    )
    .unwrap_err();
    assert_eq!(e.code, exit::USAGE);
    assert!(e.message.contains("hops[0].on_failure"), "{}", e.message);
    assert!(parse_spec(r#"{"hops":[],"bogus":1}"#, "f").is_err());
    assert!(parse_spec("not json", "f").is_err());
    // Every hop names its two interfaces; a spec lists its hops.
    let e = parse_spec(r#"{"hops": [{"name": "ids", "a": "t1a"}]}"#, "f").unwrap_err();
    assert_eq!(e.code, exit::USAGE);
    assert!(
        e.message.contains("hops[0]: missing field `b`"),
        "{}",
        e.message
    );
    assert!(parse_spec(r#"{"defaultOnFailure": "bypass"}"#, "f")
        .unwrap_err()
        .message
        .contains("missing field `hops`"));
}

#[test]
fn spec_failure_actions_are_the_config_names() {
    let spec = parse_spec(
        r#"{"default_on_failure": "drop", "hops": [{"name": "ids", "a": "t1a", "b": "t1b", "on_failure": "bypass"}]}"#,
        "f",
    )
    .unwrap();
    assert_eq!(spec.default_on_failure, pb::FailureAction::Drop as i32);
    assert_eq!(spec.hops[0].on_failure, pb::FailureAction::Bypass as i32);
    let e = parse_spec(
        r#"{"hops": [{"name": "ids", "a": "t1a", "b": "t1b", "on_failure": "explode"}]}"#,
        "f",
    )
    .unwrap_err();
    assert_eq!(e.code, crate::exit::USAGE);
    assert_eq!(
        e.message,
        r#"f: hops[0].on_failure: "explode" is not a failure action: use "bypass" (fail open) or "drop" (fail closed)"#
    );
}
