#!/usr/bin/env bash
# Fails when a file under src/ includes a header from a folder its layer may not use.
# The layers and what each may use are the hashwall_layer(...) lines of CMakeLists.txt
# (docs/DESIGN.md, "Layers"); a folder of src/ without such a line is an error too.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed
while read -r name rest; do
  allowed[$name]=" $name ${rest#LAYERS} "
done < <(sed -nE 's/^hashwall_layer\(([a-z_]+)( LAYERS ([a-z_ ]+))?\).*/\1 \3/p' CMakeLists.txt)
status=0
for dir in src/*/; do
  layer=$(basename "$dir")
  if [[ -z ${allowed[$layer]+x} ]]; then
    echo "check_layers: src/$layer has no hashwall_layer($layer ...) line in CMakeLists.txt" >&2
    status=1
    continue
  fi
  while IFS=: read -r file line text; do
    target=$(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([a-z_]+)\/.*/\1/p' <<<"$text")
    [[ -z $target || ! -d src/$target ]] && continue
    if [[ ${allowed[$layer]} != *" $target "* ]]; then
      echo "check_layers: $file:$line: src/$layer may not include $target/ (it may use:${allowed[$layer]})" >&2
      status=1
    fi
  done < <(grep -nH '#[[:space:]]*include[[:space:]]*"' "$dir"*.cpp "$dir"*.hpp 2>/dev/null || true)
done
# The store seam (src/bank/store.hpp): SQLite, and SQL, only inside the stores (SQLite's,
# PostgreSQL's); libpq only in PostgreSQL's.
while IFS=: read -r file line _; do
  case $file in
    src/bank/sqlite_store.cpp | src/bank/sqlite_records.cpp | src/bank/sqlite_store_impl.hpp | \
      src/bank/sqlite_schema.cpp | src/bank/sqlite_lists.cpp | src/bank/sqlite.hpp) ;;
    src/bank/pg_store.cpp | src/bank/pg_records.cpp | src/bank/pg_lists.cpp | src/bank/pg_store_impl.hpp | src/bank/pg.cpp | \
      src/bank/pg.hpp)
      [[ $(sed -n "${line}p" "$file") == *sqlite3* ]] &&
        echo "check_layers: $file:$line: SQLite in the PostgreSQL store" >&2 && status=1
      ;;
    *)
      echo "check_layers: $file:$line: SQLite, SQL or libpq outside the stores (src/bank/sqlite_*, src/bank/pg*)" >&2
      status=1
      ;;
  esac
done < <(grep -rnE 'sqlite3|libpq-fe|bank/sqlite\.hpp|bank/pg\.hpp|"(SELECT |INSERT INTO|DELETE FROM|UPDATE [a-z_]+ SET|CREATE (TABLE|INDEX|TRIGGER)|PRAGMA |BEGIN)' src || true)
((status == 0)) && echo "check_layers: every include in src/ stays within its layer's uses; SQL stays in the stores" >&2
exit $status
