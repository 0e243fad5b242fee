"""Tasks: a name plus a label set, shared by the users who label that kind of thing; and deleting a task with
everything stored under it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from localize.calibration import check_target_accuracy
from localize.db.models import AdapterVersion, Job, JobEvent, JobState, Label, PoolText, Task, TaskRetraining, TextSkip
from localize.names import NAME_RULE, is_valid_name
from localize.services import texts as text_service
from localize.errors import ConflictError, NotFoundError, ValidationError
from localize.validation import check_text

if TYPE_CHECKING:  # annotations only: listing tasks needs neither the runtime nor the store's imports
    from localize.runtime import Runtime
    from localize.store import AdapterStore

logger = logging.getLogger(__name__)


def check_label_set(labels: list[str]) -> list[str]:
    cleaned = [label.strip() if isinstance(label, str) else label for label in labels]
    if any(not isinstance(label, str) or not label for label in cleaned):
        raise ValidationError(f"labels {labels!r} must be non-empty strings")
    for index, label in enumerate(cleaned):
        check_text(label, field=f"labels[{index}]")
    if len(cleaned) < 2:
        raise ValidationError(f"a task needs at least 2 labels, got {cleaned}")
    if len(set(cleaned)) != len(cleaned):
        raise ValidationError(f"labels {cleaned} contain duplicates")
    too_long = [label for label in cleaned if len(label) > 128]
    if too_long:
        raise ValidationError(f"label {too_long[0]!r} is {len(too_long[0])} characters; labels may have at most 128")
    return cleaned


def create_task(*, session: Session, name: str, labels: list[str], description: str = "",
                target_accuracy: float = 0.9) -> Task:
    if not is_valid_name(name):
        raise ValidationError(f"task name {name!r} must be {NAME_RULE}")
    labels = check_label_set(labels)
    check_text(description, field="description")
    if len(description) > 2000:
        raise ValidationError(f"task description is {len(description)} characters; descriptions may have at most 2000")
    if find_task(session=session, name=name) is not None:
        raise ConflictError(f"task {name!r} already exists")
    task = Task(name=name, labels=labels, description=description,
                target_accuracy=_checked_target_accuracy(target_accuracy))
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def update_task(*, session: Session, task: Task, description: str | None = None,
                target_accuracy: float | None = None) -> Task:
    """Changes a task's settings; what is not given stays."""
    if description is not None:
        check_text(description, field="description")
        if len(description) > 2000:
            raise ValidationError(f"task description is {len(description)} characters; descriptions may have at most 2000")
        task.description = description
    if target_accuracy is not None:
        task.target_accuracy = _checked_target_accuracy(target_accuracy)
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def _checked_target_accuracy(value: float) -> float:
    try:
        return check_target_accuracy(value)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def find_task(*, session: Session, name: str) -> Task | None:
    return session.exec(select(Task).where(Task.name == name)).first()


def get_task(*, session: Session, name: str) -> Task:
    task = find_task(session=session, name=name)
    if task is None:
        raise NotFoundError(f"task {name!r} does not exist")
    return task


def ensure_task(*, session: Session, name: str, labels: list[str]) -> Task:
    """The task ``name``, created with ``labels`` if new; an existing task keeps its label set."""
    task = find_task(session=session, name=name)
    return task if task is not None else create_task(session=session, name=name, labels=labels)


def list_tasks(*, session: Session) -> list[Task]:
    return list(session.exec(select(Task).order_by(Task.name)))


# -- deletion -----------------------------------------------------------------------------------------------------
@dataclass
class TaskDeletion:
    """What deleting a task removes (or, before it is done, would remove)."""

    task: str
    users: int = 0  # users with labels in the task; the users themselves and their keys stay
    labels: int = 0
    adapter_versions: int = 0
    jobs: int = 0
    files: list[str] = field(default_factory=list)  # stored adapter versions, as the store names them
    files_not_removed: list[str] = field(default_factory=list)
    texts: int = 0  # texts that nothing else named any more, deleted with the task

    def to_dict(self) -> dict:
        return {"task": self.task, "users": self.users, "labels": self.labels,
                "adapter_versions": self.adapter_versions, "jobs": self.jobs, "texts": self.texts,
                "files": self.files, "files_not_removed": self.files_not_removed}


def deletion_plan(*, session: Session, store: AdapterStore, task: Task) -> TaskDeletion:
    """What :func:`delete_task` would remove, without removing anything."""
    labels, users = session.exec(
        select(func.count(), func.count(func.distinct(Label.user_id))).where(Label.task_id == task.id)).one()
    versions = list(session.exec(select(AdapterVersion).where(AdapterVersion.task_id == task.id)
                                 .order_by(AdapterVersion.id)))
    jobs = session.exec(select(func.count()).select_from(Job).where(Job.task_id == task.id)).one()
    return TaskDeletion(task=task.name, users=users, labels=labels, adapter_versions=len(versions), jobs=jobs,
                        files=[store.location(row.store_key, row.version) for row in versions])


def delete_task(*, session: Session, runtime: Runtime, task: Task) -> TaskDeletion:
    """Deletes ``task`` with every user's labels in it, its text pool, its adapter versions (rows and stored files),
    its jobs and their events, and then the texts no other task names; users and their keys stay. Refused while a
    job of the task is running (cancel it first): its worker would write an adapter for a task that no longer
    exists.

    The rows go in one transaction; the files after it commits, so a failure leaves files without rows (harmless,
    reported in ``files_not_removed``), never rows without files. Adapters this process holds resident are
    dropped: task ids can be reused (SQLite), and a new task must never be answered by an old task's adapter."""
    store = runtime.store
    running = session.exec(select(Job.id).where(Job.task_id == task.id, Job.state == JobState.RUNNING)).first()
    if running is not None:
        raise ConflictError(f"job {running} of task {task.name!r} is running; cancel it (or wait for it) before "
                            "deleting the task")
    plan = deletion_plan(session=session, store=store, task=task)
    text_ids = text_service.text_ids_named(session, task_id=task.id)
    versions = [(row.store_key, row.version) for row in
                session.exec(select(AdapterVersion).where(AdapterVersion.task_id == task.id))]
    job_ids = select(Job.id).where(Job.task_id == task.id)
    version_ids = select(AdapterVersion.id).where(AdapterVersion.task_id == task.id)
    session.exec(delete(JobEvent).where(JobEvent.job_id.in_(job_ids)))
    # Jobs of other tasks never point at these versions, but a job's history must not block the deletion.
    session.exec(update(Job).where(Job.adapter_version_id.in_(version_ids)).values(adapter_version_id=None))
    session.exec(delete(Job).where(Job.task_id == task.id))
    session.exec(update(AdapterVersion).where(AdapterVersion.task_id == task.id).values(encoder_version_id=None))
    session.exec(delete(AdapterVersion).where(AdapterVersion.task_id == task.id))
    session.exec(delete(Label).where(Label.task_id == task.id))
    for table in (PoolText, TextSkip, TaskRetraining):  # the labelling loop's pool, skips and setting
        session.exec(delete(table).where(table.task_id == task.id))
    session.exec(delete(Task).where(Task.id == task.id))
    session.commit()
    session.expunge_all()  # the deleted rows must not be flushed back
    plan.texts = text_service.delete_unnamed_texts(session, text_ids)
    for key, version in sorted(versions):
        location = store.location(key, version)
        try:
            store.delete(key, version)
        except Exception as error:  # noqa: BLE001  (the rows are gone; a stray file is reported, not fatal)
            logger.warning("task %r deleted, but its adapter files %s could not be removed: %s", task.name,
                           location, error)
            plan.files_not_removed.append(location)
    if "engine" in vars(runtime):  # built lazily; a process that never predicted holds nothing
        for key in versions:
            runtime.engine.evict(key)
    return plan
