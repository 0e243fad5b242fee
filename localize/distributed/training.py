"""Training jobs as Ray tasks: ``localize worker --ray ADDRESS`` (or ``LOCALIZE_RAY_ADDRESS``).

A dispatcher claims queued jobs from the database with the same guarded claim the local worker uses and runs
each as a Ray task with a resource request (``num_cpus``; ``num_gpus`` when the cluster has GPUs), up to a
concurrency limit, so many users' jobs train in parallel across the cluster. Job state stays in the database:

- the task opens the same database and adapter store and runs ``services.job_runs.run_job``, so the adapter
  version is written, hash-checked and registered exactly as the local worker does, and the task's own
  heartbeat thread notices cancellation and loss of the job;
- the dispatcher also beats for its jobs while they wait for resources, so a job queued behind a busy cluster
  is not mistaken for a dead one;
- a task that crashes (worker process killed, node lost, out of memory) is requeued at once, up to
  ``ray_max_attempts`` attempts; if the dispatcher itself dies, Ray stops its tasks (they share its fate), the
  heartbeats stop, and the next dispatcher requeues the jobs after ``worker_dead_after_seconds`` (failing one
  whose tasks went silent ``ray_max_attempts`` times).
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from localize.db.models import Job, JobEvent, JobState, utcnow
from localize.db.session import session_scope
from localize.distributed.cluster import connect, portable_settings, settings_from
from localize.runtime import Runtime
from localize.services import job_runs
from localize.worker import new_worker_id

logger = logging.getLogger(__name__)

# One runtime per Ray worker process and settings: the base model loads once, however many jobs the process runs.
_task_runtimes: dict[str, Runtime] = {}
_task_runtimes_lock = threading.Lock()


def _task_runtime(settings_values: dict[str, Any]) -> Runtime:
    key = json.dumps(settings_values, sort_keys=True)
    with _task_runtimes_lock:
        if key not in _task_runtimes:
            _task_runtimes[key] = Runtime(settings_from(settings_values))
        return _task_runtimes[key]


def train_job_task(settings_values: dict[str, Any], job_id: int, worker_id: str) -> dict[str, Any]:
    """The body of one Ray task: run job ``job_id`` (already claimed for ``worker_id``) and say where it ran."""
    import ray

    context = ray.get_runtime_context()
    placement = {
        "ray_task_id": context.get_task_id(),
        "ray_node_id": context.get_node_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
    }
    runtime = _task_runtime(settings_values)
    with session_scope(runtime.database) as session:
        session.add(JobEvent(job_id=job_id, message=(
            f"Ray task {placement['ray_task_id']} on node {placement['ray_node_id']} "
            f"(host {placement['host']}, pid {placement['pid']}, GPUs {placement['gpu_ids'] or 'none'})")))
    job = job_runs.run_job(runtime=runtime, job_id=job_id, worker_id=worker_id)
    return {"job_id": job_id, "state": job.state, **placement}


@dataclass(frozen=True)
class RayResources:
    """What each training task asks the cluster for, and how many run at once."""

    num_cpus: float
    num_gpus: float
    max_concurrent: int

    @classmethod
    def for_cluster(cls, cluster: dict[str, float], *, num_cpus: float, num_gpus: float | None,
                    max_concurrent: int | None) -> RayResources:
        """``num_gpus=None``: one GPU per job when the cluster has GPUs, none otherwise. ``max_concurrent=None``:
        as many jobs as the cluster's CPUs (and GPUs) hold at once."""
        gpus_in_cluster = float(cluster.get("GPU", 0.0))
        if num_gpus is None:
            num_gpus = 1.0 if gpus_in_cluster > 0 else 0.0
        if num_gpus > 0 and gpus_in_cluster <= 0:
            raise ValueError(f"each training task asks for {num_gpus} GPU(s), but the Ray cluster has none; "
                             "set LOCALIZE_RAY_TRAIN_GPUS=0")
        if max_concurrent is None:
            fits = [math.floor(float(cluster.get("CPU", 1.0)) / num_cpus)] if num_cpus > 0 else []
            if num_gpus > 0:
                fits.append(math.floor(gpus_in_cluster / num_gpus))
            max_concurrent = max(1, min(fits) if fits else 1)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent={max_concurrent} must be >= 1")
        return cls(num_cpus=num_cpus, num_gpus=num_gpus, max_concurrent=max_concurrent)


@dataclass
class _InFlight:
    job_id: int
    worker_id: str
    submitted: float


class RayWorker:
    """Claims queued jobs and runs each as a Ray task, up to ``resources.max_concurrent`` at once."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        address: str | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_concurrent: int | None = None,
        task_body: Callable[[dict[str, Any], int, str], dict[str, Any]] = train_job_task,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.address = address or settings.ray_address
        self.ray = connect(self.address)
        self.resources = RayResources.for_cluster(
            self.ray.cluster_resources(),
            num_cpus=settings.ray_train_cpus if num_cpus is None else num_cpus,
            num_gpus=settings.ray_train_gpus if num_gpus is None else num_gpus,
            max_concurrent=settings.ray_max_concurrent_jobs if max_concurrent is None else max_concurrent,
        )
        self.dispatcher_id = "ray-" + new_worker_id()
        values = portable_settings(settings)
        if self.resources.num_gpus == 0 and values.get("device") == "auto":
            values["device"] = "cpu"  # a task without a GPU reservation must not take a GPU it happens to see
        self._settings_values = values
        # Ray's own retries are off: a retry is a new attempt that the database must know about (requeue).
        self._remote = self.ray.remote(task_body)
        self._task_options = {"num_cpus": self.resources.num_cpus, "num_gpus": self.resources.num_gpus,
                              "max_retries": 0}
        self.in_flight: dict[Any, _InFlight] = {}
        self.results: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._claims = 0
        self._last_beat = 0.0
        if values["database_url"].startswith("sqlite") and len(self.ray.nodes()) > 1:
            logger.warning("the database is SQLite: every Ray node must see the same file; use PostgreSQL "
                           "for a cluster of several machines")

    # -- one step ---------------------------------------------------------------------------------------------
    def dispatch(self) -> list[int]:
        """Requeues jobs of dead workers, then claims and submits queued jobs until the concurrency limit."""
        settings = self.runtime.settings
        submitted = []
        with session_scope(self.runtime.database) as session:
            # A job whose Ray tasks went silent this many times fails, as one whose tasks crashed does.
            requeued = job_runs.requeue_dead_jobs(session=session,
                                                  dead_after_seconds=settings.worker_dead_after_seconds,
                                                  max_attempts=settings.ray_max_attempts)
            if requeued:
                logger.warning("requeued jobs %s of silent workers", requeued)
        while len(self.in_flight) < self.resources.max_concurrent and not self.stopping.is_set():
            worker_id = f"{self.dispatcher_id}-{self._claims + 1}"  # one id per attempt: a stale task never wins
            with session_scope(self.runtime.database) as session:
                job_id = job_runs.claim_next_job(session=session, worker_id=worker_id)
            if job_id is None:
                break
            self._claims += 1
            try:
                ref = self._remote.options(name=f"localize-train-job-{job_id}", **self._task_options).remote(
                    self._settings_values, job_id, worker_id)
            except Exception:
                self._requeue(job_id, worker_id, "requeued: the Ray task could not be submitted")
                raise
            self.in_flight[ref] = _InFlight(job_id=job_id, worker_id=worker_id, submitted=time.monotonic())
            logger.info("job %s submitted as Ray task %s", job_id, ref.task_id().hex())
            submitted.append(job_id)
        return submitted

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """Waits up to ``timeout`` seconds for tasks to finish; records each outcome."""
        if not self.in_flight:
            return []
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=timeout)
        finished = []
        for ref in ready:
            flight = self.in_flight.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as error:  # noqa: BLE001  (every task failure ends in a database state)
                outcome = self._task_failed(flight, error)
            logger.info("job %s: %s", flight.job_id, outcome.get("state"))
            finished.append(outcome)
        self.results.extend(finished)
        return finished

    def beat(self) -> None:
        """Keeps the heartbeat of jobs still waiting for a Ray worker (the task's own thread beats once it runs)."""
        if not self.in_flight:
            return
        with session_scope(self.runtime.database) as session:
            for flight in self.in_flight.values():
                session.exec(update(Job).where(Job.id == flight.job_id, Job.worker_id == flight.worker_id,
                                               Job.state == JobState.RUNNING).values(heartbeat_at=utcnow()))

    def _task_failed(self, flight: _InFlight, error: Exception) -> dict[str, Any]:
        """A task that raised outside the job's own error handling fails the job; a task whose process or node
        died is requeued (a new attempt) until ``ray_max_attempts``."""
        from ray.exceptions import RayTaskError

        crashed = not isinstance(error, RayTaskError)
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
        max_attempts = self.runtime.settings.ray_max_attempts
        guard = (Job.id == flight.job_id, Job.worker_id == flight.worker_id, Job.state == JobState.RUNNING)
        with session_scope(self.runtime.database) as session:
            job = session.get(Job, flight.job_id)
            if crashed and job is not None and job.attempts < max_attempts and not job.cancel_requested:
                moved = session.exec(update(Job).where(*guard).values(
                    state=JobState.QUEUED, worker_id=None, progress=0.0, heartbeat_at=None)).rowcount
                state, note = JobState.QUEUED, (f"requeued: Ray task crashed ({message}); attempt "
                                                f"{job.attempts} of {max_attempts}")
            else:
                final = JobState.CANCELLED if job is not None and job.cancel_requested else JobState.FAILED
                reason = (f"Ray task failed after {job.attempts if job else '?'} attempt(s): {message}" if crashed
                          else f"Ray task failed: {message}")
                moved = session.exec(update(Job).where(*guard).values(
                    state=final, error=None if final == JobState.CANCELLED else reason,
                    finished_at=utcnow())).rowcount
                state, note = final, reason
            if moved:
                session.add(JobEvent(job_id=flight.job_id, message=note,
                                     level="warning" if state != JobState.FAILED else "error"))
        logger.warning("job %s: %s", flight.job_id, note)
        return {"job_id": flight.job_id, "state": state if moved else None, "error": message}

    # -- loops ------------------------------------------------------------------------------------------------
    def run_until_idle(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Runs jobs until the queue is empty and every task has finished; returns the outcomes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        start = len(self.results)
        while True:
            self.dispatch()
            if not self.in_flight:
                break
            self._step()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(f.job_id for f in self.in_flight.values())} still running "
                                   f"after {timeout} s")
        return self.results[start:]

    def run_forever(self) -> None:
        logger.info("Ray worker %s: %s, up to %s job(s) at once", self.dispatcher_id, self.resources,
                    self.resources.max_concurrent)
        try:
            while not self.stopping.is_set():
                try:
                    self.dispatch()
                except Exception:  # noqa: BLE001  (a database hiccup must not kill the dispatcher)
                    logger.exception("dispatch error")
                if self.in_flight:
                    self._step()
                else:
                    self.stopping.wait(self.runtime.settings.worker_poll_seconds)
        finally:
            self.shutdown()

    def _step(self) -> None:
        settings = self.runtime.settings
        self.collect(timeout=min(settings.worker_poll_seconds, settings.worker_heartbeat_seconds))
        if time.monotonic() - self._last_beat >= settings.worker_heartbeat_seconds:
            self._last_beat = time.monotonic()
            try:
                self.beat()
            except Exception:  # noqa: BLE001  (a missed beat is retried)
                logger.exception("heartbeat of Ray jobs failed")

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Cancels tasks still running and requeues their jobs at once (rather than after the dead-worker delay)."""
        for ref, flight in list(self.in_flight.items()):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001  (already finished)
                logger.debug("cancel of job %s failed", flight.job_id, exc_info=True)
            self._requeue(flight.job_id, flight.worker_id, f"requeued: Ray worker {self.dispatcher_id} stopped")
            self.in_flight.pop(ref, None)

    def _requeue(self, job_id: int, worker_id: str, note: str) -> bool:
        with session_scope(self.runtime.database) as session:
            moved = session.exec(update(Job).where(
                Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING,
            ).values(state=JobState.QUEUED, worker_id=None, progress=0.0, heartbeat_at=None)).rowcount
            if moved:
                session.add(JobEvent(job_id=job_id, level="warning", message=note))
        return bool(moved)
