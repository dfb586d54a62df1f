#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the PostgreSQL store's tests and print
# the DSN to use (ROUTILUX_TEST_POSTGRES_DSN). Installs the Debian package when missing.
# Idempotent: a server already started by this script is reused.
set -euo pipefail

PGPORT="${ROUTILUX_PGPORT:-55432}"
PGDATA="${ROUTILUX_PGDATA:-/tmp/routilux-ci-pg}"

pgbin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$dir" ] && echo "$dir"
}

if [ -z "$(pgbin)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) >&2
fi
BIN=$(pgbin)

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" 2>/dev/null; then
  rm -rf "$PGDATA"
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
  as_pg "$BIN/initdb" -D "$PGDATA" -U postgres -A trust >/dev/null
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k /tmp -c fsync=on" start >&2
fi
echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
