#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest.
# Tests that need ../shared (Meta's PDQ vectors, the photo corpus) skip visibly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
