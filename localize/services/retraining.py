"""Automatic retraining: after a task's ``retrain_every`` new labels a user's training job is queued by itself.

Debounced by counting: the labels that changed since the user's latest job was queued are what count, so a job
is queued once per ``retrain_every`` labels however fast they come, never while the user has a job pending (the
one-pending-job rule of :func:`localize.services.jobs.queue_training` holds), and a burst that arrives while a
job runs queues the next one at the first label after it finished.
"""
from __future__ import annotations

import logging

from sqlalchemy import func
from sqlmodel import Session, select

from localize.db.models import Job, JobEvent, Label, Task, TaskRetraining, User, aware, utcnow
from localize.errors import ConflictError, ValidationError
from localize.services import jobs as job_service

logger = logging.getLogger(__name__)

DEFAULT_RETRAIN_EVERY = 20
MAX_RETRAIN_EVERY = 100_000


def retrain_every(*, session: Session, task: Task) -> int:
    """How many new labels queue a user's job in ``task`` (0: automatic retraining is off)."""
    row = session.get(TaskRetraining, task.id)
    return DEFAULT_RETRAIN_EVERY if row is None else row.retrain_every


def set_retrain_every(*, session: Session, task: Task, every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or not 0 <= every <= MAX_RETRAIN_EVERY:
        raise ValidationError(f"retrain_every={every!r} must be a whole number from 0 (off) to {MAX_RETRAIN_EVERY}")
    row = session.get(TaskRetraining, task.id) or TaskRetraining(task_id=task.id)
    row.retrain_every, row.updated_at = every, utcnow()
    session.add(row)
    session.commit()
    return every


def latest_job(*, session: Session, task: Task, user: User) -> Job | None:
    return session.exec(select(Job).where(Job.task_id == task.id, Job.user_id == user.id)
                        .order_by(Job.id.desc())).first()


def new_labels(*, session: Session, task: Task, user: User) -> int:
    """The user's labels in ``task`` that changed since their latest job was queued (all of them before one)."""
    query = select(func.count()).select_from(Label).where(Label.task_id == task.id, Label.user_id == user.id)
    job = latest_job(session=session, task=task, user=user)
    if job is not None:
        query = query.where(Label.updated_at > aware(job.created_at))
    return session.exec(query).one()


def status(*, session: Session, task: Task, user: User) -> dict:
    """What the label page shows: new labels so far, the threshold, and the pending job if any."""
    every = retrain_every(session=session, task=task)
    count = new_labels(session=session, task=task, user=user)
    pending = job_service.pending_job(session=session, task=task, user=user)
    return {"retrain_every": every, "new_labels": count, "pending_job": pending,
            "labels_to_go": None if every == 0 else max(every - count, 0)}


def maybe_queue_retraining(*, session: Session, task: Task, user: User, default_method: str) -> Job | None:
    """Queues the user's job with the task's recipe (what whole-task training chose, else the default) when
    ``retrain_every`` new labels have come in and none is pending; returns the job it queued, else None."""
    every = retrain_every(session=session, task=task)
    if every == 0 or job_service.pending_job(session=session, task=task, user=user) is not None:
        return None
    if new_labels(session=session, task=task, user=user) < every:
        return None
    args = job_service.arguments_or_task_recipe(None, default_method=default_method)  # the task's recipe
    try:
        job = job_service.queue_training(session=session, task=task, user=user, args=args)
    except ConflictError:  # a concurrent answer queued it first
        session.rollback()
        return None
    session.add(JobEvent(job_id=job.id, message=f"queued automatically after {every} new labels"))
    session.commit()
    logger.info("queued job %s for user %s in task %s after %s new labels", job.id, user.name, task.name, every)
    return job
