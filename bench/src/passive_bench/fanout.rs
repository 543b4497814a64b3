//! Fan-out cost: tapline capturing passive-1 with no consumer against
//! 1, 2, 4... output groups of one member each.

use anyhow::{ensure, Context, Result};
use tapline_segment::OutputDropReason;
use tapline_segment::OutputKind;

use crate::lab::Lab;
use crate::report::median;

use super::dut::{fanout_section, passive_totals, run_traffic, start_tapline, Load};
use super::results::{FanoutSample, FanoutSummary, Ratio};
use super::PassiveConfig;

pub(crate) fn measure_fanout(
    lab: &Lab,
    groups: u8,
    rep: u32,
    cfg: &PassiveConfig,
) -> Result<FanoutSample> {
    let t = start_tapline(lab, cfg, &fanout_section(groups))
        .with_context(|| format!("starting tapline with {groups} output groups"))?;
    let xdp_mode = t.xdp_mode.clone();
    let traffic = run_traffic(lab, cfg, Load::of(cfg));
    let snap = t.stop();
    let (traffic, snap) = (traffic?, snap?);
    let (captured, rx_dropped, ring_full, fill_empty) = passive_totals(&snap);
    let members: Vec<_> = snap
        .outputs
        .iter()
        .filter(|o| o.info.kind == OutputKind::Member)
        .collect();
    ensure!(
        members.len() == usize::from(groups),
        "{} members in tapline's stats segment, {groups} configured",
        members.len()
    );
    let delivered: u64 = members.iter().map(|o| o.packets).sum();
    let member_drops = OutputDropReason::ALL
        .iter()
        .map(|&r| {
            let n = members.iter().map(|o| o.drops[r as usize]).sum();
            (r.name().to_string(), n)
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    let secs = traffic.gen.elapsed.as_secs_f64();
    let sent = traffic.gen.sent;
    let per = |x: u64, of: u64| if of > 0 { x as f64 / of as f64 } else { 0.0 };
    Ok(FanoutSample {
        groups,
        rep,
        sent,
        elapsed_s: secs,
        offered_pps: sent as f64 / secs,
        captured,
        capture_ratio: per(captured, sent),
        captured_pps: captured as f64 / secs,
        delivered,
        delivery_ratio: (groups > 0).then(|| per(delivered, sent * u64::from(groups))),
        member_drops,
        kernel_rx_dropped: rx_dropped,
        kernel_rx_ring_full: ring_full,
        kernel_fill_ring_empty: fill_empty,
        steal_ratio: traffic.steal_ratio,
        xdp_mode,
    })
}

pub(crate) fn fanout_summary(groups: u8, samples: &[FanoutSample]) -> FanoutSummary {
    let of = |g: u8| -> Vec<&FanoutSample> { samples.iter().filter(|s| s.groups == g).collect() };
    let mine = of(groups);
    let med =
        |f: &dyn Fn(&FanoutSample) -> f64| median(&mine.iter().map(|s| f(s)).collect::<Vec<_>>());
    let pps = |v: &[&FanoutSample]| -> Vec<(u32, f64)> {
        v.iter().map(|s| (s.rep, s.captured_pps)).collect()
    };
    let alone = of(0);
    let vs_alone = (groups > 0 && !alone.is_empty()).then(|| {
        Ratio::measured(
            format!("{groups} groups / capture alone"),
            &pps(&mine),
            &pps(&alone),
        )
    });
    let delivery = median(
        &mine
            .iter()
            .filter_map(|s| s.delivery_ratio)
            .collect::<Vec<_>>(),
    );
    FanoutSummary {
        groups,
        median_capture_ratio: med(&|s| s.capture_ratio),
        median_delivery_ratio: delivery.is_finite().then_some(delivery),
        median_captured_pps: med(&|s| s.captured_pps),
        median_kernel_drops: med(&|s| s.kernel_drops() as f64),
        median_fill_ring_empty: med(&|s| s.kernel_fill_ring_empty as f64),
        vs_alone,
    }
}
