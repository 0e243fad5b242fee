"""Renaming tasks, users and labels, and deleting users and labels (admin): the fixes for a typo.

Stored adapters are keyed by ids, never by names, so a rename moves no file. A label rename or deletion rewrites
the stored labels it touches (their ``updated_at`` moves), which makes every user who had one stale: their
adapters still answer with the old label set until they are retrained."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState, Label, Task, TextSkip, User, utcnow
from localize.errors import ConflictError, NotFoundError, ValidationError
from localize.names import NAME_RULE, is_valid_name
from localize.services.tasks import check_label_set, find_task
from localize.services.users import check_user_name, find_user
from localize.services import texts as text_service
from localize.suggest import did_you_mean

if TYPE_CHECKING:
    from localize.runtime import Runtime

logger = logging.getLogger(__name__)


def rename_task(*, session: Session, task: Task, name: str) -> Task:
    """Gives ``task`` a new name; its labels, adapters and jobs stay with it."""
    if not is_valid_name(name):
        raise ValidationError(f"task name {name!r} must be {NAME_RULE}")
    if name == task.name:
        return task
    if find_task(session=session, name=name) is not None:
        raise ConflictError(f"task {name!r} already exists")
    task.name = name
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def rename_user(*, session: Session, user: User, name: str) -> User:
    """Gives ``user`` a new name; their key, labels, adapters and jobs stay with them."""
    check_user_name(name)
    if name == user.name:
        return user
    if find_user(session=session, name=name) is not None:
        raise ConflictError(f"user {name!r} already exists")
    user.name = name
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


@dataclass
class UserDeletion:
    """What deleting a user removed."""

    user: str
    labels: int = 0
    adapter_versions: int = 0
    jobs: int = 0
    texts: int = 0  # texts that only their labels or skips named, deleted with them
    files_not_removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def delete_user(*, session: Session, runtime: Runtime, user: User) -> UserDeletion:
    """Deletes ``user`` with their key, their labels in every task, their adapter versions (rows and files), their
    jobs, and then the texts nothing else names (what only they labelled); other users' data stay. Refused while one of their jobs is running (its worker would
    register an adapter for a user who no longer exists). Rows go in one transaction, files after it commits."""
    running = session.exec(select(Job.id).where(Job.user_id == user.id, Job.state == JobState.RUNNING)).first()
    if running is not None:
        raise ConflictError(f"job {running} of user {user.name!r} is running; cancel it (or wait for it) before "
                            "deleting the user")
    versions = [(row.store_key, row.version) for row in
                session.exec(select(AdapterVersion).where(AdapterVersion.user_id == user.id))]
    labels = session.exec(select(func.count()).select_from(Label).where(Label.user_id == user.id)).one()
    jobs = session.exec(select(func.count()).select_from(Job).where(Job.user_id == user.id)).one()
    report = UserDeletion(user=user.name, labels=labels, adapter_versions=len(versions), jobs=jobs)
    text_ids = text_service.text_ids_named(session, user_id=user.id)
    job_ids = select(Job.id).where(Job.user_id == user.id)
    version_ids = select(AdapterVersion.id).where(AdapterVersion.user_id == user.id)
    session.exec(delete(JobEvent).where(JobEvent.job_id.in_(job_ids)))
    session.exec(update(Job).where(Job.adapter_version_id.in_(version_ids)).values(adapter_version_id=None))
    session.exec(delete(Job).where(Job.user_id == user.id))
    session.exec(delete(AdapterVersion).where(AdapterVersion.user_id == user.id))
    session.exec(delete(Label).where(Label.user_id == user.id))
    session.exec(delete(TextSkip).where(TextSkip.user_id == user.id))  # texts they skipped on the label page
    session.exec(delete(User).where(User.id == user.id))
    session.commit()
    session.expunge_all()
    report.texts = text_service.delete_unnamed_texts(session, text_ids)
    store = runtime.store
    for key, version in sorted(versions):
        try:
            store.delete(key, version)
        except Exception as error:  # noqa: BLE001  (the rows are gone; a stray file is reported, not fatal)
            logger.warning("user %r deleted, but adapter files %s could not be removed: %s", report.user,
                           store.location(key, version), error)
            report.files_not_removed.append(store.location(key, version))
    if "engine" in vars(runtime):  # built lazily; a process that never predicted holds nothing
        for key in versions:
            runtime.engine.evict(key)
    return report


@dataclass
class LabelEdit:
    """What renaming or deleting a label changed in a task."""

    task: str
    label: str
    new_label: str | None  # None: deleted
    labels: list[str]  # the task's label set afterwards
    rows: int  # stored labels rewritten (renamed) or removed (deleted)
    users: list[str]  # whose labels changed: stale until retrained

    def to_dict(self) -> dict:
        return asdict(self)


def _check_label(task: Task, label: str) -> None:
    if label not in task.labels:
        raise NotFoundError(f"label {label!r} is not one of task {task.name!r}'s labels {task.labels}"
                            f"{did_you_mean(label, task.labels)}")


def _touched_users(session: Session, task: Task, label: str) -> list[str]:
    return list(session.exec(select(User.name).where(User.id.in_(
        select(Label.user_id).where(Label.task_id == task.id, Label.label == label))).order_by(User.name)))


def rename_label(*, session: Session, task: Task, label: str, new_label: str) -> LabelEdit:
    """Renames ``label`` in ``task``'s label set and in every stored label. Renaming onto a label the set already
    has merges the two (the fix for a typo such as ``postive``)."""
    _check_label(task, label)
    merged = new_label in task.labels
    labels = [name for name in task.labels if name != label] if merged else \
        [new_label if name == label else name for name in task.labels]
    labels = check_label_set(labels)
    users = _touched_users(session, task, label)
    rows = session.exec(update(Label).where(Label.task_id == task.id, Label.label == label)
                        .values(label=new_label, updated_at=utcnow())).rowcount
    task.labels = labels
    session.add(task)
    session.commit()
    session.refresh(task)
    return LabelEdit(task=task.name, label=label, new_label=new_label, labels=list(task.labels), rows=rows,
                       users=users)


def delete_label(*, session: Session, task: Task, label: str) -> LabelEdit:
    """Removes ``label`` from ``task``'s label set with every stored label that has it (and the texts nothing else
    names then); the set keeps at least two labels."""
    _check_label(task, label)
    labels = check_label_set([name for name in task.labels if name != label])
    users = _touched_users(session, task, label)
    text_ids = text_service.text_ids_named(session, label_ids=session.exec(
        select(Label.id).where(Label.task_id == task.id, Label.label == label)).all())
    rows = session.exec(delete(Label).where(Label.task_id == task.id, Label.label == label)).rowcount
    task.labels = labels
    session.add(task)
    session.commit()
    session.refresh(task)
    text_service.delete_unnamed_texts(session, text_ids)  # texts only those labels named go with them
    return LabelEdit(task=task.name, label=label, new_label=None, labels=list(task.labels), rows=rows,
                       users=users)
