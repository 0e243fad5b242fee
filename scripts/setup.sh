#!/usr/bin/env bash
# Creates .venv and installs torch's CPU build, then this package with every extra. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The exact CPU build first: a loose torch requirement would otherwise pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[quant,dev,ray,s3,otel]"
# pip compiles the dependencies' bytecode but not an editable project's; where PYTHONDONTWRITEBYTECODE is set
# nothing writes it later either, and every run of `localize` would compile its modules again (about 7% of the work
# of a database-only command such as `localize tasks list`).
python -m compileall -q localize adapters api migrations  # the folders the package installs from
# scripts/quickstart.sh (the README's tour, run by the tests) talks to the server with curl.
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq curl >&2
  else
    echo "curl is missing and cannot be installed here (needs root and apt-get): the quickstart test skips" \
         "locally and fails in CI; install Debian's curl package" >&2
  fi
fi
# The browser tests drive Debian's chromium (never a downloaded browser build): installed with apt-get when missing.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium >&2
  else
    echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests skip" \
         "locally and fail in CI; install Debian's chromium package" >&2
  fi
fi
