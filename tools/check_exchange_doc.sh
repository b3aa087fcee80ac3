#!/usr/bin/env bash
# Runs docs/EXCHANGE.md's walk-through as a reader would paste it, with the hashwall of a
# build folder on the PATH and two free ports instead of 8081 and 8082, and checks what it
# says each step prints. CTest runs it (exchange_walkthrough).
#
#   tools/check_exchange_doc.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${1:?usage: tools/check_exchange_doc.sh BUILD_DIR}" && pwd)
for tool in curl openssl sha256sum awk; do
  command -v "$tool" >/dev/null || { echo "check_exchange_doc: skipped: needs $tool" >&2; exit 77; }
done
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PA=$(free_port) PB=$(free_port)
[[ $PA != "$PB" ]] || PB=$((PA + 1))
SCRIPT=$(mktemp "${TMPDIR:-/tmp}/exchange-walk.XXXXXX")
OUT=$SCRIPT.out
trap 'rm -f "$SCRIPT" "$OUT"' EXIT
awk '/^```sh$/{f=1;next}/^```$/{f=0}f' docs/EXCHANGE.md | sed -e "s/8081/$PA/g" -e "s/8082/$PB/g" > "$SCRIPT"
[[ -s $SCRIPT ]] || { echo "check_exchange_doc: no sh block in docs/EXCHANGE.md" >&2; exit 1; }
# As pasted into a shell: no set -e (a query that matches exits 1). The walk-through ends
# with `kill %1 %2 %3; wait`; a failure midway must not leave servers behind.
PATH=$BUILD:$PATH timeout 300 bash -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT; source '$SCRIPT'" > "$OUT" 2>&1 ||
  { cat "$OUT" >&2; echo "check_exchange_doc: the walk-through failed" >&2; exit 1; }
fail=0
expect() {
  grep -qE -- "$1" "$OUT" || { echo "check_exchange_doc: missing from its output: $1" >&2; fail=1; }
}
expect "6 added, 0 already here, 0 removed.*list created"
expect "org-a-ncii  block, 6 entries"
expect "^exit 1$"
expect "1 removed, 0 disabled"
expect "^exit 0$"
expect "^exit 4$"
expect "allowlisted: the query is entry [0-9]+ of allow list .harmless."
expect '"disabled":1'
expect '"status":"match"'
expect "sync:http://127.0.0.1:$PA  disable"
expect "1 quarantined by the flood guard"
expect "flood-guard  disable  1 entry [0-9]+  .matched [0-9]+ of the last [0-9]+ queries in 600 s."
((fail == 0)) || { cat "$OUT" >&2; exit 1; }
echo "check_exchange_doc: the walk-through in docs/EXCHANGE.md runs and prints what it says" >&2
