#!/usr/bin/env bash
# The quickstart: installs dependencies, builds, indexes samples/bank/ into a bank and
# scans samples/uploads/ against it, printing the report.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh
BANK=${BANK:-build/demo-bank.db}
rm -f "$BANK" "$BANK"-wal "$BANK"-shm "$BANK".pdq-index
echo
echo "== hashwall index samples/bank --bank $BANK --label demo"
build/hashwall index samples/bank --bank "$BANK" --label demo
echo
echo "== hashwall scan samples/uploads --bank $BANK"
set +e
build/hashwall scan samples/uploads --bank "$BANK"
code=$?
set -e
echo
echo "scan exit code: $code (0 no match, 1 match found, 2 some file unreadable, 3 undecided)"
# Matches are the expected outcome of the demo.
[[ $code -eq 1 ]]
