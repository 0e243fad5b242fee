"""``localize eval --through-services``: per-user accuracy on a data set of per-user labels, on the shared-data
protocol.

Each qualifying user's adapter learns from that user's train rows (the task prior, when the recipe uses
one, from every user's train rows) and is scored on that user's test rows. It runs through the same
services as production, in a temporary workspace, so the user's own database is never touched.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from localize.db.session import session_scope
from localize.errors import ValidationError
from localize.jobrunner import run_jobs_locally
from localize.labels_io import infer_label_set
from localize.evaluation.data import load_split, select_users
from localize.evaluation.harness import user_metrics
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, predict
from localize.recipes import TaskRecipe
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.settings import get_settings

EVAL_TASK = "eval"


def run_service_evaluation(
    *,
    data_dir: Path,
    method: str | None = None,
    users: list[str] | None = None,
    workspace: Path | None = None,
    min_train: int = 80,
    min_test: int = 15,
    options: list[str] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console()
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    eligible = select_users(train, test, data_dir=Path(data_dir), users=users, min_train=min_train, min_test=min_test)
    label_set = infer_label_set(train + test)
    base_settings = get_settings()
    # No method or options: whole-task training, which chooses the recipe on the task's labels, as in production.
    args = job_service.arguments_or_task_recipe({"method": method} if method else None,
                                                default_method=base_settings.default_method,
                                                overrides=options or [])

    with tempfile.TemporaryDirectory(prefix="localize-eval-") as scratch:
        home = Path(workspace) if workspace else Path(scratch)
        settings = base_settings.model_copy(update={"home": home, "database_url": None, "adapter_store": None})
        runtime = Runtime(settings)
        runtime.upgrade_database()
        started = time.perf_counter()
        with session_scope(runtime.database) as session:
            task = create_task(session=session, name=EVAL_TASK, labels=label_set)
            upsert_labels(session=session, task=task, rows=train, max_text_chars=100_000)
            users = [get_user(session=session, name=name) for name in eligible]
            if isinstance(args, TaskRecipe):
                queued = job_service.queue_whole_task(session=session, task=task, users=users,
                                                      default_method=base_settings.default_method)
            else:
                queued = job_service.queue_many(session=session, task=task, users=users, args=args,
                                                prior=args.init_from_prior)
            by_id = {user.id: user.name for user in users}
            names = {job.id: by_id.get(job.user_id, "task prior") for job in queued}
        jobs = run_jobs_locally(runtime=runtime, job_ids=list(names), console=console)
        failed = [f"{names[j.id]}: {j.error}" for j in jobs if j.state != "succeeded"]
        if failed:
            raise ValidationError("training failed for " + "; ".join(failed[:5]))
        seconds = {names[j.id]: j.metrics.get("train_seconds") for j in jobs}
        per_user = []
        with session_scope(runtime.database) as session:
            for name in eligible:
                rows = [r for r in test if r.user == name]
                results = predict(session=session, runtime=runtime,
                                  requests=[PredictionRequest(user=name, task=EVAL_TASK, text=r.text) for r in rows],
                                  allow_prior=False)
                accuracy, macro_f1 = user_metrics([r.label for r in rows], [p.label for p in results])
                per_user.append({
                    "user": name,
                    "n_train": sum(1 for r in train if r.user == name),
                    "n_test": len(rows),
                    "accuracy": accuracy,
                    "macro_f1": macro_f1,
                    "train_seconds": seconds.get(name),
                })
            recipe = get_task(session=session, name=EVAL_TASK).recipe
        elapsed = time.perf_counter() - started
    summary = {
        "users": len(per_user),
        "mean_accuracy": statistics.fmean(u["accuracy"] for u in per_user),
        "mean_macro_f1": statistics.fmean(u["macro_f1"] for u in per_user),
        "method": recipe["recipe"] if recipe else args.method,
        "training_args": recipe["args"] if recipe else args.to_dict(),
        "recipe_choice": (recipe or {}).get("choice"),
        "labels": label_set,
        "seconds": elapsed,
    }
    return {"summary": summary, "users": per_user}
