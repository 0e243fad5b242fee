"""The labelling loop: a user answers (or skips) one pool text at a time; an answer can be taken back.

An answer is stored through :func:`localize.services.labels.upsert_labels`, with the same checks as an upload,
and may queue the user's automatic retraining (:mod:`localize.services.retraining`).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete as sa_delete
from sqlmodel import Session, select

from localize.db.models import Job, Label, Task, Text, TextSkip, User
from localize.errors import NoAdapterError, NotFoundError, ValidationError
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import retraining
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, PredictionResult, predict
from localize.services.text_pool import get_text


@dataclass
class Answer:
    text_id: int
    text: str
    label: str
    guess: PredictionResult | None  # what the user's model (or the task prior) said, shown only after answering
    job: Job | None  # the retraining job this answer queued, if any


def model_guess(*, session: Session, runtime: Runtime, task: Task, user: User, text: str) -> PredictionResult | None:
    """The user's current model's answer (the task prior's for a user without one); None when neither exists."""
    try:
        return predict(session=session, runtime=runtime, allow_prior=True,
                       requests=[PredictionRequest(user=user.name, task=task.name, text=text)])[0]
    except NoAdapterError:
        return None


def answer(*, session: Session, runtime: Runtime, task: Task, user: User, text_id: int, label: str) -> Answer:
    """Stores ``user``'s ``label`` for pool text ``text_id``; returns it with the model's guess, made before the
    label was stored, and the retraining job it queued."""
    text = get_text(session=session, task=task, text_id=text_id)
    if label not in task.labels:
        raise ValidationError(f"label {label!r} is not one of task {task.name!r}'s labels {task.labels}")
    guess = model_guess(session=session, runtime=runtime, task=task, user=user, text=text.body)
    report = upsert_labels(session=session, task=task, max_text_chars=runtime.settings.max_text_chars,
                           rows=[LabelRow(line=1, user=user.name, text=text.body, label=label)])
    if report.errors:
        raise ValidationError(report.errors[0].message)
    session.exec(sa_delete(TextSkip).where(TextSkip.user_id == user.id, TextSkip.task_id == task.id,
                                           TextSkip.text_id == text.id))
    session.commit()
    job = retraining.maybe_queue_retraining(session=session, task=task, user=user,
                                            default_method=runtime.settings.default_method)
    return Answer(text_id=text.id, text=text.body, label=label, guess=guess, job=job)


def skip(*, session: Session, task: Task, user: User, text_id: int) -> Text:
    """Leaves pool text ``text_id`` out of ``user``'s queue until the skip is undone."""
    text = get_text(session=session, task=task, text_id=text_id)
    exists = session.exec(select(TextSkip).where(TextSkip.user_id == user.id, TextSkip.task_id == task.id,
                                                 TextSkip.text_id == text.id)).first()
    if exists is None:
        session.add(TextSkip(user_id=user.id, task_id=task.id, text_id=text.id))
        session.commit()
    return text


def undo(*, session: Session, task: Task, user: User, text_id: int, action: str) -> Text:
    """Takes back ``user``'s answer (``action="label"``: deletes the label) or skip of pool text ``text_id``."""
    text = get_text(session=session, task=task, text_id=text_id)
    table = {"label": Label, "skip": TextSkip}.get(action)
    if table is None:
        raise ValidationError(f"action {action!r} is not one of ['label', 'skip']")
    removed = session.exec(sa_delete(table).where(table.user_id == user.id, table.task_id == task.id,
                                                  table.text_id == text.id)).rowcount
    if not removed:
        session.rollback()
        raise NotFoundError(f"user {user.name!r} has no {action} of text {text_id} in task {task.name!r} to undo")
    session.commit()
    return text
