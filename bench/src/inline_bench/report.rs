//! The inline benchmark's summary (medians, ratios) and its report
//! (Markdown, throughput plot).

use anyhow::Result;

use super::{BenchConfig, BenchResult, Dut, Ratio, Sample, Summary};
use crate::plot;
use crate::report;
use crate::traffic::FCS_BYTES;

/// Medians per DUT and frame length, and `ours / peer` ratios per frame
/// length for the pairs that were both measured.
pub(super) fn summarize(cfg: &BenchConfig, samples: &[Sample]) -> (Vec<Summary>, Vec<Ratio>) {
    let summary: Vec<Summary> = cfg
        .frame_lens
        .iter()
        .flat_map(|&len| cfg.duts.iter().map(move |&d| (d, len)))
        .map(|(d, len)| {
            let of = |s: &&Sample| s.dut == d && s.frame_len == len;
            let del: Vec<f64> = samples
                .iter()
                .filter(of)
                .map(|s| s.delivered_pps / 1e6)
                .collect();
            let off: Vec<f64> = samples
                .iter()
                .filter(of)
                .map(|s| s.offered_pps / 1e6)
                .collect();
            Summary {
                dut: d,
                frame_len: len,
                median_delivered_mpps: report::median(&del),
                median_offered_mpps: report::median(&off),
                samples: del,
            }
        })
        .collect();
    let get = |d: Dut, len: usize| {
        summary
            .iter()
            .find(|s| s.dut == d && s.frame_len == len)
            .map(|s| s.median_delivered_mpps)
    };
    let mut ratios = Vec::new();
    // tapline's configurations against every peer that ran (a pair with a
    // DUT that did not run has no medians and is left out).
    let pairs = Dut::ALL
        .into_iter()
        .filter(|d| d.is_tapline())
        .flat_map(|ours| {
            Dut::ALL
                .into_iter()
                .filter(|d| !d.is_tapline())
                .map(move |peer| (ours, peer))
        })
        .chain([
            (Dut::TaplineObserved, Dut::Tapline),
            (Dut::TaplineObservedMtls, Dut::Tapline),
        ]);
    for (ours, peer) in pairs {
        for &frame_len in &cfg.frame_lens {
            if let (Some(a), Some(b)) = (get(ours, frame_len), get(peer, frame_len)) {
                let at = |d: Dut, rep: u32| {
                    samples
                        .iter()
                        .find(|s| s.dut == d && s.rep == rep && s.frame_len == frame_len)
                        .map(|s| s.delivered_pps)
                };
                let each: Vec<f64> = (0..cfg.reps)
                    .filter_map(|rep| Some(at(ours, rep)? / at(peer, rep)?))
                    .collect();
                ratios.push(Ratio {
                    name: format!("{} / {}", ours.name(), peer.name()),
                    frame_len,
                    of_medians: a / b,
                    median_per_rep: report::median(&each),
                });
            }
        }
    }
    (summary, ratios)
}

/// Throughput against frame size on the wire (length + FCS), one line per
/// DUT through its medians, as SVG text; `None` when only one frame length
/// was measured (a table says it better).
pub fn throughput_plot(r: &BenchResult) -> Result<Option<String>> {
    if r.config.frame_lens.len() < 2 {
        return Ok(None);
    }
    let series: Vec<plot::Series> = r
        .config
        .duts
        .iter()
        .map(|&d| {
            let mut points: Vec<(f64, f64)> = r
                .summary
                .iter()
                .filter(|s| s.dut == d && s.median_delivered_mpps.is_finite())
                .map(|s| ((s.frame_len + FCS_BYTES) as f64, s.median_delivered_mpps))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            plot::Series {
                name: d.name().to_string(),
                points,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let reps = match r.config.reps {
        1 => "1 rep".to_string(),
        n => format!("medians of {n} reps"),
    };
    let title = format!(
        "Inline forwarding throughput against frame size ({reps} x {} s)",
        r.config.seconds
    );
    plot::throughput_vs_frame_size(&title, &series).map(Some)
}

/// Delivered Mpps (medians), one row per DUT and a column per frame length.
fn sweep_table(r: &BenchResult) -> String {
    let lens = &r.config.frame_lens;
    let header: Vec<String> = std::iter::once("DUT".to_string())
        .chain(lens.iter().map(|l| format!("{} B", l + FCS_BYTES)))
        .collect();
    let rows: Vec<Vec<String>> = r
        .config
        .duts
        .iter()
        .filter(|&&d| r.summary.iter().any(|s| s.dut == d))
        .map(|&d| {
            std::iter::once(d.name().to_string())
                .chain(lens.iter().map(|&len| {
                    r.summary
                        .iter()
                        .find(|s| s.dut == d && s.frame_len == len)
                        .map_or("-".to_string(), |s| {
                            format!("{:.3}", s.median_delivered_mpps)
                        })
                }))
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    format!(
        "Delivered Mpps (medians) by frame size on the wire:\n\n{}",
        report::markdown_table(&header, &rows)
    )
}

/// The DUT and ratio tables of one frame length.
fn size_tables(r: &BenchResult, frame_len: usize) -> String {
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .filter(|s| s.frame_len == frame_len)
        .map(|s| {
            let steal: Vec<f64> = r
                .samples
                .iter()
                .filter(|x| x.dut == s.dut && x.frame_len == frame_len)
                .map(|x| x.steal_ratio * 100.0)
                .collect();
            vec![
                s.dut.name().to_string(),
                format!("{:.3}", s.median_delivered_mpps),
                format!("{:.3}", s.median_offered_mpps),
                format!("{:.1}", report::median(&steal)),
                s.samples
                    .iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let mut out = report::markdown_table(
        &[
            "DUT",
            "delivered Mpps",
            "offered Mpps",
            "steal %",
            "samples (Mpps)",
        ],
        &rows,
    );
    let ratio_rows: Vec<Vec<String>> = r
        .ratios
        .iter()
        .filter(|x| x.frame_len == frame_len)
        .map(|x| {
            vec![
                x.name.clone(),
                format!("{:.2}x", x.of_medians),
                format!("{:.2}x", x.median_per_rep),
            ]
        })
        .collect();
    if !ratio_rows.is_empty() {
        out += "\n";
        out += &report::markdown_table(
            &["ratio", "of medians", "median of per-rep ratios"],
            &ratio_rows,
        );
    }
    out
}

/// The result as Markdown.
pub fn markdown(r: &BenchResult) -> String {
    let lens = &r.config.frame_lens;
    let sizes = match lens.as_slice() {
        [len] => format!("{len}-byte frames ({} on the wire)", len + FCS_BYTES),
        _ => format!(
            "frames of {} bytes on the wire",
            lens.iter()
                .map(|l| (l + FCS_BYTES).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut out = format!(
        "Inline forwarding, {sizes}, {} reps x {} s, medians. Machine: {} ({} CPUs), kernel {}, {}.\n\n",
        r.config.reps,
        r.config.seconds,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel,
        r.machine.links()
    );
    if lens.len() > 1 {
        out += &sweep_table(r);
        out += "\n";
    }
    for (i, &len) in lens.iter().enumerate() {
        if lens.len() > 1 {
            if i > 0 {
                out += "\n";
            }
            out += &format!(
                "### {len}-byte frames ({} on the wire)\n\n",
                len + FCS_BYTES
            );
        }
        out += &size_tables(r, len);
    }
    out += &format!(
        "\ntapline settings: [dataplane] {} [xdp] {}; generator: {}.\n",
        r.config.dataplane_keys.replace('\n', "; "),
        if r.config.xdp_keys.is_empty() {
            "defaults".to_string()
        } else {
            r.config.xdp_keys.replace('\n', "; ")
        },
        r.generator
    );
    let modes: Vec<String> = r
        .samples
        .iter()
        .filter(|s| !s.mode.is_empty())
        .map(|s| format!("{}={}", s.dut.name(), s.mode))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !modes.is_empty() {
        out += &format!("\nXDP mode obtained: {}\n", modes.join(", "));
    }
    if !r.skipped.is_empty() {
        out += "\nSkipped (not run, nothing estimated):\n";
        for s in &r.skipped {
            out += &format!("- {}: {}\n", s.dut.name(), s.reason);
        }
    }
    out
}
