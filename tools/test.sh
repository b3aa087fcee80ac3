#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest, twice: the
# normal build (build/), then the same suite built with AddressSanitizer + UBSan
# (build-asan/, CONVENTIONS.md), where any sanitizer report fails the run.
# Tests that need ../shared (Meta's PDQ vectors, the photo corpus) skip visibly without it.
# Then a short libFuzzer run of every target in tests/fuzz/ (tools/fuzz.sh, 30 s each).
# HASHWALL_SANITIZE=0 skips the sanitizer pass and HASHWALL_FUZZ=0 the fuzz run (quick
# local runs; CI always does all three).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
tools/deps.sh
tools/build.sh
(cd build && ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@")

if [[ "${HASHWALL_SANITIZE:-1}" != 0 ]]; then
  BUILD_DIR=build-asan tools/build.sh -DHASHWALL_SANITIZE=ON
  # halt_on_error: the first report ends the process, so the test fails on it.
  # Suppressions are only for reports inside system libraries, each with its reason.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0
  export LSAN_OPTIONS=suppressions=$ROOT/tests/sanitizer/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/tests/sanitizer/ubsan.supp
  (cd build-asan && ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@")
fi

if [[ "${HASHWALL_FUZZ:-1}" != 0 ]]; then
  tools/fuzz.sh "${HASHWALL_FUZZ_SECONDS:-30}"
fi
