//! The inline pair's kernel fallback as the sidecar shows it: the link
//! keeper ([`tapline_segment::custody::Keeper`]) holds the inline
//! ports' BPF links and the fallback maps, so the kernel's counters are
//! readable here even while the dataplane is down. Turned into
//! `GetInfoResponse.kernel_fallback` and `tapline_fallback_*` metrics.

use std::fmt::Write as _;

use tapline_proto::v1;
use tapline_segment::custody::KeeperStatus;

/// The API message, or none when the keeper holds nothing.
pub fn to_proto(st: &KeeperStatus) -> Option<v1::KernelFallback> {
    if !st.holding {
        return None;
    }
    Some(v1::KernelFallback {
        links_held: st.holding,
        carrying: st.kernel_queues > 0,
        kernel_queues: st.kernel_queues,
        queues: st.queues,
        action: st.action.clone(),
        ports: st
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let c = st.counters.get(i).copied().unwrap_or_default();
                v1::FallbackPort {
                    role: p.role.clone(),
                    ifname: p.ifname.clone(),
                    attach: p.attach.clone(),
                    forwarded: c.forwarded,
                    dropped: c.dropped,
                }
            })
            .collect(),
        lease_expiries: st.counters.iter().map(|c| c.lease_expiries).sum(),
        counters_readable: !st.counters.is_empty(),
        takeovers: st.takeovers,
        dataplane_connected: st.dataplane_connected,
    })
}

/// The `tapline_fallback_*` families (exported whether or not the
/// dataplane is live: the kernel keeps counting while it is down).
pub fn render_metrics(st: &KeeperStatus) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        name.to_string()
    };
    let mut lines: Vec<String> = Vec::new();
    let n = family(
        "tapline_fallback_links_held",
        "gauge",
        "1 while the sidecar holds the inline ports' BPF links (the kernel fallback survives the dataplane).",
    );
    lines.push(format!("{n} {}", u8::from(st.holding)));
    let n = family(
        "tapline_fallback_kernel_queues",
        "gauge",
        "Inline queues the kernel fallback carries now (no worker holds their lease).",
    );
    lines.push(format!("{n} {}", st.kernel_queues));
    let n = family(
        "tapline_fallback_drop_action",
        "gauge",
        "1 while the fallback action is drop (a fail-closed hop is in the chain), 0 for forward.",
    );
    lines.push(format!("{n} {}", u8::from(st.action == "drop")));
    let per_port = [
        (
            "tapline_fallback_forwarded_total",
            "Frames the kernel fallback forwarded to the other inline port.",
        ),
        (
            "tapline_fallback_dropped_total",
            "Frames the kernel fallback dropped (fail-closed chain).",
        ),
        (
            "tapline_fallback_lease_expiries_total",
            "Leases the kernel found expired (a stalled, stopped or dead worker).",
        ),
    ];
    for (i, (name, help)) in per_port.iter().enumerate() {
        let n = family(name, "counter", help);
        for (p, c) in st.ports.iter().zip(&st.counters) {
            let v = [c.forwarded, c.dropped, c.lease_expiries][i];
            lines.push(format!(
                "{n}{{port=\"{}\",ifname=\"{}\",attach=\"{}\"}} {v}",
                p.role, p.ifname, p.attach
            ));
        }
    }
    let n = family(
        "tapline_fallback_takeovers_total",
        "counter",
        "Times a worker took its queue back from the kernel fallback (after a stall or a restart).",
    );
    lines.push(format!("{n} {}", st.takeovers));
    // HELP/TYPE blocks first, samples after, would break the format:
    // rebuild family by family.
    let mut text = String::new();
    let mut blocks = out.split("# HELP ").filter(|b| !b.is_empty());
    for b in blocks.by_ref() {
        let name = b.split(' ').next().unwrap_or_default();
        text.push_str("# HELP ");
        text.push_str(b);
        for l in lines.iter().filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        }) {
            text.push_str(l);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapline_segment::custody::PortRecord;
    use tapline_segment::PortFallbackCounters;

    #[test]
    fn metrics_follow_each_family() {
        let st = KeeperStatus {
            holding: true,
            ports: vec![PortRecord {
                role: "inline-1".into(),
                ifname: "i1".into(),
                ifindex: 3,
                attach: "generic".into(),
            }],
            dataplane_connected: false,
            kernel_queues: 1,
            queues: 1,
            action: "forward".into(),
            counters: vec![PortFallbackCounters {
                forwarded: 7,
                dropped: 0,
                lease_expiries: 2,
            }],
            takeovers: 3,
        };
        let t = render_metrics(&st);
        assert!(t.contains(
            "# TYPE tapline_fallback_forwarded_total counter\ntapline_fallback_forwarded_total{port=\"inline-1\",ifname=\"i1\",attach=\"generic\"} 7\n"
        ), "{t}");
        assert!(t.contains("tapline_fallback_takeovers_total 3\n"), "{t}");
        assert!(t.contains("tapline_fallback_kernel_queues 1\n"), "{t}");
        let p = to_proto(&st).unwrap();
        assert!(p.carrying && p.lease_expiries == 2 && p.ports[0].forwarded == 7);
    }
}
