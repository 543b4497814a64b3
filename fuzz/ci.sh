#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of cases, seeded, over the
# committed seed corpora (fuzz/seeds/TARGET), on the stable toolchain: the
# targets are built with the same instrumentation cargo-fuzz adds (sancov
# counters, pc table and comparison tracing, `--cfg fuzzing`, debug
# assertions and overflow checks) but without a sanitizer, which is the one
# part that needs a nightly compiler. A failure exits non-zero with the
# crashing input in fuzz/artifacts/TARGET/.
#
#   bash fuzz/ci.sh                 # the CI budget
#   TAPLINE_FUZZ_RUNS_SCALE=10 bash fuzz/ci.sh   # ten times the cases
#
# Each target's case count is fixed (-runs) and the seed too (-seed), so a
# run is the same run every time; -max_total_time only guards CI's time
# should a machine be far slower than expected (the script then says so).
set -euo pipefail
cd "$(dirname "$0")"

TARGET_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
SEED="${TAPLINE_FUZZ_SEED:-13}"
SCALE="${TAPLINE_FUZZ_RUNS_SCALE:-1}"
# Cases per target in CI (10 to 50 s each on the project's machines,
# about 2.5 minutes in all, plus the build).
declare -A RUNS=(
  [config]=150000
  [filter]=600000
  [pcap_reader]=1000000
  [test_header]=1000000
  [command]=1000000
  [heartbeat]=1000000
)
GUARD_S=120

export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$TARGET_TRIPLE"

mkdir -p artifacts
total=0
for t in config filter pcap_reader test_header command heartbeat; do
  runs=$(( RUNS[$t] * SCALE ))
  work="$(mktemp -d)"
  cp -r "seeds/$t/." "$work/"
  mkdir -p "artifacts/$t"
  start=$(date +%s)
  log="$(mktemp)"
  if ! "./target/$TARGET_TRIPLE/release/$t" -seed="$SEED" -runs="$runs" \
      -max_total_time="$GUARD_S" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 "$work" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz $t: ${done_runs} cases (seed $SEED, $(ls "seeds/$t" | wc -l) seeds) in $(( $(date +%s) - start )) s"
  if [ "${done_runs:-0}" -lt "$runs" ]; then
    echo "fuzz $t: stopped by the ${GUARD_S} s guard before its $runs cases: this machine is slower than expected"
  fi
  total=$(( total + ${done_runs:-0} ))
  rm -rf "$work" "$log"
done
echo "fuzz: $total cases in all"
echo "fuzz: ${#RUNS[@]} passed, 0 failed"
