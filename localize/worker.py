"""The training worker: claims queued jobs one at a time, runs them, and requeues jobs of dead workers.

A worker records a heartbeat while it lives (idle or training). Asked to stop (SIGTERM, SIGINT, or ``stop()``),
it gives the job it runs back to the queue at the job's next step and exits; a second signal stops it at once,
still giving its job back. A worker whose parent went away (its ``serve`` was killed) stops the same way, so it
never lives on as an orphan."""
from __future__ import annotations

import _thread
import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType
from typing import Any

from localize.db.models import JobState
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import job_runs
from localize.services import workers as worker_service

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, runtime: Runtime, worker_id: str | None = None) -> None:
        self.runtime = runtime
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()
        self.stop_reason: str | None = None
        self.current_job: int | None = None
        self._parent = os.getppid()
        self._previous_handlers: dict[int, Any] = {}

    # -- one job ------------------------------------------------------------------------------------------------
    def run_once(self) -> int | None:
        """Requeues dead jobs, then claims and runs one job; returns its id, or None if the queue was empty."""
        settings = self.runtime.settings
        with session_scope(self.runtime.database) as session:
            requeued = job_runs.requeue_dead_jobs(
                session=session, dead_after_seconds=settings.worker_dead_after_seconds,
                max_attempts=settings.worker_max_attempts)
            if requeued:
                logger.warning("requeued jobs %s of silent workers", requeued)
            if self.stopping.is_set():
                return None
            job_id = job_runs.claim_next_job(session=session, worker_id=self.worker_id)
        if job_id is None:
            return None
        logger.info("worker %s runs job %s", self.worker_id, job_id)
        self.current_job = job_id
        try:
            job = job_runs.run_job(runtime=self.runtime, job_id=job_id, worker_id=self.worker_id,
                                   stop_reason=self._stop_reason)
        except BaseException:  # a second signal (KeyboardInterrupt): the job goes back to the queue even so
            self._give_back(job_id)
            raise
        finally:
            self.current_job = None
        logger.info("job %s finished: %s", job_id, job.state)
        return job_id

    def _give_back(self, job_id: int) -> None:
        reason = self._stop_reason() or f"worker {self.worker_id} was interrupted"
        try:
            with session_scope(self.runtime.database) as session:
                job_runs.interrupt_job(session=session, job_id=job_id, worker_id=self.worker_id,
                                       state=JobState.QUEUED, reason=f"{reason}; it starts over on the next worker")
        except Exception:  # noqa: BLE001  (then its heartbeat goes stale and another worker requeues it)
            logger.exception("worker %s could not give job %s back to the queue", self.worker_id, job_id)

    @property
    def interrupt_after_seconds(self) -> float:
        """Within its supervisor's grace period, with time left to give the job back before a kill."""
        grace = self.runtime.settings.worker_stop_grace_seconds
        return max(grace - 2.0, grace / 2)

    def _interrupt_job(self, job_id: int) -> None:
        if self.current_job == job_id:  # still in the same step: a KeyboardInterrupt gives the job back (run_once)
            logger.warning("job %s did not reach its next step within %.1f s; interrupting it", job_id,
                           self.interrupt_after_seconds)
            _thread.interrupt_main()

    def _stop_reason(self) -> str | None:
        return self.stop_reason if self.stopping.is_set() else None

    # -- the loop -----------------------------------------------------------------------------------------------
    def run_forever(self) -> None:
        logger.info("worker %s started (pid %s)", self.worker_id, os.getpid())
        beating = threading.Event()
        heartbeat = threading.Thread(target=self._beat_until, args=(beating,), daemon=True,
                                     name=f"worker-heartbeat-{self.worker_id}")
        self._beat()
        heartbeat.start()
        try:
            while not self.stopping.is_set():
                try:
                    ran = self.run_once()
                except Exception:  # noqa: BLE001  (a database hiccup must not kill the worker)
                    logger.exception("worker loop error")
                    ran = None
                if ran is None:
                    self.stopping.wait(self.runtime.settings.worker_poll_seconds)
        finally:
            beating.set()
            heartbeat.join(timeout=5)
            try:
                with session_scope(self.runtime.database) as session:
                    worker_service.record_stopped(session=session, worker_id=self.worker_id)
            except Exception:  # noqa: BLE001  (its heartbeat goes stale instead)
                logger.exception("worker %s could not record that it stopped", self.worker_id)
        logger.info("worker %s stopped%s", self.worker_id, f": {self.stop_reason}" if self.stop_reason else "")

    def _beat(self) -> None:
        with session_scope(self.runtime.database) as session:
            worker_service.record_heartbeat(session=session, worker_id=self.worker_id, job_id=self.current_job)

    def _beat_until(self, done: threading.Event) -> None:
        while not done.wait(self.runtime.settings.worker_heartbeat_seconds):
            if os.getppid() != self._parent and not self.stopping.is_set():
                self.stop(f"orphaned: its parent process {self._parent} went away")
            try:
                self._beat()
            except Exception:  # noqa: BLE001  (a missed beat is retried; a long silence makes it stale)
                logger.exception("heartbeat of worker %s failed", self.worker_id)

    # -- stopping -----------------------------------------------------------------------------------------------
    def stop(self, reason: str = "asked to stop") -> None:
        if not self.stopping.is_set():
            self.stop_reason = f"worker {self.worker_id} was {reason}"
            self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully: its job goes back to the queue at the job's next step, or,
        if that step has not come within ``interrupt_after_seconds``, at once. A second signal interrupts it at
        once."""
        def handle(signum: int, _frame: FrameType | None) -> None:
            if self.stopping.is_set():
                raise KeyboardInterrupt
            self.stop(f"stopped by {signal.Signals(signum).name}")
            if self.current_job is not None:
                timer = threading.Timer(self.interrupt_after_seconds, self._interrupt_job, args=(self.current_job,))
                timer.daemon = True
                timer.start()

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, handle)

    def restore_signal_handlers(self) -> None:
        """Puts back what SIGTERM and SIGINT did before :meth:`install_signal_handlers` (a ``--once`` run in a
        process that goes on, such as a test runner or a notebook, gets its Ctrl-C back)."""
        while self._previous_handlers:
            signum, previous = self._previous_handlers.popitem()
            signal.signal(signum, previous)


def worker_process_main(worker_id: str, threads: int | None = None) -> None:
    """The body of a worker process that ``serve`` supervises (see ``localize.supervisor``)."""
    from localize.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)  # training gets its share of the cores; the API keeps the rest
    get_settings.cache_clear()
    runtime = Runtime(get_settings())
    if runtime.settings.ray_address:  # jobs run as Ray tasks; this process only dispatches them
        from localize.distributed.training import RayWorker

        runner = RayWorker(runtime, address=runtime.settings.ray_address)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())
        try:
            runner.run_forever()
        finally:
            runner.shutdown()
        return
    worker = Worker(runtime, worker_id=worker_id)
    worker.install_signal_handlers()
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        pass


def exit_now(code: int = 0) -> None:
    """Ends a process whose work is done and closed: its atexit handlers run, but not the interpreter's teardown of
    torch, transformers and sklearn, which takes seconds on a busy machine (too long for a stop within 10 s)."""
    import atexit
    import sys

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
