"""Measures the figures of the capacity model on a local Ray cluster and writes them as JSON for
``localize capacity --figures``:

    serve_rows_per_second_per_replica   rows/s of one Serve replica, every request a different user (1 row each),
                                        all adapters resident, requests in flight at once
    serve_replica_base_bytes            replica process memory (RSS) with the base model and no adapter
    serve_resident_adapter_bytes        RSS growth per resident adapter after loading ``--adapters`` of them
    serve_adapter_load_ms               replica time per adapter load (store read + sha256 check + parse)
    ray_train_seconds_per_adapter       wall seconds per adapter per task slot: ``--jobs`` default-recipe jobs of
                                        500 labels run as Ray tasks, ``--slots`` at once

Usage: ``python scripts/bench_ray.py --out ray-bench.json [--cpus 2] [--adapters 400] [--jobs 4]``. It starts its own
local Ray cluster and works in a temporary folder; nothing of yours is touched. A benchmark measures; it asserts
nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpus", type=float, default=float(os.cpu_count() or 2), help="CPUs of the local cluster")
    parser.add_argument("--adapters", type=int, default=400, help="distinct users' adapters made resident")
    parser.add_argument("--rows", type=int, default=2048, help="rows sent in the throughput measurement")
    parser.add_argument("--jobs", type=int, default=4, help="training jobs (500 labels each)")
    parser.add_argument("--slots", type=int, default=2, help="training tasks at once")
    args = parser.parse_args()

    import ray

    from localize.db.session import session_scope
    from localize.demo_data import LABELS, DemoUser, demo_rows
    from localize.distributed.serving import AdapterRef, RayPredictor, deploy
    from localize.distributed.training import RayWorker
    from localize.labels_io import LabelRow
    from localize.runtime import Runtime
    from localize.services import jobs as job_service
    from localize.services.labels import upsert_labels
    from localize.services.tasks import create_task
    from localize.services.users import get_user
    from localize.settings import Settings
    from localize.training_args import TrainingArguments

    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": sys.version.split()[0], "ray": ray.__version__,
                                 "load_average_before": os.getloadavg()},
                     "sizes": vars(args) | {"out": str(args.out)}}
    home = Path(tempfile.mkdtemp(prefix="localize-bench-ray-"))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    runtime = Runtime(Settings(home=home, admin_key="bench"))
    runtime.upgrade_database()

    # -- training: default-recipe jobs of 500 labels each, as Ray tasks ------------------------------------------
    users = [DemoUser(f"trader{i}", {"gold": 1 if i % 2 else -1, "oil": -1 if i % 3 else 1}) for i in range(args.jobs)]
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="gold", labels=LABELS)
        rows = demo_rows(500, seed=3, users=users)
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, **r) for i, r in enumerate(rows)])
        for user in users:
            job_service.queue_training(session=session, task=task, user=get_user(session=session, name=user.name),
                                       args=TrainingArguments())
    worker = RayWorker(runtime, address="local", max_concurrent=args.slots)
    begun = time.perf_counter()
    outcomes = worker.run_until_idle(timeout=1800)
    elapsed = time.perf_counter() - begun
    states = [o.get("state") for o in outcomes]
    results["ray_train_jobs"] = len(outcomes)
    results["ray_train_states"] = states
    results["ray_train_wall_seconds"] = round(elapsed, 2)
    results["ray_train_seconds_per_adapter"] = round(elapsed * args.slots / max(1, len(outcomes)), 2)
    results["ray_train_adapters_per_hour"] = round(3600 * len(outcomes) / elapsed, 1)

    # -- serving: one replica, many users' adapters -------------------------------------------------------------
    with session_scope(runtime.database) as session:
        from localize.services.adapters import active_version

        row = active_version(session=session, task=task, user=get_user(session=session, name=users[0].name))
    weights = runtime.store.load(row.store_key, row.version)
    refs = []
    for i in range(args.adapters):  # the same trained adapter stored under many users: each is loaded on its own
        stored = runtime.store.save(f"task-{task.id}/bench-{i}", 1, weights)
        refs.append(AdapterRef(version_id=100_000 + i, store_key=stored.key, version=1, files=stored.files))
    results["stored_adapter_bytes"] = stored.nbytes
    settings = Settings(home=home, admin_key="bench", serving="ray", ray_address="local", ray_serve_replicas=1,
                        ray_replica_cpus=args.cpus, ray_serve_app="localize-bench", ray_batch_wait_ms=5.0,
                        ray_replica_adapters=args.adapters + 10)
    handle = deploy(settings)
    predictor = RayPredictor(settings, handle=handle)
    texts = [r["text"] for r in rows[:64]]
    predictor.predict([(refs[0], texts[0])])  # warm-up: first request, lazy imports
    base_stats = handle.stats.remote().result()
    results["serve_replica_base_bytes"] = base_stats["rss_bytes"]

    begun = time.perf_counter()
    for start in range(0, len(refs), 32):  # loads every adapter once (groups of 32 in flight)
        calls = [handle.options(multiplexed_model_id=ref.model_id).predict.remote(ref, [texts[0]])
                 for ref in refs[start : start + 32]]
        [call.result() for call in calls]
    load_wall = time.perf_counter() - begun
    loaded = handle.stats.remote().result()
    results["serve_adapters_resident"] = loaded["adapter_loads"]
    results["serve_resident_adapter_bytes"] = round(
        (loaded["rss_bytes"] - base_stats["rss_bytes"]) / max(1, loaded["adapter_loads"] - base_stats["adapter_loads"]))
    results["serve_adapter_load_ms"] = round(
        1000 * (loaded["adapter_load_seconds"] - base_stats["adapter_load_seconds"])
        / max(1, loaded["adapter_loads"] - base_stats["adapter_loads"]), 3)
    results["serve_first_requests_wall_seconds"] = round(load_wall, 2)

    def throughput() -> float:
        calls = [handle.options(multiplexed_model_id=refs[i % len(refs)].model_id).predict.remote(
            refs[i % len(refs)], [texts[i % len(texts)]]) for i in range(args.rows)]
        begun = time.perf_counter()
        [call.result() for call in calls]
        return args.rows / (time.perf_counter() - begun)

    throughput()  # warm
    before = handle.stats.remote().result()
    rates = [throughput() for _ in range(3)]
    after = handle.stats.remote().result()
    results["serve_rows_per_second_runs"] = [round(r, 1) for r in rates]
    results["serve_rows_per_second_per_replica"] = round(sorted(rates)[1], 1)
    results["serve_rows_per_forward_pass"] = round(
        3 * args.rows / max(1, after["forward_passes"] - before["forward_passes"]), 1)
    results["serve_replica_cpus"] = args.cpus
    results["machine"]["load_average_after"] = os.getloadavg()

    from ray import serve

    serve.shutdown()
    ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
