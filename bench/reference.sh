#!/usr/bin/env bash
# The reference run committed under bench/results/: every benchmark of
# tapline-bench, one after the other, on a quiet machine (run as root).
# The optional peers (dpdk-testpmd from dpdk-dev, Suricata 7 from
# bookworm-backports, tcpdump, netsniff-ng) are measured when installed and
# reported as skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
bench=./target/release/tapline-bench
out=bench/results
peers=tapline,linux-bridge,tc-mirred,af-packet,testpmd,suricata

# Inline throughput against frame size (unpaced generator).
$bench bridge --duts "$peers" --frame-lens 60,252,508,1020,1514 --reps 3 --seconds 3 --out "$out/inline"
# RFC 2544 NDR / PDR and latency at 10/50/90% of NDR, 64-byte frames.
$bench ndr --dut "$peers" --reps 3 --trial-seconds 2 --out "$out/inline"
# Passive: zero-drop rate against the AF_PACKET recvmmsg reader and the
# capture-to-disk peers.
$bench passive --reps 3 --duts '' --groups '' --out "$out/passive-zero-drop"
# tapline's own cost per frame (deterministic under callgrind).
$bench micro --callgrind --reps 5 --out "$out"
