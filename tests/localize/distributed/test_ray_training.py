"""Training jobs as Ray tasks: claimed from the database, run in Ray worker processes in parallel, registered exactly
as the local worker registers them; a crashed task leaves its job requeued, then failed after the attempt limit."""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from ray_support import HEAD, seed_task
from sqlalchemy import update
from sqlmodel import select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState, aware, utcnow
from localize.db.session import session_scope
from localize.distributed.training import RayResources, RayWorker
from localize.services import jobs as job_service
from localize.services.tasks import get_task
from localize.services.users import get_user

pytestmark = pytest.mark.ray


def _queue(runtime, user: str) -> int:  # noqa: ANN001
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="gold")
        return job_service.queue_training(session=session, task=task, user=get_user(session=session, name=user),
                                          args=HEAD).id


def _job(runtime, job_id: int) -> tuple[Job, list[str]]:  # noqa: ANN001
    with session_scope(runtime.database) as session:
        events = [e.message for e in session.exec(select(JobEvent).where(JobEvent.job_id == job_id)
                                                  .order_by(JobEvent.id))]
        return session.get(Job, job_id), events


def test_queued_jobs_run_as_parallel_ray_tasks_and_register_their_adapters(ray_cluster, make_runtime):
    runtime = make_runtime()
    seed_task(runtime)
    job_ids = [_queue(runtime, "john"), _queue(runtime, "jane")]
    worker = RayWorker(runtime, address="local", max_concurrent=2)
    assert worker.resources.num_gpus == 0  # the test cluster has no GPU: no GPU is requested

    submitted = worker.dispatch()
    assert submitted == job_ids and len(worker.in_flight) == 2  # both users' jobs are out at once
    submitted_task_ids = {flight.job_id: ref.task_id().hex() for ref, flight in worker.in_flight.items()}
    outcomes = {o["job_id"]: o for o in worker.run_until_idle(timeout=300)}

    driver_node = ray_cluster.get_runtime_context().get_node_id()
    for job_id in job_ids:
        job, events = _job(runtime, job_id)
        outcome = outcomes[job_id]
        assert job.state == JobState.SUCCEEDED and job.attempts == 1, events
        # The id the task read from its own Ray runtime context is the id of the task the dispatcher submitted.
        assert outcome["ray_task_id"] == submitted_task_ids[job_id]
        assert outcome["ray_node_id"] == driver_node and outcome["pid"] != os.getpid()
        assert any(e.startswith(f"Ray task {outcome['ray_task_id']} on node {driver_node}") for e in events)
        with session_scope(runtime.database) as session:
            version = session.get(AdapterVersion, job.adapter_version_id)
            assert version.is_active and version.version == 1
            assert runtime.store.exists(version.store_key, version.version)
    assert outcomes[job_ids[0]]["pid"] != outcomes[job_ids[1]]["pid"]  # two Ray worker processes, side by side


def test_the_worker_command_uses_ray_when_LOCALIZE_RAY_ADDRESS_is_set(ray_cluster, make_runtime, monkeypatch):
    """Runs while the first test's Ray worker processes are warm (the crash tests below kill them)."""
    from typer.testing import CliRunner

    from localize import cli

    runtime = make_runtime()
    seed_task(runtime, rows_per_user=30)
    job_id = _queue(runtime, "jane")
    monkeypatch.setenv("LOCALIZE_HOME", str(runtime.settings.home))  # restored afterwards (--home sets it too)
    monkeypatch.setenv("LOCALIZE_RAY_ADDRESS", "local")
    monkeypatch.setenv("LOCALIZE_RAY_MAX_CONCURRENT_JOBS", "1")
    result = CliRunner().invoke(cli.app, ["--home", str(runtime.settings.home), "worker", "--once"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "up to 1 at once" in output and f"job {job_id}: succeeded" in output
    job, events = _job(runtime, job_id)
    assert job.state == JobState.SUCCEEDED and any(e.startswith("Ray task ") for e in events)


def test_a_crashed_task_requeues_its_job_and_the_next_attempt_finishes_it(ray_cluster, make_runtime):
    runtime = make_runtime(ray_max_attempts=2)
    seed_task(runtime, rows_per_user=30)

    def crash(settings_values, job_id, worker_id):  # noqa: ANN001, ANN202  (the Ray worker process dies)
        os._exit(1)

    job_id = _queue(runtime, "john")
    crashing = RayWorker(runtime, address="local", task_body=crash)
    crashing.dispatch()
    crashing.collect(timeout=120)
    job, events = _job(runtime, job_id)
    assert job.state == JobState.QUEUED and job.attempts == 1 and job.worker_id is None
    assert any(e.startswith("requeued: Ray task crashed") for e in events), events

    RayWorker(runtime, address="local").run_until_idle(timeout=300)
    job, events = _job(runtime, job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, events
    with session_scope(runtime.database) as session:
        assert len(session.exec(select(AdapterVersion)).all()) == 1  # the crashed attempt left nothing behind

    # Past the attempt limit the job fails with the reason, instead of crashing workers for ever.
    job_id = _queue(runtime, "jane")
    crashing.run_until_idle(timeout=300)
    job, events = _job(runtime, job_id)
    assert job.state == JobState.FAILED and job.attempts == 2
    assert "Ray task failed after 2 attempt(s)" in job.error


def test_a_job_whose_ray_tasks_went_silent_as_often_as_the_attempt_limit_fails_instead_of_requeueing(
        ray_cluster, make_runtime):
    """A task that hangs a node (no crash Ray reports, only heartbeats that stop) must not be requeued for ever."""
    runtime = make_runtime(ray_max_attempts=2)
    seed_task(runtime, rows_per_user=30)
    job_ids = [_queue(runtime, "john"), _queue(runtime, "jane")]
    stale = utcnow() - timedelta(hours=1)
    with session_scope(runtime.database) as session:  # both claimed by a dispatcher that went silent
        for job_id, deaths in zip(job_ids, (1, 0)):  # john's job: its second run; jane's: its first
            session.exec(update(Job).where(Job.id == job_id).values(
                state=JobState.RUNNING, worker_id="silent-1", attempts=deaths + 1, worker_deaths=deaths,
                heartbeat_at=stale))
        session.commit()

    worker = RayWorker(runtime, address="local", max_concurrent=1)
    submitted = worker.dispatch()
    failed, events = _job(runtime, job_ids[0])
    assert failed.state == JobState.FAILED and failed.attempts == 2, events
    assert "stopped sending heartbeats" in failed.error
    assert submitted == [job_ids[1]]  # below the limit: requeued, then claimed again
    worker.run_until_idle(timeout=300)
    retried, events = _job(runtime, job_ids[1])
    assert retried.state == JobState.SUCCEEDED and retried.attempts == 2, events


@pytest.mark.parametrize(("cluster", "cpus", "gpus", "limit", "expected"), [
    ({"CPU": 8.0}, 1.0, None, None, RayResources(1.0, 0.0, 8)),
    ({"CPU": 8.0}, 2.0, None, None, RayResources(2.0, 0.0, 4)),
    ({"CPU": 16.0, "GPU": 2.0}, 1.0, None, None, RayResources(1.0, 1.0, 2)),  # GPUs bound the concurrency
    ({"CPU": 16.0, "GPU": 2.0}, 1.0, 0.25, None, RayResources(1.0, 0.25, 8)),
    ({"CPU": 16.0, "GPU": 2.0}, 1.0, 0.0, 3, RayResources(1.0, 0.0, 3)),
])
def test_resource_requests_follow_the_cluster(cluster, cpus, gpus, limit, expected):
    assert RayResources.for_cluster(cluster, num_cpus=cpus, num_gpus=gpus, max_concurrent=limit) == expected


def test_asking_for_gpus_on_a_cluster_without_any_is_a_clear_error():
    with pytest.raises(ValueError, match="asks for 1.0 GPU.*has none.*LOCALIZE_RAY_TRAIN_GPUS=0"):
        RayResources.for_cluster({"CPU": 4.0}, num_cpus=1.0, num_gpus=1.0, max_concurrent=None)


def test_stopping_the_worker_cancels_its_tasks_and_requeues_their_jobs_at_once(ray_cluster, make_runtime):
    runtime = make_runtime()
    seed_task(runtime, rows_per_user=30)

    def hang(settings_values, job_id, worker_id):  # noqa: ANN001, ANN202
        import time

        time.sleep(600)

    job_id = _queue(runtime, "john")
    worker = RayWorker(runtime, address="local", task_body=hang)
    worker.dispatch()
    assert _job(runtime, job_id)[0].state == JobState.RUNNING
    # The dispatcher beats for its jobs (a task waiting for resources has no heartbeat thread of its own yet).
    stale = utcnow() - timedelta(hours=1)
    with session_scope(runtime.database) as session:
        session.exec(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))
    worker.beat()
    assert aware(_job(runtime, job_id)[0].heartbeat_at) > stale
    worker.shutdown()
    job, events = _job(runtime, job_id)
    assert job.state == JobState.QUEUED and job.worker_id is None and not worker.in_flight
    assert events[-1] == f"requeued: Ray worker {worker.dispatcher_id} stopped"

