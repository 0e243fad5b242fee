#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), starts a PostgreSQL server (scripts/postgres.sh) so the database tests run
# on it as well as on SQLite, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# A server given from outside (LOCALIZE_TEST_POSTGRES_URL already set) is used as it is.
started_postgres=0
if [ -z "${LOCALIZE_TEST_POSTGRES_URL:-}" ]; then
  if bash scripts/postgres.sh url >/dev/null 2>&1; then already_running=1; else already_running=0; fi
  if url=$(bash scripts/postgres.sh start --no-fsync); then
    export LOCALIZE_TEST_POSTGRES_URL=$url
    [ "$already_running" -eq 1 ] || started_postgres=1
  elif [ "${CI:-}" = "true" ]; then
    echo "scripts/postgres.sh could not start PostgreSQL; CI tests every database test on it" >&2
    exit 1
  else
    echo "PostgreSQL is not available: its tests are skipped (scripts/postgres.sh says why above)" >&2
  fi
fi
set +e
python -m pytest "$@"
status=$?
set -e
# The server this run started is stopped again; one that was already running is left as it was.
if [ "$started_postgres" -eq 1 ]; then
  bash scripts/postgres.sh stop >/dev/null 2>&1 || true
fi
# pytest exits 5 when it collected no test: that is a failure, never a pass.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
