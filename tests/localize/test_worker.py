"""The training worker: a worker killed with SIGKILL mid-training loses nothing; its job is requeued and finished
by another worker, with exactly one adapter version and no partial output. On SQLite and on PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, update
from sqlmodel import select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState, Label
from localize.db.session import session_scope
from localize.demo_data import JOHN, LABELS, demo_rows
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.settings import Settings
from localize.training_args import TrainingArguments
from localize.worker import Worker

REPO = Path(__file__).resolve().parents[2]
SHORT = TrainingArguments(method="head", max_epochs=3, method_options={"hidden": 0})


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request) -> str:
    return request.param


def _runtime(home: Path, **overrides) -> Runtime:  # noqa: ANN003
    runtime = Runtime(Settings(home=home, admin_key="k", **overrides))
    runtime.upgrade_database()
    return runtime


def _seed(runtime: Runtime, rows: int) -> int:
    """Task ``gold`` with John's generated labels; returns how many labels are stored."""
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="gold", labels=LABELS)
        data = demo_rows(rows, users=(JOHN,))
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, **r) for i, r in enumerate(data)])
        return len(data)


def _queue(runtime: Runtime, args: TrainingArguments) -> int:
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="gold")
        return job_service.queue_training(session=session, task=task, user=get_user(session=session, name="john"),
                                          args=args).id


def _job(runtime: Runtime, job_id: int) -> Job:
    with session_scope(runtime.database) as session:
        return session.get(Job, job_id)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_worker_killed_mid_training_loses_nothing(tmp_path: Path, fresh_database) -> None:
    home = tmp_path / "home"
    url = fresh_database()
    runtime = _runtime(home, worker_heartbeat_seconds=0.2, worker_dead_after_seconds=2,
                       **({"database_url": url} if url else {}))
    n_labels = _seed(runtime, 80)
    # Far more epochs than it will live through: the first worker is killed while it trains.
    job_id = _queue(runtime, TrainingArguments(method="head", max_epochs=100_000, patience=100_000))

    env = {**os.environ, "LOCALIZE_HOME": str(home), "LOCALIZE_WORKER_HEARTBEAT_SECONDS": "0.2",
           "LOCALIZE_WORKER_DEAD_AFTER_SECONDS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **({"LOCALIZE_DATABASE_URL": url} if url else {})}
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "localize.cli", "worker"], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while True:
            job = _job(runtime, job_id)
            if job.state == JobState.RUNNING and job.progress > 0:
                break
            assert process.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, f"job never made progress: {job}"
            time.sleep(0.05)
        first_worker = job.worker_id
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    job = _job(runtime, job_id)
    assert job.state == JobState.RUNNING and job.worker_id == first_worker and job.attempts == 1
    with session_scope(runtime.database) as session:
        # The requeued attempt starts over; a short recipe keeps this test quick (the worker never reads args
        # to decide anything about requeueing).
        session.exec(update(Job).where(Job.id == job_id).values(args=SHORT.to_dict()))
        session.commit()

    worker = Worker(runtime, worker_id="second")
    deadline = time.monotonic() + 30
    while (ran := worker.run_once()) is None:  # until the dead worker's heartbeat is old enough
        assert time.monotonic() < deadline, "the dead worker's job was never requeued"
        time.sleep(0.2)
    assert ran == job_id

    job = _job(runtime, job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    assert (job.worker_id, job.attempts, job.activated) == ("second", 2, True)
    with session_scope(runtime.database) as session:
        events = [(e.level, e.message) for e in session.exec(select(JobEvent).where(JobEvent.job_id == job_id)
                                                                 .order_by(JobEvent.id))]
        versions = session.exec(select(AdapterVersion)).all()
        labels = session.exec(select(func.count()).select_from(Label)).one()
    messages = [message for _, message in events]
    requeued = next(i for i, (level, m) in enumerate(events) if level == "warning" and m.startswith("requeued"))
    assert messages.index(f"running on worker {first_worker}") < requeued < messages.index("running on worker second")
    assert messages[-1] == "succeeded: version 1 (active)"
    assert [(v.version, v.is_active, v.id) for v in versions] == [(1, True, job.adapter_version_id)]
    assert labels == n_labels
    adapter_root = Path(runtime.settings.resolved_adapter_store)
    leftovers = [p for p in adapter_root.rglob("*") if p.name.startswith((".tmp", ".del"))]
    assert leftovers == []
    assert sorted(p.name for p in (adapter_root / versions[0].store_key).iterdir()) == ["v1"]
    runtime.database.dispose()


def test_run_forever_works_the_queue_until_stopped(tmp_path: Path, fresh_database) -> None:
    url = fresh_database()
    runtime = _runtime(tmp_path / "home", worker_poll_seconds=0.05, **({"database_url": url} if url else {}))
    _seed(runtime, 20)
    worker = Worker(runtime, worker_id="loop")
    assert worker.run_once() is None  # an empty queue
    job_id = _queue(runtime, SHORT)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while _job(runtime, job_id).state not in JobState.FINISHED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    job = _job(runtime, job_id)
    assert (job.state, job.worker_id) == (JobState.SUCCEEDED, "loop")
    runtime.database.dispose()


def test_a_stopped_worker_gives_its_job_back_at_the_next_step(tmp_path: Path) -> None:
    """SIGTERM (here: ``stop``) during training: the worker ends at the job's next step, its job is back in the
    queue with an event naming why (not counted as a death of its worker), and its heartbeat row says it stopped."""
    from localize.db.models import WorkerHeartbeat

    runtime = _runtime(tmp_path / "home", worker_poll_seconds=0.05, worker_heartbeat_seconds=0.2)
    _seed(runtime, 6)  # short epochs: the worker stops at the end of one
    job_id = _queue(runtime, TrainingArguments(method="lora", train_scope="all", max_epochs=1000, patience=1000))
    worker = Worker(runtime, worker_id="stopping")
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not ((job := _job(runtime, job_id)).state == JobState.RUNNING and job.progress > 0):
            assert time.monotonic() < deadline and thread.is_alive(), f"job never made progress: {job}"
            time.sleep(0.05)
        with session_scope(runtime.database) as session:
            row = session.get(WorkerHeartbeat, "stopping")
            assert (row.job_id, row.stopped_at) == (job_id, None)
        worker.stop("stopped by SIGTERM")
        thread.join(timeout=60)  # at the end of the current epoch (the e2e tests hold serve to 10 s)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(timeout=30)
    job = _job(runtime, job_id)
    assert (job.state, job.worker_id, job.attempts, job.worker_deaths, job.progress) == (
        JobState.QUEUED, None, 1, 0, 0.0)
    with session_scope(runtime.database) as session:
        level, message = session.exec(select(JobEvent.level, JobEvent.message).where(JobEvent.job_id == job_id)
                                       .order_by(JobEvent.id.desc())).first()
        row = session.get(WorkerHeartbeat, "stopping")
        assert row.stopped_at is not None and row.job_id is None
    assert (level, message) == ("warning", "requeued: worker stopping was stopped by SIGTERM; it starts over on the "
                                           "next worker")
    runtime.database.dispose()
