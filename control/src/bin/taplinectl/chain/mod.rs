//! `taplinectl chain get|watch|set|bypass`: the inline chain.
//!
//! `--json` prints the RPCs' responses in the proto3 JSON mapping:
//! `GetChainResponse` / `WatchChainResponse` (`{"chain": CHAIN}`) and
//! `SetHopBypassResponse` (`{"hop": HOP_STATUS}`); `chain set` prints the
//! outcome described in [`set`].

pub mod set;

use std::fmt::Write as _;

use tapline_proto::v1 as pb;

use crate::conn::{follow, Session};
use crate::failure::{esc, Failure};
use crate::output::{
    dash, emit, emit_json, failure_action_name, hop_state_name, hop_traffic_name, time, Table,
};
use crate::Cli;

/// The `chain get` verb.
pub async fn get(cli: &Cli) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let resp = s
        .observer()
        .get_chain(s.target.unary(pb::GetChainRequest {}))
        .await
        .map_err(|e| s.target.failure("tapline.v1.Observer/GetChain", &e))?
        .into_inner();
    if cli.json {
        emit_json(&resp, true)
    } else {
        emit(&render_chain(&resp.chain.unwrap_or_default()))
    }
}

/// The `chain watch` verb.
pub async fn watch(cli: &Cli, count: Option<u64>) -> Result<(), Failure> {
    const WHAT: &str = "tapline.v1.Observer/WatchChain";
    let s = Session::connect(cli).await?;
    let mut stream = s
        .observer()
        .watch_chain(pb::WatchChainRequest {})
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    follow(&s, &mut stream, count, WHAT, "chain", |msg, seen| {
        if cli.json {
            return emit_json(&msg, false);
        }
        emit(&format!(
            "{}{}",
            if seen > 1 { "\n" } else { "" },
            render_chain(&msg.chain.unwrap_or_default())
        ))
    })
    .await
}

/// The `chain bypass` verb.
pub async fn bypass(
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
    if cli.json {
        return emit_json(&resp, true);
    }
    let mut text = format!(
        "manual bypass of hop {hop} {}\n",
        if clear { "cleared" } else { "set" }
    );
    if let Some(h) = &resp.hop {
        text.push_str(&render_hop_status(std::slice::from_ref(h)));
    }
    emit(&text)
}

const EMPTY_CHAIN: &str = "the chain is empty: inline-1 and inline-2 are bridged directly\n";

fn render_spec_hops(spec: &pb::ChainSpec) -> String {
    if spec.hops.is_empty() {
        return EMPTY_CHAIN.into();
    }
    let mut t = Table::new(&["HOP", "A", "B", "ON FAILURE"]);
    for h in &spec.hops {
        let on_failure = if h.on_failure == i32::from(pb::FailureAction::Unspecified) {
            format!("{} (default)", failure_action_name(spec.default_on_failure))
        } else {
            failure_action_name(h.on_failure)
        };
        t.row(vec![h.name.clone(), h.a.clone(), h.b.clone(), on_failure]);
    }
    t.render()
}

/// The hop status table of `chain get`, `chain watch` and `chain bypass`.
pub fn render_hop_status(hops: &[pb::HopStatus]) -> String {
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
            hop_state_name(h.state),
            hop_traffic_name(h.traffic),
            failure_action_name(h.on_failure),
            if h.manual_bypass { "yes" } else { "no" }.to_string(),
            if h.tool_healthy {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_string(),
            time(h.last_transition_at.as_ref()).unwrap_or_else(|| "-".into()),
            dash(&h.reason),
            dash(&h.message),
        ]);
    }
    t.render()
}

/// The first line of `chain get`: generations desired and applied.
fn render_generations(c: &pb::Chain) -> String {
    let mut out = format!("chain generation {}", c.generation);
    if let Some(t) = time(c.updated_at.as_ref()) {
        let _ = write!(out, " (updated {t})");
    }
    match &c.status {
        Some(s) if s.observed_generation == 0 => out.push_str(", nothing applied yet"),
        Some(s) => {
            let _ = write!(out, ", applied generation {}", s.observed_generation);
            if let Some(t) = time(s.applied_at.as_ref()) {
                let _ = write!(out, " (at {t})");
            }
        }
        None => out.push_str(", applied generation unknown"),
    }
    out.push('\n');
    out
}

/// The human form of a chain.
pub fn render_chain(c: &pb::Chain) -> String {
    let mut out = render_generations(c);
    out.push_str(&render_spec_hops(&c.spec.clone().unwrap_or_default()));
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
                out.push_str(&render_spec_hops(applied));
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
            time(r.rejected_at.as_ref()).map_or(String::new(), |t| format!(" at {t}")),
            esc(&r.reason),
            esc(&r.message)
        );
        for e in &r.errors {
            let _ = writeln!(out, "  {}: {}", dash(&e.field), esc(&e.message));
        }
    }
    out
}

#[cfg(test)]
mod tests;
