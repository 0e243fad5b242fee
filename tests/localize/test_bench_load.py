"""The load check and the start-up check of ``localize bench`` run end to end on tiny sizes and report their
figures; the label count they rest on finds every kind of loss. They measure; no test asserts a speed."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import py_compile
import time

import pytest
from rich.console import Console

from localize.bench import BenchSizes, run_benchmarks
from localize.bench.load import count_labels
from localize.bench.startup import modules_without_bytecode

TINY = BenchSizes(batch=8, registered_users=16, repeats=1, warmup=1)


def test_count_labels_finds_lost_unacknowledged_duplicated_and_wrong_labels():
    acknowledged = {("ann", "gold up"): "positive", ("ann", "oil down"): "negative", ("bob", "gold up"): "neutral"}
    stored = [("ann", "gold up", "positive"), ("ann", "oil down", "negative"), ("bob", "gold up", "neutral")]
    assert count_labels(acknowledged, stored) == {"acknowledged": 3, "stored": 3, "lost": 0, "unacknowledged": 0,
                                                  "duplicated": 0, "wrong": 0}
    damaged = [("ann", "gold up", "negative"), ("ann", "gold up", "negative"), ("cat", "new", "neutral")]
    assert count_labels(acknowledged, damaged) == {"acknowledged": 3, "stored": 3, "lost": 2, "unacknowledged": 1,
                                                   "duplicated": 1, "wrong": 1}


@pytest.mark.e2e
def test_load_check_against_a_real_server_loses_no_label(base, tmp_path):
    """A real ``localize serve`` (API + worker) under 3 clients for a few seconds with a training job running."""
    sizes = dataclasses.replace(TINY, load_clients=3, load_seconds=4.0, load_seed_labels=24, load_job_timeout=120.0)
    printed = io.StringIO()
    results = run_benchmarks(quick=True, only=["load"], out=None, console=Console(file=printed, width=160),
                             sizes=sizes, report=tmp_path)

    assert "errors" not in results, results.get("errors")
    assert results["load_errors"] == 0, (results["details"]["load_errors_first"],
                                         results["details"].get("load_server_log_tail"))
    assert results["load_clients"] == 3 and results["load_requests"] > 0
    assert results["load_seconds"] >= sizes.load_seconds  # the clock starts once every client is ready
    assert results["load_upload_requests"] > 0 and results["load_predict_requests"] > 0
    assert 0 < results["load_p50_ms"] <= results["load_p99_ms"]
    # every label row sent was acknowledged, 24 of them the trainee's seed, and exactly those are stored
    assert results["load_label_rows_acknowledged"] >= 24 + (sizes.load_upload_rows * results["load_upload_requests"])
    assert results["load_labels_stored"] == results["load_labels_acknowledged"] >= 24 + results["load_upload_requests"]
    assert results["load_labels_lost"] == results["load_labels_duplicated"] == 0
    assert results["load_labels_unacknowledged"] == results["load_labels_wrong"] == 0
    assert results["load_training_jobs_succeeded"] >= 1 and results["load_training_jobs_other"] == 0
    goals = {row["metric"]: row for row in results["goals"]}
    assert goals["load_labels_lost"]["met"] is True and goals["load_errors"]["goal"] == "<= 0"
    assert "load_labels_lost" in printed.getvalue()
    report = (tmp_path / "speed.md").read_text()
    assert "## Load check: 3 clients uploading, predicting and training at once" in report
    assert f"stored {results['load_labels_stored']:,}: lost 0, duplicated 0" in report


def test_startup_check_times_a_database_only_command_without_torch(base, tmp_path):
    """``--json``: the results go to the console as JSON instead of the table."""
    sizes = dataclasses.replace(TINY, startup_repeats=1)
    printed = io.StringIO()
    results = run_benchmarks(quick=True, only=["startup"], out=None, console=Console(file=printed, width=160),
                             sizes=sizes, report=tmp_path, as_json=True)

    assert "errors" not in results, results.get("errors")
    assert 0 < results["startup_interpreter_seconds"] < results["startup_tasks_list_seconds"]
    assert 0 < results["startup_tasks_list_cpu_seconds"]
    assert "torch" not in results["startup_heavy_imports"]
    goal = {row["metric"]: row for row in results["goals"]}["startup_tasks_list_seconds"]
    assert goal["goal"] == "< 1" and goal["value"] == results["startup_tasks_list_seconds"]
    assert json.loads(printed.getvalue())["startup_tasks_list_seconds"] == results["startup_tasks_list_seconds"]
    assert "met?" not in printed.getvalue()  # no table
    assert "| `localize tasks list` | " in (tmp_path / "speed.md").read_text()


def test_startup_check_counts_modules_whose_bytecode_is_missing_or_stale(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("compiled.py", "sub/never.py", "stale.py"):
        (tmp_path / name).write_text("x = 1\n")
    py_compile.compile(str(tmp_path / "compiled.py"))
    py_compile.compile(str(tmp_path / "stale.py"))
    assert modules_without_bytecode(tmp_path) == 1

    later = time.time() + 10  # the source edited after it was compiled
    os.utime(tmp_path / "stale.py", (later, later))
    assert modules_without_bytecode(tmp_path) == 2
