//! `taplinectl status` and `taplinectl health`: what the dataplane is and
//! how it is doing. Both exit 4 unless the overall health is SERVING.
//!
//! `status --json` prints `GetInfoResponse` in the proto3 JSON mapping
//! with two keys added, `endpoint` and `health`; `health --json` prints
//! `{"endpoint", "services": {NAME: STATUS}}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tapline_proto::v1 as pb;

use crate::conn::{Session, HEALTH_SERVICES};
use crate::exit;
use crate::failure::Failure;
use crate::output::{
    dash, dataplane_state_name, duration_ms, emit, emit_json, json_text, time, Table,
};
use crate::Cli;

/// What `health --json` prints.
#[derive(Debug, Serialize)]
pub struct HealthJson {
    endpoint: String,
    services: BTreeMap<String, String>,
}

/// `status --json`: the info message's proto3 JSON object, plus the
/// endpoint asked and the health of each service name.
pub fn status_json(
    url: &str,
    info: &pb::GetInfoResponse,
    health: &BTreeMap<String, String>,
) -> Result<serde_json::Value, Failure> {
    let text = json_text(info, false)?;
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(exit::SERVER, format!("encoding JSON: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("endpoint".into(), url.into());
        o.insert(
            "health".into(),
            serde_json::to_value(health).unwrap_or_default(),
        );
    }
    Ok(v)
}

pub fn health_label(service: &str) -> &str {
    if service.is_empty() {
        "(overall)"
    } else {
        service
    }
}

pub fn render_health(h: &HealthJson) -> String {
    let mut t = Table::new(&["SERVICE", "STATUS"]);
    for service in HEALTH_SERVICES {
        let status = h.services.get(service).map_or("?", String::as_str);
        t.row(vec![health_label(service).to_string(), status.to_string()]);
    }
    t.render()
}

/// The human form of `status`.
pub fn render_status(
    url: &str,
    s: &pb::GetInfoResponse,
    health: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tapline-control {} at {} (up {})",
        s.version,
        url,
        duration_ms(s.control_uptime_ms)
    );
    let state = dataplane_state_name(s.dataplane_state);
    let started_at = time(s.dataplane_started_at.as_ref());
    let dp = if let Some(started_at) = &started_at {
        format!(
            "{}, version {}, up {} (since {}), epoch {:#x}",
            state,
            if s.dataplane_version.is_empty() {
                "?"
            } else {
                &s.dataplane_version
            },
            duration_ms(s.dataplane_uptime_ms),
            started_at,
            s.stats_epoch
        )
    } else {
        format!("{state} (no dataplane seen yet)")
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
                health.get(*svc).map_or("?", String::as_str)
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

/// The `status` verb.
pub async fn status(cli: &Cli) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let info = s
        .observer()
        .get_info(s.target.unary(pb::GetInfoRequest {}))
        .await
        .map_err(|e| s.target.failure("tapline.v1.Observer/GetInfo", &e))?
        .into_inner();
    let health = s.health().await?;
    if cli.json {
        emit_json(&status_json(&s.target.url, &info, &health)?, true)?;
    } else {
        emit(&render_status(&s.target.url, &info, &health))?;
    }
    serving(health.get("").map(String::as_str))
}

/// Exit 4 unless the overall health is SERVING.
pub fn serving(overall: Option<&str>) -> Result<(), Failure> {
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

/// The `health` verb.
pub async fn health(cli: &Cli) -> Result<(), Failure> {
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
