"""Running training jobs: claim atomically, heartbeat, requeue when a worker dies, train, register, release.

A job's adapter is written to the store atomically and registered in the database only once complete, so a crash
never leaves a half adapter serving; a requeued job starts over. Queueing and reading jobs: :mod:`localize.services.jobs`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from localize.db.models import (
    AdapterVersion,
    Job,
    JobState,
    Task,
    User,
    utcnow,
)
from localize.db.session import session_scope
from localize.errors import AdapterError, NotFoundError, ValidationError
from localize.recipes import CHOOSE_RECIPE
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import task_recipes
from localize.services.jobs import record_event
from localize.services.labels import label_snapshot, pooled_training_rows, training_rows

if TYPE_CHECKING:  # torch comes with these: imported where a job trains, so listing jobs starts fast
    from localize.engine import AdapterWeights
    from localize.training import Trainer

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a running job when its cancellation was requested."""


class JobLost(Exception):
    """Raised when another worker took over a job this worker was running (its heartbeat was late)."""


class JobInterrupted(Exception):
    """Raised inside a running job when its worker was asked to stop: the job goes back to the queue."""


class JobFailure(Exception):
    """A job failed for a reason its message states in full (no exception type is prepended)."""


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
    record_event(session, claimed[0], f"running on worker {worker_id}")
    session.commit()
    return claimed[0]


def requeue_dead_jobs(*, session: Session, dead_after_seconds: float, max_attempts: int | None = None) -> list[int]:
    """Releases running jobs whose worker has been silent for ``dead_after_seconds`` (see ``release_job``);
    returns the ids of those requeued."""
    cutoff = utcnow() - timedelta(seconds=dead_after_seconds)
    dead = list(session.exec(select(Job).where(Job.state == JobState.RUNNING,
                                                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))))
    requeued = []
    for job_id, worker_id in [(j.id, j.worker_id) for j in dead]:
        state = release_job(session=session, job_id=job_id, worker_id=worker_id, max_attempts=max_attempts,
                            reason=f"worker {worker_id} stopped sending heartbeats")
        if state == JobState.QUEUED:
            requeued.append(job_id)
    session.commit()
    return requeued


def release_worker_jobs(
    *, session: Session, worker_id: str, reason: str, max_attempts: int | None = None
) -> dict[int, str]:
    """Releases every job the dead worker ``worker_id`` was running (its supervisor saw it die: no need to wait
    for its heartbeat to go stale); returns ``{job id: new state}``."""
    running = [job.id for job in session.exec(select(Job).where(Job.state == JobState.RUNNING,
                                                                 Job.worker_id == worker_id))]
    released = {}
    for job_id in running:
        state = release_job(session=session, job_id=job_id, worker_id=worker_id, reason=reason,
                            max_attempts=max_attempts)
        if state is not None:
            released[job_id] = state
    session.commit()
    return released


def release_job(
    *, session: Session, job_id: int, worker_id: str | None, reason: str, max_attempts: int | None = None
) -> str | None:
    """Moves a running job whose worker died (``reason`` says how) on, with an event saying why: cancelled if its
    cancellation was requested, failed once its workers died ``max_attempts`` times running it (a job that kills
    its worker must not take every worker down in turn), else back to the queue. Guarded by the worker id, so a
    job another worker already took over is left alone; returns the new state, or None. The caller commits."""
    job = session.exec(select(Job).where(Job.id == job_id)).one_or_none()
    if job is None:
        return None
    guard = (Job.id == job_id, Job.state == JobState.RUNNING,
             Job.worker_id == worker_id if worker_id is not None else Job.worker_id.is_(None))
    deaths = job.worker_deaths + 1
    if job.cancel_requested:  # its owner died before it could honour the cancellation: finish it as asked
        state, values = JobState.CANCELLED, {"finished_at": utcnow()}
        message, level = f"cancelled: {reason} after cancellation was requested", "info"
    elif max_attempts is not None and deaths >= max_attempts:
        error = (f"its worker died during each of its last {deaths} runs (the last time: {reason}); "
                 "it is not retried, since it may be what kills its worker")
        state, values = JobState.FAILED, {"finished_at": utcnow(), "error": error}
        message, level = f"failed: {error}", "error"
    else:
        limit = "" if max_attempts is None else f" (worker death {deaths} of at most {max_attempts - 1})"
        state, values = JobState.QUEUED, {"progress": 0.0, "heartbeat_at": None}
        message, level = f"requeued: {reason}; its partial output is discarded{limit}", "warning"
    moved = session.exec(update(Job).where(*guard).values(state=state, worker_id=None, worker_deaths=deaths,
                                                          **values)).rowcount
    if not moved:
        return None
    record_event(session, job_id, message, level=level)
    return state


def interrupt_job(*, session: Session, job_id: int, worker_id: str, state: str, reason: str) -> bool:
    """Ends this worker's run of a job that was stopped on purpose (its worker or command was asked to stop):
    ``queued`` gives it back to the queue (another worker starts it over), ``cancelled`` ends it. A job that
    finished or was taken over meanwhile is left alone; returns whether the job moved. Commits."""
    if state not in (JobState.QUEUED, JobState.CANCELLED):
        raise ValueError(f"an interrupted job is queued or cancelled, not {state!r}")
    values = {"progress": 0.0, "heartbeat_at": None} if state == JobState.QUEUED else {"finished_at": utcnow()}
    moved = session.exec(update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.worker_id == worker_id)
                         .values(state=state, worker_id=None, **values)).rowcount
    if moved:
        verb = "requeued" if state == JobState.QUEUED else "cancelled"
        record_event(session, job_id, f"{verb}: {reason}", level="warning" if state == JobState.QUEUED else "info")
    session.commit()
    return bool(moved)


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
    *, runtime: Runtime, job_id: int, worker_id: str, progress: Callable[[float, str], None] | None = None,
    stop_reason: Callable[[], str | None] | None = None,
) -> Job:
    """Runs a job this worker has claimed, from labels to a registered (and maybe active) adapter version.

    ``stop_reason`` is asked at every step: once it names a reason (the worker was asked to stop), the run ends
    and the job goes back to the queue with that reason."""
    heartbeat = _Heartbeat(runtime, job_id, worker_id)
    heartbeat.start()
    last_write = [0.0]

    def on_progress(fraction: float, message: str) -> None:
        if heartbeat.cancelled.is_set():
            raise JobCancelled()
        if heartbeat.lost.is_set():
            raise JobLost()
        if stop_reason is not None and (reason := stop_reason()):
            raise JobInterrupted(reason)
        if progress is not None:
            progress(fraction, message)
        now = time.monotonic()
        if now - last_write[0] >= 1.0 or fraction >= 1.0:  # progress rows are throttled, not per step
            last_write[0] = now
            with session_scope(runtime.database) as session:
                session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(progress=fraction))
                record_event(session, job_id, message)

    try:
        _train_and_register(runtime, job_id, worker_id, on_progress)
        state, error = JobState.SUCCEEDED, None
    except JobCancelled:
        state, error = JobState.CANCELLED, None
    except JobLost:
        logger.warning("job %s was taken over by another worker; dropping this run", job_id)
        state, error = None, None
    except JobInterrupted as interruption:
        state, error = JobState.QUEUED, str(interruption)
    except (ValidationError, NotFoundError, JobFailure) as failure:
        state, error = JobState.FAILED, str(failure)
    except Exception as failure:  # noqa: BLE001  (any crash fails the job with its message, the worker lives)
        logger.exception("job %s failed", job_id)
        state, error = JobState.FAILED, f"{type(failure).__name__}: {failure}"
    finally:
        heartbeat.stop.set()
        heartbeat.join()
    with session_scope(runtime.database) as session:
        if state == JobState.QUEUED:
            interrupt_job(session=session, job_id=job_id, worker_id=worker_id, state=state,
                          reason=f"{error}; it starts over on the next worker")
        elif state is not None and state != JobState.SUCCEEDED:
            session.exec(
                update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
                .values(state=state, error=error, finished_at=utcnow())
            )
            record_event(session, job_id, f"{state}" + (f": {error}" if error else ""),
                   level="error" if state == JobState.FAILED else "info")
        job = session.get(Job, job_id)
        session.refresh(job)
        return job


def _train_and_register(runtime: Runtime, job_id: int, worker_id: str, on_progress) -> AdapterVersion | None:  # noqa: ANN001
    from localize.training import Trainer

    with session_scope(runtime.database) as session:
        job = session.get(Job, job_id)
        task = session.get(Task, job.task_id)
        user = session.get(User, job.user_id) if job.user_id is not None else None
        choosing = (job.args or {}).get("recipe") == CHOOSE_RECIPE
        args = task_recipes.job_arguments(task, job.args)
        if user is None and not choosing:
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
    choice = None
    if choosing:  # whole-task training: the candidates, the winner stored on the task, and its task prior
        weights, args, choice = task_recipes.run_choice(runtime, task, texts, labels, annotators, on_progress)
        args = args.for_prior()
        if weights is None:
            return _record_choice_only(runtime, job_id, worker_id, task, choice)
        concern = None
        activate = True  # the new recipe's prior: users queued behind it start from it
    else:
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
        concern = None if args.force_activation else adapter_service.activation_concern(
            metrics=weights.meta["metrics"], active=active_row)
        activate = concern is None and _should_activate(runtime, trainer, weights, active_row)
    on_progress(1.0, "saving adapter")

    with session_scope(runtime.database) as session:
        # The job must still be ours. This guarded UPDATE also locks the job row (PostgreSQL) or the database
        # (SQLite) until commit, so no other worker can take the job over before its version is registered, and a
        # worker that lost the job writes nothing to the store.
        if not session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
                            .values(heartbeat_at=utcnow())).rowcount:
            raise JobLost()
        version = adapter_service.next_version(session=session, store=runtime.store, task=task, user=user)
        key = adapter_service.store_key(task, user)
        try:
            stored = runtime.store.save(key, version, weights,
                                        extra={"metrics": weights.meta["metrics"], "training_args": args.to_dict(),
                                               "history": weights.meta["history"]})
        except Exception as error:  # noqa: BLE001  (any store failure: a full disk, a refused write, a lost bucket)
            kept = f"version {active_row.version} stays active" if active_row is not None else "no version was added"
            raise JobFailure(f"writing adapter {key!r} version {version} to the adapter store {runtime.store!r} "
                             f"failed ({type(error).__name__}: {error}); nothing of it was kept and {kept}") from error
        try:
            row = adapter_service.register_version(session=session, task=task, user=user, weights=weights,
                                                   stored=stored, n_labels=n_labels, labels_updated_at=newest,
                                                   activate=activate)
            if choice is not None:
                task_recipes.record_choice(session=session, task=session.get(Task, task.id), choice=choice)
            job = session.get(Job, job_id)
            job.state, job.progress, job.finished_at = JobState.SUCCEEDED, 1.0, utcnow()
            job.metrics = weights.meta["metrics"] if choice is None else {**weights.meta["metrics"],
                                                                          "recipe_chosen": choice["recipe"]}
            job.adapter_version_id, job.activated = row.id, activate
            session.add(job)
            unscored = adapter_service.unscored_warning(weights.meta["metrics"])
            note = ("active" + (f", though {unscored}" if unscored else "")) if activate else "kept inactive: " + (
                concern or "it scored below the active version on this job's validation labels")
            if choice is not None:
                record_event(session, job_id, "recipe chosen: " + _choice_summary(choice))
            record_event(session, job_id, f"succeeded: version {version} ({note})",
                   level="info" if activate and not unscored else "warning")
            session.commit()
        except BaseException:
            session.rollback()
            runtime.store.delete(stored.key, stored.version)  # never leave files the database does not know
            raise
        return row


def _choice_summary(choice: dict) -> str:
    scored = [c for c in choice["candidates"] if c.get("score") is not None]
    figures = ", ".join(f"{c['name']} {c['accuracy']:.3f} / {c['macro_f1']:.3f}" for c in scored)
    return f"{choice['recipe']} (validation accuracy / macro-F1: {figures})"


def _record_choice_only(runtime: Runtime, job_id: int, worker_id: str, task: Task, choice: dict) -> None:
    """A winner that reads no task prior: the choice is all this job stores."""
    with session_scope(runtime.database) as session:
        if not session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id,
                                              Job.state == JobState.RUNNING)
                            .values(state=JobState.SUCCEEDED, progress=1.0, finished_at=utcnow(),
                                    metrics={"recipe_chosen": choice["recipe"]})).rowcount:
            raise JobLost()
        task_recipes.record_choice(session=session, task=session.get(Task, task.id), choice=choice)
        record_event(session, job_id, "recipe chosen: " + _choice_summary(choice))
        session.commit()
    return None


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
