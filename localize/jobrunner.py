"""Runs queued training jobs in this process with a progress bar each, or for many jobs one overall bar and the
running job's (the CLI, the demo and eval use it)."""
from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from rich.console import Console
from rich.table import Column
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from localize.db.models import Job, JobState
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import job_runs
from localize.services import jobs as job_service
from localize.worker import new_worker_id

_ROWS = re.compile(r"training on (\d+) labels, validating on (\d+)")
MAX_BARS = 10  # more jobs than this show one overall bar and the running job's


class Interrupted(KeyboardInterrupt):
    """SIGTERM while jobs run here: handled as Ctrl-C is."""


def run_jobs_locally(*, runtime: Runtime, job_ids: list[int], console: Console | None = None) -> list[Job]:
    """Claims and runs each job here. A job another worker holds is waited for: it is run here once it is
    requeued (its worker died), or reported as that worker finishes it.

    Interrupted (Ctrl-C, SIGTERM), it cancels the job it runs and those still queued of ``job_ids``, each with
    an event saying why, and raises KeyboardInterrupt: nothing is left ``running`` to block the next attempt."""
    worker_id = "cli-" + new_worker_id()
    with _sigterm_interrupts():
        try:
            return _run(runtime, job_ids, worker_id, console)
        except KeyboardInterrupt as interruption:
            how = "SIGTERM" if isinstance(interruption, Interrupted) else "SIGINT"
            with session_scope(runtime.database) as session:
                job_service.cancel_abandoned(session=session, job_ids=job_ids, worker_id=worker_id,
                                             reason=f"the command running it was interrupted ({how})")
            raise


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(runtime: Runtime, job_ids: list[int], worker_id: str, console: Console | None) -> list[Job]:
    finished = []
    with session_scope(runtime.database) as session:
        names = {}
        for job_id in job_ids:
            public = job_service.job_public(session=session, job=session.get(Job, job_id), with_events=False)
            names[job_id] = f"train {public.user}" if public.user else "train the task prior"
    # Elapsed and ETA (from the share of epochs done; early stopping can finish sooner), then the latest message,
    # which takes what is left of the line (shortened first, so the times are never cut). The description says how
    # many rows train + validate.
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=10), TaskProgressColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                  console=console or Console(), transient=False, expand=True) as progress:
        # Many jobs (a whole task's users) share one bar: a bar per finished job would redraw hundreds of lines
        # on every refresh, costing the jobs CPU time; the summary after the run lists every job.
        overall = progress.add_task(f"{len(job_ids):,} jobs", total=len(job_ids), status="") \
            if len(job_ids) > MAX_BARS else None

        def done(bar: int, job: Job, status: str) -> None:
            finished.append(job)
            if overall is None:
                progress.update(bar, completed=1.0, status=status)
                return
            progress.remove_task(bar)
            failed = sum(1 for j in finished if j.state != JobState.SUCCEEDED)
            progress.update(overall, completed=len(finished),
                            status=f"{len(finished):,} finished" + (f", {failed:,} not succeeded" if failed else ""))

        for job_id in job_ids:
            bar = progress.add_task(names.get(job_id, f"job {job_id}"), total=1.0, status="")
            claimed, job = _claim_or_wait(runtime, job_id, worker_id, lambda s, bar=bar: progress.update(bar, status=s))
            if claimed is None:
                done(bar, job, f"{job.state} on worker {job.worker_id or '-'}")
                continue

            name = names.get(job_id, f"job {job_id}")

            def report(fraction: float, message: str, bar=bar, name=name) -> None:  # noqa: ANN001
                rows = _ROWS.match(message)
                if rows:  # the description keeps the row counts while the status moves on to each epoch
                    progress.update(bar, description=f"{name} ({rows[1]}+{rows[2]} rows)")
                progress.update(bar, completed=fraction, status=message)

            job = job_runs.run_job(runtime=runtime, job_id=job_id, worker_id=worker_id, progress=report)
            done(bar, job, job.state)  # a failure's reason is printed whole after
    return finished


def _claim_or_wait(runtime: Runtime, job_id: int, worker_id: str, status) -> tuple[int | None, Job]:  # noqa: ANN001
    settings = runtime.settings
    while True:
        with session_scope(runtime.database) as session:
            claimed = job_runs.claim_next_job(session=session, worker_id=worker_id, job_id=job_id)
            job = session.get(Job, job_id)
            if claimed is not None or job.state in JobState.FINISHED:
                return claimed, job
            status(f"running on worker {job.worker_id}; waiting")
            job_runs.requeue_dead_jobs(session=session, dead_after_seconds=settings.worker_dead_after_seconds,
                                       max_attempts=settings.worker_max_attempts)
        time.sleep(settings.worker_poll_seconds)
