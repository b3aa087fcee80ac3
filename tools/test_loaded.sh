#!/usr/bin/env bash
# Runs the README's test command (tools/test.sh) while every core is kept busy by a CPU
# burner at the same priority (nice 0), as on a shared or slow machine, and prints the
# wall time. The burners are bounded (BURN_LIMIT seconds, default 3 h) and stopped when
# the run ends. Issue #21: no test may depend on an idle machine.
#
#   tools/test_loaded.sh [BURNERS]      (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-$(nproc)}
pids=()
stop() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
for ((i = 0; i < N; i++)); do
  nice -n 0 timeout "${BURN_LIMIT:-10800}" sh -c 'while :; do :; done' &
  pids+=($!)
done
echo "test_loaded: $N CPU burners running (pids ${pids[*]})" >&2
start=$(date +%s)
rc=0
tools/test.sh || rc=$?
echo "test_loaded: tools/test.sh exit $rc, wall $(($(date +%s) - start)) s with $N burners on $(nproc) cores" >&2
exit $rc
