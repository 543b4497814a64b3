//! `taplinectl chain set -f FILE`: replace the desired chain.
//!
//! The input is a `ChainSpec` in the proto3 JSON mapping (field names in
//! lowerCamelCase or as in the .proto, failure actions by enum name, e.g.
//! `"FAILURE_ACTION_BYPASS"`, or by the short names `"bypass"`, `"drop"`
//! and `"unspecified"` of earlier releases), or the output of
//! `chain get --json`, whose `chain.spec` is used (or `spec`, as earlier
//! releases printed it).
//!
//! `--json` prints `SetChainResponse` in the proto3 JSON mapping with one
//! key added, `applied` (the dataplane applies the generation after the
//! call); when the server refused an invalid spec, `generation` and
//! `chain` are null and `validation` holds the problems.

use std::path::Path;

use serde_json::Value;
use tapline_config::FailureAction;
use tapline_proto::v1 as pb;
use tonic::Code;

use crate::conn::{Session, Target};
use crate::exit;
use crate::failure::{one_line, root_cause, Failure};
use crate::output::{dash, emit, emit_json, json_text};
use crate::Cli;

/// The shortest deadline of `chain set`: tapline-control waits up to 15 s
/// for the dataplane to apply a chain before it answers.
const SET_CHAIN_MIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The outcome of `chain set`.
#[derive(Debug)]
pub struct Outcome {
    pub accepted: bool,
    /// `None` when the server refused the spec with INVALID_ARGUMENT.
    pub generation: Option<u64>,
    pub validation: pb::ValidationResult,
    /// The dataplane applies `generation` after the call.
    pub applied: bool,
    pub chain: Option<pb::Chain>,
}

impl Outcome {
    pub fn from_response(r: pb::SetChainResponse) -> Outcome {
        let applied = r
            .chain
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.observed_generation == r.generation);
        Outcome {
            accepted: r.accepted,
            generation: Some(r.generation),
            validation: r.validation.unwrap_or_default(),
            applied,
            chain: r.chain,
        }
    }

    /// The outcome of a spec the server refused (INVALID_ARGUMENT with the
    /// validation result in the status details).
    pub fn refused(v: pb::ValidationResult) -> Outcome {
        Outcome {
            accepted: false,
            generation: None,
            validation: v,
            applied: false,
            chain: None,
        }
    }

    /// The update that refused to apply `generation`, if the chain says so.
    fn apply_failure(&self) -> Option<&pb::RejectedUpdate> {
        let generation = self.generation?;
        self.chain
            .as_ref()?
            .status
            .as_ref()?
            .last_rejected
            .as_ref()
            .filter(|r| r.generation == Some(generation))
    }

    /// What `--json` prints (see the module's doc).
    pub fn json(&self) -> Result<Value, Failure> {
        let value = |text: String| -> Result<Value, Failure> {
            serde_json::from_str(&text)
                .map_err(|e| Failure::new(exit::SERVER, format!("encoding JSON: {e}")))
        };
        let mut v = serde_json::Map::new();
        v.insert("accepted".into(), self.accepted.into());
        v.insert(
            "generation".into(),
            self.generation
                .map_or(Value::Null, |g| g.to_string().into()),
        );
        v.insert(
            "validation".into(),
            value(json_text(&self.validation, false)?)?,
        );
        v.insert("applied".into(), self.applied.into());
        let chain = match &self.chain {
            Some(c) => value(json_text(c, false)?)?,
            None => Value::Null,
        };
        v.insert("chain".into(), chain);
        Ok(Value::Object(v))
    }
}

/// A failure action in a spec file: the proto3 JSON enum name, or the
/// short names of earlier releases. Numbers pass through to the parser.
fn normalize_action(v: &mut Value, field: &str, source: &str) -> Result<(), Failure> {
    let Value::String(name) = v else {
        return Ok(());
    };
    if name.is_empty() || name == "unspecified" {
        *v = Value::String(pb::FailureAction::Unspecified.as_str_name().into());
        return Ok(());
    }
    if pb::FailureAction::from_str_name(name).is_some() {
        return Ok(());
    }
    // The operator's names ("bypass", "drop") come from the config's one
    // table, so a new action needs no change here.
    let action: FailureAction = name
        .parse()
        .map_err(|e| Failure::usage(format!("{source}: {field}: {e}")))?;
    *v = Value::String(action.to_proto().as_str_name().into());
    Ok(())
}

/// The keys a spec file must spell out: the proto3 JSON mapping would take
/// a missing one as its default (an empty interface name), which is a typo
/// rather than an intent.
fn require_fields(v: &Value, source: &str) -> Result<(), Failure> {
    let missing =
        |what: &str, key: &str| Failure::usage(format!("{source}: {what}missing field `{key}`"));
    let Some(hops) = v.get("hops") else {
        return Err(missing("", "hops"));
    };
    for (i, hop) in hops.as_array().into_iter().flatten().enumerate() {
        for key in ["name", "a", "b"] {
            if hop.get(key).is_none() {
                return Err(missing(&format!("hops[{i}]: "), key));
            }
        }
    }
    Ok(())
}

/// Parses a spec file: a SPEC, or `chain get --json` output.
pub fn parse_spec(text: &str, source: &str) -> Result<pb::ChainSpec, Failure> {
    let bad = |e: String| Failure::usage(format!("{source}: {e}"));
    let mut v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    // `chain get --json` output: {"chain": {"spec": SPEC, ...}}, or
    // {"spec": SPEC, ...} as earlier releases printed it.
    if let Some(spec) = v.get_mut("chain").and_then(|c| c.get_mut("spec")) {
        v = spec.take();
    } else if let Some(spec) = v.get_mut("spec") {
        v = spec.take();
    }
    require_fields(&v, source)?;
    for key in ["defaultOnFailure", "default_on_failure"] {
        if let Some(a) = v.get_mut(key) {
            normalize_action(a, "default_on_failure", source)?;
        }
    }
    if let Some(hops) = v.get_mut("hops").and_then(Value::as_array_mut) {
        for (i, hop) in hops.iter_mut().enumerate() {
            for key in ["onFailure", "on_failure"] {
                if let Some(a) = hop.get_mut(key) {
                    normalize_action(a, &format!("hops[{i}].on_failure"), source)?;
                }
            }
        }
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// Reads FILE, or stdin for "-".
fn read_spec(file: &Path) -> Result<pb::ChainSpec, Failure> {
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
    parse_spec(&text, &source)
}

/// The `chain set` verb.
pub async fn run(
    cli: &Cli,
    file: &Path,
    dry_run: bool,
    expected_generation: Option<u64>,
) -> Result<(), Failure> {
    let spec = read_spec(file)?;
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
        Ok(r) => Outcome::from_response(r.into_inner()),
        // An invalid spec: the problems are in the status details.
        Err(e) if e.code() == Code::InvalidArgument => {
            match tapline_control::details::validation(&e) {
                Some(v) => Outcome::refused(v),
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
        emit_json(&out.json()?, true)?;
    } else {
        emit(&render(&out, dry_run))?;
    }
    verdict(&out, dry_run)
}

/// The human output of `chain set`: the outcome, then one line per
/// validation error and warning.
pub fn render(out: &Outcome, dry_run: bool) -> String {
    use std::fmt::Write as _;
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
                one_line(&r.reason),
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
            if out.validation.valid {
                "valid"
            } else {
                "invalid"
            }
        );
    } else {
        let _ = writeln!(text, "rejected: chain generation stays {generation}");
    }
    let v = &out.validation;
    for (kind, list) in [("error", &v.errors), ("warning", &v.warnings)] {
        for i in list {
            let _ = writeln!(text, "{kind}: {}: {}", dash(&i.field), one_line(&i.message));
        }
    }
    text
}

/// Whether `chain set` succeeded (see CHAIN_SET_HELP for the exit codes).
pub fn verdict(out: &Outcome, dry_run: bool) -> Result<(), Failure> {
    if !out.validation.valid {
        return Err(Failure::new(
            exit::SERVER,
            format!(
                "the chain spec is invalid ({} error(s)){}",
                out.validation.errors.len(),
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
