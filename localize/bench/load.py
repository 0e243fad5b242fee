"""A load check: a real ``localize serve`` (API and its training worker) under concurrent clients that mix label
uploads and predictions while training jobs run, for a fixed time; then a count of the stored labels against
the acknowledged ones, proving nothing was lost or duplicated."""
from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.server import (
    ADMIN_KEY,
    child_env,
    free_port,
    localize_command,
    prepare_home,
    running_server,
    server_log_tail,
)
from localize.bench.stats import percentile

TASK = "bench"
SHARED_TEXTS = 50  # texts every client labels now and then, so uploads of different users meet on one text row
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class _Tally:
    """What every client thread records; one lock guards it all."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"upload": [], "predict": []})
    errors: list[str] = field(default_factory=list)
    acknowledged: dict[tuple[str, str], str] = field(default_factory=dict)  # (user, text) -> last label acknowledged
    rows_acknowledged: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def error(self, kind: str, message: str) -> None:
        with self.lock:
            self.errors.append(f"{kind}: {message}"[:300])


def run(ctx: BenchContext) -> None:
    from localize.demo_data import LABELS

    sizes = ctx.sizes
    home = ctx.tmp / "load-home"
    users = [f"loader{i}" for i in range(sizes.load_clients)]
    prepare_home(ctx, home, users, task=TASK)
    trainee = users[0]
    port = free_port()
    tally = _Tally()
    server_log = ctx.tmp / "load-server.log"
    with running_server(localize_command("serve", "--host", "127.0.0.1", "--port", str(port)),
                        child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY), port, log_path=server_log) as url:
        import httpx

        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            # Untimed: the trainee's labels (through the API, so they count too) and every adapter made resident.
            _upload(http, tally, trainee, _seed_rows(ctx, sizes.load_seed_labels), timed=False)
            for name in users:
                http.post(f"/tasks/{TASK}/users/{name}/predict", json={"texts": [ctx.texts[0]]}).raise_for_status()
        if tally.errors:
            raise RuntimeError(f"the load check could not prepare its workspace: {tally.errors[0]}")
        # The clock starts when every thread is ready (starting 33 threads takes seconds on a busy CPU).
        clock = _Clock(sizes.load_seconds)
        barrier = threading.Barrier(len(users) + 2, action=clock.start)
        threads = [threading.Thread(target=_client, args=(ctx, url, headers, name, index, clock, barrier, tally,
                                                          list(LABELS)), daemon=True)
                   for index, name in enumerate(users)]
        threads.append(threading.Thread(target=_trainer, args=(ctx, url, headers, trainee, clock, barrier, tally),
                                        daemon=True))
        for thread in threads:
            thread.start()
        barrier.wait()
        for thread in threads[:-1]:
            thread.join()
        wall = time.monotonic() - clock.started  # the clients' time; the trainer may still wait for its last job
        threads[-1].join()
    if tally.errors:  # what the server said is the first thing anyone reading these errors needs
        ctx.details["load_server_log_tail"] = server_log_tail(server_log)
    _report(ctx, home, tally, wall)


class _Clock:
    """The load's deadline, set by the barrier's action the moment every thread is ready."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = self.deadline = float("inf")

    def start(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.seconds


def _seed_rows(ctx: BenchContext, count: int) -> list[dict[str, str]]:
    from localize.demo_data import JOHN, demo_rows

    return [{"text": r["text"], "label": r["label"]} for r in demo_rows(n_per_user=count, seed=41, users=(JOHN,))]


def _upload(http: Any, tally: _Tally, user: str, rows: list[dict[str, str]], *, timed: bool = True) -> None:  # noqa: ANN401
    begun = time.perf_counter()
    try:
        response = http.post(f"/tasks/{TASK}/users/{user}/labels", json={"labels": rows})
    except Exception as error:  # noqa: BLE001  (a refused connection or a timeout is an error of the run)
        tally.error("upload", f"{type(error).__name__}: {error}")
        return
    elapsed = time.perf_counter() - begun
    if response.status_code not in (200, 201):
        tally.error("upload", f"{response.status_code} {response.text[:200]}")
        return
    report = response.json()
    if report.get("errors") or report.get("accepted") != len(rows):
        tally.error("upload", f"{report.get('accepted')} of {len(rows)} rows accepted: {report.get('errors')}")
        return
    with tally.lock:
        if timed:
            tally.latencies["upload"].append(elapsed)
        tally.rows_acknowledged += len(rows)
        for row in rows:  # one client per user sends its uploads in order, so the last acknowledged label wins
            tally.acknowledged[(user, row["text"])] = row["label"]


def _client(ctx: BenchContext, url: str, headers: dict[str, str], user: str, index: int, clock: _Clock,
            barrier: threading.Barrier, tally: _Tally, labels: list[str]) -> None:
    import httpx

    sizes = ctx.sizes
    chooser = random.Random(index)
    shared = ctx.texts[:SHARED_TEXTS]
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        barrier.wait()
        sequence = 0
        while time.monotonic() < clock.deadline:
            sequence += 1
            if chooser.random() < sizes.load_upload_share:
                rows = [{"text": f"{chooser.choice(ctx.texts)} (load {index}-{sequence}-{row})",
                         "label": chooser.choice(labels)} for row in range(sizes.load_upload_rows - 1)]
                rows.append({"text": chooser.choice(shared), "label": chooser.choice(labels)})
                _upload(http, tally, user, rows)
                continue
            text = f"{chooser.choice(ctx.texts)} (ask {index}-{sequence})"
            begun = time.perf_counter()
            try:
                response = http.post(f"/tasks/{TASK}/users/{user}/predict", json={"texts": [text]})
            except Exception as error:  # noqa: BLE001
                tally.error("predict", f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - begun
            if response.status_code != 200 or len(response.json()) != 1:
                tally.error("predict", f"{response.status_code} {response.text[:200]}")
                continue
            with tally.lock:
                tally.latencies["predict"].append(elapsed)


def _trainer(ctx: BenchContext, url: str, headers: dict[str, str], user: str, clock: _Clock,
             barrier: threading.Barrier, tally: _Tally) -> None:
    """Queues a training job for ``user`` and waits for it, again and again until the deadline; the last one is
    waited for (up to ``load_job_timeout``) after the clients stop."""
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        barrier.wait()
        while time.monotonic() < clock.deadline:
            queued = time.perf_counter()
            try:
                response = http.post(f"/tasks/{TASK}/users/{user}/jobs", json={})
            except httpx.HTTPError as error:
                tally.error("train", f"queueing: {type(error).__name__}: {error}")
                return
            if response.status_code != 202:
                tally.error("train", f"queueing answered {response.status_code} {response.text[:200]}")
                return
            job_id = response.json()["id"]
            polled = response
            give_up = max(clock.deadline, time.monotonic()) + ctx.sizes.load_job_timeout
            state = "queued"
            while state not in TERMINAL and time.monotonic() < give_up:
                time.sleep(0.5)
                try:
                    polled = http.get(f"/jobs/{job_id}")
                except httpx.HTTPError as error:
                    tally.error("train", f"GET /jobs/{job_id}: {type(error).__name__}: {error}")
                    return
                if polled.status_code != 200:
                    tally.error("train", f"GET /jobs/{job_id} answered {polled.status_code}")
                    return
                state = polled.json()["state"]
            seconds = time.perf_counter() - queued
            with tally.lock:
                tally.jobs.append({"id": job_id, "state": state, "seconds": round(seconds, 2)})
            if state != "succeeded":
                tally.error("train", f"job {job_id} ended {state} after {seconds:.0f} s: {polled.text[:300]}")
                return


def _stored_labels(home: Path) -> list[tuple[str, str, str]]:
    """``(user, text, label)`` of every label of the task, read from the database after the server stopped."""
    from sqlmodel import select

    from localize.db.models import Label, Task, Text, User
    from localize.db.session import session_scope
    from localize.runtime import Runtime
    from localize.settings import Settings

    runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
    try:
        with session_scope(runtime.database) as session:
            return list(session.exec(
                select(User.name, Text.body, Label.label)
                .where(Label.user_id == User.id, Label.text_id == Text.id, Label.task_id == Task.id, Task.name == TASK)))
    finally:
        runtime.database.dispose()


def count_labels(acknowledged: dict[tuple[str, str], str],
                 stored: list[tuple[str, str, str]]) -> dict[str, int]:
    """Acknowledged ``(user, text) -> label`` against stored ``(user, text, label)`` rows: ``lost`` acknowledged
    but not stored, ``unacknowledged`` stored without an acknowledgement, ``duplicated`` stored more than once,
    ``wrong`` stored with another label than the last one acknowledged."""
    pairs = Counter((user, text) for user, text, _ in stored)
    labels = {(user, text): label for user, text, label in stored}
    return {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": len(acknowledged.keys() - labels.keys()),
        "unacknowledged": len(labels.keys() - acknowledged.keys()),
        "duplicated": sum(count - 1 for count in pairs.values() if count > 1),
        "wrong": sum(1 for key, label in acknowledged.items() if key in labels and labels[key] != label),
    }


def _report(ctx: BenchContext, home: Path, tally: _Tally, wall: float) -> None:
    sizes = ctx.sizes
    everything = tally.latencies["upload"] + tally.latencies["predict"]

    def ms(values: list[float], q: float) -> float | None:
        return round(1000 * percentile(values, q), 1) if values else None

    jobs = tally.jobs
    ctx.details["load_errors_first"] = tally.errors[:10]
    ctx.details["load_jobs"] = jobs
    ctx.results.update({
        "load_clients": sizes.load_clients,
        "load_seconds": round(wall, 1),
        "load_requests": len(everything),
        "load_requests_per_second": round(len(everything) / wall, 1),
        "load_errors": len(tally.errors),
        "load_p50_ms": ms(everything, 50),
        "load_p99_ms": ms(everything, 99),
        "load_predict_requests": len(tally.latencies["predict"]),
        "load_predict_p50_ms": ms(tally.latencies["predict"], 50),
        "load_predict_p99_ms": ms(tally.latencies["predict"], 99),
        "load_upload_requests": len(tally.latencies["upload"]),
        "load_upload_p50_ms": ms(tally.latencies["upload"], 50),
        "load_upload_p99_ms": ms(tally.latencies["upload"], 99),
        "load_label_rows_acknowledged": tally.rows_acknowledged,
        **{f"load_labels_{name}": count
           for name, count in count_labels(tally.acknowledged, _stored_labels(home)).items()},
        "load_training_jobs_succeeded": sum(job["state"] == "succeeded" for job in jobs),
        "load_training_jobs_other": sum(job["state"] != "succeeded" for job in jobs),
        "load_training_job_seconds": round(statistics.median(job["seconds"] for job in jobs), 2) if jobs else None,
    })
    ctx.notes["load"] = (
        f"`localize serve` (API + its training worker, SQLite) on 127.0.0.1; {sizes.load_clients} client threads "
        f"(httpx, keep-alive, each its own user) for {sizes.load_seconds:g} s, each request a label upload "
        f"({sizes.load_upload_rows} rows, one of them a text shared by all clients) with probability "
        f"{sizes.load_upload_share:g}, else a one-text prediction; beside them one thread queues a training job "
        f"for the first user (seeded with {sizes.load_seed_labels} labels) and polls it to its end, again until "
        "the time is up; p50/p99 over every upload and prediction; after the server stops, the task's labels are "
        "read from the database: lost = acknowledged (user, text) pairs not stored, unacknowledged = stored "
        "without a 2xx, duplicated = (user, text) pairs stored more than once, wrong = stored label differs from "
        "the last one acknowledged")


register_benchmark(Benchmark(
    "load", run, "a real `localize serve` under 32 clients mixing label uploads, predictions and training jobs "
    "for 60 s: errors, p50/p99 and a count of stored against acknowledged labels",
    goals=(Goal("load_errors", "<=", 0), Goal("load_labels_lost", "<=", 0), Goal("load_labels_duplicated", "<=", 0))))
