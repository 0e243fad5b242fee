#!/usr/bin/env bash
# The README's five-minute tour, run as written against a real server: a fresh temporary workspace
# (LOCALIZE_HOME), `localize serve` on a free loopback port, then every command of the tour in order, failing on
# the first error. The server and its worker are stopped and the workspace removed on exit.
#   scripts/quickstart.sh           the tour alone
#   scripts/quickstart.sh --demo    run `localize demo` first, leaving the state scripts/serve.sh leaves
# tests/e2e/test_quickstart.py checks that every command block of the README's tour appears here verbatim.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/localize ] || bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

# -- what scripts/serve.sh does, on a workspace of our own ----------------------------------------------------------
LOCALIZE_HOME=$(mktemp -d -t localize-quickstart.XXXXXX)   # under $TMPDIR
export LOCALIZE_HOME LOCALIZE_WORKER_POLL_SECONDS=0.2
# The API sits idle while the task prior trains: the worker may use every core (serve gives it one by default).
export LOCALIZE_WORKER_THREADS=${LOCALIZE_WORKER_THREADS:-$(nproc)}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=
stop() {
  status=$?
  if [ -n "$server" ]; then
    kill -INT -- "-$server" 2>/dev/null || true   # the server and the worker it started
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$LOCALIZE_HOME/server.log" ]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$LOCALIZE_HOME/server.log" >&2
  fi
  rm -rf "$LOCALIZE_HOME"
  [ "$status" -eq 0 ] && echo "quickstart: every command of the tour ran" || echo "quickstart: FAILED (exit $status)" >&2
  exit "$status"
}
trap stop EXIT
if [ "${1:-}" = "--demo" ]; then localize demo; fi
# its own session, so that stopping it reaches the worker process it starts
setsid localize serve --port "$port" >"$LOCALIZE_HOME/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "the server exited before it answered" >&2; exit 1; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null
API=http://127.0.0.1:$port

# -- the tour: README.md, "Five-minute tour", each block verbatim -----------------------------------------------
localize tasks create weather --labels bad,good
localize import examples/weather.csv --task weather     # a skier and a sunbather label the same 40 forecasts
localize users list --task weather

ADMIN=$(cat "$(localize info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["workspace"])')/admin_key")
curl -sS --fail-with-body -w '\n' -X POST $API/users -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name": "farmer"}'
FARMER=$(curl -sS --fail-with-body -X POST $API/users/farmer/keys -H "Authorization: Bearer $ADMIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
curl -sS --fail-with-body -w '\n' -X POST $API/tasks/weather/users/farmer/labels -H "Authorization: Bearer $FARMER" -F file=@examples/farmer.csv

PRIOR=$(curl -sS --fail-with-body -X POST $API/tasks/weather/prior/jobs -H "Authorization: Bearer $ADMIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
USERS=$(curl -sS --fail-with-body -X POST $API/tasks/weather/jobs/stale -H "Authorization: Bearer $ADMIN" | python3 -c 'import json,sys; print(*(job["id"] for job in json.load(sys.stdin)["data"]))')
for job in $PRIOR $USERS; do
  while state=$(curl -sS --fail-with-body $API/jobs/$job -H "Authorization: Bearer $ADMIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'); [ "$state" = queued ] || [ "$state" = running ]; do sleep 2; done
  echo "job $job: $state"; [ "$state" = succeeded ]
done
localize jobs list --task weather

curl -sS --fail-with-body -w '\n' -X POST $API/predict -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"rows": [
  {"user": "skier", "task": "weather", "text": "Half a metre of fresh snow by Saturday"},
  {"user": "sunbather", "task": "weather", "text": "Half a metre of fresh snow by Saturday"},
  {"user": "farmer", "task": "weather", "text": "Half a metre of fresh snow by Saturday"}]}'
curl -sS --fail-with-body -w '\n' -X POST $API/tasks/weather/users/farmer/predict -H "Authorization: Bearer $FARMER" -H 'Content-Type: application/json' -d '{"texts": ["Rain at last after a month of drought"]}'
localize predict "Another week of sunshine and 30 degrees" --task weather --users skier,sunbather,farmer
localize score examples/weather_test.csv --task weather     # 9 forecasts none of them labelled before

# -- checks the README does not show: every user got their own answer -----------------------------------------------
curl -sS --fail-with-body -X POST "$API/predict" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"rows": [
  {"user": "skier", "task": "weather", "text": "Half a metre of fresh snow by Saturday"},
  {"user": "sunbather", "task": "weather", "text": "Another week of sunshine and 30 degrees"},
  {"user": "farmer", "task": "weather", "text": "Rain at last after a month of drought"},
  {"user": "farmer", "task": "weather", "text": "Half a metre of fresh snow by Saturday"}]}' |
  python3 -c 'import json,sys; got = [r["label"] for r in json.load(sys.stdin)]; assert got == ["good", "good", "good", "bad"], got'
localize score examples/weather_test.csv --task weather --json |
  python3 -c 'import json,sys; s = json.load(sys.stdin); print(s); assert s["mean_accuracy"] >= 0.7, s'

# -- README.md, "More from the CLI" (run in the workspace: the export writes a folder) -------------------------------
cd "$LOCALIZE_HOME"
localize info
localize tasks show weather                                           # labels, settings and the task's recipe
localize train --task weather --user skier                            # retrain in this process: version 2
localize adapters list --task weather --user skier
localize adapters activate --task weather --user skier --version 2 --force    # serve it although unvalidated
localize adapters activate --task weather --user skier --version 1 --force    # roll back
localize adapters delete --task weather --user skier --version 2      # an inactive version can go
localize adapters export --task weather --user skier --out skier-adapter
localize fanout "Snow is on the way" --task weather
