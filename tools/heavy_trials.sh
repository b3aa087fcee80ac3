#!/usr/bin/env bash
# The heavy trials in full, outside CI: the SIGKILL series at 100 rounds with no time
# budget (normal and ASan builds, as built by tools/test.sh), then each fuzz target for
# FUZZ_SECONDS (default 600). Takes tens of minutes; CI runs the budgeted versions.
#
#   tools/heavy_trials.sh [FUZZ_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export HASHWALL_CRASH_ROUNDS=${HASHWALL_CRASH_ROUNDS:-100} HASHWALL_CRASH_SECONDS=1000000000
tools/build.sh
(cd build && ctest --output-on-failure -R 'SIGKILL' --timeout 7200)
if [[ -x build-asan/hashwall_tests ]]; then
  (cd build-asan && ctest --output-on-failure -R 'SIGKILL' --timeout 7200)
fi
tools/fuzz.sh "${1:-600}"
