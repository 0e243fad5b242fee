"""Adapter versions per (user, task): register, list, activate (rollback), delete, load for serving."""
from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, update
from sqlmodel import Session, select

from localize.db.models import AdapterVersion, Job, Label, Task, User, aware
from localize.engine import AdapterWeights
from localize.errors import ConflictError, NoAdapterError, NotFoundError
from localize.runtime import Runtime
from localize.store import AdapterStore, LocalAdapterStore, StoredAdapter


def store_key(task: Task, user: User | None) -> str:
    """Store keys use database ids, never names a client sent."""
    return f"task-{task.id}/" + (f"user-{user.id}" if user is not None else "prior")


def _owner(query, task: Task, user: User | None):  # noqa: ANN001, ANN202
    query = query.where(AdapterVersion.task_id == task.id)
    return query.where(AdapterVersion.user_id == user.id) if user is not None else query.where(
        AdapterVersion.user_id.is_(None)
    )


def next_version(*, session: Session, store: AdapterStore, task: Task, user: User | None) -> int:
    """The next free version number. A folder left by a worker that died before registering it is partial
    output: it is discarded here."""
    latest = session.exec(_owner(select(func.max(AdapterVersion.version)), task, user)).one() or 0
    version = latest + 1
    if store.exists(store_key(task, user), version):
        store.delete(store_key(task, user), version)
    return version


def register_version(
    *,
    session: Session,
    task: Task,
    user: User | None,
    weights: AdapterWeights,
    stored: StoredAdapter,
    n_labels: int,
    labels_updated_at,
    activate: bool,
) -> AdapterVersion:
    row = AdapterVersion(
        task_id=task.id,
        user_id=None if user is None else user.id,
        version=stored.version,
        method=weights.method.name,
        store_key=stored.key,
        files=stored.files,
        metrics=weights.meta.get("metrics", {}),
        training_args=weights.meta.get("training_args", {}),
        n_labels=n_labels,
        labels_updated_at=labels_updated_at,
        trainable_params=weights.trainable_params,
        nbytes=stored.nbytes,
    )
    session.add(row)
    session.flush()
    if activate:
        _activate(session, row)
    return row


def _activate(session: Session, row: AdapterVersion) -> None:
    owner = AdapterVersion.user_id == row.user_id if row.user_id is not None else AdapterVersion.user_id.is_(None)
    session.exec(
        update(AdapterVersion).where(AdapterVersion.task_id == row.task_id, owner, AdapterVersion.id != row.id)
        .values(is_active=False)
    )
    row.is_active = True
    session.add(row)


def list_versions(*, session: Session, task: Task, user: User | None) -> list[AdapterVersion]:
    return list(session.exec(_owner(select(AdapterVersion), task, user).order_by(AdapterVersion.version)))


def get_version(*, session: Session, task: Task, user: User | None, version: int) -> AdapterVersion:
    row = session.exec(_owner(select(AdapterVersion), task, user).where(AdapterVersion.version == version)).first()
    if row is None:
        owner = f"user {user.name!r}" if user is not None else "the prior"
        raise NotFoundError(f"adapter version {version} of {owner} in task {task.name!r} does not exist")
    return row


def active_version(*, session: Session, task: Task, user: User | None) -> AdapterVersion | None:
    return session.exec(_owner(select(AdapterVersion), task, user).where(AdapterVersion.is_active)).first()


def activate_version(*, session: Session, task: Task, user: User | None, version: int) -> AdapterVersion:
    """Makes ``version`` the one that serves; activating an older version is a rollback."""
    row = get_version(session=session, task=task, user=user, version=version)
    _activate(session, row)
    session.commit()
    return row


def delete_version(*, session: Session, store: AdapterStore, task: Task, user: User | None, version: int) -> None:
    row = get_version(session=session, task=task, user=user, version=version)
    if row.is_active:
        raise ConflictError(
            f"adapter version {version} is active and serving; activate another version before deleting it"
        )
    # Jobs keep their history; they just stop pointing at a version that no longer exists.
    session.exec(update(Job).where(Job.adapter_version_id == row.id).values(adapter_version_id=None))
    session.delete(row)
    session.commit()
    store.delete(row.store_key, row.version)


def export_version(*, store: AdapterStore, row: AdapterVersion, destination: str | Path) -> Path:
    """Copies a stored version (PEFT layout plus head) to ``destination``."""
    if not isinstance(store, LocalAdapterStore):
        raise ConflictError("export is only implemented for the local adapter store")
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise ConflictError(f"export destination {str(destination)!r} is not empty")
    shutil.copytree(store.path(row.store_key, row.version), destination, dirs_exist_ok=True)
    return destination


def load_weights(*, runtime: Runtime, row: AdapterVersion) -> AdapterWeights:
    """The resident adapter for ``row``, loaded (and hash-checked) on first use."""
    return runtime.engine.adapter(
        row.id, lambda: runtime.store.load(row.store_key, row.version, expected_hashes=row.files)
    )


def serving_version(
    *, session: Session, task: Task, user: User, allow_prior: bool
) -> tuple[AdapterVersion, str]:
    """The version that answers ``user`` in ``task`` and where it comes from (``user`` or ``prior``)."""
    row = active_version(session=session, task=task, user=user)
    if row is not None:
        return row, "user"
    if allow_prior:
        prior = active_version(session=session, task=task, user=None)
        if prior is not None:
            return prior, "prior"
    raise NoAdapterError(
        f"user {user.name!r} has no trained adapter for task {task.name!r}; upload labels and train one"
        + ("" if allow_prior else " (or enable the task prior fallback)")
    )


def stale_users(*, session: Session, task: Task) -> list[User]:
    """Users whose labels changed since their active adapter was trained, or who have none yet."""
    stats = session.exec(
        select(Label.user_id, func.count(), func.max(Label.updated_at)).where(Label.task_id == task.id)
        .group_by(Label.user_id)
    ).all()
    active = {
        row.user_id: row
        for row in session.exec(
            select(AdapterVersion).where(AdapterVersion.task_id == task.id, AdapterVersion.is_active,
                                         AdapterVersion.user_id.is_not(None))
        )
    }
    stale_ids = []
    for user_id, count, newest in stats:
        row = active.get(user_id)
        if row is None or row.n_labels != count or (aware(newest) and aware(row.labels_updated_at)
                                                     and aware(newest) > aware(row.labels_updated_at)):
            stale_ids.append(user_id)
    if not stale_ids:
        return []
    return list(session.exec(select(User).where(User.id.in_(stale_ids)).order_by(User.name)))
