//! The markdown report of a micro run.

use super::{MicroPath, MicroResult, PathResult, FRAME_SIZE_BYTES};

/// The result as Markdown: a table and what the columns mean.
pub fn markdown(r: &MicroResult) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|p| {
            let verdict = match (p.path, p.poll_ir_per_frame) {
                (MicroPath::Bridge | MicroPath::BridgeBidir | MicroPath::BridgeLease, Some(ir)) => {
                    if ir <= r.target_ir_per_bridged_frame {
                        format!("met (<= {})", r.target_ir_per_bridged_frame)
                    } else {
                        format!("missed (> {})", r.target_ir_per_bridged_frame)
                    }
                }
                _ => "-".to_string(),
            };
            vec![
                p.path.name().to_string(),
                p.batch.to_string(),
                format!("{:.2}", p.loop_frames_per_s / 1e6),
                format!("{:.1}", p.loop_ns_per_frame),
                opt(p.poll_ir_per_frame),
                opt(p.loop_ir_per_frame),
                verdict,
            ]
        })
        .collect();
    let mut s = crate::report::markdown_table(
        &[
            "path",
            "batch",
            "Mframes/s (whole loop)",
            "ns/frame (whole loop)",
            "Ir/frame in poll",
            "Ir/frame whole loop",
            "bridge target",
        ],
        &rows,
    );
    s += &format!(
        "\n{}-byte frames, in-memory rings of {}, {} frames of {} bytes in the UMEM; {} ({} CPUs), kernel {}.\n",
        r.frame_len,
        r.ring_size,
        r.frame_count,
        FRAME_SIZE_BYTES,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.kernel
    );
    s += "Frames/s time the whole loop: the fake kernel (fill -> RX, TX -> completion) and the \
          conservation checks run on the same thread, so tapline alone is faster.\n";
    if let Some([f1, f2]) = r.callgrind_frames {
        s += &format!(
            "Ir/frame: instructions counted by callgrind inside the task's poll (or the whole \
             driver loop), (Ir({f2}) - Ir({f1})) / {} frames, so setup cancels out; \
             bridge-bidir counts a frame once whichever way it goes; capture includes one \
             consumer that counts frames and bytes.\n",
            f2 - f1
        );
    }
    let chains: Vec<&PathResult> = r.results.iter().filter(|p| p.hops.is_some()).collect();
    if !chains.is_empty() {
        let timed_hb = chains
            .iter()
            .map(|p| p.heartbeats_per_rep)
            .max()
            .unwrap_or(0);
        let callgrind_hb = chains.iter().filter_map(|p| p.callgrind_heartbeats).max();
        s += &format!(
            "Chain paths (chain-N: N tools): the chain task built as the engine builds queue 0's, \
             every port on one UMEM, the chain installed through its update channel; the fake \
             kernel plays each tool as a wire (what the task transmits on side A of a hop comes \
             back on side B in the same chunk, without copy mode's copy, and the other way \
             round). Ir/frame is per frame delivered to inline-2, which takes N + 1 forwarding \
             steps, each reading the frame's ethertype to take heartbeats out. Heartbeats run as \
             in production: every poll reads the clock and every millisecond the hops are judged \
             (both counted in poll; as the judging follows the clock, the chains' Ir/frame moves \
             by about 1% from run to run under callgrind); with an interval of {} ms, one round \
             of heartbeats brings the tools up before the measured loop and the loops themselves \
             sent at most {timed_hb} heartbeats per timed repetition{}.\n",
            r.chain_heartbeat_interval_ms,
            callgrind_hb.map_or(String::new(), |h| format!(" and {h} per callgrind run"))
        );
        let steps: Vec<String> = r
            .results
            .iter()
            .filter_map(|p| Some(format!("{} {:.1}", p.path.name(), p.poll_ir_per_step()?)))
            .collect();
        if !steps.is_empty() {
            s += &format!(
                "Ir/frame in poll per forwarding step: {}.",
                steps.join(", ")
            );
            if let Some(per_hop) = r.poll_ir_per_added_hop() {
                s += &format!(" Each added hop costs {per_hop:.1} Ir/frame in poll.");
            }
            s += "\n";
        }
    }
    s
}
