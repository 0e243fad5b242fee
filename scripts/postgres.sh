#!/usr/bin/env bash
# A PostgreSQL server for localize on loopback: installs Debian's `postgresql` package when no server binaries are
# found, creates a cluster in var/postgres (or LOCALIZE_PG_DIR), starts it on a free port, creates a role and a
# database, and prints the SQLAlchemy URL on stdout (progress goes to stderr). Idempotent: a second run reuses the
# running server, its port and its password.
#
#   scripts/postgres.sh [start] [--no-fsync]   start (or reuse) the server and print its URL
#   scripts/postgres.sh url                    print the URL of the running server (exit 1 if it is not running)
#   scripts/postgres.sh stop                   stop the server (the cluster's files stay)
#
#   export LOCALIZE_DATABASE_URL=$(scripts/postgres.sh)
#
# --no-fsync trades crash safety for speed (the test suite uses it); never use it for data you keep.
# Settings: LOCALIZE_PG_DIR (cluster folder), LOCALIZE_PG_PORT (port of a new server; default a free one),
# LOCALIZE_PG_USER and LOCALIZE_PG_DATABASE (default localize).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ACTION=start
NO_FSYNC=0
for arg in "$@"; do
  case "$arg" in
    start|url|stop) ACTION=$arg ;;
    --no-fsync) NO_FSYNC=1 ;;
    *) echo "postgres.sh: unknown argument '$arg' (use start, url, stop, --no-fsync)" >&2; exit 2 ;;
  esac
done
ROLE=${LOCALIZE_PG_USER:-localize}
DATABASE=${LOCALIZE_PG_DATABASE:-localize}
case "$ROLE$DATABASE" in *[!A-Za-z0-9_]*) echo "postgres.sh: LOCALIZE_PG_USER and LOCALIZE_PG_DATABASE may hold only letters, digits and _" >&2; exit 2 ;; esac

log() { echo "postgres.sh: $*" >&2; }

# -- the server binaries ------------------------------------------------------------------------------------------
find_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; fi
}
BINDIR=$(find_bindir)
if [ -z "$BINDIR" ]; then
  [ "$ACTION" = start ] || { log "PostgreSQL is not installed"; exit 1; }
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL server binaries not found; install your distribution's postgresql package (as root) and run again"
    exit 1
  fi
  log "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  BINDIR=$(find_bindir)
  [ -n "$BINDIR" ] || { log "postgresql was installed but initdb is still not found"; exit 1; }
fi

# -- who runs the server: initdb and postgres refuse to run as root ---------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || { log "running as root needs the 'postgres' system user (the package creates it)"; exit 1; }
  as_owner() { runuser -u postgres -- "$@"; }
else
  as_owner() { "$@"; }
fi

# The cluster lives in var/postgres unless the server's user cannot reach it there; then in a fixed /tmp folder
# named after this checkout, so a second run finds it again.
if [ -n "${LOCALIZE_PG_DIR:-}" ]; then
  DIR=$LOCALIZE_PG_DIR
else
  DIR=$ROOT/var/postgres
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$ROOT/var"
    if ! runuser -u postgres -- test -x "$ROOT/var"; then
      DIR=/tmp/localize-postgres-$(printf '%s' "$ROOT" | sha1sum | cut -c1-10)
    fi
  fi
fi
DATA=$DIR/data
PGCTL=$BINDIR/pg_ctl
PSQL=$BINDIR/psql

running() { [ -f "$DATA/PG_VERSION" ] && as_owner "$PGCTL" -D "$DATA" status >/dev/null 2>&1; }

print_url() {
  # The password is hex, so it needs no escaping in a URL.
  echo "postgresql+psycopg://$ROLE:$(cat "$DIR/password")@127.0.0.1:$(cat "$DIR/port")/$DATABASE"
}

case "$ACTION" in
  stop)
    if running; then as_owner "$PGCTL" -D "$DATA" stop -m fast >&2; else log "not running"; fi
    exit 0 ;;
  url)
    running || { log "not running (start it with scripts/postgres.sh)"; exit 1; }
    print_url
    exit 0 ;;
esac

# -- the cluster ----------------------------------------------------------------------------------------------------
new_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
mkdir -p "$DIR"
chmod 700 "$DIR"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR"; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a cluster in $DATA"
  umask 077
  [ -f "$DIR/superuser_password" ] || new_secret > "$DIR/superuser_password"
  [ -f "$DIR/password" ] || new_secret > "$DIR/password"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR/superuser_password" "$DIR/password"; fi
  # Every connection authenticates with a password (scram-sha-256), over loopback TCP only.
  as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --pwfile="$DIR/superuser_password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; log "initdb failed"; exit 1; }
  umask 022
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# SO_REUSEADDR, as the server itself binds: a port that a stopped server's connections left in TIME_WAIT is free
# for a restart (without it the restart moves to a new port and clients holding the old URL never reconnect).
port_free() {
  python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()' "$1" 2>/dev/null
}

if running; then
  log "reusing the server running on port $(cat "$DIR/port") ($DATA)"
else
  PORT=${LOCALIZE_PG_PORT:-}
  if [ -z "$PORT" ] && [ -f "$DIR/port" ] && port_free "$(cat "$DIR/port")"; then PORT=$(cat "$DIR/port"); fi
  [ -n "$PORT" ] || PORT=$(free_port)
  echo "$PORT" > "$DIR/port"
  OPTIONS="-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=''"
  if [ "$NO_FSYNC" -eq 1 ]; then
    # A throwaway test server: no autovacuum either, whose workers (owned by the superuser) would block the
    # DROP DATABASE ... WITH (FORCE) that ends each test database.
    OPTIONS="$OPTIONS -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off"
  fi
  log "starting PostgreSQL ($BINDIR) on 127.0.0.1:$PORT"
  rm -f "$DIR/server.log"
  if ! as_owner "$PGCTL" -D "$DATA" -l "$DIR/server.log" -o "$OPTIONS" -w -t 60 start >&2; then
    cat "$DIR/server.log" >&2 || true
    log "the server did not start"
    exit 1
  fi
fi

# -- the role and the database ---------------------------------------------------------------------------------------
PORT=$(cat "$DIR/port")
superuser() {
  PGPASSWORD=$(cat "$DIR/superuser_password") "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -qtA "$@"
}
if [ "$(superuser -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  log "creating role $ROLE"
  # CREATEDB: the test suite gives every test a database of its own.
  superuser -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$(cat "$DIR/password")'"
fi
if [ "$(superuser -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
  log "creating database $DATABASE"
  superuser -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi
print_url
