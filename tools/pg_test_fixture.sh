#!/usr/bin/env bash
# CTest's "postgresql" fixture (CMakeLists.txt): starts a scratch PostgreSQL 15 server on
# 127.0.0.1 for the "pg: ..." tests (tools/pg_scratch.sh, as the unprivileged postgres user
# when run as root) and writes its address to BUILD_DIR/pg-scratch.url; stops and removes it.
#   tools/pg_test_fixture.sh start BUILD_DIR
#   tools/pg_test_fixture.sh stop BUILD_DIR
# Without PostgreSQL installed, start writes no address and says so: the pg tests then skip
# visibly (tests/support.cpp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-} build=${2:-}
if [[ -z $build || ! -d $build ]]; then
  echo "usage: $0 start|stop BUILD_DIR" >&2
  exit 2
fi
url_file=$build/pg-scratch.url dir_file=$build/pg-scratch.dir
case $cmd in
  start)
    if [[ -f $dir_file ]]; then "$here/pg_scratch.sh" stop "$(cat "$dir_file")" --remove || true; fi
    rm -f "$url_file" "$dir_file"
    rm -rf "$build/pg-test-cache"
    if [[ ! -x /usr/lib/postgresql/15/bin/initdb ]]; then
      # CI (tools/test.sh under CI=true) requires them: a skip there would hide the store.
      if [[ ${HASHWALL_REQUIRE_POSTGRESQL:-0} == 1 ]]; then
        echo "pg fixture: PostgreSQL 15 is not installed and HASHWALL_REQUIRE_POSTGRESQL=1" >&2
        exit 1
      fi
      echo "pg fixture: PostgreSQL 15 is not installed (apt-get install postgresql): the pg tests skip"
      exit 0
    fi
    dir=$(mktemp -d /tmp/hashwall-pg.XXXXXX)
    echo "$dir" >"$dir_file"
    "$here/pg_scratch.sh" start "$dir" >"$url_file.tmp"
    mv "$url_file.tmp" "$url_file"
    echo "pg fixture: $(cat "$url_file") in $dir"
    ;;
  stop)
    if [[ -f $dir_file ]]; then "$here/pg_scratch.sh" stop "$(cat "$dir_file")" --remove; fi
    rm -f "$url_file" "$dir_file"
    rm -rf "$build/pg-test-cache"
    ;;
  *)
    echo "usage: $0 start|stop BUILD_DIR" >&2
    exit 2
    ;;
esac
