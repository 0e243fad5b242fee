"""The worker supervisor of ``localize serve``, driven with stand-in processes (no real worker starts here; the
fault suite in tests/e2e kills real ones): a dead worker is restarted with a growing delay and its job is given
back with an event that says how the worker died; a job whose workers keep dying fails; a hung worker is killed;
stopping asks the worker first and kills it after the grace period."""
from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from localize.db.models import Job, JobEvent, JobState, WorkerHeartbeat, utcnow
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import job_runs
from localize.services import jobs as job_service
from localize.services import workers as worker_service
from localize.services.tasks import create_task
from localize.services.users import create_user
from localize.supervisor import WorkerSupervisor, describe_exit
from localize.training_args import TrainingArguments


class StandInProcess:
    """A process that lives until the test ends it; ``obeys_sigterm=False`` plays a worker stuck in a long step."""

    def __init__(self, worker_id: str, obeys_sigterm: bool = True) -> None:
        self.worker_id, self.obeys_sigterm = worker_id, obeys_sigterm
        self.pid, self.exitcode = 4242, None
        self.ended = threading.Event()
        self.signals: list[str] = []

    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        self.ended.wait(timeout)

    def end(self, exitcode: int) -> None:
        self.exitcode = exitcode
        self.ended.set()

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if self.obeys_sigterm:
            self.end(-signal.SIGTERM)

    def kill(self) -> None:
        self.signals.append("SIGKILL")
        self.end(-signal.SIGKILL)


class Spawner:
    def __init__(self, obeys_sigterm: bool = True) -> None:
        self.processes: list[StandInProcess] = []
        self.started_at: list[float] = []
        self.obeys_sigterm = obeys_sigterm
        self.spawned = threading.Condition()

    def __call__(self, worker_id: str, threads: int | None) -> StandInProcess:  # noqa: ARG002
        process = StandInProcess(worker_id, self.obeys_sigterm)
        with self.spawned:
            self.processes.append(process)
            self.started_at.append(time.monotonic())
            self.spawned.notify_all()
        return process

    def wait_for(self, count: int, timeout: float = 10) -> StandInProcess:
        with self.spawned:
            assert self.spawned.wait_for(lambda: len(self.processes) >= count, timeout), \
                f"only {len(self.processes)} worker(s) started, expected {count}"
            return self.processes[count - 1]


def _job_held_by(runtime: Runtime, worker_id: str) -> int:
    """A running job claimed by ``worker_id``, as if that worker had started it."""
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name=f"t{abs(hash(worker_id)) % 10**8}", labels=["a", "b"])
        user = create_user(session=session, name=f"u{abs(hash(worker_id)) % 10**8}")
        job = job_service.queue_training(session=session, task=task, user=user, args=TrainingArguments(method="head"))
        assert job_runs.claim_next_job(session=session, worker_id=worker_id, job_id=job.id) == job.id
        return job.id


def _job(runtime: Runtime, job_id: int) -> tuple[Job, list[tuple[str, str]]]:
    with session_scope(runtime.database) as session:
        events = [(e.level, e.message) for e in session.exec(select(JobEvent).where(JobEvent.job_id == job_id)
                                                                 .order_by(JobEvent.id))]
        return session.get(Job, job_id), events


def _wait(condition, timeout: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def supervised(make_runtime):
    made = []

    def make(spawner: Spawner, **settings) -> tuple[Runtime, WorkerSupervisor]:  # noqa: ANN003
        runtime = make_runtime(**{"worker_restart_seconds": 0.1, "worker_stop_grace_seconds": 0.5, **settings})
        supervisor = WorkerSupervisor(runtime.settings, runtime.database, spawn=spawner, poll_seconds=0.02)
        made.append(supervisor)
        supervisor.start()
        return runtime, supervisor

    yield make
    for supervisor in made:
        supervisor.stop()


def test_a_dead_worker_is_restarted_with_a_growing_delay_and_its_job_requeued(supervised) -> None:
    spawner = Spawner()
    runtime, supervisor = supervised(spawner, worker_max_attempts=10)
    first = spawner.wait_for(1)
    job_id = _job_held_by(runtime, first.worker_id)

    first.end(-signal.SIGKILL)
    second = spawner.wait_for(2)
    job, events = _job(runtime, job_id)
    assert (job.state, job.worker_id, job.worker_deaths) == (JobState.QUEUED, None, 1)
    assert events[-1] == ("warning", f"requeued: worker {first.worker_id} died (killed by SIGKILL); its partial "
                                     "output is discarded (worker death 1 of at most 9)")
    assert second.worker_id != first.worker_id

    second.end(1)
    spawner.wait_for(3).end(-signal.SIGSEGV)
    spawner.wait_for(4)
    delays = [b - a for a, b in zip(spawner.started_at, spawner.started_at[1:])]
    # Workers that never sent a heartbeat (a crash loop at start): the delay doubles each time.
    assert delays[0] >= 0.1 and delays[1] >= 0.2 and delays[2] >= 0.4
    assert delays[2] < 2.0
    assert (supervisor.restarts, supervisor.last_exit) == (3, "killed by SIGSEGV")

    fourth = spawner.processes[3]  # this one came up: its death is restarted after the shortest delay again
    with session_scope(runtime.database) as session:
        worker_service.record_heartbeat(session=session, worker_id=fourth.worker_id)
    died = time.monotonic()
    fourth.end(-signal.SIGKILL)
    spawner.wait_for(5)
    assert 0.1 <= spawner.started_at[4] - died < 0.6  # not the 0.8 s that doubling would give


def test_a_job_whose_workers_keep_dying_fails_with_the_reason(supervised) -> None:
    spawner = Spawner()
    runtime, _ = supervised(spawner, worker_max_attempts=2, worker_restart_seconds=0.01)
    job_id = None
    for attempt in (1, 2):
        process = spawner.wait_for(attempt)
        if job_id is None:
            job_id = _job_held_by(runtime, process.worker_id)
        else:  # the restarted worker takes the requeued job again
            with session_scope(runtime.database) as session:
                assert job_runs.claim_next_job(session=session, worker_id=process.worker_id) == job_id
        process.end(-signal.SIGKILL)
    spawner.wait_for(3)
    job, events = _job(runtime, job_id)
    assert (job.state, job.worker_deaths) == (JobState.FAILED, 2)
    assert job.error.startswith("its worker died during each of its last 2 runs (the last time: worker ")
    assert "killed by SIGKILL" in job.error and "not retried" in job.error
    assert events[-1] == ("error", f"failed: {job.error}")
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="another") is None


def test_a_worker_with_a_stale_heartbeat_is_killed_and_replaced(supervised) -> None:
    spawner = Spawner()
    runtime, supervisor = supervised(spawner, worker_dead_after_seconds=0.3)
    hung = spawner.wait_for(1)
    with session_scope(runtime.database) as session:
        worker_service.record_heartbeat(session=session, worker_id=hung.worker_id)
        assert supervisor.status().alive
        session.exec(update(WorkerHeartbeat).values(heartbeat_at=utcnow() - timedelta(seconds=5)))
        session.commit()
    status = supervisor.status()
    assert not status.alive and status.heartbeat_age_seconds >= 5
    spawner.wait_for(2)
    assert hung.signals == ["SIGKILL"]
    assert supervisor.last_exit == "hung: no heartbeat for 0 s, so it was killed"


def test_stop_asks_first_then_kills_after_the_grace_period_and_requeues_the_job(supervised) -> None:
    spawner = Spawner(obeys_sigterm=False)
    runtime, supervisor = supervised(spawner, worker_stop_grace_seconds=0.3)
    stuck = spawner.wait_for(1)
    job_id = _job_held_by(runtime, stuck.worker_id)
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 3
    assert stuck.signals == ["SIGTERM", "SIGKILL"]
    job, events = _job(runtime, job_id)
    assert (job.state, job.worker_deaths) == (JobState.QUEUED, 0)  # a stop is not the worker's fault
    assert events[-1][1] == (f"requeued: worker {stuck.worker_id} was stopped with its server (killed by "
                             "SIGKILL); it starts over on the next worker")
    assert len(spawner.processes) == 1  # never restarted


def test_a_worker_that_cannot_start_is_retried(supervised) -> None:
    spawner, calls = Spawner(), []

    def flaky(worker_id: str, threads: int | None) -> StandInProcess:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("the preloading server process did not start")
        return spawner(worker_id, threads)

    _, supervisor = supervised(flaky, worker_restart_seconds=0.05)
    spawner.wait_for(1)
    assert len(calls) == 3 and calls[2] - calls[1] >= 0.1  # retried, with the growing delay
    assert supervisor.last_exit == "could not be started: OSError: the preloading server process did not start"


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(None) == "still running"
