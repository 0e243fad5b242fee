"""A fresh process: import, base load, first prediction."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.server import child_env
from localize.bench.stats import round_dict

# The child of the cold-start benchmark; argv[1] is the text to classify. Stages are wall-clock times
# (time.time), since the start is taken in the parent.
_COLD_START_CHILD = r"""
import time
started = time.time()
import json, os, sys
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services.predictions import PredictionRequest, predict
from localize.settings import Settings
imported = time.time()
runtime = Runtime(Settings())
runtime.upgrade_database()
upgraded = time.time()
runtime.base
based = time.time()
with session_scope(runtime.database) as session:
    result = predict(session=session, runtime=runtime,
                     requests=[PredictionRequest(user="john", task="bench", text=sys.argv[1])])
predicted = time.time()
spawned = float(os.environ["LOCALIZE_BENCH_SPAWN"])
print(json.dumps({
    "interpreter_seconds": started - spawned, "import_seconds": imported - started,
    "db_upgrade_seconds": upgraded - imported, "base_load_seconds": based - upgraded,
    "first_prediction_seconds": predicted - based, "total_seconds": predicted - spawned,
    "label": result[0].label,
}), flush=True)
"""


def run(ctx: BenchContext) -> None:
    home = ctx.tmp / "cold-home"
    text = _prepare_cold_home(ctx, home)
    env = child_env(home, PYTHONUNBUFFERED="1")
    runs = []
    for _ in range(ctx.sizes.cold_start_repeats):
        env["LOCALIZE_BENCH_SPAWN"] = repr(time.time())
        begun = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _COLD_START_CHILD, text], env=env, capture_output=True,
                               text=True, timeout=300, check=False)
        wall = time.perf_counter() - begun
        if child.returncode != 0:
            raise RuntimeError(f"cold-start child exited {child.returncode}: {child.stderr[-2000:]}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
        report["process_wall_seconds"] = wall  # includes the interpreter's shutdown
        runs.append(report)
    # Baseline from the same run: a bare interpreter that only imports torch, the floor of any torch server.
    floor = []
    for _ in range(ctx.sizes.cold_start_repeats):
        begun = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True, timeout=300)
        floor.append(time.perf_counter() - begun)
    ctx.results["cold_start_torch_import_seconds"] = round(statistics.median(floor), 3)
    keys = ["interpreter_seconds", "import_seconds", "db_upgrade_seconds", "base_load_seconds",
            "first_prediction_seconds", "total_seconds", "process_wall_seconds"]
    median = {key: round(statistics.median(r[key] for r in runs), 3) for key in keys}
    ctx.details["cold_start_runs"] = [round_dict(r) for r in runs]
    ctx.results["cold_start_seconds"] = median["total_seconds"]
    ctx.results["cold_start_breakdown"] = median
    ctx.notes["cold_start"] = (
        "a fresh `python -c` child on a temp home with one trained head adapter: imports localize, builds a "
        "Runtime (schema upgrade, as every front door does), loads the base, serves one prediction through "
        "services.predictions.predict; cold_start_seconds = spawn to first prediction (the child reports "
        "wall-clock stages as JSON); the base model files are in the OS page cache; baseline "
        "cold_start_torch_import_seconds: a child that only runs `import torch` (spawn to exit)")


def _prepare_cold_home(ctx: BenchContext, home: Path) -> str:
    from localize.db.session import session_scope
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.runtime import Runtime
    from localize.services import adapters as adapter_service
    from localize.services.tasks import create_task
    from localize.services.users import create_user
    from localize.settings import Settings
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
    runtime.upgrade_database()
    rows = demo_rows(n_per_user=120, seed=11, users=(JOHN,))
    weights = Trainer(ctx.base, TrainingArguments(max_epochs=20), [r["text"] for r in rows],
                      [r["label"] for r in rows], LABELS).train()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="bench", labels=LABELS)
        user = create_user(session=session, name="john")
        stored = runtime.store.save(adapter_service.store_key(task, user), 1, weights)
        adapter_service.register_version(session=session, task=task, user=user, weights=weights, stored=stored,
                                         n_labels=len(rows), labels_updated_at=None, activate=True)
    runtime.database.dispose()
    return ctx.texts[-1]


register_benchmark(Benchmark(
    "cold_start", run, "a fresh process: import, base load, first prediction",
    goals=(Goal("cold_start_seconds", "<", 3.0),)))
