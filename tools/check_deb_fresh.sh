#!/usr/bin/env bash
# Installs hashwall's .deb on a fresh, minimal Debian 12 and runs the demo's job with it:
# the check that the package declares every library it needs (issue #16, "installable").
# Not in CI: it downloads a Debian 12 base system (debootstrap --variant=minbase, about
# 150 MB) and the package's dependencies from deb.debian.org, a few minutes. Run as root.
#
#   tools/check_deb_fresh.sh DEB [ROOTFS]
#
# DEB: the package (cpack -G DEB in a build folder makes build/hashwall_*_amd64.deb).
# ROOTFS: where the base system goes (default: a new temporary folder, removed at the end;
# a ROOTFS given is kept, and a second run on it reuses its base system but always
# installs the package into a fresh copy of it).
# Exit 0 when apt installs the package with nothing but its declared dependencies,
# `hashwall index samples/bank` indexes all six photos and `hashwall scan samples/uploads`
# finds the demo's 5 matches (exit 1, "match found", with one unreadable file reported).
set -euo pipefail
[[ $# -ge 1 && -f $1 ]] || { echo "usage: $0 DEB [ROOTFS]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: run as root (debootstrap and chroot)" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEB=$(realpath "$1")
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEEP=1
BASE=${2:-}
if [[ -z $BASE ]]; then BASE=$(mktemp -d /tmp/hashwall-fresh.XXXXXX); KEEP=0; fi
mkdir -p "$BASE"
FRESH=$BASE/try
# The try's /dev is a bind mount of the host's: nothing under it may be deleted while it is
# mounted (a run killed before its cleanup leaves it so), hence umount first, and rm that
# stays on one file system and refuses while anything is still mounted there.
unmount_try() {
  local m
  for m in dev/pts dev proc; do
    if mountpoint -q "$FRESH/$m" 2>/dev/null; then umount "$FRESH/$m" || umount -l "$FRESH/$m" || return 1; fi
  done
}
remove_try() {
  unmount_try || { echo "fresh: cannot unmount under $FRESH; left as it is" >&2; return 1; }
  if grep -q " $FRESH/" /proc/mounts; then echo "fresh: still mounted under $FRESH; left as it is" >&2; return 1; fi
  rm -rf --one-file-system "$FRESH"
}
cleanup() {
  remove_try || return 0
  ((KEEP)) || rm -rf --one-file-system "$BASE"
}
trap cleanup EXIT
command -v debootstrap >/dev/null || apt-get install -y debootstrap >/dev/null
if [[ ! -x $BASE/base/usr/bin/apt-get ]]; then
  echo "fresh: debootstrap bookworm (minbase) into $BASE/base"
  debootstrap --variant=minbase bookworm "$BASE/base" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 ||
    { tail -20 "$BASE/debootstrap.log" >&2; exit 2; }
fi
remove_try || exit 2
cp -a "$BASE/base" "$FRESH"
mount -t proc proc "$FRESH/proc"
mount --bind /dev "$FRESH/dev"; mount --make-rslave "$FRESH/dev"
mount --bind /dev/pts "$FRESH/dev/pts"; mount --make-rslave "$FRESH/dev/pts"
cp /etc/resolv.conf "$FRESH/etc/resolv.conf"
echo "deb $MIRROR bookworm main" >"$FRESH/etc/apt/sources.list"
mkdir -p "$FRESH/check"
cp "$DEB" "$FRESH/check/"
cp -r "$ROOT/samples" "$FRESH/check/samples"
in_fresh() { chroot "$FRESH" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
echo "fresh: apt-get install ./$(basename "$DEB") on the bare system"
in_fresh apt-get update -qq
in_fresh bash -c "cd /check && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./$(basename "$DEB")" \
  >"$BASE/apt.log" 2>&1 || { tail -20 "$BASE/apt.log" >&2; exit 1; }
echo "fresh: $(grep -c '^Setting up' "$BASE/apt.log") packages set up"
in_fresh hashwall --version || { echo "fresh: FAILED: the installed hashwall does not start" >&2; exit 1; }
in_fresh bash -c "cd /check && hashwall index samples/bank --bank /check/bank.db --json" >"$BASE/index.json" ||
  { echo "fresh: FAILED: hashwall index samples/bank" >&2; exit 1; }
in_fresh bash -c "cd /check && hashwall scan samples/uploads --bank /check/bank.db --jsonl" >"$BASE/scan.json" 2>"$BASE/scan.err" && rc=0 || rc=$?
cat "$BASE/scan.err" >&2
/usr/bin/python3 - "$BASE/index.json" "$BASE/scan.json" "$rc" <<'PY'
import json, sys
index = json.load(open(sys.argv[1])); rc = int(sys.argv[3])
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
matched = sum(1 for r in rows if r.get("match")); errors = sum(1 for r in rows if r.get("error"))
added = index.get("added")
print(f"fresh: index added {added}; scan: {matched} matched, {len(rows) - matched - errors} no match, "
      f"{errors} error(s); exit {rc}")
ok = added == 6 and matched == 5 and errors == 1 and rc == 1
print("fresh: ok" if ok else "fresh: FAILED (expected 6 indexed, 5 matched, 1 error, exit 1)")
sys.exit(0 if ok else 1)
PY
