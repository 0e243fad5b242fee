"""Training jobs: queue, claim atomically, heartbeat, requeue when a worker dies, run, cancel.

States: ``queued -> running -> succeeded | failed | cancelled``. A job's adapter is written to the store
atomically and registered in the database only once complete, so a crash never leaves a half adapter
serving; a requeued job starts over.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import exists, func, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from localize.db.models import (
    AdapterVersion,
    Job,
    JobEvent,
    JobEventPublic,
    JobPublic,
    JobState,
    Task,
    User,
    aware,
    utcnow,
)
from localize.db.session import session_scope
from localize.engine import AdapterWeights
from localize.errors import AdapterError, ConflictError, NotFoundError, ValidationError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services.labels import label_snapshot, pooled_training_rows, training_rows
from localize.training import Trainer, TrainingArguments, apply_overrides

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a running job when its cancellation was requested."""


class JobLost(Exception):
    """Raised when another worker took over a job this worker was running (its heartbeat was late)."""


# -- queueing -----------------------------------------------------------------------------------------------------
def training_arguments(
    values: dict | None, *, default_method: str, overrides: list[str] | tuple[str, ...] = ()
) -> TrainingArguments:
    """Training arguments from a dict (a request body, an args file) plus ``key=value`` overrides; a bad value is
    a ValidationError that names it."""
    if values is not None and not isinstance(values, dict):
        raise ValidationError(f"training arguments must be a JSON object, got {type(values).__name__}")
    merged = dict(values or {})
    merged.setdefault("method", default_method)
    try:
        return TrainingArguments.from_dict(apply_overrides(merged, list(overrides)))
    except ValueError as error:
        raise ValidationError(str(error)) from None


def pending_job(*, session: Session, task: Task, user: User | None) -> Job | None:
    """The queued or running job of ``user`` (or of the prior) in ``task``, if any."""
    owner = Job.user_id == user.id if user is not None else Job.user_id.is_(None)
    return session.exec(
        select(Job).where(Job.task_id == task.id, owner, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
    ).first()


def queue_training(*, session: Session, task: Task, user: User | None, args: TrainingArguments) -> Job:
    """Queues training for ``user`` in ``task`` (``user=None`` trains the task prior on everyone's labels).

    One pending job per (user, task): two would race for the same adapter version."""
    _lock_owner(session, task, user)
    pending = pending_job(session=session, task=task, user=user)
    if pending is not None:
        who = f"user {user.name!r}" if user is not None else "the task prior"
        raise ConflictError(f"job {pending.id} for {who} in task {task.name!r} is already {pending.state}; "
                            "wait for it or cancel it")
    job = Job(task_id=task.id, user_id=None if user is None else user.id, args=args.to_dict())
    session.add(job)
    session.flush()
    who = f"user {user.name!r}" if user is not None else "the task prior"
    session.add(JobEvent(job_id=job.id, message=f"queued: train {args.method} adapter for {who} in task {task.name!r}"))
    session.commit()
    session.refresh(job)
    return job


def _lock_owner(session: Session, task: Task, user: User | None) -> None:
    """Serializes queueing for one (user, task) across processes and machines, so the pending check and the insert
    cannot interleave: a row lock on the user (or on the task, for the prior) held until commit."""
    table, row_id = (User, user.id) if user is not None else (Task, task.id)
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks; a no-op write takes the database's write lock now instead of at the insert.
        session.exec(update(table).where(table.id == row_id).values(id=table.id))
    else:
        # FOR NO KEY UPDATE: label inserts that reference the row (foreign-key checks) are not blocked.
        session.exec(select(table.id).where(table.id == row_id).with_for_update(key_share=True)).first()


def queue_stale(*, session: Session, task: Task, args: TrainingArguments) -> list[Job]:
    """Queues a job for every user whose labels changed since their adapter, unless one is already pending."""
    return queue_many(session=session, task=task, users=adapter_service.stale_users(session=session, task=task),
                      args=args, skip_pending=True)


def queue_or_pending(*, session: Session, task: Task, user: User | None, args: TrainingArguments) -> Job:
    """The user's pending job if there is one (queued, or running: perhaps on a worker that died), else a new one."""
    pending = pending_job(session=session, task=task, user=user)
    return pending if pending is not None else queue_training(session=session, task=task, user=user, args=args)


def queue_many(
    *, session: Session, task: Task, users: list[User], args: TrainingArguments, prior: bool | None = None,
    skip_pending: bool = False,
) -> list[Job]:
    """Queues the prior (first, so users can start from it) and then each user; with ``skip_pending`` users who
    already have a pending job are left out instead of refused. ``prior=None`` queues the prior when the users'
    recipe reads one (the default: heads on the task prior) and the task has none yet, active or pending."""
    if prior is None:
        prior = bool(users) and args.init_from_prior and args.train_scope == "head" \
            and adapter_service.active_version(session=session, task=task, user=None) is None \
            and pending_job(session=session, task=task, user=None) is None
    targets: list[User | None] = ([None] if prior else []) + list(users)
    jobs = []
    for user in targets:
        if skip_pending and pending_job(session=session, task=task, user=user) is not None:
            continue
        jobs.append(queue_training(session=session, task=task, user=user, args=args))
    return jobs


def get_job(*, session: Session, job_id: int, user: User | None = None) -> Job:
    """The job ``job_id``; with ``user``, only if it is that user's (others' jobs do not exist for them)."""
    job = session.get(Job, job_id)
    if job is None or (user is not None and job.user_id != user.id):
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def list_jobs(
    *, session: Session, user: User | None = None, task: Task | None = None, state: str | None = None,
    offset: int = 0, limit: int = 100,
) -> tuple[list[Job], int]:
    query = select(Job)
    if user is not None:
        query = query.where(Job.user_id == user.id)
    if task is not None:
        query = query.where(Job.task_id == task.id)
    if state is not None:
        query = query.where(Job.state == state)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    return list(session.exec(query.order_by(Job.id.desc()).offset(offset).limit(limit))), count


def cancel_job(*, session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one stops at its next step."""
    if job.state in JobState.FINISHED:
        raise ConflictError(f"job {job.id} already finished ({job.state}); it cannot be cancelled")
    if job.state == JobState.QUEUED:
        claimed = session.exec(
            update(Job).where(Job.id == job.id, Job.state == JobState.QUEUED)
            .values(state=JobState.CANCELLED, finished_at=utcnow(), cancel_requested=True)
        ).rowcount
        if claimed:
            _event(session, job.id, "cancelled before it started")
            session.commit()
            session.refresh(job)
            return job
    requested = session.exec(
        update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING).values(cancel_requested=True)
    ).rowcount
    if not requested:  # it finished (or was requeued and cancelled) in the meantime
        session.rollback()
        session.refresh(job)
        raise ConflictError(f"job {job.id} is {job.state}; it can no longer be cancelled")
    _event(session, job.id, "cancellation requested")
    session.commit()
    session.refresh(job)
    return job


def job_public(*, session: Session, job: Job, with_events: bool = True) -> JobPublic:
    task = session.get(Task, job.task_id)
    user = session.get(User, job.user_id) if job.user_id is not None else None
    version = session.get(AdapterVersion, job.adapter_version_id) if job.adapter_version_id else None
    events = []
    if with_events:
        events = [
            JobEventPublic(created_at=aware(e.created_at), level=e.level, message=e.message)
            for e in session.exec(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
        ]
    return JobPublic(
        id=job.id, task=task.name, user=None if user is None else user.name, state=job.state,
        progress=job.progress, args=job.args, metrics=job.metrics, error=job.error,
        adapter_version=None if version is None else version.version, activated=job.activated,
        attempts=job.attempts, created_at=aware(job.created_at), started_at=aware(job.started_at),
        finished_at=aware(job.finished_at), events=events,
    )


def _event(session: Session, job_id: int, message: str, level: str = "info") -> None:
    session.add(JobEvent(job_id=job_id, message=message, level=level))


# -- claiming and liveness ----------------------------------------------------------------------------------------
def claim_next_job(*, session: Session, worker_id: str, job_id: int | None = None) -> int | None:
    """Atomically moves the oldest queued job (or job ``job_id``) to ``running`` for this worker; ``None`` if
    there is none to claim.

    One UPDATE with a guarded subquery: two workers can never both win the same row. On PostgreSQL the
    subquery takes a row lock and skips rows other workers hold. A user's job queued after its task's prior job
    waits until that prior has finished, so it starts from the new prior (the default recipe reads it) even when
    several workers run at once."""
    now = utcnow()
    candidate = select(Job.id).where(Job.state == JobState.QUEUED)
    if job_id is not None:
        candidate = candidate.where(Job.id == job_id)
    else:
        prior = aliased(Job)
        waiting_for_prior = exists().where(prior.task_id == Job.task_id, prior.user_id.is_(None), prior.id < Job.id,
                                           prior.state.in_([JobState.QUEUED, JobState.RUNNING]))
        candidate = candidate.where(or_(Job.user_id.is_(None), ~waiting_for_prior))
    candidate = candidate.order_by(Job.id).limit(1).with_for_update(skip_locked=True).scalar_subquery()
    claimed = session.exec(
        update(Job).where(Job.id == candidate, Job.state == JobState.QUEUED)
        .values(state=JobState.RUNNING, worker_id=worker_id, attempts=Job.attempts + 1, started_at=now,
                heartbeat_at=now, progress=0.0)
        .returning(Job.id)
    ).first()
    if claimed is None:
        session.rollback()
        return None
    _event(session, claimed[0], f"running on worker {worker_id}")
    session.commit()
    return claimed[0]


def requeue_dead_jobs(*, session: Session, dead_after_seconds: float) -> list[int]:
    """Requeues running jobs whose worker has been silent for ``dead_after_seconds``; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=dead_after_seconds)
    dead = list(session.exec(select(Job).where(Job.state == JobState.RUNNING,
                                                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))))
    requeued = []
    for job_id, worker_id, cancel_requested in [(j.id, j.worker_id, j.cancel_requested) for j in dead]:
        guard = (Job.id == job_id, Job.state == JobState.RUNNING, Job.worker_id == worker_id)
        if cancel_requested:  # its owner died before it could honour the cancellation: finish it as asked
            moved = session.exec(update(Job).where(*guard).values(state=JobState.CANCELLED, worker_id=None,
                                                                  finished_at=utcnow())).rowcount
            if moved:
                _event(session, job_id, f"cancelled: worker {worker_id} died after cancellation was requested")
            continue
        moved = session.exec(
            update(Job).where(*guard).values(state=JobState.QUEUED, worker_id=None, progress=0.0, heartbeat_at=None)
        ).rowcount
        if moved:
            _event(session, job_id, f"requeued: worker {worker_id} stopped sending heartbeats; "
                                    "its partial output is discarded", level="warning")
            requeued.append(job_id)
    session.commit()
    return requeued


class _Heartbeat(threading.Thread):
    """Records that this worker is alive and notices cancellation or loss of the job."""

    def __init__(self, runtime: Runtime, job_id: int, worker_id: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.runtime, self.job_id, self.worker_id = runtime, job_id, worker_id
        self.stop = threading.Event()
        self.cancelled = threading.Event()
        self.lost = threading.Event()

    def beat(self) -> None:
        with session_scope(self.runtime.database) as session:
            alive = session.exec(
                update(Job).where(Job.id == self.job_id, Job.worker_id == self.worker_id, Job.state == JobState.RUNNING)
                .values(heartbeat_at=utcnow())
            ).rowcount
            if not alive:
                self.lost.set()
            elif session.exec(select(Job.cancel_requested).where(Job.id == self.job_id)).one():
                self.cancelled.set()

    def run(self) -> None:
        while not self.stop.wait(self.runtime.settings.worker_heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # noqa: BLE001  (a missed beat is retried; the job itself decides)
                logger.exception("heartbeat of job %s failed", self.job_id)


# -- running ------------------------------------------------------------------------------------------------------
def run_job(
    *, runtime: Runtime, job_id: int, worker_id: str, progress: Callable[[float, str], None] | None = None
) -> Job:
    """Runs a job this worker has claimed, from labels to a registered (and maybe active) adapter version."""
    heartbeat = _Heartbeat(runtime, job_id, worker_id)
    heartbeat.start()
    last_write = [0.0]

    def on_progress(fraction: float, message: str) -> None:
        if heartbeat.cancelled.is_set():
            raise JobCancelled()
        if heartbeat.lost.is_set():
            raise JobLost()
        if progress is not None:
            progress(fraction, message)
        now = time.monotonic()
        if now - last_write[0] >= 1.0 or fraction >= 1.0:  # progress rows are throttled, not per step
            last_write[0] = now
            with session_scope(runtime.database) as session:
                session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(progress=fraction))
                _event(session, job_id, message)

    try:
        _train_and_register(runtime, job_id, worker_id, on_progress)
        state, error = JobState.SUCCEEDED, None
    except JobCancelled:
        state, error = JobState.CANCELLED, None
    except JobLost:
        logger.warning("job %s was taken over by another worker; dropping this run", job_id)
        state, error = None, None
    except (ValidationError, NotFoundError) as failure:
        state, error = JobState.FAILED, str(failure)
    except Exception as failure:  # noqa: BLE001  (any crash fails the job with its message, the worker lives)
        logger.exception("job %s failed", job_id)
        state, error = JobState.FAILED, f"{type(failure).__name__}: {failure}"
    finally:
        heartbeat.stop.set()
        heartbeat.join()
    with session_scope(runtime.database) as session:
        if state is not None and state != JobState.SUCCEEDED:
            session.exec(
                update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
                .values(state=state, error=error, finished_at=utcnow())
            )
            _event(session, job_id, f"{state}" + (f": {error}" if error else ""),
                   level="error" if state == JobState.FAILED else "info")
        job = session.get(Job, job_id)
        session.refresh(job)
        return job


def _train_and_register(runtime: Runtime, job_id: int, worker_id: str, on_progress) -> AdapterVersion:  # noqa: ANN001
    with session_scope(runtime.database) as session:
        job = session.get(Job, job_id)
        task = session.get(Task, job.task_id)
        user = session.get(User, job.user_id) if job.user_id is not None else None
        args = TrainingArguments.from_dict(job.args)
        if user is None:
            args = args.for_prior()
        annotators = None  # a prior also learns who gave each label
        if user is None:
            texts, labels, annotators = pooled_training_rows(session=session, task=task)
        else:
            texts, labels = training_rows(session=session, task=task, user=user)
        if user is not None:
            n_labels, newest = label_snapshot(session=session, task=task, user=user)
        else:
            n_labels, newest = len(texts), None
        prior_row = adapter_service.active_version(session=session, task=task, user=None) if user is not None else None
        active_row = adapter_service.active_version(session=session, task=task, user=user)
    if not texts:
        who = f"user {user.name!r}" if user is not None else "any user"
        raise ValidationError(f"{who} has no labels in task {task.name!r} to train on")
    init = None
    if user is not None and args.init_from_prior and prior_row is not None:
        try:
            init = adapter_service.load_serving_weights(runtime=runtime, row=prior_row)
        except AdapterError as error:  # a damaged prior never blocks a user's own training
            on_progress(0.0, f"the task prior cannot be loaded, training from scratch: {error}")
    trainer = Trainer(runtime.base, args, texts, labels, task.labels, init=init,
                      cache=runtime.activation_cache, progress=on_progress, annotators=annotators)
    trainer.prepare()
    on_progress(0.0, f"training on {len(trainer.train_split.texts)} labels, validating on "
                     f"{0 if trainer.val_split is None else len(trainer.val_split.texts)}"
                     + (" (starting from the task prior)" if trainer.init is not None and init is not None else ""))
    trainer.fit()
    weights = trainer.result()
    activate = _should_activate(runtime, trainer, weights, active_row)
    on_progress(1.0, "saving adapter")

    with session_scope(runtime.database) as session:
        # The job must still be ours. This guarded UPDATE also locks the job row (PostgreSQL) or the database
        # (SQLite) until commit, so no other worker can take the job over before its version is registered, and a
        # worker that lost the job writes nothing to the store.
        if not session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
                            .values(heartbeat_at=utcnow())).rowcount:
            raise JobLost()
        version = adapter_service.next_version(session=session, store=runtime.store, task=task, user=user)
        stored = runtime.store.save(adapter_service.store_key(task, user), version, weights,
                                    extra={"metrics": weights.meta["metrics"], "training_args": args.to_dict(),
                                           "history": weights.meta["history"]})
        try:
            row = adapter_service.register_version(session=session, task=task, user=user, weights=weights,
                                                   stored=stored, n_labels=n_labels, labels_updated_at=newest,
                                                   activate=activate)
            job = session.get(Job, job_id)
            job.state, job.progress, job.finished_at = JobState.SUCCEEDED, 1.0, utcnow()
            job.metrics = weights.meta["metrics"]
            job.adapter_version_id, job.activated = row.id, activate
            session.add(job)
            note = "active" if activate else "kept inactive: it scored below the active version on validation"
            _event(session, job_id, f"succeeded: version {version} ({note})")
            session.commit()
        except BaseException:
            session.rollback()
            runtime.store.delete(stored.key, stored.version)  # never leave files the database does not know
            raise
        return row


def _should_activate(runtime: Runtime, trainer: Trainer, weights: AdapterWeights, active_row) -> bool:  # noqa: ANN001
    """With ``require_no_regression``, a new version replaces the active one only if it scores at least as well
    on this job's validation labels."""
    if not runtime.settings.require_no_regression or active_row is None or trainer.val_split is None:
        return True
    try:
        old = adapter_service.load_weights(runtime=runtime, row=active_row)
    except Exception:  # noqa: BLE001  (an unreadable active version never blocks a good new one)
        return True
    if old.labels != weights.labels:
        return True
    texts = trainer.val_split.texts
    targets = trainer.val_split.targets.tolist()
    from localize.training import classification_metrics

    old_predictions = runtime.engine.predict([(old, text) for text in texts])
    old_score = classification_metrics(targets, [old.labels.index(p.label) for p in old_predictions], len(old.labels))
    new_score = weights.meta["metrics"].get("val_macro_f1", 0.0)
    return new_score >= old_score["macro_f1"]
