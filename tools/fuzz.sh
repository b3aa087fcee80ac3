#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, Debian's clang) in build-fuzz/ and runs each
# for a short time on a scratch copy of its seed corpus, two at a time (FUZZ_JOBS); any
# finding fails the run.
# CI runs it with 25 s per target (tools/test.sh; 30 s until its sixth target came); the long runs documented in
# docs/SECURITY.md use the same binaries with -runs=1000000.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]        (default: 30)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
tools/deps.sh clang libclang-rt-14-dev
cmake -S . -B build-fuzz -DHASHWALL_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "${JOBS:-$(nproc)}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hashwall-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# target, seed corpus, max input length, per-input timeout (s)
run() {
  local target=$1 corpus=$2 max_len=$3 timeout=$4
  mkdir -p "$WORK/$target"
  echo "fuzz: $target for ${SECS} s" >&2
  if ! "build-fuzz/$target" -max_total_time="$SECS" -max_len="$max_len" -timeout="$timeout" \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$WORK/$target-" \
      "$WORK/$target" "tests/fuzz/corpus/$corpus" >"$WORK/$target.log" 2>&1; then
    tail -n 60 "$WORK/$target.log" >&2
    mkdir -p fuzz-findings && cp "$WORK/$target"-* fuzz-findings/ 2>/dev/null || true
    echo "fuzz: $target FOUND A PROBLEM (inputs copied to fuzz-findings/)" >&2
    return 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$WORK/$target.log" |
    sed "s/^/fuzz: $target /" >&2
}
# Two at a time (CI has two cores, a libFuzzer run uses one); summaries in a fixed order.
TARGETS=("fuzz_http http 4096 10" "fuzz_http_framing http_framing 4096 20"
  "fuzz_hashlist hashlist 4096 10" "fuzz_image image 2048 20" "fuzz_bank bank 65536 20"
  "fuzz_video video 65536 20" "fuzz_feed feed 65536 10" "fuzz_vpdq vpdq 65536 10")
PAR=${FUZZ_JOBS:-$(nproc)}
status=0
for ((i = 0; i < ${#TARGETS[@]}; i += PAR)); do
  pids=()
  for ((j = i; j < i + PAR && j < ${#TARGETS[@]}; ++j)); do
    # shellcheck disable=SC2086
    run ${TARGETS[j]} 2>"$WORK/report-$j.txt" &
    pids+=($!)
  done
  for ((k = 0; k < ${#pids[@]}; ++k)); do
    wait "${pids[k]}" || status=1
    cat "$WORK/report-$((i + k)).txt" >&2
  done
done
exit $status
