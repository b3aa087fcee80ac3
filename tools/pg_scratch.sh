#!/usr/bin/env bash
# Starts and stops a throwaway PostgreSQL 15 server, for the PostgreSQL store's tests and
# for trying that store by hand. The server listens on 127.0.0.1 only (a random free port
# in 20000-59999) and keeps its unix socket inside DIR; it trusts every local connection,
# runs with fsync off, and holds one database, hashwall, owned by the role hashwall.
# Never point it at data you want to keep.
#
#   tools/pg_scratch.sh start DIR            initdb + start; prints the URL (only stdout line)
#   tools/pg_scratch.sh stop DIR [--remove]  fast shutdown; --remove also deletes DIR
#   tools/pg_scratch.sh url DIR              prints the URL if running, else exit 1
#
# start wants DIR absent or empty (a stopped scratch DIR is started again, on its old port
# when that is free;
# one already running just prints its URL). It leaves in DIR: data/ (the cluster),
# initdb.log, server.log, port, url, and the socket. The URL looks like
#   postgresql://hashwall@127.0.0.1:PORT/hashwall
# PostgreSQL refuses to run as root, so as root the server runs as Debian's postgres
# system user and DIR is chowned to it; DIR's parents must then be traversable by that
# user (a directory made by `mktemp -d` under /tmp is fine, a path under /root or inside
# another `mktemp -d` directory is not). Binaries come from /usr/lib/postgresql/15/bin
# (Debian's postgresql-15 package), or from $PG_SCRATCH_BIN if set.
set -euo pipefail

PG_BIN=${PG_SCRATCH_BIN:-/usr/lib/postgresql/15/bin}
# PG* variables (PGHOST, PGPORT, PGOPTIONS, PGSERVICE, ...) would redirect or alter the
# connections made below; everything here is passed explicitly instead.
while read -r v; do unset "$v"; done < <(compgen -e -X '!PG*')

die() {
  echo "pg_scratch: $*" >&2
  exit 1
}

usage() {
  cat >&2 <<'EOF'
usage: tools/pg_scratch.sh start DIR             start a scratch PostgreSQL 15 in DIR, print its URL
       tools/pg_scratch.sh stop DIR [--remove]   stop it (and delete DIR with --remove)
       tools/pg_scratch.sh url DIR               print its URL; exit 1 if it is not running
EOF
  exit 2
}

# as_server CMD...: runs CMD as the server's user (postgres when we are root), from / so
# that an unreadable working directory does not matter.
as_server() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# is_running: true when the cluster in $DIR/data has a live postmaster. A postmaster
# killed with SIGKILL can linger as a zombie until its parent (often init) reaps it, and
# pg_ctl counts a zombie as running, so those are ruled out first.
is_running() {
  [[ -f $DIR/data/PG_VERSION ]] || return 1
  local pid state
  pid=$(sed -n 1p "$DIR/data/postmaster.pid" 2>/dev/null) || true
  if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]]; then
    state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
    [[ $state != Z ]] || return 1
  fi
  as_server "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

# running_port: the port of the running server (postmaster.pid line 4).
running_port() {
  sed -n 4p "$DIR/data/postmaster.pid" 2>/dev/null
}

url_for() {
  echo "postgresql://hashwall@127.0.0.1:$1/hashwall"
}

# write_url PORT: records port and URL in DIR and prints the URL.
write_url() {
  echo "$1" >"$DIR/port"
  url_for "$1" >"$DIR/url"
  url_for "$1"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT (or on the wildcard address).
port_free() {
  if command -v ss >/dev/null; then
    [[ -z $(ss -Hltn "sport = :$1") ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
  fi
}

pick_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if port_free "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "found no free TCP port in 20000-59999 after 100 tries"
}

# check_dir: DIR as an absolute path with characters that survive pg_ctl -o and a URL,
# short enough for a unix socket path (108 bytes with .s.PGSQL.PORT appended).
check_dir() {
  [[ -n $DIR ]] || usage
  DIR=$(realpath -m -- "$DIR")
  [[ $DIR =~ ^/[A-Za-z0-9._/+-]+$ ]] ||
    die "DIR '$DIR' may only hold letters, digits and . _ / + - (it goes into pg_ctl -o); try a directory under /tmp"
  ((${#DIR} + 16 <= 107)) ||
    die "DIR '$DIR' is too long for a unix socket path (at most 91 characters); try a directory under /tmp"
}

cmd_url() {
  is_running || exit 1
  if [[ -s $DIR/url ]]; then
    cat "$DIR/url"
  else
    url_for "$(running_port)"
  fi
}

cmd_start() {
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 ||
      die "running as root needs the 'postgres' system user (Debian's postgresql package makes it), and there is none"
  fi
  local b
  for b in initdb pg_ctl postgres; do
    [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b not found: install Debian's postgresql-15 (or set PG_SCRATCH_BIN)"
  done
  for b in psql createdb; do
    command -v "$b" >/dev/null || die "$b not found: install Debian's postgresql-client-15"
  done

  if is_running; then
    local port
    port=$(running_port)
    [[ $port =~ ^[0-9]+$ ]] || die "server in $DIR is running but its port is unknown ($DIR/data/postmaster.pid)"
    write_url "$port"
    return 0
  fi

  local fresh=1
  if [[ -f $DIR/data/PG_VERSION ]]; then
    fresh=0 # a stopped scratch server: start it again
  elif [[ -e $DIR ]]; then
    [[ -d $DIR ]] || die "$DIR exists and is not a directory"
    [[ -z $(ls -A -- "$DIR") ]] || die "$DIR is not empty (start wants a new or empty directory)"
  fi

  if ((EUID == 0)); then
    # The nearest existing ancestor must be reachable by postgres; mkdir -p makes the rest 0755.
    local anc
    anc=$(dirname -- "$DIR")
    while [[ ! -e $anc ]]; do anc=$(dirname -- "$anc"); done
    as_server test -x "$anc" ||
      die "user postgres cannot reach $anc (a parent of $DIR); use a directory under /tmp, e.g. \$(mktemp -d /tmp/pg.XXXXXX)"
  fi
  mkdir -p -- "$DIR"
  if ((EUID == 0)); then chown postgres:postgres -- "$DIR"; fi

  if ((fresh)); then
    if ! as_server "$PG_BIN/initdb" -D "$DIR/data" -U hashwall -A trust --no-sync -E UTF8 --locale=C \
      >"$DIR/initdb.log" 2>&1; then
      echo "pg_scratch: initdb failed; last lines of $DIR/initdb.log:" >&2
      tail -n 20 "$DIR/initdb.log" >&2
      exit 1
    fi
  fi

  # Start on a random free port; another process may take the port between the check and
  # the bind, so a bind failure picks a new port and tries again.
  local port attempt out log_at ok=0
  for ((attempt = 1; attempt <= 10; attempt++)); do
    # A stopped scratch server comes back on its old port when it is free, so that clients
    # holding its address (a replica under a fault test) reconnect to it.
    if ((attempt == 1 && !fresh)) && [[ -f $DIR/port ]] && port_free "$(cat "$DIR/port")"; then
      port=$(cat "$DIR/port")
    else
      port=$(pick_port)
    fi
    log_at=$(($(stat -c %s "$DIR/server.log" 2>/dev/null || echo 0) + 1))
    if out=$(as_server "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start \
      -o "-h 127.0.0.1 -p $port -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      2>&1); then
      ok=1
      break
    fi
    if tail -c "+$log_at" "$DIR/server.log" 2>/dev/null | grep -q -e 'Address already in use' -e 'could not create any TCP/IP sockets'; then
      echo "pg_scratch: port $port was taken, trying another" >&2
      continue
    fi
    break
  done
  if ((!ok)); then
    echo "pg_scratch: the server did not start:" >&2
    [[ -n $out ]] && echo "$out" >&2
    echo "pg_scratch: last lines of $DIR/server.log:" >&2
    tail -n 20 "$DIR/server.log" >&2 || true
    exit 1
  fi

  # The database survives a stop, so a restarted scratch server already has it.
  local exists rc=0
  exists=$(psql -X -A -t -q -h 127.0.0.1 -p "$port" -U hashwall -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = 'hashwall'" 2>&1) || rc=$?
  out=$exists
  if ((rc == 0)) && [[ $exists != 1 ]]; then
    out=$(createdb -h 127.0.0.1 -p "$port" -U hashwall -O hashwall hashwall 2>&1) || rc=$?
  fi
  if ((rc != 0)); then
    echo "pg_scratch: could not create database hashwall: $out" >&2
    as_server "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    exit 1
  fi
  write_url "$port"
}

cmd_stop() {
  local remove=$1
  if is_running; then
    if ! as_server "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
      as_server "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
        die "could not stop the server in $DIR"
    fi
  fi
  ((remove)) || return 0
  [[ -e $DIR ]] || return 0
  [[ -d $DIR ]] || die "$DIR is not a directory; not removing it"
  # Only delete what this script makes, in case DIR was mistyped.
  local f
  shopt -s nullglob dotglob
  for f in "$DIR"/*; do
    case ${f##*/} in
      data | initdb.log | server.log | port | url | .s.PGSQL.*) ;;
      *) die "not removing $DIR: it holds ${f##*/}, which pg_scratch.sh does not make" ;;
    esac
  done
  shopt -u nullglob dotglob
  rm -rf -- "$DIR"
}

(($# >= 2)) || usage
CMD=$1 DIR=$2
shift 2
case $CMD in
  start)
    (($# == 0)) || usage
    check_dir
    cmd_start
    ;;
  stop)
    remove=0
    if (($# == 1)) && [[ $1 == --remove ]]; then
      remove=1
    elif (($# != 0)); then
      usage
    fi
    check_dir
    cmd_stop "$remove"
    ;;
  url)
    (($# == 0)) || usage
    check_dir
    cmd_url
    ;;
  *) usage ;;
esac
