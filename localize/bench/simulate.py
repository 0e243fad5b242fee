"""A workload on the real API with Ray Serve replicas: many users, Zipf-distributed, predictions of every kind and
labels that trigger retraining. What a capacity plan predicts is measured here (``localize capacity --simulated``).

Set-up: ``simulate_users`` generated default-recipe users (``population``), a local Ray cluster with
``ray_replicas`` prediction replicas (``ray_replica_cpus`` each, ``simulate_replica_adapters`` resident adapters
each), the API as a uvicorn subprocess attached to them (``LOCALIZE_SERVING=ray``, as ``localize serve --ray ADDRESS
--attach`` runs it) and one training worker subprocess. Then ``simulate_clients`` client threads send requests
on loopback for ``simulate_seconds`` or ``simulate_requests`` requests, whichever ends first. Each request's
users are drawn from a Zipf distribution over the users (rank k with probability proportional to
``k ** -simulate_zipf``); its kind from the mix: one text for one user, a mixed batch of
``simulate_batch_rows`` rows (each its own drawn user), a fan-out of one text to ``simulate_fanout_users`` drawn
users, or ``simulate_label_rows`` labels of one user followed by a request to retrain that user (a 409, a job
already pending, counts as answered).
"""
from __future__ import annotations

import contextlib
import itertools
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.stats import percentile

APP = "localize-bench-simulate"
KINDS = ("single", "batch", "fanout", "labels")


class ZipfUsers:
    """User indexes ``0..n-1`` drawn with probability proportional to ``(index + 1) ** -exponent``."""

    def __init__(self, n: int, exponent: float, seed: int) -> None:
        import numpy as np

        weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
        self.probabilities = weights / weights.sum()
        self._cdf = np.cumsum(self.probabilities)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def draw(self, count: int) -> list[int]:
        with self._lock:
            points = self._rng.random(count)
        return [min(int(i), len(self._cdf) - 1) for i in self._cdf.searchsorted(points, side="right")]


def run(ctx: BenchContext) -> None:
    from localize.bench.population import seed_population
    from localize.bench.ray_cluster import deployed_app, local_cluster, replica_stats
    from localize.bench.server import (ADMIN_KEY, child_env, free_port, localize_command, running_server,
                                       uvicorn_command)
    from localize.distributed.predictor import RayPredictor
    from localize.runtime import Runtime
    from localize.settings import Settings

    sizes = ctx.sizes
    n = sizes.simulate_users
    home = ctx.tmp / "simulate-home"
    runtime = Runtime(Settings(home=home, admin_key=ADMIN_KEY))
    runtime.upgrade_database()
    population = seed_population(runtime, task="sim", users=n, seed=19)
    runtime.database.dispose()
    zipf = ZipfUsers(n, sizes.simulate_zipf, seed=7)

    with local_cluster(sizes.ray_cpus) as ray:
        address = ray.get_runtime_context().gcs_address
        settings = Settings(home=home, admin_key=ADMIN_KEY, serving="ray", ray_address=address, ray_serve_app=APP,
                            ray_serve_replicas=sizes.ray_replicas, ray_replica_cpus=sizes.ray_replica_cpus,
                            ray_replica_adapters=sizes.simulate_replica_adapters)
        with deployed_app(settings) as handle:
            predictor = RayPredictor(settings, handle=handle)
            base_stats = replica_stats(handle, predictor)  # base model loaded, no user adapter yet
            env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY, LOCALIZE_SERVING="ray", LOCALIZE_RAY_ADDRESS=address,
                            LOCALIZE_RAY_SERVE_APP=APP, OMP_NUM_THREADS="1")
            port = free_port()
            worker_env = {k: v for k, v in env.items() if k not in ("LOCALIZE_RAY_ADDRESS", "LOCALIZE_SERVING")}
            with running_server(uvicorn_command(port), env, port) as url, \
                    _background(localize_command("worker"), worker_env):
                client = _Client(url, zipf, ctx.texts, sizes)
                client.warm_up()
                before = replica_stats(handle, predictor)
                began = time.perf_counter()
                client.drive()
                wall = time.perf_counter() - began
                after = replica_stats(handle, predictor)
    jobs = _jobs(runtime, since=began_at(began))
    _report(ctx, sizes, population, client, wall, base_stats, before, after, jobs)


@contextlib.contextmanager
def _background(command: list[str], env: dict[str, str]) -> Iterator[None]:
    """``command`` running in a session of its own for the block; stopped (SIGTERM, then SIGKILL) after it."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def began_at(perf_counter_value: float):  # noqa: ANN201
    """The wall-clock time at which ``time.perf_counter()`` read ``perf_counter_value``."""
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) - timedelta(seconds=time.perf_counter() - perf_counter_value)


class _Client:
    """Client threads on loopback: each request's kind from the mix, its users from the Zipf distribution."""

    def __init__(self, url: str, zipf: ZipfUsers, texts: list[str], sizes) -> None:  # noqa: ANN001
        from localize.bench.server import ADMIN_KEY
        from localize.demo_data import demo_rows

        self.url, self.zipf, self.texts, self.sizes = url, zipf, texts, sizes
        self.headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.labelled = [(r["text"], r["label"]) for r in demo_rows(400, seed=23)]
        self.latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.rows: Counter = Counter()  # user rows answered, by kind
        self.draws = 0  # users drawn for prediction rows (each row one draw)
        self.errors: list[str] = []
        self._counter = itertools.count()  # picks texts
        self._sent = itertools.count()  # bounds the requests
        self._lock = threading.Lock()
        weights = [sizes.simulate_mix_single, sizes.simulate_mix_batch, sizes.simulate_mix_fanout,
                   sizes.simulate_mix_labels]
        total = sum(weights)
        self._kinds = list(itertools.accumulate(w / total for w in weights))

    def warm_up(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as http:
            for kind in ("single", "batch", "fanout"):
                self._send(http, kind, record=False)

    def drive(self) -> None:
        deadline = time.monotonic() + self.sizes.simulate_seconds
        threads = [threading.Thread(target=self._loop, args=(deadline, i)) for i in range(self.sizes.simulate_clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _loop(self, deadline: float, seed: int) -> None:
        import random

        import httpx

        chooser = random.Random(seed)
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as http:
            while time.monotonic() < deadline and next(self._sent) < self.sizes.simulate_requests:
                point = chooser.random()
                kind = next((k for k, edge in zip(KINDS, self._kinds) if point < edge), KINDS[-1])
                self._send(http, kind, record=True)

    def _send(self, http, kind: str, *, record: bool) -> None:  # noqa: ANN001
        sizes, text = self.sizes, self.texts[next(self._counter) % len(self.texts)]
        if kind == "single":
            users = self.zipf.draw(1)
            path, body = f"/tasks/sim/users/u{users[0]}/predict", {"texts": [text]}
        elif kind == "batch":
            users = self.zipf.draw(sizes.simulate_batch_rows)
            path = "/predict"
            body = {"rows": [{"user": f"u{u}", "task": "sim", "text": self.texts[(i * 7 + len(text)) % len(self.texts)]}
                             for i, u in enumerate(users)]}
        elif kind == "fanout":
            users = sorted(set(self.zipf.draw(sizes.simulate_fanout_users)))
            path, body = "/tasks/sim/fanout", {"text": text, "users": [f"u{u}" for u in users]}
        else:
            users = self.zipf.draw(1)
            start = next(self._counter) % (len(self.labelled) - sizes.simulate_label_rows)
            rows = self.labelled[start : start + sizes.simulate_label_rows]
            path = f"/tasks/sim/users/u{users[0]}/labels"
            body = {"labels": [{"text": t, "label": lb} for t, lb in rows]}
        begun = time.perf_counter()
        response = http.post(path, json=body)
        if kind == "labels" and response.status_code == 200:
            response = http.post(f"/tasks/sim/users/u{users[0]}/jobs", json={})
            if response.status_code in (202, 409):  # queued, or a job of this user is pending already
                response.status_code = 200
        elapsed = time.perf_counter() - begun
        if not record:
            return
        with self._lock:
            if response.status_code == 200:
                self.latencies[kind].append(elapsed)
                if kind != "labels":
                    self.rows[kind] += len(body.get("rows") or body.get("users") or body.get("texts"))
                    self.draws += len(users)
            else:
                self.errors.append(f"{kind} {response.status_code}: {response.text[:200]}")


def _jobs(runtime, *, since) -> dict[str, Any]:  # noqa: ANN001
    from sqlmodel import select

    from localize.db.models import Job, aware
    from localize.db.session import session_scope

    with session_scope(runtime.database) as session:
        jobs = session.exec(select(Job).where(Job.user_id.is_not(None))).all()
        states = Counter(job.state for job in jobs)
        done = [job for job in jobs if job.state == "succeeded" and job.finished_at is not None
                and aware(job.finished_at) >= since]
        seconds = [(aware(j.finished_at) - aware(j.started_at)).total_seconds() for j in done if j.started_at]
    runtime.database.dispose()
    return {"states": dict(states), "succeeded_in_run": len(done), "train_seconds": seconds}


def _busy(before: dict, after: dict) -> float:
    """One replica's seconds in forward passes and adapter loads between two stats."""
    return (after["pass_seconds"] + after["adapter_load_seconds"]) - (before["pass_seconds"]
                                                                      + before["adapter_load_seconds"])


def _cpu(before: dict, after: dict) -> float:
    """One replica's CPU seconds in forward passes and adapter loads between two stats."""
    return (after["pass_cpu_seconds"] + after["adapter_load_cpu_seconds"]) - (
        before["pass_cpu_seconds"] + before["adapter_load_cpu_seconds"])


def _delta(before: list[dict], after: list[dict], key: str) -> float:
    return sum(a[key] for a in after) - sum(b[key] for b in before)


def _report(ctx: BenchContext, sizes, population, client: _Client, wall: float, base: list[dict],  # noqa: ANN001
            before: list[dict], after: list[dict], jobs: dict[str, Any]) -> None:
    replicas = len(after)
    rows = sum(client.rows.values())
    loads = _delta(before, after, "adapter_loads")
    every = [t for kind in KINDS for t in client.latencies[kind]]
    requests = {kind: len(client.latencies[kind]) for kind in KINDS}
    engine_rows = _delta(before, after, "rows")
    train = jobs["train_seconds"]
    ctx.results.update({
        "simulate_users": sizes.simulate_users,
        "simulate_stored_adapters": sizes.simulate_users,
        "simulate_zipf": sizes.simulate_zipf,
        "simulate_replicas": replicas,
        "simulate_replica_cpus": sizes.ray_replica_cpus,
        "simulate_replica_adapters": sizes.simulate_replica_adapters,
        "simulate_seconds": round(wall, 2),
        "simulate_requests": requests,
        "simulate_errors": len(client.errors),
        "simulate_rows": dict(client.rows),
        "simulate_rows_per_second": round(rows / wall, 2),
        "simulate_rows_per_second_per_replica": round(rows / wall / replicas, 2),
        "simulate_p50_ms": round(1000 * percentile(every, 50), 1) if every else None,
        "simulate_p99_ms": round(1000 * percentile(every, 99), 1) if every else None,
        "simulate_latency_ms_by_kind": {kind: {"p50": round(1000 * percentile(v, 50), 1),
                                               "p99": round(1000 * percentile(v, 99), 1)}
                                        for kind, v in client.latencies.items() if v},
        "simulate_user_draws": client.draws,
        "simulate_adapter_lookups": _delta(before, after, "adapter_lookups"),
        "simulate_adapter_loads": loads,
        "simulate_miss_ratio": round(loads / client.draws, 4) if client.draws else None,
        "simulate_adapter_loads_per_second": round(loads / wall, 2),
        "simulate_adapter_load_ms": round(1000 * _delta(before, after, "adapter_load_seconds") / loads, 3)
        if loads else None,
        "simulate_replica_busy_share": [round(_busy(b, a) / wall, 3) for b, a in zip(before, after)],
        "simulate_replica_cpu_share": [round(_cpu(b, a) / wall, 3) for b, a in zip(before, after)],
        "simulate_rows_per_cpu_second_per_replica": round(
            engine_rows / max(1e-9, sum(_cpu(b, a) for b, a in zip(before, after))), 1),
        "simulate_engine_rows_per_pass": round(engine_rows / max(1, _delta(before, after, "forward_passes")), 1),
        "simulate_resident_adapters_by_replica": [s["adapters_resident"] for s in after],
        "simulate_replica_base_bytes": round(statistics.mean(s["rss_bytes"] for s in base)),
        "simulate_replica_rss_bytes": [s["rss_bytes"] for s in after],
        "simulate_replica_rss_bytes_mean": round(statistics.mean(s["rss_bytes"] for s in after)),
        "simulate_resident_adapter_bytes": round(
            (statistics.mean(s["rss_bytes"] for s in after) - statistics.mean(s["rss_bytes"] for s in base))
            / max(1.0, statistics.mean(s["adapters_resident"] for s in after))),
        "simulate_train_jobs": jobs["states"],
        "simulate_train_jobs_succeeded": jobs["succeeded_in_run"],
        "simulate_train_seconds_per_adapter": round(statistics.median(train), 3) if train else None,
        "simulate_train_adapters_per_hour_per_worker": round(3600 * jobs["succeeded_in_run"] / wall, 1),
        "simulate_population_seconds": population.seconds,
        "simulate_stored_adapter_bytes": population.stored_head_bytes,
    })
    ctx.details["simulate_errors"] = client.errors[:20]
    ctx.notes["simulate"] = (
        f"{sizes.simulate_users:,} generated default-recipe users; API (uvicorn subprocess) on {replicas} Ray Serve "
        f"replicas of {sizes.ray_replica_cpus:g} CPU and {sizes.simulate_replica_adapters:,} resident adapters "
        f"each, one local training worker; {sizes.simulate_clients} loopback clients for up to "
        f"{sizes.simulate_seconds:g} s / {sizes.simulate_requests:,} requests; users Zipf({sizes.simulate_zipf:g}); "
        f"mix single {sizes.simulate_mix_single:g} / batch of {sizes.simulate_batch_rows} "
        f"{sizes.simulate_mix_batch:g} / fan-out to {sizes.simulate_fanout_users} {sizes.simulate_mix_fanout:g} / "
        f"{sizes.simulate_label_rows} labels and a retrain request {sizes.simulate_mix_labels:g}; miss ratio: "
        f"adapter loads over user rows drawn; memory: replica RSS; busy share: a replica's time in forward passes "
        f"and adapter loads over the wall time (cpu share: their CPU time); rows per CPU second: rows over that "
        f"CPU time")


register_benchmark(Benchmark(
    "simulate", run, "Zipf workload of many users on the API with Ray Serve replicas and a training worker"))
