//! `taplinectl stats [--watch]`: the counters of every port and queue,
//! worker, hop, output group, recorder, live tap and the kernel fallback.
//!
//! `--json` prints the RPC's response in the proto3 JSON mapping:
//! `GetStatsResponse` (`{"stats": STATS}`) once, or one
//! `WatchStatsResponse` (`{"stats": STATS, "intervalMs": N}`) per line.
//! The tables' counter columns are data (see [`columns`]).

pub mod columns;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};

use crossterm::{cursor, terminal, QueueableCommand};
use tapline_proto::v1 as pb;

use crate::conn::{follow, Session};
use crate::exit;
use crate::failure::{one_line, Failure};
use crate::output::{dash, dataplane_state_name, emit, emit_json, time, Table};
use crate::{Cli, StatsArgs};
use columns::{cells, headers, json, Column};

fn selector(args: &StatsArgs) -> Option<pb::StatsSelector> {
    if args.roles.is_empty() {
        None
    } else {
        Some(pb::StatsSelector {
            roles: args.roles.clone(),
            omit_queues: false,
        })
    }
}

/// The `stats` verb.
pub async fn run(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let s = Session::connect(cli).await?;
    let mut client = s.observer();
    if !args.watch {
        let resp = client
            .get_stats(s.target.unary(pb::GetStatsRequest {
                selector: selector(args),
            }))
            .await
            .map_err(|e| s.target.failure("tapline.v1.Observer/GetStats", &e))?
            .into_inner();
        return if cli.json {
            emit_json(&resp, true)
        } else {
            emit(&render(&resp.stats.unwrap_or_default(), None))
        };
    }
    const WHAT: &str = "tapline.v1.Observer/WatchStats";
    let mut stream = client
        .watch_stats(pb::WatchStatsRequest {
            interval_ms: args.interval_ms,
            selector: selector(args),
        })
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    let terminal = std::io::stdout().is_terminal();
    follow(&s, &mut stream, args.count, WHAT, "stats", |msg, seen| {
        if cli.json {
            return emit_json(&msg, false);
        }
        let text = render(&msg.stats.unwrap_or_default(), Some(msg.interval_ms));
        if terminal {
            redraw(&text)
        } else {
            emit(&format!("{}{text}", if seen > 1 { "\n" } else { "" }))
        }
    })
    .await
}

/// Replaces the screen with `text`: cursor home, clear, then the text, so
/// the table is redrawn in place whatever its height.
fn redraw(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.queue(cursor::MoveTo(0, 0))
        .and_then(|o| o.queue(terminal::Clear(terminal::ClearType::All)))
        .and_then(|o| o.write_all(text.as_bytes()))
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::quiet()
            } else {
                Failure::new(exit::SERVER, format!("writing to stdout: {e}"))
            }
        })
}

/// The tables of `stats`; `interval_ms` is set in a watch (rate columns).
pub fn render(s: &pb::Stats, interval_ms: Option<u32>) -> String {
    let watch = interval_ms.is_some();
    let mut out = String::new();
    let _ = write!(
        out,
        "dataplane {}, epoch {:#x}, sampled {}",
        dataplane_state_name(s.dataplane_state),
        s.stats_epoch,
        time(s.sampled_at.as_ref()).as_deref().unwrap_or("?")
    );
    if watch {
        if s.rates_window_ms > 0 {
            let _ = write!(out, ", rates over {} ms", s.rates_window_ms);
        } else {
            out.push_str(", no rates yet");
        }
    }
    out.push('\n');
    if s.ports.is_empty() {
        out.push_str("no ports: the dataplane has not published its counters\n");
    } else {
        out.push_str(&render_ports(&s.ports, watch));
    }
    let sections = [
        (!s.workers.is_empty()).then(|| render_workers(&s.workers, watch)),
        (!s.hops.is_empty()).then(|| render_hops(&s.hops, watch)),
        (!s.output_groups.is_empty()).then(|| render_output_groups(&s.output_groups, watch)),
        (!s.recorders.is_empty()).then(|| render_recorders(&s.recorders, watch)),
        (!s.taps.is_empty()).then(|| render_tap_stats(&s.taps, watch)),
        s.kernel_fallback.as_ref().map(render_fallback_stats),
    ];
    for section in sections.into_iter().flatten() {
        out.push('\n');
        out.push_str(&section);
    }
    out
}

/// Headers: the identity columns, then `counters`, then (in a watch)
/// `rates`, then `trailing`.
fn table(
    identity: &[&str],
    counters: &[Column],
    rates: &[Column],
    watch: bool,
    trailing: &[&str],
) -> Table {
    let mut h: Vec<String> = identity.iter().map(|s| s.to_string()).collect();
    h.extend(headers(counters));
    if watch {
        h.extend(headers(rates));
    }
    h.extend(trailing.iter().map(|s| s.to_string()));
    Table::new(&h)
}

/// One row per queue, plus an "all" row for ports with several queues.
fn render_ports(ports: &[pb::PortStats], watch: bool) -> String {
    // Tool ports name their hop; the column is there only with a chain.
    let hop_column = ports.iter().any(|p| !p.hop.is_empty());
    let mut identity = vec!["PORT", "IFNAME", ">QUEUE", "MODE"];
    if hop_column {
        identity.insert(2, "HOP");
    }
    let mut counters = columns::PORT.to_vec();
    // KERNEL DROPS is derived (a sum), not a field: it follows the
    // counters.
    counters.push(("", "KERNEL DROPS"));
    let mut t = table(&identity, &counters, columns::PORT_RATES, watch, &[]);
    let mut row = |p: &pb::PortStats,
                   queue: String,
                   mode: &str,
                   c: Option<&pb::PacketCounters>,
                   k: Option<&pb::KernelXdpCounters>,
                   r: Option<&pb::PacketRates>| {
        let mut row = vec![p.role.clone(), p.ifname.clone()];
        if hop_column {
            row.push(dash(&p.hop));
        }
        row.extend([queue, dash(mode)]);
        let counters = json(&c.cloned().unwrap_or_default());
        row.extend(cells(&counters, columns::PORT, &[]));
        let kernel = json(&k.copied().unwrap_or_default());
        row.push(columns::sum(&kernel, columns::KERNEL_DROPS).to_string());
        if watch {
            let rates = r.map_or(serde_json::Value::Null, json);
            row.extend(cells(&rates, columns::PORT_RATES, &[]));
        }
        t.row(row);
    };
    for p in ports {
        if p.queues.len() != 1 {
            let q = if p.queues.is_empty() { "-" } else { "all" };
            row(
                p,
                q.into(),
                &p.xdp_mode,
                p.totals.as_ref(),
                p.kernel_totals.as_ref(),
                p.rates.as_ref(),
            );
        }
        for q in &p.queues {
            row(
                p,
                q.queue_id.to_string(),
                &q.xdp_mode,
                q.counters.as_ref(),
                q.kernel.as_ref(),
                q.rates.as_ref(),
            );
        }
    }
    t.render()
}

fn render_workers(workers: &[pb::WorkerStats], watch: bool) -> String {
    let mut t = table(
        &[">WORKER", ">CPU"],
        columns::WORKER,
        columns::WORKER_RATES,
        watch,
        &[],
    );
    for w in workers {
        let v = json(w);
        let mut row = vec![
            w.worker_id.to_string(),
            w.cpu.map_or("-".to_string(), |c| c.to_string()),
        ];
        row.extend(cells(&v, columns::WORKER, &[]));
        if watch {
            row.extend(cells(&v, columns::WORKER_RATES, &[]));
        }
        t.row(row);
    }
    t.render()
}

/// The kernel fallback's counters of `stats`, per inline port.
fn render_fallback_stats(f: &pb::FallbackStats) -> String {
    let mut t = table(&["KERNEL FALLBACK"], columns::FALLBACK, &[], false, &[]);
    for p in &f.ports {
        let mut row = vec![p.role.clone()];
        row.extend(cells(&json(p), columns::FALLBACK, &[]));
        t.row(row);
    }
    format!("{}takeovers: {}\n", t.render(), f.takeovers)
}

/// Drop reasons shown in the TOP DROP REASONS column.
const TOP_DROP_REASONS: usize = 2;

/// The reasons that dropped the most, `reason count` comma separated
/// (ties by name); "-" when nothing was dropped.
fn top_drop_reasons(by_reason: &BTreeMap<String, u64>) -> String {
    let mut counted: Vec<(&String, u64)> = by_reason
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(r, &n)| (r, n))
        .collect();
    // Stable: equal counts stay in name order.
    counted.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    if counted.is_empty() {
        return "-".into();
    }
    counted
        .iter()
        .take(TOP_DROP_REASONS)
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The output groups table of `stats`: one row per group (what its filter
/// accepted, and its members' drops), then one per member.
fn render_output_groups(groups: &[pb::OutputGroupStats], watch: bool) -> String {
    let mut t = table(
        &["GROUP", "MEMBER", "IFNAME"],
        columns::OUTPUT,
        columns::OUTPUT_RATES,
        watch,
        &["TOP DROP REASONS"],
    );
    let mut row = |group: &str,
                   member: &str,
                   ifname: &str,
                   v: serde_json::Value,
                   by_reason: Option<&BTreeMap<String, u64>>,
                   absent: &[&str]| {
        let mut row = vec![group.to_string(), dash(member), dash(ifname)];
        row.extend(cells(&v, columns::OUTPUT, absent));
        if watch {
            row.extend(cells(&v, columns::OUTPUT_RATES, &[]));
        }
        row.push(by_reason.map_or("-".into(), top_drop_reasons));
        t.row(row);
    };
    for g in groups {
        let reasons = g.counters.as_ref().map(|c| &c.dropped_packets_by_reason);
        row(&g.name, "", "", json(g), reasons, &[]);
        for m in &g.members {
            let reasons = m.counters.as_ref().map(|c| &c.dropped_packets_by_reason);
            row(
                &g.name,
                &m.name,
                &m.ifname,
                json(m),
                reasons,
                columns::OUTPUT_GROUP_ONLY,
            );
        }
    }
    t.render()
}

/// The recorders table of `stats`, then the last disk error of each
/// recorder that had one.
fn render_recorders(recorders: &[pb::RecorderStats], watch: bool) -> String {
    let mut t = table(
        &["RECORDER"],
        columns::RECORDER,
        columns::RECORDER_RATES,
        watch,
        &["CURRENT FILE"],
    );
    for r in recorders {
        let v = json(r);
        let mut row = vec![r.name.clone()];
        row.extend(cells(&v, columns::RECORDER, &[]));
        if watch {
            row.extend(cells(&v, columns::RECORDER_RATES, &[]));
        }
        row.push(dash(&r.current_file));
        t.row(row);
    }
    let mut out = t.render();
    for r in recorders.iter().filter(|r| !r.last_disk_error.is_empty()) {
        let _ = writeln!(
            out,
            "recorder {}: last disk error at {}: {}",
            r.name,
            time(r.last_disk_error_at.as_ref())
                .as_deref()
                .unwrap_or("?"),
            one_line(&r.last_disk_error)
        );
    }
    out
}

/// The live taps table of `stats`, by id.
fn render_tap_stats(taps: &[pb::TapStats], watch: bool) -> String {
    let mut t = table(
        &[">TAP", "POINT", "STARTED"],
        columns::TAP,
        columns::TAP_RATES,
        watch,
        &["FILTER"],
    );
    for tap in taps {
        let v = json(tap);
        let mut row = vec![
            tap.id.to_string(),
            dash(&tap.point),
            time(tap.started_at.as_ref()).unwrap_or_else(|| "-".into()),
        ];
        row.extend(cells(&v, columns::TAP, &[]));
        if watch {
            row.extend(cells(&v, columns::TAP_RATES, &[]));
        }
        // Empty: every packet.
        row.push(dash(&tap.filter));
        t.row(row);
    }
    t.render()
}

/// The hops table of `stats`, in chain order.
fn render_hops(hops: &[pb::HopStats], watch: bool) -> String {
    let mut t = table(&["HOP"], &columns::HOP, columns::HOP_RATES, watch, &[]);
    for h in hops {
        let v = json(h);
        let mut row = vec![h.name.clone()];
        row.extend(cells(&v, &columns::HOP, &[]));
        if watch {
            row.extend(cells(&v, columns::HOP_RATES, &[]));
        }
        t.row(row);
    }
    t.render()
}

#[cfg(test)]
mod tests;
