"""Tasks: a name plus a label set, shared by the users who label that kind of thing."""
from __future__ import annotations

from sqlmodel import Session, select

from localize.db.models import Task
from localize.names import NAME_RULE, is_valid_name
from localize.errors import ConflictError, NotFoundError, ValidationError


def check_label_set(labels: list[str]) -> list[str]:
    cleaned = [label.strip() if isinstance(label, str) else label for label in labels]
    if any(not isinstance(label, str) or not label for label in cleaned):
        raise ValidationError(f"labels {labels!r} must be non-empty strings")
    if len(cleaned) < 2:
        raise ValidationError(f"a task needs at least 2 labels, got {cleaned}")
    if len(set(cleaned)) != len(cleaned):
        raise ValidationError(f"labels {cleaned} contain duplicates")
    too_long = [label for label in cleaned if len(label) > 128]
    if too_long:
        raise ValidationError(f"label {too_long[0]!r} is {len(too_long[0])} characters; labels may have at most 128")
    return cleaned


def create_task(*, session: Session, name: str, labels: list[str], description: str = "") -> Task:
    if not is_valid_name(name):
        raise ValidationError(f"task name {name!r} must be {NAME_RULE}")
    labels = check_label_set(labels)
    if len(description) > 2000:
        raise ValidationError(f"task description is {len(description)} characters; descriptions may have at most 2000")
    if find_task(session=session, name=name) is not None:
        raise ConflictError(f"task {name!r} already exists")
    task = Task(name=name, labels=labels, description=description)
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


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
