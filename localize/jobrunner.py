"""Runs queued training jobs in this process with a progress bar each (the CLI, the demo and eval use it)."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from localize.db.models import Job, JobState
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.worker import new_worker_id


def run_jobs_locally(*, runtime: Runtime, job_ids: list[int], console: Console | None = None) -> list[Job]:
    """Claims and runs each job here. A job another worker holds is waited for: it is run here once it is
    requeued (its worker died), or reported as that worker finishes it."""
    worker_id = "cli-" + new_worker_id()
    finished = []
    with session_scope(runtime.database) as session:
        names = {}
        for job_id in job_ids:
            public = job_service.job_public(session=session, job=session.get(Job, job_id), with_events=False)
            names[job_id] = f"train {public.user}" if public.user else "train the task prior"
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console or Console(), transient=False) as progress:
        for job_id in job_ids:
            bar = progress.add_task(names.get(job_id, f"job {job_id}"), total=1.0, status="")
            claimed, job = _claim_or_wait(runtime, job_id, worker_id, lambda s, bar=bar: progress.update(bar, status=s))
            if claimed is None:
                progress.update(bar, completed=1.0, status=f"{job.state} on worker {job.worker_id or '-'}")
                finished.append(job)
                continue

            def report(fraction: float, message: str, bar=bar) -> None:  # noqa: ANN001
                progress.update(bar, completed=fraction, status=message[:60])

            job = job_service.run_job(runtime=runtime, job_id=job_id, worker_id=worker_id, progress=report)
            progress.update(bar, completed=1.0, status=(job.state + (f": {job.error}" if job.error else ""))[:80])
            finished.append(job)
    return finished


def _claim_or_wait(runtime: Runtime, job_id: int, worker_id: str, status) -> tuple[int | None, Job]:  # noqa: ANN001
    settings = runtime.settings
    while True:
        with session_scope(runtime.database) as session:
            claimed = job_service.claim_next_job(session=session, worker_id=worker_id, job_id=job_id)
            job = session.get(Job, job_id)
            if claimed is not None or job.state in JobState.FINISHED:
                return claimed, job
            status(f"running on worker {job.worker_id}; waiting")
            job_service.requeue_dead_jobs(session=session, dead_after_seconds=settings.worker_dead_after_seconds)
        time.sleep(settings.worker_poll_seconds)
