#!/bin/sh
# Load test of `hashwall serve` on loopback (issue #4): builds a bank of N random PDQ
# hashes plus samples/bank, starts the server on 127.0.0.1, runs three bounded
# scenarios with hashwall_loadtest, then stops the server with SIGTERM.
#
#   tools/loadtest/run.sh BUILD_DIR [ENTRIES] [SECONDS] [CLIENTS]
#   tools/loadtest/run.sh build 1000000 10 4
#
# Everything stays under a temporary folder that is removed at the end.
set -eu
BUILD=${1:?usage: run.sh BUILD_DIR [ENTRIES] [SECONDS] [CLIENTS]}
N=${2:-1000000}
SECS=${3:-10}
CLIENTS=${4:-4}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HW="$BUILD/hashwall"
LT="$BUILD/hashwall_loadtest"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hashwall-loadtest.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== bank: $N random hashes + samples/bank"
"$LT" --gen-hashes "$N" --out "$WORK/hashes.txt" --seed 7
t0=$(date +%s.%N)
"$HW" import "$WORK/hashes.txt" --bank "$WORK/bank.db" --format hex --label random >/dev/null
"$HW" index "$ROOT/samples/bank" --bank "$WORK/bank.db" --label samples 2>/dev/null
t1=$(date +%s.%N)
echo "built in $(echo "$t1 - $t0" | bc) s"
"$HW" stats --bank "$WORK/bank.db" | sed -n '2p;6p'
head -n 10000 "$WORK/hashes.txt" > "$WORK/known.txt"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/token"
chmod 600 "$WORK/token"

"$HW" serve --bank "$WORK/bank.db" --listen 127.0.0.1:0 --token-file "$WORK/token" 2>"$WORK/serve.log" &
PID=$!
PORT=
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/serve.log")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/serve.log"; exit 2; }
cat "$WORK/serve.log"

echo "== hash lookups only (half of them in the bank)"
"$LT" --port "$PORT" --hashes "$WORK/known.txt" --clients "$CLIENTS" --duration "$SECS" --hash 1 --photo 0 --write 0 --no-hash-rate
echo "== photo matches only (samples/uploads: matching and unrelated)"
"$LT" --port "$PORT" --photos "$ROOT/samples/uploads" --clients "$CLIENTS" --duration "$SECS" --hash 0 --photo 1 --write 0
echo "== mixed: 80% hash, 18% photo, 2% writes (add + delete)"
"$LT" --port "$PORT" --photos "$ROOT/samples/uploads" --hashes "$WORK/known.txt" --token-file "$WORK/token" \
  --clients "$CLIENTS" --duration "$SECS" --hash 80 --photo 18 --write 2 --no-hash-rate
echo "== server metrics"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^hashwall_(requests_total|rejected_total|queue_depth|bank_entries)' || true
kill -TERM "$PID"
wait "$PID" && echo "server stopped cleanly (exit 0)"
PID=
tail -n 1 "$WORK/serve.log"
