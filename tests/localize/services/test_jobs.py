"""Training jobs: queue, claim (atomically), run, version activation, staleness, dead workers, cancellation,
lost ownership and the task prior."""
from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sqlalchemy import func, update
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState, utcnow
from localize.db.session import session_scope
from localize.errors import ConflictError, NoAdapterError, ValidationError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import job_runs
from localize.services import jobs as job_service
from localize.services.labels import delete_labels, label_snapshot, list_labels, upsert_labels
from localize.services.tasks import create_task, get_task
from localize.services.users import create_user, get_user
from localize.settings import Settings
from localize.training_args import TrainingArguments
from localize.worker import Worker

from .support import FAST, JANE_LABELS, JOHN_LABELS, LABELS, TEXTS, label_rows

# A "model" that learns nothing: one epoch at a vanishing learning rate from a random linear head.
USELESS = TrainingArguments(method="head", max_epochs=1, learning_rate=1e-9, method_options={"hidden": 0})


def _workspace(runtime: Runtime, labels: dict[str, list[str]] | None = None) -> None:
    """Task ``notes`` where each named user labelled TEXTS."""
    labels = {"john": JOHN_LABELS} if labels is None else labels
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        for name, values in labels.items():
            upsert_labels(session=session, task=task, rows=label_rows(name, TEXTS, values))


def _queue(runtime: Runtime, user: str | None, args: TrainingArguments = FAST) -> int:
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        target = None if user is None else get_user(session=session, name=user)
        return job_service.queue_training(session=session, task=task, user=target, args=args).id


def _job(runtime: Runtime, job_id: int) -> Job:
    with session_scope(runtime.database) as session:
        return session.get(Job, job_id)


def _events(runtime: Runtime, job_id: int) -> list[tuple[str, str]]:
    with session_scope(runtime.database) as session:
        rows = session.exec(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(event.level, event.message) for event in rows]


def _versions(runtime: Runtime, user: str | None) -> list[AdapterVersion]:
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        owner = None if user is None else get_user(session=session, name=user)
        return adapter_service.list_versions(session=session, task=task, user=owner)


def _store_leftovers(runtime: Runtime) -> list[str]:
    return [p.name for p in Path(runtime.settings.resolved_adapter_store).rglob("*") if p.name.startswith((".tmp", ".del"))]


# -- the happy path -----------------------------------------------------------------------------------------------
def test_queue_claim_run_succeeds_with_an_active_version(runtime: Runtime) -> None:
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    assert _job(runtime, job_id).state == JobState.QUEUED

    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="w1") == job_id
    claimed = _job(runtime, job_id)
    assert (claimed.state, claimed.worker_id, claimed.attempts) == (JobState.RUNNING, "w1", 1)
    assert claimed.started_at is not None and claimed.heartbeat_at is not None

    seen: list[float] = []
    job = job_runs.run_job(runtime=runtime, job_id=job_id, worker_id="w1", progress=lambda f, _m: seen.append(f))

    assert job.state == JobState.SUCCEEDED, job.error
    assert job.progress == 1.0 and job.finished_at is not None and job.error is None
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    [version] = _versions(runtime, "john")
    assert (version.version, version.is_active, version.method) == (1, True, "head")
    assert job.adapter_version_id == version.id and job.activated is True
    for key in ("train_accuracy", "val_accuracy", "val_macro_f1", "train_seconds", "epochs"):
        assert key in job.metrics
    assert version.metrics == job.metrics
    assert version.training_args == FAST.to_dict()
    assert version.trainable_params > 0 and version.nbytes > 0 and "head.safetensors" in version.files
    assert runtime.store.exists(version.store_key, 1)
    messages = [message for _, message in _events(runtime, job_id)]
    assert messages[0].startswith("queued: train user 'john' with head + prior in task 'notes'")
    assert messages[1] == "running on worker w1"
    assert any(m.startswith("training on ") for m in messages)
    assert messages[-1] == "succeeded: version 1 (active)"
    with session_scope(runtime.database) as session:
        task, john = get_task(session=session, name="notes"), get_user(session=session, name="john")
        # The version records the label snapshot it learned from, so John is no longer stale.
        assert (version.n_labels, adapter_service.active_version(session=session, task=task, user=john).id) == (
            len(TEXTS), version.id)
        assert label_snapshot(session=session, task=task, user=john)[0] == version.n_labels
        assert adapter_service.stale_users(session=session, task=task) == []
        public = job_service.job_public(session=session, job=job)
        assert (public.user, public.task, public.adapter_version, public.state) == ("john", "notes", 1, "succeeded")


def test_a_second_job_registers_version_2_as_active_and_rollback_works(runtime: Runtime) -> None:
    _workspace(runtime)
    worker = Worker(runtime, worker_id="w")
    first = _queue(runtime, "john")
    assert worker.run_once() == first
    second_id = _queue(runtime, "john")
    assert worker.run_once() == second_id
    assert worker.run_once() is None  # queue drained

    assert _job(runtime, first).state == _job(runtime, second_id).state == JobState.SUCCEEDED
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, False), (2, True)]
    with session_scope(runtime.database) as session:
        task, john = get_task(session=session, name="notes"), get_user(session=session, name="john")
        adapter_service.activate_version(session=session, store=runtime.store, task=task, user=john, version=1)
        with pytest.raises(ConflictError, match="version 1 is active"):
            adapter_service.delete_version(session=session, store=runtime.store, task=task, user=john, version=1)
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, True), (2, False)]
    assert runtime.store.exists("task-1/user-1", 1)


def test_an_inactive_version_made_by_a_job_can_be_deleted(runtime: Runtime) -> None:
    """job.adapter_version_id points at the version: deleting it must not trip the foreign key."""
    _workspace(runtime)
    worker = Worker(runtime, worker_id="w")
    for _ in range(2):
        _queue(runtime, "john")
        worker.run_once()
    with session_scope(runtime.database) as session:
        task, john = get_task(session=session, name="notes"), get_user(session=session, name="john")
        adapter_service.delete_version(session=session, store=runtime.store, task=task, user=john, version=1)
        first_job = session.get(Job, 1)
        assert (first_job.state, first_job.adapter_version_id) == (JobState.SUCCEEDED, None)  # history is kept
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(2, True)]
    assert not runtime.store.exists("task-1/user-1", 1)


# -- activation policy --------------------------------------------------------------------------------------------
def test_require_no_regression_keeps_a_worse_version_inactive(make_runtime) -> None:
    runtime = make_runtime(require_no_regression=True)
    _workspace(runtime)
    worker = Worker(runtime, worker_id="w")
    good = _queue(runtime, "john", FAST)
    worker.run_once()
    assert _job(runtime, good).metrics["val_macro_f1"] == 1.0  # the texts are easy: v1 is perfect on validation

    worse = _queue(runtime, "john", USELESS)
    worker.run_once()
    job = _job(runtime, worse)
    assert job.state == JobState.SUCCEEDED and job.activated is False
    assert job.metrics["val_macro_f1"] < 1.0
    assert _events(runtime, worse)[-1][1].startswith(  # clearly below: refused before the re-scoring runs
        "succeeded: version 2 (kept inactive: its validation macro-F1 ")
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, True), (2, False)]

    as_good = _queue(runtime, "john", FAST)
    worker.run_once()
    assert _job(runtime, as_good).activated is True  # a tie is no regression
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, False), (2, False), (3, True)]


def test_a_clearly_worse_version_is_kept_inactive_unless_forced(runtime: Runtime) -> None:
    _workspace(runtime)
    worker = Worker(runtime, worker_id="w")
    _queue(runtime, "john", FAST)
    worker.run_once()
    worse = _queue(runtime, "john", USELESS)
    worker.run_once()
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, True), (2, False)]
    assert "is clearly below active version 1's 1.000" in _events(runtime, worse)[-1][1]
    _queue(runtime, "john", dataclasses.replace(USELESS, force_activation=True))
    worker.run_once()
    assert [(v.version, v.is_active) for v in _versions(runtime, "john")] == [(1, False), (2, False), (3, True)]


class _Prediction(SimpleNamespace):
    pass


def _decision(*, enabled: bool, old_predictions: list[str] | None, new_f1: float, old_labels=("a", "b"),
              val_split: bool = True, load_fails: bool = False, monkeypatch) -> bool:  # noqa: ANN001
    targets = [0, 1, 0, 1]
    old = SimpleNamespace(labels=list(old_labels))

    def load_weights(*, runtime, row):  # noqa: ANN001, ARG001
        if load_fails:
            raise OSError("gone")
        return old

    monkeypatch.setattr(adapter_service, "load_weights", load_weights)
    engine = SimpleNamespace(predict=lambda pairs: [_Prediction(label=label) for label in old_predictions or []])
    runtime = SimpleNamespace(settings=Settings(require_no_regression=enabled), engine=engine)
    trainer = SimpleNamespace(val_split=SimpleNamespace(texts=["t1", "t2", "t3", "t4"], targets=torch.tensor(targets))
                              if val_split else None)
    weights = SimpleNamespace(labels=["a", "b"], meta={"metrics": {"val_macro_f1": new_f1}})
    active = None if old_predictions is None else object()
    return job_runs._should_activate(runtime, trainer, weights, active)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({"enabled": False, "old_predictions": ["a", "b", "a", "b"], "new_f1": 0.0}, True),  # off: always activate
        ({"enabled": True, "old_predictions": None, "new_f1": 0.0}, True),  # nothing active yet
        ({"enabled": True, "old_predictions": ["a", "b", "a", "b"], "new_f1": 0.5}, False),  # old is perfect
        ({"enabled": True, "old_predictions": ["a", "b", "a", "b"], "new_f1": 1.0}, True),  # a tie
        ({"enabled": True, "old_predictions": ["a", "a", "a", "a"], "new_f1": 0.5}, True),  # old macro-F1 is 1/3
        ({"enabled": True, "old_predictions": ["b", "a", "b", "a"], "new_f1": 0.1}, True),  # old scores 0
        ({"enabled": True, "old_predictions": ["a", "b", "a", "b"], "new_f1": 0.0, "old_labels": ("x", "y")}, True),
        ({"enabled": True, "old_predictions": ["a", "b", "a", "b"], "new_f1": 0.0, "val_split": False}, True),
        ({"enabled": True, "old_predictions": ["a", "b", "a", "b"], "new_f1": 0.0, "load_fails": True}, True),
    ],
)
def test_should_activate_compares_validation_scores(case: dict, expected: bool, monkeypatch) -> None:  # noqa: ANN001
    assert _decision(**case, monkeypatch=monkeypatch) is expected


# -- staleness ----------------------------------------------------------------------------------------------------
def _mark_trained(session: Session, task, user, version: int = 1) -> None:  # noqa: ANN001
    """Registers an active version with the user's current label snapshot, as a finished job does."""
    count, newest = label_snapshot(session=session, task=task, user=user)
    session.exec(update(AdapterVersion).where(AdapterVersion.task_id == task.id, AdapterVersion.user_id == user.id)
                 .values(is_active=False))
    session.add(AdapterVersion(task_id=task.id, user_id=user.id, version=version, method="head", is_active=True,
                               store_key=adapter_service.store_key(task, user), n_labels=count, labels_updated_at=newest))
    session.commit()


def _stale(session: Session, task) -> list[str]:  # noqa: ANN001
    return [user.name for user in adapter_service.stale_users(session=session, task=task)]


def test_stale_users_detects_changed_added_and_deleted_labels(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS[:10], "jane": JANE_LABELS[:10], "bob": JOHN_LABELS[:10]})
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        john, jane, bob = (get_user(session=session, name=n) for n in ("john", "jane", "bob"))
        create_user(session=session, name="carol")  # no labels: nothing to train
        assert _stale(session, task) == ["bob", "jane", "john"]  # nobody has an adapter yet

        for user in (john, jane, bob):
            _mark_trained(session, task, user)
        assert _stale(session, task) == []

        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], JANE_LABELS[:1]))  # changed
        upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS[10:11], JANE_LABELS[10:11]))  # added
        bob_first = list_labels(session=session, task=task, user=bob, limit=1)[0][0][0].id
        delete_labels(session=session, task=task, user=bob, label_ids=[bob_first])  # deleted
        assert _stale(session, task) == ["bob", "jane", "john"]

        _mark_trained(session, task, john, version=2)
        assert _stale(session, task) == ["bob", "jane"]
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:1], JANE_LABELS[:1]))  # identical
        assert _stale(session, task) == ["bob", "jane"]

        # Only the active version counts: rolling John back to v1 makes him stale again (these versions have no
        # files, so the flag is moved directly: activate_version would refuse them).
        session.exec(update(AdapterVersion).where(AdapterVersion.task_id == task.id, AdapterVersion.user_id == john.id)
                     .values(is_active=AdapterVersion.version == 1))
        session.commit()
        assert _stale(session, task) == ["bob", "jane", "john"]


def test_queue_stale_skips_users_with_pending_jobs(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS, "jane": JANE_LABELS, "bob": JOHN_LABELS})
    john_job = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        job_runs.claim_next_job(session=session, worker_id="w", job_id=john_job)  # running counts as pending
    _queue(runtime, "jane")
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        queued = job_service.queue_stale(session=session, task=task, args=FAST)
        assert [job.user_id for job in queued] == [get_user(session=session, name="bob").id]
        assert queued[0].args == FAST.to_dict()
        assert job_service.queue_stale(session=session, task=task, args=FAST) == []
        assert job_service.list_jobs(session=session, task=task)[1] == 3


# -- claiming and liveness ----------------------------------------------------------------------------------------
def test_claim_next_job_is_atomic_across_threads(runtime: Runtime) -> None:
    users = [f"user{i:02d}" for i in range(20)]  # one pending job per (user, task): twenty users, twenty jobs
    _workspace(runtime, {name: JOHN_LABELS for name in users})
    job_ids = [_queue(runtime, name) for name in users]
    barrier = threading.Barrier(8)
    claims: dict[str, list[int]] = {}
    failures: list[BaseException] = []

    def claim_all(worker_id: str) -> None:
        mine: list[int] = []
        try:
            barrier.wait()
            while True:
                with session_scope(runtime.database) as session:
                    claimed = job_runs.claim_next_job(session=session, worker_id=worker_id)
                if claimed is None:
                    break
                mine.append(claimed)
        except BaseException as error:  # noqa: BLE001
            failures.append(error)
        claims[worker_id] = mine

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    every = [job_id for mine in claims.values() for job_id in mine]
    assert sorted(every) == job_ids  # each job exactly once
    with session_scope(runtime.database) as session:
        for worker_id, mine in claims.items():
            for job_id in mine:
                job = session.get(Job, job_id)
                assert (job.state, job.worker_id, job.attempts) == (JobState.RUNNING, worker_id, 1)
        running_events = session.exec(select(func.count()).select_from(JobEvent)
                                      .where(JobEvent.message.startswith("running on worker"))).one()
        assert running_events == 20


def test_a_second_pending_job_for_the_same_user_is_refused(runtime: Runtime) -> None:
    _workspace(runtime)
    first = _queue(runtime, "john")
    with pytest.raises(ConflictError, match=rf"job {first} for user 'john' in task 'notes' is already queued"):
        _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        assert session.exec(select(func.count()).select_from(Job)).one() == 1


def test_a_decision_rule_naming_a_label_the_task_lacks_is_refused_when_queued(runtime: Runtime) -> None:
    _workspace(runtime)
    with pytest.raises(ValidationError, match=r"decision_offsets name label\(s\) \['sports'\] that task 'notes' "
                                              r"does not have; its labels are \["):
        _queue(runtime, "john", dataclasses.replace(FAST, decision_offsets={"sports": 0.5}))
    with session_scope(runtime.database) as session:
        assert session.exec(select(func.count()).select_from(Job)).one() == 0
    job_id = _queue(runtime, "john", dataclasses.replace(FAST, decision_offsets={LABELS[1]: 0.5}))
    assert _job(runtime, job_id).args["decision_offsets"] == {LABELS[1]: 0.5}


def test_claim_a_named_job_and_nothing_when_it_is_not_queued(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS, "jane": JOHN_LABELS})
    first, second = _queue(runtime, "john"), _queue(runtime, "jane")
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="w", job_id=second) == second
        assert job_runs.claim_next_job(session=session, worker_id="w", job_id=second) is None
        assert job_runs.claim_next_job(session=session, worker_id="w", job_id=999) is None
        assert job_runs.claim_next_job(session=session, worker_id="w") == first
        assert job_runs.claim_next_job(session=session, worker_id="w") is None


def test_requeue_dead_jobs_only_requeues_silent_workers(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS, "jane": JOHN_LABELS})
    dead, alive = _queue(runtime, "john"), _queue(runtime, "jane")
    with session_scope(runtime.database) as session:
        job_runs.claim_next_job(session=session, worker_id="dead-worker", job_id=dead)
        job_runs.claim_next_job(session=session, worker_id="live-worker", job_id=alive)
        session.exec(update(Job).where(Job.id == dead).values(heartbeat_at=utcnow() - timedelta(seconds=60),
                                                              progress=0.4))
        session.commit()

        assert job_runs.requeue_dead_jobs(session=session, dead_after_seconds=30) == [dead]
        assert job_runs.requeue_dead_jobs(session=session, dead_after_seconds=30) == []

    requeued, running = _job(runtime, dead), _job(runtime, alive)
    assert (requeued.state, requeued.worker_id, requeued.progress, requeued.heartbeat_at) == (
        JobState.QUEUED, None, 0.0, None)
    assert (running.state, running.worker_id) == (JobState.RUNNING, "live-worker")
    level, message = _events(runtime, dead)[-1]
    assert level == "warning" and message.startswith("requeued: worker dead-worker stopped sending heartbeats")
    assert all("requeued" not in message for _, message in _events(runtime, alive))
    with session_scope(runtime.database) as session:  # and it can be claimed again, as a second attempt
        assert job_runs.claim_next_job(session=session, worker_id="new", job_id=dead) == dead
    assert _job(runtime, dead).attempts == 2


def test_a_dead_workers_job_with_a_cancel_request_ends_cancelled(runtime: Runtime) -> None:
    """Requeued, it would run again (and could succeed) although its cancellation was asked for."""
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        job_runs.claim_next_job(session=session, worker_id="dead-worker", job_id=job_id)
        job_service.cancel_job(session=session, job=session.get(Job, job_id))
        session.exec(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=60)))
        session.commit()
        assert job_runs.requeue_dead_jobs(session=session, dead_after_seconds=30) == []
    job = _job(runtime, job_id)
    assert job.state == JobState.CANCELLED and job.finished_at is not None
    assert "dead-worker" in _events(runtime, job_id)[-1][1]
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="w") is None


# -- cancellation and failure -------------------------------------------------------------------------------------
def test_cancel_a_queued_job_then_a_finished_one_conflicts(runtime: Runtime) -> None:
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        job = job_service.cancel_job(session=session, job=session.get(Job, job_id))
        assert job.state == JobState.CANCELLED and job.finished_at is not None
        with pytest.raises(ConflictError, match=f"job {job_id} already finished \\(cancelled\\)"):
            job_service.cancel_job(session=session, job=job)
        assert job_runs.claim_next_job(session=session, worker_id="w") is None  # never runs
    assert _events(runtime, job_id)[-1][1] == "cancelled before it started"
    assert _versions(runtime, "john") == []


def test_cancel_a_running_job_stops_it_without_a_version(make_runtime) -> None:
    runtime = make_runtime(worker_heartbeat_seconds=0.05)
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        job_runs.claim_next_job(session=session, worker_id="w", job_id=job_id)
        job = job_service.cancel_job(session=session, job=session.get(Job, job_id))
        assert (job.state, job.cancel_requested) == (JobState.RUNNING, True)

    def wait_for_the_heartbeat(_fraction: float, _message: str) -> None:
        """The first progress report waits until the job's heartbeat has seen the request."""
        [beat] = [t for t in threading.enumerate() if t.name == f"heartbeat-{job_id}"]
        assert beat.cancelled.wait(30)

    job = job_runs.run_job(runtime=runtime, job_id=job_id, worker_id="w", progress=wait_for_the_heartbeat)

    assert job.state == JobState.CANCELLED and job.adapter_version_id is None
    assert _versions(runtime, "john") == []
    messages = [message for _, message in _events(runtime, job_id)]
    assert "cancellation requested" in messages and messages[-1] == "cancelled"
    with session_scope(runtime.database) as session, pytest.raises(ConflictError):
        job_service.cancel_job(session=session, job=session.get(Job, job_id))


def test_a_job_for_a_user_without_labels_fails_clearly(runtime: Runtime) -> None:
    _workspace(runtime)
    with session_scope(runtime.database) as session:
        create_user(session=session, name="bob")
    job_id = _queue(runtime, "bob")

    Worker(runtime, worker_id="w").run_once()

    job = _job(runtime, job_id)
    assert job.state == JobState.FAILED and job.finished_at is not None
    assert job.error == "user 'bob' has no labels in task 'notes' to train on"
    assert _events(runtime, job_id)[-1] == ("error", f"failed: {job.error}")
    assert _versions(runtime, "bob") == []


def test_a_job_with_too_few_labels_fails_clearly(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS[:3]})
    job_id = _queue(runtime, "john")
    Worker(runtime, worker_id="w").run_once()
    job = _job(runtime, job_id)
    assert job.state == JobState.FAILED
    assert "3 labelled texts are too few to train; at least 4 needed" in job.error


def test_a_job_taken_over_by_another_worker_registers_no_version(runtime: Runtime) -> None:
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        job_runs.claim_next_job(session=session, worker_id="w1", job_id=job_id)
        # As if w1 were declared dead and w2 had claimed the job meanwhile.
        session.exec(update(Job).where(Job.id == job_id).values(worker_id="w2"))
        session.commit()

    job = job_runs.run_job(runtime=runtime, job_id=job_id, worker_id="w1")

    assert (job.state, job.worker_id, job.adapter_version_id) == (JobState.RUNNING, "w2", None)
    assert _versions(runtime, "john") == []
    with session_scope(runtime.database) as session:
        assert session.exec(select(func.count()).select_from(AdapterVersion)).one() == 0
        task, john = get_task(session=session, name="notes"), get_user(session=session, name="john")
        assert not runtime.store.exists(adapter_service.store_key(task, john), 1)
    assert _store_leftovers(runtime) == []
    assert not any(message.startswith("succeeded") for _, message in _events(runtime, job_id))


# -- the task prior -----------------------------------------------------------------------------------------------
def test_a_user_job_starts_from_the_task_prior(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS, "jane": JANE_LABELS})
    worker = Worker(runtime, worker_id="w")
    prior_job = _queue(runtime, None)
    worker.run_once()
    assert _job(runtime, prior_job).state == JobState.SUCCEEDED
    [prior] = _versions(runtime, None)
    assert (prior.user_id, prior.version, prior.is_active, prior.n_labels) == (None, 1, True, 2 * len(TEXTS))
    assert "the task prior" in _events(runtime, prior_job)[0][1]

    # A vanishing learning rate and no calibration (which rescales a head): what the adapter holds is where it started.
    from_prior = _queue(runtime, "john", dataclasses.replace(USELESS, init_from_prior=True, calibrate=False))
    from_scratch = _queue(runtime, "jane", dataclasses.replace(USELESS, init_from_prior=False, calibrate=False))
    worker.run_once()
    worker.run_once()

    assert any("(starting from the task prior)" in m for _, m in _events(runtime, from_prior))
    assert not any("task prior" in m for _, m in _events(runtime, from_scratch))
    prior_head = runtime.store.load(prior.store_key, 1).head["weight"]
    john_head = runtime.store.load(_versions(runtime, "john")[0].store_key, 1).head["weight"]
    jane_head = runtime.store.load(_versions(runtime, "jane")[0].store_key, 1).head["weight"]
    assert torch.allclose(john_head, prior_head, atol=1e-5)
    assert not torch.allclose(jane_head, prior_head, atol=1e-3)


def test_serving_version_falls_back_to_the_prior_only_when_allowed(runtime: Runtime) -> None:
    _workspace(runtime, {"john": JOHN_LABELS, "jane": JANE_LABELS})
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        john, jane = get_user(session=session, name="john"), get_user(session=session, name="jane")
        for allow in (True, False):
            with pytest.raises(NoAdapterError, match="user 'jane' has no trained adapter for task 'notes'"):
                adapter_service.serving_version(session=session, task=task, user=jane, allow_prior=allow)

        session.add(AdapterVersion(task_id=task.id, user_id=None, version=1, method="head", store_key="p",
                                   is_active=True))
        session.commit()
        _mark_trained(session, task, john)
        session.add(AdapterVersion(task_id=task.id, user_id=jane.id, version=1, method="head", store_key="j"))
        session.commit()  # Jane has a version, but none active

        row, source = adapter_service.serving_version(session=session, task=task, user=john, allow_prior=True)
        assert (row.user_id, source) == (john.id, "user")
        row, source = adapter_service.serving_version(session=session, task=task, user=jane, allow_prior=True)
        assert (row.user_id, row.version, source) == (None, 1, "prior")
        with pytest.raises(NoAdapterError, match="user 'jane' has no trained adapter for task 'notes'.*task prior"):
            adapter_service.serving_version(session=session, task=task, user=jane, allow_prior=False)


def test_running_locally_takes_over_a_job_whose_worker_died(make_runtime) -> None:
    """A CLI run interrupted mid-training leaves its job 'running'; the next local run requeues it and finishes it."""
    from localize.jobrunner import run_jobs_locally

    runtime = make_runtime(worker_dead_after_seconds=1.0, worker_poll_seconds=0.1)
    _workspace(runtime)
    job_id = _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="cli-that-was-killed", job_id=job_id) == job_id
        session.exec(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=5)))
        session.commit()
        pending = job_service.queue_or_pending(session=session, task=get_task(session=session, name="notes"),
                                               user=get_user(session=session, name="john"), args=FAST)
        assert pending.id == job_id  # the interrupted job is picked up, not a second one queued

    finished = run_jobs_locally(runtime=runtime, job_ids=[job_id])

    assert [(job.id, job.state, job.attempts) for job in finished] == [(job_id, JobState.SUCCEEDED, 2)]
    assert any("requeued: worker cli-that-was-killed" in message for _, message in _events(runtime, job_id))


# -- the task prior comes first ---------------------------------------------------------------------------------
def test_a_users_job_queued_after_the_priors_waits_for_it_whatever_the_workers(runtime: Runtime) -> None:
    _workspace(runtime)
    prior_job, john_job = _queue(runtime, None), _queue(runtime, "john")
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="w1") == prior_job
        assert job_runs.claim_next_job(session=session, worker_id="w2") is None  # john waits for the prior
    assert job_runs.run_job(runtime=runtime, job_id=prior_job, worker_id="w1").state == JobState.SUCCEEDED
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="w2") == john_job


def test_queueing_users_with_the_default_recipe_queues_the_prior_first_when_the_task_has_none(runtime: Runtime) -> None:
    _workspace(runtime)
    recipe = TrainingArguments(max_epochs=3, prior_max_epochs=1)
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        users = [get_user(session=session, name="john")]
        jobs = job_service.queue_many(session=session, task=task, users=users, args=recipe)
        assert [job.user_id for job in jobs] == [None, users[0].id]
        # A prior pending (or active) is not queued twice; a recipe that reads no prior queues none.
        again = job_service.queue_many(session=session, task=task, users=[], args=recipe)
        assert again == []
        for job in jobs:
            job_service.cancel_job(session=session, job=job)
        assert [j.user_id for j in job_service.queue_many(session=session, task=task, users=users, args=FAST)] == \
            [users[0].id]
