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
use crate::failure::{one_line, Failure};
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
        one_line(&s.version),
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
                "?".to_string()
            } else {
                one_line(&s.dataplane_version)
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
        let _ = writeln!(out, "host: {}", one_line(&s.hostname));
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
        let _ = writeln!(out, "kernel fallback: {}", fallback_line(k));
    }
    if !s.interfaces.is_empty() {
        out.push('\n');
        out.push_str(&interfaces_table(&s.interfaces));
    }
    if !s.workers.is_empty() {
        out.push('\n');
        out.push_str(&workers_table(&s.workers));
    }
    out
}

/// The link keeper's state, one line.
fn fallback_line(k: &pb::KernelFallback) -> String {
    let state = if k.carrying {
        format!(
            "CARRYING the inline link ({} of {} queues, action {}): the chain is not inspecting",
            k.kernel_queues,
            k.queues,
            one_line(&k.action)
        )
    } else {
        format!("standby (action {})", one_line(&k.action))
    };
    let ports: Vec<String> = k
        .ports
        .iter()
        .map(|p| {
            format!(
                "{} {} {} forwarded {} dropped {}",
                one_line(&p.role),
                one_line(&p.ifname),
                one_line(&p.attach),
                p.forwarded,
                p.dropped
            )
        })
        .collect();
    format!(
        "{state}; lease expiries {}, takeovers {}; {}",
        k.lease_expiries,
        k.takeovers,
        ports.join("; ")
    )
}

/// One row per interface, with the XDP mode it obtained and its queues.
fn interfaces_table(interfaces: &[pb::InterfaceInfo]) -> String {
    let mut t = Table::new(&[
        "ROLE", "IFNAME", "HOP", "XDP MODE", "LINK", ">MTU", "DRIVER", "MAC", "QUEUES",
    ]);
    for i in interfaces {
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
    t.render()
}

/// One row per worker, with its CPU and queues.
fn workers_table(workers: &[pb::WorkerInfo]) -> String {
    let mut t = Table::new(&[">WORKER", ">CPU", "QUEUES"]);
    for w in workers {
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
    t.render()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> pb::GetInfoResponse {
        pb::GetInfoResponse {
            version: "0.1.0".into(),
            dataplane_version: "0.1.0".into(),
            hostname: "node-1\x1b[2J".into(),
            dataplane_state: pb::DataplaneState::Running.into(),
            dataplane_started_at: Some(tapline_proto::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            dataplane_uptime_ms: 3_723_000,
            stats_epoch: u64::MAX,
            interfaces: vec![pb::InterfaceInfo {
                role: "inline-1".into(),
                ifname: "net2".into(),
                xdp_mode: "generic-copy".into(),
                link_up: true,
                mtu_bytes: 1500,
                queues: vec![pb::QueueInfo {
                    queue_id: 0,
                    xdp_mode: "generic-copy".into(),
                    worker_id: 1,
                }],
                ..Default::default()
            }],
            workers: vec![pb::WorkerInfo {
                worker_id: 1,
                cpu: None,
                queues: vec![],
            }],
            ..Default::default()
        }
    }

    fn health() -> BTreeMap<String, String> {
        HEALTH_SERVICES
            .iter()
            .map(|s| (s.to_string(), "SERVING".to_string()))
            .collect()
    }

    #[test]
    fn status_json_is_get_info_with_endpoint_and_health() {
        let v = status_json("http://h:1", &info(), &health()).unwrap();
        assert_eq!(v["endpoint"], "http://h:1");
        assert_eq!(v["health"][""], "SERVING");
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["dataplaneState"], "DATAPLANE_STATE_RUNNING");
        assert_eq!(v["dataplaneUptimeMs"], "3723000");
        assert_eq!(v["statsEpoch"], u64::MAX.to_string());
        assert_eq!(v["interfaces"][0]["mtuBytes"], 1500);
        assert_eq!(v["interfaces"][0]["queues"][0]["workerId"], 1);
        // Unset: absent, not null.
        assert!(v["workers"][0].get("cpu").is_none(), "{v}");
        assert!(v.get("kernelFallback").is_none(), "{v}");
    }

    #[test]
    fn status_text_shows_state_health_interfaces_and_escapes_server_text() {
        let text = render_status("http://h:1", &info(), &health());
        assert!(
            text.contains("dataplane: running, version 0.1.0, up 1h2m3s"),
            "{text}"
        );
        assert!(text.contains("health: (overall) SERVING"), "{text}");
        // The host name comes from the server: no raw escape sequence.
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("host: node-1\\u{1b}[2J"), "{text}");
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("inline-1"))
            .expect("interface row")
            .split_whitespace()
            .collect();
        assert_eq!(
            row,
            [
                "inline-1",
                "net2",
                "-",
                "generic-copy",
                "up",
                "1500",
                "-",
                "-",
                "0@w1"
            ]
        );
    }
}
