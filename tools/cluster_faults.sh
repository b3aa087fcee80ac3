#!/usr/bin/env bash
# The many-node deployment of docs/DEPLOY.md on loopback, under load and faults (#16):
# a scratch PostgreSQL 15 (tools/pg_scratch.sh), three `hashwall serve` replicas of one
# bank, each with its own cache folder, and HAProxy in front checking GET /v1/ready.
#
#   tools/cluster_faults.sh [--short] [--build DIR] [--hashwall BIN] [--json FILE]
#                           [--duration S] [--preload N] [--startup-entries N]
#
# --hashwall BIN runs the replicas and the CLI from BIN (an installed /usr/bin/hashwall,
# from the .deb or `cmake --install`) instead of the build's; the load tools still come
# from --build.
#
# It prints, and with --json writes:
#   - the import rate into PostgreSQL (--preload random hashes, default 100,000);
#   - requests/s of hash look-ups through the balancer with 1, 2 and 3 replicas;
#   - the fault run (hashwall_cluster run, --duration s, default 60): writers and readers
#     through the balancer while one replica is killed with -9 and restarted, PostgreSQL
#     is restarted, and a replica is restarted with an empty cache; then: no acknowledged
#     write lost, no wrong answer, errors only inside the outage windows, every replica
#     caught up; change propagation p50/p99; recovery time after each fault;
#   - with --startup-entries N (the full run: 1,000,000), a replica's start-up time and RSS
#     at N PDQ entries, with an empty cache and with its cache.
# --short (CI: CTest's cluster_faults_short): 20 s, 2,000 entries, 3 s per
# throughput step, no start-up step. Exit 0 when the fault run's checks hold.
# Needs: haproxy, PostgreSQL 15 (Debian packages), the build's hashwall, hashwall_cluster
# and hashwall_loadtest. Everything listens on 127.0.0.1 and is removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
JSON_OUT="" SHORT=0 DURATION=60 PRELOAD=100000 STARTUP=0 STEP=10
while (($#)); do
  case $1 in
    --short) SHORT=1 DURATION=20 PRELOAD=2000 STEP=3 ;;
    --build) BUILD=$2; shift ;;
    --hashwall) HW_BIN=$2; shift ;;
    --json) JSON_OUT=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --preload) PRELOAD=$2; shift ;;
    --startup-entries) STARTUP=$2; shift ;;
    *) echo "usage: $0 [--short] [--build DIR] [--hashwall BIN] [--json FILE] [--duration S] [--preload N] [--startup-entries N]" >&2; exit 2 ;;
  esac
  shift
done
HW=${HW_BIN:-$BUILD/hashwall} CL=$BUILD/hashwall_cluster LT=$BUILD/hashwall_loadtest
for b in "$HW" "$CL" "$LT"; do
  [[ -x $b ]] || { echo "cluster: $b not built (cmake --build $BUILD)" >&2; exit 2; }
done
# Without them it skips (77), unless HASHWALL_REQUIRE_POSTGRESQL=1 (CI) makes that a failure.
MISSING=77
[[ ${HASHWALL_REQUIRE_POSTGRESQL:-0} == 1 ]] && MISSING=1
command -v haproxy >/dev/null || { echo "cluster: haproxy is not installed (apt-get install haproxy)" >&2; exit $MISSING; }
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || { echo "cluster: PostgreSQL 15 is not installed" >&2; exit $MISSING; }

WORK=$(mktemp -d /tmp/hashwall-cluster.XXXXXX)
chmod 755 "$WORK"  # the postgres user reaches its data folder through it
declare -A PID PORT
HAPID=""
log() { echo "cluster: $*" >&2; }
cleanup() {
  set +e
  for i in "${!PID[@]}"; do kill -9 "${PID[$i]}" 2>/dev/null; done
  [[ -n $HAPID ]] && kill "$HAPID" 2>/dev/null
  "$ROOT/tools/pg_scratch.sh" stop "$WORK/pg" --remove >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.3f", (b - a) / 1000 }'; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    [[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return; }
  done
  log "no free port"; exit 1
}

# --- PostgreSQL and the bank ---------------------------------------------------------------
BANK=$("$ROOT/tools/pg_scratch.sh" start "$WORK/pg")
log "PostgreSQL at $BANK; hashwall: $HW ($("$HW" --version 2>&1 | head -1))"
"$HW" init --bank "$BANK" --signals pdq 2>/dev/null
"$LT" --gen-hashes "$PRELOAD" --out "$WORK/preload.txt" --seed 7
t=$(now_ms)
"$HW" import "$WORK/preload.txt" --bank "$BANK" --format hex --label preload --json >"$WORK/import.json"
IMPORT_S=$(secs_since "$t")
IMPORT_RATE=$(awk -v n="$PRELOAD" -v s="$IMPORT_S" 'BEGIN { printf "%d", n / s }')
log "imported $PRELOAD hashes in $IMPORT_S s ($IMPORT_RATE/s)"
(umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 40 >"$WORK/token")

start_replica() {  # start_replica I [fresh]: serve on PORT[I] with cache folder cache-I
  local i=$1
  [[ ${2:-} == fresh ]] && rm -rf "$WORK/cache-$i"
  HASHWALL_CACHE_DIR=$WORK/cache-$i "$HW" serve --bank "$BANK" --listen "127.0.0.1:${PORT[$i]}" \
    --token-file "$WORK/token" --max-lag 2 --threads 8 >>"$WORK/replica-$i.log" 2>&1 &
  PID[$i]=$!
}
for i in 1 2 3; do PORT[$i]=$(free_port); done
t=$(now_ms)
for i in 1 2 3; do start_replica "$i"; done
"$CL" wait-ready --replicas "${PORT[1]},${PORT[2]},${PORT[3]}" --timeout 120 >/dev/null
log "3 replicas ready in $(secs_since "$t") s"

BAL=$(free_port)
start_haproxy() {  # start_haproxy N: the balancer over the first N replicas
  [[ -n $HAPID ]] && { kill "$HAPID" 2>/dev/null; wait "$HAPID" 2>/dev/null || true; }
  {
    echo "global"
    echo "    maxconn 2000"
    echo "defaults"
    echo "    mode http"
    echo "    timeout connect 2s"
    echo "    timeout client 30s"
    echo "    timeout server 30s"
    echo "    retries 2"
    echo "    option redispatch"
    echo "frontend hashwall"
    echo "    bind 127.0.0.1:$BAL"
    echo "    default_backend replicas"
    echo "backend replicas"
    echo "    balance leastconn"
    echo "    option httpchk GET /v1/ready"
    echo "    http-check expect status 200"
    echo "    default-server inter 500ms fall 2 rise 2"
    for i in $(seq 1 "$1"); do echo "    server r$i 127.0.0.1:${PORT[$i]} check"; done
  } >"$WORK/haproxy.cfg"
  haproxy -f "$WORK/haproxy.cfg" -db >>"$WORK/haproxy.log" 2>&1 &
  HAPID=$!
  for _ in $(seq 100); do
    "$CL" wait-ready --replicas "$BAL" --timeout 0.2 >/dev/null 2>&1 && return
    sleep 0.1
  done
  log "the balancer did not come up:"; cat "$WORK/haproxy.log" >&2; exit 1
}

# --- throughput through the balancer ---------------------------------------------------------
declare -A RPS
for n in 1 2 3; do
  start_haproxy "$n"
  RPS[$n]=$("$LT" --port "$BAL" --hashes "$WORK/preload.txt" -c 8 -d "$STEP" --hash 100 --photo 0 \
    --write 0 --no-hash-rate --json | sed -nE 's/^  "per_second": ([0-9.]+).*/\1/p' | head -1)
  log "$n replica(s): ${RPS[$n]} hash look-ups/s through HAProxy"
done

# --- the fault run ---------------------------------------------------------------------------
EVENTS=$WORK/events.txt
: >"$EVENTS"
"$CL" run --balancer "$BAL" --replicas "${PORT[1]},${PORT[2]},${PORT[3]}" --token-file "$WORK/token" \
  --duration "$DURATION" --events "$EVENTS" --grace 3 --json >"$WORK/run.json" &
RUN=$!
wait_ready() { "$CL" wait-ready --replicas "$1" --timeout 120 ${2:-} >/dev/null; }
sleep "$(calc "$DURATION * 0.15")"

log "fault 1: kill -9 replica 1, restart it with its cache"
s=$(now_ms); kill -9 "${PID[1]}"; wait "${PID[1]}" 2>/dev/null || true
sleep 1
start_replica 1
wait_ready "${PORT[1]}"
e=$(now_ms); echo "kill9-replica $s $e" >>"$EVENTS"
REC_KILL=$(calc "($e - $s) / 1000")
log "  replica 1 back and ready $REC_KILL s after the kill (1 s of it down on purpose)"
sleep "$(calc "$DURATION * 0.15")"

log "fault 2: restart PostgreSQL"
s=$(now_ms)
"$ROOT/tools/pg_scratch.sh" stop "$WORK/pg" >/dev/null
sleep 1
"$ROOT/tools/pg_scratch.sh" start "$WORK/pg" >/dev/null
back=$(now_ms)
# Ready again means caught up within --max-lag (writes go on meanwhile, so the replicas are
# rarely at one generation at the same instant: that is checked at the end, without writes).
wait_ready "${PORT[1]},${PORT[2]},${PORT[3]}"
e=$(now_ms); echo "postgresql-restart $s $e" >>"$EVENTS"
REC_PG=$(calc "($e - $back) / 1000")
log "  every replica ready (caught up within --max-lag) $REC_PG s after PostgreSQL was back"
sleep "$(calc "$DURATION * 0.15")"

log "fault 3: restart replica 2 with an empty cache"
s=$(now_ms); kill -TERM "${PID[2]}"; wait "${PID[2]}" 2>/dev/null || true
start_replica 2 fresh
wait_ready "${PORT[2]}"
e=$(now_ms); echo "empty-cache-replica $s $e" >>"$EVENTS"
REC_EMPTY=$(calc "($e - $s) / 1000")
log "  replica 2 stopped, restarted without cache and ready in $REC_EMPTY s"

rc=0
wait "$RUN" || rc=$?
cat "$WORK/run.json" >&2

# --- start-up at size (full run) --------------------------------------------------------------
STARTUP_JSON=null
if ((STARTUP > PRELOAD)); then
  more=$((STARTUP - PRELOAD))
  "$LT" --gen-hashes "$more" --out "$WORK/more.txt" --seed 11
  t=$(now_ms)
  "$HW" import "$WORK/more.txt" --bank "$BANK" --format hex --label more >/dev/null
  log "imported $more more hashes in $(secs_since "$t") s"
  PORT[4]=$(free_port)
  measure() {  # measure fresh|cached: seconds to ready, then RSS in KiB
    local t0 rss
    t0=$(now_ms)
    start_replica 4 "$1"
    wait_ready "${PORT[4]}"
    local secs; secs=$(secs_since "$t0")
    rss=$(ps -o rss= -p "${PID[4]}" | tr -d ' ')
    kill -TERM "${PID[4]}"; wait "${PID[4]}" 2>/dev/null || true
    echo "$secs $rss"
  }
  read -r FRESH_S FRESH_RSS < <(measure fresh)
  read -r CACHED_S CACHED_RSS < <(measure cached)
  log "replica at $STARTUP entries: empty cache $FRESH_S s, RSS $((FRESH_RSS / 1024)) MiB; with its cache $CACHED_S s, RSS $((CACHED_RSS / 1024)) MiB"
  STARTUP_JSON="{\"entries\": $STARTUP, \"empty_cache_seconds\": $FRESH_S, \"empty_cache_rss_kib\": $FRESH_RSS, \"cached_seconds\": $CACHED_S, \"cached_rss_kib\": $CACHED_RSS}"
fi

SUMMARY=$(cat <<EOF
{"preload": $PRELOAD, "import_seconds": $IMPORT_S, "import_per_second": $IMPORT_RATE,
 "hash_lookups_per_second": {"1": ${RPS[1]:-0}, "2": ${RPS[2]:-0}, "3": ${RPS[3]:-0}},
 "recovery_seconds": {"kill9_replica_to_ready": $REC_KILL, "postgresql_back_to_all_caught_up": $REC_PG,
                      "empty_cache_restart_to_ready": $REC_EMPTY},
 "startup": $STARTUP_JSON,
 "fault_run": $(cat "$WORK/run.json")}
EOF
)
[[ -n $JSON_OUT ]] && echo "$SUMMARY" >"$JSON_OUT"
echo "$SUMMARY"
if ((rc != 0)); then
  log "the fault run's checks FAILED; replica logs:"
  tail -n 5 "$WORK"/replica-*.log >&2
fi
exit "$rc"
