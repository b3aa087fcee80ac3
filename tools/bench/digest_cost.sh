#!/usr/bin/env bash
# What bank format 4's checksums cost (docs/BENCHMARKS.md, "Bank checksums"): imports N
# random PDQ hashes into a new bank, then times opening it (`hashwall stats`, median of 5)
# with its index cache checked whole against the PDQ digest, and the same bank with the
# digest removed from a copy's meta (the cache then checked on a sample of 32 records).
# Usage: tools/bench/digest_cost.sh [N=1000000] [BIN=build/hashwall]
set -euo pipefail
N=${1:-1000000}
BIN=${2:-build/hashwall}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hashwall-digest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
/usr/bin/python3 - "$N" "$WORK/list.txt" <<'PY'
import random, sys
r = random.Random(5)
with open(sys.argv[2], "w") as f:
    for _ in range(int(sys.argv[1])):
        f.write("%064x\n" % r.getrandbits(256))
PY
start=$(date +%s.%N)
"$BIN" import "$WORK/list.txt" --bank "$WORK/bank.db" -f hex
echo "import of $N hashes: $(echo "$(date +%s.%N) - $start" | bc) s"
cp "$WORK/bank.db" "$WORK/sample.db"
cp "$WORK/bank.db.pdq-index" "$WORK/sample.db.pdq-index"
sqlite3 "$WORK/sample.db" "DELETE FROM meta WHERE key = 'pdq_digest'"
for b in bank sample; do
  for _ in 1 2 3 4 5; do
    /usr/bin/time -f "%e" "$BIN" stats --bank "$WORK/$b.db" --json 2>&1 >/dev/null | tail -n 1
  done | sort -n | sed -n 3p | sed "s/^/open ($b check), median of 5: /; s/$/ s/"
done
