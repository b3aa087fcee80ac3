#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest, twice: the
# normal build (build/), then the same suite built with AddressSanitizer + UBSan
# (build-asan/, CONVENTIONS.md), where any sanitizer report fails the run.
# Tests that need ../shared (Meta's PDQ vectors, the photo corpus) skip visibly without it.
# Then a short libFuzzer run of every target in tests/fuzz/ (tools/fuzz.sh, 25 s each).
# HASHWALL_SANITIZE=0 skips the sanitizer pass and HASHWALL_FUZZ=0 the fuzz run (quick
# local runs; CI always does all three). Every pass runs even when an earlier one failed;
# the last lines sum up each pass (tests, failures, skips, seconds), and the exit status
# is 0 only when all passed.
#
# Heavy trials take budgets from the environment (tests/support.hpp, budget()):
#   HASHWALL_CRASH_ROUNDS, HASHWALL_CRASH_SECONDS   the SIGKILL series (default 40 rounds, 180 s)
#   HASHWALL_FUZZ_SECONDS                           seconds per fuzz target (default 25)
# tools/heavy_trials.sh runs the full series; tools/test_loaded.sh runs this script with
# both cores kept busy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/hashwall-test.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
SUMMARY=()
TOTAL_PASSED=0 TOTAL_FAILED=0 TOTAL_SKIPPED=0
status=0

# ctest_pass NAME BUILD_DIR [ctest args]: runs the suite, records its summary line.
ctest_pass() {
  local name=$1 dir=$2 start=$SECONDS rc=0
  shift 2
  (cd "$dir" && ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@") 2>&1 | tee "$LOGS/$name.log" || rc=$?
  local total failed skipped
  total=$(sed -nE 's/.*tests failed out of ([0-9]+).*/\1/p' "$LOGS/$name.log" | tail -n 1)
  failed=$(sed -nE 's/.*, ([0-9]+) tests? failed out of.*/\1/p' "$LOGS/$name.log" | tail -n 1)
  skipped=$(grep -cE '^[[:space:]]*[0-9]+ - .*\(Skipped\)' "$LOGS/$name.log" || true)
  if [[ -z $total ]]; then
    total=0 failed=1 skipped=0  # ctest did not get to its summary
  fi
  ((rc == 0)) || status=1
  local passed=$((total - failed - skipped))
  TOTAL_PASSED=$((TOTAL_PASSED + passed)) TOTAL_FAILED=$((TOTAL_FAILED + failed))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + skipped))
  SUMMARY+=("$(printf 'pass %-10s %4d tests: %4d passed, %d failed, %d skipped   %5d s   %s' \
    "$name" "$total" "$passed" "$failed" "$skipped" $((SECONDS - start)) "$([[ $rc == 0 ]] && echo ok || echo FAILED)")")
}

tools/deps.sh
# In CI the PostgreSQL tests (and the cluster run) must run, not skip.
if [[ ${CI:-} == true ]]; then export HASHWALL_REQUIRE_POSTGRESQL=1; fi
# Layers (docs/DESIGN.md): no #include from a lower folder of src/ into a higher one.
tools/check_layers.sh
# Formatting (.clang-format): tools/check_format.sh --fix formats the tree.
tools/check_format.sh
tools/build.sh
ctest_pass normal build "$@"

if [[ "${HASHWALL_SANITIZE:-1}" != 0 ]]; then
  # Only what this pass runs: the CLI and the tests (not the load and cluster tools, whose
  # cluster_faults test runs in the normal pass only).
  BUILD_DIR=build-asan TARGETS="hashwall hashwall_tests" tools/build.sh -DHASHWALL_SANITIZE=ON
  # halt_on_error: the first report ends the process, so the test fails on it.
  # Suppressions are only for reports inside system libraries, each with its reason.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0
  export LSAN_OPTIONS=suppressions=$ROOT/tests/sanitizer/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/tests/sanitizer/ubsan.supp
  # The pg: tests run in the normal pass only: libpq is not instrumented, and CI time is
  # short; so do the [slow] ones (label slow), whose code quicker cases also run here.
  # The SIGKILL series runs half its rounds here (the normal pass runs all 40): under the
  # sanitizers each round is slow, and memory errors show in the first rounds as in the last.
  HASHWALL_CRASH_ROUNDS=${HASHWALL_CRASH_ROUNDS:-20} ctest_pass sanitizers build-asan -LE "postgresql|slow" "$@"
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
fi

if [[ "${HASHWALL_FUZZ:-1}" != 0 ]]; then
  start=$SECONDS rc=0
  tools/fuzz.sh "${HASHWALL_FUZZ_SECONDS:-25}" 2>&1 | tee "$LOGS/fuzz.log" || rc=$?
  targets=$(grep -cE '^fuzz: [a-z_]+ for [0-9]+ s' "$LOGS/fuzz.log" || true)
  findings=$(grep -c 'FOUND A PROBLEM' "$LOGS/fuzz.log" || true)
  execs=$(awk '/stat::number_of_executed_units/ {n += $NF} END {print n + 0}' "$LOGS/fuzz.log")
  ((rc == 0)) || status=1
  SUMMARY+=("$(printf 'pass %-10s %4d targets: %d findings, %d executions   %5d s   %s' \
    fuzz "$targets" "$findings" "$execs" $((SECONDS - start)) "$([[ $rc == 0 ]] && echo ok || echo FAILED)")")
fi

echo
echo "== hashwall tests: summary =="
for line in "${SUMMARY[@]}"; do echo "$line"; done
echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
exit $status
