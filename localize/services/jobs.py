"""Training jobs as records: their arguments, queueing (one pending job per user), reading, cancelling.

States: ``queued -> running -> succeeded | failed | cancelled``. Workers claim and run them with
:mod:`localize.services.job_runs`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, update
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
from localize.errors import ConflictError, NotFoundError, ValidationError
from localize.recipes import TaskRecipe, recipe_name
from localize.services import adapters as adapter_service
from localize.services import task_recipes
from localize.services.limits import base_depth, check_training_arguments

if TYPE_CHECKING:  # torch comes with these: imported where a job trains, so listing jobs starts fast
    from localize.training_args import TrainingArguments

logger = logging.getLogger(__name__)


# -- queueing -----------------------------------------------------------------------------------------------------
def training_arguments(
    values: dict | None, *, default_method: str, overrides: list[str] | tuple[str, ...] = (),
    base_model: str | None = None,
) -> TrainingArguments:
    """Training arguments from a dict (a request body, an args file) plus ``key=value`` overrides; a bad value, or
    one outside its bound (see ``services.limits``; layers must exist in ``base_model``), is a ValidationError
    that names it."""
    from localize.training_args import TrainingArguments, apply_overrides

    if values is not None and not isinstance(values, dict):
        raise ValidationError(f"training arguments must be a JSON object, got {type(values).__name__}")
    merged = dict(values or {})
    merged.setdefault("method", default_method)
    try:
        args = TrainingArguments.from_dict(apply_overrides(merged, list(overrides)))
    except ValueError as error:
        raise ValidationError(str(error)) from None
    return check_training_arguments(args, num_layers=base_depth(base_model))


def arguments_or_task_recipe(
    values: dict | None, *, default_method: str, overrides: list[str] | tuple[str, ...] = (),
    base_model: str | None = None,
) -> TrainingArguments | TaskRecipe:
    """A request's training arguments; none at all (``force_activation`` aside) means the task's recipe as it
    stands when the job runs, so users' jobs follow what whole-task training chose."""
    if values is not None and not isinstance(values, dict):
        raise ValidationError(f"training arguments must be a JSON object, got {type(values).__name__}")
    force_keys = [o for o in overrides if o.split("=", 1)[0].strip() == "force_activation"]
    given = {k: v for k, v in (values or {}).items() if k != "force_activation"}
    if given or len(force_keys) != len(overrides):
        return training_arguments(values, default_method=default_method, overrides=overrides, base_model=base_model)
    checked = training_arguments(values, default_method=default_method, overrides=overrides, base_model=base_model)
    return TaskRecipe(force_activation=checked.force_activation, default_method=default_method)


def pending_job(*, session: Session, task: Task, user: User | None) -> Job | None:
    """The queued or running job of ``user`` (or of the prior) in ``task``, if any."""
    owner = Job.user_id == user.id if user is not None else Job.user_id.is_(None)
    return session.exec(
        select(Job).where(Job.task_id == task.id, owner, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
    ).first()


def queue_training(*, session: Session, task: Task, user: User | None, args: TrainingArguments | TaskRecipe) -> Job:
    """Queues training for ``user`` in ``task`` (``user=None`` trains the task prior on everyone's labels).

    One pending job per (user, task): two would race for the same adapter version."""
    strangers = sorted(set(getattr(args, "decision_offsets", None) or {}) - set(task.labels))
    if strangers:
        raise ValidationError(f"decision_offsets name label(s) {strangers} that task {task.name!r} does not have; "
                              f"its labels are {task.labels}")
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
    recipe = recipe_name(job.args, prior=user is None)
    session.add(JobEvent(job_id=job.id, message=f"queued: train {who} with {recipe} in task {task.name!r}"))
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


def queue_stale(*, session: Session, task: Task, args: TrainingArguments | TaskRecipe) -> list[Job]:
    """Queues a job for every user whose labels changed since their adapter, unless one is already pending."""
    return queue_many(session=session, task=task, users=adapter_service.stale_users(session=session, task=task),
                      args=args, skip_pending=True)


def queue_or_pending(*, session: Session, task: Task, user: User | None, args: TrainingArguments | TaskRecipe) -> Job:
    """The user's pending job if there is one (queued, or running: perhaps on a worker that died), else a new one."""
    pending = pending_job(session=session, task=task, user=user)
    return pending if pending is not None else queue_training(session=session, task=task, user=user, args=args)


def queue_many(
    *, session: Session, task: Task, users: list[User], args: TrainingArguments | TaskRecipe,
    prior: bool | None = None, skip_pending: bool = False,
) -> list[Job]:
    """Queues the prior (first, so users can start from it) and then each user; with ``skip_pending`` users who
    already have a pending job are left out instead of refused. ``prior=None`` queues the prior when the users'
    recipe reads one (the default: heads on the task prior) and the task has none yet, active or pending."""
    if prior is None:
        reads = task_recipes.task_arguments(task, args.default_method) if isinstance(args, TaskRecipe) else args
        prior = bool(users) and reads.init_from_prior and reads.train_scope == "head" \
            and adapter_service.active_version(session=session, task=task, user=None) is None \
            and pending_job(session=session, task=task, user=None) is None
    targets: list[User | None] = ([None] if prior else []) + list(users)
    jobs = []
    for user in targets:
        if skip_pending and pending_job(session=session, task=task, user=user) is not None:
            continue
        jobs.append(queue_training(session=session, task=task, user=user, args=args))
    return jobs


def queue_whole_task(*, session: Session, task: Task, users: list[User], force_activation: bool = False,
                     default_method: str | None = None) -> list[Job]:
    """Whole-task training: a job that chooses the task's recipe on every user's labels (unless an admin pinned
    one: then the pinned recipe's prior, when it reads one), then each user's job, which waits for it and trains
    with the task's recipe as it then stands."""
    users_args = TaskRecipe(force_activation=force_activation, default_method=default_method)
    if task_recipes.is_pinned(task):
        return queue_many(session=session, task=task, users=users, args=users_args,
                          prior=task_recipes.task_arguments(task).init_from_prior)
    jobs = [queue_training(session=session, task=task, user=None, args=TaskRecipe(choose=True))]
    return jobs + queue_many(session=session, task=task, users=users, args=users_args, prior=False)


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
            record_event(session, job.id, "cancelled before it started")
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
    record_event(session, job.id, "cancellation requested")
    session.commit()
    session.refresh(job)
    return job


def cancel_abandoned(*, session: Session, job_ids: list[int], worker_id: str, reason: str) -> dict[int, str]:
    """Cancels what a command that was interrupted leaves behind: the job it ran (still ``running`` under its
    ``worker_id``) and those of ``job_ids`` still queued, each with an event giving ``reason``. Jobs another
    worker runs and finished jobs are left alone; returns ``{job id: "cancelled"}`` for those it cancelled."""
    cancelled = {}
    for job_id in job_ids:
        moved = session.exec(
            update(Job).where(Job.id == job_id, or_(Job.state == JobState.QUEUED,
                                                    (Job.state == JobState.RUNNING) & (Job.worker_id == worker_id)))
            .values(state=JobState.CANCELLED, worker_id=None, finished_at=utcnow(), cancel_requested=True)
        ).rowcount
        if moved:
            record_event(session, job_id, f"cancelled: {reason}")
            cancelled[job_id] = JobState.CANCELLED
    session.commit()
    return cancelled


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
        id=job.id, task=task.name, user=None if user is None else user.name,
        recipe=recipe_name(job.args or {}, prior=job.user_id is None), state=job.state,
        progress=job.progress, args=job.args, metrics=job.metrics, error=job.error,
        adapter_version=None if version is None else version.version, activated=job.activated,
        attempts=job.attempts, created_at=aware(job.created_at), started_at=aware(job.started_at),
        finished_at=aware(job.finished_at), events=events,
    )


def record_event(session: Session, job_id: int, message: str, level: str = "info") -> None:
    session.add(JobEvent(job_id=job_id, message=message, level=level))
