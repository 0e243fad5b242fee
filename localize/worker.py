"""The training worker: claims queued jobs one at a time, runs them, and requeues jobs of dead workers."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import jobs as job_service

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, runtime: Runtime, worker_id: str | None = None) -> None:
        self.runtime = runtime
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()

    def run_once(self) -> int | None:
        """Requeues dead jobs, then claims and runs one job; returns its id, or None if the queue was empty."""
        settings = self.runtime.settings
        with session_scope(self.runtime.database) as session:
            requeued = job_service.requeue_dead_jobs(session=session, dead_after_seconds=settings.worker_dead_after_seconds)
            if requeued:
                logger.warning("requeued jobs %s of silent workers", requeued)
            job_id = job_service.claim_next_job(session=session, worker_id=self.worker_id)
        if job_id is None:
            return None
        logger.info("worker %s runs job %s", self.worker_id, job_id)
        job = job_service.run_job(runtime=self.runtime, job_id=job_id, worker_id=self.worker_id)
        logger.info("job %s finished: %s", job_id, job.state)
        return job_id

    def run_forever(self) -> None:
        logger.info("worker %s started", self.worker_id)
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # noqa: BLE001  (a database hiccup must not kill the worker)
                logger.exception("worker loop error")
                ran = None
            if ran is None:
                self.stopping.wait(self.runtime.settings.worker_poll_seconds)
        logger.info("worker %s stopped", self.worker_id)

    def stop(self) -> None:
        self.stopping.set()
