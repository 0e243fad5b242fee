"""The training worker that ``localize serve`` runs beside the API, supervised.

- A worker that dies (killed, crashed) is restarted after ``worker_restart_seconds``; the delay doubles (up to a
  minute) with each death in a row of a worker that never came up (no heartbeat: a crash at start). The job it
  held gets an event saying how the worker died and goes back to the queue, or fails once its workers died
  ``worker_max_attempts`` times running it.
- A worker whose heartbeat is stale (hung) is killed, and then restarted as above.
- ``stop`` asks the worker to stop (SIGTERM: it gives its job back at the job's next step), kills it when it has
  not stopped within ``worker_stop_grace_seconds``, and gives its job back itself if the worker could not.

Workers are forked from a server process that has already imported the training stack (``forkserver``), so a
restart takes a fraction of a second instead of the seconds a fresh interpreter needs to import torch.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from localize.db.models import Job, JobState, WorkerHeartbeat, WorkerPublic
from localize.db.session import session_scope
from localize.services import job_runs
from localize.services import workers as worker_service
from localize.settings import Settings

logger = logging.getLogger(__name__)

MAX_RESTART_SECONDS = 60.0
# A worker that came up (sent a heartbeat) or lived this long before dying is restarted after the shortest delay;
# only deaths in a row of workers that never came up (a crash loop at start) make the delay grow.
STABLE_AFTER_SECONDS = 60.0


class WorkerProcess(Protocol):
    """What the supervisor needs of a process (``multiprocessing.Process`` has it)."""

    pid: int | None
    exitcode: int | None

    def start(self) -> None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


def forked_worker(worker_id: str, threads: int | None) -> WorkerProcess:
    """A worker process forked from the preloaded server process (started on first use)."""
    from localize.worker import worker_process_main

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["localize.preload"])
    return context.Process(target=worker_process_main, args=(worker_id, threads), name=f"localize-{worker_id}")


def _stop_fork_server() -> None:
    """Ends the preloading server process now: left alone it exits once this process has, but its interpreter's
    teardown of torch & co takes seconds, and nothing of it is needed. It holds no state (SIGTERM's default action
    ends it at once)."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class WorkerSupervisor:
    def __init__(
        self,
        settings: Settings,
        database: Engine,
        *,
        spawn: Callable[[str, int | None], WorkerProcess] = forked_worker,
        threads: int | None = None,
        heartbeat: bool = True,
        poll_seconds: float = 0.2,
    ) -> None:
        self.settings = settings
        self.database = database
        self.spawn = spawn
        self.threads = threads
        self.heartbeat = heartbeat  # a Ray dispatcher keeps no worker heartbeat: liveness is its process
        self.poll_seconds = poll_seconds
        self.process: WorkerProcess | None = None
        self.worker_id: str | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.last_exit: str | None = None
        self.next_delay = settings.worker_restart_seconds
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._generation = 0
        self._kill_reason: str | None = None
        self._asked_to_stop: WorkerProcess | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Starts the worker from a thread of its own: the first start waits for the preloading server process,
        which must not hold up the API's start."""
        self._thread.start()

    def request_stop(self, reason: str = "stopping") -> None:
        """Asks the worker to stop (SIGTERM) without waiting; safe inside a signal handler."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.settings.worker_stop_grace_seconds
        self._stopping.set()
        self._terminate()
        logger.info("stopping the training worker: %s", reason)

    def _terminate(self) -> None:
        process = self.process
        if process is not None and process is not self._asked_to_stop and process.exitcode is None:
            self._asked_to_stop = process
            try:
                process.terminate()  # SIGTERM
            except (ProcessLookupError, ValueError):  # gone meanwhile
                pass

    def stop(self) -> None:
        """Stops the worker: it gives its job back and exits within the grace period, or is killed."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.worker_stop_grace_seconds + 5)
        self._terminate()  # a worker that was starting when the stop came has not been asked yet
        with self._lock:
            process, worker_id = self.process, self.worker_id
        if process is None:
            return
        process.join(timeout=max(0.0, (self._stop_deadline or 0) - time.monotonic()))
        if process.is_alive():
            logger.warning("worker %s did not stop within %.1f s; killing it", worker_id,
                           self.settings.worker_stop_grace_seconds)
            process.kill()
            process.join(timeout=5)
        self._give_back(worker_id, f"worker {worker_id} was stopped with its server "
                                   f"({describe_exit(process.exitcode)}); it starts over on the next worker")
        if self.spawn is forked_worker:
            _stop_fork_server()

    # -- watching ---------------------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._generation += 1
        worker_id = f"{socket.gethostname()}-serve{os.getpid()}-w{self._generation}-{uuid.uuid4().hex[:6]}"
        process = self.spawn(worker_id, self.threads)
        process.start()
        with self._lock:
            self.process, self.worker_id, self.started_at = process, worker_id, time.monotonic()
        logger.info("training worker %s started (pid %s)", worker_id, process.pid)

    def _watch(self) -> None:
        if not self._start_with_retries():
            return
        while not self._stopping.is_set():
            process = self.process
            process.join(timeout=self.poll_seconds)
            if self._stopping.is_set():
                return
            if process.is_alive():
                self._kill_if_hung()
                continue
            try:
                self._restart_after_death()
            except Exception:  # noqa: BLE001  (the supervisor must outlive a database hiccup)
                logger.exception("supervising the training worker failed; retrying")
                self._stopping.wait(1.0)

    def _kill_if_hung(self) -> None:
        if not self.heartbeat:
            return
        status = self.status()
        limit = self.settings.worker_dead_after_seconds
        lived = time.monotonic() - self.started_at
        if not status.alive and lived > limit and (status.heartbeat_age_seconds is None
                                                   or status.heartbeat_age_seconds > limit):
            logger.error("worker %s sent no heartbeat for %.0f s; killing it", self.worker_id, limit)
            self._kill_reason = f"hung: no heartbeat for {limit:.0f} s, so it was killed"
            self.process.kill()

    def _restart_after_death(self) -> None:
        process, worker_id = self.process, self.worker_id
        self.last_exit, self._kill_reason = self._kill_reason or describe_exit(process.exitcode), None
        lived = time.monotonic() - self.started_at
        if lived >= STABLE_AFTER_SECONDS or self._came_up(worker_id):
            self.next_delay = self.settings.worker_restart_seconds
        released = self._give_back(worker_id, f"worker {worker_id} died ({self.last_exit})", died=True)
        logger.error("training worker %s died (%s) after %.1f s%s; restarting it in %.1f s", worker_id,
                     self.last_exit, lived, f", holding jobs {released}" if released else "", self.next_delay)
        if self._stopping.wait(self.next_delay):
            return
        self.next_delay = min(self.next_delay * 2, MAX_RESTART_SECONDS)
        self.restarts += 1
        self._start_with_retries()

    def _start_with_retries(self) -> bool:
        """Starts a worker, retrying with the growing delay while that fails; False if stopped first."""
        while not self._stopping.is_set():
            try:
                self._start_worker()
                return True
            except Exception as error:  # noqa: BLE001  (e.g. the preloading server process failed to start)
                self.last_exit = f"could not be started: {type(error).__name__}: {error}"
                logger.exception("the training worker could not be started; retrying in %.1f s", self.next_delay)
                if self._stopping.wait(self.next_delay):
                    return False
                self.next_delay = min(self.next_delay * 2, MAX_RESTART_SECONDS)
        return False

    def _came_up(self, worker_id: str | None) -> bool:
        if not self.heartbeat or worker_id is None:
            return False
        with session_scope(self.database) as session:
            return session.get(WorkerHeartbeat, worker_id) is not None

    def _give_back(self, worker_id: str | None, reason: str, *, died: bool = False) -> dict[int, str]:
        """The dead or stopped worker's running jobs: released (a death counts against the job) or requeued."""
        if worker_id is None:
            return {}
        with session_scope(self.database) as session:
            if died:
                return job_runs.release_worker_jobs(session=session, worker_id=worker_id, reason=reason,
                                                    max_attempts=self.settings.worker_max_attempts)
            held = _running_jobs(session, worker_id)
            for job_id in held:
                job_runs.interrupt_job(session=session, job_id=job_id, worker_id=worker_id, state=JobState.QUEUED,
                                       reason=reason)
            worker_service.record_stopped(session=session, worker_id=worker_id)
            return {job_id: JobState.QUEUED for job_id in held}

    # -- reporting --------------------------------------------------------------------------------------------
    def status(self) -> WorkerPublic:
        """The current worker as ``/ready`` reports it."""
        with self._lock:
            process, worker_id = self.process, self.worker_id
        running = process is not None and process.is_alive()
        last_exit = self.last_exit
        if process is not None and not running:  # dead, and perhaps not yet seen by the watching thread
            last_exit = self._kill_reason or describe_exit(process.exitcode)
        if not self.heartbeat or worker_id is None:
            return WorkerPublic(id=worker_id or "-", pid=None if process is None else process.pid, job_id=None,
                                heartbeat_at=None, heartbeat_age_seconds=None, alive=running,
                                restarts=self.restarts, last_exit=last_exit)
        with session_scope(self.database) as session:
            return worker_service.worker_public(session=session, worker_id=worker_id, running=running,
                                                stale_after_seconds=self.settings.worker_dead_after_seconds,
                                                restarts=self.restarts, last_exit=last_exit)


def _running_jobs(session: Session, worker_id: str) -> list[int]:
    return list(session.exec(select(Job.id).where(Job.state == JobState.RUNNING, Job.worker_id == worker_id)))
