//! The markdown report of a passive run.

use crate::report::markdown_table;
use crate::search::Outcome;
use crate::traffic::FrameSizes;

use super::results::{LowerBounds, PassiveResult, Ratio, ZeroDropSample};
use super::{PEER_RING_MIB, READER_BATCH, RECORDER_QUEUE_SIZE, RECORDER_ROTATE_SIZE, SKIPPED};

pub(crate) fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(crate) fn mfps(x: f64) -> String {
    format!("{:.3}", x / 1e6)
}

pub(crate) fn times(x: f64) -> String {
    format!("{x:.2}x")
}

/// A table of `tapline / peer` ratios, both ways, with lower bounds marked
/// (see [`bounded_times`]) and skipped peers named.
pub(crate) fn ratio_table(what: &str, ratios: &[Ratio]) -> String {
    let rows: Vec<Vec<String>> = ratios
        .iter()
        .map(|x| {
            if x.status == SKIPPED {
                vec![x.name.clone(), SKIPPED.into(), String::new()]
            } else {
                vec![
                    x.name.clone(),
                    bounded_times(x.of_medians, x.of_medians_bounds),
                    bounded_times(x.median_of_per_rep, x.median_of_per_rep_bounds),
                ]
            }
        })
        .collect();
    markdown_table(
        &[what, "ratio of medians", "median of per-rep ratios"],
        &rows,
    )
}

/// A ratio, `>=` when only `ours` is a lower bound, `<=` when only the
/// peer is, and `bounds only` when both are (nothing follows).
pub(crate) fn bounded_times(x: Option<f64>, bounds: LowerBounds) -> String {
    match (x, bounds.ours, bounds.peer) {
        (None, ..) => "-".to_string(),
        (Some(_), true, true) => "bounds only".to_string(),
        (Some(x), true, false) => format!(">= {}", times(x)),
        (Some(x), false, true) => format!("<= {}", times(x)),
        (Some(x), false, false) => times(x),
    }
}

pub(crate) fn kfps(x: f64) -> String {
    format!("{:.1}", x / 1000.0)
}

/// A search's zero-drop rate in kfps: `>= X` when the trial at the
/// highest rate passed, `below lowest` when even the lowest failed, and
/// `(not converged)` when the trials ran out first.
pub fn zero_drop_cell(s: &ZeroDropSample) -> String {
    let rate = s
        .rate_pps
        .map_or_else(|| "-".to_string(), |r| kfps(r as f64));
    match s.outcome {
        Outcome::AtHi => format!(">= {rate}"),
        Outcome::BelowLo => "below lowest".to_string(),
        Outcome::Found if !s.converged => format!("{rate} (not converged)"),
        Outcome::Found => rate,
    }
}

/// The zero-drop part's tables.
pub(crate) fn zero_drop_markdown(r: &PassiveResult) -> String {
    let mut out = format!(
        "\n## Zero-drop rate\n\nHighest rate (kfps) at which every frame sent was received, in {} s trials; \
         *offered*: what the generator achieved in that trial.\n\n",
        r.config.zero_drop.trial_seconds
    );
    let rows: Vec<Vec<String>> = r
        .zero_drop_summary
        .iter()
        .map(|s| {
            if s.version.is_none() {
                let mut row = vec![s.dut.name().to_string(), SKIPPED.to_string()];
                row.resize(9, String::new());
                return row;
            }
            let reps = r.zero_drop_samples.iter().filter(|x| x.dut == s.dut);
            vec![
                s.dut.name().to_string(),
                s.version.clone().unwrap_or_default(),
                opt(s.median_rate_pps, |x| {
                    if s.median_rate_at_hi {
                        format!(">= {}", kfps(x))
                    } else {
                        kfps(x)
                    }
                }),
                opt(s.median_offered_pps, kfps),
                reps.map(zero_drop_cell).collect::<Vec<_>>().join(", "),
                opt(s.median_hi_pps, kfps),
                s.at_hi_reps.to_string(),
                if s.xdp_modes.is_empty() {
                    "-".to_string()
                } else {
                    s.xdp_modes.join(", ")
                },
                s.trials.to_string(),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "version",
            "zero-drop kfps",
            "offered kfps",
            "per rep",
            "highest kfps",
            "reps at highest",
            "XDP mode",
            "trials",
        ],
        &rows,
    );
    if !r.zero_drop_ratios.is_empty() {
        out += "\n";
        out += &ratio_table("zero-drop rate", &r.zero_drop_ratios);
    }
    let bounded = |b: LowerBounds| b.ours || b.peer;
    if r.zero_drop_summary.iter().any(|s| s.median_rate_at_hi)
        || r.zero_drop_ratios
            .iter()
            .any(|x| bounded(x.of_medians_bounds) || bounded(x.median_of_per_rep_bounds))
    {
        out += "\n`>=` on a median: repetitions passed at their highest rate, which leaves the median a lower bound. \
                On a ratio, `>=`: ours is such a bound; `<=`: the peer's is; `bounds only`: both are, and the ratio says nothing.\n";
    }
    out += "\n";
    let rows: Vec<Vec<String>> = r
        .zero_drop_samples
        .iter()
        .map(|s| {
            let failed = s.failed_at_pps.and_then(|f| s.trial_at(f));
            vec![
                s.dut.name().to_string(),
                s.rep.to_string(),
                format!("{} ({})", kfps(s.hi_pps as f64), s.hi_source),
                kfps(s.resolution_pps as f64),
                zero_drop_cell(s),
                opt(s.offered_at_rate_pps, kfps),
                s.failed_at_pps
                    .map_or_else(|| "-".to_string(), |f| kfps(f as f64)),
                failed.map_or_else(|| "-".to_string(), |t| format!("{} of {}", t.lost, t.sent)),
                s.trials.len().to_string(),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "rep",
            "highest kfps",
            "resolution kfps",
            "zero-drop kfps",
            "offered kfps",
            "failed at kfps",
            "lost there",
            "trials",
        ],
        &rows,
    );
    out
}

/// How the zero-drop part measures, for the "How measured" section.
pub(crate) fn zero_drop_how_measured(r: &PassiveResult) -> String {
    let z = &r.config.zero_drop;
    let hi = match z.max_pps {
        Some(m) => format!(
            "The highest rate searched is {m} frames/s (`--zero-drop-max-pps`), tried first: a pass \
             ends the search (shown as >=: the zero-drop rate is at least that)"
        ),
        None => "The highest rate searched is what the generator achieves unpaced through the DUT: \
                 each search starts with such a probe trial, which is also the search's trial at that \
                 rate. A pass ends the search (shown as >=: the zero-drop rate is at least that, and \
                 the generator, not the DUT, set the bound)"
            .to_string(),
    };
    format!(
        "\nZero-drop rate: for each DUT and repetition, a binary search (RFC 2544-style, the search of \
         `tapline-bench ndr` with a loss threshold of 0) over the rate of the paced generator (a token \
         bucket 1 ms deep) finds the highest rate at which no frame is lost. Each trial starts the DUT \
         fresh, sends {t} s at the target rate, waits {g} s, stops the DUT and judges it: \
         *tapline* (capturing p1 with no consumer) passes when passive-1 rx_packets from its stats \
         segment reaches the frames sent and its XDP socket reports no kernel drop (rx_dropped + \
         rx_ring_full); *af-packet-read* (`tapline-bench peer af-packet-read --iface p1 --batch {batch}`: \
         one AF_PACKET socket on p1 read with recvmmsg, {batch} frames per call, in the dut namespace, \
         stopped with SIGTERM) passes when the frames it received reach the frames sent and the kernel \
         reported no drop for its socket (PACKET_STATISTICS); *tapline-record*, *tcpdump* and \
         *netsniff-ng*, set up as above, pass when the generator's records in their pcap files equal \
         the frames sent. {hi}; otherwise the search bisects until the passing and failing rates are \
         within {res}% of the highest rate (at least {min} frames/s) or {max} paced trials ran (shown as \
         not converged). The lowest rate is {min} frames/s; a search that fails even there is shown as \
         below lowest and counts as 0 in medians and ratios. Each rate is tried once. The repetitions \
         interleave the DUTs (rep 0: every DUT's search, then rep 1: every DUT's search, ..., the order \
         rotated by one each time); the tables give medians over the repetitions. *offered* is the rate \
         the generator achieved in the trial at the zero-drop rate: below the target, the generator fell \
         short (the DUT and the generator share the CPUs, so a DUT that takes more CPU slows the \
         generator and is offered less); the *, offered* ratios compare those achieved rates and are the \
         ones to read when the two differ. Ratios compare tapline capturing with the AF_PACKET reader, \
         and tapline's recorder with tcpdump and netsniff-ng; between two searches that both passed at \
         their highest rate a ratio compares generator probes, not DUTs. Every trial (target, sent, \
         counted, kernel drops, lost, the DUT's counters, tapline's XDP mode) is in the JSON under \
         `zero_drop_samples`.\n",
        t = z.trial_seconds,
        g = r.config.grace_s,
        batch = READER_BATCH,
        res = z.resolution_pct,
        min = z.min_pps,
        max = z.max_trials,
    )
}

/// The result as Markdown.
pub fn markdown(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::from("# Passive capture: to disk, fan-out cost, zero-drop rate\n\n");
    out += &format!(
        "Passive lab (t0 -> p1 = passive-1), frames of {}, {} UDP flows, {}{}; {} reps, DUTs interleaved, medians. \
         Machine: {} ({} CPUs, {} GiB), kernel {}, {}. Versions: {}.\n\n",
        FrameSizes::Fixed(c.frame_len).describe(),
        c.flows,
        r.generator,
        if r.zero_drop_summary.is_empty() {
            ""
        } else {
            " (the zero-drop searches pace it)"
        },
        c.reps,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.kernel,
        r.machine.links(),
        r.versions
            .iter()
            .map(|(d, v)| format!("{d}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !r.capture_summary.is_empty() {
        out += &capture_markdown(r);
    }
    if !r.fanout_summary.is_empty() {
        out += &fanout_markdown(r);
    }
    if !r.zero_drop_summary.is_empty() {
        out += &zero_drop_markdown(r);
    }
    out += &how_measured(r);
    out += &format!(
        "\nRatios are given both as the ratio of the medians and as the median of the per-repetition \
         ratios (the DUTs of one repetition run back to back, so slow drift of the host cancels out). \
         A peer that is not installed is reported as {skipped}, never estimated. \
         The generator, the DUT, its disk writer and the veth softirqs share the machine's {cpus} CPUs: \
         read the numbers as ratios on this machine, not as absolute capacities.\n",
        skipped = SKIPPED,
        cpus = r.machine.cpus,
    );
    let extra: Vec<String> = [("dataplane", &c.dataplane_keys), ("xdp", &c.xdp_keys)]
        .iter()
        .filter(|(_, k)| !k.trim().is_empty())
        .map(|(t, k)| format!("[{t}] {}", k.trim().replace('\n', "; ")))
        .collect();
    out += &format!(
        "\ntapline settings: {}.\n",
        if extra.is_empty() {
            "defaults".to_string()
        } else {
            extra.join(" ")
        }
    );
    out
}

/// The capture-to-disk section: summary, ratios and samples.
fn capture_markdown(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::new();
    out += &format!(
        "## Capture to disk\n\n{} s of traffic per measurement.\n\n",
        c.seconds
    );
    let rows: Vec<Vec<String>> = r
        .capture_summary
        .iter()
        .map(|s| {
            if s.version.is_none() {
                let mut row = vec![s.dut.name().to_string(), SKIPPED.to_string()];
                row.resize(7, String::new());
                return row;
            }
            vec![
                s.dut.name().to_string(),
                s.version.clone().unwrap_or_default(),
                opt(s.median_written_pps, mfps),
                opt(s.median_written_ratio, pct),
                opt(s.median_captured_ratio, pct),
                opt(s.median_offered_pps, mfps),
                s.written_ratio_samples
                    .iter()
                    .map(|&x| pct(x))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "version",
            "written Mfps",
            "written / sent",
            "captured / sent",
            "offered Mfps",
            "written / sent per rep",
        ],
        &rows,
    );
    if !r.capture_ratios.is_empty() {
        out += "\n";
        out += &ratio_table("written frames/s", &r.capture_ratios);
    }
    out += "\n";
    let rows: Vec<Vec<String>> = r
        .capture_samples
        .iter()
        .map(|s| {
            vec![
                s.dut.name().to_string(),
                s.rep.to_string(),
                s.sent.to_string(),
                s.p1_rx_packets.to_string(),
                s.captured.map_or("-".into(), |x| x.to_string()),
                s.written.to_string(),
                s.files.to_string(),
                s.dut_drops.to_string(),
                s.drop_detail
                    .iter()
                    .filter(|(_, &v)| v > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                pct(s.steal_ratio),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "DUT",
            "rep",
            "sent",
            "p1 rx",
            "captured",
            "written",
            "files",
            "DUT drops",
            "DUT counters",
            "steal",
        ],
        &rows,
    );
    out
}

/// The fan-out section: summary and samples.
fn fanout_markdown(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::new();
    out += &format!(
        "\n## Fan-out cost (tapline, no recorder)\n\n{} s of traffic per measurement.\n\n",
        c.seconds
    );
    let rows: Vec<Vec<String>> = r
        .fanout_summary
        .iter()
        .map(|s| {
            vec![
                s.groups.to_string(),
                pct(s.median_capture_ratio),
                opt(s.median_delivery_ratio, pct),
                mfps(s.median_captured_pps),
                format!("{:.0}", s.median_kernel_drops),
                format!("{:.0}", s.median_fill_ring_empty),
                opt(s.vs_alone.as_ref().and_then(|v| v.of_medians), times),
                opt(s.vs_alone.as_ref().and_then(|v| v.median_of_per_rep), times),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "output groups",
            "captured / sent",
            "delivered / (sent x groups)",
            "captured Mfps",
            "kernel drops",
            "fill ring empty",
            "captured fps vs alone (of medians)",
            "(median of per-rep)",
        ],
        &rows,
    );
    out += "\n";
    let rows: Vec<Vec<String>> = r
        .fanout_samples
        .iter()
        .map(|s| {
            vec![
                s.groups.to_string(),
                s.rep.to_string(),
                s.sent.to_string(),
                s.captured.to_string(),
                s.delivered.to_string(),
                s.member_drops
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.kernel_rx_dropped.to_string(),
                s.kernel_rx_ring_full.to_string(),
                s.kernel_fill_ring_empty.to_string(),
                pct(s.steal_ratio),
            ]
        })
        .collect();
    out += &markdown_table(
        &[
            "groups",
            "rep",
            "sent",
            "captured",
            "delivered",
            "member drops",
            "rx_dropped",
            "rx_ring_full",
            "fill ring empty",
            "steal",
        ],
        &rows,
    );
    out
}

/// The "How measured" section of the capture and fan-out parts, and of
/// the zero-drop part when it ran.
fn how_measured(r: &PassiveResult) -> String {
    let c = &r.config;
    let mut out = String::new();
    let foreign: u64 = r
        .capture_samples
        .iter()
        .map(|s| s.written - s.written_ours)
        .sum();
    let writes_files = !r.capture_summary.is_empty()
        || r.zero_drop_summary
            .iter()
            .any(|s| s.dut.writes_files().is_some());
    out += "\n## How measured\n\n\
            One lab of network namespaces: the generator (tapline-bench's AF_XDP TX, copy mode) sends IPv4/UDP \
            test frames from t0 over a veth into p1 in the dut namespace; nothing else is on that link.";
    if !r.capture_summary.is_empty() {
        out += &format!(
            " Each capture-to-disk measurement starts its DUT fresh, sends for {s} s, waits {g} s for the DUT \
             to drain its buffers, stops it (SIGTERM for tapline, SIGINT for the peers, which flush their file \
             and print their statistics) and then counts the records in the pcap files it wrote. \
             *sent* is what the generator's kernel completed on t0, *p1 rx* p1's rx_packets counter, \
             *captured* what the DUT says it received (tapline: passive-1 rx_packets from its stats segment; \
             tcpdump: \"packets received by filter\"; netsniff-ng: \"packets incoming\"), *written* the records \
             in its files (every record is counted; {foreign}). \
             *written Mfps* is written frames per second of traffic. Unpaced, the offered rate depends on how \
             much CPU the DUT leaves the generator, so compare *written / sent* as well, or fix the load with \
             `--rate`.",
            s = c.seconds,
            g = c.grace_s,
            foreign = match foreign {
                0 => "all of them were the generator's frames".to_string(),
                n => format!("{n} of them were not the generator's frames"),
            },
        );
    }
    if writes_files {
        out += &format!(
            " tapline runs one `[[recorder]]` (rotate_size {rot}, queue_size {q}, rotate_interval_s 0); \
             tcpdump runs `tcpdump -i p1 -w FILE -n -B {b} -s 0` and netsniff-ng \
             `netsniff-ng --in p1 --out FILE --silent --ring-size {ring}MiB`, both inside the dut namespace, \
             so every DUT that writes files has a 64 MiB buffer between the kernel and the disk.",
            rot = RECORDER_ROTATE_SIZE,
            q = RECORDER_QUEUE_SIZE,
            b = PEER_RING_MIB * 1024,
            ring = PEER_RING_MIB,
        );
    }
    if !r.fanout_summary.is_empty() {
        out += &format!(
            " The fan-out part runs tapline without a recorder and with 0 to N output groups, group k with \
             one member mk (a veth to its own sensor namespace, no filter), for {s} s each: *captured / sent* \
             is passive-1 rx_packets over frames sent, *delivered / (sent x groups)* the frames transmitted to \
             members over what a lossless fan-out would transmit, *kernel drops* passive-1's XDP socket \
             statistics rx_dropped + rx_ring_full (fill ring empty is the count of times the kernel found no \
             buffer).",
            s = c.seconds,
        );
    }
    out += "\n";
    if !r.zero_drop_summary.is_empty() {
        out += &zero_drop_how_measured(r);
    }
    out
}
