#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), runs the demo (two traders, opposite labels on the same tweets),
# then serves the HTTP API and one training worker on the embedded defaults: SQLite + local adapter files in the
# workspace (LOCALIZE_HOME, else the per-user data folder; `localize info` prints it). Stop with Ctrl-C. Extra
# arguments go to `localize serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
localize demo
exec localize serve "$@"
