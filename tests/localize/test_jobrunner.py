"""``localize train`` runs jobs in its own process; interrupted (Ctrl-C, SIGTERM) it cancels the job it ran and the
ones it had still queued, each with an event saying why, so nothing stays ``running`` to refuse the next attempt."""
from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from localize.db.models import Job, JobEvent, JobState, Task
from localize.db.session import session_scope
from localize.demo_data import JOHN, LABELS, demo_rows
from localize.jobrunner import run_jobs_locally
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task
from localize.services.users import create_user, get_user
from localize.settings import Settings
from localize.training_args import TrainingArguments

# Minutes of LoRA training: it is still running when the test interrupts it.
ENDLESS = TrainingArguments(method="lora", train_scope="all", max_epochs=1000, patience=1000)


def _jobs_of_a_command(tmp_path: Path) -> tuple[Runtime, list[int]]:
    """Runtime with John's labels and two queued jobs (John's, then Jane's), as `localize train` queues them."""
    runtime = Runtime(Settings(home=tmp_path / "home", admin_key="k", worker_heartbeat_seconds=0.2))
    runtime.upgrade_database()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="gold", labels=LABELS)
        data = demo_rows(6, users=(JOHN,))  # short epochs: the interruption lands soon
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, **r) for i, r in enumerate(data)])
        jane = create_user(session=session, name="jane")
        john = get_user(session=session, name="john")
        jobs = job_service.queue_many(session=session, task=task, users=[john, jane], args=ENDLESS, prior=False)
    return runtime, [job.id for job in jobs]


def _interrupt_once_training(runtime: Runtime, job_id: int, interrupt: Callable[[], None]) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with session_scope(runtime.database) as session:
                    job = session.get(Job, job_id)
                    running = job.state == JobState.RUNNING and job.progress > 0
            except OperationalError:  # SQLite busy while the job writes its progress: look again
                running = False
            if running:
                interrupt()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def python_sigint():
    """Ctrl-C as a fresh ``localize`` process gets it (KeyboardInterrupt), whatever an earlier in-process test
    left behind."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
@pytest.mark.usefixtures("python_sigint")
def test_an_interrupted_cli_run_cancels_its_jobs(tmp_path: Path, how: str) -> None:
    runtime, (running, waiting) = _jobs_of_a_command(tmp_path)
    interrupt = _thread.interrupt_main if how == "SIGINT" else (lambda: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    watcher = _interrupt_once_training(runtime, running, interrupt)

    with pytest.raises(KeyboardInterrupt):
        run_jobs_locally(runtime=runtime, job_ids=[running, waiting])
    watcher.join(timeout=5)

    assert signal.getsignal(signal.SIGTERM) is before  # the command's SIGTERM handler is gone again
    with session_scope(runtime.database) as session:
        for job_id in (running, waiting):
            job = session.get(Job, job_id)
            assert (job.state, job.worker_id) == (JobState.CANCELLED, None) and job.finished_at is not None
            last = session.exec(select(JobEvent.message).where(JobEvent.job_id == job_id)
                                .order_by(JobEvent.id.desc())).first()
            assert last == f"cancelled: the command running it was interrupted ({how})"
        # The next attempt is accepted: nothing is left pending.
        task = session.get(Task, session.get(Job, running).task_id)
        again = job_service.queue_training(session=session, task=task,
                                           user=get_user(session=session, name="john"), args=ENDLESS)
        assert again.state == JobState.QUEUED
    runtime.database.dispose()


def test_many_jobs_share_one_bar_that_counts_the_finished_and_failed(tmp_path: Path, monkeypatch) -> None:
    """A whole task's hundreds of users: one overall bar, not a bar per finished job redrawn on every refresh."""
    import io

    from rich.console import Console

    import localize.jobrunner as jobrunner

    runtime = Runtime(Settings(home=tmp_path / "home", admin_key="k"))
    runtime.upgrade_database()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="gold", labels=LABELS)
        data = demo_rows(12, users=(JOHN,))
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, **r) for i, r in enumerate(data)])
        users = [get_user(session=session, name="john"), create_user(session=session, name="jane")]  # jane: no labels
        quick = TrainingArguments(method="head", max_epochs=2)
        job_ids = [job.id for job in job_service.queue_many(session=session, task=task, users=users, args=quick,
                                                           prior=False)]
    monkeypatch.setattr(jobrunner, "MAX_BARS", 1)
    screen = io.StringIO()
    finished = run_jobs_locally(runtime=runtime, job_ids=job_ids,
                                console=Console(file=screen, width=160, force_terminal=False))
    assert [job.state for job in finished] == [JobState.SUCCEEDED, JobState.FAILED]
    shown = screen.getvalue().strip().splitlines()  # the final screen: finished jobs' bars are gone
    assert len(shown) == 1 and "2 jobs" in shown[0] and "2 finished, 1 not succeeded" in shown[0]
